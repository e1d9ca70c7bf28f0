//! Deterministic market data: the same symbol in the same 5-second window has the same
//! price on every instance in every region, so tests can compare answers across the planet.

use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};

/// Prices move once per window; `Cache-Control: max-age=5` matches it.
pub const WINDOW_SECS: u64 = 5;

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// FNV-1a: a stable hash, unlike std's randomized one.
pub(crate) fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Quote {
    pub symbol: String,
    pub price: f64,
    pub change: f64,
    pub change_percent: f64,
    pub volume: u64,
    pub currency: &'static str,
    /// Unix seconds at the start of the price window.
    pub as_of: u64,
}

pub(crate) fn valid_symbol(s: &str) -> bool {
    (1..=10).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn price_at(seed: u64, window: u64) -> f64 {
    let base = 20.0 + (seed % 48_000) as f64 / 100.0;
    let phase = (seed >> 20) as f64 % std::f64::consts::TAU;
    round2(base * (1.0 + 0.02 * ((window as f64) * 0.37 + phase).sin()))
}

/// The quote for `symbol` at time `now` (Unix seconds); None for a malformed symbol.
pub fn quote(symbol: &str, now: u64) -> Option<Quote> {
    if !valid_symbol(symbol) {
        return None;
    }
    let symbol = symbol.to_ascii_uppercase();
    let seed = fnv(symbol.as_bytes());
    let window = now / WINDOW_SECS;
    let price = price_at(seed, window);
    let open = price_at(seed, window - window % 720); // the window at the last hour boundary
    let change = round2(price - open);
    Some(Quote {
        change_percent: round2(change / open * 100.0),
        volume: 100_000 + (fnv(&window.to_le_bytes()) ^ seed) % 9_000_000,
        symbol,
        price,
        change,
        currency: "USD",
        as_of: window * WINDOW_SECS,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct Holding {
    pub symbol: String,
    pub shares: u64,
    pub price: f64,
    pub value: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Portfolio {
    pub account: String,
    pub holdings: Vec<Holding>,
    pub total_value: f64,
    pub as_of: u64,
}

const UNIVERSE: &[&str] = &[
    "AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "TSLA", "META", "BRK.B", "JPM", "V",
];

/// A user's portfolio, derived from the token so each user sees their own.
pub fn portfolio(token: &str, now: u64) -> Portfolio {
    let seed = fnv(token.as_bytes());
    let n = 3 + (seed % 4) as usize;
    let holdings: Vec<Holding> = (0..n)
        .filter_map(|i| {
            let sym = UNIVERSE[(seed as usize + i * 3) % UNIVERSE.len()];
            let q = quote(sym, now)?;
            let shares = 1 + (seed >> (i * 5)) % 200;
            Some(Holding {
                symbol: q.symbol,
                shares,
                price: q.price,
                value: round2(q.price * shares as f64),
            })
        })
        .collect();
    Portfolio {
        account: format!("acct-{:08x}", seed as u32),
        total_value: round2(holdings.iter().map(|h| h.value).fold(0.0, |a, v| a + v)),
        holdings,
        as_of: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_window_same_price_next_window_moves() {
        let a = quote("AAPL", 1_000_000).unwrap();
        let b = quote("aapl", 1_000_004).unwrap();
        assert_eq!(a, b);
        let c = quote("AAPL", 1_000_005).unwrap();
        assert_ne!(a.price, c.price);
        assert_ne!(quote("MSFT", 1_000_000).unwrap().price, a.price);
        assert!(a.price > 0.0);
    }

    #[test]
    fn rejects_malformed_symbols() {
        assert!(quote("", 0).is_none());
        assert!(quote("TOOLONGSYMBOL", 0).is_none());
        assert!(quote("A/B", 0).is_none());
        assert!(quote("BRK.B", 0).is_some());
    }

    #[test]
    fn portfolio_is_per_user() {
        let a = portfolio("alice", 1_000_000);
        let b = portfolio("bob", 1_000_000);
        assert_ne!(a.account, b.account);
        assert_eq!(a.account, portfolio("alice", 1_000_000).account);
        let sum: f64 = a.holdings.iter().map(|h| h.value).sum();
        assert!((sum - a.total_value).abs() < 0.01);
    }
}

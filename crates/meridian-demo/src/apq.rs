//! The persisted-query store behind GraphQL's automatic persisted queries (APQ).
//!
//! A module of its own so the shared [`crate::app::App`] state can hold it without
//! depending on the GraphQL handlers, which depend on that state.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// Operations the app ships with, registered on every instance at start (a persisted
/// query manifest), so APQ GETs hit on any instance without a registration round trip.
pub const BUILTIN_OPERATIONS: &[&str] = &[
    "query GetQuote($symbol: String!) { quote(symbol: $symbol) { symbol price change changePercent asOf } }",
    "query MarketStatus { marketStatus { isOpen exchange asOf } }",
    "query GetPortfolio { portfolio { account totalValue holdings { symbol shares value } } }",
];

const MAX_STORED: usize = 10_000;

pub struct QueryStore(Mutex<HashMap<String, String>>);

pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl QueryStore {
    pub fn new() -> Self {
        let map = BUILTIN_OPERATIONS
            .iter()
            .map(|q| (sha256_hex(q), (*q).to_owned()))
            .collect();
        QueryStore(Mutex::new(map))
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub fn len(&self) -> usize {
        self.lock().len()
    }
    pub(crate) fn get(&self, hash: &str) -> Option<String> {
        self.lock().get(hash).cloned()
    }
    pub(crate) fn put(&self, hash: String, query: String) {
        let mut m = self.lock();
        if m.len() < MAX_STORED {
            m.insert(hash, query);
        }
    }
}

//! The leader lease: at most one database node may take writes, and only while a majority
//! of the deployment's keepers (the witnesses, spread over the regions) have granted it a
//! lease that has not run out. Every keeper is a witness: it grants to one candidate at a
//! time, for `lease`, measured on its own monotonic clock.
//!
//! Why this is safe: a holder counts its lease from the moment it *asked*, and gives up a
//! fifth of it as margin ([`Held::valid`]); a witness counts from the moment it *granted*,
//! later. So the holder stops writing (fences itself) before any witness that granted it
//! will grant anyone else, and a new leader needs a majority, which must include one of
//! those witnesses. No partition can make two writers.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A witness's answer to a request for the lease, and what `GET /lease` reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    pub granted: bool,
    /// Who holds this witness's grant now (after this request), if anyone.
    pub holder: Option<String>,
    /// How long that grant still runs, in milliseconds.
    pub remaining_ms: u64,
    /// The highest term this witness has seen.
    pub term: u64,
}

/// One keeper's witness state. With a file, every grant is written down before it is
/// answered, so a keeper that restarts still honours the grants it gave (a witness that
/// forgot one could help elect a second writer).
pub struct Witness {
    lease: Duration,
    state: Mutex<Grant>,
    file: Option<std::path::PathBuf>,
}

/// A grant as kept on disk: wall-clock time, since a restart loses the monotonic clock.
#[derive(Serialize, Deserialize)]
struct SavedGrant {
    holder: Option<String>,
    until_unix_ms: u64,
    term: u64,
}

fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Default)]
struct Grant {
    holder: Option<(String, Instant)>,
    term: u64,
}

impl Witness {
    pub fn new(lease: Duration) -> Self {
        Witness {
            lease,
            state: Mutex::new(Grant::default()),
            file: None,
        }
    }

    /// A witness that keeps its grants in `file`, resuming the one it gave last.
    pub fn open(lease: Duration, file: std::path::PathBuf) -> Self {
        let mut grant = Grant::default();
        if let Some(saved) = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice::<SavedGrant>(&b).ok())
        {
            grant.term = saved.term;
            let left = saved
                .until_unix_ms
                .saturating_sub(unix_ms(std::time::SystemTime::now()));
            if let (Some(h), true) = (saved.holder, left > 0) {
                grant.holder = Some((h, Instant::now() + Duration::from_millis(left)));
            }
        }
        Witness {
            lease,
            state: Mutex::new(grant),
            file: Some(file),
        }
    }

    fn save(&self, g: &Grant, now: Instant) {
        let Some(file) = &self.file else { return };
        let until = g
            .holder
            .as_ref()
            .map(|(_, u)| u.saturating_duration_since(now));
        let saved = SavedGrant {
            holder: g.holder.as_ref().map(|(h, _)| h.clone()),
            until_unix_ms: until
                .map(|d| unix_ms(std::time::SystemTime::now() + d))
                .unwrap_or(0),
            term: g.term,
        };
        if let Ok(bytes) = serde_json::to_vec(&saved) {
            let tmp = file.with_extension("tmp");
            if std::fs::write(&tmp, bytes).is_ok() {
                let _ = std::fs::rename(&tmp, file);
            }
        }
    }

    /// Grants `candidate` the lease for `term` unless another holds a live grant, or the
    /// term is older than one already seen. Renewal by the holder always extends it.
    pub fn request(&self, candidate: &str, term: u64, now: Instant) -> Vote {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let live_other = matches!(&g.holder, Some((h, until)) if h != candidate && now < *until);
        let granted = !live_other && term >= g.term;
        if granted {
            g.holder = Some((candidate.to_owned(), now + self.lease));
            g.term = term;
            self.save(&g, now);
        }
        Self::vote(&g, granted, now)
    }

    /// Who holds this witness's grant, without asking for it.
    pub fn current(&self, now: Instant) -> Vote {
        let g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Self::vote(&g, false, now)
    }

    fn vote(g: &Grant, granted: bool, now: Instant) -> Vote {
        let live = g.holder.as_ref().filter(|(_, until)| now < *until);
        Vote {
            granted,
            holder: live.map(|(h, _)| h.clone()),
            remaining_ms: live
                .map(|(_, until)| until.saturating_duration_since(now).as_millis() as u64)
                .unwrap_or(0),
            term: g.term,
        }
    }
}

/// A lease this node holds: valid until four fifths of the lease after it asked.
#[derive(Debug, Clone, Copy)]
pub struct Held {
    pub asked: Instant,
    pub lease: Duration,
    pub term: u64,
}

impl Held {
    pub fn valid(&self, now: Instant) -> bool {
        now < self.asked + self.lease.mul_f64(0.8)
    }
}

/// Another keeper, reached on its admin address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    /// Its keeper's admin address (witness, health, status).
    pub admin: SocketAddr,
    /// Where its PostgreSQL is reached (through the WAN when there is one).
    pub address: SocketAddr,
}

/// Asks every witness (this node's own and its peers') for the lease, at once; the lease
/// is held when a majority granted it. Also returns the highest term any witness saw.
pub async fn campaign(
    own: &Witness,
    me: &str,
    term: u64,
    peers: &[Peer],
    token: &str,
    timeout: Duration,
) -> (Option<Held>, u64) {
    let asked = Instant::now();
    let path = format!("/lease?candidate={me}&term={term}");
    let asks = peers
        .iter()
        .map(|p| ask(p.admin, http::Method::POST, &path, token, timeout));
    let answers = futures_util::future::join_all(asks).await;
    let mine = own.request(me, term, Instant::now());
    let mut granted = usize::from(mine.granted);
    let mut highest = mine.term;
    for v in answers.into_iter().flatten() {
        granted += usize::from(v.granted);
        highest = highest.max(v.term);
    }
    let voters = peers.len() + 1;
    let held = (granted * 2 > voters).then_some(Held {
        asked,
        lease: own.lease,
        term,
    });
    (held, highest)
}

/// The holder a majority of witnesses agree on right now, if any: where a replica should
/// stream from.
pub async fn leader(
    own: &Witness,
    peers: &[Peer],
    token: &str,
    timeout: Duration,
) -> Option<String> {
    let asks = peers
        .iter()
        .map(|p| ask(p.admin, http::Method::GET, "/lease", token, timeout));
    let mut votes: Vec<Vote> = futures_util::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect();
    votes.push(own.current(Instant::now()));
    let voters = peers.len() + 1;
    let mut counts: Vec<(String, usize)> = Vec::new();
    for h in votes.into_iter().filter_map(|v| v.holder) {
        match counts.iter_mut().find(|(n, _)| *n == h) {
            Some(c) => c.1 += 1,
            None => counts.push((h, 1)),
        }
    }
    counts
        .into_iter()
        .find(|(_, n)| n * 2 > voters)
        .map(|(h, _)| h)
}

async fn ask(
    admin: SocketAddr,
    method: http::Method,
    path: &str,
    token: &str,
    timeout: Duration,
) -> Option<Vote> {
    let fetched = meridian_health::call(admin, method, path, Some(token), timeout, 4096)
        .await
        .ok()?;
    if fetched.status != 200 {
        return None;
    }
    serde_json::from_slice(&fetched.body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_live_grant_at_a_time_and_renewal_by_the_holder() {
        let w = Witness::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(w.request("a", 1, t0).granted);
        assert!(
            !w.request("b", 2, t0 + Duration::from_secs(5)).granted,
            "a's grant is live"
        );
        let renewed = w.request("a", 1, t0 + Duration::from_secs(6));
        assert!(renewed.granted, "the holder renews");
        assert!(!w.request("b", 2, t0 + Duration::from_secs(15)).granted);
        let later = t0 + Duration::from_secs(17);
        let v = w.request("b", 2, later);
        assert!(v.granted, "after a's grant ran out");
        assert_eq!(v.holder.as_deref(), Some("b"));
        assert!(
            !w.request("a", 1, later + Duration::from_secs(20)).granted,
            "an old term is refused even when nothing is live"
        );
        assert_eq!(w.current(later + Duration::from_secs(60)).holder, None);
    }

    #[test]
    fn a_holder_stops_before_any_witness_moves_on() {
        let lease = Duration::from_secs(10);
        let w = Witness::new(lease);
        let asked = Instant::now();
        // The grant happens after the request was sent.
        let granted_at = asked + Duration::from_millis(300);
        assert!(w.request("a", 1, granted_at).granted);
        let held = Held {
            asked,
            lease,
            term: 1,
        };
        // The last moment the holder believes it may write...
        let mut t = asked;
        while held.valid(t + Duration::from_millis(1)) {
            t += Duration::from_millis(1);
        }
        // ...is a full margin before the witness would grant anyone else.
        assert!(!w.request("b", 2, t).granted);
        assert!(!w.request("b", 2, t + lease.mul_f64(0.19)).granted);
    }

    #[test]
    fn a_restarted_witness_keeps_the_grant_it_gave() {
        let file = std::env::temp_dir().join(format!("meridian-witness-{}", std::process::id()));
        let _ = std::fs::remove_file(&file);
        let lease = Duration::from_secs(30);
        let w = Witness::open(lease, file.clone());
        assert!(w.request("a", 3, Instant::now()).granted);
        drop(w);
        let again = Witness::open(lease, file.clone());
        let v = again.request("b", 4, Instant::now());
        assert!(!v.granted, "a's grant outlives the restart");
        assert_eq!(v.holder.as_deref(), Some("a"));
        assert_eq!(v.term, 3);
        let _ = std::fs::remove_file(&file);
    }
}

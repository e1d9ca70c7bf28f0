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
//!
//! "Majority" is by weight, not by head count (see [`Electorate`]): every region weighs the
//! same, so the loss of a whole region, the home region included, leaves the others able
//! to elect a new writer.

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
    /// Whom it granted that term: the last writer it knows of, live or not. A node whose
    /// data says "primary" starts as one only if it is the last writer a quorum knows.
    #[serde(default)]
    pub last_holder: Option<String>,
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
    #[serde(default)]
    last: Option<String>,
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
    last: Option<String>,
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
            grant.last = saved.last.clone();
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
            last: g.last.clone(),
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
            g.last = Some(candidate.to_owned());
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
            last_holder: g.last.clone(),
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
    /// Its region: witnesses are weighed by region (see [`Electorate`]).
    pub region: String,
    /// Its keeper's admin address (witness, health, status).
    pub admin: SocketAddr,
    /// Where its PostgreSQL is reached (through the WAN when there is one).
    pub address: SocketAddr,
}

/// The witnesses and the weight of each one's grant. Every region weighs the same, split
/// evenly among its witnesses; with an even number of regions the home region weighs half
/// as much again, so that a cut into two equal halves leaves the home half able to write.
/// A lease needs more than half of the whole weight. Any two sets that each hold more than
/// half share a witness, and a witness grants one holder at a time: never two writers.
/// With three regions or more, losing every witness of any one region (the home region
/// too) leaves more than half: the others can still elect a writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Electorate {
    weights: Vec<(String, u64)>,
    total: u64,
}

impl Electorate {
    /// `me` in `region`, its peers in theirs; `home` is the writer region.
    pub fn new(me: &str, region: &str, peers: &[Peer], home: &str) -> Self {
        let mut members: Vec<(&str, &str)> = vec![(me, region)];
        members.extend(peers.iter().map(|p| (p.name.as_str(), p.region.as_str())));
        let mut regions: Vec<(&str, u64)> = Vec::new();
        for (_, r) in &members {
            match regions.iter_mut().find(|(name, _)| name == r) {
                Some(entry) => entry.1 += 1,
                None => regions.push((r, 1)),
            }
        }
        let even = regions.len().is_multiple_of(2);
        // Whole numbers: every region's weight is split evenly among its witnesses.
        let lcm = regions.iter().fold(1u64, |l, (_, n)| l / gcd(l, *n) * n);
        let weights: Vec<(String, u64)> = members
            .iter()
            .map(|(name, r)| {
                let n = regions.iter().find(|(x, _)| x == r).map_or(1, |e| e.1);
                let region_weight = if even && *r == home { 3 } else { 2 };
                (name.to_string(), region_weight * lcm / n)
            })
            .collect();
        let total = weights.iter().map(|(_, w)| w).sum();
        Electorate { weights, total }
    }

    /// Whether the witnesses for which `agrees` holds weigh more than half.
    pub fn carried(&self, agrees: impl Fn(&str) -> bool) -> bool {
        let yes: u64 = self
            .weights
            .iter()
            .filter(|(name, _)| agrees(name))
            .map(|(_, w)| w)
            .sum();
        yes * 2 > self.total
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Asks every witness (this node's own and its peers') for the lease, at once; the lease
/// is held when witnesses weighing more than half granted it. Also returns the highest
/// term any witness saw.
pub async fn campaign(
    electorate: &Electorate,
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
    let mut highest = mine.term;
    let mut granted = vec![me.to_owned()];
    granted.truncate(usize::from(mine.granted));
    for (p, v) in peers.iter().zip(answers) {
        if let Some(v) = v {
            highest = highest.max(v.term);
            if v.granted {
                granted.push(p.name.clone());
            }
        }
    }
    let held = electorate
        .carried(|n| granted.iter().any(|g| g == n))
        .then_some(Held {
            asked,
            lease: own.lease,
            term,
        });
    (held, highest)
}

/// What the witnesses say about the leadership right now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Survey {
    /// The holder witnesses weighing more than half agree on: where a replica should
    /// stream from, and where the writer endpoint leads.
    pub leader: Option<String>,
    /// The last writer elected, live or not, with its term: the one answering witness
    /// that saw the highest term says whom it granted.
    pub last: Option<(String, u64)>,
}

/// Asks every witness who holds the lease, without asking for it.
pub async fn survey(
    electorate: &Electorate,
    own: &Witness,
    me: &str,
    peers: &[Peer],
    token: &str,
    timeout: Duration,
) -> Survey {
    let asks = peers
        .iter()
        .map(|p| ask(p.admin, http::Method::GET, "/lease", token, timeout));
    let answers = futures_util::future::join_all(asks).await;
    let mut votes: Vec<(String, Vote)> = peers
        .iter()
        .zip(answers)
        .filter_map(|(p, v)| Some((p.name.clone(), v?)))
        .collect();
    votes.push((me.to_owned(), own.current(Instant::now())));
    let mut survey = Survey::default();
    for (_, v) in &votes {
        if let Some(h) = &v.holder {
            if survey.leader.is_none()
                && electorate.carried(|n| {
                    votes
                        .iter()
                        .any(|(w, v)| w == n && v.holder.as_ref() == Some(h))
                })
            {
                survey.leader = Some(h.clone());
            }
        }
        if let Some(l) = &v.last_holder {
            if survey.last.as_ref().is_none_or(|(_, t)| v.term > *t) {
                survey.last = Some((l.clone(), v.term));
            }
        }
    }
    survey
}

async fn ask(
    admin: SocketAddr,
    method: http::Method,
    path: &str,
    token: &str,
    timeout: Duration,
) -> Option<Vote> {
    let fetched = meridian_http::client::call(admin, method, path, Some(token), timeout, 4096)
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

    fn peer(name: &str, region: &str) -> Peer {
        Peer {
            name: name.into(),
            region: region.into(),
            admin: "127.0.0.1:1".parse().unwrap(),
            address: "127.0.0.1:2".parse().unwrap(),
        }
    }

    /// The reference deployment: a primary and its standby in us-east-1, one replica in
    /// each of two other regions.
    fn three_regions() -> Electorate {
        let peers = [
            peer("b", "us-east-1"),
            peer("eu", "eu-west-1"),
            peer("ap", "ap-southeast-1"),
        ];
        Electorate::new("a", "us-east-1", &peers, "us-east-1")
    }

    fn carried(e: &Electorate, yes: &[&str]) -> bool {
        e.carried(|n| yes.contains(&n))
    }

    #[test]
    fn losing_any_one_region_leaves_a_majority() {
        let e = three_regions();
        assert!(
            carried(&e, &["b", "eu", "ap"]),
            "the standby, when the primary is lost"
        );
        assert!(
            carried(&e, &["eu", "ap"]),
            "the replicas, when us-east-1 is lost"
        );
        assert!(
            carried(&e, &["a", "b", "ap"]),
            "the home region, when eu-west-1 is lost"
        );
        assert!(!carried(&e, &["a", "b"]), "the home region alone");
        assert!(
            !carried(&e, &["a", "eu"]),
            "half the weight is not more than half"
        );
        assert!(!carried(&e, &["eu"]));
    }

    #[test]
    fn two_sets_that_carry_always_share_a_witness() {
        let names = ["a", "b", "eu", "ap"];
        let e = three_regions();
        let two_regions =
            Electorate::new("a", "home", &[peer("b", "home"), peer("c", "away")], "home");
        for e in [e, two_regions] {
            for x in 0u32..16 {
                for y in 0u32..16 {
                    let set = |m: u32| -> Vec<&str> {
                        names
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| m & (1 << i) != 0)
                            .map(|(_, n)| *n)
                            .collect()
                    };
                    let (sx, sy) = (set(x), set(y));
                    if carried(&e, &sx) && carried(&e, &sy) {
                        assert!(sx.iter().any(|n| sy.contains(n)), "{sx:?} and {sy:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn with_two_regions_the_home_region_breaks_the_tie() {
        let e = Electorate::new("a", "home", &[peer("b", "home"), peer("c", "away")], "home");
        assert!(
            carried(&e, &["a", "b"]),
            "the home region keeps writing when cut off"
        );
        assert!(
            carried(&e, &["b", "c"]),
            "its standby takes over with the other region"
        );
        assert!(
            !carried(&e, &["c"]),
            "the other region alone cannot tell loss from a cut"
        );
        assert!(!carried(&e, &["a"]));
    }

    #[test]
    fn witnesses_remember_the_last_holder_after_the_lease_ran_out() {
        let w = Witness::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert!(w.request("a", 1, t0).granted);
        assert!(w.request("b", 2, t0 + Duration::from_secs(2)).granted);
        let v = w.current(t0 + Duration::from_secs(10));
        assert_eq!(v.holder, None);
        assert_eq!((v.last_holder.as_deref(), v.term), (Some("b"), 2));
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

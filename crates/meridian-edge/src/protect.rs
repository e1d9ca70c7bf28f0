//! The PoP's API protection, built once at start from `[distribution]`: the web ACL, a
//! rate counter per rate-based rule, a JWT verifier per authorizer, the key groups' public
//! keys, the geo restriction with its country lookup, and an idempotency store per behavior
//! that asks for one; plus their metrics. The request-time logic is `phases/protect.rs`.

use meridian_config::{Distribution, GeoRestriction, RateBasedRule};
use meridian_protect::idempotency::IdempotencyStore;
use meridian_protect::jwt::{Algorithm, Expectations, JwksFile, Verifier};
use meridian_protect::rate::RateCounter;
use meridian_protect::rules::WebAcl;
use meridian_protect::signed_url::PublicKeys;
use meridian_telemetry::prometheus_client::metrics::{counter::Counter, family::Family};
use meridian_telemetry::{Labels, Metrics};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Keys one rate-based rule tracks at one PoP: enough for every viewer of a busy PoP,
/// bounded so a flood of unique keys cannot grow memory.
const RATE_KEYS: usize = 100_000;
/// Stored idempotent responses per behavior, and the largest body kept for a replay.
const IDEMPOTENT_ENTRIES: usize = 10_000;
const IDEMPOTENT_BODY: usize = 1 << 20;

/// Why a PoP cannot enforce its protection: it refuses to start rather than serve
/// unprotected.
#[derive(Debug, thiserror::Error)]
pub enum ProtectError {
    #[error(transparent)]
    Rule(#[from] meridian_protect::rules::RuleError),
    #[error("rate-based rule `{rule}`: {source}")]
    Rate {
        rule: String,
        #[source]
        source: meridian_protect::rate::RateError,
    },
    #[error("JWT authorizer `{authorizer}` has no JWKS file (run it under `meridian up`, which makes a development key, or set jwks = \"<file>\")")]
    NoJwks { authorizer: String },
    #[error("JWT authorizer `{authorizer}`: {source}")]
    Jwks {
        authorizer: String,
        #[source]
        source: meridian_protect::jwt::JwksError,
    },
    #[error("key group `{group}`: public key `{id}` ({file}): {message}")]
    PublicKey {
        group: String,
        id: String,
        file: String,
        message: String,
    },
    #[error("geo restriction: cannot open {path}: {message}")]
    GeoIp { path: String, message: String },
}

/// One rate-based rule at this PoP.
pub(crate) struct RateRule {
    pub cfg: RateBasedRule,
    pub counter: RateCounter,
    pub admitted: Counter,
    pub blocked: Counter,
    pub counted: Counter,
}

/// A rule's request counters by action, looked up once so the hit path hashes nothing.
pub(crate) struct RuleCounters {
    pub allowed: Counter,
    pub blocked: Counter,
    pub counted: Counter,
}

pub(crate) struct Protect {
    /// Every header any authorizer forwards claims in: removed from every viewer request,
    /// so only a verified token can set them (on any behavior).
    pub claim_headers: Vec<http::HeaderName>,
    pub acl: WebAcl,
    pub acl_counters: Vec<RuleCounters>,
    pub rate_rules: Vec<RateRule>,
    pub verifiers: HashMap<String, Verifier>,
    pub key_groups: HashMap<String, Arc<PublicKeys>>,
    pub geo: GeoRestriction,
    pub geoip: Option<maxminddb::Reader<Vec<u8>>>,
    pub geo_blocked: Counter,
    /// By behavior path pattern (the default behavior's is `*`).
    pub idempotency: HashMap<String, IdempotencyStore>,
    auth_failures: Family<Labels, Counter>,
    pub idempotent: Family<Labels, Counter>,
    pop: String,
}

impl Protect {
    pub fn from_config(
        pop: &str,
        dist: &Distribution,
        metrics: &Metrics,
    ) -> Result<Protect, ProtectError> {
        let p = &dist.protection;
        let requests: Family<Labels, Counter> = metrics.register(
            "edge_protection_requests",
            "Requests each protection rule saw, by PoP, rule, kind (rule, rate, geo) and action (allowed, blocked, counted)",
            Family::default(),
        );
        let counter = |rule: &str, kind: &str, action: &str| {
            requests
                .get_or_create(&vec![
                    ("pop", pop.to_owned()),
                    ("rule", rule.to_owned()),
                    ("kind", kind.to_owned()),
                    ("action", action.to_owned()),
                ])
                .clone()
        };
        let acl = WebAcl::new(p)?;
        let acl_counters = p
            .rules
            .iter()
            .map(|r| RuleCounters {
                allowed: counter(&r.name, "rule", "allowed"),
                blocked: counter(&r.name, "rule", "blocked"),
                counted: counter(&r.name, "rule", "counted"),
            })
            .collect();
        let mut rate_rules = Vec::with_capacity(p.rate_based_rules.len());
        for r in &p.rate_based_rules {
            rate_rules.push(RateRule {
                counter: RateCounter::new(r.limit, r.window, RATE_KEYS).map_err(|source| {
                    ProtectError::Rate {
                        rule: r.name.clone(),
                        source,
                    }
                })?,
                admitted: counter(&r.name, "rate", "allowed"),
                blocked: counter(&r.name, "rate", "blocked"),
                counted: counter(&r.name, "rate", "counted"),
                cfg: r.clone(),
            });
        }
        let mut verifiers = HashMap::new();
        for a in &p.jwt_authorizers {
            let path = a.jwks.clone().ok_or_else(|| ProtectError::NoJwks {
                authorizer: a.name.clone(),
            })?;
            let file = JwksFile::open(&path).map_err(|source| ProtectError::Jwks {
                authorizer: a.name.clone(),
                source,
            })?;
            let expect = Expectations {
                issuer: a.issuer.clone(),
                audiences: a.audiences.clone(),
                leeway: a.leeway,
                algorithms: a
                    .algorithms
                    .iter()
                    .filter_map(|x| Algorithm::parse(x))
                    .collect(),
            };
            verifiers.insert(a.name.clone(), Verifier::new(file, expect));
        }
        let mut key_groups = HashMap::new();
        for g in &p.key_groups {
            let mut keys = PublicKeys::default();
            for k in &g.public_keys {
                let err = |message: String| ProtectError::PublicKey {
                    group: g.name.clone(),
                    id: k.id.clone(),
                    file: k.file.display().to_string(),
                    message,
                };
                let pem = std::fs::read_to_string(&k.file).map_err(|e| err(e.to_string()))?;
                keys.insert_pem(&k.id, &pem)
                    .map_err(|e| err(e.to_string()))?;
            }
            key_groups.insert(g.name.clone(), Arc::new(keys));
        }
        let geoip =
            match &p.geo_restriction.geoip_database {
                Some(path) => Some(maxminddb::Reader::open_readfile(path).map_err(|e| {
                    ProtectError::GeoIp {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    }
                })?),
                None => None,
            };
        let idempotency = dist
            .behaviors
            .iter()
            .chain(std::iter::once(&dist.default_behavior))
            .filter_map(|b| {
                let window = b.idempotency_window?;
                Some((
                    b.path_pattern.clone(),
                    IdempotencyStore::new(window, IDEMPOTENT_ENTRIES, IDEMPOTENT_BODY),
                ))
            })
            .collect();
        let claim_headers: Vec<http::HeaderName> = p
            .claim_headers()
            .iter()
            .filter_map(|h| http::HeaderName::from_bytes(h.as_bytes()).ok())
            .collect();
        Ok(Protect {
            claim_headers,
            acl,
            acl_counters,
            rate_rules,
            verifiers,
            key_groups,
            geo: p.geo_restriction.clone(),
            geoip,
            geo_blocked: counter("geo_restriction", "geo", "blocked"),
            idempotency,
            auth_failures: metrics.register(
                "edge_auth_failures",
                "Requests refused by authentication, by PoP, method (jwt, signed_url), authorizer or key group, and reason",
                Family::default(),
            ),
            idempotent: metrics.register(
                "edge_idempotent_requests",
                "Unsafe requests with an Idempotency-Key, by PoP and result (leader, replay, mismatch, in_flight)",
                Family::default(),
            ),
            pop: pop.to_owned(),
        })
    }

    pub fn auth_failed(&self, method: &str, name: &str, reason: &str) {
        self.auth_failures
            .get_or_create(&vec![
                ("pop", self.pop.clone()),
                ("method", method.to_owned()),
                ("name", name.to_owned()),
                ("reason", reason.to_owned()),
            ])
            .inc();
    }

    pub fn idempotent(&self, result: &str) {
        self.idempotent
            .get_or_create(&vec![
                ("pop", self.pop.clone()),
                ("result", result.to_owned()),
            ])
            .inc();
    }

    /// The viewer's country: the client location holding the address, else the GeoIP
    /// database's answer.
    pub fn country<'a>(
        &self,
        places: &'a crate::viewer::ViewerPlaces,
        ip: std::net::IpAddr,
    ) -> Option<std::borrow::Cow<'a, str>> {
        if let Some((_, Some(c))) = places.of(ip) {
            return Some(std::borrow::Cow::Borrowed(c));
        }
        #[derive(serde::Deserialize)]
        struct Record<'r> {
            #[serde(borrow)]
            country: Option<Country<'r>>,
        }
        #[derive(serde::Deserialize)]
        struct Country<'r> {
            iso_code: Option<&'r str>,
        }
        let reader = self.geoip.as_ref()?;
        let found = reader.lookup(ip).ok()?;
        let record: Record = found.decode().ok()??;
        Some(std::borrow::Cow::Owned(
            record.country?.iso_code?.to_owned(),
        ))
    }

    /// A JSON view for the admin API and the console: per rule totals and the keys most
    /// often over a rate limit.
    pub fn report(&self, now: std::time::SystemTime) -> serde_json::Value {
        let rules: Vec<_> = self
            .acl
            .rules()
            .zip(&self.acl_counters)
            .map(|(r, c)| {
                serde_json::json!({
                    "name": r.name, "kind": "rule", "action": r.action.as_str(),
                    "allowed": c.allowed.get(), "blocked": c.blocked.get(), "counted": c.counted.get(),
                })
            })
            .collect();
        let rate: Vec<_> = self
            .rate_rules
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.cfg.name, "kind": "rate", "action": r.cfg.action.as_str(),
                    "limit": r.cfg.limit, "window_seconds": r.cfg.window.as_secs(),
                    "allowed": r.admitted.get(), "blocked": r.blocked.get(), "counted": r.counted.get(),
                    "top_keys": r.counter.top_keys(10, now).into_iter().map(|k| serde_json::json!({
                        "key": k.key, "count": k.count, "refused": k.refused,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::json!({
            "pop": self.pop,
            "rules": rules,
            "rate_based_rules": rate,
            "geo_restriction": { "type": self.geo.restriction_type, "blocked": self.geo_blocked.get() },
        })
    }

    /// Every rate counter's snapshot, by rule name, for the other PoPs.
    pub fn snapshots(
        &self,
        now: std::time::SystemTime,
    ) -> Vec<(String, meridian_protect::rate::Snapshot)> {
        self.rate_rules
            .iter()
            .map(|r| (r.cfg.name.clone(), r.counter.snapshot(now)))
            .collect()
    }

    /// Merges another PoP's snapshots, under the name this PoP polled it by.
    pub fn merge(
        &self,
        from: &str,
        snapshots: Vec<(String, meridian_protect::rate::Snapshot)>,
        now: std::time::SystemTime,
    ) {
        for (rule, snap) in snapshots {
            if let Some(r) = self.rate_rules.iter().find(|r| r.cfg.name == rule) {
                if let Err(e) = r.counter.merge(from, snap, now) {
                    // A PoP running another config (a rollout in progress) is skipped.
                    tracing::debug!(pop = %from, rule = %rule, error = %e, "rate counts not merged");
                }
            }
        }
    }
}

/// How often a PoP sends its rate counts to the others: the sharing half of the error
/// bound stated in `meridian_protect::rate`.
pub const SHARE_INTERVAL: Duration = Duration::from_millis(500);

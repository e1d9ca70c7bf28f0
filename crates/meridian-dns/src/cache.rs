//! A cache of encoded answers for the common query shape, so a repeated question costs a
//! hash lookup and a copy instead of a parse, a policy decision and an encode.
//!
//! Only answers that are a pure function of (question, client location, health) are kept:
//! simple, latency, failover, geolocation and geoproximity sets, and negative answers.
//! Weighted and multivalue answers are random per query; IP-based ones depend on the exact
//! address; queries with EDNS options (ECS) always take the full path. Every entry carries
//! the health generation it was computed under and is ignored once health changes.

use meridian_telemetry::prometheus_client::metrics::counter::Counter;
use rustc_hash::{FxHashMap, FxHasher};
use std::hash::Hasher;
use std::sync::RwLock;

/// Entries kept at most; the cache starts over when full (the zone is small).
const CAPACITY: usize = 8192;

/// The question of a plain query, read straight from the packet.
pub(crate) struct Question<'a> {
    /// The name in wire format, as sent (case preserved), including the root label.
    pub qname: &'a [u8],
    pub qtype: u16,
    pub qclass: u16,
    /// The EDNS payload size when an OPT record without options is present.
    pub edns: Option<u16>,
}

/// Reads a query with one question, no records, and at most an option-less OPT record.
/// Anything else returns None and takes the full path.
pub(crate) fn plain_question(buf: &[u8]) -> Option<Question<'_>> {
    if buf.len() < 17 || buf[2] & 0xfe != 0 {
        // QR, opcode, AA, TC must be zero (RD may be set).
        return None;
    }
    let count = |i: usize| u16::from_be_bytes([buf[i], buf[i + 1]]);
    if count(4) != 1 || count(6) != 0 || count(8) != 0 || count(10) > 1 {
        return None;
    }
    let mut i = 12;
    loop {
        let len = usize::from(*buf.get(i)?);
        if len == 0 {
            i += 1;
            break;
        }
        if len > 63 {
            return None; // compression or extended labels: not in a plain query
        }
        i += 1 + len;
        if i - 12 > 255 {
            return None;
        }
    }
    let qname = &buf[12..i];
    let qtype = u16::from_be_bytes([*buf.get(i)?, *buf.get(i + 1)?]);
    let qclass = u16::from_be_bytes([*buf.get(i + 2)?, *buf.get(i + 3)?]);
    i += 4;
    let edns = if count(10) == 1 {
        // Root name, type OPT (41), payload, extended rcode 0, version 0, flags, rdlen 0.
        let opt = buf.get(i..i + 11)?;
        if opt[0] != 0 || opt[1..3] != [0, 41] || opt[5] != 0 || opt[6] != 0 || opt[9..11] != [0, 0]
        {
            return None;
        }
        i += 11;
        Some(u16::from_be_bytes([opt[3], opt[4]]))
    } else {
        None
    };
    (i == buf.len()).then_some(Question {
        qname,
        qtype,
        qclass,
        edns,
    })
}

/// What else the answer depends on.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Context {
    pub udp: bool,
    /// The configured client location, if any.
    pub location: Option<u16>,
}

pub(crate) struct Entry {
    qname: Box<[u8]>,
    qtype: u16,
    qclass: u16,
    edns: Option<u16>,
    ctx: Context,
    generation: u64,
    /// The possible responses (one, or one per weighted choice) with their weights, each
    /// with ID 0 and RD clear.
    variants: Vec<(u32, Box<[u8]>)>,
    total_weight: u32,
    /// The query counter series this answer was first counted under, resolved once so a
    /// hit counts itself with one atomic add instead of a labelled lookup.
    counter: Counter,
}

#[derive(Default)]
pub(crate) struct AnswerCache {
    map: RwLock<FxHashMap<u64, Entry>>,
}

fn key(q: &Question, ctx: Context) -> u64 {
    let mut h = FxHasher::default();
    // Names are almost always sent in lower case: hash them a word at a time, and fold
    // case into a copy only when needed (a wire name is at most 255 bytes).
    if q.qname.iter().any(u8::is_ascii_uppercase) {
        let mut lower = [0u8; 256];
        let lower = &mut lower[..q.qname.len().min(256)];
        lower.copy_from_slice(&q.qname[..lower.len()]);
        lower.make_ascii_lowercase();
        h.write(lower);
    } else {
        h.write(q.qname);
    }
    h.write_u16(q.qtype);
    h.write_u16(q.qclass);
    h.write_u32(q.edns.map(u32::from).unwrap_or(u32::MAX));
    h.write_u8(u8::from(ctx.udp));
    h.write_u32(ctx.location.map(u32::from).unwrap_or(u32::MAX));
    h.finish()
}

impl AnswerCache {
    /// Writes the cached answer for this query into `out`, with the query's ID, RD bit and
    /// name case, and counts the query. Returns false (and leaves `out` alone) on a miss.
    pub fn get(
        &self,
        query: &[u8],
        q: &Question,
        ctx: Context,
        generation: u64,
        out: &mut Vec<u8>,
    ) -> bool {
        let Ok(map) = self.map.read() else {
            return false;
        };
        let Some(e) = map.get(&key(q, ctx)) else {
            return false;
        };
        let same = e.generation == generation
            && e.ctx == ctx
            && e.qtype == q.qtype
            && e.qclass == q.qclass
            && e.edns == q.edns
            && e.qname.eq_ignore_ascii_case(q.qname);
        if !same {
            return false;
        }
        let bytes = if e.variants.len() == 1 {
            &e.variants[0].1
        } else {
            let mut x = rand::random_range(0..e.total_weight.max(1));
            let chosen = e.variants.iter().find(|(w, _)| {
                if x < *w {
                    true
                } else {
                    x -= w;
                    false
                }
            });
            let Some((_, bytes)) = chosen else {
                return false;
            };
            bytes
        };
        out.clear();
        out.extend_from_slice(bytes);
        out[0] = query[0];
        out[1] = query[1];
        out[2] |= query[2] & 0x01;
        out[12..12 + q.qname.len()].copy_from_slice(q.qname);
        e.counter.inc();
        true
    }

    /// Keeps the responses for a question: one, or one per weighted choice.
    pub fn put(
        &self,
        responses: Vec<(u32, Vec<u8>)>,
        q: &Question,
        ctx: Context,
        generation: u64,
        counter: Counter,
    ) {
        if responses.is_empty() || responses.iter().any(|(_, r)| r.len() < 12 + q.qname.len()) {
            return;
        }
        let total_weight = responses.iter().map(|(w, _)| *w).sum();
        let variants: Vec<(u32, Box<[u8]>)> = responses
            .into_iter()
            .map(|(w, r)| {
                let mut bytes = r.into_boxed_slice();
                bytes[0] = 0;
                bytes[1] = 0;
                bytes[2] &= !0x01;
                (w, bytes)
            })
            .collect();
        let Ok(mut map) = self.map.write() else {
            return;
        };
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(
            key(q, ctx),
            Entry {
                qname: q.qname.to_ascii_lowercase().into_boxed_slice(),
                qtype: q.qtype,
                qclass: q.qclass,
                edns: q.edns,
                ctx,
                generation,
                variants,
                total_weight,
                counter,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[u8], edns: bool) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
        q.extend_from_slice(name);
        q.extend_from_slice(&[0, 1, 0, 1]);
        if edns {
            q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        }
        q
    }

    #[test]
    fn reads_plain_questions_only() {
        let q = query(b"\x03api\x01t\x07example\x00", false);
        let p = plain_question(&q).unwrap();
        assert_eq!(p.qtype, 1);
        assert_eq!(p.edns, None);
        let q = query(b"\x03api\x01t\x07example\x00", true);
        assert_eq!(plain_question(&q).unwrap().edns, Some(1232));
        // A compression pointer, trailing bytes, or a response: not plain.
        assert!(plain_question(&query(b"\xc0\x0c", false)).is_none());
        let mut extra = query(b"\x01a\x00", false);
        extra.push(0);
        assert!(plain_question(&extra).is_none());
        let mut resp = query(b"\x01a\x00", false);
        resp[2] |= 0x80;
        assert!(plain_question(&resp).is_none());
    }

    #[test]
    fn hits_restore_id_rd_and_case_and_miss_on_new_health() {
        let cache = AnswerCache::default();
        let q1 = query(b"\x03API\x01t\x00", false);
        let p1 = plain_question(&q1).unwrap();
        let ctx = Context {
            udp: true,
            location: Some(2),
        };
        let mut response = q1.clone();
        response[2] = 0x85; // QR, AA, RD
        response.extend_from_slice(b"answer");
        let counter = Counter::default();
        cache.put(vec![(1, response)], &p1, ctx, 7, counter.clone());
        let mut q2 = query(b"\x03api\x01T\x00", false);
        q2[0] = 0xbe;
        q2[1] = 0xef;
        q2[2] = 0x00; // RD clear
        let p2 = plain_question(&q2).unwrap();
        let mut out = b"stale".to_vec();
        assert!(cache.get(&q2, &p2, ctx, 7, &mut out));
        assert_eq!(&out[..2], &[0xbe, 0xef]);
        assert_eq!(out[2], 0x84, "RD follows the query");
        assert_eq!(&out[12..19], b"\x03api\x01T\x00");
        assert!(
            out.ends_with(b"answer"),
            "the buffer is replaced, not appended to"
        );
        assert_eq!(counter.get(), 1, "a hit counts itself");
        assert!(
            !cache.get(&q2, &p2, ctx, 8, &mut out),
            "a health change invalidates"
        );
        let elsewhere = Context {
            udp: true,
            location: Some(3),
        };
        assert!(!cache.get(&q2, &p2, elsewhere, 7, &mut out));
        assert_eq!(counter.get(), 1, "misses are not counted here");
    }

    #[test]
    fn weighted_variants_are_chosen_by_weight() {
        let cache = AnswerCache::default();
        let q = query(b"\x01w\x00", false);
        let p = plain_question(&q).unwrap();
        let ctx = Context {
            udp: true,
            location: None,
        };
        let mut one = q.clone();
        one.push(1);
        let mut three = q.clone();
        three.push(3);
        cache.put(vec![(1, one), (3, three)], &p, ctx, 0, Counter::default());
        let mut counts = [0u32; 4];
        let mut out = Vec::new();
        for _ in 0..4000 {
            assert!(cache.get(&q, &p, ctx, 0, &mut out));
            counts[usize::from(*out.last().unwrap())] += 1;
        }
        let ratio = f64::from(counts[3]) / f64::from(counts[1]);
        assert!((ratio - 3.0).abs() < 0.6, "{counts:?}");
    }
}

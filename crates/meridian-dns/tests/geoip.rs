//! Clients placed by a MaxMind DB when no configured client location holds them. The
//! database is written here by a minimal MaxMind DB writer (format 2.0), so the test needs
//! no downloaded data.

mod common;
use common::*;

/// MaxMind DB data section values.
enum V<'a> {
    Str(&'a str),
    F64(f64),
    U16(u16),
    U32(u32),
    U64(u64),
    Map(Vec<(&'a str, V<'a>)>),
    Arr(Vec<V<'a>>),
}

fn ctrl(out: &mut Vec<u8>, ty: u8, size: usize) {
    assert!(size < 29);
    if ty <= 7 {
        out.push((ty << 5) | size as u8);
    } else {
        out.push(size as u8);
        out.push(ty - 7);
    }
}

fn enc(out: &mut Vec<u8>, v: &V) {
    let uint = |out: &mut Vec<u8>, ty: u8, x: u64, width: usize| {
        let bytes = x.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count().min(8);
        let b = &bytes[skip.max(8 - width)..];
        ctrl(out, ty, b.len());
        out.extend_from_slice(b);
    };
    match v {
        V::Str(s) => {
            ctrl(out, 2, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        V::F64(x) => {
            ctrl(out, 3, 8);
            out.extend_from_slice(&x.to_be_bytes());
        }
        V::U16(x) => uint(out, 5, u64::from(*x), 2),
        V::U32(x) => uint(out, 6, u64::from(*x), 4),
        V::U64(x) => uint(out, 9, *x, 8),
        V::Map(kv) => {
            ctrl(out, 7, kv.len());
            for (k, v) in kv {
                enc(out, &V::Str(k));
                enc(out, v);
            }
        }
        V::Arr(items) => {
            ctrl(out, 11, items.len());
            for v in items {
                enc(out, v);
            }
        }
    }
}

/// An IPv4 database mapping each network to a record.
fn mmdb(networks: &[([u8; 4], u8, V)]) -> Vec<u8> {
    #[derive(Clone, Copy)]
    enum R {
        Empty,
        Node(usize),
        Data(usize),
    }
    let mut data = Vec::new();
    let mut nodes: Vec<[R; 2]> = vec![[R::Empty, R::Empty]];
    for (ip, prefix, value) in networks {
        let offset = data.len();
        enc(&mut data, value);
        let bits = u32::from_be_bytes(*ip);
        let mut node = 0;
        for depth in 0..*prefix {
            let bit = ((bits >> (31 - depth)) & 1) as usize;
            if depth + 1 == *prefix {
                nodes[node][bit] = R::Data(offset);
            } else {
                node = match nodes[node][bit] {
                    R::Node(n) => n,
                    _ => {
                        nodes.push([R::Empty, R::Empty]);
                        let n = nodes.len() - 1;
                        nodes[node][bit] = R::Node(n);
                        n
                    }
                };
            }
        }
    }
    let count = nodes.len();
    let mut out = Vec::new();
    for n in &nodes {
        for r in n {
            let v = match *r {
                R::Empty => count,
                R::Node(i) => i,
                R::Data(off) => count + 16 + off,
            };
            out.extend_from_slice(&(v as u32).to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xab\xcd\xefMaxMind.com");
    enc(
        &mut out,
        &V::Map(vec![
            ("node_count", V::U32(count as u32)),
            ("record_size", V::U16(24)),
            ("ip_version", V::U16(4)),
            ("database_type", V::Str("Meridian-Test-City")),
            ("languages", V::Arr(vec![V::Str("en")])),
            ("binary_format_major_version", V::U16(2)),
            ("binary_format_minor_version", V::U16(0)),
            ("build_epoch", V::U64(1_795_000_000)),
            ("description", V::Map(vec![("en", V::Str("test"))])),
        ]),
    );
    out
}

#[test]
fn geoip_places_clients_the_config_does_not_know() {
    let db = mmdb(&[
        (
            [203, 0, 113, 0],
            24,
            V::Map(vec![
                ("country", V::Map(vec![("iso_code", V::Str("GB"))])),
                ("continent", V::Map(vec![("code", V::Str("EU"))])),
                (
                    "location",
                    V::Map(vec![
                        ("latitude", V::F64(51.5)),
                        ("longitude", V::F64(-0.12)),
                    ]),
                ),
            ]),
        ),
        (
            [198, 51, 100, 0],
            24,
            V::Map(vec![
                ("country", V::Map(vec![("iso_code", V::Str("JP"))])),
                ("continent", V::Map(vec![("code", V::Str("AS"))])),
            ]),
        ),
    ]);
    let dir = std::env::temp_dir().join(format!("meridian-geoip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("test.mmdb");
    std::fs::write(&path, db).unwrap();
    let with_db = CONFIG.replace(
        "servers = 1\n",
        &format!("servers = 1\ngeoip_database = \"{}\"\n", path.display()),
    );
    let cfg = meridian_config::Config::parse(&with_db, "g.toml").unwrap();
    let dns = meridian_dns::Dns::new(&options(&cfg));

    // A British address: country match, and London's latency picks the EU region.
    assert_eq!(a(&dns, "g.t.example.", "203.0.113.9"), ["192.0.2.30"]);
    assert_eq!(a(&dns, "api.t.example.", "203.0.113.9"), ["127.77.2.1"]);
    // A Japanese address without coordinates: geolocation falls to the default record,
    // latency to the primary region.
    assert_eq!(a(&dns, "g.t.example.", "198.51.100.7"), ["192.0.2.32"]);
    assert_eq!(a(&dns, "api.t.example.", "198.51.100.7"), ["127.77.1.1"]);
    // Configured client locations still win over the database.
    assert_eq!(a(&dns, "g.t.example.", LON), ["192.0.2.30"]);
    let v = dns
        .explain("g.t.example", "A", "203.0.113.9".parse().unwrap())
        .unwrap();
    assert_eq!(v["client"]["location"]["name"], "geoip:GB");
    assert_eq!(v["client"]["location"]["network"], "203.0.113.0/24");

    let missing = CONFIG.replace(
        "servers = 1\n",
        "servers = 1\ngeoip_database = \"/nonexistent/x.mmdb\"\n",
    );
    let cfg = meridian_config::Config::parse(&missing, "m.toml").unwrap();
    let node = cfg
        .nodes()
        .into_iter()
        .find(|n| n.role == meridian_config::Role::Dns)
        .unwrap();
    let e = meridian_dns::DnsOptions::from_config(&cfg, &node)
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/x.mmdb"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

//! A reload swaps the zone whole: a new record set is answered at once (cached answers of
//! the old zone are not served again), a removed one is gone, and the digest is reported.

mod common;
use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

const NEW_SET: &str =
    "\n[[dns.record]]\nname = \"fresh\"\ntype = \"A\"\nvalues = [\"192.0.2.99\"]\n";

#[tokio::test]
async fn a_reloaded_zone_answers_at_once_and_drops_old_answers() {
    let dns = server("");
    // Asked twice, so the NXDOMAIN is in the answer cache before the reload.
    for _ in 0..2 {
        let r = ask(&dns, &query("fresh.t.example.", RecordType::A), NYC);
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    }
    let before = a(&dns, "s.t.example.", NYC);
    let cfg = config(NEW_SET);
    let zone = meridian_dns::Zone::build(&cfg).unwrap();
    let tasks = dns.reload(zone, &cfg.dns.health_check, "d1");
    assert_eq!(a(&dns, "fresh.t.example.", NYC), ["192.0.2.99"]);
    assert_eq!(
        a(&dns, "s.t.example.", NYC),
        before,
        "unchanged sets answer as before"
    );
    assert_eq!(dns.config_digest(), "d1");
    // And back: the set is gone again.
    let cfg = config("");
    let _ = dns.reload(
        meridian_dns::Zone::build(&cfg).unwrap(),
        &cfg.dns.health_check,
        "d2",
    );
    let r = ask(&dns, &query("fresh.t.example.", RecordType::A), NYC);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(dns.config_digest(), "d2");
    assert!(tasks.is_empty(), "no new health target, no new check");
}

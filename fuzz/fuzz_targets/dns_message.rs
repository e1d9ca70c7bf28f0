//! Any bytes into the DNS server's message handler: it must answer or drop, never panic.
//! Run: RUSTC_BOOTSTRAP=1 cargo fuzz run dns_message -- -max_total_time=60
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn server() -> &'static meridian_dns::Dns {
    static DNS: OnceLock<meridian_dns::Dns> = OnceLock::new();
    DNS.get_or_init(|| {
        let cfg = meridian_config::Config::embedded_default();
        let node = cfg
            .nodes()
            .into_iter()
            .find(|n| n.role == meridian_config::Role::Dns)
            .expect("the default deployment has DNS nodes");
        let opts = meridian_dns::DnsOptions::from_config(&cfg, &node).expect("the default zone builds");
        meridian_dns::Dns::new(&opts)
    })
}

fuzz_target!(|data: &[u8]| {
    let dns = server();
    // From a London client address, over UDP and over TCP framing rules.
    let src = "127.10.203.1".parse().expect("a valid address");
    let _ = dns.handle(data, src, true);
    let _ = dns.handle(data, src, false);
});

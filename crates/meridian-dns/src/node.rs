//! Running a DNS node: UDP threads, the TCP listener, health checks and the admin
//! endpoint, until shutdown.

use crate::options::DnsOptions;
use crate::server::Dns;
use crate::tcp::tcp_loop;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::{TcpListener, UdpSocket};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {addr} ({proto}): {source}")]
    Bind {
        addr: SocketAddr,
        proto: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Admin(#[from] meridian_http::BindError),
}

/// Runs the UDP and TCP listeners and the admin endpoint until `shutdown`.
pub async fn run(
    mut opts: DnsOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let bind_err = |proto| {
        move |source| RunError::Bind {
            addr: opts.listen,
            proto,
            source,
        }
    };
    let udp = UdpSocket::bind(opts.listen)
        .await
        .map_err(bind_err("udp"))?;
    let tcp = TcpListener::bind(opts.listen)
        .await
        .map_err(bind_err("tcp"))?;
    let admin = meridian_http::bind(opts.admin).await?;
    let dns = Dns::new(&opts);
    let checks = dns.start_health_checks(&opts.check);
    tracing::info!(name = %opts.name, listen = %opts.listen, zone = %opts.zone.origin, "dns listening (udp, tcp)");
    // UDP is served by plain threads with blocking sockets: one system call per packet
    // each way, no readiness round trip through the reactor.
    let udp_err = |source| RunError::Bind {
        addr: opts.listen,
        proto: "udp",
        source,
    };
    let udp = udp.into_std().map_err(udp_err)?;
    // No read timeout: a thread blocked with a timer armed pays for the timer on every
    // sleep; shutdown wakes the threads with `batch::wake_receivers` instead.
    udp.set_nonblocking(false).map_err(udp_err)?;
    crate::batch::tune(&udp);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let threads: Vec<_> = (0..opts.udp_threads.max(1))
        .filter_map(|_| {
            let sock = udp.try_clone().ok()?;
            let (dns, stop) = (dns.clone(), stop.clone());
            std::thread::Builder::new()
                .name("dns-udp".into())
                .spawn(move || udp_loop(dns, sock, stop))
                .ok()
        })
        .collect();
    let mut tasks = vec![tokio::spawn(tcp_loop(
        dns.clone(),
        tcp,
        opts.tcp_max_connections,
        opts.tcp_timeout,
    ))];
    tasks.extend(checks);
    if let Some(mut rx) = opts.reloads.take() {
        let (dns, check) = (dns.clone(), opts.check.clone());
        tasks.push(tokio::spawn(async move {
            let mut checks = Vec::new();
            while let Some((cfg, digest)) = rx.recv().await {
                match crate::zone::Zone::build(&cfg) {
                    Ok(zone) => {
                        checks.extend(dns.reload(zone, &check, &digest));
                        tracing::info!(config = %digest, "dns reloaded its zone");
                    }
                    Err(e) => tracing::error!("reload refused, keeping the current zone: {e}"),
                }
            }
            for c in checks {
                c.abort();
            }
        }));
    }
    if let Some(token) = &opts.admin_token {
        if !opts.measurement_sources.is_empty() {
            tasks.push(dns.start_measurement_feed(
                opts.measurement_sources.clone(),
                token.clone(),
                opts.check.interval,
            ));
        }
    }
    crate::admin::router(dns.clone(), opts.admin_token.clone(), opts.audit.clone())
        .serve(admin, shutdown)
        .await;
    for t in tasks {
        t.abort();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    crate::batch::wake_receivers(&udp);
    for t in threads {
        let _ = t.join();
    }
    tracing::info!(name = %opts.name, "dns stopped");
    Ok(())
}

fn udp_loop(dns: Dns, sock: std::net::UdpSocket, stop: Arc<std::sync::atomic::AtomicBool>) {
    let mut batch = crate::batch::Batch::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        // Shutdown wakes a blocked receive (it returns 0) so the loop sees `stop`.
        let Ok(n) = batch.recv(&sock) else { continue };
        let start = Instant::now();
        let answered = batch.answer_all(n, |packet, peer, reply| {
            dns.answer(packet, peer, true, reply)
        });
        batch.send(&sock);
        dns.observe_latency(start.elapsed().as_secs_f64(), answered);
    }
}

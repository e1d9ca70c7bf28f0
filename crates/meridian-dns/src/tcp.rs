//! DNS over TCP (RFC 7766): the fallback for truncated answers, bounded in connections,
//! messages per connection and time per read or write.

use crate::server::Dns;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub(crate) async fn tcp_loop(dns: Dns, listener: TcpListener, max: usize, timeout: Duration) {
    let room = Arc::new(tokio::sync::Semaphore::new(
        max.clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
    ));
    loop {
        // A slot first: at the cap, clients wait in the backlog, not in our memory.
        let Ok(permit) = room.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let dns = dns.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tcp_conn(dns, stream, peer.ip(), timeout).await;
        });
    }
}

/// One TCP connection: length-prefixed messages (RFC 1035 §4.2.2), at most 1000 of them;
/// every read and every write bounded by `timeout`.
async fn tcp_conn(
    dns: Dns,
    mut s: TcpStream,
    peer: IpAddr,
    timeout: Duration,
) -> std::io::Result<()> {
    let timed_out = || std::io::Error::from(std::io::ErrorKind::TimedOut);
    for _ in 0..1000 {
        let mut len = [0u8; 2];
        match tokio::time::timeout(timeout, s.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let n = usize::from(u16::from_be_bytes(len));
        let mut buf = vec![0u8; n];
        tokio::time::timeout(timeout, s.read_exact(&mut buf))
            .await
            .map_err(|_| timed_out())??;
        let Some(out) = dns.handle(&buf, peer, false) else {
            return Ok(());
        };
        let mut framed = Vec::with_capacity(out.len() + 2);
        framed.extend_from_slice(&(out.len() as u16).to_be_bytes());
        framed.extend_from_slice(&out);
        tokio::time::timeout(timeout, s.write_all(&framed))
            .await
            .map_err(|_| timed_out())??;
    }
    Ok(())
}

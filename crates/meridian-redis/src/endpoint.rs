//! The region's primary endpoint, as ElastiCache's: one address that always leads to the
//! cluster's current primary. Every keeper of the cluster listens on it with SO_REUSEPORT
//! (the kernel spreads connections over the live listeners), and relays each connection
//! to the node it knows is primary. When the primary changes, relayed connections are cut,
//! so a client's next connection goes to the new one instead of writing to a replica.

use std::net::{IpAddr, SocketAddr};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

/// A listener on `at` that other keepers on this host may share.
pub(crate) fn bind_shared(at: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match at {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(at)?;
    socket.listen(1024)
}

/// Relays every connection accepted on `listener` to the current primary, leaving from
/// `source`, until the task is dropped. With no primary known, connections are closed.
pub(crate) fn start(
    listener: TcpListener,
    primary: watch::Receiver<Option<SocketAddr>>,
    source: IpAddr,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let mut inbound = match listener.accept().await {
                Ok((s, _)) => s,
                // Out of descriptors or similar: wait instead of spinning.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let mut primary = primary.clone();
            tokio::spawn(async move {
                let Some(target) = *primary.borrow_and_update() else {
                    return;
                };
                let Ok(socket) = (match target {
                    SocketAddr::V4(_) => TcpSocket::new_v4(),
                    SocketAddr::V6(_) => TcpSocket::new_v6(),
                }) else {
                    return;
                };
                if socket.bind(SocketAddr::new(source, 0)).is_err() {
                    return;
                }
                let connect =
                    tokio::time::timeout(std::time::Duration::from_secs(3), socket.connect(target));
                let Ok(Ok(mut outbound)) = connect.await else {
                    return;
                };
                let _ = outbound.set_nodelay(true);
                let _ = inbound.set_nodelay(true);
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    // A new primary: this connection belongs to the old one.
                    _ = primary.changed() => {}
                }
            });
        }
    })
}

//! PostgreSQL's replication connection cannot choose the address it leaves from, and on a
//! host with several addresses (one machine standing in for many) it would leave from the
//! wrong one. The keeper listens on its node's own address and relays each connection to
//! the upstream from that address, as it would leave a machine of its own. The relay is
//! also how a standby follows a new primary: when the upstream changes, open connections
//! are cut and PostgreSQL's next attempt goes to the new one. The writer endpoint is the
//! same relay, pointed at whoever holds the leader lease.

use std::net::{IpAddr, SocketAddr};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

/// Relays every connection accepted on `listener` to the current `upstream`, leaving from
/// `source`, until the task is dropped. With no upstream known, connections are closed.
pub fn start(
    listener: TcpListener,
    upstream: watch::Receiver<Option<SocketAddr>>,
    source: IpAddr,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let mut upstream = upstream.clone();
            tokio::spawn(async move {
                let Some(target) = *upstream.borrow_and_update() else {
                    return;
                };
                let socket = match target {
                    SocketAddr::V4(_) => TcpSocket::new_v4(),
                    SocketAddr::V6(_) => TcpSocket::new_v6(),
                };
                let Ok(socket) = socket else { return };
                if socket.bind(SocketAddr::new(source, 0)).is_err() {
                    return;
                }
                let Ok(mut outbound) = socket.connect(target).await else {
                    return;
                };
                let _ = outbound.set_nodelay(true);
                let _ = inbound.set_nodelay(true);
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    // A new upstream: this stream belongs to the old one.
                    _ = upstream.changed() => {}
                }
            });
        }
    })
}

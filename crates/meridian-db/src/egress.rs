//! PostgreSQL's replication connection cannot choose the address it leaves from, and on a
//! host with several addresses (one machine standing in for many) it would leave from the
//! wrong one. The keeper listens on its node's own address and relays each connection to
//! the upstream from that address, as it would leave a machine of its own.

use std::net::{IpAddr, SocketAddr};
use tokio::net::{TcpListener, TcpSocket};

/// Relays every connection accepted on `listener` to `upstream`, leaving from `source`,
/// until the task is dropped.
pub fn start(
    listener: TcpListener,
    upstream: SocketAddr,
    source: IpAddr,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                let socket = match upstream {
                    SocketAddr::V4(_) => TcpSocket::new_v4(),
                    SocketAddr::V6(_) => TcpSocket::new_v6(),
                };
                let Ok(socket) = socket else { return };
                if socket.bind(SocketAddr::new(source, 0)).is_err() {
                    return;
                }
                let Ok(mut outbound) = socket.connect(upstream).await else {
                    return;
                };
                let _ = outbound.set_nodelay(true);
                let _ = inbound.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    })
}

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
/// `source`, until the returned task is dropped (aborted). With no upstream known,
/// connections are closed.
///
/// The relay runs on a thread of its own with a single-threaded runtime: each message of
/// a session is read and written by one thread, with no hand-off between the keeper's
/// workers, which is most of what a relay costs beside the system calls.
pub fn start(
    listener: TcpListener,
    upstream: watch::Receiver<Option<SocketAddr>>,
    source: IpAddr,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(listener) = listener.into_std() else {
            return;
        };
        // Dropped when this task is aborted: the relay thread then ends, and its runtime
        // with every session in it.
        let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("db-relay".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        _ = relay(listener, upstream, source) => {}
                        _ = stopped => {}
                    }
                });
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the relay thread: {e}");
            return;
        }
        std::future::pending::<()>().await;
    })
}

async fn relay(
    listener: TcpListener,
    upstream: watch::Receiver<Option<SocketAddr>>,
    source: IpAddr,
) {
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
}

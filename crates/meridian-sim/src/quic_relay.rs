//! QUIC (HTTP/3) through the WAN: the datagrams of each sender go to the node behind a
//! public UDP port and its answers come back, each way delayed by the link's one-way time
//! at the moment the datagram crossed, in the order they were sent. A partitioned link
//! loses them, as it would; QUIC resends. Each sender has a socket of its own towards the
//! node, bound to the sender's address, so the PoP sees the viewer, as over TCP it sees
//! a connection.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What the link between a sender and the node does to a datagram now.
pub(crate) struct Path {
    pub one_way: Duration,
    /// Partitioned: the datagram is lost.
    pub held: bool,
}

/// A sender with no datagram for this long is forgotten (longer than QUIC's idle time, so
/// a connection the viewer keeps is never cut here).
const IDLE: Duration = Duration::from_secs(60);
/// Senders relayed at once; past it a new sender's datagrams are dropped.
const MAX_SESSIONS: usize = 4096;
/// Datagrams waiting for their moment per sender and direction, past which they are
/// dropped as a full link would.
const QUEUE: usize = 2048;

type Queue = mpsc::Sender<(Instant, Vec<u8>)>;
type Sessions = Arc<Mutex<HashMap<SocketAddr, Queue>>>;

/// Relays datagrams arriving at `public` to `backstage` and back until aborted; `path`
/// says what the link from a sender's address is doing.
pub(crate) async fn run<F>(public: Arc<UdpSocket>, backstage: SocketAddr, path: F)
where
    F: Fn(IpAddr) -> Path + Send + Sync + 'static,
{
    let path = Arc::new(path);
    let sessions: Sessions = Arc::default();
    let mut buf = vec![0u8; 65_535];
    loop {
        let Ok((n, peer)) = public.recv_from(&mut buf).await else {
            continue;
        };
        let arrived = Instant::now();
        let p = path(peer.ip());
        if p.held {
            continue;
        }
        let open = sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&peer)
            .filter(|q| !q.is_closed())
            .cloned();
        let queue = match open {
            Some(q) => q,
            None => {
                let full = sessions.lock().unwrap_or_else(|p| p.into_inner()).len() >= MAX_SESSIONS;
                if full {
                    continue;
                }
                match session(&public, backstage, peer, path.clone(), sessions.clone()).await {
                    Some(q) => q,
                    None => continue,
                }
            }
        };
        let _ = queue.try_send((arrived + p.one_way, buf[..n].to_vec()));
    }
}

/// Starts relaying for `peer`: its socket towards `backstage`, one task sending its
/// datagrams on at their moments, one reading the answers and one sending them back.
async fn session<F>(
    public: &Arc<UdpSocket>,
    backstage: SocketAddr,
    peer: SocketAddr,
    path: Arc<F>,
    sessions: Sessions,
) -> Option<Queue>
where
    F: Fn(IpAddr) -> Path + Send + Sync + 'static,
{
    // From the sender's own address when this machine has it (loopback senders), else
    // from any.
    let sock = match UdpSocket::bind(SocketAddr::new(peer.ip(), 0)).await {
        Ok(s) => s,
        Err(_) => UdpSocket::bind(SocketAddr::new(backstage.ip(), 0))
            .await
            .ok()?,
    };
    sock.connect(backstage).await.ok()?;
    let sock = Arc::new(sock);
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUE);
    let (back_tx, mut back_rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUE);
    let reader = {
        let sock = sock.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            loop {
                let n = match sock.recv(&mut buf).await {
                    Ok(n) => n,
                    // The node was not listening for a moment (restarting): later
                    // datagrams may find it.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                    Err(_) => return,
                };
                let p = path(peer.ip());
                if !p.held {
                    let _ = back_tx.try_send((Instant::now() + p.one_way, buf[..n].to_vec()));
                }
            }
        })
    };
    let public = public.clone();
    tokio::spawn(async move {
        while let Some((due, d)) = back_rx.recv().await {
            tokio::time::sleep_until(due).await;
            let _ = public.send_to(&d, peer).await;
        }
    });
    let mine = tx.clone();
    let all = sessions.clone();
    tokio::spawn(async move {
        while let Ok(Some((due, d))) = tokio::time::timeout(IDLE, rx.recv()).await {
            if reader.is_finished() {
                break;
            }
            tokio::time::sleep_until(due).await;
            let _ = sock.send(&d).await;
        }
        // Forgotten: the reader's end closes the way back too.
        reader.abort();
        let mut s = all.lock().unwrap_or_else(|p| p.into_inner());
        if s.get(&peer).is_some_and(|q| q.same_channel(&mine)) {
            s.remove(&peer);
        }
    });
    sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(peer, tx.clone());
    Some(tx)
}

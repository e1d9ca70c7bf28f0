//! A WAN link in userspace: one TCP connection relayed with each direction delayed by the
//! link's one-way latency (plus jitter, a bandwidth limit, and partitions), order kept.
//! The timing itself is the delay line's (`delay_line`): it writes each chunk at its moment.
//!
//! A new connection also pays the TCP handshake: the client's first bytes reach the other
//! side one round trip later than they would on an open connection, as after SYN, SYN-ACK.

use crate::delay_line::{self, Outbox};
use bytes::Bytes;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// What one link between two places does to traffic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    pub one_way: Duration,
    /// Up to this much extra delay, at random, per burst of bytes.
    pub jitter: Duration,
    /// Bytes per second in each direction; None for unlimited.
    pub bandwidth: Option<u64>,
}

impl Link {
    pub fn rtt(rtt: Duration) -> Link {
        Link {
            one_way: rtt / 2,
            jitter: Duration::ZERO,
            bandwidth: None,
        }
    }
}

/// What a link is doing now, beyond its fixed latency: a partition holds every byte, and
/// an extra delay slows it (a congested or degraded path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Conditions {
    pub held: bool,
    pub extra: Duration,
}

/// Relays `client` to `upstream` over `link` until either side closes, under the link's
/// current `conditions` (they may change while the connection lives). The upstream
/// connection leaves from `source` when given (the client's own address, for a node that
/// must know it). `report` hears of every chunk written: its size and how late it went
/// (see [`delay_line::Report`]).
pub async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    source: Option<std::net::IpAddr>,
    link: Link,
    conditions: watch::Receiver<Conditions>,
    report: impl Fn(u64, Option<Duration>) + Send + Sync + Clone + 'static,
) -> std::io::Result<()> {
    let accepted = Instant::now();
    let server = meridian_http::client::connect_from(source, upstream).await?;
    for s in [&client, &server] {
        let _ = s.set_nodelay(true);
        stamp_arrivals(s);
    }
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    // The client could send only after the handshake's round trip.
    let handshake = accepted + link.one_way * 2;
    let up = pipe(
        cr,
        sw,
        link,
        handshake,
        conditions.clone(),
        Box::new(report.clone()),
    );
    let down = pipe(sr, cw, link, accepted, conditions, Box::new(report));
    let _ = tokio::join!(up, down);
    Ok(())
}

/// One direction, in one task: each chunk read is stamped with the moment it may arrive
/// (from when the kernel received it, so the task's own wake-up does not count) and handed
/// to the delay line, which writes it then. The task drains the backlog when a write
/// could not finish, follows partitions, and ends once its last chunk is out.
async fn pipe(
    from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: Link,
    not_before: Instant,
    mut conditions: watch::Receiver<Conditions>,
    report: Box<delay_line::Report>,
) {
    let Ok(sock) = duplicate(to.as_ref()) else {
        return;
    };
    let out = Outbox::new(sock, report);
    out.held.store(conditions.borrow().held, Ordering::Release);
    let mut last = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let mut watching = true;
    loop {
        let reading = !out.ended.load(Ordering::Acquire);
        if !reading && out.queued.load(Ordering::Acquire) == 0 {
            return;
        }
        tokio::select! {
            // Bound what is in flight: past it, the sender waits as on a full link.
            r = read_stamped(from.as_ref(), &mut buf), if reading && out.queued.load(Ordering::Acquire) < delay_line::LIMIT => {
                let (n, arrived) = r.unwrap_or((0, None));
                let now = arrived.unwrap_or_else(Instant::now).max(not_before);
                let jitter = if link.jitter.is_zero() {
                    Duration::ZERO
                } else {
                    link.jitter.mul_f64(rand::random::<f64>())
                };
                let extra = conditions.borrow().extra;
                let mut due = (now + link.one_way + extra + jitter).max(last);
                if let Some(bps) = link.bandwidth {
                    // Serialisation delay: the burst occupies the link for len / bandwidth.
                    due += Duration::from_secs_f64(n as f64 / bps as f64);
                }
                last = due;
                if n == 0 {
                    out.ended.store(true, Ordering::Release);
                }
                delay_line::send_at(due, &out, (n > 0).then(|| Bytes::copy_from_slice(&buf[..n])));
            }
            _ = out.wake.notified() => {
                if !drain(&out, &mut to).await {
                    return;
                }
            }
            changed = conditions.changed(), if watching => {
                if changed.is_err() {
                    // Nobody can change the conditions any more: keep the current ones.
                    watching = false;
                    continue;
                }
                let held = conditions.borrow().held;
                out.held.store(held, Ordering::Release);
                if !held {
                    out.wake.notify_one();
                }
            }
        }
    }
}

/// Writes the backlog out in order (unless a partition holds it). False once the
/// connection has failed.
async fn drain(out: &Outbox, to: &mut tokio::net::tcp::OwnedWriteHalf) -> bool {
    loop {
        if out.held.load(Ordering::Acquire) {
            return true;
        }
        // The front stays queued while it is written, so the delay line keeps newer
        // chunks behind it.
        let front = {
            let st = out.state();
            if st.failed {
                return false;
            }
            match st.backlog.front() {
                None => return true,
                Some(chunk) => chunk.clone(),
            }
        };
        match front {
            Some(bytes) => {
                if to.write_all(&bytes).await.is_err() {
                    out.state().failed = true;
                    return false;
                }
                out.report(bytes.len() as u64, None);
            }
            None => {
                let _ = to.shutdown().await;
            }
        }
        out.state().backlog.pop_front();
        out.done();
    }
}

/// A second descriptor for the same socket, for the delay line to write on. It shares
/// the original's non-blocking mode.
fn duplicate(s: &TcpStream) -> std::io::Result<std::net::TcpStream> {
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor we hold returns a new descriptor we own.
    let fd = unsafe { libc::fcntl(s.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    Ok(unsafe { std::net::TcpStream::from_raw_fd(fd) })
}

/// Asks the kernel to stamp received data with its arrival time (SO_TIMESTAMPNS).
fn stamp_arrivals(s: &TcpStream) {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt with a pointer to a live c_int and its size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Reads what is there, with the moment the kernel received it when it says so.
async fn read_stamped(s: &TcpStream, buf: &mut [u8]) -> std::io::Result<(usize, Option<Instant>)> {
    loop {
        s.readable().await?;
        match s.try_io(Interest::READABLE, || recv_stamped(s.as_raw_fd(), buf)) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

fn recv_stamped(fd: RawFd, buf: &mut [u8]) -> std::io::Result<(usize, Option<Instant>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for one timespec control message, aligned for cmsghdr.
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: recvmsg into buffers we own, sized as declared.
    let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut arrived = None;
    // SAFETY: walking the control buffer the kernel filled, with the libc macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            // The message type is the option's own number (SCM_TIMESTAMPNS is defined as
            // SO_TIMESTAMPNS).
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                arrived = instant_of(&ts);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, arrived))
}

/// The monotonic moment of a wall-clock kernel timestamp: now, less how long ago it was.
fn instant_of(ts: &libc::timespec) -> Option<Instant> {
    let at = std::time::UNIX_EPOCH
        + Duration::new(
            u64::try_from(ts.tv_sec).ok()?,
            u32::try_from(ts.tv_nsec).ok()?,
        );
    let age = std::time::SystemTime::now().duration_since(at).ok()?;
    // A stamp older than a second is not a fresh arrival (a clock step): ignore it.
    (age < Duration::from_secs(1)).then(|| Instant::now() - age)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Bytes that sat in the socket before the relay read them are stamped with when they
    /// arrived, so the relay's own wake-up does not delay them further.
    #[tokio::test]
    async fn reads_carry_the_kernels_arrival_time() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        stamp_arrivals(&server);
        // The kernel turns stamping on shortly after the first socket asks (from a work
        // queue), so the first reads may come unstamped: try a few times.
        for _ in 0..20 {
            client.write_all(b"hello").await.unwrap();
            let sent = Instant::now();
            std::thread::sleep(Duration::from_millis(30));
            let mut buf = [0u8; 16];
            let (n, arrived) = read_stamped(&server, &mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"hello");
            let Some(arrived) = arrived else { continue };
            let read_at = Instant::now();
            assert!(
                read_at.duration_since(arrived) >= Duration::from_millis(25),
                "stamped {:?} before the read",
                read_at.duration_since(arrived)
            );
            assert!(arrived <= sent + Duration::from_millis(5));
            return;
        }
        panic!("the kernel never stamped the data");
    }
}

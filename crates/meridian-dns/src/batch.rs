//! UDP in batches: one `recvmmsg` takes up to BATCH queries and one `sendmmsg` sends their
//! answers, so a busy server pays two system calls per batch instead of two per packet.
//! Every buffer and header is allocated once and reused, so a batch of cached answers
//! allocates nothing.

use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::os::fd::AsRawFd;

pub const BATCH: usize = 32;
const BUF: usize = 4096;

/// Buffers for one batch, reused across calls.
pub struct Batch {
    bufs: Vec<[u8; BUF]>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    lens: Vec<usize>,
    /// One answer buffer per packet slot; they keep their capacity between batches.
    replies: Vec<Vec<u8>>,
    /// Headers for the answers of the current batch: the first `ready` are filled in.
    send_iovs: Vec<libc::iovec>,
    send_hdrs: Vec<libc::mmsghdr>,
    ready: usize,
}

// The raw pointers inside point into the batch's own vectors, which never move after
// `new` (they are never resized), and a batch is used by one thread at a time.
unsafe impl Send for Batch {}

impl Batch {
    pub fn new() -> Self {
        let mut b = Batch {
            bufs: vec![[0u8; BUF]; BATCH],
            // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
            addrs: vec![unsafe { MaybeUninit::zeroed().assume_init() }; BATCH],
            iovs: Vec::with_capacity(BATCH),
            hdrs: Vec::with_capacity(BATCH),
            lens: vec![0; BATCH],
            replies: (0..BATCH).map(|_| Vec::with_capacity(512)).collect(),
            send_iovs: Vec::with_capacity(BATCH),
            send_hdrs: Vec::with_capacity(BATCH),
            ready: 0,
        };
        for i in 0..BATCH {
            b.iovs.push(libc::iovec {
                iov_base: b.bufs[i].as_mut_ptr().cast(),
                iov_len: BUF,
            });
        }
        for i in 0..BATCH {
            // SAFETY: mmsghdr is plain data; the pointers are set right below.
            let mut h: libc::mmsghdr = unsafe { MaybeUninit::zeroed().assume_init() };
            h.msg_hdr.msg_name = (&mut b.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            h.msg_hdr.msg_iov = &mut b.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            b.hdrs.push(h);
        }
        for i in 0..BATCH {
            b.send_iovs.push(libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            });
            // SAFETY: plain data; filled in per answer by `answer_all`.
            let mut h: libc::mmsghdr = unsafe { MaybeUninit::zeroed().assume_init() };
            h.msg_hdr.msg_iov = &mut b.send_iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            b.send_hdrs.push(h);
        }
        b
    }

    /// Waits for at least one datagram (or `wake_receivers`) and takes as many as are
    /// queued, up to BATCH. Returns how many arrived (once woken for shutdown: at most one,
    /// empty).
    pub fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovs[i].iov_len = BUF;
            self.hdrs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
        }
        // SAFETY: every header points at live buffers owned by self, sized as declared.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for i in 0..n {
            self.lens[i] = self.hdrs[i].msg_len as usize;
        }
        Ok(n)
    }

    fn peer(&self, i: usize) -> Option<IpAddr> {
        let a = &self.addrs[i];
        match i32::from(a.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says this storage holds a sockaddr_in.
                let v4 =
                    unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says this storage holds a sockaddr_in6.
                let v6 =
                    unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
                Some(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)))
            }
            _ => None,
        }
    }

    /// Calls `answer(packet, sender, reply)` for each of the `n` received packets; a true
    /// return queues `reply` to go back to the sender on the next `send`. Returns how many
    /// were queued.
    pub fn answer_all(
        &mut self,
        n: usize,
        mut answer: impl FnMut(&[u8], IpAddr, &mut Vec<u8>) -> bool,
    ) -> usize {
        self.ready = 0;
        for i in 0..n.min(BATCH) {
            let Some(peer) = self.peer(i) else { continue };
            let reply = &mut self.replies[i];
            if !answer(&self.bufs[i][..self.lens[i]], peer, reply) {
                continue;
            }
            let k = self.ready;
            self.send_iovs[k].iov_base = reply.as_mut_ptr().cast();
            self.send_iovs[k].iov_len = reply.len();
            let h = &mut self.send_hdrs[k].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = self.hdrs[i].msg_hdr.msg_namelen;
            self.ready += 1;
        }
        self.ready
    }

    /// Sends the answers queued by the last `answer_all`, in as few calls as the kernel
    /// allows.
    pub fn send(&mut self, sock: &UdpSocket) {
        let mut sent = 0;
        while sent < self.ready {
            // SAFETY: the first `ready` headers point at `send_iovs`, `addrs` and `replies`,
            // none of which has been touched since `answer_all` filled them in.
            let n = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    self.send_hdrs[sent..].as_mut_ptr(),
                    (self.ready - sent) as u32,
                    0,
                )
            };
            if n <= 0 {
                // A send error (say, an ICMP-unreachable peer) drops that one answer.
                sent += 1;
                continue;
            }
            sent += n as usize;
        }
        self.ready = 0;
    }
}

/// Wakes every thread blocked receiving on `sock` (and makes later receives return 0 at
/// once) so the threads can stop. Linux wakes the waiters of an unconnected UDP socket on
/// shutdown(SHUT_RD) even though the call itself reports ENOTCONN.
pub fn wake_receivers(sock: &UdpSocket) {
    // SAFETY: shutdown on a descriptor we own; the result is deliberately ignored.
    unsafe {
        libc::shutdown(sock.as_raw_fd(), libc::SHUT_RD);
    }
}

/// Socket options for a busy authoritative server: deep buffers so bursts are not
/// dropped, and the don't-fragment bit on answers (answers fit 1232 bytes; with DF set the
/// kernel also skips choosing an IP ID per packet).
pub fn tune(sock: &UdpSocket) {
    let set = |level, name, value: libc::c_int| unsafe {
        // SAFETY: setsockopt with a pointer to a live c_int and its size.
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    set(libc::SOL_SOCKET, libc::SO_RCVBUF, 4 << 20);
    set(libc::SOL_SOCKET, libc::SO_SNDBUF, 4 << 20);
    set(
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_DO,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_blocked_receiver_wakes_for_shutdown() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let clone = sock.try_clone().unwrap();
        let woken = Arc::new(AtomicBool::new(false));
        let seen = woken.clone();
        let waiter = std::thread::spawn(move || {
            let mut batch = Batch::new();
            let n = batch.recv(&clone).unwrap();
            let lens: Vec<usize> = (0..n).map(|i| batch.lens[i]).collect();
            (lens, seen.load(Ordering::SeqCst))
        });
        std::thread::sleep(Duration::from_millis(100));
        assert!(!waiter.is_finished(), "recv blocks while nothing arrives");
        woken.store(true, Ordering::SeqCst);
        wake_receivers(&sock);
        let (lens, after_wake) = waiter.join().unwrap();
        assert!(after_wake, "recv returned only once woken");
        // The kernel reports the end of input as at most one empty datagram, which the
        // server drops as too short to be a query.
        assert!(lens.iter().all(|&l| l == 0), "{lens:?}");
    }

    #[test]
    fn answers_go_back_to_their_senders() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let clients: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for (i, c) in clients.iter().enumerate() {
            c.send_to(&[i as u8; 3], server.local_addr().unwrap())
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
        let mut batch = Batch::new();
        let n = batch.recv(&server).unwrap();
        assert_eq!(n, 3, "one receive takes every queued datagram");
        let queued = batch.answer_all(n, |packet, peer, reply| {
            assert_eq!(peer, IpAddr::V4(Ipv4Addr::LOCALHOST));
            reply.clear();
            reply.extend_from_slice(b"re:");
            reply.extend_from_slice(packet);
            packet[0] != 1 // the second sender gets no answer
        });
        assert_eq!(queued, 2);
        batch.send(&server);
        let mut buf = [0u8; 16];
        for (i, c) in clients.iter().enumerate() {
            c.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            match c.recv(&mut buf) {
                Ok(len) => assert_eq!(&buf[..len], [b"re:".as_slice(), &[i as u8; 3]].concat()),
                Err(_) => assert_eq!(i, 1, "only the dropped query goes unanswered"),
            }
        }
    }
}

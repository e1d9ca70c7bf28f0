//! The writer endpoint in the kernel. A relay in userspace pays two wake-ups and four
//! system calls per round trip, which on a busy host is a fifth of what PostgreSQL itself
//! spends on a short query (pgbench select-only through the relay: 0.8x of direct). Where
//! the keeper may program netfilter (root, `nft` installed), connections made on this host
//! to the writer endpoint are rewritten to the current primary instead, as kube-proxy
//! does for a Service: the destination to the primary (DNAT), the source to the endpoint's
//! own address (SNAT) so that the primary, and the WAN between regions, see them leave
//! from the endpoint's node as relayed ones did.
//!
//! When the primary changes, a session rewritten to the old one is cut on both sides: the
//! sessions are held while every local client socket connected to the endpoint is aborted
//! (`ss -K`, whose resets reach the old primary), and from then on any packet of an old
//! session, either way, is answered with a reset. Connections from other hosts, and every
//! connection when the kernel path is not available, go to the relay listening on the
//! same address.
//!
//! The rules live in a table of their own per endpoint, owned by an `nft -i` process the
//! keeper holds: when the keeper ends, however it ends, its input closes, that process
//! exits, and the kernel deletes the table with it. No rule outlives its keeper.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::watch;

/// Why the kernel path is not taken (the relay serves instead).
#[derive(Debug, thiserror::Error)]
pub(crate) enum NatError {
    #[error("not running as root")]
    NotRoot,
    #[error("`nft` is not installed (apt-get install nftables)")]
    NoNft,
    #[error("cannot start `{nft}`: {source}")]
    Spawn {
        nft: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("nft refused the rules: {0}")]
    Refused(String),
    #[error("nft did not answer: {0}")]
    Unanswered(String),
}

/// The rules of one writer endpoint, and the `nft` process that owns them.
pub(crate) struct KernelNat {
    writer: SocketAddr,
    table: String,
    family: &'static str,
    session: Nft,
    ss: Option<PathBuf>,
    /// Where connections are rewritten to now; unknown (the outer None) until the first
    /// `point`, since a keeper started again may find its predecessor's sessions.
    current: Option<Option<SocketAddr>>,
}

impl KernelNat {
    /// Creates the endpoint's table, leading nowhere yet. Fails when this process may not
    /// program netfilter or `nft` is missing; the caller then relays in userspace.
    pub async fn open(writer: SocketAddr) -> Result<KernelNat, NatError> {
        if !meridian_os::is_root() {
            return Err(NatError::NotRoot);
        }
        let nft = meridian_os::find_program("nft").ok_or(NatError::NoNft)?;
        let family = family(writer.ip());
        let table = table_name(writer);
        let mut session = Nft::start(nft, family, &table)?;
        session.apply(&create(family, &table, writer)).await?;
        Ok(KernelNat {
            writer,
            table,
            family,
            session,
            ss: meridian_os::find_program("ss"),
            current: None,
        })
    }

    /// Rewrites new connections to `target` (none: they reach the relay, which closes
    /// them) and cuts every session that leads elsewhere.
    pub async fn point(&mut self, target: Option<SocketAddr>) -> Result<(), NatError> {
        // A primary of the other family cannot be reached by rewriting one address: the
        // relay takes those connections.
        let target = target.filter(|t| family(t.ip()) == self.family);
        if self.current == Some(target) {
            return Ok(());
        }
        if self.current != Some(None) {
            // First nothing is rewritten and the rewritten sessions are held: what their
            // clients send is dropped (a reset would end the client's socket and leave the
            // old primary's side open, holding its locks), what the old primary sends is
            // answered with a reset. Then the local clients still connected are aborted,
            // and their resets reach the old primary: the only sessions to the endpoint
            // now are the old primary's (and any the relay opened in these milliseconds),
            // so none to the new one is aborted with them.
            self.current = None;
            self.session
                .apply(&point(
                    self.family,
                    &self.table,
                    self.writer,
                    None,
                    Cut::Hold,
                ))
                .await?;
            cut_local_sessions(self.ss.as_deref(), self.writer).await;
        }
        self.session
            .apply(&point(
                self.family,
                &self.table,
                self.writer,
                target,
                Cut::Reset,
            ))
            .await?;
        self.current = Some(target);
        Ok(())
    }

    /// Ends the `nft` process and waits for it: its table, and the rewrite in it, are
    /// gone when this returns.
    async fn close(self) {
        self.session.close().await;
    }
}

/// Aborts this host's client sockets connected to the writer endpoint at `writer`, so a
/// client waiting on an old primary (frozen, or cut off) learns at once, as a relay's
/// close would tell it, instead of at its next packet; each abort sends the old primary a
/// reset.
async fn cut_local_sessions(ss: Option<&std::path::Path>, writer: SocketAddr) {
    let Some(ss) = ss else {
        tracing::warn!(
            "no `ss` (apt-get install iproute2) to cut the sessions of {writer}: clients waiting on the old primary learn at their next packet"
        );
        return;
    };
    let dst = match writer.ip() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let dport = format!(":{}", writer.port());
    let cut = tokio::process::Command::new(ss)
        .args([
            "-K", "-t", "-n", "-H", "dst", &dst, "and", "dport", "=", &dport,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    match tokio::time::timeout(Duration::from_secs(5), cut).await {
        Ok(Ok(status)) if status.success() => {}
        Ok(Ok(status)) => tracing::warn!(
            "`ss -K` could not cut the sessions of {writer} ({status}): clients waiting on the old primary learn at their next packet"
        ),
        Ok(Err(e)) => tracing::warn!("cannot cut the sessions of {writer}: {e}"),
        Err(_) => tracing::warn!("`ss -K` did not cut the sessions of {writer} within 5 s"),
    }
}

/// Why this machine's writer endpoints will relay in userspace, when they will: one line
/// for `up` to print before it starts the database nodes.
pub fn kernel_path_missing() -> Option<String> {
    const SLOWER: &str = "the database writer endpoints will relay in userspace (about 0.8x of direct in bench/db.sh)";
    if !meridian_os::is_root() {
        return Some(format!(
            "{SLOWER}: run as root with nftables installed to forward them in the kernel"
        ));
    }
    if meridian_os::find_program("nft").is_none() {
        return Some(format!(
            "{SLOWER}: install nftables (`apt-get install nftables`) to forward them in the kernel"
        ));
    }
    None
}

/// Keeps the rules of the writer endpoint at `writer` pointed at whoever `leader` names,
/// for as long as the returned future runs. Says once, in one line, when the kernel path
/// is not available: the relay then serves every connection.
pub(crate) async fn follow(
    name: String,
    writer: SocketAddr,
    mut leader: watch::Receiver<Option<SocketAddr>>,
) {
    // A keeper started again right after its predecessor was killed may find the old
    // table still there for a moment, until that `nft` has seen its input close.
    let mut opened = KernelNat::open(writer).await;
    for _ in 0..10 {
        if !matches!(opened, Err(NatError::Refused(_))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        opened = KernelNat::open(writer).await;
    }
    let mut nat = match opened {
        Ok(nat) => nat,
        Err(e) => {
            tracing::info!(
                "{name}: the writer endpoint {writer} relays in userspace ({e}); run as root with nftables installed to forward it in the kernel"
            );
            return;
        }
    };
    tracing::info!("{name}: the writer endpoint {writer} is forwarded in the kernel (nftables)");
    loop {
        let target = *leader.borrow_and_update();
        if let Err(e) = nat.point(target).await {
            // Closing deletes the rules: new connections reach the relay. The sessions
            // rewritten so far keep their rewrite in the kernel's connection tracking, so
            // they are cut after that; the relay cuts its own on every change.
            let ss = nat.ss.clone();
            nat.close().await;
            cut_local_sessions(ss.as_deref(), writer).await;
            tracing::warn!(
                "{name}: the writer endpoint {writer} falls back to relaying in userspace: {e}"
            );
            return;
        }
        if leader.changed().await.is_err() {
            return;
        }
    }
}

fn family(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "ip",
        IpAddr::V6(_) => "ip6",
    }
}

/// One table per endpoint: `meridian_writer_127_84_1_60_5434`.
fn table_name(writer: SocketAddr) -> String {
    let ip: String = writer
        .ip()
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("meridian_writer_{ip}_{}", writer.port())
}

/// The matches that pick a connection made to `writer` and rewritten.
fn rewritten(family: &str, writer: SocketAddr) -> String {
    format!(
        "meta l4proto tcp ct original {family} daddr {} ct original proto-dst {} ct status dnat",
        writer.ip(),
        writer.port()
    )
}

/// The table and its chains: rewriting in `output` (this host's own connections), the
/// source in `postrouting`, and the cut in `output` before the rewrite, where a reset
/// still carries the addresses the client knows, and in `input` for what an old primary
/// on another host sends.
fn create(family: &str, table: &str, writer: SocketAddr) -> String {
    let rewritten = rewritten(family, writer);
    let w = writer.ip();
    [
        format!("add table {family} {table} {{ flags owner; }}"),
        format!("add chain {family} {table} to_primary {{ type nat hook output priority -100; policy accept; }}"),
        format!("add chain {family} {table} from_endpoint {{ type nat hook postrouting priority 100; policy accept; }}"),
        format!("add rule {family} {table} from_endpoint {rewritten} snat to {w}"),
        format!("add chain {family} {table} cut {{ type filter hook output priority -150; policy accept; }}"),
        format!("add chain {family} {table} cut_in {{ type filter hook input priority -150; policy accept; }}"),
    ]
    .join("\n")
}

/// What the cut does to a rewritten session's packets.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cut {
    /// While a change is under way: the client's packets are dropped (its socket must
    /// stay for `ss -K`, whose abort also resets the old primary), the old primary's get a
    /// reset.
    Hold,
    /// Both ways a reset.
    Reset,
}

/// Replaces the rewrite and the cut in one transaction (one line to `nft`).
fn point(
    family: &str,
    table: &str,
    writer: SocketAddr,
    target: Option<SocketAddr>,
    how: Cut,
) -> String {
    let rewritten = rewritten(family, writer);
    let mut cmds = vec![
        format!("flush chain {family} {table} to_primary"),
        format!("flush chain {family} {table} cut"),
        format!("flush chain {family} {table} cut_in"),
    ];
    // Resets and FINs pass: the resets the cut sends and `ss -K` sends must reach the old
    // primary, so that it ends those sessions (and lets go of their locks).
    let cut = |chain: &str| {
        format!(
            "add rule {family} {table} {chain} {rewritten} ct state {{ new, established }} tcp flags & (fin | rst) == 0"
        )
    };
    let cuts = [cut("cut"), cut("cut_in")];
    let verdicts: &[&str] = match how {
        Cut::Hold => &[
            "ct direction original drop",
            "ct direction reply reject with tcp reset",
        ],
        Cut::Reset => &["reject with tcp reset"],
    };
    match target {
        Some(t) => {
            let to = match t {
                SocketAddr::V4(v4) => v4.to_string(),
                SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
            };
            cmds.push(format!(
                "add rule {family} {table} to_primary {family} daddr {} tcp dport {} dnat to {to}",
                writer.ip(),
                writer.port()
            ));
            for cut in &cuts {
                for verdict in verdicts {
                    cmds.push(format!(
                        "{cut} ct reply {family} saddr != {} {verdict}",
                        t.ip()
                    ));
                    cmds.push(format!(
                        "{cut} ct reply proto-src != {} {verdict}",
                        t.port()
                    ));
                }
            }
        }
        None => {
            for cut in &cuts {
                for verdict in verdicts {
                    cmds.push(format!("{cut} {verdict}"));
                }
            }
        }
    }
    cmds.join("; ")
}

/// An `nft -i` process: commands go in on its input; after each batch, a listing of the
/// table shows the batch was read. Its errors come on the same pipe, in order, so an
/// `Error:` before the listing ends is this batch's.
struct Nft {
    // The table is owned by this process's netlink socket: it lives as long as this.
    child: Child,
    input: ChildStdin,
    output: Lines<BufReader<ChildStdout>>,
    /// `list table FAMILY NAME`, sent after each batch.
    list: String,
}

impl Nft {
    fn start(nft: PathBuf, family: &str, table: &str) -> Result<Nft, NatError> {
        let spawn = |source| NatError::Spawn {
            nft: nft.clone(),
            source,
        };
        let mut child = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(r#"exec "$0" -i 2>&1"#)
            .arg(&nft)
            // Interactive nft keeps a history in $HOME; these commands are not a person's.
            .env("HOME", "/nonexistent")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn)?;
        let missing = || spawn(std::io::Error::other("no pipe to the process"));
        let input = child.stdin.take().ok_or_else(missing)?;
        let output = BufReader::new(child.stdout.take().ok_or_else(missing)?).lines();
        Ok(Nft {
            child,
            input,
            output,
            list: format!("list table {family} {table}"),
        })
    }

    /// Ends the process and waits for it, and with it the table.
    async fn close(mut self) {
        if let Err(e) = self.child.kill().await {
            tracing::warn!("cannot end `nft -i`: {e}");
        }
    }

    /// Sends `commands`, waits until `nft` has read them, and fails with its first error.
    /// After a failure the session is not used again: the rest of its output is unread.
    async fn apply(&mut self, commands: &str) -> Result<(), NatError> {
        let batch = format!("{commands}\n{}\n", self.list);
        let answered = async {
            self.input.write_all(batch.as_bytes()).await?;
            self.input.flush().await?;
            // The listing ends with the table's closing brace (its chains' are indented).
            while let Some(line) = self.output.next_line().await? {
                if line == "}" {
                    return Ok(Ok(()));
                }
                if line.starts_with("Error:") {
                    return Ok(Err(NatError::Refused(line)));
                }
            }
            Err(std::io::Error::other("nft exited"))
        };
        match tokio::time::timeout(Duration::from_secs(5), answered).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => Err(NatError::Unanswered(e.to_string())),
            Err(_) => Err(NatError::Unanswered("no answer within 5 s".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn each_endpoint_has_a_table_named_after_it() {
        assert_eq!(
            table_name(addr("127.84.1.60:5434")),
            "meridian_writer_127_84_1_60_5434"
        );
        assert_eq!(table_name(addr("[::1]:5434")), "meridian_writer___1_5434");
    }

    #[test]
    fn a_primary_gets_the_rewrite_and_the_rest_is_cut() {
        let w = addr("127.84.1.60:5434");
        let rules = point("ip", "t", w, Some(addr("127.84.1.61:5432")), Cut::Reset);
        assert!(
            rules.contains("add rule ip t to_primary ip daddr 127.84.1.60 tcp dport 5434 dnat to 127.84.1.61:5432"),
            "{rules}"
        );
        assert!(
            rules.contains("ct reply ip saddr != 127.84.1.61 reject"),
            "{rules}"
        );
        assert!(
            rules.contains("ct reply proto-src != 5432 reject"),
            "{rules}"
        );
        // One transaction: the rewrite and the cut change together.
        assert!(!rules.contains('\n'));
        let none = point("ip", "t", w, None, Cut::Reset);
        assert!(!none.contains("dnat to"), "{none}");
        assert!(
            none.contains("tcp flags & (fin | rst) == 0 reject with tcp reset"),
            "{none}"
        );
        // Cut both ways: what this host sends, and what an old primary elsewhere sends.
        assert!(none.contains(" cut_in "), "{none}");
        // While a change is under way the clients' packets are only dropped: their
        // sockets stay for `ss -K`, whose resets reach the old primary.
        let hold = point("ip", "t", w, None, Cut::Hold);
        assert!(hold.contains("ct direction original drop"), "{hold}");
        assert!(
            hold.contains("ct direction reply reject with tcp reset"),
            "{hold}"
        );
        assert!(!hold.contains("original reject"), "{hold}");
    }

    /// A server that answers each line with its name and the address the connection
    /// came from, and counts the connections it has open.
    async fn named_server(
        at: &str,
        name: &'static str,
    ) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind(at).await.unwrap();
        let local = listener.local_addr().unwrap();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = open.clone();
        tokio::spawn(async move {
            while let Ok((conn, peer)) = listener.accept().await {
                let open = counted.clone();
                open.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let (r, mut w) = conn.into_split();
                    let mut lines = BufReader::new(r).lines();
                    while let Ok(Some(_)) = lines.next_line().await {
                        let answer = format!("{name} {}\n", peer.ip());
                        if w.write_all(answer.as_bytes()).await.is_err() {
                            break;
                        }
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        (local, open)
    }

    /// Whether a server's open connections drop to none within 3 s.
    async fn all_closed(open: &std::sync::atomic::AtomicUsize) -> bool {
        for _ in 0..30 {
            if open.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    async fn ask(conn: &mut BufReader<tokio::net::TcpStream>) -> std::io::Result<Option<String>> {
        conn.get_mut().write_all(b"who\n").await?;
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(3), conn.read_line(&mut line))
            .await
            .map_err(std::io::Error::other)??;
        Ok((n > 0).then(|| line.trim_end().to_owned()))
    }

    async fn connect(to: SocketAddr) -> std::io::Result<BufReader<tokio::net::TcpStream>> {
        Ok(BufReader::new(tokio::net::TcpStream::connect(to).await?))
    }

    /// As root with nftables (the test command installs it), the endpoint is rewritten in
    /// the kernel; otherwise opening it fails with a reason and the relay serves.
    #[tokio::test]
    async fn the_kernel_rewrites_to_the_primary_and_cuts_the_old_sessions() {
        let writer = addr("127.107.0.1:5434");
        let nat = KernelNat::open(writer).await;
        if !meridian_os::is_root() {
            let e = nat.err().expect("only root may program netfilter");
            eprintln!("not root: {e}");
            return;
        }
        let mut nat = nat.expect("as root with nftables the kernel path opens");
        let (one, one_open) = named_server("127.107.0.2:0", "one").await;
        let (two, _) = named_server("127.107.0.3:0", "two").await;

        nat.point(Some(one)).await.unwrap();
        let mut held = connect(writer).await.unwrap();
        // The primary sees the connection come from the endpoint's own address.
        assert_eq!(
            ask(&mut held).await.unwrap().as_deref(),
            Some("one 127.107.0.1")
        );

        // A client waiting for an answer from the old primary (frozen, say).
        let mut waiting = connect(writer).await.unwrap();
        assert!(ask(&mut waiting).await.unwrap().is_some());
        let waited = tokio::spawn(async move {
            let mut line = String::new();
            tokio::time::timeout(Duration::from_secs(3), waiting.read_line(&mut line)).await
        });

        nat.point(Some(two)).await.unwrap();
        // It hears of the cut at once, as a relay's close would tell it.
        let waited = waited.await.unwrap();
        assert!(
            matches!(waited, Ok(Err(_)) | Ok(Ok(0))),
            "the waiting client was not cut: {waited:?}"
        );
        // The session on the old primary is cut, not left talking to it.
        let after = ask(&mut held).await;
        assert!(
            !matches!(after, Ok(Some(ref line)) if line.starts_with("one")),
            "{after:?}"
        );
        let mut fresh = connect(writer).await.unwrap();
        assert_eq!(
            ask(&mut fresh).await.unwrap().as_deref(),
            Some("two 127.107.0.1")
        );
        // The old primary hears of it too (the resets are let through), so its sessions
        // end instead of holding what they hold.
        assert!(
            all_closed(&one_open).await,
            "the old primary still has its sessions"
        );
        // Changing nothing aborts nothing.
        nat.point(Some(two)).await.unwrap();
        assert_eq!(
            ask(&mut fresh).await.unwrap().as_deref(),
            Some("two 127.107.0.1")
        );

        // No primary: nothing is rewritten (nobody listens on the endpoint here).
        nat.point(None).await.unwrap();
        assert!(ask(&mut fresh).await.is_err() || connect(writer).await.is_err());
        assert!(
            connect(writer).await.is_err(),
            "a connection with no primary"
        );

        // The rules go with their keeper.
        drop(nat);
        let table = table_name(writer);
        let mut gone = false;
        for _ in 0..50 {
            let listed = std::process::Command::new(meridian_os::find_program("nft").unwrap())
                .args(["list", "table", "ip", &table])
                .output()
                .unwrap();
            if !listed.status.success() {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(gone, "the table outlived its keeper");
    }

    /// The middle of a change, step by step: a client that sends while sessions are held
    /// is not reset (that would end its socket and leave the old primary's side open);
    /// `ss -K` then ends both sides.
    #[tokio::test]
    async fn a_client_busy_during_a_change_is_cut_on_both_sides() {
        if !meridian_os::is_root() {
            return;
        }
        let writer = addr("127.107.1.1:5434");
        let mut nat = KernelNat::open(writer)
            .await
            .expect("the kernel path opens");
        let (one, one_open) = named_server("127.107.1.2:0", "one").await;
        nat.point(Some(one)).await.unwrap();
        let mut busy = connect(writer).await.unwrap();
        assert!(ask(&mut busy).await.unwrap().is_some());

        let hold = point(nat.family, &nat.table, writer, None, Cut::Hold);
        nat.session.apply(&hold).await.unwrap();
        let asked = tokio::time::timeout(Duration::from_millis(500), ask(&mut busy)).await;
        assert!(asked.is_err(), "held, not answered nor reset: {asked:?}");
        cut_local_sessions(nat.ss.as_deref(), writer).await;
        assert!(
            all_closed(&one_open).await,
            "the old primary kept the busy client's session"
        );
    }

    #[test]
    fn ipv6_targets_are_bracketed() {
        let rules = point(
            "ip6",
            "t",
            addr("[::1]:5434"),
            Some(addr("[::2]:5432")),
            Cut::Reset,
        );
        assert!(
            rules.contains("ip6 daddr ::1 tcp dport 5434 dnat to [::2]:5432"),
            "{rules}"
        );
        assert!(rules.contains("ct reply ip6 saddr != ::2"), "{rules}");
    }
}

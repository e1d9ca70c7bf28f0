//! A small Redis client speaking RESP2: enough for a keeper (AUTH, PING, INFO, REPLICAOF)
//! and for tests and applications that want GET and SET. Every call has a deadline, so a
//! frozen server (SIGSTOP) reads as unreachable instead of hanging the keeper.
//!
//! It is a crate of its own, below both the cache nodes (`meridian-redis`) and the
//! applications that use the cache (`meridian-demo`): an application must not depend on
//! the crate that runs the servers.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;

/// Longest bulk string accepted (Redis's own proto-max-bulk-len default is 512 MiB; a
/// keeper never needs more than INFO).
const MAX_BULK: usize = 64 << 20;
/// Most elements in one array, and how deep arrays may nest.
const MAX_ARRAY: usize = 1 << 20;
const MAX_DEPTH: usize = 8;
/// Longest status, error or number line.
const MAX_LINE: usize = 64 << 10;

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// A bulk or status reply as text.
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Status(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RespError {
    #[error("cannot connect to redis at {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("redis at {addr} did not answer within {} ms", waited.as_millis())]
    Timeout { addr: SocketAddr, waited: Duration },
    #[error("redis at {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("redis at {addr} sent a malformed reply: {what}")]
    Protocol { addr: SocketAddr, what: String },
    #[error("redis at {addr} refused {command}: {message}")]
    Refused {
        addr: SocketAddr,
        command: String,
        message: String,
    },
}

/// One connection to one Redis server.
pub struct Client {
    addr: SocketAddr,
    io: BufStream<TcpStream>,
    timeout: Duration,
}

impl Client {
    /// Connects, and authenticates when a password is given; every step, and every later
    /// call, must finish within `timeout`.
    pub async fn connect(
        addr: SocketAddr,
        password: Option<&str>,
        timeout: Duration,
    ) -> Result<Client, RespError> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Err(_) => {
                return Err(RespError::Timeout {
                    addr,
                    waited: timeout,
                })
            }
            Ok(Err(source)) => return Err(RespError::Connect { addr, source }),
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        let mut client = Client {
            addr,
            io: BufStream::new(stream),
            timeout,
        };
        if let Some(pw) = password {
            client.call(&["AUTH", pw]).await?;
        }
        Ok(client)
    }

    /// Connects and authenticates with the first of `passwords` the server takes, in
    /// order: during a password rotation a client holds the new one and the old one, and
    /// the server may not have the new one yet (or no longer the old one). An empty list
    /// connects without authenticating. Only a refused AUTH moves on to the next password;
    /// a connection that fails or stalls is the error.
    pub async fn connect_any<S: AsRef<str>>(
        addr: SocketAddr,
        passwords: &[S],
        timeout: Duration,
    ) -> Result<Client, RespError> {
        let mut client = Client::connect(addr, None, timeout).await?;
        let mut refused = None;
        for pw in passwords {
            match client.call(&["AUTH", pw.as_ref()]).await {
                Ok(_) => return Ok(client),
                Err(e @ RespError::Refused { .. }) => refused = Some(e),
                Err(e) => return Err(e),
            }
        }
        match refused {
            Some(e) => Err(e),
            None => Ok(client),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends one command and reads its reply; an error reply is `Refused`.
    pub async fn call(&mut self, args: &[&str]) -> Result<Reply, RespError> {
        let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.call_bytes(&bytes).await
    }

    pub async fn call_bytes(&mut self, args: &[&[u8]]) -> Result<Reply, RespError> {
        let addr = self.addr;
        let waited = self.timeout;
        let command = args
            .first()
            .map(|a| String::from_utf8_lossy(a).to_uppercase())
            .unwrap_or_default();
        let work = async {
            let mut out = Vec::with_capacity(64);
            out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
            for a in args {
                out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                out.extend_from_slice(a);
                out.extend_from_slice(b"\r\n");
            }
            self.io
                .write_all(&out)
                .await
                .map_err(|source| RespError::Io { addr, source })?;
            self.io
                .flush()
                .await
                .map_err(|source| RespError::Io { addr, source })?;
            read_reply(&mut self.io, addr, 0).await
        };
        match tokio::time::timeout(waited, work).await {
            Err(_) => Err(RespError::Timeout { addr, waited }),
            Ok(Err(RespError::Refused { addr, message, .. })) => Err(RespError::Refused {
                addr,
                command,
                message,
            }),
            Ok(r) => r,
        }
    }

    pub async fn ping(&mut self) -> Result<(), RespError> {
        match self.call(&["PING"]).await? {
            Reply::Status(s) if s == "PONG" => Ok(()),
            other => Err(self.unexpected("PING", &other)),
        }
    }

    /// `INFO` of one section (or "all"), as its `key:value` lines.
    pub async fn info(&mut self, section: &str) -> Result<Info, RespError> {
        let reply = self.call(&["INFO", section]).await?;
        match reply.text() {
            Some(text) => Ok(Info::parse(&text)),
            None => Err(self.unexpected("INFO", &reply)),
        }
    }

    pub async fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, RespError> {
        match self.call(&["GET", key]).await? {
            Reply::Bulk(v) => Ok(v),
            other => Err(self.unexpected("GET", &other)),
        }
    }

    pub async fn set(&mut self, key: &str, value: &[u8]) -> Result<(), RespError> {
        self.call_bytes(&[b"SET", key.as_bytes(), value]).await?;
        Ok(())
    }

    /// `SET key value PX ttl`: the key expires by itself, so a cache entry needs no
    /// invalidation. A TTL under a millisecond is rounded up to one.
    pub async fn set_with_ttl(
        &mut self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), RespError> {
        let millis = ttl.as_millis().max(1).to_string();
        self.call_bytes(&[b"SET", key.as_bytes(), value, b"PX", millis.as_bytes()])
            .await?;
        Ok(())
    }

    fn unexpected(&self, command: &str, reply: &Reply) -> RespError {
        RespError::Protocol {
            addr: self.addr,
            what: format!("unexpected answer to {command}: {reply:?}"),
        }
    }
}

type ReplyFuture<'a> = Pin<Box<dyn Future<Output = Result<Reply, RespError>> + Send + 'a>>;

fn read_reply<'a>(
    io: &'a mut BufStream<TcpStream>,
    addr: SocketAddr,
    depth: usize,
) -> ReplyFuture<'a> {
    Box::pin(async move {
        let bad = |what: String| RespError::Protocol { addr, what };
        let line = read_line(io, addr).await?;
        let (kind, rest) = line.split_at(1.min(line.len()));
        let number = || {
            rest.parse::<i64>()
                .map_err(|_| bad(format!("`{rest}` is not a length or integer")))
        };
        match kind {
            "+" => Ok(Reply::Status(rest.to_owned())),
            "-" => Err(RespError::Refused {
                addr,
                command: String::new(),
                message: rest.to_owned(),
            }),
            ":" => Ok(Reply::Int(number()?)),
            "$" => {
                let n = number()?;
                if n < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                if n > MAX_BULK {
                    return Err(bad(format!("a bulk string of {n} bytes")));
                }
                let mut buf = vec![0u8; n + 2];
                io.read_exact(&mut buf)
                    .await
                    .map_err(|source| RespError::Io { addr, source })?;
                if !buf.ends_with(b"\r\n") {
                    return Err(bad("a bulk string without its CRLF".into()));
                }
                buf.truncate(n);
                Ok(Reply::Bulk(Some(buf)))
            }
            "*" => {
                let n = number()?;
                if n < 0 {
                    return Ok(Reply::Array(None));
                }
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                if n > MAX_ARRAY || depth >= MAX_DEPTH {
                    return Err(bad(format!("an array of {n} at depth {depth}")));
                }
                let mut items = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    items.push(read_reply(io, addr, depth + 1).await?);
                }
                Ok(Reply::Array(Some(items)))
            }
            other => Err(bad(format!("unknown reply type `{other}`"))),
        }
    })
}

async fn read_line(io: &mut BufStream<TcpStream>, addr: SocketAddr) -> Result<String, RespError> {
    let mut buf = Vec::new();
    let n = (&mut *io)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut buf)
        .await
        .map_err(|source| RespError::Io { addr, source })?;
    if n == 0 {
        return Err(RespError::Io {
            addr,
            source: std::io::ErrorKind::UnexpectedEof.into(),
        });
    }
    if !buf.ends_with(b"\r\n") {
        return Err(RespError::Protocol {
            addr,
            what: "a line without CRLF (or longer than 64 KiB)".into(),
        });
    }
    buf.truncate(buf.len() - 2);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The `key:value` lines of an INFO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Info(pub HashMap<String, String>);

impl Info {
    pub fn parse(text: &str) -> Info {
        Info(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        self.get(key)?.parse().ok()
    }

    /// Redis's word for its role: `master` or `slave`.
    pub fn is_primary(&self) -> bool {
        self.get("role") == Some("master")
    }

    /// A replica's upstream, from `master_host` and `master_port`.
    pub fn primary(&self) -> Option<SocketAddr> {
        let host = self.get("master_host")?;
        let port = self.get("master_port")?;
        format!("{host}:{port}").parse().ok()
    }

    /// The `keys=` count of every `dbN` line.
    pub fn keys(&self) -> i64 {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with("db"))
            .filter_map(|(_, v)| v.split(',').find_map(|f| f.strip_prefix("keys=")))
            .filter_map(|n| n.parse::<i64>().ok())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_lines_parse() {
        let info = Info::parse(
            "# Replication\r\nrole:slave\r\nmaster_host:127.81.1.70\r\nmaster_port:6379\r\nmaster_link_status:up\r\n\r\n# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\ndb1:keys=2,expires=0\r\n",
        );
        assert!(!info.is_primary());
        assert_eq!(info.primary(), Some("127.81.1.70:6379".parse().unwrap()));
        assert_eq!(info.get("master_link_status"), Some("up"));
        assert_eq!(info.keys(), 5);
        assert_eq!(info.int("role"), None);
    }

    /// A server that answers every request with `reply`, once.
    async fn serve_once(reply: &'static [u8]) -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(reply).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        });
        addr
    }

    #[tokio::test]
    async fn replies_of_every_kind_and_bad_ones() {
        let t = Duration::from_secs(1);
        let addr = serve_once(b"*3\r\n$3\r\nabc\r\n:42\r\n$-1\r\n").await;
        let mut c = Client::connect(addr, None, t).await.unwrap();
        assert_eq!(
            c.call(&["X"]).await.unwrap(),
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"abc".to_vec())),
                Reply::Int(42),
                Reply::Bulk(None)
            ]))
        );
        let addr = serve_once(b"-WRONGPASS invalid password\r\n").await;
        let err = Client::connect(addr, Some("x"), t).await.err().unwrap();
        assert!(err.to_string().contains("refused AUTH: WRONGPASS"), "{err}");
        let addr = serve_once(b"$99999999999\r\n").await;
        let mut c = Client::connect(addr, None, t).await.unwrap();
        assert!(matches!(
            c.call(&["GET", "k"]).await,
            Err(RespError::Protocol { .. })
        ));
        let addr = serve_once(b"?what\r\n").await;
        let mut c = Client::connect(addr, None, t).await.unwrap();
        assert!(matches!(
            c.call(&["GET", "k"]).await,
            Err(RespError::Protocol { .. })
        ));
        // A server that never answers is a timeout, not a hang.
        let addr = serve_once(b"").await;
        let mut c = Client::connect(addr, None, Duration::from_millis(200))
            .await
            .unwrap();
        assert!(matches!(c.ping().await, Err(RespError::Timeout { .. })));
    }
}

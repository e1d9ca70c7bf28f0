//! Asking the peer keeper over its admin HTTP: one short request per call, with a
//! deadline, so a frozen peer reads as unreachable within the check interval.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest answer read (a role view is a few hundred bytes).
const MAX_ANSWER: u64 = 64 << 10;

/// Sends `method path` with the admin token; the status code and body, or None when the
/// peer did not answer in time.
pub(crate) async fn request(
    admin: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    timeout: Duration,
) -> Option<(u16, String)> {
    let work = async {
        let mut s = TcpStream::connect(admin).await.ok()?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {admin}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.take(MAX_ANSWER).read_to_end(&mut buf).await.ok()?;
        parse(&buf)
    };
    tokio::time::timeout(timeout, work).await.ok().flatten()
}

fn parse(raw: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Some((code, body))
}

fn dechunk(mut rest: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let n = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if n == 0 {
            return Some(out);
        }
        out.push_str(after.get(..n)?);
        rest = after.get(n + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_plain_and_chunked() {
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"),
            Some((200, "{}".into()))
        );
        assert_eq!(
            parse(b"HTTP/1.1 503 X\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"),
            Some((503, "abcde".into()))
        );
        assert_eq!(parse(b"garbage"), None);
    }
}

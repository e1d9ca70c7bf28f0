//! TLS to upstreams: the edge's pool opens `https://` origins with a handshake that
//! verifies the origin's certificate under the name it expects for that address, not the
//! address itself (a balancer behind a WAN relay is reached at the relay's address).

use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpStream;

/// How an upstream pool speaks TLS: the client config (which CA it trusts) and the
/// certificate name to verify for each origin address.
#[derive(Clone)]
pub struct OriginTls {
    pub connector: tokio_rustls::TlsConnector,
    pub names: Arc<HashMap<SocketAddr, rustls::pki_types::ServerName<'static>>>,
}

impl OriginTls {
    pub fn new(
        config: Arc<rustls::ClientConfig>,
        names: HashMap<SocketAddr, rustls::pki_types::ServerName<'static>>,
    ) -> Self {
        OriginTls {
            connector: tokio_rustls::TlsConnector::from(config),
            names: Arc::new(names),
        }
    }

    /// The same trust and names, offering `protocols` by ALPN (an HTTP/2-only pool must
    /// get `h2` from the server, not fall back to HTTP/1.1 under its feet).
    pub fn with_alpn(&self, protocols: Vec<Vec<u8>>) -> Self {
        let mut config = (**self.connector.config()).clone();
        config.alpn_protocols = protocols;
        OriginTls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            names: self.names.clone(),
        }
    }

    /// The name to verify for `addr`: the configured one, else the address itself.
    pub(crate) fn name_for(&self, addr: SocketAddr) -> rustls::pki_types::ServerName<'static> {
        self.names
            .get(&addr)
            .cloned()
            .unwrap_or_else(|| rustls::pki_types::ServerName::IpAddress(addr.ip().into()))
    }

    /// The TLS handshake over `tcp`; an unverifiable certificate is an error here, so
    /// the request is never sent.
    pub(crate) async fn handshake(
        &self,
        addr: SocketAddr,
        tcp: TcpStream,
    ) -> io::Result<UpstreamConn> {
        let tls = self.connector.connect(self.name_for(addr), tcp).await?;
        Ok(UpstreamConn::Tls(Box::new(TokioIo::new(tls))))
    }
}

/// A connection to an upstream: plain TCP or TLS over it.
pub enum UpstreamConn {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>),
}

impl Connection for UpstreamConn {
    fn connected(&self) -> Connected {
        match self {
            UpstreamConn::Plain(s) => s.connected(),
            UpstreamConn::Tls(s) => s.inner().get_ref().0.connected(),
        }
    }
}

impl hyper::rt::Read for UpstreamConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamConn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamConn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for UpstreamConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamConn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamConn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamConn::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamConn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamConn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamConn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

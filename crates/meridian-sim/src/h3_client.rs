//! A viewer's request over HTTP/3 on a new QUIC connection (`bench global --http3`): the
//! first-request cost of QUIC (one round trip for the transport and TLS together) to set
//! against a new TCP connection plus a TLS handshake.

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

type BoxedBody = http_body_util::combinators::BoxBody<Bytes, String>;

/// One request over a new QUIC connection from `source` to `addr` (UDP), as
/// `server_name`, trusting what `tls` trusts; the body is read whole.
pub(crate) async fn request(
    tls: &rustls::ClientConfig,
    server_name: &str,
    source: IpAddr,
    addr: SocketAddr,
    req: http::Request<()>,
) -> Result<http::Response<BoxedBody>, String> {
    let mut tls = tls.clone();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| e.to_string())?;
    let mut endpoint = quinn::Endpoint::client(SocketAddr::new(source, 0))
        .map_err(|e| format!("UDP from {source}: {e}"))?;
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let result = async {
        let conn = endpoint
            .connect(addr, server_name)
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| format!("QUIC: {e}"))?;
        let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(conn))
            .await
            .map_err(|e| format!("HTTP/3: {e}"))?;
        let drive = tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        let (mut parts, ()) = req.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = format!("https://{server_name}{path}")
            .parse()
            .map_err(|e: http::uri::InvalidUri| e.to_string())?;
        parts.headers.remove(http::header::HOST);
        let mut stream = send
            .send_request(http::Request::from_parts(parts, ()))
            .await
            .map_err(|e| e.to_string())?;
        stream.finish().await.map_err(|e| e.to_string())?;
        let res = stream.recv_response().await.map_err(|e| e.to_string())?;
        let mut body = BytesMut::new();
        while let Some(mut chunk) = stream.recv_data().await.map_err(|e| e.to_string())? {
            body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
        }
        drive.abort();
        let body = Full::new(body.freeze()).map_err(|n| match n {}).boxed();
        Ok(res.map(|()| body))
    }
    .await;
    endpoint.close(0u32.into(), b"done");
    result
}

//! Certificates and the deployment CA rotate without a restart: a listener serves a
//! renewed certificate from its files, a client trusts a rotated CA and, during the grace,
//! the CA it replaced; after the grace the old CA's certificates are refused.

use meridian_http::{pki, tls};
use rustls::pki_types::ServerName;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const NAME: &str = "lb-r1.rotation.test";

fn state_dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("meridian-tls-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A TLS listener on loopback serving `cert`/`key` (re-read when they change).
async fn serve(cert: &Path, key: &Path) -> std::net::SocketAddr {
    let config = tls::server_config(&[tls::CertFiles {
        names: vec![NAME.into()],
        cert: cert.to_owned(),
        key: key.to_owned(),
    }])
    .unwrap();
    let acceptor = tls::acceptor(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut s) = acceptor.accept(tcp).await {
                    let _ = s.write_all(b"ok").await;
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    addr
}

/// A handshake with `client`: the certificate the server presented, or the error.
async fn handshake(
    client: &Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
) -> Result<Vec<u8>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(client.clone());
    let mut s = connector
        .connect(ServerName::try_from(NAME).unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.map_err(|e| e.to_string())?;
    assert_eq!(got, b"ok");
    let (_, conn) = s.get_ref();
    Ok(conn.peer_certificates().unwrap()[0].to_vec())
}

/// Polls `check` until it returns Some, for at most `limit`.
async fn within<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(t) = check().await {
            return t;
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_rotated_ca_and_reissued_certificates_take_effect_without_a_restart() {
    let d = state_dir("rotate");
    let names = vec![NAME.to_owned()];
    let (cert, key) = pki::ensure_lb_cert(&d, "r1", &names).unwrap();
    // A copy of the first pair, served by a second listener that nobody renews.
    let (old_cert, old_key) = (d.join("old-cert.pem"), d.join("old-key.pem"));
    std::fs::copy(&cert, &old_cert).unwrap();
    std::fs::copy(&key, &old_key).unwrap();
    let renewed = serve(&cert, &key).await;
    let stale = serve(&old_cert, &old_key).await;
    // Every handshake a full one: a resumed session would show the certificate of the
    // handshake it resumes, not the one the listener serves now.
    let mut client = (*pki::client_config(&pki::ca_cert_path(&d)).unwrap()).clone();
    client.resumption = rustls::client::Resumption::disabled();
    let client = Arc::new(client);
    let first = handshake(&client, renewed).await.unwrap();

    let grace = Duration::from_secs(5);
    let rotated_at = Instant::now();
    pki::rotate_ca(&d, grace).unwrap();
    assert!(pki::previous_ca_until(&pki::ca_cert_path(&d)).is_some());
    pki::issue_lb_cert(&d, "r1", &names).unwrap();
    // The listener serves the new certificate within a reload, and the client, which now
    // trusts the new CA, accepts it; every handshake on the way succeeds.
    let second = within(
        "the renewed certificate is served",
        Duration::from_secs(10),
        || async {
            let got = handshake(&client, renewed)
                .await
                .expect("trusted throughout");
            (got != first).then_some(got)
        },
    )
    .await;
    // During the grace, a certificate of the old CA is still trusted.
    assert!(
        rotated_at.elapsed() < grace,
        "the test ran too slowly to check the grace"
    );
    handshake(&client, stale)
        .await
        .expect("the old CA is trusted during the grace");

    // A damaged certificate file leaves the one in use.
    std::fs::write(&cert, "not a certificate").unwrap();
    tokio::time::sleep(meridian_http::secrets::RELOAD + Duration::from_millis(300)).await;
    assert_eq!(handshake(&client, renewed).await.unwrap(), second);

    // After the grace, the old CA is no longer trusted.
    let refused = within(
        "the old CA is refused after its grace",
        grace * 3,
        || async { handshake(&client, stale).await.err() },
    )
    .await;
    // The grace's end is kept in whole unix seconds: it may come up to 1 s early.
    assert!(
        rotated_at.elapsed() + Duration::from_secs(1) >= grace,
        "refused before the grace ended: {refused}"
    );
    assert!(refused.to_lowercase().contains("certificate"), "{refused}");
    let _ = std::fs::remove_dir_all(&d);
}

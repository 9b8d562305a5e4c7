//! HTTPS with rustls: a certificate made in the test, a client that trusts it, HTTP/1.1 and h2
//! chosen by ALPN, and start-up errors for bad files.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::{routing::get, Router};
use bytes::Bytes;
use callnext::serve::{Server, TlsConfig};
use callnext::Secure;
use callnext::{ConfigErrorKind, Stack};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

struct Files {
    dir: std::path::PathBuf,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    der: rustls::pki_types::CertificateDer<'static>,
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn certificate(name: &str) -> Files {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = std::env::temp_dir().join(format!("callnext-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    Files {
        dir,
        cert,
        key,
        der: made.cert.der().clone(),
    }
}

fn app() -> Router {
    Router::new().route(
        "/",
        get(
            |tls: Option<axum::Extension<Secure>>, version: http::Version| async move {
                format!("{version:?} tls={}", tls.is_some())
            },
        ),
    )
}

async fn connect(
    addr: std::net::SocketAddr,
    der: &rustls::pki_types::CertificateDer<'static>,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = connector.connect(name, tcp).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(alpn));
    stream
}

fn request(addr: std::net::SocketAddr) -> http::Request<Empty<Bytes>> {
    http::Request::get(format!("https://localhost:{}/", addr.port()))
        .header("host", format!("localhost:{}", addr.port()))
        .body(Empty::new())
        .unwrap()
}

async fn text(res: http::Response<hyper::body::Incoming>) -> String {
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test]
async fn https_serves_http1_and_h2_by_alpn() {
    let files = certificate("serve");
    let tls = TlsConfig::from_pem_files(&files.cert, &files.key).unwrap();
    let running = common::spawn(Server::new().tls(tls), Stack::new().service(app())).await;

    let stream = connect(running.addr, &files.der, b"http/1.1").await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let res = sender.send_request(request(running.addr)).await.unwrap();
    assert_eq!(text(res).await, "HTTP/1.1 tls=true");

    let stream = connect(running.addr, &files.der, b"h2").await;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let res = sender.send_request(request(running.addr)).await.unwrap();
    assert_eq!(text(res).await, "HTTP/2.0 tls=true");

    // Plain text on the TLS port is no request at all, and the server lives on.
    let mut plain = TcpStream::connect(running.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut plain, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut plain, &mut out),
    )
    .await
    .expect("closed");
    assert!(!String::from_utf8_lossy(&out).contains("200"));
    let stream = connect(running.addr, &files.der, b"http/1.1").await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let res = sender.send_request(request(running.addr)).await.unwrap();
    assert_eq!(res.status(), 200);
    running.stop().await;
}

#[test]
fn missing_and_invalid_files_are_one_line_errors() {
    let files = certificate("errors");
    let missing = files.dir.join("nope.pem");
    let err = TlsConfig::from_pem_files(&missing, &files.key).unwrap_err();
    assert_eq!(err.kind(), ConfigErrorKind::InvalidSetting);
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("invalid `tls_cert`: {}: ", missing.display())),
        "{message}"
    );
    assert!(!message.contains('\n'));

    // A key file given as the certificate holds no certificate.
    let err = TlsConfig::from_pem_files(&files.key, &files.key).unwrap_err();
    assert!(err.to_string().starts_with("invalid `tls_cert`: "), "{err}");

    // A certificate given as the key holds no key.
    let err = TlsConfig::from_pem_files(&files.cert, &files.cert).unwrap_err();
    assert!(err.to_string().starts_with("invalid `tls_key`: "), "{err}");

    // A key that is not the certificate's.
    let other = certificate("other");
    let err = TlsConfig::from_pem_files(&files.cert, &other.key).unwrap_err();
    assert!(err.to_string().starts_with("invalid `tls_key`: "), "{err}");
}

#[tokio::test]
async fn session_cookies_over_tls_are_secure() {
    use callnext::middleware::session::{Session, Sessions};
    let files = certificate("session");
    let tls = TlsConfig::from_pem_files(&files.cert, &files.key).unwrap();
    let sessions = Sessions::builder().secret([8u8; 64]).build().unwrap();
    let app = Router::new().route(
        "/",
        get(|s: Session| async move {
            s.insert("k", "v").await?;
            Ok::<_, callnext::HttpError>("ok")
        }),
    );
    let running = common::spawn(
        Server::new().tls(tls),
        Stack::new().hook(sessions).service(app),
    )
    .await;
    let stream = connect(running.addr, &files.der, b"http/1.1").await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let res = sender.send_request(request(running.addr)).await.unwrap();
    let set = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert_eq!(text(res).await, "ok");
    assert!(set.starts_with("id=") && set.contains("; Secure"), "{set}");
    running.stop().await;
}

//! The `callnext` binary: start-up, the seed over real sockets, metrics behind the stack, and
//! a clean exit on SIGINT.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{get, Server};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

fn message_is(line: &serde_json::Value, message: &str) -> bool {
    line["message"] == message
}

#[tokio::test]
async fn binary_serves_the_seed_and_exits_cleanly_on_sigint() {
    let mut server = Server::start(&["--drain-timeout", "5"]).await;
    let (parts, body) = get(&server.url("/items/1")).await;
    assert_eq!(parts.status, 200);
    assert_eq!(&body[..], br#"{"item_id":1}"#);
    assert_eq!(
        parts.headers["x-another-middleware"],
        "Processed by class-based middleware"
    );

    // A request in flight when SIGINT arrives still completes.
    let url = server.url("/");
    let in_flight = tokio::spawn(async move { get(&url).await });
    server
        .wait_for(|l| message_is(l, "Endpoint: read_root called."))
        .await;
    let status = Command::new("kill")
        .args(["-INT", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (parts, body) = in_flight.await.unwrap();
    assert_eq!(parts.status, 200);
    assert_eq!(&body[..], br#"{"message":"Hello World"}"#);
    server.wait_for(|l| message_is(l, "stopped")).await;
    let exit = tokio::task::spawn_blocking(move || {
        let status = server.child.wait();
        (status, server)
    });
    let (status, mut server) = exit.await.unwrap();
    assert!(status.unwrap().success());

    for expected in [
        "middleware",
        "Middleware: Request received",
        "AnotherAsyncMiddleware: Pre-processing",
        "Endpoint: read_item called.",
        "Middleware: Response processed",
        "AnotherAsyncMiddleware: Post-processing",
        "received SIGINT",
    ] {
        server.wait_for(|l| message_is(l, expected)).await;
    }
    let option = server
        .wait_for(|l| message_is(l, "AnotherAsyncMiddleware: Pre-processing"))
        .await;
    assert_eq!(option["option"], "default_value");
}

#[tokio::test]
async fn metrics_are_a_route_behind_the_stack() {
    let server = Server::start(&["--no-simulated-io"]).await;
    get(&server.url("/items/1")).await;
    let (parts, body) = get(&server.url("/metrics")).await;
    assert_eq!(parts.status, 200);
    // The seed's middlewares ran on the scrape: an auth middleware could protect it.
    assert_eq!(
        parts.headers["x-another-middleware"],
        "Processed by class-based middleware"
    );
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains(r#"http_requests_total{stack="main",method="GET",route="/items/{item_id}",status="200"} 1"#),
        "{text}"
    );
    let (parts, _) = get(&server.url("/metrics?x=1")).await;
    assert_eq!(parts.status, 200);

    let off = Server::start(&["--no-simulated-io", "--metrics-path", "off"]).await;
    let (parts, body) = get(&off.url("/metrics")).await;
    assert_eq!(parts.status, 404);
    assert_eq!(&body[..], br#"{"detail":"Not Found"}"#);
}

#[tokio::test]
async fn binary_bind_failure_is_one_line_and_nonzero_exit() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_callnext"))
            .args(["--port", &port.to_string(), "--log-level", "warn"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: cannot bind 127.0.0.1:{port}: ")),
        "{stderr}"
    );
    drop(taken);
}

#[tokio::test]
async fn a_metrics_path_that_is_not_a_path_is_refused() {
    let out = tokio::task::spawn_blocking(|| {
        Command::new(env!("CARGO_BIN_EXE_callnext"))
            .args(["--metrics-path", "metrics"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("must start with `/` or be `off`, got `metrics`"),
        "{stderr}"
    );
}

#[tokio::test]
async fn admin_routes_move_to_their_own_listener_with_admin_bind() {
    let mut server = Server::start(&["--no-simulated-io", "--admin-bind", "127.0.0.1:0"]).await;
    let line = server
        .wait_for(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("admin routes on http://"))
        })
        .await;
    let admin = line["message"].as_str().unwrap()["admin routes on http://".len()..].to_owned();

    // Not on the app's listener any more.
    let (parts, _) = get(&server.url("/metrics")).await;
    assert_eq!(parts.status, 404);
    let (parts, _) = get(&server.url("/health/ready")).await;
    assert_eq!(parts.status, 404);

    get(&server.url("/items/1")).await;
    let (parts, body) = get(&format!("http://{admin}/metrics")).await;
    assert_eq!(parts.status, 200);
    assert!(String::from_utf8_lossy(&body).contains(r#"route="/items/{item_id}",status="200"} 1"#));
    // The app's middlewares do not run there.
    assert!(!parts.headers.contains_key("x-another-middleware"));
    let (parts, body) = get(&format!("http://{admin}/health/live")).await;
    assert_eq!(parts.status, 200);
    assert_eq!(&body[..], br#"{"status":"ok"}"#);
    let (parts, _) = get(&format!("http://{admin}/health/ready")).await;
    assert_eq!(parts.status, 200);
}

#[cfg(unix)]
#[tokio::test]
async fn uds_serves_on_a_unix_socket_and_removes_it_on_exit() {
    use std::io::{Read, Write};
    let dir = std::env::temp_dir().join(format!("callnext-bin-uds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("seed.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_callnext"))
        .args([
            "--uds",
            path.to_str().unwrap(),
            "--no-simulated-io",
            "--log-format",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let expected = format!("listening on unix:{}", path.display());
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines
            .next()
            .expect("the server says where it listens")
            .unwrap();
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        if json["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(&expected))
        {
            break;
        }
    }
    let mut stream = std::os::unix::net::UnixStream::connect(&path).unwrap();
    stream
        .write_all(b"GET /items/5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with(r#"{"item_id":5}"#), "{response}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success());
    assert!(!path.exists(), "the socket file is removed on exit");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn every_response_sent_before_sigterm_is_in_the_access_log() {
    let dir = std::env::temp_dir().join(format!("callnext-bin-alog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("access.log");
    let config = dir.join("callnext.toml");
    std::fs::write(
        &config,
        format!(
            "[middleware.request_id]\n\n[middleware.access_log]\npath = {:?}\n",
            log.display().to_string()
        ),
    )
    .unwrap();
    let mut server =
        Server::start(&["--config", config.to_str().unwrap(), "--no-simulated-io"]).await;
    let ok = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let url = server.url("/items/1");
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (ok, url) = (std::sync::Arc::clone(&ok), url.clone());
            tokio::spawn(async move {
                let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
                loop {
                    let Ok(Ok(res)) = tokio::time::timeout(
                        Duration::from_secs(10),
                        client.get(url.parse().unwrap()),
                    )
                    .await
                    else {
                        break;
                    };
                    if res.status() != 200 || res.into_body().collect().await.is_err() {
                        break;
                    }
                    ok.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            })
        })
        .collect();
    while ok.load(std::sync::atomic::Ordering::SeqCst) < 200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || {
        let status = server.child.wait();
        (status, server)
    });
    let (status, _server) = exit.await.unwrap();
    assert!(status.unwrap().success());
    for client in clients {
        client.await.unwrap();
    }
    let sent = ok.load(std::sync::atomic::Ordering::SeqCst);
    let written = std::fs::read_to_string(&log).unwrap();
    let records = written
        .lines()
        .filter(|l| l.contains("\"/items/1\""))
        .count() as u64;
    assert_eq!(
        records, sent,
        "responses received {sent}, records {records}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A supervisor's restart without refusing a connection: the parent binds, passes the
/// listening socket to the server it starts (as stdin with `--fd 0`; as systemd's first
/// socket, descriptor 3 with `LISTEN_FDS`/`LISTEN_PID`, taken without a flag), and connects
/// while the child is still starting: the connection waits in the socket's backlog and is
/// answered. A second child on the same socket after the first stops answers too.
#[cfg(unix)]
#[test]
fn a_listening_socket_passed_by_the_parent_is_served_from_the_first_connection() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let bin = env!("CARGO_BIN_EXE_callnext");
    let start = |systemd: bool| {
        let socket = std::os::fd::OwnedFd::from(listener.try_clone().unwrap());
        let mut command = if systemd {
            // The shell moves the socket to descriptor 3 and becomes the server (`exec` keeps
            // its process id, which LISTEN_PID names).
            let mut sh = Command::new("sh");
            sh.args([
                "-c",
                "exec 3<&0 0</dev/null; export LISTEN_PID=$$ LISTEN_FDS=1; exec \"$0\" \"$@\"",
                bin,
            ]);
            sh
        } else {
            let mut direct = Command::new(bin);
            direct.args(["--fd", "0"]);
            direct
        };
        command
            .args([
                "--no-simulated-io",
                "--log-format",
                "json",
                "--drain-timeout",
                "5",
            ])
            .stdin(Stdio::from(socket))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    for systemd in [false, true] {
        let mut child = start(systemd);
        // Connected and sent before the child has said anything: the kernel queues it.
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        stream
            .write_all(b"GET /items/7 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "{systemd}: {response}"
        );
        assert!(
            response.ends_with(r#"{"item_id":7}"#),
            "{systemd}: {response}"
        );

        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert!(child.wait().unwrap().success(), "{out}");
        let listening = format!("listening on http://{addr}");
        assert!(out.contains(&listening), "{systemd}: {out}");
        if systemd {
            assert!(out.contains("the socket systemd passed"), "{out}");
        }
    }
    // The parent's socket is still open after both children: it never refused anyone.
    assert!(listener.local_addr().is_ok());
}

/// Descriptors that were not passed, or are no listening socket, stop the start with a line
/// that says so.
#[cfg(unix)]
#[test]
fn a_descriptor_not_passed_is_a_clear_error() {
    for (args, expected) in [
        (&["--fd", "5"][..], "cannot serve on descriptor 5: not passed"),
        (&["--fd", "2"][..], "`server.fd`: expected -1 (bind host:port), 0 (stdin) or 3, 4, ... (systemd's LISTEN_FDS), got 2"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_callnext"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    // Stdin that is a file, not a socket.
    let out = Command::new(env!("CARGO_BIN_EXE_callnext"))
        .args(["--fd", "0"])
        .stdin(Stdio::from(
            std::fs::File::open(env!("CARGO_BIN_EXE_callnext")).unwrap(),
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot serve on descriptor 0: not a listening TCP or Unix socket"),
        "{stderr}"
    );
}

//! Helpers shared by the binary's tests: the binary on port 0 with its JSON log lines, and an
//! HTTP client.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;

/// The binary, started on port 0 with JSON logs; its log lines arrive on the channel.
pub struct Server {
    pub child: Child,
    lines: mpsc::UnboundedReceiver<serde_json::Value>,
    seen: Vec<serde_json::Value>,
    addr: String,
}

impl Server {
    pub async fn start(args: &[&str]) -> Self {
        Self::start_with(Command::new(env!("CARGO_BIN_EXE_callnext")), args).await
    }

    /// The binary run by `command` (say, `faketime -f +10m <binary>`) with `args`.
    pub async fn start_under(program: &str, before: &[&str], args: &[&str]) -> Self {
        let mut command = Command::new(program);
        command.args(before).arg(env!("CARGO_BIN_EXE_callnext"));
        Self::start_with(command, args).await
    }

    async fn start_with(mut command: Command, args: &[&str]) -> Self {
        // A group of its own: a wrapper (`env`, `faketime`) may run the binary as its child,
        // and dropping the server must end both.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .args(["--port", "0", "--log-format", "json"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap();
                let json = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
                if tx.send(json).is_err() {
                    break;
                }
            }
        });
        let mut server = Self {
            child,
            lines,
            seen: Vec::new(),
            addr: String::new(),
        };
        let listening = server
            .wait_for(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("listening on http://"))
            })
            .await;
        let message = listening["message"].as_str().unwrap();
        server.addr = message["listening on http://".len()..]
            .split(' ')
            .next()
            .unwrap()
            .to_owned();
        server
    }

    /// Waits for the first log line (seen before or later) that `pred` accepts.
    pub async fn wait_for(
        &mut self,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        if let Some(line) = self.seen.iter().find(|l| pred(l)) {
            return line.clone();
        }
        let found = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = self.lines.recv().await {
                self.seen.push(line.clone());
                if pred(&line) {
                    return line;
                }
            }
            panic!("the server's output ended; seen: {:?}", self.seen);
        })
        .await;
        found.unwrap_or_else(|_| panic!("log line never came; seen: {:?}", self.seen))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// Ends `child` and every process of its group (started with `process_group(0)`): a wrapper
/// and what it runs, a browser and its helpers.
pub fn kill_group(child: &mut Child) {
    #[cfg(unix)]
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

pub async fn get(url: &str) -> (http::response::Parts, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let res = tokio::time::timeout(Duration::from_secs(30), client.get(url.parse().unwrap()))
        .await
        .expect("request timed out")
        .expect("request failed");
    let (parts, body) = res.into_parts();
    (parts, body.collect().await.unwrap().to_bytes())
}

/// Runs the binary with `args` (on port 0, simulated I/O off), sends each raw request on a
/// connection of its own and reads its answer, then stops the server with SIGTERM (its drain
/// flushes what is queued) and returns what it wrote on stdout and the answers; panics if it
/// did not exit cleanly. Blocking: call it from `spawn_blocking` when the test serves
/// something on its own runtime.
pub fn serve_then_stop(args: &[&str], requests: &[Vec<u8>]) -> (String, Vec<Vec<u8>>) {
    use std::io::{Read, Write};
    let mut child = Command::new(env!("CARGO_BIN_EXE_callnext"))
        .args(["--port", "0", "--no-simulated-io"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut out = String::new();
    let addr = loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "no start: {out}");
        out.push_str(&line);
        if let Some(at) = line.find("listening on http://") {
            let rest = &line[at + "listening on http://".len()..];
            break rest
                .split(|c: char| c.is_whitespace() || c == '"')
                .next()
                .unwrap()
                .to_owned();
        }
    };
    let answers = requests
        .iter()
        .map(|request| {
            let mut stream = std::net::TcpStream::connect(&addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            stream.write_all(request).unwrap();
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
            answer
        })
        .collect();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    stdout.read_to_string(&mut out).unwrap();
    assert!(child.wait().unwrap().success(), "{out}");
    (out, answers)
}

/// A GET of `path` that closes its connection.
pub fn raw_get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()
}

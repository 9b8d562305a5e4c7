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
        #[cfg(unix)]
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

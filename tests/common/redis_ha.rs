//! Redis deployments a test starts for itself on free ports and can break: a three-master
//! cluster with one replica each, and a master with one replica watched by three sentinels.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free port on 127.0.0.1 whose cluster-bus port (10000 more) is free too: bound, read
/// back, let go.
fn free_port() -> u16 {
    loop {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A directory of the test's own for configuration and node files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "callnext-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `redis-cli -p port args…`, its output.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli (installed by .ci/run)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until `ready` holds, checking every 50 ms, for at most `limit`, or panics with
/// `what`.
pub async fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A field of `INFO replication` on the node at `port`.
fn replication_field(port: u16, field: &str) -> Option<String> {
    let info = cli(port, &["info", "replication"]);
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
}

/// Waits until the replica of the master at `port` has read up to the master's replication
/// offset now. (`WAIT` on a connection of its own would not do: it waits only for that
/// connection's writes.)
async fn replicate(port: u16) {
    let offset: u64 = replication_field(port, "master_repl_offset")
        .and_then(|v| v.parse().ok())
        .expect("the master's offset");
    let replica: u16 = replication_field(port, "slave0")
        .and_then(|v| {
            v.split(',')
                .find_map(|kv| kv.strip_prefix("port=")?.parse().ok())
        })
        .expect("the master has a replica");
    wait_until(
        "the replica has the master's writes",
        Duration::from_secs(10),
        || {
            replication_field(replica, "slave_repl_offset")
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|o| o >= offset)
        },
    )
    .await;
}

/// One redis-server process.
struct Node {
    port: u16,
    child: Option<Child>,
}

impl Node {
    fn spawn(port: u16, args: &[&str]) -> Self {
        let child = Command::new("redis-server")
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (installed by .ci/run)");
        Self {
            port,
            child: Some(child),
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of three masters, each with one replica, that fails over one second
/// after a master stops answering.
pub struct OwnCluster {
    nodes: Vec<Node>,
    dir: PathBuf,
}

impl OwnCluster {
    pub async fn start() -> Self {
        let dir = scratch("cluster");
        let mut nodes = Vec::new();
        for _ in 0..6 {
            let port = free_port();
            let conf = dir.join(format!("nodes-{port}.conf"));
            nodes.push(Node::spawn(
                port,
                &[
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    conf.to_str().unwrap(),
                    "--cluster-node-timeout",
                    "1000",
                    "--cluster-replica-validity-factor",
                    "0",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    dir.to_str().unwrap(),
                ],
            ));
        }
        for node in &nodes {
            wait_until("a cluster node answers", Duration::from_secs(20), || {
                cli(node.port, &["ping"]).trim() == "PONG"
            })
            .await;
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = tokio::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .await
            .expect("redis-cli --cluster create");
        assert!(
            created.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        let cluster = Self { nodes, dir };
        cluster.wait_healthy(Duration::from_secs(30)).await;
        cluster
    }

    /// `redis+cluster://` naming the three first nodes.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.nodes[..3]
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}/", hosts.join(","))
    }

    fn running(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.child.is_some())
    }

    /// Until every running node says the cluster is ok, each slot has a master that runs,
    /// and every replica of a running master is in sync.
    pub async fn wait_healthy(&self, limit: Duration) {
        wait_until("the cluster is healthy", limit, || {
            self.running().all(|n| {
                let info = cli(n.port, &["cluster", "info"]);
                let replication = cli(n.port, &["info", "replication"]);
                info.contains("cluster_state:ok")
                    && (replication.contains("role:master")
                        || replication.contains("master_link_status:up"))
            }) && (0..3).all(|i| self.master_of_slot(i * 5461).is_some())
        })
        .await;
    }

    /// The port of the running master that holds `slot`, by a running node's view.
    pub fn master_of_slot(&self, slot: u16) -> Option<u16> {
        let asker = self.running().next()?;
        let nodes = cli(asker.port, &["cluster", "nodes"]);
        nodes.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let flags = fields.get(2)?;
            if !flags.contains("master") || flags.contains("fail") {
                return None;
            }
            let port: u16 = fields[1].split(['@', ':']).nth(1)?.parse().ok()?;
            let owns = fields[8..].iter().any(|range| {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
            });
            (owns && self.running().any(|n| n.port == port)).then_some(port)
        })
    }

    /// The hash slot of `key`.
    pub fn slot(&self, key: &str) -> u16 {
        let asker = self.running().next().expect("a running node");
        cli(asker.port, &["cluster", "keyslot", key])
            .trim()
            .parse()
            .unwrap()
    }

    /// The number of keys on the node at `port`.
    pub fn keys_on(&self, port: u16) -> u64 {
        cli(port, &["dbsize"]).trim().parse().unwrap_or(0)
    }

    /// The ports of the running masters.
    pub fn masters(&self) -> Vec<u16> {
        self.running()
            .filter(|n| cli(n.port, &["role"]).starts_with("master"))
            .map(|n| n.port)
            .collect()
    }

    /// The port of the running master that holds a key matching `pattern`.
    pub fn master_holding(&self, pattern: &str) -> u16 {
        self.masters()
            .into_iter()
            .find(|port| {
                !cli(*port, &["--scan", "--pattern", pattern])
                    .trim()
                    .is_empty()
            })
            .unwrap_or_else(|| {
                let seen: Vec<String> = self
                    .running()
                    .map(|n| {
                        format!(
                            "{}: {} dbsize {}",
                            n.port,
                            cli(n.port, &["role"]).replace('\n', " "),
                            cli(n.port, &["dbsize"]).trim()
                        )
                    })
                    .collect();
                panic!("no master holds `{pattern}`: {seen:?}")
            })
    }

    /// Waits until the replica of the master at `port` has read everything the master has
    /// written, so that a failover keeps it.
    pub async fn replicate(&self, port: u16) {
        replicate(port).await;
    }

    /// Kills the node at `port` (SIGKILL).
    pub fn kill(&mut self, port: u16) {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of the cluster")
            .kill();
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A master with one replica, watched by three sentinels (quorum two) that fail over one
/// second after the master stops answering.
pub struct OwnSentinels {
    master: Node,
    replica: Node,
    sentinels: Vec<Node>,
    dir: PathBuf,
}

/// The name the sentinels know the master by.
pub const MASTER_NAME: &str = "mymaster";

impl OwnSentinels {
    pub async fn start() -> Self {
        let dir = scratch("sentinel");
        // The master writes its snapshot for the replica's full sync into `--dir`.
        let data = |port: u16| {
            vec![
                "--dir".to_owned(),
                dir.display().to_string(),
                "--port".to_owned(),
                port.to_string(),
                "--bind".to_owned(),
                "127.0.0.1".to_owned(),
                "--save".to_owned(),
                String::new(),
                "--appendonly".to_owned(),
                "no".to_owned(),
            ]
        };
        let spawn = |args: Vec<String>, port| {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Node::spawn(port, &args)
        };
        let (m, r) = (free_port(), free_port());
        let master = spawn(data(m), m);
        let mut replica_args = data(r);
        replica_args.extend([
            "--replicaof".to_owned(),
            "127.0.0.1".to_owned(),
            m.to_string(),
        ]);
        let replica = spawn(replica_args, r);
        wait_until("the replica is in sync", Duration::from_secs(20), || {
            cli(r, &["info", "replication"]).contains("master_link_status:up")
        })
        .await;
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let conf = dir.join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {m} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                     sentinel failover-timeout {MASTER_NAME} 5000\n",
                    dir = dir.display()
                ),
            )
            .unwrap();
            sentinels.push(spawn(
                vec![conf.to_str().unwrap().to_owned(), "--sentinel".to_owned()],
                port,
            ));
        }
        let own = Self {
            master,
            replica,
            sentinels,
            dir,
        };
        // A failover needs the sentinels to know each other and the replica.
        for s in &own.sentinels {
            wait_until(
                "the sentinels know each other",
                Duration::from_secs(30),
                || {
                    let state = cli(s.port, &["sentinel", "master", MASTER_NAME]);
                    let mut lines = state.lines();
                    let mut other_sentinels = None;
                    let mut replicas = None;
                    while let Some(line) = lines.next() {
                        match line {
                            "num-other-sentinels" => other_sentinels = lines.next(),
                            "num-slaves" => replicas = lines.next(),
                            _ => {}
                        }
                    }
                    other_sentinels == Some("2") && replicas == Some("1")
                },
            )
            .await;
        }
        own
    }

    /// `redis+sentinel://` naming the three sentinels and the master's name.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{MASTER_NAME}", hosts.join(","))
    }

    pub fn master_port(&self) -> u16 {
        self.master.port
    }

    pub fn replica_port(&self) -> u16 {
        self.replica.port
    }

    /// The master's port as the first sentinel names it now.
    pub fn named_master(&self) -> Option<u16> {
        let reply = cli(
            self.sentinels[0].port,
            &["sentinel", "get-master-addr-by-name", MASTER_NAME],
        );
        reply.lines().nth(1)?.trim().parse().ok()
    }

    /// Waits until the replica has read everything the master has written.
    pub async fn replicate(&self) {
        replicate(self.master.port).await;
    }

    /// Kills the master (SIGKILL) and waits until the sentinels name the replica.
    pub async fn fail_over(&mut self) {
        self.master.kill();
        let replica = self.replica.port;
        wait_until(
            "the sentinels name the replica",
            Duration::from_secs(60),
            || self.named_master() == Some(replica),
        )
        .await;
    }
}

impl Drop for OwnSentinels {
    fn drop(&mut self) {
        self.sentinels.clear();
        self.master.kill();
        self.replica.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

//! A Redis handle: one node, a cluster, or a master found through sentinels, each behind one
//! connection type the batteries' scripts and commands run on.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::ConfigError;

mod sentinel;

/// How long connecting to one node may take. Short: the batteries' store guards decide when
/// to try again, not a long wait inside the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A Redis deployment, connected on first use, cheap to clone. Three kinds, by URL:
///
/// - `redis://host:port/db` (and `rediss://`, `redis+unix://`): one server, through one
///   multiplexed connection that reconnects by itself;
/// - `redis+cluster://[user:password@]host1:port,host2:port/`: a Redis Cluster, found from any
///   of the nodes named; each command goes to the node that holds its key's hash slot, `MOVED`
///   and `ASK` are followed and the slot map is read again after a failover;
/// - `redis+sentinel://sentinel1:26379,sentinel2:26379/mymaster[/db]`: the master the
///   sentinels name for `mymaster` (any `user:password@` is the master's); after an error that
///   loses the connection, or a `READONLY` answer from a demoted master, the next command asks
///   the sentinels again.
///
/// ```
/// use callnext::backends::Redis;
///
/// let node = Redis::open("redis://127.0.0.1:6379/0")?;
/// let cluster = Redis::open("redis+cluster://10.0.0.1:7000,10.0.0.2:7000/")?;
/// let sentinel = Redis::open("redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster")?;
/// assert_eq!(cluster.url(), "redis+cluster://10.0.0.1:7000,10.0.0.2:7000/");
/// # let _ = (node, sentinel);
/// # Ok::<(), callnext::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    /// The URL as given, to tell handles apart (two passwords are two clients).
    #[cfg_attr(not(feature = "config"), allow(dead_code))]
    given: String,
    /// The URL with any password replaced by `***`.
    shown: String,
    topology: Topology,
}

enum Topology {
    Node {
        client: redis::Client,
        connection: tokio::sync::OnceCell<ConnectionManager>,
    },
    Cluster {
        client: redis::cluster::ClusterClient,
        connection: tokio::sync::OnceCell<ClusterConnection>,
    },
    Sentinel(sentinel::Master),
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Redis").field(&self.inner.shown).finish()
    }
}

impl Redis {
    /// A handle on the Redis deployment at `url` (see [`Redis`] for the three kinds).
    /// Connects on first use.
    ///
    /// # Errors
    ///
    /// A URL the `redis` crate cannot read, or a cluster or sentinel URL that names no host
    /// (or, for sentinels, no master name).
    pub fn open(url: &str) -> Result<Self, ConfigError> {
        let shown = crate::redact::redact_urls(url);
        let invalid = |err: &dyn std::fmt::Display| {
            ConfigError::invalid("store", format!("`{shown}`: {err}"))
        };
        let topology = if let Some(rest) = url.strip_prefix("redis+cluster://") {
            let (userinfo, hosts, path) = split_hosts(rest).map_err(|e| invalid(&e))?;
            if !matches!(path, "" | "0") {
                return Err(invalid(&"a Redis Cluster has only database 0"));
            }
            let nodes: Vec<String> = hosts
                .iter()
                .map(|host| format!("redis://{userinfo}{host}"))
                .collect();
            let client = redis::cluster::ClusterClientBuilder::new(nodes)
                .connection_timeout(CONNECT_TIMEOUT)
                .retries(3)
                .min_retry_wait(20)
                .max_retry_wait(200)
                .build()
                .map_err(|e| invalid(&e))?;
            Topology::Cluster {
                client,
                connection: tokio::sync::OnceCell::new(),
            }
        } else if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            let (userinfo, hosts, path) = split_hosts(rest).map_err(|e| invalid(&e))?;
            Topology::Sentinel(
                sentinel::Master::new(userinfo, &hosts, path).map_err(|e| invalid(&e))?,
            )
        } else {
            let client = redis::Client::open(url).map_err(|e| invalid(&e))?;
            Topology::Node {
                client,
                connection: tokio::sync::OnceCell::new(),
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                given: url.to_owned(),
                shown,
                topology,
            }),
        })
    }

    /// The URL, with any password replaced by `***` (for logs and error messages).
    pub fn url(&self) -> &str {
        &self.inner.shown
    }

    /// Whether this is a Redis Cluster: a script's keys must then share one hash slot.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.inner.topology, Topology::Cluster { .. })
    }

    /// Whether `url` is the URL this handle was opened with.
    #[cfg_attr(not(feature = "config"), allow(dead_code))]
    pub(crate) fn opened_with(&self, url: &str) -> bool {
        self.inner.given == url
    }

    /// The connection, connecting first if no request has yet.
    pub(crate) async fn connection(&self) -> redis::RedisResult<Connection> {
        match &self.inner.topology {
            Topology::Node { client, connection } => {
                let manager = connection
                    .get_or_try_init(|| {
                        // Reconnects are quick and few: the batteries' circuit breakers decide
                        // when to try again, not a long backoff inside the connection.
                        let config = ConnectionManagerConfig::new()
                            .set_connection_timeout(CONNECT_TIMEOUT)
                            .set_number_of_retries(2)
                            .set_factor(10)
                            .set_max_delay(200);
                        ConnectionManager::new_with_config(client.clone(), config)
                    })
                    .await?;
                Ok(Connection::Node(manager.clone()))
            }
            Topology::Cluster { client, connection } => {
                let cluster = connection
                    .get_or_try_init(|| client.get_async_connection())
                    .await?;
                Ok(Connection::Cluster(cluster.clone()))
            }
            Topology::Sentinel(master) => master.connection().await.map(Connection::Sentinel),
        }
    }
}

/// A URL's part after `scheme://` read as `[userinfo@]host:port,host:port[/path]`: the
/// userinfo with its `@` (or empty), the hosts, and the path without its leading `/`.
fn split_hosts(rest: &str) -> Result<(&str, Vec<&str>, &str), &'static str> {
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    let hosts: Vec<&str> = hosts.split(',').filter(|h| !h.is_empty()).collect();
    if hosts.is_empty() {
        return Err("no host in the URL");
    }
    Ok((userinfo, hosts, path.trim_end_matches('/')))
}

/// A connection to whichever kind of Redis a [`Redis`] is; commands and scripts run on it.
#[derive(Clone)]
pub(crate) enum Connection {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(sentinel::MasterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
            Self::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Self::Sentinel(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
            Self::Sentinel(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_and_sentinel_urls_name_their_hosts() {
        assert_eq!(
            split_hosts(":pw@a:7000,b:7001/"),
            Ok((":pw@", vec!["a:7000", "b:7001"], ""))
        );
        assert_eq!(
            split_hosts("s1:26379,s2:26379/mymaster/2"),
            Ok(("", vec!["s1:26379", "s2:26379"], "mymaster/2"))
        );
        assert_eq!(split_hosts("/mymaster"), Err("no host in the URL"));
    }

    #[test]
    fn bad_cluster_and_sentinel_urls_fail_when_opened() {
        let err = |url: &str| Redis::open(url).unwrap_err().to_string();
        assert_eq!(
            err("redis+cluster://:secret@a:7000/3"),
            "invalid `store`: `redis+cluster://:***@a:7000/3`: a Redis Cluster has only database 0"
        );
        assert_eq!(
            err("redis+sentinel://s1:26379/"),
            "invalid `store`: `redis+sentinel://s1:26379/`: no master name after the sentinels \
             (`redis+sentinel://host:26379,host:26379/mymaster`)"
        );
        assert_eq!(
            err("redis+sentinel://s1:26379/mymaster/x"),
            "invalid `store`: `redis+sentinel://s1:26379/mymaster/x`: the database after the \
             master name is not a number: `x`"
        );
        assert!(Redis::open("redis+cluster://a:7000,b:7000").is_ok());
        assert!(crate::backends::is_redis_url("redis+sentinel://s:26379/m"));
        assert!(!crate::backends::is_redis_url("postgres://h/db"));
    }

    #[test]
    fn handles_opened_with_other_passwords_are_told_apart() {
        let a = Redis::open("redis://:one@h:6379/0").unwrap();
        assert_eq!(a.url(), "redis://:***@h:6379/0");
        assert!(a.opened_with("redis://:one@h:6379/0"));
        assert!(!a.opened_with("redis://:two@h:6379/0"));
    }
}

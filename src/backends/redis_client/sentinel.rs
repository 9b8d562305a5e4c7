//! The master of a Sentinel-watched Redis: asked of the sentinels on first use and again after
//! an error that says the connection is gone or the node is no longer the master.

use std::sync::{Arc, Mutex, PoisonError};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{AsyncConnectionConfig, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Value};

use super::CONNECT_TIMEOUT;

/// The master the sentinels name, and the connection to it while it answers.
pub(crate) struct Master {
    shared: Arc<Shared>,
}

struct Shared {
    /// Asks the sentinels; one discovery at a time.
    sentinels: tokio::sync::Mutex<SentinelClient>,
    /// The connection to the current master, if one is known, and the number of discoveries
    /// so far: an error on an older connection leaves a newer one alone.
    current: Mutex<(u64, Option<MultiplexedConnection>)>,
}

impl Master {
    /// `userinfo` (`user:password@` or empty) is the master's; `hosts` the sentinels; `path`
    /// is `mymaster` or `mymaster/db`.
    pub(super) fn new(userinfo: &str, hosts: &[&str], path: &str) -> Result<Self, String> {
        let (name, db) = path.split_once('/').unwrap_or((path, ""));
        if name.is_empty() {
            return Err("no master name after the sentinels \
                        (`redis+sentinel://host:26379,host:26379/mymaster`)"
                .to_owned());
        }
        let db = if db.is_empty() {
            0
        } else {
            db.parse::<i64>().map_err(|_| {
                format!("the database after the master name is not a number: `{db}`")
            })?
        };
        // The master's own credentials and database, read as `redis://` would read them.
        let master: redis::ConnectionInfo = format!("redis://{userinfo}localhost/{db}")
            .parse()
            .map_err(|err: RedisError| err.to_string())?;
        let sentinels: Vec<String> = hosts.iter().map(|h| format!("redis://{h}")).collect();
        let client = SentinelClient::build(
            sentinels,
            name.to_owned(),
            Some(SentinelNodeConnectionInfo {
                tls_mode: None,
                redis_connection_info: Some(master.redis),
            }),
            SentinelServerType::Master,
        )
        .map_err(|err| err.to_string())?;
        Ok(Self {
            shared: Arc::new(Shared {
                sentinels: tokio::sync::Mutex::new(client),
                current: Mutex::new((0, None)),
            }),
        })
    }

    /// The connection to the master, asking the sentinels first when there is none.
    pub(crate) async fn connection(&self) -> redis::RedisResult<MasterConnection> {
        if let Some(connection) = self.current() {
            return Ok(connection);
        }
        let mut sentinels = self.shared.sentinels.lock().await;
        // Another request may have found the master while this one waited.
        if let Some(connection) = self.current() {
            return Ok(connection);
        }
        let config = AsyncConnectionConfig::new().set_connection_timeout(CONNECT_TIMEOUT);
        let found = tokio::time::timeout(
            CONNECT_TIMEOUT * 3,
            sentinels.get_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| {
            RedisError::from((
                ErrorKind::IoError,
                "the sentinels did not name a master in time",
            ))
        })??;
        let mut current = self
            .shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        current.0 += 1;
        current.1 = Some(found.clone());
        let generation = current.0;
        Ok(MasterConnection {
            inner: found,
            generation,
            shared: Arc::clone(&self.shared),
        })
    }

    fn current(&self) -> Option<MasterConnection> {
        let current = self
            .shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        current.1.as_ref().map(|inner| MasterConnection {
            inner: inner.clone(),
            generation: current.0,
            shared: Arc::clone(&self.shared),
        })
    }
}

/// A connection to the master of one discovery; an error that says it is gone (or demoted)
/// makes the next request ask the sentinels again.
#[derive(Clone)]
pub(crate) struct MasterConnection {
    inner: MultiplexedConnection,
    generation: u64,
    shared: Arc<Shared>,
}

impl MasterConnection {
    /// Forgets this connection if `err` means the master is gone or no longer the master.
    fn check<T>(&self, result: redis::RedisResult<T>) -> redis::RedisResult<T> {
        if let Err(err) = &result {
            if err.is_unrecoverable_error()
                || err.is_timeout()
                || err.is_io_error()
                || err.kind() == ErrorKind::ReadOnly
            {
                let mut current = self
                    .shared
                    .current
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if current.0 == self.generation {
                    current.1 = None;
                }
            }
        }
        result
    }
}

impl ConnectionLike for MasterConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let result = self.inner.req_packed_command(cmd).await;
            self.check(result)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let result = self.inner.req_packed_commands(cmd, offset, count).await;
            self.check(result)
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

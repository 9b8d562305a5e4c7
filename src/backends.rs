//! Connections to the stores batteries share: one client per Redis URL, used by every
//! battery that names that URL (the configuration file shares them by URL; in code, clone
//! the handle).
//!
//! ```
//! # #[tokio::main] async fn main() -> Result<(), callnext::ConfigError> {
//! use callnext::backends::Redis;
//! use callnext::middleware::RateLimit;
//!
//! // Nothing connects yet: the first request does, and a Redis that is down is the limiter's
//! // store error (`on_store_error`), not a failure to start.
//! let redis = Redis::open("redis://127.0.0.1:6379/0")?;
//! let limit = RateLimit::builder().limit("100/minute").redis(redis.clone()).build()?;
//! # let _ = limit; Ok(()) }
//! ```

pub use self::redis_client::Redis;

mod redis_client {
    use std::sync::Arc;
    use std::time::Duration;

    use redis::aio::{ConnectionManager, ConnectionManagerConfig};

    use crate::ConfigError;

    /// A Redis server: its client and, once a request needed it, its connection manager
    /// (one multiplexed connection that reconnects by itself). Cheap to clone.
    #[derive(Clone)]
    pub struct Redis {
        inner: Arc<Inner>,
    }

    struct Inner {
        client: redis::Client,
        shown: String,
        connection: tokio::sync::OnceCell<ConnectionManager>,
    }

    impl std::fmt::Debug for Redis {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_tuple("Redis").field(&self.inner.shown).finish()
        }
    }

    impl Redis {
        /// A handle on the Redis at `url` (`redis://host:port/db`, `rediss://…`,
        /// `redis+unix://…`). Connects on first use.
        ///
        /// # Errors
        ///
        /// A URL the `redis` crate cannot read.
        pub fn open(url: &str) -> Result<Self, ConfigError> {
            let client = redis::Client::open(url).map_err(|err| {
                ConfigError::invalid(
                    "store",
                    format!("`{}`: {err}", crate::redact::redact_urls(url)),
                )
            })?;
            Ok(Self {
                inner: Arc::new(Inner {
                    client,
                    shown: crate::redact::redact_urls(url),
                    connection: tokio::sync::OnceCell::new(),
                }),
            })
        }

        /// The URL, with any password replaced by `***` (for logs and error messages).
        pub fn url(&self) -> &str {
            &self.inner.shown
        }

        /// The connection, connecting first if no request has yet.
        pub(crate) async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
            self.inner
                .connection
                .get_or_try_init(|| {
                    // Reconnects are quick and few: the batteries' circuit breakers decide
                    // when to try again, not a long backoff inside the connection.
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(Duration::from_secs(1))
                        .set_number_of_retries(2)
                        .set_factor(10)
                        .set_max_delay(200);
                    ConnectionManager::new_with_config(self.inner.client.clone(), config)
                })
                .await
                .cloned()
        }
    }
}

//! The Redis store (feature `redis`): a session is one string key,
//! `<version>|<created>|<expires>|<data as JSON>`, always written with a TTL (`PX`); create is
//! `SET NX`, compare-and-set one Lua script, destroy a tombstone with the same TTL rule.

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use redis::Script;

use super::store::{Data, Record, Saved, SessionStore, StoreError};
use crate::backends::Redis;
use crate::clock::wall_ms as now_ms;

/// What a destroyed session's key holds until its absolute timeout.
const TOMBSTONE: &str = "gone";

/// Writes `ARGV[2]` with `PX ARGV[3]` if the stored version is `ARGV[1]`. Returns `{1}` when
/// written, `{2, current}` on a conflict, `{0}` when the session is absent or destroyed.
const SAVE: &str = r"
local cur = redis.call('GET', KEYS[1])
if not cur or cur == 'gone' then return {0} end
local version = string.match(cur, '^(%d+)|')
if version ~= ARGV[1] then return {2, cur} end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return {1}
";

/// Sessions in Redis, shared by every instance that uses the same Redis and prefix.
///
/// ```
/// use callnext::backends::Redis;
/// use callnext::middleware::session::RedisStore;
///
/// let store = RedisStore::new(Redis::open("redis://127.0.0.1:6379/0").unwrap());
/// # let _ = store;
/// ```
#[derive(Debug, Clone)]
pub struct RedisStore {
    pub(super) redis: Redis,
    prefix: String,
    save: std::sync::Arc<Script>,
}

impl RedisStore {
    /// Sessions under `callnext:session:<id>` in `redis`.
    pub fn new(redis: Redis) -> Self {
        Self {
            redis,
            prefix: "callnext:session".to_owned(),
            save: std::sync::Arc::new(Script::new(SAVE)),
        }
    }

    /// Keys start with `prefix` instead.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Its Redis for the live page, probed on the store's connection.
    pub(crate) fn backend(&self, counters: crate::backends::Counters) -> crate::backends::Backend {
        crate::backends::Backend::redis(&self.redis, counters)
    }

    fn key(&self, id: &str) -> String {
        format!("{}:{id}", self.prefix)
    }
}

fn failed(err: redis::RedisError) -> StoreError {
    StoreError(Box::new(err))
}

fn encode(record: &Record, version: u64) -> String {
    format!(
        "{version}|{}|{}|{}",
        record.created_ms,
        record.expires_ms,
        serde_json::Value::Object(record.data.clone())
    )
}

fn decode(text: &str) -> Option<Record> {
    let mut parts = text.splitn(4, '|');
    let version = parts.next()?.parse().ok()?;
    let created_ms = parts.next()?.parse().ok()?;
    let expires_ms = parts.next()?.parse().ok()?;
    let data: Data = serde_json::from_str(parts.next()?).ok()?;
    Some(Record {
        data,
        version,
        created_ms,
        expires_ms,
    })
}

/// A TTL for Redis: until `deadline_ms`, at least 1 ms.
fn ttl_ms(deadline_ms: u64) -> u64 {
    deadline_ms.saturating_sub(now_ms()).max(1)
}

impl SessionStore for RedisStore {
    fn load<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        async move {
            let mut conn = self.redis.connection().await.map_err(failed)?;
            let text: Option<String> = redis::cmd("GET")
                .arg(self.key(id))
                .query_async(&mut conn)
                .await
                .map_err(failed)?;
            Ok(text.filter(|t| t != TOMBSTONE).and_then(|t| decode(&t)))
        }
        .boxed()
    }

    fn create<'a>(
        &'a self,
        id: &'a str,
        record: &'a Record,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let mut conn = self.redis.connection().await.map_err(failed)?;
            let done: Option<String> = redis::cmd("SET")
                .arg(self.key(id))
                .arg(encode(record, record.version))
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms(record.expires_ms))
                .query_async(&mut conn)
                .await
                .map_err(failed)?;
            Ok(done.is_some())
        }
        .boxed()
    }

    fn save<'a>(
        &'a self,
        id: &'a str,
        record: &'a Record,
        expected: u64,
    ) -> BoxFuture<'a, Result<Saved, StoreError>> {
        async move {
            let mut conn = self.redis.connection().await.map_err(failed)?;
            let next = expected + 1;
            let reply: Vec<redis::Value> = self
                .save
                .key(self.key(id))
                .arg(expected)
                .arg(encode(record, next))
                .arg(ttl_ms(record.expires_ms))
                .invoke_async(&mut conn)
                .await
                .map_err(failed)?;
            let code: i64 = reply
                .first()
                .and_then(|v| redis::from_redis_value(v).ok())
                .unwrap_or(0);
            Ok(match code {
                1 => Saved::Saved(next),
                2 => match reply
                    .get(1)
                    .and_then(|v| redis::from_redis_value::<String>(v).ok())
                    .and_then(|t| decode(&t))
                {
                    Some(current) => Saved::Conflict(current),
                    None => Saved::Gone,
                },
                _ => Saved::Gone,
            })
        }
        .boxed()
    }

    fn destroy<'a>(
        &'a self,
        id: &'a str,
        tombstone_until_ms: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let mut conn = self.redis.connection().await.map_err(failed)?;
            let _: () = redis::cmd("SET")
                .arg(self.key(id))
                .arg(TOMBSTONE)
                .arg("PX")
                .arg(ttl_ms(tombstone_until_ms))
                .query_async(&mut conn)
                .await
                .map_err(failed)?;
            Ok(())
        }
        .boxed()
    }
}

//! The Redis store: the GCRA steps of [`gcra::decide`](super::gcra::decide) as one Lua
//! script, evaluated atomically with Redis's own clock, behind a timeout and a circuit
//! breaker; the checks of concurrent requests coalesced into one call of it
//! ([`batch`]).

use std::time::Duration;

use redis::Script;

use super::gcra::{Decision, Outcome, Rate, MAX_POLICIES};
use crate::backends::Redis;
use crate::battery::{Refused, StoreGuard};

mod batch;

/// Decides a batch of checks in order, as if each were its own call: every policy of a check
/// first, its charge only if all allow. State is the TAT in integer microseconds (epoch
/// microseconds stay below 2^53, exact in Lua's doubles), kept for as long as the bucket
/// takes to be full again (`PX`), so a missing key is a full bucket and nothing needs
/// cleaning up. The keys are read with one `MGET` and each key charged is written once, at
/// the end: a batch of many requests of one caller is one read and one write.
///
/// `KEYS`: every check's keys (one per policy), check after check. `ARGV[1]`: the number of
/// checks; then per check its number of policies `n`, its cost, and `n` pairs of interval and
/// burst. Returns, per check, `ok`, then per policy remaining, retry-after and time-to-full
/// (µs).
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local tat = {}
local stored = redis.call('MGET', unpack(KEYS))
for i = 1, #KEYS do
  if tat[KEYS[i]] == nil then tat[KEYS[i]] = tonumber(stored[i]) or now end
end
local written, out = {}, {}
local k, a = 0, 2
for _ = 1, tonumber(ARGV[1]) do
  local n, cost = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 2
  local ok = 1
  local T, limit, cur, new = {}, {}, {}, {}
  for i = 1, n do
    T[i] = tonumber(ARGV[a])
    limit[i] = now + T[i] * tonumber(ARGV[a + 1])
    a = a + 2
    local c = tat[KEYS[k + i]]
    if c > limit[i] then c = limit[i] elseif c < now then c = now end
    cur[i], new[i] = c, c + T[i] * cost
    if new[i] > limit[i] then ok = 0 end
  end
  out[#out + 1] = ok
  for i = 1, n do
    local c, retry = cur[i], 0
    if ok == 0 then
      if new[i] > limit[i] then retry = new[i] - limit[i] end
    elseif cost > 0 then
      c = new[i]
      tat[KEYS[k + i]] = c
      written[KEYS[k + i]] = c
    end
    out[#out + 1] = math.floor((limit[i] - c) / T[i])
    out[#out + 1] = retry
    out[#out + 1] = c - now
  end
  k = k + n
end
for key, c in pairs(written) do
  redis.call('SET', key, string.format('%.0f', c), 'PX', math.ceil((c - now) / 1000))
end
return out
";

/// Gives back a charge the script took: each policy's TAT moves back by `T·cost`, never before
/// now (see [`gcra::refund`](super::gcra::refund)); a TAT at or before now is a full bucket,
/// so its key goes. `KEYS`: one check's keys; `ARGV[1]`: the cost; `ARGV[2i]`, `ARGV[2i+1]`:
/// policy i's interval and burst.
const REFUND: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local cost = tonumber(ARGV[1])
for i = 1, #KEYS do
  local T = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if tat then
    local back = tat - T * cost
    if back <= now then
      redis.call('DEL', KEYS[i])
    else
      redis.call('SET', KEYS[i], string.format('%.0f', back), 'PX', math.ceil((back - now) / 1000))
    end
  end
end
return 1
";

/// Why the store gave no decision: the guard's refusal, or Redis's error.
pub(crate) type StoreError = Refused<redis::RedisError>;

/// One request's check: its keys (one per policy, sharing the caller's hash tag), the
/// policies' rates and the cost.
#[derive(Debug)]
pub(crate) struct Check {
    keys: Vec<String>,
    rates: [Rate; MAX_POLICIES],
    cost: u64,
}

impl Check {
    fn new(keys: Vec<String>, rates: &[Rate], cost: u64) -> Self {
        let mut all = [Rate {
            interval_us: 0,
            burst: 0,
        }; MAX_POLICIES];
        all[..rates.len()].copy_from_slice(rates);
        Self {
            keys,
            rates: all,
            cost,
        }
    }

    /// How many values of the script's reply are this check's.
    fn reply_len(&self) -> usize {
        1 + 3 * self.keys.len()
    }
}

/// The store, behind the store guard (timeout and circuit breaker).
#[derive(Debug)]
pub(crate) struct RedisStore {
    redis: Redis,
    script: Script,
    refund: Script,
    guard: StoreGuard,
    /// Coalesces concurrent checks; none on a Redis Cluster, where one call's keys must share
    /// a hash slot and only one caller's do.
    batcher: Option<batch::Batcher>,
}

impl RedisStore {
    pub(crate) fn new(redis: Redis, timeout: Duration) -> Self {
        Self {
            guard: StoreGuard::new("rate limit store", redis.url(), timeout),
            batcher: (!redis.is_cluster()).then(batch::Batcher::default),
            redis,
            script: Script::new(SCRIPT),
            refund: Script::new(REFUND),
        }
    }

    /// The Redis it asks (its connection is the store's).
    pub(crate) fn redis(&self) -> &Redis {
        &self.redis
    }

    /// Whether the breaker is open: the store is skipped until a cooldown ends (or being
    /// tried again by one request).
    pub(crate) fn breaker_open(&self) -> bool {
        self.guard.is_open()
    }

    /// The script over `keys` (one per policy): in one call with the checks of other requests
    /// waiting at the same time, or on a cluster a call of its own.
    pub(crate) async fn check(
        &self,
        keys: Vec<String>,
        rates: &[Rate],
        cost: u64,
        limiter: &str,
    ) -> Result<Decision, StoreError> {
        let check = Check::new(keys, rates, cost);
        match &self.batcher {
            Some(batcher) => self.guard.call(limiter, batcher.check(check, self)).await,
            None => {
                let call = async {
                    let reply = call(&self.redis, &self.script, [&check].into_iter()).await?;
                    decision(&reply, &mut 0, &check).ok_or_else(unexpected)
                };
                self.guard.call(limiter, call).await
            }
        }
    }

    /// One round trip: gives back a charge of `cost` over `keys`.
    pub(crate) async fn refund(
        &self,
        keys: &[String],
        rates: &[Rate],
        cost: u64,
        limiter: &str,
    ) -> Result<(), StoreError> {
        let call = async {
            let mut connection = self.redis.connection().await?;
            let mut invocation = self.refund.prepare_invoke();
            invocation.arg(cost);
            for (key, rate) in keys.iter().zip(rates) {
                invocation.key(key).arg(rate.interval_us).arg(rate.burst);
            }
            invocation
                .invoke_async::<i64>(&mut connection)
                .await
                .map(drop)
        };
        self.guard.call(limiter, call).await
    }
}

/// One call of the script over `checks`, in order: its reply, every check's part after the
/// other's.
async fn call<'c>(
    redis: &Redis,
    script: &Script,
    checks: impl ExactSizeIterator<Item = &'c Check>,
) -> redis::RedisResult<Vec<i64>> {
    let mut invocation = script.prepare_invoke();
    invocation.arg(checks.len());
    for check in checks {
        invocation.arg(check.keys.len()).arg(check.cost);
        for (key, rate) in check.keys.iter().zip(&check.rates) {
            invocation.key(key).arg(rate.interval_us).arg(rate.burst);
        }
    }
    let mut connection = redis.connection().await?;
    invocation.invoke_async(&mut connection).await
}

/// The decision of `check`, whose part of the script's reply starts at `at` (moved past it);
/// `None` for a part that does not read as one.
fn decision(reply: &[i64], at: &mut usize, check: &Check) -> Option<Decision> {
    let part = reply.get(*at..*at + check.reply_len());
    *at += check.reply_len();
    parse(part?, check.keys.len())
}

fn unexpected() -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::TypeError,
        "unexpected reply from the rate-limit script",
    ))
}

fn parse(reply: &[i64], n: usize) -> Option<Decision> {
    if reply.len() != 1 + 3 * n || n > MAX_POLICIES {
        return None;
    }
    let mut outcomes = [Outcome::default(); MAX_POLICIES];
    for (i, o) in outcomes.iter_mut().take(n).enumerate() {
        let at = |j: usize| u64::try_from(reply[1 + 3 * i + j]).ok();
        *o = Outcome {
            remaining: at(0)?,
            retry_us: at(1)?,
            reset_us: at(2)?,
        };
    }
    Some(Decision {
        allowed: reply[0] == 1,
        outcomes,
        len: n,
    })
}

#[cfg(test)]
mod tests {
    use axum::{routing::get, Router};

    use crate::backends::testing::{counter, dead_port, probe, redis_url};
    use crate::backends::Redis;
    use crate::middleware::rate_limit::{OnStoreError, RateLimit};
    use crate::{Stack, TestClient};

    fn client(limit: &RateLimit) -> TestClient<crate::StackService> {
        let app = Router::new().route("/", get(|| async { "hi" }));
        TestClient::new(Stack::new().hook(limit.clone()).service(app))
    }

    #[test]
    fn a_memory_limiter_names_no_backend() {
        let limit = RateLimit::builder().limit("5/minute").build().unwrap();
        assert!(limit.backends().is_empty());
    }

    #[tokio::test]
    async fn a_redis_limiter_names_its_redis_and_the_probe_answers() {
        let url = redis_url();
        let prefix = format!("test:backends:{}:{}", std::process::id(), line!());
        let limit = RateLimit::builder()
            .limit("5/minute")
            .prefix(prefix)
            .redis(Redis::open(&url).unwrap())
            .build()
            .unwrap();
        let res = client(&limit).get("/").await;
        // Decided in Redis: one taken of five.
        assert!(res.header("ratelimit").unwrap().contains(";r=4;"));

        let backends = limit.backends();
        assert_eq!(backends.len(), 1);
        let redis = &backends[0];
        assert_eq!(redis.kind, "redis");
        assert_eq!(redis.url, crate::redact::redact_urls(&url));
        assert_eq!(probe(redis).await, Ok(()));
        assert_eq!(
            (redis.counters)(),
            [
                ("store_errors_open", 0),
                ("store_errors_closed", 0),
                ("store_errors_local", 0),
                ("breaker_open", 0),
            ]
        );
    }

    #[tokio::test]
    async fn a_redis_that_is_down_fails_the_probe_and_its_store_errors_are_counted() {
        let redis = Redis::open(&format!("redis://127.0.0.1:{}", dead_port())).unwrap();
        let limit = RateLimit::builder()
            .limit("5/minute")
            .on_store_error(OnStoreError::Closed)
            .redis(redis)
            .build()
            .unwrap();
        let backend = limit.backends().remove(0);
        let err = probe(&backend).await.unwrap_err();
        assert!(!err.is_empty());
        assert_eq!(counter(&backend, "store_errors_closed"), 0);
        assert_eq!(counter(&backend, "breaker_open"), 0);

        let client = client(&limit);
        for _ in 0..3 {
            assert_eq!(client.get("/").await.status(), 503);
        }
        assert_eq!(counter(&backend, "store_errors_closed"), 3);
        assert_eq!(counter(&backend, "store_errors_open"), 0);
        assert_eq!(counter(&backend, "store_errors_local"), 0);
        // Three failures in a row open the breaker; what it refuses is counted too.
        assert_eq!(counter(&backend, "breaker_open"), 1);
        assert_eq!(client.get("/").await.status(), 503);
        // Every clone of the limiter counts into the same counters.
        let again = limit.clone().backends().remove(0);
        assert_eq!(counter(&again, "store_errors_closed"), 4);
    }
}

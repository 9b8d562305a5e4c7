//! Rate limits and sessions on a Redis Cluster and on a Sentinel-watched master, each started
//! by the test on free ports: callers spread over the cluster's masters, two handles (as two
//! server processes) share limits and sessions, and a master killed under load is the failure
//! policy's business until the cluster or the sentinels have a new master, after which the
//! store decides again with what was replicated before the kill.

mod common;
#[path = "common/redis_ha.rs"]
mod redis_ha;
mod session_suite;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::{routing::get, Router};
use callnext::backends::Redis;
use callnext::battery::KeyBy;
use callnext::middleware::rate_limit::{OnStoreError, RateLimit};
use callnext::middleware::session::{RedisStore, Sessions};
use callnext::{Stack, StackService, TestClient};
use redis_ha::{OwnCluster, OwnSentinels};

/// A store timeout no call on a busy machine runs out of.
const PATIENT: Duration = Duration::from_secs(5);

fn app() -> Router {
    Router::new().route("/", get(|| async { "hi" }))
}

/// A limiter keyed by the `x-caller` header, on `redis`, in one shared scope, with the default
/// store timeout (50 ms): for the failovers, where that timeout is what is tested.
fn limited(redis: &Redis, limit: &str, on: OnStoreError) -> TestClient<StackService> {
    limited_within(redis, limit, on, Duration::from_millis(50))
}

/// The same with a store timeout of its own: tests of the store's decisions give a busy machine
/// time, so that no call runs out of it.
fn limited_within(
    redis: &Redis,
    limit: &str,
    on: OnStoreError,
    timeout: Duration,
) -> TestClient<StackService> {
    let limit = RateLimit::builder()
        .limit(limit)
        .key(KeyBy::Header(http::HeaderName::from_static("x-caller")))
        .redis(redis.clone())
        .on_store_error(on)
        .store_timeout(timeout)
        .build()
        .unwrap();
    TestClient::new(Stack::new().hook(limit).service(app())).store_scope("ha")
}

async fn status_of(client: &TestClient<StackService>, caller: &str) -> u16 {
    client
        .get("/")
        .header("x-caller", caller.to_owned())
        .send()
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_cluster_spreads_callers_over_its_masters_and_two_handles_share_limits_and_sessions() {
    let cluster = OwnCluster::start().await;
    // Two handles, two clients: as two server processes would have.
    let (a, b) = (
        Redis::open(&cluster.url()).unwrap(),
        Redis::open(&cluster.url()).unwrap(),
    );
    let (on_a, on_b) = (
        limited_within(&a, "3/minute", OnStoreError::Closed, PATIENT),
        limited_within(&b, "3/minute", OnStoreError::Closed, PATIENT),
    );
    for n in 0..24 {
        let caller = format!("caller-{n}");
        let mut statuses = Vec::new();
        for client in [&on_a, &on_b, &on_a, &on_b] {
            statuses.push(status_of(client, &caller).await);
        }
        assert_eq!(statuses, [200, 200, 200, 429], "{caller}");
    }
    // Twenty-four callers' keys are on every master: the client went to each slot's node.
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    for port in masters {
        assert!(cluster.keys_on(port) > 0, "no key on the master at {port}");
    }

    // Sessions: the shared suite on the cluster, then one session seen through both handles.
    session_suite::cycle_id_keeps_the_data_and_ends_the_old_id(RedisStore::new(a.clone())).await;
    session_suite::a_logout_stays_a_logout_against_a_late_writer(RedisStore::new(a.clone())).await;
    session_suite::concurrent_writers_to_different_keys_are_both_kept(RedisStore::new(b.clone()))
        .await;
    let sessions = |redis: &Redis| {
        let sessions = Sessions::builder()
            .secret([9u8; 64])
            .store(RedisStore::new(redis.clone()))
            .build()
            .unwrap();
        TestClient::new(Stack::new().hook(sessions).service(session_suite::writer()))
    };
    let (first, second) = (sessions(&a), sessions(&b));
    let written = first.post("/").await;
    assert_eq!(written.status(), 200);
    let cookie = cookie(&written);
    let read = second.get("/").header("cookie", cookie).send().await;
    assert_eq!(read.text(), "Some(\"v\")");
}

/// What a stream of requests saw around a kill: when each answered, with what status, and
/// whether the store decided it (a `RateLimit` header).
#[derive(Default)]
struct Seen {
    answers: Vec<(Duration, u16, bool)>,
}

impl Seen {
    fn statuses_after(&self, kill: Duration) -> Vec<u16> {
        self.answers
            .iter()
            .filter(|(at, ..)| *at >= kill)
            .map(|(_, s, _)| *s)
            .collect()
    }

    /// The first answer after `kill` that the store decided again after it had stopped.
    fn recovered_after(&self, kill: Duration) -> Option<Duration> {
        let mut failed = false;
        for (at, _, decided) in &self.answers {
            if *at < kill {
                continue;
            }
            failed |= !decided;
            if failed && *decided {
                return Some(*at - kill);
            }
        }
        None
    }
}

/// Sends requests as `caller` one after another until `stop`, recording each answer.
fn load(
    client: Arc<TestClient<StackService>>,
    caller: &'static str,
    started: Instant,
    stop: Arc<tokio::sync::Notify>,
) -> tokio::task::JoinHandle<Seen> {
    tokio::spawn(async move {
        let mut seen = Seen::default();
        let stopped = stop.notified();
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                () = &mut stopped => return seen,
                res = client.get("/").header("x-caller", caller).send() => {
                    let decided = res.header("ratelimit").is_some();
                    seen.answers.push((started.elapsed(), res.status().as_u16(), decided));
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

/// `r` (remaining) of a `RateLimit` header.
fn remaining(res: &callnext::TestResponse) -> u64 {
    let header = res.header("ratelimit").expect("a ratelimit header");
    header
        .split(';')
        .find_map(|p| p.trim().strip_prefix("r="))
        .unwrap()
        .parse()
        .unwrap()
}

/// Runs an open and a closed load as the caller `victim`, runs `failover` (a kill, then a
/// wait until the deployment has a new master), and goes on until both loads have been
/// decided by the store again for a second. Returns (open, closed, when the kill came).
async fn through_a_failover(
    redis: &Redis,
    failover: impl std::future::Future<Output = ()>,
) -> (Seen, Seen, Duration) {
    let open = Arc::new(limited(redis, "100000/minute", OnStoreError::Open));
    let closed = Arc::new(limited(redis, "100000/minute", OnStoreError::Closed));
    let decided = |client: Arc<TestClient<StackService>>| async move {
        let res = client.get("/").header("x-caller", "victim").send().await;
        res.header("ratelimit").is_some()
    };
    let started = Instant::now();
    let stop = Arc::new(tokio::sync::Notify::new());
    let loads = [
        load(Arc::clone(&open), "victim", started, Arc::clone(&stop)),
        load(Arc::clone(&closed), "victim", started, Arc::clone(&stop)),
    ];
    while !decided(Arc::clone(&open)).await {}
    let killed = started.elapsed();
    failover.await;
    let mut since: Option<Instant> = None;
    loop {
        let both = decided(Arc::clone(&open)).await && decided(Arc::clone(&closed)).await;
        match (both, since) {
            (true, None) => since = Some(Instant::now()),
            (true, Some(at)) if at.elapsed() > Duration::from_secs(1) => break,
            (false, _) => since = None,
            _ => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the store never decided again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.notify_waiters();
    let [o, c] = loads;
    (o.await.unwrap(), c.await.unwrap(), killed)
}

/// The policies held through the failover and the store decides again; the figures printed.
fn report(deployment: &str, open: &Seen, closed: &Seen, killed: Duration) {
    let open_statuses = open.statuses_after(killed);
    let errors = open_statuses.iter().filter(|s| **s != 200).count();
    assert_eq!(errors, 0, "open: {open_statuses:?}");
    let closed_statuses = closed.statuses_after(killed);
    assert!(
        closed_statuses.iter().all(|s| *s == 200 || *s == 503),
        "closed: {closed_statuses:?}"
    );
    let refused = closed_statuses.iter().filter(|s| **s == 503).count();
    assert!(
        refused > 0,
        "closed refused nothing while the master was gone"
    );
    let (o, c) = (
        open.recovered_after(killed)
            .expect("open decided by the store again"),
        closed
            .recovered_after(killed)
            .expect("closed decided by the store again"),
    );
    eprintln!(
        "{deployment} failover: open policy {} requests, {errors} errors, store again after \
         {o:?}; closed policy {} requests, {refused} answered 503, store again after {c:?}",
        open_statuses.len(),
        closed_statuses.len(),
    );
}

/// A 10/hour limiter for `victim`, six of its ten taken: acknowledged before a kill. (An hour:
/// no request's worth refills while the failover runs, however long it takes.)
async fn six_of_ten(redis: &Redis) -> TestClient<StackService> {
    let counted =
        limited_within(redis, "10/hour", OnStoreError::Closed, PATIENT).store_scope("ha-ack");
    for _ in 0..6 {
        assert_eq!(status_of(&counted, "victim").await, 200);
    }
    counted
}

/// The six requests replicated before the kill still count after the failover.
async fn still_counted(counted: &TestClient<StackService>) {
    let after = counted.get("/").header("x-caller", "victim").send().await;
    assert_eq!(
        remaining(&after),
        3,
        "the six replicated requests still count"
    );
}

/// `id=...` of a response's `Set-Cookie`.
fn cookie(res: &callnext::TestResponse) -> String {
    let header = res.header("set-cookie").expect("a session cookie");
    header.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn a_cluster_master_killed_under_load() {
    let mut cluster = OwnCluster::start().await;
    let redis = Redis::open(&cluster.url()).unwrap();
    // Acknowledged and replicated before the kill: six of ten taken.
    let counted = six_of_ten(&redis).await;
    // Keys carry the caller in hex.
    let pattern = format!("*{}*", hex("victim"));
    let victim = cluster.master_holding(&pattern);
    cluster.replicate(victim).await;
    let failover = async {
        cluster.kill(victim);
        cluster.wait_healthy(Duration::from_secs(60)).await;
    };
    let (open, closed, killed) = through_a_failover(&redis, failover).await;
    report("cluster", &open, &closed, killed);
    assert_ne!(cluster.master_holding(&pattern), victim);
    still_counted(&counted).await;
}

#[tokio::test]
async fn a_sentinel_master_killed_under_load() {
    let mut sentinels = OwnSentinels::start().await;
    let redis = Redis::open(&sentinels.url()).unwrap();
    let counted = six_of_ten(&redis).await;
    sentinels.replicate().await;
    let replica = sentinels.replica_port();
    let (open, closed, killed) = through_a_failover(&redis, sentinels.fail_over()).await;
    report("sentinel", &open, &closed, killed);
    still_counted(&counted).await;
    // The promoted replica holds the keys now.
    assert!(redis_ha::cli(replica, &["role"]).starts_with("master"));
}

#[tokio::test]
async fn sessions_through_sentinels_survive_a_failover() {
    let mut sentinels = OwnSentinels::start().await;
    let redis = Redis::open(&sentinels.url()).unwrap();
    session_suite::cycle_id_keeps_the_data_and_ends_the_old_id(RedisStore::new(redis.clone()))
        .await;
    let sessions = Sessions::builder()
        .secret([7u8; 64])
        .store(RedisStore::new(redis.clone()))
        .build()
        .unwrap();
    let client = TestClient::new(Stack::new().hook(sessions).service(session_suite::writer()));
    let written = client.post("/").await;
    let cookie = cookie(&written);
    sentinels.replicate().await;
    sentinels.fail_over().await;
    // The first requests after the kill may meet the dead connection (503); then the session
    // is read from the new master.
    let started = Instant::now();
    loop {
        let read = client
            .get("/")
            .header("cookie", cookie.clone())
            .send()
            .await;
        if read.status() == 200 {
            assert_eq!(read.text(), "Some(\"v\")");
            break;
        }
        assert_eq!(read.status(), 503, "{}", read.text());
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no session after the failover"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

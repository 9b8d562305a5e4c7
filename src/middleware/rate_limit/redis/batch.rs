//! Concurrent checks in one script call: while calls are at Redis, the checks of the requests
//! that arrive queue up, and the next call takes all of them. Under load the round trip, its
//! system calls and wake-ups, and Redis's cost of running a script are shared by the batch;
//! alone, a check waits for nothing but its own call.
//!
//! The batch is one call of one script, so its checks are decided atomically and in the order
//! they queued, each as if it had been a call of its own. A task owns the queue's far end: it
//! is started by the first check, on that check's runtime, and again if that runtime has
//! ended.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use redis::{RedisError, Script};
use tokio::sync::{mpsc, oneshot};

use super::{call, decision, unexpected, Check};
use crate::backends::Redis;
use crate::middleware::rate_limit::gcra::Decision;

/// The most checks in one call (a check has at most four keys: 512 keys to `MGET`).
const MAX_BATCH: usize = 128;
/// The most calls at Redis at once: while they are, checks queue for the next.
const IN_FLIGHT: usize = 4;
/// The most checks waiting for a call; past it a check fails at once (the store is far
/// behind, and the failure policy answers sooner than a timeout would).
const QUEUE: usize = 4096;

/// What a check's caller hears: the decision, or the error of the call it was part of.
type Answer = Result<Decision, Arc<RedisError>>;

struct Job {
    check: Check,
    answer: oneshot::Sender<Answer>,
}

/// The queue of checks and the task that empties it (started with the store's Redis, script
/// and timeout: how long a call may take, by when its checks' callers have stopped waiting).
#[derive(Debug, Default)]
pub(super) struct Batcher {
    queue: Mutex<Option<mpsc::Sender<Job>>>,
}

impl Batcher {
    /// `check`, decided in the next call.
    pub(super) async fn check(
        &self,
        check: Check,
        store: &super::RedisStore,
    ) -> Result<Decision, RedisError> {
        let (answer, answered) = oneshot::channel();
        self.enqueue(Job { check, answer }, store)?;
        match answered.await {
            Ok(Ok(decision)) => Ok(decision),
            Ok(Err(err)) => Err(RedisError::from((
                err.kind(),
                "the batched rate-limit call failed",
                err.to_string(),
            ))),
            Err(_) => Err(stopped()),
        }
    }

    fn enqueue(&self, mut job: Job, store: &super::RedisStore) -> Result<(), RedisError> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = queue.as_ref() {
            match sender.try_send(job) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    return Err(RedisError::from((
                        redis::ErrorKind::IoError,
                        "too many rate-limit checks waiting for Redis",
                    )))
                }
                Err(mpsc::error::TrySendError::Closed(back)) => job = back,
            }
        }
        // No task yet, or the runtime it ran on has ended: one on this check's runtime.
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| stopped())?;
        let (sender, receiver) = mpsc::channel(QUEUE);
        runtime.spawn(run(
            receiver,
            store.redis.clone(),
            store.script.clone(),
            store.guard.timeout(),
        ));
        sender.try_send(job).map_err(|_| stopped())?;
        *queue = Some(sender);
        Ok(())
    }
}

fn stopped() -> RedisError {
    RedisError::from((
        redis::ErrorKind::IoError,
        "the rate-limit store's batching task stopped",
    ))
}

/// The task: a call for whatever is queued, up to [`IN_FLIGHT`] calls at a time (pipelined on
/// the one connection), until the store is dropped and the calls under way have answered.
async fn run(mut queue: mpsc::Receiver<Job>, redis: Redis, script: Script, timeout: Duration) {
    let mut calls = FuturesUnordered::new();
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    loop {
        tokio::select! {
            biased;
            Some(()) = calls.next(), if !calls.is_empty() => {}
            taken = queue.recv_many(&mut jobs, MAX_BATCH), if calls.len() < IN_FLIGHT => {
                if taken == 0 {
                    break;
                }
                // A check whose request stopped waiting (timed out, or its client left) is
                // not made: nothing is charged for a request that was not counted.
                jobs.retain(|job| !job.answer.is_closed());
                if jobs.is_empty() {
                    continue;
                }
                let batch = std::mem::replace(&mut jobs, Vec::with_capacity(MAX_BATCH));
                let (redis, script) = (&redis, &script);
                calls.push(async move {
                    let checks = batch.iter().map(|job| &job.check);
                    let reply = tokio::time::timeout(timeout, call(redis, script, checks)).await;
                    answer(batch, reply.unwrap_or_else(|_| Err(timed_out(timeout))));
                });
            }
        }
    }
    while calls.next().await.is_some() {}
}

/// Each job's part of the reply, or the call's error, to its caller.
fn answer(jobs: Vec<Job>, reply: Result<Vec<i64>, RedisError>) {
    match reply {
        Ok(reply) => {
            let mut at = 0;
            for job in jobs {
                let decided = decision(&reply, &mut at, &job.check);
                let _ = job
                    .answer
                    .send(decided.ok_or_else(|| Arc::new(unexpected())));
            }
        }
        Err(err) => {
            let err = Arc::new(err);
            for job in jobs {
                let _ = job.answer.send(Err(Arc::clone(&err)));
            }
        }
    }
}

fn timed_out(after: Duration) -> RedisError {
    RedisError::from((
        redis::ErrorKind::IoError,
        "no answer from Redis",
        format!("the batched call took longer than {after:?}"),
    ))
}

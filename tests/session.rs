//! Sessions with the memory store: the shared behavioural suite, and settings checked when
//! built.

mod session_suite;

use std::time::Duration;

use callnext::middleware::session::{MemoryStore, Sessions};

fn store() -> MemoryStore {
    MemoryStore::new(1000)
}

#[tokio::test]
async fn untouched_requests_cost_no_store_call_and_get_no_cookie() {
    session_suite::untouched_requests_cost_no_store_call_and_get_no_cookie(store()).await;
}

#[tokio::test]
async fn the_cookie_and_tampered_or_unknown_ids() {
    session_suite::the_cookie_and_tampered_or_unknown_ids(store()).await;
}

#[tokio::test(start_paused = true)]
async fn idle_and_absolute_timeouts() {
    session_suite::idle_and_absolute_timeouts(store()).await;
}

#[tokio::test]
async fn cycle_id_keeps_the_data_and_ends_the_old_id() {
    session_suite::cycle_id_keeps_the_data_and_ends_the_old_id(store()).await;
}

#[tokio::test]
async fn a_logout_stays_a_logout_against_a_late_writer() {
    session_suite::a_logout_stays_a_logout_against_a_late_writer(store()).await;
}

#[tokio::test]
async fn concurrent_writers_to_different_keys_are_both_kept() {
    session_suite::concurrent_writers_to_different_keys_are_both_kept(store()).await;
}

#[test]
fn settings_are_checked_when_built() {
    let err =
        |b: callnext::middleware::session::SessionsBuilder| b.build().unwrap_err().to_string();
    assert_eq!(
        err(Sessions::builder().secret([1u8; 10])),
        "invalid `secret`: must be at least 64 bytes, got 10 (set it, or CALLNEXT_SESSION_SECRET)"
    );
    assert_eq!(
        err(Sessions::builder().secret([1u8; 64]).cookie("a b")),
        "invalid `cookie`: `a b` is not a cookie name"
    );
    assert_eq!(
        err(Sessions::builder()
            .secret([1u8; 64])
            .idle_timeout(Duration::from_secs(10))
            .absolute_timeout(Duration::from_secs(5))),
        "invalid `idle_timeout`: cannot be longer than absolute_timeout"
    );
}

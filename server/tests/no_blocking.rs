//! The seed stack under concurrent load produces no blocking events.
//!
//! Alone in its binary: the other instrumentation tests capture every log line into one shared
//! buffer, and contention on it is noise this test must not measure.

use callnext::TestClient;
use callnext_server::seed::{self, SeedConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_stack_under_concurrent_load_does_not_block() {
    let stack = seed::stack(&SeedConfig::default());
    let client = TestClient::new(stack.service(seed::router(&SeedConfig::default())));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let client = client.clone();
        tasks.spawn(async move {
            let path = if i % 2 == 0 {
                "/".to_owned()
            } else {
                format!("/items/{}", 1000 + i)
            };
            client.get(&path).await.status()
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    stack.blocking_report().assert_clean();
}

//! Background tasks run after the response body has been sent, in order, also when the client
//! has gone; failures and panics are logged with the request id and stop the tasks queued
//! after them; the wait at shutdown says
//! how many were cut.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::{routing::get, Router};
use callnext::middleware::SetRequestId;
use callnext::serve::Server;
use callnext::{BackgroundTasks, Stack, TestClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};

type Events = Arc<Mutex<Vec<String>>>;

fn app(events: Events, gate: Arc<Notify>) -> Router {
    let (e1, e2, e3, e4) = (events.clone(), events.clone(), events.clone(), events);
    Router::new()
        .route(
            "/ordered",
            get(move || {
                let events = e1.clone();
                async move {
                    let (a, b) = (events.clone(), events.clone());
                    events.lock().unwrap().push("handler".into());
                    let tasks = BackgroundTasks::new()
                        .add_task(async move { a.lock().unwrap().push("task 1".into()) })
                        .add_fallible_task(async {
                            Err::<(), _>("smtp down for battery_background")
                        })
                        .add_task(async move { b.lock().unwrap().push("task 3".into()) });
                    (tasks, "ok")
                }
            }),
        )
        .route(
            "/panicking",
            get(move || {
                let events = e4.clone();
                async move {
                    let tasks = BackgroundTasks::new()
                        .add_task(async { panic!("task panicked for battery_background") })
                        .add_task(
                            async move { events.lock().unwrap().push("after the panic".into()) },
                        );
                    (tasks, "ok")
                }
            }),
        )
        .route(
            "/stream",
            get(move || {
                let events = e2.clone();
                async move {
                    let tasks = BackgroundTasks::new().add_task(async move {
                        events.lock().unwrap().push("after the client left".into())
                    });
                    let chunks = futures_util::stream::unfold((), |()| async {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        Some((
                            Ok::<_, std::convert::Infallible>(bytes::Bytes::from("x")),
                            (),
                        ))
                    });
                    (tasks, axum::body::Body::from_stream(chunks))
                }
            }),
        )
        .route(
            "/slow-task",
            get(move || {
                let (events, gate) = (e3.clone(), gate.clone());
                async move {
                    let tasks = BackgroundTasks::new().add_task(async move {
                        gate.notified().await;
                        events.lock().unwrap().push("slow done".into());
                    });
                    (tasks, "ok")
                }
            }),
        )
}

#[tokio::test]
async fn tasks_run_in_order_after_the_body_and_failures_are_logged() {
    let logs = common::Logs::capture();
    let events = Events::default();
    let stack = Stack::new().hook(SetRequestId::new());
    let background = stack.background();
    let client = TestClient::new(stack.service(app(events.clone(), Arc::new(Notify::new()))));
    let res = client.get("/ordered").header("x-request-id", "bg-1").await;
    assert_eq!(res.text(), "ok");
    assert_eq!(background.wait(Duration::from_secs(10)).await, 0);
    // As Starlette's: the failed task stops the one queued after it.
    assert_eq!(*events.lock().unwrap(), ["handler", "task 1"]);
    let skipped = logs.lines_with("queued after the failed one not run");
    assert!(
        skipped
            .iter()
            .any(|l| l.contains("bg-1") && l.contains("skipped=1")),
        "{skipped:?}"
    );
    let failed = logs.lines_with("smtp down for battery_background");
    assert!(
        failed
            .iter()
            .any(|l| l.contains("request_id=\"bg-1\"") || l.contains("request_id=bg-1")),
        "{failed:?}"
    );
    let res = client
        .get("/panicking")
        .header("x-request-id", "bg-2")
        .await;
    assert_eq!(res.text(), "ok");
    assert_eq!(background.wait(Duration::from_secs(10)).await, 0);
    assert_eq!(*events.lock().unwrap(), ["handler", "task 1"]);
    let panicked = logs.lines_with("task panicked for battery_background");
    assert!(
        panicked
            .iter()
            .any(|l| l.contains("background task panicked")),
        "{panicked:?}"
    );
}

#[tokio::test]
async fn tasks_run_when_the_client_leaves_mid_body() {
    let events = Events::default();
    let stack = Stack::new();
    let background = stack.background();
    let running = common::spawn(
        Server::new(),
        stack.service(app(events.clone(), Arc::new(Notify::new()))),
    )
    .await;
    let mut stream = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    stream
        .write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    drop(stream);
    // The task runs once the server notices; wait for it without a fixed sleep.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let watcher = {
        let events = events.clone();
        tokio::spawn(async move {
            loop {
                if events
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|e| e == "after the client left")
                {
                    let _ = tx.send(());
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the task ran");
    watcher.abort();
    assert_eq!(background.wait(Duration::from_secs(10)).await, 0);
    running.stop().await;
}

#[tokio::test]
async fn the_wait_at_shutdown_counts_what_was_cut() {
    let events = Events::default();
    let gate = Arc::new(Notify::new());
    let stack = Stack::new();
    let background = stack.background();
    let client = TestClient::new(stack.service(app(events.clone(), gate.clone())));
    assert_eq!(client.get("/slow-task").await.text(), "ok");
    assert_eq!(background.pending(), 1);
    assert_eq!(background.wait(Duration::from_millis(50)).await, 1);
    gate.notify_one();
    assert_eq!(background.wait(Duration::from_secs(10)).await, 0);
    assert_eq!(*events.lock().unwrap(), ["slow done"]);
}

/// Ten middlewares each add a task to the response `call_next` gave them (five with
/// `add_to`, five by returning `(tasks, response)` as a handler would): all ten run, after the
/// handler's, innermost first, as Starlette runs each middleware's own.
#[tokio::test]
async fn every_middlewares_tasks_run_beside_the_handlers() {
    async fn returning(
        state: &(usize, Events),
        req: callnext::Request,
        next: callnext::Next<'_>,
    ) -> callnext::Response {
        use axum::response::IntoResponse;
        let (n, ran) = (state.0, state.1.clone());
        let res = next.run(req).await;
        let tasks = BackgroundTasks::new()
            .add_task(async move { ran.lock().unwrap().push(format!("middleware {n}")) });
        (tasks, res).into_response()
    }
    let ran = Events::default();
    let handler_ran = ran.clone();
    let app = Router::new().route(
        "/",
        get(move || {
            let ran = handler_ran.clone();
            async move {
                let tasks = BackgroundTasks::new()
                    .add_task(async move { ran.lock().unwrap().push("handler".into()) });
                (tasks, "ok")
            }
        }),
    );
    let mut stack = Stack::new();
    for n in (0..10).rev() {
        if n % 2 == 0 {
            stack = stack.push(
                callnext::Entry::func_with_state((n, ran.clone()), returning)
                    .named(format!("m{n}")),
            );
        } else {
            let ran = ran.clone();
            stack = stack.on_response(format!("m{n}"), move |res: &mut callnext::Response| {
                let ran = ran.clone();
                BackgroundTasks::new()
                    .add_task(async move { ran.lock().unwrap().push(format!("middleware {n}")) })
                    .add_to(res);
            });
        }
    }
    let background = stack.background();
    let res = TestClient::new(stack.service(app)).get("/").await;
    assert_eq!(res.text(), "ok");
    assert_eq!(background.wait(Duration::from_secs(10)).await, 0);
    let expected: Vec<String> = std::iter::once("handler".to_owned())
        .chain((0..10).map(|n| format!("middleware {n}")))
        .collect();
    assert_eq!(*ran.lock().unwrap(), expected);
}

use super::*;
use std::sync::Arc;

fn recorder() -> (
    Arc<std::sync::Mutex<Vec<Delivered>>>,
    impl FnOnce(&Delivered) + Send + 'static,
) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let push = {
        let seen = Arc::clone(&seen);
        move |d: &Delivered| seen.lock().unwrap().push(*d)
    };
    (seen, push)
}

#[tokio::test]
async fn a_body_replaced_after_observing_is_reported_as_sent() {
    let (seen, push) = recorder();
    let mut res = Response::new(Body::from("inner"));
    observe(&mut res, push);
    // An outer battery rewrites the body and the status.
    *res.body_mut() = Body::from("rewritten!");
    *res.status_mut() = StatusCode::NOT_FOUND;
    apply(&mut res, Chain::default());
    assert!(seen.lock().unwrap().is_empty());
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(&body[..], b"rewritten!");
    assert_eq!(
        *seen.lock().unwrap(),
        [Delivered {
            status: StatusCode::NOT_FOUND,
            bytes: 10,
            complete: true
        }]
    );
}

#[test]
fn a_body_dropped_unsent_is_incomplete_and_empty_bodies_are_told_at_once() {
    let (seen, push) = recorder();
    let mut res = Response::new(Body::from("never sent"));
    observe(&mut res, push);
    apply(&mut res, Chain::default());
    drop(res);
    assert_eq!(
        *seen.lock().unwrap(),
        [Delivered {
            status: StatusCode::OK,
            bytes: 0,
            complete: false
        }]
    );

    let (seen, push) = recorder();
    let mut res = Response::new(Body::empty());
    observe(&mut res, push);
    let (seen_second, second) = recorder();
    observe(&mut res, second);
    let (seen_third, third) = recorder();
    observe(&mut res, third);
    apply(&mut res, Chain::default());
    for seen in [seen, seen_second, seen_third] {
        assert_eq!(seen.lock().unwrap().len(), 1);
        assert!(seen.lock().unwrap()[0].complete);
    }
}

#[test]
fn clones_of_extensions_carry_no_observers() {
    let (seen, push) = recorder();
    let mut res = Response::new(Body::empty());
    observe(&mut res, push);
    let copy = res.extensions().clone();
    assert!(copy.get::<Observers>().unwrap().clone().take().is_empty());
    apply(&mut res, Chain::default());
    assert_eq!(seen.lock().unwrap().len(), 1);
}

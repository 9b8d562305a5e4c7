use super::*;

#[test]
fn transitions_charge_the_running_boundary_only() {
    let ctx = RequestCtx::new(true, 3, u64::MAX, http::Method::GET, None);
    let outer = ctx.enter(0);
    assert_eq!(outer, NONE);
    let p = ctx.enter(1);
    assert_eq!(p, 0);
    std::thread::sleep(std::time::Duration::from_millis(2));
    ctx.exit(1, p);
    ctx.exit(0, outer);
    let slots = ctx.slots();
    let inner = slots[1].exclusive.load(Relaxed);
    let outer = slots[0].exclusive.load(Relaxed);
    assert!(inner >= crate::clock::ticks::ns_to_ticks(2_000_000));
    assert!(
        outer < inner,
        "the outer boundary is not charged its child's sleep"
    );
    assert_eq!(slots[2].exclusive.load(Relaxed), 0);
}

#[test]
fn untimed_contexts_keep_no_slots() {
    let ctx = RequestCtx::new(false, 3, 0, http::Method::GET, None);
    assert!(ctx.slots().is_empty());
    assert!(!ctx.exit(0, ctx.enter(0)));
}

use super::*;

#[test]
fn transitions_charge_the_running_boundary_only() {
    let ctx = RequestCtx::new(true, 3, u64::MAX, http::Method::GET, None);
    let started = now();
    let outer = ctx.enter(0);
    assert_eq!(outer, NONE);
    let p = ctx.enter(1);
    assert_eq!(p, 0);
    std::thread::sleep(std::time::Duration::from_millis(2));
    ctx.exit(1, p);
    ctx.exit(0, outer);
    let total = now() - started;
    let slots = ctx.slots();
    let inner = slots[1].exclusive.load(Relaxed);
    let outer = slots[0].exclusive.load(Relaxed);
    assert!(inner >= crate::clock::ticks::ns_to_ticks(2_000_000));
    // The two share the time between the first enter and the last exit: charging the outer
    // its child's sleep would count the sleep twice. (A comparison of the two alone fails on
    // a busy machine, where the outer's own few instructions can be preempted for longer.)
    assert!(
        outer + inner <= total,
        "the outer boundary is charged its child's time: {outer} + {inner} > {total}"
    );
    assert_eq!(slots[2].exclusive.load(Relaxed), 0);
}

#[test]
fn untimed_contexts_keep_no_slots() {
    let ctx = RequestCtx::new(false, 3, 0, http::Method::GET, None);
    assert!(ctx.slots().is_empty());
    assert!(!ctx.exit(0, ctx.enter(0)));
}

//! Instructions per request through each kind of stack, for callgrind (which counts
//! instructions, not time, so the figures hold on a busy machine).
//!
//! run with: python3 bench/instructions.py   (builds this, runs it under callgrind at two
//! request counts and prints instructions per request: the difference over the extra requests)
//!
//! By hand: cargo bench --bench instructions --no-run, then
//! valgrind --tool=callgrind target/release/deps/instructions-* <group> <n> <requests>

#![allow(missing_docs)]

mod common;

use std::convert::Infallible;

use callnext::{Entry, Request, Response, Stack};
use common::{endpoint, request, stack_of, Noop, NoopHook, NoopLayer, ReadyHook};
use tower::{Service, ServiceExt};

/// One request, start to end: what callgrind counts (`--toggle-collect=*serve_one*`).
#[inline(never)]
fn serve_one<S>(rt: &tokio::runtime::Runtime, svc: &S)
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone,
{
    let req = request();
    let res = rt.block_on(svc.clone().oneshot(req)).unwrap();
    drop(std::hint::black_box(res));
}

fn drive<S>(rt: &tokio::runtime::Runtime, svc: S, requests: usize)
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone,
{
    for _ in 0..requests {
        serve_one(rt, &svc);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 || args[1] == "--bench" {
        // `cargo bench` runs every bench target: nothing to do without arguments.
        return;
    }
    let (group, n, requests) = (
        args[1].as_str(),
        args[2].parse().unwrap(),
        args[3].parse().unwrap(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    match group {
        "axum" => drive(&rt, endpoint(), requests),
        "fn" => drive(
            &rt,
            stack_of(n, Stack::new(), || Entry::func(common::noop)).service(endpoint()),
            requests,
        ),
        "fn_off" => drive(
            &rt,
            stack_of(n, Stack::new().instrument(false), || {
                Entry::func(common::noop)
            })
            .service(endpoint()),
            requests,
        ),
        "struct" => drive(
            &rt,
            stack_of(n, Stack::new(), || Entry::middleware(Noop)).service(endpoint()),
            requests,
        ),
        "hook" => drive(
            &rt,
            stack_of(n, Stack::new(), || Entry::hook(NoopHook)).service(endpoint()),
            requests,
        ),
        "hook_off" => drive(
            &rt,
            stack_of(n, Stack::new().instrument(false), || Entry::hook(NoopHook))
                .service(endpoint()),
            requests,
        ),
        "hook_ready" => drive(
            &rt,
            stack_of(n, Stack::new(), || Entry::hook(ReadyHook)).service(endpoint()),
            requests,
        ),
        "tower" => drive(
            &rt,
            stack_of(n, Stack::new(), || Entry::layer("noop", NoopLayer)).service(endpoint()),
            requests,
        ),
        battery if battery.starts_with("battery_") => {
            // The timeout battery needs tokio's timer.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            // `battery_<name>_live`: the same stack recording for the live page.
            let name = &battery["battery_".len()..];
            let (name, live) = match name.strip_suffix("_live") {
                Some(name) => (name, true),
                None => (name, false),
            };
            let mut stack = common::battery_stack(name);
            if live {
                stack = stack.live(&callnext::admin::LivePage::new());
            }
            drive(&rt, stack.service(endpoint()), requests);
        }
        other => panic!("unknown group {other}"),
    }
}

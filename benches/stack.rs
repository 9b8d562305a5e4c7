//! Per-request cost through stacks of 0, 1, 4 and 16 no-op middlewares, in-process.
//!
//! run with: bench/stack_rounds.sh   (several rounds of `cargo bench --bench stack`, then
//! `bench/per_layer.py` over all of them: ns per request and per added layer)

// criterion's macros generate undocumented items.
#![allow(missing_docs)]

mod common;

use callnext::{Entry, Request, Response, Stack};
use common::{endpoint, request, stack_of, Noop, NoopHook, NoopLayer, ReadyHook};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::convert::Infallible;
use tower::{Layer, Service, ServiceExt};

const SIZES: [usize; 4] = [0, 1, 4, 16];

async fn axum_noop(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    next.run(req).await
}

/// `layer` applied `n` times (n in SIZES), keeping static types.
macro_rules! nest {
    ($n:expr, $layer:expr, $svc:expr, |$s:ident| $use:expr) => {
        match $n {
            0 => {
                let $s = $svc;
                $use
            }
            1 => {
                let $s = $layer.layer($svc);
                $use
            }
            4 => {
                let $s = apply4(&$layer, $svc);
                $use
            }
            16 => {
                let $s = apply4(
                    &$layer,
                    apply4(&$layer, apply4(&$layer, apply4(&$layer, $svc))),
                );
                $use
            }
            _ => unreachable!(),
        }
    };
}

#[allow(clippy::type_complexity)] // four nested layers, spelled out to keep static dispatch
fn apply4<L, S>(
    l: &L,
    s: S,
) -> <L as Layer<<L as Layer<<L as Layer<<L as Layer<S>>::Service>>::Service>>::Service>>::Service
where
    L: Layer<S>
        + Layer<<L as Layer<S>>::Service>
        + Layer<<L as Layer<<L as Layer<S>>::Service>>::Service>
        + Layer<<L as Layer<<L as Layer<<L as Layer<S>>::Service>>::Service>>::Service>,
{
    l.layer(l.layer(l.layer(l.layer(s))))
}

fn run<S>(c: &mut Criterion, group: &str, n: usize, svc: S)
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut g = c.benchmark_group(group);
    g.bench_function(BenchmarkId::from_parameter(n), |b| {
        b.to_async(&rt).iter(|| {
            let svc = svc.clone();
            async move { svc.oneshot(request()).await.unwrap() }
        })
    });
    g.finish();
}

fn stacks(c: &mut Criterion) {
    for n in SIZES {
        let stack = stack_of(n, Stack::new(), || Entry::func(common::noop));
        run(c, "callnext_fn", n, stack.service(endpoint()));

        let stack = stack_of(n, Stack::new().instrument(false), || {
            Entry::func(common::noop)
        });
        run(
            c,
            "callnext_fn_uninstrumented",
            n,
            stack.service(endpoint()),
        );

        let stack = stack_of(n, Stack::new(), || Entry::middleware(Noop));
        run(c, "callnext_struct", n, stack.service(endpoint()));

        let stack = stack_of(n, Stack::new(), || Entry::hook(NoopHook));
        run(c, "callnext_hook", n, stack.service(endpoint()));

        let stack = stack_of(n, Stack::new().instrument(false), || Entry::hook(NoopHook));
        run(
            c,
            "callnext_hook_uninstrumented",
            n,
            stack.service(endpoint()),
        );

        let stack = stack_of(n, Stack::new(), || Entry::hook(ReadyHook));
        run(c, "callnext_hook_async_ready", n, stack.service(endpoint()));

        let stack = stack_of(n, Stack::new(), || Entry::layer("noop", NoopLayer));
        run(c, "callnext_tower", n, stack.service(endpoint()));

        let router = (0..n).fold(endpoint(), |r, _| {
            r.layer(axum::middleware::from_fn(axum_noop))
        });
        run(c, "axum_from_fn_router_layer", n, router);

        let layer = axum::middleware::from_fn(axum_noop);
        nest!(n, layer, endpoint(), |svc| run(
            c,
            "axum_from_fn_service_builder",
            n,
            svc
        ));

        nest!(n, NoopLayer, endpoint(), |svc| run(
            c,
            "tower_hand_written",
            n,
            svc
        ));
    }
}

/// Each battery alone in front of the one-route app, and the production stack.
fn batteries(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("battery");
    for name in common::BATTERIES {
        let svc = common::battery_stack(name).service(endpoint());
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let svc = svc.clone();
                async move { svc.oneshot(request()).await.unwrap() }
            })
        });
    }
    g.finish();
}

/// The memory store's check with 100,000 callers active, each check a different one (the
/// cache-unfriendly case).
fn rate_limit(c: &mut Criterion) {
    use callnext::middleware::RateLimit;
    const CALLERS: u32 = 100_000;
    let limit = RateLimit::builder()
        .limit("1000000/hour")
        .max_keys(2 * CALLERS as usize)
        .build()
        .unwrap();
    let ip = |i: u32| std::net::IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 | i));
    for i in 0..CALLERS {
        limit.check_ip(ip(i), 1);
    }
    let mut g = c.benchmark_group("rate_limit");
    let mut i = 0u32;
    g.bench_function("memory_check_100k_callers", |b| {
        b.iter(|| {
            i = (i + 1) % CALLERS;
            std::hint::black_box(limit.check_ip(ip(i), 1))
        })
    });
    g.finish();
    assert!(limit.memory_keys() >= CALLERS as usize);
}

/// A JWKS endpoint on 127.0.0.1 serving key `a` of the tests, and a token it verifies.
fn jwks(rt: &tokio::runtime::Runtime) -> (String, String) {
    use jsonwebtoken::{jwk::Jwk, jwk::JwkSet, Algorithm, EncodingKey, Header};
    callnext::middleware::auth::Jwt::install_crypto();
    let key = EncodingKey::from_rsa_pem(include_bytes!("../tests/keys/jwt_a.pem")).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("a".to_owned());
    let set = serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap();
    let app = axum::Router::new().route("/jwks", axum::routing::get(move || async move { set }));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("a".to_owned());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = serde_json::json!({"sub": "bench", "exp": exp, "scope": "read"});
    (url, jsonwebtoken::encode(&header, &claims, &key).unwrap())
}

/// A request with a valid API key (cached after the first), and one with a JWT signed with
/// RS256 (its key set fetched once), remembered once verified and verified on every request,
/// against the same request through a no-op hook: what checking the credential costs in
/// process.
fn auth(c: &mut Criterion) {
    use callnext::middleware::auth::{Auth, Jwt, SqlKeyStore};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("callnext-bench-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keys.db");
    let _ = std::fs::remove_file(&path);
    let keys = SqlKeyStore::open(&format!("sqlite://{}", path.display())).unwrap();
    let key = rt
        .block_on(keys.create("bench", &["read".to_owned()]))
        .unwrap()
        .key;
    let auth = Auth::builder()
        .api_keys(keys)
        .require_scopes("/", ["read"])
        .build()
        .unwrap();
    let (jwks_url, token) = jwks(&rt);
    let jwt = |remembered| {
        Auth::builder()
            .jwt(
                Jwt::jwks(jwks_url.clone())
                    .any_audience(true)
                    .verified_tokens(remembered),
            )
            .require_scopes("/", ["read"])
            .build()
            .unwrap()
    };
    let bearer = |t: &str| http::HeaderValue::from_str(&format!("Bearer {t}")).unwrap();
    let mut g = c.benchmark_group("auth");
    for (name, stack, credential) in [
        ("noop_hook", Stack::new().hook(NoopHook), bearer(&key)),
        (
            "api_key_cached",
            Stack::new().hook(auth.clone()),
            bearer(&key),
        ),
        ("jwt_rs256", Stack::new().hook(jwt(10_000)), bearer(&token)),
        (
            "jwt_rs256_verified_every_request",
            Stack::new().hook(jwt(0)),
            bearer(&token),
        ),
    ] {
        let request = || {
            let mut req = request();
            req.headers_mut()
                .insert(http::header::AUTHORIZATION, credential.clone());
            req
        };
        let svc = stack.service(endpoint());
        let first = rt.block_on(svc.clone().oneshot(request())).unwrap();
        assert_eq!(first.status(), 200);
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let svc = svc.clone();
                async move { svc.oneshot(request()).await.unwrap() }
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(40)
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1));
    targets = stacks, batteries, rate_limit, auth
}
criterion_main!(benches);

//! JWTs against a JWKS server started here on 127.0.0.1: valid, expired, not yet valid, wrong
//! audience and issuer, `alg` swapped to `none` or to HS256 signed with the public key, `exp`
//! as a string; scopes; key rotation; tokens with random `kid`s; a JWKS URL that is down.
//! (The RSA keys in `tests/keys` are test keys made for these tests, nothing else.)

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::routing::get;
use axum::Router;
use callnext::middleware::auth::{Auth, AuthMethod, Identity, Jwt};
use callnext::middleware::{Cors, SetRequestId};
use callnext::{Stack, TestClient, UserId};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const KEY_A: &[u8] = include_bytes!("keys/jwt_a.pem");
const KEY_B: &[u8] = include_bytes!("keys/jwt_b.pem");
const PUBLIC_A: &[u8] = include_bytes!("keys/jwt_a.pub.pem");
const ISSUER: &str = "https://issuer.test/";
const AUDIENCE: &str = "https://api.test";

fn key(pem: &[u8]) -> EncodingKey {
    // jsonwebtoken has no provider of its own in this build: callnext's (on ring) signs too.
    Jwt::install_crypto();
    EncodingKey::from_rsa_pem(pem).unwrap()
}

fn jwk(pem: &[u8], kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(&key(pem), Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims that pass, with `extra` merged over them.
fn claims(extra: Value) -> Value {
    let mut claims = json!({
        "sub": "ann",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": now() + 600,
        "iat": now(),
        "scope": "reports:read",
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

fn token(pem: &[u8], kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, &key(pem)).unwrap()
}

/// A JWKS endpoint whose key set the test changes, counting its fetches.
struct JwksServer {
    url: String,
    keys: Arc<Mutex<Vec<Jwk>>>,
    fetches: Arc<AtomicUsize>,
}

async fn jwks_server(keys: Vec<Jwk>) -> JwksServer {
    let keys = Arc::new(Mutex::new(keys));
    let fetches = Arc::new(AtomicUsize::new(0));
    let app = Router::new().route(
        "/.well-known/jwks.json",
        get({
            let (keys, fetches) = (Arc::clone(&keys), Arc::clone(&fetches));
            move || async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                let set = JwkSet {
                    keys: keys.lock().unwrap().clone(),
                };
                axum::Json(set)
            }
        }),
    );
    let addr = common::serve_router(app).await;
    JwksServer {
        url: format!("http://{addr}/.well-known/jwks.json"),
        keys,
        fetches,
    }
}

fn app() -> Router {
    Router::new()
        .route(
            "/reports",
            get(|who: Identity, user: axum::Extension<UserId>| async move {
                assert_eq!(who.method(), AuthMethod::Jwt);
                json!({
                    "subject": who.subject(),
                    "user": user.0.as_str(),
                    "scopes": who.scopes().collect::<Vec<_>>(),
                    "iss": who.claims().unwrap()["iss"],
                })
                .to_string()
            }),
        )
        .route("/admin", get(|| async { "admin" }))
}

fn settings(url: &str) -> Jwt {
    Jwt::jwks(url).issuer(ISSUER).audience(AUDIENCE)
}

fn client(jwt: Jwt) -> TestClient<callnext::StackService> {
    let auth = Auth::builder()
        .jwt(jwt)
        .require_scopes("/reports", ["reports:read"])
        .require_scopes("/admin", ["admin"])
        .build()
        .unwrap();
    let cors = Cors::builder()
        .allow_origins(["https://app.example"])
        .allow_headers(["authorization"])
        .build()
        .unwrap();
    let stack = Stack::new().hook(SetRequestId::new()).hook(cors).hook(auth);
    TestClient::new(stack.service(app()))
}

fn detail(res: &callnext::TestResponse) -> String {
    res.json::<Value>()["detail"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn valid_tokens_pass_and_bad_claims_are_401() {
    let jwks = jwks_server(vec![jwk(KEY_A, "a")]).await;
    let client = client(settings(&jwks.url).leeway(Duration::from_secs(30)));

    let good = token(KEY_A, Some("a"), &claims(json!({})));
    let res = client.get("/reports").bearer(&good).await;
    assert_eq!(res.status(), 200, "{}", res.text());
    assert_eq!(
        res.json::<Value>(),
        json!({"subject": "ann", "user": "ann", "scopes": ["reports:read"], "iss": ISSUER})
    );

    let cases = [
        (json!({"exp": now() - 120}), "Token has expired"),
        (json!({"nbf": now() + 120}), "Token is not valid yet"),
        (
            json!({"aud": "https://other.test"}),
            "Token audience is not accepted",
        ),
        (
            json!({"iss": "https://evil.test/"}),
            "Token issuer is not accepted",
        ),
        (json!({"exp": null}), "Token lacks a required claim"),
        (json!({"aud": null}), "Token lacks a required claim"),
        // CVE-2026-25537: a string `exp` must not be taken as an absent, unchecked one.
        (
            json!({"exp": (now() - 120).to_string()}),
            "Token lacks a required claim",
        ),
        (
            json!({"exp": (now() + 600).to_string()}),
            "Token lacks a required claim",
        ),
        (json!({"sub": null}), "Token has no subject"),
    ];
    for (extra, expected) in cases {
        let bad = token(KEY_A, Some("a"), &claims(extra.clone()));
        let res = client
            .get("/reports")
            .bearer(&bad)
            .header("origin", "https://app.example")
            .await;
        assert_eq!(res.status(), 401, "{extra}: {}", res.text());
        assert_eq!(detail(&res), expected, "{extra}");
        assert_eq!(
            res.header("www-authenticate"),
            Some("Bearer error=\"invalid_token\"")
        );
        assert!(res.header("x-request-id").is_some());
        assert_eq!(
            res.header("access-control-allow-origin"),
            Some("https://app.example")
        );
    }
    // Within the leeway, an expired token still passes.
    let late = token(KEY_A, Some("a"), &claims(json!({"exp": now() - 10})));
    assert_eq!(client.get("/reports").bearer(&late).await.status(), 200);
    // Signed by a key that is not the one its `kid` names.
    let forged = token(KEY_B, Some("a"), &claims(json!({})));
    let res = client.get("/reports").bearer(&forged).await;
    assert_eq!(res.status(), 401);
    assert_eq!(detail(&res), "Invalid token signature");
    // Not a JWT at all, and no credentials.
    let res = client.get("/reports").bearer("a.b.c").await;
    assert_eq!(res.status(), 401);
    assert_eq!(detail(&res), "Invalid token");
    let res = client.get("/reports").await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.header("www-authenticate"), Some("Bearer"));
    // A preflight to the protected route passes to CORS.
    let res = client
        .options("/reports")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .await;
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some("https://app.example")
    );
}

#[tokio::test]
async fn the_algorithm_comes_from_the_settings_never_from_the_token() {
    let jwks = jwks_server(vec![jwk(KEY_A, "a")]).await;
    let client = client(settings(&jwks.url));
    let b64 = |v: &Value| base64url(v.to_string().as_bytes());
    // `alg: none`, no signature.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": "a"})),
        b64(&claims(json!({})))
    );
    let res = client.get("/reports").bearer(&none).await;
    assert_eq!(res.status(), 401);
    assert_eq!(detail(&res), "Invalid token");
    // HS256 with the RSA public key as the HMAC secret (the classic confusion attack).
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("a".to_owned());
    let confused = encode(
        &header,
        &claims(json!({})),
        &EncodingKey::from_secret(PUBLIC_A),
    )
    .unwrap();
    let res = client.get("/reports").bearer(&confused).await;
    assert_eq!(res.status(), 401);
    assert_eq!(detail(&res), "Token algorithm is not accepted");
    // RS384 is not among the settings' algorithms either, though the key could verify it.
    let mut header = Header::new(Algorithm::RS384);
    header.kid = Some("a".to_owned());
    let other = encode(&header, &claims(json!({})), &key(KEY_A)).unwrap();
    let res = client.get("/reports").bearer(&other).await;
    assert_eq!(detail(&res), "Token algorithm is not accepted");
}

/// base64url without padding, as JWTs use.
fn base64url(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn scopes_come_from_scope_or_scp() {
    let jwks = jwks_server(vec![jwk(KEY_A, "a")]).await;
    let client = client(settings(&jwks.url));
    let reader = token(KEY_A, Some("a"), &claims(json!({})));
    let res = client.get("/admin").bearer(&reader).await;
    assert_eq!(res.status(), 403);
    assert_eq!(
        res.header("www-authenticate"),
        Some("Bearer error=\"insufficient_scope\", scope=\"admin\"")
    );
    let admin = token(
        KEY_A,
        Some("a"),
        &claims(json!({"scope": null, "scp": ["reports:read", "admin"]})),
    );
    assert_eq!(client.get("/admin").bearer(&admin).await.text(), "admin");
}

#[tokio::test]
async fn a_rotated_key_set_is_picked_up() {
    let jwks = jwks_server(vec![jwk(KEY_A, "a")]).await;
    let client = client(
        settings(&jwks.url)
            .min_refresh_interval(Duration::ZERO)
            .jwks_max_age(Duration::from_millis(50)),
    );
    let old = token(KEY_A, Some("a"), &claims(json!({})));
    let new = token(KEY_B, Some("b"), &claims(json!({})));
    assert_eq!(client.get("/reports").bearer(&old).await.status(), 200);
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 1);
    // The issuer adds key b: the first token naming it makes the set be fetched again.
    jwks.keys.lock().unwrap().push(jwk(KEY_B, "b"));
    assert_eq!(client.get("/reports").bearer(&new).await.status(), 200);
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 2);
    // Then removes key a: once the set is older than its max age it is refreshed in the
    // background, and tokens signed with a stop passing.
    jwks.keys.lock().unwrap().remove(0);
    let mut status = 200;
    for _ in 0..1000 {
        status = client.get("/reports").bearer(&old).await.status().as_u16();
        if status == 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 401, "the removed key still verifies");
    assert_eq!(client.get("/reports").bearer(&new).await.status(), 200);
}

#[tokio::test]
async fn tokens_with_random_key_ids_cause_a_handful_of_fetches() {
    let jwks = jwks_server(vec![jwk(KEY_A, "a")]).await;
    let client = client(settings(&jwks.url));
    let good = token(KEY_A, Some("a"), &claims(json!({})));
    assert_eq!(client.get("/reports").bearer(&good).await.status(), 200);
    let body = claims(json!({}));
    let tokens: Vec<String> = (0..1000)
        .map(|i| token(KEY_A, Some(&format!("random-{i}-{}", now())), &body))
        .collect();
    for batch in tokens.chunks(100) {
        let answers = futures_util::future::join_all(
            batch
                .iter()
                .map(|t| client.get("/reports").bearer(t).send()),
        )
        .await;
        for res in answers {
            assert_eq!(res.status(), 401);
            assert_eq!(detail(&res), "Unknown signing key");
        }
    }
    let fetches = jwks.fetches.load(Ordering::SeqCst);
    // One at the start, at most one more per 10 s (the minimum refresh interval) the test ran.
    assert!(fetches <= 3, "{fetches} fetches of the JWKS");
    assert_eq!(client.get("/reports").bearer(&good).await.status(), 200);
}

#[tokio::test]
async fn a_jwks_url_that_is_down_or_failing_is_a_503() {
    // Nothing listens: bind a port, then let it go.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let client_down = client(settings(&format!("http://{closed}/jwks.json")));
    let good = token(KEY_A, Some("a"), &claims(json!({})));
    let res = client_down.get("/reports").bearer(&good).await;
    assert_eq!(res.status(), 503, "{}", res.text());
    assert_eq!(res.header("retry-after"), Some("1"));
    assert_eq!(detail(&res), "Service Unavailable");

    // A JWKS URL that answers 500.
    let app = Router::new().route(
        "/jwks.json",
        get(|| async { (http::StatusCode::INTERNAL_SERVER_ERROR, "oops") }),
    );
    let addr = common::serve_router(app).await;
    let client_failing = client(settings(&format!("http://{addr}/jwks.json")));
    assert_eq!(
        client_failing.get("/reports").bearer(&good).await.status(),
        503
    );
    // Still no key, so still 503 (and no fetch within the minimum interval).
    assert_eq!(
        client_failing.get("/reports").bearer(&good).await.status(),
        503
    );
}

#[test]
fn the_configuration_table_builds_the_battery_and_names_its_mistakes() {
    let ok = "[middleware.auth]\njwks_url = \"https://login.test/jwks.json\"\njwt_issuer = \"https://login.test/\"\njwt_audience = \"api\"\njwt_algorithms = [\"RS256\", \"ES256\"]\n";
    let stack = common::stack_from_config(ok).unwrap();
    assert_eq!(stack.describe()[0].name, "auth");
    let err = |text: &str| common::stack_from_config(text).unwrap_err();
    assert_eq!(
        err("[middleware.auth]\njwks_url = \"ftp://login.test/jwks\"\n"),
        "app.toml:2: `middleware.auth.jwks_url`: invalid `jwks_url`: expected an http:// or https:// URL, got `ftp://login.test/jwks`"
    );
    assert_eq!(
        err("[middleware.auth]\njwks_url = \"https://login.test/jwks\"\njwt_algorithms = [\"none\"]\n"),
        "app.toml:3: `middleware.auth.jwt_algorithms`: invalid `jwt_algorithms`: `none` cannot be verified with a JWKS's public keys; allowed: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA"
    );
    assert_eq!(
        err("[middleware.auth]\njwks_url = \"https://login.test/jwks\"\njwt_algorithms = []\n"),
        "app.toml:3: `middleware.auth.jwt_algorithms`: invalid `jwt_algorithms`: name at least one algorithm (RS256, ES256, EdDSA, ...)"
    );
}

#[tokio::test]
async fn a_token_for_another_application_needs_an_audience_waived_on_purpose() {
    let jwks = jwks_server(vec![jwk(KEY_A, "a")]).await;
    let for_other_app = token(
        KEY_A,
        Some("a"),
        &claims(json!({"aud": "https://billing.other.test"})),
    );
    // No audience: refused when built, naming the way out.
    let err = Auth::builder()
        .jwt(Jwt::jwks(&jwks.url).issuer(ISSUER))
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid `jwt_audience`: name the audience this API's tokens are issued for (its identifier at the identity provider), or set `any_audience = true` to accept tokens issued to any of its applications"
    );
    // With the audience: the other application's token is refused.
    let res = client(settings(&jwks.url))
        .get("/reports")
        .bearer(&for_other_app)
        .await;
    assert_eq!(res.status(), 401);
    // Waived on purpose: accepted, and the linter says so.
    let waived = Jwt::jwks(&jwks.url).issuer(ISSUER).any_audience(true);
    let res = client(waived.clone())
        .get("/reports")
        .bearer(&for_other_app)
        .await;
    assert_eq!(res.status(), 200, "{}", res.text());
    let stack = Stack::new().hook(Auth::builder().jwt(waived).build().unwrap());
    let warnings = stack.lint();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].rule(), "jwt-any-audience");
    assert!(!warnings[0].is_order_rule());
    assert!(warnings[0]
        .to_string()
        .starts_with("`auth`: accepts JWTs issued to any application"));
}

#[test]
fn a_jwks_url_over_plain_http_is_only_for_this_machine() {
    let jwt = |url: &str| {
        Auth::builder()
            .jwt(Jwt::jwks(url).audience(AUDIENCE))
            .build()
    };
    for url in [
        "http://login.example/jwks",
        "http://10.0.0.5/jwks",
        "http://127.0.0.1.evil.example/jwks",
    ] {
        assert_eq!(
            jwt(url).unwrap_err().to_string(),
            "invalid `jwks_url`: plain http:// only to a loopback address (anyone on the path could hand out keys); use https://",
            "{url}"
        );
    }
    for url in [
        "https://login.example/jwks",
        "http://127.0.0.1:8080/jwks",
        "http://[::1]/jwks",
        "http://localhost/jwks",
    ] {
        assert!(jwt(url).is_ok(), "{url}");
    }
    let err = common::stack_from_config(
        "[middleware.auth]\njwks_url = \"https://login.test/jwks\"\njwt_issuer = \"https://login.test/\"\n",
    )
    .unwrap_err();
    assert!(err.contains("invalid `jwt_audience`"), "{err}");
    let waived = "[middleware.auth]\njwks_url = \"https://login.test/jwks\"\nany_audience = true\n";
    let stack = common::stack_from_config(waived).unwrap();
    assert_eq!(stack.lint()[0].rule(), "jwt-any-audience");
}

/// A token signed with `key` as `alg`.
fn signed(alg: Algorithm, key: &EncodingKey, kid: &str) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    encode(&header, &claims(json!({})), key).unwrap()
}

/// The same token with one bit of its signature flipped.
fn tampered(token: &str) -> String {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (signed_part, signature) = token.rsplit_once('.').unwrap();
    let mut bytes = engine.decode(signature).unwrap();
    bytes[0] ^= 1;
    format!("{signed_part}.{}", engine.encode(bytes))
}

#[tokio::test]
async fn every_public_key_algorithm_verifies_and_a_flipped_bit_does_not() {
    use ring::signature::{self as sig, KeyPair};
    Jwt::install_crypto();
    let rng = ring::rand::SystemRandom::new();
    let ec = |alg| {
        let pkcs8 = sig::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        EncodingKey::from_ec_der(pkcs8.as_ref())
    };
    let (es256, es384) = (
        ec(&sig::ECDSA_P256_SHA256_FIXED_SIGNING),
        ec(&sig::ECDSA_P384_SHA384_FIXED_SIGNING),
    );
    let ed_pkcs8 = sig::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let ed_public = sig::Ed25519KeyPair::from_pkcs8(ed_pkcs8.as_ref())
        .unwrap()
        .public_key()
        .as_ref()
        .to_vec();
    let ed = EncodingKey::from_ed_der(ed_pkcs8.as_ref());
    let named = |key: &EncodingKey, alg, kid: &str| {
        let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        jwk
    };
    let ed_jwk: Jwk = serde_json::from_value(json!({
        "kty": "OKP", "crv": "Ed25519", "kid": "ed", "alg": "EdDSA",
        "x": base64url(&ed_public),
    }))
    .unwrap();
    let jwks = jwks_server(vec![
        named(&es256, Algorithm::ES256, "es256"),
        named(&es384, Algorithm::ES384, "es384"),
        named(&key(KEY_A), Algorithm::PS256, "ps256"),
        named(&key(KEY_B), Algorithm::RS512, "rs512"),
        ed_jwk,
    ])
    .await;
    let client =
        client(settings(&jwks.url).algorithms(["ES256", "ES384", "PS256", "RS512", "EdDSA"]));
    let tokens = [
        ("ES256", signed(Algorithm::ES256, &es256, "es256")),
        ("ES384", signed(Algorithm::ES384, &es384, "es384")),
        ("PS256", signed(Algorithm::PS256, &key(KEY_A), "ps256")),
        ("RS512", signed(Algorithm::RS512, &key(KEY_B), "rs512")),
        ("EdDSA", signed(Algorithm::EdDSA, &ed, "ed")),
    ];
    for (alg, token) in &tokens {
        let res = client.get("/reports").bearer(token).await;
        assert_eq!(res.status(), 200, "{alg}: {}", res.text());
        let res = client.get("/reports").bearer(&tampered(token)).await;
        assert_eq!(res.status(), 401, "{alg} with a flipped bit");
        assert_eq!(detail(&res), "Invalid token signature", "{alg}");
    }
    // A key of one family named by a token of another does not verify.
    let swapped = signed(Algorithm::ES256, &es256, "rs512");
    assert_eq!(client.get("/reports").bearer(&swapped).await.status(), 401);
}

#[tokio::test]
async fn a_remembered_token_stops_passing_at_its_exp() {
    let jwks = jwks_server(vec![jwk(KEY_A, "a")]).await;
    let client = client(settings(&jwks.url).leeway(Duration::ZERO));
    // Seconds enough for the first request's key fetch and verification on a busy machine.
    let exp = now() + 5;
    let token = token(KEY_A, Some("a"), &claims(json!({ "exp": exp })));
    // Verified, then taken from the verified tokens.
    for _ in 0..3 {
        assert_eq!(client.get("/reports").bearer(&token).await.status(), 200);
    }
    // jsonwebtoken takes `exp` itself as still valid.
    while now() <= exp {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let res = client.get("/reports").bearer(&token).await;
    assert_eq!(res.status(), 401);
    assert_eq!(detail(&res), "Token has expired");
}

#[tokio::test]
async fn without_the_verified_tokens_every_request_verifies_the_same() {
    let jwks = jwks_server(vec![jwk(KEY_A, "a")]).await;
    let client = client(settings(&jwks.url).verified_tokens(0));
    let token = token(KEY_A, Some("a"), &claims(json!({})));
    for _ in 0..3 {
        assert_eq!(client.get("/reports").bearer(&token).await.status(), 200);
    }
    let res = client.get("/reports").bearer(&tampered(&token)).await;
    assert_eq!(detail(&res), "Invalid token signature");
}

#[tokio::test]
async fn a_remembered_token_is_verified_again_once_its_key_is_gone() {
    let jwks = jwks_server(vec![jwk(KEY_A, "a")]).await;
    // The set is not old enough for a background refresh during the test: only the fetch a
    // new key id causes brings the change.
    let client = client(
        settings(&jwks.url)
            .min_refresh_interval(Duration::ZERO)
            .jwks_max_age(Duration::from_secs(3600)),
    );
    let old = token(KEY_A, Some("a"), &claims(json!({})));
    assert_eq!(client.get("/reports").bearer(&old).await.status(), 200);
    assert_eq!(client.get("/reports").bearer(&old).await.status(), 200);
    // The issuer replaces key a by key b; the first token naming b fetches the new set.
    *jwks.keys.lock().unwrap() = vec![jwk(KEY_B, "b")];
    let new = token(KEY_B, Some("b"), &claims(json!({})));
    assert_eq!(client.get("/reports").bearer(&new).await.status(), 200);
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 2);
    let res = client.get("/reports").bearer(&old).await;
    assert_eq!(res.status(), 401, "a token of a removed key passed");
    assert_eq!(detail(&res), "Unknown signing key");
}

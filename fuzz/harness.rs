//! What each fuzz target does with one input, shared by the fuzz targets (`cargo fuzz run
//! NAME`) and by `tests/fuzz_corpus.rs`, which replays the committed corpus on every test run.
//! Each function checks the property that must hold for any input, and panics when it does
//! not (a panic of callnext's own is a finding too).
#![allow(dead_code, unreachable_pub)]

use std::net::IpAddr;
use std::sync::OnceLock;

use axum::routing::get;
use axum::Router;
use callnext::config::{Config, Registry};
use callnext::extract::{Path, Query};
use callnext::middleware::session::{Session, Sessions};
use callnext::middleware::SetRequestId;
use callnext::{
    ClientIp, Flow, ForwardedHeader, Hook, HttpError, Stack, StackService, TrustedProxies,
};
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use tower::ServiceExt;

/// The targets, by name.
pub const TARGETS: [&str; 5] = [
    "forwarded",
    "request_id",
    "config",
    "extract",
    "session_cookie",
];

/// Runs target `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "forwarded" => forwarded(data),
        "request_id" => request_id(data),
        "config" => config(data),
        "extract" => extract(data),
        "session_cookie" => session_cookie(data),
        other => panic!("no fuzz target {other}"),
    }
}

/// `X-Forwarded-For` or `Forwarded` into a `ClientIp`, compared with a reference written here
/// as plainly as possible: the rightmost address that is not a trusted proxy, walking from
/// the peer leftwards through the header's entries; an entry that is not an address stops the
/// walk at the proxy that wrote it. The first byte picks the header and the peer; the rest is
/// the header's value (a line break in it makes two header lines).
pub fn forwarded(data: &[u8]) {
    let Some((&first, value)) = data.split_first() else {
        return;
    };
    let (kind, name) = if first & 1 == 0 {
        (ForwardedHeader::XForwardedFor, "x-forwarded-for")
    } else {
        (ForwardedHeader::Forwarded, "forwarded")
    };
    let nets = ["127.0.0.1/32", "10.0.0.0/8", "::1/128", "2001:db8::/32"];
    let trusted = TrustedProxies::parse(nets).unwrap().header(kind);
    let peers: [IpAddr; 4] = [
        "127.0.0.1".parse().unwrap(),
        "10.1.2.3".parse().unwrap(),
        "203.0.113.9".parse().unwrap(),
        "2001:db8::7".parse().unwrap(),
    ];
    let peer = peers[usize::from(first >> 1) % peers.len()];
    let mut headers = HeaderMap::new();
    let mut lines = Vec::new();
    for line in value.split(|b| *b == b'\n') {
        let Ok(line) = HeaderValue::from_bytes(line) else {
            return;
        };
        headers.append(name, line.clone());
        lines.push(line);
    }
    let ip = ClientIp::resolve(peer, &headers, &trusted);
    let is_trusted = |ip: IpAddr| {
        nets.iter().any(|net| {
            let net: ipnet::IpNet = net.parse().unwrap();
            net.contains(&ip)
        })
    };
    let expected = reference_client(peer, &lines, kind, is_trusted);
    assert_eq!(ip.0, expected, "peer {peer}, {name}: {lines:?}");
}

/// The reference walk (see [`forwarded`]).
fn reference_client(
    peer: IpAddr,
    lines: &[HeaderValue],
    kind: ForwardedHeader,
    is_trusted: impl Fn(IpAddr) -> bool,
) -> IpAddr {
    if !is_trusted(peer) {
        return peer;
    }
    // Every entry of every line, left to right.
    let mut entries: Vec<Option<&str>> = Vec::new();
    for line in lines {
        match std::str::from_utf8(line.as_bytes()) {
            Ok(text) => entries.extend(text.split(',').map(Some)),
            // A line that is not text: nothing to its left can be read.
            Err(_) => entries.push(None),
        }
    }
    let mut client = peer;
    for entry in entries.into_iter().rev() {
        let address = entry.and_then(|entry| match kind {
            ForwardedHeader::XForwardedFor => reference_address(entry),
            _ => entry
                .split(';')
                .find_map(|pair| {
                    let (key, value) = pair.split_once('=')?;
                    key.trim().eq_ignore_ascii_case("for").then_some(value)
                })
                .and_then(reference_address),
        });
        match address {
            None => return client,
            Some(ip) => {
                client = ip;
                if !is_trusted(ip) {
                    return ip;
                }
            }
        }
    }
    client
}

/// An address as a proxy writes it: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:80`, optionally quoted; IPv4-mapped IPv6 is IPv4.
fn reference_address(raw: &str) -> Option<IpAddr> {
    let raw = raw.trim();
    let raw = match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) => inner,
        None => raw,
    };
    let port = |p: &str| {
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
    };
    let ip = if let Ok(ip) = raw.parse::<IpAddr>() {
        ip
    } else if let Some(rest) = raw.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if after.is_empty() {
            inside.parse::<IpAddr>().ok()?
        } else if after.strip_prefix(':').is_some_and(port) {
            raw.parse::<std::net::SocketAddr>().ok()?.ip()
        } else {
            return None;
        }
    } else {
        let (host, p) = raw.rsplit_once(':')?;
        if !port(p) {
            return None;
        }
        IpAddr::V4(host.parse().ok()?)
    };
    Some(ip.to_canonical())
}

/// An incoming `X-Request-ID`: a valid one is kept as it is, any other replaced by a fresh id
/// (or refused with 400); the id the request ends up with is always valid.
pub fn request_id(data: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    // What the default validator accepts, written again from its documentation.
    let bytes = value.as_bytes();
    let documented_valid = !bytes.is_empty()
        && bytes.len() <= 128
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    for (uuid_only, hook) in [
        (false, SetRequestId::new()),
        (true, SetRequestId::new().uuid_only(true)),
    ] {
        let mut req = Request::get("/").body(callnext::Body::empty()).unwrap();
        req.headers_mut().insert("x-request-id", value.clone());
        let outcome = match hook.on_request(&mut req) {
            Flow::Continue(id) => Ok(id),
            Flow::Respond(res) => Err(res.status()),
            Flow::Wait(_) => panic!("request ids never wait"),
        };
        match outcome {
            Ok(id) => {
                let bytes = id.as_bytes();
                assert!(!bytes.is_empty() && bytes.len() <= 128, "{id:?}");
                assert!(
                    bytes.iter().all(|b| b.is_ascii_graphic()),
                    "an id of printable ASCII: {id:?}"
                );
                if !uuid_only {
                    assert_eq!(
                        value.as_bytes() == bytes,
                        documented_valid,
                        "{value:?} -> {id:?}"
                    );
                }
                assert_eq!(req.headers()["x-request-id"], id);
            }
            Err(status) => assert_eq!(status, StatusCode::BAD_REQUEST),
        }
    }
}

/// A configuration file: any text either loads, or is refused with one line naming the file.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, "fuzz.toml", &["app"]) {
        Ok(config) => {
            if let Err(err) = config.stack(&Registry::new()) {
                let shown = err.to_string();
                assert!(!shown.contains('\n'), "one line: {shown}");
            }
        }
        Err(err) => {
            let shown = err.to_string();
            assert!(shown.starts_with("fuzz.toml"), "{shown}");
            assert!(!shown.contains('\n'), "one line: {shown}");
        }
    }
}

/// The current-thread runtime the async targets run their requests on.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

#[derive(serde::Deserialize)]
struct Params {
    #[allow(dead_code)]
    q: Option<String>,
    #[allow(dead_code)]
    limit: Option<u8>,
    #[allow(dead_code)]
    tags: Option<Vec<i64>>,
    #[allow(dead_code)]
    ratio: Option<f64>,
}

fn extract_service() -> &'static StackService {
    static SERVICE: OnceLock<StackService> = OnceLock::new();
    SERVICE.get_or_init(|| {
        let app = Router::new().route(
            "/items/{id}/{flag}",
            get(
                |Path((id, flag)): Path<(u32, bool)>, Query(_): Query<Params>| async move {
                    format!("{id} {flag}")
                },
            ),
        );
        Stack::new().service(app)
    })
}

/// A request target (path and query) for a route with typed path and query parameters: the
/// answer is 200, 404 or a FastAPI-shaped 422 whose body is JSON with a `detail` list.
pub fn extract(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(uri) = format!("/items/{text}").parse::<http::Uri>() else {
        return;
    };
    let req = Request::get(uri).body(callnext::Body::empty()).unwrap();
    let res = runtime()
        .block_on(extract_service().clone().oneshot(req))
        .unwrap();
    let status = res.status();
    let body = runtime()
        .block_on(http_body_util::BodyExt::collect(res.into_body()))
        .unwrap()
        .to_bytes();
    match status {
        StatusCode::OK | StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => {}
        StatusCode::UNPROCESSABLE_ENTITY => {
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let detail = json["detail"].as_array().expect("a list of issues");
            assert!(!detail.is_empty());
            for issue in detail {
                assert!(
                    issue["type"].is_string() && issue["loc"].is_array(),
                    "{issue}"
                );
                assert!(issue["msg"].is_string(), "{issue}");
            }
        }
        other => panic!("{other} for {text:?}: {}", String::from_utf8_lossy(&body)),
    }
}

fn session_service() -> &'static StackService {
    static SERVICE: OnceLock<StackService> = OnceLock::new();
    SERVICE.get_or_init(|| {
        let sessions = Sessions::builder().secret([5u8; 64]).build().unwrap();
        let app = Router::new()
            .route(
                "/",
                get(|s: Session| async move {
                    let value: Option<String> = s.get("k").await?;
                    Ok::<_, HttpError>(format!("{value:?}"))
                }),
            )
            .route(
                "/store",
                axum::routing::post(|s: Session| async move {
                    s.insert("k", "stored").await?;
                    Ok::<_, HttpError>("stored")
                }),
            );
        Stack::new().hook(sessions).service(app)
    })
}

/// The cookie value (`<signature><id>`) of the one session stored, made on first use.
fn stored_cookie() -> &'static str {
    static COOKIE: OnceLock<String> = OnceLock::new();
    COOKIE.get_or_init(|| {
        let req = Request::post("/store")
            .body(callnext::Body::empty())
            .unwrap();
        let res = runtime()
            .block_on(session_service().clone().oneshot(req))
            .unwrap();
        let set = res.headers()["set-cookie"].to_str().unwrap();
        let pair = set.split(';').next().unwrap();
        pair.strip_prefix("id=").unwrap().to_owned()
    })
}

/// A `Cookie` header for a stack with sessions, where one session is stored. The first byte
/// picks how the input forges a cookie from the stored one: as a whole header; as the
/// signature in front of the stored id; as bytes xored into the stored signature; or as
/// another cookie pair around the stored one. Never an error, any `Set-Cookie` well formed,
/// and the stored session read only when the header carries its genuine cookie, unchanged.
pub fn session_cookie(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let genuine = stored_cookie();
    // The cookie crate's signed value: a base64 HMAC (44 characters), then the id.
    let (signature, id) = genuine.split_at(44);
    let text = String::from_utf8_lossy(rest);
    let header = match mode % 4 {
        0 => text.into_owned(),
        1 => format!("id={text}{id}"),
        2 => {
            let mut forged = signature.as_bytes().to_vec();
            let n = forged.len();
            for (i, b) in rest.iter().enumerate() {
                forged[i % n] ^= b;
            }
            format!("id={}{id}", String::from_utf8_lossy(&forged))
        }
        _ => format!("{text}; id={genuine}"),
    };
    let Ok(value) = HeaderValue::from_str(&header) else {
        return;
    };
    let mut req = Request::get("/").body(callnext::Body::empty()).unwrap();
    req.headers_mut().insert("cookie", value);
    let res = runtime()
        .block_on(session_service().clone().oneshot(req))
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    if let Some(set) = res.headers().get("set-cookie") {
        let set = set.to_str().unwrap();
        assert!(set.starts_with("id=") && set.contains("Max-Age=0"), "{set}");
    }
    let body = runtime()
        .block_on(http_body_util::BodyExt::collect(res.into_body()))
        .unwrap()
        .to_bytes();
    let carries_genuine = header
        .split(';')
        .any(|pair| pair.trim() == format!("id={genuine}"));
    if &body[..] == b"Some(\"stored\")" {
        assert!(
            carries_genuine,
            "the stored session read through a forged cookie: {header}"
        );
    } else {
        assert_eq!(&body[..], b"None", "{header}");
    }
}

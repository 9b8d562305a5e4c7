//! The cookie jar of a [`TestClient`](super::TestClient): what a browser would keep of the
//! `Set-Cookie` answers, sent back with later requests.

use std::collections::BTreeMap;

use http::header::{self, HeaderValue};
use http::HeaderMap;

/// Cookies by name (one host, every path: what a test of one app needs).
#[derive(Debug, Default)]
pub(super) struct Jar(BTreeMap<String, String>);

impl Jar {
    /// Keeps what the answer's `Set-Cookie` fields say: a cookie set, or removed (`Max-Age=0`
    /// or less, or an empty value with an `Expires` in the past).
    pub(super) fn store(&mut self, headers: &HeaderMap) {
        for field in headers.get_all(header::SET_COOKIE) {
            let Ok(field) = field.to_str() else { continue };
            let mut parts = field.split(';');
            let Some((name, value)) = parts.next().and_then(|pair| pair.split_once('=')) else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim());
            let removed = parts.any(|attribute| {
                let (key, v) = attribute.split_once('=').unwrap_or((attribute, ""));
                let key = key.trim();
                (key.eq_ignore_ascii_case("max-age")
                    && v.trim().parse::<i64>().is_ok_and(|age| age <= 0))
                    || (key.eq_ignore_ascii_case("expires") && v.contains("1970"))
            });
            if removed {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    /// The `Cookie` header for a request, if any cookie is kept.
    pub(super) fn header(&self) -> Option<HeaderValue> {
        if self.0.is_empty() {
            return None;
        }
        let pairs: Vec<String> = self.0.iter().map(|(n, v)| format!("{n}={v}")).collect();
        HeaderValue::from_str(&pairs.join("; ")).ok()
    }

    /// The value of the cookie `name`, if kept.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

//! Request rules every battery applies the same way: what a CORS preflight is, and which
//! paths a rule covers.

use http::{header, Method};

use crate::Request;

/// Whether `req` is a CORS preflight as the Fetch standard defines one: `OPTIONS` with both
/// `Origin` and `Access-Control-Request-Method`.
///
/// Only such a request is a preflight, for every battery: the CORS battery answers it, and
/// auth and rate limits let it pass (a browser sends no credentials with one). Any other
/// `OPTIONS` (one without `Origin`, say) is an ordinary request, authenticated and counted.
///
/// ```
/// use callnext::battery::is_preflight;
///
/// let req = |origin: bool| {
///     let mut b = http::Request::builder()
///         .method("OPTIONS")
///         .header("access-control-request-method", "GET");
///     if origin {
///         b = b.header("origin", "https://app.example");
///     }
///     b.body(callnext::Body::empty()).unwrap()
/// };
/// assert!(is_preflight(&req(true)));
/// assert!(!is_preflight(&req(false)));
/// ```
pub fn is_preflight(req: &Request) -> bool {
    req.method() == Method::OPTIONS
        && req.headers().contains_key(header::ORIGIN)
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// A set of paths a battery's rule covers: exact paths, or prefixes that end in `/*`.
///
/// Paths are matched on the request's path as routing sees it (undecoded, not normalised),
/// and a prefix covers whole segments: `/api/*` covers `/api` and `/api/items`, not
/// `/apis`; `/*` covers every path.
///
/// ```
/// use callnext::battery::PathRules;
///
/// let rules = PathRules::parse(["/health/live", "/api/*"]).unwrap();
/// assert!(rules.matches("/health/live"));
/// assert!(!rules.matches("/health/live/x"));
/// assert!(rules.matches("/api"));
/// assert!(rules.matches("/api/items/1"));
/// assert!(!rules.matches("/apis"));
/// assert!(PathRules::parse(["api"]).is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathRules(Vec<PathRule>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct PathRule {
    /// Without a trailing `/` when `prefix` (so `/` becomes the empty prefix).
    path: Box<str>,
    prefix: bool,
}

impl PathRule {
    fn matches(&self, path: &str) -> bool {
        if !self.prefix {
            return path == &*self.path;
        }
        path.strip_prefix(&*self.path)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

impl PathRules {
    /// Rules from their written form: `/exact/path`, or `/prefix/*`. Each must start with
    /// `/`; the error names the first that does not.
    pub fn parse<I, S>(paths: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        paths
            .into_iter()
            .map(|p| {
                let p = p.as_ref();
                if !p.starts_with('/') {
                    return Err(format!("`{p}` does not start with `/`"));
                }
                Ok(match p.strip_suffix("/*") {
                    Some(prefix) => PathRule {
                        path: prefix.into(),
                        prefix: true,
                    },
                    None => PathRule {
                        path: p.into(),
                        prefix: false,
                    },
                })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Rules that are all prefixes (`/api` as `/api/*`; a trailing `/` is ignored).
    pub fn prefixes<I, S>(prefixes: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let written: Vec<String> = prefixes
            .into_iter()
            .map(|p| format!("{}/*", p.as_ref().trim_end_matches('/')))
            .collect();
        Self::parse(&written).map_err(|e| e.replace("/*`", "`"))
    }

    /// Whether no rule is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether any rule covers `path`.
    pub fn matches(&self, path: &str) -> bool {
        self.0.iter().any(|r| r.matches(path))
    }

    /// The rule covering `path` that is longest (the most specific), by its position.
    pub fn longest_match(&self, path: &str) -> Option<usize> {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, r)| r.matches(path))
            .max_by_key(|(_, r)| (r.path.len(), !r.prefix))
            .map(|(i, _)| i)
    }

    /// The rules in their written form.
    pub fn written(&self) -> impl Iterator<Item = String> + '_ {
        self.0.iter().map(|r| {
            if r.prefix {
                format!("{}/*", r.path)
            } else {
                r.path.to_string()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_cover_whole_segments_and_the_root_covers_all() {
        let rules = PathRules::prefixes(["/api/", "/"]).unwrap();
        assert!(rules.matches("/anything"));
        let api = PathRules::prefixes(["/api/"]).unwrap();
        assert!(api.matches("/api"));
        assert!(api.matches("/api/"));
        assert!(!api.matches("/apix"));
        assert!(
            !api.matches("/%61pi"),
            "matched on the path as routing sees it"
        );
        assert_eq!(
            PathRules::prefixes(["api"]).unwrap_err(),
            "`api` does not start with `/`"
        );
        assert_eq!(api.written().collect::<Vec<_>>(), ["/api/*"]);
    }

    #[test]
    fn the_longest_rule_wins() {
        let rules = PathRules::prefixes(["/admin", "/admin/keys", "/"]).unwrap();
        assert_eq!(rules.longest_match("/admin/keys/1"), Some(1));
        assert_eq!(rules.longest_match("/admin/x"), Some(0));
        assert_eq!(rules.longest_match("/other"), Some(2));
    }

    #[test]
    fn a_preflight_needs_origin_and_the_requested_method() {
        let req = |method: &str, headers: &[(&str, &str)]| {
            let mut b = http::Request::builder().method(method);
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b.body(crate::Body::empty()).unwrap()
        };
        let origin = ("origin", "https://a.example");
        let acrm = ("access-control-request-method", "POST");
        assert!(is_preflight(&req("OPTIONS", &[origin, acrm])));
        assert!(!is_preflight(&req("OPTIONS", &[acrm])));
        assert!(!is_preflight(&req("OPTIONS", &[origin])));
        assert!(!is_preflight(&req("GET", &[origin, acrm])));
    }
}

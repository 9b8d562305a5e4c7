//! [`CorsBuilder`]: the CORS battery's settings, checked when built (origins, methods and
//! headers parsed once; the combinations browsers reject refused).

#[allow(clippy::wildcard_imports)]
use super::*;

/// The settings of a [`Cors`], checked by [`CorsBuilder::build`].
#[derive(Debug, Clone)]
#[must_use]
pub struct CorsBuilder {
    origins: Vec<String>,
    origin_regex: Option<String>,
    methods: Vec<String>,
    headers: Vec<String>,
    expose: Vec<String>,
    credentials: bool,
    max_age: Duration,
}

impl Default for CorsBuilder {
    fn default() -> Self {
        Self {
            origins: Vec::new(),
            origin_regex: None,
            methods: vec!["GET".to_owned()],
            headers: Vec::new(),
            expose: Vec::new(),
            credentials: false,
            max_age: Duration::from_secs(600),
        }
    }
}

fn strings<I, S>(items: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    items.into_iter().map(|s| s.as_ref().to_owned()).collect()
}

impl CorsBuilder {
    /// Origins allowed (`https://app.example`, exactly as browsers send them: scheme, host,
    /// optional port, no path), or `*` for any. Defaults to none.
    pub fn allow_origins<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, origins: I) -> Self {
        self.origins = strings(origins);
        self
    }

    /// Origins allowed besides those listed: every origin the regular expression matches as a
    /// whole (Starlette's `allow_origin_regex`, `fullmatch`), e.g.
    /// `https://[a-z0-9-]+\.app\.example`. `null` is never allowed, whatever it matches.
    /// Matching takes time linear in the origin's length (regex-lite: no backtracking).
    pub fn allow_origin_regex(mut self, pattern: impl Into<String>) -> Self {
        self.origin_regex = Some(pattern.into());
        self
    }

    /// Methods allowed in preflights, or `*`. Defaults to `GET`, as Starlette.
    pub fn allow_methods<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, methods: I) -> Self {
        self.methods = strings(methods);
        self
    }

    /// Request headers allowed besides the safelisted ones, or `*`. Defaults to none.
    pub fn allow_headers<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, headers: I) -> Self {
        self.headers = strings(headers);
        self
    }

    /// Response headers scripts may read (`Access-Control-Expose-Headers`). Defaults to none.
    pub fn expose_headers<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, headers: I) -> Self {
        self.expose = strings(headers);
        self
    }

    /// Allow cookies and `Authorization` (`Access-Control-Allow-Credentials: true`). Defaults
    /// to off.
    pub fn allow_credentials(mut self, on: bool) -> Self {
        self.credentials = on;
        self
    }

    /// How long browsers may cache a preflight's answer. Defaults to 10 minutes.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// `*` origins (or headers) with credentials, an origin that is `null`, has a path, or is
    /// not `scheme://host[:port]`, a method or header name that is not one.
    pub fn build(self) -> Result<Cors, ConfigError> {
        let any_origin = self.origins.iter().any(|o| o == "*");
        if any_origin && self.credentials {
            return Err(ConfigError::invalid(
                "allow_origins",
                "`*` cannot be used with credentials; list the origins",
            ));
        }
        let mut origins = Vec::new();
        for origin in self.origins.iter().filter(|o| *o != "*") {
            origins.push(check_origin(origin)?);
        }
        let origin_regex = match &self.origin_regex {
            Some(pattern) => Some(regex_lite::Regex::new(&format!("^(?:{pattern})$")).map_err(
                |err| {
                    ConfigError::invalid(
                        "allow_origin_regex",
                        format!(
                            "`{}` is not a regular expression: {err}",
                            crate::Printable::new(pattern)
                        ),
                    )
                },
            )?),
            None => None,
        };
        let any_method = self.methods.iter().any(|m| m == "*");
        let mut methods = Vec::new();
        for method in self.methods.iter().filter(|m| *m != "*") {
            let parsed =
                Method::from_bytes(method.to_ascii_uppercase().as_bytes()).map_err(|_| {
                    ConfigError::invalid(
                        "allow_methods",
                        format!("`{method}` is not an HTTP method"),
                    )
                })?;
            methods.push(parsed);
        }
        let any_header = self.headers.iter().any(|h| h == "*");
        if any_header && self.credentials {
            return Err(ConfigError::invalid(
                "allow_headers",
                "`*` cannot be used with credentials; list the headers",
            ));
        }
        let headers = header_names("allow_headers", self.headers.iter().filter(|h| *h != "*"))?;
        let expose = header_names("expose_headers", self.expose.iter())?;
        let methods_value = if any_method {
            "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT".to_owned()
        } else {
            methods
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        // Listed as Starlette lists them: the safelisted names and the configured ones as they
        // were written (`X-Status` stays `X-Status`), sorted, once each; matched without case.
        let mut allowed_headers: Vec<&str> = SAFELISTED_AS_WRITTEN.to_vec();
        allowed_headers.extend(
            self.headers
                .iter()
                .map(String::as_str)
                .filter(|h| *h != "*"),
        );
        allowed_headers.sort_unstable();
        allowed_headers.dedup();
        Ok(Cors {
            any_origin,
            origins,
            origin_regex,
            any_method,
            methods,
            any_header,
            headers,
            credentials: self.credentials,
            allow_methods: value(&methods_value)?,
            allow_headers: value(&allowed_headers.join(", "))?,
            // In the order and case they were configured in.
            expose: (!expose.is_empty())
                .then(|| value(&self.expose.join(", ")))
                .transpose()?,
            max_age: HeaderValue::from(self.max_age.as_secs()),
        })
    }
}

fn value(s: &str) -> Result<HeaderValue, ConfigError> {
    HeaderValue::from_str(s)
        .map_err(|_| ConfigError::invalid("cors", format!("`{s}` is not a header value")))
}

fn header_names<'a>(
    setting: &str,
    names: impl Iterator<Item = &'a String>,
) -> Result<Vec<HeaderName>, ConfigError> {
    names
        .map(|name| {
            HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|_| {
                ConfigError::invalid(setting, format!("`{name}` is not a header name"))
            })
        })
        .collect()
}

/// An origin as browsers serialise it: `scheme://host[:port]`, lowercase scheme and host.
fn check_origin(origin: &str) -> Result<HeaderValue, ConfigError> {
    let bad = |why: &str| ConfigError::invalid("allow_origins", format!("`{origin}` {why}"));
    if origin.eq_ignore_ascii_case("null") {
        return Err(bad(
            "is refused: any sandboxed page or file can send `null`",
        ));
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Err(bad("is not an origin: expected `scheme://host[:port]`"));
    };
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return Err(bad("is not an origin: expected `scheme://host[:port]`"));
    }
    if rest.is_empty() || rest.contains(['/', '?', '#', '*', ' ']) {
        return Err(bad(
            "is not an origin: expected `scheme://host[:port]` with no path or pattern",
        ));
    }
    if origin != origin.to_ascii_lowercase() {
        return Err(bad(
            "is not an origin as browsers send it: write it in lowercase",
        ));
    }
    HeaderValue::from_str(origin).map_err(|_| bad("is not a header value"))
}

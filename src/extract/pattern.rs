//! [`Pattern`]: a regular expression a string must match, reported as pydantic reports
//! `Field(pattern=...)`.

use std::sync::OnceLock;

/// A regular expression a string must match, for `validator`'s `custom` rule: a value that
/// does not match is pydantic's `string_pattern_mismatch`, its message and `ctx` naming the
/// pattern, as FastAPI's `Query(pattern="^fixedquery$")` answers. (`validator`'s own `regex`
/// rule does not keep its pattern, so its 422 can only say "String should match pattern".)
/// The expression is compiled on first use; one that does not compile panics then, naming it.
/// Feature `validator`.
///
/// ```
/// use callnext::extract::{Pattern, Query, Valid};
/// use callnext::{Stack, TestClient};
/// use axum::{routing::get, Router};
/// use validator::Validate;
///
/// static FIXED: Pattern = Pattern::new("^fixedquery$");
///
/// fn fixed(q: &str) -> Result<(), validator::ValidationError> {
///     FIXED.check(q)
/// }
///
/// #[derive(serde::Deserialize, Validate)]
/// struct Search {
///     #[validate(custom(function = "fixed"))]
///     q: String,
/// }
///
/// async fn search(Valid(Query(s)): Valid<Query<Search>>) -> String { s.q }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let client = TestClient::new(Stack::new().service(Router::new().route("/items", get(search))));
/// assert_eq!(client.get("/items?q=fixedquery").await.text(), "fixedquery");
/// let res = client.get("/items?q=nonregexquery").await;
/// assert_eq!(res.status(), 422);
/// assert_eq!(
///     res.text(),
///     r#"{"detail":[{"type":"string_pattern_mismatch","loc":["query","q"],"msg":"String should match pattern '^fixedquery$'","input":"nonregexquery","ctx":{"pattern":"^fixedquery$"}}]}"#
/// );
/// # });
/// ```
#[derive(Debug)]
pub struct Pattern {
    source: &'static str,
    compiled: OnceLock<regex_lite::Regex>,
}

impl Pattern {
    /// The pattern `source` (Rust's `regex` syntax, which covers what pydantic's patterns
    /// usually use), compiled on first use.
    pub const fn new(source: &'static str) -> Self {
        Self {
            source,
            compiled: OnceLock::new(),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &'static str {
        self.source
    }

    /// Whether `value` matches, as the error `validator` collects when it does not.
    ///
    /// # Errors
    ///
    /// A value that does not match: the error carries the pattern for the 422.
    ///
    /// # Panics
    ///
    /// When the pattern does not compile.
    pub fn check(&self, value: &str) -> Result<(), validator::ValidationError> {
        let regex = self.compiled.get_or_init(|| {
            regex_lite::Regex::new(self.source).unwrap_or_else(|err| {
                panic!("the pattern `{}` does not compile: {err}", self.source)
            })
        });
        if regex.is_match(value) {
            return Ok(());
        }
        let mut err = validator::ValidationError::new("regex");
        err.add_param("pattern".into(), &self.source);
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mismatch_carries_its_pattern() {
        let pattern = Pattern::new("^a+$");
        assert!(pattern.check("aaa").is_ok());
        let err = pattern.check("ab").unwrap_err();
        assert_eq!(err.code, "regex");
        assert_eq!(err.params["pattern"], "^a+$");
        assert_eq!(pattern.as_str(), "^a+$");
    }

    #[test]
    #[should_panic(expected = "the pattern `(` does not compile")]
    fn a_pattern_that_does_not_compile_says_so() {
        let _ = Pattern::new("(").check("x");
    }
}

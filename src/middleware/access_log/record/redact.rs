//! Secret query parameters, redacted before a query is logged.

/// The query with the values of secret parameters replaced by `REDACTED`: those named in
/// `redact`, and any whose name ends like a credential's (`_token`, `_secret`, `password`,
/// `api_key`). Names are compared as an application reads them: percent-decoded, `+` as a
/// space, a trailing `[]` or `[index]` dropped, case and `-`/`_` ignored; pairs are separated
/// by `&` or `;`.
pub(super) fn redact_query(query: &str, redact: &[String]) -> String {
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    loop {
        let end = rest.find(['&', ';']).unwrap_or(rest.len());
        let pair = &rest[..end];
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !value.is_empty() && is_secret_name(key, redact) {
            out.push_str(key);
            out.push_str("=REDACTED");
        } else {
            out.push_str(pair);
        }
        match rest[end..].chars().next() {
            Some(separator) => {
                out.push(separator);
                rest = &rest[end + 1..];
            }
            None => return out,
        }
    }
}

/// Whether a query parameter's name names a secret (see [`redact_query`]).
fn is_secret_name(raw: &str, redact: &[String]) -> bool {
    let key = normalized_name(raw);
    redact.iter().any(|r| normalized_name(r) == key)
        || [
            "_token",
            "_secret",
            "password",
            "api_key",
            "apikey",
            "_sig",
            "signature",
        ]
        .iter()
        .any(|end| key.ends_with(end))
}

/// A parameter name as compared: percent-decoded, `+` as a space, lowercase, `-` as `_`,
/// without a trailing `[...]`.
fn normalized_name(raw: &str) -> String {
    let decoded: String = form_urlencoded::parse(format!("{raw}=").as_bytes())
        .next()
        .map(|(k, _)| k.into_owned())
        .unwrap_or_default();
    let base = match decoded
        .strip_suffix(']')
        .and_then(|k| k.rfind('[').map(|at| &k[..at]))
    {
        Some(base) => base.to_owned(),
        None => decoded,
    };
    base.trim().to_ascii_lowercase().replace('-', "_")
}

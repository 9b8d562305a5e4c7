//! Secrets out of what is shown: the credentials of every URL in a text, in its userinfo and
//! in its query.

/// Query parameters that carry credentials (compared without case, `-` as `_`): database
/// passwords (`?password=`, libpq's `sslpassword`), API keys and tokens, signatures.
const CREDENTIAL_PARAMS: [&str; 17] = [
    "password",
    "passwd",
    "pwd",
    "sslpassword",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "auth",
    "authorization",
    "api_key",
    "apikey",
    "key",
    "signature",
    "sig",
];

/// Whether a query parameter's name says its value is a credential.
fn is_credential(name: &str) -> bool {
    let name = name.to_ascii_lowercase().replace('-', "_");
    CREDENTIAL_PARAMS.contains(&name.as_str()) || name.ends_with("_token") || name.ends_with("_key")
}

/// `scheme://user:password@host/path?password=x&db=y` →
/// `scheme://user:***@host/path?password=***&db=y`, everywhere in `text`.
pub(crate) fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '"' || c == '\'' || c == ',' || c.is_whitespace())
            .unwrap_or(tail.len());
        let url = &tail[..end];
        let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
        let authority = &url[..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..=colon]);
                        out.push_str("***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        redact_query(&mut out, &url[authority_end..]);
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// A URL's path, query and fragment, the values of credential parameters replaced by `***`.
fn redact_query(out: &mut String, after_authority: &str) {
    let Some(q) = after_authority.find('?') else {
        out.push_str(after_authority);
        return;
    };
    out.push_str(&after_authority[..=q]);
    let query = &after_authority[q + 1..];
    let (query, fragment) = match query.find('#') {
        Some(hash) => query.split_at(hash),
        None => (query, ""),
    };
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, value)) if !value.is_empty() && is_credential(name) => {
                out.push_str(name);
                out.push_str("=***");
            }
            _ => out.push_str(pair),
        }
    }
    out.push_str(fragment);
}

#[cfg(test)]
mod tests {
    use super::redact_urls;

    #[test]
    fn passwords_in_userinfo_and_query_are_hidden() {
        assert_eq!(
            redact_urls("postgres://app:pw@db:5432/x?sslmode=require&password=hunter2"),
            "postgres://app:***@db:5432/x?sslmode=require&password=***"
        );
        assert_eq!(
            redact_urls(
                "see https://h/v1?ApiKey=abc&Access-Token=def&page=2#top and redis://:p@c/0"
            ),
            "see https://h/v1?ApiKey=***&Access-Token=***&page=2#top and redis://:***@c/0"
        );
        assert_eq!(
            redact_urls("http://h?x_api_key=1&mytoken=2&stripe_key=3"),
            "http://h?x_api_key=***&mytoken=2&stripe_key=***"
        );
        assert_eq!(redact_urls("sqlite://keys.db"), "sqlite://keys.db");
        assert_eq!(redact_urls("no url here"), "no url here");
    }
}

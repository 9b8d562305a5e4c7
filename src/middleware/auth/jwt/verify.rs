//! Verifying a token with a key of the set, and remembering the verified ones.

#[allow(clippy::wildcard_imports)]
use super::*;

impl JwtChecker {
    /// Verifies `token` with `key` of `set`, and remembers it under `digest` when verified.
    pub(super) fn verify(
        &self,
        token: &str,
        alg: Algorithm,
        key: &DecodingKey,
        set: &KeySet,
        digest: Option<[u8; 32]>,
    ) -> Result<Arc<Principal>, Failure> {
        let Some((_, validation)) = self.validations.iter().find(|(a, _)| *a == alg) else {
            return Err(Failure::Invalid("Token algorithm is not accepted"));
        };
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, key, validation).map_err(|err| {
                Failure::Invalid(match err.kind() {
                    ErrorKind::ExpiredSignature => "Token has expired",
                    ErrorKind::ImmatureSignature => "Token is not valid yet",
                    ErrorKind::InvalidAudience => "Token audience is not accepted",
                    ErrorKind::InvalidIssuer => "Token issuer is not accepted",
                    ErrorKind::MissingRequiredClaim(_) => "Token lacks a required claim",
                    ErrorKind::InvalidSignature => "Invalid token signature",
                    _ => "Invalid token",
                })
            })?;
        let claims = data.claims;
        let Some(Value::String(subject)) = claims.get("sub") else {
            return Err(Failure::Invalid("Token has no subject"));
        };
        // OAuth's `scope` (one string, RFC 8693) or `scp` (a list or a string).
        let mut scopes: Vec<String> = Vec::new();
        for name in ["scope", "scp"] {
            match claims.get(name) {
                Some(Value::String(s)) => scopes.extend(s.split_whitespace().map(str::to_owned)),
                Some(Value::Array(list)) => {
                    scopes.extend(list.iter().filter_map(Value::as_str).map(str::to_owned))
                }
                _ => {}
            }
        }
        // Required, and checked a number by the validation above.
        let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        let principal = Arc::new(Principal {
            subject: subject.clone(),
            scopes,
            claims: Some(claims),
        });
        if let (Some(cache), Some(digest)) = (&self.verified, digest) {
            let known = Verified {
                principal: Arc::clone(&principal),
                exp,
                generation: set.generation,
            };
            cache.insert(digest, known);
        }
        Ok(principal)
    }
}

/// The key a verified token is remembered by (ring's SHA-256: the token's bytes are not kept).
pub(super) fn token_digest(token: &str) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref());
    out
}

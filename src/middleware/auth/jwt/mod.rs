//! JWTs: their settings ([`Jwt`]) and the checker that verifies them against keys fetched from
//! a JWKS URL.
//!
//! The key set is kept per checker (one issuer) and refreshed:
//! - in the background, once it is older than `jwks_max_age`, while requests go on using it;
//! - at once when a token names a key id the set lacks, unless a fetch started less than
//!   `min_refresh_interval` ago; concurrent requests wait for the same fetch (single flight);
//! - key ids still unknown after a fetch are remembered (bounded, for `min_refresh_interval`)
//!   and refused without waiting, so tokens with random `kid`s cannot make the server hammer
//!   the JWKS endpoint.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::Principal;
use crate::http_client::HttpClient;
use crate::ConfigError;

mod builder;
mod crypto;
mod verify;

use self::verify::token_digest;

pub use self::builder::Jwt;

/// The algorithms a JWKS can verify (public keys; never `none`, never a shared secret).
const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Why a token was not accepted.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A bad token: 401 with this detail.
    Invalid(&'static str),
    /// The key set could not be had: 503.
    Unavailable(String),
}

/// One verification key of the set.
struct Key {
    kid: Option<String>,
    /// The `alg` the JWK names, if it names one.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

struct KeySet {
    keys: Vec<Key>,
    fetched: Instant,
    /// Which fetch this is: a verified token is remembered with the set that verified it.
    generation: u64,
}

/// A token verified before, remembered by its digest.
#[derive(Clone)]
struct Verified {
    principal: Arc<Principal>,
    /// Its `exp` (seconds since the epoch): not taken from here at or after it.
    exp: u64,
    /// The key set it was verified with: another set (keys rotated) verifies it again.
    generation: u64,
}

impl KeySet {
    /// The key for a token's `kid` and `alg`: by id, or the only key usable with `alg` when
    /// the token names none.
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&DecodingKey> {
        let usable = |k: &&Key| k.alg.is_none_or(|a| a == alg);
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(usable)
                .find(|k| k.kid.as_deref() == Some(kid))
                .map(|k| &k.key),
            None => {
                let mut usable = self.keys.iter().filter(usable);
                match (usable.next(), usable.next()) {
                    (Some(only), None) => Some(&only.key),
                    _ => None,
                }
            }
        }
    }
}

pub(crate) struct JwtChecker {
    url: http::Uri,
    client: HttpClient,
    validations: Vec<(Algorithm, Validation)>,
    keys: RwLock<Option<Arc<KeySet>>>,
    /// Held while fetching: the single flight.
    refreshing: tokio::sync::Mutex<()>,
    /// When the last fetch started.
    last_fetch: Mutex<Option<Instant>>,
    /// Every fetch goes through it (timeout and circuit breaker).
    guard: crate::battery::StoreGuard,
    /// A background refresh is running.
    background: AtomicBool,
    /// Key ids not in the set after a fetch.
    unknown: moka::sync::Cache<Box<str>, ()>,
    /// Tokens verified, by their SHA-256 digest (`None`: every request verifies).
    verified: Option<moka::sync::Cache<[u8; 32], Verified>>,
    /// The last key set's generation.
    generations: AtomicU64,
    min_refresh: Duration,
    max_age: Duration,
    timeout: Duration,
    /// Tokens for any audience are accepted (`any_audience`): the linter says so.
    pub(in crate::middleware::auth) any_audience: bool,
}

/// What a token's header says, once checked against the pinned algorithms.
struct Head {
    alg: Algorithm,
    kid: Option<String>,
}

impl JwtChecker {
    fn current(&self) -> Option<Arc<KeySet>> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn head(&self, token: &str) -> Result<Head, Failure> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| Failure::Invalid("Invalid token"))?;
        if !self.validations.iter().any(|(a, _)| *a == header.alg) {
            return Err(Failure::Invalid("Token algorithm is not accepted"));
        }
        Ok(Head {
            alg: header.alg,
            kid: header.kid,
        })
    }

    /// Decides `token` from the key set in hand, without waiting; `None` when the set has no
    /// key for it (or there is no set yet) and a fetch may find one.
    pub(crate) fn check_now(
        self: &Arc<Self>,
        token: &str,
    ) -> Option<Result<Arc<Principal>, Failure>> {
        let set = self.current();
        if let Some(set) = &set {
            if set.fetched.elapsed() >= self.max_age {
                self.refresh_in_background();
            }
        }
        let digest = self.verified.as_ref().map(|_| token_digest(token));
        if let (Some(cache), Some(digest), Some(set)) = (&self.verified, &digest, &set) {
            if let Some(known) = cache.get(digest) {
                if known.generation == set.generation
                    && jsonwebtoken::get_current_timestamp() < known.exp
                {
                    return Some(Ok(known.principal));
                }
            }
        }
        let head = match self.head(token) {
            Ok(head) => head,
            Err(failure) => return Some(Err(failure)),
        };
        let set = set?;
        match set.find(head.kid.as_deref(), head.alg) {
            Some(key) => Some(self.verify(token, head.alg, key, &set, digest)),
            None => match &head.kid {
                Some(kid) if self.unknown.contains_key(kid.as_str()) => {
                    Some(Err(Failure::Invalid("Unknown signing key")))
                }
                _ => None,
            },
        }
    }

    /// Decides `token`, fetching the key set first when it lacks the token's key (at most
    /// one fetch at a time, and none within `min_refresh_interval` of the last).
    pub(crate) async fn check(self: &Arc<Self>, token: &str) -> Result<Arc<Principal>, Failure> {
        if let Some(decided) = self.check_now(token) {
            return decided;
        }
        let head = self.head(token)?;
        let before = self.current().map(|s| s.fetched);
        let guard = self.refreshing.lock().await;
        // Another request's fetch may have brought the key while this one waited.
        let after = self.current();
        let fetched_meanwhile = after.as_ref().map(|s| s.fetched) != before;
        let set = if fetched_meanwhile || !self.may_fetch() {
            after
        } else {
            match self.fetch().await {
                Ok(set) => Some(set),
                Err(err) => {
                    drop(guard);
                    tracing::error!(url = %self.url, error = %err, "JWKS fetch failed; answered 503");
                    return Err(Failure::Unavailable(err));
                }
            }
        };
        drop(guard);
        let Some(set) = set else {
            return Err(Failure::Unavailable(
                "the key set could not be fetched yet".to_owned(),
            ));
        };
        match set.find(head.kid.as_deref(), head.alg) {
            Some(key) => {
                let digest = self.verified.as_ref().map(|_| token_digest(token));
                self.verify(token, head.alg, key, &set, digest)
            }
            None => {
                if let Some(kid) = head.kid {
                    self.unknown.insert(kid.into_boxed_str(), ());
                }
                Err(Failure::Invalid("Unknown signing key"))
            }
        }
    }

    /// Whether the last fetch started long enough ago for another.
    fn may_fetch(&self) -> bool {
        self.last_fetch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none_or(|at| at.elapsed() >= self.min_refresh)
    }

    /// Fetches the key set and makes it current (the caller holds `refreshing`).
    async fn fetch(&self) -> Result<Arc<KeySet>, String> {
        *self
            .last_fetch
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        let req = http::Request::get(self.url.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let fetched = async {
            let res = self
                .client
                .send(req, self.timeout, MAX_JWKS_BYTES)
                .await
                .map_err(|e| e.to_string())?;
            if !res.status().is_success() {
                return Err(format!("the JWKS URL answered {}", res.status()));
            }
            Ok(res)
        };
        let res = self
            .guard
            .call("auth", fetched)
            .await
            .map_err(|refused| refused.to_string())?;
        let set: JwkSet = serde_json::from_slice(res.body())
            .map_err(|e| format!("the JWKS is not a JSON Web Key Set: {e}"))?;
        let keys: Vec<Key> = set
            .keys
            .iter()
            .filter(|jwk| {
                !matches!(
                    jwk.common.public_key_use,
                    Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
                )
            })
            .filter_map(|jwk| {
                let alg = match &jwk.common.key_algorithm {
                    // The JWK's names are Algorithm's for every signing algorithm.
                    Some(named) => Some(Algorithm::from_str(&format!("{named:?}")).ok()?),
                    None => None,
                };
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some(Key {
                    kid: jwk.common.key_id.clone(),
                    alg,
                    key,
                })
            })
            .collect();
        tracing::debug!(url = %self.url, keys = keys.len(), "JWKS fetched");
        let set = Arc::new(KeySet {
            keys,
            fetched: Instant::now(),
            generation: self.generations.fetch_add(1, Ordering::Relaxed) + 1,
        });
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&set));
        // Ids refused before may be in the new set.
        self.unknown.invalidate_all();
        Ok(set)
    }

    /// Refreshes an aging key set off the request path (one refresh at a time).
    fn refresh_in_background(self: &Arc<Self>) {
        if self.background.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.background.store(false, Ordering::Release);
            return;
        };
        let this = Arc::clone(self);
        runtime.spawn(async move {
            {
                let _guard = this.refreshing.lock().await;
                let stale = this
                    .current()
                    .is_none_or(|s| s.fetched.elapsed() >= this.max_age);
                if stale {
                    if let Err(err) = this.fetch().await {
                        tracing::warn!(url = %this.url, error = %err, "JWKS refresh failed; keeping the keys in hand");
                    }
                }
            }
            this.background.store(false, Ordering::Release);
        });
    }
}

//! API keys: their format, their digest, and the checker that finds them through bounded
//! caches in front of a store.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};

/// The start of every key callnext makes: `cnk_<id>_<secret>`.
pub const KEY_PREFIX: &str = "cnk_";
/// Hex digits of a key's public id (64 bits) and of its secret (256 bits).
const ID_HEX: usize = 16;
const SECRET_HEX: usize = 64;

/// A key as stored: never the key itself, only its SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// The public id (the part of the key between the prefix and the secret).
    pub id: String,
    /// A name for people (who or what holds the key).
    pub name: String,
    /// SHA-256 of the whole key.
    pub digest: [u8; 32],
    /// What the key may do.
    pub scopes: Vec<String>,
    /// When it was made, in ms since the Unix epoch.
    pub created_ms: u64,
    /// When it was revoked, if it was.
    pub revoked_ms: Option<u64>,
}

/// A failure of the store that holds the keys (the request is a 503, never a 401).
#[derive(Debug)]
pub struct KeyStoreError(pub Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for KeyStoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "API key store: {}", self.0)
    }
}

impl std::error::Error for KeyStoreError {}

/// Where API keys live, looked up by their public id.
pub trait KeyStore: Send + Sync + 'static {
    /// The key with public id `id`, revoked or not, if there is one.
    fn find<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<StoredKey>, KeyStoreError>>;

    /// The public ids of every key that is not revoked (the checker keeps them, so that ids
    /// nobody issued are refused without a query).
    fn live_ids(&self) -> BoxFuture<'_, Result<Vec<String>, KeyStoreError>>;
}

impl<S: KeyStore + ?Sized> KeyStore for Arc<S> {
    fn find<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<StoredKey>, KeyStoreError>> {
        (**self).find(id)
    }

    fn live_ids(&self) -> BoxFuture<'_, Result<Vec<String>, KeyStoreError>> {
        (**self).live_ids()
    }
}

/// A new key: the text to hand out once, and what is stored of it.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The key, `cnk_<16 hex>_<64 hex>`: shown once, never stored.
    pub key: String,
    /// What the store keeps.
    pub stored: StoredKey,
}

/// Makes a key for `name` with `scopes`: a 64-bit public id and a 256-bit secret from the
/// operating system's CSPRNG (through uuid's v4, which draws from rand's generator seeded by
/// it; two v4 ids give 244 random bits, so four are used for the secret).
pub fn generate(name: &str, scopes: &[String], now_ms: u64) -> NewKey {
    // The operating system's generator: 8 bytes of id, 32 of secret (256 bits).
    let mut bytes = [0u8; ID_HEX / 2 + SECRET_HEX / 2];
    getrandom::fill(&mut bytes).expect("the operating system's random generator failed");
    let hex = |bytes: &[u8]| -> String { bytes.iter().map(|b| format!("{b:02x}")).collect() };
    let id = hex(&bytes[..ID_HEX / 2]);
    let secret = hex(&bytes[ID_HEX / 2..]);
    let key = format!("{KEY_PREFIX}{id}_{secret}");
    NewKey {
        stored: StoredKey {
            id,
            name: name.to_owned(),
            digest: digest(&key),
            scopes: scopes.to_vec(),
            created_ms: now_ms,
            revoked_ms: None,
        },
        key,
    }
}

/// SHA-256 of a key. A fast digest, not a password hash: keys are random with 256 bits of
/// entropy, so nothing is gained by a slow hash (argon2 would cost tens of milliseconds a
/// request).
pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The public id of a well-formed key, or `None` for anything else.
pub fn public_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, ID_HEX) && hex(secret, SECRET_HEX)).then_some(id)
}

/// Equality of two digests in time that does not depend on where they differ.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// What checking a presented key found.
#[derive(Debug, Clone)]
pub(crate) enum Checked {
    /// A live key with this id, name and scopes.
    Valid(Arc<StoredKey>),
    /// Malformed, unknown, revoked, or a wrong secret.
    Invalid,
}

/// Finds keys through bounded caches: hits (live and revoked keys, for `hit_ttl`), misses
/// (ids the store does not have, for `miss_ttl`), and the set of issued ids, reloaded at most
/// once per `miss_ttl` (one query at a time) when an id is not in it. Valid traffic asks the
/// store once per key and `hit_ttl`; random keys, however many, ask it at most once per
/// `miss_ttl`; memory is bounded by the caches' capacity and the number of issued keys.
pub(crate) struct Checker {
    store: Arc<dyn KeyStore>,
    /// Every store call goes through it.
    guard: crate::battery::StoreGuard,
    hits: moka::sync::Cache<String, Arc<StoredKey>>,
    misses: moka::sync::Cache<String, ()>,
    known: std::sync::RwLock<Arc<std::collections::HashSet<String>>>,
    /// When the known ids were last loaded; held while they are being loaded.
    loaded: tokio::sync::Mutex<Option<tokio::time::Instant>>,
    reload_every: Duration,
}

impl Checker {
    pub(crate) fn new(
        store: Arc<dyn KeyStore>,
        hit_ttl: Duration,
        miss_ttl: Duration,
        capacity: u64,
        store_timeout: Duration,
    ) -> Self {
        Self {
            store,
            guard: crate::battery::StoreGuard::new("API key store", "api_keys", store_timeout),
            hits: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(hit_ttl)
                .build(),
            misses: moka::sync::Cache::builder()
                .max_capacity((capacity / 10).max(1))
                .time_to_live(miss_ttl)
                .build(),
            known: std::sync::RwLock::default(),
            loaded: tokio::sync::Mutex::new(None),
            reload_every: miss_ttl,
        }
    }

    fn is_known(&self, id: &str) -> bool {
        self.known.read().is_ok_and(|known| known.contains(id))
    }

    /// Whether `id` was issued, reloading the issued ids first if they are older than
    /// `reload_every` (one reload at a time; the others wait for it and use its answer).
    async fn issued(&self, id: &str) -> Result<bool, KeyStoreError> {
        if self.is_known(id) {
            return Ok(true);
        }
        let mut loaded = self.loaded.lock().await;
        if loaded.is_some_and(|at| at.elapsed() < self.reload_every) {
            return Ok(self.is_known(id));
        }
        let ids = self.guarded(self.store.live_ids()).await?;
        let ids: std::collections::HashSet<String> = ids.into_iter().collect();
        if let Ok(mut known) = self.known.write() {
            *known = Arc::new(ids);
        }
        *loaded = Some(tokio::time::Instant::now());
        Ok(self.is_known(id))
    }

    /// A store call under the guard.
    async fn guarded<T>(
        &self,
        call: BoxFuture<'_, Result<T, KeyStoreError>>,
    ) -> Result<T, KeyStoreError> {
        use crate::battery::Refused;
        self.guard
            .call("auth", call)
            .await
            .map_err(|refused| match refused {
                Refused::Failed(err) => err,
                other => KeyStoreError(other.to_string().into()),
            })
    }

    /// Forgets what the caches hold of `id` (after a revocation on this instance).
    pub(crate) fn forget(&self, id: &str) {
        self.hits.invalidate(id);
        self.misses.invalidate(id);
        if let Ok(mut known) = self.known.write() {
            if known.contains(id) {
                let mut ids = (**known).clone();
                ids.remove(id);
                *known = Arc::new(ids);
            }
        }
    }

    /// What can be decided without the store: a malformed key, a cached key, a cached miss.
    pub(crate) fn check_cached(&self, key: &str) -> Option<Checked> {
        let Some(id) = public_id(key) else {
            return Some(Checked::Invalid);
        };
        match self.hits.get(id) {
            Some(stored) => Some(verify(stored, key)),
            None if self.misses.contains_key(id) => Some(Checked::Invalid),
            None => None,
        }
    }

    pub(crate) async fn check(&self, key: &str) -> Result<Checked, KeyStoreError> {
        let Some(id) = public_id(key) else {
            return Ok(Checked::Invalid);
        };
        let stored = match self.hits.get(id) {
            Some(stored) => stored,
            None if self.misses.contains_key(id) => return Ok(Checked::Invalid),
            None if !self.issued(id).await? => {
                self.misses.insert(id.to_owned(), ());
                return Ok(Checked::Invalid);
            }
            None => match self.guarded(self.store.find(id)).await? {
                Some(stored) => {
                    let stored = Arc::new(stored);
                    self.hits.insert(id.to_owned(), Arc::clone(&stored));
                    stored
                }
                None => {
                    self.misses.insert(id.to_owned(), ());
                    return Ok(Checked::Invalid);
                }
            },
        };
        Ok(verify(stored, key))
    }
}

/// `key` against what is stored of it.
fn verify(stored: Arc<StoredKey>, key: &str) -> Checked {
    if stored.revoked_ms.is_some() || !same_digest(&stored.digest, &digest(key)) {
        return Checked::Invalid;
    }
    Checked::Valid(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hex_digit_of_a_secret_is_random() {
        // Two UUIDv4s fix a version and a variant digit in every 32: those places would show
        // one digit (or four) in every key.
        let secrets: Vec<String> = (0..300)
            .map(|_| generate("ci", &[], 1).key[KEY_PREFIX.len() + ID_HEX + 1..].to_owned())
            .collect();
        for place in 0..SECRET_HEX {
            let mut seen: Vec<u8> = secrets.iter().map(|s| s.as_bytes()[place]).collect();
            seen.sort_unstable();
            seen.dedup();
            assert!(seen.len() > 8, "place {place}: only {:?}", seen);
        }
    }

    #[test]
    fn keys_are_well_formed_and_only_their_digest_is_kept() {
        let made = generate("ci", &["read".to_owned()], 1);
        assert_eq!(made.key.len(), KEY_PREFIX.len() + ID_HEX + 1 + SECRET_HEX);
        assert_eq!(public_id(&made.key), Some(made.stored.id.as_str()));
        assert_eq!(made.stored.digest, digest(&made.key));
        assert!(!format!("{:?}", made.stored).contains(&made.key[KEY_PREFIX.len() + ID_HEX + 1..]));
        let other = generate("ci", &[], 1);
        assert_ne!(made.key, other.key);
        for bad in [
            "",
            "cnk_",
            "cnk_abc_def",
            "xyz_0123456789abcdef_00",
            &made.key[1..],
        ] {
            assert_eq!(public_id(bad), None, "{bad}");
        }
        assert!(same_digest(&digest("a"), &digest("a")));
        assert!(!same_digest(&digest("a"), &digest("b")));
    }
}

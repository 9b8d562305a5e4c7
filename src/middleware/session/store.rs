//! What a session store does: load, create if absent, compare-and-set, destroy for good.

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};

/// A session's data: JSON values by key.
pub type Data = Map<String, Value>;

/// A stored session.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Record {
    /// Its data.
    pub data: Data,
    /// Bumped by every write; a write names the version it read (compare-and-set).
    pub version: u64,
    /// When it was created (ms since the Unix epoch): with the absolute timeout, when it ends
    /// whatever its activity.
    pub created_ms: u64,
    /// When it expires unless touched (ms since the Unix epoch): the earlier of the idle and
    /// the absolute deadline.
    pub expires_ms: u64,
}

impl Record {
    /// A record of `data` at version 1.
    pub fn new(data: Data, created_ms: u64, expires_ms: u64) -> Self {
        Self {
            data,
            version: 1,
            created_ms,
            expires_ms,
        }
    }
}

/// The answer to a compare-and-set.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Saved {
    /// Written, at this version.
    Saved(u64),
    /// Another request wrote first: the record as it is now, to merge into and try again.
    Conflict(Record),
    /// The session is gone (destroyed, expired or never there): nothing was written, and
    /// nothing may bring it back.
    Gone,
}

/// A store failed (unreachable, timed out, refused): the request gets a 503, never an empty
/// session.
#[derive(Debug)]
pub struct StoreError(pub Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "session store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// Where sessions live. Every method is atomic on its session; ids are opaque text.
///
/// The contract the battery relies on, which every store's tests check:
/// - `load` gives `None` for an id that is absent, expired or destroyed;
/// - `create` writes only if the id is free (`SET NX`, `INSERT ... ON CONFLICT DO NOTHING`)
///   and says whether it did;
/// - `save` writes `record` as version `expected + 1` only if the stored version is
///   `expected`, else answers with the current record, or `Gone`;
/// - `destroy` leaves a tombstone until the absolute timeout has passed, so no later `save`
///   or `create` of that id succeeds.
pub trait SessionStore: Send + Sync + 'static {
    /// The session `id`, if it is live.
    fn load<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Record>, StoreError>>;
    /// Stores `record` under `id` if the id is free; whether it was.
    fn create<'a>(
        &'a self,
        id: &'a str,
        record: &'a Record,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Compare-and-set: see the trait's docs.
    fn save<'a>(
        &'a self,
        id: &'a str,
        record: &'a Record,
        expected: u64,
    ) -> BoxFuture<'a, Result<Saved, StoreError>>;
    /// Ends the session for good, until `tombstone_until_ms`.
    fn destroy<'a>(
        &'a self,
        id: &'a str,
        tombstone_until_ms: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}

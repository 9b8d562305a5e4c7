//! What batteries share, so that they behave as one family: what each offers the rest of the
//! system ([`Capabilities`]: its place in the order, its stores, a flush, its metrics), the
//! request rules each applies the same way ([`is_preflight`], [`PathRules`], [`CallerRule`]),
//! one store guard ([`StoreGuard`]) and one view of
//! what the client got ([`observe`]). A middleware of your own uses the same pieces.

mod caller;
mod capability;
mod guard;
mod host;
mod observe;
mod rules;
mod scope;

pub(crate) use caller::Caller;
pub use caller::{CallerRule, KeyBy, KeyFn};
pub use capability::Capabilities;
pub(crate) use capability::Order;
pub use guard::{Refused, StoreGuard};
pub use host::{authorities, host_of};

pub(crate) use observe::{apply as apply_observers, observe_boxed, Chain, Collecting, Observe};
pub use observe::{observe, Delivered};
pub use rules::{is_preflight, PathRules};
pub use scope::StoreScope;

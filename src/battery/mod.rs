//! What batteries share, so that they behave as one family: the request rules each applies
//! the same way ([`is_preflight`], [`PathRules`]) and one view of what the client got
//! ([`observe`]). A middleware of your own uses the same pieces.

mod observe;
mod rules;

pub(crate) use observe::apply as apply_observers;
pub use observe::{observe, Delivered};
pub use rules::{is_preflight, PathRules};

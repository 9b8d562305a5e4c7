//! The order linter: the rules of the recommended order (DESIGN.md) checked on a stack's
//! batteries when it is built.

use std::fmt;

use super::entry::Entry;
use crate::battery::Order;

/// One broken ordering rule: which rule, and a message naming both entries.
///
/// ```
/// use callnext::middleware::{Cors, SetRequestId};
/// use callnext::Stack;
///
/// let cors = Cors::builder().allow_origins(["https://app.example"]).build().unwrap();
/// let stack = Stack::new().hook(cors).hook(SetRequestId::new());
/// let warnings = stack.lint();
/// assert_eq!(warnings[0].rule(), "request-id-first");
/// assert_eq!(
///     warnings[0].to_string(),
///     "`request_id` runs after `cors`: put the request id first, so every entry, log line and response carries it"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderWarning {
    rule: &'static str,
    message: String,
    /// A rule of the order (refused by a strict order), not an entry's caution.
    order: bool,
}

impl OrderWarning {
    /// The rule's short name (`request-id-first`, `cors-outside`, `access-log-outside`,
    /// `trusted-host-outside`, `limit-after-auth`), or an entry's caution (`jwt-any-audience`; see
    /// [`Capabilities::caution`](crate::battery::Capabilities::caution)).
    pub fn rule(&self) -> &'static str {
        self.rule
    }

    /// Whether it is a rule of the order, which a strict order refuses (an entry's caution is
    /// reported only).
    pub fn is_order_rule(&self) -> bool {
        self.order
    }
}

impl fmt::Display for OrderWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

pub(crate) fn lint(entries: &[Entry]) -> Vec<OrderWarning> {
    let mut warnings = Vec::new();
    let of = |role: fn(&Order) -> bool| entries.iter().position(|e| role(&e.caps.order));
    if let Some(i) = of(|o| o.first) {
        if i > 0 {
            warnings.push(OrderWarning {
                order: true,
                rule: "request-id-first",
                message: format!(
                    "`{}` runs after `{}`: put the request id first, so every entry, log line and response carries it",
                    entries[i].name, entries[0].name
                ),
            });
        }
    }
    if let Some(cors) = of(|o| o.cors) {
        for early in entries[..cors].iter().filter(|e| e.caps.order.inside_cors) {
            warnings.push(OrderWarning {
                order: true,
                rule: "cors-outside",
                message: format!(
                    "`{}` runs after `{}`: put CORS before it, so its answers carry CORS headers and preflights pass",
                    entries[cors].name, early.name
                ),
            });
        }
    }
    if let Some(log) = of(|o| o.logs) {
        for early in entries[..log].iter().filter(|e| e.caps.order.answers_early) {
            warnings.push(OrderWarning {
                order: true,
                rule: "access-log-outside",
                message: format!(
                    "`{}` runs after `{}`, which can answer early: put the access log before it, so those answers are logged",
                    entries[log].name, early.name
                ),
            });
        }
    }
    if let Some(guard) = of(|o| o.guards_host) {
        for early in entries[..guard].iter().filter(|e| {
            let o = &e.caps.order;
            o.answers_early || o.cors || o.identifies
        }) {
            warnings.push(OrderWarning {
                order: true,
                rule: "trusted-host-outside",
                message: format!(
                    "`{}` runs after `{}`, which answers or acts on the request: put the host check before it, so a request for another host is refused first",
                    entries[guard].name, early.name
                ),
            });
        }
    }
    if let Some(auth) = of(|o| o.identifies) {
        for limit in entries[..auth]
            .iter()
            .filter(|e| e.caps.order.needs_identity)
        {
            warnings.push(OrderWarning {
                order: true,
                rule: "limit-after-auth",
                message: format!(
                    "`{}` is keyed by user or API key but runs before `{}`: put it after auth, or every request counts against its client address",
                    limit.name, entries[auth].name
                ),
            });
        }
    }
    for entry in entries {
        for (rule, message) in &entry.caps.cautions {
            warnings.push(OrderWarning {
                order: false,
                rule,
                message: format!("`{}`: {message}", entry.name),
            });
        }
    }
    warnings
}

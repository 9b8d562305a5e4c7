//! The batteries: production middlewares, one module each, written as [`Hook`]s wherever they
//! do not need to hold the rest of the stack.
//!
//! | battery | module | kind |
//! |---|---|---|
//! | `X-Process-Time`: seconds spent in the rest of the stack | [`process_time`] | hook |
//!
//! [`Hook`]: crate::Hook

pub mod process_time;

pub use process_time::ProcessTime;

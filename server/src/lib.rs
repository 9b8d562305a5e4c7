//! The callnext server: the seed application (FastAPI's "Async Middleware" example) on
//! callnext, and the command line that serves it. The binary is `callnext`
//! (`cargo run --release`); this library holds the seed so the tests can reach it.

pub mod seed;

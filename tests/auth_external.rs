//! External auth tests.

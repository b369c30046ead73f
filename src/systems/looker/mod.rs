//! Looker (the reverse stream): its home in mlc (DESIGN.md §2), all of it but the reader, which
//! runs the data of its layer.
//!
//! - settings.rs: its mlc.toml keys
//! - auth.rs: the API login
//! - connect.rs: its client (API login, paced calls)
//! - check.rs: `mlc connection check`
//! - discover.rs: `mlc discover` (explores and saved Looks)
//!
//! Its reader is `streams::looker`.

pub mod auth;
pub(crate) mod check;
pub(crate) mod connect;
pub mod discover;
mod settings;

pub use settings::*;

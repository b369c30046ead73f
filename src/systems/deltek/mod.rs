//! Deltek Vantagepoint: its home in mlc (DESIGN.md §2), all of it but the reader and the sink
//! target, which run the data of their own layers.
//!
//! - settings.rs: its mlc.toml keys
//! - answer.rs: how it says a request failed (error objects, 2xx included)
//! - auth.rs: the password grant
//! - connect.rs: its client (password grant, conservative limits)
//! - check.rs: `mlc connection check`
//! - metadata.rs: the live schema (`metadata/{hub}`)
//! - discover.rs: `mlc discover`
//! - page.rs: its page shape
//!
//! Its reader is `streams::deltek`, its sink target `loaders::sink::deltek`.

pub mod answer;
pub mod auth;
pub(crate) mod check;
pub(crate) mod connect;
pub mod discover;
pub mod metadata;
pub mod page;
mod settings;

pub use settings::*;

//! Pipedrive: its home in mlc (DESIGN.md §2), all of it but the reader and the sink target, which
//! run the data of their own layers.
//!
//! - settings.rs: its mlc.toml keys
//! - answer.rs: how it says a request failed (`success: false`, 2xx included)
//! - auth.rs: API token and OAuth, the rate-limit and token-budget hook
//! - connect.rs: its client (API token or OAuth, token budget)
//! - check.rs: `mlc connection check`
//! - metadata.rs: the live schema (`*Fields`)
//! - discover.rs: `mlc discover`
//! - webhook.rs: the webhook receiver (`mlc serve`)
//!
//! Its reader is `streams::pipedrive`, its sink target `loaders::sink::pipedrive`.

pub mod answer;
pub mod auth;
pub(crate) mod check;
pub(crate) mod connect;
pub mod discover;
pub mod metadata;
mod settings;
pub mod webhook;

pub use settings::*;

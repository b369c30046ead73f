//! Dynamics 365 Business Central: its home in mlc (DESIGN.md §2), all of it but the reader and the
//! sink target, which run the data of their own layers.
//!
//! - settings.rs: its mlc.toml keys
//! - connect.rs: its client (Entra client credentials, its 5-at-once limit)
//! - check.rs: `mlc connection check`
//! - metadata.rs: the live schema (`$metadata`)
//! - discover.rs: `mlc discover`
//! - webhook.rs: the webhook receiver (`mlc serve`) and `mlc webhooks register`
//! - subscriptions.rs: its webhook subscriptions, created, renewed and recreated
//!
//! Its reader is `streams::odata` (company-scoped), its sink target
//! `loaders::sink::business_central`.

pub(crate) mod check;
pub(crate) mod connect;
pub mod discover;
pub mod metadata;
mod settings;
pub mod subscriptions;
pub mod webhook;

pub use settings::*;

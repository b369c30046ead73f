//! Dataverse (Dynamics 365 Sales): its home in mlc (DESIGN.md §2), all of it but the reader, which
//! runs the data of its layer.
//!
//! - settings.rs: its mlc.toml keys
//! - connect.rs: its client (Entra client credentials, service-protection limits)
//! - check.rs: `mlc connection check`
//! - metadata.rs: the live schema (`EntityDefinitions`)
//! - discover.rs: `mlc discover`
//! - webhook.rs: the webhook receiver (`mlc serve`)
//! - change_tracking.rs: how it says a delta token expired
//!
//! Its reader is `streams::odata`.

pub mod change_tracking;
pub(crate) mod check;
pub(crate) mod connect;
pub mod discover;
pub mod metadata;
mod settings;
pub mod webhook;

pub use settings::*;

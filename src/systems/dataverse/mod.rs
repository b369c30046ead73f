//! Dataverse (Dynamics 365 Sales): its home in mlc (DESIGN.md §2), all of it but the reader, the
//! sink target and the webhook receiver, which run the data of their own layers.
//!
//! - settings.rs: its mlc.toml keys
//! - connect.rs: its client (Entra client credentials, service-protection limits)
//! - check.rs: `mlc connection check`
//! - metadata.rs: the live schema (`EntityDefinitions`)
//! - discover.rs: `mlc discover`
//! - change_tracking.rs: how it says a delta token expired
//!
//! Its reader is `streams::odata`, its webhooks `serve::dataverse`.

pub mod change_tracking;
pub(crate) mod check;
pub(crate) mod connect;
pub mod discover;
pub mod metadata;
mod settings;

pub use settings::*;

//! Dataverse (Dynamics 365 Sales): its connection settings (settings.rs), how a client of it is
//! built (connect.rs) and checked (check.rs), and what its tenant says it has (metadata.rs, the
//! live schema), and how it says a change-tracking token expired (change_tracking.rs). The reader
//! is `streams::odata`, discovery `discover::dataverse`, webhooks `serve::dataverse`.

pub mod change_tracking;
pub(crate) mod check;
pub(crate) mod connect;
pub mod metadata;
mod settings;

pub use settings::*;

//! Dataverse (Dynamics 365 Sales): its connection settings (settings.rs) and how a client of it is
//! built (connect.rs), and how it says a change-tracking token expired (change_tracking.rs). The
//! reader is `streams::odata`, the live-schema reader `tenant::dataverse`, discovery
//! `discover::dataverse`, webhooks `serve::dataverse`.

pub mod change_tracking;
pub(crate) mod check;
pub(crate) mod connect;
mod settings;

pub use settings::*;

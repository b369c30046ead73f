//! Dynamics 365 Business Central: its connection settings (settings.rs) and how a client of it is
//! built (connect.rs). The reader is `streams::odata` (company- scoped), the live-schema reader
//! `tenant::business_central`, discovery `discover::business_central`, the sink target
//! `loaders::sink::business_central`, webhooks `serve::business_central`.

pub(crate) mod check;
pub(crate) mod connect;
mod settings;

pub use settings::*;

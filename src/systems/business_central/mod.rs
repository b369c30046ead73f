//! Dynamics 365 Business Central: its connection settings (settings.rs), how a client of it is
//! built (connect.rs) and checked (check.rs), and what its tenant says it has (metadata.rs, the
//! live schema). The reader is `streams::odata` (company- scoped), discovery
//! `discover::business_central`, the sink target `loaders::sink::business_central`, webhooks
//! `serve::business_central`.

pub(crate) mod check;
pub(crate) mod connect;
pub mod metadata;
mod settings;

pub use settings::*;

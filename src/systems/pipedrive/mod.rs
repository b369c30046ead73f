//! Pipedrive: its connection settings (settings.rs), how a client of it is built (connect.rs) and
//! checked (check.rs), and what its tenant says it has (metadata.rs, the live schema). The reader
//! is `streams::pipedrive`, discovery `discover::pipedrive`, the sink target
//! `loaders::sink::pipedrive`, webhooks `serve::pipedrive`.

pub(crate) mod check;
pub(crate) mod connect;
pub mod metadata;
mod settings;

pub use settings::*;

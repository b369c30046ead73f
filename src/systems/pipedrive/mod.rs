//! Pipedrive: its connection settings (settings.rs) and how a client of it is built (connect.rs).
//! The reader is `streams::pipedrive`, the live-schema reader `tenant::pipedrive`, discovery
//! `discover::pipedrive`, the sink target `loaders::sink::pipedrive`, webhooks `serve::pipedrive`.

pub(crate) mod check;
pub(crate) mod connect;
mod settings;

pub use settings::*;

//! Pipedrive: its connection settings. The reader is `streams::pipedrive`, the live-schema reader
//! `tenant::pipedrive`, discovery `discover::pipedrive`, the sink target
//! `loaders::sink::pipedrive`, webhooks `serve::pipedrive`.

mod settings;

pub use settings::*;

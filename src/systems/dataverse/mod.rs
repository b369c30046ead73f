//! Dataverse (Dynamics 365 Sales): its connection settings. The reader is `streams::odata`, the
//! live-schema reader `tenant::dataverse`, discovery `discover::dataverse`, webhooks
//! `serve::dataverse`.

mod settings;

pub use settings::*;

//! Dynamics 365 Business Central: its connection settings. The reader is `streams::odata` (company-
//! scoped), the live-schema reader `tenant::business_central`, discovery
//! `discover::business_central`, the sink target `loaders::sink::business_central`, webhooks
//! `serve::business_central`.

mod settings;

pub use settings::*;

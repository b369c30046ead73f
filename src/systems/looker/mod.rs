//! Looker (the reverse stream): its connection settings. The reader is `streams::looker`, discovery
//! `discover::looker`.

mod settings;

pub use settings::*;

//! Deltek Vantagepoint: its connection settings (settings.rs) and how a client of it is built
//! (connect.rs). The reader is `streams::deltek`, the live-schema reader `tenant::deltek`,
//! discovery `discover::deltek`, the sink target `loaders::sink::deltek`.

pub(crate) mod check;
pub(crate) mod connect;
pub mod page;
mod settings;

pub use settings::*;

//! Deltek Vantagepoint: its connection settings (settings.rs), how a client of it is built
//! (connect.rs) and checked (check.rs), and what its tenant says it has (metadata.rs, the live
//! schema). The reader is `streams::deltek`, discovery `discover::deltek`, the sink target
//! `loaders::sink::deltek`.

pub(crate) mod check;
pub(crate) mod connect;
pub mod metadata;
pub mod page;
mod settings;

pub use settings::*;

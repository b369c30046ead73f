//! Looker (the reverse stream): its connection settings (settings.rs), and how a client of it is
//! built (connect.rs) and checked (check.rs). The reader is `streams::looker`, discovery
//! `discover::looker`.

pub(crate) mod check;
pub(crate) mod connect;
mod settings;

pub use settings::*;

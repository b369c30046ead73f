//! Deltek Vantagepoint: its connection settings. The reader is `streams::deltek`, the live-schema
//! reader `tenant::deltek`, discovery `discover::deltek`, the sink target `loaders::sink::deltek`.

mod settings;

pub use settings::*;

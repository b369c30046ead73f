//! # ml-connector
//!
//! An ELT and integration engine for professional-services firms: it reads ERP and CRM systems
//! (Deltek Vantagepoint, Dynamics 365 Business Central, Dataverse / Dynamics 365 Sales,
//! Pipedrive), writes what it reads as Parquet to a lake on object storage, and merges it into a
//! warehouse (an embedded local one by default, BigQuery in production). The Looker reverse
//! stream brings rolled-up figures computed in Looker back the same way, as reference tables
//! (`ref_looker.<stream>`) that every run replaces.
//!
//! ```text
//!  source system ──> streams/ (fetch pages) ──> batches (JSON → Arrow, typed by catalog/)
//!       ──> lake (Parquet parts + _manifest.json on object_store)
//!       ──> loaders/warehouse (keyed merge) ──> state (cursor committed last)
//! ```
//!
//! Why this shape:
//! - **The lake is the hand-off.** Every run's change set is durable Parquet before anything
//!   is merged, so a warehouse load can be retried or replayed, and a sink can read the same
//!   change sets later without re-reading the source.
//! - **State is committed last.** A cursor or delta token advances only after the warehouse
//!   holds the rows it covers; a crash anywhere re-reads, and the keyed merge makes the repeat
//!   harmless (at-least-once extraction, exactly-once effect).
//! - **Definitions are data.** Streams and table shapes live in TOML (`streams/`, `catalog/`);
//!   adding an entity needs no Rust.
//! - **Events are hints.** `mlc serve` (schedules, Dataverse / Pipedrive / Business Central
//!   webhooks) only triggers ordinary incremental runs of the affected streams: a duplicate,
//!   late or lost event costs at most a run, never a wrong row, and the poll still reconciles.
//! - **Reference tables are replaced, not merged.** A Looker result has no key of its own: its
//!   rows are keyed by their position (`result_row`) and every run is a full snapshot whose
//!   reconciliation drops rows beyond the new result, so the table equals the latest result.

pub mod batches;
pub mod catalog_export;
pub mod config;
pub mod connect;
pub mod demo;
pub mod discover;
pub mod drift;
pub mod error;
pub mod http;
pub mod lake;
pub mod lease;
pub mod loaders;
mod names;
pub mod run;
pub mod sandbox;
pub mod schema;
pub mod serve;
pub mod spec;
pub mod state;
pub mod streams;
pub mod systems;
pub mod tenant;
pub mod text_table;
pub mod vault;

pub use error::{Error, Result};

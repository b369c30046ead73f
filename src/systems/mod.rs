//! The external systems ml-connector reads and writes (DESIGN.md §2): one folder per system
//! (its settings, client, check, live schema, discovery, auth), and the places that dispatch
//! per system, each an exhaustive `match`:
//! - `system.rs`: [`System`], the closed list;
//! - `settings.rs`: a connection's settings, parsed from mlc.toml, built into a client and
//!   checked;
//! - here: the tenant's metadata, discovery, the webhook routes and their registration.
//!
//! Readers (`streams/`) and sink targets (`loaders/sink/`) stay with the layers whose data they
//! run; webhook receivers are here (`<system>/webhook.rs`), on the types `serve::receiver`
//! shares. Layers import the leaf files (`system.rs`,
//! `settings.rs`), not this module, so that nothing a system's folder uses imports back the
//! dispatch here.
//!
//! Why an enum and not names: a `match` on [`System`] is exhaustive, so adding a system makes
//! the compiler list every place that must learn about it, where a comparison with a name
//! would silently fall through to a default. Names appear only where a system is stored or
//! typed by a user (`system = "dataverse"` in mlc.toml, `source_system` in a sink flow, lake
//! paths, datasets), and they are parsed here.

pub mod business_central;
pub mod dataverse;
pub mod deltek;
pub mod looker;
pub mod pipedrive;
pub mod settings;
pub mod system;

pub use settings::{CheckReport, ConnectionSettings, Wiring};
pub use system::System;

use crate::config::Connection;
use crate::discover::draft::Discovered;
use crate::error::Result;
use crate::http::Endpoint;
use crate::spec::live::LiveEntity;
use crate::spec::{Definitions, Stream};

/// The webhook receivers' routes, `/webhooks/<system>/{connection}`, for the systems that push
/// changes.
pub(crate) fn webhook_routes(
    router: axum::Router<std::sync::Arc<crate::serve::receiver::Receiver>>,
) -> axum::Router<std::sync::Arc<crate::serve::receiver::Receiver>> {
    use axum::routing::post;
    let route = |system: System| format!("/webhooks/{system}/{{connection}}");
    router
        .route(&route(System::Dataverse), post(dataverse::webhook::receive))
        .route(&route(System::Pipedrive), post(pipedrive::webhook::receive))
        .route(
            &route(System::BusinessCentral),
            post(business_central::webhook::receive).get(business_central::webhook::handshake_only),
        )
}

/// `mlc webhooks register` for the connection's system.
pub(crate) async fn register_webhooks(
    reg: &crate::serve::receiver::Registration<'_>,
) -> Result<String> {
    match reg.conn.system() {
        System::Dataverse => dataverse::webhook::register(reg).await,
        System::Pipedrive => pipedrive::webhook::register(reg).await,
        System::BusinessCentral => business_central::webhook::register(reg).await,
        other @ (System::Deltek | System::Looker) => Err(crate::error::Error::Config(format!(
            "{other} has no webhooks mlc can register (Deltek webhooks are workflow actions; Looker is read on schedule)"
        ))),
    }
}

/// What the tenant says about `stream`'s entity, from its own metadata (the caller,
/// `tenant::read`, turns a failure into [`LiveEntity::Unknown`]).
pub(crate) async fn read_metadata(
    conn: &Connection,
    ep: &Endpoint,
    stream: &Stream,
) -> Result<LiveEntity> {
    match &conn.settings {
        ConnectionSettings::Dataverse(_) => dataverse::metadata::read(ep, stream).await,
        ConnectionSettings::BusinessCentral(_) => {
            business_central::metadata::read(ep, stream).await
        }
        ConnectionSettings::Deltek(_) => deltek::metadata::read(conn, ep, stream).await,
        ConnectionSettings::Pipedrive(_) => pipedrive::metadata::read(ep, stream).await,
        // A Looker result is typed from its own field metadata by the reader.
        ConnectionSettings::Looker(_) => Ok(LiveEntity::Unlisted),
    }
}

/// Drafts catalog files for `conn`'s system. `only` restricts the entities (stream entity
/// names or API names); empty = every entity the built-in streams cover (and, for Looker, every
/// saved Look). `defs` tells which streams exist already. Fails only when the connection
/// itself fails (no token); each entity's own problem is its outcome.
pub async fn discover(
    conn: &Connection,
    ep: &Endpoint,
    defs: &Definitions,
    only: &[String],
) -> Result<Vec<Discovered>> {
    match &conn.settings {
        ConnectionSettings::Dataverse(_) => dataverse::discover::discover(ep, defs, only).await,
        ConnectionSettings::BusinessCentral(_) => {
            business_central::discover::discover(ep, defs, only).await
        }
        ConnectionSettings::Deltek(_) => deltek::discover::discover(conn, ep, defs, only).await,
        ConnectionSettings::Pipedrive(_) => pipedrive::discover::discover(ep, defs, only).await,
        ConnectionSettings::Looker(_) => looker::discover::discover(conn, ep, defs, only).await,
    }
}

//! The external systems ml-connector reads and writes (DESIGN.md §2): one folder per system
//! (its settings, client, check, live schema, discovery, auth), and the places that dispatch
//! per system, each an exhaustive `match`:
//! - `system.rs`: [`System`], the closed list;
//! - `settings.rs`: a connection's settings, parsed from mlc.toml, built into a client and
//!   checked;
//! - here: the tenant's metadata, discovery, the webhook routes and their registration, and
//!   what the sink writes on each system and through which target.
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
use crate::loaders::sink::business_central::{self as sink_business_central, BcTarget};
use crate::loaders::sink::deltek::{self as sink_deltek, DeltekTarget};
use crate::loaders::sink::flow::FlowFile;
use crate::loaders::sink::pipedrive::{self as sink_pipedrive, PipedriveTarget};
use crate::loaders::sink::target::{SinkSupport, Target};
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
        other @ (System::Deltek | System::Looker) => Err(crate::error::Error::config(format!(
            "{other} has no webhooks mlc can register (Deltek webhooks are workflow actions; Looker is read on schedule)"
        ))),
    }
}

/// What the sink may write on `system`; `None`: the sink does not write to it.
pub(crate) fn sink_support(system: System) -> Option<SinkSupport> {
    match system {
        System::Deltek => Some(SinkSupport::new(&sink_deltek::HUBS)),
        System::BusinessCentral => Some(SinkSupport::new(&sink_business_central::HUBS)),
        // Its mappings update records another flow linked.
        System::Pipedrive => Some(SinkSupport {
            update_only: true,
            ..SinkSupport::new(&sink_pipedrive::HUBS)
        }),
        System::Dataverse | System::Looker => None,
    }
}

/// The target sink flow `name` writes through on `conn` (whose system
/// [`sink_support`] accepts).
pub(crate) fn sink_target(
    name: &str,
    flow: &FlowFile,
    conn: &Connection,
    ep: Endpoint,
    defs: &Definitions,
) -> Result<Box<dyn Target>> {
    Ok(match &conn.settings {
        ConnectionSettings::BusinessCentral(b) => {
            Box::new(BcTarget::for_flow(name, flow, b, conn, ep)?)
        }
        ConnectionSettings::Pipedrive(_) => {
            Box::new(PipedriveTarget::new(ep.http, &conn.name, &ep.base))
        }
        ConnectionSettings::Deltek(_) => {
            Box::new(DeltekTarget::for_flow(name, flow, conn, ep, defs)?)
        }
        ConnectionSettings::Dataverse(_) | ConnectionSettings::Looker(_) => {
            return Err(crate::error::Error::config(format!(
                "sink flow `{name}`: connection `{}` is {}, which the sink does not write",
                conn.name,
                conn.system()
            )));
        }
    })
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

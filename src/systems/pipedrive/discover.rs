//! Pipedrive discovery: reads the company's field definitions (`/api/v2/{deal,person,
//! organization,product}Fields`, through `systems::pipedrive::metadata`) and drafts catalog columns for the
//! custom fields, named and keyed as runs land them (the field's name in ASCII snake case,
//! unique against the standard fields; the 40-hex field code as the source), so a catalog can
//! rename, retype or drop them.

use crate::discover::draft::{Discovered, Draft, draft_with_live};
use crate::error::{Error, Result};
use crate::http::Endpoint;
use crate::spec::live::LiveEntity;
use crate::spec::{Definitions, ReaderKind};
use crate::systems::pipedrive::metadata::read;

/// Drafts catalog files with the custom fields of deals, persons, organizations and products.
pub async fn discover(
    ep: &Endpoint,
    defs: &Definitions,
    only: &[String],
) -> Result<Vec<Discovered>> {
    let mut out = Vec::new();
    for stream in defs.streams() {
        if stream.source.reader != ReaderKind::Pipedrive {
            continue;
        }
        let Some(path) = &stream.spec.path else {
            continue;
        };
        let api = path.rsplit('/').next().unwrap_or_default().to_string();
        if !only.is_empty() && !only.iter().any(|o| *o == stream.id.entity || *o == api) {
            continue;
        }
        let entity = &stream.id.entity;
        match read(ep, stream).await {
            Ok(LiveEntity::Present { fields, .. }) => out.push(Discovered::drafted(Draft {
                entity: entity.clone(),
                stream_toml: None,
                catalog: draft_with_live(stream, &fields, false),
            })),
            Ok(LiveEntity::Absent { reason }) => out.push(Discovered::absent(entity, reason)),
            Ok(LiveEntity::Unknown { reason }) => out.push(Discovered::failed(entity, reason)),
            // Stages, pipelines, users, deal products: no custom fields.
            Ok(LiveEntity::Unlisted) => {}
            Err(e @ (Error::Auth { .. } | Error::Transport { .. })) => return Err(e),
            Err(e) => out.push(Discovered::failed(entity, e)),
        }
    }
    Ok(out)
}

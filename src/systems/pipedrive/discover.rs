//! Pipedrive discovery: reads the company's field definitions (`/api/v2/{deal,person,
//! organization,product}Fields`, through `systems::pipedrive::metadata`) and drafts catalog columns for the
//! custom fields, named and keyed as runs land them (the field's name in ASCII snake case,
//! unique against the standard fields; the 40-hex field code as the source), so a catalog can
//! rename, retype or drop them.

use crate::discover::draft::{Discovered, from_live};
use crate::error::Result;
use crate::http::Endpoint;
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
        // Stages, pipelines, users, deal products have no custom fields: nothing to draft.
        out.extend(from_live(
            &stream.id.entity,
            stream,
            read(ep, stream).await,
            false,
        )?);
    }
    Ok(out)
}

//! Deltek discovery: `GET {base}/metadata/{hub}` lists a hub's fields (names, types, captions,
//! required flags, custom `Cust*` fields). The answer's exact shape is not publicly documented
//! [UNCERTAIN], so the parser accepts an array of field objects or an object holding one
//! (`fields`/`Fields`), with the name in `name`/`Name`/`fieldName`, the type in
//! `type`/`dataType`/`DataType`, and the label in `caption`/`label`/`Caption` (parsed in
//! `systems::deltek::metadata`). Existing catalog columns are kept as they are; fields the catalog lacks
//! are added, typed from the metadata.

use crate::discover::draft::{Discovered, Draft, draft_with_live};
use crate::error::{Error, Result};
use crate::http::Endpoint;
use crate::spec::Definitions;
use crate::spec::live::LiveEntity;
use crate::systems::deltek::metadata::read;

/// Drafts catalog files from Deltek's metadata: each hub's catalog plus every field its
/// metadata lists that the catalog lacks.
pub async fn discover(
    conn: &crate::config::Connection,
    ep: &Endpoint,
    defs: &Definitions,
    only: &[String],
) -> Result<Vec<Discovered>> {
    let mut out = Vec::new();
    for stream in defs.streams().filter(|s| s.id.system == "deltek") {
        let hub = stream.spec.path.clone().unwrap_or_default();
        // A name is a stream entity when one exists, else an API hub (all its streams).
        let is_entity = |o: &String| {
            defs.streams()
                .any(|s| s.id.system == "deltek" && &s.id.entity == o)
        };
        if !only.is_empty()
            && !only
                .iter()
                .any(|o| o == &stream.id.entity || (!is_entity(o) && o.eq_ignore_ascii_case(&hub)))
        {
            continue;
        }
        let entity = &stream.id.entity;
        match read(conn, ep, stream).await {
            Ok(LiveEntity::Present { fields, .. }) => out.push(Discovered::drafted(Draft {
                entity: entity.clone(),
                stream_toml: None,
                catalog: draft_with_live(stream, &fields, true),
            })),
            Ok(LiveEntity::Absent { reason }) => out.push(Discovered::absent(entity, reason)),
            Ok(LiveEntity::Unknown { reason }) => out.push(Discovered::failed(entity, reason)),
            // Ledger and configuration paths have no hub metadata.
            Ok(LiveEntity::Unlisted) => {}
            Err(e @ (Error::Auth { .. } | Error::Transport { .. })) => return Err(e),
            Err(e) => out.push(Discovered::failed(entity, e)),
        }
    }
    Ok(out)
}

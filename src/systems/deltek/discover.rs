//! Deltek discovery: `GET {base}/metadata/{hub}` lists a hub's fields (names, types, captions,
//! required flags, custom `Cust*` fields). The answer's exact shape is not publicly documented
//! [UNCERTAIN], so the parser accepts an array of field objects or an object holding one
//! (`fields`/`Fields`), with the name in `name`/`Name`/`fieldName`, the type in
//! `type`/`dataType`/`DataType`, and the label in `caption`/`label`/`Caption` (parsed in
//! `systems::deltek::metadata`). Existing catalog columns are kept as they are; fields the catalog lacks
//! are added, typed from the metadata.

use crate::discover::draft::{Discovered, from_live};
use crate::error::Result;
use crate::http::Endpoint;
use crate::spec::Definitions;
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
        // Ledger and configuration paths have no hub metadata: nothing to draft.
        out.extend(from_live(
            &stream.id.entity,
            stream,
            read(conn, ep, stream).await,
            true,
        )?);
    }
    Ok(out)
}

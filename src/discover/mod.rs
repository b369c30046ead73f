//! `mlc discover`: drafts catalog (and stream) files from a system's live metadata, so custom
//! fields are first-class and adding an entity starts from what the tenant really has.
//!
//! Each system's `systems::<system>::discover` reads its own metadata (Dataverse
//! `EntityDefinitions`, Business Central `$metadata`, Pipedrive `*Fields`, Deltek
//! `metadata/{hub}`; Looker's `json_bi` field metadata and its list of saved Looks), reached
//! through `systems::discover`; `draft.rs` holds what they share (the per-entity outcome and
//! the draft of a catalog from a live schema) and this module writes the TOML. Discovery never
//! stops at the first entity it cannot read: each entity is `ok`, `absent` or an error, and
//! the others go on.

pub mod draft;

use crate::spec::CatalogFile;
pub use draft::{Discovered, Draft, Outcome, draft_with_live};

/// A catalog file as TOML, one column per line, the way the built-in files are written.
pub fn catalog_toml(cat: &CatalogFile) -> String {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut out = String::new();
    if let Some(d) = &cat.description {
        out.push_str(&format!("description = {}\n", q(d)));
    }
    out.push_str(&format!(
        "primary_key = [{}]\n",
        cat.primary_key
            .iter()
            .map(|k| q(k))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if let Some(p) = &cat.partition_by {
        out.push_str(&format!("partition_by = {}\n", q(p)));
    }
    if !cat.cluster_by.is_empty() {
        out.push_str(&format!(
            "cluster_by = [{}]\n",
            cat.cluster_by
                .iter()
                .map(|k| q(k))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out.push_str("columns = [\n");
    for c in &cat.columns {
        let mut parts = vec![
            format!("name = {}", q(&c.name)),
            format!("type = {}", q(&c.ty.to_string())),
        ];
        if !c.nullable {
            parts.push("nullable = false".into());
        }
        if let Some(s) = &c.source {
            parts.push(format!("source = {}", q(s)));
        }
        if c.computed {
            parts.push("computed = true".into());
        }
        if let Some(d) = &c.description {
            parts.push(format!("description = {}", q(d)));
        }
        out.push_str(&format!("  {{ {} }},\n", parts.join(", ")));
    }
    out.push_str("]\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Definitions;

    #[test]
    fn catalog_toml_round_trips() {
        let defs = Definitions::builtin().unwrap();
        let s = defs.get(&"dataverse.account".parse().unwrap()).unwrap();
        let text = catalog_toml(&s.catalog);
        let back: CatalogFile = toml::from_str(&text).unwrap();
        assert_eq!(back.columns.len(), s.catalog.columns.len());
        assert_eq!(back.primary_key, s.catalog.primary_key);
    }
}

//! `mlc discover`: drafts catalog (and stream) files from a system's live metadata, so custom
//! fields are first-class and adding an entity starts from what the tenant really has.
//!
//! Each system has its own module reading its own metadata through `tenant` (Dataverse
//! `EntityDefinitions`, Business Central `$metadata`, Pipedrive `*Fields`, Deltek
//! `metadata/{hub}`; Looker's `json_bi` field metadata and its list of saved Looks); this
//! module holds what they share: the per-entity outcome, the draft of a catalog from a live
//! schema, and the TOML writer. Discovery never stops at the first entity it cannot read: each
//! entity is `ok`, `absent` or an error, and the others go on.

mod business_central;
mod dataverse;
mod deltek;
mod looker;
mod pipedrive;

use std::collections::BTreeSet;

use crate::config::Connection;
use crate::error::Result;
use crate::http::Endpoint;
use crate::spec::live::LiveField;
pub use crate::spec::naming::snake_case;
use crate::spec::naming::unique_name;
use crate::spec::{CatalogFile, Column, Definitions, Stream};
use crate::systems::ConnectionSettings;

/// What discovery found for one entity.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A draft to write.
    Drafted(Draft),
    /// The tenant does not have the entity.
    Absent(String),
    /// Its metadata could not be read (the reason).
    Failed(String),
    /// The source offers it, but there is nothing to draft without a choice from the user
    /// (a Looker explore: which fields to query); the text says how to read it.
    Available(String),
}

/// One entity's discovery.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// Stream entity name (or the API's name when no stream reads it).
    pub entity: String,
    pub outcome: Outcome,
}

impl Discovered {
    pub fn drafted(d: Draft) -> Self {
        Self {
            entity: d.entity.clone(),
            outcome: Outcome::Drafted(d),
        }
    }

    pub fn absent(entity: &str, reason: impl Into<String>) -> Self {
        Self {
            entity: entity.to_string(),
            outcome: Outcome::Absent(reason.into()),
        }
    }

    /// The draft, when the entity was drafted.
    pub fn into_draft(self) -> Option<Draft> {
        match self.outcome {
            Outcome::Drafted(d) => Some(d),
            _ => None,
        }
    }

    pub fn available(entity: &str, how: impl Into<String>) -> Self {
        Self {
            entity: entity.to_string(),
            outcome: Outcome::Available(how.into()),
        }
    }

    pub fn failed(entity: &str, reason: impl std::fmt::Display) -> Self {
        Self {
            entity: entity.to_string(),
            outcome: Outcome::Failed(reason.to_string()),
        }
    }
}

/// `stream`'s catalog plus a column for each field of the tenant it lacks (every listed field
/// with `all`, else those that land at run time), named as runs name them.
pub fn draft_with_live(stream: &Stream, fields: &[LiveField], all: bool) -> CatalogFile {
    let mut cat = stream.catalog.clone();
    let mut taken: BTreeSet<String> = cat.columns.iter().map(|c| c.name.clone()).collect();
    if !all {
        taken.extend(fields.iter().filter(|f| !f.lands).map(|f| f.column.clone()));
    }
    for f in fields {
        if !(all || f.lands) || cat.columns.iter().any(|c| c.source_name() == f.source) {
            continue;
        }
        let name = unique_name(&f.column, &f.identity, &taken);
        taken.insert(name.clone());
        cat.columns.push(Column {
            source: (name != f.source).then(|| f.source.clone()),
            name,
            ty: f.ty,
            nullable: true,
            description: Some(match &f.label {
                Some(l) => format!("{l} (tenant field `{}`).", f.identity),
                None => format!("Tenant field `{}`.", f.identity),
            }),
            computed: false,
            absent: false,
        });
    }
    cat
}

/// A drafted definition for one entity.
#[derive(Debug, Clone)]
pub struct Draft {
    /// Stream entity name (`snake_case`, singular).
    pub entity: String,
    /// The stream file to write when the stream does not exist yet (`None`: keep the existing
    /// one).
    pub stream_toml: Option<String>,
    pub catalog: CatalogFile,
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
        ConnectionSettings::Dataverse(_) => dataverse::discover(ep, defs, only).await,
        ConnectionSettings::BusinessCentral(_) => business_central::discover(ep, defs, only).await,
        ConnectionSettings::Deltek(_) => deltek::discover(conn, ep, defs, only).await,
        ConnectionSettings::Pipedrive(_) => pipedrive::discover(ep, defs, only).await,
        ConnectionSettings::Looker(_) => looker::discover(conn, ep, defs, only).await,
    }
}

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

//! Sink flow files, `loaders/sink/<flow>.toml`: which source stream feeds which target hub and
//! how fields map. Declarative on purpose: a flow is data, the logic is in `plan.rs`/`apply`.
//! These doc comments are the reference for every key.

use std::collections::BTreeMap;
use std::path::Path;

use include_dir::{Dir, include_dir};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

static BUILTIN_FLOWS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/loaders/sink");

/// One flow file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FlowFile {
    /// What the flow does, for `mlc sink status`.
    #[serde(default)]
    pub description: String,
    /// Source system: change sets are read from the lake under `raw/<source_system>/<entity>/`.
    pub source_system: String,
    /// Target system: the flow writes through the one mlc.toml connection of this system
    /// (`--target` picks one when there are several).
    pub target_system: String,
    /// Owner → employee resolution.
    #[serde(default)]
    pub owners: Owners,
    /// Entity mappings, applied in this order: list a parent (account) before what depends on
    /// it (contact), since dependencies are written first.
    pub entities: Vec<EntityMap>,
}

/// Owner (source user id) → target employee code.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Owners {
    /// Employee code used when an owner has no override; such writes are flagged in the audit
    /// (`owner=default`). Without it, the owner field is left out.
    pub default_employee: Option<String>,
    /// Source owner id → employee code.
    #[serde(default)]
    pub overrides: BTreeMap<String, String>,
}

/// One source entity → one target hub.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EntityMap {
    /// Source entity (`<source_system>.<source>` is the stream whose change sets are read).
    pub source: String,
    /// Target hub (`firm`, `contact`).
    pub target: String,
    /// Source column → target field. Null source values are left out of the request.
    pub fields: BTreeMap<String, String>,
    /// Target custom field holding the source id (searched first; written on create). Optional:
    /// not every tenant has one.
    pub external_id_field: Option<String>,
    /// Target fields searched (all equal) when no ledger link and no external id match.
    #[serde(default)]
    pub natural_key: Vec<String>,
    /// Values sent on create only (e.g. `ClientInd = "Y"`).
    #[serde(default)]
    pub defaults: BTreeMap<String, String>,
    /// Target field receiving the owner's employee code (from the source `ownerid` column).
    pub owner_field: Option<String>,
    /// The parent this record attaches to (a contact's firm).
    pub parent: Option<ParentRef>,
}

/// A lookup to a parent record that must exist in the target first.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ParentRef {
    /// Source column holding the parent's source id.
    pub column: String,
    /// Source column naming the parent's table (polymorphic lookups); only rows whose type is
    /// `source` attach, others are written without a parent.
    pub type_column: Option<String>,
    /// The parent's source entity (its ledger links give the target key).
    pub source: String,
    /// Target field receiving the parent's target key.
    pub field: String,
}

impl FlowFile {
    /// Loads flow `name`: `<definitions_dir>/loaders/sink/<name>.toml` when it exists, else the
    /// built-in file. Fails on unknown keys and on an entity whose parent is not mapped before it.
    pub fn load(definitions_dir: &Path, name: &str) -> Result<Self> {
        let file = format!("{name}.toml");
        let local = definitions_dir.join("loaders/sink").join(&file);
        let (origin, text) = if local.is_file() {
            let text = std::fs::read_to_string(&local).map_err(|e| Error::io(&local, e))?;
            (local.display().to_string(), text)
        } else {
            let f = BUILTIN_FLOWS.get_file(&file).ok_or_else(|| {
                Error::Config(format!(
                    "no sink flow `{name}`: expected loaders/sink/{file} (built-in flows: {})",
                    Self::builtin_names().join(", ")
                ))
            })?;
            (
                format!("loaders/sink/{file} (built in)"),
                f.contents_utf8().unwrap_or_default().to_string(),
            )
        };
        let flow: FlowFile = toml::from_str(&text).map_err(|e| Error::Definition {
            path: origin.clone(),
            message: e.to_string(),
        })?;
        flow.validate().map_err(|message| Error::Definition {
            path: origin,
            message,
        })?;
        Ok(flow)
    }

    /// Names of the flows compiled into the binary.
    pub fn builtin_names() -> Vec<String> {
        BUILTIN_FLOWS
            .files()
            .filter_map(|f| f.path().file_stem()?.to_str().map(String::from))
            .collect()
    }

    fn validate(&self) -> std::result::Result<(), String> {
        for (i, e) in self.entities.iter().enumerate() {
            if e.fields.is_empty() {
                return Err(format!("entities[{i}] ({}) maps no fields", e.source));
            }
            if let Some(p) = &e.parent
                && !self.entities[..i].iter().any(|x| x.source == p.source)
            {
                return Err(format!(
                    "entities[{i}] ({}): parent `{}` must be mapped before it",
                    e.source, p.source
                ));
            }
        }
        Ok(())
    }

    /// The mapping of a source entity.
    pub fn entity(&self, source: &str) -> Option<&EntityMap> {
        self.entities.iter().find(|e| e.source == source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_flow_parses() {
        let f = FlowFile::load(Path::new("/nonexistent"), "dynamics_to_deltek").unwrap();
        assert_eq!(f.entities[0].target, "firm");
        assert_eq!(f.entities[1].parent.as_ref().unwrap().source, "account");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<FlowFile>(
            "source_system='a'\ntarget_system='b'\nentities=[]\ntypo=1\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("typo"));
    }
}

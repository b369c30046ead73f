//! What every system's discovery produces: the per-entity outcome and the draft of a catalog
//! from a live schema.

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::spec::live::{LiveEntity, LiveField};
use crate::spec::naming::unique_name;
use crate::spec::{CatalogFile, Stream};

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
        cat.columns.push(f.as_column(name));
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

/// What discovery makes of a stream's live schema as read: a draft from its fields (every
/// field with `all`, else those that land at run time), absent, or failed with the reason;
/// nothing for an entity without metadata. Fails only when the connection itself fails
/// (authentication, network), which ends discovery.
pub fn from_live(
    entity: &str,
    stream: &Stream,
    read: Result<LiveEntity>,
    all: bool,
) -> Result<Option<Discovered>> {
    Ok(match read {
        Ok(LiveEntity::Present { fields, .. }) => Some(Discovered::drafted(Draft {
            entity: entity.to_string(),
            stream_toml: None,
            catalog: draft_with_live(stream, &fields, all),
        })),
        Ok(LiveEntity::Absent { reason }) => Some(Discovered::absent(entity, reason)),
        Ok(LiveEntity::Unknown { reason }) => Some(Discovered::failed(entity, reason)),
        Ok(LiveEntity::Unlisted) => None,
        Err(e @ (Error::Auth { .. } | Error::Transport { .. })) => return Err(e),
        Err(e) => Some(Discovered::failed(entity, e)),
    })
}

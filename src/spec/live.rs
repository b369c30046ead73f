//! The tenant's live schema as a stream carries it: what the tenant says about the entity
//! behind the stream, as read from its metadata and cached in the state store. The reading and
//! the reconciliation with the catalog are in `crate::tenant`; these are the types the stream,
//! the state store and the readers share.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{Column, ColumnType};

/// What the tenant says about the entity behind one stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveEntity {
    /// The tenant has the entity; these are the fields it serves. With `complete`, a field not
    /// listed is not served (the list is the entity's schema); otherwise the list only adds
    /// fields (Pipedrive's `*Fields` omit some payload keys such as `is_archived`).
    Present {
        fields: Vec<LiveField>,
        complete: bool,
    },
    /// The tenant does not have the entity (a solution not installed, a hub not licensed).
    Absent { reason: String },
    /// The metadata could not be read (no permission, an error): the catalog is read as it
    /// is, and the run says so.
    Unknown { reason: String },
    /// The system publishes no metadata for this kind of entity (Pipedrive stages, Deltek
    /// ledger paths): the catalog is read as it is.
    Unlisted,
}

/// One field the tenant serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveField {
    /// Payload key as the reader hands records to the decoder (Dataverse `_x_value` for a
    /// lookup, the 40-hex key of a Pipedrive custom field).
    pub source: String,
    /// The field's stable identity, which names its column (Dataverse logical name, Business
    /// Central property, Deltek field, Pipedrive field name; the hash key stays the source).
    pub identity: String,
    /// Column name wanted for the field before uniqueness (`snake_case` of the identity or
    /// the display name).
    pub column: String,
    pub ty: ColumnType,
    /// The field lands as a column of its own when the catalog lacks it (custom columns,
    /// extension fields, `Cust*` fields, custom fields; every Business Central property).
    pub lands: bool,
    /// Display name, for column descriptions.
    #[serde(default)]
    pub label: Option<String>,
    /// The system's own type name (Pipedrive `enum`, `set`, `monetary`, …), where a reader
    /// needs it to shape values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_type: Option<String>,
    /// Choice labels by option id (Pipedrive `enum` and `set` fields), which readers put in
    /// place of the ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<(i64, String)>,
}

impl LiveField {
    /// The column the field lands as under `name` (unique in its table), described by the
    /// field's label and identity.
    pub fn as_column(&self, name: String) -> Column {
        Column {
            source: (name != self.source).then(|| self.source.clone()),
            name,
            ty: self.ty,
            nullable: true,
            description: Some(match &self.label {
                Some(l) => format!("{l} (tenant field `{}`).", self.identity),
                None => format!("Tenant field `{}`.", self.identity),
            }),
            computed: false,
            absent: false,
        }
    }
}

/// The live schema of one stream's entity as cached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveSchema {
    /// When the metadata was read (RFC 3339).
    pub fetched_at: String,
    pub entity: LiveEntity,
    /// Payload fields the tenant refused in a request since the metadata was read (learned
    /// from its "no such field" errors).
    #[serde(default)]
    pub refused: BTreeSet<String>,
}

//! Dataverse's live schema: `EntityDefinitions(LogicalName='…')` with its `Attributes`, one
//! table at a time (an org's full metadata is hundreds of MB; one table is a few hundred KB),
//! plus the `DateTimeAttributeMetadata` cast, the only place that says whether a date is
//! date-only. A table the org does not have (Sales not installed: no lead, quote, …) is
//! absent; custom attributes (`IsCustomAttribute`) land under their logical names.

use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::http::Endpoint;
use crate::spec::live::{LiveEntity, LiveField};
use crate::spec::naming::column_name;
use crate::spec::{ColumnType, Stream};

const API: &str = "/api/data/v9.2";

/// A table's metadata.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Table {
    pub logical_name: String,
    pub entity_set_name: String,
    pub primary_id_attribute: String,
    #[serde(default)]
    pub attributes: Vec<Attribute>,
    /// Logical names of the date-only `DateTime` attributes (from the cast request).
    #[serde(skip)]
    pub date_only: Vec<String>,
}

/// One attribute (column) of a table.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Attribute {
    pub logical_name: String,
    #[serde(default)]
    pub attribute_type: Option<String>,
    /// Set on attributes that are a facet of another (a lookup's name, a money's base value).
    #[serde(default)]
    pub attribute_of: Option<String>,
    #[serde(default)]
    pub is_valid_for_read: Option<bool>,
    #[serde(default)]
    pub is_custom_attribute: Option<bool>,
    #[serde(default)]
    pub display_name: Option<Label>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Label {
    #[serde(default)]
    pub user_localized_label: Option<LocalizedLabel>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LocalizedLabel {
    pub label: String,
}

#[derive(Deserialize)]
struct List<T> {
    value: Vec<T>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DateFormat {
    logical_name: String,
    #[serde(default)]
    format: Option<String>,
}

impl Attribute {
    /// The display name in the user's language, if any.
    pub fn label(&self) -> Option<String> {
        self.display_name
            .as_ref()
            .and_then(|l| l.user_localized_label.as_ref())
            .map(|l| l.label.clone())
    }

    /// `Lookup`, `Customer` or `Owner`: read as `_<name>_value`.
    pub fn is_lookup(&self) -> bool {
        matches!(
            self.attribute_type.as_deref(),
            Some("Lookup" | "Customer" | "Owner")
        )
    }

    /// The payload key the Web API serves the attribute under.
    pub fn payload_key(&self) -> String {
        if self.is_lookup() {
            format!("_{}_value", self.logical_name)
        } else {
            self.logical_name.clone()
        }
    }

    /// The warehouse type; `None` for attributes a table cannot hold as a column.
    pub fn column_type(&self, date_only: &[String]) -> Option<ColumnType> {
        Some(match self.attribute_type.as_deref().unwrap_or("") {
            "String" | "Memo" | "Uniqueidentifier" | "Lookup" | "Customer" | "Owner"
            | "EntityName" => ColumnType::String,
            "Integer" | "BigInt" | "Picklist" | "State" | "Status" => ColumnType::Int64,
            "Double" => ColumnType::Float64,
            "Money" => ColumnType::Decimal {
                precision: 19,
                scale: 4,
            },
            "Decimal" => ColumnType::Decimal {
                precision: 23,
                scale: 10,
            },
            "Boolean" => ColumnType::Bool,
            "DateTime" if date_only.contains(&self.logical_name) => ColumnType::Date,
            "DateTime" => ColumnType::Timestamp,
            _ => return None,
        })
    }
}

/// The outcome of asking for one table's metadata.
pub enum Fetched {
    Table(Table),
    /// The org has no table of that logical name.
    Missing,
}

/// Reads the metadata of table `logical` (with its attributes and date-only flags).
///
/// Fails when a request fails (other than the table not existing) or an answer is not
/// understood.
pub async fn fetch(ep: &Endpoint, logical: &str) -> Result<Fetched> {
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    let url = format!(
        "{}{API}/EntityDefinitions(LogicalName='{logical}')?$select=LogicalName,EntitySetName,PrimaryIdAttribute&$expand=Attributes($select=LogicalName,AttributeType,AttributeOf,IsValidForRead,IsCustomAttribute,DisplayName)",
        ep.base
    );
    let resp = match ep.http.get(&url, &headers, "metadata").await {
        Ok(r) => r,
        Err(e) if e.status() == Some(404) => return Ok(Fetched::Missing),
        Err(e) => return Err(e),
    };
    let mut table: Table = serde_json::from_slice(&resp.body).map_err(|e| {
        Error::decode_from(
            format!("dataverse.{logical}"),
            "EntityDefinitions answer not understood",
            e,
        )
    })?;
    let url = format!(
        "{}{API}/EntityDefinitions(LogicalName='{logical}')/Attributes/Microsoft.Dynamics.CRM.DateTimeAttributeMetadata?$select=LogicalName,Format",
        ep.base
    );
    let resp = ep.http.get(&url, &headers, "metadata").await?;
    let dates: List<DateFormat> = serde_json::from_slice(&resp.body).map_err(|e| {
        Error::decode_from(
            format!("dataverse.{logical}"),
            "DateTimeAttributeMetadata answer not understood",
            e,
        )
    })?;
    table.date_only = dates
        .value
        .into_iter()
        .filter(|d| d.format.as_deref() == Some("DateOnly"))
        .map(|d| d.logical_name)
        .collect();
    Ok(Fetched::Table(table))
}

/// The live schema of `stream`'s table (its entity name is the table's logical name).
pub async fn read(ep: &Endpoint, stream: &Stream) -> Result<LiveEntity> {
    let logical = &stream.id.entity;
    Ok(match fetch(ep, logical).await? {
        Fetched::Missing => LiveEntity::Absent {
            reason: format!(
                "the org has no table `{logical}` (its solution is not installed, e.g. Dynamics 365 Sales for leads and quotes)"
            ),
        },
        Fetched::Table(t) => entity(&t),
    })
}

/// Every readable attribute as a field; custom ones (not facets of another) land.
pub fn entity(t: &Table) -> LiveEntity {
    let fields = t
        .attributes
        .iter()
        .filter(|a| a.is_valid_for_read != Some(false))
        .filter_map(|a| {
            let ty = a.column_type(&t.date_only)?;
            Some(LiveField {
                source: a.payload_key(),
                identity: a.logical_name.clone(),
                column: column_name(&a.logical_name),
                ty,
                lands: a.is_custom_attribute == Some(true) && a.attribute_of.is_none(),
                label: a.label(),
                source_type: None,
                options: Default::default(),
            })
        })
        .collect();
    LiveEntity::Present {
        fields,
        complete: true,
    }
}

//! Dataverse discovery: `EntityDefinitions(LogicalName='…')` with its `Attributes`, one table at
//! a time (an org's full metadata is hundreds of MB; one table is a few hundred KB), plus the
//! `DateTimeAttributeMetadata` cast, the only place that says whether a date is date-only.

use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use serde::Deserialize;

use super::{Draft, snake_case};
use crate::connect::Endpoint;
use crate::error::{Error, Result};
use crate::spec::{CatalogFile, Column, ColumnType, Definitions};

const API: &str = "/api/data/v9.2";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Table {
    logical_name: String,
    entity_set_name: String,
    primary_id_attribute: String,
    #[serde(default)]
    attributes: Vec<Attribute>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Attribute {
    logical_name: String,
    #[serde(default)]
    attribute_type: Option<String>,
    #[serde(default)]
    attribute_of: Option<String>,
    #[serde(default)]
    is_valid_for_read: Option<bool>,
    #[serde(default)]
    display_name: Option<Label>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Label {
    #[serde(default)]
    user_localized_label: Option<LocalizedLabel>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LocalizedLabel {
    label: String,
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

/// Drafts one catalog per table: the built-in Dataverse tables, or the logical names in `only`.
pub async fn discover(ep: &Endpoint, defs: &Definitions, only: &[String]) -> Result<Vec<Draft>> {
    let tables: Vec<String> = if only.is_empty() {
        defs.streams()
            .filter(|s| s.id.system == "dataverse")
            .map(|s| s.id.entity.clone())
            .collect()
    } else {
        only.to_vec()
    };
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    let mut out = Vec::new();
    for name in tables {
        let url = format!(
            "{}{API}/EntityDefinitions(LogicalName='{name}')?$select=LogicalName,EntitySetName,PrimaryIdAttribute&$expand=Attributes($select=LogicalName,AttributeType,AttributeOf,IsValidForRead,DisplayName)",
            ep.base
        );
        let resp = ep.http.get(&url, &headers, "discover").await?;
        let table: Table = serde_json::from_slice(&resp.body).map_err(|e| Error::Decode {
            stream: format!("dataverse.{name}"),
            message: format!("EntityDefinitions answer not understood: {e}"),
        })?;
        let url = format!(
            "{}{API}/EntityDefinitions(LogicalName='{name}')/Attributes/Microsoft.Dynamics.CRM.DateTimeAttributeMetadata?$select=LogicalName,Format",
            ep.base
        );
        let resp = ep.http.get(&url, &headers, "discover").await?;
        let dates: List<DateFormat> =
            serde_json::from_slice(&resp.body).map_err(|e| Error::Decode {
                stream: format!("dataverse.{name}"),
                message: format!("DateTimeAttributeMetadata answer not understood: {e}"),
            })?;
        let date_only: Vec<String> = dates
            .value
            .into_iter()
            .filter(|d| d.format.as_deref() == Some("DateOnly"))
            .map(|d| d.logical_name)
            .collect();
        let entity = snake_case(&table.logical_name);
        let exists = defs
            .streams()
            .any(|s| s.id.system == "dataverse" && s.id.entity == entity);
        out.push(Draft {
            stream_toml: (!exists).then(|| {
                format!(
                    "entity_set = \"{}\"\nincremental = \"delta\"\ncursor_field = \"modifiedon\"\n",
                    table.entity_set_name
                )
            }),
            catalog: catalog(&table, &date_only),
            entity,
        });
    }
    Ok(out)
}

/// Attributes → columns. Lookups become `_x_value` sources; polymorphic ones (customer, owner)
/// also get their target table from the `lookuplogicalname` annotation. Attributes that are
/// facets of another (`AttributeOf`), virtual or not readable are skipped.
fn catalog(t: &Table, date_only: &[String]) -> CatalogFile {
    let mut columns = Vec::new();
    for a in &t.attributes {
        if a.attribute_of.is_some() || a.is_valid_for_read == Some(false) {
            continue;
        }
        let kind = a.attribute_type.as_deref().unwrap_or("");
        let ty = match kind {
            "String" | "Memo" | "Uniqueidentifier" | "Lookup" | "Customer" | "Owner" => {
                ColumnType::String
            }
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
            "DateTime" if date_only.contains(&a.logical_name) => ColumnType::Date,
            "DateTime" => ColumnType::Timestamp,
            _ => continue,
        };
        let description = a
            .display_name
            .as_ref()
            .and_then(|l| l.user_localized_label.as_ref())
            .map(|l| l.label.clone());
        let name = snake_case(&a.logical_name);
        let is_lookup = matches!(kind, "Lookup" | "Customer" | "Owner");
        let source = if is_lookup {
            Some(format!("_{}_value", a.logical_name))
        } else {
            (name != a.logical_name).then(|| a.logical_name.clone())
        };
        columns.push(Column {
            nullable: a.logical_name != t.primary_id_attribute,
            name: name.clone(),
            ty,
            description,
            source: source.clone(),
        });
        if matches!(kind, "Customer" | "Owner") {
            columns.push(Column {
                name: format!("{name}_type"),
                ty: ColumnType::String,
                nullable: true,
                description: Some(format!("Table the {name} lookup points to.")),
                source: source.map(|s| format!("{s}@Microsoft.Dynamics.CRM.lookuplogicalname")),
            });
        }
    }
    CatalogFile {
        description: None,
        primary_key: vec![snake_case(&t.primary_id_attribute)],
        partition_by: None,
        cluster_by: Vec::new(),
        columns,
    }
}

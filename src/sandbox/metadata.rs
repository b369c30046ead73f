//! Dataverse table metadata: `EntityDefinitions`, as `mlc discover dataverse` reads it — one
//! table at a time with its `Attributes` expanded, and the `DateTimeAttributeMetadata` cast that
//! alone reveals whether a date column is date-only. Generated from the entities the sandbox
//! serves, so discovery drafts exactly the catalog the sandbox was built from.

use serde_json::{Value, json};

use super::App;
use super::entities::{ALL, Entity, Set};
use super::odata::Reject;
use crate::spec::ColumnType;

/// Answers `EntityDefinitions…` paths (`rest` is what follows `EntityDefinitions`).
pub fn entity_definitions(app: &App, rest: &str) -> Result<Value, Reject> {
    let context = format!("{}$metadata#EntityDefinitions", app.root());
    if rest.is_empty() {
        let value: Vec<Value> = ALL.iter().map(|s| table(app.entity(*s), false)).collect();
        return Ok(json!({ "@odata.context": context, "value": value }));
    }
    let (key, tail) = rest
        .strip_prefix("(LogicalName='")
        .and_then(|r| r.split_once("')"))
        .ok_or_else(|| Reject {
            status: 400,
            code: "0x80060888",
            message: format!("Bad Request - Error in query syntax: EntityDefinitions{rest}"),
        })?;
    let set = ALL
        .into_iter()
        .find(|s| s.logical() == key)
        .ok_or_else(|| Reject {
            status: 404,
            code: "0x80040217",
            message: format!("Could not find an entity with name {key}."),
        })?;
    let entity = app.entity(set);
    match tail {
        "" => Ok(table(entity, true)),
        "/Attributes/Microsoft.Dynamics.CRM.DateTimeAttributeMetadata" => {
            let value: Vec<Value> = entity
                .fields
                .iter()
                .filter(|f| matches!(f.ty, ColumnType::Date | ColumnType::Timestamp))
                .map(|f| {
                    json!({
                        "LogicalName": f.name,
                        "Format": if f.ty == ColumnType::Date { "DateOnly" } else { "DateAndTime" },
                        "DateTimeBehavior": { "Value": if f.ty == ColumnType::Date { "DateOnly" } else { "UserLocal" } },
                    })
                })
                .collect();
            Ok(json!({ "@odata.context": context, "value": value }))
        }
        other => Err(Reject {
            status: 404,
            code: "0x8006088a",
            message: format!(
                "Resource not found for the segment '{}'.",
                other.trim_start_matches('/')
            ),
        }),
    }
}

fn label(text: &str) -> Value {
    json!({ "UserLocalizedLabel": { "Label": text, "LanguageCode": 1033 } })
}

fn table(e: &Entity, with_attributes: bool) -> Value {
    let set = e.set;
    let mut v = json!({
        "MetadataId": super::json::guid_string(0xE0, set.code() as u64),
        "LogicalName": set.logical(),
        "EntitySetName": set.name(),
        "PrimaryIdAttribute": format!("{}id", set.logical()),
        "DisplayName": label(&title(set)),
        "IsCustomEntity": false,
        "ChangeTrackingEnabled": true,
    });
    if with_attributes {
        v["Attributes"] = Value::Array(
            e.fields
                .iter()
                .map(|f| attribute(set, &f.name, f.ty))
                .collect(),
        );
    }
    v
}

fn title(set: Set) -> String {
    let l = set.logical();
    let mut c = l.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// One attribute as Dataverse describes it. Lookups are named by their logical name (the
/// payload's `_x_value` is a Web API convention).
fn attribute(set: Set, payload: &str, ty: ColumnType) -> Value {
    let logical = payload
        .strip_prefix('_')
        .and_then(|n| n.strip_suffix("_value"))
        .unwrap_or(payload);
    let kind = if logical != payload {
        match logical {
            "ownerid" => "Owner",
            "customerid" | "parentcustomerid" => "Customer",
            _ => "Lookup",
        }
    } else if logical == format!("{}id", set.logical()) {
        "Uniqueidentifier"
    } else {
        match ty {
            ColumnType::String | ColumnType::Json => {
                if logical == "description" {
                    "Memo"
                } else {
                    "String"
                }
            }
            ColumnType::Int64 if logical == "statecode" => "State",
            ColumnType::Int64 if logical == "statuscode" => "Status",
            ColumnType::Int64 if logical == "versionnumber" => "BigInt",
            ColumnType::Int64 if logical.ends_with("code") => "Picklist",
            ColumnType::Int64 => "Integer",
            ColumnType::Float64 => "Double",
            ColumnType::Decimal { .. } => "Money",
            ColumnType::Bool => "Boolean",
            ColumnType::Date | ColumnType::Timestamp => "DateTime",
        }
    };
    json!({
        "LogicalName": logical,
        "AttributeType": kind,
        "AttributeTypeName": { "Value": format!("{kind}Type") },
        "IsValidForRead": true,
        "AttributeOf": Value::Null,
        "IsCustomAttribute": logical.starts_with("new_"),
        "DisplayName": label(logical),
    })
}

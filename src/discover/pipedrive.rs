//! Pipedrive discovery: reads the company's field definitions (`/api/v2/{deal,person,
//! organization,product}Fields`) and drafts catalog columns for the custom fields, named the
//! way the reader renames them (`snake_case(field name)`, `_custom` when a built-in column has
//! the name), so a tenant's custom fields move from `_ml_extra` into typed columns.

use super::{Draft, snake_case};
use crate::connect::Endpoint;
use crate::error::Result;
use crate::spec::{Column, ColumnType, Definitions, ReaderKind};
use crate::streams::pipedrive::{FieldDef, fields_path_of, load_field_map};

/// Catalog columns for one custom field: (name, type) pairs; monetary fields add
/// `<name>_currency`.
fn columns_for(name: &str, def: &FieldDef) -> Vec<(String, ColumnType)> {
    let ty = match def.field_type.as_str() {
        "double" => ColumnType::Float64,
        "int" | "user" | "org" | "people" | "deal" => ColumnType::Int64,
        "boolean" => ColumnType::Bool,
        "date" => ColumnType::Date,
        "monetary" => ColumnType::Decimal {
            precision: 19,
            scale: 4,
        },
        "set" | "daterange" | "timerange" | "address" | "deals" => ColumnType::Json,
        // enum (labels), varchar, text, phone, time, varchar_auto, varchar_options
        _ => ColumnType::String,
    };
    let mut out = vec![(name.to_string(), ty)];
    if def.field_type == "monetary" {
        out.push((format!("{name}_currency"), ColumnType::String));
    }
    out
}

/// Drafts catalog files with the custom fields of deals, persons, organizations and products.
pub async fn discover(ep: &Endpoint, defs: &Definitions, only: &[String]) -> Result<Vec<Draft>> {
    let base = ep
        .http
        .auth_api_base()
        .await?
        .unwrap_or_else(|| ep.base.clone());
    let mut drafts = Vec::new();
    for stream in defs.streams() {
        if stream.source.reader != ReaderKind::Pipedrive {
            continue;
        }
        let Some(path) = &stream.spec.path else {
            continue;
        };
        let api = path.rsplit('/').next().unwrap_or_default().to_string();
        if !only.is_empty() && !only.iter().any(|o| *o == stream.id.entity || *o == api) {
            continue;
        }
        let Some(fields_path) = fields_path_of(&format!("{}{path}", stream.source.api_path)) else {
            continue;
        };
        let fields = load_field_map(&ep.http, &base, &fields_path, &stream.id.to_string()).await?;
        let mut catalog = stream.catalog.clone();
        let builtin: Vec<String> = catalog.columns.iter().map(|c| c.name.clone()).collect();
        let mut sorted: Vec<(&String, &FieldDef)> = fields.iter().collect();
        sorted.sort_by(|a, b| a.1.name.cmp(&b.1.name).then(a.0.cmp(b.0)));
        for (key, def) in sorted {
            let mut name = snake_case(&def.name);
            if builtin.contains(&name) {
                name = format!("{name}_custom");
            }
            for (col, ty) in columns_for(&name, def) {
                if catalog.columns.iter().any(|c| c.name == col) {
                    continue;
                }
                catalog.columns.push(Column {
                    name: col,
                    ty,
                    nullable: true,
                    description: Some(format!(
                        "Custom field \"{}\" ({}, key {key}).",
                        def.name, def.field_type
                    )),
                    source: None,
                });
            }
        }
        drafts.push(Draft {
            entity: stream.id.entity.clone(),
            stream_toml: None,
            catalog,
        });
    }
    Ok(drafts)
}

//! Pipedrive's live schema: the company's field definitions (`/api/v2/{deal,person,
//! organization,product}Fields`; the v1 shape is read too). Custom fields land as columns of
//! their own, keyed by their 40-hex field code (the reader flattens `custom_fields` under those
//! codes), named from the field's name in ASCII snake case and made unique against the
//! standard fields (a custom "Industry" does not become the standard `industry`). The list is
//! not the payload's whole schema (it omits keys such as `is_archived`), so it never makes a
//! catalog column absent.

use crate::error::Result;
use crate::http::Endpoint;
use crate::spec::live::{LiveEntity, LiveField};
use crate::spec::naming::column_name;
use crate::spec::{ColumnType, Stream};
use crate::streams::pipedrive::{Definition, fields_path_of, load_definitions};

/// The warehouse type of a field type. Options become their labels; monetary values are
/// exact, their currency a column of its own.
pub fn column_type(field_type: &str) -> ColumnType {
    match field_type {
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
    }
}

/// The payload keys a custom field becomes once flattened: the field code, plus
/// `<code>_currency` for a monetary field.
pub fn live_fields(d: &Definition) -> Vec<LiveField> {
    let column = column_name(&d.name);
    let mut out = vec![LiveField {
        source: d.key.clone(),
        identity: d.key.clone(),
        column: column.clone(),
        ty: if d.custom {
            column_type(&d.field_type)
        } else {
            ColumnType::String
        },
        lands: d.custom,
        label: Some(d.name.clone()),
        source_type: d.custom.then(|| d.field_type.clone()),
        options: d.options.clone(),
    }];
    if d.custom && d.field_type == "monetary" {
        out.push(LiveField {
            source: format!("{}_currency", d.key),
            identity: format!("{}_currency", d.key),
            column: format!("{column}_currency"),
            ty: ColumnType::String,
            lands: true,
            label: Some(format!("{} (currency)", d.name)),
            source_type: None,
            options: Default::default(),
        });
    }
    if !d.custom {
        // A standard field's column is its code.
        out[0].column = d.key.clone();
    }
    out
}

/// The live schema of `stream`'s entity: its field definitions, where it has any.
pub async fn read(ep: &Endpoint, stream: &Stream) -> Result<LiveEntity> {
    let Some(fields_path) = stream
        .spec
        .path
        .as_deref()
        .and_then(|p| fields_path_of(&format!("{}{p}", stream.source.api_path)))
    else {
        return Ok(LiveEntity::Unlisted);
    };
    let base = ep
        .http
        .auth_api_base()
        .await?
        .unwrap_or_else(|| ep.base.clone());
    let defs = load_definitions(&ep.http, &base, &fields_path, &stream.id.to_string()).await?;
    Ok(LiveEntity::Present {
        fields: defs.iter().flat_map(live_fields).collect(),
        complete: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::pipedrive::definition;

    #[test]
    fn custom_fields_keep_their_code_and_get_a_readable_name() {
        let v = serde_json::json!({"field_code": "abcdefabcdefabcdefabcdefabcdefabcdefabcd", "field_name": "Setup Fee", "field_type": "monetary", "is_custom_field": true});
        let d = definition(&v).unwrap();
        let f = live_fields(&d);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].source, d.key);
        assert_eq!(f[0].column, "setup_fee");
        assert_eq!(f[1].column, "setup_fee_currency");
        let std = definition(&serde_json::json!({"field_code": "industry", "field_name": "Industry", "field_type": "enum", "is_custom_field": false})).unwrap();
        let f = live_fields(&std);
        assert!(!f[0].lands);
        assert_eq!(f[0].column, "industry");
        let v1 = definition(&serde_json::json!({"key": "dddddddddddddddddddddddddddddddddddddddd", "name": "Отрасль", "field_type": "varchar", "edit_flag": true})).unwrap();
        assert!(v1.custom);
        assert_eq!(live_fields(&v1)[0].column, "otrasl");
    }
}

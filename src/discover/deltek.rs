//! Deltek discovery: `GET {base}/metadata/{hub}` lists a hub's fields (names, types, captions,
//! required flags, custom `Cust*` fields). The answer's exact shape is not publicly documented
//! [UNCERTAIN], so the parser accepts an array of field objects or an object holding one
//! (`fields`/`Fields`), with the name in `name`/`Name`/`fieldName`, the type in
//! `type`/`dataType`/`DataType`, and the label in `caption`/`label`/`Caption`. Existing catalog
//! columns are kept as they are; fields the catalog lacks are added, typed from the metadata.

use serde_json::Value;

use super::{Draft, snake_case};
use crate::connect::Endpoint;
use crate::error::{Error, Result};
use crate::spec::{CatalogFile, Column, ColumnType, Definitions};

/// A Vantagepoint metadata type as a catalog type. Y/N flags stay strings (that is how rows
/// carry them); money is exact.
pub fn column_type(t: &str) -> ColumnType {
    match t.to_ascii_lowercase().as_str() {
        "datetime" | "date" | "smalldatetime" | "datetime2" => ColumnType::Timestamp,
        "int" | "integer" | "smallint" | "bigint" | "tinyint" | "number" => ColumnType::Int64,
        "decimal" | "numeric" | "currency" | "money" | "float" | "double" | "percent" => {
            ColumnType::Decimal {
                precision: 19,
                scale: 4,
            }
        }
        _ => ColumnType::String,
    }
}

fn text<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| v.get(*k).and_then(Value::as_str))
}

/// (field name, type, caption) of every field in a metadata answer.
pub fn parse_metadata(body: &[u8]) -> std::result::Result<Vec<(String, String, String)>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let list = match &v {
        Value::Array(a) => a.clone(),
        Value::Object(_) => ["fields", "Fields", "columns", "Columns"]
            .iter()
            .find_map(|k| v.get(*k).and_then(Value::as_array).cloned())
            .ok_or("the metadata object has no fields list")?,
        _ => return Err("the metadata answer is neither an array nor an object".into()),
    };
    Ok(list
        .iter()
        .filter_map(|f| {
            let name = text(f, &["name", "Name", "fieldName", "FieldName"])?;
            let ty = text(f, &["type", "dataType", "DataType", "Type"]).unwrap_or("string");
            let caption = text(f, &["caption", "label", "Caption", "Label"]).unwrap_or(name);
            Some((name.to_string(), ty.to_string(), caption.to_string()))
        })
        .collect())
}

/// Drafts catalog files from Deltek's metadata.
pub async fn discover(ep: &Endpoint, defs: &Definitions, only: &[String]) -> Result<Vec<Draft>> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::ACCEPT,
        reqwest::header::HeaderValue::from_static("application/json"),
    );
    let mut drafts = Vec::new();
    for stream in defs.streams().filter(|s| s.id.system == "deltek") {
        let hub = stream.spec.path.clone().unwrap_or_default();
        // A name is a stream entity when one exists, else an API hub (all its streams).
        let is_entity = |o: &String| {
            defs.streams()
                .any(|s| s.id.system == "deltek" && &s.id.entity == o)
        };
        if !only.is_empty()
            && !only
                .iter()
                .any(|o| o == &stream.id.entity || (!is_entity(o) && o.eq_ignore_ascii_case(&hub)))
        {
            continue;
        }
        // Ledger and configuration paths have no hub metadata.
        if hub.contains('/') {
            continue;
        }
        let url = format!("{}/metadata/{hub}", ep.base.trim_end_matches('/'));
        let resp = ep.http.get(&url, &headers, "discover").await?;
        let fields = parse_metadata(&resp.body).map_err(|e| Error::Decode {
            stream: stream.id.to_string(),
            message: format!("metadata/{hub}: {e}"),
        })?;
        let mut catalog: CatalogFile = stream.catalog.clone();
        for (name, ty, caption) in fields {
            if catalog.columns.iter().any(|c| c.source_name() == name) {
                continue;
            }
            let mut col_name = snake_case(&name);
            if catalog.columns.iter().any(|c| c.name == col_name) {
                col_name = format!("{col_name}_2");
            }
            catalog.columns.push(Column {
                source: (col_name != name).then(|| name.clone()),
                name: col_name,
                ty: column_type(&ty),
                nullable: true,
                description: Some(format!("{caption} (from metadata/{hub}).")),
            });
        }
        drafts.push(Draft {
            entity: stream.id.entity.clone(),
            stream_toml: None,
            catalog,
        });
    }
    Ok(drafts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_metadata_shapes() {
        let a = br#"[{"name":"CustSector","type":"string","caption":"Sector"}]"#;
        assert_eq!(parse_metadata(a).unwrap()[0].0, "CustSector");
        let b = br#"{"Fields":[{"Name":"CustHours","DataType":"decimal"}]}"#;
        let f = parse_metadata(b).unwrap();
        assert_eq!(f[0].1, "decimal");
        assert!(matches!(column_type(&f[0].1), ColumnType::Decimal { .. }));
        assert!(parse_metadata(b"42").is_err());
    }
}

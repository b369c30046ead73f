//! Deltek Vantagepoint's live schema: `GET {base}/metadata/{hub}` lists a hub's fields (names,
//! types, captions, required flags, custom `Cust*` fields). Its exact shape is not publicly
//! documented [UNCERTAIN], so the parser accepts an array of field objects or an object holding
//! one (`fields`/`Fields`), with the name in `name`/`Name`/`fieldName`, the type in
//! `type`/`dataType`/`DataType`, and the label in `caption`/`label`/`Caption`. Custom fields
//! (`Cust*`, or flagged custom) land; a hub without metadata is read from the catalog as is.

use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use serde_json::Value;

use super::{LiveEntity, LiveField, column_name};
use crate::connect::Endpoint;
use crate::error::{Error, Result};
use crate::spec::{ColumnType, Stream};

/// One field of a hub's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaField {
    pub name: String,
    /// Vantagepoint's type name (`string`, `datetime`, `decimal`, …).
    pub ty: String,
    pub caption: String,
    /// A firm's own field (`Cust*`, or flagged custom by the metadata).
    pub custom: bool,
}

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

/// Every field of a metadata answer.
pub fn parse_metadata(body: &[u8]) -> std::result::Result<Vec<MetaField>, String> {
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
            let flagged = ["custom", "isCustom", "IsCustom", "Custom"]
                .iter()
                .find_map(|k| f.get(*k).and_then(Value::as_bool));
            Some(MetaField {
                name: name.to_string(),
                ty: ty.to_string(),
                caption: caption.to_string(),
                custom: flagged.unwrap_or_else(|| name.starts_with("Cust")),
            })
        })
        .collect())
}

/// The hub a stream reads (`project`), or `None` for ledger and configuration paths, which
/// have no hub metadata.
fn hub(stream: &Stream) -> Option<&str> {
    let path = stream.spec.path.as_deref()?;
    (!path.contains('/')).then_some(path)
}

/// The live schema of `stream`'s hub.
pub async fn read(ep: &Endpoint, stream: &Stream) -> Result<LiveEntity> {
    let Some(hub) = hub(stream) else {
        return Ok(LiveEntity::Unlisted);
    };
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    let url = format!("{}/metadata/{hub}", ep.base.trim_end_matches('/'));
    let resp = match ep.http.get(&url, &headers, "metadata").await {
        Ok(r) => r,
        // Not every tenant answers metadata for every hub; the hub itself may still work.
        Err(e) if matches!(e.status(), Some(404 | 403)) => {
            return Ok(LiveEntity::Unknown {
                reason: format!("metadata/{hub} answered {}", e.status().unwrap_or(0)),
            });
        }
        Err(e) => return Err(e),
    };
    let fields = parse_metadata(&resp.body).map_err(|e| Error::Decode {
        stream: stream.id.to_string(),
        message: format!("metadata/{hub}: {e}"),
    })?;
    Ok(LiveEntity::Present {
        fields: fields
            .into_iter()
            .map(|f| LiveField {
                column: column_name(&f.name),
                identity: f.name.clone(),
                ty: column_type(&f.ty),
                lands: f.custom,
                label: Some(f.caption),
                source: f.name,
            })
            .collect(),
        complete: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_metadata_shapes() {
        let a = br#"[{"name":"CustSector","type":"string","caption":"Sector"}]"#;
        let f = parse_metadata(a).unwrap();
        assert_eq!(f[0].name, "CustSector");
        assert!(f[0].custom);
        let b = br#"{"Fields":[{"Name":"Probability","DataType":"int"}]}"#;
        let f = parse_metadata(b).unwrap();
        assert_eq!(f[0].ty, "int");
        assert!(!f[0].custom);
        assert_eq!(column_type(&f[0].ty), ColumnType::Int64);
        assert!(parse_metadata(b"42").is_err());
    }
}

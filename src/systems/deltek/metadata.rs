//! Deltek Vantagepoint's live schema: `GET {base}/metadata/{hub}` describes a hub's tables
//! and their fields. Deltek's "Metadata Reference" documents an object with one entry per table
//! of the hub (`{"PR":{"Keys":…,"GridID":null,"Fields":[{"FieldName","FieldType","Caption",
//! "Required","MaxLength","Decimals","CustomField"…}]}, "EMProjectAssoc":{"GridID":…}}`); the
//! hub's records are its tables without a `GridID` (grids such as the project team are nested
//! rows). Older answers seen in client code (a plain array of fields, or `{"fields":[…]}` with
//! `name`/`type`/`caption`) are read too. Custom fields (`"CustomField": true`, or `Cust*`
//! without the flag) land; a hub without metadata is read from the catalog as is.

use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use serde_json::Value;

use crate::config::Connection;
use crate::error::{Error, Result};
use crate::http::Endpoint;
use crate::spec::live::{LiveEntity, LiveField};
use crate::spec::naming::column_name;
use crate::spec::{ColumnType, Stream, Variant};
use crate::streams::deltek::variant_name;

/// One field of a hub's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaField {
    pub name: String,
    /// Vantagepoint's type name (`String`, `Numeric`, `Currency`, `Datetime`, `Checkbox`, …).
    pub ty: String,
    pub caption: String,
    /// A firm's own field (flagged `CustomField`, or a `Cust*` name where there is no flag).
    pub custom: bool,
    /// Digits after the point of a numeric field.
    pub decimals: Option<u8>,
    /// The hub refuses a new record without a value for it (`Required`).
    pub required: bool,
    /// Longest text it takes (`MaxLength`; 0 or absent: no limit given).
    pub max_len: Option<u32>,
}

/// A Vantagepoint metadata type as a catalog type. Checkboxes (`Y`/`N`), dropdown codes and
/// record references stay strings (that is how rows carry them); money is exact; a numeric
/// field without decimals is an integer.
pub fn column_type(t: &str, decimals: Option<u8>) -> ColumnType {
    match t.to_ascii_lowercase().as_str() {
        "datetime" | "date" | "smalldatetime" | "datetime2" => ColumnType::Timestamp,
        "int" | "integer" | "smallint" | "bigint" | "tinyint" | "number" => ColumnType::Int64,
        "numeric" if decimals == Some(0) => ColumnType::Int64,
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

/// The field lists of a metadata answer: a plain array, `{"fields": […]}`, or one entry per
/// table whose main tables (no `GridID`) hold the hub's fields.
fn field_lists(v: &Value) -> Option<Vec<&Vec<Value>>> {
    if let Value::Array(a) = v {
        return Some(vec![a]);
    }
    let obj = v.as_object()?;
    if let Some(list) = ["fields", "Fields", "columns", "Columns"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_array))
    {
        return Some(vec![list]);
    }
    let tables: Vec<&Vec<Value>> = obj
        .values()
        .filter(|t| t.get("GridID").is_none_or(Value::is_null))
        .filter_map(|t| t.get("Fields").and_then(Value::as_array))
        .collect();
    (!tables.is_empty()).then_some(tables)
}

/// Every field of a metadata answer's main tables.
pub fn parse_metadata(body: &[u8]) -> std::result::Result<Vec<MetaField>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let lists = field_lists(&v).ok_or("the metadata answer lists no fields")?;
    const FLAGS: [&str; 4] = ["CustomField", "custom", "isCustom", "IsCustom"];
    // Where the answer flags custom fields at all, an unflagged field is standard (a standard
    // `CustomCurrencyCode` exists); only unflagged answers fall back to the `Cust` prefix.
    let flags_custom = lists
        .iter()
        .flat_map(|l| l.iter())
        .any(|f| FLAGS.iter().any(|k| f.get(*k).is_some()));
    Ok(lists
        .into_iter()
        .flatten()
        .filter_map(|f| {
            let name = text(f, &["FieldName", "name", "Name", "fieldName"])?;
            let ty =
                text(f, &["FieldType", "type", "dataType", "DataType", "Type"]).unwrap_or("string");
            let caption = text(f, &["Caption", "caption", "label", "Label"]).unwrap_or(name);
            let flagged = FLAGS
                .iter()
                .find_map(|k| f.get(*k).and_then(Value::as_bool))
                .or(flags_custom.then_some(false));
            Some(MetaField {
                name: name.to_string(),
                ty: ty.to_string(),
                caption: caption.to_string(),
                custom: flagged.unwrap_or_else(|| name.starts_with("Cust")),
                decimals: f
                    .get("Decimals")
                    .and_then(Value::as_u64)
                    .and_then(|d| u8::try_from(d).ok()),
                required: f.get("Required").and_then(Value::as_bool).unwrap_or(false),
                max_len: f
                    .get("MaxLength")
                    .and_then(Value::as_u64)
                    .filter(|n| *n > 0)
                    .and_then(|n| u32::try_from(n).ok()),
            })
        })
        .collect())
}

/// The hub a stream reads on this connection (its variant's path, e.g. pursuits in `project`
/// on 5.0+), or `None` for ledger and configuration paths, which have no hub metadata.
fn hub<'a>(stream: &'a Stream, variant: Option<&'a Variant>) -> Option<&'a str> {
    let path = variant
        .and_then(|v| v.path.as_deref())
        .or(stream.spec.path.as_deref())?;
    (!path.contains('/')).then_some(path)
}

/// The live schema of `stream`'s hub on `conn`, under the names the stream's catalog reads
/// (a variant may rename payload fields).
pub async fn read(conn: &Connection, ep: &Endpoint, stream: &Stream) -> Result<LiveEntity> {
    let variant = variant_name(conn).and_then(|v| stream.spec.variants.get(v));
    let Some(hub) = hub(stream, variant) else {
        return Ok(LiveEntity::Unlisted);
    };
    let rename = |name: String| -> String {
        variant
            .and_then(|v| v.rename.get(&name).cloned())
            .unwrap_or(name)
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
    let fields = parse_metadata(&resp.body)
        .map_err(|e| Error::decode(stream.id.to_string(), format!("metadata/{hub}: {e}")))?;
    Ok(LiveEntity::Present {
        fields: fields
            .into_iter()
            .map(|f| LiveField {
                column: column_name(&f.name),
                identity: f.name.clone(),
                ty: column_type(&f.ty, f.decimals),
                lands: f.custom,
                label: Some(f.caption),
                source: rename(f.name),
                source_type: None,
                options: Default::default(),
            })
            .collect(),
        complete: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_shape_and_older_ones() {
        let doc = br#"{"PR":{"Keys":"WBS1,WBS2,WBS3","TableName":"PR","GridID":null,"Fields":[
            {"FieldName":"WBS1","FieldType":"WBS1","Caption":"Project","Required":true,"MaxLength":30},
            {"FieldName":"Probability","FieldType":"Numeric","Caption":"Probability (%)","Decimals":0},
            {"FieldName":"CustomCurrencyCode","FieldType":"String","Caption":"Currency","CustomField":false},
            {"FieldName":"CustBudget","FieldType":"Currency","Caption":"Budget","Decimals":2,"CustomField":true}]},
          "EMProjectAssoc":{"GridID":"EMProjectAssoc","Fields":[{"FieldName":"Employee","FieldType":"Employee"}]}}"#;
        let f = parse_metadata(doc).unwrap();
        let names: Vec<&str> = f.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(
            names,
            ["WBS1", "Probability", "CustomCurrencyCode", "CustBudget"]
        );
        assert_eq!(column_type(&f[1].ty, f[1].decimals), ColumnType::Int64);
        assert!(!f[2].custom, "the flag wins over the name");
        assert!(f[3].custom);
        assert!(matches!(
            column_type(&f[3].ty, f[3].decimals),
            ColumnType::Decimal { .. }
        ));
        let a = br#"[{"name":"CustSector","type":"string","caption":"Sector"}]"#;
        let f = parse_metadata(a).unwrap();
        assert_eq!(f[0].name, "CustSector");
        assert!(f[0].custom);
        let b = br#"{"Fields":[{"Name":"Probability","DataType":"int"}]}"#;
        assert_eq!(parse_metadata(b).unwrap()[0].ty, "int");
        assert!(parse_metadata(b"42").is_err());
    }
}

//! Catalog and Arrow types → BigQuery table schemas, in one place: the final table's schema
//! (from the catalog), the staging table's (from the Parquet file as written), and the DDL
//! that evolves an existing table towards the catalog.

use arrow_schema::{DataType, Schema};
use serde_json::{Value, json};

use crate::schema::{ML_CONNECTION, ML_DELETED, ML_EXTRA, ML_EXTRACTED_AT, ML_RUN_ID};
use crate::spec::{CatalogFile, ColumnType};

/// NUMERIC holds 29 integer and 9 fractional digits; wider decimals need BIGNUMERIC.
fn fits_numeric(precision: u8, scale: i8) -> bool {
    (0..=9).contains(&scale) && i16::from(precision) - i16::from(scale) <= 29
}

/// One column of a BigQuery schema.
#[derive(Debug, Clone, PartialEq)]
pub struct BqField {
    pub name: String,
    /// `STRING`, `INT64`, `NUMERIC`, ... (standard SQL names).
    pub ty: String,
    /// Decimal parameters, for `NUMERIC(p, s)`.
    pub precision: Option<(u8, i8)>,
    pub repeated: bool,
    pub description: Option<String>,
}

impl BqField {
    fn new(name: &str, ty: &str) -> Self {
        Self {
            name: name.to_string(),
            ty: ty.to_string(),
            precision: None,
            repeated: false,
            description: None,
        }
    }

    /// The field as a `TableFieldSchema` resource. Every field is NULLABLE (or REPEATED): the
    /// Parquet files are written all-nullable, and BigQuery rejects a mode mismatch.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "type": self.ty,
            "mode": if self.repeated { "REPEATED" } else { "NULLABLE" },
        });
        if let Some((p, s)) = self.precision {
            v["precision"] = json!(p.to_string());
            v["scale"] = json!(s.to_string());
        }
        if let Some(d) = &self.description {
            v["description"] = json!(d);
        }
        v
    }

    /// The column type in DDL (`NUMERIC(19, 4)`, `ARRAY<STRING>`).
    pub fn ddl_type(&self) -> String {
        let base = match self.precision {
            Some((p, s)) => format!("{}({p}, {s})", self.ty),
            None => self.ty.clone(),
        };
        if self.repeated {
            format!("ARRAY<{base}>")
        } else {
            base
        }
    }
}

/// The BigQuery type of a catalog column in the final table. JSON stays JSON (it is loaded
/// as text and parsed in the MERGE: Parquet cannot carry BigQuery's JSON type).
pub fn catalog_field(name: &str, ty: ColumnType) -> BqField {
    match ty {
        ColumnType::String => BqField::new(name, "STRING"),
        ColumnType::Json => BqField::new(name, "JSON"),
        ColumnType::Int64 => BqField::new(name, "INT64"),
        ColumnType::Float64 => BqField::new(name, "FLOAT64"),
        ColumnType::Bool => BqField::new(name, "BOOL"),
        ColumnType::Date => BqField::new(name, "DATE"),
        ColumnType::Timestamp => BqField::new(name, "TIMESTAMP"),
        ColumnType::Decimal { precision, scale } if fits_numeric(precision, scale) => BqField {
            precision: Some((precision, scale)),
            ..BqField::new(name, "NUMERIC")
        },
        ColumnType::Decimal { .. } => BqField::new(name, "BIGNUMERIC"),
    }
}

/// The final table's columns: the catalog's, in catalog order, then the `_ml_` columns (the
/// same order as `schema::table_schema`, hence as the Parquet files).
pub fn table_fields(catalog: &CatalogFile) -> Vec<BqField> {
    let mut out: Vec<BqField> = catalog
        .columns
        .iter()
        .map(|c| BqField {
            description: c.description.clone(),
            ..catalog_field(&c.name, c.ty)
        })
        .collect();
    out.push(BqField::new(ML_RUN_ID, "STRING"));
    out.push(BqField::new(ML_EXTRACTED_AT, "TIMESTAMP"));
    out.push(BqField::new(ML_DELETED, "BOOL"));
    out.push(BqField::new(ML_CONNECTION, "STRING"));
    out.push(BqField::new(ML_EXTRA, "STRING"));
    out
}

/// The BigQuery type an Arrow column loads as (staging tables hold the file as written; JSON
/// columns are text there). `None` for types the lake never writes.
pub fn arrow_field(name: &str, ty: &DataType) -> Option<BqField> {
    let f = match ty {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => BqField::new(name, "STRING"),
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => BqField::new(name, "INT64"),
        DataType::Float32 | DataType::Float64 => BqField::new(name, "FLOAT64"),
        DataType::Boolean => BqField::new(name, "BOOL"),
        DataType::Date32 | DataType::Date64 => BqField::new(name, "DATE"),
        DataType::Timestamp(_, _) => BqField::new(name, "TIMESTAMP"),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) if fits_numeric(*p, *s) => {
            BqField {
                precision: Some((*p, *s)),
                ..BqField::new(name, "NUMERIC")
            }
        }
        DataType::Decimal128(_, _) | DataType::Decimal256(_, _) => BqField::new(name, "BIGNUMERIC"),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            BqField::new(name, "BYTES")
        }
        DataType::List(item) | DataType::LargeList(item) => {
            let inner = arrow_field(name, item.data_type())?;
            if inner.repeated {
                return None; // BigQuery has no arrays of arrays
            }
            BqField {
                repeated: true,
                ..inner
            }
        }
        _ => return None,
    };
    Some(f)
}

/// The staging table's columns: the file's columns in the file's order (an emulator matches
/// Parquet columns by position; BigQuery by name), typed from Arrow.
///
/// Fails (with the column's name) on an Arrow type BigQuery cannot load.
pub fn staging_fields(file: &Schema) -> Result<Vec<BqField>, String> {
    file.fields()
        .iter()
        .map(|f| {
            arrow_field(f.name(), f.data_type()).ok_or_else(|| {
                format!(
                    "column `{}` has type {} which BigQuery cannot load",
                    f.name(),
                    f.data_type()
                )
            })
        })
        .collect()
}

/// Quotes an identifier for BigQuery SQL.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "\\`"))
}

/// What must change in an existing table (its `schema.fields` resource) so it holds the
/// catalog's columns: `ALTER TABLE` statements adding missing columns and relaxing REQUIRED
/// ones to NULLABLE. A column whose type differs is reported, not changed (BigQuery cannot
/// change a type in place; widen it in a migration).
pub fn evolve(table_ref: &str, existing: &Value, wanted: &[BqField]) -> (Vec<String>, Vec<String>) {
    let fields = existing.as_array().cloned().unwrap_or_default();
    let find = |name: &str| {
        fields.iter().find(|f| {
            f.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    };
    let mut ddl = Vec::new();
    let mut conflicts = Vec::new();
    for w in wanted {
        match find(&w.name) {
            None => ddl.push(format!(
                "ALTER TABLE {table_ref} ADD COLUMN IF NOT EXISTS {} {}",
                ident(&w.name),
                w.ddl_type()
            )),
            Some(f) => {
                if f.get("mode").and_then(Value::as_str) == Some("REQUIRED") {
                    ddl.push(format!(
                        "ALTER TABLE {table_ref} ALTER COLUMN {} DROP NOT NULL",
                        ident(&w.name)
                    ));
                }
                let have = f.get("type").and_then(Value::as_str).unwrap_or_default();
                if !same_type(have, &w.ty) {
                    conflicts.push(format!("{} is {have}, the catalog says {}", w.name, w.ty));
                }
            }
        }
    }
    (ddl, conflicts)
}

/// Legacy and standard names of one type are the same type.
fn same_type(a: &str, b: &str) -> bool {
    let norm = |t: &str| match t.to_ascii_uppercase().as_str() {
        "INTEGER" => "INT64".to_string(),
        "FLOAT" => "FLOAT64".to_string(),
        "BOOLEAN" => "BOOL".to_string(),
        "BIGDECIMAL" => "BIGNUMERIC".to_string(),
        "DECIMAL" => "NUMERIC".to_string(),
        other => other.to_string(),
    };
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Definitions;

    #[test]
    fn catalog_types_map_to_bigquery() {
        assert_eq!(
            catalog_field(
                "a",
                ColumnType::Decimal {
                    precision: 19,
                    scale: 4
                }
            )
            .ddl_type(),
            "NUMERIC(19, 4)"
        );
        assert_eq!(
            catalog_field(
                "a",
                ColumnType::Decimal {
                    precision: 38,
                    scale: 12
                }
            )
            .ty,
            "BIGNUMERIC"
        );
        assert_eq!(catalog_field("a", ColumnType::Json).ty, "JSON");
        assert_eq!(catalog_field("a", ColumnType::Timestamp).ty, "TIMESTAMP");
        let list = DataType::List(std::sync::Arc::new(arrow_schema::Field::new(
            "item",
            DataType::Utf8,
            true,
        )));
        let f = arrow_field("tags", &list).unwrap();
        assert!(f.repeated);
        assert_eq!(f.to_json()["mode"], "REPEATED");
        assert_eq!(f.ddl_type(), "ARRAY<STRING>");
    }

    #[test]
    fn table_fields_follow_the_parquet_schema() {
        let defs = Definitions::builtin().unwrap();
        let s = defs.get(&"dataverse.account".parse().unwrap()).unwrap();
        let arrow = crate::schema::table_schema(&s.catalog);
        let from_catalog: Vec<String> = table_fields(&s.catalog)
            .into_iter()
            .map(|f| f.name)
            .collect();
        let from_file: Vec<String> = staging_fields(&arrow)
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(from_catalog, from_file);
    }

    #[test]
    fn evolve_adds_and_relaxes() {
        let existing = json!([
            {"name": "id", "type": "STRING", "mode": "REQUIRED"},
            {"name": "n", "type": "INTEGER", "mode": "NULLABLE"},
        ]);
        let wanted = vec![
            BqField::new("id", "STRING"),
            BqField::new("n", "INT64"),
            BqField::new("new_col", "DATE"),
        ];
        let (ddl, conflicts) = evolve("`p.d.t`", &existing, &wanted);
        assert_eq!(
            ddl,
            vec![
                "ALTER TABLE `p.d.t` ALTER COLUMN `id` DROP NOT NULL",
                "ALTER TABLE `p.d.t` ADD COLUMN IF NOT EXISTS `new_col` DATE",
            ]
        );
        assert!(conflicts.is_empty());
        let (_, conflicts) = evolve("`p.d.t`", &existing, &[BqField::new("n", "STRING")]);
        assert_eq!(conflicts.len(), 1);
    }
}

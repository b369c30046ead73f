//! Catalog → Arrow schemas. One place decides how a catalog type becomes an Arrow type and which
//! `_ml_` metadata columns every table carries, so Parquet, the warehouses and the decoder agree.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use sha2::{Digest, Sha256};

use crate::spec::{CatalogFile, ColumnType};

/// Which run wrote the row.
pub const ML_RUN_ID: &str = "_ml_run_id";
/// When the page holding the row was received (UTC); newest wins in merges.
pub const ML_EXTRACTED_AT: &str = "_ml_extracted_at";
/// The source reported the row deleted.
pub const ML_DELETED: &str = "_ml_deleted";
/// The connection (tenant) the row came from.
pub const ML_CONNECTION: &str = "_ml_connection";
/// JSON text of the fields the catalog does not type (nothing is dropped).
pub const ML_EXTRA: &str = "_ml_extra";

/// The metadata columns in the order they follow the catalog columns.
pub const META_COLUMNS: [&str; 5] = [
    ML_RUN_ID,
    ML_EXTRACTED_AT,
    ML_DELETED,
    ML_CONNECTION,
    ML_EXTRA,
];

/// One `_ml_` metadata column as the catalog would type it, for generated documentation (dbt
/// sources, LookML) that must list the same columns [`table_schema`] writes.
#[derive(Debug, Clone, Copy)]
pub struct MetaColumn {
    pub name: &'static str,
    pub ty: ColumnType,
    pub description: &'static str,
}

/// The metadata columns with their catalog types and meaning, in [`META_COLUMNS`] order.
pub fn meta_columns() -> [MetaColumn; 5] {
    [
        MetaColumn {
            name: ML_RUN_ID,
            ty: ColumnType::String,
            description: "Which ml-connector run wrote the row.",
        },
        MetaColumn {
            name: ML_EXTRACTED_AT,
            ty: ColumnType::Timestamp,
            description: "When the page holding the row was received (UTC); the newest wins in merges.",
        },
        MetaColumn {
            name: ML_DELETED,
            ty: ColumnType::Bool,
            description: "The source reported the row deleted (kept only with delete_mode = \"soft\").",
        },
        MetaColumn {
            name: ML_CONNECTION,
            ty: ColumnType::String,
            description: "The mlc connection (tenant) the row came from.",
        },
        MetaColumn {
            name: ML_EXTRA,
            ty: ColumnType::Json,
            description: "JSON text of the fields the catalog does not type (see `mlc catalog diff`).",
        },
    ]
}

/// Warehouse SQL type of a catalog column, spelled as BigQuery spells it: the `data_type` of dbt
/// sources. NUMERIC holds at most 29 integer and 9 fraction digits; wider decimals are BIGNUMERIC.
/// JSON is kept as its text, so it is a STRING in every warehouse.
pub fn warehouse_sql_type(ty: ColumnType) -> String {
    match ty {
        ColumnType::String | ColumnType::Json => "string".into(),
        ColumnType::Int64 => "int64".into(),
        ColumnType::Float64 => "float64".into(),
        ColumnType::Decimal { precision, scale } => {
            let int_digits = i16::from(precision) - i16::from(scale);
            if scale <= 9 && int_digits <= 29 {
                format!("numeric({precision},{scale})")
            } else {
                format!("bignumeric({precision},{scale})")
            }
        }
        ColumnType::Bool => "bool".into(),
        ColumnType::Date => "date".into(),
        ColumnType::Timestamp => "timestamp".into(),
    }
}

/// How Looker shows a catalog column: a plain dimension of a LookML type, or a dimension group
/// of timeframes (dates and instants, so users get week/month/quarter without writing SQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookmlField {
    /// `dimension` with `type:` string, number or yesno.
    Dimension(&'static str),
    /// `dimension_group` of `type: time` with `datatype:` date or timestamp.
    Time {
        datatype: &'static str,
        /// Dates have no zone: Looker must not convert them.
        convert_tz: bool,
    },
}

/// The LookML field of a catalog column type.
pub fn lookml_field(ty: ColumnType) -> LookmlField {
    match ty {
        ColumnType::String | ColumnType::Json => LookmlField::Dimension("string"),
        ColumnType::Int64 | ColumnType::Float64 | ColumnType::Decimal { .. } => {
            LookmlField::Dimension("number")
        }
        ColumnType::Bool => LookmlField::Dimension("yesno"),
        ColumnType::Date => LookmlField::Time {
            datatype: "date",
            convert_tz: false,
        },
        ColumnType::Timestamp => LookmlField::Time {
            datatype: "timestamp",
            convert_tz: true,
        },
    }
}

/// The timestamp type used for every instant: microseconds, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Arrow type of a catalog column. JSON is kept as its text.
pub fn arrow_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::String | ColumnType::Json => DataType::Utf8,
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
        ColumnType::Bool => DataType::Boolean,
        ColumnType::Date => DataType::Date32,
        ColumnType::Timestamp => timestamp_type(),
    }
}

/// The schema of a stream's Parquet files and warehouse table: catalog columns in catalog order,
/// then the metadata columns. Every field is nullable (BigQuery rejects mode mismatches between
/// a file and its table; key non-nullness is enforced by the quarantine instead).
pub fn table_schema(catalog: &CatalogFile) -> SchemaRef {
    let mut fields: Vec<Field> = catalog
        .columns
        .iter()
        .map(|c| Field::new(&c.name, arrow_type(c.ty), true))
        .collect();
    fields.push(Field::new(ML_RUN_ID, DataType::Utf8, true));
    fields.push(Field::new(ML_EXTRACTED_AT, timestamp_type(), true));
    fields.push(Field::new(ML_DELETED, DataType::Boolean, true));
    fields.push(Field::new(ML_CONNECTION, DataType::Utf8, true));
    fields.push(Field::new(ML_EXTRA, DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

/// A short stable hash of the table's shape (names, types, key), recorded in run manifests so a
/// loader can tell which catalog version wrote a file.
pub fn schema_hash(catalog: &CatalogFile) -> String {
    let mut h = Sha256::new();
    for c in &catalog.columns {
        h.update(c.name.as_bytes());
        h.update(b":");
        h.update(c.ty.to_string().as_bytes());
        h.update(b";");
    }
    h.update(b"pk=");
    h.update(catalog.primary_key.join(",").as_bytes());
    hex::encode(&h.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Definitions;

    #[test]
    fn account_schema_has_metadata_and_types() {
        let defs = Definitions::builtin().unwrap();
        let s = defs.get(&"dataverse.account".parse().unwrap()).unwrap();
        let schema = table_schema(&s.catalog);
        assert_eq!(
            schema.fields().len(),
            s.catalog.columns.len() + META_COLUMNS.len()
        );
        assert!(schema.fields().iter().all(|f| f.is_nullable()));
        assert_eq!(
            schema.field_with_name("revenue").unwrap().data_type(),
            &DataType::Decimal128(19, 4)
        );
        assert_eq!(
            schema.field_with_name("createdon").unwrap().data_type(),
            &timestamp_type()
        );
        assert_eq!(schema_hash(&s.catalog).len(), 16);
    }

    #[test]
    fn meta_columns_match_the_table_schema() {
        let defs = Definitions::builtin().unwrap();
        let s = defs.get(&"dataverse.account".parse().unwrap()).unwrap();
        let schema = table_schema(&s.catalog);
        let metas = meta_columns();
        assert_eq!(metas.map(|m| m.name), META_COLUMNS);
        for m in metas {
            assert_eq!(
                schema.field_with_name(m.name).unwrap().data_type(),
                &arrow_type(m.ty),
                "{}",
                m.name
            );
        }
    }

    #[test]
    fn warehouse_types() {
        let t = |s: &str| warehouse_sql_type(s.parse().unwrap());
        assert_eq!(t("decimal(19,4)"), "numeric(19,4)");
        assert_eq!(t("decimal(38,9)"), "numeric(38,9)");
        assert_eq!(t("decimal(38,10)"), "bignumeric(38,10)");
        assert_eq!(t("json"), "string");
        assert_eq!(t("timestamp"), "timestamp");
    }
}

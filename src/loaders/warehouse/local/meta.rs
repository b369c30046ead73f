//! `_table.json`: the small descriptor of a local warehouse table (bucket count, hash version,
//! primary key, column types), plus the file layout of a table directory.
//!
//! The descriptor is what makes a table self-describing without reading any data file: the
//! bucket count and hash version decide where a key lives (they never change after the table is
//! created), and the column list gives an empty table a queryable schema. It is written
//! atomically (temp file + rename) **before** any bucket file of a merge, so a crash leaves a
//! descriptor that the re-run reads back unchanged.

use std::fs;
use std::path::{Path, PathBuf};

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::schema::{ML_DELETED, ML_EXTRACTED_AT, ML_RUN_ID};
use crate::spec::ColumnType;

/// Version of the table layout written by this code.
pub(super) const FORMAT_VERSION: u32 = 1;
/// Name of the descriptor file inside a table directory.
pub(super) const META_FILE: &str = "_table.json";

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct MetaColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
}

/// Contents of `_table.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct TableMeta {
    /// Layout version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// The key hash, by name and version (see `hash.rs`); never changes for a table.
    pub hash: String,
    /// Number of buckets (a power of two in 1..=1024), fixed when the table is created.
    pub buckets: u32,
    /// Columns forming the merge key.
    pub primary_key: Vec<String>,
    /// Columns in table order with their types (the union of every schema merged so far, the
    /// newest type winning).
    pub columns: Vec<MetaColumn>,
    /// A merge changed the column list and has not yet rewritten every bucket to it: the next
    /// merge visits every bucket (readers tolerate the missing columns meanwhile).
    #[serde(default)]
    pub rewrite_pending: bool,
}

impl TableMeta {
    /// Reads the descriptor of the table in `dir`, `None` when the table does not exist.
    ///
    /// Fails when the file exists but cannot be read or parsed, or was written by a newer
    /// layout version.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(META_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let meta: TableMeta = serde_json::from_str(&text).map_err(|e| {
            Error::warehouse(format!(
                "{}: not a valid table descriptor ({e}); restore it or delete the table directory to rebuild the table from the lake",
                path.display()
            ))
        })?;
        if meta.format_version > FORMAT_VERSION {
            return Err(Error::warehouse(format!(
                "{}: table layout version {} is newer than this mlc understands ({FORMAT_VERSION}); upgrade mlc",
                path.display(),
                meta.format_version
            )));
        }
        if meta.hash != super::hash::HASH_NAME {
            return Err(Error::warehouse(format!(
                "{}: unknown key hash `{}` (this mlc implements `{}`)",
                path.display(),
                meta.hash,
                super::hash::HASH_NAME
            )));
        }
        if meta.buckets == 0 || meta.buckets > super::MAX_BUCKETS {
            return Err(Error::warehouse(format!(
                "{}: invalid bucket count {}",
                path.display(),
                meta.buckets
            )));
        }
        Ok(Some(meta))
    }

    /// Writes the descriptor atomically (temp file, fsync, rename).
    ///
    /// Fails on any file-system error.
    pub fn store(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::warehouse_from("cannot serialise table descriptor", e))?;
        let tmp = dir.join(format!("{META_FILE}.tmp"));
        write_synced(&tmp, text.as_bytes())?;
        let path = dir.join(META_FILE);
        fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    }

    /// The column named `name`, if the table has it.
    pub fn column(&self, name: &str) -> Option<&MetaColumn> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Writes `bytes` to `path` and fsyncs it.
pub(super) fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = fs::File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

/// The catalog type of an Arrow type this warehouse stores; `None` for types it does not.
/// Narrower integer/float types and other string/timestamp encodings are widened on load.
pub(super) fn column_type(dt: &DataType) -> Option<ColumnType> {
    Some(match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ColumnType::String,
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => ColumnType::Int64,
        DataType::Float16 | DataType::Float32 | DataType::Float64 => ColumnType::Float64,
        DataType::Decimal128(p, s) if *s >= 0 => ColumnType::Decimal {
            precision: *p,
            scale: *s,
        },
        DataType::Boolean => ColumnType::Bool,
        DataType::Date32 | DataType::Date64 => ColumnType::Date,
        DataType::Timestamp(_, _) => ColumnType::Timestamp,
        _ => return None,
    })
}

/// Normalises a run's Arrow schema into the column list this warehouse stores.
///
/// Fails on a column type the local warehouse cannot store (nested types, binary, ...) or a
/// duplicated column name.
pub(super) fn columns_of(schema: &Schema) -> Result<Vec<MetaColumn>> {
    let mut out: Vec<MetaColumn> = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let ty = column_type(f.data_type()).ok_or_else(|| {
            Error::warehouse(format!(
                "column `{}` has type {} which the local warehouse cannot store (use string, int64, float64, decimal, bool, date or timestamp)",
                f.name(),
                f.data_type()
            ))
        })?;
        if out.iter().any(|c| c.name == *f.name()) {
            return Err(Error::warehouse(format!(
                "column `{}` appears twice in the run's schema",
                f.name()
            )));
        }
        out.push(MetaColumn {
            name: f.name().clone(),
            ty,
        });
    }
    Ok(out)
}

/// The Arrow schema of a column list (storage types, all nullable).
pub(super) fn columns_schema(columns: &[MetaColumn]) -> SchemaRef {
    std::sync::Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, crate::schema::arrow_type(c.ty), true))
            .collect::<Vec<_>>(),
    ))
}

/// Schema evolution: the newest column list wins (its order and types), and columns only the
/// table knows are kept (nothing is dropped: old rows keep their values, new rows get nulls),
/// placed before the `_ml_` metadata block.
pub(super) fn union_columns(table: &[MetaColumn], newest: &[MetaColumn]) -> Vec<MetaColumn> {
    let is_meta = |c: &MetaColumn| c.name.starts_with("_ml_");
    let in_newest = |c: &MetaColumn| newest.iter().any(|n| n.name == c.name);
    let mut out: Vec<MetaColumn> = newest.iter().filter(|c| !is_meta(c)).cloned().collect();
    out.extend(
        table
            .iter()
            .filter(|c| !is_meta(c) && !in_newest(c))
            .cloned(),
    );
    out.extend(newest.iter().filter(|c| is_meta(c)).cloned());
    out.extend(
        table
            .iter()
            .filter(|c| is_meta(c) && !in_newest(c))
            .cloned(),
    );
    out
}

/// Checks the metadata columns the merge relies on are present with usable types.
///
/// Fails naming the missing or mistyped column.
pub(super) fn check_required(columns: &[MetaColumn], primary_key: &[String]) -> Result<()> {
    if primary_key.is_empty() {
        return Err(Error::warehouse(
            "the table has no primary key: set `primary_key` in its catalog file",
        ));
    }
    for k in primary_key {
        if !columns.iter().any(|c| &c.name == k) {
            return Err(Error::warehouse(format!(
                "primary key column `{k}` is not in the run's schema"
            )));
        }
    }
    let want = [
        (ML_EXTRACTED_AT, ColumnType::Timestamp),
        (ML_DELETED, ColumnType::Bool),
        (ML_RUN_ID, ColumnType::String),
    ];
    for (name, ty) in want {
        match columns.iter().find(|c| c.name == name) {
            Some(c) if c.ty == ty => {}
            Some(c) => {
                return Err(Error::warehouse(format!(
                    "metadata column `{name}` has type {} (expected {ty})",
                    c.ty
                )));
            }
            None => {
                return Err(Error::warehouse(format!(
                    "metadata column `{name}` is missing from the run's schema (build it with schema::table_schema)"
                )));
            }
        }
    }
    Ok(())
}

/// Name of a bucket's data file: `b-00042.parquet`. Only these files end in `.parquet` inside
/// a table directory, so `<table>/*.parquet` globs exactly the table's data.
pub(super) fn bucket_file_name(bucket: u32) -> String {
    format!("b-{bucket:05}.parquet")
}

/// The bucket number of a data file name, `None` for anything else (temp files, descriptor).
pub(super) fn parse_bucket_file(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("b-")?.strip_suffix(".parquet")?;
    if digits.len() != 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The bucket data files present in a table directory, sorted by bucket.
///
/// Fails when the directory cannot be listed.
pub(super) fn bucket_files(dir: &Path) -> Result<Vec<(u32, PathBuf)>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        if let Some(b) = name.to_str().and_then(parse_bucket_file) {
            out.push((b, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: &str) -> MetaColumn {
        MetaColumn {
            name: name.into(),
            ty: ty.parse().unwrap(),
        }
    }

    #[test]
    fn bucket_file_names_round_trip() {
        assert_eq!(bucket_file_name(7), "b-00007.parquet");
        assert_eq!(parse_bucket_file("b-00007.parquet"), Some(7));
        assert_eq!(parse_bucket_file("b-00007.parquet.tmp"), None);
        assert_eq!(parse_bucket_file("b-7.parquet"), None);
        assert_eq!(parse_bucket_file("_table.json"), None);
    }

    #[test]
    fn union_keeps_old_columns_before_metadata() {
        let old = vec![
            col("id", "string"),
            col("gone", "int64"),
            col("_ml_run_id", "string"),
        ];
        let new = vec![
            col("id", "string"),
            col("added", "date"),
            col("_ml_run_id", "string"),
        ];
        let names: Vec<_> = union_columns(&old, &new)
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["id", "added", "gone", "_ml_run_id"]);
    }

    #[test]
    fn descriptor_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let meta = TableMeta {
            format_version: FORMAT_VERSION,
            hash: super::super::hash::HASH_NAME.into(),
            buckets: 4,
            primary_key: vec!["id".into()],
            columns: vec![col("id", "string"), col("amount", "decimal(19,4)")],
            rewrite_pending: false,
        };
        meta.store(dir.path()).unwrap();
        assert_eq!(TableMeta::load(dir.path()).unwrap(), Some(meta));
        assert!(!dir.path().join("_table.json.tmp").exists());
    }
}

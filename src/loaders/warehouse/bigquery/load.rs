//! Load-job plumbing: deterministic job ids, staging table names and the load configuration
//! (Parquet with an explicit schema, from `gs://` URIs or an uploaded file).

use serde_json::{Value, json};

use super::schema::BqField;

/// Keeps `[A-Za-z0-9_-]` (what job ids allow), maps everything else to `_`.
fn job_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The job id of one step of one run: `mlc_<system>_<entity>_<run>_<step>`. The same run
/// always gets the same ids, which is what makes a retried load or merge a no-op.
pub fn job_id(system: &str, entity: &str, run_id: &str, step: &str) -> String {
    job_safe(&format!("mlc_{system}_{entity}_{run_id}_{step}"))
}

/// The staging table of a run (in the final table's dataset; it expires on its own if a run
/// is abandoned).
pub fn staging_table(entity: &str, run_id: &str) -> String {
    job_safe(&format!("_mlc_stage_{entity}_{run_id}")).replace('-', "_")
}

/// Where the load reads from.
pub enum Source<'a> {
    /// `gs://` URIs of every part (one job).
    Uris(&'a [String]),
    /// The file comes with the request (one job per part).
    Upload,
}

/// The `configuration` of a Parquet load job into `dataset.table`.
///
/// The schema is explicit (types never inferred: an empty or all-null file would flip them);
/// decimals may land in NUMERIC or BIGNUMERIC; Parquet lists load as arrays.
pub fn load_configuration(
    project: &str,
    dataset: &str,
    table: &str,
    fields: &[BqField],
    source: Source<'_>,
    truncate: bool,
) -> Value {
    let mut load = json!({
        "sourceFormat": "PARQUET",
        "destinationTable": {"projectId": project, "datasetId": dataset, "tableId": table},
        "writeDisposition": if truncate { "WRITE_TRUNCATE" } else { "WRITE_APPEND" },
        "createDisposition": "CREATE_NEVER",
        "schema": {"fields": fields.iter().map(BqField::to_json).collect::<Vec<_>>()},
        "decimalTargetTypes": ["NUMERIC", "BIGNUMERIC"],
        "parquetOptions": {"enableListInference": true},
    });
    if let Source::Uris(uris) = source {
        load["sourceUris"] = json!(uris);
    }
    json!({ "load": load })
}

/// The `configuration` of a standard-SQL query job (DML and DDL).
pub fn query_configuration(sql: &str) -> Value {
    json!({"query": {"query": sql, "useLegacySql": false}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_valid() {
        let a = job_id("dataverse", "account", "20260101T000000000Z-abc123", "load");
        assert_eq!(a, "mlc_dataverse_account_20260101T000000000Z-abc123_load");
        assert_eq!(
            a,
            job_id("dataverse", "account", "20260101T000000000Z-abc123", "load")
        );
        assert_eq!(job_id("a.b", "c d", "r", "s"), "mlc_a_b_c_d_r_s");
        assert_eq!(
            staging_table("account", "2026-x"),
            "_mlc_stage_account_2026_x"
        );
    }

    #[test]
    fn load_from_uris_has_explicit_schema() {
        let f = super::super::schema::catalog_field("n", crate::spec::ColumnType::Int64);
        let uris = vec!["gs://b/raw/x/part-00000.parquet".to_string()];
        let c = load_configuration("p", "d", "t", &[f], Source::Uris(&uris), true);
        assert_eq!(
            c["load"]["sourceUris"][0],
            "gs://b/raw/x/part-00000.parquet"
        );
        assert_eq!(c["load"]["schema"]["fields"][0]["type"], "INT64");
        assert_eq!(c["load"]["writeDisposition"], "WRITE_TRUNCATE");
        let c = load_configuration("p", "d", "t", &[], Source::Upload, false);
        assert!(c["load"].get("sourceUris").is_none());
    }
}

//! The one `MERGE` statement that applies a run's staging table to the final table, with the
//! local warehouse's semantics: per key the newest `_ml_extracted_at` wins (the run's row on a
//! tie, a tombstone over a live row within the run), `_ml_deleted` rows delete or flag per
//! `delete_mode`, and a full-snapshot run deletes the live keys it does not carry unless they
//! are newer than the run.

use super::schema::ident;
use crate::loaders::warehouse::DeleteMode;
use crate::schema::{ML_DELETED, ML_EXTRACTED_AT, ML_RUN_ID};

/// Alias of the row number column used to pick one staging row per key.
const RN: &str = "_mlc_rn";

/// A column written by the merge.
#[derive(Debug, Clone)]
pub struct MergeColumn {
    pub name: String,
    /// The final column is JSON while staging holds its text: parse it on the way in.
    pub parse_json: bool,
}

/// Everything the statement depends on.
#[derive(Debug, Clone)]
pub struct MergePlan<'a> {
    /// Fully qualified, quoted (`` `p.d.t` ``).
    pub target: String,
    pub staging: String,
    pub key: &'a [String],
    /// Columns present in both tables, in table order (keys included).
    pub columns: Vec<MergeColumn>,
    pub delete_mode: DeleteMode,
    /// Full snapshot: delete live keys the run does not carry.
    pub reconcile: bool,
    /// The run carries keys only: it upserts nothing.
    pub keys_only: bool,
    pub run_id: &'a str,
    /// The run's time (µs UTC); rows newer than this survive reconciliation.
    pub run_micros: i64,
}

fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl MergePlan<'_> {
    /// The deduplicated staging rows, one per key (the newest; a tombstone wins a tie).
    fn source(&self, keys: &[String]) -> String {
        let ts = ident(ML_EXTRACTED_AT);
        let del = ident(ML_DELETED);
        format!(
            "(\n  SELECT * EXCEPT({RN}) FROM (\n    SELECT *, ROW_NUMBER() OVER (PARTITION BY {part} ORDER BY {ts} DESC, IFNULL({del}, FALSE) DESC) AS {RN}\n    FROM {staging}\n  ) WHERE {RN} = 1\n)",
            staging = self.staging,
            part = keys.join(", "),
        )
    }

    /// A query, run before the MERGE, that returns what it will do as one row `(upserted,
    /// deleted)` with the local warehouse's counting rules (not every server reports
    /// `dmlStats`, and those do not tell a soft delete from an update).
    pub fn stats_sql(&self) -> String {
        let keys: Vec<String> = self.key.iter().map(|k| ident(k)).collect();
        let ts = ident(ML_EXTRACTED_AT);
        let del = ident(ML_DELETED);
        let on = keys
            .iter()
            .map(|k| format!("T.{k} = S.{k}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let k0 = &keys[0];
        let changes = if self.keys_only {
            "(SELECT 0 AS upserted, 0 AS deleted)".to_string()
        } else {
            let newer = format!("(T.{ts} IS NULL OR S.{ts} >= T.{ts})");
            format!(
                "(SELECT COUNTIF(NOT IFNULL(S.{del}, FALSE) AND {newer}) AS upserted, COUNTIF(IFNULL(S.{del}, FALSE) AND T.{k0} IS NOT NULL AND NOT IFNULL(T.{del}, FALSE) AND {newer}) AS deleted FROM {source} S LEFT JOIN {target} T ON {on})",
                source = self.source(&keys),
                target = self.target,
            )
        };
        let absent = if self.reconcile {
            format!(
                "(SELECT COUNT(*) AS n FROM {target} T LEFT JOIN (SELECT DISTINCT {cols} FROM {staging}) S ON {on} WHERE S.{k0} IS NULL AND NOT IFNULL(T.{del}, FALSE) AND (T.{ts} IS NULL OR T.{ts} <= TIMESTAMP_MICROS({run})))",
                target = self.target,
                cols = keys.join(", "),
                staging = self.staging,
                run = self.run_micros,
            )
        } else {
            "(SELECT 0 AS n)".to_string()
        };
        format!("SELECT c.upserted, c.deleted + a.n FROM {changes} c CROSS JOIN {absent} a")
    }

    /// The statement, or `None` when the run has nothing to apply (a keys-only run that does
    /// not reconcile).
    pub fn sql(&self) -> Option<String> {
        if self.keys_only && !self.reconcile {
            return None;
        }
        let keys: Vec<String> = self.key.iter().map(|k| ident(k)).collect();
        let ts = ident(ML_EXTRACTED_AT);
        let del = ident(ML_DELETED);
        let run_col = ident(ML_RUN_ID);
        let on = keys
            .iter()
            .map(|k| format!("T.{k} = S.{k}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let mut sql = format!(
            "MERGE {target} T\nUSING {source} S\nON {on}\n",
            target = self.target,
            source = self.source(&keys),
        );
        if !self.keys_only {
            let newer = format!("(T.{ts} IS NULL OR S.{ts} >= T.{ts})");
            let is_del = format!("IFNULL(S.{del}, FALSE)");
            let value = |c: &MergeColumn| {
                if c.parse_json {
                    format!("SAFE.PARSE_JSON(S.{})", ident(&c.name))
                } else {
                    format!("S.{}", ident(&c.name))
                }
            };
            let set_all = self
                .columns
                .iter()
                .filter(|c| !self.key.contains(&c.name))
                .map(|c| format!("{} = {}", ident(&c.name), value(c)))
                .collect::<Vec<_>>()
                .join(", ");
            let names = self
                .columns
                .iter()
                .map(|c| ident(&c.name))
                .collect::<Vec<_>>()
                .join(", ");
            let values = self
                .columns
                .iter()
                .map(value)
                .collect::<Vec<_>>()
                .join(", ");
            match self.delete_mode {
                DeleteMode::Hard => {
                    sql.push_str(&format!(
                        "WHEN MATCHED AND {is_del} AND {newer} THEN DELETE\n"
                    ));
                }
                DeleteMode::Soft => {
                    sql.push_str(&format!(
                        "WHEN MATCHED AND {is_del} AND {newer} THEN UPDATE SET {del} = TRUE, {run_col} = S.{run_col}, {ts} = S.{ts}\n"
                    ));
                }
            }
            if !set_all.is_empty() {
                sql.push_str(&format!(
                    "WHEN MATCHED AND {newer} THEN UPDATE SET {set_all}\n"
                ));
            }
            match self.delete_mode {
                DeleteMode::Hard => sql.push_str(&format!(
                    "WHEN NOT MATCHED AND NOT {is_del} THEN INSERT ({names}) VALUES ({values})\n"
                )),
                DeleteMode::Soft => sql.push_str(&format!(
                    "WHEN NOT MATCHED THEN INSERT ({names}) VALUES ({values})\n"
                )),
            }
        }
        if self.reconcile {
            let run_ts = format!("TIMESTAMP_MICROS({})", self.run_micros);
            let absent = format!(
                "WHEN NOT MATCHED BY SOURCE AND NOT IFNULL(T.{del}, FALSE) AND (T.{ts} IS NULL OR T.{ts} <= {run_ts})"
            );
            match self.delete_mode {
                DeleteMode::Hard => sql.push_str(&format!("{absent} THEN DELETE\n")),
                DeleteMode::Soft => sql.push_str(&format!(
                    "{absent} THEN UPDATE SET {del} = TRUE, {run_col} = {}, {ts} = {run_ts}\n",
                    sql_string(self.run_id)
                )),
            }
        }
        Some(sql)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan<'a>(
        key: &'a [String],
        mode: DeleteMode,
        reconcile: bool,
        keys_only: bool,
    ) -> MergePlan<'a> {
        MergePlan {
            target: "`p.raw_x.t`".into(),
            staging: "`p.raw_x._mlc_stage_t`".into(),
            key,
            columns: [
                "id",
                "payload",
                "_ml_run_id",
                "_ml_extracted_at",
                "_ml_deleted",
            ]
            .iter()
            .map(|n| MergeColumn {
                name: n.to_string(),
                parse_json: *n == "payload",
            })
            .collect(),
            delete_mode: mode,
            reconcile,
            keys_only,
            run_id: "r'1",
            run_micros: 42,
        }
    }

    #[test]
    fn hard_incremental_merge() {
        let key = vec!["id".to_string()];
        let sql = plan(&key, DeleteMode::Hard, false, false).sql().unwrap();
        assert!(sql.contains("PARTITION BY `id` ORDER BY `_ml_extracted_at` DESC"));
        assert!(sql.contains("WHEN MATCHED AND IFNULL(S.`_ml_deleted`, FALSE) AND (T.`_ml_extracted_at` IS NULL OR S.`_ml_extracted_at` >= T.`_ml_extracted_at`) THEN DELETE"));
        assert!(sql.contains("`payload` = SAFE.PARSE_JSON(S.`payload`)"));
        assert!(
            !sql.contains("`id` = S.`id`,"),
            "keys are not updated: {sql}"
        );
        assert!(
            sql.contains("WHEN NOT MATCHED AND NOT IFNULL(S.`_ml_deleted`, FALSE) THEN INSERT")
        );
        assert!(!sql.contains("BY SOURCE"));
    }

    #[test]
    fn soft_reconcile_flags_absent_rows() {
        let key = vec!["id".to_string()];
        let sql = plan(&key, DeleteMode::Soft, true, false).sql().unwrap();
        assert!(
            sql.contains("THEN UPDATE SET `_ml_deleted` = TRUE, `_ml_run_id` = S.`_ml_run_id`")
        );
        assert!(sql.contains("WHEN NOT MATCHED THEN INSERT"));
        assert!(sql.contains(
            "WHEN NOT MATCHED BY SOURCE AND NOT IFNULL(T.`_ml_deleted`, FALSE) AND (T.`_ml_extracted_at` IS NULL OR T.`_ml_extracted_at` <= TIMESTAMP_MICROS(42)) THEN UPDATE SET `_ml_deleted` = TRUE, `_ml_run_id` = 'r\\'1'"
        ));
    }

    #[test]
    fn stats_follow_the_merge() {
        let key = vec!["id".to_string()];
        let sql = plan(&key, DeleteMode::Hard, false, false).stats_sql();
        assert!(sql.contains("COUNTIF(NOT IFNULL(S.`_ml_deleted`, FALSE)"));
        assert!(sql.contains("CROSS JOIN (SELECT 0 AS n)"));
        let sql = plan(&key, DeleteMode::Hard, true, true).stats_sql();
        assert!(sql.starts_with(
            "SELECT c.upserted, c.deleted + a.n FROM (SELECT 0 AS upserted, 0 AS deleted) c"
        ));
        assert!(sql.contains("WHERE S.`id` IS NULL"));
    }

    #[test]
    fn keys_only_runs_only_reconcile() {
        let key = vec!["id".to_string()];
        let sql = plan(&key, DeleteMode::Hard, true, true).sql().unwrap();
        assert!(!sql.contains("WHEN MATCHED"));
        assert!(sql.contains("WHEN NOT MATCHED BY SOURCE"));
        assert!(plan(&key, DeleteMode::Hard, false, true).sql().is_none());
    }
}

//! The one `MERGE` statement that applies a run's staging table to the final table, with the
//! local warehouse's semantics: per key the newest `_ml_extracted_at` wins (the run's row on a
//! tie, a tombstone over a live row within the run), `_ml_deleted` rows delete or flag per
//! `delete_mode`, and a full-snapshot run deletes the live keys it does not carry unless they
//! are newer than the run or the run quarantined them. A projected pass (`keys_only`) inserts
//! nothing: it updates the columns it carries (computed columns) on keys the table has, and
//! deletes absent keys when it reconciles.

use super::schema::ident;
use crate::config::DeleteMode;
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
    /// Keys the run quarantined (values in key-column order, as text): never deleted.
    pub protected: &'a [Vec<String>],
    /// BigQuery types of the key columns, in key order (to type `protected`).
    pub key_types: Vec<String>,
    /// The run is a projected pass: it updates the non-key columns it carries on matched keys
    /// and inserts nothing.
    pub keys_only: bool,
    pub run_id: &'a str,
    /// The run's time (µs UTC); rows newer than this survive reconciliation.
    pub run_micros: i64,
}

fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl MergePlan<'_> {
    /// `AND NOT (…)` excluding the quarantined keys from a `NOT MATCHED BY SOURCE` clause
    /// (empty when there are none).
    fn protect(&self) -> String {
        if self.protected.is_empty() {
            return String::new();
        }
        let lit = |i: usize, v: &str| match self.key_types.get(i).map(String::as_str) {
            Some("STRING") | None => sql_string(v),
            Some(t) => format!("SAFE_CAST({} AS {t})", sql_string(v)),
        };
        if let [k] = self.key {
            let list = self
                .protected
                .iter()
                .filter_map(|v| v.first().map(|x| lit(0, x)))
                .collect::<Vec<_>>()
                .join(", ");
            return format!(" AND T.{} NOT IN ({list})", ident(k));
        }
        let any = self
            .protected
            .iter()
            .map(|v| {
                let all = self
                    .key
                    .iter()
                    .enumerate()
                    .map(|(i, k)| {
                        format!(
                            "T.{} = {}",
                            ident(k),
                            lit(i, v.get(i).map_or("", String::as_str))
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" AND ");
                format!("({all})")
            })
            .collect::<Vec<_>>()
            .join(" OR ");
        format!(" AND NOT ({any})")
    }

    /// The non-key columns a projected pass updates (everything it carries but `_ml_` ones).
    fn carried(&self) -> Vec<&MergeColumn> {
        self.columns
            .iter()
            .filter(|c| !self.key.contains(&c.name) && !c.name.starts_with("_ml_"))
            .collect()
    }

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
        let changes = if self.keys_only && self.carried().is_empty() {
            "(SELECT 0 AS upserted, 0 AS deleted)".to_string()
        } else if self.keys_only {
            format!(
                "(SELECT COUNTIF(T.{k0} IS NOT NULL) AS upserted, 0 AS deleted FROM {source} S LEFT JOIN {target} T ON {on})",
                source = self.source(&keys),
                target = self.target,
            )
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
                "(SELECT COUNT(*) AS n FROM {target} T LEFT JOIN (SELECT DISTINCT {cols} FROM {staging}) S ON {on} WHERE S.{k0} IS NULL AND NOT IFNULL(T.{del}, FALSE) AND (T.{ts} IS NULL OR T.{ts} <= TIMESTAMP_MICROS({run})){protect})",
                target = self.target,
                cols = keys.join(", "),
                staging = self.staging,
                run = self.run_micros,
                protect = self.protect(),
            )
        } else {
            "(SELECT 0 AS n)".to_string()
        };
        format!("SELECT c.upserted, c.deleted + a.n FROM {changes} c CROSS JOIN {absent} a")
    }

    /// The statement, or `None` when the run has nothing to apply (a keys-only run that does
    /// not reconcile and carries no column to update).
    pub fn sql(&self) -> Option<String> {
        if self.keys_only && !self.reconcile && self.carried().is_empty() {
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
        if self.keys_only {
            let set = self
                .carried()
                .iter()
                .map(|c| format!("{} = S.{}", ident(&c.name), ident(&c.name)))
                .collect::<Vec<_>>()
                .join(", ");
            if !set.is_empty() {
                sql.push_str(&format!("WHEN MATCHED THEN UPDATE SET {set}\n"));
            }
        } else {
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
                "WHEN NOT MATCHED BY SOURCE AND NOT IFNULL(T.{del}, FALSE) AND (T.{ts} IS NULL OR T.{ts} <= {run_ts}){}",
                self.protect()
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
            protected: &[],
            key_types: vec!["STRING".into()],
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
        let mut keys_only = plan(&key, DeleteMode::Hard, true, true);
        keys_only.columns.retain(|c| c.name != "payload");
        let sql = keys_only.stats_sql();
        assert!(sql.starts_with(
            "SELECT c.upserted, c.deleted + a.n FROM (SELECT 0 AS upserted, 0 AS deleted) c"
        ));
        assert!(sql.contains("WHERE S.`id` IS NULL"));
    }

    #[test]
    fn keys_only_runs_reconcile_and_update_what_they_carry() {
        let key = vec!["id".to_string()];
        let keys_only = |reconcile| {
            let mut p = plan(&key, DeleteMode::Hard, reconcile, true);
            p.columns.retain(|c| c.name != "payload");
            p
        };
        let sql = keys_only(true).sql().unwrap();
        assert!(!sql.contains("WHEN MATCHED"));
        assert!(!sql.contains("INSERT"));
        assert!(sql.contains("WHEN NOT MATCHED BY SOURCE"));
        assert!(keys_only(false).sql().is_none());
        // A computed column carried by the pass is updated on matched keys, nothing inserted.
        let sql = plan(&key, DeleteMode::Hard, false, true).sql().unwrap();
        assert!(sql.contains("WHEN MATCHED THEN UPDATE SET `payload` = S.`payload`"));
        assert!(!sql.contains("INSERT") && !sql.contains("BY SOURCE"));
    }

    #[test]
    fn quarantined_keys_are_never_deleted_by_reconciliation() {
        let key = vec!["id".to_string()];
        let protected = vec![vec!["a'1".to_string()], vec!["b2".to_string()]];
        let mut p = plan(&key, DeleteMode::Hard, true, false);
        p.protected = &protected;
        let sql = p.sql().unwrap();
        assert!(
            sql.contains("THEN DELETE")
                && sql.contains(" AND T.`id` NOT IN ('a\\'1', 'b2') THEN DELETE"),
            "{sql}"
        );
        assert!(p.stats_sql().contains("NOT IN ('a\\'1', 'b2'))"));
        let key2 = vec!["company_id".to_string(), "id".to_string()];
        let protected = vec![vec!["c".to_string(), "7".to_string()]];
        let mut p = plan(&key2, DeleteMode::Soft, true, false);
        p.key_types = vec!["STRING".into(), "INT64".into()];
        p.protected = &protected;
        assert!(p.sql().unwrap().contains(
            "AND NOT ((T.`company_id` = 'c' AND T.`id` = SAFE_CAST('7' AS INT64))) THEN UPDATE"
        ));
    }
}

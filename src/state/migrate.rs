//! The state schema's versions, and the move of a SQLite state into Postgres.
//!
//! Each version is applied once, in order, in one write transaction, and recorded in
//! `mlc_schema`; every process applies what is missing when it opens the store, so workers
//! starting at once on a shared Postgres apply each version exactly once (the write
//! transaction is the store's lock). A store written by a newer mlc is refused rather than
//! read wrongly.
//!
//! Version 1 is the whole schema as it stood when versions began (each backend creates it its
//! own way: [`Backend::create_base_schema`](super::db::Backend::create_base_schema)).

use super::db::{Db, params};
use crate::error::{Error, Result};

/// The tables of version 1, in the SQL both engines take (Postgres gets `BIGINT` for
/// `INTEGER`).
fn base_schema() -> [&'static str; 5] {
    [
        super::runs::SCHEMA,
        super::tenant::TENANT_SCHEMA,
        super::sink::SINK_SCHEMA,
        super::leases::LEASES_SCHEMA,
        super::serve::SERVE_SCHEMA,
    ]
}

/// Versions after the first, oldest first: statements in the SQL both engines take. A change
/// to the schema is appended here, never edited in place.
const LATER: &[&str] = &[
    // 2: the lake path of each run's manifest, recorded when the run is marked extracted (a
    // worker that lost its lease may still write one under its own name: never the run's).
    "ALTER TABLE runs ADD COLUMN manifest TEXT",
];

/// The newest schema version this build knows.
pub const VERSION: i64 = 1 + LATER.len() as i64;

/// Brings `db` up to [`VERSION`].
pub(crate) fn upgrade(db: &mut Db) -> Result<()> {
    db.transaction(|tx| {
        tx.batch(
            "CREATE TABLE IF NOT EXISTS mlc_schema (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)",
        )?;
        let have: i64 = tx.query_one(
            "SELECT COALESCE(MAX(version), 0) FROM mlc_schema",
            params![],
            |r| r.get(0),
        )?;
        if have > VERSION {
            return Err(Error::state(format!(
                "the state store is at schema version {have}, written by a newer mlc; this one knows up to {VERSION}: upgrade mlc on this worker"
            )));
        }
        for version in have + 1..=VERSION {
            if version == 1 {
                tx.backend().create_base_schema(&base_schema())?;
            } else {
                tx.batch(LATER[(version - 2) as usize])?;
            }
            tx.execute(
                "INSERT INTO mlc_schema (version, applied_at) VALUES (?1, ?2)",
                params![version, chrono::Utc::now().to_rfc3339()],
            )?;
        }
        Ok(())
    })
}

/// The tables of the schema, in the order they are created.
fn tables() -> Vec<&'static str> {
    base_schema()
        .iter()
        .flat_map(|ddl| ddl.split("CREATE TABLE IF NOT EXISTS ").skip(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect()
}

impl super::StateStore {
    /// Copies every row of the SQLite state `source` into this store, which must be empty
    /// (`mlc state migrate`): cursors, runs and their checkpoints, tenant schemas, the sink
    /// ledger, jobs and audit, leases (their tokens keep growing from where they were), and
    /// serve mode's tables. One transaction: a failed copy leaves this store empty. Returns
    /// each table with the rows copied.
    pub fn copy_from(&self, source: &super::StateStore) -> Result<Vec<(&'static str, u64)>> {
        self.write(|dst| {
            for t in tables() {
                let n: i64 = dst.query_one(&format!("SELECT COUNT(*) FROM {t}"), params![], |r| {
                    r.get(0)
                })?;
                if n > 0 {
                    return Err(Error::state(format!(
                        "{} already holds state ({n} rows in `{t}`): a migration only fills an empty store",
                        self.shown()
                    )));
                }
            }
            source.with(|src| {
                let mut copied = Vec::new();
                for t in tables() {
                    let columns: Vec<String> = src.query_map(
                        "SELECT name FROM pragma_table_info(?1) ORDER BY cid",
                        params![t],
                        |r| r.get(0),
                    )?;
                    let quoted: Vec<String> =
                        columns.iter().map(|c| format!("\"{c}\"")).collect();
                    let select = format!("SELECT {} FROM {t} ORDER BY rowid", quoted.join(", "));
                    let insert = format!(
                        "INSERT INTO {t} ({}) VALUES ({})",
                        quoted.join(", "),
                        (1..=columns.len())
                            .map(|i| format!("?{i}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    let rows = src.query(&select, params![])?;
                    for row in &rows {
                        let values: Vec<&dyn super::db::ToValue> =
                            row.0.iter().map(|v| v as &dyn super::db::ToValue).collect();
                        dst.execute(&insert, &values)?;
                    }
                    copied.push((t, rows.len() as u64));
                }
                Ok(copied)
            })
            .and_then(|copied| {
                dst.backend().after_copy()?;
                Ok(copied)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_ddl_has_no_sqlite_types() {
        for ddl in base_schema() {
            let pg = super::super::postgres::postgres_ddl(ddl);
            assert!(!pg.contains("INTEGER"), "{pg}");
            assert!(!pg.contains("AUTOINCREMENT"), "{pg}");
        }
    }

    #[test]
    fn every_table_is_listed_once() {
        let t = tables();
        assert!(t.contains(&"runs") && t.contains(&"sink_audit") && t.contains(&"leases"));
        assert!(t.contains(&"serve_schedules") && t.contains(&"field_columns"));
        let unique: std::collections::BTreeSet<_> = t.iter().collect();
        assert_eq!(unique.len(), t.len());
    }

    #[test]
    fn a_store_from_a_newer_mlc_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        drop(super::super::StateStore::open(&path).unwrap());
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute(
            "INSERT INTO mlc_schema (version, applied_at) VALUES (?1, 'later')",
            [VERSION + 1],
        )
        .unwrap();
        let err = super::super::StateStore::open(&path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("newer mlc"), "{err}");
    }
}

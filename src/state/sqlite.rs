//! The SQLite backend: one file, the zero-setup default for one machine. WAL journaling with
//! full syncs, so a committed transaction survives a killed process; writers wait for each
//! other up to 10 s.

use std::path::Path;

use super::db::{Backend, Row, Value};
use crate::error::{Error, Result};

pub(crate) struct Sqlite(rusqlite::Connection);

impl Sqlite {
    /// Opens (creating) the file at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let conn =
            rusqlite::Connection::open(path).map_err(|e| Error::state_from(path.display(), e))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // Switching a new store to WAL needs it to itself, and SQLite reports a concurrent
        // opener as busy at once rather than waiting: try again for a while.
        let mut attempts = 0;
        loop {
            match conn
                .pragma_update(None, "journal_mode", "WAL")
                .and_then(|()| conn.pragma_update(None, "synchronous", "FULL"))
            {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy && attempts < 200 =>
                {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                r => break r?,
            }
        }
        Ok(Self(conn))
    }
}

impl Backend for Sqlite {
    fn execute(&mut self, sql: &str, params: Vec<Value>) -> Result<u64> {
        let mut st = self.0.prepare_cached(sql)?;
        Ok(st.execute(rusqlite::params_from_iter(params))? as u64)
    }

    fn query(&mut self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>> {
        let mut st = self.0.prepare_cached(sql)?;
        let width = st.column_count();
        let mut rows = st.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut row = Vec::with_capacity(width);
            for i in 0..width {
                row.push(value(r.get_ref(i)?));
            }
            out.push(Row(row));
        }
        Ok(out)
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.0.execute_batch(sql)?)
    }

    fn begin_write(&self) -> &'static str {
        "BEGIN IMMEDIATE"
    }

    /// A file from before the schema had versions already holds most of it: only what is
    /// missing is created, and the columns such files lack are added (NULL: not known then).
    fn create_base_schema(&mut self, ddl: &[&str]) -> Result<()> {
        for d in ddl {
            self.batch(d)?;
        }
        for (table, column, ty) in [
            ("sink_ledger", "target_version", "INTEGER"),
            ("runs", "report", "TEXT"),
            ("runs", "lease_token", "INTEGER"),
            ("stream_state", "columns_hash", "TEXT"),
        ] {
            let has = !self
                .query(
                    "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2",
                    vec![Value::Text(table.into()), Value::Text(column.into())],
                )?
                .is_empty();
            if !has {
                self.batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))?;
            }
        }
        Ok(())
    }

    fn insertion_order(&self) -> &'static str {
        "rowid"
    }

    fn after_copy(&mut self) -> Result<()> {
        // AUTOINCREMENT keys continue after the largest one present.
        Ok(())
    }
}

fn value(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

impl rusqlite::types::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

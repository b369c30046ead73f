//! What each tenant's metadata said, kept between runs: the live schema of a stream's entity
//! (read again after its time to live) and the column each tenant field was given (so a
//! column keeps its name when fields come and go).

use super::StateStore;
use super::db::params;
use crate::error::{Error, Result};

pub(super) const TENANT_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS live_schema (
    connection TEXT NOT NULL,
    stream TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (connection, stream)
);
CREATE TABLE IF NOT EXISTS field_columns (
    connection TEXT NOT NULL,
    stream TEXT NOT NULL,
    field TEXT NOT NULL,
    column_name TEXT NOT NULL,
    PRIMARY KEY (connection, stream, field)
);
"#;

impl StateStore {
    /// The cached live schema of a stream's entity on a connection.
    pub fn live_schema(
        &self,
        connection: &str,
        stream: &str,
    ) -> Result<Option<crate::spec::live::LiveSchema>> {
        let body: Option<String> = self.with(|c| {
            c.query_opt(
                "SELECT body FROM live_schema WHERE connection = ?1 AND stream = ?2",
                params![connection, stream],
                |r| r.get(0),
            )
        })?;
        // A cache entry of an older shape is simply read again from the tenant.
        Ok(body.and_then(|b| serde_json::from_str(&b).ok()))
    }

    pub fn put_live_schema(
        &self,
        connection: &str,
        stream: &str,
        schema: &crate::spec::live::LiveSchema,
    ) -> Result<()> {
        let body = serde_json::to_string(schema)
            .map_err(|e| Error::state_from(format!("live schema of {stream}"), e))?;
        self.with(|c| {
            c.execute(
                "INSERT INTO live_schema (connection, stream, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (connection, stream) DO UPDATE SET body = excluded.body",
                params![connection, stream, body],
            )
            .map(|_| ())
        })
    }

    /// Column names given to tenant fields of a stream (field identity → column), kept for
    /// good so a field keeps its column when it is renamed.
    pub fn field_columns(
        &self,
        connection: &str,
        stream: &str,
    ) -> Result<std::collections::BTreeMap<String, String>> {
        self.with(|c| {
            c.query(
                "SELECT field, column_name FROM field_columns WHERE connection = ?1 AND stream = ?2",
                params![connection, stream],
            )?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?)))
            .collect()
        })
    }

    pub fn put_field_column(
        &self,
        connection: &str,
        stream: &str,
        field: &str,
        column: &str,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO field_columns (connection, stream, field, column_name) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                params![connection, stream, field, column],
            )
            .map(|_| ())
        })
    }
}

//! The Postgres backend's connection: rust-postgres's blocking client, on a thread of its own.
//!
//! The state store is called from async code, and the blocking client runs its own small
//! runtime, which must never be started on a thread that is driving tokio. So the client lives
//! on one dedicated thread and [`PgLink`] hands it statements over a channel, waiting for each
//! answer the way a SQLite call waits for its file. Statements are prepared once per
//! connection (the store runs the same few dozen).
//!
//! TLS is rustls with the public CA roots built in (and a private CA from `sslrootcert`):
//! managed servers (RDS, Azure) require it; a server without TLS is reached in the clear unless
//! `sslmode=require`.
//!
//! A connection that dropped is opened again before the next statement, unless it dropped
//! inside a transaction: then the transaction's remaining statements fail (never run outside
//! it) and its rollback ends it. A transaction's begin, or a read on its own, that meets a
//! connection the server just ended is run again on a new one; a write is not (it may have
//! been done), its error goes to the caller.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::db::{Backend, Row, Value};
use crate::error::{Error, Result};

enum Request {
    Execute(String, Vec<Value>),
    Query(String, Vec<Value>),
    Batch(String),
}

enum Reply {
    Count(u64),
    Rows(Vec<Row>),
    Done,
    Failed(Error),
}

/// The handle on the connection's thread.
pub(crate) struct PgLink {
    requests: mpsc::Sender<Request>,
    replies: mpsc::Receiver<Reply>,
    shown: String,
}

/// A state URL read: the client's configuration, and the CA file of `sslrootcert` (a libpq
/// parameter rust-postgres does not take, so it is read here).
fn parse(url: &str) -> std::result::Result<(postgres::Config, Option<PathBuf>), postgres::Error> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut root_cert = None;
    let mut rest = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if k == "sslrootcert" {
            root_cert = Some(PathBuf::from(v.as_ref()));
        } else {
            rest.append_pair(&k, &v);
        }
    }
    let rest = rest.finish();
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{rest}")
    };
    let mut config = postgres::Config::from_str(&url)?;
    if config.get_connect_timeout().is_none() {
        // An unreachable server fails the run in seconds, not at the TCP timeout.
        config.connect_timeout(Duration::from_secs(10));
    }
    Ok((config, root_cert))
}

/// The TLS the connection offers: the server's certificate must chain to a public CA (the
/// roots built in) or to one of `sslrootcert`'s, and name the host. With `sslmode=prefer` (the
/// default) TLS is used when the server offers it, `require` refuses a server that does not,
/// `disable` never uses it.
fn tls(root_cert: Option<&Path>) -> Result<MakeRustlsConnect> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = root_cert {
        let bad = |e: &dyn std::fmt::Display| {
            Error::config(format!(
                "state.url: sslrootcert {} is not a readable PEM file of CA certificates: {e}",
                path.display()
            ))
        };
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::state_from("TLS for the Postgres state", e))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// Why the server at `shown` could not be reached, with every cause and what to do about a
/// certificate.
fn unreachable(shown: &str, e: postgres::Error) -> Error {
    let mut why = crate::error::in_words(&e);
    if why.contains("certificate") {
        why.push_str(
            " (the server's certificate is not signed by a public CA: add sslrootcert=/path/to/ca.pem to state.url, or sslmode=disable on a network you trust)",
        );
    }
    Error::State {
        message: format!("cannot connect to the Postgres state store {shown}: {why}"),
        source: Some(Box::new(e)),
    }
}

/// A Postgres configuration as it may be shown: user, hosts, ports and database, never the
/// password.
fn shown(c: &postgres::Config) -> String {
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                postgres::config::Host::Tcp(h) => h.clone(),
                #[cfg(unix)]
                postgres::config::Host::Unix(p) => p.display().to_string(),
            };
            match c.get_ports().get(i).or(c.get_ports().first()) {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect();
    format!(
        "postgres://{}{}/{}",
        c.get_user().map(|u| format!("{u}@")).unwrap_or_default(),
        hosts.join(","),
        c.get_dbname().unwrap_or("")
    )
}

impl PgLink {
    /// Connects to `url` on a new thread; fails here when the server cannot be reached.
    pub(crate) fn connect(url: &str) -> Result<Self> {
        let (config, root_cert) = parse(url).map_err(|e| {
            Error::config_from(
                "state.url is not a Postgres URL; the form is postgres://user:password@host:5432/database",
                e,
            )
        })?;
        let shown = shown(&config);
        let tls = tls(root_cert.as_deref())?;
        let (requests, incoming) = mpsc::channel::<Request>();
        let (outgoing, replies) = mpsc::channel::<Reply>();
        let name = shown.clone();
        std::thread::Builder::new()
            .name("mlc-state-postgres".into())
            .spawn(move || {
                let client = match config.connect(tls.clone()) {
                    Ok(c) => {
                        let _ = outgoing.send(Reply::Done);
                        c
                    }
                    Err(e) => {
                        let _ = outgoing.send(Reply::Failed(unreachable(&name, e)));
                        return;
                    }
                };
                Session {
                    client,
                    config,
                    tls,
                    shown: name,
                    prepared: HashMap::new(),
                    in_transaction: false,
                    ended: false,
                }
                .serve(incoming, outgoing);
            })
            .map_err(|e| Error::state_from("cannot start the Postgres state thread", e))?;
        let link = Self {
            requests,
            replies,
            shown,
        };
        link.wait().map(|_| link)
    }

    /// Where the link goes, as it may be shown.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    fn ask(&self, r: Request) -> Result<Reply> {
        self.requests
            .send(r)
            .map_err(|_| Error::state("the Postgres state connection's thread has stopped"))?;
        self.wait()
    }

    fn wait(&self) -> Result<Reply> {
        match self.replies.recv() {
            Ok(Reply::Failed(e)) => Err(e),
            Ok(r) => Ok(r),
            Err(_) => Err(Error::state(
                "the Postgres state connection's thread has stopped",
            )),
        }
    }
}

impl Backend for PgLink {
    fn execute(&mut self, sql: &str, params: Vec<Value>) -> Result<u64> {
        match self.ask(Request::Execute(sql.to_string(), params))? {
            Reply::Count(n) => Ok(n),
            _ => Err(Error::state(
                "unexpected answer from the Postgres state thread",
            )),
        }
    }

    fn query(&mut self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>> {
        match self.ask(Request::Query(sql.to_string(), params))? {
            Reply::Rows(rows) => Ok(rows),
            _ => Err(Error::state(
                "unexpected answer from the Postgres state thread",
            )),
        }
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        self.ask(Request::Batch(sql.to_string())).map(|_| ())
    }

    /// The store's one advisory lock (key "mlc" in ASCII) is held until the transaction
    /// ends, so writers take turns as they do on SQLite (see `db.rs`).
    fn begin_write(&self) -> &'static str {
        "BEGIN; SELECT pg_advisory_xact_lock(7195747)"
    }

    fn create_base_schema(&mut self, ddl: &[&str]) -> Result<()> {
        for d in ddl {
            self.batch(&postgres_ddl(d))?;
        }
        // The order jobs were planned in, which SQLite keeps as the rowid.
        self.batch("ALTER TABLE sink_jobs ADD COLUMN seq BIGINT GENERATED BY DEFAULT AS IDENTITY")
    }

    fn insertion_order(&self) -> &'static str {
        "seq"
    }

    /// Copied audit entries keep their numbers; new ones continue after them.
    fn after_copy(&mut self) -> Result<()> {
        self.query(
            "SELECT setval(pg_get_serial_sequence('sink_audit', 'seq'), COALESCE(MAX(seq), 0) + 1, false) FROM sink_audit",
            Vec::new(),
        )
        .map(|_| ())
    }
}

/// SQLite's column types as Postgres's: 64-bit integers, and an identity for the one
/// autoincrementing key.
pub(crate) fn postgres_ddl(sqlite: &str) -> String {
    sqlite
        .replace(
            "INTEGER PRIMARY KEY AUTOINCREMENT",
            "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        )
        .replace(" INTEGER", " BIGINT")
}

/// The connection thread's side.
struct Session {
    client: Client,
    config: postgres::Config,
    tls: MakeRustlsConnect,
    shown: String,
    prepared: HashMap<String, Statement>,
    in_transaction: bool,
    /// The server ended the session (see [`Session::gone`]).
    ended: bool,
}

impl Session {
    fn serve(mut self, incoming: mpsc::Receiver<Request>, outgoing: mpsc::Sender<Reply>) {
        while let Ok(request) = incoming.recv() {
            let reply = self.answer(request).unwrap_or_else(Reply::Failed);
            if outgoing.send(reply).is_err() {
                break;
            }
        }
    }

    fn answer(&mut self, request: Request) -> Result<Reply> {
        if let Request::Batch(sql) = &request {
            let ends = matches!(sql.as_str(), "COMMIT" | "ROLLBACK");
            if ends && self.gone() {
                // The connection, and the transaction with it, is gone: nothing was committed.
                self.in_transaction = false;
                return if sql == "ROLLBACK" {
                    Ok(Reply::Done)
                } else {
                    Err(Error::state(format!(
                        "the connection to {} dropped before the commit; nothing was written",
                        self.shown
                    )))
                };
            }
        }
        self.reconnect()?;
        match self.run(&request) {
            // The server ended the connection (a restart, a failover, an idle timeout) where
            // doing it again is safe: a transaction's begin (nothing done yet), or a read of
            // its own. A write's fate is unknown, so its error is the caller's.
            Err(e) if self.gone() && self.may_retry(&request) => {
                tracing::warn!(state = %self.shown, error = %e, "the Postgres connection dropped; connecting again");
                self.in_transaction = false;
                self.reconnect()?;
                self.run(&request)
            }
            r => r,
        }
    }

    /// Whether the connection is over: closed, or ended by the server (a FATAL error ends
    /// the session before the client notices the socket closing).
    fn gone(&self) -> bool {
        self.ended || self.client.is_closed()
    }

    fn may_retry(&self, request: &Request) -> bool {
        match request {
            Request::Batch(sql) => sql.starts_with("BEGIN"),
            Request::Query(..) => !self.in_transaction,
            Request::Execute(..) => false,
        }
    }

    fn run(&mut self, request: &Request) -> Result<Reply> {
        match request {
            Request::Batch(sql) => {
                // Inside a transaction from its begin (even one that failed half-way: the
                // rollback that follows ends it) to its commit or rollback.
                let r = self.client.batch_execute(sql);
                if sql.starts_with("BEGIN") {
                    self.in_transaction = true;
                } else if sql == "COMMIT" || sql == "ROLLBACK" {
                    self.in_transaction = false;
                }
                r.map_err(|e| self.failed(sql, e))?;
                Ok(Reply::Done)
            }
            Request::Execute(sql, params) => {
                let st = self.prepare(sql)?;
                let n = self
                    .client
                    .execute(&st, &refs(params))
                    .map_err(|e| self.failed(sql, e))?;
                Ok(Reply::Count(n))
            }
            Request::Query(sql, params) => {
                let st = self.prepare(sql)?;
                let rows = self
                    .client
                    .query(&st, &refs(params))
                    .map_err(|e| self.failed(sql, e))?;
                rows.iter()
                    .map(read_row)
                    .collect::<Result<_>>()
                    .map(Reply::Rows)
            }
        }
    }

    /// Opens the connection again when it dropped outside a transaction.
    fn reconnect(&mut self) -> Result<()> {
        if !self.gone() {
            return Ok(());
        }
        if self.in_transaction {
            return Err(Error::state(format!(
                "the connection to {} dropped inside a transaction; it is rolled back",
                self.shown
            )));
        }
        self.client = self
            .config
            .connect(self.tls.clone())
            .map_err(|e| unreachable(&self.shown, e))?;
        self.prepared.clear();
        self.ended = false;
        Ok(())
    }

    fn prepare(&mut self, sql: &str) -> Result<Statement> {
        if let Some(st) = self.prepared.get(sql) {
            return Ok(st.clone());
        }
        let st = self
            .client
            .prepare(&dollar_parameters(sql))
            .map_err(|e| self.failed(sql, e))?;
        self.prepared.insert(sql.to_string(), st.clone());
        Ok(st)
    }

    fn failed(&mut self, sql: &str, e: postgres::Error) -> Error {
        // A statement prepared before a schema change may be refused from then on.
        self.prepared.remove(sql);
        self.ended |= e.is_closed()
            || e.as_db_error()
                .is_some_and(|d| d.parsed_severity() == Some(postgres::error::Severity::Fatal));
        Error::State {
            message: format!(
                "Postgres ({}): {}",
                super::db::first_words(sql),
                crate::error::in_words(&e)
            ),
            source: Some(Box::new(e)),
        }
    }
}

fn refs(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

/// SQLite's `?N` parameters as Postgres's `$N` (outside quoted text).
pub(crate) fn dollar_parameters(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => quoted = !quoted,
            '?' if !quoted && chars.peek().is_some_and(char::is_ascii_digit) => {
                out.push('$');
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

fn read_row(r: &postgres::Row) -> Result<Row> {
    let mut row = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let ty = col.type_();
        let v = |e: postgres::Error| Error::state_from(format!("column {}", col.name()), e);
        let value = if *ty == Type::INT8 {
            r.try_get::<_, Option<i64>>(i).map_err(v)?.map(Value::Int)
        } else if *ty == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)
                .map_err(v)?
                .map(|x| Value::Int(x.into()))
        } else if *ty == Type::INT2 {
            r.try_get::<_, Option<i16>>(i)
                .map_err(v)?
                .map(|x| Value::Int(x.into()))
        } else if *ty == Type::BOOL {
            r.try_get::<_, Option<bool>>(i)
                .map_err(v)?
                .map(|x| Value::Int(x.into()))
        } else if *ty == Type::FLOAT8 {
            r.try_get::<_, Option<f64>>(i).map_err(v)?.map(Value::Real)
        } else if *ty == Type::BYTEA {
            r.try_get::<_, Option<Vec<u8>>>(i)
                .map_err(v)?
                .map(Value::Blob)
        } else if [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME].contains(ty) {
            r.try_get::<_, Option<String>>(i)
                .map_err(v)?
                .map(Value::Text)
        } else {
            return Err(Error::state(format!(
                "column {} is of Postgres type {ty}, which the state store does not read (cast it to BIGINT or TEXT)",
                col.name()
            )));
        };
        row.push(value.unwrap_or(Value::Null));
    }
    Ok(Row(row))
}

/// A value bound to whatever type Postgres inferred for the parameter: integers to any integer
/// width (or a boolean), text to any text type.
impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) if *ty == Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
            Value::Int(i) if *ty == Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
            Value::Int(i) if *ty == Type::BOOL => (*i != 0).to_sql(ty, out),
            Value::Int(i) if *ty == Type::FLOAT8 => (*i as f64).to_sql(ty, out),
            Value::Int(i) => i.to_sql_checked(ty, out),
            Value::Real(f) => f.to_sql_checked(ty, out),
            Value::Text(s) => s.as_str().to_sql_checked(ty, out),
            Value::Blob(b) => b.as_slice().to_sql_checked(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_become_dollars_outside_quotes() {
        assert_eq!(
            dollar_parameters("SELECT a FROM t WHERE b = ?1 AND c = '?2' AND d IN (?12, ?3)"),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' AND d IN ($12, $3)"
        );
    }

    #[test]
    fn sslrootcert_is_read_off_the_url_and_the_rest_goes_to_the_client() {
        let (c, ca) =
            parse("postgres://u@db:5433/state?sslrootcert=%2Fetc%2Fssl%2Fca.pem&sslmode=require")
                .unwrap();
        assert_eq!(ca.as_deref(), Some(Path::new("/etc/ssl/ca.pem")));
        assert_eq!(c.get_ssl_mode(), postgres::config::SslMode::Require);
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(10)));
        let err = tls(Some(Path::new("/nonexistent/ca.pem")))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("sslrootcert /nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn a_shown_url_never_has_its_password() {
        let shown_of = |url: &str| shown(&parse(url).unwrap().0);
        assert_eq!(
            shown_of("postgres://mlc:s3cret@db.internal:6432/state"),
            "postgres://mlc@db.internal:6432/state"
        );
        assert!(!shown_of("postgresql://u:pw@h/d?sslmode=disable").contains("pw"));
        assert_eq!(
            shown_of("postgres://u:pw@h:5432/d?sslmode=require&sslrootcert=%2Fetc%2Fca.pem"),
            "postgres://u@h:5432/d"
        );
        // An unreadable URL is refused before any connection, without repeating it.
        let err = PgLink::connect("postgres://u:s3cret@h:notaport/d")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("not a Postgres URL"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }
}

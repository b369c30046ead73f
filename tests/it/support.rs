//! Shared test helpers: a throwaway project wired to an in-process sandbox, and the row-by-row
//! comparison of warehouse tables with the sandbox's live rows.

use std::collections::BTreeMap;
use std::path::Path;

use ml_connector::config::{Config, Connection};
use ml_connector::run::{Context, RunRequest, RunSummary, run_many};
use ml_connector::sandbox::{Sandbox, SandboxOptions};
use ml_connector::vault::{Secrets, Vault};
use secrecy::SecretString;
use tempfile::TempDir;

/// The built-in Dataverse source file, for overlays that change paging.
pub const DATAVERSE_SOURCE: &str = include_str!("../../streams/dataverse/_source.toml");

pub struct Project {
    pub dir: TempDir,
    pub sandbox: Sandbox,
    pub ctx: Context,
}

/// Writes the project's mlc.toml for `sb` plus `extra` (whole sections), stores the secret.
pub fn write_project(dir: &Path, sb: &Sandbox, extra: &str) -> Config {
    let text = format!(
        r#"
[connections.crm]
system = "dataverse"
environment_url = "{}"
tenant_id = "{}"
client_id = "{}"
authority_url = "{}"
requests_per_minute = 100000
{extra}
"#,
        sb.dataverse_url(),
        sb.tenant_id(),
        sb.client_id(),
        sb.authority_url()
    );
    let path = dir.join("mlc.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap();
    let mut s = Secrets::new();
    s.insert(
        "client_secret".into(),
        SecretString::from(sb.client_secret().to_string()),
    );
    Vault::new(&config.vault).put("crm", &s).unwrap();
    config
}

/// Overlays the Dataverse source with a smaller page size, so small tables span many pages.
pub fn small_pages(dir: &Path, page_size: u32) {
    let d = dir.join("streams/dataverse");
    std::fs::create_dir_all(&d).unwrap();
    let text =
        DATAVERSE_SOURCE.replace("page_size = 5000\n", &format!("page_size = {page_size}\n"));
    assert!(text.contains(&format!("page_size = {page_size}")));
    std::fs::write(d.join("_source.toml"), text).unwrap();
}

impl Project {
    pub async fn new(opts: SandboxOptions, extra: &str) -> Project {
        Self::with_setup(opts, extra, |_| {}).await
    }

    /// Like `new`, with `setup` run on the project folder before the context opens.
    pub async fn with_setup(
        opts: SandboxOptions,
        extra: &str,
        setup: impl FnOnce(&Path),
    ) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::start(opts, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        setup(dir.path());
        let config = write_project(dir.path(), &sandbox, extra);
        let ctx = Context::open(config).unwrap();
        Project { dir, sandbox, ctx }
    }

    pub fn conn(&self) -> Connection {
        self.ctx.config.connection("crm").unwrap().clone()
    }

    /// Syncs every stream; panics with the failures if any stream failed.
    pub async fn sync(&self, req: RunRequest) -> BTreeMap<String, RunSummary> {
        let conn = self.conn();
        let results = run_many(&self.ctx, &[&conn], &[], &req).await.unwrap();
        let mut out = BTreeMap::new();
        let mut failures = Vec::new();
        for (label, r) in results {
            match r {
                Ok(s) => {
                    out.insert(s.stream.clone(), s);
                }
                Err(e) => failures.push(format!("{label}: {e}")),
            }
        }
        assert!(failures.is_empty(), "streams failed: {failures:#?}");
        out
    }

    pub async fn sync_incremental(&self) -> BTreeMap<String, RunSummary> {
        self.sync(RunRequest::Sync { full: false }).await
    }

    /// Every Dataverse table equals the sandbox, row by row: same keys, same row versions, no
    /// duplicates, no gaps.
    pub fn assert_matches_source(&self) {
        let local = self.ctx.warehouse.local().unwrap();
        for stream in self.ctx.defs.select(&["dataverse".into()]).unwrap() {
            let set = stream.spec.entity_set.clone().unwrap();
            let pk = stream.catalog.primary_key[0].as_str();
            let mut source: Vec<Vec<String>> = self
                .sandbox
                .live_rows(&set)
                .unwrap()
                .into_iter()
                .map(|(id, v)| vec![id, v.to_string()])
                .collect();
            source.sort();
            let table = local
                .keys(
                    &stream.id.dataset(),
                    &stream.id.entity,
                    &[pk, "versionnumber"],
                )
                .unwrap();
            assert_eq!(
                table.len(),
                source.len(),
                "{}: {} rows in the warehouse, {} in the sandbox",
                stream.id,
                table.len(),
                source.len()
            );
            assert!(
                table == source,
                "{}: rows differ from the sandbox",
                stream.id
            );
        }
    }

    /// Runs a one-value query and returns the value as text.
    pub fn scalar(&self, sql: &str) -> String {
        let csv = self
            .ctx
            .warehouse
            .query(sql, ml_connector::loaders::warehouse::OutputFormat::Csv)
            .unwrap();
        csv.lines().nth(1).unwrap_or_default().trim().to_string()
    }
}

/// Syncs `streams` of connection `name` (all of its streams when empty); panics with the
/// failures if any stream failed.
pub async fn sync_streams(ctx: &Context, name: &str, streams: &[&str]) {
    let conn = ctx.config.connection(name).unwrap().clone();
    let patterns: Vec<String> = streams.iter().map(|s| s.to_string()).collect();
    let results = run_many(ctx, &[&conn], &patterns, &RunRequest::Sync { full: false })
        .await
        .unwrap();
    for (label, r) in results {
        r.unwrap_or_else(|e| panic!("{label}: {e}"));
    }
}

/// The Postgres server `.ci/postgres.sh` starts (`MLC_TEST_POSTGRES_URL`); `None` (test
/// skipped) outside CI when it is not running.
pub fn postgres_server(test: &str) -> Option<String> {
    crate::bigquery::env_or_skip(test, &["MLC_TEST_POSTGRES_URL"]).map(|mut v| v.remove(0))
}

/// A fresh, empty database on `server`, as a URL with the server's query (its
/// `sslrootcert`): each call creates another, so tests never share a state.
pub fn postgres_database(server: &str) -> String {
    let name = format!("mlc_t_{:08x}", rand::random::<u32>());
    let (base, query) = server.split_once('?').unwrap_or((server, ""));
    let (host, _) = base
        .rsplit_once('/')
        .expect("MLC_TEST_POSTGRES_URL is postgres://user@host:port/database");
    // The blocking client runs a runtime of its own: keep it off any test runtime's thread.
    // (Created over a plain connection: the test client has no TLS, the server takes both.)
    let admin = base.to_string();
    let db = name.clone();
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&admin, postgres::NoTls)
            .unwrap_or_else(|e| panic!("MLC_TEST_POSTGRES_URL does not answer: {e}"));
        c.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    })
    .join()
    .unwrap();
    if query.is_empty() {
        format!("{host}/{name}")
    } else {
        format!("{host}/{name}?{query}")
    }
}

/// Runs one query on `url` (its query string aside) over a plain connection: what the server
/// says about the store's connections.
pub fn postgres_query(url: &str, sql: &str) -> Vec<String> {
    let base = url.split_once('?').map_or(url, |(b, _)| b).to_string();
    let sql = sql.to_string();
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&base, postgres::NoTls).unwrap();
        c.simple_query(&sql)
            .unwrap()
            .into_iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .collect()
    })
    .join()
    .unwrap()
}

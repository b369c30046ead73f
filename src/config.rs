//! `mlc.toml`: where the lake, state and warehouse live, and the connections (tenants) to read.
//!
//! Values may reference the environment as `${VAR}` or `${VAR:-default}`. Secrets are never
//! written here: a secret key (`client_secret`, ...) accepts only a `${VAR}` reference; otherwise
//! it is stored encrypted with `mlc connection add`. Every error names the key and the fix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::systems::settings::ConnectionSettings;
use crate::systems::settings::KeyPath;
use crate::systems::system::System;
use crate::vault::VaultConfig;

/// Default file name, looked up in the current directory.
pub const CONFIG_FILE: &str = "mlc.toml";

/// Keys that hold secrets: only `${VAR}` references are accepted in mlc.toml.
const SECRET_KEYS: &[&str] = &["client_secret", "password", "api_token", "refresh_token"];

/// The whole configuration, paths resolved against the folder of mlc.toml.
#[derive(Debug, Clone)]
pub struct Config {
    /// Folder of mlc.toml; relative paths resolve against it.
    pub dir: PathBuf,
    pub lake_url: String,
    /// `state.path`: the SQLite state file (the default store).
    pub state_path: PathBuf,
    /// `state.url`: a Postgres state shared by many workers, used instead of `state.path`
    /// (expanded; it may carry a password, so it is kept secret).
    pub state_url: Option<secrecy::SecretString>,
    /// `state.lease_seconds`: how long a worker's lease on a stream run lasts unless renewed
    /// (every third of it); a crashed worker's work waits this long for another (`lease.rs`).
    pub state_lease: std::time::Duration,
    pub warehouse: WarehouseConfig,
    pub sync: SyncConfig,
    pub vault: VaultConfig,
    /// Folder whose `streams/` and `catalog/` overlay the built-in definitions.
    pub definitions_dir: PathBuf,
    pub connections: BTreeMap<String, Connection>,
    /// `[serve]`: schedules, webhook receivers and subscriptions of `mlc serve`.
    pub serve: crate::serve::config::ServeConfig,
}

#[derive(Debug, Clone)]
pub struct WarehouseConfig {
    pub kind: WarehouseKind,
    pub path: PathBuf,
    pub delete_mode: DeleteMode,
    /// `[warehouse.bigquery]`; present (and checked) when `kind = "bigquery"`.
    pub bigquery: Option<BigQueryConfig>,
}

/// `[warehouse.bigquery]`: where and as whom BigQuery loads run. Deployment settings, so they
/// live in mlc.toml next to the lake URL rather than in the shipped `loaders/` data.
#[derive(Debug, Clone, PartialEq)]
pub struct BigQueryConfig {
    /// Project that owns the datasets and is billed for the jobs.
    pub project: String,
    /// Location of the datasets and jobs (`US`, `EU`, `europe-west1`, ...).
    pub location: String,
    /// Dataset of a system: `datasets.<system>` if set, else `<dataset_prefix><system>`.
    pub dataset_prefix: String,
    pub datasets: BTreeMap<String, String>,
    pub credentials: BigQueryCredentials,
    /// Service-account key file for `credentials = "service_account_key"` (default:
    /// `GOOGLE_APPLICATION_CREDENTIALS`).
    pub key_file: Option<PathBuf>,
    /// BigQuery v2 REST base (emulators, private endpoints); uploads go to the same host under
    /// `/upload/bigquery/v2`.
    pub base_url: String,
    /// `gs://bucket/prefix` at which BigQuery can read the lake's files, when the lake is not
    /// itself a `gs://` URL (a mirrored or mounted bucket; the emulator's GCS root in tests).
    /// Without it, a non-GCS lake's Parquet parts are uploaded with each load job.
    pub lake_gcs_url: Option<String>,
}

impl BigQueryConfig {
    /// The dataset holding `system`'s tables: `datasets.<system>` if set, else the dataset its
    /// source definition names (`ref_looker`: reference tables are not raw data), else
    /// `<dataset_prefix><system>`.
    pub fn dataset(&self, system: &str, source_dataset: Option<&str>) -> String {
        self.datasets
            .get(system)
            .cloned()
            .or_else(|| source_dataset.map(str::to_string))
            .unwrap_or_else(|| format!("{}{system}", self.dataset_prefix))
    }
}

/// How mlc obtains BigQuery access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BigQueryCredentials {
    /// `GOOGLE_APPLICATION_CREDENTIALS`, then gcloud's user credentials, then the metadata
    /// server (what Google's client libraries do).
    ApplicationDefault,
    /// A service-account JSON key file (`key_file`).
    ServiceAccountKey,
    /// The GKE / Cloud Run / GCE metadata server's token for the attached service account.
    WorkloadIdentity,
    /// No token (local emulators only).
    None,
}

/// The public BigQuery REST base.
pub const BIGQUERY_BASE_URL: &str = "https://bigquery.googleapis.com/bigquery/v2";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarehouseKind {
    Local,
    Bigquery,
}

/// How long a connection's cached metadata is used before it is read again, unless the
/// connection sets `schema_ttl_minutes`. Short enough that a new custom field lands within
/// the hour; long enough that frequent incremental runs cost one data request each.
pub const DEFAULT_SCHEMA_TTL_MINUTES: f64 = 60.0;

/// What happens to a row the source reports deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteMode {
    /// The row is removed from the current-state table.
    #[default]
    Hard,
    /// The row stays, with its last known values and `_ml_deleted = true`.
    Soft,
}

#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Streams extracted at the same time.
    pub concurrency: usize,
    /// Parquet part size; a part is also the checkpoint unit of long snapshots.
    pub part_size_bytes: usize,
}

/// One configured tenant of one system.
#[derive(Debug, Clone)]
pub struct Connection {
    pub name: String,
    pub settings: ConnectionSettings,
    /// Stream patterns this connection runs (`dataverse.*` by default).
    pub streams: Vec<String>,
    pub requests_per_minute: Option<u32>,
    pub max_concurrency: Option<usize>,
    /// Hours between key-set reconciliations (`reconcile = "keyset"` streams); default 24.
    pub reconcile_every_hours: Option<f64>,
    /// Minutes the tenant's live schema (its metadata) is cached before a run reads it again;
    /// default [`DEFAULT_SCHEMA_TTL_MINUTES`].
    pub schema_ttl_minutes: Option<f64>,
    /// This tenant's settings for the sink flows that write to it, by flow and mapping
    /// (`[connections.<name>.sink.<flow>.<mapping>]`): the built-in flows stay as they are.
    pub sink: BTreeMap<String, BTreeMap<String, MappingOverride>>,
}

/// One mapping of a sink flow as one target tenant needs it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingOverride {
    /// The tenant's external-id field (`""`: the tenant has none; the sink then matches by
    /// natural key only).
    pub external_id_field: Option<String>,
    /// Values for fields the tenant requires (a firm's `Type`, a project's `ProjMgr`), added to
    /// the flow's defaults.
    #[serde(default)]
    pub defaults: BTreeMap<String, String>,
    /// Target text fields cut to the tenant's length instead of blocking the record.
    #[serde(default)]
    pub truncate: Vec<String>,
    /// Target fields this tenant does not have (`Probability` on an older Vantagepoint): not
    /// sent.
    #[serde(default)]
    pub omit: Vec<String>,
    /// Post created documents (Business Central), or leave them drafts.
    pub post: Option<bool>,
}

impl Connection {
    pub fn system(&self) -> System {
        self.settings.system()
    }

    /// The URL that identifies the tenant, for listings.
    pub fn url(&self) -> String {
        self.settings.url()
    }

    /// Whether mlc.toml supplies the connection's secrets (as `${VAR}` references) rather than
    /// the vault.
    pub fn secrets_from_environment(&self) -> bool {
        self.settings.secrets_from_environment()
    }

    /// The zone in which the system writes timestamps that carry none (Deltek).
    pub fn naive_time_zone(&self) -> Option<&str> {
        self.settings.naive_time_zone()
    }

    /// Hours between key-set reconciliations of streams with `reconcile = "keyset"`.
    pub fn reconcile_every_hours(&self) -> f64 {
        self.reconcile_every_hours.unwrap_or(24.0)
    }

    /// Minutes the tenant's metadata is cached.
    pub fn schema_ttl_minutes(&self) -> f64 {
        self.schema_ttl_minutes
            .unwrap_or(DEFAULT_SCHEMA_TTL_MINUTES)
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    lake: RawLake,
    #[serde(default)]
    state: RawState,
    #[serde(default)]
    warehouse: RawWarehouse,
    #[serde(default)]
    sync: RawSync,
    #[serde(default)]
    vault: RawVault,
    #[serde(default)]
    definitions: RawDefinitions,
    #[serde(default)]
    connections: BTreeMap<String, toml::Table>,
    #[serde(default)]
    serve: crate::serve::config::ServeConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLake {
    #[serde(default = "default_lake")]
    url: String,
}
impl Default for RawLake {
    fn default() -> Self {
        Self {
            url: default_lake(),
        }
    }
}
fn default_lake() -> String {
    "file://.mlc/lake".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    #[serde(default = "default_state")]
    path: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default = "default_lease_seconds")]
    lease_seconds: u64,
}
impl Default for RawState {
    fn default() -> Self {
        Self {
            path: default_state(),
            url: None,
            lease_seconds: default_lease_seconds(),
        }
    }
}

/// `state.url` expanded, once checked: a Postgres URL whose password, if any, comes from the
/// environment (`${VAR}`), never written in mlc.toml.
pub fn state_url(raw: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<secrecy::SecretString> {
    let Some(rest) = raw
        .strip_prefix("postgres://")
        .or_else(|| raw.strip_prefix("postgresql://"))
    else {
        return Err(Error::config(
            "state.url must be a Postgres URL (postgres://user@host:5432/database); leave it out to keep the state in the SQLite file state.path",
        ));
    };
    let userinfo = rest.split_once('@').map_or("", |(u, _)| u);
    if let Some((_, password)) = userinfo.split_once(':')
        && !password.starts_with("${")
    {
        return Err(Error::config(
            "state.url has its password written out (in mlc.toml or on the command line): put it in the environment and write postgres://user:${MLC_STATE_PASSWORD}@host/database",
        ));
    }
    Ok(expand("state.url", raw, env)?.into())
}
fn default_lease_seconds() -> u64 {
    60
}
fn default_state() -> String {
    ".mlc/state.db".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWarehouse {
    #[serde(default = "default_kind")]
    kind: WarehouseKind,
    #[serde(default = "default_wh_path")]
    path: String,
    #[serde(default)]
    delete_mode: DeleteMode,
    #[serde(default)]
    bigquery: Option<RawBigQuery>,
}
impl Default for RawWarehouse {
    fn default() -> Self {
        Self {
            kind: default_kind(),
            path: default_wh_path(),
            delete_mode: DeleteMode::Hard,
            bigquery: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBigQuery {
    project: String,
    #[serde(default = "default_bq_location")]
    location: String,
    #[serde(default = "default_bq_prefix")]
    dataset_prefix: String,
    #[serde(default)]
    datasets: BTreeMap<String, String>,
    #[serde(default = "default_bq_credentials")]
    credentials: BigQueryCredentials,
    #[serde(default)]
    key_file: Option<String>,
    #[serde(default = "default_bq_base_url")]
    base_url: String,
    #[serde(default)]
    lake_gcs_url: Option<String>,
}
fn default_bq_location() -> String {
    "US".into()
}
fn default_bq_prefix() -> String {
    "raw_".into()
}
fn default_bq_credentials() -> BigQueryCredentials {
    BigQueryCredentials::ApplicationDefault
}
fn default_bq_base_url() -> String {
    BIGQUERY_BASE_URL.into()
}

/// BigQuery dataset names: letters, digits and `_`, at most 1024.
fn valid_dataset_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 1024 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks and expands `[warehouse.bigquery]`.
fn parse_bigquery(
    kind: WarehouseKind,
    raw: Option<RawBigQuery>,
    ex: &dyn Fn(&str, &str) -> Result<String>,
    resolve: &dyn Fn(&str, &str) -> Result<PathBuf>,
) -> Result<Option<BigQueryConfig>> {
    let Some(raw) = raw else {
        if kind == WarehouseKind::Bigquery {
            return Err(Error::config(
                "warehouse.kind = \"bigquery\" needs a [warehouse.bigquery] table with at least project = \"<gcp-project-id>\"",
            ));
        }
        return Ok(None);
    };
    let k = |key: &str| format!("warehouse.bigquery.{key}");
    let project = ex(&k("project"), &raw.project)?;
    if project.trim().is_empty() {
        return Err(Error::config(format!(
            "{} is empty: set it to the GCP project id that owns the datasets",
            k("project")
        )));
    }
    let dataset_prefix = ex(&k("dataset_prefix"), &raw.dataset_prefix)?;
    if !dataset_prefix.is_empty() && !valid_dataset_name(&dataset_prefix) {
        return Err(Error::config(format!(
            "{} = \"{dataset_prefix}\": dataset names use letters, digits and `_` only",
            k("dataset_prefix")
        )));
    }
    let mut datasets = BTreeMap::new();
    for (system, name) in raw.datasets {
        let key = k(&format!("datasets.{system}"));
        let name = ex(&key, &name)?;
        if !valid_dataset_name(&name) {
            return Err(Error::config(format!(
                "{key} = \"{name}\": dataset names use letters, digits and `_` only"
            )));
        }
        datasets.insert(system, name);
    }
    let base_url = ex(&k("base_url"), &raw.base_url)?
        .trim_end_matches('/')
        .to_string();
    if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
        return Err(Error::config(format!(
            "{} = \"{base_url}\": use an http(s) URL ending in /bigquery/v2, e.g. {BIGQUERY_BASE_URL}",
            k("base_url")
        )));
    }
    let lake_gcs_url = match raw.lake_gcs_url {
        Some(u) => {
            let u = ex(&k("lake_gcs_url"), &u)?;
            if !u.starts_with("gs://") {
                return Err(Error::config(format!(
                    "{} = \"{u}\": must be a gs://bucket/prefix URL",
                    k("lake_gcs_url")
                )));
            }
            Some(u.trim_end_matches('/').to_string())
        }
        None => None,
    };
    let key_file = match raw.key_file {
        Some(p) => Some(resolve(&k("key_file"), &p)?),
        None => None,
    };
    Ok(Some(BigQueryConfig {
        project,
        location: ex(&k("location"), &raw.location)?,
        dataset_prefix,
        datasets,
        credentials: raw.credentials,
        key_file,
        base_url,
        lake_gcs_url,
    }))
}
fn default_kind() -> WarehouseKind {
    WarehouseKind::Local
}
fn default_wh_path() -> String {
    ".mlc/warehouse".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSync {
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    #[serde(default = "default_part_mb")]
    part_size_mb: f64,
}
impl Default for RawSync {
    fn default() -> Self {
        Self {
            concurrency: default_concurrency(),
            part_size_mb: default_part_mb(),
        }
    }
}
fn default_concurrency() -> usize {
    2
}
fn default_part_mb() -> f64 {
    32.0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVault {
    #[serde(default = "default_vault")]
    path: String,
    #[serde(default = "default_key_file")]
    key_file: String,
}
impl Default for RawVault {
    fn default() -> Self {
        Self {
            path: default_vault(),
            key_file: default_key_file(),
        }
    }
}
fn default_vault() -> String {
    ".mlc/vault.json".into()
}
fn default_key_file() -> String {
    ".mlc/master.key".into()
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefinitions {
    #[serde(default)]
    dir: Option<String>,
}

/// Settings every connection accepts, whatever its system.
const COMMON_KEYS: &[&str] = &[
    "system",
    "streams",
    "requests_per_minute",
    "max_concurrency",
    "reconcile_every_hours",
    "schema_ttl_minutes",
    "sink",
];

impl Config {
    /// Where the state store is: the Postgres URL when `state.url` is set, else the file.
    pub fn state_location(&self) -> crate::state::StateLocation {
        match &self.state_url {
            Some(url) => crate::state::StateLocation::Postgres(url.clone()),
            None => crate::state::StateLocation::File(self.state_path.clone()),
        }
    }
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::config(format!(
                    "{} not found: run `mlc init` to write one (or `mlc demo` to try ml-connector on the built-in sandbox)",
                    path.display()
                ))
            } else {
                Error::io(path, e)
            }
        })?;
        let dir = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."))
            .to_path_buf();
        Self::parse(&text, &dir, &|k| std::env::var(k).ok())
    }

    /// Parses configuration text; `env` resolves `${VAR}` references.
    pub fn parse(text: &str, dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| Error::config_from("mlc.toml", e))?;
        let ex = |key: &str, v: &str| expand(key, v, env);
        let resolve = |key: &str, v: &str| -> Result<PathBuf> {
            let p = PathBuf::from(ex(key, v)?);
            Ok(if p.is_absolute() { p } else { dir.join(p) })
        };
        if raw.sync.concurrency == 0 {
            return Err(Error::config("sync.concurrency must be at least 1"));
        }
        if !(raw.sync.part_size_mb > 0.0 && raw.sync.part_size_mb <= 4096.0) {
            return Err(Error::config(
                "sync.part_size_mb must be between 0 and 4096 (MiB; fractions allowed)",
            ));
        }
        let mut connections = BTreeMap::new();
        for (name, table) in raw.connections {
            let conn = parse_connection(&name, table, env)?;
            connections.insert(name, conn);
        }
        raw.serve.validate()?;
        Ok(Self {
            dir: dir.to_path_buf(),
            lake_url: ex("lake.url", &raw.lake.url)?,
            state_path: resolve("state.path", &raw.state.path)?,
            state_url: raw
                .state
                .url
                .as_deref()
                .map(|u| state_url(u, env))
                .transpose()?,
            state_lease: match raw.state.lease_seconds {
                0 => {
                    return Err(Error::config(
                        "state.lease_seconds must be at least 1 (60 is the default)",
                    ));
                }
                s => std::time::Duration::from_secs(s),
            },
            warehouse: WarehouseConfig {
                kind: raw.warehouse.kind,
                path: resolve("warehouse.path", &raw.warehouse.path)?,
                delete_mode: raw.warehouse.delete_mode,
                bigquery: parse_bigquery(
                    raw.warehouse.kind,
                    raw.warehouse.bigquery,
                    &ex,
                    &resolve,
                )?,
            },
            sync: SyncConfig {
                concurrency: raw.sync.concurrency,
                part_size_bytes: (raw.sync.part_size_mb * 1048576.0) as usize,
            },
            vault: VaultConfig {
                path: resolve("vault.path", &raw.vault.path)?,
                key_file: resolve("vault.key_file", &raw.vault.key_file)?,
            },
            definitions_dir: match raw.definitions.dir {
                Some(d) => resolve("definitions.dir", &d)?,
                None => dir.to_path_buf(),
            },
            connections,
            serve: raw.serve,
        })
    }

    /// A connection by name; the error lists the configured ones.
    pub fn connection(&self, name: &str) -> Result<&Connection> {
        self.connections.get(name).ok_or_else(|| {
            Error::config(format!(
                "no connection `{name}` in mlc.toml; configured: {}",
                if self.connections.is_empty() {
                    "none (add one with `mlc connection add`)".to_string()
                } else {
                    self.connections
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ))
        })
    }
}

fn parse_connection(
    name: &str,
    mut table: toml::Table,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Connection> {
    let at = |k: &str| format!("connections.{name}.{k}");
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(Error::config(format!(
            "connections.{name}: connection names use letters, digits, `_` and `-`"
        )));
    }
    let system: System = match table.get("system") {
        Some(toml::Value::String(s)) => s.parse().map_err(|_| {
            Error::config(format!(
                "{} = \"{s}\" is not a supported system; supported: {} ({} are accepted on every connection)",
                at("system"),
                System::names(),
                COMMON_KEYS.join(", ")
            ))
        })?,
        _ => {
            return Err(Error::config(format!(
                "{} is missing: set it to the system this connection reads, e.g. system = \"dataverse\"",
                at("system")
            )));
        }
    };
    // Secrets: only ${VAR} references, then expand every string.
    for (k, v) in table.iter_mut() {
        if let toml::Value::String(s) = v {
            if SECRET_KEYS.contains(&k.as_str()) && !is_env_reference(s) {
                return Err(Error::config(format!(
                    "{} holds a literal secret: secrets never go in mlc.toml. Remove it and run `mlc connection add {name}` (stored encrypted), or reference an environment variable: {k} = \"${{MY_SECRET_VAR}}\"",
                    at(k)
                )));
            }
            *s = expand(&at(k), s, env)?;
        }
    }
    let streams = match table.remove("streams") {
        None => vec![format!("{system}.*")],
        Some(v) => v
            .try_into::<Vec<String>>()
            .map_err(|e| Error::config(format!("{}: {e}", at("streams"))))?,
    };
    let requests_per_minute = match table.remove("requests_per_minute") {
        None => None,
        Some(v) => Some(
            v.try_into::<u32>()
                .map_err(|e| Error::config(format!("{}: {e}", at("requests_per_minute"))))?,
        ),
    };
    let max_concurrency = match table.remove("max_concurrency") {
        None => None,
        Some(v) => Some(
            v.try_into::<usize>()
                .map_err(|e| Error::config(format!("{}: {e}", at("max_concurrency"))))?,
        ),
    };
    let number = |key: &str, unit: &str, v: Option<toml::Value>| -> Result<Option<f64>> {
        v.map(|v| {
            v.as_float()
                .or_else(|| v.as_integer().map(|i| i as f64))
                .filter(|h| *h >= 0.0)
                .ok_or_else(|| {
                    Error::config(format!(
                        "{} must be a number of {unit} (0 = every run)",
                        at(key)
                    ))
                })
        })
        .transpose()
    };
    let reconcile_every_hours = number(
        "reconcile_every_hours",
        "hours",
        table.remove("reconcile_every_hours"),
    )?;
    let schema_ttl_minutes = number(
        "schema_ttl_minutes",
        "minutes",
        table.remove("schema_ttl_minutes"),
    )?;
    let sink = match table.remove("sink") {
        None => BTreeMap::new(),
        Some(v) => v
            .try_into::<BTreeMap<String, BTreeMap<String, MappingOverride>>>()
            .map_err(|e| {
                Error::config(format!(
                    "{}: {} (e.g. [connections.{name}.sink.dynamics_to_deltek.account] external_id_field = \"CustCRMId\", defaults = {{ Type = \"C\" }})",
                    at("sink"),
                    e.to_string().trim()
                ))
            })?,
    };
    table.remove("system");
    let settings = crate::systems::settings::parse_settings(system, table, &KeyPath::new(name))?;
    Ok(Connection {
        name: name.to_string(),
        settings,
        streams,
        requests_per_minute,
        max_concurrency,
        reconcile_every_hours,
        schema_ttl_minutes,
        sink,
    })
}

/// `${VAR}` exactly (what a secret key may hold).
fn is_env_reference(s: &str) -> bool {
    s.strip_prefix("${")
        .and_then(|r| r.strip_suffix('}'))
        .is_some_and(|v| !v.is_empty() && !v.contains('}') && !v.contains(":-"))
}

/// Expands `${VAR}` and `${VAR:-default}` in `value`; `key` names the setting in errors.
pub fn expand(key: &str, value: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| Error::config(format!("{key}: unclosed `${{` in \"{value}\"")))?;
        let inner = &after[..end];
        let (var, default) = match inner.split_once(":-") {
            Some((v, d)) => (v, Some(d)),
            None => (inner, None),
        };
        if var.is_empty() {
            return Err(Error::config(format!(
                "{key}: empty variable name in \"{value}\""
            )));
        }
        match (env(var), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                // A secret has no sensible default (and a literal one is refused anyway).
                let secret = SECRET_KEYS
                    .iter()
                    .any(|s| key.rsplit('.').next() == Some(*s));
                return Err(Error::config(if secret {
                    format!("{key}: environment variable {var} is not set: export it")
                } else {
                    format!(
                        "{key}: environment variable {var} is not set (export it, or write ${{{var}:-default}})"
                    )
                }));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The commented configuration `mlc init` writes.
pub fn template() -> &'static str {
    include_str!("config_template.toml")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "TENANT" => Some("contoso.onmicrosoft.com".into()),
            "SECRET" => Some("s3cr3t".into()),
            _ => None,
        }
    }

    #[test]
    fn template_parses() {
        let c = Config::parse(template(), Path::new("/p"), &env).unwrap();
        assert_eq!(c.lake_url, "file://.mlc/lake");
        assert_eq!(c.state_path, Path::new("/p/.mlc/state.db"));
        assert_eq!(c.warehouse.kind, WarehouseKind::Local);
    }

    #[test]
    fn connection_with_env_and_defaults() {
        let c = Config::parse(
            r#"
            [connections.crm]
            system = "dataverse"
            environment_url = "https://contoso.crm.dynamics.com/"
            tenant_id = "${TENANT}"
            client_id = "abc"
            client_secret = "${SECRET}"
            "#,
            Path::new("."),
            &env,
        )
        .unwrap();
        let conn = c.connection("crm").unwrap();
        let ConnectionSettings::Dataverse(d) = &conn.settings else {
            panic!("a dataverse connection")
        };
        assert_eq!(d.tenant_id, "contoso.onmicrosoft.com");
        use secrecy::ExposeSecret;
        assert_eq!(
            d.client_secret.as_ref().map(|s| s.expose_secret()),
            Some("s3cr3t")
        );
        assert!(
            !format!("{c:?}").contains("s3cr3t"),
            "Debug never shows secrets"
        );
        assert_eq!(d.scope(), "https://contoso.crm.dynamics.com/.default");
        assert_eq!(d.authority_url, "https://login.microsoftonline.com");
        assert_eq!(conn.streams, vec!["dataverse.*"]);
        assert!(
            c.connection("nope")
                .unwrap_err()
                .to_string()
                .contains("crm")
        );
    }

    /// A secret read from an unset variable gets no `${VAR:-default}` hint: a secret has no
    /// default, and a literal one is refused.
    #[test]
    fn an_unset_secret_variable_offers_no_default() {
        let e = Config::parse(
            "[connections.crm]\nsystem = \"dataverse\"\nenvironment_url = \"https://x.crm.dynamics.com\"\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"${MISSING_SECRET}\"\n",
            Path::new("."),
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("MISSING_SECRET is not set: export it"), "{e}");
        assert!(!e.contains(":-default"), "{e}");
        let e = Config::parse(
            "[connections.crm]\nsystem = \"dataverse\"\nenvironment_url = \"${MISSING_URL}\"\ntenant_id = \"t\"\nclient_id = \"c\"\n",
            Path::new("."),
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("${MISSING_URL:-default}"), "{e}");
    }

    /// Vantagepoint times carry no zone: a connection must name the server's, never fall back
    /// to UTC silently.
    #[test]
    fn a_deltek_connection_needs_its_time_zone() {
        let section = "[connections.vp]\nsystem = \"deltek\"\nbase_url = \"https://acme.deltekfirst.com/acme/api\"\ndatabase = \"acme\"\nusername = \"api\"\nclient_id = \"c\"\n";
        let e = Config::parse(section, Path::new("."), &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("connections.vp.time_zone is not set") && e.contains("America/New_York"),
            "{e}"
        );
        let c = Config::parse(
            &format!("{section}time_zone = \"Europe/London\"\n"),
            Path::new("."),
            &env,
        )
        .unwrap();
        assert_eq!(
            c.connection("vp").unwrap().naive_time_zone(),
            Some("Europe/London")
        );
    }

    #[test]
    fn errors_name_the_key_and_the_fix() {
        let e = Config::parse(
            "[connections.crm]\nsystem = \"dataverse\"\nenvironment_url = \"https://x\"\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"plain\"\n",
            Path::new("."),
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("connections.crm.client_secret") && e.contains("mlc connection add"),
            "{e}"
        );

        let e = Config::parse(
            "[connections.crm]\nsystem = \"dataverse\"\nenvironment_url = \"https://x\"\ntenant_id = \"${NOPE}\"\nclient_id = \"c\"\n",
            Path::new("."),
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("connections.crm.tenant_id") && e.contains("NOPE"),
            "{e}"
        );

        let e = Config::parse(
            "[connections.crm]\nsystem = \"dataverse\"\nenvironment_url = \"https://x\"\ntenant = \"t\"\nclient_id = \"c\"\n",
            Path::new("."),
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("tenant"), "{e}");

        let e = Config::parse("[lake]\nurl2 = 1\n", Path::new("."), &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("url2"), "{e}");

        let e = Config::parse(
            "[connections.crm]\nsystem = \"salesforce\"\n",
            Path::new("."),
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("connections.crm.system") && e.contains("business_central, deltek"),
            "{e}"
        );
    }

    #[test]
    fn looker_host_and_port() {
        let c = Config::parse(
            "[connections.bi]\nsystem = \"looker\"\nbase_url = \"https://acme.looker.com/\"\nport = 19999\nclient_id = \"id\"\nclient_secret = \"${SECRET}\"\n",
            Path::new("."),
            &env,
        )
        .unwrap();
        let conn = c.connection("bi").unwrap();
        assert_eq!(conn.url(), "https://acme.looker.com:19999/api/4.0");
        assert_eq!(conn.streams, vec!["looker.*"]);
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let ConnectionSettings::Looker(l) = &conn.settings else {
            panic!("a looker connection")
        };
        assert_eq!(l.query_timeout_seconds, 600.0);
    }

    #[test]
    fn state_url_takes_its_password_only_from_the_environment() {
        let env = |k: &str| (k == "PW").then(|| "s3cret".to_string());
        let parse = |url: &str| {
            Config::parse(
                &format!("[state]\nurl = \"{url}\"\n"),
                Path::new("/p"),
                &env,
            )
        };
        let c = parse("postgres://mlc:${PW}@db:5432/mlc").unwrap();
        use secrecy::ExposeSecret;
        assert_eq!(
            c.state_url.as_ref().unwrap().expose_secret(),
            "postgres://mlc:s3cret@db:5432/mlc"
        );
        assert!(matches!(
            c.state_location(),
            crate::state::StateLocation::Postgres(_)
        ));
        assert!(!format!("{c:?}").contains("s3cret"), "never printed");
        let err = parse("postgres://mlc:s3cret@db/mlc")
            .unwrap_err()
            .to_string();
        assert!(err.contains("password written out"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        let err = parse("mysql://db/mlc").unwrap_err().to_string();
        assert!(err.contains("state.url must be a Postgres URL"), "{err}");
        // Unset: the SQLite file.
        let c = Config::parse("", Path::new("/p"), &env).unwrap();
        assert!(matches!(
            c.state_location(),
            crate::state::StateLocation::File(_)
        ));
    }

    #[test]
    fn expands_defaults() {
        assert_eq!(expand("k", "a${X:-b}c", &env).unwrap(), "abc");
        assert!(expand("k", "${X", &env).is_err());
    }

    #[test]
    fn bigquery_warehouse_keys() {
        let c = Config::parse(
            r#"
            [warehouse]
            kind = "bigquery"
            delete_mode = "soft"
            [warehouse.bigquery]
            project = "${TENANT:-x}"
            location = "EU"
            key_file = "keys/sa.json"
            credentials = "service_account_key"
            datasets = { deltek = "erp_deltek" }
            base_url = "http://127.0.0.1:9050/bigquery/v2/"
            "#,
            Path::new("/p"),
            &|_| None,
        )
        .unwrap();
        let bq = c.warehouse.bigquery.unwrap();
        assert_eq!(bq.project, "x");
        assert_eq!(bq.location, "EU");
        assert_eq!(bq.credentials, BigQueryCredentials::ServiceAccountKey);
        assert_eq!(bq.key_file.as_deref(), Some(Path::new("/p/keys/sa.json")));
        assert_eq!(bq.dataset("deltek", None), "erp_deltek");
        assert_eq!(bq.dataset("dataverse", None), "raw_dataverse");
        assert_eq!(bq.dataset("looker", Some("ref_looker")), "ref_looker");
        assert_eq!(bq.base_url, "http://127.0.0.1:9050/bigquery/v2");
        assert_eq!(bq.lake_gcs_url, None);
    }

    #[test]
    fn bigquery_errors_name_the_key() {
        let err = |text: &str| {
            Config::parse(text, Path::new("."), &|_| None)
                .unwrap_err()
                .to_string()
        };
        assert!(err("[warehouse]\nkind = \"bigquery\"\n").contains("[warehouse.bigquery]"));
        assert!(err("[warehouse]\nkind = \"bigquery\"\n[warehouse.bigquery]\nproject = \"p\"\nlake_gcs_url = \"s3://b\"\n")
            .contains("warehouse.bigquery.lake_gcs_url"));
        assert!(err("[warehouse]\nkind = \"bigquery\"\n[warehouse.bigquery]\nproject = \"p\"\ndataset_prefix = \"raw-\"\n")
            .contains("warehouse.bigquery.dataset_prefix"));
        assert!(
            err("[warehouse.bigquery]\nproject = \"p\"\ncredentials = \"magic\"\n")
                .contains("credentials")
        );
    }
}

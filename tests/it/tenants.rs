//! Every system against every tenant variant of the sandbox (`standard`, `lean`, `custom`),
//! with the default catalog and configuration: the warehouse must equal each tenant's own
//! truth (`Sandbox::truth`, the rows as its API serves them) row by row and column by column,
//! after a full sync, after an incremental sync and after a reconcile. The fakes define their
//! own schemas, so a column the tenant lacks, a custom field, a drifted value or an archived
//! deal fails these tests when mlc gets it wrong.

use std::collections::{BTreeMap, BTreeSet};

use ml_connector::config::Connection;
use ml_connector::loaders::warehouse::OutputFormat;
use ml_connector::run::{Context, RunRequest, RunSummary, run_many};
use ml_connector::sandbox::{Sandbox, SandboxOptions, Tenant, TruthRow};
use ml_connector::spec::{ColumnType, Stream};
use serde_json::{Map, Value};
use tempfile::TempDir;

/// A project reading every system of one sandbox tenant (Looker aside: its tables are query
/// results, checked in looker_sync).
pub struct World {
    /// Holds the project folder for the world's lifetime.
    pub _dir: TempDir,
    pub sandbox: Sandbox,
    pub ctx: Context,
}

impl World {
    pub async fn new(tenant: Tenant, scale: u64) -> World {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::start(
            SandboxOptions {
                scale,
                tenant,
                retry_after_secs: 0,
                ..SandboxOptions::default()
            },
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let config = ml_connector::demo::write_project(dir.path(), &sandbox, "", false).unwrap();
        let ctx = Context::open(config).unwrap();
        World {
            _dir: dir,
            sandbox,
            ctx,
        }
    }

    fn connections(&self) -> Vec<&Connection> {
        self.ctx
            .config
            .connections
            .values()
            .filter(|c| c.system() != "looker")
            .collect()
    }

    /// Syncs every stream; panics with the failures if any stream failed.
    pub async fn sync(&self, full: bool) -> BTreeMap<String, RunSummary> {
        let conns = self.connections();
        let results = run_many(&self.ctx, &conns, &[], &RunRequest::Sync { full })
            .await
            .unwrap();
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

    fn conn_of(&self, system: &str) -> &Connection {
        self.connections()
            .into_iter()
            .find(|c| c.system() == system)
            .unwrap()
    }

    /// The stream as this tenant has it (absent columns flagged, the tenant's fields added),
    /// from the live schema the runs cached and the column names they gave.
    fn reconciled(&self, stream: &Stream) -> Stream {
        let conn = self.conn_of(&stream.id.system);
        let live = self
            .ctx
            .state
            .live_schema(&conn.name, &stream.id.to_string())
            .unwrap();
        ml_connector::tenant::reconcile(&self.ctx.state, &conn.name, stream, live.as_ref())
            .unwrap()
            .stream
    }

    fn rows(&self, sql: &str) -> Vec<Map<String, Value>> {
        let json = self.ctx.warehouse.query(sql, OutputFormat::Json).unwrap();
        serde_json::from_str(&json).unwrap()
    }

    /// The tenant's rows of `stream`, keyed by payload field, ready to compare: Business
    /// Central rows with the company they belong to (`$company_id`), Deltek rows under the
    /// names the stream's variant gives them, Pipedrive custom fields flattened the way the
    /// API documents them (option ids as labels, monetary values and their currency apart).
    async fn truth(&self, stream: &Stream) -> Option<Vec<TruthRow>> {
        let (system, entity) = (stream.id.system.as_str(), stream.id.entity.as_str());
        match system {
            "business_central" => {
                let mut all = Vec::new();
                for (id, _) in self.sandbox.business_central_companies() {
                    for mut r in self.sandbox.business_central_company_truth(&id, entity)? {
                        r.insert("$company_id".into(), Value::String(id.clone()));
                        all.push(r);
                    }
                }
                Some(all)
            }
            "deltek" => {
                let rows = self.sandbox.truth(system, entity)?;
                let rename = stream
                    .spec
                    .variants
                    .get("project_stage")
                    .map(|v| v.rename.clone())
                    .unwrap_or_default();
                Some(
                    rows.into_iter()
                        .map(|r| {
                            r.into_iter()
                                .map(|(k, v)| (rename.get(&k).cloned().unwrap_or(k), v))
                                .collect()
                        })
                        .collect(),
                )
            }
            "pipedrive" => {
                let rows = self.sandbox.truth(system, entity)?;
                let defs = self.pipedrive_fields(entity).await;
                Some(rows.into_iter().map(|r| flatten(r, &defs)).collect())
            }
            _ => self.sandbox.truth(system, entity),
        }
    }

    /// Pipedrive's custom field definitions of `entity` as the tenant lists them (key →
    /// (type, option id → label)), read over HTTP.
    async fn pipedrive_fields(
        &self,
        entity: &str,
    ) -> BTreeMap<String, (String, BTreeMap<i64, Value>)> {
        let mut out = BTreeMap::new();
        if !matches!(entity, "deal" | "person" | "organization" | "product") {
            return out;
        }
        let (settings, secrets) = self.sandbox.pipedrive_connection();
        let base = settings
            .lines()
            .find_map(|l| l.strip_prefix("api_url = "))
            .unwrap()
            .trim_matches('"')
            .to_string();
        let token = &secrets[0].1;
        let body: Value = reqwest::Client::new()
            .get(format!("{base}/api/v2/{entity}Fields?limit=500"))
            .header("x-api-token", token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for f in body["data"].as_array().unwrap() {
            if f["is_custom_field"] != true {
                continue;
            }
            let options = f["options"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|o| (o["id"].as_i64().unwrap(), o["label"].clone()))
                        .collect()
                })
                .unwrap_or_default();
            out.insert(
                f["field_code"].as_str().unwrap().to_string(),
                (f["field_type"].as_str().unwrap().to_string(), options),
            );
        }
        out
    }

    /// Compares the warehouse table of `stream` with the tenant's truth. Returns the
    /// mismatches (empty: equal) and how many values drifted (NULL in their column, kept in
    /// `_ml_extra` under the column's name).
    pub async fn compare(&self, stream: &Stream) -> (Vec<String>, u64) {
        let sid = stream.id.to_string();
        let Some(truth) = self.truth(stream).await else {
            return (vec![format!("{sid}: the tenant has no such table")], 0);
        };
        let eff = self.reconciled(stream);
        let tz: Option<chrono_tz::Tz> = self
            .conn_of(&stream.id.system)
            .naive_time_zone()
            .map(|z| z.parse().unwrap());
        let keys: Vec<&ml_connector::spec::Column> = eff
            .catalog
            .primary_key
            .iter()
            .map(|k| eff.catalog.columns.iter().find(|c| &c.name == k).unwrap())
            .collect();
        let key_of_truth = |r: &TruthRow| -> String {
            keys.iter()
                .map(|c| text(r.get(c.source_name()).unwrap_or(&Value::Null)))
                .collect::<Vec<_>>()
                .join("|")
        };
        let key_of_row = |r: &Map<String, Value>| -> String {
            keys.iter()
                .map(|c| text(&r[&c.name]))
                .collect::<Vec<_>>()
                .join("|")
        };
        let table = self.rows(&format!(
            "SELECT * FROM {}.{} WHERE NOT COALESCE(_ml_deleted, FALSE)",
            eff.dataset(),
            eff.id.entity
        ));
        let by_key: BTreeMap<String, &Map<String, Value>> =
            table.iter().map(|r| (key_of_row(r), r)).collect();
        let truth_keys: BTreeSet<String> = truth.iter().map(key_of_truth).collect();
        let mut bad = Vec::new();
        if by_key.len() != table.len() {
            bad.push(format!("{sid}: duplicate keys in the warehouse"));
        }
        for k in by_key.keys().filter(|k| !truth_keys.contains(*k)) {
            bad.push(format!("{sid} {k}: in the warehouse, not in the tenant"));
        }
        let mut drifted = 0;
        for t in &truth {
            let k = key_of_truth(t);
            let Some(row) = by_key.get(&k) else {
                bad.push(format!("{sid} {k}: in the tenant, not in the warehouse"));
                continue;
            };
            let extra: Map<String, Value> = row
                .get("_ml_extra")
                .and_then(Value::as_str)
                .and_then(|e| serde_json::from_str(e).ok())
                .unwrap_or_default();
            for c in &eff.catalog.columns {
                let actual = &row[&c.name];
                if c.absent {
                    if !actual.is_null() {
                        bad.push(format!(
                            "{sid} {k} {}: absent in the tenant, yet {actual}",
                            c.name
                        ));
                    }
                    continue;
                }
                let expected = t.get(c.source_name()).unwrap_or(&Value::Null);
                if same(expected, actual, c.ty, tz) {
                    continue;
                }
                if actual.is_null() && extra.get(&c.name) == Some(expected) {
                    drifted += 1;
                    continue;
                }
                bad.push(format!(
                    "{sid} {k} {} ({}): tenant {expected}, warehouse {actual}",
                    c.name, c.ty
                ));
            }
        }
        (bad, drifted)
    }

    /// Every stream of every system equals its tenant (absent entities aside). Returns the
    /// drifted values per stream.
    pub async fn assert_equals_tenant(&self, when: &str) -> BTreeMap<String, u64> {
        let mut bad = Vec::new();
        let mut drift = BTreeMap::new();
        for conn in self.connections() {
            for stream in self.ctx.streams_for(conn, &[]).unwrap() {
                if self.truth(stream).await.is_none() {
                    continue;
                }
                let (b, d) = self.compare(stream).await;
                bad.extend(b.into_iter().take(5));
                drift.insert(stream.id.to_string(), d);
            }
        }
        assert!(
            bad.is_empty(),
            "{when}: the warehouse differs from the tenant:\n{}",
            bad.join("\n")
        );
        drift
    }
}

/// A Pipedrive record with its `custom_fields` flattened as the API documents their values:
/// each under its field code, option ids as their labels, a monetary value and its currency
/// apart.
fn flatten(mut r: TruthRow, defs: &BTreeMap<String, (String, BTreeMap<i64, Value>)>) -> TruthRow {
    let Some(Value::Object(custom)) = r.remove("custom_fields") else {
        return r;
    };
    for (code, v) in custom {
        let Some((ty, options)) = defs.get(&code) else {
            r.insert(code, v);
            continue;
        };
        let label = |v: &Value| {
            v.as_i64()
                .and_then(|id| options.get(&id).cloned())
                .unwrap_or_else(|| v.clone())
        };
        match (ty.as_str(), v) {
            ("enum", v) => {
                r.insert(code, label(&v));
            }
            ("set", Value::Array(a)) => {
                r.insert(code, Value::Array(a.iter().map(label).collect()));
            }
            ("monetary", Value::Object(m)) => {
                r.insert(
                    format!("{code}_currency"),
                    m.get("currency").cloned().unwrap_or(Value::Null),
                );
                r.insert(code, m.get("value").cloned().unwrap_or(Value::Null));
            }
            (_, v) => {
                r.insert(code, v);
            }
        }
    }
    r
}

/// A key value as text.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An instant in µs: RFC 3339, or a wall-clock time in `tz` (Deltek), or UTC.
fn instant(v: &Value, tz: Option<chrono_tz::Tz>) -> Option<i64> {
    let s = v.as_str()?;
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
        .ok()?;
    Some(match tz {
        Some(tz) => chrono::TimeZone::from_local_datetime(&tz, &naive)
            .earliest()?
            .timestamp_micros(),
        None => naive.and_utc().timestamp_micros(),
    })
}

/// Whether the warehouse holds `expected` (as the tenant serves it) in a column of type `ty`.
fn same(expected: &Value, actual: &Value, ty: ColumnType, tz: Option<chrono_tz::Tz>) -> bool {
    if expected.is_null() || actual.is_null() {
        return expected.is_null() && actual.is_null();
    }
    match ty {
        ColumnType::String => text(expected) == text(actual),
        ColumnType::Int64 => number(expected).is_some_and(|e| number(actual) == Some(e)),
        ColumnType::Float64 => match (number(expected), number(actual)) {
            (Some(e), Some(a)) => (e - a).abs() <= 1e-9 * e.abs().max(1.0),
            _ => false,
        },
        ColumnType::Decimal { scale, .. } => match (number(expected), number(actual)) {
            (Some(e), Some(a)) => {
                (e - a).abs() <= 0.5 * 10f64.powi(-i32::from(scale)) + 1e-9 * e.abs()
            }
            _ => false,
        },
        ColumnType::Bool => expected.as_bool().is_some() && text(expected) == text(actual),
        ColumnType::Date => {
            let (e, a) = (text(expected), text(actual));
            e.len() >= 10 && e.get(..10) == a.get(..10)
        }
        ColumnType::Timestamp => {
            instant(expected, tz).is_some() && instant(expected, tz) == instant(actual, None)
        }
        ColumnType::Json => actual
            .as_str()
            .and_then(|a| serde_json::from_str::<Value>(a).ok())
            .is_some_and(|a| &a == expected),
    }
}

async fn every_run_equals_the_tenant(tenant: Tenant) -> (World, BTreeMap<String, RunSummary>) {
    let w = World::new(tenant, 200).await;
    let full = w.sync(false).await;
    w.assert_equals_tenant("after the full sync").await;
    w.sandbox.mutate();
    let incr = w.sync(false).await;
    for (stream, s) in &incr {
        let every_run_whole = w
            .ctx
            .defs
            .get(&stream.parse().unwrap())
            .unwrap()
            .spec
            .incremental
            == ml_connector::spec::Incremental::Full;
        if s.status != "absent" && !every_run_whole {
            assert_eq!(s.kind, "incremental", "{stream}: {:?}", s.notes);
        }
    }
    w.assert_equals_tenant("after an incremental sync").await;
    w.sandbox.mutate();
    w.sync(true).await;
    w.assert_equals_tenant("after a full reconcile").await;
    (w, full)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standard_tenant_lands_whole() {
    let (w, full) = every_run_equals_the_tenant(Tenant::Standard).await;
    assert!(full.values().all(|s| s.status == "ok"));
    // The tenant's own fields land as columns without `mlc discover`.
    let acc = &full["dataverse.account"];
    let new: Vec<&str> = acc
        .schema
        .new_columns
        .iter()
        .map(|(c, _)| c.as_str())
        .collect();
    assert!(
        new.contains(&"new_tier") && new.contains(&"new_region"),
        "{new:?}"
    );
    // Generated LookML (and dbt sources) list the tenant's columns once runs have met them.
    let defs =
        ml_connector::tenant::with_tenant_columns(&w.ctx.state, &w.ctx.config, w.ctx.defs.clone())
            .unwrap();
    let account = defs.get(&"dataverse.account".parse().unwrap()).unwrap();
    let view = ml_connector::catalog_export::lookml::view(account);
    assert!(view.contains("dimension: new_tier"), "{view}");
    // Archived deals are rows, not deletes.
    let archived = w.rows("SELECT COUNT(*) AS n FROM raw_pipedrive.deal WHERE is_archived");
    assert_ne!(archived[0]["n"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lean_tenant_lands_what_it_has_and_says_what_it_lacks() {
    let (w, full) = every_run_equals_the_tenant(Tenant::Lean).await;
    // Entities the tenant does not have are absent, not failed.
    for s in [
        "dataverse.lead",
        "dataverse.quote",
        "dataverse.salesorder",
        "dataverse.invoice",
        "business_central.dimension_value",
        "deltek.ap_voucher",
    ] {
        assert_eq!(full[s].status, "absent", "{s}: {:?}", full[s]);
        assert!(full[s].schema.entity_absent.is_some(), "{s}");
    }
    // Columns it lacks are not requested, stay NULL, and are reported.
    let acc = &full["dataverse.account"];
    assert!(
        acc.schema
            .absent_columns
            .contains(&"telephone2".to_string()),
        "{:?}",
        acc.schema
    );
    assert!(
        acc.notes
            .iter()
            .any(|n| n.contains("absent in tenant") && n.contains("telephone2"))
    );
    let contact = &full["dataverse.contact"].schema.absent_columns;
    assert!(
        contact.contains(&"department".to_string()) && contact.contains(&"jobtitle".to_string())
    );
    assert!(
        full["dataverse.opportunity"]
            .schema
            .absent_columns
            .contains(&"originatingleadid".to_string())
    );
    assert!(
        full["deltek.project"]
            .schema
            .absent_columns
            .contains(&"probability".to_string())
    );
    // The run history says so too.
    let absent = w.ctx.state.runs(Some("dataverse.lead"), 10).unwrap();
    assert!(absent.iter().all(|r| r.status == "absent"), "{absent:?}");
    // Deltek's activity hub answers no metadata: read from the catalog as is, and said.
    assert!(full["deltek.activity"].schema.metadata_unknown.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_tenant_keeps_every_value_of_every_field() {
    let (w, full) = every_run_equals_the_tenant(Tenant::Custom).await;
    // Pipedrive: the custom "Industry" does not take the standard `industry` column: it gets
    // a suffix from its field code, and so does "Employee Count" (standard `employee_count`).
    let org = &full["pipedrive.organization"].schema.new_columns;
    for (wanted, (column, code)) in ["industry", "employee_count"].iter().map(|w| {
        let hit = org
            .iter()
            .find(|(c, code)| c == &format!("{w}_{}", &code[..6]))
            .unwrap_or_else(|| panic!("no suffixed {w} column in {org:?}"));
        (w, hit)
    }) {
        assert_ne!(column, wanted);
        assert!(column.ends_with(&code[..6]));
    }
    assert!(!org.iter().any(|(c, _)| c == "industry"));
    // Non-Latin names become readable ASCII columns.
    let cols: Vec<&str> = org.iter().map(|(c, _)| c.as_str()).collect();
    assert!(cols.contains(&"otrasl"), "{cols:?}");
    // Values whose type drifts land with their rows, counted per column.
    assert!(
        !full["pipedrive.user"].drift.is_empty(),
        "{:?}",
        full["pipedrive.user"]
    );
    assert!(full.values().all(|s| s.quarantined == 0));
    let drift: u64 = w.assert_equals_tenant("again").await.values().sum();
    assert!(drift > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_custom_field_keeps_its_column() {
    let w = World::new(Tenant::Standard, 100).await;
    let full = w.sync(false).await;
    let deal = &full["pipedrive.deal"].schema.new_columns;
    let (column, code) = deal
        .iter()
        .find(|(c, _)| c == "contract_type")
        .cloned()
        .unwrap_or_else(|| panic!("{deal:?}"));
    assert!(
        w.sandbox
            .pipedrive_rename_custom_field("deal", "Contract Type", "Agreement Kind")
    );
    w.sandbox.mutate();
    // Read the field definitions again (as a run does once their cache expires).
    let conn = w.conn_of("pipedrive");
    let ep = ml_connector::connect::endpoint(conn, &w.ctx.vault).unwrap();
    let stream = w.ctx.defs.get(&"pipedrive.deal".parse().unwrap()).unwrap();
    ml_connector::tenant::live(&w.ctx.state, conn, &ep, stream, true)
        .await
        .unwrap();
    let incr = w.sync(false).await;
    let deal = &incr["pipedrive.deal"];
    assert_eq!(deal.kind, "incremental", "{:?}", deal.notes);
    assert!(
        deal.schema
            .new_columns
            .contains(&(column.clone(), code.clone())),
        "the field keeps `{column}`: {:?}",
        deal.schema.new_columns
    );
    assert!(
        !deal
            .schema
            .new_columns
            .iter()
            .any(|(c, _)| c == "agreement_kind")
    );
    w.assert_equals_tenant("after the rename").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_column_is_read_whole_on_the_next_run() {
    let w = World::new(Tenant::Standard, 100).await;
    w.sync(false).await;
    // The project's catalog starts reading a column the tenant has (creditlimit): its values
    // for every row, not only for rows that change, must arrive.
    let builtin = include_str!("../../catalog/dataverse/account.toml");
    let extended = builtin.replacen(
        "columns = [\n",
        "columns = [\n  { name = \"creditlimit\", type = \"decimal(19,4)\", description = \"Credit limit.\" },\n",
        1,
    );
    let dir = w._dir.path().join("catalog/dataverse");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("account.toml"), extended).unwrap();
    let ctx = Context::open(w.ctx.config.clone()).unwrap();
    let conn = w.conn_of("dataverse");
    let out = run_many(
        &ctx,
        &[conn],
        &["dataverse.account".into()],
        &RunRequest::Sync { full: false },
    )
    .await
    .unwrap();
    let s = out[0].1.as_ref().unwrap();
    assert_eq!(s.kind, "snapshot", "{:?}", s.notes);
    assert!(
        s.notes.iter().any(|n| n.contains("column set changed")),
        "{:?}",
        s.notes
    );
    let w = World { ctx, ..w };
    let stream = w
        .ctx
        .defs
        .get(&"dataverse.account".parse().unwrap())
        .unwrap();
    let (bad, _) = w.compare(stream).await;
    assert!(bad.is_empty(), "{bad:#?}");
    let filled =
        w.rows("SELECT COUNT(*) AS n FROM raw_dataverse.account WHERE creditlimit IS NOT NULL");
    assert_ne!(filled[0]["n"], 0);
    // And the next run is incremental again.
    let again = run_many(
        &w.ctx,
        &[w.conn_of("dataverse")],
        &["dataverse.account".into()],
        &RunRequest::Sync { full: false },
    )
    .await
    .unwrap();
    assert_eq!(again[0].1.as_ref().unwrap().kind, "incremental");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_goes_on_past_what_it_cannot_read() {
    use ml_connector::discover::{Discovered, Outcome};
    use ml_connector::systems::discover;
    let w = World::new(Tenant::Lean, 50).await;
    let found = |name: &'static str| {
        let w = &w;
        async move {
            let conn = w.ctx.config.connection(name).unwrap();
            let ep = ml_connector::connect::endpoint(conn, &w.ctx.vault).unwrap();
            let out: BTreeMap<String, Outcome> = discover(conn, &ep, &w.ctx.defs, &[])
                .await
                .unwrap()
                .into_iter()
                .map(|Discovered { entity, outcome }| (entity, outcome))
                .collect();
            out
        }
    };
    // Dataverse without Sales: those tables are absent, the others drafted.
    let dv = found("crm").await;
    for t in ["lead", "quote", "salesorder", "invoice"] {
        assert!(matches!(dv[t], Outcome::Absent(_)), "{t}: {:?}", dv[t]);
    }
    let Outcome::Drafted(account) = &dv["account"] else {
        panic!("{:?}", dv["account"]);
    };
    assert!(
        !account
            .catalog
            .columns
            .iter()
            .any(|c| c.name == "telephone2")
    );
    // Deltek: the hub without metadata is an error of its own; the others are drafted.
    let vp = found("vp").await;
    assert!(
        matches!(&vp["activity"], Outcome::Failed(why) if why.contains("404")),
        "{:?}",
        vp["activity"]
    );
    assert!(matches!(vp["firm"], Outcome::Drafted(_)));
    // Looker: every saved Look no stream reads yet gets a stream and a catalog.
    let bi = found("bi").await;
    let Outcome::Drafted(look) = &bi["look_2"] else {
        panic!("{:?}", bi.keys().collect::<Vec<_>>());
    };
    let stream = look.stream_toml.as_deref().unwrap();
    assert!(
        stream.contains("look_id = \"2\"") && stream.contains("limit = -1"),
        "{stream}"
    );
    assert!(look.catalog.columns.len() > 1);
    assert!(
        !bi.contains_key("look_1"),
        "Look 1 is read by pipeline_by_stage already"
    );
    // ... and the model's explores are listed with the streams that read them.
    assert!(
        matches!(&bi["explore_finance_budget"], Outcome::Available(how) if how.contains("read by budget_summary")),
        "{:?}",
        bi["explore_finance_budget"]
    );
    assert!(
        matches!(&bi["explore_finance_ledger"], Outcome::Available(how) if how.contains("no stream reads it") && how.contains("view = \"ledger\"")),
        "{:?}",
        bi["explore_finance_ledger"]
    );
}

/// What the default cadence costs: a run with nothing to read is one request per stream, plus,
/// for streams without a delete feed whose key-set pass fits in ten pages (tables of a few
/// thousand rows), that pass's pages; the tenant's metadata is read again only when its cache
/// expires (`schema_ttl_minutes`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_run_costs_a_request_per_stream_plus_small_key_set_passes() {
    let w = World::new(Tenant::Standard, 2000).await;
    let before = w.sandbox.stats();
    let first = w.sync(false).await;
    let after_first = w.sandbox.stats();
    let idle = w.sync(false).await;
    let after = w.sandbox.stats();
    let cost = |kind: &str| after.kind(kind) - after_first.kind(kind);
    let metadata_first = after_first.kind("metadata") - before.kind("metadata");
    eprintln!(
        "first run: {} metadata requests for {} streams; idle run: metadata {}, dataverse {}, business_central {}, deltek {}, pipedrive {}",
        metadata_first,
        first.len(),
        cost("metadata"),
        cost("data"),
        cost("business_central"),
        cost("deltek"),
        cost("pipedrive")
    );
    assert_eq!(cost("metadata"), 0, "the live schema is cached");
    // Dataverse has a delete feed: one delta request per table.
    assert_eq!(cost("data"), 9);
    for (s, r) in &idle {
        let stream = w.ctx.defs.get(&s.parse().unwrap()).unwrap();
        if stream.spec.incremental == ml_connector::spec::Incremental::Full {
            continue;
        }
        assert_eq!(r.rows_extracted, 0, "{s}");
        // Every table here is small enough for a key-set pass on every run.
        if stream.spec.reconcile.is_some() {
            assert!(
                r.notes.iter().any(|n| n.contains("key-set")),
                "{s}: {:?}",
                r.notes
            );
            assert!(r.last_keyset.is_some(), "{s}");
        }
    }
}

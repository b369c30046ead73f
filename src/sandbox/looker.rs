//! The Looker fake (API 4.0 under `/looker/api/4.0/`): `POST login` (form body or query
//! string; `Authorization: token …` or `Bearer …` afterwards; no refresh token), `POST queries`
//! (validated against a small `finance` model), `GET looks` and `GET looks/{id}` (two saved
//! Looks, in the Look / LookWithQuery shapes of the 4.0 OpenAPI, `fields=` honoured),
//! `GET lookml_models[/{name}[/explores/{explore}]]` (the model, its explores and their
//! fields), async
//! `query_tasks` that move `added` → `running` → `complete` one status poll at a time (or end in
//! `error` or `expired`, or stall), their `results` (202 — or the older releases' 204 — until
//! ready, 200 with `json_bi`, 400 with the database message, 404 when expired), the 5000-row
//! default of a query without a limit, `limit=-1` for everything (or, switched on, cut short
//! silently as Looker does without streaming or permission), a per-window request limit
//! answering 429 with `Retry-After`, and the seeded faults shared by every fake.
//!
//! The model (`finance`) has three explores whose rows are pure functions of (seed, row,
//! revision): `budget` (8 departments × 24 months × 3 cost lines), `pipeline` (deals, scale/4)
//! and `ledger` (journal lines, 3 × scale: the large result). A query groups the explore's rows
//! by its dimensions and aggregates its measures (`count`, `sum`, `average`), like Looker's SQL.
//! Task progress counts polls, not time, so tests of the lifecycle are deterministic.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod content;

use super::options::Faults;
use super::protection::Protection;
use super::rng::{field, range, row_key};
use super::{App, Sandbox, SandboxOptions};

/// Credentials of the fake (not secrets: a local test fixture).
pub const CLIENT_ID: &str = "sandbox-looker-client";
pub const CLIENT_SECRET: &str = "sandbox-looker-secret";

/// The model every explore belongs to.
pub const MODEL: &str = "finance";

/// Rows a query without a limit returns (Looker's UI-style default).
const DEFAULT_LIMIT: usize = 5000;

const DOCS: &str = "https://cloud.google.com/looker/docs/r/api/4.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Agg {
    Count,
    Sum,
    Average,
}

/// A field of an explore: a dimension (`agg: None`) or a measure.
struct FieldDef {
    name: &'static str,
    ty: &'static str,
    label: &'static str,
    agg: Option<Agg>,
    /// Field hash tag of the value (measures sharing a tag aggregate the same amount).
    tag: u64,
}

const fn dim(name: &'static str, ty: &'static str, label: &'static str, tag: u64) -> FieldDef {
    FieldDef {
        name,
        ty,
        label,
        agg: None,
        tag,
    }
}

const fn measure(
    name: &'static str,
    ty: &'static str,
    label: &'static str,
    agg: Agg,
    tag: u64,
) -> FieldDef {
    FieldDef {
        name,
        ty,
        label,
        agg: Some(agg),
        tag,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Explore {
    Budget,
    Pipeline,
    Ledger,
}

const BUDGET: &[FieldDef] = &[
    dim("budget.department", "string", "Department", 1),
    dim("budget.period_date", "date_date", "Period Date", 2),
    dim("budget.period_month", "date_month", "Period Month", 2),
    dim("budget.cost_center", "string", "Cost Center", 3),
    measure(
        "budget.planned_amount",
        "sum",
        "Planned Amount",
        Agg::Sum,
        4,
    ),
    measure("budget.actual_amount", "sum", "Actual Amount", Agg::Sum, 5),
    measure("budget.line_count", "count", "Line Count", Agg::Count, 0),
];

const PIPELINE: &[FieldDef] = &[
    dim("pipeline.stage", "string", "Stage", 1),
    dim("pipeline.owner", "string", "Owner", 2),
    dim("pipeline.close_date", "date_date", "Close Date", 3),
    measure("pipeline.deal_count", "count", "Deal Count", Agg::Count, 0),
    measure("pipeline.amount", "sum", "Amount", Agg::Sum, 4),
    measure(
        "pipeline.average_amount",
        "average",
        "Average Amount",
        Agg::Average,
        4,
    ),
];

const LEDGER: &[FieldDef] = &[
    dim("ledger.entry_id", "number", "Entry ID", 1),
    dim("ledger.posted_at", "date_time", "Posted Time", 2),
    dim("ledger.account", "string", "Account", 3),
    measure("ledger.amount", "sum", "Amount", Agg::Sum, 4),
    measure("ledger.line_count", "count", "Line Count", Agg::Count, 0),
];

const DEPARTMENTS: [&str; 8] = [
    "Consulting",
    "Engineering",
    "Finance",
    "Legal",
    "Marketing",
    "Operations",
    "People",
    "Sales",
];
const STAGES: [&str; 6] = [
    "Qualified",
    "Discovery",
    "Proposal",
    "Negotiation",
    "Closed Won",
    "Closed Lost",
];
const OWNERS: [&str; 5] = [
    "Avery Cole",
    "Blake Moreno",
    "Casey Liu",
    "Drew Patel",
    "Emery Stone",
];
const ACCOUNTS: [&str; 6] = [
    "1100 Receivables",
    "2100 Payables",
    "4000 Revenue",
    "5000 Cost of Sales",
    "6100 Salaries",
    "6500 Travel",
];

impl Explore {
    fn by_name(view: &str) -> Option<Explore> {
        match view {
            "budget" => Some(Explore::Budget),
            "pipeline" => Some(Explore::Pipeline),
            "ledger" => Some(Explore::Ledger),
            _ => None,
        }
    }

    fn fields(self) -> &'static [FieldDef] {
        match self {
            Explore::Budget => BUDGET,
            Explore::Pipeline => PIPELINE,
            Explore::Ledger => LEDGER,
        }
    }

    fn set(self) -> u32 {
        match self {
            Explore::Budget => 101,
            Explore::Pipeline => 102,
            Explore::Ledger => 103,
        }
    }

    /// Base rows at revision `rev`: pipeline and ledger lose a few rows per mutation round, so
    /// a rerun shows rows vanishing from a result.
    fn rows(self, scale: u64, rev: u64) -> u64 {
        match self {
            Explore::Budget => 8 * 24 * 3,
            Explore::Pipeline => (scale / 4).max(60).saturating_sub(3 * rev).max(1),
            Explore::Ledger => (scale * 3).max(30).saturating_sub(5 * rev).max(1),
        }
    }

    /// The value of field `f` of base row `i`: a dimension value, or the amount a measure
    /// aggregates (1 for counts).
    fn value(self, f: &FieldDef, seed: u64, i: u64, rev: u64) -> Value {
        if f.agg == Some(Agg::Count) {
            return Value::from(1);
        }
        let key = row_key(seed, self.set(), i);
        let h = field(key, f.tag);
        let money = |lo: i64, hi: i64, h: u64| Value::from(range(h, lo, hi) as f64 / 100.0);
        match (self, f.tag) {
            (Explore::Budget, 1) => Value::from(DEPARTMENTS[(i / 72) as usize % 8]),
            (Explore::Budget, 2) => {
                let month = (i / 3) % 24;
                let (y, m) = (2024 + month / 12, month % 12 + 1);
                if f.ty == "date_month" {
                    Value::from(format!("{y}-{m:02}"))
                } else {
                    Value::from(format!("{y}-{m:02}-01"))
                }
            }
            (Explore::Budget, 3) => Value::from(format!("CC-{}{}", (i / 72) % 8, i % 3)),
            (Explore::Budget, 4) => money(100_000, 5_000_000, h),
            // Actuals move with every mutation round.
            (Explore::Budget, _) => money(90_000, 5_200_000, field(h, rev)),
            (Explore::Pipeline, 1) => Value::from(STAGES[(h % 6) as usize]),
            (Explore::Pipeline, 2) => Value::from(OWNERS[(h % 5) as usize]),
            (Explore::Pipeline, 3) => {
                let day = range(h, 0, 364);
                let d = chrono::NaiveDate::from_ymd_opt(2025, 1, 1)
                    .map(|d| d + chrono::Duration::days(day))
                    .map(|d| d.to_string())
                    .unwrap_or_default();
                Value::from(d)
            }
            (Explore::Pipeline, _) => money(500_000, 25_000_000, field(h, rev)),
            (Explore::Ledger, 1) => Value::from(i + 1),
            (Explore::Ledger, 2) => {
                let t = chrono::DateTime::from_timestamp(1_704_067_200 + i as i64 * 613, 0)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default();
                Value::from(t)
            }
            (Explore::Ledger, 3) => Value::from(ACCOUNTS[(h % 6) as usize]),
            (Explore::Ledger, _) => money(-500_000, 2_000_000, field(h, rev)),
        }
    }
}

/// One group of a result: its dimension values and, per measure, (sum, rows).
type Group = (Vec<Value>, Vec<(f64, u64)>);

/// A stored query (queries are immutable, as in Looker).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Query {
    #[serde(default)]
    id: String,
    model: String,
    view: String,
    #[serde(default)]
    fields: Vec<String>,
    #[serde(default)]
    filters: Option<HashMap<String, String>>,
    #[serde(default)]
    sorts: Option<Vec<String>>,
    #[serde(default)]
    limit: Option<String>,
    #[serde(default)]
    query_timezone: Option<String>,
}

/// How a task ends.
#[derive(Debug, Clone)]
enum Plan {
    Complete,
    Error(String),
    Expired,
    Stall,
    Killed,
}

struct Task {
    polls: u32,
    plan: Plan,
    /// Results calls answered "not ready" after completion still to come.
    lag: u32,
    /// The rendered result (or the query's error).
    result: std::result::Result<String, String>,
}

/// Counters of what the fake answered, for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LookerStats {
    pub logins: u64,
    /// 401 answers (missing, unknown or expired token).
    pub unauthorized: u64,
    /// 429 answers of the request limit.
    pub throttled: u64,
    pub queries_created: u64,
    pub tasks_created: u64,
    pub status_polls: u64,
    pub results_calls: u64,
    /// Results calls answered 202/204.
    pub results_not_ready: u64,
    /// API calls admitted (login excluded).
    pub api_calls: u64,
    /// Tasks stopped with `DELETE /running_queries/{id}`.
    pub killed: u64,
    /// Tasks run with `limit=-1` (unlimited), and those of them whose result was cut.
    pub unlimited_tasks: u64,
    pub unlimited_cut: u64,
}

struct Inner {
    rev: u64,
    queries: HashMap<String, Query>,
    next_id: u64,
    tasks: HashMap<String, Task>,
    tokens: HashMap<String, Instant>,
    stats: LookerStats,
    /// Status polls a task spends in `added`, then in `running`.
    added_polls: u32,
    running_polls: u32,
    /// Results calls answered "not ready" after a task completed.
    results_lag: u32,
    /// 202 (current releases) or 204 (older ones) for "not ready".
    not_ready_status: u16,
    fail_next: u32,
    expire_next: u32,
    stall: bool,
    /// Unlimited (`limit=-1`) results are cut to this many rows, silently (see
    /// [`Sandbox::looker_cut_unlimited`]).
    cut_unlimited: Option<usize>,
    /// Requests allowed per sliding window, and the window.
    rate: Option<(u32, Duration)>,
    window: VecDeque<Instant>,
    /// Authenticated calls still answered before every token is revoked (a token that dies
    /// mid-run).
    revoke_after: Option<u64>,
}

/// State of the Looker fake.
pub(crate) struct Looker {
    seed: u64,
    scale: u64,
    token_ttl: Duration,
    state: Mutex<Inner>,
    faults: Protection,
}

/// A saved Look of the instance.
struct SavedLook {
    id: &'static str,
    title: &'static str,
    query_id: &'static str,
    description: &'static str,
    created_at: &'static str,
    updated_at: &'static str,
    view_count: u64,
}

/// The saved Looks (all in the shared folder, owned by the API user).
const LOOKS: [SavedLook; 2] = [
    SavedLook {
        id: "1",
        title: "Pipeline by stage",
        query_id: "1",
        description: "Open pipeline by stage: deals, amount and average deal size.",
        created_at: "2024-02-01T09:00:00.000+00:00",
        updated_at: "2024-11-18T14:30:00.000+00:00",
        view_count: 42,
    },
    SavedLook {
        id: "2",
        title: "Budget by department",
        query_id: "2",
        description: "Planned against actual spend per department.",
        created_at: "2024-03-05T10:15:00.000+00:00",
        updated_at: "2024-10-02T08:00:00.000+00:00",
        view_count: 17,
    },
];

/// The explores of the model: (name, label, description).
const EXPLORES: [(&str, &str, &str); 3] = [
    (
        "budget",
        "Budget",
        "Planned and actual amounts per department, month and cost line.",
    ),
    (
        "pipeline",
        "Pipeline",
        "Deals by stage, owner and close date.",
    ),
    ("ledger", "Ledger", "Journal lines of the general ledger."),
];

impl Looker {
    pub(crate) fn new(opts: &SandboxOptions) -> Self {
        let mut queries = HashMap::new();
        let q = |id: &str, view: &str, fields: &[&str], sorts: &[&str], limit: &str| Query {
            id: id.into(),
            model: MODEL.into(),
            view: view.into(),
            fields: fields.iter().map(|s| s.to_string()).collect(),
            filters: None,
            sorts: Some(sorts.iter().map(|s| s.to_string()).collect()),
            // Saved Looks keep the UI's small limits: the stream's limit overrides them.
            limit: Some(limit.into()),
            query_timezone: Some("UTC".into()),
        };
        queries.insert(
            "1".into(),
            q(
                "1",
                "pipeline",
                &[
                    "pipeline.stage",
                    "pipeline.deal_count",
                    "pipeline.amount",
                    "pipeline.average_amount",
                ],
                &["pipeline.stage"],
                "500",
            ),
        );
        queries.insert(
            "2".into(),
            q(
                "2",
                "budget",
                &[
                    "budget.department",
                    "budget.planned_amount",
                    "budget.actual_amount",
                ],
                &["budget.department"],
                "500",
            ),
        );
        Self {
            seed: opts.seed,
            scale: opts.scale,
            token_ttl: opts.token_ttl,
            state: Mutex::new(Inner {
                rev: 0,
                queries,
                next_id: 100,
                tasks: HashMap::new(),
                tokens: HashMap::new(),
                stats: LookerStats::default(),
                added_polls: 1,
                running_polls: 1,
                results_lag: 1,
                not_ready_status: 202,
                fail_next: 0,
                expire_next: 0,
                stall: false,
                cut_unlimited: None,
                rate: None,
                window: VecDeque::new(),
                revoke_after: None,
            }),
            faults: Protection::new(None, opts.faults, opts.seed ^ 0x100C),
        }
    }

    fn st(&self) -> MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One round of changes: actuals and amounts move, some pipeline and ledger rows go.
    pub(crate) fn mutate(&self) {
        self.st().rev += 1;
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        self.faults.set_faults(faults);
    }

    /// Runs `q` (with `limit` overriding the query's) against the data of revision `rev`.
    /// Fails with the database-style message of a query Looker could not run.
    fn evaluate(
        &self,
        q: &Query,
        limit: Option<&str>,
        rev: u64,
    ) -> std::result::Result<(Vec<Value>, Vec<&'static FieldDef>), String> {
        let explore =
            Explore::by_name(&q.view).ok_or_else(|| format!("Unknown explore {}", q.view))?;
        let defs = explore.fields();
        let find = |name: &str| defs.iter().find(|f| f.name == name);
        let mut dims = Vec::new();
        let mut measures = Vec::new();
        for name in &q.fields {
            let f = find(name).ok_or_else(|| format!("Unknown field {name}"))?;
            if f.agg.is_some() {
                measures.push(f);
            } else {
                dims.push(f);
            }
        }
        let mut filters = Vec::new();
        for (name, expr) in q.filters.iter().flatten() {
            let f = find(name).ok_or_else(|| format!("Unknown filter field {name}"))?;
            if f.agg.is_some() {
                return Err(format!(
                    "ERROR: filters on measures are not supported by the sandbox ({name})"
                ));
            }
            let (mut yes, mut no) = (Vec::new(), Vec::new());
            for item in expr.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                match item.strip_prefix('-') {
                    Some(v) => no.push(v.to_string()),
                    None => yes.push(item.to_string()),
                }
            }
            filters.push((f, yes, no));
        }
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut groups: Vec<Group> = Vec::new();
        for i in 0..explore.rows(self.scale, rev) {
            let pass = filters.iter().all(|(f, yes, no)| {
                let v = text(&explore.value(f, self.seed, i, rev));
                (yes.is_empty() || yes.contains(&v)) && !no.contains(&v)
            });
            if !pass {
                continue;
            }
            let key_vals: Vec<Value> = dims
                .iter()
                .map(|f| explore.value(f, self.seed, i, rev))
                .collect();
            let key = key_vals.iter().map(text).collect::<Vec<_>>().join("\u{1f}");
            let g = *index.entry(key).or_insert_with(|| {
                groups.push((key_vals, vec![(0.0, 0); measures.len()]));
                groups.len() - 1
            });
            for (m, acc) in measures.iter().zip(groups[g].1.iter_mut()) {
                acc.0 += explore.value(m, self.seed, i, rev).as_f64().unwrap_or(0.0);
                acc.1 += 1;
            }
        }
        let round = |x: f64| (x * 100.0).round() / 100.0;
        let mut rows: Vec<Map<String, Value>> = groups
            .into_iter()
            .map(|(key, accs)| {
                let mut row = Map::new();
                for (f, v) in dims.iter().zip(key) {
                    row.insert(f.name.to_string(), v);
                }
                for (m, (sum, n)) in measures.iter().zip(accs) {
                    let v = match m.agg {
                        Some(Agg::Count) => Value::from(n),
                        Some(Agg::Average) if n > 0 => Value::from(round(sum / n as f64)),
                        Some(Agg::Average) => Value::Null,
                        _ => Value::from(round(sum)),
                    };
                    row.insert(m.name.to_string(), v);
                }
                row
            })
            .collect();
        let sorts: Vec<(String, bool)> = match q.sorts.as_deref() {
            Some(s) if !s.is_empty() => s
                .iter()
                .map(|s| match s.trim().strip_suffix(" desc") {
                    Some(f) => (f.trim().to_string(), true),
                    None => (s.trim().trim_end_matches(" asc").to_string(), false),
                })
                .collect(),
            _ => dims.iter().map(|f| (f.name.to_string(), false)).collect(),
        };
        rows.sort_by(|a, b| {
            for (f, desc) in &sorts {
                let (x, y) = (a.get(f), b.get(f));
                let ord = match (x.and_then(Value::as_f64), y.and_then(Value::as_f64)) {
                    (Some(p), Some(q)) => p.total_cmp(&q),
                    _ => x.map(text).cmp(&y.map(text)),
                };
                let ord = if *desc { ord.reverse() } else { ord };
                if ord.is_ne() {
                    return ord;
                }
            }
            std::cmp::Ordering::Equal
        });
        let limit = match limit.or(q.limit.as_deref()).map(str::trim) {
            None | Some("") => DEFAULT_LIMIT,
            Some("-1") => usize::MAX,
            Some(n) => n
                .parse::<usize>()
                .map_err(|_| format!("Invalid limit {n}"))?,
        };
        rows.truncate(limit);
        let mut fields: Vec<&'static FieldDef> = dims;
        fields.extend(measures);
        Ok((rows.into_iter().map(Value::Object).collect(), fields))
    }

    /// The `json_bi` body of a result.
    fn render(q: &Query, rows: &[Value], fields: &[&FieldDef]) -> String {
        let meta = |f: &FieldDef| {
            let view = f.name.split('.').next().unwrap_or_default();
            let category = if f.agg.is_some() {
                "measure"
            } else {
                "dimension"
            };
            serde_json::json!({
                "name": f.name,
                "type": f.ty,
                "label": f.label,
                "view": view,
                "view_label": view,
                "category": category,
                "dimension_group": null,
                "field_group_label": null,
                "field_group_variant": f.label,
                "hidden": false,
                "description": "",
                "sql": format!("${{TABLE}}.{}", f.name.split('.').nth(1).unwrap_or_default()),
            })
        };
        let dims: Vec<Value> = fields
            .iter()
            .filter(|f| f.agg.is_none())
            .map(|f| meta(f))
            .collect();
        let measures: Vec<Value> = fields
            .iter()
            .filter(|f| f.agg.is_some())
            .map(|f| meta(f))
            .collect();
        let metadata = serde_json::json!({
            "big_query_metadata": null,
            "fields": {
                "dimensions": dims,
                "measures": measures,
                "pivots": [],
                "table_calculations": [],
            },
            "pivots": [],
            "has_subtotals": false,
            "has_totals": false,
            "columns_truncated": "false",
            "filter_expression": null,
            "filters": q.filters.clone().unwrap_or_default(),
            "sql": format!("SELECT ... FROM {}.{} (sandbox)", q.model, q.view),
        });
        let mut out = String::with_capacity(64 + rows.len() * 96);
        let _ = write!(out, "{{\"metadata\":{metadata},\"rows\":[");
        for (i, r) in rows.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&r.to_string());
        }
        out.push_str("]}");
        out
    }

    /// Rows query `q` (on the fake's model) returns now, `limit` overriding the query's
    /// (`None`: a query the model cannot run).
    fn query_rows(&self, q: &Query, limit: Option<i64>) -> Option<u64> {
        let rev = self.st().rev;
        let limit = limit.map(|l| l.to_string());
        let (rows, _) = self.evaluate(q, limit.as_deref(), rev).ok()?;
        Some(rows.len() as u64)
    }
}

/// A 200 with `v`, trimmed to the `fields` query parameter when given.
fn fields_reply(q: &HashMap<String, String>, v: Value) -> Response {
    let v = match q.get("fields").filter(|f| !f.trim().is_empty()) {
        Some(f) => content::select(&v, f),
        None => v,
    };
    json_reply(StatusCode::OK, v.to_string())
}

fn json_reply(status: StatusCode, body: String) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn error(status: StatusCode, message: &str) -> Response {
    json_reply(
        status,
        serde_json::json!({ "message": message, "documentation_url": DOCS }).to_string(),
    )
}

/// Form or query-string parameters.
fn params(raw: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn login(app: &App, raw: Option<&str>, body: &Bytes) -> Response {
    let lk = &app.looker;
    let mut p = params(raw.unwrap_or(""));
    p.extend(params(&String::from_utf8_lossy(body)));
    if p.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || p.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
    {
        return error(StatusCode::NOT_FOUND, "Not found");
    }
    let mut st = lk.st();
    st.stats.logins += 1;
    let token = format!("sbx-looker-{}-{}", lk.seed, st.stats.logins);
    st.tokens
        .insert(token.clone(), Instant::now() + lk.token_ttl);
    json_reply(
        StatusCode::OK,
        serde_json::json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": lk.token_ttl.as_secs().max(1),
            "refresh_token": null,
        })
        .to_string(),
    )
}

async fn handle(
    State(app): State<Arc<App>>,
    method: Method,
    Path(rest): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = rest.trim_end_matches('/').to_string();
    if path == "login" && method == Method::POST {
        return login(&app, raw.as_deref(), &body).await;
    }
    let lk = &app.looker;
    let draw = lk.faults.draw();
    if let Some(d) = draw.slow {
        tokio::time::sleep(d).await;
    }
    // The request limit, then faults, then auth.
    {
        let mut st = lk.st();
        if let Some((max, window)) = st.rate {
            let now = Instant::now();
            while st
                .window
                .front()
                .is_some_and(|t| now.duration_since(*t) >= window)
            {
                st.window.pop_front();
            }
            if st.window.len() >= max as usize || draw.throttle {
                st.stats.throttled += 1;
                let wait = st
                    .window
                    .front()
                    .map(|t| window.saturating_sub(now.duration_since(*t)))
                    .unwrap_or(Duration::from_secs(1));
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let mut r = error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
                if let Ok(v) = header::HeaderValue::from_str(&secs.max(1).to_string()) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
                return r;
            }
            st.window.push_back(now);
        } else if draw.throttle {
            st.stats.throttled += 1;
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            return r;
        }
    }
    if let Some(code) = draw.server_error {
        return error(
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "Internal server error (sandbox fault)",
        );
    }
    let authed = {
        let mut st = lk.st();
        match st.revoke_after {
            Some(0) => {
                st.tokens.clear();
                st.revoke_after = None;
            }
            Some(n) => st.revoke_after = Some(n - 1),
            None => {}
        }
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("token ")
                    .or_else(|| v.strip_prefix("Bearer "))
            })
            .map(str::to_string);
        let ok = match token {
            Some(t) => {
                let issued = st
                    .tokens
                    .get(&t)
                    .and_then(|exp| exp.checked_sub(lk.token_ttl));
                if draw.expire_token && issued.is_some_and(crate::sandbox::protection::expiry_hits)
                {
                    st.tokens.remove(&t);
                }
                st.tokens.get(&t).is_some_and(|exp| *exp > Instant::now())
            }
            None => false,
        };
        if !ok {
            st.stats.unauthorized += 1;
        } else {
            st.stats.api_calls += 1;
        }
        ok
    };
    if !authed {
        return error(StatusCode::UNAUTHORIZED, "Requires authentication.");
    }
    let q = params(raw.as_deref().unwrap_or(""));
    let segs: Vec<&str> = path.split('/').collect();
    match (method.clone(), segs.as_slice()) {
        (Method::POST, ["queries"]) => create_query(lk, &body),
        (Method::GET, ["queries", id]) => match lk.st().queries.get(*id) {
            Some(q) => json_reply(StatusCode::OK, serde_json::to_string(q).unwrap_or_default()),
            None => error(StatusCode::NOT_FOUND, "Not found"),
        },
        (Method::GET, ["looks"]) => {
            fields_reply(&q, content::looks(&format!("{}/looker", app.base)))
        }
        (Method::GET, ["looks", id]) => match LOOKS.iter().find(|l| l.id == *id) {
            Some(l) => {
                let query = lk.st().queries.get(l.query_id).cloned();
                fields_reply(
                    &q,
                    content::look(&format!("{}/looker", app.base), l, query.as_ref()),
                )
            }
            None => error(StatusCode::NOT_FOUND, "Not found"),
        },
        (Method::GET, ["lookml_models"]) => {
            let models = vec![content::model()];
            let offset = q.get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
            let limit = q
                .get("limit")
                .and_then(|v| v.parse().ok())
                .unwrap_or(usize::MAX);
            let page: Vec<Value> = models.into_iter().skip(offset).take(limit).collect();
            fields_reply(&q, Value::Array(page))
        }
        (Method::GET, ["lookml_models", name]) if *name == MODEL => {
            fields_reply(&q, content::model())
        }
        (Method::GET, ["lookml_models", name, "explores", explore]) if *name == MODEL => {
            match content::explore(explore) {
                Some(e) => fields_reply(&q, e),
                None => error(StatusCode::NOT_FOUND, "Not found"),
            }
        }
        (Method::POST, ["query_tasks"]) => create_task(lk, &q, &body),
        (Method::GET, ["query_tasks", id]) => task_status(lk, id),
        (Method::GET, ["query_tasks", id, "results"]) => task_results(lk, id),
        (Method::DELETE, ["running_queries", id]) => kill_task(lk, id),
        (Method::GET, ["user"]) => json_reply(
            StatusCode::OK,
            r#"{"id":"7","display_name":"Sandbox Analyst","email":"analyst@example.com"}"#.into(),
        ),
        (Method::DELETE, ["logout"]) => StatusCode::NO_CONTENT.into_response(),
        _ => error(StatusCode::NOT_FOUND, "Not found"),
    }
}

fn create_query(lk: &Looker, body: &[u8]) -> Response {
    let mut q: Query = match serde_json::from_slice(body) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("Bad request: {e}")),
    };
    if q.model != MODEL {
        return error(StatusCode::NOT_FOUND, "Not found");
    }
    let Some(explore) = Explore::by_name(&q.view) else {
        return error(StatusCode::NOT_FOUND, "Not found");
    };
    if let Some(bad) = q
        .fields
        .iter()
        .find(|f| !explore.fields().iter().any(|d| d.name == f.as_str()))
    {
        return json_reply(
            StatusCode::UNPROCESSABLE_ENTITY,
            serde_json::json!({
                "message": "Validation Failed",
                "errors": [{ "field": "fields", "code": "invalid", "message": format!("Unknown field {bad} in explore {}", q.view) }],
                "documentation_url": DOCS,
            })
            .to_string(),
        );
    }
    let mut st = lk.st();
    st.next_id += 1;
    st.stats.queries_created += 1;
    q.id = st.next_id.to_string();
    st.queries.insert(q.id.clone(), q.clone());
    json_reply(
        StatusCode::OK,
        serde_json::to_string(&q).unwrap_or_default(),
    )
}

#[derive(Deserialize)]
struct NewTask {
    query_id: String,
    result_format: String,
}

fn create_task(lk: &Looker, params: &HashMap<String, String>, body: &[u8]) -> Response {
    let t: NewTask = match serde_json::from_slice(body) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("Bad request: {e}")),
    };
    if t.result_format != "json_bi" {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "the sandbox serves result_format json_bi only, not {}",
                t.result_format
            ),
        );
    }
    let (query, rev) = {
        let st = lk.st();
        match st.queries.get(&t.query_id) {
            Some(q) => (q.clone(), st.rev),
            None => return error(StatusCode::NOT_FOUND, "Not found"),
        }
    };
    let limit = params.get("limit").map(String::as_str);
    let unlimited = limit.or(query.limit.as_deref()).map(str::trim) == Some("-1");
    let cut = if unlimited {
        lk.st().cut_unlimited
    } else {
        None
    };
    let mut was_cut = false;
    let result = lk.evaluate(&query, limit, rev).map(|(mut rows, fields)| {
        if let Some(n) = cut
            && rows.len() > n
        {
            // Looker serves unlimited rows only in streamable formats to users allowed to
            // download without a limit; otherwise the result just ends, with nothing saying so.
            rows.truncate(n);
            was_cut = true;
        }
        Looker::render(&query, &rows, &fields)
    });
    let mut st = lk.st();
    st.stats.tasks_created += 1;
    st.stats.unlimited_tasks += u64::from(unlimited);
    st.stats.unlimited_cut += u64::from(was_cut);
    let plan = if st.fail_next > 0 {
        st.fail_next -= 1;
        Plan::Error(
            "ERROR: division by zero (sandbox fault); the database rejected the query".into(),
        )
    } else if st.expire_next > 0 {
        st.expire_next -= 1;
        Plan::Expired
    } else if st.stall {
        Plan::Stall
    } else {
        match &result {
            Ok(_) => Plan::Complete,
            Err(m) => Plan::Error(m.clone()),
        }
    };
    let id = format!("{:032x}", super::rng::mix(lk.seed ^ st.stats.tasks_created));
    let lag = st.results_lag;
    st.tasks.insert(
        id.clone(),
        Task {
            polls: 0,
            plan,
            lag,
            result,
        },
    );
    json_reply(
        StatusCode::OK,
        serde_json::json!({
            "id": id, "query_id": t.query_id, "status": "added", "result_format": "json_bi",
            "source": "sandbox", "look_id": null, "dashboard_id": null,
        })
        .to_string(),
    )
}

/// The status a task shows after `polls` status polls.
fn status_of(t: &Task, added: u32, running: u32) -> &'static str {
    if t.polls <= added {
        return "added";
    }
    if t.polls <= added + running {
        return "running";
    }
    match t.plan {
        Plan::Complete => "complete",
        Plan::Error(_) => "error",
        Plan::Expired => "expired",
        Plan::Stall => "running",
        Plan::Killed => "killed",
    }
}

/// kill_query: a task still running stops (status `killed`); 404 for an unknown task, 422
/// for one already finished.
fn kill_task(lk: &Looker, id: &str) -> Response {
    let mut st = lk.st();
    let (added, running) = (st.added_polls, st.running_polls);
    let Some(t) = st.tasks.get_mut(id) else {
        return error(StatusCode::NOT_FOUND, "Not found");
    };
    if !matches!(status_of(t, added, running), "added" | "running") {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "The query is not running");
    }
    t.plan = Plan::Killed;
    t.polls = t.polls.max(added + running);
    st.stats.killed += 1;
    StatusCode::NO_CONTENT.into_response()
}

fn task_status(lk: &Looker, id: &str) -> Response {
    let mut st = lk.st();
    st.stats.status_polls += 1;
    let (added, running) = (st.added_polls, st.running_polls);
    let Some(t) = st.tasks.get_mut(id) else {
        return error(StatusCode::NOT_FOUND, "Not found");
    };
    t.polls += 1;
    let status = status_of(t, added, running);
    json_reply(
        StatusCode::OK,
        serde_json::json!({ "id": id, "status": status }).to_string(),
    )
}

fn task_results(lk: &Looker, id: &str) -> Response {
    let mut st = lk.st();
    st.stats.results_calls += 1;
    let (added, running, not_ready) = (st.added_polls, st.running_polls, st.not_ready_status);
    let Some(t) = st.tasks.get_mut(id) else {
        return error(
            StatusCode::NOT_FOUND,
            "The Query Task Id was not found or the results have expired.",
        );
    };
    let status = status_of(t, added, running);
    let reply = match (status, &t.plan) {
        ("error", Plan::Error(m)) => Some(error(StatusCode::BAD_REQUEST, m)),
        ("expired", _) => Some(error(
            StatusCode::NOT_FOUND,
            "The Query Task Id was not found or the results have expired.",
        )),
        ("complete", _) if t.lag == 0 => Some(match &t.result {
            Ok(body) => json_reply(StatusCode::OK, body.clone()),
            Err(m) => error(StatusCode::BAD_REQUEST, m),
        }),
        ("complete", _) => {
            t.lag -= 1;
            None
        }
        _ => None,
    };
    match reply {
        Some(r) => r,
        None => {
            st.stats.results_not_ready += 1;
            if not_ready == 204 {
                StatusCode::NO_CONTENT.into_response()
            } else {
                json_reply(StatusCode::ACCEPTED, "\"\"".into())
            }
        }
    }
}

async fn admin_stats(State(app): State<Arc<App>>) -> Response {
    json_reply(
        StatusCode::OK,
        serde_json::to_string(&app.looker.st().stats).unwrap_or_default(),
    )
}

/// `PUT /_sandbox/looker/tasks`: how new query tasks behave (any subset of the fields).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskControls {
    added_polls: Option<u32>,
    running_polls: Option<u32>,
    results_lag: Option<u32>,
    not_ready_status: Option<u16>,
    fail_next: Option<u32>,
    expire_next: Option<u32>,
    stall: Option<bool>,
    /// `[max, window_seconds]`; `[0, 0]` lifts the request limit.
    rate_limit: Option<(u32, f64)>,
}

async fn admin_tasks(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let c: TaskControls = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let mut st = app.looker.st();
    if let Some(v) = c.added_polls {
        st.added_polls = v;
    }
    if let Some(v) = c.running_polls {
        st.running_polls = v;
    }
    if let Some(v) = c.results_lag {
        st.results_lag = v;
    }
    if let Some(v) = c.not_ready_status {
        st.not_ready_status = if v == 204 { 204 } else { 202 };
    }
    if let Some(v) = c.fail_next {
        st.fail_next = v;
    }
    if let Some(v) = c.expire_next {
        st.expire_next = v;
    }
    if let Some(v) = c.stall {
        st.stall = v;
    }
    if let Some((max, window)) = c.rate_limit {
        st.rate = (max > 0 && window.is_finite() && window > 0.0)
            .then(|| (max, Duration::from_secs_f64(window)));
        st.window.clear();
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_mutate(State(app): State<Arc<App>>) -> Response {
    app.looker.mutate();
    StatusCode::NO_CONTENT.into_response()
}

/// Routes of the Looker fake.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/looker/api/4.0/{*rest}", any(handle))
        .route("/_sandbox/looker/stats", get(admin_stats))
        .route("/_sandbox/looker/mutate", post(admin_mutate))
        .route("/_sandbox/looker/tasks", axum::routing::put(admin_tasks))
}

/// Looker controls for tests and the demo.
impl Sandbox {
    /// Body of an mlc.toml `[connections.X]` section for the Looker fake, and the secret to
    /// store in the vault.
    pub fn looker_connection(&self) -> (String, Vec<(String, String)>) {
        (
            format!(
                "system = \"looker\"\nbase_url = \"{}/looker\"\nclient_id = \"{CLIENT_ID}\"\npoll_interval_ms = 20\npoll_max_interval_ms = 200\n",
                self.app.base
            ),
            vec![("client_secret".into(), CLIENT_SECRET.into())],
        )
    }

    /// What the Looker fake answered so far.
    pub fn looker_stats(&self) -> LookerStats {
        self.app.looker.st().stats
    }

    /// Status polls a new task spends in `added`, then in `running`; and results calls
    /// answered "not ready" (with `not_ready_status`, 202 or 204) after it completed.
    pub fn looker_set_task_progress(
        &self,
        added_polls: u32,
        running_polls: u32,
        results_lag: u32,
        not_ready_status: u16,
    ) {
        let mut st = self.app.looker.st();
        st.added_polls = added_polls;
        st.running_polls = running_polls;
        st.results_lag = results_lag;
        st.not_ready_status = if not_ready_status == 204 { 204 } else { 202 };
    }

    /// The next `n` query tasks end with status `error` (results: 400 with a database message).
    pub fn looker_fail_next_tasks(&self, n: u32) {
        self.app.looker.st().fail_next = n;
    }

    /// The next `n` query tasks end with status `expired` (results: 404).
    pub fn looker_expire_next_tasks(&self, n: u32) {
        self.app.looker.st().expire_next = n;
    }

    /// Unlimited results (`limit=-1`) are cut to `rows` rows (`None`: served whole), silently,
    /// as Looker does for a result format that is not streamed (json_bi) or a user without the
    /// permission to download without a limit (shared/reference §3.3: `-1` "only works for
    /// streamable formats and needs the right permissions"). Explicit limits are honoured.
    pub fn looker_cut_unlimited(&self, rows: Option<usize>) {
        self.app.looker.st().cut_unlimited = rows;
    }

    /// New query tasks never finish (they stay `running`).
    pub fn looker_stall_tasks(&self, on: bool) {
        self.app.looker.st().stall = on;
    }

    /// Invalidates every issued access token (the next call gets 401 and must log in again).
    pub fn looker_expire_tokens(&self) {
        self.app.looker.st().tokens.clear();
    }

    /// Every issued token is revoked after `calls` more API calls (the next one gets 401).
    pub fn looker_revoke_tokens_after(&self, calls: u64) {
        self.app.looker.st().revoke_after = Some(calls);
    }

    /// At most `max` API calls per sliding `window` (login excluded); more answer 429 with
    /// `Retry-After`. `None` lifts the limit.
    pub fn looker_set_rate_limit(&self, limit: Option<(u32, Duration)>) {
        let mut st = self.app.looker.st();
        st.rate = limit;
        st.window.clear();
    }

    /// One mutation round on the Looker fake only.
    pub fn looker_mutate(&self) {
        self.app.looker.mutate();
    }

    /// Rows query `query` returns now on the fake's model, `limit` overriding the query's
    /// (`-1` = every row; `None`: Looker's 5000-row default). `None` when the model cannot run
    /// it (unknown model, explore or field). The caller supplies the query: the fake knows no
    /// stream definitions.
    pub fn looker_query_rows(
        &self,
        query: &crate::spec::LookerQuery,
        limit: Option<i64>,
    ) -> Option<u64> {
        if query.model != MODEL {
            return None;
        }
        let q = Query {
            id: String::new(),
            model: query.model.clone(),
            view: query.view.clone(),
            fields: query.fields.clone(),
            filters: Some(query.filters.clone().into_iter().collect()),
            sorts: Some(query.sorts.clone()),
            limit: None,
            query_timezone: None,
        };
        self.app.looker.query_rows(&q, limit)
    }

    /// Rows the saved Look `look_id` returns now, `limit` overriding the Look's own (`None`:
    /// no such Look).
    pub fn looker_look_rows(&self, look_id: &str, limit: Option<i64>) -> Option<u64> {
        let lk = &self.app.looker;
        let l = LOOKS.iter().find(|l| l.id == look_id)?;
        let q = lk.st().queries.get(l.query_id)?.clone();
        lk.query_rows(&q, limit)
    }

    /// Rows of the `ledger` explore (one result row per journal line).
    pub fn looker_ledger_rows(&self) -> u64 {
        let lk = &self.app.looker;
        let rev = lk.st().rev;
        Explore::Ledger.rows(lk.scale, rev)
    }
}

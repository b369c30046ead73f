//! The Looker reverse stream reader (API 4.0): a stream's query (`POST /queries`) or saved
//! Look (`GET /looks/{id}` → its `query_id`) runs as an async query task
//! (`POST /query_tasks`, result format `json_bi`), whose status is polled with a growing
//! interval and an overall deadline (`GET /query_tasks/{id}`: `added` → `running` →
//! `complete`, or `error`/`expired`), and whose result (`GET /query_tasks/{id}/results`; 202
//! and 204 mean "not ready yet") becomes pages of rows for the usual decode → Parquet →
//! warehouse path.
//!
//! Why it is shaped this way:
//! - **Async tasks, not `run_query`.** A synchronous run holds one HTTP request open for the
//!   whole database query and hits proxy and request timeouts on real finance queries.
//! - **No silent truncation.** Looker has no result paging, a query without a limit is cut at
//!   5000 rows, and `limit=-1` is cut too, without a word, in formats that are not streamed and
//!   for users without the permission to download without a limit; a `json_bi` result carries no
//!   row count or truncation marker to compare with (Looker 4.0 OpenAPI, `JsonBiMetadata`:
//!   only `columns_truncated`). So every query runs with an explicit limit one row above what
//!   the stream accepts: its `limit`, or for `limit = -1` the connection's `max_result_rows`.
//!   A result that reaches that bound fails the run, and the table keeps its previous rows,
//!   rather than being replaced by a cut result. `columns_truncated` fails it too.
//! - **A key for rows that have none.** A Looker result row has no identity; the reader adds
//!   `result_row`, the row's 1-based position in the result, and the stream is a full snapshot
//!   (`incremental = "full"`), so every run replaces the table: rows 1..n are upserted and rows
//!   beyond n (the result shrank) are removed. Rerunning is idempotent, and the table always
//!   equals the latest result.
//! - **Types from Looker's own metadata.** `json_bi` carries the type of every field
//!   (`count`, `sum`, `date_date`, `date_time`, ...); [`column_type`] maps them to catalog
//!   types (`mlc discover` drafts catalog files with it), and every run compares the result's
//!   metadata with the catalog and warns about drift.
//! - **Retries are safe.** `POST /queries` and `POST /query_tasks` create no business data (a
//!   repeated create at worst runs the query twice), so they are retried like reads.
//! - **Abandoned tasks are killed.** A task not done within `query_timeout_seconds` is stopped
//!   with `DELETE /running_queries/{id}` (kill_query) before the run fails.

use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::batches::PageContext;
use crate::config::Connection;
use crate::error::{Error, Result};
use crate::http::Endpoint;
use crate::http::{HttpClient, Idempotency};
use crate::spec::{ColumnType, LookerQuery, Stream};
use crate::streams::{Page, PageSource, ReadMode, now_micros};
use crate::systems::settings::ConnectionSettings;

/// The key the reader adds to every row (and the catalog column holding it): the row's
/// 1-based position in the result.
pub const ROW_KEY: &str = "result_row";

/// The result format requested: rows plus the fields' metadata (Looker's recommended format).
pub const RESULT_FORMAT: &str = "json_bi";

/// Rows per page handed to the decoder when the stream sets no page size.
const DEFAULT_PAGE_ROWS: usize = 5000;

/// How query tasks are waited for.
#[derive(Debug, Clone, Copy)]
pub struct TaskSettings {
    /// Longest wait for one task, queued plus running.
    pub timeout: Duration,
    /// First pause between polls; grows by half each poll.
    pub poll: Duration,
    /// Longest pause between polls.
    pub poll_max: Duration,
}

impl TaskSettings {
    /// The connection's settings (defaults for a non-Looker connection).
    pub fn of(conn: &Connection) -> Self {
        match &conn.settings {
            ConnectionSettings::Looker(l) => Self {
                timeout: Duration::from_secs_f64(l.query_timeout_seconds),
                poll: Duration::from_millis(l.poll_interval_ms),
                poll_max: Duration::from_millis(l.poll_max_interval_ms.max(l.poll_interval_ms)),
            },
            _ => Self {
                timeout: Duration::from_secs(600),
                poll: Duration::from_millis(500),
                poll_max: Duration::from_secs(5),
            },
        }
    }
}

/// What waiting for a task ended with, short of an error.
enum Waited {
    Result(Bytes),
    /// The task or its cached result expired (status `expired`, or 404 on the results).
    Expired(String),
}

/// The Looker API calls of one stream (or of `mlc discover`).
/// A saved Look as `GET /looks` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct LookSummary {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    /// The LookML model its query reads.
    pub model: Option<String>,
}

/// An explore of a LookML model, as `GET /lookml_models` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExploreSummary {
    pub model: String,
    pub name: String,
    pub label: Option<String>,
}

pub struct LookerApi {
    http: HttpClient,
    /// `.../api/4.0`, no trailing slash.
    base: String,
    stream: String,
    settings: TaskSettings,
}

#[derive(Deserialize)]
struct WithId {
    id: serde_json::Value,
}

#[derive(Deserialize)]
struct TaskStatus {
    #[serde(default)]
    status: Option<String>,
}

#[derive(Deserialize)]
struct LookQuery {
    #[serde(default)]
    query_id: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct LookerErrorBody {
    #[serde(default)]
    message: String,
}

/// A Looker id as text (4.0 ids are strings; older instances sent numbers).
fn id_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn enc(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

impl LookerApi {
    pub fn new(endpoint: &Endpoint, stream: &str, settings: TaskSettings) -> Self {
        Self {
            http: endpoint.http.clone(),
            base: endpoint.base.trim_end_matches('/').to_string(),
            stream: stream.to_string(),
            settings,
        }
    }

    /// The stream id this client works for (in errors and logs).
    pub fn stream(&self) -> &str {
        &self.stream
    }

    fn fail(&self, message: String) -> Error {
        Error::Query {
            stream: self.stream.clone(),
            message,
        }
    }

    fn headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_static("application/json"));
        h
    }

    async fn post_json(&self, url: &str, body: &serde_json::Value) -> Result<Bytes> {
        let body = Bytes::from(body.to_string());
        let mut headers = Self::headers();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let resp = self
            .http
            .send(Method::POST, url, &self.stream, Idempotency::Safe, |rb| {
                rb.headers(headers.clone()).body(body.clone())
            })
            .await?;
        Ok(resp.body)
    }

    fn id_of(&self, body: &[u8], what: &str) -> Result<String> {
        serde_json::from_slice::<WithId>(body)
            .ok()
            .and_then(|w| id_text(&w.id))
            .ok_or_else(|| {
                Error::decode(
                    self.stream.clone(),
                    format!("Looker answered {what} without an id"),
                )
            })
    }

    /// Creates the query (`POST /queries`) with the row limit as Looker wants it (a string)
    /// and the UTC time zone; returns its id. Fails when Looker refuses the definition (an
    /// unknown model, explore or field answers 404 or 422 with the reason).
    pub async fn create_query(&self, q: &LookerQuery, limit: &str) -> Result<String> {
        let body = serde_json::json!({
            "model": q.model,
            "view": q.view,
            "fields": q.fields,
            "filters": q.filters,
            "sorts": q.sorts,
            "limit": limit,
            "query_timezone": "UTC",
        });
        let resp = self
            .post_json(&format!("{}/queries?fields=id", self.base), &body)
            .await?;
        self.id_of(&resp, "the query creation")
    }

    /// The query id of a saved Look (`GET /looks/{id}`). Fails when the Look does not exist
    /// or the API user cannot see it (Looker answers 404 for both).
    pub async fn look_query_id(&self, look_id: &str) -> Result<String> {
        let url = format!(
            "{}/looks/{}?fields=id,title,query_id",
            self.base,
            enc(look_id)
        );
        let resp = self.http.get(&url, &Self::headers(), &self.stream).await?;
        serde_json::from_slice::<LookQuery>(&resp.body)
            .ok()
            .and_then(|l| l.query_id.as_ref().and_then(id_text))
            .ok_or_else(|| self.fail(format!("Look {look_id} has no query_id")))
    }

    /// The instance's saved Looks the API user can see (`GET /looks`): id, title and model.
    /// Fails when the request fails or the answer is not a list of Looks.
    pub async fn looks(&self) -> Result<Vec<LookSummary>> {
        let url = format!("{}/looks?fields=id,title,description,model", self.base);
        let resp = self.http.get(&url, &Self::headers(), &self.stream).await?;
        #[derive(Deserialize)]
        struct Raw {
            id: serde_json::Value,
            #[serde(default)]
            title: Option<String>,
            #[serde(default)]
            description: Option<String>,
            #[serde(default)]
            model: Option<RawModel>,
        }
        #[derive(Deserialize)]
        struct RawModel {
            #[serde(default)]
            id: Option<String>,
        }
        let raw: Vec<Raw> = serde_json::from_slice(&resp.body).map_err(|e| {
            Error::decode_from(
                self.stream.clone(),
                "GET /looks did not answer a list of Looks",
                e,
            )
        })?;
        Ok(raw
            .into_iter()
            .filter_map(|r| {
                Some(LookSummary {
                    id: id_text(&r.id)?,
                    title: r.title.unwrap_or_default(),
                    description: r.description,
                    model: r.model.and_then(|m| m.id),
                })
            })
            .collect())
    }

    /// The explores of every LookML model the API user can see (`GET /lookml_models`), hidden
    /// ones left out. Fails when the request fails or the answer is not a list of models.
    pub async fn explores(&self) -> Result<Vec<ExploreSummary>> {
        let url = format!(
            "{}/lookml_models?fields=name,explores(name,label,hidden)",
            self.base
        );
        let resp = self.http.get(&url, &Self::headers(), &self.stream).await?;
        #[derive(Deserialize)]
        struct RawModel {
            name: String,
            #[serde(default)]
            explores: Vec<RawExplore>,
        }
        #[derive(Deserialize)]
        struct RawExplore {
            name: String,
            #[serde(default)]
            label: Option<String>,
            #[serde(default)]
            hidden: bool,
        }
        let raw: Vec<RawModel> = serde_json::from_slice(&resp.body).map_err(|e| {
            Error::decode_from(
                self.stream.clone(),
                "GET /lookml_models did not answer a list of models",
                e,
            )
        })?;
        Ok(raw
            .into_iter()
            .flat_map(|m| {
                let model = m.name;
                m.explores
                    .into_iter()
                    .filter(|e| !e.hidden)
                    .map(move |e| ExploreSummary {
                        model: model.clone(),
                        name: e.name,
                        label: e.label,
                    })
            })
            .collect())
    }

    /// Runs `query_id` as an async task and returns the `json_bi` result body. An expired
    /// task (or expired cached result) is started again once. Fails with [`Error::Query`] when
    /// the task errors, expires twice, or is not done within the connection's
    /// `query_timeout_seconds`.
    pub async fn run(&self, query_id: &str, look_id: Option<&str>, limit: &str) -> Result<Bytes> {
        let deadline = Instant::now() + self.settings.timeout;
        let mut restarted = false;
        loop {
            let task = self.create_task(query_id, look_id, limit).await?;
            tracing::info!(stream = %self.stream, query_id, task = %task, "Looker query task started");
            match self.wait(&task, deadline).await? {
                Waited::Result(body) => return Ok(body),
                Waited::Expired(why) if !restarted => {
                    tracing::warn!(stream = %self.stream, task = %task, "{why}; starting the query task again");
                    restarted = true;
                }
                Waited::Expired(why) => {
                    return Err(self.fail(format!(
                        "{why}, twice in a row; Looker keeps query results only for a while: rerun the stream"
                    )));
                }
            }
        }
    }

    async fn create_task(
        &self,
        query_id: &str,
        look_id: Option<&str>,
        limit: &str,
    ) -> Result<String> {
        let params: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("limit", limit)
            .append_pair("apply_formatting", "false")
            .append_pair("apply_vis", "false")
            .append_pair("server_table_calcs", "true")
            .append_pair("fields", "id,status")
            .finish();
        let body = serde_json::json!({
            "query_id": query_id,
            "result_format": RESULT_FORMAT,
            "source": "ml-connector",
            "deferred": false,
            "look_id": look_id,
        });
        let resp = self
            .post_json(&format!("{}/query_tasks?{params}", self.base), &body)
            .await?;
        self.id_of(&resp, "the query task creation")
    }

    /// Polls the task until it is complete, then its results until they are ready.
    async fn wait(&self, task: &str, deadline: Instant) -> Result<Waited> {
        let mut pause = self.settings.poll;
        let status_url = format!("{}/query_tasks/{}?fields=id,status", self.base, enc(task));
        loop {
            let resp = self
                .http
                .get(&status_url, &Self::headers(), &self.stream)
                .await;
            let status = match resp {
                Ok(r) => serde_json::from_slice::<TaskStatus>(&r.body)
                    .ok()
                    .and_then(|s| s.status)
                    .unwrap_or_default(),
                Err(e) if e.status() == Some(404) => {
                    return Ok(Waited::Expired(format!("query task {task} is gone (404)")));
                }
                Err(e) => return Err(e),
            };
            match status.as_str() {
                "complete" => break,
                "error" | "failure" | "killed" => {
                    return Err(self.task_failed(task, &status).await);
                }
                "expired" => {
                    return Ok(Waited::Expired(format!("query task {task} expired")));
                }
                // `added`, `running`, and anything this build does not know: still going.
                other => {
                    tracing::debug!(stream = %self.stream, task, status = other, "query task not done");
                }
            }
            self.pause(&mut pause, deadline, task, &status).await?;
        }
        let results_url = format!("{}/query_tasks/{}/results", self.base, enc(task));
        loop {
            match self
                .http
                .get(&results_url, &Self::headers(), &self.stream)
                .await
            {
                Ok(r) if r.status == 200 => return Ok(Waited::Result(r.body)),
                // 202 (current docs) or 204 (older releases): not ready yet.
                Ok(r) => {
                    tracing::debug!(stream = %self.stream, task, status = r.status, "results not ready");
                    self.pause(&mut pause, deadline, task, "complete, results not ready")
                        .await?;
                }
                Err(e) if e.status() == Some(404) => {
                    return Ok(Waited::Expired(format!(
                        "the results of query task {task} expired (404)"
                    )));
                }
                Err(Error::Http {
                    status: 400, body, ..
                }) => {
                    return Err(self.fail(format!(
                        "the Looker query failed: {}",
                        error_message(body.as_bytes())
                    )));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The database's message for a failed task (the results call answers 400 with it).
    async fn task_failed(&self, task: &str, status: &str) -> Error {
        let url = format!("{}/query_tasks/{}/results", self.base, enc(task));
        let detail = match self.http.get(&url, &Self::headers(), &self.stream).await {
            Err(Error::Http { body, .. }) => error_message(body.as_bytes()),
            Ok(r) => error_message(&r.body),
            Err(e) => e.to_string(),
        };
        self.fail(format!(
            "the Looker query task {task} ended with status `{status}`: {detail}"
        ))
    }

    /// Asks Looker to stop a task the run gives up on (`DELETE /running_queries/{id}`,
    /// kill_query), so an abandoned query stops loading the database. Best effort: a failure
    /// is logged, the run fails with the timeout either way.
    async fn kill(&self, task: &str) {
        let url = format!("{}/running_queries/{}", self.base, enc(task));
        let headers = Self::headers();
        let sent = self
            .http
            .send(
                Method::DELETE,
                &url,
                &self.stream,
                Idempotency::Safe,
                |rb| rb.headers(headers.clone()),
            )
            .await;
        match sent {
            Ok(_) => tracing::info!(stream = %self.stream, task, "killed the timed-out query task"),
            Err(e) => {
                tracing::warn!(stream = %self.stream, task, "could not kill the timed-out query task: {e}")
            }
        }
    }

    /// Sleeps before the next poll; fails (after killing the task) when the deadline has
    /// passed.
    async fn pause(
        &self,
        pause: &mut Duration,
        deadline: Instant,
        task: &str,
        state: &str,
    ) -> Result<()> {
        let now = Instant::now();
        if now >= deadline {
            self.kill(task).await;
            return Err(self.fail(format!(
                "query task {task} was not done after {:.0} s (last status `{state}`): raise query_timeout_seconds on the connection, or make the query cheaper",
                self.settings.timeout.as_secs_f64()
            )));
        }
        tokio::time::sleep((*pause).min(deadline - now)).await;
        *pause = (*pause + *pause / 2).min(self.settings.poll_max);
        Ok(())
    }
}

/// The `message` of a Looker error body, or the body itself.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<LookerErrorBody>(body)
        .ok()
        .map(|e| e.message)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(300).collect())
}

/// What a field of a result is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Dimension,
    Measure,
    TableCalculation,
}

/// One field of a result, from the `json_bi` metadata.
#[derive(Debug, Clone)]
pub struct ResultField {
    /// Looker's name, `view.field` (the payload key of the rows).
    pub name: String,
    pub kind: FieldKind,
    /// Looker's type (`string`, `count`, `sum`, `date_date`, ...); empty for table calculations.
    pub looker_type: String,
    pub label: Option<String>,
    pub description: Option<String>,
    /// A measure of a pivoted query: its row value is an object keyed by pivot value.
    pub pivoted: bool,
}

/// A parsed `json_bi` result.
#[derive(Debug)]
pub struct JsonBi {
    /// Byte range of every row in the body.
    pub rows: Vec<Range<usize>>,
    pub fields: Vec<ResultField>,
    /// Looker dropped columns beyond its column limit.
    pub columns_truncated: bool,
}

#[derive(Deserialize)]
struct RawJsonBi<'a> {
    #[serde(default)]
    metadata: RawMetadata,
    #[serde(borrow)]
    rows: Vec<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct RawMetadata {
    #[serde(default)]
    fields: RawFields,
    #[serde(default)]
    columns_truncated: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct RawFields {
    #[serde(default)]
    dimensions: Vec<RawField>,
    #[serde(default)]
    measures: Vec<RawField>,
    #[serde(default)]
    pivots: Vec<RawField>,
    #[serde(default)]
    table_calculations: Vec<RawField>,
}

#[derive(Deserialize)]
struct RawField {
    name: String,
    #[serde(default, rename = "type")]
    ty: Option<String>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    measure: Option<bool>,
}

/// Parses a `json_bi` body (`{"metadata": {"fields": {...}}, "rows": [...]}`) without
/// building a tree of the rows. Fails when the body is not that shape.
pub fn parse_json_bi(body: &[u8]) -> std::result::Result<JsonBi, String> {
    let raw: RawJsonBi<'_> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let base = body.as_ptr() as usize;
    let rows = raw
        .rows
        .iter()
        .map(|r| {
            let s = r.get();
            let start = s.as_ptr() as usize - base;
            start..start + s.len()
        })
        .collect();
    let f = raw.metadata.fields;
    let pivoted = !f.pivots.is_empty();
    let mut fields = Vec::new();
    let mut push = |list: Vec<RawField>, kind: FieldKind| {
        for x in list {
            let is_measure = match kind {
                FieldKind::Measure => true,
                FieldKind::TableCalculation => x.measure.unwrap_or(true),
                FieldKind::Dimension => false,
            };
            fields.push(ResultField {
                name: x.name,
                kind,
                looker_type: x.ty.unwrap_or_default(),
                label: x.label,
                description: x.description.filter(|d| !d.is_empty()),
                pivoted: pivoted && is_measure,
            });
        }
    };
    push(f.dimensions, FieldKind::Dimension);
    push(f.measures, FieldKind::Measure);
    push(f.table_calculations, FieldKind::TableCalculation);
    let columns_truncated = match raw.metadata.columns_truncated {
        Some(serde_json::Value::Bool(b)) => b,
        Some(serde_json::Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    };
    Ok(JsonBi {
        rows,
        fields,
        columns_truncated,
    })
}

/// The catalog type of a result field, from Looker's field type: counts are integers, other
/// measures and numbers are floats, `date_date`/`date_week` are dates, `date_time`/`date_raw`
/// are instants (queries run in UTC), numeric date parts are integers, everything else
/// (strings, `yesno`, `date_month` like `2024-01`, tiers) is text; pivoted measures keep their
/// per-pivot object as JSON.
pub fn column_type(f: &ResultField) -> ColumnType {
    if f.pivoted {
        return ColumnType::Json;
    }
    if f.kind == FieldKind::TableCalculation {
        return ColumnType::Float64;
    }
    match f.looker_type.as_str() {
        "count"
        | "count_distinct"
        | "date_year"
        | "date_day_of_month"
        | "date_month_num"
        | "date_hour_of_day"
        | "date_day_of_year"
        | "date_week_of_year"
        | "date_fiscal_year"
        | "date_fiscal_month_num" => ColumnType::Int64,
        "number"
        | "sum"
        | "sum_distinct"
        | "average"
        | "average_distinct"
        | "median"
        | "median_distinct"
        | "percentile"
        | "percentile_distinct"
        | "percent_of_total"
        | "percent_of_previous"
        | "running_total"
        | "min"
        | "max" => ColumnType::Float64,
        "date" | "date_date" | "date_week" => ColumnType::Date,
        "date_time" | "date_raw" | "date_second" | "time" => ColumnType::Timestamp,
        _ => ColumnType::String,
    }
}

/// The rows at `rows` with [`ROW_KEY`] added as their first key (`first` + 1 for the first
/// row), as one buffer with the new ranges. A row that is not an object is copied as it is
/// (the decoder quarantines it).
fn with_row_numbers(
    body: &[u8],
    rows: &[Range<usize>],
    first: usize,
) -> (Bytes, Vec<Range<usize>>) {
    let total: usize = rows.iter().map(|r| r.len() + 24).sum();
    let mut out = String::with_capacity(total);
    let mut bytes: Vec<u8> = Vec::with_capacity(total);
    let mut ranges = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        let rec = &body[r.clone()];
        let start = bytes.len();
        match rec.strip_prefix(b"{") {
            Some(inner) => {
                out.clear();
                let _ = write!(out, "{{\"{ROW_KEY}\":{}", first + i + 1);
                bytes.extend_from_slice(out.as_bytes());
                let rest = inner.trim_ascii_start();
                if !rest.starts_with(b"}") {
                    bytes.push(b',');
                }
                bytes.extend_from_slice(rest);
            }
            None => bytes.extend_from_slice(rec),
        }
        ranges.push(start..bytes.len());
        bytes.push(b'\n');
    }
    (Bytes::from(bytes), ranges)
}

/// Reads one Looker stream: one query task, its result handed out in pages.
pub struct LookerSource {
    api: LookerApi,
    stream: String,
    query: Option<LookerQuery>,
    look_id: Option<String>,
    limit: i64,
    /// Most rows a `limit = -1` stream accepts (the connection's `max_result_rows`).
    max_rows: u64,
    page_rows: usize,
    /// (payload key, type) of every catalog column but the row key.
    catalog: Vec<(String, ColumnType)>,
    result: Option<(Bytes, Vec<Range<usize>>)>,
    next: usize,
    done: bool,
    context: Arc<PageContext>,
}

impl LookerSource {
    /// Fails when the stream is not a valid Looker stream or asks for a window (a reference
    /// table has no cursor column to window on).
    pub fn new(
        stream: &Stream,
        conn: &Connection,
        endpoint: &Endpoint,
        mode: &ReadMode,
        _resume: Option<String>,
    ) -> Result<Self> {
        if let ReadMode::Window { .. } = mode {
            return Err(Error::config(format!(
                "{}: a Looker reference table is replaced whole by every run; backfill it without --since/--until",
                stream.id
            )));
        }
        let limit = stream.spec.limit.ok_or_else(|| {
            Error::config(format!(
                "{}: looker streams need an explicit limit",
                stream.id
            ))
        })?;
        Ok(Self {
            api: LookerApi::new(endpoint, &stream.id.to_string(), TaskSettings::of(conn)),
            stream: stream.id.to_string(),
            query: stream.spec.query.clone(),
            look_id: stream.spec.look_id.clone(),
            limit,
            max_rows: match &conn.settings {
                ConnectionSettings::Looker(l) => l.max_result_rows,
                _ => 1_000_000,
            },
            page_rows: match stream.page_size() {
                0 => DEFAULT_PAGE_ROWS,
                n => n as usize,
            },
            catalog: stream
                .catalog
                .columns
                .iter()
                .filter(|c| c.source_name() != ROW_KEY)
                .map(|c| (c.source_name().to_string(), c.ty))
                .collect(),
            result: None,
            next: 0,
            done: false,
            context: Arc::new(PageContext::new()),
        })
    }

    /// The most rows the stream accepts: its limit, or `max_result_rows` for `-1`.
    fn accepted(&self) -> u64 {
        u64::try_from(self.limit).unwrap_or(self.max_rows)
    }

    /// The limit sent to Looker: one row more than the stream accepts, so that a larger result
    /// shows. Never `-1`, which Looker may cut without saying so.
    fn requested_limit(&self) -> String {
        self.accepted().saturating_add(1).to_string()
    }

    async fn fetch(&mut self) -> Result<()> {
        let limit = self.requested_limit();
        let query_id = match (&self.query, &self.look_id) {
            (Some(q), _) => self.api.create_query(q, &limit).await?,
            (None, Some(look)) => self.api.look_query_id(look).await?,
            (None, None) => {
                return Err(Error::config(format!(
                    "{}: set `query` or `look_id`",
                    self.stream
                )));
            }
        };
        let body = self
            .api
            .run(&query_id, self.look_id.as_deref(), &limit)
            .await?;
        let parsed = parse_json_bi(&body).map_err(|e| {
            Error::decode(
                self.stream.clone(),
                format!("the query task result is not json_bi: {e}"),
            )
        })?;
        if parsed.columns_truncated {
            return Err(self.api.fail(
                "Looker truncated the result's columns (too many pivot values): narrow the pivots or the filters".into(),
            ));
        }
        if parsed.rows.len() as u64 > self.accepted() {
            return Err(self.api.fail(if self.limit >= 0 {
                format!(
                    "the result has more than limit = {} rows; nothing was landed rather than a cut table: raise `limit` in the stream file or set it to -1 (unlimited)",
                    self.limit
                )
            } else {
                format!(
                    "the result has more than max_result_rows = {} rows (the bound of a `limit = -1` stream); nothing was landed rather than a cut table, the previous table is kept: raise max_result_rows on the connection",
                    self.max_rows
                )
            }));
        }
        self.check_fields(&parsed.fields);
        tracing::info!(stream = %self.stream, rows = parsed.rows.len(), bytes = body.len(), "Looker result received");
        self.result = Some((body, parsed.rows));
        Ok(())
    }

    /// Warns about differences between the result's metadata and the catalog (the run goes
    /// on: untyped fields land in `_ml_extra`, mismatched values are quarantined).
    fn check_fields(&self, fields: &[ResultField]) {
        for f in fields {
            let want = column_type(f);
            match self.catalog.iter().find(|(k, _)| *k == f.name) {
                None => tracing::warn!(
                    stream = %self.stream, field = %f.name,
                    "the result has a field the catalog does not type (kept in _ml_extra); `mlc discover` drafts it as {want}"
                ),
                Some((_, have)) if *have != want => tracing::warn!(
                    stream = %self.stream, field = %f.name,
                    "the catalog types this field as {have}, Looker's metadata says {} ({want})", f.looker_type
                ),
                Some(_) => {}
            }
        }
        for (k, _) in &self.catalog {
            if !fields.iter().any(|f| f.name == *k) {
                tracing::warn!(stream = %self.stream, field = %k, "a catalog column is not in the result (it stays null)");
            }
        }
    }
}

#[async_trait::async_trait]
impl PageSource for LookerSource {
    async fn next_page(&mut self) -> Result<Option<Page>> {
        if self.done {
            return Ok(None);
        }
        if self.result.is_none() {
            self.fetch().await?;
        }
        let (page_body, page_rows, end, len) = {
            let Some((body, rows)) = &self.result else {
                return Ok(None);
            };
            let end = (self.next + self.page_rows).min(rows.len());
            let (b, r) = with_row_numbers(body, &rows[self.next..end], self.next);
            (b, r, end, rows.len())
        };
        self.next = end;
        if self.next >= len {
            self.done = true;
            self.result = None;
        }
        Ok(Some(Page {
            body: page_body,
            rows: page_rows,
            received_at_micros: now_micros(),
            // A result cannot be resumed half-way: an interrupted run runs the query again.
            resume: None,
            end_cursor: None,
            context: self.context.clone(),
        }))
    }
}

/// The rows of a `json_bi` body with their row keys, as the reader hands them to the decoder
/// (fixtures and drift checks).
pub fn parse_page(body: &[u8]) -> std::result::Result<(Bytes, Vec<Range<usize>>), String> {
    let parsed = parse_json_bi(body)?;
    Ok(with_row_numbers(body, &parsed.rows, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{"metadata":{"fields":{"dimensions":[{"name":"budget.department","type":"string","label":"Department"},{"name":"budget.period_date","type":"date_date"}],"measures":[{"name":"budget.line_count","type":"count"},{"name":"budget.planned_amount","type":"sum"}],"pivots":[],"table_calculations":[]},"columns_truncated":"false"},"rows":[{"budget.department":"Sales","budget.period_date":"2024-01-01","budget.line_count":3,"budget.planned_amount":1200.5},{}]}"#;

    #[test]
    fn parses_json_bi_and_maps_types() {
        let p = parse_json_bi(BODY.as_bytes()).unwrap();
        assert_eq!(p.rows.len(), 2);
        assert!(!p.columns_truncated);
        let types: Vec<ColumnType> = p.fields.iter().map(column_type).collect();
        assert_eq!(
            types,
            vec![
                ColumnType::String,
                ColumnType::Date,
                ColumnType::Int64,
                ColumnType::Float64
            ]
        );
        assert_eq!(p.fields[0].label.as_deref(), Some("Department"));
    }

    #[test]
    fn adds_the_row_key() {
        let (body, rows) = parse_page(BODY.as_bytes()).unwrap();
        let first: serde_json::Value = serde_json::from_slice(&body[rows[0].clone()]).unwrap();
        assert_eq!(first[ROW_KEY], 1);
        assert_eq!(first["budget.line_count"], 3);
        let second: serde_json::Value = serde_json::from_slice(&body[rows[1].clone()]).unwrap();
        assert_eq!(second, serde_json::json!({ ROW_KEY: 2 }));
    }

    #[test]
    fn rejects_other_shapes() {
        assert!(parse_json_bi(b"[{\"a\":1}]").is_err());
    }
}

//! The BigQuery v2 REST calls the loader makes (datasets, tables, jobs, queries, upload loads),
//! on the process-wide reqwest client with tokens from [`TokenSource`].
//!
//! Why raw JSON rather than gcp-bigquery-client's typed calls: its models lack
//! `parquetOptions`, it has no upload (media) load, and its error type hides the HTTP status
//! that job-id idempotency hinges on (409 = the job exists). Every response is also checked for
//! an `errors` array, because some servers (the emulator) report failures inside a 200.

use std::time::Duration;

use gcp_bigquery_client::auth::Authenticator;
use reqwest::Method;
use serde_json::{Value, json};

use super::auth::TokenSource;
use crate::error::{Error, Result};
use crate::http::describe_reqwest_error;
use crate::http::redact::{body_excerpt, redact_url};

/// Attempts for a request that failed transiently (429, 5xx, dropped connection).
const ATTEMPTS: u32 = 5;
/// How long a job may run before the loader gives up waiting (the job itself goes on).
const JOB_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// Files up to this size are uploaded in one multipart request; larger ones resumably.
const MULTIPART_MAX: usize = 5 << 20;
/// Jobs a failed job id may be retried under (`<id>_r1` ...), see [`Api::run_job`].
const MAX_JOB_RETRIES: u32 = 20;

/// A BigQuery project reached through one REST endpoint.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    /// `https://bigquery.googleapis.com/bigquery/v2` or an emulator's equivalent.
    base: String,
    /// The media-upload base (`.../upload/bigquery/v2`).
    upload_base: String,
    pub project: String,
    pub location: String,
    auth: TokenSource,
    /// Uploads above this size go resumable (see [`MULTIPART_MAX`]).
    multipart_max: usize,
}

/// A finished job and whether this call started it.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    /// The job id that ran (the base id, or a retry id after a failed earlier attempt).
    pub job_id: String,
    /// False when a job with this id had already completed: nothing ran again.
    pub started: bool,
    /// The job resource, `status.state = DONE` without `errorResult`.
    pub job: Value,
}

/// The upload base URL that belongs to a v2 base URL (`/bigquery/v2` → `/upload/bigquery/v2`).
pub fn upload_base(base: &str) -> String {
    match base.strip_suffix("/bigquery/v2") {
        Some(host) => format!("{host}/upload/bigquery/v2"),
        None => format!("{base}/upload"),
    }
}

/// The first error a response or job carries inside a successful status, if any.
fn embedded_error(v: &Value) -> Option<String> {
    let describe = |e: &Value| {
        let reason = e.get("reason").and_then(Value::as_str).unwrap_or("error");
        let message = e.get("message").and_then(Value::as_str).unwrap_or("");
        format!("{reason}: {message}")
    };
    if let Some(e) = v.pointer("/status/errorResult") {
        return Some(describe(e));
    }
    v.get("errors")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .map(describe)
}

impl Api {
    pub fn new(
        http: reqwest::Client,
        base: &str,
        project: &str,
        location: &str,
        auth: TokenSource,
    ) -> Self {
        let base = base.trim_end_matches('/').to_string();
        Self {
            http,
            upload_base: upload_base(&base),
            base,
            project: project.to_string(),
            location: location.to_string(),
            auth,
            multipart_max: MULTIPART_MAX,
        }
    }

    /// Uploads larger than `bytes` use a resumable session instead of one multipart request
    /// (default 5 MiB).
    pub fn with_multipart_max(mut self, bytes: usize) -> Self {
        self.multipart_max = bytes;
        self
    }

    fn project_url(&self, rest: &str) -> String {
        format!("{}/projects/{}/{rest}", self.base, self.project)
    }

    /// Sends one request (retrying transient failures) and returns the status and the JSON
    /// body (`Null` when empty). Non-success statuses are returned, not raised: callers decide
    /// what 404 and 409 mean.
    async fn send(&self, method: Method, url: &str, body: Option<Body>) -> Result<(u16, Value)> {
        self.send_attempts(method, url, body, ATTEMPTS).await
    }

    /// [`send`](Self::send) with at most `attempts` tries of a transient failure.
    async fn send_attempts(
        &self,
        method: Method,
        url: &str,
        body: Option<Body>,
        attempts: u32,
    ) -> Result<(u16, Value)> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = self.auth.access_token().await.map_err(|e| Error::Auth {
                system: "bigquery".into(),
                message: e.to_string(),
            })?;
            let mut req = self.http.request(method.clone(), url).bearer_auth(token);
            match &body {
                Some(Body::Json(v)) => req = req.json(v),
                Some(Body::Raw {
                    content_type,
                    bytes,
                }) => {
                    req = req
                        .header(reqwest::header::CONTENT_TYPE, content_type.as_str())
                        .body(bytes.clone())
                }
                None => {}
            }
            let outcome = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    match resp.bytes().await {
                        Ok(bytes) => Ok((status, bytes)),
                        Err(e) => Err(describe_reqwest_error(&e)),
                    }
                }
                Err(e) => Err(describe_reqwest_error(&e)),
            };
            let transient = match &outcome {
                Ok((status, _)) => matches!(status, 429 | 500 | 502 | 503 | 504),
                Err(_) => true,
            };
            if transient && attempt < attempts {
                tokio::time::sleep(Duration::from_millis(250 * 2u64.pow(attempt))).await;
                continue;
            }
            let (status, bytes) = outcome.map_err(|message| Error::Transport {
                system: "bigquery".into(),
                method: method.to_string(),
                url: redact_url(url),
                message,
                source: None,
            })?;
            let value = if bytes.is_empty() {
                Value::Null
            } else {
                match serde_json::from_slice::<Value>(&bytes) {
                    Ok(v) => v,
                    Err(_) if !(200..300).contains(&status) => Value::Null,
                    Err(e) => {
                        return Err(Error::warehouse(format!(
                            "BigQuery {method} {}: unreadable response ({e}): {}",
                            redact_url(url),
                            body_excerpt(&bytes, 300)
                        )));
                    }
                }
            };
            if !(200..300).contains(&status) && !matches!(status, 404 | 409) {
                return Err(self.http_error(&method, url, status, &value, &bytes));
            }
            return Ok((status, value));
        }
    }

    fn http_error(&self, method: &Method, url: &str, status: u16, v: &Value, raw: &[u8]) -> Error {
        let body = v
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| body_excerpt(raw, 300));
        Error::Http {
            system: "bigquery".into(),
            method: method.to_string(),
            url: redact_url(url),
            status,
            body,
            retry_after: None,
        }
    }

    /// Like [`send`](Self::send), but 404 and 409 are errors too.
    async fn send_ok(&self, method: Method, url: &str, body: Option<Body>) -> Result<Value> {
        let (status, v) = self.send(method.clone(), url, body).await?;
        if !(200..300).contains(&status) {
            return Err(self.http_error(&method, url, status, &v, b""));
        }
        if let Some(e) = embedded_error(&v) {
            return Err(Error::warehouse(format!(
                "BigQuery {method} {}: {e}",
                redact_url(url)
            )));
        }
        Ok(v)
    }

    /// Creates the dataset unless it exists.
    pub async fn ensure_dataset(&self, dataset: &str) -> Result<()> {
        let url = self.project_url(&format!("datasets/{dataset}"));
        let (status, _) = self.send(Method::GET, &url, None).await?;
        if status != 404 {
            return Ok(());
        }
        let body = json!({
            "datasetReference": {"projectId": self.project, "datasetId": dataset},
            "location": self.location,
        });
        let url = self.project_url("datasets");
        match self
            .send(Method::POST, &url, Some(Body::Json(body)))
            .await?
        {
            (409, _) => Ok(()), // created meanwhile
            (s, v) if (200..300).contains(&s) => match embedded_error(&v) {
                None => Ok(()),
                Some(e) => Err(Error::warehouse(format!("creating dataset {dataset}: {e}"))),
            },
            (s, v) => Err(self.http_error(&Method::POST, &url, s, &v, b"")),
        }
    }

    /// The table resource, or `None` when the table does not exist.
    pub async fn get_table(&self, dataset: &str, table: &str) -> Result<Option<Value>> {
        let url = self.project_url(&format!("datasets/{dataset}/tables/{table}"));
        match self.send(Method::GET, &url, None).await? {
            (404, _) => Ok(None),
            (_, v) => Ok(Some(v)),
        }
    }

    /// Creates a table from a full `Table` resource; an existing table is left as it is.
    pub async fn create_table(&self, dataset: &str, table: Value) -> Result<()> {
        let url = self.project_url(&format!("datasets/{dataset}/tables"));
        match self
            .send(Method::POST, &url, Some(Body::Json(table)))
            .await?
        {
            (409, _) => Ok(()),
            (s, v) if (200..300).contains(&s) => match embedded_error(&v) {
                None => Ok(()),
                Some(e) => Err(Error::warehouse(format!(
                    "creating a table in {dataset}: {e}"
                ))),
            },
            (s, v) => Err(self.http_error(&Method::POST, &url, s, &v, b"")),
        }
    }

    /// Drops a table; a missing table is fine.
    pub async fn delete_table(&self, dataset: &str, table: &str) -> Result<()> {
        let url = self.project_url(&format!("datasets/{dataset}/tables/{table}"));
        self.send(Method::DELETE, &url, None).await.map(|_| ())
    }

    /// The job, or `None` if no job has this id.
    pub async fn get_job(&self, job_id: &str) -> Result<Option<Value>> {
        let url = format!(
            "{}?location={}",
            self.project_url(&format!("jobs/{job_id}")),
            self.location
        );
        match self.send(Method::GET, &url, None).await? {
            (404, _) => Ok(None),
            (_, v) => Ok(Some(v)),
        }
    }

    /// Runs a job under a deterministic id and waits for it, so a retried step never runs
    /// twice: a job that already succeeded under `job_id` is returned as it is (`started =
    /// false`); one still running is waited for; one that failed is retried under
    /// `<job_id>_r1`, `_r2`, ... (each checked the same way). `upload` sends the job with a
    /// media body (a Parquet file) instead of a plain insert.
    ///
    /// Fails when the job fails (the message carries BigQuery's reason), or on HTTP errors.
    pub async fn run_job(
        &self,
        job_id: &str,
        configuration: Value,
        upload: Option<&bytes::Bytes>,
    ) -> Result<JobOutcome> {
        let mut last_error = String::new();
        for retry in 0..=MAX_JOB_RETRIES {
            let id = if retry == 0 {
                job_id.to_string()
            } else {
                format!("{job_id}_r{retry}")
            };
            // A job that exists already: wait for it, take its result, never run it again.
            // (Checked before inserting: some servers answer a reused id with 200 and run it.)
            let inserted = self.find_or_insert(&id, &configuration, upload).await?;
            let (job, started) = match inserted {
                Inserted::Existing(job) => (self.wait_job(&id, job).await?, false),
                // The insert's answer is the job (polled by its id until DONE).
                Inserted::Created(job) => (self.wait_job(&id, job).await?, true),
            };
            match job.pointer("/status/errorResult") {
                None => {
                    return Ok(JobOutcome {
                        job_id: id,
                        started,
                        job,
                    });
                }
                Some(_) if started => {
                    return Err(Error::warehouse(format!(
                        "BigQuery job {id} failed: {}",
                        embedded_error(&job).unwrap_or_default()
                    )));
                }
                // An earlier attempt under this id failed: try the next id.
                Some(_) => last_error = embedded_error(&job).unwrap_or_default(),
            }
        }
        Err(Error::warehouse(format!(
            "BigQuery job {job_id} failed {MAX_JOB_RETRIES} times; last error: {last_error}"
        )))
    }

    /// The job under `id` if it exists, else inserted. An insert that fails in transit is not
    /// sent again blindly: the server may have started the job, so the next try looks it up
    /// first (a server that re-runs a reused id, like the emulator, would otherwise run it twice).
    async fn find_or_insert(
        &self,
        id: &str,
        configuration: &Value,
        upload: Option<&bytes::Bytes>,
    ) -> Result<Inserted> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Some(job) = self.get_job(id).await? {
                return Ok(Inserted::Existing(job));
            }
            match self.insert_job(id, configuration, upload).await {
                Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(250 * 2u64.pow(attempt))).await;
                }
                other => return other,
            }
        }
    }

    /// Inserts a job, once: `Existing` when the id was taken (409: someone already started it),
    /// `Created` with the insert's answer when this call created it.
    async fn insert_job(
        &self,
        job_id: &str,
        configuration: &Value,
        upload: Option<&bytes::Bytes>,
    ) -> Result<Inserted> {
        let job = json!({
            "jobReference": {"projectId": self.project, "jobId": job_id, "location": self.location},
            "configuration": configuration,
        });
        let (url, body) = match upload {
            None => (self.project_url("jobs"), Body::Json(job)),
            Some(file) if file.len() > self.multipart_max => {
                return self.resumable_upload(job_id, &job, file).await;
            }
            Some(file) => (
                format!(
                    "{}/projects/{}/jobs?uploadType=multipart",
                    self.upload_base, self.project
                ),
                multipart_related(&job, file),
            ),
        };
        match self
            .send_attempts(Method::POST, &url, Some(body), 1)
            .await?
        {
            (409, _) => match self.get_job(job_id).await? {
                Some(job) => Ok(Inserted::Existing(job)),
                None => Err(Error::warehouse(format!(
                    "BigQuery job {job_id} exists (409) but cannot be read; check jobs.get permission and warehouse.bigquery.location"
                ))),
            },
            (s, v) if (200..300).contains(&s) => Ok(Inserted::Created(v)),
            (s, v) => Err(self.http_error(&Method::POST, &url, s, &v, b"")),
        }
    }

    /// A resumable media upload: the job resource opens a session, one PUT sends the file.
    /// Same answer as [`insert_job`](Self::insert_job).
    async fn resumable_upload(
        &self,
        job_id: &str,
        job: &Value,
        file: &bytes::Bytes,
    ) -> Result<Inserted> {
        let url = format!(
            "{}/projects/{}/jobs?uploadType=resumable",
            self.upload_base, self.project
        );
        let token = self.auth.access_token().await.map_err(|e| Error::Auth {
            system: "bigquery".into(),
            message: e.to_string(),
        })?;
        let transport = |method: &str, url: &str, e: reqwest::Error| Error::Transport {
            system: "bigquery".into(),
            method: method.into(),
            url: redact_url(url),
            message: describe_reqwest_error(&e),
            source: Some(Box::new(e.without_url())),
        };
        let resp = self
            .http
            .post(&url)
            .bearer_auth(&token)
            .header("X-Upload-Content-Type", "application/octet-stream")
            .header("X-Upload-Content-Length", file.len().to_string())
            .json(job)
            .send()
            .await
            .map_err(|e| transport("POST", &url, e))?;
        let status = resp.status().as_u16();
        if status == 409 {
            return match self.get_job(job_id).await? {
                Some(job) => Ok(Inserted::Existing(job)),
                None => Err(Error::warehouse(format!(
                    "BigQuery job {job_id} exists (409) but cannot be read"
                ))),
            };
        }
        let session = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let Some(session) = session.filter(|_| (200..300).contains(&status)) else {
            let raw = resp.bytes().await.unwrap_or_default();
            let v = serde_json::from_slice(&raw).unwrap_or(Value::Null);
            return Err(self.http_error(&Method::POST, &url, status, &v, &raw));
        };
        let resp = self
            .http
            .put(&session)
            .bearer_auth(&token)
            .header(
                reqwest::header::CONTENT_RANGE,
                format!("bytes 0-{}/{}", file.len().saturating_sub(1), file.len()),
            )
            .body(file.clone())
            .send()
            .await
            .map_err(|e| transport("PUT", &session, e))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let raw = resp.bytes().await.unwrap_or_default();
            let v = serde_json::from_slice(&raw).unwrap_or(Value::Null);
            return Err(self.http_error(&Method::PUT, &session, status, &v, &raw));
        }
        let raw = resp.bytes().await.unwrap_or_default();
        Ok(Inserted::Created(
            serde_json::from_slice(&raw).unwrap_or(Value::Null),
        ))
    }

    /// Polls a job until it is DONE.
    async fn wait_job(&self, job_id: &str, mut job: Value) -> Result<Value> {
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(200);
        loop {
            if job.pointer("/status/state").and_then(Value::as_str) == Some("DONE") {
                return Ok(job);
            }
            if started.elapsed() > JOB_TIMEOUT {
                return Err(Error::warehouse(format!(
                    "BigQuery job {job_id} still running after {} h; the next run will wait for it again",
                    JOB_TIMEOUT.as_secs() / 3600
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
            let id = job
                .pointer("/jobReference/jobId")
                .and_then(Value::as_str)
                .unwrap_or(job_id)
                .to_string();
            job = self
                .get_job(&id)
                .await?
                .ok_or_else(|| Error::warehouse(format!("BigQuery job {id} vanished")))?;
        }
    }

    /// Runs a read-only query and returns its rows as arrays of cell values (strings or null,
    /// as BigQuery's JSON renders them). For small results: counts, checks, tests.
    pub async fn query_rows(&self, sql: &str) -> Result<Vec<Vec<Value>>> {
        let url = self.project_url("queries");
        let body = json!({
            "query": sql,
            "useLegacySql": false,
            "location": self.location,
            "timeoutMs": 60000,
        });
        let mut resp = self
            .send_ok(Method::POST, &url, Some(Body::Json(body)))
            .await?;
        let job_id = resp
            .pointer("/jobReference/jobId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut rows = Vec::new();
        loop {
            let complete = resp.get("jobComplete").and_then(Value::as_bool) != Some(false);
            if complete {
                for r in resp
                    .get("rows")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let cells: Vec<Value> = r
                        .get("f")
                        .and_then(Value::as_array)
                        .map(|f| {
                            f.iter()
                                .map(|c| c.get("v").cloned().unwrap_or(Value::Null))
                                .collect()
                        })
                        .unwrap_or_default();
                    rows.push(cells);
                }
            }
            let token = resp
                .get("pageToken")
                .and_then(Value::as_str)
                .map(str::to_string);
            if complete && token.is_none() {
                return Ok(rows);
            }
            let mut url = format!(
                "{}?location={}&timeoutMs=60000",
                self.project_url(&format!("queries/{job_id}")),
                self.location
            );
            if let Some(t) = token {
                url.push_str(&format!("&pageToken={t}"));
            }
            resp = self.send_ok(Method::GET, &url, None).await?;
        }
    }
}

/// What a job insert found.
enum Inserted {
    /// The id was taken: that job.
    Existing(Value),
    /// This call created the job: the insert's answer.
    Created(Value),
}

/// A request body.
enum Body {
    Json(Value),
    Raw {
        content_type: String,
        bytes: bytes::Bytes,
    },
}

/// The `multipart/related` body of a media upload: the job resource, then the file.
fn multipart_related(job: &Value, file: &bytes::Bytes) -> Body {
    let boundary = format!("mlc_boundary_{:016x}", rand::random::<u64>());
    let mut out = Vec::with_capacity(file.len() + 1024);
    out.extend_from_slice(
        format!("--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n").as_bytes(),
    );
    out.extend_from_slice(job.to_string().as_bytes());
    out.extend_from_slice(
        format!("\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
    );
    out.extend_from_slice(file);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Body::Raw {
        content_type: format!("multipart/related; boundary={boundary}"),
        bytes: bytes::Bytes::from(out),
    }
}

#[cfg(test)]
mod tests {
    //! The job-id paths real BigQuery takes and the emulator does not (it answers a reused id
    //! with 200): a 409 on insert, a failed earlier attempt, errors inside a 200.

    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    use axum::{Json, Router};

    use super::*;

    #[derive(Default)]
    struct Fake {
        /// job id → (GETs answered 404 before the job shows up, job resource).
        jobs: HashMap<String, (u32, Value)>,
        inserts: Vec<String>,
        /// What an insert answers.
        insert_status: u16,
    }

    type Shared = Arc<Mutex<Fake>>;

    fn done(id: &str, error: Option<&str>) -> Value {
        let mut job = json!({"jobReference": {"jobId": id}, "status": {"state": "DONE"}});
        if let Some(e) = error {
            job["status"]["errorResult"] = json!({"reason": "invalid", "message": e});
        }
        job
    }

    async fn get_job(
        State(s): State<Shared>,
        Path((_, id)): Path<(String, String)>,
    ) -> (StatusCode, Json<Value>) {
        let mut f = s.lock().unwrap();
        match f.jobs.get_mut(&id) {
            Some((hidden, _)) if *hidden > 0 => {
                *hidden -= 1;
                (
                    StatusCode::NOT_FOUND,
                    Json(json!({"error": {"code": 404, "message": "Not found"}})),
                )
            }
            Some((_, job)) => (StatusCode::OK, Json(job.clone())),
            None => (
                StatusCode::NOT_FOUND,
                Json(json!({"error": {"code": 404, "message": "Not found"}})),
            ),
        }
    }

    async fn insert_job(
        State(s): State<Shared>,
        Json(body): Json<Value>,
    ) -> (StatusCode, Json<Value>) {
        let mut f = s.lock().unwrap();
        let id = body
            .pointer("/jobReference/jobId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        f.inserts.push(id.clone());
        if f.insert_status == 409 {
            return (
                StatusCode::CONFLICT,
                Json(
                    json!({"error": {"code": 409, "message": format!("Already Exists: Job p:US.{id}")}}),
                ),
            );
        }
        f.jobs.insert(id.clone(), (0, done(&id, None)));
        (StatusCode::OK, Json(done(&id, None)))
    }

    async fn query() -> Json<Value> {
        Json(
            json!({"jobComplete": true, "rows": [], "errors": [{"reason": "invalidQuery", "message": "Unrecognized name: nonsense"}]}),
        )
    }

    async fn serve(fake: Fake) -> (Api, Shared) {
        let shared: Shared = Arc::new(Mutex::new(fake));
        let app = Router::new()
            .route("/bigquery/v2/projects/{p}/jobs", post(insert_job))
            .route("/bigquery/v2/projects/{p}/jobs/{id}", get(get_job))
            .route("/bigquery/v2/projects/{p}/queries", post(query))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let api = Api::new(
            reqwest::Client::new(),
            &format!("http://{addr}/bigquery/v2"),
            "p",
            "US",
            TokenSource::none(),
        );
        (api, shared)
    }

    #[tokio::test]
    async fn a_409_on_insert_waits_for_the_existing_job_and_runs_nothing() {
        // The job is invisible to the first GET (another worker inserts it meanwhile), so the
        // insert happens and gets 409; the loader then takes that job's result.
        let mut fake = Fake {
            insert_status: 409,
            ..Fake::default()
        };
        fake.jobs
            .insert("mlc_x_load".into(), (1, done("mlc_x_load", None)));
        let (api, shared) = serve(fake).await;
        let out = api
            .run_job("mlc_x_load", json!({"query": {}}), None)
            .await
            .unwrap();
        assert!(!out.started);
        assert_eq!(out.job_id, "mlc_x_load");
        assert_eq!(shared.lock().unwrap().inserts, vec!["mlc_x_load"]);
    }

    #[tokio::test]
    async fn a_done_job_is_not_inserted_again() {
        let mut fake = Fake {
            insert_status: 200,
            ..Fake::default()
        };
        fake.jobs.insert("j".into(), (0, done("j", None)));
        let (api, shared) = serve(fake).await;
        let out = api.run_job("j", json!({}), None).await.unwrap();
        assert!(!out.started);
        assert!(shared.lock().unwrap().inserts.is_empty());
    }

    #[tokio::test]
    async fn a_failed_earlier_attempt_is_retried_under_a_derived_id() {
        let mut fake = Fake {
            insert_status: 200,
            ..Fake::default()
        };
        fake.jobs
            .insert("j".into(), (0, done("j", Some("file not found"))));
        let (api, shared) = serve(fake).await;
        let out = api.run_job("j", json!({}), None).await.unwrap();
        assert!(out.started);
        assert_eq!(out.job_id, "j_r1");
        assert_eq!(shared.lock().unwrap().inserts, vec!["j_r1"]);
    }

    #[tokio::test]
    async fn errors_inside_a_200_are_errors() {
        let (api, _) = serve(Fake::default()).await;
        let err = api.query_rows("SELECT nonsense").await.unwrap_err();
        assert!(err.to_string().contains("Unrecognized name"), "{err}");
    }

    #[test]
    fn upload_base_follows_the_v2_base() {
        assert_eq!(
            upload_base("https://bigquery.googleapis.com/bigquery/v2"),
            "https://bigquery.googleapis.com/upload/bigquery/v2"
        );
        assert_eq!(
            upload_base("http://127.0.0.1:9050/bigquery/v2"),
            "http://127.0.0.1:9050/upload/bigquery/v2"
        );
    }
}

//! The Pipedrive reader: API v2 cursor paging (`cursor`/`limit` ≤ 500, `next_cursor` null on
//! the last page), v1 offset paging (`start`/`limit`, for the v1-only users), incremental reads
//! by `updated_since = cursor` (the run folds the lookback into the cursor) sorted by `update_time` ascending (never `/recents`),
//! child endpoints read per batch of parent ids (deal products: `deal_ids` from the deals list),
//! several list paths read one after the other into one table (`also_paths`: deals and
//! archived deals; `$from:` may name several parent lists, comma-separated),
//! and the custom-field rewrite: the company's field definitions are loaded once per run and
//! every record's nested `custom_fields` (40-hex keys, option ids) becomes top-level keys
//! (the codes, option labels) before the page reaches the decoder.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::batches::PageContext;
use crate::config::Connection;
use crate::error::{Error, Result};
use crate::http::Endpoint;
use crate::http::HttpClient;
use crate::spec::{Pagination, Stream};
use crate::streams::{Page, PageSource, ReadMode, get_parsed, now_micros};

/// Pipedrive's ceiling on `limit`, and on ids per `deal_ids` request.
const MAX_LIMIT: u32 = 500;
const MAX_PARENT_IDS: u32 = 100;

/// A stream parameter whose value is `$from:<path>[,<path>…]` is filled with the ids listed at
/// each `<path>` in turn, at most 100 per request.
const FROM_PREFIX: &str = "$from:";

/// One custom field definition.
#[derive(Debug, Clone)]
pub struct FieldDef {
    /// Display name (`Contract type`).
    pub name: String,
    /// `enum`, `set`, `monetary`, `varchar`, ...
    pub field_type: String,
    /// Option id → label, for `enum` and `set`.
    pub options: HashMap<i64, String>,
}

/// Custom fields by their 40-hex key.
pub type FieldMap = HashMap<String, FieldDef>;

/// The child-of-parent loop (deal products per batch of deals).
struct Parent {
    /// Query parameter that carries the parent ids (`deal_ids`).
    param: String,
    /// Parent list paths, read in turn (`/api/v2/deals`, `/api/v2/deals/archived`).
    paths: Vec<String>,
    /// Index in `paths` of the list being expanded.
    path_at: usize,
    /// Cursor of the parent page being expanded (`None` = first page).
    at: Option<String>,
    /// Cursor after the parent page being expanded; `Some(None)` = it was the last page.
    after: Option<Option<String>>,
    /// Ids of the parent page being expanded (empty = fetch the next parent page).
    ids: Vec<i64>,
    /// Cursor inside the child listing of the current ids.
    child: Option<String>,
}

pub struct PipedriveSource {
    http: HttpClient,
    configured_base: String,
    base: Option<String>,
    stream: String,
    /// `{api_path}{path}` without parameters.
    path: String,
    /// `path` then `{api_path}{also_paths…}`: the lists read one after the other.
    paths: Vec<String>,
    /// Index in `paths` of the list being read.
    path_at: usize,
    /// Fixed parameters and those of the read mode.
    query: Vec<(String, String)>,
    pagination: Pagination,
    limit: u32,
    headers: HeaderMap,
    /// `/api/v2/dealFields` etc. for entities with custom fields.
    fields_path: Option<String>,
    fields: Option<FieldMap>,
    /// The custom field definitions of the live schema the stream was reconciled with.
    cached: Option<FieldMap>,
    parent: Option<Parent>,
    /// Next position of a plain listing: v2 cursor or v1 start (`None` = first page).
    position: Option<String>,
    done: bool,
    context: Arc<PageContext>,
}

/// The field-definition endpoint of an entity list path, if it has custom fields.
pub fn fields_path_of(path: &str) -> Option<String> {
    let (prefix, last) = path.trim_end_matches('/').rsplit_once('/')?;
    if !(prefix.ends_with("/v2") || prefix.ends_with("/v1")) {
        return None;
    }
    let entity = match last {
        "deals" => "deal",
        "persons" => "person",
        "organizations" => "organization",
        "products" => "product",
        _ => return None,
    };
    Some(format!("{prefix}/{entity}Fields"))
}

/// The cursor as RFC 3339 UTC in whole seconds, the form `updated_since` takes (inclusive).
/// `update_time` has one-second resolution, so a fraction rounds up: the cursor just after the
/// newest row seen (run::next_cursor, which also folds in the lookback) does not read that row
/// again.
fn since(cursor: &str) -> Result<String> {
    let t = chrono::DateTime::parse_from_rfc3339(cursor).map_err(|e| {
        Error::config(format!(
            "the saved cursor `{cursor}` is not an RFC 3339 instant ({e}); run `mlc sync --full`"
        ))
    })?;
    let t = t.with_timezone(&chrono::Utc);
    let t = if t.timestamp_subsec_nanos() > 0 {
        t + chrono::Duration::nanoseconds(1_000_000_000 - i64::from(t.timestamp_subsec_nanos()))
    } else {
        t
    };
    Ok(t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// A window bound as RFC 3339 UTC (a bare date is midnight UTC).
fn bound(v: &str) -> Result<String> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Ok(format!("{d}T00:00:00Z"));
    }
    since(v)
}

impl PipedriveSource {
    pub fn new(
        stream: &Stream,
        _conn: &Connection,
        endpoint: &Endpoint,
        mode: &ReadMode,
        resume: Option<String>,
    ) -> Result<Self> {
        let rel = stream
            .spec
            .path
            .clone()
            .ok_or_else(|| Error::config(format!("{}: no path", stream.id)))?;
        let path = format!("{}{}", stream.source.api_path, rel);
        let mut fixed = Vec::new();
        let mut parent = None;
        for (k, v) in &stream.spec.params {
            match v.strip_prefix(FROM_PREFIX) {
                Some(p) => {
                    parent = Some(Parent {
                        param: k.clone(),
                        paths: p
                            .split(',')
                            .map(|p| format!("{}{}", stream.source.api_path, p.trim()))
                            .collect(),
                        path_at: 0,
                        at: None,
                        after: None,
                        ids: Vec::new(),
                        child: None,
                    })
                }
                None => fixed.push((k.clone(), v.clone())),
            }
        }
        // The read mode filters the listing that decides what changed: the parent's when
        // there is one.
        let mut mode_q = Vec::new();
        match mode {
            ReadMode::Snapshot { .. } | ReadMode::Keys => {}
            ReadMode::Incremental { cursor } => {
                if !cursor.is_empty() {
                    mode_q.push(("updated_since".into(), since(cursor)?));
                }
                mode_q.push(("sort_by".into(), "update_time".into()));
                mode_q.push(("sort_direction".into(), "asc".into()));
            }
            ReadMode::Window { since: s, until } => {
                if let Some(s) = s {
                    mode_q.push(("updated_since".into(), bound(s)?));
                }
                if let Some(u) = until {
                    mode_q.push(("updated_until".into(), bound(u)?));
                }
                mode_q.push(("sort_by".into(), "update_time".into()));
                mode_q.push(("sort_direction".into(), "asc".into()));
            }
        }
        let mut query = fixed;
        if parent.is_none() {
            query.extend(mode_q);
        } else if let Some(p) = parent.as_mut() {
            // Parent query: mode parameters only (ids); kept in `path` form below.
            for path in &mut p.paths {
                *path = with_query(path, &mode_q);
            }
        }
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        for (k, v) in &stream.source.headers {
            if let (Ok(n), Ok(v)) = (
                reqwest::header::HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                headers.insert(n, v);
            }
        }
        let mut src = Self {
            http: endpoint.http.clone(),
            configured_base: endpoint.base.clone(),
            base: None,
            stream: stream.id.to_string(),
            fields_path: fields_path_of(&path),
            paths: std::iter::once(path.clone())
                .chain(
                    stream
                        .spec
                        .also_paths
                        .iter()
                        .map(|p| format!("{}{}", stream.source.api_path, p)),
                )
                .collect(),
            path_at: 0,
            query,
            // v1 endpoints (users) page by offset whatever the source's default says.
            pagination: if path.contains("/v1/") {
                Pagination::Offset
            } else {
                stream.source.pagination
            },
            path,
            limit: stream.page_size().clamp(1, MAX_LIMIT),
            headers,
            fields: None,
            cached: stream.live.as_deref().and_then(field_map),
            parent,
            position: None,
            done: false,
            context: Arc::new(PageContext::new()),
        };
        if let Some(r) = resume {
            src.resume_at(&r)?;
        }
        Ok(src)
    }

    /// Resume positions: `c:<cursor>` / `s:<start>` (plain listing), `p:<cursor>` (parent
    /// page being expanded), each with `@<n>` after the tag when the position is in the n-th
    /// further path (`c@1:` = the start of the first of `also_paths`).
    fn resume_at(&mut self, r: &str) -> Result<()> {
        let bad = || {
            Error::config(format!(
                "{}: saved position `{r}` does not belong to this stream",
                self.stream
            ))
        };
        let (tag, c) = r.split_once(':').ok_or_else(bad)?;
        let (tag, at) = match tag.split_once('@') {
            Some((t, n)) => (t, n.parse::<usize>().map_err(|_| bad())?),
            None => (tag, 0),
        };
        let c = (!c.is_empty()).then(|| c.to_string());
        match (tag, self.parent.as_mut()) {
            ("p", Some(p)) if at < p.paths.len() => {
                p.path_at = at;
                p.at = c;
                Ok(())
            }
            ("c" | "s", None) if at < self.paths.len() => {
                self.path_at = at;
                self.position = c;
                Ok(())
            }
            _ => Err(bad()),
        }
    }

    async fn base(&mut self) -> Result<String> {
        if let Some(b) = &self.base {
            return Ok(b.clone());
        }
        let b = self
            .http
            .auth_api_base()
            .await?
            .unwrap_or_else(|| self.configured_base.clone());
        self.base = Some(b.clone());
        Ok(b)
    }

    /// GET with retries of unparsable bodies; returns the body and its parsed page.
    async fn fetch(&self, url: &str) -> Result<(Bytes, Parsed)> {
        let (page, _) = get_parsed(
            &self.http,
            url,
            &self.headers,
            &self.stream,
            "a {success, data} envelope",
            |body: Bytes| parse_page(&body).map(|p| (body, p)),
            |e| e,
        )
        .await?;
        Ok(page)
    }

    async fn load_fields(&mut self) -> Result<()> {
        if self.fields.is_some() {
            return Ok(());
        }
        let Some(fp) = self.fields_path.clone() else {
            self.fields = Some(FieldMap::new());
            return Ok(());
        };
        // The run read the definitions with the tenant's live schema already.
        if let Some(defs) = self.cached.take() {
            self.fields = Some(defs);
            return Ok(());
        }
        let base = self.base().await?;
        let fields = load_field_map(&self.http, &base, &fp, &self.stream).await?;
        self.fields = Some(fields);
        Ok(())
    }

    fn page_of(&self, body: Bytes, parsed: &Parsed, resume: Option<String>) -> Page {
        let (body, rows) = match &self.fields {
            Some(f) if !f.is_empty() => rewrite_records(&body, &parsed.rows, f),
            _ => (body, parsed.rows.clone()),
        };
        Page {
            body,
            rows,
            received_at_micros: now_micros(),
            resume,
            end_cursor: None,
            context: self.context.clone(),
        }
    }

    fn paging_params(&self, at: &Option<String>) -> Vec<(String, String)> {
        let mut q = vec![("limit".to_string(), self.limit.to_string())];
        if let Some(a) = at {
            let key = match self.pagination {
                Pagination::Offset => "start",
                _ => "cursor",
            };
            q.push((key.into(), a.clone()));
        }
        q
    }

    async fn next_plain(&mut self) -> Result<Option<Page>> {
        let base = self.base().await?;
        let mut q = self.query.clone();
        q.extend(self.paging_params(&self.position));
        let url = with_query(&format!("{base}{}", self.paths[self.path_at]), &q);
        let (body, parsed) = self.fetch(&url).await?;
        let next = match self.pagination {
            Pagination::Offset => parsed.next_start.map(|s| s.to_string()),
            _ => parsed.next_cursor.clone(),
        };
        let tag = if self.pagination == Pagination::Offset {
            "s"
        } else {
            "c"
        };
        // The end of one list is the start of the next one, if any.
        if next.is_none() && self.path_at + 1 < self.paths.len() {
            self.path_at += 1;
        } else if next.is_none() {
            self.done = true;
        }
        let resume =
            (!self.done).then(|| position(tag, self.path_at, next.as_deref().unwrap_or_default()));
        self.position = next;
        Ok(Some(self.page_of(body, &parsed, resume)))
    }

    async fn next_child(&mut self) -> Result<Option<Page>> {
        // The parent loop is taken out while fetching (which borrows `self`) and put back.
        let Some(mut p) = self.parent.take() else {
            return Ok(None);
        };
        let out = self.step_child(&mut p).await;
        self.parent = Some(p);
        out
    }

    async fn step_child(&mut self, p: &mut Parent) -> Result<Option<Page>> {
        let base = self.base().await?;
        let limit = self.limit;
        // Next batch of parent ids (skipping parent pages without records, then lists).
        while p.ids.is_empty() {
            if p.after == Some(None) {
                if p.path_at + 1 >= p.paths.len() {
                    self.done = true;
                    return Ok(None);
                }
                p.path_at += 1;
                p.at = None;
                p.after = None;
            }
            if let Some(after) = p.after.take() {
                p.at = after;
            }
            let mut q = vec![("limit".to_string(), limit.min(MAX_PARENT_IDS).to_string())];
            if let Some(c) = &p.at {
                q.push(("cursor".into(), c.clone()));
            }
            let url = with_query(&format!("{base}{}", p.paths[p.path_at]), &q);
            let (body, parsed) = self.fetch(&url).await?;
            #[derive(Deserialize)]
            struct Id {
                id: i64,
            }
            p.ids = parsed
                .rows
                .iter()
                .filter_map(|r| serde_json::from_slice::<Id>(&body[r.clone()]).ok())
                .map(|i| i.id)
                .collect();
            p.after = Some(parsed.next_cursor.clone());
            p.child = None;
        }
        let ids = p
            .ids
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let mut q = self.query.clone();
        q.push((p.param.clone(), ids));
        q.push(("limit".into(), limit.to_string()));
        if let Some(c) = &p.child {
            q.push(("cursor".into(), c.clone()));
        }
        let url = with_query(&format!("{base}{}", self.path), &q);
        let (body, parsed) = self.fetch(&url).await?;
        let resume = match &parsed.next_cursor {
            Some(c) => {
                // Mid-batch: resuming re-reads this batch (merging makes that harmless).
                p.child = Some(c.clone());
                Some(position(
                    "p",
                    p.path_at,
                    p.at.as_deref().unwrap_or_default(),
                ))
            }
            None => {
                p.ids.clear();
                match p.after.clone().flatten() {
                    Some(next) => Some(position("p", p.path_at, &next)),
                    None if p.path_at + 1 < p.paths.len() => Some(position("p", p.path_at + 1, "")),
                    None => None,
                }
            }
        };
        if resume.is_none() {
            self.done = true;
        }
        Ok(Some(self.page_of(body, &parsed, resume)))
    }
}

#[async_trait::async_trait]
impl PageSource for PipedriveSource {
    async fn next_page(&mut self) -> Result<Option<Page>> {
        if self.done {
            return Ok(None);
        }
        self.load_fields().await?;
        if self.parent.is_some() {
            self.next_child().await
        } else {
            self.next_plain().await
        }
    }
}

/// A resume position: `<tag>:<cursor>` in the stream's main path, `<tag>@<n>:<cursor>` in
/// its n-th further path.
fn position(tag: &str, path_at: usize, cursor: &str) -> String {
    if path_at == 0 {
        format!("{tag}:{cursor}")
    } else {
        format!("{tag}@{path_at}:{cursor}")
    }
}

/// `url?k=v&...`, percent-encoded.
pub fn with_query(url: &str, q: &[(String, String)]) -> String {
    if q.is_empty() {
        return url.to_string();
    }
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in q {
        s.append_pair(k, v);
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{}", s.finish())
}

/// The custom fields of a live schema, when it lists the entity's fields.
fn field_map(live: &crate::spec::live::LiveSchema) -> Option<FieldMap> {
    let crate::spec::live::LiveEntity::Present { fields, .. } = &live.entity else {
        return None;
    };
    Some(
        fields
            .iter()
            .filter_map(|f| {
                Some((
                    f.source.clone(),
                    FieldDef {
                        name: f.label.clone().unwrap_or_default(),
                        field_type: f.source_type.clone()?,
                        options: f.options.iter().cloned().collect(),
                    },
                ))
            })
            .collect(),
    )
}

/// One field definition, standard or custom.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    /// `title`, or the 40-hex key of a custom field.
    pub key: String,
    pub name: String,
    pub field_type: String,
    pub custom: bool,
    /// Option id → label, for `enum` and `set`.
    pub options: Vec<(i64, String)>,
}

/// A definition from a v2 (`field_code`, `field_name`, `is_custom_field`) or v1 (`key`, `name`,
/// `edit_flag`) object.
pub fn definition(v: &Value) -> Option<Definition> {
    let key = v
        .get("field_code")
        .or_else(|| v.get("key"))?
        .as_str()?
        .to_string();
    let custom = v
        .get("is_custom_field")
        .or_else(|| v.get("edit_flag"))
        .and_then(Value::as_bool)
        .unwrap_or_else(|| key.len() == 40 && key.bytes().all(|b| b.is_ascii_hexdigit()));
    let name = v
        .get("field_name")
        .or_else(|| v.get("name"))
        .and_then(Value::as_str)
        .unwrap_or(&key)
        .to_string();
    let field_type = v
        .get("field_type")
        .and_then(Value::as_str)
        .unwrap_or("varchar")
        .to_string();
    let options = v
        .get("options")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|o| {
                    let id = o.get("id")?;
                    let id = id
                        .as_i64()
                        .or_else(|| id.as_str().and_then(|s| s.parse().ok()))?;
                    Some((id, o.get("label")?.as_str()?.to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Definition {
        key,
        name,
        field_type,
        custom,
        options,
    })
}

/// Every field definition at `fields_path` (cursor- or offset-paged).
///
/// Fails when a request fails or an answer is not a Pipedrive envelope.
pub async fn load_definitions(
    http: &HttpClient,
    base: &str,
    fields_path: &str,
    stream: &str,
) -> Result<Vec<Definition>> {
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let mut start: Option<u64> = None;
    loop {
        let mut q = vec![("limit".to_string(), "500".to_string())];
        if let Some(c) = &cursor {
            q.push(("cursor".into(), c.clone()));
        }
        if let Some(s) = start {
            q.push(("start".into(), s.to_string()));
        }
        let url = with_query(&format!("{base}{fields_path}"), &q);
        let ((body, parsed), _) = get_parsed(
            http,
            &url,
            &headers,
            stream,
            "a field-definition envelope",
            |body: Bytes| parse_page(&body).map(|p| (body, p)),
            |e| e,
        )
        .await?;
        out.extend(
            parsed
                .rows
                .iter()
                .filter_map(|r| serde_json::from_slice::<Value>(&body[r.clone()]).ok())
                .filter_map(|v| definition(&v)),
        );
        match (parsed.next_cursor, parsed.next_start) {
            (Some(c), _) => cursor = Some(c),
            (None, Some(s)) => start = Some(s),
            (None, None) => break,
        }
    }
    Ok(out)
}

/// Loads the custom fields of one entity (`/api/v2/dealFields`, cursor-paged; the v1 shape
/// with `key`/`name`/`edit_flag` is read too).
pub async fn load_field_map(
    http: &HttpClient,
    base: &str,
    fields_path: &str,
    stream: &str,
) -> Result<FieldMap> {
    Ok(custom_field_map(
        load_definitions(http, base, fields_path, stream).await?,
    ))
}

/// The custom fields among `defs`, by field code.
fn custom_field_map(defs: impl IntoIterator<Item = Definition>) -> FieldMap {
    defs.into_iter()
        .filter(|d| d.custom)
        .map(|d| {
            (
                d.key,
                FieldDef {
                    name: d.name,
                    field_type: d.field_type,
                    options: d.options.into_iter().collect(),
                },
            )
        })
        .collect()
}

/// Rewrites records for the decoder: `custom_fields` becomes top-level keys named by each
/// field's 40-hex code (its stable identity: a renamed field keeps its column; the tenant
/// reconciliation names the column, see `tenant::pipedrive`), `enum` option ids become labels,
/// `set` id lists become label lists, `monetary` objects become the amount plus
/// `<code>_currency`. Records that are not JSON objects pass through untouched, so the decoder
/// quarantines them. Returns a JSON array of the records and their ranges.
pub fn rewrite_records(
    body: &[u8],
    rows: &[Range<usize>],
    fields: &FieldMap,
) -> (Bytes, Vec<Range<usize>>) {
    let mut out = Vec::with_capacity(body.len() + body.len() / 8);
    let mut ranges = Vec::with_capacity(rows.len());
    out.push(b'[');
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let raw = &body[r.clone()];
        let start = out.len();
        match serde_json::from_slice::<Map<String, Value>>(raw) {
            Ok(mut rec) => {
                if let Some(Value::Object(cf)) = rec.remove("custom_fields") {
                    for (k, v) in cf {
                        flatten_custom(&mut rec, k, v, fields);
                    }
                }
                if serde_json::to_writer(&mut out, &rec).is_err() {
                    out.truncate(start);
                    out.extend_from_slice(raw);
                }
            }
            Err(_) => out.extend_from_slice(raw),
        }
        ranges.push(start..out.len());
    }
    out.push(b']');
    (Bytes::from(out), ranges)
}

fn flatten_custom(rec: &mut Map<String, Value>, key: String, v: Value, fields: &FieldMap) {
    let Some(def) = fields.get(&key) else {
        rec.insert(key, v);
        return;
    };
    let label = |v: &Value| -> Value {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .and_then(|id| def.options.get(&id))
            .map(|l| Value::String(l.clone()))
            .unwrap_or_else(|| v.clone())
    };
    match (def.field_type.as_str(), v) {
        ("enum", v) => {
            rec.insert(key, label(&v));
        }
        ("set", Value::Array(a)) => {
            rec.insert(key, Value::Array(a.iter().map(label).collect()));
        }
        ("monetary", Value::Object(mut m)) => {
            let cur = m.remove("currency").unwrap_or(Value::Null);
            rec.insert(format!("{key}_currency"), cur);
            rec.insert(key, m.remove("value").unwrap_or(Value::Null));
        }
        (_, v) => {
            rec.insert(key, v);
        }
    }
}

/// A parsed Pipedrive page.
#[derive(Debug)]
pub struct Parsed {
    pub rows: Vec<Range<usize>>,
    /// v2: `additional_data.next_cursor`.
    pub next_cursor: Option<String>,
    /// v1: `additional_data.pagination.next_start` when more items exist.
    pub next_start: Option<u64>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    success: bool,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    additional_data: Option<Additional>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Additional {
    #[serde(default)]
    next_cursor: Option<String>,
    #[serde(default)]
    pagination: Option<V1Pagination>,
}

#[derive(Deserialize)]
struct V1Pagination {
    #[serde(default)]
    more_items_in_collection: bool,
    #[serde(default)]
    next_start: Option<u64>,
}

/// The records of a Pipedrive `{success, data, additional_data}` envelope (data a list, one
/// object, or null), as byte ranges of `body`.
pub fn parse_page(body: &[u8]) -> std::result::Result<Parsed, String> {
    let env: Envelope<'_> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if !env.success {
        return Err(format!(
            "success = false: {}",
            env.error.unwrap_or_default()
        ));
    }
    let offset = |raw: &RawValue| {
        let s = raw.get();
        let start = s.as_ptr() as usize - body.as_ptr() as usize;
        start..start + s.len()
    };
    let rows = match env.data {
        None => Vec::new(),
        Some(d) => match d.get().as_bytes().first() {
            Some(b'[') => serde_json::from_str::<Vec<&RawValue>>(d.get())
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(offset)
                .collect(),
            Some(b'n') => Vec::new(),
            _ => vec![offset(d)],
        },
    };
    let (next_cursor, next_start) = match env.additional_data {
        Some(a) => (
            a.next_cursor,
            a.pagination
                .filter(|p| p.more_items_in_collection)
                .and_then(|p| p.next_start),
        ),
        None => (None, None),
    };
    Ok(Parsed {
        rows,
        next_cursor,
        next_start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> FieldMap {
        let defs = serde_json::json!([
            {"field_code": "title", "field_name": "Title", "field_type": "varchar", "is_custom_field": false},
            {"field_code": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "field_name": "Contract Type", "field_type": "enum", "is_custom_field": true,
             "options": [{"id": 1, "label": "Annual"}, {"id": 2, "label": "Monthly"}]},
            {"field_code": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "field_name": "Regions", "field_type": "set", "is_custom_field": true,
             "options": [{"id": 5, "label": "EMEA"}, {"id": 6, "label": "APAC"}]},
            {"field_code": "cccccccccccccccccccccccccccccccccccccccc", "field_name": "Setup Fee", "field_type": "monetary", "is_custom_field": true},
            {"key": "dddddddddddddddddddddddddddddddddddddddd", "name": "Title", "field_type": "varchar", "edit_flag": true}
        ]);
        custom_field_map(defs.as_array().unwrap().iter().filter_map(definition))
    }

    #[test]
    fn parses_v2_and_v1_envelopes() {
        let b = br#"{"success":true,"data":[{"id":1},{"id":2}],"additional_data":{"next_cursor":"abc"}}"#;
        let p = parse_page(b).unwrap();
        assert_eq!(p.rows.len(), 2);
        assert_eq!(&b[p.rows[1].clone()], br#"{"id":2}"#);
        assert_eq!(p.next_cursor.as_deref(), Some("abc"));
        let b = br#"{"success":true,"data":[{"id":1}],"additional_data":{"pagination":{"start":0,"limit":1,"more_items_in_collection":true,"next_start":1}}}"#;
        assert_eq!(parse_page(b).unwrap().next_start, Some(1));
        let b = br#"{"success":true,"data":null,"additional_data":{"next_cursor":null}}"#;
        assert!(parse_page(b).unwrap().rows.is_empty());
        assert!(parse_page(br#"{"success":false,"error":"unauthorized access"}"#).is_err());
        assert!(parse_page(b"<html>").is_err());
    }

    #[test]
    fn rewrites_custom_fields() {
        let f = fields();
        assert_eq!(f.len(), 4);
        let body = br#"{"success":true,"data":[{"id":7,"title":"x","custom_fields":{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa":2,"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb":[5,6],"cccccccccccccccccccccccccccccccccccccccc":{"value":500,"currency":"EUR"},"dddddddddddddddddddddddddddddddddddddddd":"t","eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee":null}},[1,2]]}"#;
        let p = parse_page(body).unwrap();
        let (out, rows) = rewrite_records(body, &p.rows, &f);
        let rec: Value = serde_json::from_slice(&out[rows[0].clone()]).unwrap();
        let a = "a".repeat(40);
        let c = "c".repeat(40);
        assert_eq!(rec[a.as_str()], "Monthly");
        assert_eq!(
            rec["b".repeat(40).as_str()],
            serde_json::json!(["EMEA", "APAC"])
        );
        assert_eq!(rec[c.as_str()], 500);
        assert_eq!(rec[format!("{c}_currency").as_str()], "EUR");
        assert_eq!(rec["title"], "x");
        // A custom field named like a standard one never overwrites it.
        assert_eq!(rec["d".repeat(40).as_str()], "t");
        assert!(rec["eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"].is_null());
        assert!(rec.get("custom_fields").is_none());
        // Not an object: passed through for the quarantine.
        assert_eq!(&out[rows[1].clone()], b"[1,2]");
        let all: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(all.as_array().unwrap().len(), 2);
    }

    #[test]
    fn field_paths_and_since() {
        assert_eq!(
            fields_path_of("/api/v2/deals").as_deref(),
            Some("/api/v2/dealFields")
        );
        assert_eq!(fields_path_of("/api/v2/stages"), None);
        assert_eq!(fields_path_of("/api/v2/deals/products"), None);
        assert_eq!(
            since("2024-05-02T09:15:00Z").unwrap(),
            "2024-05-02T09:15:00Z"
        );
        assert_eq!(
            since("2024-05-02T09:15:00.000001Z").unwrap(),
            "2024-05-02T09:15:01Z"
        );
        assert_eq!(bound("2024-05-02").unwrap(), "2024-05-02T00:00:00Z");
    }
}

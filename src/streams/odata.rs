//! The OData v4 reader shared by Dataverse and Business Central: `$select` derived from the
//! catalog, `Prefer: odata.maxpagesize`, `@odata.nextLink` followed verbatim, change tracking
//! (`odata.track-changes` + `@odata.deltaLink`), cursor filters, and company scoping
//! (Business Central: the entity set is read under each configured company in turn).
//!
//! The envelope `{"@odata.context":…,"value":[…],"@odata.nextLink":…}` is parsed once, borrowing
//! each record as raw JSON; only byte offsets are kept, so records reach the Arrow decoder
//! without an intermediate tree.

use std::ops::Range;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::value::RawValue;

use std::sync::Arc;

use crate::batches::PageContext;
use crate::config::Connection;
use crate::error::{Error, Result};
use crate::http::Endpoint;
use crate::http::HttpClient;
use crate::spec::{Incremental, Stream};
use crate::streams::{Page, PageSource, ReadMode, get_parsed};
use crate::systems::dataverse::change_tracking::is_delta_expired_body;
use crate::systems::settings::ConnectionSettings;

pub struct ODataSource {
    http: HttpClient,
    stream: String,
    headers: HeaderMap,
    next: Option<String>,
    /// Company-scoped reads: the companies still to read and the query of the first page.
    companies: Option<Companies>,
    context: Arc<PageContext>,
}

/// The company loop of a company-scoped stream.
struct Companies {
    /// `{base}{api_path}`: companies are listed at `{root}/companies`.
    root: String,
    entity_set: String,
    /// `?$select=…` (with the leading `?`) of every company's first page.
    query: String,
    /// Configured ids or names; empty = every company.
    wanted: Vec<String>,
    /// Resolved on the first page: (id, remaining), in the service's order.
    list: Option<Vec<String>>,
    /// Index into `list` of the company being read.
    at: usize,
    /// Company and page to resume at.
    resume: Option<CompanyPosition>,
}

/// Resume position of a company-scoped read: which company, and the next link inside it.
#[derive(serde::Serialize, Deserialize)]
struct CompanyPosition {
    company: String,
    url: String,
}

#[derive(Deserialize)]
struct CompanyRow {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "displayName")]
    display_name: Option<String>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    value: Vec<&'a RawValue>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink", default)]
    delta_link: Option<String>,
}

/// A parsed page: record ranges plus the links.
#[derive(Debug)]
pub struct Parsed {
    /// Byte range of each record of `value` in the body.
    pub rows: Vec<Range<usize>>,
    pub next_link: Option<String>,
    pub delta_link: Option<String>,
}

/// Finds the records and links of an OData collection page without building a tree.
pub fn parse_envelope(body: &[u8]) -> std::result::Result<Parsed, String> {
    let env: Envelope<'_> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let base = body.as_ptr() as usize;
    let rows = env
        .value
        .iter()
        .map(|r| {
            let s = r.get();
            let start = s.as_ptr() as usize - base;
            start..start + s.len()
        })
        .collect();
    Ok(Parsed {
        rows,
        next_link: env.next_link,
        delta_link: env.delta_link,
    })
}

/// Percent-encodes an OData query value, keeping the characters OData expressions use
/// literally (`$ , ( ) ' :`) readable.
fn encode_query_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
            | b'$'
            | b','
            | b'('
            | b')'
            | b'\''
            | b':'
            | b'@' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `$filter` bounds on the cursor column. Values are validated as RFC 3339 instants or dates so
/// nothing but a literal reaches the expression.
fn window_filter(field: &str, since: Option<&str>, until: Option<&str>) -> Result<Option<String>> {
    let lit = |v: &str| -> Result<String> {
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
            return Ok(t
                .with_timezone(&chrono::Utc)
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string());
        }
        if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
            return Ok(format!("{d}T00:00:00Z"));
        }
        Err(Error::config(format!(
            "`{v}` is not a date (YYYY-MM-DD) or an RFC 3339 timestamp"
        )))
    };
    let mut parts = Vec::new();
    if let Some(s) = since {
        parts.push(format!("{field} ge {}", lit(s)?));
    }
    if let Some(u) = until {
        parts.push(format!("{field} lt {}", lit(u)?));
    }
    Ok((!parts.is_empty()).then(|| parts.join(" and ")))
}

impl ODataSource {
    pub fn new(
        stream: &Stream,
        conn: &Connection,
        endpoint: &Endpoint,
        mode: &ReadMode,
        resume: Option<String>,
    ) -> Result<Self> {
        let entity_set = stream
            .spec
            .entity_set
            .as_deref()
            .ok_or_else(|| Error::Definition {
                path: stream.id.to_string(),
                message: "odata streams need entity_set".into(),
            })?;
        // A key-set pass hands in its projected stream (keys, computed columns).
        let select = stream.select_fields();
        let mut annotations: Vec<&str> = stream
            .catalog
            .columns
            .iter()
            .filter_map(|c| c.source_name().split_once('@').map(|(_, term)| term))
            .collect();
        annotations.sort_unstable();
        annotations.dedup();

        let track = match mode {
            ReadMode::Snapshot { track } => *track,
            ReadMode::Incremental { .. } => stream.spec.incremental == Incremental::Delta,
            ReadMode::Window { .. } | ReadMode::Keys => false,
        };
        let mut prefer = vec![format!("odata.maxpagesize={}", stream.page_size())];
        if !annotations.is_empty() {
            prefer.push(format!(
                "odata.include-annotations=\"{}\"",
                annotations.join(",")
            ));
        }
        if track {
            prefer.push("odata.track-changes".into());
        }
        let mut headers = super::json_headers(stream)?;
        headers.insert(
            HeaderName::from_static("odata-maxversion"),
            HeaderValue::from_static("4.0"),
        );
        headers.insert(
            HeaderName::from_static("odata-version"),
            HeaderValue::from_static("4.0"),
        );
        headers.insert(
            HeaderName::from_static("prefer"),
            HeaderValue::from_str(&prefer.join(","))
                .map_err(|e| Error::config_from("Prefer header", e))?,
        );

        let root = format!("{}{}", endpoint.base, stream.source.api_path);
        let base = format!("{root}/{entity_set}");
        let mut query = vec![("$select", select.join(","))];
        let mut filters: Vec<String> = Vec::new();
        let cursor_source = stream.cursor_column().map(|c| c.source_name().to_string());
        let first_url = match mode {
            ReadMode::Incremental { cursor } if track => Some(cursor.clone()),
            ReadMode::Incremental { cursor } => {
                let field = cursor_source.as_deref().ok_or_else(|| Error::Definition {
                    path: stream.id.to_string(),
                    message: "incremental = \"cursor\" needs cursor_field".into(),
                })?;
                // The run already folded the lookback into the cursor (run::next_cursor): read
                // from it inclusively, to the microsecond.
                let since = chrono::DateTime::parse_from_rfc3339(cursor).map_err(|e| {
                    Error::state(format!(
                        "{}: the saved cursor `{cursor}` is not a timestamp ({e}); run `mlc state reset {}`",
                        stream.id, stream.id
                    ))
                })?;
                filters.push(format!(
                    "{field} ge {}",
                    since
                        .with_timezone(&chrono::Utc)
                        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                ));
                query.push(("$orderby", format!("{field} asc")));
                None
            }
            ReadMode::Window { since, until } => {
                let field = cursor_source.as_deref().ok_or_else(|| {
                    Error::config(format!(
                        "{}: a backfill window needs cursor_field in the stream file",
                        stream.id
                    ))
                })?;
                if let Some(f) = window_filter(field, since.as_deref(), until.as_deref())? {
                    filters.push(f);
                }
                None
            }
            ReadMode::Snapshot { .. } | ReadMode::Keys => None,
        };
        // Change tracking refuses $filter; a stream filter applies to plain reads only.
        if !track && let Some(f) = &stream.spec.filter {
            filters.push(format!("({f})"));
        }
        if !filters.is_empty() {
            query.push(("$filter", filters.join(" and ")));
        }
        let query = format!(
            "?{}",
            query
                .iter()
                .map(|(k, v)| format!("{k}={}", encode_query_value(v)))
                .collect::<Vec<_>>()
                .join("&")
        );
        if stream.source.company_scoped {
            let wanted = match &conn.settings {
                ConnectionSettings::BusinessCentral(b) => b.companies.clone(),
                _ => Vec::new(),
            };
            let resume = match resume {
                Some(r) => Some(serde_json::from_str::<CompanyPosition>(&r).map_err(|e| {
                    Error::state(format!(
                        "{}: the saved paging position is not a company position ({e}); run `mlc state reset {}`",
                        stream.id, stream.id
                    ))
                })?),
                None => None,
            };
            return Ok(Self {
                http: endpoint.http.clone(),
                stream: stream.id.to_string(),
                headers,
                next: None,
                companies: Some(Companies {
                    root,
                    entity_set: entity_set.to_string(),
                    query,
                    wanted,
                    list: None,
                    at: 0,
                    resume,
                }),
                context: Arc::new(PageContext::new()),
            });
        }
        Ok(Self {
            http: endpoint.http.clone(),
            stream: stream.id.to_string(),
            headers,
            next: Some(resume.or(first_url).unwrap_or(format!("{base}{query}"))),
            companies: None,
            context: Arc::new(PageContext::new()),
        })
    }

    /// Lists the companies of the environment and keeps the configured ones, in the service's
    /// order. Fails when a configured company does not exist (naming the ones that do).
    async fn list_companies(&self, c: &Companies) -> Result<Vec<String>> {
        let url = format!("{}/companies?$select=id,name,displayName", c.root);
        let resp = self.http.get(&url, &self.headers, &self.stream).await?;
        #[derive(Deserialize)]
        struct List {
            value: Vec<CompanyRow>,
        }
        let list: List = serde_json::from_slice(&resp.body).map_err(|e| {
            Error::decode_from(
                self.stream.clone(),
                "the companies list is not an OData collection",
                e,
            )
        })?;
        if c.wanted.is_empty() {
            return Ok(list.value.into_iter().map(|r| r.id).collect());
        }
        let mut out = Vec::new();
        for w in &c.wanted {
            let found = list.value.iter().find(|r| {
                r.id.eq_ignore_ascii_case(w)
                    || r.name.as_deref() == Some(w.as_str())
                    || r.display_name.as_deref() == Some(w.as_str())
            });
            match found {
                Some(r) => out.push(r.id.clone()),
                None => {
                    return Err(Error::config(format!(
                        "company `{w}` is not in this Business Central environment; it has: {}",
                        list.value
                            .iter()
                            .map(|r| format!("{} ({})", r.name.as_deref().unwrap_or("?"), r.id))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            }
        }
        Ok(out)
    }

    /// Moves to the next company with pages to read; `false` when all are done.
    async fn advance_company(&mut self) -> Result<bool> {
        let Some(mut c) = self.companies.take() else {
            return Ok(false);
        };
        let result = async {
            if c.list.is_none() {
                let list = self.list_companies(&c).await?;
                if let Some(pos) = c.resume.take() {
                    let at = list.iter().position(|id| *id == pos.company).ok_or_else(|| {
                        Error::state(format!(
                            "{}: the run was interrupted in company {} which is no longer listed; run `mlc sync --full {}`",
                            self.stream, pos.company, self.stream
                        ))
                    })?;
                    c.at = at;
                    c.list = Some(list);
                    self.start_company(&c, Some(pos.url));
                    return Ok(true);
                }
                c.list = Some(list);
                c.at = 0;
            } else {
                c.at += 1;
            }
            if c.at < c.list.as_ref().map_or(0, |l| l.len()) {
                self.start_company(&c, None);
                Ok(true)
            } else {
                Ok(false)
            }
        }
        .await;
        self.companies = Some(c);
        result
    }

    fn start_company(&mut self, c: &Companies, url: Option<String>) {
        let Some(id) = c.list.as_ref().and_then(|l| l.get(c.at)) else {
            return;
        };
        let mut ctx = PageContext::new();
        ctx.insert("company_id".into(), id.clone());
        self.context = Arc::new(ctx);
        self.next =
            Some(url.unwrap_or_else(|| {
                format!("{}/companies({id})/{}{}", c.root, c.entity_set, c.query)
            }));
    }

    /// The resume position after a page whose next link is `next`.
    fn position(&self, next: &Option<String>) -> Option<String> {
        let next = next.as_ref()?;
        match &self.companies {
            None => Some(next.clone()),
            Some(c) => {
                let company = c.list.as_ref()?.get(c.at)?.clone();
                serde_json::to_string(&CompanyPosition {
                    company,
                    url: next.clone(),
                })
                .ok()
            }
        }
    }

    /// Recognised by its message or code, whatever the status: Microsoft documents the text,
    /// not the status it comes with.
    fn is_delta_expired(e: &Error) -> bool {
        matches!(e, Error::Http { body, .. } if is_delta_expired_body(body.as_bytes()))
    }
}

#[async_trait::async_trait]
impl PageSource for ODataSource {
    async fn next_page(&mut self) -> Result<Option<Page>> {
        if self.next.is_none() && !self.advance_company().await? {
            return Ok(None);
        }
        let Some(url) = self.next.take() else {
            return Ok(None);
        };
        let stream = self.stream.clone();
        let (p, received_at_micros) = get_parsed(
            &self.http,
            &url,
            &self.headers,
            &self.stream,
            "a valid OData collection",
            move |body: Bytes| parse_envelope(&body).map(|p| (body, p)),
            |e| {
                if !Self::is_delta_expired(&e) {
                    return e;
                }
                let message = match &e {
                    Error::Http { body, .. } => body.clone(),
                    _ => e.to_string(),
                };
                Error::DeltaExpired {
                    stream: stream.clone(),
                    message,
                }
            },
        )
        .await?;
        let (body, p) = p;
        self.next = p.next_link.clone();
        // Between companies the position is the next company's start: resuming from the last
        // finished company's end re-reads nothing.
        let resume = match (&p.next_link, &self.companies) {
            (Some(_), _) => self.position(&p.next_link),
            (None, Some(c)) => c
                .list
                .as_ref()
                .and_then(|l| l.get(c.at + 1))
                .and_then(|id| {
                    serde_json::to_string(&CompanyPosition {
                        company: id.clone(),
                        url: format!("{}/companies({id})/{}{}", c.root, c.entity_set, c.query),
                    })
                    .ok()
                }),
            (None, None) => None,
        };
        Ok(Some(Page {
            body,
            rows: p.rows,
            received_at_micros,
            resume,
            end_cursor: p.delta_link,
            context: self.context.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_ranges_point_at_records() {
        let body =
            br#"{"@odata.context":"x","value":[{"a":1},{"b":"}"}],"@odata.nextLink":"http://n"}"#;
        let p = parse_envelope(body).unwrap();
        assert_eq!(p.rows.len(), 2);
        assert_eq!(&body[p.rows[0].clone()], br#"{"a":1}"#);
        assert_eq!(&body[p.rows[1].clone()], br#"{"b":"}"}"#);
        assert_eq!(p.next_link.as_deref(), Some("http://n"));
        assert!(parse_envelope(br#"{"value":[{"a":1},"#).is_err());
    }

    #[test]
    fn query_values_keep_odata_syntax_readable() {
        assert_eq!(
            encode_query_value("modifiedon ge 2025-01-01T00:00:00Z and (statecode eq 0)"),
            "modifiedon%20ge%202025-01-01T00:00:00Z%20and%20(statecode%20eq%200)"
        );
    }

    #[test]
    fn window_filters_validate_literals() {
        assert_eq!(
            window_filter(
                "modifiedon",
                Some("2025-01-01"),
                Some("2025-02-01T00:00:00+01:00")
            )
            .unwrap()
            .unwrap(),
            "modifiedon ge 2025-01-01T00:00:00Z and modifiedon lt 2025-01-31T23:00:00Z"
        );
        assert!(window_filter("m", Some("1 or 1 eq 1"), None).is_err());
        assert!(window_filter("m", None, None).unwrap().is_none());
    }
}

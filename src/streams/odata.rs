//! The OData v4 reader shared by Dataverse and Business Central: `$select` derived from the
//! catalog, `Prefer: odata.maxpagesize`, `@odata.nextLink` followed verbatim, change tracking
//! (`odata.track-changes` + `@odata.deltaLink`) and cursor filters.
//!
//! The envelope `{"@odata.context":…,"value":[…],"@odata.nextLink":…}` is parsed once, borrowing
//! each record as raw JSON; only byte offsets are kept, so records reach the Arrow decoder
//! without an intermediate tree.

use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{ACCEPT, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::connect::Endpoint;
use crate::error::{Error, Result};
use crate::http::HttpClient;
use crate::spec::{Incremental, Stream};
use crate::streams::{Page, PageSource, ReadMode, now_micros};

/// How often a page whose body does not parse is fetched again before the run stops.
const MALFORMED_PAGE_RETRIES: u32 = 2;

/// Text Dataverse sends when a change-tracking token is past the org's retention.
const DELTA_EXPIRED_TEXT: &str = "Version stamp associated with the client has expired";
const DELTA_EXPIRED_CODE: &str = "0x80044352";

pub struct ODataSource {
    http: HttpClient,
    stream: String,
    headers: HeaderMap,
    next: Option<String>,
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
        Err(Error::Config(format!(
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
            ReadMode::Window { .. } => false,
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
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
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
                .map_err(|e| Error::Config(format!("Prefer header: {e}")))?,
        );

        let base = format!("{}{}/{}", endpoint.base, stream.source.api_path, entity_set);
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
                let since = chrono::DateTime::parse_from_rfc3339(cursor).map_err(|e| {
                    Error::State(format!(
                        "{}: the saved cursor `{cursor}` is not a timestamp ({e}); run `mlc state reset {}`",
                        stream.id, stream.id
                    ))
                })?;
                let since = since - chrono::Duration::seconds(stream.lookback_seconds() as i64);
                filters.push(format!(
                    "{field} ge {}",
                    since
                        .with_timezone(&chrono::Utc)
                        .format("%Y-%m-%dT%H:%M:%SZ")
                ));
                query.push(("$orderby", format!("{field} asc")));
                None
            }
            ReadMode::Window { since, until } => {
                let field = cursor_source.as_deref().ok_or_else(|| {
                    Error::Config(format!(
                        "{}: a backfill window needs cursor_field in the stream file",
                        stream.id
                    ))
                })?;
                if let Some(f) = window_filter(field, since.as_deref(), until.as_deref())? {
                    filters.push(f);
                }
                None
            }
            ReadMode::Snapshot { .. } => None,
        };
        // Change tracking refuses $filter; a stream filter applies to plain reads only.
        if !track && let Some(f) = &stream.spec.filter {
            filters.push(format!("({f})"));
        }
        if !filters.is_empty() {
            query.push(("$filter", filters.join(" and ")));
        }
        let built = format!(
            "{base}?{}",
            query
                .iter()
                .map(|(k, v)| format!("{k}={}", encode_query_value(v)))
                .collect::<Vec<_>>()
                .join("&")
        );
        Ok(Self {
            http: endpoint.http.clone(),
            stream: stream.id.to_string(),
            headers,
            next: Some(resume.or(first_url).unwrap_or(built)),
        })
    }

    fn is_delta_expired(e: &Error) -> bool {
        matches!(e, Error::Http { status, body, .. }
            if (400..500).contains(status)
                && (body.contains(DELTA_EXPIRED_TEXT) || body.contains(DELTA_EXPIRED_CODE)))
    }
}

#[async_trait::async_trait]
impl PageSource for ODataSource {
    async fn next_page(&mut self) -> Result<Option<Page>> {
        let Some(url) = self.next.take() else {
            return Ok(None);
        };
        let mut malformed = 0;
        loop {
            let resp = match self.http.get(&url, &self.headers, &self.stream).await {
                Ok(r) => r,
                Err(e) if Self::is_delta_expired(&e) => {
                    return Err(Error::DeltaExpired {
                        stream: self.stream.clone(),
                        message: if let Error::Http { body, .. } = &e {
                            body.clone()
                        } else {
                            e.to_string()
                        },
                    });
                }
                Err(e) => return Err(e),
            };
            let received_at_micros = now_micros();
            let body: Bytes = resp.body;
            let parse_body = body.clone();
            let parsed = tokio::task::spawn_blocking(move || parse_envelope(&parse_body))
                .await
                .map_err(|e| Error::Decode {
                    stream: self.stream.clone(),
                    message: format!("page parser stopped: {e}"),
                })?;
            match parsed {
                Ok(p) => {
                    self.next = p.next_link.clone();
                    return Ok(Some(Page {
                        body,
                        rows: p.rows,
                        received_at_micros,
                        resume: p.next_link,
                        end_cursor: p.delta_link,
                    }));
                }
                Err(msg) if malformed < MALFORMED_PAGE_RETRIES => {
                    malformed += 1;
                    tracing::warn!(stream = %self.stream, "page body is not a valid OData collection ({msg}); fetching it again");
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(malformed))).await;
                }
                Err(msg) => {
                    return Err(Error::Decode {
                        stream: self.stream.clone(),
                        message: format!(
                            "the page at {} is not a valid OData collection after {} attempts: {msg}",
                            crate::http::redact::redact_url(&url),
                            malformed + 1
                        ),
                    });
                }
            }
        }
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

//! The Deltek Vantagepoint reader: `GET {base}/{path}?page=N&pageSize=S&fieldFilter=…` with the
//! stream's fixed `params` and structured `filterHash[i][…]` filters, paged until a short page
//! (the API sends no total and no next link). Responses are always JSON arrays; records are
//! borrowed as raw JSON and only their byte ranges kept.
//!
//! Change detection: `ModDate` (zone-less, tenant wall clock). An incremental read asks for
//! `ModDate >= cursor` (the run folds the lookback into the cursor), converted to the tenant's wall clock, ordered
//! by `ModDate`; deletes are found by the key-set reconciliation (`ReadMode::Keys`, key fields
//! only). A stream may carry tenant-dependent `variants` (opportunities: the pre-5.0 hub or
//! 5.0+ projects with a pursuit stage), chosen by the connection's `opportunity_model`.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::{ACCEPT, HeaderMap, HeaderName, HeaderValue};
use serde_json::value::RawValue;

use crate::batches::PageContext;
use crate::config::{Connection, ConnectionSettings, OpportunityModel};
use crate::connect::Endpoint;
use crate::error::{Error, Result};
use crate::http::HttpClient;
use crate::spec::{FixedFilter, Stream};
use crate::streams::{Page, PageSource, ReadMode, get_parsed};

/// The variant name a connection selects (`opportunity_model`).
pub fn variant_name(conn: &Connection) -> Option<&'static str> {
    match &conn.settings {
        ConnectionSettings::Deltek(d) => Some(match d.opportunity_model {
            OpportunityModel::Hub => "hub",
            OpportunityModel::ProjectStage => "project_stage",
        }),
        _ => None,
    }
}

/// The tenant's zone (IANA name) as a chrono zone.
fn tenant_zone(conn: &Connection) -> Result<arrow_array::timezone::Tz> {
    let name = conn.naive_time_zone().unwrap_or("UTC");
    name.parse::<arrow_array::timezone::Tz>()
        .map_err(|e| Error::Config(format!("time_zone `{name}`: {e}")))
}

/// An RFC 3339 instant or a date (midnight UTC) as the tenant's zone-less wall clock,
/// `YYYY-MM-DDTHH:MM:SS.mmm`, the way Vantagepoint compares `datetime` filters.
pub fn to_wall_clock(value: &str, tz: &arrow_array::timezone::Tz) -> Result<String> {
    let utc = if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        t.with_timezone(&chrono::Utc)
    } else if let Ok(d) = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        d.and_time(chrono::NaiveTime::MIN).and_utc()
    } else {
        return Err(Error::Config(format!(
            "`{value}` is not a date (YYYY-MM-DD) or an RFC 3339 timestamp"
        )));
    };
    // ModDate has millisecond precision: round up, so `>=` of the next millisecond after the
    // newest row seen (run::next_cursor) does not read that row again.
    let sub_ms = i64::from(utc.timestamp_subsec_nanos() % 1_000_000);
    let utc = if sub_ms > 0 {
        utc + chrono::Duration::nanoseconds(1_000_000 - sub_ms)
    } else {
        utc
    };
    Ok(utc
        .with_timezone(tz)
        .naive_local()
        .format("%Y-%m-%dT%H:%M:%S%.3f")
        .to_string())
}

/// Percent-encodes a query component (RFC 3986 unreserved characters kept).
fn enc(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b',' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `filterHash[i][…]` query pairs of `filters`, joined with AND.
pub(crate) fn filter_hash(filters: &[FixedFilter]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        let key = |k: &str| format!("filterHash[{i}][{k}]");
        out.push((key("name"), f.name.clone()));
        out.push((key("value"), f.value.clone()));
        out.push((key("opp"), f.opp.clone()));
        if let Some(t) = &f.ty {
            out.push((key("type"), t.clone()));
        }
        if let Some(t) = &f.tablename {
            out.push((key("tablename"), t.clone()));
        }
        out.push((key("condition"), "AND".into()));
        out.push((key("seq"), i.to_string()));
    }
    out
}

pub struct DeltekSource {
    http: HttpClient,
    stream: String,
    headers: HeaderMap,
    /// `{base}/{path}?` + everything but `page`.
    url_base: String,
    page_size: u32,
    /// Next page to read (1-based); `None` when done.
    next: Option<u64>,
    /// Payload field → catalog field, applied to every record (variants only).
    rename: BTreeMap<String, String>,
    context: Arc<PageContext>,
}

impl DeltekSource {
    pub fn new(
        stream: &Stream,
        conn: &Connection,
        endpoint: &Endpoint,
        mode: &ReadMode,
        resume: Option<String>,
    ) -> Result<Self> {
        let spec = &stream.spec;
        let variant = variant_name(conn).and_then(|v| spec.variants.get(v));
        let path = variant
            .and_then(|v| v.path.clone())
            .or_else(|| spec.path.clone())
            .ok_or_else(|| Error::Definition {
                path: stream.id.to_string(),
                message: "deltek streams need path".into(),
            })?;
        let params = variant
            .and_then(|v| v.params.clone())
            .unwrap_or_else(|| spec.params.clone());
        let mut filters = variant
            .and_then(|v| v.filters.clone())
            .unwrap_or_else(|| spec.filters.clone());
        let rename = variant.map(|v| v.rename.clone()).unwrap_or_default();
        // Catalog name → the name this variant's payload uses.
        let payload_name = |f: &str| -> String {
            rename
                .iter()
                .find(|(_, to)| to.as_str() == f)
                .map(|(from, _)| from.clone())
                .unwrap_or_else(|| f.to_string())
        };
        // A key-set pass hands in its projected stream (keys, computed columns).
        let fields: Vec<String> = stream
            .select_fields()
            .into_iter()
            .map(payload_name)
            .collect();

        let tz = tenant_zone(conn)?;
        let cursor = stream
            .cursor_column()
            .map(|c| payload_name(c.source_name()));
        let need_cursor = || {
            cursor.clone().ok_or_else(|| {
                Error::Config(format!(
                    "{}: reading changes or a window needs cursor_field in the stream file",
                    stream.id
                ))
            })
        };
        let datetime = |name: &str, value: String, opp: &str| FixedFilter {
            name: name.to_string(),
            value,
            opp: opp.to_string(),
            ty: Some("datetime".into()),
            tablename: None,
        };
        let mut ordered = false;
        match mode {
            ReadMode::Incremental { cursor: c } => {
                let field = need_cursor()?;
                // The run folded the lookback into the cursor already (run::next_cursor).
                let since = to_wall_clock(c, &tz).map_err(|e| {
                    Error::State(format!(
                        "{}: the saved cursor `{c}` is not a timestamp ({e}); run `mlc state reset {}`",
                        stream.id, stream.id
                    ))
                })?;
                filters.push(datetime(&field, since, ">="));
                ordered = true;
            }
            ReadMode::Window { since, until } => {
                let field = need_cursor()?;
                if let Some(s) = since {
                    filters.push(datetime(&field, to_wall_clock(s, &tz)?, ">="));
                }
                if let Some(u) = until {
                    filters.push(datetime(&field, to_wall_clock(u, &tz)?, "<"));
                }
                ordered = true;
            }
            ReadMode::Snapshot { .. } | ReadMode::Keys => {}
        }
        let page_size = stream.page_size().max(1);
        let mut query: Vec<(String, String)> = vec![
            ("pageSize".into(), page_size.to_string()),
            ("fieldFilter".into(), fields.join(",")),
        ];
        for (k, v) in &params {
            query.push((k.clone(), v.clone()));
        }
        if ordered && let Some(c) = &cursor {
            query.push(("order".into(), c.clone()));
        }
        query.extend(filter_hash(&filters));
        let url_base = format!(
            "{}/{}?{}",
            endpoint.base.trim_end_matches('/'),
            path.trim_start_matches('/'),
            query
                .iter()
                .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
                .collect::<Vec<_>>()
                .join("&")
        );

        let mut headers = HeaderMap::new();
        for (k, v) in &stream.source.headers {
            headers.insert(
                HeaderName::from_bytes(k.as_bytes())
                    .map_err(|e| Error::Config(format!("{}: header `{k}`: {e}", stream.id)))?,
                HeaderValue::from_str(v)
                    .map_err(|e| Error::Config(format!("{}: header `{k}`: {e}", stream.id)))?,
            );
        }
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));

        let next = match resume {
            Some(r) => Some(r.trim().parse::<u64>().map_err(|_| {
                Error::State(format!(
                    "{}: the saved paging position `{r}` is not a page number; run `mlc state reset {}`",
                    stream.id, stream.id
                ))
            })?),
            None => Some(1),
        };
        Ok(Self {
            http: endpoint.http.clone(),
            stream: stream.id.to_string(),
            headers,
            url_base,
            page_size,
            next,
            rename,
            context: Arc::new(PageContext::new()),
        })
    }

    /// The URL of page `page`.
    pub fn page_url(&self, page: u64) -> String {
        format!("{}&page={page}", self.url_base)
    }
}

/// The records of a Deltek response (always a JSON array).
pub fn parse_page(body: &[u8]) -> std::result::Result<Vec<Range<usize>>, String> {
    let rows: Vec<&RawValue> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let base = body.as_ptr() as usize;
    Ok(rows
        .iter()
        .map(|r| {
            let s = r.get();
            let start = s.as_ptr() as usize - base;
            start..start + s.len()
        })
        .collect())
}

/// Rewrites every record of an array body with `rename` applied to its top-level keys.
fn renamed(
    body: &[u8],
    rows: &[Range<usize>],
    rename: &BTreeMap<String, String>,
) -> std::result::Result<(Bytes, Vec<Range<usize>>), String> {
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut ranges = Vec::with_capacity(rows.len());
    out.push(b'[');
    for (i, r) in rows.iter().enumerate() {
        let rec: Vec<(String, &RawValue)> =
            serde_json::from_slice::<BTreeMap<String, &RawValue>>(&body[r.clone()])
                .map_err(|e| e.to_string())?
                .into_iter()
                .collect();
        if i > 0 {
            out.push(b',');
        }
        let start = out.len();
        out.push(b'{');
        for (j, (k, v)) in rec.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            let name = rename.get(k).unwrap_or(k);
            out.extend_from_slice(
                serde_json::to_string(name)
                    .map_err(|e| e.to_string())?
                    .as_bytes(),
            );
            out.push(b':');
            out.extend_from_slice(v.get().as_bytes());
        }
        out.push(b'}');
        ranges.push(start..out.len());
    }
    out.push(b']');
    Ok((Bytes::from(out), ranges))
}

#[async_trait::async_trait]
impl PageSource for DeltekSource {
    async fn next_page(&mut self) -> Result<Option<Page>> {
        let Some(page) = self.next else {
            return Ok(None);
        };
        let url = self.page_url(page);
        let rename = Arc::new(self.rename.clone());
        let ((body, rows), received_at_micros) = get_parsed(
            &self.http,
            &url,
            &self.headers,
            &self.stream,
            "a JSON array",
            move |body: Bytes| {
                let rows = parse_page(&body)?;
                if rename.is_empty() {
                    Ok((body, rows))
                } else {
                    renamed(&body, &rows, &rename)
                }
            },
            |e| e,
        )
        .await?;
        let last = (rows.len() as u64) < u64::from(self.page_size);
        self.next = (!last).then_some(page + 1);
        Ok(Some(Page {
            body,
            rows,
            received_at_micros,
            resume: self.next.map(|n| n.to_string()),
            end_cursor: None,
            context: self.context.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_ranges_point_at_records() {
        let body = br#"[{"a":1}, {"b":"]"}]"#;
        let rows = parse_page(body).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(&body[rows[1].clone()], br#"{"b":"]"}"#);
        assert!(parse_page(br#"{"message":"x"}"#).is_err());
        assert!(parse_page(br#"[{"a":1},"#).is_err());
        assert_eq!(parse_page(b"[]").unwrap().len(), 0);
    }

    #[test]
    fn cursor_becomes_tenant_wall_clock() {
        let tz: arrow_array::timezone::Tz = "America/New_York".parse().unwrap();
        assert_eq!(
            to_wall_clock("2024-05-01T04:00:00Z", &tz).unwrap(),
            "2024-05-01T00:00:00.000"
        );
        // Just after a row's millisecond: that row is not read again.
        assert_eq!(
            to_wall_clock("2024-05-01T04:00:00.120001Z", &tz).unwrap(),
            "2024-05-01T00:00:00.121"
        );
        assert!(to_wall_clock("yesterday", &tz).is_err());
    }

    #[test]
    fn renames_keys_of_every_record() {
        let body = br#"[{"WBS1":"P1","Name":"x"},{"WBS1":"P2","Name":null}]"#;
        let rows = parse_page(body).unwrap();
        let map = BTreeMap::from([("WBS1".to_string(), "OpportunityID".to_string())]);
        let (out, ranges) = renamed(body, &rows, &map).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v[1]["OpportunityID"], "P2");
        assert_eq!(ranges.len(), 2);
        assert_eq!(
            &out[ranges[0].clone()],
            br#"{"Name":"x","OpportunityID":"P1"}"#
        );
    }

    #[test]
    fn filter_hash_spells_entries() {
        let f = filter_hash(&[FixedFilter {
            name: "WBS2".into(),
            value: String::new(),
            opp: "=".into(),
            ty: None,
            tablename: Some("PR".into()),
        }]);
        assert!(f.contains(&("filterHash[0][opp]".into(), "=".into())));
        assert_eq!(enc("filterHash[0][opp]"), "filterHash%5B0%5D%5Bopp%5D");
        assert_eq!(enc(">="), "%3E%3D");
    }
}

//! The Deltek Vantagepoint reader: `GET {base}/{path}?pageSize=S&fieldFilter=…&order=…` with
//! the stream's fixed `params` and structured `filterHash[i][…]` filters. Responses are always
//! JSON arrays; records are borrowed as raw JSON and only their byte ranges kept.
//!
//! Change detection: `ModDate` (zone-less, tenant wall clock). An incremental read asks for
//! `ModDate >= cursor` (the run folds the lookback into the cursor), converted to the tenant's
//! wall clock; deletes are found by the key-set reconciliation (`ReadMode::Keys`, key fields
//! only). A stream may carry tenant-dependent `variants` (opportunities: the pre-5.0 hub or
//! 5.0+ projects with a pursuit stage), chosen by the connection's `opportunity_model`.
//!
//! Paging is keyset paging (keyset.rs): reads are ordered by `ModDate` then the key (a key-set
//! pass by the key alone) and every request resumes after the last row served, because rows
//! saved or deleted during a page-numbered read shift the pages and a row is skipped (a lost
//! change, or a live key a reconciliation deletes). The API sends no total, so a short page ends
//! the read, except that a short *first* page is checked against page 2: a server that caps the
//! page size below the one asked serves a full page 2, and its cap becomes the page size.

mod keyset;

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::batches::PageContext;
use crate::config::Connection;
use crate::error::{Error, Result};
use crate::http::Endpoint;
use crate::http::HttpClient;
use crate::spec::{FixedFilter, Stream};
use crate::streams::{Page, PageSource, ReadMode, get_parsed};
use crate::systems::deltek::OpportunityModel;
use crate::systems::deltek::page::parse_page;
use crate::systems::settings::ConnectionSettings;
use keyset::Pager;
pub use keyset::{OrderCol, Position};

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
        .map_err(|e| Error::config_from(format!("time_zone `{name}`"), e))
}

/// An RFC 3339 instant or a date (midnight UTC) as the tenant's zone-less wall clock,
/// `YYYY-MM-DDTHH:MM:SS.mmm`, the way Vantagepoint compares `datetime` filters.
pub fn to_wall_clock(value: &str, tz: &arrow_array::timezone::Tz) -> Result<String> {
    let utc = if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        t.with_timezone(&chrono::Utc)
    } else if let Ok(d) = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        d.and_time(chrono::NaiveTime::MIN).and_utc()
    } else {
        return Err(Error::config(format!(
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
    /// `{base}/{path}?` + page size, field filter and the stream's params.
    url_base: String,
    /// The stream's own filters and the read's (cursor, window); the pager adds its own.
    filters: Vec<FixedFilter>,
    page_size: u32,
    /// Where the read stands (keyset.rs).
    pager: Pager,
    /// Names the order columns carry in a served record (after `rename`).
    order_fields: Vec<String>,
    /// The first request of this read is still to come (a short answer to it is checked
    /// against a server-side page cap).
    first: bool,
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
                Error::config(format!(
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
        match mode {
            ReadMode::Incremental { cursor: c } => {
                let field = need_cursor()?;
                // The run folded the lookback into the cursor already (run::next_cursor).
                let since = to_wall_clock(c, &tz).map_err(|e| {
                    Error::state(format!(
                        "{}: the saved cursor `{c}` is not a timestamp ({e}); run `mlc state reset {}`",
                        stream.id, stream.id
                    ))
                })?;
                filters.push(datetime(&field, since, ">="));
            }
            ReadMode::Window { since, until } => {
                let field = need_cursor()?;
                if let Some(s) = since {
                    filters.push(datetime(&field, to_wall_clock(s, &tz)?, ">="));
                }
                if let Some(u) = until {
                    filters.push(datetime(&field, to_wall_clock(u, &tz)?, "<"));
                }
            }
            ReadMode::Snapshot { .. } | ReadMode::Keys => {}
        }
        // The read's order: ModDate (changes come in the order they were saved, and a row saved
        // mid-read moves ahead of the read, never behind it) then the key, which makes the order
        // total; a key-set pass reads keys only, by key.
        let keys: Vec<String> = stream.key_fields().into_iter().map(payload_name).collect();
        if keys.is_empty() {
            return Err(Error::Definition {
                path: stream.id.to_string(),
                message:
                    "deltek streams need a primary key from the payload (reads are paged by it)"
                        .into(),
            });
        }
        let mut order: Vec<OrderCol> = Vec::new();
        if *mode != ReadMode::Keys
            && let Some(c) = stream.cursor_column().filter(|c| !c.absent)
        {
            order.push(OrderCol {
                name: payload_name(c.source_name()),
                datetime: true,
            });
        }
        order.extend(keys.iter().map(|k| OrderCol {
            name: k.clone(),
            datetime: false,
        }));
        let order_fields: Vec<String> = order
            .iter()
            .map(|c| {
                rename
                    .get(&c.name)
                    .cloned()
                    .unwrap_or_else(|| c.name.clone())
            })
            .collect();
        let page_size = stream.page_size().max(1);
        let mut query: Vec<(String, String)> = vec![
            ("pageSize".into(), page_size.to_string()),
            ("fieldFilter".into(), fields.join(",")),
        ];
        for (k, v) in &params {
            query.push((k.clone(), v.clone()));
        }
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

        let headers = crate::streams::json_headers(stream)?;

        let refused = |r: &str, why: String| {
            Error::state(format!(
                "{}: the saved paging position `{r}` cannot be resumed ({why}); run `mlc state reset {}`",
                stream.id, stream.id
            ))
        };
        let (position, first) = match resume.as_deref().map(str::trim) {
            None => (Position::default(), true),
            // A page number saved before reads were keyset-paged: a page number does not say
            // which rows were read, so the read starts over (at-least-once; the keyed merge
            // makes the repeat harmless).
            Some(r) if r.parse::<u64>().is_ok() => {
                tracing::warn!(stream = %stream.id, "the saved position `{r}` is a page number from an older mlc: reading from the start");
                (Position::default(), true)
            }
            Some(r) => (
                serde_json::from_str::<Position>(r).map_err(|e| refused(r, e.to_string()))?,
                false,
            ),
        };
        let resumed = resume.clone().unwrap_or_default();
        let pager = Pager::new(order, position).map_err(|e| refused(&resumed, e))?;
        Ok(Self {
            http: endpoint.http.clone(),
            stream: stream.id.to_string(),
            headers,
            url_base,
            filters,
            page_size,
            pager,
            order_fields,
            first,
            rename,
            context: Arc::new(PageContext::new()),
        })
    }

    /// The URL of the next request (page `page` of the query the pager asks for: 1, or 2 to
    /// probe for a page cap).
    pub fn next_url(&self, page: u64) -> String {
        let mut filters = self.filters.clone();
        filters.extend(self.pager.conditions().into_iter().map(|c| FixedFilter {
            name: c.name,
            value: c.value,
            opp: c.opp.to_string(),
            ty: c.datetime.then(|| "datetime".to_string()),
            tablename: None,
        }));
        let mut url = format!("{}&order={}", self.url_base, enc(self.pager.order()));
        for (k, v) in filter_hash(&filters) {
            url.push('&');
            url.push_str(&enc(&k));
            url.push('=');
            url.push_str(&enc(&v));
        }
        url.push_str(&format!("&page={page}"));
        url
    }

    /// GETs `url` and parses it as an array page (renamed for variants).
    async fn fetch(&self, url: &str) -> Result<((Bytes, Vec<Range<usize>>), i64)> {
        let rename = Arc::new(self.rename.clone());
        get_parsed(
            &self.http,
            url,
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
        .await
    }
}

/// The values of `fields` in one record (null where absent).
fn order_values(record: &[u8], fields: &[String]) -> std::result::Result<Vec<Value>, String> {
    let map: HashMap<String, &RawValue> =
        serde_json::from_slice(record).map_err(|e| format!("a record is not an object: {e}"))?;
    fields
        .iter()
        .map(|f| match map.get(f) {
            Some(raw) => serde_json::from_str(raw.get()).map_err(|e| e.to_string()),
            None => Ok(Value::Null),
        })
        .collect()
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
        if self.pager.done() {
            return Ok(None);
        }
        let ((body, rows), received_at_micros) = self.fetch(&self.next_url(1)).await?;
        let n = rows.len();
        let asked = self.page_size as usize;
        if std::mem::take(&mut self.first) && self.pager.pos.cap.is_none() && n > 0 && n < asked {
            // Short, or capped? Page 2 of the same query answers it: rows there mean the server
            // serves at most `n` rows a page. They are not used (the pager resumes after page
            // 1 by value, which stays right if rows move between the two requests).
            let ((_, more), _) = self.fetch(&self.next_url(2)).await?;
            if !more.is_empty() {
                tracing::warn!(stream = %self.stream, asked, served = n, "the server serves fewer rows a page than asked: paging by {n}");
                self.pager.pos.cap = u32::try_from(n).ok();
            }
        }
        let page_rows = self.pager.pos.cap.map_or(asked, |c| c as usize);
        let fields = &self.order_fields;
        let keep = self
            .pager
            .advance(n, n >= page_rows, &mut |i| {
                order_values(&body[rows[i].clone()], fields)
            })
            .map_err(|message| {
                Error::decode(self.stream.clone(), format!("keyset paging: {message}"))
            })?;
        let rows = keep.into_iter().map(|i| rows[i].clone()).collect();
        let resume = if self.pager.done() {
            None
        } else {
            Some(
                serde_json::to_string(&self.pager.pos)
                    .map_err(|e| Error::decode_from(self.stream.clone(), "keyset position", e))?,
            )
        };
        Ok(Some(Page {
            body,
            rows,
            received_at_micros,
            resume,
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

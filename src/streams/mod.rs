//! Readers of source systems. A reader turns a stream definition and a connection into a
//! sequence of [`Page`]s: the raw response bytes, the byte range of every record in them, and
//! the position to resume from after the page. Decoding is not the reader's job
//! (see `batches`), so pages can be decoded on other threads while the next one is fetched.

pub mod deltek;
pub mod looker;
pub mod odata;
pub mod pipedrive;

use std::ops::Range;
use std::sync::Arc;

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;

use crate::batches::PageContext;
use crate::config::Connection;
use crate::error::{Error, Result};
use crate::http::Endpoint;
use crate::http::HttpClient;
use crate::spec::{ReaderKind, Stream};

/// One page of records as received.
#[derive(Debug)]
pub struct Page {
    pub body: Bytes,
    /// Byte range of each record in `body`.
    pub rows: Vec<Range<usize>>,
    /// When the page was received (µs since the epoch, UTC): the rows' `_ml_extracted_at`.
    pub received_at_micros: i64,
    /// Where to resume after this page (`None` on the last page).
    pub resume: Option<String>,
    /// The position the next run starts from, known on the last page (a delta link).
    pub end_cursor: Option<String>,
    /// Values the reader supplies for every record of the page (catalog `source = "$name"`).
    pub context: Arc<PageContext>,
}

/// What part of the source a run reads.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadMode {
    /// Everything, with change tracking started when `track` so the last page carries the
    /// position of the next incremental run.
    Snapshot { track: bool },
    /// What changed since `cursor` (a delta link, or a cursor-column value).
    Incremental { cursor: String },
    /// A window on the stream's cursor column, for backfills (`None` = open end).
    Window {
        since: Option<String>,
        until: Option<String>,
    },
    /// Every record, projected where the API can project onto the stream's columns (the run
    /// hands in the projected stream: keys and computed columns). A key-set reconciliation:
    /// keys absent from the read are deleted.
    Keys,
}

/// A source of pages.
#[async_trait::async_trait]
pub trait PageSource: Send {
    /// The next page, or `None` when the read is complete.
    async fn next_page(&mut self) -> Result<Option<Page>>;
}

/// Opens the reader of `stream` on `endpoint`. `resume` is a position saved by an earlier,
/// interrupted attempt of the same run.
pub fn open(
    stream: &Stream,
    conn: &Connection,
    endpoint: &Endpoint,
    mode: &ReadMode,
    resume: Option<String>,
) -> Result<Box<dyn PageSource>> {
    match stream.source.reader {
        ReaderKind::Odata => Ok(Box::new(odata::ODataSource::new(
            stream, conn, endpoint, mode, resume,
        )?)),
        ReaderKind::Deltek => Ok(Box::new(deltek::DeltekSource::new(
            stream, conn, endpoint, mode, resume,
        )?)),
        ReaderKind::Pipedrive => Ok(Box::new(pipedrive::PipedriveSource::new(
            stream, conn, endpoint, mode, resume,
        )?)),
        ReaderKind::Looker => Ok(Box::new(looker::LookerSource::new(
            stream, conn, endpoint, mode, resume,
        )?)),
    }
}

/// The records of one response body as the stream's reader finds them (fixtures, drift
/// checks). Fails when the body is not the system's page shape.
pub fn records(stream: &Stream, body: &[u8]) -> std::result::Result<Vec<Range<usize>>, String> {
    match stream.source.reader {
        ReaderKind::Odata => odata::parse_envelope(body).map(|p| p.rows),
        ReaderKind::Deltek => crate::systems::deltek::page::parse_page(body),
        ReaderKind::Pipedrive => pipedrive::parse_page(body).map(|p| p.rows),
        ReaderKind::Looker => looker::parse_json_bi(body).map(|p| p.rows),
    }
}

/// One response body as the stream's reader hands it to the decoder: the body (rewritten
/// where the reader adds keys, e.g. Looker's `result_row`) and the range of every record.
/// Fails when the body is not the system's page shape.
pub fn decoder_input(
    stream: &Stream,
    body: &[u8],
) -> std::result::Result<(Bytes, Vec<Range<usize>>), String> {
    match stream.source.reader {
        ReaderKind::Looker => looker::parse_page(body),
        _ => Ok((Bytes::copy_from_slice(body), records(stream, body)?)),
    }
}

/// How often a page whose body does not parse is fetched again before the run stops: a body
/// cut short on the way parses on the next try; a page the service really sends broken does not.
const MALFORMED_PAGE_RETRIES: u32 = 4;

/// The stream's fixed request headers (`headers` in its source file) with `Accept:
/// application/json`; a header that is not valid HTTP is a configuration error naming it.
pub fn json_headers(stream: &Stream) -> Result<HeaderMap> {
    use reqwest::header::{ACCEPT, HeaderName, HeaderValue};
    let bad = |k: &str, e: &dyn std::fmt::Display| {
        Error::config(format!("{}: header `{k}`: {e}", stream.id))
    };
    let mut headers = HeaderMap::new();
    for (k, v) in &stream.source.headers {
        headers.insert(
            HeaderName::from_bytes(k.as_bytes()).map_err(|e| bad(k, &e))?,
            HeaderValue::from_str(v).map_err(|e| bad(k, &e))?,
        );
    }
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    Ok(headers)
}

/// GETs `url` and parses its body with `parse` (on a blocking thread: pages are large), fetching
/// again with a short pause while the body does not parse. `shape` names what was expected
/// ("an OData collection"), for the error that ends the run after the retries. `map_err` lets a
/// reader turn a service error into its own (an expired delta token). Returns the parsed page
/// and when it was received (µs UTC).
pub async fn get_parsed<T: Send + 'static>(
    http: &HttpClient,
    url: &str,
    headers: &HeaderMap,
    stream: &str,
    shape: &str,
    parse: impl Fn(Bytes) -> std::result::Result<T, String> + Send + Sync + Clone + 'static,
    map_err: impl Fn(Error) -> Error,
) -> Result<(T, i64)> {
    let mut malformed = 0;
    loop {
        let resp = http.get(url, headers, stream).await.map_err(&map_err)?;
        let received_at_micros = now_micros();
        let parse = parse.clone();
        let parsed = tokio::task::spawn_blocking(move || parse(resp.body))
            .await
            .map_err(|e| Error::decode_from(stream.to_string(), "page parser stopped", e))?;
        match parsed {
            Ok(page) => return Ok((page, received_at_micros)),
            Err(msg) if malformed < MALFORMED_PAGE_RETRIES => {
                malformed += 1;
                tracing::warn!(stream = %stream, "page body is not {shape} ({msg}); fetching it again");
                // Jittered, so retries of one page do not fall into step with other requests.
                let pause = 250 + rand::random::<u64>() % 500;
                tokio::time::sleep(Duration::from_millis(pause * u64::from(malformed))).await;
            }
            Err(msg) => {
                return Err(Error::decode(
                    stream.to_string(),
                    format!(
                        "the page at {} is not {shape} after {} attempts: {msg}",
                        crate::http::redact::redact_url(url),
                        malformed + 1
                    ),
                ));
            }
        }
    }
}

/// Microseconds since the epoch, now.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

//! The Pipedrive reader (placeholder until the Pipedrive source lands).

use std::ops::Range;

use crate::config::Connection;
use crate::connect::Endpoint;
use crate::error::{Error, Result};
use crate::spec::Stream;
use crate::streams::{Page, PageSource, ReadMode};

pub struct PipedriveSource;

impl PipedriveSource {
    pub fn new(
        stream: &Stream,
        _conn: &Connection,
        _endpoint: &Endpoint,
        _mode: &ReadMode,
        _resume: Option<String>,
    ) -> Result<Self> {
        Err(Error::Config(format!("{}: not supported yet", stream.id)))
    }
}

#[async_trait::async_trait]
impl PageSource for PipedriveSource {
    async fn next_page(&mut self) -> Result<Option<Page>> {
        Ok(None)
    }
}

/// A parsed Pipedrive page.
pub struct Parsed {
    pub rows: Vec<Range<usize>>,
}

/// The records of a Pipedrive `{success, data, additional_data}` envelope.
pub fn parse_page(_body: &[u8]) -> std::result::Result<Parsed, String> {
    Err("not supported yet".into())
}

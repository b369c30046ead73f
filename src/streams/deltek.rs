//! The Deltek reader (placeholder until the Deltek source lands).

use std::ops::Range;

use crate::config::Connection;
use crate::connect::Endpoint;
use crate::error::{Error, Result};
use crate::spec::Stream;
use crate::streams::{Page, PageSource, ReadMode};

pub struct DeltekSource;

impl DeltekSource {
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
impl PageSource for DeltekSource {
    async fn next_page(&mut self) -> Result<Option<Page>> {
        Ok(None)
    }
}

/// The records of a Deltek response (always a JSON array).
pub fn parse_page(_body: &[u8]) -> std::result::Result<Vec<Range<usize>>, String> {
    Err("not supported yet".into())
}

//! A Vantagepoint API answer: always a JSON array of records.

use std::ops::Range;

use serde_json::value::RawValue;

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

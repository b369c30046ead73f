//! Dataverse change tracking: how the Web API says a delta token is past the org's retention.

use reqwest::header::HeaderMap;

use crate::http::answer::{odata_error, refuse_2xx};
use crate::http::{ResponseHook, Verdict};

/// Text Dataverse sends when a change-tracking token is past the org's retention.
const DELTA_EXPIRED_TEXT: &str = "Version stamp associated with the client has expired";
const DELTA_EXPIRED_CODE: &str = "0x80044352";

/// Whether an answer says the change-tracking token expired (Microsoft documents the text and
/// the code, not the status).
pub fn is_delta_expired_body(body: &[u8]) -> bool {
    let has = |needle: &str| body.windows(needle.len()).any(|w| w == needle.as_bytes());
    has(DELTA_EXPIRED_TEXT) || has(DELTA_EXPIRED_CODE)
}

/// Dataverse's response hook: an expired change-tracking token is a final answer, whatever
/// status it comes with (a 5xx would otherwise be retried for the whole retry budget before
/// the stream re-snapshots); a 2xx with an OData error body failed.
#[derive(Debug, Default)]
pub struct DeltaExpiredIsFinal;

impl ResponseHook for DeltaExpiredIsFinal {
    fn inspect(&self, status: u16, _headers: &HeaderMap, body: &[u8]) -> Verdict {
        if status >= 400 && is_delta_expired_body(body) {
            Verdict::Final
        } else {
            refuse_2xx(status, body, odata_error)
        }
    }
}

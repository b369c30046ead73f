//! Reading an answer's body for an error, for the systems' response hooks
//! ([`super::ResponseHook`]): a 2xx carrying an error is refused (never retried, and a write
//! known not to be saved), and a refusal is shown by its message rather than its raw body.

use serde_json::{Map, Value};

use reqwest::header::HeaderMap;

use super::{ResponseHook, Verdict};

/// Bodies longer than this are not read for an error: an error answer is short, and a data
/// page must not be parsed twice.
pub const ERROR_BODY_MAX: usize = 64 * 1024;

/// The body as a JSON object, when it is short enough to be an error answer and is one.
pub fn small_object(body: &[u8]) -> Option<Map<String, Value>> {
    if body.len() > ERROR_BODY_MAX || body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{')
    {
        return None;
    }
    match serde_json::from_slice(body).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// OData's error body `{"error": {"code", "message"}}` (Dataverse, Business Central) as
/// `code: message`; `None` when the body is not one.
pub fn odata_error(body: &[u8]) -> Option<String> {
    let object = small_object(body)?;
    let e = object.get("error")?.as_object()?;
    let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default();
    Some(format!("{}: {}", text("code"), text("message")))
}

/// The hook of an OData service whose only rule is that a 2xx with an error body (a batch
/// part, a proxy) failed: Business Central.
#[derive(Debug, Default)]
pub struct ODataErrorIsRefused;

impl ResponseHook for ODataErrorIsRefused {
    fn inspect(&self, status: u16, _headers: &HeaderMap, body: &[u8]) -> Verdict {
        refuse_2xx(status, body, odata_error)
    }
}

/// `Refuse` when a 2xx body is an error as `read` reads it, else `Proceed`.
pub fn refuse_2xx(status: u16, body: &[u8], read: fn(&[u8]) -> Option<String>) -> Verdict {
    match (200..300).contains(&status).then(|| read(body)).flatten() {
        Some(reason) => Verdict::Refuse(reason),
        None => Verdict::Proceed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body longer than an error answer is data: it is not parsed a second time, whatever
    /// its first key.
    #[test]
    fn long_bodies_are_not_read_for_an_error() {
        let mut long = br#"{"error":{"code":"X","message":"m"},"pad":""#.to_vec();
        long.resize(ERROR_BODY_MAX + 1, b' ');
        long.extend_from_slice(b"\"}");
        assert_eq!(odata_error(&long), None);
        assert_eq!(
            odata_error(br#"{"error":{"code":"X","message":"m"},"pad":""}"#).as_deref(),
            Some("X: m")
        );
    }

    #[test]
    fn an_odata_error_body_in_a_2xx_is_refused_and_data_is_not() {
        let error = br#" {"error":{"code":"BadRequest","message":"Name is too long"}}"#;
        assert_eq!(
            ODataErrorIsRefused.inspect(201, &HeaderMap::new(), error),
            Verdict::Refuse("BadRequest: Name is too long".into())
        );
        // The same body with an error status is the HTTP layer's to report.
        assert_eq!(
            ODataErrorIsRefused.inspect(400, &HeaderMap::new(), error),
            Verdict::Proceed
        );
        for data in [
            &br#"{"value":[{"error":"a column named error"}]}"#[..],
            br#"[{"error":{}}]"#,
            b"",
        ] {
            assert_eq!(
                ODataErrorIsRefused.inspect(200, &HeaderMap::new(), data),
                Verdict::Proceed
            );
        }
    }
}

//! How Vantagepoint says a request failed: an error object `{message, detail}` (ASP.NET's
//! `Message`, `ExceptionMessage`… on some servers), with an error status or, behind some
//! proxies and on some write paths, with a 2xx. A saved write answers an array of records.

use reqwest::header::HeaderMap;

use crate::http::answer::{refuse_2xx, small_object};
use crate::http::{ResponseHook, Verdict};

/// Keys an error object may carry (lowercased); an object with any other key is data.
const ERROR_KEYS: [&str; 6] = [
    "message",
    "detail",
    "messagedetail",
    "exceptionmessage",
    "exceptiontype",
    "stacktrace",
];

/// The message of an error object, `None` when the body is not one.
pub fn error_of(body: &[u8]) -> Option<String> {
    let object = small_object(body)?;
    if !object
        .keys()
        .all(|k| ERROR_KEYS.contains(&k.to_ascii_lowercase().as_str()))
    {
        return None;
    }
    let text = |name: &str| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_str())
            .filter(|s| !s.is_empty())
    };
    let message = text("message").or(text("exceptionmessage"))?;
    Some(match text("detail").or(text("messagedetail")) {
        Some(d) => format!("{message} {d}"),
        None => message.to_string(),
    })
}

/// A refusal's body as one line: its message, else the body (OAuth bodies, HTML).
pub fn reason_of(body: &str) -> String {
    error_of(body.as_bytes()).unwrap_or_else(|| body.to_string())
}

/// Vantagepoint's response hook: a 2xx carrying an error object failed.
#[derive(Debug, Default)]
pub struct ErrorObjectIsRefused;

impl ResponseHook for ErrorObjectIsRefused {
    fn inspect(&self, status: u16, _headers: &HeaderMap, body: &[u8]) -> Verdict {
        refuse_2xx(status, body, error_of)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_objects_are_read_and_records_are_not() {
        assert_eq!(
            error_of(br#"{"message":"Name is required.","detail":"firm"}"#).as_deref(),
            Some("Name is required. firm")
        );
        assert_eq!(
            error_of(br#"{"Message":"An error has occurred.","ExceptionMessage":"x"}"#).as_deref(),
            Some("An error has occurred.")
        );
        assert_eq!(error_of(br#"[{"ClientID":"1"}]"#), None);
        assert_eq!(error_of(br#"{"Name":"Acme","message":"hi"}"#), None);
        assert_eq!(
            ErrorObjectIsRefused.inspect(200, &HeaderMap::new(), br#"{"Message":"Failed"}"#),
            Verdict::Refuse("Failed".into())
        );
        assert_eq!(reason_of("<html>"), "<html>");
    }
}

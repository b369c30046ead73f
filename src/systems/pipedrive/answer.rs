//! How Pipedrive says a request failed: `{"success": false, "error": "…"}`, with an error
//! status or with a 2xx (a write that did not save).

use serde_json::Value;

use crate::http::answer::small_object;

/// The error of a `success: false` body, `None` when the body does not say it failed.
pub fn error_of(body: &[u8]) -> Option<String> {
    let object = small_object(body)?;
    if object.get("success").and_then(Value::as_bool) != Some(false) {
        return None;
    }
    Some(match object.get("error") {
        Some(Value::String(e)) => e.clone(),
        _ => "success = false".to_string(),
    })
}

/// A refusal's body as one line: its error, else the body.
pub fn reason_of(body: &str) -> String {
    error_of(body.as_bytes()).unwrap_or_else(|| body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_body_saying_success_false_is_an_error() {
        assert_eq!(
            error_of(br#"{"success":false,"error":"Validation failed"}"#).as_deref(),
            Some("Validation failed")
        );
        assert_eq!(error_of(br#"{"success":true,"data":{}}"#), None);
        assert_eq!(error_of(br#"{"data":[]}"#), None);
        assert_eq!(reason_of("Bad Gateway"), "Bad Gateway");
    }
}

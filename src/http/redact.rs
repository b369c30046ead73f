//! Redaction of secrets in URLs and messages, so logs, errors and `Debug` output never carry
//! a credential (DESIGN.md §5).

/// Query parameters whose values are secrets in one system or another.
const SECRET_PARAMS: &[&str] = &[
    "api_token",
    "access_token",
    "refresh_token",
    "client_secret",
    "password",
    "code",
    "token",
    "sig",
    "signature",
    "key",
    "apikey",
    "api_key",
];

/// The URL with user info and secret-bearing query values replaced by `***`. Malformed URLs
/// are returned with everything after `?` removed, which is always safe.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return url.split('?').next().unwrap_or_default().to_string();
    };
    if !parsed.username().is_empty() {
        let _ = parsed.set_username("***");
    }
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let secret = SECRET_PARAMS.iter().any(|s| k.eq_ignore_ascii_case(s));
                (
                    k.into_owned(),
                    if secret { "***".into() } else { v.into_owned() },
                )
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// The first `max` bytes of a response body as text, for error messages (cut on a char
/// boundary).
pub fn body_excerpt(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(body);
    if let Some(summary) = html_summary(&text) {
        return summary;
    }
    if text.len() <= max {
        return text.into_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// An HTML page (a proxy's or a firewall's error page) in one line: its title and size, never
/// the markup, which would fill a terminal with every retry warning.
fn html_summary(text: &str) -> Option<String> {
    let head: String = text.trim_start().chars().take(512).collect::<String>();
    let head = head.to_ascii_lowercase();
    if !(head.starts_with("<!doctype html") || head.starts_with("<html") || head.contains("<html"))
    {
        return None;
    }
    // ASCII lowercasing keeps byte offsets, so positions found in it index `text`.
    let lower = text.to_ascii_lowercase();
    let title = lower.find("<title").and_then(|start| {
        let open_end = start + lower[start..].find('>')? + 1;
        let close = open_end + lower[open_end..].find("</title")?;
        let t = text.get(open_end..close)?;
        let t: String = t.split_whitespace().collect::<Vec<_>>().join(" ");
        (!t.is_empty()).then(|| t.chars().take(120).collect::<String>())
    });
    Some(match title {
        Some(t) => format!("an HTML page titled \"{t}\" ({} bytes)", text.len()),
        None => format!("an HTML page ({} bytes)", text.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_secret_params_and_userinfo() {
        let r = redact_url("https://u:p@api.example.com/v1/deals?api_token=abc123&limit=5");
        assert!(!r.contains("abc123"), "{r}");
        assert!(!r.contains(":p@"), "{r}");
        assert!(r.contains("limit=5"), "{r}");
    }

    #[test]
    fn an_html_page_is_one_line() {
        let page = format!(
            "<!DOCTYPE html>\n<html><head>\n<title>Attention Required! |\n Cloudflare</title></head><body>{}</body></html>",
            "<div>blocked</div>".repeat(500)
        );
        let e = body_excerpt(page.as_bytes(), 512);
        assert!(
            e.starts_with("an HTML page titled \"Attention Required! | Cloudflare\""),
            "{e}"
        );
        assert!(!e.contains('<') && !e.contains('\n'), "{e}");
        assert_eq!(body_excerpt(br#"{"error":"x"}"#, 512), r#"{"error":"x"}"#);
    }

    #[test]
    fn keeps_plain_urls() {
        let u = "https://org.crm.dynamics.com/api/data/v9.2/accounts?%24select=name";
        assert!(redact_url(u).contains("select=name"));
        assert_eq!(redact_url("not a url?x=secret"), "not a url");
    }

    #[test]
    fn excerpt_cuts_on_char_boundary() {
        assert_eq!(body_excerpt("héllo".as_bytes(), 2), "h…");
        assert_eq!(body_excerpt(b"ok", 10), "ok");
    }
}

//! The fake Microsoft Entra token endpoint (client-credentials grant) and the registry of the
//! access tokens it issued, with Entra's error shapes and AADSTS codes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use url::form_urlencoded;

use super::App;

/// The sandbox tenant (directory) id.
pub const TENANT_ID: &str = "5a4d3c2b-1e0f-4a9b-8c7d-6e5f4a3b2c1d";
/// An alternative tenant name the token endpoint accepts too.
pub const TENANT_DOMAIN: &str = "mlcsandbox.onmicrosoft.com";
/// The app registration's client (application) id.
pub const CLIENT_ID: &str = "0c1d2e3f-4a5b-4c6d-8e7f-a0b1c2d3e4f5";
/// The app registration's client secret.
pub const CLIENT_SECRET: &str = "mlc~sandbox-secret.0123456789abcdef";

/// The Business Central API resource (token audience) and its client-credentials scope.
pub const BUSINESS_CENTRAL_RESOURCE: &str = "https://api.businesscentral.dynamics.com";
pub const BUSINESS_CENTRAL_SCOPE: &str = "https://api.businesscentral.dynamics.com/.default";

/// Why a bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenProblem {
    Missing,
    Invalid,
    Expired,
}

#[derive(Debug, Clone)]
struct Issued {
    client_id: String,
    /// The resource the token was issued for (`aud`).
    audience: String,
    issued: Instant,
    expires: Instant,
}

/// Access tokens issued so far.
#[derive(Debug)]
pub(crate) struct Tokens {
    issued: Mutex<HashMap<String, Issued>>,
    counter: AtomicU64,
    seed: u64,
}

impl Tokens {
    pub fn new(seed: u64) -> Self {
        Self {
            issued: Mutex::new(HashMap::new()),
            counter: AtomicU64::new(0),
            seed,
        }
    }

    /// Mints a JWT-looking opaque token for `client_id`, valid for `ttl`.
    fn issue(&self, client_id: &str, audience: &str, ttl: Duration) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"RS256","x5t":"mlc-sandbox"}"#);
        let claims = serde_json::json!({
            "aud": audience,
            "iss": format!("https://sts.windows.net/{TENANT_ID}/"),
            "iat": now.as_secs(),
            "nbf": now.as_secs(),
            "exp": now.as_secs() + ttl.as_secs(),
            "appid": client_id,
            "tid": TENANT_ID,
            "ver": "1.0",
            "jti": n,
        });
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let mut h = Sha256::new();
        h.update(self.seed.to_le_bytes());
        h.update(n.to_le_bytes());
        h.update(now.as_nanos().to_le_bytes());
        let sig = URL_SAFE_NO_PAD.encode(h.finalize());
        let token = format!("{header}.{payload}.{sig}");
        let mut m = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        if m.len() > 10_000 {
            let now = Instant::now();
            m.retain(|_, t| t.expires > now);
        }
        m.insert(
            token.clone(),
            Issued {
                client_id: client_id.to_string(),
                audience: audience.to_string(),
                issued: Instant::now(),
                expires: Instant::now() + ttl,
            },
        );
        token
    }

    /// The client id a bearer token was issued to.
    pub fn check(&self, authorization: Option<&str>) -> Result<String, TokenProblem> {
        let auth = authorization.ok_or(TokenProblem::Missing)?;
        let (scheme, token) = auth.trim().split_once(' ').ok_or(TokenProblem::Missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(TokenProblem::Missing);
        }
        let m = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        let t = m.get(token.trim()).ok_or(TokenProblem::Invalid)?;
        if Instant::now() >= t.expires {
            return Err(TokenProblem::Expired);
        }
        Ok(t.client_id.clone())
    }

    /// Like [`Tokens::check`], and the token must have been issued for `audience` (a token
    /// for another resource is refused as invalid, as the real services do).
    pub fn check_for(
        &self,
        authorization: Option<&str>,
        audience: &str,
    ) -> Result<String, TokenProblem> {
        let client = self.check(authorization)?;
        let token = authorization
            .and_then(|a| a.trim().split_once(' '))
            .map(|(_, t)| t.trim())
            .unwrap_or_default();
        let m = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        match m.get(token) {
            Some(t) if t.audience == audience => Ok(client),
            _ => Err(TokenProblem::Invalid),
        }
    }

    /// Makes a token expire now (the `expire` fault), unless it was just issued
    /// ([`expiry_hits`](super::protection::expiry_hits)); whether it did.
    pub fn revoke(&self, authorization: Option<&str>) -> bool {
        let Some((_, token)) = authorization.and_then(|a| a.trim().split_once(' ')) else {
            return false;
        };
        let mut m = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        match m.get_mut(token.trim()) {
            Some(t) if super::protection::expiry_hits(t.issued) => {
                t.expires = Instant::now();
                true
            }
            _ => false,
        }
    }
}

/// `POST {base}/entra/{tenant}/oauth2/v2.0/token`.
pub(crate) async fn token(
    State(app): State<Arc<App>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let field = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());

    if tenant != TENANT_ID && !tenant.eq_ignore_ascii_case(TENANT_DOMAIN) {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        );
    }
    let Some(grant) = field("grant_type") else {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        );
    };
    if grant != "client_credentials" {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{grant}'."),
        );
    }
    // Client credentials from the form, or from HTTP Basic (form-encoded id:secret).
    let basic = basic_credentials(&headers);
    let client_id = field("client_id")
        .map(str::to_string)
        .or_else(|| basic.as_ref().map(|b| b.0.clone()));
    let secret = field("client_secret")
        .map(str::to_string)
        .or_else(|| basic.as_ref().map(|b| b.1.clone()));
    let Some(client_id) = client_id else {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    if client_id != CLIENT_ID {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{TENANT_DOMAIN}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        );
    }
    let Some(secret) = secret else {
        return entra_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000216,
            "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
        );
    };
    if secret != CLIENT_SECRET {
        return entra_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{CLIENT_ID}'."
            ),
        );
    }
    let scope = field("scope").unwrap_or("");
    // Business Central's resource is the same for every tenant and environment.
    let resource = if scope == BUSINESS_CENTRAL_SCOPE {
        BUSINESS_CENTRAL_RESOURCE.to_string()
    } else {
        app.dataverse_url()
    };
    let valid = [
        format!("{resource}/.default"),
        format!("{resource}//.default"),
    ];
    if !valid.iter().any(|v| v == scope) {
        let message = if scope.is_empty() {
            "The provided request must include a 'scope' input parameter.".to_string()
        } else {
            format!(
                "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid. The resource principal must be the environment URL followed by /.default, e.g. {resource}/.default."
            )
        };
        return entra_error(StatusCode::BAD_REQUEST, "invalid_scope", 70011, &message);
    }
    let ttl = app.token_ttl;
    let token = app.tokens.issue(&client_id, &resource, ttl);
    let body = serde_json::json!({
        "token_type": "Bearer",
        "expires_in": ttl.as_secs(),
        "ext_expires_in": ttl.as_secs(),
        "access_token": token,
    });
    json_response(StatusCode::OK, body.to_string())
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = STANDARD.decode(b64.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    let dec = |s: &str| {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((dec(id), dec(secret)))
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

/// Entra's error body: `error`, `error_description` ("AADSTS<code>: ..." plus trace lines),
/// `error_codes`, `timestamp`, `trace_id`, `correlation_id`, `error_uri`.
fn entra_error(status: StatusCode, error: &str, code: u64, message: &str) -> Response {
    let now = chrono::Utc::now();
    let ts = now.format("%Y-%m-%d %H:%M:%SZ").to_string();
    let nanos = now.timestamp_nanos_opt().unwrap_or_default() as u64;
    let trace = uuid_like(nanos ^ code);
    let corr = uuid_like(nanos.rotate_left(17) ^ 0xC0);
    let description =
        format!("AADSTS{code}: {message} Trace ID: {trace} Correlation ID: {corr} Timestamp: {ts}");
    let body = serde_json::json!({
        "error": error,
        "error_description": description,
        "error_codes": [code],
        "timestamp": ts,
        "trace_id": trace,
        "correlation_id": corr,
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    json_response(status, body.to_string())
}

fn uuid_like(x: u64) -> String {
    let a = super::rng::mix(x);
    let b = super::rng::mix(a);
    let mut v = Vec::new();
    super::json::guid_from_bits(&mut v, a, b);
    String::from_utf8_lossy(&v).trim_matches('"').to_string()
}

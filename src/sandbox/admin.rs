//! Admin endpoints under `/_sandbox/`: the HTTP mirror of the `Sandbox` control methods, for
//! benchmarks and tests that run `mlc sandbox` as a separate process. Never fault-injected.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};

use super::entities::Set;
use super::options::Faults;
use super::{App, json};

/// (method, path, what it does) of every admin endpoint, the fakes' own included: what
/// `GET /_sandbox/` answers, so the URL `mlc sandbox` prints leads somewhere.
#[rustfmt::skip]
const INDEX: &[(&str, &str, &str)] = &[
    ("GET", "/_sandbox/health", "liveness"),
    ("GET", "/_sandbox/info", "base URLs and the sandbox's fixed credentials"),
    ("POST", "/_sandbox/mutate", "one round of inserts, updates and deletes everywhere"),
    ("PUT", "/_sandbox/faults", "fault rates, body like `429=0.05,5xx=0.02`"),
    ("GET", "/_sandbox/counts", "Dataverse live rows per entity set"),
    ("GET", "/_sandbox/stats", "requests served, by system and status"),
    ("GET", "/_sandbox/dataverse/{entity_set}/keys", "[id, version] of every live row"),
    ("POST", "/_sandbox/dataverse/expire-delta-tokens", "every delta token expires"),
    ("POST", "/_sandbox/dataverse/poison", "badly typed values in some rows"),
    ("POST", "/_sandbox/dataverse/webhooks", "register a service endpoint"),
    ("PUT", "/_sandbox/app-user", "the application user's state"),
    ("GET", "/_sandbox/business_central/counts", "live rows per company and entity set"),
    ("POST", "/_sandbox/business_central/mutate", "one round on Business Central"),
    ("POST", "/_sandbox/business_central/poison", "badly typed values in some rows"),
    ("GET", "/_sandbox/business_central/writes", "every write received"),
    ("GET", "/_sandbox/deltek/counts", "live rows per table"),
    ("POST", "/_sandbox/deltek/mutate", "one round on Deltek"),
    ("GET", "/_sandbox/deltek/{entity}/keys", "keys and ModDate of every live row"),
    ("POST", "/_sandbox/deltek/paging", "page cap, saves and deletes between pages"),
    ("GET", "/_sandbox/deltek/writes", "every write received"),
    ("GET", "/_sandbox/pipedrive/counts", "live rows per entity"),
    ("POST", "/_sandbox/pipedrive/mutate", "one round on Pipedrive"),
    ("POST", "/_sandbox/pipedrive/rename-field", "rename a custom field"),
    ("GET", "/_sandbox/looker/stats", "query tasks and requests"),
    ("POST", "/_sandbox/looker/mutate", "one round on Looker's data"),
    ("PUT", "/_sandbox/looker/tasks", "task progress, failures, stalls, request limit"),
];

/// The admin routes (state is the shared sandbox).
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/_sandbox", get(index))
        .route("/_sandbox/", get(index))
        .route("/_sandbox/health", get(health))
        .route("/_sandbox/info", get(info))
        .route("/_sandbox/mutate", post(mutate))
        .route(
            "/_sandbox/dataverse/expire-delta-tokens",
            post(expire_delta_tokens),
        )
        .route("/_sandbox/faults", put(faults))
        .route("/_sandbox/dataverse/poison", post(poison))
        .route("/_sandbox/dataverse/webhooks", post(register_webhook))
        .route("/_sandbox/dataverse/{entity_set}/keys", get(keys))
        .route("/_sandbox/counts", get(counts))
        .route("/_sandbox/stats", get(stats))
        .route("/_sandbox/app-user", put(app_user))
}

fn bad(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

async fn index() -> Json<serde_json::Value> {
    Json(serde_json::Value::Array(
        INDEX
            .iter()
            .map(|(m, p, what)| serde_json::json!({ "method": m, "path": p, "what": what }))
            .collect(),
    ))
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// URLs and the fixed credentials, so an out-of-process client can configure itself.
async fn info(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "base_url": app.base,
        "dataverse_url": app.dataverse_url(),
        "authority_url": app.authority_url(),
        "tenant_id": super::entra::TENANT_ID,
        "client_id": super::entra::CLIENT_ID,
        "client_secret": super::entra::CLIENT_SECRET,
        "scale": app.scale,
        "seed": app.seed,
    }))
}

async fn mutate(State(app): State<Arc<App>>) -> Response {
    Json(app.mutate()).into_response()
}

async fn expire_delta_tokens(State(app): State<Arc<App>>) -> StatusCode {
    app.org_mut().expire_delta_tokens();
    StatusCode::NO_CONTENT
}

async fn faults(State(app): State<Arc<App>>, body: String) -> Response {
    match body.parse::<Faults>() {
        Ok(f) => {
            app.set_faults(f);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad(e.to_string()),
    }
}

async fn poison(State(app): State<Arc<App>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(set) = q.get("entity_set").and_then(|s| Set::from_name(s)) else {
        return bad("entity_set must name a Dataverse entity set, e.g. accounts".into());
    };
    let count = match q.get("count").map(|c| c.parse::<usize>()) {
        None => 1,
        Some(Ok(c)) => c,
        Some(Err(_)) => return bad("count must be a non-negative integer".into()),
    };
    let n = app.org_mut().poison(set, count);
    Json(serde_json::json!({ "entity_set": set.name(), "poisoned": n })).into_response()
}

/// `[[id, version], ...]` of every live row, streamed in chunks so 10 M rows never sit in
/// memory as one document.
async fn keys(State(app): State<Arc<App>>, Path(entity_set): Path<String>) -> Response {
    let Some(set) = Set::from_name(&entity_set) else {
        return bad(format!("unknown entity set `{entity_set}`"));
    };
    const CHUNK: u64 = 50_000;
    let end = app.org().table(set).end();
    let stream = futures::stream::unfold((0u64, true), move |(from, first)| {
        let app = app.clone();
        async move {
            if from > end {
                return None;
            }
            let mut buf = Vec::with_capacity(64 * CHUNK as usize);
            if from == 0 {
                buf.push(b'[');
            }
            let mut first = first;
            let to = (from + CHUNK).min(end);
            {
                let org = app.org();
                let t = org.table(set);
                for o in from..to {
                    if let Some(r) = t.live_row(o) {
                        if !first {
                            buf.push(b',');
                        }
                        first = false;
                        buf.push(b'[');
                        json::guid(&mut buf, set.code(), o);
                        buf.push(b',');
                        json::u64(&mut buf, r.state.version);
                        buf.push(b']');
                    }
                }
            }
            let next = if to == end { end + 1 } else { to };
            if to == end {
                buf.push(b']');
            }
            Some((Ok::<Bytes, std::io::Error>(Bytes::from(buf)), (next, first)))
        }
    });
    let mut r = Body::from_stream(stream).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn counts(State(app): State<Arc<App>>) -> Response {
    Json(app.org().counts()).into_response()
}

async fn stats(State(app): State<Arc<App>>) -> Response {
    Json(app.stats()).into_response()
}

async fn app_user(State(app): State<Arc<App>>, body: String) -> Response {
    match body.trim() {
        "true" => app.set_app_user(true),
        "false" => app.set_app_user(false),
        other => return bad(format!("body must be true or false, not `{other}`")),
    }
    StatusCode::NO_CONTENT.into_response()
}

#[derive(serde::Deserialize)]
struct WebhookRegistration {
    url: String,
    #[serde(default)]
    code: Option<String>,
}

/// `POST /_sandbox/dataverse/webhooks {"url": …, "code": …}`: registers a service endpoint
/// (WebhookKey auth when `code` is given), as the Plugin Registration Tool would.
async fn register_webhook(
    State(app): State<Arc<App>>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match serde_json::from_slice::<WebhookRegistration>(&body) {
        Ok(r) if r.url.starts_with("http") => {
            app.dataverse_hooks.register(r.url, r.code);
            axum::http::StatusCode::NO_CONTENT.into_response()
        }
        _ => (
            axum::http::StatusCode::BAD_REQUEST,
            "expected {\"url\": \"http…\", \"code\": \"<WebhookKey>\"}\n",
        )
            .into_response(),
    }
}

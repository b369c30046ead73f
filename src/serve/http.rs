//! The one HTTP server of `mlc serve`: health, metrics and the webhook receivers.
//!
//! ```text
//! GET  /healthz                                  liveness ("ok")
//! GET  /metrics                                  Prometheus text exposition
//! POST /webhooks/dataverse/{connection}          RemoteExecutionContext, shared key
//! POST /webhooks/pipedrive/{connection}          v1 / v2 events, Basic auth (+ HMAC)
//! POST /webhooks/business_central/{connection}   notifications, clientState
//! GET|POST ...business_central/{c}?validationToken=…   subscription handshake
//! ```
//!
//! Receivers check, parse and queue; they never run anything, so they answer in milliseconds
//! (Dataverse waits 60 s, Business Central ~5 s for the handshake). Bodies above
//! `serve.max_body_bytes` get 413 before any parsing.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::systems::system::System;

use super::receiver::Receiver;

/// The router; `max_body` bytes per request.
pub fn router(rx: Arc<Receiver>, max_body: usize) -> Router {
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics));
    crate::systems::webhook_routes(router)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            rx.clone(),
            count_oversized,
        ))
        .with_state(rx)
}

/// The body limit answers 413 before any handler runs; count those rejections too.
async fn count_oversized(
    axum::extract::State(rx): axum::extract::State<Arc<Receiver>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let system = req
        .uri()
        .path()
        .strip_prefix("/webhooks/")
        .and_then(|p| p.split('/').next())
        .and_then(|s| s.parse::<System>().ok());
    let r = next.run(req).await;
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE
        && let Some(system) = system
    {
        rx.metrics.rejected(system, "body too large");
        tracing::warn!(system = %system, "webhook rejected: body over serve.max_body_bytes");
    }
    r
}

async fn metrics(axum::extract::State(rx): axum::extract::State<Arc<Receiver>>) -> Response {
    let rx2 = rx.clone();
    let text =
        tokio::task::spawn_blocking(move || rx2.metrics.render(Some(&rx2.state), rx2.clock.now()))
            .await
            .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

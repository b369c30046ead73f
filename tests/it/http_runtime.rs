//! The HTTP runtime against a scripted server: Retry-After is honoured, 401 refreshes the token
//! exactly once, writes are not retried after ambiguous failures, and the rate limit paces.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use ml_connector::Error;
use ml_connector::http::answer::ODataErrorIsRefused;
use ml_connector::http::auth::EntraClientCredentials;
use ml_connector::http::retry::RetryPolicy;
use ml_connector::http::{HttpClient, Idempotency, Limits};
use reqwest::Method;
use reqwest::header::HeaderMap;
use secrecy::SecretString;

/// Serves `router` on a free port; returns its base URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

fn client(auth: Option<Arc<EntraClientCredentials>>, rpm: Option<u32>) -> HttpClient {
    HttpClient::new(
        "test",
        "conn",
        auth.map(|a| a as Arc<dyn ml_connector::http::auth::AuthProvider>),
        Limits {
            requests_per_minute: rpm,
            max_concurrency: 4,
        },
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            max_total: Duration::from_secs(10),
        },
    )
    .unwrap()
}

#[tokio::test]
async fn retry_after_is_honoured_on_429_and_503() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let base = serve(Router::new().route(
        "/x",
        get(move || {
            let n = h.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    0 => (
                        StatusCode::TOO_MANY_REQUESTS,
                        [("Retry-After", "1")],
                        "slow down",
                    )
                        .into_response(),
                    1 => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [("Retry-After", "1")],
                        "busy",
                    )
                        .into_response(),
                    _ => (StatusCode::OK, "done").into_response(),
                }
            }
        }),
    ))
    .await;
    let started = Instant::now();
    let resp = client(None, None)
        .get(&format!("{base}/x"), &HeaderMap::new(), "s")
        .await
        .unwrap();
    assert_eq!(&resp.body[..], b"done");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "waited as told"
    );
}

/// A server asking for an hour's pause (the client's budget is 10 s) fails the request at once
/// with what it asked, instead of sleeping through it.
#[tokio::test]
async fn a_retry_after_beyond_the_budget_fails_at_once_with_the_servers_request() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let base = serve(Router::new().route(
        "/x",
        get(move || {
            h.fetch_add(1, Ordering::SeqCst);
            async {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "3600")],
                    "later",
                )
            }
        }),
    ))
    .await;
    let started = Instant::now();
    let err = client(None, None)
        .get(&format!("{base}/x"), &HeaderMap::new(), "s")
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "did not wait");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert!(
        matches!(err, Error::RetryBudget { status: 429, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("wait 3600 s") && text.contains("run again later"),
        "{text}"
    );
    assert!(!err.is_transient());
}

/// A host that refuses the very first connection is a setting to fix: the request fails at
/// once, saying so, instead of being retried for minutes. Once the host has answered, a
/// refused connection is a blip and is retried.
#[tokio::test]
async fn an_unreachable_host_fails_at_once_until_it_has_answered() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let c = HttpClient::new(
        "test",
        "conn",
        None,
        Limits {
            requests_per_minute: None,
            max_concurrency: 1,
        },
        RetryPolicy::default(),
    )
    .unwrap();
    let started = Instant::now();
    let err = c
        .get(
            &format!("http://{closed}/x?api_token=sekrit"),
            &HeaderMap::new(),
            "s",
        )
        .await
        .unwrap_err();
    // The client's error is kept as the source, without the URL its query could leak.
    let mut chain = err.to_string();
    let mut source = std::error::Error::source(&err);
    assert!(source.is_some(), "the transport error keeps its source");
    while let Some(s) = source {
        chain.push_str(&format!(" / {s}"));
        source = s.source();
    }
    assert!(!chain.contains("sekrit"), "{chain}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.to_string()
            .contains("nothing has answered on this connection yet"),
        "{err}"
    );

    // A host that answered once, then refuses: retried like any transient failure.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, Router::new().route("/x", get(|| async { "ok" }))).await;
    });
    let c = client(None, None);
    c.get(&format!("http://{addr}/x"), &HeaderMap::new(), "s")
        .await
        .unwrap();
    server.abort();
    let _ = server.await;
    let err = c
        .get(&format!("http://{addr}/x"), &HeaderMap::new(), "s")
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("nothing has answered"), "{err}");
}

#[tokio::test]
async fn permanent_errors_are_not_retried_and_carry_context() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let base = serve(Router::new().route(
        "/x",
        get(move || {
            h.fetch_add(1, Ordering::SeqCst);
            async {
                (
                    StatusCode::BAD_REQUEST,
                    r#"{"error":{"code":"0x0","message":"bad $select"}}"#,
                )
            }
        }),
    ))
    .await;
    let err = client(None, None)
        .get(
            &format!("{base}/x?api_token=sekrit"),
            &HeaderMap::new(),
            "s",
        )
        .await
        .unwrap_err();
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let msg = err.to_string();
    assert!(msg.contains("400") && msg.contains("bad $select"), "{msg}");
    assert!(!msg.contains("sekrit"), "secrets are redacted: {msg}");
}

/// A 2xx whose body the system's response hook reads as failed is an error carrying the
/// status and the hook's reason, sent once: a write that answered so was not saved, and
/// asking again cannot change that.
#[tokio::test]
async fn a_2xx_carrying_an_error_is_refused_once_not_returned_as_data() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let base = serve(Router::new().route(
        "/x",
        post(move || {
            h.fetch_add(1, Ordering::SeqCst);
            async {
                (
                    StatusCode::CREATED,
                    r#"{"error":{"code":"BadRequest","message":"Name is too long"}}"#,
                )
            }
        }),
    ))
    .await;
    let http = client(None, None).with_hook(Arc::new(ODataErrorIsRefused));
    let err = http
        .send(
            Method::POST,
            &format!("{base}/x"),
            "s",
            Idempotency::Safe,
            |rb| rb,
        )
        .await
        .unwrap_err();
    assert_eq!(hits.load(Ordering::SeqCst), 1, "never retried");
    assert_eq!(err.status(), Some(201));
    assert!(
        matches!(&err, Error::FailedAnswer { reason, .. } if reason == "BadRequest: Name is too long"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_401_refreshes_the_token_and_a_refused_fresh_token_fails() {
    let tokens = Arc::new(AtomicUsize::new(0));
    let t = tokens.clone();
    let data_hits = Arc::new(AtomicUsize::new(0));
    let d = data_hits.clone();
    let base = serve(
        Router::new()
            .route(
                "/tenant/oauth2/v2.0/token",
                post(move || {
                    let n = t.fetch_add(1, Ordering::SeqCst);
                    async move {
                        axum::Json(serde_json::json!({
                            "token_type": "Bearer", "expires_in": 3599, "access_token": format!("tok{n}")
                        }))
                    }
                }),
            )
            .route(
                "/data",
                get(move |headers: axum::http::HeaderMap| {
                    d.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
                        if auth == "Bearer tok0" {
                            StatusCode::UNAUTHORIZED.into_response()
                        } else if auth == "Bearer tok1" {
                            (StatusCode::OK, "ok").into_response()
                        } else {
                            StatusCode::UNAUTHORIZED.into_response()
                        }
                    }
                }),
            )
            .route("/always401", get(|| async { StatusCode::UNAUTHORIZED })),
    )
    .await;
    let auth = Arc::new(EntraClientCredentials::new(
        "test",
        &base,
        "tenant",
        "cid",
        SecretString::from("s"),
        "https://x/.default".into(),
    ));
    let c = client(Some(auth), None);
    let resp = c
        .get(&format!("{base}/data"), &HeaderMap::new(), "s")
        .await
        .unwrap();
    assert_eq!(&resp.body[..], b"ok");
    assert_eq!(
        tokens.load(Ordering::SeqCst),
        2,
        "one refresh after the 401"
    );
    // A second call reuses the cached token.
    c.get(&format!("{base}/data"), &HeaderMap::new(), "s")
        .await
        .unwrap();
    assert_eq!(tokens.load(Ordering::SeqCst), 2);
    // Refused with two freshly issued tokens in a row: a clear auth error, no loop.
    let err = c
        .get(&format!("{base}/always401"), &HeaderMap::new(), "s")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err}");
    assert_eq!(tokens.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn writes_are_not_retried_after_an_ambiguous_failure() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let base = serve(Router::new().route(
        "/w",
        post(move || {
            h.fetch_add(1, Ordering::SeqCst);
            async { StatusCode::BAD_GATEWAY }
        }),
    ))
    .await;
    let err = client(None, None)
        .send(
            Method::POST,
            &format!("{base}/w"),
            "s",
            Idempotency::Unsafe,
            |rb| rb.body("{}"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(502));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "a 502 on a write may have been applied"
    );
}

#[tokio::test]
async fn the_rate_limit_paces_requests() {
    let base = serve(Router::new().route("/r", get(|| async { "ok" }))).await;
    // 600 per minute = one every 100 ms after a burst of 60.
    let c = client(None, Some(600));
    let started = Instant::now();
    for _ in 0..70 {
        c.get(&format!("{base}/r"), &HeaderMap::new(), "s")
            .await
            .unwrap();
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "10 requests past the burst take ~1 s, took {took:?}"
    );
}

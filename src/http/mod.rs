//! One HTTP client for every system (DESIGN.md §5): a single reqwest stack with timeouts and
//! gzip, pluggable auth, per-connection rate and concurrency limits, the retry policy, a tracing
//! span per request and redaction of everything secret.

pub mod answer;
pub mod auth;
pub mod redact;
pub mod retry;

use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::error::{Error, Result};
use auth::AuthProvider;
use redact::{body_excerpt, redact_url};
use retry::{Exhausted, RetryPolicy, Waits};

/// Retries sent by every client of the process (read by `mlc serve`'s `/metrics`).
pub static RETRIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// 429 answers received by every client of the process.
pub static THROTTLED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The process-wide reqwest client: one connection pool, one TLS stack.
pub fn shared_client() -> Result<reqwest::Client> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c.clone());
    }
    let c = reqwest::Client::builder()
        .user_agent(concat!("ml-connector/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(15))
        .timeout(Duration::from_secs(300))
        // Below the idle timeouts servers and proxies commonly close keep-alive connections at
        // (hyper 30 s, AWS ALB 60 s, nginx 75 s): a write sent on a connection the server just
        // closed has no answer, and an unanswered write must be treated as maybe applied.
        .pool_idle_timeout(Duration::from_secs(25))
        .gzip(true)
        .build()
        .map_err(|e| Error::config_from("cannot build the HTTP client", e))?;
    Ok(CLIENT.get_or_init(|| c).clone())
}

/// A reqwest error in words, without the URL (reqwest's own message includes it, query string
/// and all).
pub fn describe_reqwest_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect (refused, unreachable or DNS failure)"
    } else if e.is_body() || e.is_decode() {
        "the connection dropped while reading the response body"
    } else if e.is_request() {
        "the request could not be sent"
    } else {
        "transport error"
    };
    let mut detail = String::new();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        detail = s.to_string();
        src = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

/// Requests per minute and simultaneous requests allowed on one connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub requests_per_minute: Option<u32>,
    pub max_concurrency: usize,
}

/// Whether a request may be sent again after an ambiguous failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// Reads: retried on every transient failure.
    Safe,
    /// Writes: retried only when the server provably did not process the request (429, 503);
    /// after a timeout or a dropped connection the caller must look for the record first.
    Unsafe,
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What a [`ResponseHook`] decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Carry on as usual.
    Proceed,
    /// Wait this long first (before a request: pacing; after a failed one: the retry wait
    /// when the server sent no `Retry-After`).
    Wait(Duration),
    /// Stop the run with this message ([`Error::Stopped`], never retried).
    Stop(String),
    /// (After a response.) The answer is final whatever its status: it is returned as it is,
    /// never retried (Dataverse's expired delta token, whose status is not documented, must
    /// not be retried as a 500 for ten minutes).
    Final,
    /// (After a 2xx response.) The body says the request failed although the status is a
    /// success: the answer is an [`Error::FailedAnswer`] with this reason, never retried.
    Refuse(String),
}

/// A system's reading of its answers, the retry logic's one per-system part (vector's
/// `should_retry_response`): rate-limit headers (Pipedrive: `x-ratelimit-*`, the daily token
/// budget, Cloudflare's HTML 403), answers that are final whatever their status, and 2xx
/// answers carrying an error. Readers and sink targets of a connection share it, so a write
/// and a read see the same rules.
pub trait ResponseHook: Send + Sync {
    /// Called before every attempt.
    fn before(&self) -> Verdict {
        Verdict::Proceed
    }
    /// Called with every response (any status).
    fn inspect(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Verdict;
}

/// How often a token issued for one request may be refused (401) before the refusal is taken
/// as final: a token can expire (or be revoked) again while a request is retried, so one
/// refusal of a fresh token is not conclusive; two are.
const MAX_TOKEN_REFRESHES: u32 = 2;
/// 401s one request takes in all (tokens other requests of the connection renewed included),
/// so a server refusing every token cannot keep a request going.
const MAX_UNAUTHORIZED: u32 = 8;

/// A connection ready to be read: its HTTP client and API base URL (no trailing slash).
///
/// Clones share everything that limits the connection as a whole: the token cache, the rate
/// limiter, the concurrency semaphore and the response hook (Pipedrive's daily budget).
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub http: HttpClient,
    pub base: String,
}

/// The client of one connection (one tenant of one system).
#[derive(Clone)]
pub struct HttpClient {
    http: reqwest::Client,
    system: Arc<str>,
    connection: Arc<str>,
    auth: Option<Arc<dyn AuthProvider>>,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    gate: Arc<Semaphore>,
    max_concurrency: usize,
    policy: RetryPolicy,
    hook: Option<Arc<dyn ResponseHook>>,
    /// Whether anything answered on this connection yet (any status): until then a refused
    /// connection or an unknown host is a setting to fix, not a blip to retry for minutes.
    answered: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("system", &self.system)
            .field("connection", &self.connection)
            .field("auth", &self.auth)
            .finish()
    }
}

/// What a single attempt ended with.
enum Attempt {
    Done(Response),
    /// A 401, with the header that was refused and whether it was issued for this attempt.
    Unauthorized(Error, HeaderValue, bool),
    /// The provider has nothing but the token just refused (a fixed API token).
    SameToken,
    Failed(Error),
    /// A failure the system's hook calls final: not retried.
    Final(Error),
}

impl HttpClient {
    pub fn new(
        system: &str,
        connection: &str,
        auth: Option<Arc<dyn AuthProvider>>,
        limits: Limits,
        policy: RetryPolicy,
    ) -> Result<Self> {
        let limiter = match limits.requests_per_minute {
            Some(rpm) => {
                let rpm = NonZeroU32::new(rpm).ok_or_else(|| {
                    Error::config(format!(
                        "connections.{connection}: requests_per_minute must be at least 1"
                    ))
                })?;
                // Burst of a tenth of a minute's budget: smooth, but pages can be prefetched.
                let burst = NonZeroU32::new((rpm.get() / 10).max(1)).unwrap_or(NonZeroU32::MIN);
                Some(Arc::new(RateLimiter::direct(
                    Quota::per_minute(rpm).allow_burst(burst),
                )))
            }
            None => None,
        };
        Ok(Self {
            http: shared_client()?,
            system: system.into(),
            connection: connection.into(),
            auth,
            limiter,
            gate: Arc::new(Semaphore::new(limits.max_concurrency.max(1))),
            max_concurrency: limits.max_concurrency.max(1),
            policy,
            hook: None,
            answered: Arc::default(),
        })
    }

    /// Requests this client lets be in flight at once (the connection's `max_concurrency`).
    pub fn max_concurrency(&self) -> usize {
        self.max_concurrency
    }

    /// Replaces the rate limit with `rpm` requests per minute and a burst of `burst`. A small
    /// burst paces strictly: Looker counts calls against a per-minute budget, so a burst of a
    /// tenth of the minute (the default) could overshoot it within any sliding minute.
    pub fn with_rate(mut self, rpm: u32, burst: u32) -> Result<Self> {
        let rpm = NonZeroU32::new(rpm).ok_or_else(|| {
            Error::config(format!(
                "connections.{}: requests_per_minute must be at least 1",
                self.connection
            ))
        })?;
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        self.limiter = Some(Arc::new(RateLimiter::direct(
            Quota::per_minute(rpm).allow_burst(burst),
        )));
        Ok(self)
    }

    /// Adds a system's response hook (rate-limit pacing and hard stops).
    pub fn with_hook(mut self, hook: Arc<dyn ResponseHook>) -> Self {
        self.hook = Some(hook);
        self
    }

    /// The API base the auth provider learned from its token response (Pipedrive OAuth
    /// `api_domain`); fetches a token first when none is cached.
    pub async fn auth_api_base(&self) -> Result<Option<String>> {
        let Some(auth) = &self.auth else {
            return Ok(None);
        };
        if auth.api_base().is_none() {
            auth.authorization(&self.http, None).await?;
        }
        Ok(auth.api_base())
    }

    /// The system this client speaks to (`dataverse`, ...).
    pub fn system(&self) -> &str {
        &self.system
    }

    /// GET `url` with retries; fails on any non-2xx status after the retry budget.
    pub async fn get(&self, url: &str, headers: &HeaderMap, stream: &str) -> Result<Response> {
        self.send(Method::GET, url, stream, Idempotency::Safe, |rb| {
            rb.headers(headers.clone())
        })
        .await
    }

    /// Sends a request built by `build` (called once per attempt), with auth, limits, retries
    /// and a tracing span. A 401 forces one token refresh; a second 401 is an
    /// [`Error::Auth`].
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        stream: &str,
        idempotency: Idempotency,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response> {
        let shown = redact_url(url);
        let mut waits = Waits::new(&self.policy);
        // Tokens issued for this request and refused, 401s in all, the header last refused and
        // the refusal it came with.
        let (mut fresh_refused, mut unauthorized) = (0u32, 0u32);
        let mut refused: Option<HeaderValue> = None;
        let mut last_refusal: Option<Error> = None;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let span = tracing::debug_span!(
                "http",
                system = %self.system,
                connection = %self.connection,
                stream = %stream,
                method = %method,
                url = %shown,
                attempt,
                status = tracing::field::Empty,
                ms = tracing::field::Empty,
            );
            let outcome = self
                .attempt(&method, url, &shown, refused.take().as_ref(), &build)
                .instrument(span)
                .await;
            match outcome {
                Attempt::Done(resp) => return Ok(resp),
                Attempt::Unauthorized(e, header, fresh) => {
                    unauthorized += 1;
                    fresh_refused += u32::from(fresh);
                    if fresh_refused >= MAX_TOKEN_REFRESHES || unauthorized >= MAX_UNAUTHORIZED {
                        return Err(e);
                    }
                    tracing::info!(system = %self.system, url = %shown, "401: renewing the token");
                    refused = Some(header);
                    last_refusal = Some(e);
                }
                Attempt::SameToken => {
                    return Err(last_refusal.unwrap_or_else(|| Error::Auth {
                        system: self.system.to_string(),
                        message: format!("{shown} refused the credentials"),
                    }));
                }
                Attempt::Final(e) => return Err(e),
                Attempt::Failed(e) => {
                    if e.status() == Some(429) {
                        THROTTLED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    let retryable = match idempotency {
                        Idempotency::Safe => e.is_transient(),
                        Idempotency::Unsafe => matches!(e.status(), Some(429 | 503)),
                    };
                    if !retryable {
                        return Err(e);
                    }
                    // `Retry-After` counts against the policy's `max_total` like the
                    // backoff's own steps.
                    let wait = match waits.next(e.retry_after()) {
                        Ok(wait) => wait,
                        Err(Exhausted::Attempts) => return Err(e),
                        Err(Exhausted::Budget { asked, left }) => {
                            return Err(match e {
                                Error::Http {
                                    system,
                                    method,
                                    url,
                                    status,
                                    ..
                                } => Error::RetryBudget {
                                    system,
                                    method,
                                    url,
                                    status,
                                    asked,
                                    left,
                                },
                                other => other,
                            });
                        }
                    };
                    tracing::warn!(
                        system = %self.system, connection = %self.connection, stream = %stream,
                        url = %shown, attempt, wait_ms = wait.as_millis() as u64,
                        "transient failure, retrying: {e}"
                    );
                    RETRIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn attempt(
        &self,
        method: &Method,
        url: &str,
        shown: &str,
        refused: Option<&HeaderValue>,
        build: &impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Attempt {
        if let Some(l) = &self.limiter {
            l.until_ready().await;
        }
        if let Some(hook) = &self.hook {
            match hook.before() {
                Verdict::Proceed | Verdict::Final | Verdict::Refuse(_) => {}
                Verdict::Wait(d) => tokio::time::sleep(d).await,
                Verdict::Stop(m) => return Attempt::Failed(Error::Stopped(m)),
            }
        }
        let _permit = match self.gate.acquire().await {
            Ok(p) => p,
            Err(_) => return Attempt::Failed(Error::Stopped("HTTP client closed".into())),
        };
        let mut rb = build(self.http.request(method.clone(), url));
        // The header sent, and whether it was issued for this attempt.
        let mut sent: Option<(HeaderValue, bool)> = None;
        if let Some(auth) = &self.auth {
            match auth.authorization(&self.http, refused).await {
                Ok((h, _)) if refused == Some(&h) => return Attempt::SameToken,
                Ok((h, fresh)) => {
                    rb = rb.header(auth.header_name(), h.clone());
                    sent = Some((h, fresh));
                }
                Err(e) => return Attempt::Failed(e),
            }
        }
        let started = Instant::now();
        let transport = |e: reqwest::Error| Error::Transport {
            system: self.system.to_string(),
            method: method.to_string(),
            url: shown.to_string(),
            message: describe_reqwest_error(&e),
            source: Some(Box::new(e.without_url())),
        };
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e)
                if e.is_connect() && !self.answered.load(std::sync::atomic::Ordering::Relaxed) =>
            {
                let mut err = transport(e);
                if let Error::Transport { message, .. } = &mut err {
                    message.push_str(
                        "; nothing has answered on this connection yet: check its URL setting and the network",
                    );
                }
                return Attempt::Final(err);
            }
            Err(e) => return Attempt::Failed(transport(e)),
        };
        self.answered
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return Attempt::Failed(transport(e)),
        };
        let span = tracing::Span::current();
        span.record("status", status);
        span.record("ms", started.elapsed().as_millis() as u64);
        tracing::debug!(bytes = body.len(), "response");
        let mut hook_wait = None;
        let mut final_answer = false;
        if let Some(hook) = &self.hook {
            match hook.inspect(status, &headers, &body) {
                Verdict::Proceed => {}
                Verdict::Wait(d) => hook_wait = Some(d),
                Verdict::Stop(m) => return Attempt::Failed(Error::Stopped(m)),
                Verdict::Final => final_answer = true,
                Verdict::Refuse(reason) if (200..300).contains(&status) => {
                    return Attempt::Final(Error::FailedAnswer {
                        system: self.system.to_string(),
                        method: method.to_string(),
                        url: shown.to_string(),
                        status,
                        reason,
                    });
                }
                Verdict::Refuse(_) => {}
            }
        }
        if (200..300).contains(&status) {
            return Attempt::Done(Response {
                status,
                headers,
                body,
            });
        }
        let retry_after = retry::retry_after(&headers).or(hook_wait);
        let err = Error::Http {
            system: self.system.to_string(),
            method: method.to_string(),
            url: shown.to_string(),
            status,
            body: body_excerpt(&body, 512),
            retry_after,
        };
        if status == 401
            && let Some((header, fresh)) = sent
        {
            return Attempt::Unauthorized(
                Error::Auth {
                    system: self.system.to_string(),
                    message: format!(
                        "the service refused a freshly issued token for {shown} (HTTP 401: {}); check that the credentials belong to this environment",
                        body_excerpt(&body, 200)
                    ),
                },
                header,
                fresh,
            );
        }
        if final_answer {
            return Attempt::Final(err);
        }
        Attempt::Failed(err)
    }
}

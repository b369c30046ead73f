//! The Dataverse Web API handlers: authentication, service protection and fault injection in
//! front, then `WhoAmI`, collections (plain, change-tracking snapshot, delta), single rows and
//! `$count`, answered with Dataverse's headers and error shapes.

pub(crate) mod csdl;
pub(crate) mod custom;
pub(crate) mod schema;
pub(crate) mod webhooks;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::App;
use super::entities::{Entity, Set};
use super::entra::TokenProblem;
use super::json;
use super::odata::{self, Cookie, Filter, Order, Param, Prefer, Reject};
use super::pages::{self, Items, Page};
use super::protection::{Slot, truncated_body};
use super::store::DeltaPhase;

const PREFIX: &str = "/dataverse/api/data/v9.2/";
/// Dataverse's page-size default and ceiling.
const MAX_PAGE: u32 = 5000;
/// Organization id reported by WhoAmI.
const ORGANIZATION_ID: &str = "3f2e1d0c-9b8a-4765-8432-10fedcba9876";

/// A finished answer before faults are applied.
struct Reply {
    status: u16,
    headers: Vec<(HeaderName, String)>,
    body: Vec<u8>,
    content_type: &'static str,
    /// A collection page still to be rendered (then `body` is empty).
    page: Option<Page>,
    /// The concurrent-request slot, held until the page is fully rendered.
    slot: Option<Slot>,
}

impl Reply {
    fn json(status: u16, body: Vec<u8>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body,
            content_type: "application/json; odata.metadata=minimal",
            page: None,
            slot: None,
        }
    }

    fn error(status: u16, code: &str, message: &str) -> Self {
        let body = serde_json::json!({ "error": { "code": code, "message": message } });
        Self::json(status, body.to_string().into_bytes())
    }

    fn header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Into a response. A pending page is rendered on a blocking thread and streamed in
    /// chunks as they fill (the transfer overlaps the rendering). `reset` instead renders the
    /// whole body, sends part of it and fails the stream, so the client sees a 200 with a
    /// truncated body.
    async fn into_response(mut self, app: &Arc<App>, reset: Option<f64>) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = match (self.page.take(), reset) {
            (Some(page), Some(frac)) => {
                let worker = app.clone();
                let full = tokio::task::spawn_blocking(move || {
                    worker
                        .entity(page.set)
                        .map(|e| page.render(e, &worker.dims, worker.seed))
                        .unwrap_or_default()
                })
                .await
                .unwrap_or_default();
                truncated_body(full, frac)
            }
            (Some(page), None) => {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(8);
                let worker = app.clone();
                let slot = self.slot.take();
                tokio::task::spawn_blocking(move || {
                    let _slot = slot;
                    if let Some(ent) = worker.entity(page.set) {
                        page.render_chunked(ent, &worker.dims, worker.seed, CHUNK, |c| {
                            tx.blocking_send(Bytes::from(c)).is_ok()
                        })
                    }
                });
                Body::from_stream(futures::stream::poll_fn(move |cx| {
                    rx.poll_recv(cx).map(|c| c.map(Ok::<Bytes, std::io::Error>))
                }))
            }
            (None, Some(frac)) if self.status == 200 => {
                truncated_body(std::mem::take(&mut self.body), frac)
            }
            (None, _) => Body::from(std::mem::take(&mut self.body)),
        };
        self.head(status, body)
    }

    /// The response with this reply's status, headers and the given body.
    fn head(self, status: StatusCode, body: Body) -> Response {
        let mut r = (status, body).into_response();
        let h = r.headers_mut();
        h.insert("odata-version", HeaderValue::from_static("4.0"));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.append(name, v);
            }
        }
        r
    }
}

/// Rendered pages are streamed in chunks of about this size.
const CHUNK: usize = 256 * 1024;

impl From<Reject> for Reply {
    fn from(r: Reject) -> Self {
        Reply::error(r.status, r.code, &r.message)
    }
}

/// Any path outside the known routes.
pub async fn not_found(uri: Uri) -> Response {
    let mut r = Reply::error(
        404,
        "0x8006088a",
        &format!(
            "Resource not found for the segment '{}'.",
            uri.path().trim_start_matches('/')
        ),
    );
    let body = Body::from(std::mem::take(&mut r.body));
    r.head(StatusCode::NOT_FOUND, body)
}

/// Every Web API request: auth, app-user check, service protection, faults, then the API.
pub async fn handle(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let draw = app.protection.draw();
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let client = match app.tokens.check(auth.as_deref()) {
        Ok(c) => c,
        Err(p) => return unauthorized(&app, p).into_response(&app, None).await,
    };
    if !app.app_user() {
        return Reply::error(
            403,
            "0x80072560",
            "The user is not a member of the organization.",
        )
        .into_response(&app, None)
        .await;
    }
    let Some(slot) = app.protection.enter(&client) else {
        return throttled(
            &app,
            "0x80072326",
            &format!(
                "Number of concurrent requests exceeded the limit of {}.",
                super::protection::MAX_CONCURRENT
            ),
        )
        .into_response(&app, None)
        .await;
    };
    let remaining = match app.protection.admit(&client) {
        Ok(r) => r,
        Err((max, window)) => {
            return throttled(
                &app,
                "0x80072322",
                &format!(
                    "Number of requests exceeded the limit of {max} over time window of {} seconds.",
                    window.as_secs()
                ),
            )
            .into_response(&app, None).await;
        }
    };
    if draw.expire_token && app.tokens.revoke(auth.as_deref()) {
        return unauthorized(&app, TokenProblem::Expired)
            .into_response(&app, None)
            .await;
    }
    if draw.throttle {
        let (max, window) = app.protection.limits();
        return throttled(
            &app,
            "0x80072322",
            &format!(
                "Number of requests exceeded the limit of {max} over time window of {} seconds.",
                window.as_secs()
            ),
        )
        .into_response(&app, None)
        .await;
    }
    if let Some(status) = draw.server_error {
        let mut r = Reply::error(status, "0x80040216", "An unexpected error occurred.");
        if status == 503 {
            r = r.header(header::RETRY_AFTER, app.retry_after_secs.to_string());
        }
        return r.into_response(&app, None).await;
    }
    if let Some(d) = draw.slow {
        tokio::time::sleep(d).await;
    }
    let worker = app.clone();
    let reply = tokio::task::spawn_blocking(move || api(&worker, &method, &uri, &headers))
        .await
        .unwrap_or_else(|_| Reply::error(500, "0x80040216", "An unexpected error occurred."));
    let mut reply = match remaining {
        Some(n) => reply.header(
            HeaderName::from_static("x-ms-ratelimit-burst-remaining-xrm-requests"),
            n.to_string(),
        ),
        None => reply,
    };
    reply.slot = Some(slot);
    reply.into_response(&app, draw.reset).await
}

fn unauthorized(app: &App, problem: TokenProblem) -> Reply {
    let (error, message) = match problem {
        TokenProblem::Missing => (
            None,
            "The request has no bearer token. Send Authorization: Bearer <access token>.",
        ),
        TokenProblem::Invalid => (
            Some("The access token is invalid"),
            "The access token is invalid.",
        ),
        TokenProblem::Expired => (
            Some("The access token expired"),
            "The access token expired.",
        ),
    };
    let challenge = format!(
        "authorization_uri=\"{}/{}/oauth2/authorize\", resource_id=\"{}\"",
        app.authority_url(),
        super::entra::TENANT_ID,
        app.dataverse_url()
    );
    let www = match error {
        Some(desc) => {
            format!("Bearer error=\"invalid_token\", error_description=\"{desc}\", {challenge}")
        }
        None => format!("Bearer {challenge}"),
    };
    Reply::error(401, "0x80048306", message).header(header::WWW_AUTHENTICATE, www)
}

fn throttled(app: &App, code: &str, message: &str) -> Reply {
    Reply::error(429, code, message).header(header::RETRY_AFTER, app.retry_after_secs.to_string())
}

/// The Web API proper (runs on a blocking thread: it renders whole pages).
fn api(app: &App, method: &Method, uri: &Uri, headers: &HeaderMap) -> Reply {
    let raw_path = uri.path().strip_prefix(PREFIX).unwrap_or("");
    let path = odata::parse_query(Some(&format!("p={raw_path}")))
        .first()
        .map(|p| p.value.clone())
        .unwrap_or_default();
    if method != Method::GET {
        return Reply::error(
            405,
            "0x80060888",
            &format!(
                "The sandbox serves reads only; the requested resource does not support http method '{method}'."
            ),
        );
    }
    let params = odata::parse_query(uri.query());
    let prefer = Prefer::from_headers(headers);
    let result = if path == "WhoAmI" || path == "WhoAmI()" {
        Ok(who_am_i(app))
    } else if let Some(rest) = path.strip_prefix("EntityDefinitions") {
        super::metadata::entity_definitions(app, rest, &params)
            .map(|v| Reply::json(200, v.to_string().into_bytes()))
    } else if let Some(set) = path.strip_suffix("/$count") {
        table(app, set).map(|(set, _)| count(app, set))
    } else if let Some((set, rest)) = path.split_once('(') {
        table(app, set)
            .and_then(|(_, ent)| single(app, ent, rest.trim_end_matches(')'), &params, &prefer))
    } else {
        table(app, &path).and_then(|(_, ent)| collection(app, ent, raw_path, &params, &prefer))
    };
    result.unwrap_or_else(Reply::from)
}

/// The entity set named by a path segment, if the tenant has it (an org without the Sales
/// solution answers `leads` like any unknown segment).
fn table<'a>(app: &'a App, segment: &str) -> Result<(Set, &'a Entity), Reject> {
    Set::from_name(segment)
        .and_then(|set| app.entity(set).map(|e| (set, e)))
        .ok_or_else(|| segment_not_found(segment))
}

fn segment_not_found(segment: &str) -> Reject {
    Reject {
        status: 404,
        code: "0x8006088a",
        message: format!("Resource not found for the segment '{segment}'."),
    }
}

fn who_am_i(app: &App) -> Reply {
    let body = serde_json::json!({
        "@odata.context": format!("{}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse", app.root()),
        "BusinessUnitId": super::entities::BUSINESS_UNIT_GUID,
        "UserId": json::guid_string(Set::SystemUsers.code(), 0),
        "OrganizationId": ORGANIZATION_ID,
    });
    Reply::json(200, body.to_string().into_bytes())
}

/// `GET accounts/$count`: a bare number, capped at 5000 like the real service.
fn count(app: &App, set: Set) -> Reply {
    let n = app.org().table(set).live().min(MAX_PAGE as u64);
    Reply {
        content_type: "text/plain",
        ..Reply::json(200, n.to_string().into_bytes())
    }
}

/// `GET accounts(<id>)`.
fn single(
    app: &App,
    ent: &Entity,
    id: &str,
    params: &[Param],
    prefer: &Prefer,
) -> Result<Reply, Reject> {
    let set = ent.set;
    let (sel, sel_text) = odata::select(ent, odata::get(params, "$select"))?;
    let not_found = || Reject {
        status: 404,
        code: "0x80040217",
        message: format!("{} With Id = {id} Does Not Exist", set.logical()),
    };
    let (code, ordinal) = json::parse_guid(id).ok_or_else(not_found)?;
    if code != set.code() {
        return Err(not_found());
    }
    let row = app
        .org()
        .table(set)
        .live_row(ordinal)
        .ok_or_else(not_found)?;
    let context = match sel_text {
        Some(s) => format!("{}$metadata#{}({s})/$entity", app.root(), set.name()),
        None => format!("{}$metadata#{}/$entity", app.root(), set.name()),
    };
    let body = pages::render_entity(ent, &app.dims, app.seed, &sel, prefer.ann(), &context, &row);
    Ok(Reply::json(200, body))
}

const KNOWN_OPTIONS: &[&str] = &[
    "$select",
    "$filter",
    "$orderby",
    "$top",
    "$skip",
    "$count",
    "$expand",
    "$skiptoken",
    "$deltatoken",
];

fn expired_token(status: u16) -> Reject {
    Reject {
        status,
        code: "0x80044352",
        message:
            "Version stamp associated with the client has expired. Please perform a full sync."
                .into(),
    }
}

/// `GET <entity set>`: a plain read, a change-tracking snapshot, or a delta.
fn collection(
    app: &App,
    ent: &Entity,
    path: &str,
    params: &[Param],
    prefer: &Prefer,
) -> Result<Reply, Reject> {
    let set = ent.set;
    let opt = |k: &str| odata::get(params, k);
    for p in params {
        if p.key.starts_with('$') && !KNOWN_OPTIONS.contains(&p.key.as_str()) {
            return Err(Reject::bad(format!(
                "The query parameter {} is not supported",
                p.key
            )));
        }
    }
    if opt("$skip").is_some() {
        return Err(Reject::bad(
            "The query parameter $skip is not supported. Page with @odata.nextLink (Prefer: odata.maxpagesize).",
        ));
    }
    let cookie = match opt("$skiptoken") {
        Some(s) => Some(
            Cookie::parse(s, set.code())
                .ok_or_else(|| Reject::bad("The $skiptoken is not a valid paging cookie."))?,
        ),
        None => None,
    };
    let delta_token = opt("$deltatoken");
    let tracking = prefer.track_changes
        || delta_token.is_some()
        || cookie.as_ref().is_some_and(|c| c.tracking);
    if tracking {
        for o in ["$filter", "$orderby", "$expand", "$top"] {
            if opt(o).is_some() {
                return Err(Reject::bad(format!(
                    "The \"{o}\" query parameter isn't supported when Change Tracking is enabled."
                )));
            }
        }
    } else if opt("$expand").is_some() {
        return Err(Reject::bad("The sandbox does not support $expand."));
    }
    let (sel, sel_text) = odata::select(ent, opt("$select"))?;
    let ann = prefer.ann();
    let page_size = prefer.maxpagesize.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE) as usize;
    let root = app.root();
    let mut context = match &sel_text {
        Some(s) => format!("{root}$metadata#{}({s})", set.name()),
        None => format!("{root}$metadata#{}", set.name()),
    };
    let mut applied: Vec<String> = Vec::new();
    if prefer.maxpagesize.is_some() {
        applied.push(format!("odata.maxpagesize={page_size}"));
    }
    if let Some(a) = &prefer.annotations {
        applied.push(format!("odata.include-annotations=\"{a}\""));
    }
    if prefer.track_changes {
        applied.push("odata.track-changes".into());
    }
    let page = cookie.as_ref().map_or(1, |c| c.page);
    let mut next_link: Option<String> = None;
    let mut delta_link: Option<String> = None;
    let mut count: Option<u64> = None;

    let items = if let Some(token) = delta_token {
        let org = app.org();
        let since =
            odata::parse_delta_token(token).ok_or_else(|| expired_token(org.expired_status()))?;
        if !org.token_valid(since) {
            return Err(expired_token(org.expired_status()));
        }
        let t = org.table(set);
        let (phase, pos, upto) = cookie.as_ref().and_then(|c| c.delta).unwrap_or((
            DeltaPhase::Upserts,
            t.log_start(since),
            org.version(),
        ));
        let (items, next) = t.delta(since, upto, phase, pos, page_size);
        drop(org);
        context.push_str("/$delta");
        match next {
            Some((phase, pos)) => {
                let c = Cookie {
                    page: page + 1,
                    tracking: true,
                    delta: Some((phase, pos, upto)),
                    ..Default::default()
                };
                next_link = Some(skip_link(&root, path, params, &c, ent));
            }
            None => {
                let mut l =
                    odata::link_without(&root, path, params, &["$skiptoken", "$deltatoken"]);
                odata::append_delta_token(&mut l, upto);
                delta_link = Some(l);
            }
        }
        Items::Delta(items)
    } else if tracking {
        let org = app.org();
        let start = cookie
            .as_ref()
            .and_then(|c| c.version)
            .unwrap_or(org.version());
        let from = cookie.as_ref().and_then(|c| c.last).map_or(0, |l| l + 1);
        let (rows, more) = org.table(set).scan(from, page_size, |_| true);
        drop(org);
        if more && let (Some(f), Some(l)) = (rows.first(), rows.last()) {
            let c = Cookie {
                page: page + 1,
                first: Some(f.ordinal),
                last: Some(l.ordinal),
                tracking: true,
                version: Some(start),
                ..Default::default()
            };
            next_link = Some(skip_link(&root, path, params, &c, ent));
        } else {
            let mut l = odata::link_without(&root, path, params, &["$skiptoken"]);
            odata::append_delta_token(&mut l, start);
            delta_link = Some(l);
        }
        Items::Rows(rows)
    } else {
        let filter = match opt("$filter") {
            Some(f) => Filter::parse(ent, f)?,
            None => Filter::default(),
        };
        let order = odata::order(ent, opt("$orderby"))?;
        let top = match opt("$top") {
            Some(t) => Some(
                t.trim()
                    .parse::<u32>()
                    .map_err(|_| Reject::bad(format!("Invalid value '{t}' for $top.")))?,
            ),
            None => None,
        };
        let limit = top.map_or(page_size, |t| t.min(MAX_PAGE) as usize);
        let org = app.org();
        let t = org.table(set);
        let keep = |r: &super::store::RowRef| filter.keep(r);
        let (rows, more) = match order {
            Order::Key => {
                let from = cookie.as_ref().and_then(|c| c.last).map_or(0, |l| l + 1);
                t.scan(from, limit, keep)
            }
            Order::Version => {
                let after = cookie.as_ref().and_then(|c| c.last_version).unwrap_or(0);
                t.scan_by_version(after, limit, keep)
            }
        };
        if opt("$count").is_some_and(|c| c.eq_ignore_ascii_case("true")) {
            let n = if filter.is_empty() {
                t.live()
            } else {
                t.scan(0, MAX_PAGE as usize, keep).0.len() as u64
            };
            count = Some(n.min(MAX_PAGE as u64));
        }
        drop(org);
        if more
            && top.is_none()
            && let (Some(f), Some(l)) = (rows.first(), rows.last())
        {
            let c = Cookie {
                page: page + 1,
                first: Some(f.ordinal),
                last: Some(l.ordinal),
                last_version: (order == Order::Version).then_some(l.state.version),
                ..Default::default()
            };
            next_link = Some(skip_link(&root, path, params, &c, ent));
        }
        Items::Rows(rows)
    };

    let mut reply = Reply::json(200, Vec::new());
    reply.page = Some(Page {
        set,
        sel,
        ann,
        context,
        root,
        count,
        next_link,
        delta_link,
        items,
    });
    if !applied.is_empty() {
        reply = reply.header(
            HeaderName::from_static("preference-applied"),
            applied.join(","),
        );
    }
    Ok(reply)
}

/// The request URL with a new `$skiptoken` (the old one replaced).
fn skip_link(root: &str, path: &str, params: &[Param], c: &Cookie, ent: &Entity) -> String {
    let mut l = odata::link_without(root, path, params, &["$skiptoken"]);
    let pk = ent.fields[ent.pk].name.as_str();
    odata::append_param(&mut l, "$skiptoken", &c.render(pk, ent.set.code()), true);
    l
}

//! The Business Central API v2.0 fake, under `{base}/bc`:
//!
//! ```text
//! {base}/bc/v2.0/{tenant}/{environment}/api/v2.0/companies                     company list
//! {base}/bc/v2.0/{tenant}/{environment}/api/v2.0/companies({id})/{entitySet}   collections
//! {base}/bc/v2.0/{tenant}/{environment}/api/v2.0/companies({id})/{set}({id})   one entity
//! {base}/bc/v2.0/{tenant}/{environment}/api/v2.0/{entitySet}?company={name}    older form
//! {base}/bc/v2.0/{tenant}/{environment}/api/v2.0/$metadata                     CSDL
//! {base}/_sandbox/business_central/{mutate,counts,poison}                      admin
//! ```
//!
//! The fake plays a tenant (`SandboxOptions.tenant`, schema.rs): Standard serves API v2.0 as a
//! current environment does (plus a small extension); Lean is an older environment without
//! `dimensionValues` (404) and three newer properties; Custom adds extension fields, an
//! extension enum and a decimal whose JSON type drifts. In every tenant FlowFields
//! (`balanceDue`, `balance`, `inventory`, `netChange`) move without `lastModifiedDateTime`.
//! `$metadata` is generated from the served shapes (metadata.rs); [`Sandbox::truth`] gives every
//! row as served (truth.rs).
//!
//! Same standard as the Dataverse fake: no stored rows (store.rs keeps metadata of changed
//! rows only; render.rs derives values from seed and ordinal), deterministic, quirks of the
//! real service (20000-row server pages honouring `Prefer: odata.maxpagesize` with
//! `Preference-Applied`, absolute `@odata.nextLink` with `$skiptoken`, opaque `@odata.etag`,
//! `""` for empty text and `0001-01-01` for blank dates, BC error codes with a CorrelationId),
//! tokens from the shared Entra fake (scope `https://api.businesscentral.dynamics.com/.default`),
//! 6000 requests per 5-minute window per client (`Application_TooManyRequests`), and faults
//! from `SandboxOptions.faults` (429 + Retry-After, 503 + Retry-After, 504 for 500 draws, 502,
//! connection resets mid-body, slow answers, token expiry).
//!
//! Writes (POST, PATCH/DELETE with If-Match, deep insert of document lines, the
//! `Microsoft.NAV.post` bound action) on customers, contacts, items, sales orders and invoices
//! are in writes.rs; other entity sets answer 405.

mod entities;
mod metadata;
mod query;
mod render;
mod saved;
mod schema;
mod set;
mod store;
mod subscriptions;
mod truth;
mod writes;

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};

use super::entra::{self, TokenProblem};
use super::odata::{Param, Prefer, append_param, get as param, link_without, parse_query};
use super::options::Faults;
use super::protection::{Protection, truncated_body};
use super::{App, Sandbox, SandboxOptions, json};
use crate::error::{Error, Result};
use entities::Entity;
use query::{After, Order, Reject, Times};
use set::{ALL, Set};
use store::{COMPANIES, Store};

pub use saved::BcWriteLog;
pub use store::Changes as BcChanges;
pub use subscriptions::Delivery as BcDelivery;

/// BC's server-side page ceiling.
const MAX_PAGE: usize = 20_000;
/// The sandbox environment name (case-insensitive, like the service).
pub const ENVIRONMENT: &str = "Production";
/// GUID code of the companies.
const COMPANY_CODE: u32 = 0xBC00_0000;

/// State of the Business Central fake.
pub(crate) struct BusinessCentral {
    entities: Vec<Entity>,
    store: RwLock<Store>,
    protection: Protection,
    retry_after_secs: u64,
    /// Webhook subscriptions (`api/v2.0/subscriptions`).
    subscriptions: Arc<subscriptions::Subscriptions>,
}

impl BusinessCentral {
    pub(crate) fn new(opts: &SandboxOptions) -> Self {
        let entities = ALL
            .into_iter()
            .filter_map(|s| Entity::load(s, opts.tenant))
            .collect();
        Self {
            entities,
            store: RwLock::new(Store::new(opts.scale, opts.seed)),
            protection: Protection::new(opts.budget, opts.faults, opts.seed ^ 0xBC),
            retry_after_secs: opts.retry_after_secs,
            subscriptions: Arc::default(),
        }
    }

    fn store(&self) -> std::sync::RwLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn store_mut(&self) -> std::sync::RwLockWriteGuard<'_, Store> {
        self.store.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn entity(&self, set: Set) -> Option<&Entity> {
        self.entities.iter().find(|e| e.set == set)
    }

    /// One round of inserts, updates and deletes.
    pub(crate) fn mutate(&self) -> BTreeMap<String, BcChanges> {
        if self.subscriptions.list().is_empty() {
            // Nobody to notify: skip the scans (benchmarks mutate large stores).
            let changes = self.store_mut().mutate();
            return self.served_only(changes);
        }
        let mut store = self.store_mut();
        let newest = |st: &Store| {
            st.tables
                .iter()
                .flatten()
                .flat_map(|t| t.changed.values().map(|m| m.modified_ms))
                .max()
                .unwrap_or(i64::MIN)
        };
        let since = newest(&store);
        let changes = store.mutate();
        // The rows this round touched, for webhook notifications (lines notify through their
        // document header on BC; line sets take no subscriptions here).
        let mut records = Vec::new();
        for c in 0..COMPANIES.len() {
            for set in ALL
                .into_iter()
                .filter(|s| s.header().is_none() && self.entity(*s).is_some())
            {
                for (o, m) in &store.tables[c][set.index()].changed {
                    if m.modified_ms > since {
                        records.push(subscriptions::Changed {
                            company_id: company_id(c),
                            entity_set: set.name(),
                            id: json::guid_string(set.code(c), *o),
                            change: if m.deleted {
                                "deleted"
                            } else if m.inserted && m.revision == 0 {
                                "created"
                            } else {
                                "updated"
                            },
                            modified_ms: m.modified_ms,
                        });
                    }
                }
            }
        }
        drop(store);
        self.subscriptions.notify(records);
        self.served_only(changes)
    }

    /// A round's counts without the entity sets this tenant does not have (their tables still
    /// change underneath, unseen, which keeps every tenant's other tables alike).
    fn served_only(&self, mut changes: BTreeMap<String, BcChanges>) -> BTreeMap<String, BcChanges> {
        changes.retain(|name, _| Set::from_name(name).is_some_and(|s| self.entity(s).is_some()));
        changes
    }

    /// The set behind an entity set name, when this tenant has it.
    fn served_set(&self, name: &str) -> Result<Set> {
        let set = bc_set(name)?;
        self.entity(set).map(|_| set).ok_or_else(|| {
            Error::config(format!(
                "sandbox: this Business Central tenant has no entity set `{name}`"
            ))
        })
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        self.protection.set_faults(faults);
    }
}

/// The company id (GUID) of company `c` (0-based).
fn company_id(c: usize) -> String {
    json::guid_string(COMPANY_CODE, c as u64 + 1)
}

fn find_company(s: &str) -> Option<usize> {
    let s = s.trim().trim_matches('\'');
    if let Some((code, o)) = json::parse_guid(s) {
        return (code == COMPANY_CODE && (1..=COMPANIES.len() as u64).contains(&o))
            .then(|| o as usize - 1);
    }
    COMPANIES.iter().position(|(n, _)| *n == s)
}

/// Routes of the Business Central fake.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/bc/v2.0/{tenant}/{environment}/api/v2.0/{*rest}",
            any(handle),
        )
        .route("/_sandbox/business_central/mutate", post(admin_mutate))
        .route("/_sandbox/business_central/counts", get(admin_counts))
        .route("/_sandbox/business_central/poison", post(admin_poison))
        .route("/_sandbox/business_central/writes", get(admin_writes))
        .route(
            "/_sandbox/business_central/subscriptions/{id}",
            axum::routing::delete(admin_drop_subscription),
        )
        .route(
            "/_sandbox/business_central/{entity_set}/keys",
            get(admin_keys),
        )
}

/// An answer before faults are applied.
struct Reply {
    status: u16,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn json(body: Vec<u8>) -> Reply {
        Reply {
            status: 200,
            content_type: "application/json; odata.metadata=minimal; odata.streaming=true",
            headers: Vec::new(),
            body,
        }
    }

    /// `{"error":{"code":…,"message":"…  CorrelationId:  <guid>."}}`.
    fn error(status: u16, code: &str, message: &str) -> Reply {
        let corr = correlation_id();
        let body = serde_json::json!({
            "error": { "code": code, "message": format!("{message}  CorrelationId:  {corr}.") }
        });
        Reply {
            status,
            content_type: "application/json; charset=utf-8",
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    fn into_response(self, reset: Option<f64>) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = match reset {
            Some(frac) if (200..300).contains(&self.status) => truncated_body(self.body, frac),
            _ => Body::from(self.body),
        };
        let mut r = (status, body).into_response();
        let h = r.headers_mut();
        h.insert("odata-version", HeaderValue::from_static("4.0"));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        for (k, v) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(k, v);
            }
        }
        r
    }
}

impl From<Reject> for Reply {
    fn from(r: Reject) -> Reply {
        Reply::error(r.status, r.code, &r.message)
    }
}

fn correlation_id() -> String {
    let n = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
    let mut v = Vec::new();
    json::guid_from_bits(&mut v, super::rng::mix(n), super::rng::mix(n ^ 0xC0));
    String::from_utf8_lossy(&v).trim_matches('"').to_string()
}

fn unauthorized(p: TokenProblem) -> Reply {
    let msg = match p {
        TokenProblem::Missing => "The credentials provided are incorrect",
        TokenProblem::Invalid => "The credentials provided are incorrect",
        TokenProblem::Expired => {
            "The credentials provided are incorrect: the access token has expired"
        }
    };
    Reply::error(401, "Authentication_InvalidCredentials", msg).header(
        "www-authenticate",
        "Bearer authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", error=\"invalid_token\"",
    )
}

fn too_many(bc: &BusinessCentral, message: &str) -> Reply {
    Reply::error(429, "Application_TooManyRequests", message)
        .header("retry-after", bc.retry_after_secs.to_string())
}

/// Every API request: auth, rate limit, faults, then the API.
async fn handle(
    State(app): State<Arc<App>>,
    Path((tenant, environment, rest)): Path<(String, String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let bc = &app.business_central;
    let draw = bc.protection.draw();
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let client = match app
        .tokens
        .check_for(auth.as_deref(), entra::BUSINESS_CENTRAL_RESOURCE)
    {
        Ok(c) => c,
        Err(p) => return unauthorized(p).into_response(None),
    };
    if tenant != entra::TENANT_ID && !tenant.eq_ignore_ascii_case(entra::TENANT_DOMAIN) {
        return Reply::error(
            401,
            "Authentication_InvalidCredentials",
            &format!("The token was issued for another tenant than '{tenant}'."),
        )
        .into_response(None);
    }
    if !environment.eq_ignore_ascii_case(ENVIRONMENT) {
        return Reply::error(
            404,
            "BadRequest_NotFound",
            &format!("The environment '{environment}' was not found for this tenant."),
        )
        .into_response(None);
    }
    if let Err((max, _)) = bc.protection.admit(&client) {
        return too_many(
            bc,
            &format!(
                "Too many requests reached.  Actual ({}).  Maximum ({max}).",
                max + 1
            ),
        )
        .into_response(None);
    }
    if draw.expire_token && app.tokens.revoke(auth.as_deref()) {
        return unauthorized(TokenProblem::Expired).into_response(None);
    }
    if draw.throttle {
        return too_many(
            bc,
            "Too many requests reached.  Actual (101).  Maximum (100).",
        )
        .into_response(None);
    }
    if let Some(status) = draw.server_error {
        let r = match status {
            503 => Reply::error(
                503,
                "Internal_ServiceUnavailable",
                "The service is temporarily unavailable.",
            )
            .header("retry-after", bc.retry_after_secs.to_string()),
            502 => Reply::error(502, "Internal_ServerError", "Bad gateway."),
            _ => Reply::error(504, "Internal_ServerError", "The request timed out."),
        };
        return r.into_response(None);
    }
    if let Some(d) = draw.slow {
        tokio::time::sleep(d).await;
    }
    if rest == "subscriptions" || rest.starts_with("subscriptions(") {
        return bc
            .subscriptions
            .handle(&rest, &method, &headers, &body)
            .await
            .into_response(None);
    }
    let root = format!("{}/bc/v2.0/{tenant}/{environment}/api/v2.0/", app.base);
    if method != Method::GET {
        return write(app, root, rest, method, &headers, body, draw.reset).await;
    }
    let worker = app.clone();
    let query = uri.query().map(str::to_string);
    let reply =
        tokio::task::spawn_blocking(move || api(&worker, &root, &rest, query.as_deref(), &headers))
            .await
            .unwrap_or_else(|_| {
                Reply::error(500, "Internal_ServerError", "An unexpected error occurred.")
            });
    reply.into_response(draw.reset)
}

/// POST, PATCH, DELETE (writes.rs). A random reset never hits a POST (the fake must not make
/// a create unsafe to retry on its own); a create dropped on purpose
/// (`business_central_drop_create_responses`) is applied, then reset mid-body.
async fn write(
    app: Arc<App>,
    root: String,
    rest: String,
    method: Method,
    headers: &HeaderMap,
    body: axum::body::Bytes,
    reset: Option<f64>,
) -> Response {
    if !matches!(method, Method::POST | Method::PATCH | Method::DELETE) {
        return Reply::error(
            405,
            "BadRequest_MethodNotAllowed",
            &format!("'{method}' is not allowed on this resource."),
        )
        .into_response(None);
    }
    let if_match = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let is_post = method == Method::POST;
    let answer = tokio::task::spawn_blocking(move || {
        writes::write(
            &app.business_central,
            &writes::Request {
                root: &root,
                method: method.as_str(),
                rest: &rest,
                if_match,
                body: &body,
            },
        )
    })
    .await;
    match answer {
        Ok(a) if a.drop => a.reply.into_response(Some(0.5)),
        Ok(a) => a.reply.into_response(if is_post { None } else { reset }),
        Err(_) => Reply::error(500, "Internal_ServerError", "An unexpected error occurred.")
            .into_response(None),
    }
}

/// The API proper (blocking: renders whole pages).
fn api(app: &App, root: &str, rest: &str, query: Option<&str>, headers: &HeaderMap) -> Reply {
    let bc = &app.business_central;
    let params = parse_query(query);
    if rest == "$metadata" {
        let mut r = Reply::json(metadata::csdl(&bc.entities).into_bytes());
        r.content_type = "application/xml";
        return r;
    }
    if rest == "companies" {
        return companies(root);
    }
    // companies({id})/{set}[({id})] or {set}?company=…
    let (company, tail) = if let Some(after) = rest.strip_prefix("companies(") {
        let Some((id, tail)) = after.split_once(')') else {
            return Reply::error(400, "BadRequest", "Bad Request - Error in query syntax.");
        };
        let Some(c) = find_company(id) else {
            return Reply::error(
                404,
                "Internal_CompanyNotFound",
                &format!("The company '{id}' does not exist."),
            );
        };
        (c, tail.trim_start_matches('/'))
    } else {
        match param(&params, "company").map(find_company) {
            Some(Some(c)) => (c, rest),
            Some(None) => {
                return Reply::error(
                    404,
                    "Internal_CompanyNotFound",
                    "The company does not exist.",
                );
            }
            None => {
                return Reply::error(
                    400,
                    "BadRequest_NotFound",
                    &format!(
                        "No HTTP resource was found that matches the request URI '{root}{rest}'."
                    ),
                );
            }
        }
    };
    if let Some(r) = writes::nested_lines(bc, root, company, tail, param(&params, "$select")) {
        return r.unwrap_or_else(Reply::from);
    }
    let (set_name, one) = match tail.split_once('(') {
        Some((s, id)) => (s, Some(id.trim_end_matches(')'))),
        None => (tail, None),
    };
    let Some(ent) = Set::from_name(set_name).and_then(|s| bc.entity(s)) else {
        return Reply::error(
            404,
            "BadRequest_NotFound",
            &format!("No HTTP resource was found that matches the request URI '{root}{rest}'."),
        );
    };
    match collection(bc, root, rest, company, ent, one, &params, headers) {
        Ok(r) => r,
        Err(r) => r.into(),
    }
}

fn companies(root: &str) -> Reply {
    let mut out = Vec::new();
    out.extend_from_slice(
        format!("{{\"@odata.context\":\"{root}$metadata#companies\",\"value\":[").as_bytes(),
    );
    for (i, (name, display)) in COMPANIES.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let v = serde_json::json!({
            "id": company_id(i),
            "systemVersion": "25.0.23364.25040",
            "timestamp": 1000 + i,
            "name": name,
            "displayName": display,
            "businessProfileId": "",
            "systemCreatedAt": "2024-01-01T08:00:00.000Z",
            "systemCreatedBy": "00000000-0000-0000-0000-000000000001",
            "systemModifiedAt": "2024-01-01T08:00:00.000Z",
            "systemModifiedBy": "00000000-0000-0000-0000-000000000001",
        });
        out.extend_from_slice(v.to_string().as_bytes());
    }
    out.extend_from_slice(b"]}");
    Reply::json(out)
}

#[allow(clippy::too_many_arguments)]
fn collection(
    bc: &BusinessCentral,
    root: &str,
    rest: &str,
    company: usize,
    ent: &Entity,
    one: Option<&str>,
    params: &[Param],
    headers: &HeaderMap,
) -> std::result::Result<Reply, Reject> {
    let sel = query::select(ent, param(params, "$select"))?;
    let store = bc.store();
    let set = ent.set;
    let context = format!(
        "{root}$metadata#companies({})/{}",
        company_id(company),
        set.name()
    );
    if let Some(id) = one {
        let row = json::parse_guid(id.trim_matches('\''))
            .filter(|(code, _)| *code == set.code(company))
            .and_then(|(_, o)| store.live(company, set, o));
        let Some(row) = row else {
            return Err(Reject {
                status: 404,
                code: "Internal_RecordNotFound",
                message: format!(
                    "The {} does not exist. Identification fields and values: Id='{id}'",
                    set.type_name()
                ),
            });
        };
        let mut out = Vec::new();
        render::write_row(
            &mut out,
            ent,
            &render::RowCtx::new(&store, company, set, row),
            &sel,
        );
        // Put the context first: {"@odata.context":…, then the row's fields.
        let mut body = format!("{{\"@odata.context\":\"{context}/$entity\",").into_bytes();
        body.extend_from_slice(&out[1..]);
        return Ok(Reply::json(body));
    }
    // Equalities (writes.rs answers them from indexes), then time ranges.
    let (times, eqs) = match param(params, "$filter") {
        Some(f) if !f.trim().is_empty() => {
            let (rest, eqs) = writes::split_filter(ent, f)?;
            let times = if rest.trim().is_empty() {
                Times::all()
            } else {
                query::parse_filter(ent, &rest)?
            };
            (times, eqs)
        }
        _ => (Times::all(), Vec::new()),
    };
    let order = query::order(ent, param(params, "$orderby"))?;
    let prefer = Prefer::from_headers(headers);
    let mut page = MAX_PAGE;
    let mut applied = None;
    if let Some(n) = prefer.maxpagesize {
        page = (n as usize).clamp(1, MAX_PAGE);
        applied = Some(format!("odata.maxpagesize={page}"));
    }
    let num =
        |k: &str| -> std::result::Result<Option<usize>, Reject> {
            match param(params, k) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    Reject::bad(format!("Invalid value '{v}' for the query option {k}."))
                }),
            }
        };
    let top = num("$top")?;
    let skip = num("$skip")?.unwrap_or(0);
    let after = match param(params, "$skiptoken") {
        Some(t) => Some(
            parse_skiptoken(t, set.code(company))
                .ok_or_else(|| Reject::bad("The skip token is not valid."))?,
        ),
        None => None,
    };
    let want = top.map_or(page, |t| t.min(page));
    let mut rows = if eqs.is_empty() {
        query::scan(&store, company, set, &times, order, after, skip + want + 1)
    } else {
        writes::search(
            &store,
            ent,
            company,
            &eqs,
            &times,
            order,
            after,
            skip + want + 1,
        )
    };
    let rows_after_skip: Vec<_> = rows.drain(..).skip(skip).collect();
    let more_in_source = rows_after_skip.len() > want;
    let rows: Vec<_> = rows_after_skip.into_iter().take(want).collect();
    let mut out = Vec::with_capacity(rows.len() * 900 + 256);
    out.extend_from_slice(format!("{{\"@odata.context\":\"{context}\",\"value\":[").as_bytes());
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        render::write_row(
            &mut out,
            ent,
            &render::RowCtx::new(&store, company, set, *r),
            &sel,
        );
    }
    out.push(b']');
    let remaining_top = top.map(|t| t - rows.len());
    if more_in_source
        && remaining_top != Some(0)
        && let Some(last) = rows.last()
    {
        let mut link = link_without(root, rest, params, &["$skiptoken", "$skip", "$top"]);
        if let Some(t) = remaining_top {
            append_param(&mut link, "$top", &t.to_string(), true);
        }
        let token = match order {
            Order::Key => format!("'{}'", json::guid_string(set.code(company), last.ordinal)),
            Order::Modified => format!(
                "'{},{}'",
                last.modified_ms,
                json::guid_string(set.code(company), last.ordinal)
            ),
        };
        append_param(&mut link, "$skiptoken", &token, true);
        out.extend_from_slice(b",\"@odata.nextLink\":");
        json::string(&mut out, &link);
    }
    out.push(b'}');
    let mut r = Reply::json(out);
    if let Some(a) = applied {
        r = r.header("preference-applied", a);
    }
    Ok(r)
}

fn parse_skiptoken(t: &str, code: u32) -> Option<After> {
    let t = t.trim().trim_matches('\'');
    let (ms, guid) = match t.split_once(',') {
        Some((ms, g)) => (ms.parse().ok()?, g),
        None => (i64::MIN, t),
    };
    let (c, o) = json::parse_guid(guid)?;
    (c == code).then_some(After {
        modified_ms: ms,
        ordinal: o,
    })
}

async fn admin_mutate(State(app): State<Arc<App>>) -> Response {
    axum::Json(app.business_central.mutate()).into_response()
}

async fn admin_writes(State(app): State<Arc<App>>) -> Response {
    axum::Json(app.business_central.store().writes.log.clone()).into_response()
}

async fn admin_counts(State(app): State<Arc<App>>) -> Response {
    axum::Json(counts(&app.business_central)).into_response()
}

async fn admin_poison(
    State(app): State<Arc<App>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let bc = &app.business_central;
    let set = q
        .get("entity_set")
        .and_then(|s| Set::from_name(s))
        .filter(|s| bc.entity(*s).is_some());
    let count = q.get("count").and_then(|c| c.parse().ok()).unwrap_or(1);
    match set {
        Some(s) => {
            app.business_central.store_mut().poison(s, count);
            StatusCode::NO_CONTENT.into_response()
        }
        None => (StatusCode::BAD_REQUEST, "entity_set=<name>&count=<n>").into_response(),
    }
}

/// `[[company_id, id, lastModifiedDateTime µs or null], …]` of every live row, sorted.
async fn admin_keys(State(app): State<Arc<App>>, Path(entity_set): Path<String>) -> Response {
    match live_rows(&app.business_central, &entity_set) {
        Ok(rows) => axum::Json(
            rows.into_iter()
                .map(|r| (r.company_id, r.id, r.modified_micros))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => (StatusCode::NOT_FOUND, e.to_string()).into_response(),
    }
}

fn live_rows(bc: &BusinessCentral, entity_set: &str) -> Result<Vec<BcRow>> {
    let set = bc.served_set(entity_set)?;
    let store = bc.store();
    let mut out = Vec::new();
    for c in 0..COMPANIES.len() {
        for r in store.live_rows(c, set) {
            out.push(BcRow {
                company_id: company_id(c),
                id: json::guid_string(set.code(c), r.ordinal),
                modified_micros: set.has_modified().then_some(r.modified_ms * 1000),
            });
        }
    }
    out.sort();
    Ok(out)
}

fn counts(bc: &BusinessCentral) -> BTreeMap<String, u64> {
    let store = bc.store();
    bc.entities
        .iter()
        .map(|e| {
            let n = (0..COMPANIES.len()).map(|c| store.count(c, e.set)).sum();
            (e.set.name().to_string(), n)
        })
        .collect()
}

/// A live row as the tests compare it with the warehouse.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BcRow {
    pub company_id: String,
    pub id: String,
    /// `lastModifiedDateTime` in microseconds UTC (`None` for lines, which have none).
    pub modified_micros: Option<i64>,
}

impl Sandbox {
    /// The `[connections.X]` body of an mlc.toml for the Business Central fake, and the secrets
    /// to store in the vault (field, value).
    pub fn business_central_connection(&self) -> (String, Vec<(String, String)>) {
        let body = format!(
            "system = \"business_central\"\ntenant_id = \"{}\"\nenvironment = \"{ENVIRONMENT}\"\nclient_id = \"{}\"\nauthority_url = \"{}\"\napi_url = \"{}/bc\"\n",
            entra::TENANT_ID,
            entra::CLIENT_ID,
            self.app.authority_url(),
            self.app.base
        );
        (
            body,
            vec![("client_secret".into(), entra::CLIENT_SECRET.into())],
        )
    }

    /// The environment's companies: (id, name).
    pub fn business_central_companies(&self) -> Vec<(String, String)> {
        COMPANIES
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (company_id(i), n.to_string()))
            .collect()
    }

    /// One round of inserts, updates and deletes in the Business Central fake only.
    pub fn business_central_mutate(&self) -> BTreeMap<String, BcChanges> {
        self.app.business_central.mutate()
    }

    /// Live rows per entity set the tenant has (all companies).
    pub fn business_central_counts(&self) -> BTreeMap<String, u64> {
        counts(&self.app.business_central)
    }

    /// Live rows (all companies) of the table behind stream entity `entity` (`customer`,
    /// `sales_order_line`, …).
    pub fn business_central_count(&self, entity: &str) -> Option<u64> {
        let set = ALL.into_iter().find(|s| s.entity() == entity)?;
        self.business_central_counts().get(set.name()).copied()
    }

    /// Every live row of `entity_set`, sorted. Fails for an unknown entity set.
    pub fn business_central_live_rows(&self, entity_set: &str) -> Result<Vec<BcRow>> {
        live_rows(&self.app.business_central, entity_set)
    }

    /// Live webhook subscriptions: (subscriptionId, resource, expirationDateTime).
    pub fn business_central_subscriptions(
        &self,
    ) -> Vec<(String, String, chrono::DateTime<chrono::Utc>)> {
        self.app
            .business_central
            .subscriptions
            .list()
            .into_iter()
            .map(|s| (s.id, s.resource, s.expires))
            .collect()
    }

    /// Validation handshakes answered correctly so far (creates and renewals).
    pub fn business_central_handshakes(&self) -> u64 {
        self.app.business_central.subscriptions.handshakes()
    }

    /// Every notification delivery attempt so far (subscription ids, status, attempt).
    pub fn business_central_deliveries(&self) -> Vec<BcDelivery> {
        self.app.business_central.subscriptions.deliveries()
    }

    /// Deletes a subscription the way BC does after failed deliveries (the next renewal gets
    /// 404). False if it did not exist.
    pub fn business_central_drop_subscription(&self, id: &str) -> bool {
        self.app.business_central.subscriptions.drop_one(id)
    }

    /// Every write the Business Central fake received, in order.
    pub fn business_central_writes(&self) -> Vec<BcWriteLog> {
        self.app.business_central.store().writes.log.clone()
    }

    /// The next `n` creates (POST of an entity) are applied, then their answers are dropped:
    /// the connection resets mid-body.
    pub fn business_central_drop_create_responses(&self, n: u32) {
        self.app.business_central.store_mut().writes.drop_creates = n;
    }

    /// The next `n` creates and updates (POST, PATCH) are answered with the status a success
    /// would have (201 for a create, 200 otherwise) and an OData error body,
    /// `{"error": {"code", "message"}}` carrying [`crate::sandbox::ERROR_IN_2XX`]; nothing is
    /// saved.
    pub fn business_central_error_in_2xx(&self, n: u32) {
        self.app.business_central.store_mut().writes.error_in_2xx = n;
    }

    /// Sets `field` of row `id` of `entity_set` in company `company_index` (0-based) as
    /// another Business Central user would: the row gets a new revision (so a new
    /// `@odata.etag`) and `lastModifiedDateTime`; not logged as a write.
    pub fn business_central_set_field(
        &self,
        company_index: usize,
        entity_set: &str,
        id: &str,
        field: &str,
        value: serde_json::Value,
    ) -> Result<()> {
        let set = bc_set(entity_set)?;
        if company_index >= COMPANIES.len() {
            return Err(Error::config(format!(
                "sandbox: no Business Central company {company_index}"
            )));
        }
        writes::set_field(
            &self.app.business_central,
            company_index,
            set,
            id,
            field,
            value,
        )
        .map_err(|e| Error::config(format!("sandbox: {e}")))
    }

    /// The first `count` live rows of `entity_set` in the first company serve badly typed
    /// values (decimals `"n/a"`, dates `"yesterday"`) until the next mutation round.
    pub fn business_central_poison(&self, entity_set: &str, count: usize) -> Result<()> {
        let set = self.app.business_central.served_set(entity_set)?;
        self.app.business_central.store_mut().poison(set, count);
        Ok(())
    }
}

fn bc_set(name: &str) -> Result<Set> {
    Set::from_name(name).ok_or_else(|| {
        Error::config(format!(
            "sandbox: unknown Business Central entity set `{name}`; known: {}",
            ALL.map(|s| s.name()).join(", ")
        ))
    })
}

async fn admin_drop_subscription(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    if app.business_central.subscriptions.drop_one(&id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

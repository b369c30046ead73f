//! The Deltek Vantagepoint fake, served under `{base}/deltek/{instance}/api/`:
//!
//! ```text
//! POST /deltek/acme/api/token          password and refresh grants (rotating refresh tokens)
//! GET  /deltek/acme/api/{hub...}       project (wbstype wbs1|wbs2|wbs3), firm, contact, employee,
//!                                      opportunity, activity, PSALedger/{AP,IN,JE},
//!                                      accountConfiguration/glAccount; by key: {hub}/{key}
//! GET  /deltek/acme/api/metadata/{hub} the hub's tables and fields (see metadata.rs)
//! POST /deltek/acme/api/{firm|contact}  create (array in, array out; see writes.rs)
//! PUT|PATCH /deltek/acme/api/{firm|contact}/{key}   update
//! POST /_sandbox/deltek/mutate         one round of inserts, updates, deletes
//! GET  /_sandbox/deltek/writes         every write received (method, hub, key, status)
//! GET  /_sandbox/deltek/counts         live rows per table
//! GET  /_sandbox/deltek/{entity}/keys  live (key, ModDate) pairs
//! POST /_sandbox/deltek/paging         page cap, saves/deletes between pages, mass updates
//! ```
//!
//! The tenant's fields are its own (schema.rs), never mlc's catalog: standard fields as the
//! references name and type them plus the custom `Cust*` fields of the tenant variant
//! (`SandboxOptions.tenant`). Without `fieldFilter` a record carries every field, custom ones
//! included; with it, exactly the fields named.
//!
//! Quirks kept: responses are always JSON arrays (by key too), `page`/`pageSize` or
//! `offset`/`limit`, `fieldFilter` (an unknown field is a 400
//! `{"message":"Invalid field 'X' in fieldFilter", "detail"}`), `filterHash` with the operator
//! spellings seen in the wild (`=`, `==`, `!=`, `>=`, `>`, `<`, `<=` and
//! `eq`/`ne`/`ge`/`gt`/`lt`/`le`), `order=ModDate` or a key field (with range filters on the
//! key fields, see paging.rs), an optional server-side page cap, zone-less dates in the tenant zone
//! (America/New_York), Y/N strings, accounts as decimal strings, 401 on expired tokens, 429
//! with Retry-After from a proxy, and the faults of `SandboxOptions.faults`.
//!
//! The tenant is 5.0+ by default (`/opportunity` answers 404; a `Stage != ""` filter on
//! `project` serves the pursuits, projects whose fields are generated from the opportunity
//! table); `Sandbox::deltek_opportunity_hub(true)` makes it pre-5.0 (the hub answers, projects
//! have no `Stage`, `StageDescription` or `Probability`).
//!
//! Tenant variants: Standard as above. Lean: no `Probability` anywhere, AP is not licensed
//! (`PSALedger/AP` answers 403), `metadata/activity` answers 404 although the hub answers, one
//! custom field per hub at most. Custom: many custom fields, captions in other scripts, a
//! custom field captioned like a standard one, and `CustBudgetHours` (declared Numeric) holding
//! `"TBD"` or `""` in a few rows.
//!
//! Searches: a `filterHash` entry `=` (case-insensitive, as SQL Server's default collation) or
//! `like` (`%` wildcards) on any field of the table; fields a generated row never fills (an
//! external id such as `CustDynamicsId`) hold values only on rows saved through the API. Above
//! 200 000 live rows only API-saved rows are searched.
//!
//! Simplifications: `wbstype` picks the project level (default wbs1), a blank-WBS2 filter is
//! consistent with it; pursuits are not listed among plain projects; deleting a project leaves
//! its phases.

mod custom;
mod kind;
mod metadata;
mod paging;
mod schema;
mod store;
mod tables;
mod writes;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::Method;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;

use super::options::{Faults, Tenant};
use super::protection::Protection;
use super::rng::SeqRng;
use super::{App, Sandbox, SandboxOptions};
use kind::{ALL, Kind};
use schema::{Field, PURSUIT_FIELDS, PURSUIT_RENAME};
pub use store::Changes;
use store::{MUTATION_START_MS, Table};
use tables::Col;
pub use writes::WriteLog;

/// The instance segment of the fake tenant URL.
pub const INSTANCE: &str = "acme";
pub const DATABASE: &str = "ACME_PROD";
pub const USERNAME: &str = "API_USER";
pub const PASSWORD: &str = "vp-sandbox-password";
pub const CLIENT_ID: &str = "mlc-sandbox-consumer-key";
pub const CLIENT_SECRET: &str = "vp-sandbox-client-secret";
/// The tenant's zone: every date is sent as wall clock in it.
pub const TIME_ZONE: &str = "America/New_York";

/// Lowercased generated value → the initial rows holding it.
type ValueIndex = HashMap<String, Vec<u64>>;

/// Tenant switches and tables.
struct Data {
    tables: Vec<Table>,
    /// Access token → (issued, expiry).
    tokens: HashMap<String, (Instant, Instant)>,
    /// Valid refresh tokens (each is used once: they rotate).
    refresh: HashMap<String, ()>,
    issued: u64,
    rounds: u64,
    rng: SeqRng,
    /// What the API saved, the write log and the write faults.
    written: writes::Written,
}

/// State of the Deltek fake.
pub(crate) struct Deltek {
    seed: u64,
    counts: [u64; 12],
    token_ttl: Duration,
    retry_after: u64,
    tz: arrow_array::timezone::Tz,
    tenant: Tenant,
    /// The tenant's fields per table (`Kind` order; the opportunity table's are the pre-5.0
    /// hub's).
    fields: Vec<Vec<&'static Field>>,
    data: Mutex<Data>,
    protection: Protection,
    /// "Allow Password Grant Type" ticked on the API authorization.
    password_grant: AtomicBool,
    /// The API user's role may read the hubs.
    role_access: AtomicBool,
    /// A pre-5.0 tenant: the Opportunities hub answers and projects carry no pursuit stage.
    /// Default `false` (5.0+: `/opportunity` is gone, pursuits are staged projects).
    opportunity_hub: AtomicBool,
    /// Value indexes for equality searches (see [`Deltek::value_index`]).
    index: Mutex<HashMap<(Kind, String), Arc<ValueIndex>>>,
    /// Page cap, key order and scripted changes between pages (paging.rs).
    paging: paging::Paging,
}

impl Deltek {
    pub(crate) fn new(opts: &SandboxOptions) -> Self {
        let counts: [u64; 12] = std::array::from_fn(|i| ALL[i].initial_rows(opts.scale));
        let fields = ALL.iter().map(|k| tables::table(*k, opts.tenant)).collect();
        Self {
            seed: opts.seed,
            counts,
            token_ttl: opts.token_ttl,
            retry_after: opts.retry_after_secs,
            tz: TIME_ZONE.parse().unwrap_or_else(|_| {
                "UTC"
                    .parse()
                    .unwrap_or_else(|_| unreachable!("UTC is a zone"))
            }),
            tenant: opts.tenant,
            fields,
            data: Mutex::new(Data {
                tables: counts.iter().map(|n| Table::new(*n)).collect(),
                tokens: HashMap::new(),
                refresh: HashMap::new(),
                issued: 0,
                rounds: 0,
                rng: SeqRng::new(opts.seed ^ 0xDE17),
                written: writes::Written::default(),
            }),
            protection: Protection::new(None, opts.faults, opts.seed ^ 0xDE17_0000),
            password_grant: AtomicBool::new(true),
            role_access: AtomicBool::new(true),
            opportunity_hub: AtomicBool::new(false),
            index: Mutex::new(HashMap::new()),
            paging: paging::Paging::default(),
        }
    }

    /// The generated values of `gen_name` over the table's initial rows (lowercased value →
    /// ordinals), built on the first search that needs it. Generated values derive from the
    /// seed and the ordinal only, so the index never goes stale; rows changed since (through
    /// the API or a mutation round) are checked one by one by the caller.
    fn value_index(
        &self,
        ctx: &tables::Ctx<'_>,
        kind: Kind,
        t: &Table,
        col: Col,
    ) -> Arc<ValueIndex> {
        let mut cache = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (kind, col.src.name.to_string());
        if let Some(i) = cache.get(&key) {
            return Arc::clone(i);
        }
        let pristine = Table::new(t.initial);
        let mut index: HashMap<String, Vec<u64>> = HashMap::new();
        let mut buf = Vec::new();
        for o in 0..t.initial {
            buf.clear();
            tables::write_row(&mut buf, ctx, kind, &pristine, o, &[col], None);
            if let Ok(m) =
                serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&buf)
                && let Some(v) = m.get(col.out).and_then(|v| v.as_str())
            {
                index.entry(v.to_lowercase()).or_default().push(o);
            }
        }
        let index = Arc::new(index);
        cache.insert(key, Arc::clone(&index));
        index
    }

    /// Whether the tenant has the table at all (a Lean tenant has no AP licence).
    fn has(&self, kind: Kind) -> bool {
        !(self.tenant == Tenant::Lean && kind == Kind::Ap)
    }

    /// The fields a table's records carry, in the order they are served. `as_project`: a 5.0+
    /// pursuit read through the Projects hub, carrying the project fields (the renamed ones
    /// generated from the opportunity table's). A pre-5.0 tenant's projects have no pursuit
    /// fields.
    fn columns(&self, kind: Kind, as_project: bool) -> Vec<Col> {
        let hub_tenant = self.opportunity_hub.load(Ordering::Relaxed);
        if as_project {
            let opportunity = schema::standard(Kind::Opportunity);
            return self.fields[Kind::Project as usize]
                .iter()
                .map(|f| {
                    let src = PURSUIT_RENAME
                        .iter()
                        .find(|(project, _)| *project == f.name)
                        .and_then(|(_, from)| opportunity.iter().find(|o| o.name == *from))
                        .unwrap_or(f);
                    Col::new(f.name, src)
                })
                .collect();
        }
        let project_level = matches!(kind, Kind::Project | Kind::Phase | Kind::Task);
        self.fields[kind as usize]
            .iter()
            .filter(|f| !(hub_tenant && project_level && PURSUIT_FIELDS.contains(&f.name)))
            .map(|f| Col::new(f.name, f))
            .collect()
    }

    fn data(&self) -> std::sync::MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One round of inserts, updates and deletes in every table.
    pub(crate) fn mutate(&self) -> BTreeMap<String, Changes> {
        let mut d = self.data();
        d.rounds += 1;
        let at = MUTATION_START_MS + d.rounds as i64 * 3_600_000;
        let Data { tables, rng, .. } = &mut *d;
        ALL.iter()
            .zip(tables.iter_mut())
            .map(|(k, t)| (*k, k.entity().to_string(), t.mutate(rng, at)))
            .filter(|(k, _, _)| self.has(*k))
            .map(|(_, e, c)| (e, c))
            .collect()
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        self.protection.set_faults(faults);
    }

    fn issue(&self, d: &mut Data) -> serde_json::Value {
        d.issued += 1;
        let n = d.issued;
        let h = super::rng::mix(self.seed ^ n ^ 0x70CE);
        let access = format!("vp{n}x{h:016x}");
        let refresh = format!("rt{n}x{:016x}+=", super::rng::mix(h));
        d.tokens.insert(
            access.clone(),
            (Instant::now(), Instant::now() + self.token_ttl),
        );
        d.refresh.insert(refresh.clone(), ());
        serde_json::json!({
            "access_token": access,
            "token_type": "bearer",
            "expires_in": self.token_ttl.as_secs().max(1),
            "refresh_token": refresh,
        })
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({"error": error, "error_description": description}).to_string(),
    )
        .into_response()
}

fn api_error(status: StatusCode, message: &str, detail: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        serde_json::json!({"message": message, "detail": detail}).to_string(),
    )
        .into_response()
}

/// An API error for the `?` paths (boxed: a `Response` is large).
fn boxed(status: StatusCode, message: &str, detail: &str) -> Box<Response> {
    Box::new(api_error(status, message, detail))
}

/// `POST /token`: form field names matched case-insensitively, as the service seems to.
async fn token(State(app): State<Arc<App>>, Path(instance): Path<String>, body: Bytes) -> Response {
    let dk = &app.deltek;
    if instance != INSTANCE {
        return api_error(StatusCode::NOT_FOUND, "Not Found", "no such instance");
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body)
        .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
        .collect();
    let f = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    if f("client_id") != CLIENT_ID || f("client_secret") != CLIENT_SECRET {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "Client authentication failed: unknown client id or secret.",
        );
    }
    let mut d = dk.data();
    match f("grant_type") {
        "password" => {
            if !dk.password_grant.load(Ordering::Relaxed) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "unauthorized_client",
                    "The password grant type is not allowed for this client.",
                );
            }
            if !f("database").eq_ignore_ascii_case(DATABASE) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    &format!("Invalid database: {}", f("database")),
                );
            }
            if f("username") != USERNAME || f("password") != PASSWORD {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The user name or password is incorrect.",
                );
            }
            let v = dk.issue(&mut d);
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                v.to_string(),
            )
                .into_response()
        }
        "refresh_token" => {
            if d.refresh.remove(f("refresh_token")).is_none() {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The refresh token is invalid or expired.",
                );
            }
            let v = dk.issue(&mut d);
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                v.to_string(),
            )
                .into_response()
        }
        other => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("grant_type `{other}` is not supported"),
        ),
    }
}

/// One `filterHash` entry.
#[derive(Default, Debug)]
struct Filter {
    name: String,
    value: String,
    opp: String,
}

/// The parsed query.
struct Query {
    page: u64,
    size: u64,
    offset: Option<u64>,
    fields: Option<Vec<String>>,
    wbstype: Option<String>,
    order: Option<String>,
    filters: Vec<Filter>,
}

fn parse_query(raw: &str) -> Result<Query, Box<Response>> {
    let mut q = Query {
        page: 1,
        size: 100,
        offset: None,
        fields: None,
        wbstype: None,
        order: None,
        filters: Vec::new(),
    };
    let mut filters: BTreeMap<u32, Filter> = BTreeMap::new();
    let bad = |what: &str, v: &str| {
        boxed(
            StatusCode::BAD_REQUEST,
            "The request is invalid.",
            &format!("{what} must be a positive integer, got `{v}`"),
        )
    };
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        let kl = k.to_ascii_lowercase();
        match kl.as_str() {
            "page" => {
                q.page = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad("page", &v))?
            }
            "pagesize" | "limit" => {
                q.size = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad("pageSize", &v))?
            }
            "offset" => q.offset = Some(v.parse().map_err(|_| bad("offset", &v))?),
            "fieldfilter" => {
                q.fields = Some(
                    v.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect(),
                )
            }
            "wbstype" => q.wbstype = Some(v.to_ascii_lowercase()),
            "order" => q.order = Some(v.into_owned()),
            _ if kl.starts_with("filterhash[") => {
                let rest = &kl["filterhash[".len()..];
                let (idx, tail) = rest.split_once(']').unwrap_or(("", ""));
                let Ok(i) = idx.parse::<u32>() else {
                    return Err(boxed(
                        StatusCode::BAD_REQUEST,
                        "The request is invalid.",
                        &format!("bad filterHash key `{k}`"),
                    ));
                };
                let e = filters.entry(i).or_default();
                match tail.trim_start_matches('[').trim_end_matches(']') {
                    "name" => e.name = v.into_owned(),
                    "value" => e.value = v.into_owned(),
                    "opp" => e.opp = v.into_owned(),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    q.filters = filters.into_values().collect();
    Ok(q)
}

/// A zone-less filter value as ms UTC.
fn parse_wall(v: &str, tz: &arrow_array::timezone::Tz) -> Option<i64> {
    use chrono::TimeZone;
    let n = chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S%.f"))
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .map(|d| d.and_time(chrono::NaiveTime::MIN))
        })
        .ok()?;
    tz.from_local_datetime(&n)
        .earliest()
        .map(|t| t.timestamp_millis())
}

/// `GET /{hub...}`.
async fn list(
    State(app): State<Arc<App>>,
    Path((instance, rest)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let dk = &app.deltek;
    if instance != INSTANCE {
        return api_error(StatusCode::NOT_FOUND, "Not Found", "no such instance");
    }
    // Authorization: bearer (any case).
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_string());
    let draw = dk.protection.draw();
    {
        let mut d = dk.data();
        let valid = token
            .as_ref()
            .and_then(|t| d.tokens.get(t))
            .is_some_and(|(_, exp)| Instant::now() < *exp);
        let old = token
            .as_ref()
            .and_then(|t| d.tokens.get(t))
            .is_some_and(|(issued, _)| crate::sandbox::protection::expiry_hits(*issued));
        if !valid {
            return api_error(
                StatusCode::UNAUTHORIZED,
                "Authorization has been denied for this request.",
                "the access token is missing, invalid or expired",
            );
        }
        if draw.expire_token && old {
            if let Some(t) = &token {
                d.tokens.remove(t);
            }
            return api_error(
                StatusCode::UNAUTHORIZED,
                "Authorization has been denied for this request.",
                "the access token expired",
            );
        }
    }
    if draw.throttle {
        let mut r = api_error(
            StatusCode::TOO_MANY_REQUESTS,
            "Too Many Requests",
            "rate limited by the gateway",
        );
        if let Ok(v) = HeaderValue::from_str(&dk.retry_after.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    if let Some(s) = draw.server_error {
        let mut r = api_error(
            StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "An error has occurred.",
            "sandbox fault",
        );
        if s == 503
            && let Ok(v) = HeaderValue::from_str(&dk.retry_after.to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    if let Some(dl) = draw.slow {
        tokio::time::sleep(dl).await;
    }
    if !dk.role_access.load(Ordering::Relaxed) {
        return api_error(
            StatusCode::FORBIDDEN,
            "Access denied.",
            &format!("The role of user {USERNAME} has no access to {rest}"),
        );
    }
    let body = match render(dk, &rest, raw.as_deref().unwrap_or("")) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let mut resp = match draw.reset {
        Some(frac) => {
            let cut = ((body.len() as f64 * frac) as usize).min(body.len().saturating_sub(1));
            let head = futures::stream::iter([Ok::<Bytes, std::io::Error>(
                Bytes::copy_from_slice(&body[..cut]),
            )]);
            let tail = futures::stream::once(async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "sandbox fault: connection reset mid-body",
                ))
            });
            Response::new(Body::from_stream(head.chain(tail)))
        }
        None => Response::new(Body::from(body)),
    };
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// The key fields of a table as served (a 5.0+ pursuit read as a project: its WBS1).
fn key_out(kind: Kind, as_project: bool) -> &'static [&'static str] {
    if as_project {
        &["WBS1"]
    } else {
        tables::key_fields(kind)
    }
}

/// `400 {"message":"Invalid field 'X' in fieldFilter", ...}`: Vantagepoint's answer to a field
/// the hub does not have (`what`: `fieldFilter` or `filterHash`).
fn invalid_field(what: &str, name: &str, hub: &str) -> Box<Response> {
    boxed(
        StatusCode::BAD_REQUEST,
        &format!("Invalid field '{name}' in {what}"),
        &format!("Field '{name}' does not exist on {hub}."),
    )
}

/// The column of `cols` named `name` (case-insensitive, as the service matches names).
fn find_col(cols: &[Col], name: &str) -> Option<Col> {
    cols.iter()
        .find(|c| c.out.eq_ignore_ascii_case(name))
        .copied()
}

/// `GET metadata/{hub}`: the hubs the tenant has, in Vantagepoint's shape (metadata.rs). A
/// pre-5.0 tenant has the Opportunities hub, a 5.0+ one does not; a Lean tenant's
/// `metadata/activity` answers 404 although the hub answers. Ledgers and configuration paths
/// have no hub metadata.
fn metadata(dk: &Deltek, hub: &str) -> Result<Vec<u8>, Box<Response>> {
    let hub_tenant = dk.opportunity_hub.load(Ordering::Relaxed);
    let kind = match hub {
        "project" => Some(Kind::Project),
        "firm" => Some(Kind::Firm),
        "contact" => Some(Kind::Contact),
        "employee" => Some(Kind::Employee),
        "opportunity" if hub_tenant => Some(Kind::Opportunity),
        "activity" if dk.tenant != Tenant::Lean => Some(Kind::Activity),
        _ => None,
    };
    let Some(kind) = kind else {
        return Err(boxed(
            StatusCode::NOT_FOUND,
            "No HTTP resource was found that matches the request URI.",
            &format!("metadata/{hub}"),
        ));
    };
    let fields: Vec<&'static Field> = dk.columns(kind, false).iter().map(|c| c.src).collect();
    Ok(metadata::document(kind, &fields))
}

/// The JSON array answering `rest?raw`.
fn render(dk: &Deltek, rest: &str, raw: &str) -> Result<Vec<u8>, Box<Response>> {
    let q = parse_query(raw)?;
    let lower = rest.trim_end_matches('/').to_ascii_lowercase();
    if let Some(hub) = lower.strip_prefix("metadata/") {
        return metadata(dk, hub);
    }
    // `{hub}/{key}`: one record, still an array.
    let (hub, by_key) = match ALL.iter().find(|k| lower == k.hub()) {
        Some(_) => (lower.clone(), None),
        None => match lower.rsplit_once('/') {
            Some((h, key)) if ALL.iter().any(|k| k.hub() == h) => (
                h.to_string(),
                Some(rest.rsplit_once('/').map_or(key, |(_, k)| k).to_string()),
            ),
            _ => {
                return Err(boxed(
                    StatusCode::NOT_FOUND,
                    "No HTTP resource was found that matches the request URI.",
                    rest,
                ));
            }
        },
    };
    let mut kind = ALL
        .into_iter()
        .find(|k| k.hub() == hub)
        .unwrap_or(Kind::Project);
    let hub_tenant = dk.opportunity_hub.load(Ordering::Relaxed);
    if kind == Kind::Opportunity && !hub_tenant {
        return Err(boxed(
            StatusCode::NOT_FOUND,
            "No HTTP resource was found that matches the request URI.",
            rest,
        ));
    }
    // The route exists in every install; the role of an unlicensed module's API user is never
    // granted access to it.
    if !dk.has(kind) {
        return Err(boxed(
            StatusCode::FORBIDDEN,
            "Access denied.",
            &format!("{rest} is not licensed for database {DATABASE}."),
        ));
    }
    if hub == "project" {
        kind = match q.wbstype.as_deref() {
            None | Some("wbs1") => Kind::Project,
            Some("wbs2") => Kind::Phase,
            Some("wbs3") => Kind::Task,
            Some(o) => {
                return Err(boxed(
                    StatusCode::BAD_REQUEST,
                    "The request is invalid.",
                    &format!("unknown wbstype `{o}`"),
                ));
            }
        };
    }
    let mut ge = None;
    let mut lt = None;
    let mut empty = false;
    // Filters on plain fields, resolved once the table is known: (name, value, operator).
    let mut plain: Vec<(String, String, &str)> = Vec::new();
    for f in &q.filters {
        let op = match f.opp.to_ascii_lowercase().as_str() {
            "=" | "==" | "eq" => "=",
            "!=" | "<>" | "ne" => "!=",
            ">=" | "ge" => ">=",
            ">" | "gt" => ">",
            "<" | "lt" => "<",
            "<=" | "le" => "<=",
            "like" => "like",
            o => {
                return Err(boxed(
                    StatusCode::BAD_REQUEST,
                    "The request is invalid.",
                    &format!("unknown filter operator `{o}`"),
                ));
            }
        };
        match (f.name.to_ascii_lowercase().as_str(), op) {
            ("moddate", _) => {
                let Some(t) = parse_wall(&f.value, &dk.tz) else {
                    return Err(boxed(
                        StatusCode::BAD_REQUEST,
                        "The request is invalid.",
                        &format!("`{}` is not a datetime", f.value),
                    ));
                };
                match op {
                    // Several bounds on ModDate are ANDed: the tightest wins.
                    ">=" => ge = Some(ge.map_or(t, |g: i64| g.max(t))),
                    ">" => ge = Some(ge.map_or(t + 1, |g: i64| g.max(t + 1))),
                    "<" => lt = Some(lt.map_or(t, |l: i64| l.min(t))),
                    "<=" => lt = Some(lt.map_or(t + 1, |l: i64| l.min(t + 1))),
                    _ => {
                        return Err(boxed(
                            StatusCode::BAD_REQUEST,
                            "The request is invalid.",
                            "ModDate takes a range operator",
                        ));
                    }
                }
            }
            ("wbs2", "=") if f.value.trim().is_empty() => empty |= kind != Kind::Project,
            ("stage", "!=")
                if f.value.trim().is_empty()
                    && hub == "project"
                    && kind == Kind::Project
                    && !hub_tenant =>
            {
                kind = Kind::Opportunity;
            }
            _ => plain.push((f.name.clone(), f.value.clone(), op)),
        }
    }
    let as_project = hub == "project" && kind == Kind::Opportunity;
    let all = dk.columns(kind, as_project);
    let key_names = key_out(kind, as_project);
    // `order` on a key field: the key order, with range filters on the key fields (paging.rs).
    let key_order = q.order.as_deref().and_then(|o| {
        let o = o.trim_end_matches("_A").trim_end_matches("_a");
        key_names.iter().position(|k| k.eq_ignore_ascii_case(o))
    });
    let mut key_conds: Vec<paging::KeyCond> = Vec::new();
    // Equality / like filters: (column, value, like).
    let mut equals: Vec<(Col, String, bool)> = Vec::new();
    for (name, value, op) in plain {
        let Some(col) = find_col(&all, &name) else {
            return Err(invalid_field("filterHash", &name, &hub));
        };
        let key_pos = key_names.iter().position(|k| k.eq_ignore_ascii_case(&name));
        if let (Some(_), Some(pos)) = (key_order, key_pos)
            && matches!(op, "=" | ">" | ">=" | "<" | "<=")
        {
            key_conds.push((pos, op, paging::key_part(kind, pos, &value)));
            continue;
        }
        if !matches!(op, "=" | "like") {
            return Err(boxed(
                StatusCode::BAD_REQUEST,
                "The request is invalid.",
                &format!("the sandbox cannot filter on `{name}` with `{op}`"),
            ));
        }
        equals.push((col, value, op == "like"));
    }
    let cols: Vec<Col> = match &q.fields {
        None => all.clone(),
        Some(wanted) => wanted
            .iter()
            .map(|w| find_col(&all, w).ok_or_else(|| invalid_field("fieldFilter", w, &hub)))
            .collect::<Result<_, _>>()?,
    };
    if let Some(o) = &q.order {
        let o = o.trim_end_matches("_A").trim_end_matches("_a");
        if !o.eq_ignore_ascii_case("ModDate")
            && !key_out(kind, as_project)
                .iter()
                .any(|k| k.eq_ignore_ascii_case(o))
        {
            return Err(boxed(
                StatusCode::BAD_REQUEST,
                "The request is invalid.",
                &format!("cannot order by `{o}`"),
            ));
        }
    }
    let d = dk.data();
    let t = &d.tables[kind as usize];
    let ctx = tables::Ctx {
        seed: dk.seed,
        counts: &dk.counts,
        tz: &dk.tz,
    };
    let size = dk.paging.page_size(q.size);
    let list = by_key.is_none();
    let ordinals: Vec<u64> = if empty {
        Vec::new()
    } else if let Some(key) = by_key {
        find_ordinal(dk, &d, kind, &key).into_iter().collect()
    } else if let Some(by) = key_order {
        let skip = q.offset.unwrap_or((q.page - 1) * size);
        let mut buf = Vec::new();
        let mut accept = |o: u64| {
            let m = t.meta(o).1;
            if ge.is_some_and(|g| m < g) || lt.is_some_and(|l| m >= l) {
                return false;
            }
            let over = d.written.rows.get(&(kind, o));
            equals.iter().all(|(col, want, like)| {
                buf.clear();
                tables::write_row(&mut buf, &ctx, kind, t, o, &[*col], over);
                serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&buf)
                    .ok()
                    .and_then(|m| m.get(col.out)?.as_str().map(String::from))
                    .is_some_and(|h| matches_value(&h, want, *like))
            })
        };
        paging::key_ordered(dk, &d, kind, by, &key_conds, &mut accept, (skip, size))
            .map_err(|m| boxed(StatusCode::BAD_REQUEST, "The request is invalid.", &m))?
    } else if !equals.is_empty() {
        let skip = q.offset.unwrap_or((q.page - 1) * size);
        // Fields a generated row never fills hold values only on rows saved through the API:
        // search those alone.
        let never = |c: &Col| c.src.fill == schema::Gen::Never;
        let api_only = equals.iter().any(|(c, _, _)| never(c));
        let exact = |want: &str, like: bool| !like || !want.contains('%');
        // An equality on a generated field: its value index over the unchanged rows, plus
        // the changed rows (each checked below like any candidate).
        let indexed = equals
            .iter()
            .find(|(_, want, like)| exact(want, *like))
            .filter(|_| !api_only && t.initial <= 200_000);
        let saved = equals
            .iter()
            .find(|(c, want, like)| never(c) && exact(want, *like));
        let candidates: Vec<u64> = if let Some((col, want, _)) = saved {
            let mut v: Vec<u64> = d
                .written
                .values
                .get(&(kind, col.out.to_string()))
                .and_then(|values| values.get(&want.to_lowercase()))
                .into_iter()
                .flatten()
                .copied()
                .filter(|o| t.is_live(*o))
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        } else if let Some((col, want, _)) = indexed {
            let index = dk.value_index(&ctx, kind, t, *col);
            let in_window = |o: &u64| {
                let m = t.meta(*o).1;
                ge.is_none_or(|g| m >= g) && lt.is_none_or(|l| m < l)
            };
            let mut v: Vec<u64> = index
                .get(&want.to_lowercase())
                .into_iter()
                .flatten()
                .copied()
                .filter(|o| !t.changed.contains_key(o) && !t.deleted.contains(o))
                .chain(t.changed.keys().copied().filter(|o| t.is_live(*o)))
                .filter(in_window)
                .collect();
            v.sort_unstable();
            v
        } else if t.live_count() <= 200_000 && !api_only {
            let sel = t.select(ge, lt);
            sel.slice(0, u64::MAX / 2)
        } else {
            let mut v: Vec<u64> = d
                .written
                .rows
                .keys()
                .filter(|(k, o)| *k == kind && t.is_live(*o))
                .map(|(_, o)| *o)
                .collect();
            v.sort_unstable();
            v
        };
        let mut buf = Vec::new();
        candidates
            .into_iter()
            .filter(|o| {
                let over = d.written.rows.get(&(kind, *o));
                equals.iter().all(|(col, want, like)| {
                    buf.clear();
                    tables::write_row(&mut buf, &ctx, kind, t, *o, &[*col], over);
                    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&buf)
                        .ok()
                        .and_then(|m| m.get(col.out)?.as_str().map(String::from))
                        .is_some_and(|h| matches_value(&h, want, *like))
                })
            })
            .skip(skip as usize)
            .take(size as usize)
            .collect()
    } else {
        let sel = t.select(ge, lt);
        let skip = q.offset.unwrap_or((q.page - 1) * size);
        sel.slice(skip, size)
    };
    let mut out = Vec::with_capacity(ordinals.len() * 64 * cols.len().min(16) + 2);
    out.push(b'[');
    for (i, o) in ordinals.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        tables::write_row(
            &mut out,
            &ctx,
            kind,
            t,
            *o,
            &cols,
            d.written.rows.get(&(kind, *o)),
        );
    }
    out.push(b']');
    drop_guard(d);
    if list {
        dk.paging.served(dk, kind);
    }
    Ok(out)
}

/// A `filterHash` comparison: `=` is case-insensitive (SQL Server's default collation); `like`
/// takes `%` wildcards.
fn matches_value(have: &str, want: &str, like: bool) -> bool {
    let (h, w) = (have.to_lowercase(), want.to_lowercase());
    if !like || !w.contains('%') {
        return h == w;
    }
    let parts: Vec<&str> = w.split('%').collect();
    let mut pos = 0;
    for (i, p) in parts.iter().enumerate() {
        if p.is_empty() {
            continue;
        }
        match h[pos..].find(p) {
            Some(at) if i > 0 || at == 0 => pos += at + p.len(),
            _ => return false,
        }
    }
    parts.last().is_none_or(|l| l.is_empty() || h.ends_with(l))
}

/// Whether the request carries a live access token (writes check the token, not the read
/// faults).
fn authorized(dk: &Deltek, headers: &HeaderMap) -> bool {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_string());
    let d = dk.data();
    token
        .as_ref()
        .and_then(|t| d.tokens.get(t))
        .is_some_and(|(_, exp)| Instant::now() < *exp)
}

/// The live ordinal of `kind` whose key is `key`: a client-assigned key, else the ordinal a
/// generated key encodes, else (tables whose keys don't) a scan.
fn find_ordinal(dk: &Deltek, d: &Data, kind: Kind, key: &str) -> Option<u64> {
    let t = &d.tables[kind as usize];
    if let Some(o) = d.written.client_keys.get(&(kind, key.to_ascii_uppercase())) {
        return t.is_live(*o).then_some(*o);
    }
    let generated = |o: &u64| {
        t.is_live(*o)
            && !d.written.client_keys_of(kind, *o)
            && tables::key_of(dk.seed, kind, *o, &dk.counts).join("|") == key
    };
    match tables::ordinal_hint(kind, key) {
        Some(o) => generated(&o).then_some(o),
        None => t.live().into_iter().find(generated),
    }
}

/// `POST /{hub}`, `PUT|PATCH /{hub}/{key}` (see writes.rs for the rules and assumptions).
async fn write(
    State(app): State<Arc<App>>,
    method: Method,
    Path((instance, rest)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let dk = &app.deltek;
    if instance != INSTANCE {
        return api_error(StatusCode::NOT_FOUND, "Not Found", "no such instance");
    }
    if !authorized(dk, &headers) {
        return api_error(
            StatusCode::UNAUTHORIZED,
            "Authorization has been denied for this request.",
            "the access token is missing, invalid or expired",
        );
    }
    let params: HashMap<String, String> =
        url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
            .collect();
    let start_workflow = params.get("startworkflow").cloned();
    let check_required = !params
        .get("requiredfieldvalidation")
        .is_some_and(|v| v.eq_ignore_ascii_case("n"));
    let trimmed = rest.trim_end_matches('/');
    let (hub, key) = match trimmed.split_once('/') {
        Some((h, k)) => (h.to_ascii_lowercase(), Some(k.to_string())),
        None => (trimmed.to_ascii_lowercase(), None),
    };
    let not_allowed = || {
        api_error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("The requested resource does not support http method '{method}'."),
            &rest,
        )
    };
    let creating = match (&method, &key) {
        (&Method::POST, None) => true,
        (&Method::PUT | &Method::PATCH, Some(_)) => false,
        _ => return not_allowed(),
    };
    let records: Vec<serde_json::Map<String, serde_json::Value>> =
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(serde_json::Value::Object(o)) => vec![o],
            Ok(serde_json::Value::Array(a)) if a.iter().all(|v| v.is_object()) && !a.is_empty() => {
                a.into_iter()
                    .filter_map(|v| match v {
                        serde_json::Value::Object(o) => Some(o),
                        _ => None,
                    })
                    .collect()
            }
            _ => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    "The request is invalid.",
                    "the body must be a JSON object or a non-empty array of objects",
                );
            }
        };
    if !creating && records.len() != 1 {
        return api_error(
            StatusCode::BAD_REQUEST,
            "The request is invalid.",
            "an update takes one record",
        );
    }
    let hub_tenant = dk.opportunity_hub.load(Ordering::Relaxed);
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut d = dk.data();
    // An update goes to the table holding the key (a project or a 5.0+ pursuit); a create to
    // the table its hub and Stage say.
    let (kind, target) = match &key {
        Some(k) => {
            let tables: Vec<Kind> = match hub.as_str() {
                "project" if hub_tenant => vec![Kind::Project],
                "project" => vec![Kind::Project, Kind::Opportunity],
                h => match writes::writable(h, hub_tenant, &records[0]) {
                    Some(kind) => vec![kind],
                    None => return not_allowed(),
                },
            };
            match tables
                .iter()
                .find_map(|kind| Some((*kind, find_ordinal(dk, &d, *kind, k)?)))
            {
                Some((kind, o)) => (kind, Some(o)),
                None => {
                    return api_error(
                        StatusCode::NOT_FOUND,
                        "Not Found",
                        &format!("No {hub} record with key '{k}'."),
                    );
                }
            }
        }
        None => match writes::writable(&hub, hub_tenant, &records[0]) {
            Some(kind) => (kind, None),
            None if hub == "opportunity" => {
                return api_error(
                    StatusCode::NOT_FOUND,
                    "No HTTP resource was found that matches the request URI.",
                    &rest,
                );
            }
            None => return not_allowed(),
        },
    };
    // A project's number is the client's (and a pursuit sent to `project` is a project).
    let client_key = hub == "project";
    let pursuit_as_project = client_key && kind == Kind::Opportunity;
    // The fields the hub takes: a pursuit's are the project's.
    let cols = dk.columns(kind, pursuit_as_project);
    let keys = key_out(kind, pursuit_as_project);
    let log = |d: &mut Data,
               key: Option<String>,
               status: u16,
               rec: &serde_json::Map<String, serde_json::Value>,
               dropped: bool,
               error_in_2xx: bool| {
        d.written.log.push(WriteLog {
            method: method.to_string(),
            hub: hub.clone(),
            table: kind.entity().to_string(),
            key,
            status,
            start_workflow: start_workflow.clone(),
            fields: rec.keys().cloned().collect(),
            dropped,
            error_in_2xx,
        });
    };
    // Fault: a 200 carrying an error object, not the saved records; nothing saved.
    if d.written.error_in_2xx > 0 {
        d.written.error_in_2xx -= 1;
        for r in &records {
            log(&mut d, None, 200, r, false, true);
        }
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            serde_json::json!({ "Message": super::ERROR_IN_2XX }).to_string(),
        )
            .into_response();
    }
    // Validate the whole batch first: one bad record refuses the request.
    let required: Vec<String> = if check_required {
        d.written.required.get(&hub).cloned().unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut numbers = std::collections::BTreeSet::new();
    for rec in &records {
        let mut problem = if creating && writes::writable(&hub, hub_tenant, rec) != Some(kind) {
            Some("a batch mixes projects and pursuits".to_string())
        } else {
            writes::validate(&hub, &cols, keys, &required, rec, creating).err()
        };
        if problem.is_none()
            && let Some(firm) = rec
                .get("ClientID")
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
            && kind != Kind::Firm
            && find_ordinal(dk, &d, Kind::Firm, firm).is_none()
        {
            problem = Some(format!("ClientID '{firm}' is not a valid firm."));
        }
        if problem.is_none() && client_key && creating {
            let wbs1 = rec
                .get("WBS1")
                .and_then(|v| v.as_str())
                .map(str::trim)
                .unwrap_or_default();
            let taken = [Kind::Project, Kind::Opportunity]
                .into_iter()
                .any(|kind| find_ordinal(dk, &d, kind, wbs1).is_some());
            problem = if wbs1.is_empty() {
                Some("WBS1 is required.".into())
            } else if taken || !numbers.insert(wbs1.to_ascii_uppercase()) {
                Some(format!("Project number '{wbs1}' already exists."))
            } else {
                None
            };
        }
        if let Some(p) = problem {
            for r in &records {
                log(&mut d, None, 400, r, false, false);
            }
            return api_error(StatusCode::BAD_REQUEST, "Validation failed.", &p);
        }
    }
    let ctx_counts = dk.counts;
    let mut saved = Vec::with_capacity(records.len());
    for rec in &records {
        let o = match target {
            Some(o) => {
                let t = &mut d.tables[kind as usize];
                let rev = t.meta(o).0 + 1;
                t.changed.insert(o, (rev, now_ms));
                o
            }
            None => {
                let t = &mut d.tables[kind as usize];
                let o = t.next;
                t.next += 1;
                t.changed.insert(o, (1, now_ms));
                o
            }
        };
        // A project number is set on create only (Key Conversion changes it, not a PUT).
        let keep_key = client_key && target.is_none();
        let mut fields = writes::saved_fields(rec, keep_key, &cols, keys);
        if !keep_key {
            fields.remove("WBS1");
        }
        if keep_key && let Some(n) = fields.get("WBS1").and_then(|v| v.as_str()) {
            d.written
                .client_keys
                .insert((kind, n.to_ascii_uppercase()), o);
        }
        d.written.save(kind, o, fields);
        saved.push((o, rec));
    }
    let drop = creating && d.written.drop_creates > 0;
    if drop {
        d.written.drop_creates -= 1;
    }
    let ctx = tables::Ctx {
        seed: dk.seed,
        counts: &ctx_counts,
        tz: &dk.tz,
    };
    let mut out = Vec::with_capacity(saved.len() * 600 + 2);
    out.push(b'[');
    for (i, (o, rec)) in saved.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let t = &d.tables[kind as usize];
        tables::write_row(
            &mut out,
            &ctx,
            kind,
            t,
            *o,
            &cols,
            d.written.rows.get(&(kind, *o)),
        );
        let k = key_str(dk, &d, kind, *o);
        log(&mut d, Some(k), 200, rec, drop, false);
    }
    out.push(b']');
    drop_guard(d);
    if drop {
        // Applied, answer lost: headers go out, the body never completes.
        let tail = futures::stream::once(async {
            Err::<Bytes, std::io::Error>(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "sandbox fault: create applied, answer dropped",
            ))
        });
        let mut r = Response::new(Body::from_stream(tail));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        return r;
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        out,
    )
        .into_response()
}

/// The key of a live row: its client-assigned number, else the generated key.
fn key_str(dk: &Deltek, d: &Data, kind: Kind, o: u64) -> String {
    d.written
        .rows
        .get(&(kind, o))
        .filter(|_| d.written.client_keys_of(kind, o))
        .and_then(|r| r.get("WBS1"))
        .and_then(|v| v.as_str())
        .map(String::from)
        .unwrap_or_else(|| tables::key_of(dk.seed, kind, o, &dk.counts).join("|"))
}

/// Releases the data lock before the answer is built.
fn drop_guard<T>(_g: T) {}

async fn admin_writes(State(app): State<Arc<App>>) -> Response {
    axum::Json(app.deltek.data().written.log.clone()).into_response()
}

async fn admin_mutate(State(app): State<Arc<App>>) -> Response {
    axum::Json(app.deltek.mutate()).into_response()
}

async fn admin_counts(State(app): State<Arc<App>>) -> Response {
    axum::Json(deltek_counts(&app.deltek)).into_response()
}

/// Live (key, ModDate) pairs of one table, for out-of-process checks.
async fn admin_keys(State(app): State<Arc<App>>, Path(entity): Path<String>) -> Response {
    match live_rows(&app.deltek, &entity) {
        Some(rows) => axum::Json(rows).into_response(),
        None => api_error(
            StatusCode::NOT_FOUND,
            "Not Found",
            &format!("no table `{entity}`"),
        ),
    }
}

fn live_rows(dk: &Deltek, entity: &str) -> Option<Vec<(String, String)>> {
    let kind = Kind::from_entity(entity).filter(|k| dk.has(*k))?;
    let d = dk.data();
    let t = &d.tables[kind as usize];
    let mut v: Vec<(String, String)> = t
        .live()
        .into_iter()
        .map(|o| (key_str(dk, &d, kind, o), tables::wall(t.meta(o).1, &dk.tz)))
        .collect();
    v.sort();
    Some(v)
}

fn deltek_counts(dk: &Deltek) -> BTreeMap<String, u64> {
    let d = dk.data();
    ALL.iter()
        .filter(|k| dk.has(**k))
        .map(|k| (k.entity().to_string(), d.tables[*k as usize].live_count()))
        .collect()
}

/// One key field's value, ordered as the key's type orders (ledger periods and posting
/// sequences are numbers).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum KeyPart {
    Num(i64),
    Text(String),
}

/// Every live row of `entity` as the API serves it without `fieldFilter` (see
/// [`Sandbox::deltek_truth`]).
fn truth(dk: &Deltek, entity: &str) -> Option<Vec<super::TruthRow>> {
    let kind = Kind::from_entity(entity).filter(|k| dk.has(*k))?;
    let as_project = kind == Kind::Opportunity && !dk.opportunity_hub.load(Ordering::Relaxed);
    let cols = dk.columns(kind, as_project);
    let keys = key_out(kind, as_project);
    let d = dk.data();
    let t = &d.tables[kind as usize];
    let ctx = tables::Ctx {
        seed: dk.seed,
        counts: &dk.counts,
        tz: &dk.tz,
    };
    let mut buf = Vec::new();
    let mut rows: Vec<(Vec<KeyPart>, super::TruthRow)> = t
        .live()
        .into_iter()
        .filter_map(|o| {
            buf.clear();
            let over = d.written.rows.get(&(kind, o));
            tables::write_row(&mut buf, &ctx, kind, t, o, &cols, over);
            let row: super::TruthRow = serde_json::from_slice(&buf).ok()?;
            let key = keys
                .iter()
                .map(|k| match row.get(*k) {
                    Some(serde_json::Value::Number(n)) => KeyPart::Num(n.as_i64().unwrap_or(0)),
                    Some(serde_json::Value::String(s)) => KeyPart::Text(s.clone()),
                    _ => KeyPart::Text(String::new()),
                })
                .collect();
            Some((key, row))
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    Some(rows.into_iter().map(|(_, r)| r).collect())
}

/// Routes of the Deltek fake.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/deltek/{instance}/api/token", post(token))
        .route(
            "/deltek/{instance}/api/{*rest}",
            get(list).post(write).put(write).patch(write),
        )
        .route("/_sandbox/deltek/writes", get(admin_writes))
        .route("/_sandbox/deltek/mutate", post(admin_mutate))
        .route("/_sandbox/deltek/counts", get(admin_counts))
        .route("/_sandbox/deltek/{entity}/keys", get(admin_keys))
        .route("/_sandbox/deltek/paging", post(admin_paging))
}

impl Sandbox {
    /// The tenant's truth for one deltek table (see [`Sandbox::truth`]).
    ///
    /// Deltek: keyed by the stream entities (`project`, `project_phase`, `project_task`,
    /// `firm`, `contact`, `employee`, `opportunity`, `activity`, `ap_voucher`, `ar_invoice`,
    /// `journal_entry`, `gl_account`). Each row carries every field of the tenant's table
    /// (custom ones included) with the names and JSON types the API sends: zone-less dates,
    /// Y/N strings, accounts as decimal strings. Rows are in key order (numbers numerically,
    /// text by bytes). `opportunity` follows the tenant's model: on a 5.0+ tenant (the default)
    /// the pursuits as the Projects hub serves them (project field names, `WBS1` the key); on a
    /// pre-5.0 one the Opportunities hub's records. `None` for a table the tenant lacks (Lean:
    /// `ap_voucher`).
    pub(crate) fn deltek_truth(&self, entity: &str) -> Option<Vec<super::TruthRow>> {
        truth(&self.app.deltek, entity)
    }

    /// The tenant API base: `{base}/deltek/acme/api`.
    pub fn deltek_base_url(&self) -> String {
        format!("{}/deltek/{INSTANCE}/api", self.app.base)
    }

    /// The body of an mlc.toml `[connections.X]` section for the fake tenant, and the secrets
    /// to store in the vault.
    pub fn deltek_connection(&self) -> (String, Vec<(String, String)>) {
        (
            format!(
                "system = \"deltek\"\nbase_url = \"{}\"\ndatabase = \"{DATABASE}\"\nusername = \"{USERNAME}\"\nclient_id = \"{CLIENT_ID}\"\ntime_zone = \"{TIME_ZONE}\"\n",
                self.deltek_base_url()
            ),
            vec![
                ("password".into(), PASSWORD.into()),
                ("client_secret".into(), CLIENT_SECRET.into()),
            ],
        )
    }

    /// One round of inserts, updates and deletes on every Deltek table the tenant has (by
    /// stream entity).
    pub fn deltek_mutate(&self) -> BTreeMap<String, Changes> {
        self.app.deltek.mutate()
    }

    /// Live rows per stream entity (tables the tenant has).
    pub fn deltek_counts(&self) -> BTreeMap<String, u64> {
        deltek_counts(&self.app.deltek)
    }

    /// (key values joined with `|`, ModDate as served) of every live row of `entity`, sorted.
    /// `None` for an unknown entity.
    pub fn deltek_live_rows(&self, entity: &str) -> Option<Vec<(String, String)>> {
        live_rows(&self.app.deltek, entity)
    }

    /// The next `count` live rows of `entity` serve badly typed values (`ModDate` "not a date",
    /// `Probability` "high") until the next mutation round, which updates them.
    pub fn deltek_poison(&self, entity: &str, count: usize) -> bool {
        let dk = &self.app.deltek;
        let Some(kind) = Kind::from_entity(entity).filter(|k| dk.has(*k)) else {
            return false;
        };
        let mut d = dk.data();
        let t = &mut d.tables[kind as usize];
        let live = t.live();
        t.poisoned.extend(live.into_iter().take(count));
        true
    }

    /// Untick "Allow Password Grant Type" (`false`): password logins are refused.
    pub fn deltek_allow_password_grant(&self, allowed: bool) {
        self.app
            .deltek
            .password_grant
            .store(allowed, Ordering::Relaxed);
    }

    /// `true`: a pre-5.0 tenant (the Opportunities hub answers, projects have no Stage);
    /// `false` (default): 5.0+, `/opportunity` answers 404 and pursuits are staged projects.
    pub fn deltek_opportunity_hub(&self, hub: bool) {
        self.app
            .deltek
            .opportunity_hub
            .store(hub, Ordering::Relaxed);
    }

    /// `false`: the API user's role has no access, every hub read answers 403.
    pub fn deltek_role_access(&self, access: bool) {
        self.app.deltek.role_access.store(access, Ordering::Relaxed);
    }

    /// Every issued access token expires now (the next call gets 401).
    pub fn deltek_expire_tokens(&self) {
        self.app.deltek.data().tokens.clear();
    }

    /// Every write the Deltek fake received, in order (refused ones too).
    pub fn deltek_writes(&self) -> Vec<WriteLog> {
        self.app.deltek.data().written.log.clone()
    }

    /// The next `n` creates are applied, then their answers are dropped (the connection resets
    /// before the body): the client cannot know the record exists.
    pub fn deltek_drop_create_responses(&self, n: u32) {
        self.app.deltek.data().written.drop_creates = n;
    }

    /// The next `n` writes (creates and updates) are answered 200 with an error object
    /// (`{"Message": "…"}` carrying [`super::ERROR_IN_2XX`], not the array of saved records) and
    /// nothing is saved.
    pub fn deltek_error_in_2xx(&self, n: u32) {
        self.app.deltek.data().written.error_in_2xx = n;
    }

    /// Tenant-required fields of `hub` (as set in the screen designer): creates without them
    /// are refused with a 400 validation error, unless sent with `requiredFieldValidation=N`.
    pub fn deltek_required_fields(&self, hub: &str, fields: &[&str]) {
        self.app.deltek.data().written.required.insert(
            hub.to_ascii_lowercase(),
            fields.iter().map(|s| s.to_string()).collect(),
        );
    }

    /// Tokens issued so far (password and refresh grants).
    pub fn deltek_tokens_issued(&self) -> u64 {
        self.app.deltek.data().issued
    }

    /// Serve at most `cap` rows a page whatever `pageSize` asks (`None`: as asked), silently,
    /// as a tenant or proxy with its own maximum does.
    pub fn deltek_page_cap(&self, cap: Option<u64>) {
        self.app.deltek.paging.set_cap(cap);
    }

    /// After `pages` more list responses of `entity` (any query on its table), saves the rows
    /// keyed `touch` (their `ModDate` moves past every other row's) and deletes the rows keyed
    /// `delete` (keys as [`Sandbox::deltek_live_rows`] spells them): users working while a read
    /// runs. `false` for an entity the tenant lacks.
    pub fn deltek_after_pages(
        &self,
        entity: &str,
        pages: u64,
        touch: &[String],
        delete: &[String],
    ) -> bool {
        let dk = &self.app.deltek;
        let Some(kind) = Kind::from_entity(entity).filter(|k| dk.has(*k)) else {
            return false;
        };
        dk.paging
            .after_pages(kind, pages, touch.to_vec(), delete.to_vec());
        true
    }

    /// Armed [`Sandbox::deltek_after_pages`] events that have not fired yet.
    pub fn deltek_pending_page_events(&self) -> usize {
        self.app.deltek.paging.pending()
    }

    /// Saves the rows keyed `keys` of `entity` (a new revision each, `ModDate` past every
    /// other row's, in the order given): one millisecond apart, or with one and the same
    /// `ModDate` when `alike` (a mass update). Returns how many rows were found.
    pub fn deltek_save(&self, entity: &str, keys: &[String], alike: bool) -> usize {
        let dk = &self.app.deltek;
        let Some(kind) = Kind::from_entity(entity).filter(|k| dk.has(*k)) else {
            return 0;
        };
        let mut d = dk.data();
        paging::save(dk, &mut d, kind, keys, alike)
    }

    /// Deletes the rows keyed `keys` of `entity` (someone removed them in Vantagepoint).
    /// Returns how many were found.
    pub fn deltek_delete(&self, entity: &str, keys: &[String]) -> usize {
        let dk = &self.app.deltek;
        let Some(kind) = Kind::from_entity(entity).filter(|k| dk.has(*k)) else {
            return 0;
        };
        let mut d = dk.data();
        paging::delete(dk, &mut d, kind, keys)
    }
}

/// Body of `POST /_sandbox/deltek/paging`: the HTTP mirror of the paging controls.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PagingControls {
    /// `0` lifts the cap.
    page_cap: Option<u64>,
    after_pages: Option<AfterPages>,
    save: Option<Save>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AfterPages {
    entity: String,
    pages: u64,
    #[serde(default)]
    touch: Vec<String>,
    #[serde(default)]
    delete: Vec<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Save {
    entity: String,
    keys: Vec<String>,
    #[serde(default)]
    alike: bool,
}

async fn admin_paging(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let c: PagingControls = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, "bad controls", &e.to_string()),
    };
    let dk = &app.deltek;
    if let Some(cap) = c.page_cap {
        dk.paging.set_cap((cap > 0).then_some(cap));
    }
    let kind = |e: &str| Kind::from_entity(e).filter(|k| dk.has(*k));
    let mut saved = 0;
    if let Some(a) = c.after_pages {
        let Some(k) = kind(&a.entity) else {
            return api_error(
                StatusCode::NOT_FOUND,
                "Not Found",
                &format!("no table `{}`", a.entity),
            );
        };
        dk.paging.after_pages(k, a.pages, a.touch, a.delete);
    }
    if let Some(s) = c.save {
        let Some(k) = kind(&s.entity) else {
            return api_error(
                StatusCode::NOT_FOUND,
                "Not Found",
                &format!("no table `{}`", s.entity),
            );
        };
        let mut d = dk.data();
        saved = paging::save(dk, &mut d, k, &s.keys, s.alike);
    }
    axum::Json(serde_json::json!({
        "pending_events": dk.paging.pending(),
        "saved": saved,
    }))
    .into_response()
}

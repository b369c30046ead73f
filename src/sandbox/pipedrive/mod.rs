//! The Pipedrive fake: `/pipedrive/api/v2/...` and `/pipedrive/api/v1/...` with the
//! `{success, data, additional_data}` envelopes, `x-api-token` and OAuth bearer auth (token
//! endpoint at `/pipedrive-oauth/oauth/token`, refresh grant with Basic client auth, rotating
//! refresh tokens, `api_domain`), opaque v2 cursors, `updated_since`/`updated_until`,
//! `sort_by`/`sort_direction`, deal `status` filters incl. deleted (visible 30 days),
//! `x-ratelimit-*` headers on a 2-second burst window, a daily token budget charged by
//! `x-token-cost`, a Cloudflare HTML 403 mode, seeded faults and mutation rounds.
//!
//! Archived deals are listed only at `/api/v2/deals/archived` (same filters and paging);
//! `/api/v2/deals` "returns data about all not archived deals" (v2.yaml). One initial deal in
//! twenty starts archived and each mutation round archives a few more (an update: new
//! `update_time`, `is_archived`, `archive_time`). Their line items stay readable.
//!
//! The schema is the fake's own (fields.rs, render.rs) and depends on the tenant
//! ([`Tenant`]): field definitions (`/api/v2/{deal,person,organization,product}Fields`) list
//! the standard fields and the tenant's custom fields, cursor-paged.
//!
//! No rows are stored: unchanged row `id` renders from (seed, id) with update time `T0 + id * STEP`;
//! only rows a mutation touched keep (revision, update time, deleted) — so a million deals
//! cost nothing until they change, and a page sorted by update time is the unchanged id range
//! followed by the changed rows in time order. Updates (`PATCH /api/v2/{organizations|persons|
//! products}/{id}`) are in writes.rs: saved values override generated ones, and the row gets a
//! new update time.

mod fields;
mod kind;
mod render;
mod webhooks;
mod writes;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::Engine;

use super::options::{Faults, Tenant};
use super::protection::Protection;
use super::rng::SeqRng;
use super::{App, Sandbox, SandboxOptions};
use kind::Kind;
use render::{Dims, Row, STEP, T0};

pub use writes::PdWriteLog;

/// Credentials of the fake (not secrets: a local test fixture).
pub const API_TOKEN: &str = "sandbox-pipedrive-api-token";
pub const CLIENT_ID: &str = "sandbox-pipedrive-client";
pub const CLIENT_SECRET: &str = "sandbox-pipedrive-client-secret";
pub const FIRST_REFRESH_TOKEN: &str = "sandbox-refresh-0";

/// Deleted deals stay listed (status=deleted) this long.
const DELETED_VISIBLE_SECS: i64 = 30 * 86_400;

/// What a changed row remembers.
#[derive(Debug, Clone, Copy)]
struct Meta {
    rev: u32,
    update_time: i64,
    /// When it was deleted.
    deleted: Option<i64>,
    /// Deals: when it was archived.
    archived: Option<i64>,
}

struct Inner {
    clock: i64,
    rounds: u64,
    /// Rows per kind (initial + inserted); ids are 1..=count.
    counts: HashMap<Kind, i64>,
    changed: HashMap<(Kind, i64), Meta>,
    by_time: BTreeSet<(Kind, i64, i64)>,
    poisoned: HashSet<(Kind, i64)>,
    /// Access token → expiry.
    tokens: HashMap<String, Instant>,
    refresh: String,
    /// Earlier refresh tokens still accepted (a grace window for racing refreshes).
    previous_refresh: Vec<String>,
    issued: u64,
    /// Burst window start and requests in it.
    window: (Instant, u32),
    burst_limit: u32,
    /// Daily budget: (limit, remaining).
    daily: (u64, u64),
    html_403: bool,
    /// Values saved by PATCH and the write log.
    writes: writes::PdSaved,
    /// Custom fields renamed by the admin control: (kind, slot) → new name.
    renames: HashMap<(Kind, u64), String>,
}

/// State of the Pipedrive fake.
pub(crate) struct Pipedrive {
    seed: u64,
    tenant: Tenant,
    scale: u64,
    initial: HashMap<Kind, i64>,
    token_ttl: Duration,
    state: Mutex<Inner>,
    faults: Protection,
    /// `/v1/webhooks` and event delivery.
    hooks: Arc<webhooks::Hooks>,
}

impl Pipedrive {
    pub(crate) fn new(opts: &SandboxOptions) -> Self {
        let initial: HashMap<Kind, i64> = Kind::ALL
            .iter()
            .map(|k| (*k, k.initial(opts.scale)))
            .collect();
        let max = initial.values().copied().max().unwrap_or(0);
        Self {
            seed: opts.seed,
            tenant: opts.tenant,
            scale: opts.scale,
            initial: initial.clone(),
            token_ttl: opts.token_ttl,
            state: Mutex::new(Inner {
                clock: T0 + max * STEP + 86_400,
                rounds: 0,
                counts: initial,
                changed: HashMap::new(),
                by_time: BTreeSet::new(),
                poisoned: HashSet::new(),
                tokens: HashMap::new(),
                refresh: FIRST_REFRESH_TOKEN.into(),
                previous_refresh: Vec::new(),
                issued: 0,
                window: (Instant::now(), 0),
                burst_limit: 400,
                daily: (100_000_000, 100_000_000),
                html_403: false,
                writes: writes::PdSaved::default(),
                renames: HashMap::new(),
            }),
            faults: Protection::new(None, opts.faults, opts.seed ^ 0x919E),
            hooks: Arc::default(),
        }
    }

    fn st(&self) -> MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What rendering a row depends on besides the row. References (a deal's person and
    /// organization, a line's product) point into the rows the tenant started with: a row's
    /// values change only with its own revision, never because other rows were inserted.
    fn dims(&self, _st: &Inner) -> Dims {
        Dims {
            seed: self.seed,
            tenant: self.tenant,
            users: render::user_count(self.scale),
            persons: Kind::Person.initial(self.scale),
            orgs: Kind::Org.initial(self.scale),
            products: Kind::Product.initial(self.scale),
        }
    }

    /// One round of inserts, updates and deletes on deals, persons, organizations (deletes
    /// hard, deals soft: status deleted) and products (updates and inserts); a few deals are
    /// archived (an update: they move from `/deals` to `/deals/archived` with a new
    /// `update_time`).
    pub(crate) fn mutate(&self) {
        let mut st = self.st();
        st.rounds += 1;
        let before = st.clock;
        let mut rng = SeqRng::new(self.seed ^ st.rounds.wrapping_mul(0x5EED));
        for kind in Kind::ALL {
            let n = st.counts[&kind];
            let updates = (n / 50).max(2);
            let inserts = (n / 100).max(1);
            let deletes = if kind == Kind::Product {
                0
            } else {
                (n / 200).max(1)
            };
            for _ in 0..updates {
                let id = 1 + rng.below(n as u64) as i64;
                let _ = self.touch(&mut st, kind, id, Change::Update);
            }
            for _ in 0..deletes {
                let id = 1 + rng.below(n as u64) as i64;
                let _ = self.touch(&mut st, kind, id, Change::Delete);
            }
            for _ in 0..inserts {
                let id = st.counts[&kind] + 1;
                st.counts.insert(kind, id);
                let _ = self.touch(&mut st, kind, id, Change::Update);
            }
            if kind == Kind::Deal {
                // A draw that hits an archived or deleted deal tries again (a few times).
                for _ in 0..(n / 100).max(1) {
                    for _ in 0..4 {
                        let id = 1 + rng.below(n as u64) as i64;
                        if self.touch(&mut st, kind, id, Change::Archive) {
                            break;
                        }
                    }
                }
            }
        }
        // Webhook events for every row this round touched, in time order.
        let changes: Vec<webhooks::Change> = st
            .by_time
            .iter()
            .filter(|(_, t, _)| *t > before)
            .filter_map(|(kind, _, id)| {
                let m = st.changed.get(&(*kind, *id))?;
                Some(webhooks::Change {
                    kind: *kind,
                    id: *id,
                    rev: m.rev,
                    update_time: m.update_time,
                    deleted: m.deleted.is_some(),
                    added: m.rev == 1 && *id > self.initial[kind],
                })
            })
            .collect();
        drop(st);
        self.hooks.deliver(changes);
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        self.faults.set_faults(faults);
    }

    /// See [`Sandbox::pipedrive_rename_custom_field`].
    fn rename_custom_field(&self, entity: &str, old_name: &str, new_name: &str) -> bool {
        let Some(kind) = kind_of(entity) else {
            return false;
        };
        let mut st = self.st();
        let slot = fields::custom_fields(kind, self.tenant)
            .find(|f| {
                st.renames
                    .get(&(kind, f.slot))
                    .map_or(f.name, String::as_str)
                    == old_name
            })
            .map(|f| f.slot);
        match slot {
            Some(slot) => {
                st.renames.insert((kind, slot), new_name.to_string());
                true
            }
            None => false,
        }
    }

    /// The row as known now (`None`: never existed).
    fn row(&self, st: &Inner, kind: Kind, id: i64) -> Option<Row> {
        if id < 1 || id > st.counts[&kind] {
            return None;
        }
        let m = st.changed.get(&(kind, id));
        Some(Row {
            id,
            rev: m.map_or(0, |m| m.rev),
            update_time: m.map_or(T0 + id * STEP, |m| m.update_time),
            deleted: m.is_some_and(|m| m.deleted.is_some()),
            poisoned: st.poisoned.contains(&(kind, id)),
            archived: m.map_or_else(|| self.initial_archive(kind, id), |m| m.archived),
        })
    }

    /// When an unchanged initial row was archived (deals only; see
    /// [`render::initially_archived`]).
    fn initial_archive(&self, kind: Kind, id: i64) -> Option<i64> {
        (kind == Kind::Deal && id <= self.initial[&kind] && render::initially_archived(id))
            .then_some(T0 + id * STEP)
    }

    /// Changes, deletes or archives one row: a new revision and update time. Deleted rows
    /// stay deleted; archiving an archived deal changes nothing. Returns whether it changed.
    fn touch(&self, st: &mut Inner, kind: Kind, id: i64, change: Change) -> bool {
        let old = st.changed.get(&(kind, id)).copied();
        if old.is_some_and(|m| m.deleted.is_some()) {
            return false;
        }
        let archived = old.map_or_else(|| self.initial_archive(kind, id), |m| m.archived);
        if change == Change::Archive && archived.is_some() {
            return false;
        }
        // Changes are 37 s apart, so a lookback of minutes re-reads a handful of rows.
        st.clock += 37;
        let now = st.clock;
        if let Some(m) = old {
            st.by_time.remove(&(kind, m.update_time, id));
        }
        // Archiving changes no value but the archive flag and time (same revision).
        let rev = match (change, old) {
            (Change::Archive, old) => old.map_or(0, |m| m.rev),
            (_, old) => old.map_or(1, |m| m.rev + 1),
        };
        let m = Meta {
            rev,
            update_time: now,
            deleted: (change == Change::Delete).then_some(now),
            archived: if change == Change::Archive {
                Some(now)
            } else {
                archived
            },
        };
        st.changed.insert((kind, id), m);
        st.by_time.insert((kind, now, id));
        true
    }
}

/// What a mutation does to one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Update,
    Delete,
    Archive,
}

/// Query parameters of one list request.
#[derive(Default, Clone)]
struct ListQuery {
    cursor: Option<String>,
    limit: usize,
    since: Option<i64>,
    until: Option<i64>,
    by_time: bool,
    desc: bool,
    statuses: Vec<String>,
    ids: Vec<i64>,
    start: usize,
    /// `/deals/archived` (archived deals only) rather than `/deals` (not archived ones).
    archived: bool,
}

fn parse_time(v: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(v)
        .ok()
        .map(|t| t.timestamp())
}

fn parse_query(raw: Option<&str>) -> Result<ListQuery, String> {
    let mut q = ListQuery {
        limit: 100,
        ..Default::default()
    };
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "cursor" => q.cursor = Some(v.to_string()),
            "limit" => {
                q.limit = v.parse().map_err(|_| format!("limit: not a number: {v}"))?;
                if q.limit > 500 {
                    return Err("Limit must be less than or equal to 500".into());
                }
            }
            "start" => q.start = v.parse().unwrap_or(0),
            "updated_since" => {
                q.since = Some(parse_time(&v).ok_or(format!("updated_since: invalid date {v}"))?)
            }
            "updated_until" => {
                q.until = Some(parse_time(&v).ok_or(format!("updated_until: invalid date {v}"))?)
            }
            "sort_by" => q.by_time = v == "update_time",
            "sort_direction" => q.desc = v == "desc",
            "status" => q.statuses = v.split(',').map(|s| s.trim().to_string()).collect(),
            "deal_ids" | "ids" => {
                q.ids = v.split(',').filter_map(|s| s.trim().parse().ok()).collect();
                if q.ids.len() > 100 {
                    return Err("A maximum of 100 deal IDs can be provided".into());
                }
            }
            "api_token" => return Err("use the x-api-token header".into()),
            _ => {}
        }
    }
    if q.limit == 0 {
        q.limit = 100;
    }
    Ok(q)
}

fn encode_cursor(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn decode_cursor(c: &str) -> Option<String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
}

impl Pipedrive {
    /// Whether a row is listed under the request's filters.
    fn listed(&self, st: &Inner, kind: Kind, r: &Row, q: &ListQuery, d: &Dims) -> bool {
        if q.since.is_some_and(|s| r.update_time < s) || q.until.is_some_and(|u| r.update_time > u)
        {
            return false;
        }
        if kind != Kind::Deal {
            return !r.deleted;
        }
        if r.archived.is_some() != q.archived {
            return false;
        }
        if r.deleted
            && st
                .changed
                .get(&(kind, r.id))
                .and_then(|m| m.deleted)
                .is_some_and(|t| st.clock - t > DELETED_VISIBLE_SECS)
        {
            return false;
        }
        let status = render::deal_status(d, r);
        if q.statuses.is_empty() {
            status != "deleted"
        } else {
            q.statuses.iter().any(|s| s == status)
        }
    }

    /// One page of a v2 list: rows in order and the next cursor.
    fn list(&self, kind: Kind, q: &ListQuery) -> Result<(String, Option<String>), String> {
        let st = self.st();
        let d = self.dims(&st);
        let mut out = String::with_capacity(q.limit * 600);
        let mut n = 0usize;
        let emit = |out: &mut String, n: &mut usize, r: &Row| {
            if *n > 0 {
                out.push(',');
            }
            writes::record(out, &d, kind, r, &st.writes);
            *n += 1;
        };
        let pos = match &q.cursor {
            Some(c) => Some(decode_cursor(c).ok_or("invalid cursor")?),
            None => None,
        };
        let mut next = None;
        if q.by_time && !q.desc {
            // Phase a: unchanged initial rows by id (their update time is T0 + id * STEP); phase b:
            // changed rows in update-time order.
            let initial = self.initial[&kind];
            let (mut phase_b, mut after) = match pos.as_deref().and_then(|p| p.split_once(':')) {
                Some(("a", id)) => (false, id.parse::<i64>().unwrap_or(0)),
                Some(("b", rest)) => (true, rest.parse::<i64>().map(|_| 0).unwrap_or(0)),
                _ => (false, 0),
            };
            let mut b_from: (i64, i64) = match pos.as_deref().and_then(|p| p.strip_prefix("b:")) {
                Some(rest) => rest
                    .split_once(':')
                    .and_then(|(t, i)| Some((t.parse().ok()?, i.parse().ok()?)))
                    .unwrap_or((i64::MIN, 0)),
                None => (i64::MIN, 0),
            };
            // Unchanged rows are never deleted: a deleted-only listing skips them.
            let only_deleted = !q.statuses.is_empty() && q.statuses.iter().all(|s| s == "deleted");
            if !phase_b && only_deleted {
                phase_b = true;
            }
            if !phase_b {
                let lo =
                    (after + 1).max(q.since.map_or(1, |s| (s - T0 + STEP - 1).div_euclid(STEP)));
                let hi = q
                    .until
                    .map_or(initial, |u| (u - T0).div_euclid(STEP).min(initial));
                let mut id = lo.max(1);
                while id <= hi && n < q.limit {
                    if !st.changed.contains_key(&(kind, id))
                        && let Some(r) = self.row(&st, kind, id)
                        && self.listed(&st, kind, &r, q, &d)
                    {
                        emit(&mut out, &mut n, &r);
                    }
                    after = id;
                    id += 1;
                }
                if n >= q.limit && id <= hi {
                    next = Some(format!("a:{after}"));
                } else {
                    phase_b = true;
                }
            }
            if phase_b && next.is_none() {
                let since = q.since.unwrap_or(i64::MIN);
                let from = if b_from.0 == i64::MIN {
                    (kind, since, i64::MIN)
                } else {
                    (kind, b_from.0, b_from.1 + 1)
                };
                let mut more = false;
                for &(k, t, id) in st.by_time.range(from..) {
                    if k != kind || q.until.is_some_and(|u| t > u) {
                        break;
                    }
                    if n >= q.limit {
                        more = true;
                        break;
                    }
                    if let Some(r) = self.row(&st, kind, id)
                        && self.listed(&st, kind, &r, q, &d)
                    {
                        emit(&mut out, &mut n, &r);
                    }
                    b_from = (t, id);
                }
                if more {
                    next = Some(format!("b:{}:{}", b_from.0, b_from.1));
                }
            }
        } else {
            // Id order (descending when asked); time filters checked row by row.
            let count = st.counts[&kind];
            let mut id: i64 = match pos.as_deref().and_then(|p| p.strip_prefix("i:")) {
                Some(v) => v.parse().map_err(|_| "invalid cursor")?,
                None if q.desc => count,
                None => 1,
            };
            while (1..=count).contains(&id) && n < q.limit {
                if (q.ids.is_empty() || q.ids.contains(&id))
                    && let Some(r) = self.row(&st, kind, id)
                    && self.listed(&st, kind, &r, q, &d)
                {
                    emit(&mut out, &mut n, &r);
                }
                id += if q.desc { -1 } else { 1 };
            }
            if (1..=count).contains(&id) {
                next = Some(format!("i:{id}"));
            }
        }
        Ok((out, next.map(|n| encode_cursor(&n))))
    }

    /// One cursor-paged page of the field definitions of `kind` (standard fields, then the
    /// tenant's custom fields under their current names).
    fn field_page(&self, kind: Kind, q: &ListQuery) -> Result<(String, Option<String>), String> {
        let defs = {
            let st = self.st();
            fields::field_defs(self.seed, kind, self.tenant, &st.renames)
        };
        let from: usize = match &q.cursor {
            Some(c) => decode_cursor(c)
                .and_then(|s| s.strip_prefix("f:").and_then(|n| n.parse().ok()))
                .ok_or("invalid cursor")?,
            None => 0,
        };
        let to = (from + q.limit).min(defs.len());
        let page = defs.get(from..to).unwrap_or_default().join(",");
        let next = (to < defs.len()).then(|| encode_cursor(&format!("f:{to}")));
        Ok((page, next))
    }

    /// Line items of up to 100 deals (deleted deals have none; archived ones keep theirs),
    /// cursor-paged.
    fn deal_products(&self, q: &ListQuery) -> Result<(String, Option<String>), String> {
        if q.ids.is_empty() {
            return Err("deal_ids is required".into());
        }
        let st = self.st();
        let d = self.dims(&st);
        let skip: usize = match &q.cursor {
            Some(c) => decode_cursor(c)
                .and_then(|s| s.parse().ok())
                .ok_or("invalid cursor")?,
            None => 0,
        };
        let mut ids = q.ids.clone();
        ids.sort_unstable();
        ids.dedup();
        let mut out = String::new();
        let (mut seen, mut n) = (0usize, 0usize);
        for id in ids {
            let Some(deal) = self.row(&st, Kind::Deal, id) else {
                continue;
            };
            if deal.deleted {
                continue;
            }
            for k in 0..render::deal_product_count(&d, &deal) {
                seen += 1;
                if seen <= skip {
                    continue;
                }
                if n == q.limit {
                    return Ok((out, Some(encode_cursor(&(skip + n).to_string()))));
                }
                if n > 0 {
                    out.push(',');
                }
                render::deal_product(&mut out, &d, &deal, k);
                n += 1;
            }
        }
        Ok((out, None))
    }
}

fn envelope(data: &str, next: Option<String>) -> String {
    format!(
        "{{\"success\":true,\"data\":[{data}],\"additional_data\":{{\"next_cursor\":{}}}}}",
        next.map_or("null".to_string(), |c| format!("\"{c}\""))
    )
}

fn error(status: StatusCode, msg: &str) -> (StatusCode, String) {
    (
        status,
        format!(
            "{{\"success\":false,\"error\":{},\"errorCode\":{},\"error_info\":\"Please check developers.pipedrive.com for more information about Pipedrive API.\",\"data\":null,\"additional_data\":null}}",
            serde_json::to_string(msg).unwrap_or_default(),
            status.as_u16()
        ),
    )
}

/// `x-token-cost` of a route (v2 list 10, archived deals 20, v1 list 20, single v1 GET 2,
/// field lists 10).
fn token_cost(rest: &str) -> u64 {
    if rest.starts_with("api/v2/deals/archived") {
        20
    } else if rest.starts_with("api/v1/users/me") {
        2
    } else if rest.starts_with("api/v1/") {
        20
    } else {
        10
    }
}

async fn handle(
    State(app): State<Arc<App>>,
    Path(rest): Path<String>,
    RawQuery(raw): RawQuery,
    method: axum::http::Method,
    headers: HeaderMap,
    payload: axum::body::Bytes,
) -> Response {
    let pd = &app.pipedrive;
    let draw = pd.faults.draw();
    if let Some(d) = draw.slow {
        tokio::time::sleep(d).await;
    }
    // Limits first: Cloudflare, daily budget, burst window.
    let (limit, remaining, reset, daily_left, daily_limit, verdict) = {
        let mut st = pd.st();
        if st.html_403 {
            return (
                StatusCode::FORBIDDEN,
                [(header::CONTENT_TYPE, "text/html; charset=UTF-8")],
                "<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title></head><body>Sorry, you have been blocked</body></html>",
            )
                .into_response();
        }
        let now = Instant::now();
        if now.duration_since(st.window.0) >= Duration::from_secs(2) {
            st.window = (now, 0);
        }
        let reset = 2u64
            .saturating_sub(now.duration_since(st.window.0).as_secs())
            .max(1);
        let cost = token_cost(&rest);
        let verdict = if st.daily.1 < cost {
            st.daily.1 = 0;
            Some(error(
                StatusCode::TOO_MANY_REQUESTS,
                "Daily token budget exceeded: the company's API token budget for today is spent",
            ))
        } else if st.window.1 >= st.burst_limit || draw.throttle {
            Some(error(StatusCode::TOO_MANY_REQUESTS, "Request over limit"))
        } else {
            st.window.1 += 1;
            st.daily.1 -= cost;
            None
        };
        let remaining = if verdict.is_some() {
            0
        } else {
            st.burst_limit - st.window.1
        };
        (
            st.burst_limit,
            remaining,
            reset,
            st.daily.1,
            st.daily.0,
            verdict,
        )
    };
    let rl = [
        ("x-ratelimit-limit", limit.to_string()),
        ("x-ratelimit-remaining", remaining.to_string()),
        ("x-ratelimit-reset", reset.to_string()),
        ("x-daily-ratelimit-token-limit", daily_limit.to_string()),
        ("x-daily-ratelimit-token-remaining", daily_left.to_string()),
        ("content-type", "application/json".to_string()),
    ];
    let reply = |(status, body): (StatusCode, String)| {
        let mut r = Response::builder().status(status);
        for (k, v) in &rl {
            r = r.header(*k, v.as_str());
        }
        r.body(Body::from(body))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    };
    if let Some(v) = verdict {
        return reply(v);
    }
    if let Some(code) = draw.server_error {
        return reply(error(
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "Internal server error (sandbox fault)",
        ));
    }
    // Auth: x-api-token, or a bearer token from the OAuth endpoint.
    let authed = {
        let mut st = pd.st();
        if let Some(t) = headers.get("x-api-token").and_then(|v| v.to_str().ok()) {
            t == API_TOKEN
        } else if let Some(b) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            let issued = st
                .tokens
                .get(b)
                .and_then(|exp| exp.checked_sub(pd.token_ttl));
            if draw.expire_token && issued.is_some_and(crate::sandbox::protection::expiry_hits) {
                st.tokens.remove(b);
            }
            st.tokens.get(b).is_some_and(|exp| *exp > Instant::now())
        } else {
            false
        }
    };
    if !authed {
        return reply(error(StatusCode::UNAUTHORIZED, "unauthorized access"));
    }
    let q = match parse_query(raw.as_deref()) {
        Ok(q) => q,
        Err(e) => return reply(error(StatusCode::BAD_REQUEST, &e)),
    };
    let (body, dropped) = if method == axum::http::Method::PATCH {
        let p = writes::patch(pd, &rest, &payload);
        (p.result, p.drop)
    } else {
        (route(pd, &rest, &q), false)
    };
    let (status, mut body) = match body {
        Ok(b) => (StatusCode::OK, b),
        Err((s, m)) => error(s, &m),
    };
    if dropped {
        // Applied, answer lost: the connection resets mid-body.
        let mut r = Response::builder().status(status);
        for (k, v) in &rl {
            r = r.header(*k, v.as_str());
        }
        return r
            .body(super::protection::truncated_body(body.into_bytes(), 0.5))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    if let Some(frac) = draw.reset {
        // A body cut short (what a dropped connection leaves behind).
        body.truncate((body.len() as f64 * frac) as usize);
        while !body.is_char_boundary(body.len()) {
            body.pop();
        }
    }
    reply((status, body))
}

fn route(pd: &Pipedrive, rest: &str, q: &ListQuery) -> Result<String, (StatusCode, String)> {
    let bad = |m: String| (StatusCode::BAD_REQUEST, m);
    let path = rest.trim_end_matches('/');
    if let Some(v2) = path.strip_prefix("api/v2/") {
        if v2 == "deals/products" {
            let (data, next) = pd.deal_products(q).map_err(bad)?;
            return Ok(envelope(&data, next));
        }
        if v2 == "deals/archived" {
            let q = ListQuery {
                archived: true,
                ..q.clone()
            };
            let (data, next) = pd.list(Kind::Deal, &q).map_err(bad)?;
            return Ok(envelope(&data, next));
        }
        for kind in Kind::ALL {
            if v2 == kind.plural() {
                let (data, next) = pd.list(kind, q).map_err(bad)?;
                return Ok(envelope(&data, next));
            }
            if v2 == format!("{}Fields", kind.singular()) {
                let (data, next) = pd.field_page(kind, q).map_err(bad)?;
                return Ok(envelope(&data, next));
            }
        }
        let small = |n: i64, f: fn(&mut String, i64)| {
            let mut out = String::new();
            for id in 1..=n {
                if id > 1 {
                    out.push(',');
                }
                f(&mut out, id);
            }
            envelope(&out, None)
        };
        match v2 {
            "pipelines" => return Ok(small(render::PIPELINES, render::pipeline)),
            "stages" => {
                return Ok(small(
                    render::PIPELINES * render::STAGES_PER_PIPELINE,
                    render::stage,
                ));
            }
            _ => {}
        }
    }
    match path {
        "api/v1/users" => {
            let st = pd.st();
            let d = pd.dims(&st);
            let n = d.users as usize;
            let start = q.start.min(n);
            let end = (start + q.limit).min(n);
            let mut out = String::new();
            for id in start..end {
                if id > start {
                    out.push(',');
                }
                render::user(&mut out, &d, id as i64 + 1);
            }
            Ok(format!(
                "{{\"success\":true,\"data\":[{out}],\"additional_data\":{{\"pagination\":{{\"start\":{start},\"limit\":{},\"more_items_in_collection\":{}{}}}}}}}",
                q.limit,
                end < n,
                if end < n { format!(",\"next_start\":{end}") } else { String::new() }
            ))
        }
        "api/v1/users/me" => Ok(
            "{\"success\":true,\"data\":{\"id\":1,\"name\":\"Sandbox Admin\",\"email\":\"admin@example.com\",\"company_id\":9,\"company_name\":\"Sandbox Co\",\"company_domain\":\"sandbox\"}}"
                .into(),
        ),
        _ => Err((StatusCode::NOT_FOUND, "Unknown method .".to_string())),
    }
}

/// OAuth token endpoint: refresh grant, Basic client authentication, rotating refresh tokens
/// (the last eight stay valid, a grace window for racing refreshes).
async fn token(State(app): State<Arc<App>>, headers: HeaderMap, body: String) -> Response {
    let pd = &app.pipedrive;
    let oauth_err = |status: StatusCode, e: &str, d: &str| {
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            format!("{{\"error\":\"{e}\",\"error_description\":\"{d}\"}}"),
        )
            .into_response()
    };
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(want.as_str())
    {
        return oauth_err(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Invalid client credentials",
        );
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return oauth_err(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only refresh_token",
        );
    }
    let mut st = pd.st();
    let given = form.get("refresh_token").cloned().unwrap_or_default();
    if given != st.refresh && !st.previous_refresh.contains(&given) {
        return oauth_err(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid refresh token",
        );
    }
    st.issued += 1;
    let access = format!("v1u:sandbox-access-{}", st.issued);
    let expiry = Instant::now() + pd.token_ttl;
    st.tokens.insert(access.clone(), expiry);
    if given == st.refresh {
        let new = format!("sandbox-refresh-{}", st.issued);
        let old = std::mem::replace(&mut st.refresh, new);
        st.previous_refresh.push(old);
        if st.previous_refresh.len() > 8 {
            st.previous_refresh.remove(0);
        }
    }
    let body = format!(
        "{{\"access_token\":\"{access}\",\"token_type\":\"Bearer\",\"refresh_token\":\"{}\",\"scope\":\"base,deals:read,contacts:read,products:read,users:read\",\"expires_in\":{},\"api_domain\":\"{}/pipedrive\"}}",
        st.refresh,
        pd.token_ttl.as_secs().max(1),
        app.base
    );
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn admin_mutate(State(app): State<Arc<App>>) -> Response {
    app.pipedrive.mutate();
    StatusCode::NO_CONTENT.into_response()
}

/// Body of `POST /_sandbox/pipedrive/rename-field`.
#[derive(serde::Deserialize)]
struct RenameField {
    entity: String,
    old_name: String,
    new_name: String,
}

/// Renames a custom field: 204, or 404 when the tenant has no custom field of that name.
async fn admin_rename_field(State(app): State<Arc<App>>, body: axum::body::Bytes) -> Response {
    let r: RenameField = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::json!({ "error": e.to_string() }).to_string(),
            )
                .into_response();
        }
    };
    if app
        .pipedrive
        .rename_custom_field(&r.entity, &r.old_name, &r.new_name)
    {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "error": format!("no custom field `{}` on {}", r.old_name, r.entity) })
                .to_string(),
        )
            .into_response()
    }
}

async fn admin_counts(State(app): State<Arc<App>>) -> Response {
    let st = app.pipedrive.st();
    let counts: serde_json::Map<String, serde_json::Value> = Kind::ALL
        .iter()
        .map(|k| (k.plural().to_string(), st.counts[k].into()))
        .collect();
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::Value::Object(counts).to_string(),
    )
        .into_response()
}

/// Routes of the Pipedrive fake.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/pipedrive/{*rest}", any(handle))
        .route("/pipedrive-oauth/oauth/token", post(token))
        .route(
            "/pipedrive/api/v1/webhooks",
            get(webhooks::list).post(webhooks::create),
        )
        .route(
            "/pipedrive/api/v1/webhooks/{id}",
            axum::routing::delete(webhooks::remove),
        )
        .route("/_sandbox/pipedrive/mutate", post(admin_mutate))
        .route("/_sandbox/pipedrive/counts", get(admin_counts))
        .route("/_sandbox/pipedrive/rename-field", post(admin_rename_field))
}

fn kind_of(entity: &str) -> Option<Kind> {
    Kind::ALL
        .into_iter()
        .find(|k| k.singular() == entity || k.plural() == entity)
}

/// Pipedrive controls for tests and the demo.
impl Sandbox {
    /// The tenant's truth for one pipedrive table (see [`Sandbox::truth`]): `deal` (archived
    /// deals included, deleted ones not), `organization`, `person`, `product`, `deal_product`
    /// (line items of those deals), `user`, `pipeline`, `stage`; each row exactly as the API
    /// renders it (nested `custom_fields` under 40-hex keys with raw values), in id order.
    pub(crate) fn pipedrive_truth(&self, entity: &str) -> Option<Vec<super::TruthRow>> {
        let pd = &self.app.pipedrive;
        let st = pd.st();
        let d = pd.dims(&st);
        let mut out = Vec::new();
        let mut push = |text: &str| {
            if let Ok(serde_json::Value::Object(m)) = serde_json::from_str(text) {
                out.push(m);
            }
        };
        let mut buf = String::new();
        match entity {
            "user" | "pipeline" | "stage" => {
                let n = match entity {
                    "user" => d.users,
                    "pipeline" => render::PIPELINES,
                    _ => render::PIPELINES * render::STAGES_PER_PIPELINE,
                };
                for id in 1..=n {
                    buf.clear();
                    match entity {
                        "user" => render::user(&mut buf, &d, id),
                        "pipeline" => render::pipeline(&mut buf, id),
                        _ => render::stage(&mut buf, id),
                    }
                    push(&buf);
                }
            }
            "deal_product" => {
                for id in 1..=st.counts[&Kind::Deal] {
                    let Some(r) = pd.row(&st, Kind::Deal, id).filter(|r| !r.deleted) else {
                        continue;
                    };
                    for k in 0..render::deal_product_count(&d, &r) {
                        buf.clear();
                        render::deal_product(&mut buf, &d, &r, k);
                        push(&buf);
                    }
                }
            }
            _ => {
                let kind = Kind::ALL.into_iter().find(|k| k.singular() == entity)?;
                for id in 1..=st.counts[&kind] {
                    let Some(r) = pd.row(&st, kind, id).filter(|r| !r.deleted) else {
                        continue;
                    };
                    buf.clear();
                    writes::record(&mut buf, &d, kind, &r, &st.writes);
                    push(&buf);
                }
            }
        }
        Some(out)
    }

    /// Renames the custom field of `entity` (`deal`, `person`, `organization`, `product`)
    /// now called `old_name`: same 40-hex key and values, a new `field_name` in the field
    /// definitions (what a company admin does in the app between two runs). `false` when the
    /// tenant has no such custom field.
    pub fn pipedrive_rename_custom_field(
        &self,
        entity: &str,
        old_name: &str,
        new_name: &str,
    ) -> bool {
        self.app
            .pipedrive
            .rename_custom_field(entity, old_name, new_name)
    }

    /// The next `n` updates (PATCH of a record) are applied, then their answers are dropped:
    /// the connection resets mid-body.
    pub fn pipedrive_drop_update_responses(&self, n: u32) {
        self.app.pipedrive.st().writes.drop_updates = n;
    }

    /// The next `n` updates (PATCH of a record) are answered 200 with Pipedrive's error
    /// envelope, `{"success": false, "error": …}` carrying [`crate::sandbox::ERROR_IN_2XX`];
    /// nothing is saved.
    pub fn pipedrive_error_in_2xx(&self, n: u32) {
        self.app.pipedrive.st().writes.error_in_2xx = n;
    }

    /// Every PATCH the Pipedrive fake received, in order.
    pub fn pipedrive_writes(&self) -> Vec<PdWriteLog> {
        self.app.pipedrive.st().writes.log.clone()
    }

    /// Body of an mlc.toml `[connections.X]` section using the API token, and the secrets to
    /// store in the vault.
    pub fn pipedrive_connection(&self) -> (String, Vec<(String, String)>) {
        (
            format!(
                "system = \"pipedrive\"\napi_url = \"{}/pipedrive\"\n",
                self.app.base
            ),
            vec![("api_token".into(), API_TOKEN.into())],
        )
    }

    /// The same account through OAuth (refresh grant; the token response names the API host).
    pub fn pipedrive_oauth_connection(&self) -> (String, Vec<(String, String)>) {
        let refresh = self.app.pipedrive.st().refresh.clone();
        (
            format!(
                "system = \"pipedrive\"\napi_url = \"{}/pipedrive-wrong-host\"\noauth_url = \"{}/pipedrive-oauth/oauth/token\"\nclient_id = \"{CLIENT_ID}\"\n",
                self.app.base, self.app.base
            ),
            vec![
                ("client_secret".into(), CLIENT_SECRET.into()),
                ("refresh_token".into(), refresh),
            ],
        )
    }

    /// Every webhook event is delivered `n` extra times (Pipedrive delivers at least once).
    pub fn pipedrive_webhook_duplicates(&self, n: u32) {
        self.app.pipedrive.hooks.set_duplicates(n);
    }

    /// Webhook deliveries carry `x-pipedrive-signature` (hex HMAC-SHA256 of the body).
    pub fn pipedrive_webhook_signing(&self, secret: Option<&str>) {
        self.app
            .pipedrive
            .hooks
            .set_signing(secret.map(str::to_string));
    }

    /// Webhook requests sent so far.
    pub fn pipedrive_webhooks_delivered(&self) -> u64 {
        self.app.pipedrive.hooks.delivered()
    }

    /// One mutation round on the Pipedrive fake only.
    pub fn pipedrive_mutate(&self) {
        self.app.pipedrive.mutate();
    }

    /// Rows per entity (ids ever issued).
    pub fn pipedrive_counts(&self) -> Vec<(String, i64)> {
        let st = self.app.pipedrive.st();
        Kind::ALL
            .iter()
            .map(|k| (k.singular().to_string(), st.counts[k]))
            .collect()
    }

    /// Live rows of `entity` (`deal`, `person`, `organization`, `product`, `deal_product`):
    /// (id, update_time RFC 3339), deleted rows excluded, in id order. Archived deals are live
    /// rows of the tenant (listed at `/deals/archived`, not `/deals`) and are included, with
    /// their line items.
    pub fn pipedrive_live_rows(&self, entity: &str) -> Vec<(i64, String)> {
        let pd = &self.app.pipedrive;
        let st = pd.st();
        let d = pd.dims(&st);
        let deal_products = entity == "deal_product";
        let Some(kind) = (if deal_products {
            Some(Kind::Deal)
        } else {
            kind_of(entity)
        }) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for id in 1..=st.counts[&kind] {
            let Some(r) = pd.row(&st, kind, id) else {
                continue;
            };
            if r.deleted {
                continue;
            }
            if deal_products {
                for k in 0..render::deal_product_count(&d, &r) {
                    out.push((id * 4 + k, render::ts(r.update_time)));
                }
            } else {
                out.push((id, render::ts(r.update_time)));
            }
        }
        out
    }

    /// Deletes the `entity` record `id` (someone removed it in Pipedrive): it leaves the
    /// lists, as Pipedrive's deleted items do. `false` when there is no such live record.
    pub fn pipedrive_delete(&self, entity: &str, id: i64) -> bool {
        let pd = &self.app.pipedrive;
        let Some(kind) = kind_of(entity) else {
            return false;
        };
        let mut st = pd.st();
        pd.touch(&mut st, kind, id, Change::Delete)
    }

    /// Requests allowed per 2-second window (default 400).
    pub fn pipedrive_set_burst_limit(&self, n: u32) {
        self.app.pipedrive.st().burst_limit = n.max(1);
    }

    /// Daily token budget left (the limit header keeps the original figure).
    pub fn pipedrive_set_daily_tokens(&self, remaining: u64) {
        self.app.pipedrive.st().daily.1 = remaining;
    }

    /// Cloudflare mode: every API call answers 403 with an HTML page.
    pub fn pipedrive_set_html_403(&self, on: bool) {
        self.app.pipedrive.st().html_403 = on;
    }

    /// Invalidates every issued access token (the next call gets 401 and must refresh).
    pub fn pipedrive_expire_tokens(&self) {
        self.app.pipedrive.st().tokens.clear();
    }

    /// Makes `count` existing rows of `entity` render an unreadable update_time (the decoder
    /// must quarantine them); returns their ids.
    pub fn pipedrive_poison(&self, entity: &str, count: usize) -> Vec<i64> {
        let Some(kind) = kind_of(entity) else {
            return Vec::new();
        };
        let mut st = self.app.pipedrive.st();
        let n = st.counts[&kind];
        let ids: Vec<i64> = (0..count as i64).map(|i| 1 + (i * 7919) % n).collect();
        for id in &ids {
            st.poisoned.insert((kind, *id));
        }
        ids
    }

    /// The 40-hex key of the tenant's custom field `i` of `entity` (in definition order), for
    /// tests.
    pub fn pipedrive_custom_field_key(&self, entity: &str, i: usize) -> Option<String> {
        let pd = &self.app.pipedrive;
        let kind = kind_of(entity)?;
        let f = fields::custom_fields(kind, pd.tenant).nth(i)?;
        Some(fields::field_key(pd.seed, kind, f.slot))
    }
}

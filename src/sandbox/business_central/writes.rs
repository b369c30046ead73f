//! Writes to the Business Central fake (reference: shared/reference/dataverse-business-central.md
//! B3, B6, B9):
//!
//! ```text
//! POST   companies({c})/{customers|contacts|items}             201 + entity + Location
//! POST   companies({c})/{salesOrders|salesInvoices}            201, deep insert of lines
//! PATCH  companies({c})/{set}({id})   If-Match: etag | *       200 + entity (new etag)
//! DELETE companies({c})/{set}({id})   If-Match: etag | *       204
//! POST   companies({c})/salesInvoices({id})/Microsoft.NAV.post 204, status Draft → Open
//! POST   companies({c})/{salesOrders|salesInvoices}({id})/{lines}  201, one more line
//! POST   companies({c})/salesOrders({id})/Microsoft.NAV.shipAndInvoice 204: a posted invoice
//! GET    companies({c})/{salesOrders|salesInvoices}({id})/{lines}   the document's lines
//! ```
//!
//! `{set}` for PATCH is any of the five above or a line set (`salesOrderLines({id})`, totals
//! follow); DELETE takes the five above. Other entity sets, and writes through the older
//! `{set}?company=` form, answer 405. `PATCH` of a document's `customerId`/`customerNumber`
//! brings the customer's number and name along; lines in a PATCH of the document are refused
//! (PATCH or POST the lines).
//!
//! Rows stay implicit: a write puts the row's [`Meta`](super::store::Meta) (new revision, so a
//! new etag, and a modified time from the store's write clock) and saves the values sent in
//! [`Saved`](super::saved::Saved), which override the generated ones when rendering. A created
//! row saves every field (blanks BC-style for those not sent) so nothing random shows through.
//! Equality `$filter`s are answered by [`search`]: API-written values are indexed as saved,
//! generated values are indexed lazily per (company, set, field) over untouched rows (they
//! never change), and changed rows, and rows whose FlowField moved, are checked one by one.
//! Enum properties take their `$metadata` member names only (`_x0020_`, not `" "`), as under
//! OData schema 2.0.
//!
//! Layout: this file takes the requests (routing, If-Match, creates and updates of master data,
//! the write log); `search.rs` answers equality filters; `documents.rs` does sales documents.
//!
//! Assumptions where the reference is silent [ASSUMPTION]:
//! - read-only properties sent on create or update (`id`, `lastModifiedDateTime`, `balanceDue`,
//!   totals, `status`, line amounts…) are ignored, not refused;
//! - an unknown property is a 400 `BadRequest` with OData's message ("The property 'x' does not
//!   exist on type 'Microsoft.NAV.customer'. …"); a value of the wrong JSON type is a 400
//!   `BadRequest` ("Cannot convert the literal …");
//! - `displayName` is required on customers, contacts and items (400
//!   `Application_FieldValidationException`);
//! - a duplicate `number` is 400 `Internal_EntityWithSameKeyExists`;
//! - `If-Match` is compared verbatim with the current `@odata.etag` (`*` matches any); missing
//!   → 400 `BadRequest_InvalidToken`, stale → 409 `Request_EntityChanged` (reference B6);
//! - an unknown id in the URL → 404 `Internal_RecordNotFound`; an unknown customer or item in
//!   a body → 400 `Internal_RecordNotFound` and nothing is saved;
//! - documents: tax is 0, the header `discountAmount` is the sum of the line discounts, dates
//!   default to today (UTC), at most 8 lines ([`LINE_SLOTS`], a sandbox limit), line types
//!   `Item` and `Comment` only; posting keeps the draft's number and sets status `Open` and
//!   `remainingAmount`; a posted (non-`Draft`) invoice or its lines refuse changes with 400
//!   `Application_DialogException`; `shipAndInvoice` ships and invoices the whole order: a new
//!   posted invoice (status `Open`, `orderId`/`orderNumber` set, lines copied) and the order is
//!   deleted, as BC deletes a fully invoiced order;
//! - string equality in `$filter` is case-insensitive (SQL collation); equality results page
//!   like any read (`$skiptoken` after the last row); on tables of more than 200000 untouched
//!   rows only changed and written rows are searched (a sandbox limit).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, PoisonError};

use serde_json::{Map, Number, Value};

use super::entities::Entity;
use super::query::{After, Order, Reject, Times, tokenize, unknown_property};
use super::render::{self, RowCtx};
use super::saved::{BcWriteLog, ValueIndex, norm};
use super::schema;
use super::set::{LINE_SLOTS, Set};
use super::store::{Meta, Row, Store, initial_lines, initial_modified};
use super::{BusinessCentral, Reply, company_id};
use crate::sandbox::json;

mod documents;
mod search;

pub use documents::nested_lines;
use documents::*;
use search::*;
pub use search::{search, split_filter};

/// Above this many untouched rows, generated values are not indexed (nor searched).
const INDEX_LIMIT: u64 = 200_000;
/// Properties a client cannot set (ignored when sent).
const READ_ONLY: &[&str] = &[
    "id",
    "lastModifiedDateTime",
    "balanceDue",
    "balance",
    "status",
    "customerName",
    "billToName",
    "totalAmountExcludingTax",
    "totalTaxAmount",
    "totalAmountIncludingTax",
    "remainingAmount",
    "amountExcludingTax",
    "amountIncludingTax",
    "netAmount",
    "netTaxAmount",
    "netAmountIncludingTax",
    "totalTaxAmount",
    "taxPercent",
    "documentId",
    "shippedQuantity",
    "invoicedQuantity",
];

/// What a write request asks for.
pub struct Request<'a> {
    pub root: &'a str,
    pub method: &'a str,
    /// The path after `api/v2.0/`.
    pub rest: &'a str,
    pub if_match: Option<String>,
    pub body: &'a [u8],
}

/// The answer, and whether it must be dropped mid-body.
pub struct Answer {
    pub reply: Reply,
    pub drop: bool,
}

fn reject(status: u16, code: &'static str, message: impl Into<String>) -> Reject {
    Reject {
        status,
        code,
        message: message.into(),
    }
}

fn not_found(set: Set, id: &str) -> Reject {
    reject(
        404,
        "Internal_RecordNotFound",
        format!(
            "The {} does not exist. Identification fields and values: Id='{id}'",
            set.type_name()
        ),
    )
}

fn not_allowed(method: &str) -> Reject {
    reject(
        405,
        "BadRequest_MethodNotAllowed",
        format!("'{method}' is not allowed on this resource."),
    )
}

/// The parsed target of a write: company, set, row id, bound action / navigation.
struct Target<'a> {
    company: usize,
    set: Set,
    id: Option<&'a str>,
    tail: Option<&'a str>,
}

fn target(rest: &str) -> Result<Target<'_>, Reject> {
    let bad = || reject(400, "BadRequest", "Bad Request - Error in query syntax.");
    let after = rest.strip_prefix("companies(").ok_or_else(|| {
        reject(
            405,
            "BadRequest_MethodNotAllowed",
            "Writes need companies({id})/… in the sandbox.",
        )
    })?;
    let (cid, path) = after.split_once(')').ok_or_else(bad)?;
    let company = super::find_company(cid).ok_or_else(|| {
        reject(
            404,
            "Internal_CompanyNotFound",
            format!("The company '{cid}' does not exist."),
        )
    })?;
    let path = path.trim_start_matches('/');
    let (head, tail) = match path.split_once('/') {
        Some((h, t)) => (h, Some(t)),
        None => (path, None),
    };
    let (name, id) = match head.split_once('(') {
        Some((n, id)) => (n, Some(id.strip_suffix(')').ok_or_else(bad)?)),
        None => (head, None),
    };
    let set = Set::from_name(name).ok_or_else(|| {
        reject(
            404,
            "BadRequest_NotFound",
            format!("No HTTP resource was found that matches the request URI '{rest}'."),
        )
    })?;
    Ok(Target {
        company,
        set,
        id,
        tail,
    })
}

/// The lines navigation property of a document set.
fn lines_of(set: Set) -> Option<(Set, &'static str)> {
    match set {
        Set::SalesOrders => Some((Set::SalesOrderLines, "salesOrderLines")),
        Set::SalesInvoices => Some((Set::SalesInvoiceLines, "salesInvoiceLines")),
        _ => None,
    }
}

/// The live row behind `id` in the URL.
fn find_row(store: &Store, company: usize, set: Set, id: &str) -> Result<Row, Reject> {
    json::parse_guid(id.trim_matches('\''))
        .filter(|(code, _)| *code == set.code(company))
        .and_then(|(_, o)| store.live(company, set, o))
        .ok_or_else(|| not_found(set, id))
}

/// A write request (POST, PATCH, DELETE); logs it.
pub fn write(bc: &BusinessCentral, req: &Request) -> Answer {
    let mut store = bc.store_mut();
    let fields: Value = serde_json::from_slice(req.body).unwrap_or(Value::Null);
    let (set_label, company) = match target(req.rest) {
        Ok(t) => (
            match t.tail {
                Some(tail) => format!("{}/{tail}", t.set.name()),
                None => t.set.name().to_string(),
            },
            company_id(t.company),
        ),
        Err(_) => (req.rest.to_string(), String::new()),
    };
    // Fault: the status a success would have (201 for a create), an OData error as the body,
    // nothing saved.
    let result = if store.writes.error_in_2xx > 0 && matches!(req.method, "POST" | "PATCH") {
        store.writes.error_in_2xx -= 1;
        let creating = req.method == "POST" && target(req.rest).is_ok_and(|t| t.id.is_none());
        Err(reject(
            if creating { 201 } else { 200 },
            "Internal_ServerError",
            crate::sandbox::ERROR_IN_2XX,
        ))
    } else {
        route(bc, &mut store, req)
    };
    let error_in_2xx = matches!(&result, Err(r) if r.status < 300);
    let (reply, id, drop) = match result {
        Ok((reply, id)) => {
            let drop = req.method == "POST" && reply.status == 201 && store.writes.drop_creates > 0;
            if drop {
                store.writes.drop_creates -= 1;
            }
            (reply, id, drop)
        }
        Err(r) => (Reply::from(r), None, false),
    };
    store.writes.log.push(BcWriteLog {
        method: req.method.to_string(),
        set: set_label,
        company,
        id,
        status: reply.status,
        fields,
        if_match: req.if_match.clone(),
        dropped: drop,
        error_in_2xx,
    });
    Answer { reply, drop }
}

type Done = Result<(Reply, Option<String>), Reject>;

/// `204 No Content` for a write to row `ordinal` of `set` (the id goes to the write log).
fn no_content(set: Set, company: usize, ordinal: u64) -> Done {
    let mut r = Reply::json(Vec::new());
    r.status = 204;
    Ok((r, Some(json::guid_string(set.code(company), ordinal))))
}

fn route(bc: &BusinessCentral, store: &mut Store, req: &Request) -> Done {
    let t = target(req.rest)?;
    // An entity set this tenant does not have is not found, as for a GET.
    let ent = bc.entity(t.set).ok_or_else(|| {
        reject(
            404,
            "BadRequest_NotFound",
            format!(
                "No HTTP resource was found that matches the request URI '{}'.",
                req.rest
            ),
        )
    })?;
    let writable = matches!(
        t.set,
        Set::Customers | Set::Contacts | Set::Items | Set::SalesOrders | Set::SalesInvoices
    );
    match (req.method, t.id, t.tail) {
        ("POST", None, None) if writable => {
            let body = object(req.body)?;
            if lines_of(t.set).is_some() {
                create_document(bc, store, req.root, t.company, ent, body)
            } else {
                create(store, req.root, t.company, ent, body)
            }
        }
        ("POST", Some(id), Some(nav)) if lines_of(t.set).is_some_and(|(_, n)| n == nav) => {
            let body = object(req.body)?;
            add_line(bc, store, req.root, t.company, t.set, id, &body)
        }
        ("POST", Some(id), Some("Microsoft.NAV.shipAndInvoice")) if t.set == Set::SalesOrders => {
            ship_and_invoice(bc, store, t.company, ent, id, req.if_match.as_deref())
        }
        ("POST", Some(id), Some("Microsoft.NAV.post")) if t.set == Set::SalesInvoices => {
            post_invoice(bc, store, t.company, ent, id, req.if_match.as_deref())
        }
        ("PATCH", Some(id), None) if writable || t.set.header().is_some() => {
            let body = object(req.body)?;
            update(
                bc,
                store,
                req.root,
                t.company,
                ent,
                id,
                req.if_match.as_deref(),
                body,
            )
        }
        ("DELETE", Some(id), None) if writable => {
            delete(bc, store, t.company, ent, id, req.if_match.as_deref())
        }
        _ => Err(not_allowed(req.method)),
    }
}

fn object(body: &[u8]) -> Result<Map<String, Value>, Reject> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Reject::bad("The request body must be a JSON object.")),
        Err(e) => Err(Reject::bad(format!(
            "The request body is not valid JSON: {e}."
        ))),
    }
}

/// Checks `body` against the entity: unknown properties refused, read-only ones dropped,
/// types checked; `nav` names a navigation property allowed in the body (deep insert).
fn clean(
    ent: &Entity,
    body: &Map<String, Value>,
    nav: Option<&str>,
) -> Result<Map<String, Value>, Reject> {
    let mut out = Map::new();
    for (k, v) in body {
        if Some(k.as_str()) == nav || k.starts_with("@odata.") || structural(ent.set, k) {
            continue;
        }
        let Some(i) = ent.field(k) else {
            return Err(Reject::bad(format!(
                "The property '{k}' does not exist on type 'Microsoft.NAV.{}'. Make sure to only use property names that are defined by the type or mark the type as open type.",
                ent.set.type_name()
            )));
        };
        if READ_ONLY.contains(&k.as_str()) {
            continue;
        }
        let edm = ent.fields[i].edm;
        let ok = match (edm, v) {
            (_, Value::Null) => false,
            ("Edm.Decimal" | "Edm.Double" | "Edm.Int32" | "Edm.Int64", Value::Number(_)) => true,
            ("Edm.Boolean", Value::Bool(_)) => true,
            ("Edm.Guid", Value::String(s)) => uuid_like(s),
            ("Edm.Date", Value::String(s)) => {
                chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
            }
            ("Edm.DateTimeOffset", Value::String(s)) => {
                chrono::DateTime::parse_from_rfc3339(s).is_ok()
            }
            ("Edm.String", Value::String(_)) => true,
            (ty, Value::String(s)) => {
                schema::enum_type(ty).is_some_and(|e| e.members.iter().any(|m| m.0 == s))
            }
            _ => false,
        };
        if !ok {
            return Err(Reject::bad(format!(
                "Cannot convert the literal '{}' to the expected type '{edm}'.",
                v.to_string().trim_matches('"')
            )));
        }
        // A text longer than the field takes is refused, as `$metadata`'s MaxLength says.
        if let (Some(max), Value::String(s)) = (ent.fields[i].max_len, v)
            && s.chars().count() > usize::from(max)
        {
            return Err(reject(
                400,
                "Application_StringExceededLength",
                format!(
                    "The length of the string is {}, but it must be less than or equal to {max} characters. Value: {s}",
                    s.chars().count()
                ),
            ));
        }
        out.insert(k.clone(), v.clone());
    }
    Ok(out)
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// A BC blank of each type: `""`, `0`, `false`, the empty GUID, `0001-01-01`, an enum's
/// member of value 0.
fn blank(edm: &str) -> Value {
    if let Some(e) = schema::enum_type(edm) {
        let m = e.members.iter().find(|m| m.1 == 0).or(e.members.first());
        return Value::from(m.map_or("", |m| m.0));
    }
    match edm {
        "Edm.Decimal" | "Edm.Double" | "Edm.Int32" | "Edm.Int64" => Value::from(0),
        "Edm.Boolean" => Value::Bool(false),
        "Edm.Guid" => Value::from("00000000-0000-0000-0000-000000000000"),
        "Edm.Date" => Value::from("0001-01-01"),
        "Edm.DateTimeOffset" => Value::from("0001-01-01T00:00:00Z"),
        _ => Value::from(""),
    }
}

/// Fields a row's identity generates (never saved).
fn structural(set: Set, name: &str) -> bool {
    name == "id"
        || name == "lastModifiedDateTime"
        || (set.header().is_some() && (name == "documentId" || name == "sequence"))
}

/// Every field of `ent` blank except the structural ones.
fn blanks(ent: &Entity) -> Map<String, Value> {
    ent.fields
        .iter()
        .filter(|f| !structural(ent.set, &f.name))
        .map(|f| (f.name.clone(), blank(f.edm)))
        .collect()
}

/// The rows of `set` whose `field` equals `value` (normalised).
fn find_eq(store: &Store, ent: &Entity, company: usize, field: &str, value: &Value) -> Vec<Row> {
    let Some(i) = ent.field(field) else {
        return Vec::new();
    };
    search(
        store,
        ent,
        company,
        &[(i, norm(value))],
        &Times::all(),
        Order::Key,
        None,
        16,
    )
}

/// A `number` from the set's series not used yet.
fn series_number(store: &Store, ent: &Entity, company: usize, o: u64) -> String {
    let base = match ent.set {
        Set::Items => format!("{}-S", 1000 + o),
        s => format!("{}{}", s.number_prefix(), 10000 + o),
    };
    let mut n = base.clone();
    let mut k = 1;
    while !find_eq(store, ent, company, "number", &Value::from(n.clone())).is_empty() {
        n = format!("{base}-{k}");
        k += 1;
    }
    n
}

fn duplicate(ent: &Entity, number: &str) -> Reject {
    reject(
        400,
        "Internal_EntityWithSameKeyExists",
        format!(
            "The record in table {} already exists. Identification fields and values: No.='{number}'",
            ent.set.type_name()
        ),
    )
}

/// Allocates a new row of a header or master set and puts its metadata.
fn insert_row(store: &mut Store, company: usize, set: Set) -> (u64, i64) {
    let t = &mut store.tables[company][set.index()];
    t.next += 1;
    let o = t.next - 1;
    let ms = store.write_clock();
    store.put(
        company,
        set,
        o,
        Meta {
            modified_ms: ms,
            revision: 0,
            deleted: false,
            inserted: true,
            poisoned: false,
        },
    );
    (o, ms)
}

/// Bumps a row's revision (new etag) and modified time.
fn touch(store: &mut Store, company: usize, set: Set, row: Row) {
    let inserted = store
        .table(company, set)
        .changed
        .get(&row.ordinal)
        .is_some_and(|m| m.inserted);
    let ms = if set.has_modified() {
        store.write_clock()
    } else {
        0
    };
    store.put(
        company,
        set,
        row.ordinal,
        Meta {
            modified_ms: ms,
            revision: row.revision + 1,
            deleted: false,
            inserted,
            poisoned: false,
        },
    );
}

/// The entity as the API answers it: `@odata.context`, then every field.
fn entity_reply(store: &Store, root: &str, company: usize, ent: &Entity, o: u64) -> Reply {
    let Some(row) = store.live(company, ent.set, o) else {
        return Reply::from(not_found(
            ent.set,
            &json::guid_string(ent.set.code(company), o),
        ));
    };
    let mut out = Vec::new();
    let all: Vec<usize> = (0..ent.fields.len()).collect();
    render::write_row(
        &mut out,
        ent,
        &RowCtx::new(store, company, ent.set, row),
        &all,
    );
    let mut body = format!(
        "{{\"@odata.context\":\"{root}$metadata#companies({})/{}/$entity\",",
        company_id(company),
        ent.set.name()
    )
    .into_bytes();
    body.extend_from_slice(&out[1..]);
    Reply::json(body)
}

fn location(root: &str, company: usize, set: Set, o: u64) -> String {
    format!(
        "{root}companies({})/{}({})",
        company_id(company),
        set.name(),
        json::guid_string(set.code(company), o)
    )
}

/// `POST customers|contacts|items`.
fn create(
    store: &mut Store,
    root: &str,
    company: usize,
    ent: &Entity,
    body: Map<String, Value>,
) -> Done {
    let fields = clean(ent, &body, None)?;
    let name_ok = fields
        .get("displayName")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.trim().is_empty());
    if !name_ok {
        return Err(reject(
            400,
            "Application_FieldValidationException",
            format!(
                "displayName must have a value in {}. It cannot be zero or empty.",
                ent.set.type_name()
            ),
        ));
    }
    if let Some(n) = fields.get("number")
        && !find_eq(store, ent, company, "number", n).is_empty()
    {
        return Err(duplicate(ent, n.as_str().unwrap_or_default()));
    }
    let next = store.table(company, ent.set).next;
    let number = match fields.get("number") {
        Some(n) => n.clone(),
        None => Value::from(series_number(store, ent, company, next)),
    };
    let mut saved = blanks(ent);
    for (name, v) in defaults(ent.set) {
        if ent.field(name).is_some() {
            saved.insert(name.to_string(), v);
        }
    }
    saved.extend(fields);
    saved.insert("number".into(), number);
    let (o, _) = insert_row(store, company, ent.set);
    store.writes.save(company, ent.set, o, saved);
    let id = json::guid_string(ent.set.code(company), o);
    let mut reply = entity_reply(store, root, company, ent, o)
        .header("location", location(root, company, ent.set, o));
    reply.status = 201;
    Ok((reply, Some(id)))
}

/// Non-blank defaults of a new row, as BC's templates give them [ASSUMPTION].
fn defaults(set: Set) -> Vec<(&'static str, Value)> {
    match set {
        Set::Customers => vec![("type", "Company".into()), ("blocked", "_x0020_".into())],
        Set::Contacts => vec![("type", "Person".into())],
        Set::Items => vec![
            ("type", "Inventory".into()),
            ("baseUnitOfMeasureCode", "PCS".into()),
        ],
        _ => Vec::new(),
    }
}

/// `If-Match` against the row's etag: missing → 400, stale → 409.
fn check_etag(
    store: &Store,
    ent: &Entity,
    company: usize,
    row: Row,
    if_match: Option<&str>,
) -> Result<(), Reject> {
    let Some(m) = if_match.map(str::trim) else {
        return Err(reject(
            400,
            "BadRequest_InvalidToken",
            "Could not validate the client concurrency token required by the service. Please provide a valid token in the client request.",
        ));
    };
    if m == "*" || m == etag_of(store, ent, company, row) {
        return Ok(());
    }
    Err(reject(
        409,
        "Request_EntityChanged",
        "Another user has already changed the record.",
    ))
}

fn posted_error(what: &str) -> Reject {
    reject(
        400,
        "Application_DialogException",
        format!("The {what} has been posted and cannot be changed."),
    )
}

/// Whether a document is no longer a draft (a posted invoice).
fn is_posted(store: &Store, bc: &BusinessCentral, company: usize, set: Set, row: Row) -> bool {
    if set != Set::SalesInvoices {
        return false;
    }
    let Some(ent) = bc.entity(set) else {
        return false;
    };
    let Some(i) = ent.field("status") else {
        return false;
    };
    field_value(store, ent, company, row, i) != "Draft"
}

/// `PATCH {set}({id})`: only the fields sent change.
#[allow(clippy::too_many_arguments)]
fn update(
    bc: &BusinessCentral,
    store: &mut Store,
    root: &str,
    company: usize,
    ent: &Entity,
    id: &str,
    if_match: Option<&str>,
    body: Map<String, Value>,
) -> Done {
    let row = find_row(store, company, ent.set, id)?;
    check_etag(store, ent, company, row, if_match)?;
    let header = match ent.set.header() {
        Some(h) => Some((
            h,
            store
                .live(company, h, row.ordinal / LINE_SLOTS)
                .ok_or_else(|| not_found(ent.set, id))?,
        )),
        None => None,
    };
    if let Some((h, doc)) = header
        && is_posted(store, bc, company, h, doc)
    {
        return Err(posted_error("sales invoice"));
    }
    if is_posted(store, bc, company, ent.set, row) {
        return Err(posted_error("sales invoice"));
    }
    let nav = lines_of(ent.set).map(|(_, n)| n);
    let mut fields = clean(ent, &body, nav)?;
    if nav.is_some_and(|n| body.contains_key(n)) {
        return Err(Reject::bad(
            "Lines cannot be changed through a PATCH of the document; PATCH the lines.",
        ));
    }
    if let Some(n) = fields.get("number")
        && find_eq(store, ent, company, "number", n)
            .iter()
            .any(|r| r.ordinal != row.ordinal)
    {
        return Err(duplicate(ent, n.as_str().unwrap_or_default()));
    }
    if lines_of(ent.set).is_some() {
        // A new customer brings its number and name along.
        if let Some(c) = resolve(
            store,
            bc,
            company,
            Set::Customers,
            body.get("customerId"),
            body.get("customerNumber"),
        )? {
            let cent = bc
                .entity(Set::Customers)
                .ok_or_else(|| not_allowed("PATCH"))?;
            let cust = current(store, cent, company, c, &["id", "number", "displayName"]);
            for (k, ck) in [
                ("customerId", "id"),
                ("customerNumber", "number"),
                ("customerName", "displayName"),
            ] {
                fields.insert(k.into(), cust[ck].clone());
            }
        }
    }
    if let Some((h, doc)) = header {
        // A line: recompute its amounts, then the document's totals.
        let mut line = current(store, ent, company, row, LINE_AMOUNT_INPUTS);
        line.extend(fields.clone());
        fields.extend(line_amounts(&line, body.contains_key("discountAmount")));
        touch(store, company, ent.set, row);
        store.writes.save(company, ent.set, row.ordinal, fields);
        recompute_totals(bc, store, company, h, doc.ordinal);
    } else {
        touch(store, company, ent.set, row);
        store.writes.save(company, ent.set, row.ordinal, fields);
    }
    let reply = entity_reply(store, root, company, ent, row.ordinal);
    Ok((
        reply,
        Some(json::guid_string(ent.set.code(company), row.ordinal)),
    ))
}

/// `DELETE {set}({id})`.
fn delete(
    bc: &BusinessCentral,
    store: &mut Store,
    company: usize,
    ent: &Entity,
    id: &str,
    if_match: Option<&str>,
) -> Done {
    let row = find_row(store, company, ent.set, id)?;
    check_etag(store, ent, company, row, if_match)?;
    if is_posted(store, bc, company, ent.set, row) {
        return Err(posted_error("sales invoice"));
    }
    let ms = if ent.set.has_modified() {
        store.write_clock()
    } else {
        0
    };
    store.put(
        company,
        ent.set,
        row.ordinal,
        Meta {
            modified_ms: ms,
            revision: row.revision,
            deleted: true,
            inserted: false,
            poisoned: false,
        },
    );
    no_content(ent.set, company, row.ordinal)
}

/// Saves `value` into `field` of a row as another BC user would (new revision and etag, not
/// logged). Errors are messages for the test that called it.
pub fn set_field(
    bc: &BusinessCentral,
    company: usize,
    set: Set,
    id: &str,
    field: &str,
    value: Value,
) -> Result<(), String> {
    let ent = bc.entity(set).ok_or("entity set not served")?;
    if ent.field(field).is_none() || structural(set, field) {
        return Err(format!(
            "`{field}` is not a settable property of {}",
            set.name()
        ));
    }
    let mut store = bc.store_mut();
    let row = find_row(&store, company, set, id).map_err(|r| r.message)?;
    touch(&mut store, company, set, row);
    let mut m = Map::new();
    m.insert(field.to_string(), value);
    store.writes.save(company, set, row.ordinal, m);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_split_into_equalities_and_time_ranges() {
        let ent = Entity::load(Set::Customers, crate::sandbox::Tenant::Standard).unwrap();
        let (rest, eqs) = split_filter(
            &ent,
            "displayName eq 'O''Brien  Ltd' and lastModifiedDateTime gt 2025-01-01T00:00:00Z and creditLimit eq 10.50",
        )
        .unwrap();
        assert_eq!(rest, "lastModifiedDateTime gt 2025-01-01T00:00:00Z");
        let name = ent.field("displayName").unwrap();
        let credit = ent.field("creditLimit").unwrap();
        assert_eq!(
            eqs,
            vec![
                (name, "o'brien  ltd".to_string()),
                (credit, "10.5".to_string())
            ]
        );
        // A top-level `or` is left to the time parser (which refuses other fields).
        let (rest, eqs) = split_filter(&ent, "number eq '1' or number eq '2'").unwrap();
        assert_eq!(rest, "number eq '1' or number eq '2'");
        assert!(eqs.is_empty());
        assert!(split_filter(&ent, "nope eq 'x'").is_err());
        let (rest, eqs) = split_filter(&ent, "(number eq 'C10001') and city eq 'Oslo'").unwrap();
        assert_eq!((rest.as_str(), eqs.len()), ("", 2));
    }

    #[test]
    fn line_amounts_follow_percent_unless_an_amount_is_sent() {
        let mut l = Map::new();
        l.insert("quantity".into(), Value::from(2));
        l.insert("unitPrice".into(), Value::from(10.5));
        l.insert("discountPercent".into(), Value::from(10));
        l.insert("discountAmount".into(), Value::from(99));
        let a = line_amounts(&l, false);
        assert_eq!(a["amountExcludingTax"].as_f64(), Some(18.9));
        assert_eq!(a["discountAmount"].as_f64(), Some(2.1));
        l.insert("discountAmount".into(), Value::from(1));
        let a = line_amounts(&l, true);
        assert_eq!(a["amountExcludingTax"].as_f64(), Some(20.0));
    }
}

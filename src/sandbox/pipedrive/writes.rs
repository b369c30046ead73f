//! Updates to the Pipedrive fake: `PATCH /api/v2/{organizations|persons|products}/{id}` (v2
//! renamed v1's `PUT`; shared/reference/deltek-pipedrive-looker.md, request bodies from the v2
//! OpenAPI in shared/specs/pipedrive/v2.yaml).
//!
//! A PATCH saves the fields sent ([`PdSaved`]), which override the generated ones when the row
//! is rendered, and stamps the row with a new `update_time` (so the next incremental read,
//! `updated_since` or `sort_by=update_time`, returns it). The row keeps its revision: fields not
//! sent keep their values. The answer is the v2 envelope `{"success":true,"data":{…}}` with
//! the whole updated record. Every PATCH is logged ([`PdWriteLog`]). Faults: an update applied
//! whose answer is dropped mid-body (`drop_updates`), and one answered 200 with
//! `{"success": false, "error": …}` that saves nothing (`error_in_2xx`).
//!
//! Assumptions [ASSUMPTION]:
//! - a property not in the v2 request schema of the entity is a 400 (`success:false`);
//!   an empty body is a 400 too;
//! - `address` (organizations), `emails`/`phones` (persons) and `prices` (products) replace the
//!   whole value; each price needs `price` and `currency` (`product_id` is filled in);
//!   `custom_fields` merges by key, and a key that is not a field of the entity is a 400;
//! - an unknown or deleted id is a 404 `"… not found"`.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::super::options::Tenant;
use super::fields;
use super::kind::Kind;
use super::render::{self, Dims, Row};
use super::{Inner, Meta, Pipedrive};
use axum::http::StatusCode;

/// One write the fake received (a PATCH of a record, a POST of a webhook).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PdWriteLog {
    pub method: String,
    /// `organizations`, `persons`, `products`, `webhooks`.
    pub entity: String,
    pub id: i64,
    pub status: u16,
    /// The JSON body as sent.
    pub fields: Value,
    /// The update was applied but its answer dropped (connection reset mid-body; fault).
    pub dropped: bool,
    /// Answered 200 with `{"success": false, "error": …}`, nothing saved (fault).
    pub error_in_2xx: bool,
}

/// Values saved through the API (they override generated ones) and the write log.
#[derive(Debug, Default)]
pub struct PdSaved {
    rows: HashMap<(Kind, i64), Map<String, Value>>,
    pub log: Vec<PdWriteLog>,
    /// The next N updates are applied and their answers dropped mid-body.
    pub drop_updates: u32,
    /// The next N updates are answered 200 with `{"success": false, "error": …}` and nothing
    /// is saved.
    pub error_in_2xx: u32,
}

/// Properties a v2 PATCH takes, per entity (the OpenAPI request schemas).
fn writable(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Org => &[
            "name",
            "owner_id",
            "visible_to",
            "label_ids",
            "address",
            "website",
            "linkedin",
            "industry",
            "annual_revenue",
            "employee_count",
            "custom_fields",
        ],
        Kind::Person => &[
            "name",
            "owner_id",
            "org_id",
            "emails",
            "phones",
            "visible_to",
            "label_ids",
            "postal_address",
            "notes",
            "im",
            "birthday",
            "job_title",
            "marketing_status",
            "custom_fields",
        ],
        Kind::Product => &[
            "name",
            "code",
            "description",
            "unit",
            "tax",
            "category",
            "owner_id",
            "is_linkable",
            "visible_to",
            "prices",
            "custom_fields",
            "billing_frequency",
            "billing_frequency_cycles",
        ],
        Kind::Deal => &[],
    }
}

/// Renders one record, with saved values over generated ones. Rows never written render
/// straight (one map lookup when anything was written, none otherwise).
pub fn record(out: &mut String, d: &Dims, kind: Kind, r: &Row, saved: &PdSaved) {
    let over = if saved.rows.is_empty() {
        None
    } else {
        saved.rows.get(&(kind, r.id))
    };
    let Some(over) = over else {
        return render::record(out, d, kind, r);
    };
    let mut own = String::new();
    render::record(&mut own, d, kind, r);
    let Ok(Value::Object(mut v)) = serde_json::from_str::<Value>(&own) else {
        out.push_str(&own);
        return;
    };
    for (k, val) in over {
        match (k.as_str(), v.get_mut(k), val) {
            ("custom_fields", Some(Value::Object(cur)), Value::Object(new)) => {
                cur.extend(new.clone());
            }
            _ => {
                v.insert(k.clone(), val.clone());
            }
        }
    }
    out.push_str(&Value::Object(v).to_string());
}

fn kind_of(plural: &str) -> Option<Kind> {
    [Kind::Org, Kind::Person, Kind::Product]
        .into_iter()
        .find(|k| k.plural() == plural)
}

type Failure = (StatusCode, String);

/// The answer to a PATCH, and whether it must be dropped mid-body (applied, answer lost).
pub struct Patched {
    pub result: Result<String, Failure>,
    pub drop: bool,
}

/// `PATCH api/v2/{entity}/{id}`: the v2 envelope with the updated record, or an error (a
/// `success: false` envelope; with a 200 status when the `error_in_2xx` fault is armed).
pub fn patch(pd: &Pipedrive, rest: &str, body: &[u8]) -> Patched {
    let path = rest.trim_end_matches('/');
    let target = path
        .strip_prefix("api/v2/")
        .and_then(|p| p.split_once('/'))
        .and_then(|(e, id)| Some((kind_of(e)?, id)));
    let Some((kind, id_text)) = target else {
        return Patched {
            result: Err((StatusCode::NOT_FOUND, "Unknown method .".into())),
            drop: false,
        };
    };
    let fields: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut st = pd.st();
    let id = id_text.parse::<i64>().unwrap_or(0);
    let error_in_2xx = st.writes.error_in_2xx > 0;
    let result = if error_in_2xx {
        st.writes.error_in_2xx -= 1;
        Err((StatusCode::OK, crate::sandbox::ERROR_IN_2XX.to_string()))
    } else {
        apply(pd, &mut st, kind, id, &fields)
    };
    let drop = result.is_ok() && st.writes.drop_updates > 0;
    if drop {
        st.writes.drop_updates -= 1;
    }
    let status = match &result {
        Ok(_) => 200,
        Err((s, _)) => s.as_u16(),
    };
    st.writes.log.push(PdWriteLog {
        method: "PATCH".into(),
        entity: kind.plural().into(),
        id,
        status,
        fields,
        dropped: drop,
        error_in_2xx,
    });
    Patched { result, drop }
}

fn bad(m: impl Into<String>) -> Failure {
    (StatusCode::BAD_REQUEST, m.into())
}

fn apply(
    pd: &Pipedrive,
    st: &mut Inner,
    kind: Kind,
    id: i64,
    body: &Value,
) -> Result<String, Failure> {
    let Some(row) = pd.row(st, kind, id).filter(|r| !r.deleted) else {
        return Err((
            StatusCode::NOT_FOUND,
            format!("{} not found", capitalised(kind.singular())),
        ));
    };
    let Value::Object(body) = body else {
        return Err(bad("The request body must be a JSON object"));
    };
    if body.is_empty() {
        return Err(bad("At least one field must be given"));
    }
    let mut saved = Map::new();
    for (k, v) in body {
        if !writable(kind).contains(&k.as_str()) {
            return Err(bad(format!(
                "Validation failed: {k}: Parameter '{k}' is not allowed for this request"
            )));
        }
        let v = match k.as_str() {
            "name" if v.as_str().is_none_or(|s| s.trim().is_empty()) => {
                return Err(bad(
                    "Validation failed: name: Name must be a non-empty string",
                ));
            }
            "prices" => Value::Array(prices(id, v)?),
            "address" if !v.is_object() && !v.is_null() => {
                return Err(bad("Validation failed: address: must be an object"));
            }
            "emails" | "phones" | "label_ids" if !v.is_array() => {
                return Err(bad(format!("Validation failed: {k}: must be an array")));
            }
            "custom_fields" => Value::Object(custom(pd.seed, pd.tenant, kind, v)?),
            _ => v.clone(),
        };
        saved.insert(k.clone(), v);
    }
    let entry = st.writes.rows.entry((kind, id)).or_default();
    for (k, v) in saved {
        match (entry.get_mut(&k), v) {
            (Some(Value::Object(cur)), Value::Object(new)) if k == "custom_fields" => {
                cur.extend(new);
            }
            (_, v) => {
                entry.insert(k, v);
            }
        }
    }
    stamp(st, kind, id, row.rev, row.archived);
    let row = pd.row(st, kind, id).ok_or_else(|| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "row vanished".to_string(),
        )
    })?;
    let d = pd.dims(st);
    let mut out = String::from("{\"success\":true,\"data\":");
    record(&mut out, &d, kind, &row, &st.writes);
    out.push('}');
    Ok(out)
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// A product's `prices`: objects with `price` and `currency`, one per currency.
fn prices(product: i64, v: &Value) -> Result<Vec<Value>, Failure> {
    let Value::Array(items) = v else {
        return Err(bad("Validation failed: prices: must be an array"));
    };
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for p in items {
        let Value::Object(p) = p else {
            return Err(bad(
                "Validation failed: prices: each price must be an object",
            ));
        };
        let (Some(price), Some(cur)) = (
            p.get("price").filter(|x| x.is_number()),
            p.get("currency").and_then(Value::as_str),
        ) else {
            return Err(bad(
                "Validation failed: prices: price (number) and currency are required",
            ));
        };
        if seen.contains(&cur.to_string()) {
            return Err(bad(format!(
                "Validation failed: prices: currency {cur} given twice"
            )));
        }
        seen.push(cur.to_string());
        let mut m = Map::new();
        m.insert("product_id".into(), Value::from(product));
        m.insert("price".into(), price.clone());
        m.insert("currency".into(), Value::from(cur));
        m.insert(
            "cost".into(),
            p.get("cost").cloned().unwrap_or(Value::from(0)),
        );
        m.insert(
            "direct_cost".into(),
            p.get("direct_cost").cloned().unwrap_or(Value::Null),
        );
        m.insert(
            "notes".into(),
            p.get("notes").cloned().unwrap_or(Value::Null),
        );
        out.push(Value::Object(m));
    }
    Ok(out)
}

/// `custom_fields`: keys must be the entity's (hashed) custom field keys in this tenant.
fn custom(seed: u64, tenant: Tenant, kind: Kind, v: &Value) -> Result<Map<String, Value>, Failure> {
    let Value::Object(m) = v else {
        return Err(bad("Validation failed: custom_fields: must be an object"));
    };
    let keys: Vec<String> = fields::custom_fields(kind, tenant)
        .map(|f| fields::field_key(seed, kind, f.slot))
        .collect();
    if let Some(k) = m.keys().find(|k| !keys.contains(k)) {
        return Err(bad(format!(
            "Validation failed: custom_fields: unknown field key {k}"
        )));
    }
    Ok(m.clone())
}

/// A new `update_time` for an updated row, keeping its revision (generated values stay) and
/// its archive state.
fn stamp(st: &mut Inner, kind: Kind, id: i64, rev: u32, archived: Option<i64>) {
    st.clock += 37;
    let now = st.clock;
    if let Some(m) = st.changed.get(&(kind, id)) {
        st.by_time.remove(&(kind, m.update_time, id));
    }
    st.changed.insert(
        (kind, id),
        Meta {
            rev,
            update_time: now,
            deleted: None,
            archived,
        },
    );
    st.by_time.insert((kind, now, id));
}

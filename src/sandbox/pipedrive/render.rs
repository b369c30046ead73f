//! Pipedrive fake records as bytes: every value is a pure function of (seed, tenant, kind, id,
//! revision), rendered straight into the page buffer in the API v2 shapes of
//! shared/specs/pipedrive/v2.yaml (integer ids, RFC 3339 times, emails[]/phones[], prices[],
//! `is_archived`/`archive_time`, nested `custom_fields` under 40-hex keys with raw values:
//! option ids, monetary and address objects, related ids).
//!
//! Per tenant: the lean tenant's plan lacks the Growth-and-above fields (deal `arr`/`mrr`/`acv`,
//! product and line-item `billing_frequency*`) and its users carry no `is_admin` (removed from
//! the Users API in 2023); the custom tenant's users send `is_admin` as a boolean for some and
//! an integer for others, and its drifting `double` custom field is `"n/a"` in a few records.

use std::fmt::Write as _;

use super::super::options::Tenant;
use super::super::rng::{field, mix, pick, range, row_key};
use super::super::words::{
    CITIES, COMPANY_HEAD, COMPANY_NOUN, COMPANY_SUFFIX, FIRST, JOB_TITLE, LAST, STREET,
};
use super::fields::{self, CustomField, INDUSTRIES, field_key};
use super::kind::Kind;

/// Epoch seconds of the first generated row (2024-01-01T00:00:00Z): unchanged row `id` was
/// last updated at `T0 + id * STEP`, so update order equals id order until rows change (and a
/// lookback of a few minutes re-reads only a few unchanged rows).
pub const T0: i64 = 1_704_067_200;
pub const STEP: i64 = 60;

/// Users, pipelines and stages (fixed small sets).
pub fn user_count(scale: u64) -> i64 {
    (5 + scale / 2000).min(500) as i64
}
pub const PIPELINES: i64 = 2;
pub const STAGES_PER_PIPELINE: i64 = 5;

/// RFC 3339 UTC of epoch seconds.
pub fn ts(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The state of one row as the fake knows it.
pub struct Row {
    pub id: i64,
    pub rev: u32,
    pub update_time: i64,
    pub deleted: bool,
    pub poisoned: bool,
    /// Deals: when the deal was archived (`None`: not archived).
    pub archived: Option<i64>,
}

pub struct Dims {
    pub seed: u64,
    pub tenant: Tenant,
    pub users: i64,
    pub persons: i64,
    pub orgs: i64,
    pub products: i64,
}

fn key(d: &Dims, kind: Kind, id: i64, rev: u32) -> u64 {
    row_key(d.seed, kind.tag(), (id as u64) << 16 ^ rev as u64)
}

fn add_time(d: &Dims, kind: Kind, id: i64) -> i64 {
    T0 + id * STEP - range(row_key(d.seed, kind.tag(), id as u64), 0, 86_400 * 30)
}

/// Whether initial deal `id` starts archived (one deal in twenty): it was archived at its
/// last update, `T0 + id * STEP`.
pub fn initially_archived(id: i64) -> bool {
    id % 20 == 13
}

/// A deal's status (open/won/lost), or deleted.
pub fn deal_status(d: &Dims, r: &Row) -> &'static str {
    if r.deleted {
        return "deleted";
    }
    pick(
        field(key(d, Kind::Deal, r.id, r.rev), 1),
        &["open", "open", "open", "won", "won", "lost"],
    )
}

fn date(h: u64) -> String {
    format!(
        "\"2024-{:02}-{:02}\"",
        range(h, 1, 12),
        range(field(h, 1), 1, 28)
    )
}

fn address(out: &mut String, h: u64) {
    let city = &CITIES[(h % CITIES.len() as u64) as usize];
    let street = pick(field(h, 1), STREET);
    let no = range(field(h, 2), 1, 999);
    let value = format!(
        "{no} {street}, {} {}, {}",
        city.postal, city.city, city.country
    );
    let _ = write!(
        out,
        "{{\"value\":{},\"country\":{},\"admin_area_level_1\":null,\"admin_area_level_2\":null,\"locality\":{},\"sublocality\":null,\"route\":{},\"street_number\":\"{no}\",\"subpremise\":null,\"postal_code\":{}}}",
        q(&value),
        q(city.country),
        q(city.city),
        q(street),
        q(city.postal)
    );
}

/// One custom field's raw v2 value: option ids for `enum`/`set` (an empty selection is null),
/// `{value, currency}` for `monetary`, numbers for `double`, `YYYY-MM-DD` for `date`.
/// [ASSUMPTION] `address` values are objects shaped like organizations' `address`, and `user`,
/// `org`, `people` values plain integer ids (v2 dropped related objects from responses).
fn custom_value(out: &mut String, d: &Dims, f: &CustomField, h: u64) {
    match f.field_type {
        _ if h.is_multiple_of(7) => out.push_str("null"),
        "enum" => {
            let _ = write!(out, "{}", pick(h, f.options).0);
        }
        "set" => {
            let ids: Vec<String> = f
                .options
                .iter()
                .enumerate()
                .filter(|(j, _)| (h >> (j * 3)) & 1 == 1)
                .map(|(_, o)| o.0.to_string())
                .collect();
            // An empty selection is null (the API refuses `[]`).
            if ids.is_empty() {
                out.push_str("null");
            } else {
                let _ = write!(out, "[{}]", ids.join(","));
            }
        }
        "monetary" => {
            let _ = write!(
                out,
                "{{\"value\":{},\"currency\":\"EUR\"}}",
                range(h, 50, 5000)
            );
        }
        "double" if f.drifts && h % 11 == 3 => out.push_str("\"n/a\""),
        "double" => {
            let _ = write!(out, "{}", range(h, 1, 20000));
        }
        "date" => out.push_str(&date(h)),
        "address" => address(out, h),
        "user" => {
            let _ = write!(out, "{}", range(h, 1, d.users));
        }
        "org" => {
            let _ = write!(out, "{}", range(h, 1, d.orgs));
        }
        "people" => {
            let _ = write!(out, "{}", range(h, 1, d.persons));
        }
        "phone" => {
            let _ = write!(out, "\"+49 30 {}\"", range(h, 1_000_000, 9_999_999));
        }
        _ => {
            // Values keep the field's original name stem: renaming a field changes no value.
            let _ = write!(
                out,
                "\"{}-{}\"",
                f.name.split(' ').next().unwrap_or("X"),
                range(h, 1000, 99999)
            );
        }
    }
}

fn custom(out: &mut String, d: &Dims, kind: Kind, k: u64) {
    out.push_str(",\"custom_fields\":{");
    for (i, f) in fields::custom_fields(kind, d.tenant).enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{}\":", field_key(d.seed, kind, f.slot));
        custom_value(out, d, f, field(k, 100 + f.slot));
    }
    out.push('}');
}

fn company(h: u64) -> String {
    format!(
        "{} {} {}",
        pick(h, COMPANY_HEAD).0,
        pick(mix(h), COMPANY_NOUN).0,
        pick(mix(h ^ 2), COMPANY_SUFFIX)
    )
}

fn times(out: &mut String, d: &Dims, kind: Kind, r: &Row) {
    let ut = if r.poisoned {
        "\"not a time\"".to_string()
    } else {
        q(&ts(r.update_time))
    };
    let _ = write!(
        out,
        ",\"add_time\":{},\"update_time\":{}",
        q(&ts(add_time(d, kind, r.id))),
        ut
    );
}

fn or_null(cond: bool, v: &str) -> String {
    if cond { v.to_string() } else { "null".into() }
}

fn deal(out: &mut String, d: &Dims, r: &Row, k: u64, owner: i64) {
    let status = deal_status(d, r);
    let pipeline = range(field(k, 3), 1, PIPELINES);
    let stage = (pipeline - 1) * STAGES_PER_PIPELINE + range(field(k, 4), 1, STAGES_PER_PIPELINE);
    let closed = matches!(status, "won" | "lost");
    let close = or_null(closed, &q(&ts(r.update_time)));
    let day = ts(r.update_time);
    let close_day = or_null(closed, &q(day.get(..10).unwrap_or_default()));
    let added = add_time(d, Kind::Deal, r.id);
    let _ = write!(
        out,
        "{{\"id\":{},\"title\":{},\"creator_user_id\":{owner},\"owner_id\":{owner},\"value\":{}.{:02},\"person_id\":{},\"org_id\":{},\"stage_id\":{stage},\"pipeline_id\":{pipeline},\"currency\":\"EUR\",\"archive_time\":{}",
        r.id,
        q(&format!("{} deal", company(field(k, 5)))),
        range(field(k, 6), 500, 250_000),
        range(field(k, 7), 0, 99),
        range(field(k, 8), 1, d.persons),
        range(field(k, 9), 1, d.orgs),
        r.archived.map_or("null".into(), |t| q(&ts(t))),
    );
    times(out, d, Kind::Deal, r);
    let _ = write!(
        out,
        ",\"stage_change_time\":{},\"status\":\"{status}\",\"is_archived\":{},\"is_deleted\":{},\"probability\":null,\"lost_reason\":{},\"visible_to\":3,\"close_time\":{close},\"won_time\":{},\"lost_time\":{},\"local_won_date\":{},\"local_lost_date\":{},\"local_close_date\":{close_day},\"expected_close_date\":\"2024-{:02}-{:02}\",\"label_ids\":[],\"origin\":\"ManuallyCreated\",\"origin_id\":null,\"channel\":null,\"channel_id\":null",
        q(&ts(added + (r.update_time - added) / 2)),
        r.archived.is_some(),
        r.deleted,
        or_null(status == "lost", "\"Price\""),
        or_null(status == "won", &close),
        or_null(status == "lost", &close),
        or_null(status == "won", &close_day),
        or_null(status == "lost", &close_day),
        range(field(k, 10), 1, 12),
        range(field(k, 11), 1, 28),
    );
    if fields::growth(d.tenant) {
        // One-time line items only: no recurring revenue.
        out.push_str(",\"acv\":null,\"arr\":null,\"mrr\":null");
    }
}

/// One record of `kind`.
pub fn record(out: &mut String, d: &Dims, kind: Kind, r: &Row) {
    let k = key(d, kind, r.id, r.rev);
    let owner = range(field(k, 2), 1, d.users);
    match kind {
        Kind::Deal => deal(out, d, r, k, owner),
        Kind::Person => {
            let (first, last) = (pick(field(k, 3), FIRST).0, pick(field(k, 4), LAST).0);
            let mail = format!(
                "{}.{}{}@example.com",
                first.to_lowercase(),
                last.to_lowercase(),
                r.id
            );
            let city = &CITIES[(field(k, 5) % CITIES.len() as u64) as usize];
            let _ = write!(
                out,
                "{{\"id\":{},\"name\":{},\"first_name\":{},\"last_name\":{},\"owner_id\":{},\"org_id\":{}",
                r.id,
                q(&format!("{first} {last}")),
                q(first),
                q(last),
                owner,
                range(field(k, 6), 1, d.orgs),
            );
            times(out, d, kind, r);
            let _ = write!(
                out,
                ",\"emails\":[{{\"value\":{},\"primary\":true,\"label\":\"work\"}}],\"phones\":[{{\"value\":\"{} {}\",\"primary\":true,\"label\":\"work\"}}],\"is_deleted\":false,\"visible_to\":3,\"label_ids\":[],\"picture_id\":null,\"notes\":null,\"im\":[],\"birthday\":null,\"job_title\":{},\"postal_address\":null",
                q(&mail),
                city.dial,
                range(field(k, 7), 1_000_000, 9_999_999),
                or_null(
                    !field(k, 8).is_multiple_of(3),
                    &q(pick(field(k, 9), JOB_TITLE))
                ),
            );
        }
        Kind::Org => {
            let _ = write!(
                out,
                "{{\"id\":{},\"name\":{},\"owner_id\":{}",
                r.id,
                q(&company(field(k, 3))),
                owner,
            );
            times(out, d, kind, r);
            out.push_str(",\"is_deleted\":false,\"visible_to\":3,\"address\":");
            address(out, field(k, 5));
            let site = field(k, 8);
            let slug = format!("org{}", r.id);
            let _ = write!(
                out,
                ",\"label_ids\":[],\"website\":{},\"linkedin\":{},\"industry\":{},\"annual_revenue\":{},\"employee_count\":{}",
                or_null(
                    !site.is_multiple_of(4),
                    &q(&format!("https://www.{slug}.example.com"))
                ),
                or_null(
                    site.is_multiple_of(3),
                    &q(&format!("https://www.linkedin.com/company/{slug}"))
                ),
                or_null(
                    !field(k, 9).is_multiple_of(5),
                    pick(field(k, 10), INDUSTRIES).0
                ),
                or_null(
                    field(k, 11).is_multiple_of(2),
                    &(range(field(k, 12), 1, 5000) * 10_000).to_string()
                ),
                or_null(
                    !field(k, 13).is_multiple_of(3),
                    &range(field(k, 14), 1, 5000).to_string()
                ),
            );
        }
        Kind::Product => {
            let price = range(field(k, 3), 10, 5000);
            let _ = write!(
                out,
                "{{\"id\":{},\"name\":{},\"code\":\"SKU-{:05}\",\"description\":null,\"unit\":\"pcs\",\"tax\":{},\"category\":null,\"is_linkable\":true,\"is_deleted\":false,\"visible_to\":3,\"owner_id\":{}",
                r.id,
                q(&format!("{} {}", pick(field(k, 4), COMPANY_NOUN).0, r.id)),
                r.id,
                pick(field(k, 5), &[0, 7, 19, 20]),
                owner,
            );
            times(out, d, kind, r);
            if fields::growth(d.tenant) {
                out.push_str(
                    ",\"billing_frequency\":\"one-time\",\"billing_frequency_cycles\":null",
                );
            }
            let _ = write!(
                out,
                ",\"prices\":[{{\"product_id\":{},\"price\":{},\"currency\":\"EUR\",\"cost\":{},\"direct_cost\":null,\"notes\":null}}]",
                r.id,
                price,
                price / 2
            );
        }
    }
    custom(out, d, kind, k);
    out.push('}');
}

/// Line items of a deal: 0–4, a pure function of the deal's revision; ids `deal*4 + k`. One
/// deal in five has none (services sold without a product catalogue), won ones included.
pub fn deal_product_count(d: &Dims, deal: &Row) -> i64 {
    (field(key(d, Kind::Deal, deal.id, deal.rev), 40) % 5) as i64
}

pub fn deal_product(out: &mut String, d: &Dims, deal: &Row, k: i64) {
    let h = field(key(d, Kind::Deal, deal.id, deal.rev), 41 + k as u64);
    let product = range(h, 1, d.products);
    let price = range(field(h, 1), 10, 5000);
    let qty = range(field(h, 2), 1, 20);
    // Mostly percentages; one line in five takes a fixed amount off (`discount_type`).
    let (disc, disc_type) = match field(h, 3) % 5 {
        0 | 1 => (0, "percentage"),
        2 => (5, "percentage"),
        3 => (10, "percentage"),
        _ => (25, "amount"),
    };
    let sum = if disc_type == "amount" {
        price * qty - disc
    } else {
        price * qty * (100 - disc) / 100
    };
    let _ = write!(
        out,
        "{{\"id\":{},\"sum\":{},\"tax\":0,\"deal_id\":{},\"name\":\"Product {}\",\"product_id\":{},\"product_variation_id\":null,\"order_nr\":{},\"add_time\":{},\"update_time\":{},\"comments\":null,\"currency\":\"EUR\",\"discount\":{},\"quantity\":{},\"item_price\":{},\"tax_method\":\"inclusive\",\"discount_type\":\"{disc_type}\",\"is_enabled\":true",
        deal.id * 4 + k,
        sum,
        deal.id,
        product,
        product,
        k + 1,
        q(&ts(add_time(d, Kind::Deal, deal.id))),
        q(&ts(deal.update_time)),
        disc,
        qty,
        price,
    );
    if fields::growth(d.tenant) {
        out.push_str(
            ",\"billing_frequency\":\"one-time\",\"billing_frequency_cycles\":null,\"billing_start_date\":null",
        );
    }
    out.push('}');
}

/// One v1 user. `is_admin` is not in the v1 spec (removed from responses in 2023): the
/// standard tenant still sends it as 0/1, the lean one not at all, the custom one as a
/// boolean for even ids and a number for odd ones (type drift).
pub fn user(out: &mut String, d: &Dims, id: i64) {
    let h = row_key(d.seed, 0x77, id as u64);
    let (first, last) = (pick(field(h, 1), FIRST).0, pick(field(h, 2), LAST).0);
    let created = T0 - 86_400 * 400 + id * 3600;
    let dt = |s: i64| {
        chrono::DateTime::from_timestamp(s, 0)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default()
    };
    let admin = id == 1;
    let _ = write!(
        out,
        "{{\"id\":{id},\"name\":{},\"default_currency\":\"EUR\",\"locale\":\"en_US\",\"lang\":1,\"email\":{},\"phone\":null,\"activated\":true,\"last_login\":{},\"created\":{},\"modified\":{},\"has_created_company\":{admin},\"access\":[{{\"app\":\"sales\",\"admin\":{admin},\"permission_set_id\":\"x\"}}],\"active_flag\":true,\"timezone_name\":\"Europe/Berlin\",\"timezone_offset\":\"+01:00\",\"role_id\":{},\"icon_url\":null,\"is_you\":{admin},\"is_deleted\":false",
        q(&format!("{first} {last}")),
        q(&format!(
            "{}.{}@example.com",
            first.to_lowercase(),
            last.to_lowercase()
        )),
        q(&dt(created + 86_400 * 30)),
        q(&dt(created)),
        q(&dt(created + 3600)),
        if admin { 1 } else { 2 },
    );
    match d.tenant {
        Tenant::Standard => {
            let _ = write!(out, ",\"is_admin\":{}", u8::from(admin));
        }
        Tenant::Lean => {}
        Tenant::Custom if id % 2 == 0 => {
            let _ = write!(out, ",\"is_admin\":{admin}");
        }
        Tenant::Custom => {
            let _ = write!(out, ",\"is_admin\":{}", u8::from(admin));
        }
    }
    out.push('}');
}

/// One v2 pipeline (v2 has no `is_selected`, which v1 called `selected`).
pub fn pipeline(out: &mut String, id: i64) {
    let _ = write!(
        out,
        "{{\"id\":{id},\"name\":{},\"order_nr\":{id},\"is_deleted\":false,\"is_deal_probability_enabled\":true,\"add_time\":{},\"update_time\":{}}}",
        q(["Sales", "Renewals"]
            .get((id - 1) as usize)
            .copied()
            .unwrap_or("Pipeline")),
        q(&ts(T0 - 86_400 * 300)),
        q(&ts(T0 - 86_400 * 200 + id)),
    );
}

pub fn stage(out: &mut String, id: i64) {
    let names = [
        "Qualified",
        "Contact Made",
        "Demo Scheduled",
        "Proposal Made",
        "Negotiations Started",
    ];
    let pos = (id - 1) % STAGES_PER_PIPELINE;
    let _ = write!(
        out,
        "{{\"id\":{id},\"order_nr\":{},\"name\":{},\"is_deleted\":false,\"deal_probability\":{},\"pipeline_id\":{},\"is_deal_rot_enabled\":false,\"days_to_rotten\":null,\"add_time\":{},\"update_time\":{}}}",
        pos + 1,
        q(names[pos as usize]),
        (pos + 1) * 20,
        (id - 1) / STAGES_PER_PIPELINE + 1,
        q(&ts(T0 - 86_400 * 300)),
        q(&ts(T0 - 86_400 * 200 + id))
    );
}

//! Pipedrive fake records as bytes: every value is a pure function of (seed, kind, id,
//! revision), rendered straight into the page buffer in the API v2 shapes (integer ids, RFC 3339
//! times, emails[]/phones[], prices[], nested `custom_fields` under 40-hex keys).

use std::fmt::Write as _;

use super::super::rng::{field, mix, pick, range, row_key};
use super::super::words::{
    CITIES, COMPANY_HEAD, COMPANY_NOUN, COMPANY_SUFFIX, FIRST, LAST, STREET,
};

/// Entities with generated rows and custom fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Deal,
    Person,
    Org,
    Product,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Deal, Kind::Person, Kind::Org, Kind::Product];

    pub fn tag(self) -> u32 {
        0x50 + self as u32
    }

    /// The v2 list path segment.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Deal => "deals",
            Kind::Person => "persons",
            Kind::Org => "organizations",
            Kind::Product => "products",
        }
    }

    pub fn singular(self) -> &'static str {
        match self {
            Kind::Deal => "deal",
            Kind::Person => "person",
            Kind::Org => "organization",
            Kind::Product => "product",
        }
    }

    /// Rows at start for a sandbox scale: deals scale/2, persons scale/2, organizations
    /// scale/4, products scale/100 (at least 10). Deal products are 1–4 per deal (≈2.5×deals).
    pub fn initial(self, scale: u64) -> i64 {
        let s = scale.max(1) as i64;
        match self {
            Kind::Deal => (s / 2).max(1),
            Kind::Person => (s / 2).max(1),
            Kind::Org => (s / 4).max(1),
            Kind::Product => (s / 100).max(10),
        }
    }
}

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

/// A custom field definition of the fake.
pub struct CustomField {
    pub name: &'static str,
    pub field_type: &'static str,
    pub options: &'static [(i64, &'static str)],
}

pub fn custom_fields(kind: Kind) -> &'static [CustomField] {
    const DEAL: &[CustomField] = &[
        CustomField {
            name: "Contract Type",
            field_type: "enum",
            options: &[(11, "Annual"), (12, "Monthly"), (13, "Multi-year")],
        },
        CustomField {
            name: "Regions",
            field_type: "set",
            options: &[(21, "EMEA"), (22, "APAC"), (23, "Americas")],
        },
        CustomField {
            name: "Setup Fee",
            field_type: "monetary",
            options: &[],
        },
        CustomField {
            name: "PO Number",
            field_type: "varchar",
            options: &[],
        },
    ];
    const PERSON: &[CustomField] = &[
        CustomField {
            name: "Preferred Language",
            field_type: "enum",
            options: &[(31, "English"), (32, "German"), (33, "French")],
        },
        CustomField {
            name: "LinkedIn Profile",
            field_type: "varchar",
            options: &[],
        },
    ];
    const ORG: &[CustomField] = &[
        CustomField {
            name: "Industry Segment",
            field_type: "enum",
            options: &[(41, "Manufacturing"), (42, "Software"), (43, "Retail")],
        },
        CustomField {
            name: "Employee Count",
            field_type: "double",
            options: &[],
        },
    ];
    const PRODUCT: &[CustomField] = &[CustomField {
        name: "SKU Family",
        field_type: "varchar",
        options: &[],
    }];
    match kind {
        Kind::Deal => DEAL,
        Kind::Person => PERSON,
        Kind::Org => ORG,
        Kind::Product => PRODUCT,
    }
}

/// The 40-hex key of custom field `i` of `kind` (different per seed, like per company).
pub fn field_key(seed: u64, kind: Kind, i: usize) -> String {
    let h = row_key(seed, 0xF1E1D, (kind.tag() as u64) << 8 | i as u64);
    format!("{:016x}{:016x}{:08x}", h, mix(h), (mix(h ^ 1) >> 32) as u32)
}

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
}

pub struct Dims {
    pub seed: u64,
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

fn custom(out: &mut String, d: &Dims, kind: Kind, k: u64) {
    out.push_str(",\"custom_fields\":{");
    for (i, f) in custom_fields(kind).iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let h = field(k, 100 + i as u64);
        let _ = write!(out, "\"{}\":", field_key(d.seed, kind, i));
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
                let _ = write!(out, "[{}]", ids.join(","));
            }
            "monetary" => {
                let _ = write!(
                    out,
                    "{{\"value\":{},\"currency\":\"EUR\"}}",
                    range(h, 50, 5000)
                );
            }
            "double" => {
                let _ = write!(out, "{}", range(h, 1, 20000));
            }
            _ => {
                let _ = write!(
                    out,
                    "\"{}-{}\"",
                    f.name.split(' ').next().unwrap_or("X"),
                    range(h, 1000, 99999)
                );
            }
        }
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

/// One record of `kind`.
pub fn record(out: &mut String, d: &Dims, kind: Kind, r: &Row) {
    let k = key(d, kind, r.id, r.rev);
    let owner = range(field(k, 2), 1, d.users);
    match kind {
        Kind::Deal => {
            let status = deal_status(d, r);
            let pipeline = range(field(k, 3), 1, PIPELINES);
            let stage =
                (pipeline - 1) * STAGES_PER_PIPELINE + range(field(k, 4), 1, STAGES_PER_PIPELINE);
            let closed = matches!(status, "won" | "lost");
            let close = if closed {
                q(&ts(r.update_time))
            } else {
                "null".into()
            };
            let _ = write!(
                out,
                "{{\"id\":{},\"title\":{},\"creator_user_id\":{},\"owner_id\":{},\"value\":{}.{:02},\"currency\":\"EUR\",\"person_id\":{},\"org_id\":{},\"pipeline_id\":{},\"stage_id\":{},\"status\":\"{}\",\"probability\":null,\"lost_reason\":{},\"visible_to\":3,\"close_time\":{},\"won_time\":{},\"lost_time\":{},\"expected_close_date\":\"2024-{:02}-{:02}\",\"label_ids\":[],\"is_archived\":false,\"is_deleted\":{}",
                r.id,
                q(&format!("{} deal", company(field(k, 5)))),
                owner,
                owner,
                range(field(k, 6), 500, 250_000),
                range(field(k, 7), 0, 99),
                range(field(k, 8), 1, d.persons),
                range(field(k, 9), 1, d.orgs),
                pipeline,
                stage,
                status,
                if status == "lost" {
                    q("Price")
                } else {
                    "null".into()
                },
                close,
                if status == "won" {
                    close.clone()
                } else {
                    "null".into()
                },
                if status == "lost" {
                    close.clone()
                } else {
                    "null".into()
                },
                range(field(k, 10), 1, 12),
                range(field(k, 11), 1, 28),
                r.deleted
            );
            times(out, d, kind, r);
        }
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
                "{{\"id\":{},\"name\":{},\"first_name\":{},\"last_name\":{},\"owner_id\":{},\"org_id\":{},\"emails\":[{{\"value\":{},\"primary\":true,\"label\":\"work\"}}],\"phones\":[{{\"value\":\"{} {}\",\"primary\":true,\"label\":\"work\"}}],\"label_ids\":[],\"visible_to\":3,\"is_deleted\":false",
                r.id,
                q(&format!("{first} {last}")),
                q(first),
                q(last),
                owner,
                range(field(k, 6), 1, d.orgs),
                q(&mail),
                city.dial,
                range(field(k, 7), 1_000_000, 9_999_999)
            );
            times(out, d, kind, r);
        }
        Kind::Org => {
            let city = &CITIES[(field(k, 5) % CITIES.len() as u64) as usize];
            let street = pick(field(k, 6), STREET);
            let no = range(field(k, 7), 1, 999);
            let _ = write!(
                out,
                "{{\"id\":{},\"name\":{},\"owner_id\":{},\"address\":{{\"value\":{},\"street_number\":\"{}\",\"route\":{},\"locality\":{},\"postal_code\":{},\"country\":{}}},\"label_ids\":[],\"visible_to\":3,\"is_deleted\":false",
                r.id,
                q(&company(field(k, 3))),
                owner,
                q(&format!(
                    "{no} {street}, {} {}, {}",
                    city.postal, city.city, city.country
                )),
                no,
                q(street),
                q(city.city),
                q(city.postal),
                q(city.country)
            );
            times(out, d, kind, r);
        }
        Kind::Product => {
            let price = range(field(k, 3), 10, 5000);
            let _ = write!(
                out,
                "{{\"id\":{},\"name\":{},\"code\":\"SKU-{:05}\",\"description\":null,\"unit\":\"pcs\",\"tax\":{},\"category\":null,\"owner_id\":{},\"is_linkable\":true,\"visible_to\":3,\"is_deleted\":false,\"prices\":[{{\"product_id\":{},\"price\":{},\"currency\":\"EUR\",\"cost\":{},\"direct_cost\":null,\"notes\":null}}]",
                r.id,
                q(&format!("{} {}", pick(field(k, 4), COMPANY_NOUN).0, r.id)),
                r.id,
                pick(field(k, 5), &[0, 7, 19, 20]),
                owner,
                r.id,
                price,
                price / 2
            );
            times(out, d, kind, r);
        }
    }
    custom(out, d, kind, k);
    out.push('}');
}

/// Line items of a deal: 1–4, a pure function of the deal's revision; ids `deal*4 + k`.
pub fn deal_product_count(d: &Dims, deal: &Row) -> i64 {
    1 + (field(key(d, Kind::Deal, deal.id, deal.rev), 40) % 4) as i64
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
        "{{\"id\":{},\"deal_id\":{},\"product_id\":{},\"product_variation_id\":null,\"name\":\"Product {}\",\"order_nr\":{},\"item_price\":{},\"quantity\":{},\"discount\":{},\"discount_type\":\"{disc_type}\",\"tax\":0,\"tax_method\":\"inclusive\",\"sum\":{},\"currency\":\"EUR\",\"is_enabled\":true,\"comments\":null,\"add_time\":{},\"update_time\":{}}}",
        deal.id * 4 + k,
        deal.id,
        product,
        product,
        k + 1,
        price,
        qty,
        disc,
        sum,
        q(&ts(add_time(d, Kind::Deal, deal.id))),
        q(&ts(deal.update_time))
    );
}

pub fn user(out: &mut String, d: &Dims, id: i64) {
    let h = row_key(d.seed, 0x77, id as u64);
    let (first, last) = (pick(field(h, 1), FIRST).0, pick(field(h, 2), LAST).0);
    let created = T0 - 86_400 * 400 + id * 3600;
    let dt = |s: i64| {
        chrono::DateTime::from_timestamp(s, 0)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default()
    };
    let _ = write!(
        out,
        "{{\"id\":{id},\"name\":{},\"default_currency\":\"EUR\",\"locale\":\"en_US\",\"lang\":1,\"email\":{},\"phone\":null,\"activated\":true,\"last_login\":{},\"created\":{},\"modified\":{},\"has_created_company\":{},\"access\":[{{\"app\":\"sales\",\"admin\":{},\"permission_set_id\":\"x\"}}],\"active_flag\":true,\"timezone_name\":\"Europe/Berlin\",\"timezone_offset\":\"+01:00\",\"role_id\":{},\"icon_url\":null,\"is_you\":{},\"is_deleted\":false,\"is_admin\":{}}}",
        q(&format!("{first} {last}")),
        q(&format!(
            "{}.{}@example.com",
            first.to_lowercase(),
            last.to_lowercase()
        )),
        q(&dt(created + 86_400 * 30)),
        q(&dt(created)),
        q(&dt(created + 3600)),
        id == 1,
        id == 1,
        if id == 1 { 1 } else { 2 },
        id == 1,
        if id == 1 { 1 } else { 0 }
    );
}

pub fn pipeline(out: &mut String, id: i64) {
    let _ = write!(
        out,
        "{{\"id\":{id},\"name\":{},\"order_nr\":{id},\"is_deleted\":false,\"is_deal_probability_enabled\":true,\"add_time\":{},\"update_time\":{},\"is_selected\":{}}}",
        q(["Sales", "Renewals"]
            .get((id - 1) as usize)
            .copied()
            .unwrap_or("Pipeline")),
        q(&ts(T0 - 86_400 * 300)),
        q(&ts(T0 - 86_400 * 200 + id)),
        id == 1
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

/// Field definitions of `kind` (a few built-in fields, then the custom ones), v2 shape.
pub fn field_defs(out: &mut String, seed: u64, kind: Kind) {
    let builtin: &[(&str, &str, &str)] = match kind {
        Kind::Deal => &[
            ("id", "ID", "int"),
            ("title", "Title", "varchar"),
            ("value", "Value", "monetary"),
            ("update_time", "Update time", "date"),
        ],
        Kind::Person => &[
            ("id", "ID", "int"),
            ("name", "Name", "varchar"),
            ("emails", "Email", "varchar"),
        ],
        Kind::Org => &[
            ("id", "ID", "int"),
            ("name", "Name", "varchar"),
            ("address", "Address", "address"),
        ],
        Kind::Product => &[
            ("id", "ID", "int"),
            ("name", "Name", "varchar"),
            ("code", "Product code", "varchar"),
        ],
    };
    let mut first = true;
    for (code, name, ty) in builtin {
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(
            out,
            "{{\"field_name\":{},\"field_code\":\"{code}\",\"field_type\":\"{ty}\",\"options\":null,\"subfields\":null,\"is_custom_field\":false,\"is_optional_response_field\":false}}",
            q(name)
        );
    }
    for (i, f) in custom_fields(kind).iter().enumerate() {
        out.push(',');
        let opts = if f.options.is_empty() {
            "null".to_string()
        } else {
            format!(
                "[{}]",
                f.options
                    .iter()
                    .map(|(id, l)| format!("{{\"id\":{id},\"label\":{},\"color\":null}}", q(l)))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        };
        let sub = if f.field_type == "monetary" {
            "[{\"field_code\":\"currency\",\"field_name\":\"Currency\",\"field_type\":\"varchar\"}]"
        } else {
            "null"
        };
        let _ = write!(
            out,
            "{{\"field_name\":{},\"field_code\":\"{}\",\"field_type\":\"{}\",\"options\":{opts},\"subfields\":{sub},\"is_custom_field\":true,\"is_optional_response_field\":false}}",
            q(f.name),
            field_key(seed, kind, i),
            f.field_type
        );
    }
}

//! The Pipedrive fake's own schema per tenant: the standard fields of each entity and the
//! company's custom fields, and the v2 field-definition lists (`GET /api/v2/dealFields`, …)
//! rendered from them.
//!
//! Sources: shared/specs/pipedrive/v2.yaml (`/dealFields` … response schema: `field_name`,
//! `field_code`, `field_type`, `options[{id,label,color}]`, `subfields`, `is_custom_field`,
//! `is_optional_response_field`; its examples: `title` "Deal Title", `value` monetary with the
//! subfields `value`/`currency`, persons' `name` and `phone`, organizations' `address` with nine
//! subfields) and shared/reference/deltek-pipedrive-looker.md §2.6 and the addendum.
//!
//! [ASSUMPTION] standard `field_code`s are the v2 record keys (`owner_id`, `label_ids`,
//! `industry`), except persons' `email` and `phone`, which the spec's example shows under
//! their v1 keys while records carry `emails[]`/`phones[]`. Field names are the app's labels.
//!
//! Custom fields are the company's: each has a fixed slot (its 40-hex key derives from the
//! seed, the entity and the slot, so a key is the same in every tenant that has the field)
//! and belongs to some tenants. A rename (admin control) changes the name only. Their types
//! are those a company can create (v2.yaml `POST /dealFields` `field_type`: no `int`, which
//! only standard fields such as `id` have).
//!
//! Tenants: standard = the few custom fields a firm adds (deal Contract Type, Regions, Setup
//! Fee, PO Number; person Preferred Language, LinkedIn Profile; organization Industry
//! Segment, Employee Count; product SKU Family); lean = deal PO Number only and no
//! Growth-plan fields; custom = all of those plus many more of every type, one organization
//! field named "Industry" like the standard `industry`, non-Latin names, and a drifting
//! `double` (deal Forecast Score).

use std::collections::HashMap;

use super::super::options::Tenant;
use super::super::rng::{mix, row_key};
use super::kind::Kind;

/// Tenant masks.
const STD: u8 = 1;
const LEAN: u8 = 2;
const CUSTOM: u8 = 4;
const ALL: u8 = STD | LEAN | CUSTOM;
/// Plans from Growth up: ARR/MRR/ACV and billing frequencies (v2.yaml "Only available in
/// Growth and above plans"); the lean tenant is on a smaller plan.
const GROWTH: u8 = STD | CUSTOM;

fn mask(t: Tenant) -> u8 {
    match t {
        Tenant::Standard => STD,
        Tenant::Lean => LEAN,
        Tenant::Custom => CUSTOM,
    }
}

/// Whether the tenant's plan has Growth-and-above fields.
pub fn growth(t: Tenant) -> bool {
    mask(t) & GROWTH != 0
}

/// A custom field of the company.
pub struct CustomField {
    /// Fixed slot: the key and the generated values derive from it.
    pub slot: u64,
    pub name: &'static str,
    pub field_type: &'static str,
    pub options: &'static [(i64, &'static str)],
    tenants: u8,
    /// A `double` field some records send as the string `"n/a"` (type drift).
    pub drifts: bool,
}

const fn cf(
    slot: u64,
    name: &'static str,
    field_type: &'static str,
    options: &'static [(i64, &'static str)],
    tenants: u8,
) -> CustomField {
    CustomField {
        slot,
        name,
        field_type,
        options,
        tenants,
        drifts: false,
    }
}

const DEAL_CUSTOM: &[CustomField] = &[
    cf(
        0,
        "Contract Type",
        "enum",
        &[(11, "Annual"), (12, "Monthly"), (13, "Multi-year")],
        STD | CUSTOM,
    ),
    cf(
        1,
        "Regions",
        "set",
        &[(21, "EMEA"), (22, "APAC"), (23, "Americas")],
        STD | CUSTOM,
    ),
    cf(2, "Setup Fee", "monetary", &[], STD | CUSTOM),
    cf(3, "PO Number", "varchar", &[], ALL),
    CustomField {
        drifts: true,
        ..cf(10, "Forecast Score", "double", &[], CUSTOM)
    },
    cf(
        11,
        "Région",
        "enum",
        &[(51, "Nord"), (52, "Sud"), (53, "Île-de-France")],
        CUSTOM,
    ),
    cf(
        12,
        "業種",
        "set",
        &[(61, "製造"), (62, "小売"), (63, "金融")],
        CUSTOM,
    ),
    cf(13, "Signed On", "date", &[], CUSTOM),
    cf(14, "Contract Notes", "text", &[], CUSTOM),
    cf(15, "Billing Address", "address", &[], CUSTOM),
    cf(16, "Account Manager", "user", &[], CUSTOM),
    cf(17, "Partner Organization", "org", &[], CUSTOM),
    cf(18, "Champion", "people", &[], CUSTOM),
    cf(19, "Hotline", "phone", &[], CUSTOM),
    cf(20, "Seats", "double", &[], CUSTOM),
];

const PERSON_CUSTOM: &[CustomField] = &[
    cf(
        0,
        "Preferred Language",
        "enum",
        &[(31, "English"), (32, "German"), (33, "French")],
        STD | CUSTOM,
    ),
    cf(1, "LinkedIn Profile", "varchar", &[], STD | CUSTOM),
    cf(10, "Lead Score", "double", &[], CUSTOM),
    cf(
        11,
        "Région",
        "enum",
        &[(54, "Nord"), (55, "Sud"), (56, "Île-de-France")],
        CUSTOM,
    ),
    cf(12, "Newsletter Since", "date", &[], CUSTOM),
];

const ORG_CUSTOM: &[CustomField] = &[
    cf(
        0,
        "Industry Segment",
        "enum",
        &[(41, "Manufacturing"), (42, "Software"), (43, "Retail")],
        STD | CUSTOM,
    ),
    cf(1, "Employee Count", "double", &[], STD | CUSTOM),
    // Named like the standard `industry` field (an older custom field of the company).
    cf(
        10,
        "Industry",
        "enum",
        &[(71, "Manufacturing"), (72, "Software"), (73, "Retail")],
        CUSTOM,
    ),
    cf(11, "Отрасль", "varchar", &[], CUSTOM),
    cf(12, "Key Account Manager", "user", &[], CUSTOM),
    cf(13, "Parent Company", "org", &[], CUSTOM),
    cf(14, "Head Office", "address", &[], CUSTOM),
    cf(15, "Founded", "date", &[], CUSTOM),
    cf(16, "Credit Limit", "monetary", &[], CUSTOM),
];

const PRODUCT_CUSTOM: &[CustomField] = &[
    cf(0, "SKU Family", "varchar", &[], STD | CUSTOM),
    cf(10, "Warranty Months", "double", &[], CUSTOM),
    cf(11, "Datasheet", "text", &[], CUSTOM),
    cf(
        12,
        "Channels",
        "set",
        &[(81, "Web"), (82, "Retail"), (83, "Partner")],
        CUSTOM,
    ),
];

/// The custom fields of `kind` in tenant `t`, in definition order.
pub fn custom_fields(kind: Kind, t: Tenant) -> impl Iterator<Item = &'static CustomField> {
    let all = match kind {
        Kind::Deal => DEAL_CUSTOM,
        Kind::Person => PERSON_CUSTOM,
        Kind::Org => ORG_CUSTOM,
        Kind::Product => PRODUCT_CUSTOM,
    };
    let m = mask(t);
    all.iter().filter(move |f| f.tenants & m != 0)
}

/// The 40-hex key of the custom field in `slot` of `kind` (different per seed, like per
/// company).
pub fn field_key(seed: u64, kind: Kind, slot: u64) -> String {
    let h = row_key(seed, 0xF1E1D, (kind.tag() as u64) << 8 | slot);
    format!("{:016x}{:016x}{:08x}", h, mix(h), (mix(h ^ 1) >> 32) as u32)
}

/// A standard field: (code, name, type, options as (raw JSON id, label), subfields, optional
/// response field, tenants).
struct Std {
    code: &'static str,
    name: &'static str,
    ty: &'static str,
    options: &'static [(&'static str, &'static str)],
    subfields: &'static [(&'static str, &'static str, &'static str)],
    optional: bool,
    tenants: u8,
}

const fn sf(code: &'static str, name: &'static str, ty: &'static str) -> Std {
    Std {
        code,
        name,
        ty,
        options: &[],
        subfields: &[],
        optional: false,
        tenants: ALL,
    }
}

const VISIBLE_TO: &[(&str, &str)] = &[
    ("1", "Owner & followers"),
    ("3", "Entire company"),
    ("5", "Owner's visibility group"),
    ("7", "Owner's visibility group and sub-groups"),
];
const LABELS: &[(&str, &str)] = &[("1", "Hot"), ("2", "Warm"), ("3", "Cold")];
const MONEY: &[(&str, &str, &str)] = &[
    ("value", "Amount of {}", "double"),
    ("currency", "Currency of {}", "varchar"),
];
const ADDRESS: &[(&str, &str, &str)] = &[
    ("value", "Address value of {}", "varchar"),
    ("street_number", "House number of {}", "varchar"),
    ("route", "Street/road name of {}", "varchar"),
    ("subpremise", "Apartment/suite of {}", "varchar"),
    ("locality", "District of {}", "varchar"),
    ("admin_area_level_1", "State/province of {}", "varchar"),
    ("admin_area_level_2", "County of {}", "varchar"),
    ("country", "Country of {}", "varchar"),
    ("postal_code", "Postal code of {}", "varchar"),
    ("formatted_address", "Formatted address of {}", "varchar"),
];

/// Options of the standard organization `industry` field (ids are what records carry).
pub const INDUSTRIES: &[(&str, &str)] = &[
    ("1", "Accommodation services"),
    ("2", "Administrative and support services"),
    ("3", "Agriculture"),
    ("4", "Construction"),
    ("5", "Education"),
    ("6", "Finance and insurance"),
    ("7", "Healthcare"),
    ("8", "Information technology"),
    ("9", "Manufacturing"),
    ("10", "Retail"),
];

const DEAL_STD: &[Std] = &[
    sf("id", "ID", "int"),
    sf("title", "Deal Title", "varchar"),
    sf("creator_user_id", "Creator", "user"),
    sf("owner_id", "Owner", "user"),
    Std {
        subfields: MONEY,
        ..sf("value", "Value", "monetary")
    },
    sf("person_id", "Contact person", "people"),
    sf("org_id", "Organization", "org"),
    sf("pipeline_id", "Pipeline", "int"),
    sf("stage_id", "Stage", "stage"),
    Std {
        options: &[
            ("\"open\"", "Open"),
            ("\"won\"", "Won"),
            ("\"lost\"", "Lost"),
            ("\"deleted\"", "Deleted"),
        ],
        ..sf("status", "Status", "status")
    },
    sf("probability", "Probability", "double"),
    sf("lost_reason", "Lost reason", "varchar_options"),
    Std {
        options: VISIBLE_TO,
        ..sf("visible_to", "Visible to", "visible_to")
    },
    sf("add_time", "Deal created", "date"),
    sf("update_time", "Update time", "date"),
    sf("stage_change_time", "Last stage change", "date"),
    sf("close_time", "Deal closed on", "date"),
    sf("won_time", "Won time", "date"),
    sf("lost_time", "Lost time", "date"),
    sf("expected_close_date", "Expected close date", "date"),
    sf("archive_time", "Archive time", "date"),
    Std {
        options: LABELS,
        ..sf("label_ids", "Label", "set")
    },
    sf("origin", "Source origin", "varchar"),
    sf("origin_id", "Source origin ID", "varchar"),
    sf("channel", "Source channel", "enum"),
    sf("channel_id", "Source channel ID", "varchar"),
    Std {
        tenants: GROWTH,
        ..sf("arr", "ARR", "double")
    },
    Std {
        tenants: GROWTH,
        ..sf("mrr", "MRR", "double")
    },
    Std {
        tenants: GROWTH,
        ..sf("acv", "ACV", "double")
    },
    Std {
        optional: true,
        ..sf("products_count", "Number of products", "int")
    },
];

const PERSON_STD: &[Std] = &[
    sf("id", "ID", "int"),
    sf("name", "Person Name", "varchar"),
    sf("first_name", "First name", "varchar"),
    sf("last_name", "Last name", "varchar"),
    sf("owner_id", "Owner", "user"),
    sf("org_id", "Organization", "org"),
    sf("email", "Email", "varchar"),
    sf("phone", "Phone", "phone"),
    Std {
        options: LABELS,
        ..sf("label_ids", "Labels", "set")
    },
    Std {
        options: VISIBLE_TO,
        ..sf("visible_to", "Visible to", "visible_to")
    },
    sf("add_time", "Person created", "date"),
    sf("update_time", "Update time", "date"),
    sf("picture_id", "Profile picture", "picture"),
    Std {
        subfields: ADDRESS,
        ..sf("postal_address", "Postal address", "address")
    },
    sf("birthday", "Birthday", "date"),
    sf("job_title", "Job title", "varchar"),
    sf("notes", "Notes", "text"),
    sf("im", "Instant messenger", "varchar"),
    Std {
        optional: true,
        ..sf("open_deals_count", "Open deals", "int")
    },
];

const ORG_STD: &[Std] = &[
    sf("id", "ID", "int"),
    sf("name", "Organization Name", "varchar"),
    sf("owner_id", "Owner", "user"),
    Std {
        subfields: ADDRESS,
        ..sf("address", "Address", "address")
    },
    Std {
        options: LABELS,
        ..sf("label_ids", "Labels", "set")
    },
    Std {
        options: VISIBLE_TO,
        ..sf("visible_to", "Visible to", "visible_to")
    },
    sf("add_time", "Organization created", "date"),
    sf("update_time", "Update time", "date"),
    sf("website", "Website", "varchar"),
    sf("linkedin", "LinkedIn profile", "varchar"),
    Std {
        options: INDUSTRIES,
        ..sf("industry", "Industry", "enum")
    },
    sf("annual_revenue", "Annual revenue", "double"),
    sf("employee_count", "Number of employees", "double"),
    Std {
        optional: true,
        ..sf("open_deals_count", "Open deals", "int")
    },
];

const PRODUCT_STD: &[Std] = &[
    sf("id", "ID", "int"),
    sf("name", "Product Name", "varchar"),
    sf("code", "Product code", "varchar"),
    sf("description", "Description", "text"),
    sf("unit", "Unit", "varchar"),
    sf("tax", "Tax %", "double"),
    sf("category", "Category", "varchar"),
    sf("owner_id", "Owner", "user"),
    sf("is_linkable", "Linkable to deals", "boolean"),
    Std {
        options: VISIBLE_TO,
        ..sf("visible_to", "Visible to", "visible_to")
    },
    sf("prices", "Price", "price_list"),
    Std {
        tenants: GROWTH,
        ..sf(
            "billing_frequency",
            "Billing frequency",
            "billing_frequency",
        )
    },
    Std {
        tenants: GROWTH,
        ..sf("billing_frequency_cycles", "Billing cycles", "int")
    },
    sf("add_time", "Product created", "date"),
    sf("update_time", "Update time", "date"),
];

fn std_fields(kind: Kind) -> &'static [Std] {
    match kind {
        Kind::Deal => DEAL_STD,
        Kind::Person => PERSON_STD,
        Kind::Org => ORG_STD,
        Kind::Product => PRODUCT_STD,
    }
}

fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// One definition to render.
struct Def<'a> {
    name: &'a str,
    code: &'a str,
    ty: &'a str,
    /// Raw JSON of `options`.
    options: String,
    subfields: &'a [(&'a str, &'a str, &'a str)],
    custom: bool,
    optional: bool,
}

fn one(d: &Def<'_>) -> String {
    let sub = if d.subfields.is_empty() {
        "null".to_string()
    } else {
        let items: Vec<String> = d
            .subfields
            .iter()
            .map(|(c, n, t)| {
                format!(
                    "{{\"field_code\":\"{c}\",\"field_name\":{},\"field_type\":\"{t}\"}}",
                    q(&n.replace("{}", d.name))
                )
            })
            .collect();
        format!("[{}]", items.join(","))
    };
    format!(
        "{{\"field_name\":{},\"field_code\":{},\"field_type\":\"{}\",\"options\":{},\"subfields\":{sub},\"is_custom_field\":{},\"is_optional_response_field\":{}}}",
        q(d.name),
        q(d.code),
        d.ty,
        d.options,
        d.custom,
        d.optional
    )
}

fn options_json<I: Iterator<Item = (String, &'static str)>>(opts: I) -> String {
    let items: Vec<String> = opts
        .map(|(id, l)| format!("{{\"id\":{id},\"label\":{},\"color\":null}}", q(l)))
        .collect();
    if items.is_empty() {
        "null".into()
    } else {
        format!("[{}]", items.join(","))
    }
}

/// Every field definition of `kind` in tenant `t` (standard ones first, then the custom ones
/// under their current names), each a v2 JSON object.
pub fn field_defs(
    seed: u64,
    kind: Kind,
    t: Tenant,
    renames: &HashMap<(Kind, u64), String>,
) -> Vec<String> {
    let m = mask(t);
    let mut out = Vec::new();
    for f in std_fields(kind).iter().filter(|f| f.tenants & m != 0) {
        out.push(one(&Def {
            name: f.name,
            code: f.code,
            ty: f.ty,
            options: options_json(f.options.iter().map(|(id, l)| (id.to_string(), *l))),
            subfields: f.subfields,
            custom: false,
            optional: f.optional,
        }));
    }
    for f in custom_fields(kind, t) {
        let name = renames.get(&(kind, f.slot)).map_or(f.name, String::as_str);
        let key = field_key(seed, kind, f.slot);
        out.push(one(&Def {
            name,
            code: &key,
            ty: f.field_type,
            options: options_json(f.options.iter().map(|(id, l)| (id.to_string(), *l))),
            subfields: match f.field_type {
                "monetary" => MONEY,
                "address" => ADDRESS,
                _ => &[],
            },
            custom: true,
            optional: false,
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_are_json_and_keys_are_40_hex() {
        for t in Tenant::ALL {
            for kind in Kind::ALL {
                for d in field_defs(7, kind, t, &HashMap::new()) {
                    let v: serde_json::Value = serde_json::from_str(&d).unwrap();
                    assert!(v["field_code"].is_string(), "{d}");
                }
                for f in custom_fields(kind, t) {
                    let k = field_key(7, kind, f.slot);
                    assert_eq!(k.len(), 40);
                    assert!(k.bytes().all(|b| b.is_ascii_hexdigit()));
                }
            }
        }
        assert_eq!(custom_fields(Kind::Deal, Tenant::Lean).count(), 1);
        assert_eq!(custom_fields(Kind::Deal, Tenant::Standard).count(), 4);
    }
}

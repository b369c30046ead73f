//! How the tenant variants differ from a standard Sales org (`SandboxOptions::tenant`):
//! - standard: the few columns a firm adds under the default publisher (`new_`);
//! - lean: an org without the Sales solution and with columns removed (tables are dropped in
//!   `Set::in_tenant`; the columns here), no custom columns;
//! - custom: the standard additions plus many columns of a solution publisher (`cr4f2_`) of
//!   every common type, with display names in the org's languages (Cyrillic, Japanese,
//!   French) while logical names stay ASCII, and one (`cr4f2_revenue`) whose display name is
//!   the standard "Annual Revenue".
//!
//! Custom choice values follow the publisher's option-value prefix (10000 for the default
//! publisher, 41230 here), as Dataverse numbers them.

use super::super::entities::{Attr, DATE, Gen, Kind, Set};
use super::super::options::Tenant;

/// Whether `tenant` lacks the standard attribute `logical` of `set`.
pub fn removed(set: Set, tenant: Tenant, logical: &str) -> bool {
    tenant == Tenant::Lean
        && matches!(
            (set, logical),
            (Set::Accounts, "telephone2")
                | (Set::Contacts, "department" | "jobtitle")
                | (Set::Opportunities, "originatingleadid")
        )
}

/// The custom attributes `tenant` adds to `set`.
pub fn added(set: Set, tenant: Tenant) -> &'static [Attr] {
    match (tenant, set) {
        (Tenant::Lean, _) => &[],
        (Tenant::Standard, Set::Accounts) => STANDARD_ACCOUNT,
        (Tenant::Standard, Set::Opportunities) => STANDARD_OPPORTUNITY,
        (Tenant::Custom, Set::Accounts) => CUSTOM_ACCOUNT,
        (Tenant::Custom, Set::Contacts) => CUSTOM_CONTACT,
        (Tenant::Custom, Set::Opportunities) => CUSTOM_OPPORTUNITY,
        _ => &[],
    }
}

const fn c(logical: &'static str, kind: Kind, display: &'static str, generator: Gen) -> Attr {
    Attr {
        logical,
        kind,
        display,
        targets: &[],
        custom: true,
        generator,
    }
}

const TIER: &[(i64, &str)] = &[
    (100_000_000, "Gold"),
    (100_000_001, "Silver"),
    (100_000_002, "Bronze"),
];
const FORECAST: &[(i64, &str)] = &[
    (100_000_000, "Pipeline"),
    (100_000_001, "Best Case"),
    (100_000_002, "Committed"),
    (100_000_003, "Omitted"),
];
const REGIONS: &[&str] = &["North", "South", "East", "West", "Central"];

const NEW_TIER: Attr = c(
    "new_tier",
    Kind::Picklist,
    "Tier",
    Gen::Choice {
        labels: TIER,
        null_pct: 25,
    },
);
const NEW_REGION: Attr = c(
    "new_region",
    Kind::String,
    "Region",
    Gen::Word {
        words: REGIONS,
        null_pct: 20,
    },
);
const NEW_FORECAST: Attr = c(
    "new_forecastcategory",
    Kind::Picklist,
    "Forecast Category",
    Gen::Choice {
        labels: FORECAST,
        null_pct: 10,
    },
);

const STANDARD_ACCOUNT: &[Attr] = &[NEW_TIER, NEW_REGION];
const STANDARD_OPPORTUNITY: &[Attr] = &[NEW_FORECAST];

const SECTOR: &[(i64, &str)] = &[
    (412_300_000, "Производство"),
    (412_300_001, "Розничная торговля"),
    (412_300_002, "Финансы"),
    (412_300_003, "Информационные технологии"),
];
const LANGUAGE: &[(i64, &str)] = &[
    (412_300_000, "English"),
    (412_300_001, "Français"),
    (412_300_002, "Deutsch"),
    (412_300_003, "日本語"),
];
const DEAL_TYPE: &[(i64, &str)] = &[
    (412_300_000, "Nouvelle affaire"),
    (412_300_001, "Renouvellement"),
    (412_300_002, "Extension"),
];
const AREAS: &[&str] = &["関東", "関西", "九州", "北海道", "EMEA", "APAC"];
const FR_REGIONS: &[&str] = &[
    "Île-de-France",
    "Auvergne-Rhône-Alpes",
    "Bretagne",
    "Occitanie",
    "Grand Est",
];
const NICKNAMES: &[&str] = &["Саша", "Женя", "Ники", "Тони", "Крис"];
const COMPETITORS: &[&str] = &["競合なし", "Contoso", "Fabrikam", "Northwind", "Tailspin"];

/// A custom lookup to accounts; its navigation property is the schema name.
const PARTNER: Attr = Attr {
    logical: "cr4f2_partneraccountid",
    kind: Kind::Lookup,
    display: "Partenaire",
    targets: &["account"],
    custom: true,
    generator: Gen::Lookup {
        target: Set::Accounts,
        pct: 35,
        nav: "cr4f2_PartnerAccountId",
    },
};
const BUDGET: Attr = c(
    "cr4f2_budget",
    Kind::Money,
    "Бюджет",
    Gen::Money {
        lo: 1_000,
        hi: 2_000_000,
        null_pct: 30,
    },
);

const CUSTOM_ACCOUNT: &[Attr] = &[
    NEW_TIER,
    NEW_REGION,
    c(
        "cr4f2_sector",
        Kind::Picklist,
        "Отрасль",
        Gen::Choice {
            labels: SECTOR,
            null_pct: 15,
        },
    ),
    c(
        "cr4f2_area",
        Kind::String,
        "地域",
        Gen::Word {
            words: AREAS,
            null_pct: 10,
        },
    ),
    c(
        "cr4f2_region",
        Kind::String,
        "Région",
        Gen::Word {
            words: FR_REGIONS,
            null_pct: 30,
        },
    ),
    c(
        "cr4f2_revenue",
        Kind::Money,
        "Annual Revenue",
        Gen::Money {
            lo: 10_000,
            hi: 90_000_000,
            null_pct: 35,
        },
    ),
    BUDGET,
    c(
        "cr4f2_headcount",
        Kind::Integer,
        "従業員数",
        Gen::Int {
            lo: 1,
            hi: 50_000,
            null_pct: 20,
        },
    ),
    c(
        "cr4f2_onboardedon",
        DATE,
        "Date d'intégration",
        Gen::DateAfter {
            min: 0,
            max: 400,
            pct: 70,
        },
    ),
    c(
        "cr4f2_isstrategic",
        Kind::Boolean,
        "Стратегический",
        Gen::Bool { true_pct: 15 },
    ),
    PARTNER,
];

const CUSTOM_CONTACT: &[Attr] = &[
    c(
        "cr4f2_preferredlanguage",
        Kind::Picklist,
        "言語",
        Gen::Choice {
            labels: LANGUAGE,
            null_pct: 20,
        },
    ),
    c(
        "cr4f2_loyaltypoints",
        Kind::Integer,
        "Баллы лояльности",
        Gen::Int {
            lo: 0,
            hi: 100_000,
            null_pct: 25,
        },
    ),
    c(
        "cr4f2_lastvisit",
        DATE,
        "Dernière visite",
        Gen::DateAfter {
            min: 1,
            max: 900,
            pct: 60,
        },
    ),
    c("cr4f2_vip", Kind::Boolean, "VIP", Gen::Bool { true_pct: 7 }),
    c(
        "cr4f2_nickname",
        Kind::String,
        "Прозвище",
        Gen::Word {
            words: NICKNAMES,
            null_pct: 60,
        },
    ),
];

const CUSTOM_OPPORTUNITY: &[Attr] = &[
    NEW_FORECAST,
    BUDGET,
    c(
        "cr4f2_competitor",
        Kind::String,
        "競合",
        Gen::Word {
            words: COMPETITORS,
            null_pct: 25,
        },
    ),
    c(
        "cr4f2_decisiondate",
        DATE,
        "Date de décision",
        Gen::DateAfter {
            min: 20,
            max: 300,
            pct: 65,
        },
    ),
    PARTNER,
    c(
        "cr4f2_dealtype",
        Kind::Picklist,
        "Type d'affaire",
        Gen::Choice {
            labels: DEAL_TYPE,
            null_pct: 5,
        },
    ),
    c(
        "cr4f2_renewal",
        Kind::Boolean,
        "Renouvellement",
        Gen::Bool { true_pct: 30 },
    ),
];

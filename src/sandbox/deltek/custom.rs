//! The custom (`Cust*`) fields each tenant variant added to its hubs: a few in Standard (the
//! external id a Dynamics integration keeps, a sector, budget hours), one per hub at most in
//! Lean, many in Custom (captions in other scripts, one captioned like the standard `Status`,
//! `CustBudgetHours` drifting between numbers, `"TBD"` and `""`). Ledgers and the chart of
//! accounts have none.

use super::super::options::Tenant;
use super::kind::Kind;
use super::schema::{Field, Gen, Ty, cust};

const SECTORS: &[&str] = &[
    "Transportation",
    "Water",
    "Buildings",
    "Energy",
    "Environmental",
];

/// The external id a Dynamics → Vantagepoint integration keeps on each record it writes.
const DYNAMICS_ID: Field = cust("CustDynamicsId", Ty::String, "Dynamics ID", 36, Gen::Never);
/// The same, as a Lean tenant's administrator named it on firms: a tenant whose external-id
/// field is not the one a flow assumes.
const CRM_ID: Field = cust("CustCRMId", Ty::String, "CRM ID", 36, Gen::Never);
const SECTOR: Field = cust(
    "CustSector",
    Ty::Dropdown,
    "Market Sector",
    50,
    Gen::Pick(SECTORS, 20),
);
const BUDGET_HOURS: Field = cust(
    "CustBudgetHours",
    Ty::Numeric(2),
    "Budget Hours",
    0,
    Gen::Num {
        lo: 0,
        hi: 500_000,
        scale: 2,
        null: 15,
    },
);

/// Custom fields captioned in other scripts (field names stay ASCII, as Vantagepoint requires).
const OTRASL: Field = cust(
    "CustOtrasl",
    Ty::Dropdown,
    "Отрасль",
    50,
    Gen::Pick(&["Строительство", "Энергетика", "Транспорт"], 30),
);
const CHIIKI: Field = cust(
    "CustChiiki",
    Ty::Dropdown,
    "地域",
    50,
    Gen::Pick(&["関東", "関西", "九州", "北海道"], 30),
);
const REGION: Field = cust(
    "CustRegion",
    Ty::Dropdown,
    "Région",
    50,
    Gen::Pick(&["Île-de-France", "Québec", "Genève", "Wallonie"], 25),
);
/// Captioned like the standard `Status` field.
const CUST_STATUS: Field = cust(
    "CustStatus",
    Ty::Dropdown,
    "Status",
    20,
    Gen::Pick(&["Key Account", "Watch", "Dormant"], 40),
);

static PROJECT_STANDARD: &[Field] = &[SECTOR, BUDGET_HOURS, DYNAMICS_ID];
static PROJECT_LEAN: &[Field] = &[DYNAMICS_ID];
static PROJECT_CUSTOM: &[Field] = &[
    SECTOR,
    cust(
        "CustBudgetHours",
        Ty::Numeric(2),
        "Budget Hours",
        0,
        Gen::Drift {
            lo: 0,
            hi: 500_000,
            scale: 2,
        },
    ),
    DYNAMICS_ID,
    OTRASL,
    CHIIKI,
    REGION,
    CUST_STATUS,
    cust(
        "CustRiskScore",
        Ty::Numeric(1),
        "Risk Score",
        0,
        Gen::Num {
            lo: 0,
            hi: 100,
            scale: 1,
            null: 10,
        },
    ),
    cust(
        "CustGoNoGoDate",
        Ty::Date,
        "Go/No-Go Date",
        0,
        Gen::Day {
            lo: 0,
            hi: 4000,
            null: 50,
        },
    ),
    cust(
        "CustSelfPerform",
        Ty::Checkbox,
        "Self-Perform",
        1,
        Gen::Flag(40),
    ),
    cust(
        "CustClientPM",
        Ty::Contact,
        "Client Project Manager",
        32,
        Gen::Ref(Kind::Contact, 30),
    ),
    cust(
        "CustQAReviewer",
        Ty::Employee,
        "QA Reviewer",
        20,
        Gen::Ref(Kind::Employee, 30),
    ),
];

const INDUSTRY: Field = cust(
    "CustIndustry",
    Ty::Dropdown,
    "Industry",
    50,
    Gen::Pick(
        &["Public Sector", "Healthcare", "Education", "Commercial"],
        10,
    ),
);
const TIER: Field = cust(
    "CustAccountTier",
    Ty::Dropdown,
    "Account Tier",
    10,
    Gen::Pick(&["A", "B", "C"], 20),
);
const CREDIT_LIMIT: Field = cust(
    "CustCreditLimit",
    Ty::Currency(2),
    "Credit Limit",
    0,
    Gen::Num {
        lo: 0,
        hi: 100_000_000,
        scale: 2,
        null: 40,
    },
);
static FIRM_STANDARD: &[Field] = &[DYNAMICS_ID, INDUSTRY, TIER, CREDIT_LIMIT];
static FIRM_LEAN: &[Field] = &[CRM_ID];
static FIRM_CUSTOM: &[Field] = &[
    DYNAMICS_ID,
    INDUSTRY,
    TIER,
    CREDIT_LIMIT,
    OTRASL,
    CHIIKI,
    REGION,
    CUST_STATUS,
    cust("CustDUNS", Ty::String, "D-U-N-S Number", 9, Gen::Never),
    cust(
        "CustClientSince",
        Ty::Date,
        "Client Since",
        0,
        Gen::Day {
            lo: 0,
            hi: 3000,
            null: 20,
        },
    ),
    cust(
        "CustPreferredVendor",
        Ty::Checkbox,
        "Preferred Vendor",
        1,
        Gen::Flag(15),
    ),
    cust(
        "CustNotes",
        Ty::Memo,
        "Relationship Notes",
        0,
        Gen::Text(50),
    ),
];

const LINKEDIN: Field = cust(
    "CustLinkedIn",
    Ty::String,
    "LinkedIn Profile",
    255,
    Gen::Never,
);
const PREFERRED_CONTACT: Field = cust(
    "CustPreferredContact",
    Ty::Dropdown,
    "Preferred Contact Method",
    20,
    Gen::Pick(&["Email", "Phone", "Mobile"], 30),
);
static CONTACT_STANDARD: &[Field] = &[DYNAMICS_ID, LINKEDIN, PREFERRED_CONTACT];
static CONTACT_LEAN: &[Field] = &[DYNAMICS_ID];
static CONTACT_CUSTOM: &[Field] = &[
    DYNAMICS_ID,
    LINKEDIN,
    PREFERRED_CONTACT,
    REGION,
    CHIIKI,
    cust(
        "CustBirthday",
        Ty::Date,
        "Birthday",
        0,
        Gen::Day {
            lo: -20_000,
            hi: -7_000,
            null: 60,
        },
    ),
    cust(
        "CustNewsletter",
        Ty::Checkbox,
        "Newsletter",
        1,
        Gen::Flag(45),
    ),
    cust("CustAssistant", Ty::String, "Assistant", 100, Gen::Never),
];

const LICENSE: Field = cust(
    "CustLicenseNumber",
    Ty::String,
    "PE License Number",
    30,
    Gen::Never,
);
const LEED: Field = cust(
    "CustLEED",
    Ty::Checkbox,
    "LEED Accredited",
    1,
    Gen::Flag(25),
);
static EMPLOYEE_STANDARD: &[Field] = &[LICENSE, LEED];
static EMPLOYEE_CUSTOM: &[Field] = &[
    LICENSE,
    LEED,
    OTRASL,
    REGION,
    cust(
        "CustShirtSize",
        Ty::Dropdown,
        "Shirt Size",
        5,
        Gen::Pick(&["S", "M", "L", "XL"], 10),
    ),
    cust("CustRemote", Ty::Checkbox, "Remote", 1, Gen::Flag(30)),
];

static OPPORTUNITY_STANDARD: &[Field] = &[DYNAMICS_ID, SECTOR];
static OPPORTUNITY_LEAN: &[Field] = &[DYNAMICS_ID];
static OPPORTUNITY_CUSTOM: &[Field] = &[
    DYNAMICS_ID,
    SECTOR,
    OTRASL,
    CHIIKI,
    REGION,
    cust(
        "CustBudgetHours",
        Ty::Numeric(2),
        "Budget Hours",
        0,
        Gen::Drift {
            lo: 0,
            hi: 500_000,
            scale: 2,
        },
    ),
];

const OUTCOME: Field = cust(
    "CustOutcome",
    Ty::Dropdown,
    "Outcome",
    20,
    Gen::Pick(&["Positive", "Neutral", "Negative"], 35),
);
static ACTIVITY_STANDARD: &[Field] = &[OUTCOME];
static ACTIVITY_CUSTOM: &[Field] = &[
    OUTCOME,
    REGION,
    cust(
        "CustFollowUpDate",
        Ty::Date,
        "Follow-up Date",
        0,
        Gen::Day {
            lo: 3000,
            hi: 4500,
            null: 50,
        },
    ),
];

/// The custom fields a tenant added to a table (ledgers and the chart of accounts: none).
pub fn custom(k: Kind, tenant: Tenant) -> &'static [Field] {
    use Tenant::{Custom, Lean, Standard};
    match (k, tenant) {
        (Kind::Project | Kind::Phase | Kind::Task, Standard) => PROJECT_STANDARD,
        (Kind::Project | Kind::Phase | Kind::Task, Lean) => PROJECT_LEAN,
        (Kind::Project | Kind::Phase | Kind::Task, Custom) => PROJECT_CUSTOM,
        (Kind::Firm, Standard) => FIRM_STANDARD,
        (Kind::Firm, Lean) => FIRM_LEAN,
        (Kind::Firm, Custom) => FIRM_CUSTOM,
        (Kind::Contact, Standard) => CONTACT_STANDARD,
        (Kind::Contact, Lean) => CONTACT_LEAN,
        (Kind::Contact, Custom) => CONTACT_CUSTOM,
        (Kind::Employee, Standard) => EMPLOYEE_STANDARD,
        (Kind::Employee, Custom) => EMPLOYEE_CUSTOM,
        (Kind::Opportunity, Standard) => OPPORTUNITY_STANDARD,
        (Kind::Opportunity, Lean) => OPPORTUNITY_LEAN,
        (Kind::Opportunity, Custom) => OPPORTUNITY_CUSTOM,
        (Kind::Activity, Standard) => ACTIVITY_STANDARD,
        (Kind::Activity, Custom) => ACTIVITY_CUSTOM,
        _ => &[],
    }
}

//! The Deltek fake's own schema: every table's fields as Vantagepoint names and types them
//! (shared/reference/deltek-pipedrive-looker.md §1.3, §1.4, §1.6; field names cross-checked
//! against a public third-party Go client of the API), the custom `Cust*` fields of each tenant
//! variant, and how each field's value is generated. Nothing here comes from mlc's catalog: the
//! fake plays a tenant, and mlc must cope with the tenant it meets.
//!
//! Values follow §1.6: dates are zone-less `YYYY-MM-DDTHH:MM:SS.mmm` strings, Y/N flags are
//! strings, accounts are decimal strings (`"625.00"`), amounts and counts are JSON numbers.

use super::kind::Kind;

/// A Vantagepoint `FieldType` (the metadata's spelling, see [`Ty::name`]). Only the types the
/// fake serves; the value's JSON type follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    String,
    Memo,
    Phone,
    /// A number with this many decimals (JSON number).
    Numeric(u8),
    /// Money with this many decimals (JSON number).
    Currency(u8),
    /// Midnight of a day, zone-less.
    Date,
    /// Wall clock in the tenant zone, zone-less.
    Datetime,
    /// `"Y"` / `"N"`.
    Checkbox,
    Dropdown,
    Employee,
    Firm,
    Contact,
    Vendor,
    Org,
    /// A GL account number, sent as a decimal string.
    Account,
    Wbs1,
    Wbs2,
    Wbs3,
    User,
    /// A server-assigned GUID-like key.
    RecordId,
}

impl Ty {
    /// The metadata's `FieldType` value.
    pub fn name(self) -> &'static str {
        match self {
            Ty::String => "String",
            Ty::Memo => "Memo",
            Ty::Phone => "Phone",
            Ty::Numeric(_) => "Numeric",
            Ty::Currency(_) => "Currency",
            Ty::Date => "Date",
            Ty::Datetime => "Datetime",
            Ty::Checkbox => "Checkbox",
            Ty::Dropdown => "Dropdown",
            Ty::Employee => "Employee",
            Ty::Firm => "Firm",
            Ty::Contact => "Contact",
            Ty::Vendor => "Vendor",
            Ty::Org => "Org",
            Ty::Account => "Account",
            Ty::Wbs1 => "WBS1",
            Ty::Wbs2 => "WBS2",
            Ty::Wbs3 => "WBS3",
            Ty::User => "User",
            Ty::RecordId => "RecordID",
        }
    }

    /// Decimals of a numeric type (`None`: not numeric).
    pub fn decimals(self) -> Option<u8> {
        match self {
            Ty::Numeric(d) | Ty::Currency(d) => Some(d),
            _ => None,
        }
    }
}

/// How a field's value is generated for a row that was not saved through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gen {
    /// The field's own rule in `tables::write_row`, by name.
    Named,
    /// One of the values; null in this percentage of rows.
    Pick(&'static [&'static str], u64),
    /// A number `lo..=hi` in units of 10^-scale; null in `null`% of rows.
    Num {
        lo: i64,
        hi: i64,
        scale: u8,
        null: u64,
    },
    /// A day (midnight) `lo..=hi` days after 2015-01-01; null in `null`% of rows.
    Day { lo: i64, hi: i64, null: u64 },
    /// `"Y"` in this percentage of rows, else `"N"`.
    Flag(u64),
    /// The key of a row of another table; null in this percentage of rows.
    Ref(Kind, u64),
    /// A phone number; null in this percentage of rows.
    Phone(u64),
    /// A short sentence; null in this percentage of rows.
    Text(u64),
    /// The same value on every row.
    Const(&'static str),
    /// Never set on generated rows: only records saved through the API carry a value (an
    /// external id a sink writes).
    Never,
    /// A number like [`Gen::Num`], except that users typed `"TBD"` or left `""` in a few rows
    /// (about 3% each): the JSON type drifts between records.
    Drift { lo: i64, hi: i64, scale: u8 },
}

/// One field of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub ty: Ty,
    /// The label the UI shows (the metadata's `Caption`).
    pub caption: &'static str,
    /// `MaxLength` for text types (0: none sent).
    pub max_len: u16,
    /// System-required: a create without it is refused.
    pub required: bool,
    /// The API may write it (`false`: set by the server).
    pub updateable: bool,
    /// A user-defined field (`Cust*`, the metadata's `CustomField`).
    pub custom: bool,
    pub fill: Gen,
}

const fn f(name: &'static str, ty: Ty, caption: &'static str, max_len: u16, fill: Gen) -> Field {
    Field {
        name,
        ty,
        caption,
        max_len,
        required: false,
        updateable: true,
        custom: false,
        fill,
    }
}

/// A field every create must carry.
const fn req(name: &'static str, ty: Ty, caption: &'static str, max_len: u16) -> Field {
    Field {
        required: true,
        ..f(name, ty, caption, max_len, Gen::Named)
    }
}

/// A field the server sets (keys it assigns, audit stamps).
const fn ro(name: &'static str, ty: Ty, caption: &'static str, max_len: u16) -> Field {
    Field {
        updateable: false,
        ..f(name, ty, caption, max_len, Gen::Named)
    }
}

/// A user-defined field.
pub(super) const fn cust(
    name: &'static str,
    ty: Ty,
    caption: &'static str,
    max_len: u16,
    fill: Gen,
) -> Field {
    Field {
        custom: true,
        ..f(name, ty, caption, max_len, fill)
    }
}

const fn n(name: &'static str, ty: Ty, caption: &'static str, max_len: u16) -> Field {
    f(name, ty, caption, max_len, Gen::Named)
}

const AUDIT: [Field; 4] = [
    ro("CreateUser", Ty::User, "Created By", 32),
    ro("CreateDate", Ty::Datetime, "Created", 0),
    ro("ModUser", Ty::User, "Modified By", 32),
    ro("ModDate", Ty::Datetime, "Last Modified", 0),
];

/// Fields only a 5.0+ tenant's projects carry (projects in pursuit). [UNCERTAIN] names, as in
/// the reference; a pre-5.0 tenant (Opportunities hub) has none of them.
pub const PURSUIT_FIELDS: [&str; 3] = ["Stage", "StageDescription", "Probability"];

/// The Projects hub (table PR): projects, phases and tasks share it.
static PROJECT: &[Field] = &[
    req("WBS1", Ty::Wbs1, "Project Number", 30),
    n("WBS2", Ty::Wbs2, "Phase Number", 30),
    n("WBS3", Ty::Wbs3, "Task Number", 30),
    n("WBSNumber", Ty::String, "WBS Number", 100),
    req("Name", Ty::String, "Project Name", 40),
    n("LongName", Ty::String, "Long Name", 255),
    n("ChargeType", Ty::Dropdown, "Charge Type", 1),
    n("SubLevel", Ty::Checkbox, "Has Sublevels", 1),
    n("Principal", Ty::Employee, "Principal", 20),
    n("ProjMgr", Ty::Employee, "Project Manager", 20),
    n("Supervisor", Ty::Employee, "Supervisor", 20),
    n("ClientID", Ty::Firm, "Client", 32),
    n("ContactID", Ty::Contact, "Client Contact", 32),
    n("BillingClientID", Ty::Firm, "Billing Client", 32),
    f(
        "BillingContactID",
        Ty::Contact,
        "Billing Contact",
        32,
        Gen::Ref(Kind::Contact, 50),
    ),
    n("Fee", Ty::Currency(2), "Compensation", 0),
    f(
        "ReimbAllow",
        Ty::Currency(2),
        "Reimbursable Allowance",
        0,
        Gen::Num {
            lo: 0,
            hi: 5_000_000,
            scale: 2,
            null: 0,
        },
    ),
    f(
        "ConsultFee",
        Ty::Currency(2),
        "Consultant Fee",
        0,
        Gen::Num {
            lo: 0,
            hi: 9_000_000,
            scale: 2,
            null: 0,
        },
    ),
    n("Status", Ty::Dropdown, "Status", 1),
    n("RevType", Ty::Dropdown, "Revenue Method", 10),
    n("Org", Ty::Org, "Organization", 30),
    n("StartDate", Ty::Date, "Start Date", 0),
    n("EndDate", Ty::Date, "End Date", 0),
    f(
        "PctComp",
        Ty::Numeric(2),
        "Percent Complete",
        0,
        Gen::Num {
            lo: 0,
            hi: 10_000,
            scale: 2,
            null: 0,
        },
    ),
    n("ProjectType", Ty::Dropdown, "Project Type", 10),
    n("EstCompletionDate", Ty::Date, "Estimated Completion", 0),
    n("ActCompletionDate", Ty::Date, "Actual Completion", 0),
    f(
        "ContractDate",
        Ty::Date,
        "Contract Date",
        0,
        Gen::Day {
            lo: 0,
            hi: 4000,
            null: 40,
        },
    ),
    n("ProposalWBS1", Ty::Wbs1, "Proposal Project", 30),
    n("ProjectCurrencyCode", Ty::Dropdown, "Project Currency", 3),
    n("BillingCurrencyCode", Ty::Dropdown, "Billing Currency", 3),
    f(
        "AvailableForCRM",
        Ty::Checkbox,
        "Available for CRM",
        1,
        Gen::Flag(80),
    ),
    n("City", Ty::String, "City", 50),
    n("State", Ty::String, "State/Province", 50),
    n("Stage", Ty::Dropdown, "Stage", 10),
    n("StageDescription", Ty::String, "Stage Description", 50),
    n("Probability", Ty::Numeric(0), "Probability (%)", 0),
    AUDIT[0],
    AUDIT[1],
    AUDIT[2],
    AUDIT[3],
];

/// The Firms hub (table Clendor: clients and vendors). `CustomCurrencyCode` is a standard field
/// that merely starts like a custom one.
static FIRM: &[Field] = &[
    ro("ClientID", Ty::RecordId, "Firm ID", 32),
    n("Client", Ty::String, "Firm Number", 30),
    req("Name", Ty::String, "Firm Name", 255),
    n("Type", Ty::Dropdown, "Type", 10),
    n("Status", Ty::Dropdown, "Status", 1),
    n("ClientInd", Ty::Checkbox, "Client", 1),
    n("VendorInd", Ty::Checkbox, "Vendor", 1),
    n("Vendor", Ty::Vendor, "Vendor Number", 30),
    n("ParentID", Ty::Firm, "Parent Firm", 32),
    n("Org", Ty::Org, "Organization", 30),
    n("Owner", Ty::Employee, "Owner", 20),
    n("WebSite", Ty::String, "Website", 255),
    f("Memo", Ty::Memo, "Notes", 0, Gen::Text(70)),
    f(
        "CustomCurrencyCode",
        Ty::Dropdown,
        "Custom Currency Code",
        3,
        Gen::Pick(&["USD", "USD", "CAD", "EUR"], 0),
    ),
    f("Competitor", Ty::Checkbox, "Competitor", 1, Gen::Flag(10)),
    f(
        "SmallBusiness",
        Ty::Checkbox,
        "Small Business",
        1,
        Gen::Flag(35),
    ),
    f(
        "AnnualRevenue",
        Ty::Currency(2),
        "Annual Revenue",
        0,
        Gen::Num {
            lo: 10_000_000,
            hi: 90_000_000_000,
            scale: 2,
            null: 30,
        },
    ),
    f(
        "Employees",
        Ty::Numeric(0),
        "Employees",
        0,
        Gen::Num {
            lo: 1,
            hi: 25_000,
            scale: 0,
            null: 30,
        },
    ),
    n("PrimaryAddress1", Ty::String, "Address 1", 255),
    n("PrimaryCity", Ty::String, "City", 50),
    n("PrimaryState", Ty::String, "State/Province", 50),
    n("PrimaryZip", Ty::String, "ZIP/Postal Code", 20),
    n("PrimaryCountry", Ty::String, "Country", 50),
    n("PrimaryPhone", Ty::Phone, "Phone", 24),
    n("PrimaryEmail", Ty::String, "Email", 255),
    AUDIT[0],
    AUDIT[1],
    AUDIT[2],
    AUDIT[3],
];

static CONTACT: &[Field] = &[
    ro("ContactID", Ty::RecordId, "Contact ID", 32),
    n("ClientID", Ty::Firm, "Firm", 32),
    f(
        "Salutation",
        Ty::Dropdown,
        "Salutation",
        10,
        Gen::Pick(&["Mr.", "Ms.", "Dr.", "Mx."], 30),
    ),
    n("FirstName", Ty::String, "First Name", 50),
    n("MiddleName", Ty::String, "Middle Name", 50),
    req("LastName", Ty::String, "Last Name", 50),
    f(
        "Suffix",
        Ty::Dropdown,
        "Suffix",
        10,
        Gen::Pick(&["Jr.", "Sr.", "III", "PhD"], 90),
    ),
    n("PreferredName", Ty::String, "Preferred Name", 50),
    n("Title", Ty::String, "Title", 50),
    n("Email", Ty::String, "Email", 255),
    n("Phone", Ty::Phone, "Business Phone", 24),
    n("CellPhone", Ty::Phone, "Mobile Phone", 24),
    f("HomePhone", Ty::Phone, "Home Phone", 24, Gen::Phone(70)),
    n("ContactStatus", Ty::Dropdown, "Status", 1),
    n("QualifiedStatus", Ty::Dropdown, "Qualified Status", 20),
    f(
        "Source",
        Ty::Dropdown,
        "Source",
        10,
        Gen::Pick(&["Referral", "Web", "Event", "Cold Call"], 25),
    ),
    n("Owner", Ty::Employee, "Owner", 20),
    f(
        "CustomCurrencyCode",
        Ty::Dropdown,
        "Custom Currency Code",
        3,
        Gen::Pick(&["USD", "USD", "CAD", "EUR"], 0),
    ),
    AUDIT[0],
    AUDIT[1],
    AUDIT[2],
    AUDIT[3],
];

/// The Employees hub (table EM). The email field is spelled `EMail`.
static EMPLOYEE: &[Field] = &[
    req("Employee", Ty::String, "Employee Number", 20),
    n("FirstName", Ty::String, "First Name", 25),
    n("MiddleName", Ty::String, "Middle Name", 25),
    req("LastName", Ty::String, "Last Name", 30),
    n("PreferredName", Ty::String, "Preferred Name", 25),
    n("Title", Ty::String, "Title", 50),
    n("EMail", Ty::String, "Email", 255),
    f("WorkPhone", Ty::Phone, "Work Phone", 24, Gen::Phone(10)),
    n("Org", Ty::Org, "Organization", 30),
    n("EmployeeCompany", Ty::Dropdown, "Company", 14),
    f(
        "HomeCompany",
        Ty::Dropdown,
        "Home Company",
        14,
        Gen::Const("01"),
    ),
    n("Supervisor", Ty::Employee, "Supervisor", 20),
    n("HireDate", Ty::Date, "Hire Date", 0),
    f(
        "TerminationDate",
        Ty::Date,
        "Termination Date",
        0,
        Gen::Day {
            lo: 3000,
            hi: 4000,
            null: 90,
        },
    ),
    n("Status", Ty::Dropdown, "Status", 1),
    n("PayType", Ty::Dropdown, "Pay Type", 1),
    f(
        "JobCostRate",
        Ty::Currency(4),
        "Job Cost Rate",
        0,
        Gen::Num {
            lo: 250_000,
            hi: 1_500_000,
            scale: 4,
            null: 0,
        },
    ),
    AUDIT[0],
    AUDIT[1],
    AUDIT[2],
    AUDIT[3],
];

/// The Opportunities hub of pre-5.0 tenants (table Opportunity).
static OPPORTUNITY: &[Field] = &[
    ro("OpportunityID", Ty::RecordId, "Opportunity ID", 32),
    req("Name", Ty::String, "Opportunity Name", 255),
    n("ClientID", Ty::Firm, "Client", 32),
    n("ContactID", Ty::Contact, "Client Contact", 32),
    n("Org", Ty::Org, "Organization", 30),
    n("ProjMgr", Ty::Employee, "Project Manager", 20),
    n("Principal", Ty::Employee, "Principal", 20),
    n("Stage", Ty::Dropdown, "Stage", 10),
    n("StageDescription", Ty::String, "Stage Description", 50),
    n("Probability", Ty::Numeric(0), "Probability (%)", 0),
    n("Revenue", Ty::Currency(2), "Estimated Revenue", 0),
    n("EstStartDate", Ty::Date, "Estimated Start", 0),
    n("EstCompletionDate", Ty::Date, "Estimated Completion", 0),
    f(
        "OpenedDate",
        Ty::Date,
        "Opened",
        0,
        Gen::Day {
            lo: 0,
            hi: 3000,
            null: 0,
        },
    ),
    f(
        "Source",
        Ty::Dropdown,
        "Source",
        10,
        Gen::Pick(&["Referral", "RFP", "Repeat Client", "Event"], 20),
    ),
    n("Status", Ty::Dropdown, "Status", 1),
    AUDIT[0],
    AUDIT[1],
    AUDIT[2],
    AUDIT[3],
];

static ACTIVITY: &[Field] = &[
    ro("ActivityID", Ty::RecordId, "Activity ID", 32),
    n("Type", Ty::Dropdown, "Type", 15),
    req("Subject", Ty::String, "Subject", 255),
    n("StartDate", Ty::Datetime, "Start", 0),
    n("EndDate", Ty::Datetime, "End", 0),
    f(
        "Duration",
        Ty::Numeric(0),
        "Duration (min)",
        0,
        Gen::Num {
            lo: 15,
            hi: 240,
            scale: 0,
            null: 0,
        },
    ),
    f(
        "Location",
        Ty::String,
        "Location",
        255,
        Gen::Pick(&["Client office", "Teams", "Head office", "Site"], 30),
    ),
    f(
        "Priority",
        Ty::Dropdown,
        "Priority",
        10,
        Gen::Pick(&["High", "Medium", "Low"], 0),
    ),
    n("CompletionInd", Ty::Checkbox, "Completed", 1),
    f("PrivateInd", Ty::Checkbox, "Private", 1, Gen::Flag(5)),
    f(
        "AllDayEventInd",
        Ty::Checkbox,
        "All Day Event",
        1,
        Gen::Flag(15),
    ),
    f(
        "Employee",
        Ty::Employee,
        "Employee",
        20,
        Gen::Ref(Kind::Employee, 0),
    ),
    n("Owner", Ty::Employee, "Owner", 20),
    n("ClientID", Ty::Firm, "Firm", 32),
    n("ContactID", Ty::Contact, "Contact", 32),
    n("WBS1", Ty::Wbs1, "Project", 30),
    f(
        "CampaignID",
        Ty::String,
        "Marketing Campaign",
        32,
        Gen::Never,
    ),
    n("OpportunityID", Ty::String, "Opportunity", 32),
    AUDIT[0],
    AUDIT[1],
    AUDIT[2],
    AUDIT[3],
];

const PERIOD: Field = req("Period", Ty::Numeric(0), "Period", 0);
const POST_SEQ: Field = req("PostSeq", Ty::Numeric(0), "Posting Sequence", 0);
const PKEY: Field = req("PKey", Ty::String, "Line Key", 32);
const BATCH: Field = f(
    "Batch",
    Ty::String,
    "Batch",
    32,
    Gen::Pick(&["AP-2401", "AP-2402", "CLOSE-01", "IMPORT"], 0),
);
const DESC2: Field = f("Desc2", Ty::String, "Description 2", 40, Gen::Text(80));
const BILL_STATUS: Field = f(
    "BillStatus",
    Ty::Dropdown,
    "Billing Status",
    1,
    Gen::Pick(&["B", "B", "H", "W", "F"], 0),
);

/// Posted AP voucher lines (`PSALedger/AP`).
static AP: &[Field] = &[
    PERIOD,
    POST_SEQ,
    PKEY,
    BATCH,
    f(
        "TransType",
        Ty::String,
        "Transaction Type",
        2,
        Gen::Const("AP"),
    ),
    n("Vendor", Ty::Vendor, "Vendor", 32),
    n("Voucher", Ty::String, "Voucher", 12),
    n("Invoice", Ty::String, "Invoice", 12),
    n("InvoiceDate", Ty::Date, "Invoice Date", 0),
    n("TransDate", Ty::Date, "Transaction Date", 0),
    n("WBS1", Ty::Wbs1, "Project", 30),
    n("WBS2", Ty::Wbs2, "Phase", 30),
    n("WBS3", Ty::Wbs3, "Task", 30),
    n("Account", Ty::Account, "Account", 13),
    n("Amount", Ty::Currency(2), "Amount", 0),
    n("CurrencyCode", Ty::Dropdown, "Currency", 3),
    n("Desc1", Ty::String, "Description", 40),
    DESC2,
    BILL_STATUS,
    AUDIT[1],
    AUDIT[2],
    AUDIT[3],
];

/// Posted invoice lines (`PSALedger/IN`).
static AR: &[Field] = &[
    PERIOD,
    POST_SEQ,
    PKEY,
    BATCH,
    f(
        "TransType",
        Ty::String,
        "Transaction Type",
        2,
        Gen::Const("IN"),
    ),
    n("Invoice", Ty::String, "Invoice", 12),
    n("InvoiceDate", Ty::Date, "Invoice Date", 0),
    n("TransDate", Ty::Date, "Transaction Date", 0),
    n("ClientID", Ty::Firm, "Client", 32),
    n("WBS1", Ty::Wbs1, "Project", 30),
    n("WBS2", Ty::Wbs2, "Phase", 30),
    n("WBS3", Ty::Wbs3, "Task", 30),
    n("Account", Ty::Account, "Account", 13),
    n("Amount", Ty::Currency(2), "Amount", 0),
    n("CurrencyCode", Ty::Dropdown, "Currency", 3),
    n("Desc1", Ty::String, "Description", 40),
    BILL_STATUS,
    AUDIT[1],
    AUDIT[2],
    AUDIT[3],
];

/// Posted journal entry lines (`PSALedger/JE`).
static JE: &[Field] = &[
    PERIOD,
    POST_SEQ,
    PKEY,
    BATCH,
    f(
        "TransType",
        Ty::String,
        "Transaction Type",
        2,
        Gen::Const("JE"),
    ),
    n("RefNo", Ty::String, "Reference", 12),
    n("TransDate", Ty::Date, "Transaction Date", 0),
    n("WBS1", Ty::Wbs1, "Project", 30),
    n("Account", Ty::Account, "Account", 13),
    n("Org", Ty::Org, "Organization", 30),
    n("Amount", Ty::Currency(2), "Amount", 0),
    n("CurrencyCode", Ty::Dropdown, "Currency", 3),
    n("Desc1", Ty::String, "Description", 40),
    DESC2,
    AUDIT[1],
    AUDIT[2],
    AUDIT[3],
];

/// The chart of accounts (`accountConfiguration/glAccount`).
static GL_ACCOUNT: &[Field] = &[
    req("Account", Ty::Account, "Account", 13),
    req("Name", Ty::String, "Account Name", 40),
    n("Type", Ty::Numeric(0), "Account Type", 0),
    n("Status", Ty::Dropdown, "Status", 1),
    n("Detail", Ty::Checkbox, "Detail Account", 1),
    f(
        "GlobalAccount",
        Ty::Checkbox,
        "Global Account",
        1,
        Gen::Flag(10),
    ),
    f(
        "AccountCurrencyCode",
        Ty::Dropdown,
        "Account Currency",
        3,
        Gen::Pick(&["USD"], 0),
    ),
    AUDIT[1],
    AUDIT[2],
    AUDIT[3],
];

/// The standard fields of a table (phases and tasks: the Projects hub's).
pub fn standard(k: Kind) -> &'static [Field] {
    match k {
        Kind::Project | Kind::Phase | Kind::Task => PROJECT,
        Kind::Firm => FIRM,
        Kind::Contact => CONTACT,
        Kind::Employee => EMPLOYEE,
        Kind::Opportunity => OPPORTUNITY,
        Kind::Activity => ACTIVITY,
        Kind::Ap => AP,
        Kind::Ar => AR,
        Kind::Je => JE,
        Kind::GlAccount => GL_ACCOUNT,
    }
}

/// A 5.0+ pursuit is a project: the project fields it is served under and the opportunity
/// fields they are generated from (the pre-5.0 hub's names for the same facts).
pub const PURSUIT_RENAME: [(&str, &str); 3] = [
    ("WBS1", "OpportunityID"),
    ("Fee", "Revenue"),
    ("StartDate", "EstStartDate"),
];

/// The metadata table name of a hub's main table [UNCERTAIN]: the database table behind the
/// hub, as the documented examples name theirs (`TextLibrary` for boilerplates).
pub fn table_name(k: Kind) -> &'static str {
    match k {
        Kind::Project | Kind::Phase | Kind::Task => "PR",
        Kind::Firm => "Clendor",
        Kind::Contact => "Contacts",
        Kind::Employee => "EM",
        Kind::Opportunity => "Opportunity",
        Kind::Activity => "Activity",
        Kind::Ap | Kind::Ar | Kind::Je => "LedgerAP",
        Kind::GlAccount => "CA",
    }
}

/// The team-member grid of the Projects hub, listed in `metadata/project` next to the main
/// table (a client must pick the table that describes the records it reads).
pub static TEAM_GRID: &[Field] = &[
    ro("RecordID", Ty::RecordId, "Record ID", 32),
    n("WBS1", Ty::Wbs1, "Project Number", 30),
    n("WBS2", Ty::Wbs2, "Phase Number", 30),
    n("WBS3", Ty::Wbs3, "Task Number", 30),
    req("Employee", Ty::Employee, "Employee", 20),
    n("Role", Ty::Dropdown, "Role", 10),
    n("RoleDescription", Ty::String, "Role Description", 255),
    n("StartDate", Ty::Date, "Start Date", 0),
    n("EndDate", Ty::Date, "End Date", 0),
    AUDIT[0],
    AUDIT[1],
    AUDIT[2],
    AUDIT[3],
];

#[cfg(test)]
mod tests {
    use super::super::super::options::Tenant;
    use super::super::kind::ALL;
    use super::super::tables::table;
    use super::*;

    #[test]
    fn names_are_unique_and_custom_fields_are_prefixed() {
        for k in ALL {
            for t in Tenant::ALL {
                let fields = table(k, t);
                let mut names: Vec<&str> = fields.iter().map(|f| f.name).collect();
                names.sort_unstable();
                let before = names.len();
                names.dedup();
                assert_eq!(before, names.len(), "{k:?} {t}: duplicate field");
                for f in &fields {
                    assert_eq!(
                        f.custom,
                        f.name.starts_with("Cust") && f.name != "CustomCurrencyCode"
                    );
                }
            }
        }
        assert!(table(Kind::Firm, Tenant::Standard).iter().any(|f| f.custom));
        assert!(
            !table(Kind::Project, Tenant::Lean)
                .iter()
                .any(|f| f.name == "Probability")
        );
        for (project, opportunity) in PURSUIT_RENAME {
            assert!(PROJECT.iter().any(|f| f.name == project));
            assert!(OPPORTUNITY.iter().any(|f| f.name == opportunity));
        }
    }
}

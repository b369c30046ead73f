//! The fake org's own table definitions: for each of the nine Sales tables, the attributes a
//! standard Dynamics 365 Sales org has (logical names, `AttributeType`, date formats and
//! behaviours, lookup targets, display names), written from shared/reference (A6, A7) and
//! checked against the real CSDL in shared/specs/dataverse (money is `Edm.Decimal` with an
//! `_base` twin, lookups are `_x_value`, date-only columns with `DateOnly` behaviour are
//! `Edm.Date`). A real table has many more columns; these are the ones worth serving, plus the
//! state and status option sets. Tenant differences live in `custom.rs`.

use super::super::entities::{
    Attr, BUSINESS_UNIT_GUID, Behavior, DATE, DateFormat, Entity, Gen, Kind, Set, UOM_GUID,
    USD_GUID,
};
use super::super::options::Tenant;
use super::super::words as w;
use super::custom;

/// The schema of `set` in `tenant`; `None` when the tenant does not have the table.
pub fn entity(set: Set, tenant: Tenant) -> Option<Entity> {
    if !set.in_tenant(tenant) {
        return None;
    }
    Entity::new(set, attributes(set, tenant))
}

/// The attributes of `set` in `tenant`, in metadata (and payload) order.
pub fn attributes(set: Set, tenant: Tenant) -> Vec<Attr> {
    let standard: &[Attr] = match set {
        Set::Accounts => ACCOUNT,
        Set::Contacts => CONTACT,
        Set::Leads => LEAD,
        Set::Opportunities => OPPORTUNITY,
        Set::Quotes => QUOTE,
        Set::SalesOrders => SALESORDER,
        Set::Invoices => INVOICE,
        Set::Products => PRODUCT,
        Set::SystemUsers => SYSTEMUSER,
    };
    let mut out: Vec<Attr> = standard
        .iter()
        .filter(|a| !custom::removed(set, tenant, a.logical))
        .copied()
        .collect();
    out.extend_from_slice(custom::added(set, tenant));
    out
}

/// An attribute that is not a lookup.
const fn at(logical: &'static str, kind: Kind, display: &'static str, generator: Gen) -> Attr {
    Attr {
        logical,
        kind,
        display,
        targets: &[],
        custom: false,
        generator,
    }
}

/// A lookup (`Lookup`, `Customer` or `Owner`) and the tables it may point to.
const fn lk(
    logical: &'static str,
    kind: Kind,
    display: &'static str,
    targets: &'static [&'static str],
    generator: Gen,
) -> Attr {
    Attr {
        logical,
        kind,
        display,
        targets,
        custom: false,
        generator,
    }
}

const S: Kind = Kind::String;
const MEMO: Kind = Kind::Memo;
/// Date-only format but `UserLocal` behaviour: served as `Edm.DateTimeOffset`.
const DATE_LOCAL: Kind = Kind::DateTime(DateFormat::DateOnly, Behavior::UserLocal);
const STAMP: Kind = Kind::DateTime(DateFormat::DateAndTime, Behavior::UserLocal);

const CUSTOMER: &[&str] = &["account", "contact"];
const OWNERS: &[&str] = &["systemuser", "team"];

const fn pk(logical: &'static str, display: &'static str) -> Attr {
    at(logical, Kind::Uniqueidentifier, display, Gen::PrimaryKey)
}
const OWNER: Attr = lk("ownerid", Kind::Owner, "Owner", OWNERS, Gen::Owner);
const OWNING_BU: Attr = lk(
    "owningbusinessunit",
    Kind::Lookup,
    "Owning Business Unit",
    &["businessunit"],
    Gen::Fixed {
        logical: "businessunit",
        nav: "owningbusinessunit",
        guid: BUSINESS_UNIT_GUID,
        label: "mlcsandbox",
    },
);
const CREATED_BY: Attr = lk(
    "createdby",
    Kind::Lookup,
    "Created By",
    &["systemuser"],
    Gen::User {
        nav: "createdby",
        volatile: false,
    },
);
const MODIFIED_BY: Attr = lk(
    "modifiedby",
    Kind::Lookup,
    "Modified By",
    &["systemuser"],
    Gen::User {
        nav: "modifiedby",
        volatile: true,
    },
);
const CURRENCY: Attr = lk(
    "transactioncurrencyid",
    Kind::Lookup,
    "Currency",
    &["transactioncurrency"],
    Gen::Fixed {
        logical: "transactioncurrency",
        nav: "transactioncurrencyid",
        guid: USD_GUID,
        label: "US Dollar",
    },
);
const EXCHANGE_RATE: Attr = at(
    "exchangerate",
    Kind::Decimal,
    "Exchange Rate",
    Gen::ExchangeRate,
);
const CREATED_ON: Attr = at("createdon", STAMP, "Created On", Gen::CreatedOn);
const MODIFIED_ON: Attr = at("modifiedon", STAMP, "Modified On", Gen::ModifiedOn);
const STATE: Attr = at("statecode", Kind::State, "Status", Gen::StateCode);
const STATUS: Attr = at("statuscode", Kind::Status, "Status Reason", Gen::StatusCode);
const VERSION: Attr = at(
    "versionnumber",
    Kind::BigInt,
    "Version Number",
    Gen::VersionNumber,
);
const fn phone(logical: &'static str, display: &'static str, null_pct: u8, tag: u8) -> Attr {
    at(logical, S, display, Gen::Phone { null_pct, tag })
}
const fn money(logical: &'static str, display: &'static str, generator: Gen) -> Attr {
    at(logical, Kind::Money, display, generator)
}
const fn choice(
    logical: &'static str,
    display: &'static str,
    labels: &'static [(i64, &'static str)],
    null_pct: u8,
) -> Attr {
    at(
        logical,
        Kind::Picklist,
        display,
        Gen::Choice { labels, null_pct },
    )
}
const fn lookup(
    logical: &'static str,
    display: &'static str,
    target: Set,
    pct: u8,
    targets: &'static [&'static str],
) -> Attr {
    lk(
        logical,
        Kind::Lookup,
        display,
        targets,
        Gen::Lookup {
            target,
            pct,
            nav: logical,
        },
    )
}
const fn customer(
    logical: &'static str,
    display: &'static str,
    contact_pct: u8,
    null_pct: u8,
) -> Attr {
    lk(
        logical,
        Kind::Customer,
        display,
        CUSTOMER,
        Gen::Customer {
            nav: logical,
            contact_pct,
            null_pct,
        },
    )
}

const ACCOUNT: &[Attr] = &[
    pk("accountid", "Account"),
    at("name", S, "Account Name", Gen::CompanyName),
    at("accountnumber", S, "Account Number", Gen::AccountNumber),
    at("emailaddress1", S, "Email", Gen::CompanyEmail),
    phone("telephone1", "Main Phone", 5, 1),
    phone("telephone2", "Other Phone", 60, 2),
    phone("fax", "Fax", 75, 3),
    at("websiteurl", S, "Website", Gen::Website),
    at("address1_line1", S, "Address 1: Street 1", Gen::Street1),
    at("address1_line2", S, "Address 1: Street 2", Gen::Street2),
    at("address1_city", S, "Address 1: City", Gen::City),
    at(
        "address1_stateorprovince",
        S,
        "Address 1: State/Province",
        Gen::Region,
    ),
    at(
        "address1_postalcode",
        S,
        "Address 1: ZIP/Postal Code",
        Gen::PostalCode,
    ),
    at(
        "address1_country",
        S,
        "Address 1: Country/Region",
        Gen::Country,
    ),
    at(
        "address1_latitude",
        Kind::Double,
        "Address 1: Latitude",
        Gen::Latitude,
    ),
    at(
        "address1_longitude",
        Kind::Double,
        "Address 1: Longitude",
        Gen::Longitude,
    ),
    at("address1_composite", MEMO, "Address 1", Gen::Composite),
    lookup(
        "parentaccountid",
        "Parent Account",
        Set::Accounts,
        15,
        &["account"],
    ),
    lk(
        "primarycontactid",
        Kind::Lookup,
        "Primary Contact",
        &["contact"],
        Gen::PrimaryContact,
    ),
    OWNER,
    OWNING_BU,
    CREATED_BY,
    MODIFIED_BY,
    CURRENCY,
    EXCHANGE_RATE,
    money(
        "revenue",
        "Annual Revenue",
        Gen::Money {
            lo: 50_000,
            hi: 500_000_000,
            null_pct: 20,
        },
    ),
    money(
        "creditlimit",
        "Credit Limit",
        Gen::Money {
            lo: 1_000,
            hi: 250_000,
            null_pct: 60,
        },
    ),
    at(
        "numberofemployees",
        Kind::Integer,
        "Number of Employees",
        Gen::Int {
            lo: 1,
            hi: 25_000,
            null_pct: 15,
        },
    ),
    choice("industrycode", "Industry", w::INDUSTRY, 20),
    choice("accountcategorycode", "Category", w::ACCOUNT_CATEGORY, 40),
    choice(
        "customertypecode",
        "Relationship Type",
        w::CUSTOMER_TYPE,
        10,
    ),
    choice("ownershipcode", "Ownership", w::OWNERSHIP, 50),
    at(
        "donotemail",
        Kind::Boolean,
        "Do not allow Emails",
        Gen::Bool { true_pct: 10 },
    ),
    at(
        "donotphone",
        Kind::Boolean,
        "Do not allow Phone Calls",
        Gen::Bool { true_pct: 8 },
    ),
    at(
        "description",
        MEMO,
        "Description",
        Gen::Description { null_pct: 30 },
    ),
    at(
        "lastusedincampaign",
        DATE_LOCAL,
        "Last Date Included in Campaign",
        Gen::DateAfter {
            min: 30,
            max: 1500,
            pct: 40,
        },
    ),
    CREATED_ON,
    MODIFIED_ON,
    STATE,
    STATUS,
    VERSION,
];

const CONTACT: &[Attr] = &[
    pk("contactid", "Contact"),
    at("firstname", S, "First Name", Gen::FirstName),
    at("lastname", S, "Last Name", Gen::LastName),
    at("fullname", S, "Full Name", Gen::FullName),
    at("emailaddress1", S, "Email", Gen::PersonEmail),
    phone("telephone1", "Business Phone", 5, 1),
    phone("mobilephone", "Mobile Phone", 40, 4),
    at("jobtitle", S, "Job Title", Gen::JobTitle { null_pct: 15 }),
    at("department", S, "Department", Gen::Department),
    customer("parentcustomerid", "Company Name", 5, 5),
    OWNER,
    OWNING_BU,
    CREATED_BY,
    MODIFIED_BY,
    at("address1_city", S, "Address 1: City", Gen::City),
    at(
        "address1_country",
        S,
        "Address 1: Country/Region",
        Gen::Country,
    ),
    at("birthdate", DATE, "Birthday", Gen::BirthDate),
    CURRENCY,
    EXCHANGE_RATE,
    money(
        "creditlimit",
        "Credit Limit",
        Gen::Money {
            lo: 1_000,
            hi: 250_000,
            null_pct: 70,
        },
    ),
    at(
        "donotemail",
        Kind::Boolean,
        "Do not allow Emails",
        Gen::Bool { true_pct: 10 },
    ),
    CREATED_ON,
    MODIFIED_ON,
    STATE,
    STATUS,
    VERSION,
];

const LEAD: &[Attr] = &[
    pk("leadid", "Lead"),
    at("subject", S, "Topic", Gen::LeadSubject),
    at("firstname", S, "First Name", Gen::FirstName),
    at("lastname", S, "Last Name", Gen::LastName),
    at("fullname", S, "Name", Gen::FullName),
    at("companyname", S, "Company Name", Gen::CompanyName),
    at("emailaddress1", S, "Email", Gen::PersonEmail),
    phone("telephone1", "Business Phone", 5, 1),
    at("jobtitle", S, "Job Title", Gen::JobTitle { null_pct: 15 }),
    choice("leadsourcecode", "Lead Source", w::LEAD_SOURCE, 10),
    choice("leadqualitycode", "Rating", w::RATING, 0),
    CURRENCY,
    EXCHANGE_RATE,
    money(
        "estimatedamount",
        "Est. Value",
        Gen::Money {
            lo: 1_000,
            hi: 750_000,
            null_pct: 40,
        },
    ),
    at(
        "estimatedclosedate",
        DATE,
        "Est. Close Date",
        Gen::DateAfter {
            min: 14,
            max: 270,
            pct: 70,
        },
    ),
    lookup(
        "parentaccountid",
        "Parent Account for lead",
        Set::Accounts,
        25,
        &["account"],
    ),
    lookup(
        "parentcontactid",
        "Parent Contact for lead",
        Set::Contacts,
        30,
        &["contact"],
    ),
    lk(
        "qualifyingopportunityid",
        Kind::Lookup,
        "Qualifying Opportunity",
        &["opportunity"],
        Gen::QualifyingOpportunity,
    ),
    OWNER,
    OWNING_BU,
    CREATED_BY,
    MODIFIED_BY,
    CREATED_ON,
    MODIFIED_ON,
    STATE,
    STATUS,
    VERSION,
];

const OPPORTUNITY: &[Attr] = &[
    pk("opportunityid", "Opportunity"),
    at("name", S, "Topic", Gen::Topic),
    CURRENCY,
    EXCHANGE_RATE,
    money("estimatedvalue", "Est. Revenue", Gen::EstimatedValue),
    at(
        "estimatedclosedate",
        DATE,
        "Est. Close Date",
        Gen::DateAfter {
            min: 14,
            max: 270,
            pct: 70,
        },
    ),
    money("actualvalue", "Actual Revenue", Gen::ActualValue),
    at(
        "actualclosedate",
        DATE,
        "Actual Close Date",
        Gen::ClosedDate,
    ),
    at(
        "closeprobability",
        Kind::Integer,
        "Probability",
        Gen::CloseProbability,
    ),
    customer("customerid", "Potential Customer", 15, 0),
    lookup(
        "parentaccountid",
        "Account",
        Set::Accounts,
        25,
        &["account"],
    ),
    lookup(
        "parentcontactid",
        "Contact",
        Set::Contacts,
        30,
        &["contact"],
    ),
    lookup(
        "originatingleadid",
        "Originating Lead",
        Set::Leads,
        20,
        &["lead"],
    ),
    OWNER,
    OWNING_BU,
    CREATED_BY,
    MODIFIED_BY,
    choice("opportunityratingcode", "Rating", w::RATING, 5),
    choice("salesstagecode", "Process Code", w::SALES_STAGE, 10),
    choice("prioritycode", "Priority", w::PRIORITY, 0),
    at(
        "description",
        MEMO,
        "Description",
        Gen::Description { null_pct: 30 },
    ),
    CREATED_ON,
    MODIFIED_ON,
    STATE,
    STATUS,
    VERSION,
];

const QUOTE: &[Attr] = &[
    pk("quoteid", "Quote"),
    at("name", S, "Name", Gen::DocName),
    at(
        "quotenumber",
        S,
        "Quote ID",
        Gen::DocNumber { prefix: "QUO" },
    ),
    at(
        "revisionnumber",
        Kind::Integer,
        "Revision ID",
        Gen::Int {
            lo: 0,
            hi: 3,
            null_pct: 0,
        },
    ),
    customer("customerid", "Potential Customer", 15, 0),
    lookup(
        "opportunityid",
        "Opportunity",
        Set::Opportunities,
        80,
        &["opportunity"],
    ),
    CURRENCY,
    EXCHANGE_RATE,
    money("totalamount", "Total Amount", Gen::Total),
    money("totaltax", "Total Tax", Gen::Tax),
    money("discountamount", "Quote Discount Amount", Gen::Discount),
    at(
        "effectivefrom",
        STAMP,
        "Effective From",
        Gen::TimeAfter {
            min: 1,
            max: 10,
            pct: 60,
        },
    ),
    at(
        "effectiveto",
        STAMP,
        "Effective To",
        Gen::TimeAfter {
            min: 30,
            max: 90,
            pct: 60,
        },
    ),
    at(
        "expireson",
        DATE,
        "Due By",
        Gen::DateAfter {
            min: 30,
            max: 60,
            pct: 80,
        },
    ),
    at("closedon", DATE, "Closed On", Gen::ClosedDate),
    OWNER,
    OWNING_BU,
    CREATED_BY,
    MODIFIED_BY,
    CREATED_ON,
    MODIFIED_ON,
    STATE,
    STATUS,
    VERSION,
];

const SALESORDER: &[Attr] = &[
    pk("salesorderid", "Order"),
    at("name", S, "Name", Gen::DocName),
    at(
        "ordernumber",
        S,
        "Order ID",
        Gen::DocNumber { prefix: "ORD" },
    ),
    customer("customerid", "Customer", 15, 0),
    lookup(
        "opportunityid",
        "Opportunity",
        Set::Opportunities,
        80,
        &["opportunity"],
    ),
    lookup("quoteid", "Quote", Set::Quotes, 50, &["quote"]),
    CURRENCY,
    EXCHANGE_RATE,
    money("totalamount", "Total Amount", Gen::Total),
    money("totaltax", "Total Tax", Gen::Tax),
    money("freightamount", "Freight Amount", Gen::Freight),
    at("submitdate", STAMP, "Date Submitted", Gen::SubmitDate),
    at("datefulfilled", STAMP, "Date Fulfilled", Gen::FulfilledDate),
    at(
        "requestdeliveryby",
        STAMP,
        "Requested Delivery Date",
        Gen::TimeAfter {
            min: 7,
            max: 60,
            pct: 70,
        },
    ),
    OWNER,
    OWNING_BU,
    CREATED_BY,
    MODIFIED_BY,
    CREATED_ON,
    MODIFIED_ON,
    STATE,
    STATUS,
    VERSION,
];

const INVOICE: &[Attr] = &[
    pk("invoiceid", "Invoice"),
    at("name", S, "Name", Gen::DocName),
    at(
        "invoicenumber",
        S,
        "Invoice ID",
        Gen::DocNumber { prefix: "INV" },
    ),
    customer("customerid", "Customer", 15, 0),
    lookup(
        "salesorderid",
        "Order",
        Set::SalesOrders,
        70,
        &["salesorder"],
    ),
    lookup(
        "opportunityid",
        "Opportunity",
        Set::Opportunities,
        50,
        &["opportunity"],
    ),
    CURRENCY,
    EXCHANGE_RATE,
    money("totalamount", "Total Amount", Gen::Total),
    money("totaltax", "Total Tax", Gen::Tax),
    money("discountamount", "Invoice Discount Amount", Gen::Discount),
    at(
        "duedate",
        DATE,
        "Due Date",
        Gen::DateAfter {
            min: 30,
            max: 60,
            pct: 95,
        },
    ),
    at(
        "datedelivered",
        STAMP,
        "Date Delivered",
        Gen::TimeAfter {
            min: 2,
            max: 20,
            pct: 60,
        },
    ),
    OWNER,
    OWNING_BU,
    CREATED_BY,
    MODIFIED_BY,
    CREATED_ON,
    MODIFIED_ON,
    STATE,
    STATUS,
    VERSION,
];

/// Products are organisation-owned: no owner.
const PRODUCT: &[Attr] = &[
    pk("productid", "Product"),
    at("name", S, "Name", Gen::ProductName),
    at("productnumber", S, "Product ID", Gen::ProductNumber),
    at(
        "description",
        MEMO,
        "Description",
        Gen::Description { null_pct: 30 },
    ),
    CURRENCY,
    EXCHANGE_RATE,
    money(
        "price",
        "List Price",
        Gen::Money {
            lo: 10,
            hi: 25_000,
            null_pct: 5,
        },
    ),
    money(
        "standardcost",
        "Standard Cost",
        Gen::Money {
            lo: 5,
            hi: 15_000,
            null_pct: 30,
        },
    ),
    money(
        "currentcost",
        "Current Cost",
        Gen::Money {
            lo: 5,
            hi: 15_000,
            null_pct: 30,
        },
    ),
    at(
        "quantityonhand",
        Kind::Decimal,
        "Quantity On Hand",
        Gen::Int {
            lo: 0,
            hi: 5_000,
            null_pct: 20,
        },
    ),
    choice("producttypecode", "Product Type", w::PRODUCT_TYPE, 0),
    at(
        "isstockitem",
        Kind::Boolean,
        "Stock Item",
        Gen::Bool { true_pct: 60 },
    ),
    lk(
        "defaultuomid",
        Kind::Lookup,
        "Default Unit",
        &["uom"],
        Gen::Fixed {
            logical: "uom",
            nav: "defaultuomid",
            guid: UOM_GUID,
            label: "Primary Unit",
        },
    ),
    at(
        "validfromdate",
        DATE,
        "Valid From",
        Gen::DateAfter {
            min: 0,
            max: 30,
            pct: 80,
        },
    ),
    at(
        "validtodate",
        DATE,
        "Valid To",
        Gen::DateAfter {
            min: 365,
            max: 1500,
            pct: 40,
        },
    ),
    CREATED_BY,
    MODIFIED_BY,
    CREATED_ON,
    MODIFIED_ON,
    STATE,
    STATUS,
    VERSION,
];

/// System users are business-owned and have no state: `isdisabled` says whether one is active.
const SYSTEMUSER: &[Attr] = &[
    pk("systemuserid", "User"),
    at("fullname", S, "Full Name", Gen::FullName),
    at("firstname", S, "First Name", Gen::FirstName),
    at("lastname", S, "Last Name", Gen::LastName),
    at("internalemailaddress", S, "Primary Email", Gen::PersonEmail),
    at("domainname", S, "User Name", Gen::UserPrincipal),
    at("title", S, "Title", Gen::UserTitle),
    at("jobtitle", S, "Job Title", Gen::UserJob),
    at(
        "isdisabled",
        Kind::Boolean,
        "Status",
        Gen::Bool { true_pct: 5 },
    ),
    at(
        "azureactivedirectoryobjectid",
        Kind::Uniqueidentifier,
        "Azure AD Object ID",
        Gen::AadObjectId,
    ),
    at(
        "applicationid",
        Kind::Uniqueidentifier,
        "Application ID",
        Gen::ApplicationId,
    ),
    lk(
        "businessunitid",
        Kind::Lookup,
        "Business Unit",
        &["businessunit"],
        Gen::Fixed {
            logical: "businessunit",
            nav: "businessunitid",
            guid: BUSINESS_UNIT_GUID,
            label: "mlcsandbox",
        },
    ),
    lk(
        "parentsystemuserid",
        Kind::Lookup,
        "Manager",
        &["systemuser"],
        Gen::Manager,
    ),
    phone("mobilephone", "Mobile Phone", 40, 4),
    CREATED_BY,
    MODIFIED_BY,
    CREATED_ON,
    MODIFIED_ON,
    VERSION,
];

/// `statecode` options of a table: (value, label).
pub fn states(set: Set) -> &'static [(i64, &'static str)] {
    match set {
        Set::Accounts | Set::Contacts | Set::SystemUsers => &[(0, "Active"), (1, "Inactive")],
        Set::Leads => &[(0, "Open"), (1, "Qualified"), (2, "Disqualified")],
        Set::Opportunities => &[(0, "Open"), (1, "Won"), (2, "Lost")],
        Set::Quotes => &[(0, "Draft"), (1, "Active"), (2, "Won"), (3, "Closed")],
        Set::SalesOrders => &[
            (0, "Active"),
            (1, "Submitted"),
            (2, "Canceled"),
            (3, "Fulfilled"),
            (4, "Invoiced"),
        ],
        Set::Invoices => &[(0, "Active"), (1, "Closed"), (2, "Paid"), (3, "Canceled")],
        Set::Products => &[
            (0, "Active"),
            (1, "Retired"),
            (2, "Draft"),
            (3, "Under Revision"),
        ],
    }
}

/// `statuscode` options of a table: (value, state it belongs to, label).
pub fn statuses(set: Set) -> &'static [(i64, i64, &'static str)] {
    match set {
        Set::Accounts | Set::Contacts | Set::SystemUsers => &[(1, 0, "Active"), (2, 1, "Inactive")],
        Set::Leads => &[
            (1, 0, "New"),
            (2, 0, "Contacted"),
            (3, 1, "Qualified"),
            (4, 2, "Lost"),
            (5, 2, "Cannot Contact"),
            (6, 2, "No Longer Interested"),
            (7, 2, "Canceled"),
        ],
        Set::Opportunities => &[
            (1, 0, "In Progress"),
            (2, 0, "On Hold"),
            (3, 1, "Won"),
            (4, 2, "Canceled"),
            (5, 2, "Out-Sold"),
        ],
        Set::Quotes => &[
            (1, 0, "In Progress"),
            (2, 1, "In Progress"),
            (3, 1, "Open"),
            (4, 2, "Won"),
            (5, 3, "Lost"),
            (6, 3, "Canceled"),
            (7, 3, "Revised"),
        ],
        Set::SalesOrders => &[
            (1, 0, "New"),
            (2, 0, "Pending"),
            (3, 1, "In Progress"),
            (4, 2, "No Money"),
            (100_001, 3, "Complete"),
            (100_002, 3, "Partial"),
            (100_003, 4, "Invoiced"),
        ],
        Set::Invoices => &[
            (1, 0, "New"),
            (2, 0, "Partially Shipped"),
            (4, 0, "Billed"),
            (5, 0, "Booked (applies to services)"),
            (6, 0, "Installed (applies to services)"),
            (100_001, 2, "Complete"),
            (100_002, 2, "Partial"),
            (100_003, 3, "Canceled"),
        ],
        Set::Products => &[
            (1, 0, "Active"),
            (2, 1, "Retired"),
            (0, 2, "Draft"),
            (3, 3, "Under Revision"),
        ],
    }
}

/// Label of a `statecode` value (empty when unknown).
pub fn state_label(set: Set, value: i64) -> &'static str {
    states(set)
        .iter()
        .find(|(v, _)| *v == value)
        .map_or("", |(_, l)| l)
}

/// Label of a `statuscode` value (empty when unknown).
pub fn status_label(set: Set, value: i64) -> &'static str {
    statuses(set)
        .iter()
        .find(|(v, _, _)| *v == value)
        .map_or("", |(_, _, l)| l)
}

#[cfg(test)]
mod tests {
    use super::super::super::entities::ALL;
    use super::super::super::values::state_status;
    use super::*;

    /// Every (state, status) pair the generator draws is declared, and the status belongs to
    /// the state.
    #[test]
    fn generated_states_are_declared() {
        for set in ALL {
            for h in 0..5_000u64 {
                let (s, st) = state_status(set, h.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                assert!(!state_label(set, s).is_empty(), "{} state {s}", set.name());
                let found = statuses(set).iter().find(|(v, _, _)| *v == st);
                assert_eq!(found.map(|f| f.1), Some(s), "{} status {st}", set.name());
            }
        }
    }

    /// Names and kinds checked against the real CSDL: lookups never end in `_value`, money
    /// never ends in `_base` (the twin is derived), primary keys are `<table>id`.
    #[test]
    fn tables_are_well_formed() {
        for set in ALL {
            let attrs = attributes(set, Tenant::Standard);
            assert_eq!(attrs[0].logical, format!("{}id", set.logical()));
            for a in &attrs {
                assert!(!a.logical.ends_with("_value") && !a.logical.ends_with("_base"));
                assert_eq!(a.kind.is_lookup(), !a.targets.is_empty(), "{}", a.logical);
                assert!(
                    a.logical
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                );
            }
        }
    }
}

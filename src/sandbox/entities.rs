//! The nine Dataverse entity sets the sandbox serves: names, sizes from `--scale`, and the
//! fields of each, taken from the built-in `catalog/dataverse/*.toml` so the fake serves exactly
//! what the catalog expects (a new catalog column is served too, with a type-generic value).

use crate::error::{Error, Result};
use crate::spec::{CatalogFile, ColumnType};

/// An entity set. The discriminant is the set code embedded in the sandbox GUIDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum Set {
    Accounts = 1,
    Contacts = 2,
    Leads = 3,
    Opportunities = 4,
    Quotes = 5,
    SalesOrders = 6,
    Invoices = 7,
    Products = 8,
    SystemUsers = 9,
}

/// All sets in code order (also the order their initial versions are assigned in).
pub const ALL: [Set; 9] = [
    Set::Accounts,
    Set::Contacts,
    Set::Leads,
    Set::Opportunities,
    Set::Quotes,
    Set::SalesOrders,
    Set::Invoices,
    Set::Products,
    Set::SystemUsers,
];

impl Set {
    /// Position in [`ALL`].
    pub fn index(self) -> usize {
        self as usize - 1
    }

    /// The code embedded in this set's GUIDs.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The Web API entity set name (`accounts`).
    pub fn name(self) -> &'static str {
        match self {
            Set::Accounts => "accounts",
            Set::Contacts => "contacts",
            Set::Leads => "leads",
            Set::Opportunities => "opportunities",
            Set::Quotes => "quotes",
            Set::SalesOrders => "salesorders",
            Set::Invoices => "invoices",
            Set::Products => "products",
            Set::SystemUsers => "systemusers",
        }
    }

    /// The table logical name (`account`), also the catalog file name.
    pub fn logical(self) -> &'static str {
        match self {
            Set::Accounts => "account",
            Set::Contacts => "contact",
            Set::Leads => "lead",
            Set::Opportunities => "opportunity",
            Set::Quotes => "quote",
            Set::SalesOrders => "salesorder",
            Set::Invoices => "invoice",
            Set::Products => "product",
            Set::SystemUsers => "systemuser",
        }
    }

    /// Looks a set up by its entity set name (case-sensitive, as Dataverse).
    pub fn from_name(name: &str) -> Option<Set> {
        ALL.into_iter().find(|s| s.name() == name)
    }

    /// Looks a set up by its GUID code.
    #[cfg(test)]
    pub fn from_code(code: u32) -> Option<Set> {
        ALL.into_iter().find(|s| s.code() == code)
    }

    /// Rows the set starts with for `scale` accounts (integer math, at least one).
    pub fn initial_rows(self, scale: u64) -> u64 {
        let n = scale;
        let rows = match self {
            Set::Accounts => n,
            Set::Contacts => 2 * n,
            Set::Leads => 3 * n / 4,
            Set::Opportunities => 3 * n / 2,
            Set::Quotes => 3 * n / 4,
            Set::SalesOrders => n / 2,
            Set::Invoices => n / 2,
            Set::Products => (n / 50).max(20),
            Set::SystemUsers => (n / 100).max(10),
        };
        rows.max(1)
    }

    fn catalog_text(self) -> &'static str {
        match self {
            Set::Accounts => include_str!("../../catalog/dataverse/account.toml"),
            Set::Contacts => include_str!("../../catalog/dataverse/contact.toml"),
            Set::Leads => include_str!("../../catalog/dataverse/lead.toml"),
            Set::Opportunities => include_str!("../../catalog/dataverse/opportunity.toml"),
            Set::Quotes => include_str!("../../catalog/dataverse/quote.toml"),
            Set::SalesOrders => include_str!("../../catalog/dataverse/salesorder.toml"),
            Set::Invoices => include_str!("../../catalog/dataverse/invoice.toml"),
            Set::Products => include_str!("../../catalog/dataverse/product.toml"),
            Set::SystemUsers => include_str!("../../catalog/dataverse/systemuser.toml"),
        }
    }
}

/// How one field's value is generated (see `values.rs`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Gen {
    PrimaryKey,
    VersionNumber,
    CreatedOn,
    ModifiedOn,
    StateCode,
    StatusCode,
    /// `_ownerid_value`: a system user.
    Owner,
    /// A lookup to a random row of `target`, non-null `pct` percent of the time.
    Lookup {
        target: Set,
        pct: u8,
        nav: &'static str,
    },
    /// Polymorphic customer lookup: mostly an account, sometimes a contact.
    Customer {
        nav: &'static str,
        contact_pct: u8,
        null_pct: u8,
    },
    /// A lookup to a row of a table the sandbox does not serve (currency, unit, business unit).
    Fixed {
        logical: &'static str,
        nav: &'static str,
        guid: &'static str,
        label: &'static str,
    },
    /// Account's primary contact: one of the contacts whose parent it is.
    PrimaryContact,
    /// Lead qualified into an opportunity (only when qualified).
    QualifyingOpportunity,
    /// System user's manager.
    Manager,
    Choice {
        labels: &'static [(i64, &'static str)],
        null_pct: u8,
    },
    Bool {
        true_pct: u8,
    },
    Int {
        lo: i64,
        hi: i64,
        null_pct: u8,
    },
    /// Money in whole units between `lo` and `hi`.
    Money {
        lo: i64,
        hi: i64,
        null_pct: u8,
    },
    /// The row's total amount; tax, discount and freight derive from it.
    Total,
    Tax,
    Discount,
    Freight,
    CompanyName,
    AccountNumber,
    CompanyEmail,
    Website,
    Phone {
        null_pct: u8,
        tag: u8,
    },
    Street1,
    Street2,
    City,
    Region,
    PostalCode,
    Country,
    Latitude,
    Longitude,
    Description {
        null_pct: u8,
    },
    FirstName,
    LastName,
    FullName,
    PersonEmail,
    JobTitle {
        null_pct: u8,
    },
    Department,
    BirthDate,
    LeadSubject,
    Topic,
    /// A document number `PREFIX-01234-ABC123`.
    DocNumber {
        prefix: &'static str,
    },
    /// `name` of quotes, orders and invoices: a topic plus the customer.
    DocName,
    ProductName,
    ProductNumber,
    EstimatedValue,
    ActualValue,
    CloseProbability,
    /// Days after creation; non-null `pct` percent of the time.
    DateAfter {
        min: i64,
        max: i64,
        pct: u8,
    },
    /// Seconds-precision timestamp some days after creation.
    TimeAfter {
        min: i64,
        max: i64,
        pct: u8,
    },
    /// A date set only when the row is closed (statecode != 0).
    ClosedDate,
    /// Sales order timestamps tied to its state.
    SubmitDate,
    FulfilledDate,
    UserPrincipal,
    AadObjectId,
    ApplicationId,
    UserTitle,
    UserJob,
    /// A catalog column the generator has no specific rule for: a plausible value of its type.
    Generic,
}

/// One served field: payload key, pre-rendered JSON keys and its generator.
#[derive(Debug, Clone)]
pub struct Field {
    /// Payload key, e.g. `name` or `_ownerid_value`.
    pub name: String,
    pub ty: ColumnType,
    pub generator: Gen,
    /// `,"<name>":`
    pub key: Vec<u8>,
    /// `,"<name>@OData.Community.Display.V1.FormattedValue":`
    pub key_fmt: Vec<u8>,
    /// `,"<name>@Microsoft.Dynamics.CRM.lookuplogicalname":`
    pub key_logical: Vec<u8>,
    /// `,"<name>@Microsoft.Dynamics.CRM.associatednavigationproperty":`
    pub key_nav: Vec<u8>,
    /// The badly typed value a poisoned row serves instead (`"n/a"` for money, ...).
    pub poison: Option<&'static [u8]>,
    /// Tag mixed into this field's hash.
    pub tag: u64,
}

/// The schema of one entity set.
#[derive(Debug, Clone)]
pub struct Entity {
    pub set: Set,
    pub fields: Vec<Field>,
    /// Index of the primary key in `fields`.
    pub pk: usize,
}

impl Entity {
    /// Builds the schema of `set` from its built-in catalog file.
    pub fn load(set: Set) -> Result<Entity> {
        let cat: CatalogFile =
            toml::from_str(set.catalog_text()).map_err(|e| Error::Definition {
                path: format!("catalog/dataverse/{}.toml", set.logical()),
                message: e.to_string(),
            })?;
        let pk_name = format!("{}id", set.logical());
        let mut fields = Vec::new();
        for (i, col) in cat.columns.iter().enumerate() {
            let name = col.source_name();
            if name.contains('@') {
                continue;
            }
            let generator = if name == pk_name {
                Gen::PrimaryKey
            } else {
                gen_for(set, name)
            };
            let k = |suffix: &str| format!(",\"{name}{suffix}\":").into_bytes();
            let poison: Option<&'static [u8]> = match (col.ty, name) {
                (_, "modifiedon" | "createdon" | "versionnumber") => None,
                (ColumnType::Decimal { .. }, _) => Some(b"\"n/a\""),
                (ColumnType::Date | ColumnType::Timestamp, _) => Some(b"\"yesterday\""),
                (ColumnType::Bool, _) => Some(b"\"maybe\""),
                _ => None,
            };
            fields.push(Field {
                name: name.to_string(),
                ty: col.ty,
                generator,
                key: k(""),
                key_fmt: k("@OData.Community.Display.V1.FormattedValue"),
                key_logical: k("@Microsoft.Dynamics.CRM.lookuplogicalname"),
                key_nav: k("@Microsoft.Dynamics.CRM.associatednavigationproperty"),
                poison,
                tag: 0x100 + i as u64,
            });
        }
        let pk = fields
            .iter()
            .position(|f| f.generator == Gen::PrimaryKey)
            .ok_or_else(|| Error::Definition {
                path: format!("catalog/dataverse/{}.toml", set.logical()),
                message: format!("the sandbox needs the primary key column `{pk_name}`"),
            })?;
        Ok(Entity { set, fields, pk })
    }

    /// Index of the field with payload key `name`.
    pub fn field(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }
}

/// Fixed GUIDs of rows in tables the sandbox does not serve.
pub const USD_GUID: &str = "2b1e1c5a-7d0e-4f6e-9a43-0c2d3e4f5a6b";
pub const UOM_GUID: &str = "6f1a2b3c-4d5e-4f60-8a71-b2c3d4e5f607";
pub const BUSINESS_UNIT_GUID: &str = "8c7b6a59-4837-4261-9504-a3b2c1d0e9f8";

fn gen_for(set: Set, name: &str) -> Gen {
    use super::words as w;
    use Gen::*;
    use Set::*;
    match (set, name) {
        (_, "versionnumber") => VersionNumber,
        (_, "createdon") => CreatedOn,
        (_, "modifiedon") => ModifiedOn,
        (_, "statecode") => StateCode,
        (_, "statuscode") => StatusCode,
        (_, "_ownerid_value") => Owner,
        (_, "_transactioncurrencyid_value") => Fixed {
            logical: "transactioncurrency",
            nav: "transactioncurrencyid",
            guid: USD_GUID,
            label: "US Dollar",
        },
        (_, "_customerid_value") => Customer {
            nav: "customerid",
            contact_pct: 15,
            null_pct: 0,
        },
        (_, "_parentcustomerid_value") => Customer {
            nav: "parentcustomerid",
            contact_pct: 5,
            null_pct: 5,
        },
        (Accounts, "_parentaccountid_value") => Lookup {
            target: Accounts,
            pct: 15,
            nav: "parentaccountid",
        },
        (_, "_parentaccountid_value") => Lookup {
            target: Accounts,
            pct: 25,
            nav: "parentaccountid",
        },
        (_, "_parentcontactid_value") => Lookup {
            target: Contacts,
            pct: 30,
            nav: "parentcontactid",
        },
        (_, "_primarycontactid_value") => PrimaryContact,
        (_, "_qualifyingopportunityid_value") => QualifyingOpportunity,
        (_, "_originatingleadid_value") => Lookup {
            target: Leads,
            pct: 20,
            nav: "originatingleadid",
        },
        (Invoices, "_opportunityid_value") => Lookup {
            target: Opportunities,
            pct: 50,
            nav: "opportunityid",
        },
        (_, "_opportunityid_value") => Lookup {
            target: Opportunities,
            pct: 80,
            nav: "opportunityid",
        },
        (_, "_quoteid_value") => Lookup {
            target: Quotes,
            pct: 50,
            nav: "quoteid",
        },
        (_, "_salesorderid_value") => Lookup {
            target: SalesOrders,
            pct: 70,
            nav: "salesorderid",
        },
        (_, "_defaultuomid_value") => Fixed {
            logical: "uom",
            nav: "defaultuomid",
            guid: UOM_GUID,
            label: "Primary Unit",
        },
        (_, "_businessunitid_value") => Fixed {
            logical: "businessunit",
            nav: "businessunitid",
            guid: BUSINESS_UNIT_GUID,
            label: "mlcsandbox",
        },
        (_, "_parentsystemuserid_value") => Manager,
        (Accounts, "name") => CompanyName,
        (Accounts, "accountnumber") => AccountNumber,
        (Accounts, "emailaddress1") => CompanyEmail,
        (Accounts, "websiteurl") => Website,
        (_, "telephone1") => Phone {
            null_pct: 5,
            tag: 1,
        },
        (_, "telephone2") => Phone {
            null_pct: 60,
            tag: 2,
        },
        (_, "fax") => Phone {
            null_pct: 75,
            tag: 3,
        },
        (_, "mobilephone") => Phone {
            null_pct: 40,
            tag: 4,
        },
        (_, "address1_line1") => Street1,
        (_, "address1_line2") => Street2,
        (_, "address1_city") => City,
        (_, "address1_stateorprovince") => Region,
        (_, "address1_postalcode") => PostalCode,
        (_, "address1_country") => Country,
        (_, "address1_latitude") => Latitude,
        (_, "address1_longitude") => Longitude,
        (Accounts, "revenue") => Money {
            lo: 50_000,
            hi: 500_000_000,
            null_pct: 20,
        },
        (Accounts, "numberofemployees") => Int {
            lo: 1,
            hi: 25_000,
            null_pct: 15,
        },
        (_, "industrycode") => Choice {
            labels: w::INDUSTRY,
            null_pct: 20,
        },
        (_, "accountcategorycode") => Choice {
            labels: w::ACCOUNT_CATEGORY,
            null_pct: 40,
        },
        (_, "customertypecode") => Choice {
            labels: w::CUSTOMER_TYPE,
            null_pct: 10,
        },
        (_, "ownershipcode") => Choice {
            labels: w::OWNERSHIP,
            null_pct: 50,
        },
        (_, "donotemail") => Bool { true_pct: 10 },
        (_, "donotphone") => Bool { true_pct: 8 },
        (_, "description") => Description { null_pct: 30 },
        (Accounts, "lastusedincampaign") => DateAfter {
            min: 30,
            max: 1500,
            pct: 40,
        },
        (_, "firstname") => FirstName,
        (_, "lastname") => LastName,
        (_, "fullname") => FullName,
        (_, "emailaddress1") => PersonEmail,
        (_, "internalemailaddress") => PersonEmail,
        (SystemUsers, "jobtitle") => UserJob,
        (_, "jobtitle") => JobTitle { null_pct: 15 },
        (_, "department") => Department,
        (_, "birthdate") => BirthDate,
        (_, "creditlimit") => Money {
            lo: 1_000,
            hi: 250_000,
            null_pct: 70,
        },
        (Leads, "subject") => LeadSubject,
        (Leads, "companyname") => CompanyName,
        (_, "leadsourcecode") => Choice {
            labels: w::LEAD_SOURCE,
            null_pct: 10,
        },
        (_, "leadqualitycode") => Choice {
            labels: w::RATING,
            null_pct: 0,
        },
        (Leads, "estimatedamount") => Money {
            lo: 1_000,
            hi: 750_000,
            null_pct: 40,
        },
        (_, "estimatedclosedate") => DateAfter {
            min: 14,
            max: 270,
            pct: 70,
        },
        (Opportunities, "name") => Topic,
        (_, "estimatedvalue") => EstimatedValue,
        (_, "actualvalue") => ActualValue,
        (_, "actualclosedate") => ClosedDate,
        (_, "closeprobability") => CloseProbability,
        (_, "opportunityratingcode") => Choice {
            labels: w::RATING,
            null_pct: 5,
        },
        (_, "salesstagecode") => Choice {
            labels: w::SALES_STAGE,
            null_pct: 10,
        },
        (_, "prioritycode") => Choice {
            labels: w::PRIORITY,
            null_pct: 0,
        },
        (Quotes | SalesOrders | Invoices, "name") => DocName,
        (Quotes, "quotenumber") => DocNumber { prefix: "QUO" },
        (SalesOrders, "ordernumber") => DocNumber { prefix: "ORD" },
        (Invoices, "invoicenumber") => DocNumber { prefix: "INV" },
        (_, "revisionnumber") => Int {
            lo: 0,
            hi: 3,
            null_pct: 0,
        },
        (_, "totalamount") => Total,
        (_, "totaltax") => Tax,
        (_, "discountamount") => Discount,
        (_, "freightamount") => Freight,
        (_, "effectivefrom") => TimeAfter {
            min: 1,
            max: 10,
            pct: 60,
        },
        (_, "effectiveto") => TimeAfter {
            min: 30,
            max: 90,
            pct: 60,
        },
        (_, "expireson") => DateAfter {
            min: 30,
            max: 60,
            pct: 80,
        },
        (_, "closedon") => ClosedDate,
        (_, "submitdate") => SubmitDate,
        (_, "datefulfilled") => FulfilledDate,
        (_, "requestdeliveryby") => TimeAfter {
            min: 7,
            max: 60,
            pct: 70,
        },
        (_, "duedate") => DateAfter {
            min: 30,
            max: 60,
            pct: 95,
        },
        (_, "datedelivered") => TimeAfter {
            min: 2,
            max: 20,
            pct: 60,
        },
        (Products, "name") => ProductName,
        (Products, "productnumber") => ProductNumber,
        (_, "price") => Money {
            lo: 10,
            hi: 25_000,
            null_pct: 5,
        },
        (_, "standardcost") => Money {
            lo: 5,
            hi: 15_000,
            null_pct: 30,
        },
        (_, "currentcost") => Money {
            lo: 5,
            hi: 15_000,
            null_pct: 30,
        },
        (_, "quantityonhand") => Int {
            lo: 0,
            hi: 5_000,
            null_pct: 20,
        },
        (_, "producttypecode") => Choice {
            labels: w::PRODUCT_TYPE,
            null_pct: 0,
        },
        (_, "isstockitem") => Bool { true_pct: 60 },
        (_, "validfromdate") => DateAfter {
            min: 0,
            max: 30,
            pct: 80,
        },
        (_, "validtodate") => DateAfter {
            min: 365,
            max: 1500,
            pct: 40,
        },
        (_, "domainname") => UserPrincipal,
        (_, "azureactivedirectoryobjectid") => AadObjectId,
        (_, "applicationid") => ApplicationId,
        (_, "title") => UserTitle,
        (_, "isdisabled") => Bool { true_pct: 5 },
        _ => Generic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalog_loads_with_a_primary_key() {
        for set in ALL {
            let e = Entity::load(set).unwrap();
            assert_eq!(e.fields[e.pk].name, format!("{}id", set.logical()));
            // A column added to a catalog later is served through `Gen::Generic` (adding a
            // column needs no Rust), so generic fields are allowed here.
            assert!(e.fields.iter().all(|f| !f.name.contains('@')));
            assert_eq!(Set::from_name(set.name()), Some(set));
            assert_eq!(Set::from_code(set.code()), Some(set));
        }
    }

    #[test]
    fn sizes_follow_the_scale() {
        assert_eq!(Set::Contacts.initial_rows(1000), 2000);
        assert_eq!(Set::Leads.initial_rows(1000), 750);
        assert_eq!(Set::Opportunities.initial_rows(1000), 1500);
        assert_eq!(Set::Products.initial_rows(1000), 20);
        assert_eq!(Set::Products.initial_rows(10_000), 200);
        assert_eq!(Set::SystemUsers.initial_rows(1000), 10);
        assert_eq!(Set::SalesOrders.initial_rows(1), 1);
    }
}

//! The Dataverse tables the sandbox can serve (names, sizes from `--scale`) and the schema of
//! each as the tenant being played has it: attributes typed as Dataverse types them, built
//! from the fake's own tables in `dataverse/schema.rs` (never from mlc's catalog), expanded
//! into the payload fields the Web API serves (`_x_value` for lookups, `x_base` twins for
//! money).

use super::options::Tenant;

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

    /// The table logical name (`account`).
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

    /// Looks a set up by its table logical name (`account`).
    pub fn from_logical(logical: &str) -> Option<Set> {
        ALL.into_iter().find(|s| s.logical() == logical)
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

    /// Whether `tenant` has this table. The lean tenant has no Sales solution: no leads,
    /// quotes, orders or invoices.
    pub fn in_tenant(self, tenant: Tenant) -> bool {
        !(tenant == Tenant::Lean
            && matches!(
                self,
                Set::Leads | Set::Quotes | Set::SalesOrders | Set::Invoices
            ))
    }
}

/// `DateTimeAttributeMetadata.Format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateFormat {
    DateOnly,
    DateAndTime,
}

/// `DateTimeAttributeMetadata.DateTimeBehavior`. Only `DateOnly` behaviour makes the Web API
/// serve a bare `Edm.Date`; a `UserLocal` column is an `Edm.DateTimeOffset` even when its
/// format is date-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    UserLocal,
    DateOnly,
}

/// An attribute's `AttributeType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Memo,
    Integer,
    BigInt,
    Money,
    Decimal,
    Double,
    Boolean,
    DateTime(DateFormat, Behavior),
    Picklist,
    State,
    Status,
    Lookup,
    Customer,
    Owner,
    Uniqueidentifier,
}

/// Date-only with `DateOnly` behaviour: served as `Edm.Date`.
pub(crate) const DATE: Kind = Kind::DateTime(DateFormat::DateOnly, Behavior::DateOnly);

impl Kind {
    /// The `AttributeType` value (`AttributeTypeCode` member).
    pub fn type_code(self) -> &'static str {
        match self {
            Kind::String => "String",
            Kind::Memo => "Memo",
            Kind::Integer => "Integer",
            Kind::BigInt => "BigInt",
            Kind::Money => "Money",
            Kind::Decimal => "Decimal",
            Kind::Double => "Double",
            Kind::Boolean => "Boolean",
            Kind::DateTime(..) => "DateTime",
            Kind::Picklist => "Picklist",
            Kind::State => "State",
            Kind::Status => "Status",
            Kind::Lookup => "Lookup",
            Kind::Customer => "Customer",
            Kind::Owner => "Owner",
            Kind::Uniqueidentifier => "Uniqueidentifier",
        }
    }

    /// The metadata entity type describing the attribute (`StringAttributeMetadata`).
    pub fn metadata_type(self) -> &'static str {
        match self {
            Kind::String => "StringAttributeMetadata",
            Kind::Memo => "MemoAttributeMetadata",
            Kind::Integer => "IntegerAttributeMetadata",
            Kind::BigInt => "BigIntAttributeMetadata",
            Kind::Money => "MoneyAttributeMetadata",
            Kind::Decimal => "DecimalAttributeMetadata",
            Kind::Double => "DoubleAttributeMetadata",
            Kind::Boolean => "BooleanAttributeMetadata",
            Kind::DateTime(..) => "DateTimeAttributeMetadata",
            Kind::Picklist => "PicklistAttributeMetadata",
            Kind::State => "StateAttributeMetadata",
            Kind::Status => "StatusAttributeMetadata",
            Kind::Lookup | Kind::Customer | Kind::Owner => "LookupAttributeMetadata",
            Kind::Uniqueidentifier => "UniqueIdentifierAttributeMetadata",
        }
    }

    /// Lookups are served as `_x_value`.
    pub fn is_lookup(self) -> bool {
        matches!(self, Kind::Lookup | Kind::Customer | Kind::Owner)
    }

    /// Served as `Edm.Date` (`YYYY-MM-DD`).
    pub fn is_edm_date(self) -> bool {
        matches!(self, Kind::DateTime(_, Behavior::DateOnly))
    }
}

/// One attribute of a table as the tenant defines it.
#[derive(Debug, Clone, Copy)]
pub struct Attr {
    /// `LogicalName` (lookups: `parentaccountid`, served as `_parentaccountid_value`).
    pub logical: &'static str,
    pub kind: Kind,
    /// `DisplayName` in the organisation's language.
    pub display: &'static str,
    /// Tables a lookup may point to.
    pub targets: &'static [&'static str],
    /// `IsCustomAttribute`.
    pub custom: bool,
    pub generator: Gen,
}

impl Attr {
    /// The key the Web API serves the value under.
    pub fn payload(&self) -> String {
        if self.kind.is_lookup() {
            format!("_{}_value", self.logical)
        } else {
            self.logical.to_string()
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
    /// A system user lookup other than the owner (`createdby`, `modifiedby`); a volatile one
    /// changes with every update.
    User {
        nav: &'static str,
        volatile: bool,
    },
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
    /// Rate of the row's currency to the base currency (both US dollars: 1).
    ExchangeRate,
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
    /// `address1_composite`: the address lines joined as Dataverse composes them.
    Composite,
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
    /// One of a list of words (custom text columns), null `null_pct` percent of the time.
    Word {
        words: &'static [&'static str],
        null_pct: u8,
    },
}

/// One served field: payload key, pre-rendered JSON keys and its generator.
#[derive(Debug, Clone)]
pub struct Field {
    /// Payload key, e.g. `name`, `revenue_base` or `_ownerid_value`.
    pub name: String,
    pub kind: Kind,
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
    /// Tag mixed into this field's hash: derived from the attribute's name, so removing or
    /// adding a column never changes another column's values.
    pub tag: u64,
}

/// The schema of one entity set in the tenant being played.
#[derive(Debug, Clone)]
pub struct Entity {
    pub set: Set,
    /// Attributes in metadata order.
    pub attrs: Vec<Attr>,
    /// Payload fields in the order rows serve them.
    pub fields: Vec<Field>,
    /// Index of the primary key in `fields`.
    pub pk: usize,
}

impl Entity {
    /// The served shape of `set` with these attributes (in metadata order); `None` without a
    /// primary key. The attributes come from `dataverse::schema::entity`.
    pub fn new(set: Set, attrs: Vec<Attr>) -> Option<Entity> {
        let mut fields = Vec::with_capacity(attrs.len() + 8);
        for a in &attrs {
            let tag = name_tag(a.logical);
            fields.push(field(a.payload(), a, tag));
            if a.kind == Kind::Money {
                // The base-currency twin: same value (the only currency is the base one).
                fields.push(field(format!("{}_base", a.logical), a, tag));
            }
        }
        let pk = fields.iter().position(|f| f.generator == Gen::PrimaryKey)?;
        Some(Entity {
            set,
            attrs,
            fields,
            pk,
        })
    }

    /// Index of the field with payload key `name`.
    pub fn field(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }
}

fn field(name: String, a: &Attr, tag: u64) -> Field {
    let k = |suffix: &str| format!(",\"{name}{suffix}\":").into_bytes();
    let poison: Option<&'static [u8]> = match (a.kind, a.logical) {
        (_, "modifiedon" | "createdon" | "versionnumber") => None,
        (Kind::Money | Kind::Decimal, _) => Some(b"\"n/a\""),
        (Kind::DateTime(..), _) => Some(b"\"yesterday\""),
        (Kind::Boolean, _) => Some(b"\"maybe\""),
        _ => None,
    };
    Field {
        key: k(""),
        key_fmt: k("@OData.Community.Display.V1.FormattedValue"),
        key_logical: k("@Microsoft.Dynamics.CRM.lookuplogicalname"),
        key_nav: k("@Microsoft.Dynamics.CRM.associatednavigationproperty"),
        name,
        kind: a.kind,
        generator: a.generator,
        poison,
        tag,
    }
}

/// FNV-1a of a name, kept away from the small shared facet tags of `values.rs`.
fn name_tag(name: &str) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3);
    }
    h | 0x1000
}

/// Fixed GUIDs of rows in tables the sandbox does not serve.
pub const USD_GUID: &str = "2b1e1c5a-7d0e-4f6e-9a43-0c2d3e4f5a6b";
pub const UOM_GUID: &str = "6f1a2b3c-4d5e-4f60-8a71-b2c3d4e5f607";
pub const BUSINESS_UNIT_GUID: &str = "8c7b6a59-4837-4261-9504-a3b2c1d0e9f8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_builds_with_a_primary_key_in_every_tenant() {
        for tenant in Tenant::ALL {
            for set in ALL {
                let Some(e) = crate::sandbox::dataverse::schema::entity(set, tenant) else {
                    assert!(!set.in_tenant(tenant), "{tenant}: {}", set.name());
                    continue;
                };
                assert_eq!(e.fields[e.pk].name, format!("{}id", set.logical()));
                assert_eq!(e.fields[e.pk].kind, Kind::Uniqueidentifier);
                let mut names: Vec<&str> = e.fields.iter().map(|f| f.name.as_str()).collect();
                names.sort_unstable();
                let n = names.len();
                names.dedup();
                assert_eq!(names.len(), n, "{tenant}: {} repeats a field", set.name());
                assert_eq!(Set::from_name(set.name()), Some(set));
                assert_eq!(Set::from_code(set.code()), Some(set));
                assert_eq!(Set::from_logical(set.logical()), Some(set));
            }
        }
        assert!(crate::sandbox::dataverse::schema::entity(Set::Leads, Tenant::Lean).is_none());
        assert!(crate::sandbox::dataverse::schema::entity(Set::Products, Tenant::Lean).is_some());
    }

    #[test]
    fn money_has_a_base_twin_and_lookups_a_value_key() {
        let e = crate::sandbox::dataverse::schema::entity(Set::Accounts, Tenant::Standard).unwrap();
        let i = e.field("revenue").unwrap();
        assert_eq!(e.fields[i + 1].name, "revenue_base");
        assert_eq!(e.fields[i + 1].tag, e.fields[i].tag);
        assert!(e.field("_parentaccountid_value").is_some());
        assert!(e.field("parentaccountid").is_none());
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

//! The fourteen Business Central entity sets the sandbox serves: names, sizes from `--scale`,
//! GUID codes, and the fields of each, taken from the built-in `catalog/business_central/*.toml`
//! (so the fake serves what the catalog expects) plus a few extension fields the catalog lacks
//! (served, and declared in `$metadata`, so discovery and `_ml_extra` have something to find).

use crate::error::{Error, Result};
use crate::spec::{CatalogFile, ColumnType};

/// An entity set, in the order of [`ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Set {
    Customers,
    Vendors,
    Contacts,
    Items,
    SalesOrders,
    SalesOrderLines,
    SalesInvoices,
    SalesInvoiceLines,
    Accounts,
    GeneralLedgerEntries,
    Dimensions,
    DimensionValues,
    PaymentTerms,
    Currencies,
}

pub const ALL: [Set; 14] = [
    Set::Customers,
    Set::Vendors,
    Set::Contacts,
    Set::Items,
    Set::SalesOrders,
    Set::SalesOrderLines,
    Set::SalesInvoices,
    Set::SalesInvoiceLines,
    Set::Accounts,
    Set::GeneralLedgerEntries,
    Set::Dimensions,
    Set::DimensionValues,
    Set::PaymentTerms,
    Set::Currencies,
];

/// Line slots per document: a document starts with 3–5 lines and may gain more by mutation.
pub const LINE_SLOTS: u64 = 8;

impl Set {
    pub fn index(self) -> usize {
        ALL.iter().position(|s| *s == self).unwrap_or(0)
    }

    /// The API entity set name (`salesOrders`).
    pub fn name(self) -> &'static str {
        match self {
            Set::Customers => "customers",
            Set::Vendors => "vendors",
            Set::Contacts => "contacts",
            Set::Items => "items",
            Set::SalesOrders => "salesOrders",
            Set::SalesOrderLines => "salesOrderLines",
            Set::SalesInvoices => "salesInvoices",
            Set::SalesInvoiceLines => "salesInvoiceLines",
            Set::Accounts => "accounts",
            Set::GeneralLedgerEntries => "generalLedgerEntries",
            Set::Dimensions => "dimensions",
            Set::DimensionValues => "dimensionValues",
            Set::PaymentTerms => "paymentTerms",
            Set::Currencies => "currencies",
        }
    }

    /// The `$metadata` entity type name (`salesOrder`).
    pub fn type_name(self) -> &'static str {
        match self {
            Set::Customers => "customer",
            Set::Vendors => "vendor",
            Set::Contacts => "contact",
            Set::Items => "item",
            Set::SalesOrders => "salesOrder",
            Set::SalesOrderLines => "salesOrderLine",
            Set::SalesInvoices => "salesInvoice",
            Set::SalesInvoiceLines => "salesInvoiceLine",
            Set::Accounts => "account",
            Set::GeneralLedgerEntries => "generalLedgerEntry",
            Set::Dimensions => "dimension",
            Set::DimensionValues => "dimensionValue",
            Set::PaymentTerms => "paymentTerm",
            Set::Currencies => "currency",
        }
    }

    pub fn from_name(name: &str) -> Option<Set> {
        ALL.into_iter().find(|s| s.name() == name)
    }

    /// The header set of a line set.
    pub fn header(self) -> Option<Set> {
        match self {
            Set::SalesOrderLines => Some(Set::SalesOrders),
            Set::SalesInvoiceLines => Some(Set::SalesInvoices),
            _ => None,
        }
    }

    /// Whether rows carry `lastModifiedDateTime` (lines do not, in API v2.0).
    pub fn has_modified(self) -> bool {
        self.header().is_none()
    }

    /// Rows of the set per company for `scale` (lines: document slots, see [`LINE_SLOTS`]).
    ///
    /// Ratios (per company; two companies): customers N/10, vendors N/40, contacts N/10,
    /// items N/50, sales orders and sales invoices N/10 each with 3–5 lines, G/L accounts
    /// 60 + N/2000, G/L entries N/2 (the biggest stream: N rows in all, so `--scale 1000000`
    /// serves ~1M entries), 6 dimensions with 8 values each, 8 payment terms, 10 currencies.
    pub fn initial_rows(self, scale: u64) -> u64 {
        let n = scale;
        let rows = match self {
            Set::Customers => n / 10,
            Set::Vendors => n / 40,
            Set::Contacts => n / 10,
            Set::Items => n / 50,
            Set::SalesOrders | Set::SalesInvoices => n / 10,
            Set::SalesOrderLines | Set::SalesInvoiceLines => 0,
            Set::Accounts => 60 + n / 2000,
            Set::GeneralLedgerEntries => n / 2,
            Set::Dimensions => 6,
            Set::DimensionValues => 48,
            Set::PaymentTerms => 8,
            Set::Currencies => 10,
        };
        if self.header().is_some() {
            0
        } else {
            rows.max(2)
        }
    }

    /// Code embedded in the GUIDs of this set's rows in company `company` (0-based).
    pub fn code(self, company: usize) -> u32 {
        0xBC00_0000 | ((company as u32 + 1) << 8) | (self.index() as u32 + 1)
    }

    /// Number prefix of the `number` field.
    pub fn number_prefix(self) -> &'static str {
        match self {
            Set::Customers => "C",
            Set::Vendors => "V",
            Set::Contacts => "CT",
            Set::Items => "",
            Set::SalesOrders => "S-ORD",
            Set::SalesInvoices => "PS-INV",
            Set::Accounts => "",
            _ => "",
        }
    }

    /// The stream entity (and catalog file) name, e.g. `sales_order_line`.
    pub fn entity(self) -> &'static str {
        match self {
            Set::Customers => "customer",
            Set::Vendors => "vendor",
            Set::Contacts => "contact",
            Set::Items => "item",
            Set::SalesOrders => "sales_order",
            Set::SalesOrderLines => "sales_order_line",
            Set::SalesInvoices => "sales_invoice",
            Set::SalesInvoiceLines => "sales_invoice_line",
            Set::Accounts => "account",
            Set::GeneralLedgerEntries => "general_ledger_entry",
            Set::Dimensions => "dimension",
            Set::DimensionValues => "dimension_value",
            Set::PaymentTerms => "payment_term",
            Set::Currencies => "currency",
        }
    }

    fn catalog_text(self) -> &'static str {
        match self {
            Set::Customers => include_str!("../../../catalog/business_central/customer.toml"),
            Set::Vendors => include_str!("../../../catalog/business_central/vendor.toml"),
            Set::Contacts => include_str!("../../../catalog/business_central/contact.toml"),
            Set::Items => include_str!("../../../catalog/business_central/item.toml"),
            Set::SalesOrders => include_str!("../../../catalog/business_central/sales_order.toml"),
            Set::SalesOrderLines => {
                include_str!("../../../catalog/business_central/sales_order_line.toml")
            }
            Set::SalesInvoices => {
                include_str!("../../../catalog/business_central/sales_invoice.toml")
            }
            Set::SalesInvoiceLines => {
                include_str!("../../../catalog/business_central/sales_invoice_line.toml")
            }
            Set::Accounts => include_str!("../../../catalog/business_central/account.toml"),
            Set::GeneralLedgerEntries => {
                include_str!("../../../catalog/business_central/general_ledger_entry.toml")
            }
            Set::Dimensions => include_str!("../../../catalog/business_central/dimension.toml"),
            Set::DimensionValues => {
                include_str!("../../../catalog/business_central/dimension_value.toml")
            }
            Set::PaymentTerms => {
                include_str!("../../../catalog/business_central/payment_term.toml")
            }
            Set::Currencies => include_str!("../../../catalog/business_central/currency.toml"),
        }
    }

    /// Fields an extension adds to this entity in the sandbox tenant (not in the built-in
    /// catalog): (name, Edm type).
    fn extension_fields(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Set::Customers => &[
                ("mlcLoyaltyTier", "Edm.String"),
                ("mlcCreditScore", "Edm.Int32"),
            ],
            Set::Items => &[("mlcShelfLifeDays", "Edm.Int32")],
            _ => &[],
        }
    }
}

/// One served field.
#[derive(Debug, Clone)]
pub struct Field {
    /// Payload key (`displayName`).
    pub name: String,
    /// `$metadata` type (`Edm.Guid`, `Edm.Decimal`, …).
    pub edm: &'static str,
    /// `,"displayName":` pre-rendered.
    pub key: Vec<u8>,
    /// The name in lower case (generators match on it; computed once, not per row).
    pub lower: String,
    /// Hash tag of the field.
    pub tag: u64,
}

/// The served shape of one entity set.
#[derive(Debug, Clone)]
pub struct Entity {
    pub set: Set,
    pub fields: Vec<Field>,
}

impl Entity {
    /// Builds the schema of `set` from its built-in catalog file.
    pub fn load(set: Set) -> Result<Entity> {
        let cat: CatalogFile =
            toml::from_str(set.catalog_text()).map_err(|e| Error::Definition {
                path: format!("catalog/business_central/{}.toml", set.type_name()),
                message: e.to_string(),
            })?;
        let mut fields = Vec::new();
        for col in &cat.columns {
            let name = col.source_name();
            if name.starts_with('$') {
                continue;
            }
            let edm = match col.ty {
                ColumnType::String if name == "id" || name.ends_with("Id") => "Edm.Guid",
                ColumnType::String => "Edm.String",
                ColumnType::Int64 => "Edm.Int32",
                ColumnType::Float64 => "Edm.Double",
                ColumnType::Decimal { .. } => "Edm.Decimal",
                ColumnType::Bool => "Edm.Boolean",
                ColumnType::Date => "Edm.Date",
                ColumnType::Timestamp => "Edm.DateTimeOffset",
                _ => "Edm.String",
            };
            fields.push((name.to_string(), edm));
        }
        for (name, edm) in set.extension_fields() {
            fields.push((name.to_string(), *edm));
        }
        if !fields.iter().any(|f| f.0 == "id") {
            return Err(Error::Definition {
                path: format!("catalog/business_central/{}.toml", set.type_name()),
                message: "the sandbox needs the column `id`".into(),
            });
        }
        Ok(Entity {
            set,
            fields: fields
                .into_iter()
                .enumerate()
                .map(|(i, (name, edm))| Field {
                    key: format!(",\"{name}\":").into_bytes(),
                    lower: name.to_ascii_lowercase(),
                    name,
                    edm,
                    tag: 0x200 + i as u64,
                })
                .collect(),
        })
    }

    pub fn field(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalog_loads() {
        for s in ALL {
            let e = Entity::load(s).unwrap();
            assert!(e.field("id").is_some());
            assert_eq!(
                e.field("lastModifiedDateTime").is_some(),
                s.has_modified(),
                "{s:?}"
            );
        }
    }
}

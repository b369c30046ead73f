//! The fourteen entity sets the Business Central fake serves, as a closed list: names, sizes
//! from `--scale`, GUID codes.

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

    /// The table as mlc's built-in streams name it (`sales_order_line`): the key of
    /// [`Sandbox::truth`](crate::sandbox::Sandbox::truth).
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
}

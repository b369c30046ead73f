//! The schema the Business Central fake serves, written from the API v2.0 `$metadata` of a real
//! tenant (`shared/specs/business-central/metadata.xml`) and reference part B: every structural
//! property of the fourteen entity types with its Edm type, `Nullable` and `MaxLength` as the
//! real document declares them, the enum types they use, and what each tenant variant changes
//! (standard properties an older tenant lacks, entity sets it does not have, extension fields,
//! the FlowFields that change without `lastModifiedDateTime`). Nothing here comes from mlc's
//! catalog: the fake is a tenant, and the product has to cope with what it serves.

use super::set::Set;
use crate::sandbox::Tenant;

const GUID: &str = "Edm.Guid";
const STRING: &str = "Edm.String";
const DECIMAL: &str = "Edm.Decimal";
const BOOL: &str = "Edm.Boolean";
const DATE: &str = "Edm.Date";
const TIMESTAMP: &str = "Edm.DateTimeOffset";
const INT32: &str = "Edm.Int32";

/// One structural property of an entity type, as `$metadata` declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prop {
    pub name: &'static str,
    /// `Edm.String`, `Edm.Decimal`, … or an enum type (`Microsoft.NAV.customerBlocked`).
    pub ty: &'static str,
    pub nullable: bool,
    pub max_len: Option<u16>,
}

impl Prop {
    const fn required(self) -> Prop {
        Prop {
            nullable: false,
            ..self
        }
    }
}

const fn p(name: &'static str, ty: &'static str) -> Prop {
    Prop {
        name,
        ty,
        nullable: true,
        max_len: None,
    }
}

const fn text(name: &'static str, max: u16) -> Prop {
    Prop {
        name,
        ty: STRING,
        nullable: true,
        max_len: Some(max),
    }
}

const fn e(name: &'static str, ty: &'static str) -> Prop {
    p(name, ty)
}

/// An enum type: its name (without the `Microsoft.NAV.` namespace) and members (name, value).
/// Under OData schema 2.0 a value travels as its member name, XML-escaped the way BC names
/// members (`_x0020_` for the blank member, `In_x0020_Review`, `Non_x002D_Inventory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnumType {
    pub name: &'static str,
    pub members: &'static [(&'static str, i64)],
}

/// `Microsoft.NAV.customer`.
const CUSTOMER: &[Prop] = &[
    p("id", GUID).required(),
    text("number", 20),
    text("displayName", 100).required(),
    e("type", "Microsoft.NAV.contactType"),
    text("addressLine1", 100),
    text("addressLine2", 50),
    text("city", 30),
    text("state", 30),
    text("country", 10),
    text("postalCode", 20),
    text("phoneNumber", 30),
    text("email", 80),
    text("website", 80),
    text("salespersonCode", 20),
    p("balanceDue", DECIMAL),
    p("creditLimit", DECIMAL),
    p("taxLiable", BOOL),
    p("taxAreaId", GUID),
    p("taxAreaDisplayName", STRING),
    p("taxRegistrationNumber", STRING),
    p("currencyId", GUID),
    p("currencyCode", STRING),
    p("paymentTermsId", GUID),
    p("shipmentMethodId", GUID),
    p("paymentMethodId", GUID),
    e("blocked", "Microsoft.NAV.customerBlocked"),
    p("lastModifiedDateTime", TIMESTAMP),
];

/// `Microsoft.NAV.vendor`.
const VENDOR: &[Prop] = &[
    p("id", GUID).required(),
    text("number", 20),
    text("displayName", 100),
    text("addressLine1", 100),
    text("addressLine2", 50),
    text("city", 30),
    text("state", 30),
    text("country", 10),
    text("postalCode", 20),
    text("phoneNumber", 30),
    text("email", 80),
    text("website", 80),
    p("taxRegistrationNumber", STRING),
    p("currencyId", GUID),
    p("currencyCode", STRING),
    p("irs1099Code", STRING),
    p("paymentTermsId", GUID),
    p("paymentMethodId", GUID),
    p("taxLiable", BOOL),
    e("blocked", "Microsoft.NAV.vendorBlocked"),
    p("balance", DECIMAL),
    p("lastModifiedDateTime", TIMESTAMP),
];

/// `Microsoft.NAV.contact`.
const CONTACT: &[Prop] = &[
    p("id", GUID).required(),
    text("number", 20),
    e("type", "Microsoft.NAV.contactType"),
    text("displayName", 100).required(),
    text("jobTitle", 30).required(),
    text("companyNumber", 20),
    text("companyName", 100),
    e(
        "contactBusinessRelation",
        "Microsoft.NAV.contactBusinessRelation",
    ),
    text("addressLine1", 100),
    text("addressLine2", 50),
    text("city", 30),
    text("state", 30),
    text("country", 10),
    text("postalCode", 20),
    text("phoneNumber", 30),
    text("mobilePhoneNumber", 30),
    text("email", 80),
    text("website", 80),
    text("searchName", 100),
    p("privacyBlocked", BOOL),
    p("taxRegistrationNumber", STRING),
    p("lastInteractionDate", DATE),
    p("lastModifiedDateTime", TIMESTAMP),
];

/// `Microsoft.NAV.item`.
const ITEM: &[Prop] = &[
    p("id", GUID).required(),
    text("number", 20),
    text("displayName", 100),
    text("displayName2", 50),
    e("type", "Microsoft.NAV.itemType"),
    p("itemCategoryId", GUID),
    text("itemCategoryCode", 20),
    p("blocked", BOOL),
    text("gtin", 14),
    p("inventory", DECIMAL),
    p("unitPrice", DECIMAL),
    p("priceIncludesTax", BOOL),
    p("unitCost", DECIMAL),
    p("taxGroupId", GUID),
    text("taxGroupCode", 20),
    p("baseUnitOfMeasureId", GUID),
    text("baseUnitOfMeasureCode", 10),
    p("generalProductPostingGroupId", GUID),
    text("generalProductPostingGroupCode", 20),
    p("inventoryPostingGroupId", GUID),
    text("inventoryPostingGroupCode", 20),
    p("lastModifiedDateTime", TIMESTAMP),
];

/// `Microsoft.NAV.salesOrder`.
const SALES_ORDER: &[Prop] = &[
    p("id", GUID).required(),
    text("number", 20),
    text("externalDocumentNumber", 35),
    p("orderDate", DATE),
    p("postingDate", DATE),
    p("customerId", GUID),
    text("customerNumber", 20).required(),
    text("customerName", 100),
    text("billToName", 100),
    p("billToCustomerId", GUID),
    text("billToCustomerNumber", 20).required(),
    text("shipToName", 100),
    text("shipToContact", 100),
    text("sellToAddressLine1", 100),
    text("sellToAddressLine2", 50),
    text("sellToCity", 30),
    text("sellToCountry", 10),
    text("sellToState", 30),
    text("sellToPostCode", 20),
    text("billToAddressLine1", 100),
    text("billToAddressLine2", 50),
    text("billToCity", 30),
    text("billToCountry", 10),
    text("billToState", 30),
    text("billToPostCode", 20),
    text("shipToAddressLine1", 100),
    text("shipToAddressLine2", 50),
    text("shipToCity", 30),
    text("shipToCountry", 10),
    text("shipToState", 30),
    text("shipToPostCode", 20),
    text("shortcutDimension1Code", 20),
    text("shortcutDimension2Code", 20),
    p("currencyId", GUID),
    p("currencyCode", STRING),
    p("pricesIncludeTax", BOOL),
    p("paymentTermsId", GUID),
    p("shipmentMethodId", GUID),
    text("salesperson", 20),
    p("partialShipping", BOOL),
    p("requestedDeliveryDate", DATE),
    p("discountAmount", DECIMAL),
    p("discountAppliedBeforeTax", BOOL),
    p("totalAmountExcludingTax", DECIMAL),
    p("totalTaxAmount", DECIMAL),
    p("totalAmountIncludingTax", DECIMAL),
    p("fullyShipped", BOOL),
    e("status", "Microsoft.NAV.salesOrderEntityBufferStatus"),
    p("lastModifiedDateTime", TIMESTAMP),
    text("phoneNumber", 30),
    text("email", 80),
];

/// `Microsoft.NAV.salesOrderLine`.
const SALES_ORDER_LINE: &[Prop] = &[
    p("id", GUID).required(),
    p("documentId", GUID),
    p("sequence", INT32),
    p("itemId", GUID),
    p("accountId", GUID),
    e("lineType", "Microsoft.NAV.invoiceLineAggLineType"),
    text("lineObjectNumber", 20),
    text("description", 100),
    text("description2", 50),
    p("unitOfMeasureId", GUID),
    text("unitOfMeasureCode", 10),
    p("quantity", DECIMAL),
    p("unitPrice", DECIMAL),
    p("discountAmount", DECIMAL),
    p("discountPercent", DECIMAL),
    p("discountAppliedBeforeTax", BOOL),
    p("amountExcludingTax", DECIMAL),
    text("taxCode", 50),
    p("taxPercent", DECIMAL),
    p("totalTaxAmount", DECIMAL),
    p("amountIncludingTax", DECIMAL),
    p("invoiceDiscountAllocation", DECIMAL),
    p("netAmount", DECIMAL),
    p("netTaxAmount", DECIMAL),
    p("netAmountIncludingTax", DECIMAL),
    p("shipmentDate", DATE),
    p("shippedQuantity", DECIMAL),
    p("invoicedQuantity", DECIMAL),
    p("invoiceQuantity", DECIMAL),
    p("shipQuantity", DECIMAL),
    p("itemVariantId", GUID),
    p("locationId", GUID),
];

/// `Microsoft.NAV.salesInvoice`.
const SALES_INVOICE: &[Prop] = &[
    p("id", GUID).required(),
    text("number", 20),
    text("externalDocumentNumber", 35),
    p("invoiceDate", DATE),
    p("postingDate", DATE),
    p("dueDate", DATE),
    p("promisedPayDate", DATE),
    text("customerPurchaseOrderReference", 35),
    p("customerId", GUID),
    text("customerNumber", 20).required(),
    text("customerName", 100),
    text("billToName", 100),
    p("billToCustomerId", GUID),
    text("billToCustomerNumber", 20).required(),
    text("shipToName", 100),
    text("shipToContact", 100),
    text("sellToAddressLine1", 100),
    text("sellToAddressLine2", 50),
    text("sellToCity", 30),
    text("sellToCountry", 10),
    text("sellToState", 30),
    text("sellToPostCode", 20),
    text("billToAddressLine1", 100),
    text("billToAddressLine2", 50),
    text("billToCity", 30),
    text("billToCountry", 10),
    text("billToState", 30),
    text("billToPostCode", 20),
    text("shipToAddressLine1", 100),
    text("shipToAddressLine2", 50),
    text("shipToCity", 30),
    text("shipToCountry", 10),
    text("shipToState", 30),
    text("shipToPostCode", 20),
    p("currencyId", GUID),
    text("shortcutDimension1Code", 20),
    text("shortcutDimension2Code", 20),
    p("currencyCode", STRING),
    p("orderId", GUID),
    text("orderNumber", 20),
    p("paymentTermsId", GUID),
    p("shipmentMethodId", GUID),
    text("salesperson", 20),
    p("disputeStatusId", GUID),
    text("disputeStatus", 10),
    p("pricesIncludeTax", BOOL),
    p("remainingAmount", DECIMAL),
    p("discountAmount", DECIMAL),
    p("discountAppliedBeforeTax", BOOL),
    p("totalAmountExcludingTax", DECIMAL),
    p("totalTaxAmount", DECIMAL),
    p("totalAmountIncludingTax", DECIMAL),
    e("status", "Microsoft.NAV.invoiceEntityAggregateStatus"),
    p("lastModifiedDateTime", TIMESTAMP),
    text("phoneNumber", 30),
    text("email", 80),
];

/// `Microsoft.NAV.salesInvoiceLine`.
const SALES_INVOICE_LINE: &[Prop] = &[
    p("id", GUID).required(),
    p("documentId", GUID),
    p("sequence", INT32),
    p("itemId", GUID),
    p("accountId", GUID),
    e("lineType", "Microsoft.NAV.invoiceLineAggLineType"),
    text("lineObjectNumber", 20),
    text("description", 100),
    text("description2", 50),
    p("unitOfMeasureId", GUID),
    text("unitOfMeasureCode", 10),
    p("quantity", DECIMAL),
    p("unitPrice", DECIMAL),
    p("discountAmount", DECIMAL),
    p("discountPercent", DECIMAL),
    p("discountAppliedBeforeTax", BOOL),
    p("amountExcludingTax", DECIMAL),
    text("taxCode", 50),
    p("taxPercent", DECIMAL),
    p("totalTaxAmount", DECIMAL),
    p("amountIncludingTax", DECIMAL),
    p("invoiceDiscountAllocation", DECIMAL),
    p("netAmount", DECIMAL),
    p("netTaxAmount", DECIMAL),
    p("netAmountIncludingTax", DECIMAL),
    p("shipmentDate", DATE),
    p("itemVariantId", GUID),
    p("locationId", GUID),
];

/// `Microsoft.NAV.account`.
const ACCOUNT: &[Prop] = &[
    p("id", GUID).required(),
    text("number", 20).required(),
    text("displayName", 100),
    e("category", "Microsoft.NAV.glAccountCategory"),
    text("subCategory", 80),
    p("blocked", BOOL),
    e("accountType", "Microsoft.NAV.glAccountType"),
    p("directPosting", BOOL),
    p("netChange", DECIMAL),
    p("consolidationTranslationMethod", STRING),
    text("consolidationDebitAccount", 20),
    text("consolidationCreditAccount", 20),
    p("excludeFromConsolidation", BOOL),
    p("lastModifiedDateTime", TIMESTAMP),
];

/// `Microsoft.NAV.generalLedgerEntry`.
const GENERAL_LEDGER_ENTRY: &[Prop] = &[
    p("id", GUID).required(),
    p("entryNumber", INT32),
    p("postingDate", DATE),
    text("documentNumber", 20),
    e("documentType", "Microsoft.NAV.genJournalDocumentType"),
    p("accountId", GUID),
    text("accountNumber", 20),
    text("description", 100),
    p("debitAmount", DECIMAL),
    p("creditAmount", DECIMAL),
    p("additionalCurrencyDebitAmount", DECIMAL),
    p("additionalCurrencyCreditAmount", DECIMAL),
    p("lastModifiedDateTime", TIMESTAMP),
];

/// `Microsoft.NAV.dimension`.
const DIMENSION: &[Prop] = &[
    p("id", GUID).required(),
    text("code", 20).required(),
    text("displayName", 30),
    text("consolidationCode", 20),
    p("lastModifiedDateTime", TIMESTAMP),
];

/// `Microsoft.NAV.dimensionValue`.
const DIMENSION_VALUE: &[Prop] = &[
    p("id", GUID).required(),
    text("code", 20).required(),
    p("dimensionId", GUID),
    text("displayName", 50),
    text("consolidationCode", 20),
    p("lastModifiedDateTime", TIMESTAMP),
];

/// `Microsoft.NAV.paymentTerm`.
const PAYMENT_TERM: &[Prop] = &[
    p("id", GUID).required(),
    text("code", 10).required(),
    text("displayName", 100),
    p("dueDateCalculation", STRING),
    p("discountDateCalculation", STRING),
    p("discountPercent", DECIMAL),
    p("calculateDiscountOnCreditMemos", BOOL),
    p("lastModifiedDateTime", TIMESTAMP),
];

/// `Microsoft.NAV.currency`.
const CURRENCY: &[Prop] = &[
    p("id", GUID).required(),
    text("code", 10).required(),
    text("displayName", 30),
    text("symbol", 10),
    text("amountDecimalPlaces", 5).required(),
    p("amountRoundingPrecision", DECIMAL),
    p("lastModifiedDateTime", TIMESTAMP),
];

/// The enum types those properties use, with their members as `$metadata` names them.
pub const ENUMS: &[EnumType] = &[
    EnumType {
        name: "itemType",
        members: &[("Inventory", 0), ("Service", 1), ("Non_x002D_Inventory", 2)],
    },
    EnumType {
        name: "contactType",
        members: &[("Company", 0), ("Person", 1)],
    },
    EnumType {
        name: "customerBlocked",
        members: &[("_x0020_", 0), ("Ship", 1), ("Invoice", 2), ("All", 3)],
    },
    EnumType {
        name: "contactBusinessRelation",
        members: &[
            ("_x0020_", 0),
            ("Customer", 1),
            ("Vendor", 2),
            ("Bank_x0020_Account", 3),
            ("Employee", 4),
            ("None", 100),
            ("Other", 101),
            ("Multiple", 102),
        ],
    },
    EnumType {
        name: "vendorBlocked",
        members: &[("_x0020_", 0), ("Payment", 1), ("All", 2)],
    },
    EnumType {
        name: "invoiceEntityAggregateStatus",
        members: &[
            ("_x0020_", 0),
            ("Draft", 1),
            ("In_x0020_Review", 2),
            ("Open", 3),
            ("Paid", 4),
            ("Canceled", 5),
            ("Corrective", 6),
        ],
    },
    EnumType {
        name: "invoiceLineAggLineType",
        members: &[
            ("Comment", 0),
            ("Account", 1),
            ("Item", 2),
            ("Resource", 3),
            ("Fixed_x0020_Asset", 4),
            ("Charge", 5),
            ("Allocation_x0020_Account", 10),
        ],
    },
    EnumType {
        name: "glAccountCategory",
        members: &[
            ("_x0020_", 0),
            ("Assets", 1),
            ("Liabilities", 2),
            ("Equity", 3),
            ("Income", 4),
            ("Cost_x0020_of_x0020_Goods_x0020_Sold", 5),
            ("Expense", 6),
        ],
    },
    EnumType {
        name: "glAccountType",
        members: &[
            ("Posting", 0),
            ("Heading", 1),
            ("Total", 2),
            ("Begin_x002D_Total", 3),
            ("End_x002D_Total", 4),
        ],
    },
    EnumType {
        name: "genJournalDocumentType",
        members: &[
            ("_x0020_", 0),
            ("Payment", 1),
            ("Invoice", 2),
            ("Credit_x0020_Memo", 3),
            ("Finance_x0020_Charge_x0020_Memo", 4),
            ("Reminder", 5),
            ("Refund", 6),
        ],
    },
    EnumType {
        name: "salesOrderEntityBufferStatus",
        members: &[("Draft", 0), ("In_x0020_Review", 1), ("Open", 2)],
    },
];

/// An enum an extension adds (Custom tenant).
const LOYALTY_TIER: EnumType = EnumType {
    name: "loyaltyTier",
    members: &[("_x0020_", 0), ("Bronze", 1), ("Silver", 2), ("Gold", 3)],
};

/// The standard properties of `set`, in `$metadata` order.
pub fn standard(set: Set) -> &'static [Prop] {
    match set {
        Set::Customers => CUSTOMER,
        Set::Vendors => VENDOR,
        Set::Contacts => CONTACT,
        Set::Items => ITEM,
        Set::SalesOrders => SALES_ORDER,
        Set::SalesOrderLines => SALES_ORDER_LINE,
        Set::SalesInvoices => SALES_INVOICE,
        Set::SalesInvoiceLines => SALES_INVOICE_LINE,
        Set::Accounts => ACCOUNT,
        Set::GeneralLedgerEntries => GENERAL_LEDGER_ENTRY,
        Set::Dimensions => DIMENSION,
        Set::DimensionValues => DIMENSION_VALUE,
        Set::PaymentTerms => PAYMENT_TERM,
        Set::Currencies => CURRENCY,
    }
}

/// Entity sets an older environment (Lean) does not have: the top-level `dimensionValues` set
/// came with API v2.0; before it, values were only reachable under `dimensions({id})`.
pub const LEAN_ABSENT: &[Set] = &[Set::DimensionValues];

/// Standard properties a Lean tenant's types lack (later additions to the v2.0 pages).
pub const LEAN_MISSING: &[(Set, &str)] = &[
    (Set::Customers, "salespersonCode"),
    (Set::Items, "displayName2"),
    (Set::Contacts, "privacyBlocked"),
];

/// The few fields a typical firm's extension adds (Standard tenant).
const STANDARD_EXTENSION: &[(Set, Prop)] = &[
    (Set::Customers, p("mlcLoyaltyTier", STRING)),
    (Set::Customers, p("mlcCreditScore", INT32)),
    (Set::Items, p("mlcShelfLifeDays", INT32)),
];

/// A heavily customised tenant's extension fields. `companyId` is named like the column mlc
/// adds to every company-scoped table (`company_id`); `annualBudget` is a decimal whose JSON
/// type drifts (a few rows carry text such as `"n/a"` or `"1,234.50"`).
const CUSTOM_EXTENSION: &[(Set, Prop)] = &[
    (Set::Customers, text("industryCode", 20)),
    (Set::Customers, p("creditScore", INT32)),
    (
        Set::Customers,
        e("loyaltyTier", "Microsoft.NAV.loyaltyTier"),
    ),
    (Set::Customers, p("annualBudget", DECIMAL)),
    (Set::Customers, p("companyId", GUID)),
    (Set::Items, p("shelfLifeDays", INT32)),
    (Set::Items, text("hazardClass", 10)),
    (Set::Items, p("launchDate", DATE)),
];

/// FlowFields: calculated from ledger entries when read, so they change when documents post
/// without the record's `lastModifiedDateTime` (or its etag) moving.
pub const COMPUTED: &[(Set, &str)] = &[
    (Set::Customers, "balanceDue"),
    (Set::Vendors, "balance"),
    (Set::Items, "inventory"),
    (Set::Accounts, "netChange"),
];

/// Whether `tenant` has entity set `set`.
pub fn has_set(set: Set, tenant: Tenant) -> bool {
    !(tenant == Tenant::Lean && LEAN_ABSENT.contains(&set))
}

/// The properties `tenant` serves for `set`, in `$metadata` order (extension fields last), or
/// `None` when the tenant does not have the set.
pub fn served(set: Set, tenant: Tenant) -> Option<Vec<Prop>> {
    if !has_set(set, tenant) {
        return None;
    }
    let mut out: Vec<Prop> = standard(set)
        .iter()
        .filter(|p| tenant != Tenant::Lean || !LEAN_MISSING.contains(&(set, p.name)))
        .copied()
        .collect();
    let extension = match tenant {
        Tenant::Standard => STANDARD_EXTENSION,
        Tenant::Lean => &[],
        Tenant::Custom => CUSTOM_EXTENSION,
    };
    out.extend(extension.iter().filter(|(s, _)| *s == set).map(|(_, p)| *p));
    Some(out)
}

/// Whether property `name` of `set` is a FlowField.
pub fn is_computed(set: Set, name: &str) -> bool {
    COMPUTED.contains(&(set, name))
}

/// The enum type behind a property type (`Microsoft.NAV.customerBlocked`), if it is one.
pub fn enum_type(ty: &str) -> Option<&'static EnumType> {
    let name = ty.strip_prefix("Microsoft.NAV.")?;
    ENUMS
        .iter()
        .chain(std::iter::once(&LOYALTY_TIER))
        .find(|e| e.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::business_central::set::ALL;

    #[test]
    fn every_type_has_its_key_and_known_types() {
        for t in Tenant::ALL {
            for s in ALL {
                let Some(props) = served(s, t) else {
                    assert!(t == Tenant::Lean && LEAN_ABSENT.contains(&s));
                    continue;
                };
                assert_eq!(props[0], p("id", GUID).required(), "{s:?}");
                assert_eq!(
                    props.iter().any(|p| p.name == "lastModifiedDateTime"),
                    s.has_modified(),
                    "{s:?}"
                );
                for p in &props {
                    assert!(
                        p.ty.starts_with("Edm.") || enum_type(p.ty).is_some(),
                        "{s:?}.{}: {}",
                        p.name,
                        p.ty
                    );
                }
            }
        }
        for (s, name) in LEAN_MISSING.iter().chain(COMPUTED) {
            assert!(standard(*s).iter().any(|p| p.name == *name), "{name}");
        }
    }
}

//! Rendering Business Central rows straight into bytes: every value is a pure function of
//! (seed, company, set, ordinal, revision, field), with BC's own conventions: text fields are
//! `""` rather than null, a blank date is `0001-01-01`, an unset reference is the empty GUID,
//! enums are their `$metadata` member names (`_x0020_` for the blank member, `In_x0020_Review`),
//! decimals are JSON numbers, FlowFields add the row's posted delta (store.rs) to their
//! generated value, and each row carries an opaque
//! `@odata.etag` (`W/"JzE5OzEyMzQ1Njc4OTsxMDA7Jw=="`-style: base64 of a quoted row version).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::entities::{Entity, tag_of};
use super::schema;
use super::set::{LINE_SLOTS, Set};
use super::store::{Row, Store};
use crate::sandbox::json;
use crate::sandbox::rng::{field, mix, pct, pick, range, row_key};
use crate::sandbox::words as w;

const EMPTY_GUID: &str = "00000000-0000-0000-0000-000000000000";
/// 2020-01-01 in days since the Unix epoch.
const DAY_2020: i64 = 18_262;

const GL_NAMES: &[&str] = &[
    "Cash",
    "Bank, Checking",
    "Accounts Receivable",
    "Inventory",
    "Prepaid Expenses",
    "Accounts Payable",
    "Sales Tax Payable",
    "Accrued Salaries",
    "Retained Earnings",
    "Sales, Retail",
    "Sales, Services",
    "Cost of Goods Sold",
    "Salaries",
    "Rent",
    "Utilities",
    "Travel",
    "Advertising",
    "Office Supplies",
    "Depreciation",
    "Interest Income",
];
const CATEGORIES: &[&str] = &[
    "Assets",
    "Liabilities",
    "Equity",
    "Income",
    "Cost_x0020_of_x0020_Goods_x0020_Sold",
    "Expense",
];
const DIMENSIONS: &[(&str, &str)] = &[
    ("AREA", "Area"),
    ("BUSINESSGROUP", "Business Group"),
    ("CUSTOMERGROUP", "Customer Group"),
    ("DEPARTMENT", "Department"),
    ("PROJECT", "Project"),
    ("SALESCAMPAIGN", "Sales campaign"),
];
const TERMS: &[(&str, &str, &str, &str, i64)] = &[
    ("1M(8D)", "1 Month/2% 8 days", "1M", "8D", 200),
    ("14 DAYS", "Net 14 days", "14D", "", 0),
    ("2 DAYS", "Net 2 days", "2D", "", 0),
    ("21 DAYS", "Net 21 days", "21D", "", 0),
    ("30 DAYS", "Net 30 days", "30D", "", 0),
    ("60 DAYS", "Net 60 days", "60D", "", 0),
    ("7 DAYS", "Net 7 days", "7D", "", 0),
    ("COD", "Cash on delivery", "0D", "", 0),
];
const CURRENCIES: &[(&str, &str, &str)] = &[
    ("AUD", "Australian dollar", "$"),
    ("CAD", "Canadian dollar", "$"),
    ("CHF", "Swiss franc", "CHF"),
    ("DKK", "Danish krone", "kr."),
    ("EUR", "Euro", "€"),
    ("GBP", "Pound Sterling", "£"),
    ("JPY", "Japanese yen", "¥"),
    ("MXN", "Mexican peso", "$"),
    ("NOK", "Norwegian krone", "kr"),
    ("SEK", "Swedish krona", "kr"),
];
const UOM: &[&str] = &["PCS", "HOUR", "BOX", "SET"];
/// Tag of `displayName`: a document's customer name is its customer's display name.
const DISPLAY_NAME: u64 = tag_of("displayName");

/// Context of one rendered row.
pub struct RowCtx<'a> {
    pub store: &'a Store,
    pub company: usize,
    pub set: Set,
    pub row: Row,
    /// Hash of the row (stable across revisions): references and identities.
    pub key: u64,
    /// Hash of the row's current revision: values that updates change.
    pub rev: u64,
}

impl<'a> RowCtx<'a> {
    pub fn new(store: &'a Store, company: usize, set: Set, row: Row) -> Self {
        let key = row_key(store.seed, set.code(company), row.ordinal);
        Self {
            store,
            company,
            set,
            row,
            key,
            rev: mix(key ^ (u64::from(row.revision) << 40)),
        }
    }

    /// Ordinal of a row of `target` this row refers to (among that set's initial rows).
    fn refer(&self, target: Set, tag: u64) -> u64 {
        let n = self.store.table(self.company, target).initial.max(1);
        field(self.key, tag) % n
    }

    fn guid_of(&self, out: &mut Vec<u8>, target: Set, ordinal: u64) {
        json::guid(out, target.code(self.company), ordinal);
    }
}

/// The header ordinal and line index of a line row.
fn line_parts(o: u64) -> (u64, u64) {
    (o / LINE_SLOTS, o % LINE_SLOTS)
}

/// Opaque row version tag as BC renders it: `W/"JzE5OzEyMzQ7Jw=="`.
fn etag(out: &mut Vec<u8>, c: &RowCtx) {
    let inner = format!(
        "'{};{};{};'",
        19 + c.set.index(),
        c.row.ordinal,
        c.row.revision as u64 * 7 + 11
    );
    out.extend_from_slice(b"\"@odata.etag\":\"W/\\\"");
    out.extend_from_slice(STANDARD.encode(inner).as_bytes());
    out.extend_from_slice(b"\\\"\"");
}

/// Appends one row as a JSON object with the selected fields (values saved through the API
/// override generated ones; see writes.rs; a FlowField adds its posted delta to either).
pub fn write_row(out: &mut Vec<u8>, ent: &Entity, c: &RowCtx, sel: &[usize]) {
    out.push(b'{');
    etag(out, c);
    let saved = c.store.writes.row(c.company, c.set, c.row.ordinal);
    for &i in sel {
        let f = &ent.fields[i];
        out.extend_from_slice(&f.key);
        let saved_value = saved.and_then(|m| m.get(&f.name));
        if f.computed && !c.row.poisoned {
            let delta = c.store.flow(c.company, c.set, c.row.ordinal);
            let base = match saved_value {
                Some(v) => v.as_f64().map(|x| (x * 100.0).round() as i64),
                None => Some(flow_base(c, &f.name)),
            };
            if let Some(b) = base.filter(|_| delta != 0) {
                json::fixed(out, b + delta, 2);
                continue;
            }
        }
        match saved_value {
            Some(v) => out.extend_from_slice(v.to_string().as_bytes()),
            None => value(out, c, &f.name, &f.lower, f.edm, f.tag),
        }
    }
    out.push(b'}');
}

/// The generated value of a FlowField before any posting, in hundredths: a function of the
/// row's identity, not of its revision (editing a customer does not move its balance).
fn flow_base(c: &RowCtx, name: &str) -> i64 {
    let k = field(c.key, tag_of(name));
    match name {
        "inventory" => range(k, 0, 500) * 100,
        "netChange" => range(k, -50_000_000, 50_000_000),
        _ => range(k, 0, 10_000_000),
    }
}

/// `1,234.50`: a decimal as an extension's text field would hold it (Custom tenant's drift).
fn grouped(cents: i64) -> String {
    let whole = (cents / 100).to_string();
    let mut g = String::new();
    for (i, ch) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            g.push(',');
        }
        g.push(ch);
    }
    format!("{g}.{:02}", cents % 100)
}

/// The generated value of field `i` (ignoring saved values), for the search index.
pub fn generated_value(out: &mut Vec<u8>, ent: &Entity, c: &RowCtx, i: usize) {
    let f = &ent.fields[i];
    value(out, c, &f.name, &f.lower, f.edm, f.tag);
}

fn s(out: &mut Vec<u8>, v: &str) {
    json::string(out, v);
}

fn money(out: &mut Vec<u8>, cents: i64) {
    json::fixed(out, cents, 2);
}

fn company_name(h: u64) -> String {
    format!(
        "{} {}",
        pick(h, w::COMPANY_HEAD).0,
        pick(h >> 9, w::COMPANY_NOUN).0
    )
}

fn person_name(h: u64) -> String {
    format!("{} {}", pick(h, w::FIRST).0, pick(h >> 9, w::LAST).0)
}

fn number(c: &RowCtx) -> String {
    match c.set {
        Set::Items => format!("{}-S", 1000 + c.row.ordinal),
        Set::Accounts => format!("{}", 10100 + c.row.ordinal * 10),
        s => format!("{}{}", s.number_prefix(), 10000 + c.row.ordinal),
    }
}

/// Totals of a document (cents): (excluding tax, tax).
fn doc_totals(key: u64) -> (i64, i64) {
    let net = range(field(key, 0x70), 5_000, 5_000_000);
    (net, net * 8 / 100)
}

fn value(out: &mut Vec<u8>, c: &RowCtx, name: &str, lower: &str, edm: &str, tag: u64) {
    let h = field(c.rev, tag);
    let k = field(c.key, tag);
    if c.row.poisoned {
        match edm {
            "Edm.Decimal" => return s(out, "n/a"),
            "Edm.Date" => return s(out, "yesterday"),
            _ => {}
        }
    }
    let city = pick(field(c.key, 0xC1), w::CITIES);
    let is_line = c.set.header().is_some();
    if is_line && let Some(v) = line_amount(c, name) {
        return json::fixed(out, v, 2);
    }
    match name {
        "id" => return c.guid_of(out, c.set, c.row.ordinal),
        "lastModifiedDateTime" => {
            let ms = c.row.modified_ms;
            let mut v = Vec::new();
            json::timestamp_bare(&mut v, ms.div_euclid(1000));
            let frac = ms.rem_euclid(1000);
            if frac != 0 {
                v.pop();
                v.extend_from_slice(format!(".{frac:03}").trim_end_matches('0').as_bytes());
                v.push(b'Z');
            }
            out.push(b'"');
            out.extend_from_slice(&v);
            out.push(b'"');
            return;
        }
        "number" => return s(out, &number(c)),
        "displayName" => {
            let v = match c.set {
                Set::Customers | Set::Vendors => company_name(k),
                Set::Contacts if pct(k, 30) => company_name(k),
                Set::Contacts => person_name(k),
                Set::Items => format!("{} {}", pick(k, w::PRODUCT), 1 + c.row.ordinal),
                Set::Accounts => GL_NAMES[(c.row.ordinal as usize) % GL_NAMES.len()].to_string(),
                Set::Dimensions => dimension(c.row.ordinal).1.to_string(),
                Set::DimensionValues => format!(
                    "{} {}",
                    dimension(c.row.ordinal / 8).1,
                    c.row.ordinal % 8 + 1
                ),
                Set::PaymentTerms => term(c.row.ordinal).1.to_string(),
                Set::Currencies => currency(c.row.ordinal).1.to_string(),
                _ => String::new(),
            };
            return s(out, &v);
        }
        "code" => {
            let v = match c.set {
                Set::Dimensions => dimension(c.row.ordinal).0.to_string(),
                Set::DimensionValues => format!(
                    "{}-{:02}",
                    dimension(c.row.ordinal / 8)
                        .0
                        .chars()
                        .take(4)
                        .collect::<String>(),
                    c.row.ordinal % 8 + 1
                ),
                Set::PaymentTerms => term(c.row.ordinal).0.to_string(),
                Set::Currencies => currency(c.row.ordinal).0.to_string(),
                _ => format!("C{}", c.row.ordinal),
            };
            return s(out, &v);
        }
        "symbol" => return s(out, currency(c.row.ordinal).2),
        "dueDateCalculation" => return s(out, term(c.row.ordinal).2),
        "discountDateCalculation" => return s(out, term(c.row.ordinal).3),
        "amountDecimalPlaces" => {
            return s(
                out,
                if currency(c.row.ordinal).0 == "JPY" {
                    "0:0"
                } else {
                    "2:2"
                },
            );
        }
        // 1 yen, 0.01 of everything else.
        "amountRoundingPrecision" => {
            let yen = currency(c.row.ordinal).0 == "JPY";
            return json::fixed(out, 1, if yen { 0 } else { 2 });
        }
        "type" => {
            let v = match c.set {
                Set::Items => pick(k, &["Inventory", "Service", "Non_x002D_Inventory"]),
                _ => pick(k, &["Company", "Person"]),
            };
            return s(out, v);
        }
        "blocked" if edm == "Microsoft.NAV.customerBlocked" => {
            return s(
                out,
                if pct(h, 95) {
                    "_x0020_"
                } else {
                    pick(h, &["Ship", "Invoice", "All"])
                },
            );
        }
        "blocked" if edm == "Microsoft.NAV.vendorBlocked" => {
            return s(
                out,
                if pct(h, 95) {
                    "_x0020_"
                } else {
                    pick(h, &["Payment", "All"])
                },
            );
        }
        "status" => {
            let v = match c.set {
                Set::SalesOrders => pick(h, &["Draft", "In_x0020_Review", "Open", "Open", "Open"]),
                _ => pick(h, &["Draft", "Open", "Open", "Paid", "Paid", "Canceled"]),
            };
            return s(out, v);
        }
        "category" => return s(out, pick(k, CATEGORIES)),
        "subCategory" => return s(out, ""),
        "accountType" => return s(out, if pct(k, 90) { "Posting" } else { "Heading" }),
        "documentType" => {
            return s(
                out,
                pick(k, &["Invoice", "Payment", "Credit_x0020_Memo", "_x0020_"]),
            );
        }
        "lineType" => return s(out, if pct(k, 90) { "Item" } else { "Account" }),
        "contactBusinessRelation" => return s(out, pick(k, &["Customer", "Vendor", "None"])),
        "entryNumber" => return json::u64(out, c.row.ordinal + 1),
        "sequence" => return json::u64(out, (line_parts(c.row.ordinal).1 + 1) * 10000),
        "documentId" if is_line => {
            let Some(h) = c.set.header() else {
                return out.extend_from_slice(b"null");
            };
            return c.guid_of(out, h, line_parts(c.row.ordinal).0);
        }
        "customerId" | "billToCustomerId" => {
            return c.guid_of(out, Set::Customers, c.refer(Set::Customers, 0x31));
        }
        "customerNumber" | "billToCustomerNumber" => {
            return s(out, &format!("C{}", 10000 + c.refer(Set::Customers, 0x31)));
        }
        "customerName" | "billToName" | "shipToName" => {
            let o = c.refer(Set::Customers, 0x31);
            let ck = row_key(c.store.seed, Set::Customers.code(c.company), o);
            return s(out, &company_name(field(ck, DISPLAY_NAME)));
        }
        "itemId" => return c.guid_of(out, Set::Items, c.refer(Set::Items, 0x32)),
        "lineObjectNumber" => return s(out, &format!("{}-S", 1000 + c.refer(Set::Items, 0x32))),
        "accountId" => {
            if is_line {
                return s(out, EMPTY_GUID);
            }
            return c.guid_of(out, Set::Accounts, c.refer(Set::Accounts, 0x33));
        }
        "accountNumber" => {
            return s(
                out,
                &format!("{}", 10100 + c.refer(Set::Accounts, 0x33) * 10),
            );
        }
        "dimensionId" => return c.guid_of(out, Set::Dimensions, c.row.ordinal / 8 % 6),
        "currencyId" => return s(out, EMPTY_GUID),
        "currencyCode" => return s(out, if c.company == 1 { "USD" } else { "" }),
        "paymentTermsId" => {
            return c.guid_of(out, Set::PaymentTerms, c.refer(Set::PaymentTerms, 0x34));
        }
        "orderId" => {
            return if pct(k, 60) {
                c.guid_of(out, Set::SalesOrders, c.refer(Set::SalesOrders, 0x35))
            } else {
                s(out, EMPTY_GUID)
            };
        }
        "orderNumber" => {
            return s(
                out,
                &if pct(k, 60) {
                    format!("S-ORD{}", 10000 + c.refer(Set::SalesOrders, 0x35))
                } else {
                    String::new()
                },
            );
        }
        "email" => {
            return s(
                out,
                &format!(
                    "{}{}@{}.com",
                    pick(k, w::FIRST).1,
                    c.row.ordinal,
                    pick(k >> 9, w::COMPANY_HEAD).1
                ),
            );
        }
        "phoneNumber" | "mobilePhoneNumber" => {
            return s(out, &format!("{} 555 {:04}", city.dial, k % 10_000));
        }
        "website" => return s(out, &format!("www.{}.com", pick(k >> 9, w::COMPANY_HEAD).1)),
        "jobTitle" => return s(out, pick(k, w::JOB_TITLE)),
        "companyName" => return s(out, &company_name(k)),
        "unitOfMeasureCode" | "baseUnitOfMeasureCode" => return s(out, pick(k, UOM)),
        _ if schema::is_computed(c.set, name) => {
            return json::fixed(out, flow_base(c, name), 2);
        }
        // Extension fields (schema.rs: Standard's few, Custom's many).
        "mlcLoyaltyTier" => return s(out, pick(h, &["Bronze", "Silver", "Gold"])),
        "mlcCreditScore" | "creditScore" => return json::i64(out, range(h, 300, 850)),
        "mlcShelfLifeDays" | "shelfLifeDays" => return json::i64(out, range(k, 30, 720)),
        "loyaltyTier" => return s(out, pick(h, &["_x0020_", "Bronze", "Silver", "Gold"])),
        "industryCode" => {
            return s(
                out,
                pick(
                    k,
                    &["RETAIL", "MANUFACT", "SERVICES", "WHOLESALE", "CONSULT", ""],
                ),
            );
        }
        "annualBudget" => {
            let v = range(k, 0, 50_000_000);
            // A few rows hold text: the field was a Text field before the extension retyped it.
            if pct(field(c.key, 0xD21F7), 4) {
                return if pct(k >> 11, 50) {
                    s(out, "n/a")
                } else {
                    s(out, &grouped(v))
                };
            }
            return money(out, v);
        }
        "companyId" => {
            return if pct(k, 30) {
                s(out, EMPTY_GUID)
            } else {
                json::guid(out, 0xBC0C_0000 | c.company as u32, k % 40)
            };
        }
        "hazardClass" => return s(out, pick(k, &["", "", "", "3", "8", "9"])),
        "launchDate" => return json::date(out, DAY_2020 + range(k, 0, 5 * 365)),
        _ => {}
    }
    if let Some(en) = schema::enum_type(edm) {
        // An enum without a rule of its own: its first member.
        return s(out, en.members.first().map_or("", |m| m.0));
    }
    match edm {
        "Edm.Guid" => s(out, EMPTY_GUID),
        "Edm.Boolean" => out.extend_from_slice(if pct(h, 20) { b"true" } else { b"false" }),
        "Edm.Int32" | "Edm.Int64" => json::i64(out, range(h, 0, 1000)),
        "Edm.Date" => {
            if (lower.contains("requested") || lower.contains("promised")) && pct(k, 70) {
                return out.extend_from_slice(b"\"0001-01-01\"");
            }
            // One document date per row; the others follow it.
            let base = DAY_2020 + range(field(c.key, 0xDA), 0, 5 * 365);
            let offset = if lower.contains("due") {
                30
            } else if lower.contains("promised") {
                35
            } else if lower.contains("shipment") || lower.contains("requested") {
                7
            } else {
                0
            };
            json::date(out, base + offset)
        }
        "Edm.DateTimeOffset" => json::timestamp(out, 1_577_836_800 + range(k, 0, 150_000_000)),
        "Edm.Decimal" => {
            if lower == "quantity" || lower.ends_with("quantity") || lower == "inventory" {
                json::fixed(out, range(h, 1, 50), 0)
            } else if lower.contains("percent") {
                json::fixed(out, range(h, 0, 20), 0)
            } else if lower.starts_with("total")
                || lower.contains("amount")
                || lower.contains("balance")
                || lower == "netchange"
            {
                let (net, tax) = doc_totals(c.rev);
                let v = match name {
                    "totalAmountExcludingTax" | "amountExcludingTax" | "netAmount" => net,
                    "totalTaxAmount" | "netTaxAmount" => tax,
                    "totalAmountIncludingTax" | "amountIncludingTax" | "netAmountIncludingTax" => {
                        net + tax
                    }
                    "discountAmount" | "invoiceDiscountAllocation" => 0,
                    _ => range(h, 0, 10_000_000),
                };
                money(out, v)
            } else if lower.contains("price") || lower.contains("cost") {
                json::fixed(out, range(h, 100, 50_000_000), 5)
            } else {
                money(out, range(h, 0, 1_000_000))
            }
        }
        _ => {
            let v = if lower.contains("addressline1") {
                format!(
                    "{} {}{}",
                    1 + k % 9999,
                    pick(k, w::STREET),
                    pick(k >> 5, w::STREET_TYPE)
                )
            } else if lower.contains("addressline2") {
                String::new()
            } else if lower.ends_with("city") {
                city.city.to_string()
            } else if lower.ends_with("state") {
                city.state.to_string()
            } else if lower.ends_with("country") {
                match city.country {
                    "United States" => "US",
                    "Canada" => "CA",
                    "United Kingdom" => "GB",
                    _ => "US",
                }
                .to_string()
            } else if lower.ends_with("postalcode") || lower.ends_with("postcode") {
                city.postal.to_string()
            } else if lower.contains("description") {
                if lower == "description2" {
                    String::new()
                } else {
                    format!("{} {}", pick(k, w::PRODUCT), c.row.ordinal)
                }
            } else if lower == "salesperson" || lower == "salespersoncode" {
                pick(k, &["JR", "PS", "OF", "BC"]).to_string()
            } else if lower == "externaldocumentnumber" {
                if pct(k, 50) {
                    format!("PO-{}", k % 100_000)
                } else {
                    String::new()
                }
            } else if lower == "taxcode" || lower == "taxgroupcode" {
                pick(k, &["TAXABLE", "NONTAXABLE", "LABOR"]).to_string()
            } else if lower == "documentnumber" {
                format!("G{:08}", c.row.ordinal / 3 + 1)
            } else {
                String::new()
            };
            s(out, &v)
        }
    }
}

fn dimension(o: u64) -> (&'static str, &'static str) {
    DIMENSIONS[o as usize % DIMENSIONS.len()]
}

fn term(o: u64) -> (&'static str, &'static str, &'static str, &'static str, i64) {
    TERMS[o as usize % TERMS.len()]
}

fn currency(o: u64) -> (&'static str, &'static str, &'static str) {
    CURRENCIES[o as usize % CURRENCIES.len()]
}

/// Quantities and amounts of a line that add up: amount = quantity × unit price, tax 8 %,
/// shipped ≤ quantity, invoiced ≤ shipped (all in hundredths).
fn line_amount(c: &RowCtx, name: &str) -> Option<i64> {
    let qty = range(field(c.rev, 0x51), 1, 50);
    let price = range(field(c.rev, 0x52), 1_000, 500_000);
    let shipped = range(field(c.rev, 0x53), 0, qty);
    let invoiced = range(field(c.rev, 0x54), 0, shipped);
    let net = qty * price;
    let tax = net * 8 / 100;
    Some(match name {
        "quantity" => qty * 100,
        "unitPrice" => price,
        "shippedQuantity" => shipped * 100,
        "invoicedQuantity" => invoiced * 100,
        "shipQuantity" => (qty - shipped) * 100,
        "invoiceQuantity" => (shipped - invoiced) * 100,
        "discountAmount" | "discountPercent" | "invoiceDiscountAllocation" => 0,
        "amountExcludingTax" | "netAmount" => net,
        "taxPercent" => 800,
        "totalTaxAmount" | "netTaxAmount" => tax,
        "amountIncludingTax" | "netAmountIncludingTax" => net + tax,
        _ => return None,
    })
}

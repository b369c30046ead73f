//! The Deltek fake's tables and their values: which hub serves which table, row counts derived
//! from the sandbox scale, keys, and every field a pure function of (seed, table, ordinal,
//! revision, field name), rendered straight into JSON bytes the way Vantagepoint sends them
//! (zone-less tenant wall-clock dates, Y/N strings, accounts as decimal strings).

use super::super::options::Tenant;
use super::super::rng::{field, pct, pick, range, row_key};
use super::super::words;
use super::custom::custom;
use super::kind::Kind;
use super::schema::{Field, Gen, standard};
use super::store::Table;

/// Every field a tenant's table has: the standard ones (a Lean tenant lacks `Probability`)
/// then its custom ones.
pub fn table(k: Kind, tenant: Tenant) -> Vec<&'static Field> {
    standard(k)
        .iter()
        .filter(|f| !(tenant == Tenant::Lean && f.name == "Probability"))
        .chain(custom(k, tenant))
        .collect()
}

/// Project number of project ordinal `o`.
pub fn project_key(o: u64) -> String {
    format!("{}-{:06}", 2015 + o % 11, o)
}

fn guid(h: u64, o: u64) -> String {
    format!(
        "{:08X}-{:04X}-4{:03X}-A{:03X}-{:012X}",
        (h >> 32) as u32,
        (h >> 16) as u16,
        (h >> 4) as u16 & 0xFFF,
        (o >> 48) as u16 & 0xFFF,
        o & 0xFFFF_FFFF_FFFF
    )
}

/// Everything rendering needs besides the row.
pub struct Ctx<'a> {
    pub seed: u64,
    pub counts: &'a [u64; 12],
    pub tz: &'a arrow_array::timezone::Tz,
}

impl Ctx<'_> {
    fn n(&self, k: Kind) -> u64 {
        self.counts[k as usize].max(1)
    }

    /// Key of another table's row (an initial one, so references mostly resolve).
    fn reference(&self, k: Kind, h: u64) -> String {
        key_of(self.seed, k, h % self.n(k), self.counts).join("|")
    }
}

/// The key values of `ordinal` in table `k` (several for phases, tasks and ledger lines).
pub fn key_of(seed: u64, k: Kind, o: u64, counts: &[u64; 12]) -> Vec<String> {
    let n = |k: Kind| counts[k as usize].max(1);
    match k {
        Kind::Project => vec![project_key(o)],
        Kind::Phase => {
            if o < n(Kind::Phase) {
                vec![project_key(o / 2), format!("{:03}", o % 2 + 1)]
            } else {
                vec![project_key(o % n(Kind::Project)), format!("X{o}")]
            }
        }
        Kind::Task => {
            if o < n(Kind::Task) {
                let mut p = key_of(seed, Kind::Phase, o / 2, counts);
                p.push(format!("{:03}", o % 2 + 1));
                p
            } else {
                let mut p = key_of(seed, Kind::Phase, o % n(Kind::Phase), counts);
                p.push(format!("X{o}"));
                p
            }
        }
        Kind::Firm | Kind::Contact => vec![guid(row_key(seed, k.index(), o), o)],
        Kind::Employee => vec![format!("{:05}", o + 1)],
        Kind::Opportunity => vec![format!("PUR-{o:06}")],
        Kind::Activity => vec![guid(row_key(seed, k.index(), o), o)],
        Kind::Ap | Kind::Ar | Kind::Je => {
            let period = 201901 + (o / 500) / 12 * 100 + (o / 500) % 12;
            vec![
                period.to_string(),
                (o % 500 + 1).to_string(),
                format!("{o:08}"),
            ]
        }
        Kind::GlAccount => vec![format!("{}.00", 100 + o * 5)],
    }
}

/// The ordinal whose generated key is `key`, for the single-key tables whose keys encode their
/// ordinal (the caller checks `key_of` of it and liveness); `None` for the others.
pub fn ordinal_hint(k: Kind, key: &str) -> Option<u64> {
    match k {
        Kind::Firm | Kind::Contact | Kind::Activity => {
            let parts: Vec<&str> = key.split('-').collect();
            let [_, _, _, hi, lo] = parts.as_slice() else {
                return None;
            };
            let hi = u64::from_str_radix(hi.get(1..)?, 16).ok()?;
            let lo = u64::from_str_radix(lo, 16).ok()?;
            Some(hi << 48 | lo)
        }
        Kind::Employee => key.parse::<u64>().ok()?.checked_sub(1),
        Kind::Opportunity => key.strip_prefix("PUR-")?.parse().ok(),
        Kind::Project => key.split_once('-')?.1.parse().ok(),
        _ => None,
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The key fields of each table, as the API names them.
pub fn key_fields(k: Kind) -> &'static [&'static str] {
    match k {
        Kind::Project => &["WBS1"],
        Kind::Phase => &["WBS1", "WBS2"],
        Kind::Task => &["WBS1", "WBS2", "WBS3"],
        Kind::Firm => &["ClientID"],
        Kind::Contact => &["ContactID"],
        Kind::Employee => &["Employee"],
        Kind::Opportunity => &["OpportunityID"],
        Kind::Activity => &["ActivityID"],
        Kind::Ap | Kind::Ar | Kind::Je => &["Period", "PostSeq", "PKey"],
        Kind::GlAccount => &["Account"],
    }
}

fn tag(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01B3)
    })
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.bytes() {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            _ => out.push(c),
        }
    }
    out.push(b'"');
}

/// Tenant wall clock of an instant (ms UTC).
pub fn wall(ms: i64, tz: &arrow_array::timezone::Tz) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(tz)
        .naive_local()
        .format("%Y-%m-%dT%H:%M:%S%.3f")
        .to_string()
}

/// A date (midnight) as Vantagepoint sends it.
fn day(days_since_2015: i64) -> String {
    let d = chrono::NaiveDate::from_ymd_opt(2015, 1, 1).unwrap_or_default()
        + chrono::Duration::days(days_since_2015);
    format!("{}T00:00:00.000", d.format("%Y-%m-%d"))
}

/// One served field: the name it is sent under and the field its value is generated from
/// (they differ for 5.0+ pursuits, served as projects: `WBS1` is generated as `OpportunityID`).
#[derive(Debug, Clone, Copy)]
pub struct Col {
    pub out: &'static str,
    pub src: &'static Field,
    tag: u64,
}

impl Col {
    pub fn new(out: &'static str, src: &'static Field) -> Self {
        Self {
            out,
            src,
            tag: tag(src.name),
        }
    }
}

/// A number `v` in units of 10^-scale, as JSON.
fn push_decimal(out: &mut Vec<u8>, v: i64, scale: u8) {
    use std::io::Write;
    if scale == 0 {
        let _ = write!(out, "{v}");
        return;
    }
    let p = 10u64.pow(scale as u32);
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    let _ = write!(out, "{sign}{}.{:0w$}", a / p, a % p, w = scale as usize);
}

fn push_phone(out: &mut Vec<u8>, h: u64) {
    push_str(
        out,
        &format!(
            "+1 {:03} {:03} {:04}",
            range(h, 201, 989),
            range(h >> 10, 200, 999),
            range(h >> 20, 0, 9999)
        ),
    );
}

/// What a named rule needs to know about the row.
struct Row<'a> {
    c: &'a Ctx<'a>,
    k: Kind,
    t: &'a Table,
    o: u64,
    rk: u64,
    rev: u32,
    mod_ms: i64,
    poisoned: bool,
    key: &'a [String],
}

/// Renders one record with the columns `cols`; `over` holds the values saved through the API,
/// which win over generated ones (client-assigned keys such as a project's WBS1 included).
pub fn write_row(
    out: &mut Vec<u8>,
    c: &Ctx,
    k: Kind,
    t: &Table,
    o: u64,
    cols: &[Col],
    over: Option<&serde_json::Map<String, serde_json::Value>>,
) {
    let (rev, mod_ms) = t.meta(o);
    let key = key_of(c.seed, k, o, c.counts);
    let rk = row_key(c.seed, k.index(), o);
    let vk = rk ^ (rev as u64).wrapping_mul(0x9E37_79B9);
    let row = Row {
        c,
        k,
        t,
        o,
        rk,
        rev,
        mod_ms,
        poisoned: t.poisoned.contains(&o),
        key: &key,
    };
    out.push(b'{');
    for (i, col) in cols.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_str(out, col.out);
        out.push(b':');
        if let Some(v) = over.and_then(|m| m.get(col.out)) {
            out.extend_from_slice(v.to_string().as_bytes());
            continue;
        }
        let name = col.src.name;
        if let Some(pos) = key_fields(k).iter().position(|f| *f == name) {
            let v = &key[pos];
            if matches!(k, Kind::Ap | Kind::Ar | Kind::Je) && pos < 2 {
                out.extend_from_slice(v.as_bytes());
            } else {
                push_str(out, v);
            }
            continue;
        }
        // Created rows keep their creation values; a revision changes the others.
        let h = field(if name == "CreateDate" { rk } else { vk }, col.tag);
        match col.src.fill {
            Gen::Named => named(out, &row, name, h),
            Gen::Pick(values, null) => {
                if pct(h, null) {
                    out.extend_from_slice(b"null")
                } else {
                    push_str(out, pick(h >> 3, values))
                }
            }
            Gen::Num {
                lo,
                hi,
                scale,
                null,
            } => {
                if pct(h, null) {
                    out.extend_from_slice(b"null")
                } else {
                    push_decimal(out, range(h >> 3, lo, hi), scale)
                }
            }
            Gen::Day { lo, hi, null } => {
                if pct(h, null) {
                    out.extend_from_slice(b"null")
                } else {
                    push_str(out, &day(range(h >> 3, lo, hi)))
                }
            }
            Gen::Flag(y) => push_str(out, if pct(h, y) { "Y" } else { "N" }),
            Gen::Ref(kind, null) => {
                if pct(h, null) {
                    out.extend_from_slice(b"null")
                } else {
                    push_str(out, &c.reference(kind, h >> 3))
                }
            }
            Gen::Phone(null) => {
                if pct(h, null) {
                    out.extend_from_slice(b"null")
                } else {
                    push_phone(out, h >> 3)
                }
            }
            Gen::Text(null) => {
                if pct(h, null) {
                    out.extend_from_slice(b"null")
                } else {
                    push_str(
                        out,
                        &format!(
                            "{} {} for {}",
                            pick(h >> 3, &["Follow up on", "Review", "Discussed", "Confirm"]),
                            pick(h >> 9, words::PRODUCT),
                            pick(h >> 15, words::COMPANY_NOUN).0
                        ),
                    )
                }
            }
            Gen::Const(v) => push_str(out, v),
            Gen::Never => out.extend_from_slice(b"null"),
            Gen::Drift { lo, hi, scale } => match (h >> 3) % 100 {
                0..=2 => push_str(out, "TBD"),
                3..=5 => push_str(out, ""),
                _ => push_decimal(out, range(h >> 10, lo, hi), scale),
            },
        }
    }
    out.push(b'}');
}

/// The rules of the fields generated by name (the references' standard fields).
fn named(out: &mut Vec<u8>, r: &Row<'_>, name: &str, h: u64) {
    let (c, k, t, o, rk, rev) = (r.c, r.k, r.t, r.o, r.rk, r.rev);
    let s = |out: &mut Vec<u8>, v: &str| push_str(out, v);
    match name {
        "ModDate" => {
            if r.poisoned {
                s(out, "not a date")
            } else {
                s(out, &wall(r.mod_ms, c.tz))
            }
        }
        "CreateDate" => s(
            out,
            &wall(
                t.base_mod_ms(o.min(t.initial)) - 86_400_000 * range(h, 0, 400),
                c.tz,
            ),
        ),
        "Name" | "LongName" => {
            let (head, _) = pick(h, words::COMPANY_HEAD);
            let (noun, _) = pick(h >> 8, words::COMPANY_NOUN);
            match k {
                Kind::Firm => s(
                    out,
                    &format!("{head} {noun} {}", pick(h >> 16, words::COMPANY_SUFFIX)),
                ),
                Kind::GlAccount => s(
                    out,
                    &format!(
                        "{noun} {}",
                        pick(
                            h >> 16,
                            &["Revenue", "Expense", "Payable", "Receivable", "Cash"]
                        )
                    ),
                ),
                _ => s(
                    out,
                    &format!(
                        "{} {head} {noun}",
                        pick(
                            h >> 16,
                            &["Riverside", "North", "Central", "Harbor", "Valley"]
                        )
                    ),
                ),
            }
        }
        "Subject" => s(
            out,
            &format!(
                "{} with {}",
                pick(h, &["Call", "Meeting", "Site visit", "Follow-up"]),
                pick(h >> 8, words::LAST).0
            ),
        ),
        "FirstName" | "LastName" | "EMail" if k == Kind::Employee => {
            let (fi, li, serial) = words::staff(o);
            let (first, first_slug) = words::FIRST[fi];
            let (last, last_slug) = words::LAST[li];
            match name {
                "FirstName" => s(out, first),
                "LastName" => s(out, last),
                // The firm's domain, spelled with capitals (matches are case-insensitive);
                // every fifth employee is a contractor with an outside address, so some
                // CRM users match no employee.
                _ if o % 5 == 4 => s(
                    out,
                    &format!("{first_slug}.{last_slug}@contractors.example"),
                ),
                _ => s(
                    out,
                    &format!(
                        "{}.{}{}@MLCSandbox.onmicrosoft.com",
                        capitalized(first_slug),
                        capitalized(last_slug),
                        if serial > 0 {
                            serial.to_string()
                        } else {
                            String::new()
                        }
                    ),
                ),
            }
        }
        "FirstName" => s(out, pick(h, words::FIRST).0),
        "LastName" => s(out, pick(h, words::LAST).0),
        "MiddleName" | "PreferredName" | "Vendor" | "ProposalWBS1" | "OpportunityID"
        | "ParentID" => {
            if pct(h, 60) {
                out.extend_from_slice(b"null")
            } else if name == "OpportunityID" {
                s(out, &format!("PUR-{:06}", h % c.n(Kind::Opportunity)))
            } else if name == "ProposalWBS1" {
                s(out, &project_key(h % c.n(Kind::Project)))
            } else if name == "ParentID" || name == "Vendor" {
                s(out, &c.reference(Kind::Firm, h))
            } else {
                s(out, pick(h, words::FIRST).0)
            }
        }
        "Client" => s(out, &format!("C{:06}", o + 1)),
        "Title" => s(out, pick(h, words::JOB_TITLE)),
        "Email" | "EMail" | "PrimaryEmail" => s(
            out,
            &format!(
                "{}.{}@{}",
                pick(h, words::FIRST).0,
                pick(h >> 8, words::LAST).0,
                pick(h >> 16, words::FREEMAIL)
            )
            .to_ascii_lowercase(),
        ),
        "Phone" | "CellPhone" | "PrimaryPhone" => push_phone(out, h),
        "WebSite" => s(
            out,
            &format!(
                "https://www.{}.com",
                pick(h, words::COMPANY_NOUN).0.to_ascii_lowercase()
            ),
        ),
        "PrimaryAddress1" => s(
            out,
            &format!(
                "{} {} {}",
                range(h, 1, 9999),
                pick(h >> 8, words::STREET),
                pick(h >> 16, words::STREET_TYPE)
            ),
        ),
        "PrimaryCity" | "City" => s(out, pick(h, words::CITIES).city),
        "PrimaryState" | "State" => s(out, pick(h, words::CITIES).state),
        "PrimaryCountry" => s(out, pick(h, words::CITIES).country),
        "PrimaryZip" => s(out, pick(h, words::CITIES).postal),
        "Org" => s(out, pick(h, &["01:ENG", "01:ARC", "02:ENV", "02:PM"])),
        "ClientID" => s(out, &c.reference(Kind::Firm, h)),
        "BillingClientID" => s(out, &c.reference(Kind::Firm, h)),
        "ContactID" => s(out, &c.reference(Kind::Contact, h)),
        "ProjMgr" | "Principal" | "Supervisor" | "Owner" | "CreateUser" | "ModUser" => {
            s(out, &c.reference(Kind::Employee, h))
        }
        // Above their own level, project-hub rows carry a blank (one space) WBS2/WBS3.
        "WBS2" | "WBS3" if matches!(k, Kind::Project | Kind::Phase | Kind::Opportunity) => {
            s(out, " ")
        }
        "WBS1" => s(out, &project_key(h % c.n(Kind::Project))),
        "WBS2" | "WBS3" => s(out, if pct(h, 50) { " " } else { "001" }),
        "WBSNumber" => s(out, &r.key.join(".")),
        "Status" => s(out, pick(h, &["A", "A", "A", "I"])),
        "ContactStatus" => s(out, pick(h, &["A", "A", "I"])),
        "QualifiedStatus" => s(
            out,
            pick(h, &["sysQualified", "sysDisqualified", "sysLead"]),
        ),
        "ChargeType" => s(out, pick(h, &["R", "R", "R", "H", "P"])),
        "SubLevel" => s(out, if matches!(k, Kind::Task) { "N" } else { "Y" }),
        "ClientInd" | "CompletionInd" | "Detail" => s(out, if pct(h, 70) { "Y" } else { "N" }),
        "VendorInd" => s(out, if pct(h, 20) { "Y" } else { "N" }),
        "Type" => match k {
            Kind::GlAccount => out.extend_from_slice(range(h, 1, 9).to_string().as_bytes()),
            Kind::Activity => s(out, pick(h, &["Meeting", "Phone Call", "Email", "Task"])),
            _ => s(out, pick(h, &["Client", "Prospect", "Partner", "Vendor"])),
        },
        "RevType" => s(out, pick(h, &["B", "M", "N", "P"])),
        "ProjectType" => s(out, pick(h, &["Design", "Study", "Construction Admin"])),
        "ProjectCurrencyCode" | "BillingCurrencyCode" | "CurrencyCode" => {
            s(out, pick(h, &["USD", "USD", "USD", "CAD"]))
        }
        "PayType" => s(out, pick(h, &["H", "S"])),
        "EmployeeCompany" => s(out, "01"),
        // Pursuit stages are a project-level (WBS1) fact.
        "Stage" | "StageDescription" | "Probability" if matches!(k, Kind::Phase | Kind::Task) => {
            out.extend_from_slice(b"null")
        }
        "Stage" | "StageDescription" => {
            let stages = [
                ("01", "Lead"),
                ("02", "Qualified"),
                ("03", "Proposal"),
                ("04", "Shortlisted"),
            ];
            let st = pick(field(rk ^ rev as u64, 7), &stages);
            let blank = k == Kind::Project && pct(field(rk, 9), 60);
            if blank {
                out.extend_from_slice(b"null")
            } else if name == "Stage" {
                s(out, st.0)
            } else {
                s(out, st.1)
            }
        }
        "Probability" => {
            if r.poisoned {
                s(out, "high")
            } else {
                out.extend_from_slice(range(h, 0, 10).saturating_mul(10).to_string().as_bytes())
            }
        }
        "Fee" | "Revenue" | "Amount" => {
            let cents = range(h, -50_000, 25_000_000) * if name == "Amount" { 1 } else { 10 };
            let cents = if name == "Amount" { cents } else { cents.abs() };
            push_decimal(out, cents, 2);
        }
        "Account" => s(out, &c.reference(Kind::GlAccount, h)),
        "Voucher" | "Invoice" | "RefNo" => s(out, &format!("{:07}", h % 10_000_000)),
        "Desc1" => s(out, pick(h, words::PRODUCT)),
        "Period" => out.extend_from_slice(r.key[0].as_bytes()),
        "StartDate" | "EstStartDate" | "HireDate" | "InvoiceDate" | "TransDate" => {
            s(out, &day(range(h, 0, 4000)))
        }
        "EndDate" | "EstCompletionDate" => s(out, &day(range(h, 3001, 5000))),
        "ActCompletionDate" => {
            if pct(h, 70) {
                out.extend_from_slice(b"null")
            } else {
                s(out, &day(range(h, 3001, 4000)))
            }
        }
        _ => out.extend_from_slice(b"null"),
    }
}

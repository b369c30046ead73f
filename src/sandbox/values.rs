//! Field values: each is a pure function of (seed, set, ordinal, revision), written straight
//! into the page buffer together with the annotations the request asked for.
//!
//! "Stable" facets (names, numbers, addresses, lookups to customers) hash the row key only;
//! "volatile" facets (amounts, phones, states, owners, descriptions) also hash the revision,
//! so an update visibly changes the row.

use super::dataverse::schema::{state_label, status_label};
use super::entities::{Entity, Field, Gen, Kind, Set};
use super::json;
use super::rng::{field as fh, pct, pick, range, row_key};
use super::store::{EPOCH, RowRef};
use super::words as w;

/// Sizes of the initial load per set: lookups point into these ranges.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub initial: [u64; 9],
}

impl Dims {
    pub fn of(&self, set: Set) -> u64 {
        self.initial[set.index()].max(1)
    }
}

/// Which instance annotations the request asked for (`Prefer: odata.include-annotations`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ann {
    pub logical: bool,
    pub nav: bool,
    pub formatted: bool,
}

// Tags of facets shared by several fields of one row.
const T_COMPANY: u64 = 1;
const T_PERSON: u64 = 2;
const T_CITY: u64 = 3;
const T_STATE: u64 = 4;
const T_TOTAL: u64 = 5;
const T_CUSTOMER: u64 = 6;
const T_TOPIC: u64 = 7;
const T_OWNER: u64 = 8;
const T_STREET: u64 = 9;
const T_LINE2: u64 = 10;
const T_POSTAL: u64 = 11;
const T_CREATOR: u64 = 12;

/// Everything needed to render one row.
pub struct Ctx<'a> {
    pub seed: u64,
    pub set: Set,
    pub row: &'a RowRef,
    pub dims: &'a Dims,
    /// Stable row key.
    key: u64,
    /// Row key including the revision.
    rkey: u64,
}

impl<'a> Ctx<'a> {
    pub fn new(seed: u64, set: Set, row: &'a RowRef, dims: &'a Dims) -> Self {
        let key = row_key(seed, set.code(), row.ordinal);
        let rkey = fh(key, 0xFFFF_0000 + row.state.revision as u64);
        Self {
            seed,
            set,
            row,
            dims,
            key,
            rkey,
        }
    }

    #[inline]
    fn h(&self, tag: u64) -> u64 {
        fh(self.key, tag)
    }

    #[inline]
    fn hr(&self, tag: u64) -> u64 {
        fh(self.rkey, tag)
    }

    fn created_days(&self) -> i64 {
        self.row.created_secs.div_euclid(86_400)
    }

    fn state_status(&self) -> (i64, i64) {
        state_status(self.set, self.hr(T_STATE))
    }
}

/// Writes one row object: `{"@odata.etag":"W/\"v\"", <selected fields>}`.
pub fn write_row(out: &mut Vec<u8>, ent: &Entity, c: &Ctx, sel: &[usize], ann: Ann) {
    out.extend_from_slice(b"{\"@odata.etag\":\"W/\\\"");
    json::u64(out, c.row.state.version);
    out.extend_from_slice(b"\\\"\"");
    for &i in sel {
        write_field(out, &ent.fields[i], c, ann);
    }
    out.push(b'}');
}

/// Target of a non-null lookup.
enum Target {
    Row {
        set: Set,
        ordinal: u64,
        nav: &'static str,
    },
    Fixed {
        logical: &'static str,
        nav: &'static str,
        guid: &'static str,
        label: &'static str,
    },
}

fn write_field(out: &mut Vec<u8>, f: &Field, c: &Ctx, ann: Ann) {
    if c.row.state.poisoned()
        && let Some(bad) = f.poison
    {
        out.extend_from_slice(&f.key);
        out.extend_from_slice(bad);
        return;
    }
    let set = c.set;
    let o = c.row.ordinal;
    match f.generator {
        Gen::PrimaryKey if c.row.state.key_broken() => {
            out.extend_from_slice(&f.key);
            out.extend_from_slice(b"{\"unreadable\":true}");
        }
        Gen::PrimaryKey => {
            out.extend_from_slice(&f.key);
            json::guid(out, set.code(), o);
        }
        Gen::VersionNumber => {
            out.extend_from_slice(&f.key);
            json::u64(out, c.row.state.version);
        }
        Gen::CreatedOn => {
            out.extend_from_slice(&f.key);
            json::timestamp(out, c.row.created_secs);
        }
        Gen::ModifiedOn => {
            out.extend_from_slice(&f.key);
            json::timestamp(out, c.row.modified_secs());
        }
        Gen::StateCode => {
            let (s, _) = c.state_status();
            choice(out, f, ann, Some((s, state_label(set, s))));
        }
        Gen::StatusCode => {
            let (_, s) = c.state_status();
            choice(out, f, ann, Some((s, status_label(set, s))));
        }
        Gen::Owner => {
            let users = c.dims.of(Set::SystemUsers);
            // Owners are real users (ordinal 0 is the application user).
            let ordinal = if users > 1 {
                1 + c.hr(T_OWNER) % (users - 1)
            } else {
                0
            };
            lookup(
                out,
                f,
                c,
                ann,
                Some(Target::Row {
                    set: Set::SystemUsers,
                    ordinal,
                    nav: "ownerid",
                }),
            );
        }
        Gen::User { nav, volatile } => {
            // The creator: a person for rows of the initial load; rows inserted later come from
            // the integration (the application user, ordinal 0) about half of the time. The
            // last modifier is the creator until the first update, then drawn per revision.
            let updated = volatile && c.row.state.revision > 0;
            let (h, by_app) = if updated {
                (c.hr(f.tag), true)
            } else {
                (c.h(T_CREATOR), c.row.created_secs >= EPOCH)
            };
            let users = c.dims.of(Set::SystemUsers);
            let ordinal = if users > 1 && !(by_app && pct(h, 50)) {
                1 + (h >> 9) % (users - 1)
            } else {
                0
            };
            lookup(
                out,
                f,
                c,
                ann,
                Some(Target::Row {
                    set: Set::SystemUsers,
                    ordinal,
                    nav,
                }),
            );
        }
        Gen::Lookup {
            target,
            pct: p,
            nav,
        } => {
            let h = c.h(f.tag);
            let t = pct(h, p as u64).then(|| {
                let n = c.dims.of(target);
                let mut ordinal = (h >> 20) % n;
                if target == set && ordinal == o {
                    ordinal = (ordinal + 1) % n;
                }
                Target::Row {
                    set: target,
                    ordinal,
                    nav,
                }
            });
            lookup(out, f, c, ann, t);
        }
        Gen::Customer {
            nav,
            contact_pct,
            null_pct,
        } => {
            let t = customer(c, contact_pct, null_pct).map(|(s, ordinal)| Target::Row {
                set: s,
                ordinal,
                nav: poly_nav(nav, s),
            });
            lookup(out, f, c, ann, t);
        }
        Gen::Fixed {
            logical,
            nav,
            guid,
            label,
        } => lookup(
            out,
            f,
            c,
            ann,
            Some(Target::Fixed {
                logical,
                nav,
                guid,
                label,
            }),
        ),
        Gen::PrimaryContact => {
            let contacts = c.dims.of(Set::Contacts);
            let t = (pct(c.h(f.tag), 70) && 2 * o < contacts).then_some(Target::Row {
                set: Set::Contacts,
                ordinal: 2 * o,
                nav: "primarycontactid",
            });
            lookup(out, f, c, ann, t);
        }
        Gen::QualifyingOpportunity => {
            let t = (c.state_status().0 == 1).then(|| Target::Row {
                set: Set::Opportunities,
                ordinal: c.h(f.tag) % c.dims.of(Set::Opportunities),
                nav: "qualifyingopportunityid",
            });
            lookup(out, f, c, ann, t);
        }
        Gen::Manager => {
            let t = (o >= 2).then(|| Target::Row {
                set: Set::SystemUsers,
                ordinal: 1 + (o - 2) / 5,
                nav: "parentsystemuserid",
            });
            lookup(out, f, c, ann, t);
        }
        Gen::Choice { labels, null_pct } => {
            let h = c.hr(f.tag);
            let v = (!pct(h, null_pct as u64)).then(|| pick(h, labels));
            choice(out, f, ann, v);
        }
        Gen::Bool { true_pct } => {
            let v = pct(c.hr(f.tag), true_pct as u64);
            boolean(out, f, ann, v);
        }
        Gen::Int { lo, hi, null_pct } => {
            let h = c.hr(f.tag);
            out.extend_from_slice(&f.key);
            if pct(h, null_pct as u64) {
                out.extend_from_slice(b"null");
            } else if f.kind == Kind::Decimal {
                json::fixed(out, range(h >> 3, lo, hi) * 10_000, 4);
            } else {
                json::i64(out, range(h >> 3, lo, hi));
            }
        }
        Gen::Money { lo, hi, null_pct } => {
            let h = c.hr(f.tag);
            let v = (!pct(h, null_pct as u64)).then(|| money_between(h >> 3, lo, hi));
            money(out, f, ann, v);
        }
        Gen::Total => money(out, f, ann, Some(total(c))),
        Gen::Tax => {
            let t = total(c);
            money(out, f, ann, Some((t * 8 / 100) / 100 * 100));
        }
        Gen::Discount => {
            let h = c.hr(f.tag);
            let v = (!pct(h, 50)).then(|| (total(c) * range(h >> 3, 0, 10) / 100) / 100 * 100);
            money(out, f, ann, v);
        }
        Gen::ExchangeRate => {
            out.extend_from_slice(&f.key);
            out.extend_from_slice(b"1.0");
        }
        Gen::Freight => {
            let h = c.hr(f.tag);
            let v = (!pct(h, 40)).then(|| money_between(h >> 3, 20, 2_000));
            money(out, f, ann, v);
        }
        Gen::CompanyName => {
            out.extend_from_slice(&f.key);
            out.push(b'"');
            company_name(out, c.key);
            out.push(b'"');
        }
        Gen::AccountNumber => {
            out.extend_from_slice(&f.key);
            out.extend_from_slice(b"\"AC-");
            pad(out, o + 1, 7);
            out.push(b'"');
        }
        Gen::CompanyEmail => {
            let h = c.h(f.tag);
            out.extend_from_slice(&f.key);
            if pct(h, 10) {
                out.extend_from_slice(b"null");
            } else {
                out.push(b'"');
                out.extend_from_slice(
                    pick(
                        h,
                        &["info", "sales", "contact", "hello", "office", "accounts"],
                    )
                    .as_bytes(),
                );
                out.push(b'@');
                company_domain(out, c.key);
                out.push(b'"');
            }
        }
        Gen::Website => {
            out.extend_from_slice(&f.key);
            if pct(c.h(f.tag), 10) {
                out.extend_from_slice(b"null");
            } else {
                out.extend_from_slice(b"\"https://www.");
                company_domain(out, c.key);
                out.push(b'"');
            }
        }
        Gen::Phone { null_pct, tag } => {
            let h = c.hr(f.tag ^ tag as u64);
            out.extend_from_slice(&f.key);
            if pct(h, null_pct as u64) {
                out.extend_from_slice(b"null");
            } else {
                let city = city(c);
                out.push(b'"');
                out.extend_from_slice(city.dial.as_bytes());
                out.extend_from_slice(b" 555 ");
                pad(out, (h >> 20) % 10_000, 4);
                out.push(b'"');
            }
        }
        Gen::Street1 => {
            out.extend_from_slice(&f.key);
            out.push(b'"');
            street1(out, c);
            out.push(b'"');
        }
        Gen::Street2 => {
            out.extend_from_slice(&f.key);
            if has_line2(c) {
                out.push(b'"');
                street2(out, c);
                out.push(b'"');
            } else {
                out.extend_from_slice(b"null");
            }
        }
        Gen::Composite => {
            // Dataverse joins the parts with CRLF: street lines, "city, state postal", country.
            let city = city(c);
            out.extend_from_slice(&f.key);
            out.push(b'"');
            street1(out, c);
            if has_line2(c) {
                out.extend_from_slice(b"\\r\\n");
                street2(out, c);
            }
            out.extend_from_slice(b"\\r\\n");
            out.extend_from_slice(city.city.as_bytes());
            out.extend_from_slice(b", ");
            out.extend_from_slice(city.state.as_bytes());
            out.push(b' ');
            postal(out, city.postal, c.h(T_POSTAL));
            out.extend_from_slice(b"\\r\\n");
            out.extend_from_slice(city.country.as_bytes());
            out.push(b'"');
        }
        Gen::City => str_field(out, f, Some(city(c).city)),
        Gen::Region => str_field(out, f, Some(city(c).state)),
        Gen::Country => str_field(out, f, Some(city(c).country)),
        Gen::PostalCode => {
            out.extend_from_slice(&f.key);
            out.push(b'"');
            postal(out, city(c).postal, c.h(T_POSTAL));
            out.push(b'"');
        }
        Gen::Latitude | Gen::Longitude => {
            let city = city(c);
            let base = if f.generator == Gen::Latitude {
                city.lat
            } else {
                city.lon
            };
            let jitter = range(c.h(f.tag), -50_000, 50_000);
            out.extend_from_slice(&f.key);
            json::fixed(out, base + jitter, 6);
        }
        Gen::Description { null_pct } => {
            let h = c.hr(f.tag);
            out.extend_from_slice(&f.key);
            if pct(h, null_pct as u64) {
                out.extend_from_slice(b"null");
            } else {
                out.push(b'"');
                out.extend_from_slice(pick(h, w::DESC_A).as_bytes());
                out.push(b' ');
                out.extend_from_slice(pick(h >> 24, w::DESC_B).as_bytes());
                out.push(b'"');
            }
        }
        Gen::FirstName => {
            out.extend_from_slice(&f.key);
            out.push(b'"');
            out.extend_from_slice(person(c.seed, set, o).first.as_bytes());
            out.push(b'"');
        }
        Gen::LastName => {
            out.extend_from_slice(&f.key);
            out.push(b'"');
            out.extend_from_slice(person(c.seed, set, o).last.as_bytes());
            out.push(b'"');
        }
        Gen::FullName => {
            out.extend_from_slice(&f.key);
            out.push(b'"');
            person(c.seed, set, o).full(out);
            out.push(b'"');
        }
        Gen::PersonEmail | Gen::UserPrincipal => {
            out.extend_from_slice(&f.key);
            if set == Set::Contacts && pct(c.h(f.tag), 8) {
                out.extend_from_slice(b"null");
            } else {
                out.push(b'"');
                person_email(out, c);
                out.push(b'"');
            }
        }
        Gen::JobTitle { null_pct } => {
            let h = c.hr(f.tag);
            let v = (!pct(h, null_pct as u64)).then(|| pick(h, w::JOB_TITLE));
            str_field(out, f, v);
        }
        Gen::Department => {
            let h = c.hr(f.tag);
            let v = (!pct(h, 40)).then(|| pick(h, w::DEPARTMENT));
            str_field(out, f, v);
        }
        Gen::BirthDate => {
            let h = c.h(f.tag);
            out.extend_from_slice(&f.key);
            if pct(h, 50) {
                out.extend_from_slice(b"null");
            } else {
                day(out, f, range(h >> 3, -5_475, 12_400));
            }
        }
        Gen::LeadSubject => {
            let h = c.h(T_TOPIC);
            out.extend_from_slice(&f.key);
            out.push(b'"');
            out.extend_from_slice(pick(h, w::LEAD_HEAD).as_bytes());
            out.extend_from_slice(pick(h >> 24, w::PRODUCT).as_bytes());
            out.push(b'"');
        }
        Gen::Topic | Gen::DocName => {
            out.extend_from_slice(&f.key);
            out.push(b'"');
            topic(out, c.key);
            out.push(b'"');
        }
        Gen::DocNumber { prefix } => {
            let h = c.h(f.tag);
            out.extend_from_slice(&f.key);
            out.push(b'"');
            out.extend_from_slice(prefix.as_bytes());
            out.push(b'-');
            pad(out, o + 1001, 5);
            out.push(b'-');
            let mut x = h;
            for _ in 0..6 {
                out.push(b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789"[(x & 31) as usize]);
                x >>= 5;
            }
            out.push(b'"');
        }
        Gen::ProductName => {
            out.extend_from_slice(&f.key);
            out.push(b'"');
            product_name(out, o);
            out.push(b'"');
        }
        Gen::ProductNumber => {
            out.extend_from_slice(&f.key);
            out.extend_from_slice(b"\"PRD-");
            pad(out, o + 1, 5);
            out.push(b'"');
        }
        Gen::EstimatedValue => {
            let h = c.hr(T_TOTAL);
            money(
                out,
                f,
                ann,
                Some(money_between(h, 5_000, 1_000_000) / 1_000_000 * 1_000_000),
            );
        }
        Gen::ActualValue => {
            let v = (c.state_status().0 == 1).then(|| {
                let est = money_between(c.hr(T_TOTAL), 5_000, 1_000_000) / 1_000_000 * 1_000_000;
                est / 100 * range(c.hr(f.tag), 80, 110)
            });
            money(out, f, ann, v);
        }
        Gen::CloseProbability => {
            out.extend_from_slice(&f.key);
            match c.state_status().0 {
                0 => json::i64(out, range(c.hr(f.tag), 2, 18) * 5),
                1 => out.extend_from_slice(b"100"),
                _ => out.extend_from_slice(b"0"),
            }
        }
        Gen::DateAfter { min, max, pct: p } => {
            let h = c.h(f.tag);
            out.extend_from_slice(&f.key);
            if !pct(h, p as u64) {
                out.extend_from_slice(b"null");
            } else {
                day(out, f, c.created_days() + range(h >> 3, min, max));
            }
        }
        Gen::TimeAfter { min, max, pct: p } => {
            let h = c.h(f.tag);
            out.extend_from_slice(&f.key);
            if !pct(h, p as u64) {
                out.extend_from_slice(b"null");
            } else {
                let secs = range(h >> 3, min * 86_400, max * 86_400);
                json::timestamp(out, c.row.created_secs + secs);
            }
        }
        Gen::ClosedDate => {
            out.extend_from_slice(&f.key);
            if c.state_status().0 == 0 {
                out.extend_from_slice(b"null");
            } else {
                day(out, f, c.created_days() + range(c.h(f.tag), 20, 200));
            }
        }
        Gen::SubmitDate => {
            out.extend_from_slice(&f.key);
            if c.state_status().0 == 0 {
                out.extend_from_slice(b"null");
            } else {
                json::timestamp(
                    out,
                    c.row.created_secs + range(c.h(f.tag), 3_600, 5 * 86_400),
                );
            }
        }
        Gen::FulfilledDate => {
            out.extend_from_slice(&f.key);
            if matches!(c.state_status().0, 3 | 4) {
                json::timestamp(
                    out,
                    c.row.created_secs + range(c.h(f.tag), 10 * 86_400, 40 * 86_400),
                );
            } else {
                out.extend_from_slice(b"null");
            }
        }
        Gen::AadObjectId => {
            out.extend_from_slice(&f.key);
            json::guid_from_bits(out, c.h(f.tag), c.h(f.tag + 1));
        }
        Gen::ApplicationId => {
            out.extend_from_slice(&f.key);
            if o == 0 {
                out.push(b'"');
                out.extend_from_slice(super::entra::CLIENT_ID.as_bytes());
                out.push(b'"');
            } else {
                out.extend_from_slice(b"null");
            }
        }
        Gen::UserTitle => {
            let h = c.h(f.tag);
            let v = (o != 0 && !pct(h, 40)).then(|| pick(h, w::USER_TITLE));
            str_field(out, f, v);
        }
        Gen::UserJob => {
            let h = c.hr(f.tag);
            let v = (o != 0).then(|| pick(h, w::USER_JOB));
            str_field(out, f, v);
        }
        Gen::Word { words, null_pct } => {
            let h = c.hr(f.tag);
            let v = (!pct(h, null_pct as u64)).then(|| pick(h >> 3, words));
            str_field(out, f, v);
        }
    }
}

/// A calendar day: a bare `Edm.Date`, or midnight UTC for a date-only column whose behaviour
/// is `UserLocal` (served as `Edm.DateTimeOffset`).
fn day(out: &mut Vec<u8>, f: &Field, days: i64) {
    if f.kind.is_edm_date() {
        json::date(out, days);
    } else {
        json::timestamp(out, days * 86_400);
    }
}

fn street1(out: &mut Vec<u8>, c: &Ctx) {
    let h = c.h(T_STREET);
    json::u64(out, 1 + (h >> 8) % 2_500);
    out.push(b' ');
    out.extend_from_slice(pick(h, w::STREET).as_bytes());
    out.extend_from_slice(pick(h >> 24, w::STREET_TYPE).as_bytes());
}

fn has_line2(c: &Ctx) -> bool {
    !pct(c.h(T_LINE2), 70)
}

fn street2(out: &mut Vec<u8>, c: &Ctx) {
    let h = c.h(T_LINE2);
    out.extend_from_slice(pick(h, w::LINE2).as_bytes());
    json::u64(out, 1 + (h >> 30) % 900);
}

fn str_field(out: &mut Vec<u8>, f: &Field, v: Option<&str>) {
    out.extend_from_slice(&f.key);
    match v {
        Some(s) => {
            out.push(b'"');
            out.extend_from_slice(s.as_bytes());
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
}

fn choice(out: &mut Vec<u8>, f: &Field, ann: Ann, v: Option<(i64, &str)>) {
    match v {
        Some((code, label)) => {
            if ann.formatted {
                out.extend_from_slice(&f.key_fmt);
                out.push(b'"');
                out.extend_from_slice(label.as_bytes());
                out.push(b'"');
            }
            out.extend_from_slice(&f.key);
            json::i64(out, code);
        }
        None => {
            out.extend_from_slice(&f.key);
            out.extend_from_slice(b"null");
        }
    }
}

fn boolean(out: &mut Vec<u8>, f: &Field, ann: Ann, v: bool) {
    if ann.formatted {
        out.extend_from_slice(&f.key_fmt);
        out.extend_from_slice(if v { b"\"Yes\"" } else { b"\"No\"" });
    }
    out.extend_from_slice(&f.key);
    out.extend_from_slice(if v { b"true" } else { b"false" });
}

/// Money given in 1/10000 units.
fn money(out: &mut Vec<u8>, f: &Field, ann: Ann, v: Option<i64>) {
    match v {
        Some(v) => {
            if ann.formatted {
                out.extend_from_slice(&f.key_fmt);
                out.push(b'"');
                json::money_label(out, v);
                out.push(b'"');
            }
            out.extend_from_slice(&f.key);
            json::fixed(out, v, 4);
        }
        None => {
            out.extend_from_slice(&f.key);
            out.extend_from_slice(b"null");
        }
    }
}

fn lookup(out: &mut Vec<u8>, f: &Field, c: &Ctx, ann: Ann, t: Option<Target>) {
    let Some(t) = t else {
        out.extend_from_slice(&f.key);
        out.extend_from_slice(b"null");
        return;
    };
    let (logical, nav) = match &t {
        Target::Row { set, nav, .. } => (set.logical(), *nav),
        Target::Fixed { logical, nav, .. } => (*logical, *nav),
    };
    if ann.formatted {
        out.extend_from_slice(&f.key_fmt);
        out.push(b'"');
        match &t {
            Target::Row { set, ordinal, .. } => display_name(out, c.seed, *set, *ordinal),
            Target::Fixed { label, .. } => out.extend_from_slice(label.as_bytes()),
        }
        out.push(b'"');
    }
    if ann.nav {
        out.extend_from_slice(&f.key_nav);
        out.push(b'"');
        out.extend_from_slice(nav.as_bytes());
        out.push(b'"');
    }
    if ann.logical {
        out.extend_from_slice(&f.key_logical);
        out.push(b'"');
        out.extend_from_slice(logical.as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(&f.key);
    match t {
        Target::Row { set, ordinal, .. } => json::guid(out, set.code(), ordinal),
        Target::Fixed { guid, .. } => {
            out.push(b'"');
            out.extend_from_slice(guid.as_bytes());
            out.push(b'"');
        }
    }
}

/// The navigation property of a polymorphic lookup for the target's table.
fn poly_nav(nav: &'static str, target: Set) -> &'static str {
    match (nav, target) {
        ("customerid", Set::Contacts) => "customerid_contact",
        ("customerid", _) => "customerid_account",
        ("parentcustomerid", Set::Contacts) => "parentcustomerid_contact",
        ("parentcustomerid", _) => "parentcustomerid_account",
        _ => nav,
    }
}

/// The customer of a row: an account (contacts belong to account `ordinal / 2`), sometimes a
/// contact, sometimes nobody.
fn customer(c: &Ctx, contact_pct: u8, null_pct: u8) -> Option<(Set, u64)> {
    let h = c.h(T_CUSTOMER);
    let roll = (h >> 7) % 100;
    if roll < null_pct as u64 {
        return None;
    }
    let contacts = c.dims.of(Set::Contacts);
    let accounts = c.dims.of(Set::Accounts);
    if roll < (null_pct + contact_pct) as u64 {
        let mut ord = (h >> 20) % contacts;
        if c.set == Set::Contacts && ord == c.row.ordinal {
            ord = (ord + 1) % contacts;
        }
        return Some((Set::Contacts, ord));
    }
    if c.set == Set::Contacts {
        Some((Set::Accounts, (c.row.ordinal / 2) % accounts))
    } else {
        Some((Set::Accounts, (h >> 20) % accounts))
    }
}

/// Money between `lo` and `hi` whole units, in 1/10000 units: large amounts round to
/// hundreds, small ones keep cents.
fn money_between(h: u64, lo: i64, hi: i64) -> i64 {
    let cents = range(h, lo * 100, hi * 100);
    let cents = if hi >= 1_000_000 {
        cents / 10_000 * 10_000
    } else if hi >= 100_000 {
        cents / 100 * 100
    } else {
        cents
    };
    cents * 100
}

fn total(c: &Ctx) -> i64 {
    money_between(c.hr(T_TOTAL), 500, 250_000)
}

/// Zero-padded decimal of at least `width` digits.
fn pad(out: &mut Vec<u8>, v: u64, width: usize) {
    let start = out.len();
    json::u64(out, v);
    let len = out.len() - start;
    if len < width {
        let zeros = width - len;
        out.splice(start..start, std::iter::repeat_n(b'0', zeros));
    }
}

fn company_parts(
    key: u64,
) -> (
    &'static (&'static str, &'static str),
    &'static (&'static str, &'static str),
    &'static str,
    &'static str,
) {
    let h = fh(key, T_COMPANY);
    let head = &w::COMPANY_HEAD[(h % w::COMPANY_HEAD.len() as u64) as usize];
    let noun = &w::COMPANY_NOUN[((h >> 16) % w::COMPANY_NOUN.len() as u64) as usize];
    let suffix = w::COMPANY_SUFFIX[((h >> 32) % w::COMPANY_SUFFIX.len() as u64) as usize];
    let tld = w::TLD[((h >> 48) % w::TLD.len() as u64) as usize];
    (head, noun, suffix, tld)
}

fn company_name(out: &mut Vec<u8>, key: u64) {
    let (head, noun, suffix, _) = company_parts(key);
    out.extend_from_slice(head.0.as_bytes());
    out.push(b' ');
    out.extend_from_slice(noun.0.as_bytes());
    out.extend_from_slice(suffix.as_bytes());
}

fn company_domain(out: &mut Vec<u8>, key: u64) {
    let (head, noun, _, tld) = company_parts(key);
    out.extend_from_slice(head.1.as_bytes());
    out.extend_from_slice(noun.1.as_bytes());
    out.extend_from_slice(tld.as_bytes());
}

fn topic(out: &mut Vec<u8>, key: u64) {
    let h = fh(key, T_TOPIC);
    out.extend_from_slice(pick(h, w::TOPIC_HEAD).as_bytes());
    out.extend_from_slice(pick(h >> 24, w::PRODUCT).as_bytes());
}

fn product_name(out: &mut Vec<u8>, o: u64) {
    let n = w::PRODUCT.len() as u64;
    out.extend_from_slice(w::PRODUCT[(o % n) as usize].as_bytes());
    let edition = ["", " Professional", " Enterprise", " Lite"][((o / n) % 4) as usize];
    out.extend_from_slice(edition.as_bytes());
    if o >= 4 * n {
        out.extend_from_slice(b" v");
        json::u64(out, o / (4 * n) + 1);
    }
}

fn city(c: &Ctx) -> &'static w::City {
    &w::CITIES[(fh(c.key, T_CITY) % w::CITIES.len() as u64) as usize]
}

/// Fills a postal-code shape: `9` = digit, `A` = letter.
fn postal(out: &mut Vec<u8>, shape: &str, mut h: u64) {
    for b in shape.bytes() {
        match b {
            b'9' => {
                out.push(b'0' + (h % 10) as u8);
                h /= 10;
            }
            b'A' => {
                out.push(b'A' + (h % 26) as u8);
                h /= 26;
            }
            _ => out.push(b),
        }
    }
}

/// A person's name parts.
struct Person {
    first: &'static str,
    first_slug: &'static str,
    last: &'static str,
    last_slug: &'static str,
    /// Disambiguating number for system users beyond the name combinations.
    serial: u64,
    app: bool,
}

impl Person {
    fn full(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.first.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.last.as_bytes());
    }
}

/// Names of row `o` of a people table. System users get distinct names (they map to ERP
/// employees by email); user 0 is the application user of the sandbox's app registration.
fn person(seed: u64, set: Set, o: u64) -> Person {
    let nf = w::FIRST.len() as u64;
    let nl = w::LAST.len() as u64;
    let (fi, li, serial) = if set == Set::SystemUsers {
        let (fi, li, serial) = w::staff(o.saturating_sub(1));
        (fi as u64, li as u64, serial)
    } else {
        let h = fh(row_key(seed, set.code(), o), T_PERSON);
        (h % nf, (h >> 24) % nl, 0)
    };
    let app = set == Set::SystemUsers && o == 0;
    let (first, first_slug) = if app {
        ("#", "")
    } else {
        w::FIRST[fi as usize]
    };
    let (last, last_slug) = if app {
        ("mlc-sandbox", "mlc-sandbox")
    } else {
        w::LAST[li as usize]
    };
    Person {
        first,
        first_slug,
        last,
        last_slug,
        serial,
        app,
    }
}

fn person_email(out: &mut Vec<u8>, c: &Ctx) {
    let p = person(c.seed, c.set, c.row.ordinal);
    if p.app {
        out.extend_from_slice(b"mlc-sandbox@mlcsandbox.onmicrosoft.com");
        return;
    }
    out.extend_from_slice(p.first_slug.as_bytes());
    out.push(b'.');
    out.extend_from_slice(p.last_slug.as_bytes());
    if p.serial > 0 {
        json::u64(out, p.serial);
    }
    out.push(b'@');
    match c.set {
        Set::SystemUsers => out.extend_from_slice(b"mlcsandbox.onmicrosoft.com"),
        Set::Leads => company_domain(out, c.key),
        _ => match customer(c, 5, 5) {
            Some((Set::Accounts, a)) => {
                company_domain(out, row_key(c.seed, Set::Accounts.code(), a))
            }
            _ => out.extend_from_slice(pick(c.h(T_PERSON), w::FREEMAIL).as_bytes()),
        },
    }
}

/// The display name of a row (the FormattedValue of lookups pointing at it).
fn display_name(out: &mut Vec<u8>, seed: u64, set: Set, o: u64) {
    let key = row_key(seed, set.code(), o);
    match set {
        Set::Accounts => company_name(out, key),
        Set::Contacts | Set::Leads | Set::SystemUsers => person(seed, set, o).full(out),
        Set::Opportunities | Set::Quotes | Set::SalesOrders | Set::Invoices => topic(out, key),
        Set::Products => product_name(out, o),
    }
}

/// A valid (statecode, statuscode) pair for a row of `set`.
pub fn state_status(set: Set, h: u64) -> (i64, i64) {
    let roll = (h >> 7) % 100;
    let sub = (h >> 29) as i64;
    match set {
        Set::Accounts | Set::Contacts | Set::SystemUsers => {
            if roll < 90 {
                (0, 1)
            } else {
                (1, 2)
            }
        }
        Set::Leads => match roll {
            0..55 => (0, 1 + sub % 2),
            55..80 => (1, 3),
            _ => (2, 4 + sub % 4),
        },
        Set::Opportunities => match roll {
            0..60 => (0, 1 + sub % 2),
            60..85 => (1, 3),
            _ => (2, 4 + sub % 2),
        },
        Set::Quotes => match roll {
            0..20 => (0, 1),
            20..50 => (1, 2 + sub % 2),
            50..80 => (2, 4),
            _ => (3, 5 + sub % 3),
        },
        Set::SalesOrders => match roll {
            0..30 => (0, 1 + sub % 2),
            30..45 => (1, 3),
            45..55 => (2, 4),
            55..80 => (3, 100_001 + sub % 2),
            _ => (4, 100_003),
        },
        Set::Invoices => match roll {
            0..50 => (0, [1, 2, 4, 5, 6][(sub % 5) as usize]),
            50..90 => (2, 100_001 + sub % 2),
            _ => (3, 100_003),
        },
        Set::Products => match roll {
            0..80 => (0, 1),
            80..90 => (1, 2),
            90..95 => (2, 0),
            _ => (3, 3),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::entities::ALL;
    use super::super::options::Tenant;
    use super::super::store::Org;
    use super::*;

    fn render(ent: &Entity, dims: &Dims, row: &RowRef, names: &[&str]) -> serde_json::Value {
        let sel: Vec<usize> = names.iter().filter_map(|n| ent.field(n)).collect();
        let mut out = Vec::new();
        write_row(
            &mut out,
            ent,
            &Ctx::new(7, ent.set, row, dims),
            &sel,
            Ann::default(),
        );
        serde_json::from_slice(&out).unwrap()
    }

    /// `createdby` never changes; `modifiedby` is the creator until the first update.
    #[test]
    fn creator_is_stable_and_first_modifier() {
        let mut org = Org::new(200, 7);
        let dims = Dims {
            initial: ALL.map(|s| s.initial_rows(200)),
        };
        let ent =
            crate::sandbox::dataverse::schema::entity(Set::Accounts, Tenant::Standard).unwrap();
        let names = [
            "_createdby_value",
            "_modifiedby_value",
            "address1_composite",
        ];
        let (before, _) = org.table(Set::Accounts).scan(0, 1000, |_| true);
        for r in &before {
            let v = render(&ent, &dims, r, &names);
            assert_eq!(v["_createdby_value"], v["_modifiedby_value"]);
            let composite = v["address1_composite"].as_str().unwrap();
            assert_eq!(
                composite.matches("\r\n").count() + 1,
                composite.lines().count()
            );
        }
        org.mutate();
        let (after, _) = org.table(Set::Accounts).scan(0, 1000, |_| true);
        let mut changed = 0;
        for a in &after {
            let Some(b) = before.iter().find(|b| b.ordinal == a.ordinal) else {
                continue;
            };
            let (va, vb) = (
                render(&ent, &dims, a, &names),
                render(&ent, &dims, b, &names),
            );
            assert_eq!(va["_createdby_value"], vb["_createdby_value"]);
            assert_eq!(va["address1_composite"], vb["address1_composite"]);
            if va["_modifiedby_value"] != vb["_modifiedby_value"] {
                changed += 1;
            }
        }
        assert!(changed > 0, "updates change the last modifier");
    }
}

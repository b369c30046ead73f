//! OData request parsing and link building for the Dataverse fake: query options, `Prefer`,
//! `$select` / `$filter` / `$orderby`, the paging cookie inside `$skiptoken` and the
//! `$deltatoken` format, with the percent-encoding quirks of the real service.

use axum::http::HeaderMap;
use url::form_urlencoded;

use super::entities::Entity;
use super::json;
use super::store::{DeltaPhase, EPOCH, RowRef};
use super::values::Ann;

/// A rejected request: HTTP status, Dataverse error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Reject {
    pub fn bad(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            code: "0x80060888",
            message: message.into(),
        }
    }
}

/// One query parameter: the raw `k=v` text (to rebuild links verbatim) and its decoded parts.
#[derive(Debug, Clone)]
pub struct Param {
    pub raw: String,
    pub key: String,
    pub value: String,
}

/// Splits a raw query string into parameters, keeping the original text of each.
pub fn parse_query(raw: Option<&str>) -> Vec<Param> {
    let Some(raw) = raw else { return Vec::new() };
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = form_urlencoded::parse(p.as_bytes())
                .next()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .unwrap_or_default();
            Param {
                raw: p.to_string(),
                key: k,
                value: v,
            }
        })
        .collect()
}

/// The decoded value of `key` (last one wins).
pub fn get<'a>(params: &'a [Param], key: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|p| p.key == key)
        .map(|p| p.value.as_str())
}

/// Rebuilds `path?query` without the parameters named in `drop`, keeping the others' raw text.
pub fn link_without(root: &str, path: &str, params: &[Param], drop: &[&str]) -> String {
    let kept: Vec<&str> = params
        .iter()
        .filter(|p| !drop.contains(&p.key.as_str()))
        .map(|p| p.raw.as_str())
        .collect();
    let mut s = format!("{root}{path}");
    if !kept.is_empty() {
        s.push('?');
        s.push_str(&kept.join("&"));
    }
    s
}

/// Appends `name=value` to a link, percent-encoding `value` with `upper`-case hex.
pub fn append_param(link: &mut String, name: &str, value: &str, upper: bool) {
    link.push(if link.contains('?') { '&' } else { '?' });
    link.push_str(name);
    link.push('=');
    encode_into(link, value, upper, b"-_.~=");
}

fn encode_into(out: &mut String, s: &str, upper: bool, keep: &[u8]) {
    let hex: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(hex[(b >> 4) as usize] as char);
            out.push(hex[(b & 15) as usize] as char);
        }
    }
}

fn decode(s: &str) -> String {
    // form_urlencoded would turn '+' into ' '; cookies never contain '+'.
    form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The preferences of a request (`Prefer` may be comma-joined or repeated).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prefer {
    pub maxpagesize: Option<u32>,
    /// The raw list of `odata.include-annotations`, without quotes.
    pub annotations: Option<String>,
    pub track_changes: bool,
}

impl Prefer {
    pub fn from_headers(headers: &HeaderMap) -> Prefer {
        let mut p = Prefer::default();
        for v in headers.get_all("prefer") {
            let Ok(v) = v.to_str() else { continue };
            for item in split_outside_quotes(v) {
                let item = item.trim();
                let (name, value) = match item.split_once('=') {
                    Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                    None => (item, None),
                };
                match name.to_ascii_lowercase().as_str() {
                    "odata.maxpagesize" => {
                        p.maxpagesize = value.and_then(|v| v.parse().ok()).or(p.maxpagesize)
                    }
                    "odata.include-annotations" => p.annotations = value.map(str::to_string),
                    "odata.track-changes" => p.track_changes = true,
                    _ => {}
                }
            }
        }
        p
    }

    /// Which annotations to emit.
    pub fn ann(&self) -> Ann {
        let mut a = Ann::default();
        let Some(list) = &self.annotations else {
            return a;
        };
        for item in list.split(',').map(str::trim) {
            match item {
                "*" => {
                    a.logical = true;
                    a.nav = true;
                    a.formatted = true;
                }
                "Microsoft.Dynamics.CRM.*" => {
                    a.logical = true;
                    a.nav = true;
                }
                "Microsoft.Dynamics.CRM.lookuplogicalname" => a.logical = true,
                "Microsoft.Dynamics.CRM.associatednavigationproperty" => a.nav = true,
                "OData.Community.Display.V1.*" | "OData.Community.Display.V1.FormattedValue" => {
                    a.formatted = true
                }
                _ => {}
            }
        }
        a
    }
}

fn split_outside_quotes(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// The fields a request selects (indexes into the entity's fields, catalog order) and the
/// `$select` text for `@odata.context`.
pub fn select(ent: &Entity, param: Option<&str>) -> Result<(Vec<usize>, Option<String>), Reject> {
    let Some(list) = param.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(((0..ent.fields.len()).collect(), None));
    };
    let mut want = vec![false; ent.fields.len()];
    want[ent.pk] = true;
    let mut names = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let i = ent.field(name).ok_or_else(|| unknown_property(ent, name))?;
        want[i] = true;
        names.push(name);
    }
    let idx = (0..ent.fields.len()).filter(|&i| want[i]).collect();
    Ok((idx, Some(names.join(","))))
}

/// Dataverse's message for a property the entity does not have.
pub fn unknown_property(ent: &Entity, name: &str) -> Reject {
    Reject::bad(format!(
        "Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{}'.",
        ent.set.logical()
    ))
}

/// A comparison the sandbox evaluates in `$filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cond {
    field: Facet,
    op: Op,
    value: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Facet {
    /// `modifiedon`, seconds since the Unix epoch.
    Modified,
    /// `createdon`, seconds since the Unix epoch.
    Created,
    /// `versionnumber`.
    Version,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A conjunction of comparisons on `modifiedon`, `createdon` or `versionnumber`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter(Vec<Cond>);

impl Filter {
    /// Parses `modifiedon ge 2024-01-01T00:00:00Z and modifiedon lt 2024-02-01T00:00:00Z`.
    pub fn parse(ent: &Entity, text: &str) -> Result<Filter, Reject> {
        let tokens: Vec<&str> = text
            .split_whitespace()
            .map(|t| t.trim_matches(|c| c == '(' || c == ')'))
            .filter(|t| !t.is_empty())
            .collect();
        let mut conds = Vec::new();
        let mut i = 0;
        loop {
            let (Some(f), Some(op), Some(lit)) =
                (tokens.get(i), tokens.get(i + 1), tokens.get(i + 2))
            else {
                return Err(unsupported_filter(text));
            };
            let field = match *f {
                "modifiedon" => Facet::Modified,
                "createdon" => Facet::Created,
                "versionnumber" => Facet::Version,
                other if ent.field(other).is_none() => return Err(unknown_property(ent, other)),
                _ => return Err(unsupported_filter(text)),
            };
            let op = match op.to_ascii_lowercase().as_str() {
                "eq" => Op::Eq,
                "ne" => Op::Ne,
                "gt" => Op::Gt,
                "ge" => Op::Ge,
                "lt" => Op::Lt,
                "le" => Op::Le,
                _ => return Err(unsupported_filter(text)),
            };
            let value = match field {
                Facet::Version => lit.parse::<i64>().map_err(|_| unsupported_filter(text))?,
                _ => parse_datetime(lit).ok_or_else(|| {
                    Reject::bad(format!(
                        "The DateTimeOffset value '{lit}' is not valid in $filter (use e.g. 2024-05-01T00:00:00Z)."
                    ))
                })?,
            };
            conds.push(Cond { field, op, value });
            i += 3;
            match tokens.get(i) {
                None => break,
                Some(t) if t.eq_ignore_ascii_case("and") => i += 1,
                Some(_) => return Err(unsupported_filter(text)),
            }
        }
        Ok(Filter(conds))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a row passes every comparison.
    #[inline]
    pub fn keep(&self, r: &RowRef) -> bool {
        self.0.iter().all(|c| {
            let v = match c.field {
                Facet::Modified => r.modified_secs(),
                Facet::Created => r.created_secs,
                Facet::Version => r.state.version as i64,
            };
            match c.op {
                Op::Eq => v == c.value,
                Op::Ne => v != c.value,
                Op::Gt => v > c.value,
                Op::Ge => v >= c.value,
                Op::Lt => v < c.value,
                Op::Le => v <= c.value,
            }
        })
    }
}

fn unsupported_filter(text: &str) -> Reject {
    Reject::bad(format!(
        "The sandbox evaluates only comparisons (eq ne gt ge lt le) on modifiedon, createdon or versionnumber joined by 'and'; cannot evaluate $filter '{text}'."
    ))
}

/// Seconds since the Unix epoch of an OData DateTimeOffset or date literal.
fn parse_datetime(s: &str) -> Option<i64> {
    let s = s.trim_matches('\'');
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp());
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp())
}

/// Row order of a non-tracking read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Key,
    Version,
}

/// Parses `$orderby`: the primary key or `modifiedon` / `versionnumber`, ascending.
pub fn order(ent: &Entity, text: Option<&str>) -> Result<Order, Reject> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(Order::Key);
    };
    let pk = ent.fields[ent.pk].name.as_str();
    let mut items = Vec::new();
    for item in text.split(',') {
        let mut parts = item.split_whitespace();
        let name = parts.next().unwrap_or("");
        let dir = parts.next().unwrap_or("asc");
        if ent.field(name).is_none() {
            return Err(unknown_property(ent, name));
        }
        if !dir.eq_ignore_ascii_case("asc") {
            return Err(unsupported_order(text));
        }
        items.push(name);
    }
    match items.as_slice() {
        [k] if *k == pk => Ok(Order::Key),
        [m] | [m, _]
            if (*m == "modifiedon" || *m == "versionnumber")
                && items.get(1).is_none_or(|k| *k == pk) =>
        {
            Ok(Order::Version)
        }
        _ => Err(unsupported_order(text)),
    }
}

fn unsupported_order(text: &str) -> Reject {
    Reject::bad(format!(
        "The sandbox orders only by the primary key or by modifiedon / versionnumber ascending; cannot apply $orderby '{text}'."
    ))
}

/// The paging cookie carried by `$skiptoken`, with the sandbox's own extra attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cookie {
    pub page: u32,
    /// Ordinals of the first and last row of the previous page.
    pub first: Option<u64>,
    pub last: Option<u64>,
    pub tracking: bool,
    /// Tracking snapshot: the org version when it started.
    pub version: Option<u64>,
    /// `$orderby=modifiedon`: version of the last row served.
    pub last_version: Option<u64>,
    /// Delta paging: phase, log position and upper version bound.
    pub delta: Option<(DeltaPhase, usize, u64)>,
}

impl Cookie {
    /// Renders the cookie as Dataverse does (the inner `pagingcookie` is percent-encoded once
    /// more with lower-case hex); the caller URL-encodes the whole for `$skiptoken`.
    pub fn render(&self, pk: &str, set_code: u32) -> String {
        let guid = |o: u64| {
            let mut v = Vec::new();
            v.push(b'{');
            json::guid_bare(&mut v, set_code, o);
            v.push(b'}');
            String::from_utf8(v)
                .unwrap_or_default()
                .to_ascii_uppercase()
        };
        let mut inner = format!("<cookie page=\"{}\">", self.page.saturating_sub(1).max(1));
        if let (Some(l), Some(f)) = (self.last, self.first) {
            inner.push_str(&format!(
                "<{pk} last=\"{}\" first=\"{}\" />",
                guid(l),
                guid(f)
            ));
        }
        inner.push_str("</cookie>");
        let mut enc = String::new();
        encode_into(&mut enc, &inner, false, b"-_.");
        let mut s = format!(
            "<cookie pagenumber=\"{}\" pagingcookie=\"{enc}\" istracking=\"{}\"",
            self.page,
            if self.tracking { "True" } else { "False" }
        );
        if let Some(v) = self.version {
            s.push_str(&format!(" version=\"{v}\""));
        }
        if let Some(v) = self.last_version {
            s.push_str(&format!(" lastversion=\"{v}\""));
        }
        if let Some((phase, pos, upto)) = self.delta {
            let ph = match phase {
                DeltaPhase::Upserts => "upserts",
                DeltaPhase::Deletes => "deletes",
            };
            s.push_str(&format!(
                " deltaphase=\"{ph}\" logpos=\"{pos}\" upto=\"{upto}\""
            ));
        }
        s.push_str(" />");
        s
    }

    /// Parses a (once-decoded) `$skiptoken`; `None` when it is not a cookie of this set.
    pub fn parse(s: &str, set_code: u32) -> Option<Cookie> {
        let s = s.trim();
        if !s.starts_with("<cookie") {
            return None;
        }
        let attr = |name: &str| -> Option<String> {
            let pat = format!(" {name}=\"");
            let start = s.find(&pat)? + pat.len();
            let end = s[start..].find('"')? + start;
            Some(s[start..end].to_string())
        };
        let mut c = Cookie {
            page: attr("pagenumber")?.parse().ok()?,
            tracking: attr("istracking").is_some_and(|v| v.eq_ignore_ascii_case("true")),
            version: attr("version").and_then(|v| v.parse().ok()),
            last_version: attr("lastversion").and_then(|v| v.parse().ok()),
            ..Default::default()
        };
        if let Some(inner) = attr("pagingcookie") {
            let inner = decode(&inner);
            let inner_attr = |name: &str| -> Option<u64> {
                let pat = format!(" {name}=\"");
                let start = inner.find(&pat)? + pat.len();
                let end = inner[start..].find('"')? + start;
                let (set, ord) = json::parse_guid(&inner[start..end])?;
                (set == set_code).then_some(ord)
            };
            c.last = inner_attr("last");
            c.first = inner_attr("first");
        }
        if let Some(ph) = attr("deltaphase") {
            let phase = match ph.as_str() {
                "upserts" => DeltaPhase::Upserts,
                "deletes" => DeltaPhase::Deletes,
                _ => return None,
            };
            let pos = attr("logpos")?.parse().ok()?;
            let upto = attr("upto")?.parse().ok()?;
            c.delta = Some((phase, pos, upto));
        }
        Some(c)
    }
}

/// `$deltatoken` text: `<version>!<MM/dd/yyyy HH:mm:ss>` (the time is the logical clock).
pub fn delta_token(version: u64) -> String {
    let secs = EPOCH + version as i64;
    let (y, m, d) = json::civil(secs.div_euclid(86_400));
    let r = secs.rem_euclid(86_400);
    format!(
        "{version}!{m:02}/{d:02}/{y:04} {:02}:{:02}:{:02}",
        r / 3600,
        r / 60 % 60,
        r % 60
    )
}

/// The version inside a `$deltatoken`, `None` when malformed.
pub fn parse_delta_token(s: &str) -> Option<u64> {
    let (v, when) = s.trim().split_once('!')?;
    let b = when.as_bytes();
    let shape_ok = b.len() == 19
        && b[2] == b'/'
        && b[5] == b'/'
        && b[10] == b' '
        && b[13] == b':'
        && b[16] == b':';
    if !shape_ok {
        return None;
    }
    v.parse().ok()
}

/// Appends `$deltatoken=` with Dataverse's lower-case encoding (`1204577%2105%2f02%2f2024…`).
pub fn append_delta_token(link: &mut String, version: u64) {
    link.push(if link.contains('?') { '&' } else { '?' });
    link.push_str("$deltatoken=");
    encode_into(link, &delta_token(version), false, b"-_.~");
}

#[cfg(test)]
mod tests {
    use super::super::entities::Set;
    use super::super::options::Tenant;
    use super::*;

    #[test]
    fn cookie_round_trips_through_a_link() {
        let c = Cookie {
            page: 2,
            first: Some(0),
            last: Some(4999),
            tracking: true,
            version: Some(77),
            last_version: None,
            delta: Some((DeltaPhase::Deletes, 12, 99)),
        };
        let text = c.render("accountid", 1);
        assert!(text.starts_with("<cookie pagenumber=\"2\" pagingcookie=\"%3ccookie%20page%3d%221%22%3e%3caccountid%20last%3d%22%7b00000001-0000-4000-8000-000000001387%7d%22"), "{text}");
        let mut link = "http://x/accounts?$select=name".to_string();
        append_param(&mut link, "$skiptoken", &text, true);
        let params = parse_query(link.split_once('?').map(|(_, q)| q));
        let back = Cookie::parse(get(&params, "$skiptoken").unwrap(), 1).unwrap();
        assert_eq!(back, c);
        assert_eq!(get(&params, "$select"), Some("name"));
        assert!(
            Cookie::parse(get(&params, "$skiptoken").unwrap(), 2)
                .unwrap()
                .last
                .is_none()
        );
    }

    #[test]
    fn delta_tokens() {
        let t = delta_token(3661);
        assert_eq!(t, "3661!01/01/2024 01:01:01");
        assert_eq!(parse_delta_token(&t), Some(3661));
        assert_eq!(parse_delta_token("garbage"), None);
        assert_eq!(parse_delta_token("12!yesterday"), None);
        let mut l = "http://x/accounts".to_string();
        append_delta_token(&mut l, 3661);
        assert_eq!(
            l,
            "http://x/accounts?$deltatoken=3661%2101%2f01%2f2024%2001%3a01%3a01"
        );
        let params = parse_query(l.split_once('?').map(|(_, q)| q));
        assert_eq!(get(&params, "$deltatoken"), Some(t.as_str()));
    }

    #[test]
    fn prefer_parsing() {
        let mut h = HeaderMap::new();
        h.append(
            "prefer",
            "odata.maxpagesize=10, odata.include-annotations=\"OData.Community.Display.V1.FormattedValue,Microsoft.Dynamics.CRM.lookuplogicalname\""
                .parse()
                .unwrap(),
        );
        h.append("prefer", "odata.track-changes".parse().unwrap());
        let p = Prefer::from_headers(&h);
        assert_eq!(p.maxpagesize, Some(10));
        assert!(p.track_changes);
        let a = p.ann();
        assert!(a.logical && a.formatted && !a.nav);
    }

    #[test]
    fn select_filter_order() {
        let e = crate::sandbox::dataverse::schema::entity(Set::Accounts, Tenant::Standard).unwrap();
        let (idx, ctx) = select(&e, Some("name,revenue")).unwrap();
        assert_eq!(idx.len(), 3);
        assert_eq!(ctx.as_deref(), Some("name,revenue"));
        let err = select(&e, Some("name,nope")).unwrap_err();
        assert_eq!(
            err.message,
            "Could not find a property named 'nope' on type 'Microsoft.Dynamics.CRM.account'."
        );
        let f = Filter::parse(
            &e,
            "modifiedon ge 2024-01-01T00:00:10Z and modifiedon lt 2024-01-01T00:00:20Z",
        )
        .unwrap();
        assert_eq!(f.0.len(), 2);
        assert!(Filter::parse(&e, "name eq 'x'").is_err());
        assert!(
            Filter::parse(&e, "bogus eq 1")
                .unwrap_err()
                .message
                .contains("bogus")
        );
        assert_eq!(
            order(&e, Some("modifiedon asc,accountid asc")).unwrap(),
            Order::Version
        );
        assert_eq!(order(&e, Some("accountid")).unwrap(), Order::Key);
        assert!(order(&e, Some("name desc")).is_err());
    }
}

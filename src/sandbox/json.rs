//! Hand-written JSON output primitives (integers, money, dates, GUIDs) that append straight to
//! a byte buffer: pages are rendered without building any `serde_json::Value`.

const DIGITS2: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends the decimal digits of `v`.
#[inline]
pub fn u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    while v >= 100 {
        let r = (v % 100) as usize * 2;
        v /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&DIGITS2[r..r + 2]);
    }
    if v >= 10 {
        let r = v as usize * 2;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&DIGITS2[r..r + 2]);
    } else {
        i -= 1;
        buf[i] = b'0' + v as u8;
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends a signed integer.
#[inline]
pub fn i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    u64(out, v.unsigned_abs());
}

/// Appends `v` zero-padded to two digits (`v < 100`).
#[inline]
fn two(out: &mut Vec<u8>, v: u32) {
    let r = (v % 100) as usize * 2;
    out.extend_from_slice(&DIGITS2[r..r + 2]);
}

/// Appends a fixed-point number with `scale` decimals given as an integer (`v / 10^scale`),
/// trailing zeros trimmed but at least one decimal kept: `48000.0`, `1234.5678`, `-0.25`.
#[inline]
pub fn fixed(out: &mut Vec<u8>, v: i64, scale: u32) {
    let pow = 10u64.pow(scale);
    if v < 0 {
        out.push(b'-');
    }
    let a = v.unsigned_abs();
    u64(out, a / pow);
    out.push(b'.');
    let mut frac = a % pow;
    if frac == 0 {
        out.push(b'0');
        return;
    }
    let mut digits = scale;
    while frac.is_multiple_of(10) {
        frac /= 10;
        digits -= 1;
    }
    let start = out.len();
    for _ in 0..digits {
        out.push(b'0');
    }
    let mut i = out.len();
    while frac > 0 {
        i -= 1;
        out[i] = b'0' + (frac % 10) as u8;
        frac /= 10;
    }
    debug_assert!(i >= start);
}

/// Days since 1970-01-01 to (year, month, day) — Howard Hinnant's `civil_from_days`.
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe as i64 + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) to days since 1970-01-01 (inverse of [`civil`]).
#[cfg(test)]
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = (y - era * 400) as u64;
    let mp = if m > 2 { m - 3 } else { m + 9 } as u64;
    let doy = (153 * mp + 2) / 5 + d as u64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe as i64 - 719_468
}

/// Appends `YYYY-MM-DD` (no quotes).
#[inline]
pub fn date_bare(out: &mut Vec<u8>, days: i64) {
    let (y, m, d) = civil(days);
    let y = y.clamp(0, 9999) as u32;
    two(out, y / 100);
    two(out, y % 100);
    out.push(b'-');
    two(out, m);
    out.push(b'-');
    two(out, d);
}

/// Appends a quoted `"YYYY-MM-DD"`.
#[inline]
pub fn date(out: &mut Vec<u8>, days: i64) {
    out.push(b'"');
    date_bare(out, days);
    out.push(b'"');
}

/// Appends `YYYY-MM-DDThh:mm:ssZ` (no quotes) for seconds since the Unix epoch.
#[inline]
pub fn timestamp_bare(out: &mut Vec<u8>, secs: i64) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    date_bare(out, days);
    out.push(b'T');
    two(out, rem / 3600);
    out.push(b':');
    two(out, rem / 60 % 60);
    out.push(b':');
    two(out, rem % 60);
    out.push(b'Z');
}

/// Appends a quoted `"YYYY-MM-DDThh:mm:ssZ"`.
#[inline]
pub fn timestamp(out: &mut Vec<u8>, secs: i64) {
    out.push(b'"');
    timestamp_bare(out, secs);
    out.push(b'"');
}

#[inline]
fn hex(out: &mut Vec<u8>, v: u64, digits: u32) {
    for i in (0..digits).rev() {
        out.push(HEX[((v >> (i * 4)) & 0xf) as usize]);
    }
}

/// Appends the (unquoted) sandbox GUID of row `ordinal` of entity set `set`:
/// `{set:08x}-0000-4000-8000-{ordinal:012x}`. Fixed width, so string order is ordinal order.
#[inline]
pub fn guid_bare(out: &mut Vec<u8>, set: u32, ordinal: u64) {
    hex(out, set as u64, 8);
    out.extend_from_slice(b"-0000-4000-8000-");
    hex(out, ordinal, 12);
}

/// Appends a quoted sandbox GUID.
#[inline]
pub fn guid(out: &mut Vec<u8>, set: u32, ordinal: u64) {
    out.push(b'"');
    guid_bare(out, set, ordinal);
    out.push(b'"');
}

/// Appends a quoted random-looking version-4 GUID built from 128 hash bits.
pub fn guid_from_bits(out: &mut Vec<u8>, hi: u64, lo: u64) {
    out.push(b'"');
    hex(out, hi >> 32, 8);
    out.push(b'-');
    hex(out, (hi >> 16) & 0xffff, 4);
    out.push(b'-');
    hex(out, 0x4000 | (hi & 0x0fff), 4);
    out.push(b'-');
    hex(out, 0x8000 | ((lo >> 48) & 0x3fff), 4);
    out.push(b'-');
    hex(out, lo & 0xffff_ffff_ffff, 12);
    out.push(b'"');
}

/// The sandbox GUID of a row as a `String`.
pub fn guid_string(set: u32, ordinal: u64) -> String {
    let mut v = Vec::with_capacity(36);
    guid_bare(&mut v, set, ordinal);
    String::from_utf8(v).unwrap_or_default()
}

/// Parses a sandbox GUID back into (set, ordinal); braces and upper case are accepted.
pub fn parse_guid(s: &str) -> Option<(u32, u64)> {
    let s = s.trim().trim_start_matches('{').trim_end_matches('}');
    if s.len() != 36 || !s.is_ascii() {
        return None;
    }
    let middle = &s[8..24];
    if !middle.eq_ignore_ascii_case("-0000-4000-8000-") {
        return None;
    }
    let set = u32::from_str_radix(&s[..8], 16).ok()?;
    let ordinal = u64::from_str_radix(&s[24..], 16).ok()?;
    Some((set, ordinal))
}

/// Appends a JSON string literal, escaping what JSON requires. For text that may come from a
/// request; generated text is JSON-safe by construction and written raw.
pub fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => {
                out.extend_from_slice(b"\\u00");
                hex(out, b as u64, 2);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// Appends `$1,234,567.89` (the FormattedValue of a money amount given in 1/10000 units).
pub fn money_label(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    let a = v.unsigned_abs();
    let cents = (a + 50) / 100;
    out.push(b'$');
    let whole = cents / 100;
    let mut digits = Vec::with_capacity(20);
    u64(&mut digits, whole);
    for (i, d) in digits.iter().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(b',');
        }
        out.push(*d);
    }
    out.push(b'.');
    two(out, (cents % 100) as u32);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn numbers() {
        assert_eq!(s(|o| u64(o, 0)), "0");
        assert_eq!(s(|o| u64(o, 7)), "7");
        assert_eq!(s(|o| u64(o, 1234567890)), "1234567890");
        assert_eq!(s(|o| u64(o, u64::MAX)), u64::MAX.to_string());
        assert_eq!(s(|o| i64(o, -42)), "-42");
        assert_eq!(s(|o| fixed(o, 480_000_000, 4)), "48000.0");
        assert_eq!(s(|o| fixed(o, 12_345_678, 4)), "1234.5678");
        assert_eq!(s(|o| fixed(o, 12_345_000, 4)), "1234.5");
        assert_eq!(s(|o| fixed(o, 12_340_500, 4)), "1234.05");
        assert_eq!(s(|o| fixed(o, -2_500, 4)), "-0.25");
        assert_eq!(s(|o| fixed(o, 47_606_209, 6)), "47.606209");
        assert_eq!(s(|o| money_label(o, 12_345_678_900)), "$1,234,567.89");
        assert_eq!(s(|o| money_label(o, 5_000)), "$0.50");
    }

    #[test]
    fn dates_round_trip() {
        for d in [-1000i64, 0, 59, 60, 10_957, 19_723, 20_000, 40_000] {
            let (y, m, dd) = civil(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        assert_eq!(s(|o| date(o, 19_723)), "\"2024-01-01\"");
        assert_eq!(
            s(|o| timestamp(o, 1_704_067_200 + 3661)),
            "\"2024-01-01T01:01:01Z\""
        );
    }

    #[test]
    fn guids() {
        let g = guid_string(1, 255);
        assert_eq!(g, "00000001-0000-4000-8000-0000000000ff");
        assert_eq!(parse_guid(&g), Some((1, 255)));
        assert_eq!(
            parse_guid("{00000001-0000-4000-8000-0000000000FF}"),
            Some((1, 255))
        );
        assert_eq!(parse_guid("nonsense"), None);
        assert!(guid_string(1, 9) < guid_string(1, 10));
        let r = s(|o| guid_from_bits(o, u64::MAX, 0));
        assert_eq!(r.len(), 38);
    }
}

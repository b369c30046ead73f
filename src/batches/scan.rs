//! A fast scanner of one JSON object's top-level members: key bytes and the byte range of each
//! value, without decoding values or building anything. It finds what the Arrow decoder cannot
//! tell us (tombstones, untyped fields, json columns) at memchr speed. It delimits values but does
//! not validate them: the decoder validates the typed values it reads, the caller the values it
//! keeps as text, so a malformed record still ends in the quarantine with a reason, never in a
//! panic. Annotations nobody reads are skipped unvalidated (the page's envelope parser has
//! already checked the page is JSON).

use std::ops::Range;

/// One top-level member of an object.
#[derive(Debug, Clone, PartialEq)]
pub struct Member<'a> {
    /// The key's raw bytes between the quotes (escape sequences not resolved).
    pub key: &'a [u8],
    /// Whether `key` contains a backslash escape.
    pub escaped: bool,
    /// The value's byte range in the record.
    pub value: Range<usize>,
}

/// Calls `f` for every top-level member of the JSON object `rec`. Fails on anything that is not
/// a single well-delimited object (the message says where).
pub fn members<'a>(
    rec: &'a [u8],
    mut f: impl FnMut(Member<'a>) -> Result<(), String>,
) -> Result<(), String> {
    let mut i = skip_ws(rec, 0);
    if rec.get(i) != Some(&b'{') {
        return Err("not a JSON object".into());
    }
    i = skip_ws(rec, i + 1);
    if rec.get(i) == Some(&b'}') {
        return end(rec, i + 1);
    }
    loop {
        if rec.get(i) != Some(&b'"') {
            return Err(format!("expected a key at byte {i}"));
        }
        let (close, escaped) = string_end(rec, i + 1)?;
        let key = &rec[i + 1..close];
        i = skip_ws(rec, close + 1);
        if rec.get(i) != Some(&b':') {
            return Err(format!("expected `:` after a key at byte {i}"));
        }
        i = skip_ws(rec, i + 1);
        let start = i;
        i = skip_value(rec, i)?;
        f(Member {
            key,
            escaped,
            value: start..i,
        })?;
        i = skip_ws(rec, i);
        match rec.get(i) {
            Some(b',') => i = skip_ws(rec, i + 1),
            Some(b'}') => return end(rec, i + 1),
            Some(_) => return Err(format!("expected `,` or `}}` at byte {i}")),
            None => return Err("the record is incomplete (truncated JSON)".into()),
        }
    }
}

fn end(rec: &[u8], i: usize) -> Result<(), String> {
    if skip_ws(rec, i) == rec.len() {
        Ok(())
    } else {
        Err(format!("unexpected bytes after the record at byte {i}"))
    }
}

#[inline]
fn skip_ws(rec: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = rec.get(i) {
        i += 1;
    }
    i
}

/// Index of the closing quote of a string whose content starts at `i`, and whether it holds
/// escapes.
#[inline]
fn string_end(rec: &[u8], mut i: usize) -> Result<(usize, bool), String> {
    let mut escaped = false;
    loop {
        match memchr::memchr2(b'"', b'\\', &rec[i.min(rec.len())..]) {
            Some(off) if rec[i + off] == b'"' => return Ok((i + off, escaped)),
            Some(off) => {
                escaped = true;
                i += off + 2;
            }
            None => return Err("the record is incomplete (unterminated string)".into()),
        }
    }
}

/// The index just past the value starting at `i`.
fn skip_value(rec: &[u8], i: usize) -> Result<usize, String> {
    match rec.get(i) {
        Some(b'"') => Ok(string_end(rec, i + 1)?.0 + 1),
        Some(b'{' | b'[') => skip_nested(rec, i),
        Some(_) => {
            let mut j = i;
            while let Some(b) = rec.get(j) {
                if matches!(b, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t') {
                    break;
                }
                j += 1;
            }
            if j == i {
                Err(format!("expected a value at byte {i}"))
            } else {
                Ok(j)
            }
        }
        None => Err("the record is incomplete (truncated JSON)".into()),
    }
}

/// Skips a nested object or array, honouring strings.
fn skip_nested(rec: &[u8], mut i: usize) -> Result<usize, String> {
    let mut depth = 0usize;
    while let Some(&b) = rec.get(i) {
        match b {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i + 1);
                }
            }
            b'"' => i = string_end(rec, i + 1)?.0,
            _ => {}
        }
        i += 1;
    }
    Err("the record is incomplete (unclosed object or array)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(rec: &str) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        members(rec.as_bytes(), |m| {
            out.push((
                String::from_utf8(m.key.to_vec()).unwrap(),
                rec[m.value].to_string(),
            ));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn finds_members_and_value_spans() {
        let got =
            collect(r#" { "a" : 1, "b":"x\"}", "c":{"d":[1,{"e":"]"}]}, "n":null,"t":true } "#)
                .unwrap();
        assert_eq!(
            got,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), r#""x\"}""#.into()),
                ("c".into(), r#"{"d":[1,{"e":"]"}]}"#.into()),
                ("n".into(), "null".into()),
                ("t".into(), "true".into()),
            ]
        );
        assert_eq!(collect("{}").unwrap(), vec![]);
    }

    #[test]
    fn malformed_records_are_errors_not_panics() {
        for bad in [
            "",
            "[1]",
            "{",
            r#"{"a""#,
            r#"{"a":"#,
            r#"{"a":1"#,
            r#"{"a":"x"#,
            r#"{"a":{"b":1}"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            r#"{"a":1}x"#,
            r#"{"a":1,}"#,
            r#"{"a":"\"#,
        ] {
            assert!(collect(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn escaped_keys_are_flagged() {
        let mut flags = Vec::new();
        members(br#"{"a\"b":1,"c":2}"#, |m| {
            flags.push(m.escaped);
            Ok(())
        })
        .unwrap();
        assert_eq!(flags, vec![true, false]);
    }
}

//! How a source system's name becomes a column name: `snake_case`, ASCII transliteration, and
//! uniqueness against the names a table already has (stable per field identity).

use std::collections::BTreeSet;

/// `wanted`, or `wanted_<6 hex of the identity's hash>` when taken (then longer suffixes until
/// free): deterministic, so two machines name a field the same way.
pub fn unique_name(wanted: &str, identity: &str, taken: &BTreeSet<String>) -> String {
    use sha2::{Digest, Sha256};
    let base = if wanted.is_empty() { "field" } else { wanted };
    if !taken.contains(base) && !base.starts_with("_ml_") {
        return base.to_string();
    }
    // A Pipedrive hash key is itself hex; anything else is hashed.
    let hex: String = if identity.len() >= 6 && identity.bytes().all(|b| b.is_ascii_hexdigit()) {
        identity.to_ascii_lowercase()
    } else {
        hex::encode(Sha256::digest(identity.as_bytes()))
    };
    for len in (6..=hex.len()).step_by(2) {
        let candidate = format!("{base}_{}", &hex[..len]);
        if !taken.contains(&candidate) {
            return candidate;
        }
    }
    format!("{base}_{hex}")
}

/// A field name as a column name: ASCII transliteration, then `snake_case` (`Région` →
/// `region`, `Отрасль` → `otrasl`, `業種` → `ye_zhong`).
pub fn column_name(name: &str) -> String {
    snake_case(&deunicode::deunicode(name))
}

/// `snake_case` of an API field or entity name (`lastModifiedDateTime` → `last_modified_date_time`,
/// `PO Number` → `po_number`); names starting with a digit get a `f_` prefix.
pub fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let chars: Vec<char> = name.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1);
            if prev.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit())
                || (prev.is_some_and(|p| p.is_ascii_uppercase())
                    && next.is_some_and(|n| n.is_ascii_lowercase()))
            {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    let out = out.trim_end_matches('_').to_string();
    match out.chars().next() {
        None => "field".into(),
        Some(c) if c.is_ascii_digit() => format!("f_{out}"),
        Some(_) => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_cases_api_names() {
        assert_eq!(
            snake_case("lastModifiedDateTime"),
            "last_modified_date_time"
        );
        assert_eq!(snake_case("PO Number"), "po_number");
        assert_eq!(snake_case("WBS1"), "wbs1");
        assert_eq!(snake_case("ClientID"), "client_id");
        assert_eq!(snake_case("EMail"), "e_mail");
        assert_eq!(snake_case("3rd party"), "f_3rd_party");
        assert_eq!(snake_case("Ünïcode!"), "n_code");
    }

    #[test]
    fn column_names_transliterate() {
        assert_eq!(column_name("Région"), "region");
        assert_eq!(column_name("Отрасль"), "otrasl");
        assert_eq!(column_name("Contract Type"), "contract_type");
        let taken: BTreeSet<String> = ["industry".to_string()].into();
        let n = unique_name(
            "industry",
            "abcdef0123456789abcdef0123456789abcdef01",
            &taken,
        );
        assert_eq!(n, "industry_abcdef");
    }
}

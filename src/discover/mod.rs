//! `mlc discover`: drafts catalog (and stream) files from a system's live metadata, so custom
//! fields are first-class and adding an entity starts from what the tenant really has.
//!
//! Each system has its own module reading its own metadata endpoint (Dataverse
//! `EntityDefinitions`, Business Central `$metadata`, Pipedrive `*Fields`, Deltek
//! `metadata/{hub}`, Looker's `json_bi` field metadata); this module holds what they share: the draft type and the TOML writer.

mod business_central;
mod dataverse;
mod deltek;
mod looker;
mod pipedrive;

use crate::config::{Connection, ConnectionSettings};
use crate::connect::Endpoint;
use crate::error::Result;
use crate::spec::{CatalogFile, Definitions};

/// A drafted definition for one entity.
#[derive(Debug, Clone)]
pub struct Draft {
    /// Stream entity name (`snake_case`, singular).
    pub entity: String,
    /// The stream file to write when the stream does not exist yet (`None`: keep the existing
    /// one).
    pub stream_toml: Option<String>,
    pub catalog: CatalogFile,
}

/// Drafts catalog files for `conn`'s system. `only` restricts the entities (stream entity
/// names or API names); empty = every entity the built-in streams cover. `defs` tells which
/// streams exist already.
pub async fn discover(
    conn: &Connection,
    ep: &Endpoint,
    defs: &Definitions,
    only: &[String],
) -> Result<Vec<Draft>> {
    match &conn.settings {
        ConnectionSettings::Dataverse(_) => dataverse::discover(ep, defs, only).await,
        ConnectionSettings::BusinessCentral(_) => business_central::discover(ep, defs, only).await,
        ConnectionSettings::Deltek(_) => deltek::discover(ep, defs, only).await,
        ConnectionSettings::Pipedrive(_) => pipedrive::discover(ep, defs, only).await,
        ConnectionSettings::Looker(_) => looker::discover(conn, ep, defs, only).await,
    }
}

/// A catalog file as TOML, one column per line, the way the built-in files are written.
pub fn catalog_toml(cat: &CatalogFile) -> String {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut out = String::new();
    if let Some(d) = &cat.description {
        out.push_str(&format!("description = {}\n", q(d)));
    }
    out.push_str(&format!(
        "primary_key = [{}]\n",
        cat.primary_key
            .iter()
            .map(|k| q(k))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if let Some(p) = &cat.partition_by {
        out.push_str(&format!("partition_by = {}\n", q(p)));
    }
    if !cat.cluster_by.is_empty() {
        out.push_str(&format!(
            "cluster_by = [{}]\n",
            cat.cluster_by
                .iter()
                .map(|k| q(k))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out.push_str("columns = [\n");
    for c in &cat.columns {
        let mut parts = vec![
            format!("name = {}", q(&c.name)),
            format!("type = {}", q(&c.ty.to_string())),
        ];
        if !c.nullable {
            parts.push("nullable = false".into());
        }
        if let Some(s) = &c.source {
            parts.push(format!("source = {}", q(s)));
        }
        if let Some(d) = &c.description {
            parts.push(format!("description = {}", q(d)));
        }
        out.push_str(&format!("  {{ {} }},\n", parts.join(", ")));
    }
    out.push_str("]\n");
    out
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
    fn catalog_toml_round_trips() {
        let defs = Definitions::builtin().unwrap();
        let s = defs.get(&"dataverse.account".parse().unwrap()).unwrap();
        let text = catalog_toml(&s.catalog);
        let back: CatalogFile = toml::from_str(&text).unwrap();
        assert_eq!(back.columns.len(), s.catalog.columns.len());
        assert_eq!(back.primary_key, s.catalog.primary_key);
    }
}

//! Business Central discovery: reads the environment's `$metadata` (OData CSDL XML) and drafts
//! a catalog file per entity set: every property of the entity type with its warehouse type,
//! the key, and the `company_id` column every company-scoped table carries. Fields the
//! built-in catalog lacks (extension fields, newer API versions) are drafted too, so they can
//! be typed instead of landing in `_ml_extra`; entity sets without a stream get a stream file.

use std::collections::BTreeMap;

use crate::discover::draft::{Discovered, Draft};
use crate::error::{Error, Result};
use crate::http::Endpoint;
use crate::spec::naming::snake_case;
use crate::spec::{CatalogFile, Column, ColumnType, Definitions};
use crate::systems::business_central::metadata::{Csdl, EntityType, column_type, metadata};

const SYSTEM: &str = "business_central";

/// Drafts the catalog of entity set `set` (type `et`), keeping the names and descriptions of
/// columns an existing catalog already has.
pub fn draft_catalog(et: &EntityType, csdl: &Csdl, existing: Option<&CatalogFile>) -> CatalogFile {
    let known = |source: &str| {
        existing.and_then(|c| c.columns.iter().find(|col| col.source_name() == source))
    };
    let mut columns =
        vec![Column {
        name: "company_id".into(),
        ty: ColumnType::String,
        nullable: false,
        description: Some(
            "Company the record belongs to (GUID from the companies list, supplied by the reader)."
                .into(),
        ),
        source: Some("$company_id".into()), computed: false, absent: false,
    }];
    for p in &et.properties {
        let Some(ty) = column_type(p, csdl) else {
            continue;
        };
        let old = known(&p.name);
        let name = old.map_or_else(|| snake_case(&p.name), |c| c.name.clone());
        let description = match old {
            Some(c) => c.description.clone(),
            None if existing.is_some() => Some(format!(
                "{} ({}; not in the built-in catalog: an extension field or a newer API version).",
                p.name, p.edm
            )),
            None => Some(format!("{} ({}).", p.name, p.edm)),
        };
        columns.push(Column {
            source: (name != p.name).then(|| p.name.clone()),
            name,
            ty,
            nullable: p.nullable && !et.key.contains(&p.name),
            description,
            computed: false,
            absent: false,
        });
    }
    let mut primary_key = vec!["company_id".to_string()];
    for k in &et.key {
        if let Some(c) = columns.iter().find(|c| c.source_name() == k) {
            primary_key.push(c.name.clone());
        }
    }
    CatalogFile {
        description: existing.and_then(|c| c.description.clone()),
        primary_key,
        partition_by: existing.and_then(|c| c.partition_by.clone()),
        cluster_by: existing.map(|c| c.cluster_by.clone()).unwrap_or_default(),
        columns,
        exclude: Vec::new(),
    }
}

/// A stream file for an entity set no built-in stream reads.
fn draft_stream(set: &str, et: &EntityType) -> String {
    let has_modified = et
        .properties
        .iter()
        .any(|p| p.name == "lastModifiedDateTime");
    let mode = if has_modified {
        "incremental = \"cursor\"\ncursor_field = \"last_modified_date_time\"\nreconcile = \"keyset\"\n"
    } else {
        "# No lastModifiedDateTime on this entity: every run reads it whole.\nincremental = \"full\"\n"
    };
    format!("# Drafted by `mlc discover` from $metadata.\nentity_set = \"{set}\"\n{mode}")
}

/// Drafts catalog files from Business Central's `$metadata`. `only` names stream entities
/// (`customer`) or entity sets (`customers`); empty = the sets the built-in streams read.
pub async fn discover(
    ep: &Endpoint,
    defs: &Definitions,
    only: &[String],
) -> Result<Vec<Discovered>> {
    drafts(&metadata(ep).await?, defs, only)
}

/// The drafts for a parsed document (separate from the fetch, for tests).
pub fn drafts(csdl: &Csdl, defs: &Definitions, only: &[String]) -> Result<Vec<Discovered>> {
    let builtin: BTreeMap<String, &crate::spec::Stream> = defs
        .streams()
        .filter(|s| s.id.system == SYSTEM)
        .filter_map(|s| s.spec.entity_set.clone().map(|set| (set, s)))
        .collect();
    let wanted: Vec<String> = if only.is_empty() {
        builtin.keys().cloned().collect()
    } else {
        let mut v = Vec::new();
        for o in only {
            let hit = builtin
                .iter()
                .find(|(set, s)| *set == o || s.id.entity == *o)
                .map(|(set, _)| set.clone())
                .or_else(|| csdl.sets.contains_key(o).then(|| o.clone()));
            match hit {
                Some(set) => v.push(set),
                None => {
                    return Err(Error::config(format!(
                        "`{o}` is neither a Business Central stream nor an entity set of this environment; entity sets: {}",
                        csdl.sets.keys().cloned().collect::<Vec<_>>().join(", ")
                    )));
                }
            }
        }
        v
    };
    let mut out = Vec::new();
    for set in wanted {
        let existing = builtin.get(&set);
        let entity = existing.map_or_else(|| set.clone(), |s| s.id.entity.clone());
        let Some(et) = csdl.sets.get(&set).and_then(|t| csdl.types.get(t)) else {
            out.push(Discovered::absent(
                &entity,
                format!("this environment's API v2.0 has no entity set `{set}`"),
            ));
            continue;
        };
        let catalog = draft_catalog(et, csdl, existing.map(|s| &s.catalog));
        out.push(Discovered::drafted(Draft {
            entity: existing.map_or_else(|| snake_case(&et.name), |s| s.id.entity.clone()),
            stream_toml: existing.is_none().then(|| draft_stream(&set, et)),
            catalog,
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systems::business_central::metadata::parse_csdl;

    const SAMPLE: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx"><edmx:DataServices>
<Schema Namespace="Microsoft.NAV" xmlns="http://docs.oasis-open.org/odata/ns/edm">
<EnumType Name="contactType"><Member Name="Company" Value="0" /></EnumType>
<EntityType Name="customer"><Key><PropertyRef Name="id" /></Key>
<Property Name="id" Type="Edm.Guid" Nullable="false" />
<Property Name="number" Type="Edm.String" MaxLength="20" />
<Property Name="type" Type="Microsoft.NAV.contactType" />
<Property Name="balanceDue" Type="Edm.Decimal" Scale="Variable" />
<Property Name="lastModifiedDateTime" Type="Edm.DateTimeOffset" />
<Property Name="loyaltyTier" Type="Edm.String" />
<Property Name="picture" Type="Edm.Stream" />
<NavigationProperty Name="currency" Type="Microsoft.NAV.currency" />
</EntityType>
<EntityType Name="shipmentMethod"><Key><PropertyRef Name="id" /></Key>
<Property Name="id" Type="Edm.Guid" Nullable="false" /><Property Name="code" Type="Edm.String" />
</EntityType>
<EntityContainer Name="NAV"><EntitySet Name="customers" EntityType="Microsoft.NAV.customer" />
<EntitySet Name="shipmentMethods" EntityType="Microsoft.NAV.shipmentMethod" /></EntityContainer>
</Schema></edmx:DataServices></edmx:Edmx>"#;

    #[test]
    fn parses_types_sets_and_enums() {
        let c = parse_csdl(SAMPLE).unwrap();
        assert_eq!(c.sets["customers"], "customer");
        let t = &c.types["customer"];
        assert_eq!(t.key, vec!["id"]);
        assert_eq!(t.properties.len(), 7);
        assert!(c.enums.contains("contactType"));
        assert!(parse_csdl("<a><b></a>").is_err());
    }

    #[test]
    fn hostile_metadata_is_bounded() {
        // One tag with many attributes, repeated names included: parsed in linear time, the
        // first `Name` wins.
        let mut many = String::from("<EntityType Name=\"big\"><Property Name=\"first\"");
        for i in 0..50_000 {
            many.push_str(&format!(" a{i}=\"x\" Name=\"dup\""));
        }
        many.push_str(" Type=\"Edm.String\"/></EntityType>");
        let started = std::time::Instant::now();
        let c = parse_csdl(&many).unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        assert_eq!(c.types["big"].properties[0].name, "first");
        assert_eq!(c.types["big"].properties[0].edm, "Edm.String");
        // Over the size cap: refused before parsing.
        let huge = " ".repeat(crate::systems::business_central::metadata::MAX_CSDL_BYTES + 1);
        assert!(parse_csdl(&huge).unwrap_err().contains("more than"));
    }

    #[test]
    fn drafts_keep_catalog_names_and_add_extension_fields() {
        let c = parse_csdl(SAMPLE).unwrap();
        let defs = Definitions::builtin().unwrap();
        let d: Vec<Draft> = drafts(&c, &defs, &["customer".into(), "shipmentMethods".into()])
            .unwrap()
            .into_iter()
            .filter_map(|d| match d.outcome {
                crate::discover::draft::Outcome::Drafted(d) => Some(d),
                _ => None,
            })
            .collect();
        assert_eq!(d.len(), 2);
        let cust = &d[0];
        assert_eq!(cust.entity, "customer");
        assert!(cust.stream_toml.is_none());
        assert_eq!(cust.catalog.primary_key, vec!["company_id", "id"]);
        let col = |n: &str| cust.catalog.columns.iter().find(|c| c.name == n).unwrap();
        assert_eq!(col("balance_due").ty.to_string(), "decimal(20,5)");
        assert_eq!(col("type").ty, ColumnType::String);
        assert_eq!(col("loyalty_tier").source.as_deref(), Some("loyaltyTier"));
        assert!(
            col("loyalty_tier")
                .description
                .as_deref()
                .unwrap()
                .contains("not in the built-in catalog")
        );
        assert!(!cust.catalog.columns.iter().any(|c| c.name == "picture"));
        let ship = &d[1];
        assert_eq!(ship.entity, "shipment_method");
        assert!(
            ship.stream_toml
                .as_deref()
                .unwrap()
                .contains("incremental = \"full\"")
        );
        assert!(drafts(&c, &defs, &["nosuch".into()]).is_err());
    }
}

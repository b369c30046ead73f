//! Dataverse discovery: `EntityDefinitions(LogicalName='…')` with its `Attributes`, one table at
//! a time (an org's full metadata is hundreds of MB; one table is a few hundred KB), plus the
//! `DateTimeAttributeMetadata` cast, the only place that says whether a date is date-only.

use crate::discover::draft::{Discovered, Draft};
use crate::error::{Error, Result};
use crate::http::Endpoint;
use crate::spec::naming::snake_case;
use crate::spec::{CatalogFile, Column, ColumnType, Definitions};
use crate::systems::dataverse::metadata::{Fetched, Table, fetch};

/// Drafts one catalog per table: the built-in Dataverse tables, or the logical names in `only`.
pub async fn discover(
    ep: &Endpoint,
    defs: &Definitions,
    only: &[String],
) -> Result<Vec<Discovered>> {
    let tables: Vec<String> = if only.is_empty() {
        defs.streams()
            .filter(|s| s.id.system == "dataverse")
            .map(|s| s.id.entity.clone())
            .collect()
    } else {
        only.to_vec()
    };
    let mut out = Vec::new();
    for name in tables {
        let table = match fetch(ep, &name).await {
            Ok(Fetched::Table(t)) => t,
            Ok(Fetched::Missing) => {
                out.push(Discovered::absent(
                    &name,
                    format!("the org has no table `{name}`"),
                ));
                continue;
            }
            Err(e @ (Error::Auth { .. } | Error::Transport { .. })) => return Err(e),
            Err(e) => {
                out.push(Discovered::failed(&name, e));
                continue;
            }
        };
        let entity = snake_case(&table.logical_name);
        let exists = defs
            .streams()
            .any(|s| s.id.system == "dataverse" && s.id.entity == entity);
        out.push(Discovered::drafted(Draft {
            stream_toml: (!exists).then(|| {
                format!(
                    "entity_set = \"{}\"\nincremental = \"delta\"\ncursor_field = \"modifiedon\"\n",
                    table.entity_set_name
                )
            }),
            catalog: catalog(&table),
            entity,
        }));
    }
    Ok(out)
}

/// Attributes → columns. Lookups become `_x_value` sources; polymorphic ones (customer, owner)
/// also get their target table from the `lookuplogicalname` annotation. Attributes that are
/// facets of another (`AttributeOf`), virtual or not readable are skipped.
fn catalog(t: &Table) -> CatalogFile {
    let mut columns = Vec::new();
    for a in &t.attributes {
        if a.attribute_of.is_some() || a.is_valid_for_read == Some(false) {
            continue;
        }
        let Some(ty) = a.column_type(&t.date_only) else {
            continue;
        };
        let kind = a.attribute_type.as_deref().unwrap_or("");
        let description = a.label();
        let name = snake_case(&a.logical_name);
        let source = (name != a.payload_key()).then(|| a.payload_key());
        columns.push(Column {
            nullable: a.logical_name != t.primary_id_attribute,
            name: name.clone(),
            ty,
            description,
            source: source.clone(),
            computed: false,
            absent: false,
        });
        if matches!(kind, "Customer" | "Owner") {
            columns.push(Column {
                name: format!("{name}_type"),
                ty: ColumnType::String,
                nullable: true,
                description: Some(format!("Table the {name} lookup points to.")),
                source: source.map(|s| format!("{s}@Microsoft.Dynamics.CRM.lookuplogicalname")),
                computed: false,
                absent: false,
            });
        }
    }
    CatalogFile {
        description: None,
        primary_key: vec![snake_case(&t.primary_id_attribute)],
        partition_by: None,
        cluster_by: Vec::new(),
        columns,
        exclude: Vec::new(),
    }
}

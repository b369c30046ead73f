//! `$metadata`: the CSDL document of the tenant the fake plays, generated from the same entity
//! shapes the pages are rendered from (so a reader sees exactly what is served: a Lean tenant's
//! missing properties and entity set, a Custom tenant's extension fields and enum), in the shape
//! of BC's own document: namespace `Microsoft.NAV`, the enum types, the `company` type with a
//! contained navigation property per entity set, one entity type per set keyed by `id` with
//! `Nullable`/`MaxLength`/`Scale="Variable"` as BC writes them, the lines navigation of
//! documents, the bound actions the fake runs, and the `NAV` container whose entity sets carry
//! BC's capability annotations.

use std::collections::BTreeSet;
use std::fmt::Write;

use super::entities::Entity;
use super::schema;
use super::set::Set;

/// `(Deletable, Insertable, Updatable)` of an entity set as the real document declares it.
fn capabilities(set: Set) -> (bool, bool, bool) {
    match set {
        Set::Accounts | Set::GeneralLedgerEntries | Set::Dimensions | Set::DimensionValues => {
            (false, false, false)
        }
        _ => (true, true, true),
    }
}

/// The navigation between a document and its lines: (document set, lines set, property).
const LINES: [(Set, Set, &str); 2] = [
    (Set::SalesOrders, Set::SalesOrderLines, "salesOrderLines"),
    (
        Set::SalesInvoices,
        Set::SalesInvoiceLines,
        "salesInvoiceLines",
    ),
];

/// The bound actions the fake implements: (action, binding type).
const ACTIONS: [(&str, Set); 2] = [
    ("post", Set::SalesInvoices),
    ("shipAndInvoice", Set::SalesOrders),
];

const COMPANY_PROPERTIES: &str = r#"                <Property Name="id" Type="Edm.Guid" Nullable="false" />
                <Property Name="systemVersion" Type="Edm.String" />
                <Property Name="timestamp" Type="Edm.Int64" />
                <Property Name="name" Type="Edm.String" MaxLength="30" />
                <Property Name="displayName" Type="Edm.String" MaxLength="250" />
                <Property Name="businessProfileId" Type="Edm.String" MaxLength="250" />
                <Property Name="systemCreatedAt" Type="Edm.DateTimeOffset" />
                <Property Name="systemCreatedBy" Type="Edm.Guid" />
                <Property Name="systemModifiedAt" Type="Edm.DateTimeOffset" />
                <Property Name="systemModifiedBy" Type="Edm.Guid" />
"#;

const SUBSCRIPTION_TYPE: &str = r#"            <EntityType Name="subscriptions">
                <Key>
                    <PropertyRef Name="subscriptionId" />
                </Key>
                <Property Name="subscriptionId" Type="Edm.String" Nullable="false" MaxLength="150" />
                <Property Name="notificationUrl" Type="Edm.String" Nullable="false" />
                <Property Name="resource" Type="Edm.String" Nullable="false" />
                <Property Name="timestamp" Type="Edm.Int64" />
                <Property Name="userId" Type="Edm.Guid" />
                <Property Name="lastModifiedDateTime" Type="Edm.DateTimeOffset" />
                <Property Name="clientState" Type="Edm.String" MaxLength="2048" />
                <Property Name="expirationDateTime" Type="Edm.DateTimeOffset" />
                <Property Name="systemCreatedAt" Type="Edm.DateTimeOffset" />
                <Property Name="systemCreatedBy" Type="Edm.Guid" />
                <Property Name="systemModifiedAt" Type="Edm.DateTimeOffset" />
                <Property Name="systemModifiedBy" Type="Edm.Guid" />
            </EntityType>
"#;

/// The CSDL document of the served entities.
pub fn csdl(entities: &[Entity]) -> String {
    let mut x = String::with_capacity(64 * 1024);
    let served = |s: Set| entities.iter().any(|e| e.set == s);
    x.push_str(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<edmx:Edmx Version=\"4.0\" xmlns:edmx=\"http://docs.oasis-open.org/odata/ns/edmx\">\n    <edmx:DataServices>\n        <Schema Namespace=\"Microsoft.NAV\" xmlns=\"http://docs.oasis-open.org/odata/ns/edm\">\n",
    );
    // Enum types, each once, in order of first use.
    let mut seen = BTreeSet::new();
    for f in entities.iter().flat_map(|e| &e.fields) {
        let Some(en) = schema::enum_type(f.edm) else {
            continue;
        };
        if !seen.insert(en.name) {
            continue;
        }
        let _ = writeln!(x, "            <EnumType Name=\"{}\">", en.name);
        for (m, v) in en.members {
            let _ = writeln!(x, "                <Member Name=\"{m}\" Value=\"{v}\" />");
        }
        x.push_str("            </EnumType>\n");
    }
    x.push_str(SUBSCRIPTION_TYPE);
    x.push_str("            <EntityType Name=\"company\">\n                <Key>\n                    <PropertyRef Name=\"id\" />\n                </Key>\n");
    x.push_str(COMPANY_PROPERTIES);
    for e in entities {
        let _ = writeln!(
            x,
            "                <NavigationProperty Name=\"{}\" Type=\"Collection(Microsoft.NAV.{})\" ContainsTarget=\"true\" />",
            e.set.name(),
            e.set.type_name()
        );
    }
    x.push_str("            </EntityType>\n");
    for e in entities {
        entity_type(&mut x, e, &served);
    }
    for (action, set) in ACTIONS {
        if served(set) {
            let _ = write!(
                x,
                "            <Action Name=\"{action}\" IsBound=\"true\">\n                <Parameter Name=\"bindingParameter\" Type=\"Microsoft.NAV.{}\" />\n            </Action>\n",
                set.type_name()
            );
        }
    }
    x.push_str("            <EntityContainer Name=\"NAV\">\n");
    entity_set(&mut x, "companies", "company", (false, false, false), true);
    entity_set(
        &mut x,
        "subscriptions",
        "subscriptions",
        (true, true, true),
        false,
    );
    for e in entities {
        entity_set(
            &mut x,
            e.set.name(),
            e.set.type_name(),
            capabilities(e.set),
            true,
        );
    }
    x.push_str("            </EntityContainer>\n        </Schema>\n    </edmx:DataServices>\n</edmx:Edmx>\n");
    x
}

fn entity_type(x: &mut String, e: &Entity, served: &dyn Fn(Set) -> bool) {
    let _ = writeln!(
        x,
        "            <EntityType Name=\"{}\">\n                <Key>\n                    <PropertyRef Name=\"id\" />\n                </Key>",
        e.set.type_name()
    );
    for f in &e.fields {
        let _ = write!(
            x,
            "                <Property Name=\"{}\" Type=\"{}\"",
            f.name, f.edm
        );
        if !f.nullable {
            x.push_str(" Nullable=\"false\"");
        }
        if let Some(n) = f.max_len {
            let _ = write!(x, " MaxLength=\"{n}\"");
        }
        if f.edm == "Edm.Decimal" {
            x.push_str(" Scale=\"Variable\"");
        }
        x.push_str(" />\n");
    }
    for (doc, lines, nav) in LINES {
        if e.set == doc && served(lines) {
            let _ = write!(
                x,
                "                <NavigationProperty Name=\"{nav}\" Type=\"Collection(Microsoft.NAV.{})\" Partner=\"{}\" ContainsTarget=\"true\">\n                    <ReferentialConstraint Property=\"id\" ReferencedProperty=\"documentId\" />\n                </NavigationProperty>\n",
                lines.type_name(),
                doc.type_name()
            );
        }
        if e.set == lines && served(doc) {
            let _ = writeln!(
                x,
                "                <NavigationProperty Name=\"{}\" Type=\"Microsoft.NAV.{}\" Partner=\"{nav}\" ContainsTarget=\"true\" />",
                doc.type_name(),
                doc.type_name()
            );
        }
    }
    x.push_str("            </EntityType>\n");
}

fn entity_set(
    x: &mut String,
    name: &str,
    ty: &str,
    (deletable, insertable, updatable): (bool, bool, bool),
    sortable: bool,
) {
    let _ = writeln!(
        x,
        "                <EntitySet Name=\"{name}\" EntityType=\"Microsoft.NAV.{ty}\">"
    );
    for (term, property, value) in [
        ("ChangeTracking", "Supported", false),
        ("DeleteRestrictions", "Deletable", deletable),
        ("InsertRestrictions", "Insertable", insertable),
        ("UpdateRestrictions", "Updatable", updatable),
        ("SortRestrictions", "Sortable", sortable),
    ] {
        let _ = write!(
            x,
            "                    <Annotation Term=\"Org.OData.Capabilities.V1.{term}\">\n                        <Record>\n                            <PropertyValue Property=\"{property}\" Bool=\"{value}\" />\n                        </Record>\n                    </Annotation>\n"
        );
    }
    x.push_str("                </EntitySet>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::Tenant;
    use crate::sandbox::business_central::set::ALL;

    fn doc(t: Tenant) -> String {
        let ents: Vec<Entity> = ALL.into_iter().filter_map(|s| Entity::load(s, t)).collect();
        csdl(&ents)
    }

    #[test]
    fn the_document_follows_the_tenant() {
        let std = doc(Tenant::Standard);
        assert!(std.contains("<EntityType Name=\"dimensionValue\">"));
        assert!(std.contains(
            "<Property Name=\"salespersonCode\" Type=\"Edm.String\" MaxLength=\"20\" />"
        ));
        assert!(
            std.contains("<Property Name=\"blocked\" Type=\"Microsoft.NAV.customerBlocked\" />")
        );
        assert!(std.contains("<Member Name=\"_x0020_\" Value=\"0\" />"));
        assert!(std.contains("<Property Name=\"displayName\" Type=\"Edm.String\" Nullable=\"false\" MaxLength=\"100\" />"));
        assert!(
            std.contains(
                "<Property Name=\"balanceDue\" Type=\"Edm.Decimal\" Scale=\"Variable\" />"
            )
        );
        let lean = doc(Tenant::Lean);
        assert!(!lean.contains("dimensionValue"));
        assert!(!lean.contains("salespersonCode"));
        let custom = doc(Tenant::Custom);
        assert!(custom.contains("<EnumType Name=\"loyaltyTier\">"));
        assert!(custom.contains(
            "<Property Name=\"annualBudget\" Type=\"Edm.Decimal\" Scale=\"Variable\" />"
        ));
        assert_eq!(custom.matches("<EnumType Name=\"contactType\">").count(), 1);
    }
}

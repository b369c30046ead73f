//! `$metadata`: the CSDL document of the sandbox's entity sets, generated from the same
//! entity definitions the pages are rendered from (so discovery sees exactly what is served,
//! extension fields included), in the shape of BC's own document (namespace `Microsoft.NAV`,
//! `id` as the Edm.Guid key, entity sets in one container).

use super::entities::Entity;

pub fn csdl(entities: &[Entity]) -> String {
    let mut x = String::with_capacity(32 * 1024);
    x.push_str(r#"<?xml version="1.0" encoding="utf-8"?><edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx"><edmx:DataServices><Schema Namespace="Microsoft.NAV" xmlns="http://docs.oasis-open.org/odata/ns/edm">"#);
    x.push_str(r#"<EntityType Name="company"><Key><PropertyRef Name="id" /></Key><Property Name="id" Type="Edm.Guid" Nullable="false" /><Property Name="systemVersion" Type="Edm.String" /><Property Name="timestamp" Type="Edm.Int64" /><Property Name="name" Type="Edm.String" MaxLength="30" /><Property Name="displayName" Type="Edm.String" MaxLength="250" /><Property Name="businessProfileId" Type="Edm.String" MaxLength="250" /><Property Name="systemCreatedAt" Type="Edm.DateTimeOffset" /><Property Name="systemCreatedBy" Type="Edm.Guid" /><Property Name="systemModifiedAt" Type="Edm.DateTimeOffset" /><Property Name="systemModifiedBy" Type="Edm.Guid" />"#);
    for e in entities {
        x.push_str(&format!(
            r#"<NavigationProperty Name="{}" Type="Collection(Microsoft.NAV.{})" ContainsTarget="true" />"#,
            e.set.name(),
            e.set.type_name()
        ));
    }
    x.push_str("</EntityType>");
    for e in entities {
        x.push_str(&format!(
            r#"<EntityType Name="{}"><Key><PropertyRef Name="id" /></Key>"#,
            e.set.type_name()
        ));
        for f in &e.fields {
            let extra = match (f.name.as_str(), f.edm) {
                ("id", _) => r#" Nullable="false""#,
                (_, "Edm.Decimal") => r#" Scale="Variable""#,
                _ => "",
            };
            x.push_str(&format!(
                r#"<Property Name="{}" Type="{}"{extra} />"#,
                f.name, f.edm
            ));
        }
        x.push_str("</EntityType>");
    }
    x.push_str(r#"<EntityContainer Name="NAV"><EntitySet Name="companies" EntityType="Microsoft.NAV.company">"#);
    for e in entities {
        x.push_str(&format!(
            r#"<NavigationPropertyBinding Path="{0}" Target="{0}" />"#,
            e.set.name()
        ));
    }
    x.push_str("</EntitySet>");
    for e in entities {
        x.push_str(&format!(
            r#"<EntitySet Name="{}" EntityType="Microsoft.NAV.{}" />"#,
            e.set.name(),
            e.set.type_name()
        ));
    }
    x.push_str("</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>");
    x
}

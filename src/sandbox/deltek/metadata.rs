//! `GET metadata/{hub}` in Vantagepoint's shape, from Deltek's published API documentation
//! ("Metadata Reference" and the per-hub metadata examples of the Postman collections): an
//! object with one entry per table of the hub, named as the table, each
//!
//! ```text
//! {"Keys":"WBS1,WBS2,WBS3","TableName":"PR","GridID":null,"CustomTable":false,"Hidden":false,
//!  "Updateable":true,"Fields":[{"FieldName":"WBS1","FieldType":"WBS1","Caption":"Project Number",
//!  "DefaultValue":"","Hidden":false,"Required":true,"Updateable":true,"MaxLength":30}, …]}
//! ```
//!
//! Numeric and Currency fields carry `Decimals`, dropdowns `LimitToList`, text `MaxLength`,
//! user-defined fields `"CustomField":true` (their names start with `Cust`). Grids of the hub
//! (the project team) are tables of their own with a `GridID`. [UNCERTAIN]: the main table's
//! name (the database table behind the hub), `Keys` for a composite key (comma-joined, the
//! examples only show single keys), and custom fields listed in the main table (records carry
//! them flattened).

use super::kind::Kind;
use super::schema::{self, Field, Ty};
use super::tables::key_fields;

fn text(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// One field, attributes in the documented order.
fn field(out: &mut String, f: &Field) {
    let default = match f.ty {
        Ty::RecordId => "[GUID]",
        Ty::Checkbox => "N",
        Ty::Numeric(_) | Ty::Currency(_) => "0",
        _ => "",
    };
    out.push_str(&format!(
        "{{\"FieldName\":{},\"FieldType\":{},\"Caption\":{},\"DefaultValue\":{},\"Hidden\":false,\"Required\":{},\"Updateable\":{}",
        text(f.name),
        text(f.ty.name()),
        text(f.caption),
        text(default),
        f.required,
        f.updateable
    ));
    if f.max_len > 0 {
        out.push_str(&format!(",\"MaxLength\":{}", f.max_len));
    }
    if let Some(d) = f.ty.decimals() {
        out.push_str(&format!(",\"Decimals\":{d}"));
    }
    if f.ty == Ty::Dropdown {
        out.push_str(",\"LimitToList\":true");
    }
    if f.custom {
        out.push_str(",\"CustomField\":true");
    }
    out.push('}');
}

fn table<'a>(
    out: &mut String,
    name: &str,
    keys: &str,
    grid: bool,
    fields: impl Iterator<Item = &'a Field>,
) {
    out.push_str(&format!(
        "{}:{{\"Keys\":{},\"TableName\":{},\"GridID\":{},\"CustomTable\":false,\"Hidden\":false,\"Updateable\":true,\"Fields\":[",
        text(name),
        text(keys),
        text(name),
        if grid { text(name) } else { "null".into() }
    ));
    for (i, f) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        field(out, f);
    }
    out.push_str("]}");
}

/// The metadata document of the hub whose main table is `kind`'s, with the tenant's `fields`.
pub fn document(kind: Kind, fields: &[&'static Field]) -> Vec<u8> {
    let keys = match kind {
        Kind::Project | Kind::Phase | Kind::Task => "WBS1,WBS2,WBS3".to_string(),
        k => key_fields(k).join(","),
    };
    let mut out = String::from("{");
    table(
        &mut out,
        schema::table_name(kind),
        &keys,
        false,
        fields.iter().copied(),
    );
    if kind == Kind::Project {
        out.push(',');
        table(
            &mut out,
            "EMProjectAssoc",
            "RecordID",
            true,
            schema::TEAM_GRID.iter(),
        );
    }
    out.push('}');
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::Tenant;
    use crate::sandbox::deltek::tables;

    #[test]
    fn documents_are_json_in_the_documented_shape() {
        let fields = tables::table(Kind::Firm, Tenant::Custom);
        let v: serde_json::Value = serde_json::from_slice(&document(Kind::Firm, &fields)).unwrap();
        let t = &v["Clendor"];
        assert_eq!(t["Keys"], "ClientID");
        assert!(t["GridID"].is_null());
        let f = t["Fields"].as_array().unwrap();
        assert_eq!(f.len(), fields.len());
        let region = f.iter().find(|f| f["FieldName"] == "CustRegion").unwrap();
        assert_eq!(region["Caption"], "Région");
        assert_eq!(region["CustomField"], true);
        let id = f.iter().find(|f| f["FieldName"] == "ClientID").unwrap();
        assert_eq!(id["DefaultValue"], "[GUID]");
        assert!(id.get("CustomField").is_none());
    }
}

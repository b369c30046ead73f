//! Dataverse table metadata, `EntityDefinitions`, for the tenant being played and in the real
//! service's shapes: the table list, one table (`$select`, `$expand=Attributes(...)`), its
//! `Attributes` collection, one attribute, and the type casts
//! (`/Attributes/Microsoft.Dynamics.CRM.DateTimeAttributeMetadata`, the only place that says
//! whether a date is date-only; `.../PicklistAttributeMetadata?$expand=OptionSet`, the choice
//! labels). Every attribute carries `@odata.type`, `AttributeType`, `AttributeTypeName`,
//! `IsCustomAttribute`, `AttributeOf` (set for the `_base` money twins and the lookup `…name`
//! and `…type` facets, which the Web API does not serve as properties), `DisplayName` with its
//! `LocalizedLabels`, and `Targets` for lookups.
//!
//! `$select` is checked like the real service checks it: a property the declared type does not
//! have is a 400 (`Targets` needs the `LookupAttributeMetadata` cast or the qualified name
//! `Microsoft.Dynamics.CRM.LookupAttributeMetadata/Targets`). `$filter` takes `eq` / `ne`
//! comparisons joined by `and`. Not on the hot path: built with serde_json.

use serde_json::{Map, Value, json};

use super::App;
use super::dataverse::csdl::{ATTRIBUTE_PROPS, ENTITY_PROPS, TYPE_PROPS};
use super::dataverse::schema::{states, statuses};
use super::entities::{ALL, Attr, Behavior, DateFormat, Entity, Gen, Kind, Set};
use super::odata::{self, Param, Reject};
use super::rng::mix;

const NS: &str = "Microsoft.Dynamics.CRM.";

/// Answers `EntityDefinitions…` paths (`rest` is what follows `EntityDefinitions`).
pub fn entity_definitions(app: &App, rest: &str, params: &[Param]) -> Result<Value, Reject> {
    let q = Query::from_params(params)?;
    let root = app.root();
    let tables = || ALL.into_iter().filter_map(|s| app.entity(s));
    if rest.is_empty() || rest == "()" {
        let select = checked_select(q.select.as_deref(), "EntityMetadata")?;
        let filter = Filter::parse(q.filter.as_deref(), "EntityMetadata")?;
        let expand = AttributeExpand::parse(q.expand.as_deref())?;
        let mut value = Vec::new();
        for e in tables() {
            let t = table(e);
            if filter.keep(&t) {
                value.push(finish_table(e, t, select.as_deref(), expand.as_ref())?);
            }
        }
        let context = format!(
            "{root}$metadata#EntityDefinitions{}",
            context_select(select.as_deref(), expand.as_ref())
        );
        return Ok(json!({ "@odata.context": context, "value": value }));
    }
    let (key, tail) = split_key(rest).ok_or_else(|| syntax(rest))?;
    let ent = tables()
        .find(|e| match &key {
            Key::Logical(l) => e.set.logical() == l,
            Key::Id(id) => table_id(e.set).eq_ignore_ascii_case(id),
        })
        .ok_or_else(|| unknown_entity(&key))?;
    let id = table_id(ent.set);
    match tail {
        "" => {
            let select = checked_select(q.select.as_deref(), "EntityMetadata")?;
            let expand = AttributeExpand::parse(q.expand.as_deref())?;
            let mut v = finish_table(ent, table(ent), select.as_deref(), expand.as_ref())?;
            if let Value::Object(m) = &mut v {
                let context = format!(
                    "{root}$metadata#EntityDefinitions{}/$entity",
                    context_select(select.as_deref(), expand.as_ref())
                );
                m.insert("@odata.context".into(), Value::String(context));
            }
            Ok(v)
        }
        _ => {
            let rest = tail
                .strip_prefix("/Attributes")
                .ok_or_else(|| not_found_segment(tail))?;
            attributes(app, ent, &id, rest, &q)
        }
    }
}

/// `…/Attributes[(LogicalName='x')][/Microsoft.Dynamics.CRM.<Type>]`.
fn attributes(app: &App, ent: &Entity, id: &str, rest: &str, q: &Query) -> Result<Value, Reject> {
    let root = app.root();
    let (one, rest) = match split_key(rest) {
        Some((Key::Logical(l), tail)) => (Some(l), tail),
        Some((Key::Id(i), tail)) => (Some(i), tail),
        None => (None, rest),
    };
    let cast = match rest {
        "" => None,
        r => {
            let t = r
                .strip_prefix('/')
                .and_then(|t| t.strip_prefix(NS))
                .filter(|t| TYPE_PROPS.iter().any(|(n, _)| n == t))
                .ok_or_else(|| not_found_segment(r))?;
            Some(t)
        }
    };
    let declared = cast.unwrap_or("AttributeMetadata");
    let select = checked_select(q.select.as_deref(), declared)?;
    let filter = Filter::parse(q.filter.as_deref(), declared)?;
    let option_sets = match q.expand.as_deref().map(str::trim) {
        None | Some("") => false,
        Some(x) if (x == "OptionSet" || x == "GlobalOptionSet") && has_prop(declared, x) => true,
        Some(x) => return Err(unknown_property(x.split('(').next().unwrap_or(x), declared)),
    };
    let all = metadata_attributes(ent);
    let of_type = |m: &Map<String, Value>| {
        cast.is_none_or(|t| {
            let ty = m.get("@odata.type").and_then(Value::as_str).unwrap_or("");
            ty == format!("#{NS}{t}") || (t == "EnumAttributeMetadata" && is_enum_type(ty))
        })
    };
    let suffix = cast.map(|t| format!("/{NS}{t}")).unwrap_or_default();
    if let Some(name) = one {
        let a = all
            .into_iter()
            .find(|m| {
                m.get("LogicalName").and_then(Value::as_str) == Some(name.as_str())
                    || m.get("MetadataId").and_then(Value::as_str) == Some(name.as_str())
            })
            .filter(of_type)
            .ok_or_else(|| Reject {
                status: 404,
                code: "0x80040217",
                message: format!(
                    "Could not find an attribute with name {name} on entity {}.",
                    ent.set.logical()
                ),
            })?;
        let mut m = shaped(ent, a, select.as_deref(), option_sets);
        m.insert(
            "@odata.context".into(),
            Value::String(format!(
                "{root}$metadata#EntityDefinitions('{id}')/Attributes{suffix}/$entity"
            )),
        );
        return Ok(Value::Object(m));
    }
    let value: Vec<Value> = all
        .into_iter()
        .filter(of_type)
        .filter(|m| filter.keep(m))
        .map(|m| Value::Object(shaped(ent, m, select.as_deref(), option_sets)))
        .collect();
    let sel = select
        .as_deref()
        .map(|s| format!("({})", s.join(",")))
        .unwrap_or_default();
    Ok(json!({
        "@odata.context": format!("{root}$metadata#EntityDefinitions('{id}')/Attributes{suffix}{sel}"),
        "value": value,
    }))
}

/// A table's own properties (no navigation properties).
fn table(e: &Entity) -> Map<String, Value> {
    let set = e.set;
    let (display, plural, schema, otc, ownership, primary_name) = match set {
        Set::Accounts => ("Account", "Accounts", "Account", 1, "UserOwned", "name"),
        Set::Contacts => ("Contact", "Contacts", "Contact", 2, "UserOwned", "fullname"),
        Set::Leads => ("Lead", "Leads", "Lead", 4, "UserOwned", "fullname"),
        Set::Opportunities => (
            "Opportunity",
            "Opportunities",
            "Opportunity",
            3,
            "UserOwned",
            "name",
        ),
        Set::Quotes => ("Quote", "Quotes", "Quote", 1084, "UserOwned", "name"),
        Set::SalesOrders => ("Order", "Orders", "SalesOrder", 1088, "UserOwned", "name"),
        Set::Invoices => ("Invoice", "Invoices", "Invoice", 1090, "UserOwned", "name"),
        Set::Products => (
            "Product",
            "Products",
            "Product",
            1024,
            "OrganizationOwned",
            "name",
        ),
        Set::SystemUsers => (
            "User",
            "Users",
            "SystemUser",
            8,
            "BusinessOwned",
            "fullname",
        ),
    };
    let id = table_id(set);
    let v = json!({
        "MetadataId": id,
        "HasChanged": null,
        "LogicalName": set.logical(),
        "SchemaName": schema,
        "EntitySetName": set.name(),
        "LogicalCollectionName": set.name(),
        "CollectionSchemaName": format!("{schema}s"),
        "ObjectTypeCode": otc,
        "OwnershipType": ownership,
        "PrimaryIdAttribute": format!("{}id", set.logical()),
        "PrimaryNameAttribute": primary_name,
        "PrimaryImageAttribute": null,
        "DisplayName": label(display, &format!("{id}/display"), true),
        "DisplayCollectionName": label(plural, &format!("{id}/plural"), true),
        "Description": label("", "", true),
        "IsCustomEntity": false,
        "IsManaged": true,
        "IsActivity": false,
        "IsActivityParty": false,
        "IsIntersect": false,
        "IsLogicalEntity": false,
        "IsPrivate": false,
        "IsValidForAdvancedFind": true,
        "IsAvailableOffline": true,
        "IsOptimisticConcurrencyEnabled": true,
        "ChangeTrackingEnabled": true,
        "HasNotes": true,
        "HasActivities": set != Set::SystemUsers,
        "IntroducedVersion": "5.0.0.0",
        "ExternalName": null,
        "ExternalCollectionName": null,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Projects a table and expands its `Attributes` when asked.
fn finish_table(
    e: &Entity,
    t: Map<String, Value>,
    select: Option<&[String]>,
    expand: Option<&AttributeExpand>,
) -> Result<Value, Reject> {
    let mut m = project(t, select);
    if let Some(x) = expand {
        let attrs: Vec<Value> = metadata_attributes(e)
            .into_iter()
            .filter(|a| x.filter.keep(a))
            .map(|a| Value::Object(project(a, x.select.as_deref())))
            .collect();
        m.insert("Attributes".into(), Value::Array(attrs));
    }
    Ok(Value::Object(m))
}

/// Every attribute the metadata lists for a table: the tenant's attributes, each money
/// column's `_base` twin, and the `…name` (and for polymorphic lookups `…type`) facets of
/// lookups, which exist in metadata but are not Web API properties.
fn metadata_attributes(e: &Entity) -> Vec<Map<String, Value>> {
    let mut out = Vec::with_capacity(e.attrs.len() * 2);
    let mut column = 0;
    let mut next = || {
        column += 1;
        column
    };
    for a in &e.attrs {
        out.push(attribute(e.set, a, next()));
        if a.kind == Kind::Money {
            let mut b = attribute(e.set, a, next());
            let name = format!("{}_base", a.logical);
            b.insert("AttributeOf".into(), Value::String(a.logical.into()));
            b.insert("IsBaseCurrency".into(), Value::Bool(true));
            b.insert("IsValidForCreate".into(), Value::Bool(false));
            b.insert("IsValidForUpdate".into(), Value::Bool(false));
            rename(
                &mut b,
                e.set,
                &name,
                &format!("{} (Base)", a.display),
                a.custom,
            );
            out.push(b);
        }
        if a.kind.is_lookup() {
            let mut facets = vec![(format!("{}name", a.logical), Kind::String)];
            if a.kind != Kind::Lookup {
                facets.push((format!("{}type", a.logical), Kind::String));
            }
            for (name, _) in facets {
                let entity_name = name.ends_with("type");
                let mut f = base_attribute(e.set, &name, a.custom, next());
                let (code, ty) = if entity_name {
                    ("EntityName", "EntityNameAttributeMetadata")
                } else {
                    ("String", "StringAttributeMetadata")
                };
                f.insert("@odata.type".into(), Value::String(format!("#{NS}{ty}")));
                f.insert("AttributeType".into(), Value::String(code.into()));
                f.insert(
                    "AttributeTypeName".into(),
                    json!({ "Value": format!("{code}Type") }),
                );
                f.insert("AttributeOf".into(), Value::String(a.logical.into()));
                f.insert("IsLogical".into(), Value::Bool(true));
                f.insert("IsValidForCreate".into(), Value::Bool(false));
                f.insert("IsValidForUpdate".into(), Value::Bool(false));
                f.insert("DisplayName".into(), label("", "", !a.custom));
                if !entity_name {
                    f.insert("Format".into(), Value::String("Text".into()));
                    f.insert("FormatName".into(), json!({ "Value": "Text" }));
                    f.insert("MaxLength".into(), json!(160));
                }
                out.push(f);
            }
        }
    }
    out
}

/// Re-keys a derived attribute (name, ids, display name).
fn rename(m: &mut Map<String, Value>, set: Set, name: &str, display: &str, custom: bool) {
    let id = attribute_id(set, name);
    m.insert("MetadataId".into(), Value::String(id.clone()));
    m.insert("LogicalName".into(), Value::String(name.into()));
    m.insert("SchemaName".into(), Value::String(schema_name(name)));
    m.insert("DisplayName".into(), label(display, &id, !custom));
}

/// The properties every attribute has.
fn base_attribute(set: Set, logical: &str, custom: bool, column: u32) -> Map<String, Value> {
    let id = attribute_id(set, logical);
    let v = json!({
        "MetadataId": id,
        "HasChanged": null,
        "LogicalName": logical,
        "SchemaName": schema_name(logical),
        "EntityLogicalName": set.logical(),
        "AttributeOf": null,
        "ColumnNumber": column,
        "IsCustomAttribute": custom,
        "IsManaged": !custom,
        "IsPrimaryId": false,
        "IsPrimaryName": false,
        "IsValidForRead": true,
        "IsValidForCreate": true,
        "IsValidForUpdate": true,
        "IsValidForForm": true,
        "IsValidForGrid": true,
        "IsRetrievable": true,
        "IsFilterable": true,
        "IsSearchable": true,
        "IsSecured": false,
        "IsLogical": false,
        "SourceType": 0,
        "IntroducedVersion": if custom { "1.0.0.0" } else { "5.0.0.0" },
        "DeprecatedVersion": null,
        "Description": label("", "", !custom),
        "RequiredLevel": {
            "Value": "None",
            "CanBeChanged": true,
            "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings"
        },
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// One attribute with its type-specific properties.
fn attribute(set: Set, a: &Attr, column: u32) -> Map<String, Value> {
    let mut m = base_attribute(set, a.logical, a.custom, column);
    let id = attribute_id(set, a.logical);
    let code = a.kind.type_code();
    let primary_id = a.logical == format!("{}id", set.logical());
    let read_only = matches!(
        a.logical,
        "createdon"
            | "modifiedon"
            | "versionnumber"
            | "createdby"
            | "modifiedby"
            | "fullname"
            | "owningbusinessunit"
            | "exchangerate"
            | "address1_composite"
    );
    let mut put = |k: &str, v: Value| {
        m.insert(k.into(), v);
    };
    put(
        "@odata.type",
        Value::String(format!("#{NS}{}", a.kind.metadata_type())),
    );
    put("AttributeType", Value::String(code.into()));
    put(
        "AttributeTypeName",
        json!({ "Value": format!("{code}Type") }),
    );
    put("DisplayName", label(a.display, &id, !a.custom));
    put("IsPrimaryId", Value::Bool(primary_id));
    put(
        "IsPrimaryName",
        Value::Bool(matches!(
            (set, a.logical),
            (Set::Contacts | Set::Leads | Set::SystemUsers, "fullname")
                | (
                    Set::Accounts
                        | Set::Opportunities
                        | Set::Quotes
                        | Set::SalesOrders
                        | Set::Invoices
                        | Set::Products,
                    "name"
                )
        )),
    );
    if read_only || primary_id {
        put("IsValidForUpdate", Value::Bool(false));
        put("IsValidForCreate", Value::Bool(primary_id));
    }
    match a.kind {
        Kind::String => {
            let format =
                if a.logical.starts_with("emailaddress") || a.logical == "internalemailaddress" {
                    "Email"
                } else if a.logical == "websiteurl" {
                    "Url"
                } else if a.logical.starts_with("telephone")
                    || a.logical == "fax"
                    || a.logical == "mobilephone"
                {
                    "Phone"
                } else {
                    "Text"
                };
            put("Format", Value::String(format.into()));
            put("FormatName", json!({ "Value": format }));
            put(
                "MaxLength",
                json!(if a.logical == "name" { 160 } else { 100 }),
            );
            put("IsLocalizable", Value::Bool(false));
        }
        Kind::Memo => {
            put("Format", Value::String("TextArea".into()));
            put("MaxLength", json!(2000));
            put("IsLocalizable", Value::Bool(false));
        }
        Kind::Integer => {
            put("Format", Value::String("None".into()));
            put("MinValue", json!(-2_147_483_648i64));
            put("MaxValue", json!(2_147_483_647i64));
        }
        Kind::BigInt => {
            put("MinValue", json!(i64::MIN));
            put("MaxValue", json!(i64::MAX));
        }
        Kind::Money => {
            put("Precision", json!(2));
            put("PrecisionSource", json!(2));
            put("IsBaseCurrency", Value::Bool(false));
            put("CalculationOf", Value::Null);
            put("MinValue", json!(-922_337_203_685_477.0));
            put("MaxValue", json!(922_337_203_685_477.0));
        }
        Kind::Decimal => {
            put(
                "Precision",
                json!(if a.logical == "exchangerate" { 10 } else { 2 }),
            );
            put("MinValue", json!(-100_000_000_000.0));
            put("MaxValue", json!(100_000_000_000.0));
        }
        Kind::Double => {
            put("Precision", json!(5));
            put("MinValue", json!(-180.0));
            put("MaxValue", json!(180.0));
        }
        Kind::Boolean => {
            put("DefaultValue", Value::Bool(false));
        }
        Kind::DateTime(format, behavior) => {
            put(
                "Format",
                Value::String(
                    match format {
                        DateFormat::DateOnly => "DateOnly",
                        DateFormat::DateAndTime => "DateAndTime",
                    }
                    .into(),
                ),
            );
            put(
                "DateTimeBehavior",
                json!({ "Value": match behavior {
                    Behavior::DateOnly => "DateOnly",
                    Behavior::UserLocal => "UserLocal",
                } }),
            );
            put(
                "MinSupportedValue",
                Value::String("1753-01-01T00:00:00Z".into()),
            );
            put(
                "MaxSupportedValue",
                Value::String("9999-12-30T23:59:59Z".into()),
            );
        }
        Kind::Picklist | Kind::State | Kind::Status => {
            put("DefaultFormValue", json!(-1));
        }
        Kind::Lookup | Kind::Customer | Kind::Owner => {
            put("Targets", json!(a.targets));
            put("Format", Value::Null);
        }
        Kind::Uniqueidentifier => {}
    }
    m
}

/// An attribute as answered: projected on `$select`, with its expanded `OptionSet` (an
/// expanded navigation property is served whatever `$select` says).
fn shaped(
    ent: &Entity,
    m: Map<String, Value>,
    select: Option<&[String]>,
    option_sets: bool,
) -> Map<String, Value> {
    let os = if option_sets {
        option_set(ent, &m)
    } else {
        None
    };
    let mut out = project(m, select);
    if let Some(os) = os {
        out.insert("OptionSet".into(), os);
    }
    out
}

/// The `OptionSet` navigation property of a choice, state, status or yes/no attribute.
fn option_set(ent: &Entity, m: &Map<String, Value>) -> Option<Value> {
    let set = ent.set;
    let name = m
        .get("LogicalName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let ty = m
        .get("AttributeType")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let id = attribute_id(set, &format!("{name}/options"));
    let option = |v: i64, l: &str| json!({ "Value": v, "Label": label(l, &format!("{id}/{v}"), true), "Description": label("", "", true), "Color": null, "IsManaged": true, "ExternalValue": "", "MetadataId": null, "HasChanged": null });
    let options = match ty.as_str() {
        "State" => states(set)
            .iter()
            .map(|(v, l)| {
                let mut o = option(*v, l);
                let default = statuses(set)
                    .iter()
                    .find(|(_, s, _)| s == v)
                    .map(|(st, _, _)| *st);
                o["DefaultStatus"] = json!(default);
                o["InvariantName"] = json!(l);
                o
            })
            .collect(),
        "Status" => statuses(set)
            .iter()
            .map(|(v, s, l)| {
                let mut o = option(*v, l);
                o["State"] = json!(s);
                o["TransitionData"] = Value::Null;
                o
            })
            .collect(),
        "Picklist" => picklist_options(ent, &name)
            .iter()
            .map(|(v, l)| option(*v, l))
            .collect::<Vec<_>>(),
        "Boolean" => {
            return Some(json!({
                "MetadataId": id, "HasChanged": null, "Name": format!("{}_{name}", set.logical()),
                "IsGlobal": false, "IsCustomOptionSet": false, "OptionSetType": "Boolean",
                "TrueOption": option(1, "Yes"), "FalseOption": option(0, "No"),
            }));
        }
        _ => return None,
    };
    Some(json!({
        "MetadataId": id, "HasChanged": null, "Name": format!("{}_{name}", set.logical()),
        "IsGlobal": false, "IsCustomOptionSet": ent.attrs.iter().any(|a| a.logical == name && a.custom),
        "OptionSetType": ty, "Options": options,
    }))
}

/// The labels of a choice attribute (deduplicated: the generators weight some values by
/// repeating them).
fn picklist_options(ent: &Entity, logical: &str) -> Vec<(i64, &'static str)> {
    let mut out: Vec<(i64, &'static str)> = Vec::new();
    for a in ent.attrs.iter().filter(|a| a.logical == logical) {
        if let Gen::Choice { labels, .. } = a.generator {
            for &(v, l) in labels {
                if !out.iter().any(|(x, _)| *x == v) {
                    out.push((v, l));
                }
            }
        }
    }
    out.sort_unstable_by_key(|(v, _)| *v);
    out
}

/// A `Label`: the org's one language (1033) as both the user label and the only localized one.
fn label(text: &str, id: &str, managed: bool) -> Value {
    if text.is_empty() {
        return json!({ "LocalizedLabels": [], "UserLocalizedLabel": null });
    }
    let l = json!({
        "Label": text,
        "LanguageCode": 1033,
        "IsManaged": managed,
        "MetadataId": guid(&format!("{id}/label")),
        "HasChanged": null,
    });
    json!({ "LocalizedLabels": [l.clone()], "UserLocalizedLabel": l })
}

/// A stable GUID for a metadata item.
fn guid(name: &str) -> String {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3);
    }
    let (hi, lo) = (mix(h), mix(h ^ 0x5EED));
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        0x4000 | (hi & 0x0fff),
        0x8000 | ((lo >> 48) & 0x3fff),
        lo & 0xffff_ffff_ffff
    )
}

fn table_id(set: Set) -> String {
    guid(&format!("entity/{}", set.logical()))
}

fn attribute_id(set: Set, logical: &str) -> String {
    guid(&format!("attribute/{}/{logical}", set.logical()))
}

/// A plausible `SchemaName`: Pascal case per `_`-separated part; a custom prefix stays as is.
fn schema_name(logical: &str) -> String {
    let mut out = String::with_capacity(logical.len());
    for (i, part) in logical.split('_').enumerate() {
        if i > 0 {
            out.push('_');
        }
        let custom_prefix =
            i == 0 && logical.contains('_') && part.len() <= 5 && !part.starts_with("address");
        let mut chars = part.chars();
        if let (Some(first), false) = (chars.next(), custom_prefix) {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        } else {
            out.push_str(part);
        }
    }
    out
}

fn is_enum_type(ty: &str) -> bool {
    ["Picklist", "State", "Status"]
        .iter()
        .any(|t| ty == format!("#{NS}{t}AttributeMetadata"))
}

/// Keeps `@odata.type`, `MetadataId` and the selected properties (a selected property the
/// instance's type lacks is left out; one it has but the sandbox does not model is null).
fn project(mut m: Map<String, Value>, select: Option<&[String]>) -> Map<String, Value> {
    let Some(names) = select else {
        return m;
    };
    let ty = m
        .get("@odata.type")
        .and_then(Value::as_str)
        .map(|t| t.trim_start_matches('#').trim_start_matches(NS).to_string());
    let mut out = Map::new();
    for k in ["@odata.type", "MetadataId"] {
        if let Some(v) = m.remove(k) {
            out.insert(k.into(), v);
        }
    }
    for n in names {
        let (qualifier, prop) = match n.rsplit_once('/') {
            Some((q, p)) => (q.strip_prefix(NS), p),
            None => (None, n.as_str()),
        };
        if let Some(q) = qualifier {
            let applies = ty.as_deref().is_some_and(|t| {
                t == q || (q == "EnumAttributeMetadata" && is_enum_type(&format!("#{NS}{t}")))
            });
            if !applies {
                continue;
            }
        }
        let v = m.remove(prop);
        let declared_here = ty.as_deref().is_none_or(|t| has_prop(t, prop));
        match v {
            Some(v) => {
                out.insert(prop.to_string(), v);
            }
            None if declared_here && qualifier.is_none() => {
                out.insert(prop.to_string(), Value::Null);
            }
            None => {}
        }
    }
    out
}

/// Checks a `$select` against the declared type; returns the names.
fn checked_select(select: Option<&str>, declared: &str) -> Result<Option<Vec<String>>, Reject> {
    let Some(list) = select.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let mut names = Vec::new();
    for n in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let ok = match n.rsplit_once('/') {
            Some((q, p)) => q
                .strip_prefix(NS)
                .is_some_and(|t| derives_from(t, declared) && has_prop(t, p)),
            None => has_prop(declared, n),
        };
        if !ok {
            return Err(unknown_property(n, declared));
        }
        names.push(n.to_string());
    }
    Ok(Some(names))
}

fn derives_from(t: &str, base: &str) -> bool {
    t == base
        || base == "AttributeMetadata" && TYPE_PROPS.iter().any(|(n, _)| *n == t)
        || base == "EnumAttributeMetadata"
            && matches!(
                t,
                "PicklistAttributeMetadata" | "StateAttributeMetadata" | "StatusAttributeMetadata"
            )
}

/// Whether metadata type `t` (or a base type of it) declares `prop` (real CSDL names).
fn has_prop(t: &str, prop: &str) -> bool {
    if t == "EntityMetadata" {
        return ENTITY_PROPS.contains(&prop);
    }
    if ATTRIBUTE_PROPS.contains(&prop) {
        return true;
    }
    let own = |name: &str| {
        TYPE_PROPS
            .iter()
            .find(|(n, _)| *n == name)
            .is_some_and(|(_, p)| p.contains(&prop))
    };
    own(t)
        || (matches!(
            t,
            "PicklistAttributeMetadata" | "StateAttributeMetadata" | "StatusAttributeMetadata"
        ) && own("EnumAttributeMetadata"))
}

/// The metadata query options.
struct Query {
    select: Option<String>,
    filter: Option<String>,
    expand: Option<String>,
}

impl Query {
    fn from_params(params: &[Param]) -> Result<Query, Reject> {
        for p in params {
            if p.key.starts_with('$')
                && !["$select", "$filter", "$expand"].contains(&p.key.as_str())
            {
                return Err(Reject::bad(format!(
                    "The query parameter {} is not supported",
                    p.key
                )));
            }
        }
        Ok(Query {
            select: odata::get(params, "$select").map(str::to_string),
            filter: odata::get(params, "$filter").map(str::to_string),
            expand: odata::get(params, "$expand").map(str::to_string),
        })
    }
}

/// `$expand=Attributes($select=…;$filter=…)` on tables.
struct AttributeExpand {
    select: Option<Vec<String>>,
    filter: Filter,
}

impl AttributeExpand {
    fn parse(expand: Option<&str>) -> Result<Option<AttributeExpand>, Reject> {
        let Some(text) = expand.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let (name, inner) = match text.split_once('(') {
            Some((n, rest)) => (
                n.trim(),
                rest.strip_suffix(')').ok_or_else(|| syntax(text))?.trim(),
            ),
            None => (text, ""),
        };
        if name != "Attributes" {
            return Err(if ENTITY_PROPS.contains(&name) {
                Reject::bad(format!("The sandbox expands only Attributes, not {name}."))
            } else {
                unknown_property(name, "EntityMetadata")
            });
        }
        let (mut select, mut filter) = (None, None);
        for opt in inner.split(';').map(str::trim).filter(|o| !o.is_empty()) {
            match opt.split_once('=') {
                Some(("$select", v)) => select = Some(v.to_string()),
                Some(("$filter", v)) => filter = Some(v.to_string()),
                _ => {
                    return Err(Reject::bad(format!(
                        "The sandbox does not support {opt} in $expand."
                    )));
                }
            }
        }
        Ok(Some(AttributeExpand {
            select: checked_select(select.as_deref(), "AttributeMetadata")?,
            filter: Filter::parse(filter.as_deref(), "AttributeMetadata")?,
        }))
    }
}

/// The `(…)` of `@odata.context` for a table query.
fn context_select(select: Option<&[String]>, expand: Option<&AttributeExpand>) -> String {
    let mut parts: Vec<String> = select.map(<[String]>::to_vec).unwrap_or_default();
    if let Some(x) = expand {
        match &x.select {
            Some(s) => parts.push(format!("Attributes({})", s.join(","))),
            None => parts.push("Attributes()".into()),
        }
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("({})", parts.join(","))
    }
}

/// A conjunction of `Property eq|ne literal` (literals: true, false, null, numbers, 'text',
/// `Microsoft.Dynamics.CRM.AttributeTypeCode'Picklist'`); `A/B` reaches into a complex value.
#[derive(Default)]
struct Filter(Vec<(String, bool, Value)>);

impl Filter {
    fn parse(text: Option<&str>, declared: &str) -> Result<Filter, Reject> {
        let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(Filter::default());
        };
        let mut conds = Vec::new();
        for clause in split_and(text) {
            let clause = clause
                .trim()
                .trim_start_matches('(')
                .trim_end_matches(')')
                .trim();
            let mut it = clause.splitn(3, ' ');
            let (Some(prop), Some(op), Some(lit)) = (it.next(), it.next(), it.next()) else {
                return Err(unsupported_filter(text));
            };
            let eq = match op.to_ascii_lowercase().as_str() {
                "eq" => true,
                "ne" => false,
                _ => return Err(unsupported_filter(text)),
            };
            let head = prop.split('/').next().unwrap_or(prop);
            if !has_prop(declared, head) {
                return Err(unknown_property(head, declared));
            }
            let lit = lit.trim();
            let value = match lit {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                l if l.ends_with('\'') && l.contains('\'') => {
                    let start = l.find('\'').unwrap_or(0) + 1;
                    Value::String(l[start..l.len() - 1].replace("''", "'"))
                }
                l => match l.parse::<i64>() {
                    Ok(n) => json!(n),
                    Err(_) => return Err(unsupported_filter(text)),
                },
            };
            conds.push((prop.to_string(), eq, value));
        }
        Ok(Filter(conds))
    }

    fn keep(&self, m: &Map<String, Value>) -> bool {
        self.0.iter().all(|(path, eq, want)| {
            let mut parts = path.split('/');
            let mut v = parts.next().and_then(|p| m.get(p)).unwrap_or(&Value::Null);
            for p in parts {
                v = v.get(p).unwrap_or(&Value::Null);
            }
            (v == want) == *eq
        })
    }
}

/// Splits on ` and ` outside quotes (case-insensitive).
fn split_and(text: &str) -> Vec<&str> {
    let lower = text.to_ascii_lowercase();
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\'' {
            quoted = !quoted;
        } else if !quoted && lower[i..].starts_with(" and ") {
            out.push(&text[start..i]);
            i += 5;
            start = i;
            continue;
        }
        i += 1;
    }
    out.push(&text[start..]);
    out
}

enum Key {
    Logical(String),
    Id(String),
}

/// `(LogicalName='x')rest` or `(<guid>)rest`.
fn split_key(s: &str) -> Option<(Key, &str)> {
    let inner = s.strip_prefix('(')?;
    let (key, tail) = inner.split_once(')')?;
    let key = key.trim();
    if let Some(v) = key.strip_prefix("LogicalName=") {
        let v = v.trim().strip_prefix('\'')?.strip_suffix('\'')?;
        return Some((Key::Logical(v.to_string()), tail));
    }
    let v = key.trim_matches('\'');
    (v.len() == 36).then(|| (Key::Id(v.to_string()), tail))
}

fn syntax(rest: &str) -> Reject {
    Reject::bad(format!(
        "Bad Request - Error in query syntax: EntityDefinitions{rest}"
    ))
}

/// What Dataverse answers for a table the org does not have.
fn unknown_entity(key: &Key) -> Reject {
    let message = match key {
        Key::Logical(l) => format!(
            "The entity with a name = '{l}' with namemapping = 'Logical' was not found in the MetadataCache."
        ),
        Key::Id(id) => {
            format!("Could not find an entity with metadata id {id} in the MetadataCache.")
        }
    };
    Reject {
        status: 404,
        code: "0x80041102",
        message,
    }
}

fn not_found_segment(segment: &str) -> Reject {
    Reject {
        status: 404,
        code: "0x8006088a",
        message: format!(
            "Resource not found for the segment '{}'.",
            segment.trim_start_matches('/')
        ),
    }
}

fn unknown_property(name: &str, declared: &str) -> Reject {
    Reject::bad(format!(
        "Could not find a property named '{name}' on type '{NS}{declared}'."
    ))
}

fn unsupported_filter(text: &str) -> Reject {
    Reject::bad(format!(
        "The sandbox evaluates only eq / ne comparisons joined by 'and' on metadata; cannot evaluate $filter '{text}'."
    ))
}

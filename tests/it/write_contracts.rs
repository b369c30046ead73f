//! Every request body the sink and `mlc webhooks register` send to Pipedrive and Business
//! Central conforms to the official specs, not only to our sandbox: the bodies the sandboxes
//! received are checked against `tests/fixtures/specs/write_contracts.json`, extracted from the
//! Pipedrive OpenAPI files and Business Central's `$metadata` by
//! `tests/fixtures/specs/extract.py` (required fields, types, enums and lengths; entity
//! properties with their Edm types, MaxLength and enum members; the lines of a deep insert).

use serde_json::{Map, Value};

use ml_connector::loaders::sink::Sink;
use ml_connector::run::{Context, RunRequest, run_many};
use ml_connector::sandbox::{Sandbox, SandboxOptions};

const CONTRACTS: &str = include_str!("../fixtures/specs/write_contracts.json");

/// The properties and required fields of an OpenAPI object schema, `allOf` parts merged.
fn object_parts(s: &Value, props: &mut Map<String, Value>, required: &mut Vec<String>) {
    if let Some(p) = s.get("properties").and_then(Value::as_object) {
        props.extend(p.clone());
    }
    if let Some(r) = s.get("required").and_then(Value::as_array) {
        required.extend(r.iter().filter_map(|v| v.as_str().map(String::from)));
    }
    for part in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        object_parts(part, props, required);
    }
}

/// Checks `v` against the OpenAPI schema `s` (the subset the Pipedrive specs use).
fn check_schema(v: &Value, s: &Value, at: &str, errors: &mut Vec<String>) {
    if v.is_null() {
        if s.get("nullable") != Some(&Value::Bool(true)) {
            errors.push(format!("{at}: null where the spec does not allow it"));
        }
        return;
    }
    for part in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if part.get("properties").is_none() {
            check_schema(v, part, at, errors);
        }
    }
    let ty = s.get("type").and_then(Value::as_str);
    let ok = match ty {
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        Some("array") => v.is_array(),
        Some("object") => v.is_object(),
        _ => true,
    };
    if !ok {
        errors.push(format!("{at}: {v} is not of type {}", ty.unwrap_or("?")));
        return;
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        errors.push(format!("{at}: {v} is not one of {e:?}"));
    }
    if let (Some(max), Some(text)) = (s.get("maxLength").and_then(Value::as_u64), v.as_str())
        && text.chars().count() as u64 > max
    {
        errors.push(format!("{at}: longer than {max} characters"));
    }
    if let Some(items) = s.get("items") {
        for (i, item) in v.as_array().into_iter().flatten().enumerate() {
            check_schema(item, items, &format!("{at}[{i}]"), errors);
        }
    }
    if let Some(obj) = v.as_object() {
        let (mut props, mut required) = (Map::new(), Vec::new());
        object_parts(s, &mut props, &mut required);
        for r in &required {
            if !obj.contains_key(r) {
                errors.push(format!("{at}: required `{r}` missing"));
            }
        }
        // An object schema without properties (custom fields) takes any keys.
        if props.is_empty() {
            return;
        }
        for (k, val) in obj {
            match props.get(k) {
                Some(ps) => check_schema(val, ps, &format!("{at}.{k}"), errors),
                None => errors.push(format!("{at}: `{k}` is not a property in the spec")),
            }
        }
    }
}

/// Checks a Business Central body against entity type `ty` of the `$metadata` extract.
fn check_entity(v: &Value, ty: &str, bc: &Value, at: &str, errors: &mut Vec<String>) {
    let Some(t) = bc["types"].get(ty) else {
        errors.push(format!("{at}: no entity type `{ty}` in the extract"));
        return;
    };
    let Some(obj) = v.as_object() else {
        errors.push(format!("{at}: not an object"));
        return;
    };
    for (k, val) in obj {
        if k.starts_with("@odata.") {
            continue;
        }
        let at = format!("{at}.{k}");
        if let Some(nav) = t["navigation"].get(k).and_then(Value::as_str) {
            let inner = nav
                .trim_start_matches("Collection(")
                .trim_end_matches(')')
                .rsplit('.')
                .next()
                .unwrap_or_default();
            for (i, line) in val.as_array().into_iter().flatten().enumerate() {
                check_entity(line, inner, bc, &format!("{at}[{i}]"), errors);
            }
            continue;
        }
        let Some(p) = t["properties"].get(k) else {
            errors.push(format!("{at}: not a property of {ty}"));
            continue;
        };
        let edm = p["type"].as_str().unwrap_or_default();
        let ok = match (edm, val) {
            (_, Value::Null) => true,
            ("Edm.String", Value::String(s)) => p["max_length"]
                .as_u64()
                .is_none_or(|m| s.chars().count() as u64 <= m),
            ("Edm.Guid", Value::String(s)) => {
                s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
            }
            ("Edm.Date", Value::String(s)) => {
                chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
            }
            ("Edm.DateTimeOffset", Value::String(s)) => {
                chrono::DateTime::parse_from_rfc3339(s).is_ok()
            }
            ("Edm.Decimal" | "Edm.Double" | "Edm.Int32" | "Edm.Int64", Value::Number(_)) => true,
            ("Edm.Boolean", Value::Bool(_)) => true,
            (enum_ty, Value::String(s)) if enum_ty.starts_with("Microsoft.NAV.") => bc["enums"]
                [enum_ty.trim_start_matches("Microsoft.NAV.")]
            .as_array()
            .is_some_and(|m| m.iter().any(|x| x == s)),
            _ => false,
        };
        if !ok {
            errors.push(format!(
                "{at}: {val} does not fit {edm} {}",
                p["max_length"]
            ));
        }
    }
}

/// Both Pipedrive ↔ Business Central flows and `mlc webhooks register` against the sandboxes;
/// every body the sandboxes received is checked against the specs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_conforms_to_the_official_specs() {
    let contracts: Value = serde_json::from_str(CONTRACTS).unwrap();
    let sb = Sandbox::start(
        SandboxOptions {
            scale: 60,
            retry_after_secs: 0,
            ..SandboxOptions::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = ml_connector::demo::write_project(
        dir.path(),
        &sb,
        "[serve]\npublic_url = \"https://elt.example.com\"\n[serve.webhooks.pd]\nobjects = [\"deal\", \"organization\"]\n",
        false,
    )
    .unwrap();
    let ctx = Context::open(config).unwrap();
    let sync = |name: &'static str, streams: &'static [&'static str]| {
        let ctx = &ctx;
        async move {
            let conn = ctx.config.connection(name).unwrap();
            let patterns: Vec<String> = streams.iter().map(|s| s.to_string()).collect();
            for (label, r) in run_many(ctx, &[conn], &patterns, &RunRequest::Sync { full: false })
                .await
                .unwrap()
            {
                r.unwrap_or_else(|e| panic!("{label}: {e}"));
            }
        }
    };
    // Pipedrive → Business Central: customers, contacts, items, sales orders with lines.
    sync("pd", &[]).await;
    let forward = Sink::open(&ctx, "pipedrive_to_business_central").unwrap();
    let t = forward.target(None).unwrap();
    forward
        .apply(&forward.plan().await.unwrap(), &t)
        .await
        .unwrap();
    // Business Central → Pipedrive: a customer and an item changed in BC go back.
    let links = ctx
        .state
        .sink_links("pipedrive_to_business_central")
        .unwrap();
    let first = |m: &str| {
        links
            .iter()
            .find(|(mapping, _, _)| mapping == m)
            .map(|(_, _, l)| l.target_key.clone())
            .unwrap()
    };
    let bc_streams: &[&str] = &["business_central.customer", "business_central.item"];
    sync("erp", bc_streams).await;
    sb.business_central_set_field(
        0,
        "customers",
        &first("organization"),
        "city",
        "Rotterdam".into(),
    )
    .unwrap();
    sb.business_central_set_field(0, "items", &first("product"), "unitPrice", 249.5.into())
        .unwrap();
    sync("erp", bc_streams).await;
    let back = Sink::open(&ctx, "business_central_to_pipedrive").unwrap();
    let t = back.target(None).unwrap();
    // Pipedrive's field definitions: every field the flow writes exists.
    let pre = back.preflight(&t).await.unwrap();
    assert!(pre.ok() && pre.unchecked.is_empty(), "{pre:?}");
    back.apply(&back.plan().await.unwrap(), &t).await.unwrap();
    // The Pipedrive webhooks.
    ml_connector::serve::register::register(
        &ctx.config,
        &ctx.vault,
        ctx.state.clone(),
        ctx.config.connection("pd").unwrap(),
    )
    .await
    .unwrap();

    let mut errors = Vec::new();
    let pd_writes = sb.pipedrive_writes();
    assert!(pd_writes.iter().any(|w| w.entity == "webhooks"));
    assert!(pd_writes.iter().any(|w| w.method == "PATCH"));
    for w in &pd_writes {
        let op = if w.entity == "webhooks" {
            "POST /api/v1/webhooks".to_string()
        } else {
            format!("{} /api/v2/{}/{{id}}", w.method, w.entity)
        };
        let schema = &contracts["pipedrive"][&op];
        assert!(schema.is_object(), "no spec extract for {op}");
        check_schema(&w.fields, schema, &op, &mut errors);
    }
    let bc = &contracts["business_central"];
    let bc_writes = sb.business_central_writes();
    assert!(bc_writes.iter().any(|w| w.set == "salesOrders"));
    let mut checked = 0;
    for w in bc_writes.iter().filter(|w| w.fields.is_object()) {
        let set = w.set.split('/').next().unwrap_or_default();
        let Some(ty) = bc["sets"][set].as_str() else {
            errors.push(format!("{} {}: no entity set extract", w.method, w.set));
            continue;
        };
        check_entity(
            &w.fields,
            ty,
            bc,
            &format!("{} {}", w.method, w.set),
            &mut errors,
        );
        checked += 1;
    }
    assert!(checked > 10, "{checked} Business Central bodies");
    assert!(errors.is_empty(), "{errors:#?}");
}

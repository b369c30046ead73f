//! What a Looker client discovers before it runs anything: the saved Looks (`GET looks`,
//! `GET looks/{id}`) and the LookML model with its explores and their fields
//! (`GET lookml_models`, `GET lookml_models/{name}`, `GET lookml_models/{name}/explores/{e}`),
//! in the shapes of the 4.0 OpenAPI (shared/specs/looker/Looker.4.0.oas.json: `Look`,
//! `LookWithQuery`, `LookmlModel`, `LookmlModelNavExplore`, `LookmlModelExplore`,
//! `LookmlModelExploreField`), trimmed to the properties a client reads. `fields=a,b,c(x,y)`
//! keeps only the named properties (and sub-properties), as Looker does.

use serde_json::{Map, Value, json};

use super::{EXPLORES, Explore, FieldDef, LOOKS, MODEL, Query, SavedLook};

/// The model's label and LookML project.
const MODEL_LABEL: &str = "Finance";
const PROJECT: &str = "sandbox_finance";
const CONNECTION: &str = "sandbox_warehouse";

fn folder() -> Value {
    json!({
        "name": "Shared", "parent_id": null, "id": "1", "content_metadata_id": "1",
        "created_at": "2024-01-02T08:00:00.000+00:00", "creator_id": "1", "child_count": 0,
        "external_id": null, "is_embed": false, "is_embed_shared_root": false,
        "is_embed_users_root": false, "is_personal": false, "is_personal_descendant": false,
        "is_shared_root": true, "is_users_root": false,
        "can": { "index": true, "show": true, "create": true, "update": true, "destroy": false },
    })
}

/// One Look; `query` (a `LookWithQuery`) when given.
pub fn look(base: &str, l: &SavedLook, query: Option<&Query>) -> Value {
    let mut v = json!({
        "can": { "index": true, "show": true, "copy": true, "run": true, "show_history": true,
                 "find_and_replace": true, "update": true, "destroy": true, "recover": true,
                 "move_content": true },
        "content_metadata_id": format!("10{}", l.id),
        "id": l.id,
        "title": l.title,
        "user_id": "7",
        "content_favorite_id": null,
        "created_at": l.created_at,
        "deleted": false,
        "deleted_at": null,
        "deleter_id": null,
        "description": l.description,
        "embed_url": format!("{base}/embed/looks/{}", l.id),
        "excel_file_url": format!("{base}/looks/{}.xlsx", l.id),
        "favorite_count": 0,
        "google_spreadsheet_formula": null,
        "image_embed_url": format!("{base}/embed/looks/{}.png", l.id),
        "is_run_on_load": false,
        "last_accessed_at": l.updated_at,
        "last_updater_id": "7",
        "last_viewed_at": l.updated_at,
        "model": { "id": MODEL, "label": MODEL_LABEL },
        "public": false,
        "public_slug": null,
        "public_url": null,
        "query_id": l.query_id,
        "short_url": format!("/x/sbx{}", l.id),
        "folder": folder(),
        "folder_id": "1",
        "updated_at": l.updated_at,
        "user_name": "Sandbox Analyst",
        "view_count": l.view_count,
        "usage_count": l.view_count * 3,
        "is_owner_disabled": false,
    });
    if let (Some(q), Value::Object(m)) = (query, &mut v) {
        m.insert(
            "query".into(),
            serde_json::to_value(q).unwrap_or(Value::Null),
        );
        m.insert("url".into(), Value::from(format!("/looks/{}", l.id)));
    }
    v
}

/// Every saved Look.
pub fn looks(base: &str) -> Value {
    Value::Array(LOOKS.iter().map(|l| look(base, l, None)).collect())
}

fn nav_explore(name: &str, label: &str, description: &str) -> Value {
    json!({
        "name": name, "description": description, "label": label, "hidden": false,
        "group_label": MODEL_LABEL,
    })
}

/// The LookML model (`name` = [`MODEL`]), with its explores.
pub fn model() -> Value {
    json!({
        "can": { "index": true, "show": true, "create": false, "update": false, "destroy": false },
        "allowed_db_connection_names": [CONNECTION],
        "explores": EXPLORES.iter().map(|(n, l, d)| nav_explore(n, l, d)).collect::<Vec<_>>(),
        "has_content": true,
        "label": MODEL_LABEL,
        "name": MODEL,
        "project_name": PROJECT,
        "unlimited_db_connections": false,
    })
}

/// `budget` → `Budget`.
fn capital(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

fn explore_field(f: &FieldDef) -> Value {
    let (view, short) = f.name.split_once('.').unwrap_or(("", f.name));
    let measure = f.agg.is_some();
    let numeric = measure || f.ty == "number";
    let timeframe = f.ty.starts_with("date_");
    json!({
        "align": if numeric { "right" } else { "left" },
        "can_filter": true,
        "category": if measure { "measure" } else { "dimension" },
        "default_filter_value": null,
        "description": "",
        "dimension_group": if timeframe { Value::from(short.rsplit_once('_').map_or(short, |p| p.0)) } else { Value::Null },
        "enumerations": null,
        "field_group_label": null,
        "field_group_variant": f.label,
        "hidden": false,
        "is_filter": false,
        "is_numeric": numeric,
        "is_timeframe": timeframe,
        "label": format!("{} {}", capital(view), f.label),
        "label_short": f.label,
        "measure": measure,
        "name": f.name,
        "primary_key": false,
        "project_name": PROJECT,
        "scope": view,
        "sortable": true,
        "sql": format!("${{TABLE}}.{short}"),
        "suggestable": !numeric,
        "tags": [],
        "type": f.ty,
        "value_format": null,
        "view": view,
        "view_label": capital(view),
    })
}

/// One explore of the model with its fields (`None`: no such explore).
pub fn explore(name: &str) -> Option<Value> {
    let e = Explore::by_name(name)?;
    let (_, label, description) = EXPLORES.iter().find(|x| x.0 == name)?;
    let (measures, dims): (Vec<&FieldDef>, Vec<&FieldDef>) =
        e.fields().iter().partition(|f| f.agg.is_some());
    Some(json!({
        "id": format!("{MODEL}::{name}"),
        "name": name,
        "description": description,
        "label": label,
        "title": label,
        "scopes": [name],
        "can_total": true,
        "can_save": true,
        "can_explain": true,
        "can_pivot_in_db": true,
        "can_subtotal": true,
        "has_timezone_support": true,
        "connection_name": CONNECTION,
        "dialect_name": "bigquery_standard_sql",
        "project_name": PROJECT,
        "model_name": MODEL,
        "view_name": name,
        "hidden": false,
        "sql_table_name": format!("`sandbox.finance.{name}` AS {name}"),
        "group_label": MODEL_LABEL,
        "tags": [],
        "errors": [],
        "joins": [],
        "fields": {
            "dimensions": dims.into_iter().map(explore_field).collect::<Vec<_>>(),
            "measures": measures.into_iter().map(explore_field).collect::<Vec<_>>(),
            "filters": [],
            "parameters": [],
        },
    }))
}

/// Splits `a,b(c,d),e` at the top-level commas.
fn split_top(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out.into_iter().filter(|p| !p.is_empty()).collect()
}

fn select_object(m: &Map<String, Value>, spec: &str) -> Value {
    let mut out = Map::new();
    for part in split_top(spec) {
        let (name, inner) = match part.split_once('(') {
            Some((n, rest)) => (n.trim(), Some(rest.trim_end_matches(')'))),
            None => (part, None),
        };
        if let Some(v) = m.get(name) {
            let v = match inner {
                Some(inner) => select(v, inner),
                None => v.clone(),
            };
            out.insert(name.to_string(), v);
        }
    }
    Value::Object(out)
}

/// Keeps the properties `spec` names (`id,title,model(id)`), in every element of an array.
pub fn select(v: &Value, spec: &str) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.iter().map(|i| select(i, spec)).collect()),
        Value::Object(m) => select_object(m, spec),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_selects_nested_properties() {
        let v = looks("http://x");
        let s = select(&v, "id,title,model(id),folder(id,name)");
        assert_eq!(
            s[0],
            json!({"id": "1", "title": "Pipeline by stage", "model": {"id": "finance"},
                   "folder": {"id": "1", "name": "Shared"}})
        );
        assert!(explore("budget").is_some() && explore("nope").is_none());
    }
}

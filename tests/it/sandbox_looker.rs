//! The Looker fake over raw HTTP: login (form body, `token` header), query validation, Looks,
//! the query-task lifecycle one poll at a time, 202/204 results, `json_bi` metadata, the
//! 5000-row default limit and `-1`, and the request limit's 429 with `Retry-After`.

use std::time::Duration;

use ml_connector::sandbox::{Sandbox, SandboxOptions};
use serde_json::{Value, json};

async fn start(scale: u64) -> Sandbox {
    Sandbox::start(
        SandboxOptions {
            scale,
            ..SandboxOptions::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

fn api(sb: &Sandbox, path: &str) -> String {
    format!("{}/looker/api/4.0/{path}", sb.base_url())
}

async fn login(sb: &Sandbox) -> String {
    let r = reqwest::Client::new()
        .post(api(sb, "login"))
        .form(&[
            ("client_id", "sandbox-looker-client"),
            ("client_secret", "sandbox-looker-secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["refresh_token"],
        Value::Null,
        "Looker issues no refresh token"
    );
    assert!(v["expires_in"].as_u64().unwrap() > 0);
    v["access_token"].as_str().unwrap().to_string()
}

async fn call(
    sb: &Sandbox,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut rb = reqwest::Client::new()
        .request(method, api(sb, path))
        .header("authorization", format!("token {token}"));
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// Creates a query and a task for it; returns the task id.
async fn start_task(sb: &Sandbox, token: &str, query: Value, limit: Option<&str>) -> String {
    let (s, _, q) = call(sb, token, reqwest::Method::POST, "queries", Some(query)).await;
    assert_eq!(s, 200, "{q}");
    let path = match limit {
        Some(l) => format!("query_tasks?limit={l}"),
        None => "query_tasks".into(),
    };
    let (s, _, t) = call(
        sb,
        token,
        reqwest::Method::POST,
        &path,
        Some(json!({ "query_id": q["id"], "result_format": "json_bi" })),
    )
    .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["status"], "added");
    t["id"].as_str().unwrap().to_string()
}

/// Polls a task to the end and returns its result.
async fn result(sb: &Sandbox, token: &str, task: &str) -> Value {
    for _ in 0..20 {
        let (_, _, s) = call(
            sb,
            token,
            reqwest::Method::GET,
            &format!("query_tasks/{task}"),
            None,
        )
        .await;
        if s["status"] == "complete" {
            break;
        }
    }
    loop {
        let (s, _, body) = call(
            sb,
            token,
            reqwest::Method::GET,
            &format!("query_tasks/{task}/results"),
            None,
        )
        .await;
        if s == 200 {
            return body;
        }
        assert!(s == 202 || s == 204, "{s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_auth() {
    let sb = start(100).await;
    let bad = reqwest::Client::new()
        .post(api(&sb, "login"))
        .form(&[
            ("client_id", "sandbox-looker-client"),
            ("client_secret", "wrong"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 404);
    let (s, _, _) = call(&sb, "nope", reqwest::Method::GET, "user", None).await;
    assert_eq!(s, 401);
    let token = login(&sb).await;
    let (s, _, me) = call(&sb, &token, reqwest::Method::GET, "user", None).await;
    assert_eq!(s, 200);
    assert_eq!(me["display_name"], "Sandbox Analyst");
    sb.looker_expire_tokens();
    let (s, _, _) = call(&sb, &token, reqwest::Method::GET, "user", None).await;
    assert_eq!(s, 401);
    assert_eq!(sb.looker_stats().logins, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_validation_looks_and_the_task_lifecycle() {
    let sb = start(100).await;
    let token = login(&sb).await;
    let (s, _, e) = call(
        &sb,
        &token,
        reqwest::Method::POST,
        "queries",
        Some(json!({ "model": "finance", "view": "budget", "fields": ["budget.nope"] })),
    )
    .await;
    assert_eq!(s, 422, "{e}");
    let (s, _, _) = call(
        &sb,
        &token,
        reqwest::Method::POST,
        "queries",
        Some(json!({ "model": "finance", "view": "nope", "fields": [] })),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _, look) = call(&sb, &token, reqwest::Method::GET, "looks/1", None).await;
    assert_eq!(s, 200);
    assert_eq!(look["query_id"], "1");

    sb.looker_set_task_progress(2, 1, 1, 202);
    let task = start_task(
        &sb,
        &token,
        json!({ "model": "finance", "view": "budget", "limit": "-1",
                "fields": ["budget.department", "budget.line_count"],
                "filters": { "budget.department": "Sales,Legal" } }),
        None,
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (_, _, s) = call(
            &sb,
            &token,
            reqwest::Method::GET,
            &format!("query_tasks/{task}"),
            None,
        )
        .await;
        seen.push(s["status"].as_str().unwrap().to_string());
    }
    assert_eq!(seen, ["added", "added", "running", "complete"]);
    let (s, _, _) = call(
        &sb,
        &token,
        reqwest::Method::GET,
        &format!("query_tasks/{task}/results"),
        None,
    )
    .await;
    assert_eq!(s, 202, "not ready right after completion");
    let body = result(&sb, &token, &task).await;
    let dims = &body["metadata"]["fields"]["dimensions"];
    assert_eq!(dims[0]["name"], "budget.department");
    assert_eq!(body["metadata"]["fields"]["measures"][0]["type"], "count");
    assert_eq!(
        body["rows"],
        json!([
            { "budget.department": "Legal", "budget.line_count": 72 },
            { "budget.department": "Sales", "budget.line_count": 72 },
        ])
    );

    // Error and expired tasks.
    sb.looker_set_task_progress(0, 0, 0, 204);
    sb.looker_fail_next_tasks(1);
    let q = json!({ "model": "finance", "view": "budget", "fields": ["budget.department"] });
    let task = start_task(&sb, &token, q.clone(), None).await;
    let (_, _, st) = call(
        &sb,
        &token,
        reqwest::Method::GET,
        &format!("query_tasks/{task}"),
        None,
    )
    .await;
    assert_eq!(st["status"], "error");
    let (s, _, e) = call(
        &sb,
        &token,
        reqwest::Method::GET,
        &format!("query_tasks/{task}/results"),
        None,
    )
    .await;
    assert_eq!(s, 400);
    assert!(e["message"].as_str().unwrap().contains("division by zero"));
    sb.looker_expire_next_tasks(1);
    let task = start_task(&sb, &token, q, None).await;
    let (_, _, st) = call(
        &sb,
        &token,
        reqwest::Method::GET,
        &format!("query_tasks/{task}"),
        None,
    )
    .await;
    assert_eq!(st["status"], "expired");
    let (s, _, _) = call(
        &sb,
        &token,
        reqwest::Method::GET,
        &format!("query_tasks/{task}/results"),
        None,
    )
    .await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_limit_is_5000_and_minus_one_is_everything() {
    let sb = start(2000).await;
    let token = login(&sb).await;
    let q = json!({ "model": "finance", "view": "ledger", "fields": ["ledger.entry_id", "ledger.amount"] });
    let task = start_task(&sb, &token, q.clone(), None).await;
    assert_eq!(
        result(&sb, &token, &task).await["rows"]
            .as_array()
            .unwrap()
            .len(),
        5000
    );
    let task = start_task(&sb, &token, q.clone(), Some("-1")).await;
    let rows = result(&sb, &token, &task).await["rows"]
        .as_array()
        .unwrap()
        .len() as u64;
    assert_eq!(rows, sb.looker_ledger_rows());
    assert!(rows > 5000);
    // Switched on, an unlimited result is cut short without a word; explicit limits are not.
    sb.looker_cut_unlimited(Some(700));
    let task = start_task(&sb, &token, q.clone(), Some("-1")).await;
    let body = result(&sb, &token, &task).await;
    assert_eq!(body["rows"].as_array().unwrap().len(), 700);
    assert_eq!(
        body["metadata"]["columns_truncated"], "false",
        "{}",
        body["metadata"]
    );
    let task = start_task(&sb, &token, q, Some("6001")).await;
    let rows = result(&sb, &token, &task).await["rows"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(rows as u64, sb.looker_ledger_rows());
    let st = sb.looker_stats();
    assert_eq!((st.unlimited_tasks, st.unlimited_cut), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_limit_answers_429_with_retry_after() {
    let sb = start(100).await;
    let token = login(&sb).await;
    sb.looker_set_rate_limit(Some((3, Duration::from_secs(30))));
    for _ in 0..3 {
        let (s, _, _) = call(&sb, &token, reqwest::Method::GET, "user", None).await;
        assert_eq!(s, 200);
    }
    let (s, h, _) = call(&sb, &token, reqwest::Method::GET, "user", None).await;
    assert_eq!(s, 429);
    let wait: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "{wait}");
    assert_eq!(sb.looker_stats().throttled, 1);

    // The same controls over the admin API, for a sandbox in another process.
    let r = reqwest::Client::new()
        .put(format!("{}/_sandbox/looker/tasks", sb.base_url()))
        .json(&json!({ "rate_limit": [0, 0], "fail_next": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let (s, _, _) = call(&sb, &token, reqwest::Method::GET, "user", None).await;
    assert_eq!(s, 200, "limit lifted");
    let stats: Value = reqwest::get(format!("{}/_sandbox/looker/stats", sb.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["throttled"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looks_and_models_are_listed_for_discovery() {
    let sb = start(100).await;
    let token = login(&sb).await;
    let get = |path: &'static str| call(&sb, &token, reqwest::Method::GET, path, None);
    // Every saved Look, in the Look shape (no query), each pointing at its query and model.
    let (s, _, looks) = get("looks").await;
    assert_eq!(s, 200);
    let looks = looks.as_array().unwrap().clone();
    assert_eq!(looks.len(), 2);
    for l in &looks {
        for k in [
            "id",
            "title",
            "query_id",
            "description",
            "folder_id",
            "updated_at",
        ] {
            assert!(l[k].is_string(), "{k} in {l}");
        }
        assert_eq!(l["model"]["id"], "finance");
        assert_eq!(l["deleted"], false);
        assert!(l.get("query").is_none(), "a list carries no queries");
    }
    // `fields` keeps the named properties, nested ones too.
    let (_, _, slim) = get("looks?fields=id,title,model(id)").await;
    assert_eq!(
        slim[0],
        json!({ "id": "1", "title": "Pipeline by stage", "model": { "id": "finance" } })
    );
    // A Look alone carries its query (LookWithQuery).
    let (_, _, one) = get("looks/2").await;
    assert_eq!(one["query"]["view"], "budget");
    assert_eq!(one["query_id"], "2");
    let (s, _, _) = get("looks/99").await;
    assert_eq!(s, 404);
    // The model and its explores; an explore's fields as dimensions and measures.
    let (s, _, models) = get("lookml_models").await;
    assert_eq!(s, 200);
    let explores: Vec<&str> = models[0]["explores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(explores, ["budget", "pipeline", "ledger"]);
    let (_, _, m) = get("lookml_models/finance?fields=name,explores(name)").await;
    assert_eq!(m["name"], "finance");
    assert!(m.get("label").is_none());
    let (_, _, e) = get("lookml_models/finance/explores/pipeline").await;
    let dims: Vec<&str> = e["fields"]["dimensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(dims.contains(&"pipeline.stage"), "{dims:?}");
    assert_eq!(e["fields"]["measures"][0]["category"], "measure");
    let (s, _, _) = get("lookml_models/finance/explores/nope").await;
    assert_eq!(s, 404);
    let (s, _, _) = get("lookml_models/other").await;
    assert_eq!(s, 404);
    // What a Look returns, as the test controls count it (no stream definitions involved).
    assert_eq!(sb.looker_look_rows("1", Some(1000)), Some(6));
    assert_eq!(sb.looker_look_rows("9", None), None);
    let q = ml_connector::spec::LookerQuery {
        model: "finance".into(),
        view: "budget".into(),
        fields: vec!["budget.department".into(), "budget.line_count".into()],
        filters: Default::default(),
        sorts: vec![],
    };
    assert_eq!(sb.looker_query_rows(&q, Some(-1)), Some(8));
    assert_eq!(sb.live_count("looker", "budget_summary"), None);
}

//! The Pipedrive fake over raw HTTP: token auth, OAuth refresh, v2 cursor paging, filters,
//! deleted deals, custom fields, rate-limit headers, 429s, the daily budget, mutations.

use std::collections::BTreeSet;

use ml_connector::sandbox::{Sandbox, SandboxOptions};
use serde_json::Value;

const TOKEN: &str = "sandbox-pipedrive-api-token";

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

async fn get(sb: &Sandbox, path: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = reqwest::Client::new()
        .get(format!("{}/pipedrive{path}", sb.base_url()))
        .header("x-api-token", TOKEN)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.json::<Value>().await.unwrap_or(Value::Null);
    (status, headers, body)
}

/// Every id of a v2 list, following cursors.
async fn all_ids(sb: &Sandbox, path: &str) -> Vec<i64> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &cursor {
            Some(c) => format!("{path}{sep}limit=7&cursor={c}"),
            None => format!("{path}{sep}limit=7"),
        };
        let (status, _, body) = get(sb, &url).await;
        assert_eq!(status, 200, "{body}");
        for r in body["data"].as_array().unwrap() {
            out.push(r["id"].as_i64().unwrap());
        }
        match body["additional_data"]["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_and_envelopes() {
    let sb = start(100).await;
    let r = reqwest::get(format!("{}/pipedrive/api/v2/deals", sb.base_url()))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["success"], false);
    assert_eq!(body["error"], "unauthorized access");
    let (status, h, body) = get(&sb, "/api/v2/deals?limit=2").await;
    assert_eq!(status, 200);
    assert_eq!(body["success"], true);
    assert!(h.contains_key("x-ratelimit-limit"));
    assert!(h.contains_key("x-ratelimit-remaining"));
    assert!(h.contains_key("x-ratelimit-reset"));
    assert!(h.contains_key("x-daily-ratelimit-token-remaining"));
    let deal = &body["data"][0];
    assert!(deal["id"].is_i64());
    assert!(deal["update_time"].as_str().unwrap().ends_with('Z'));
    let cf = deal["custom_fields"].as_object().unwrap();
    assert_eq!(cf.len(), 4);
    assert!(cf.keys().all(|k| k.len() == 40));
    let (_, _, p) = get(&sb, "/api/v2/persons?limit=1").await;
    assert!(p["data"][0]["emails"].is_array());
    let (_, _, p) = get(&sb, "/api/v2/products?limit=1").await;
    assert!(p["data"][0]["prices"].is_array());
    let (_, _, f) = get(&sb, "/api/v2/dealFields").await;
    let custom: Vec<&Value> = f["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["is_custom_field"] == true)
        .collect();
    assert_eq!(custom.len(), 4);
    assert!(
        custom
            .iter()
            .any(|d| d["field_type"] == "enum" && d["options"].is_array())
    );
    let (_, _, u) = get(&sb, "/api/v1/users?start=0&limit=2").await;
    assert_eq!(
        u["additional_data"]["pagination"]["more_items_in_collection"],
        true
    );
    let (status, _, _) = get(&sb, "/api/v2/deals?limit=501").await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_paging_filters_and_deleted_deals() {
    let sb = start(100).await;
    let ids = all_ids(&sb, "/api/v2/deals").await;
    assert_eq!(ids.len(), 50);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 50);
    sb.pipedrive_mutate();
    let live: BTreeSet<i64> = sb
        .pipedrive_live_rows("deal")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let listed: BTreeSet<i64> =
        all_ids(&sb, "/api/v2/deals?sort_by=update_time&sort_direction=asc")
            .await
            .into_iter()
            .collect();
    assert_eq!(listed, live, "default status leaves deleted deals out");
    let with_deleted = all_ids(&sb, "/api/v2/deals?status=open,won,lost,deleted").await;
    assert!(with_deleted.len() > live.len());
    let (_, _, del) = get(&sb, "/api/v2/deals?status=deleted").await;
    for d in del["data"].as_array().unwrap() {
        assert_eq!(d["is_deleted"], true);
        assert_eq!(d["status"], "deleted");
    }
    // updated_since: the changed rows only, in update order.
    let base = sb.pipedrive_live_rows("deal");
    let newest = base.iter().map(|(_, t)| t.clone()).max().unwrap();
    let (_, _, recent) = get(
        &sb,
        &format!("/api/v2/deals?sort_by=update_time&sort_direction=asc&updated_since={newest}&status=open,won,lost,deleted"),
    )
    .await;
    let rows = recent["data"].as_array().unwrap();
    assert!(!rows.is_empty() && rows.len() < 10);
    let times: Vec<&str> = rows
        .iter()
        .map(|r| r["update_time"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    // Deal products: 1-4 per deal, for up to 100 deal ids.
    let (_, _, dp) = get(&sb, "/api/v2/deals/products?deal_ids=1,2,3").await;
    let items = dp["data"].as_array().unwrap();
    assert!((3..=12).contains(&items.len()));
    assert!(
        items
            .iter()
            .all(|i| (1..=3).contains(&i["deal_id"].as_i64().unwrap()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_429_daily_budget_and_cloudflare() {
    let sb = start(50).await;
    sb.pipedrive_set_burst_limit(2);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let (s, h, _) = get(&sb, "/api/v2/stages").await;
        statuses.push((s, h));
    }
    assert_eq!(statuses[2].0, 429);
    assert_eq!(statuses[2].1["x-ratelimit-remaining"], "0");
    assert!(statuses[2].1.contains_key("x-ratelimit-reset"));
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    sb.pipedrive_set_burst_limit(100);
    sb.pipedrive_set_daily_tokens(5);
    let (s, h, body) = get(&sb, "/api/v2/stages").await;
    assert_eq!(s, 429);
    assert_eq!(h["x-daily-ratelimit-token-remaining"], "0");
    assert!(body["error"].as_str().unwrap().contains("Daily"));
    sb.pipedrive_set_daily_tokens(1000);
    sb.pipedrive_set_html_403(true);
    let r = reqwest::get(format!("{}/pipedrive/api/v2/stages", sb.base_url()))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.text().await.unwrap().contains("Cloudflare"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_refresh_grant_rotates_and_issues_bearer_tokens() {
    let sb = start(50).await;
    let (_, secrets) = sb.pipedrive_oauth_connection();
    let refresh = secrets
        .iter()
        .find(|(k, _)| k == "refresh_token")
        .unwrap()
        .1
        .clone();
    let c = reqwest::Client::new();
    let url = format!("{}/pipedrive-oauth/oauth/token", sb.base_url());
    let bad = c
        .post(&url)
        .basic_auth("sandbox-pipedrive-client", Some("wrong"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 401);
    let ok: Value = c
        .post(&url)
        .basic_auth(
            "sandbox-pipedrive-client",
            Some("sandbox-pipedrive-client-secret"),
        )
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(ok["refresh_token"].as_str().unwrap(), refresh);
    let domain = ok["api_domain"].as_str().unwrap();
    let access = ok["access_token"].as_str().unwrap();
    let r = c
        .get(format!("{domain}/api/v1/users/me"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    sb.pipedrive_expire_tokens();
    let r = c
        .get(format!("{domain}/api/v1/users/me"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_scale_account_pages_cheaply() {
    // scale 1M: 500k deals, ~1.25M line items; nothing is stored until rows change.
    let sb = start(1_000_000).await;
    sb.pipedrive_mutate();
    let started = std::time::Instant::now();
    let (s, _, first) = get(&sb, "/api/v2/deals?limit=500").await;
    assert_eq!(s, 200);
    assert_eq!(first["data"].as_array().unwrap().len(), 500);
    let c = first["additional_data"]["next_cursor"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, _, second) = get(&sb, &format!("/api/v2/deals?limit=500&cursor={c}")).await;
    let last = first["data"][499]["id"].as_i64().unwrap();
    assert!(second["data"][0]["id"].as_i64().unwrap() > last);
    let (_, _, tail) = get(
        &sb,
        "/api/v2/deals?limit=500&sort_by=update_time&sort_direction=asc&updated_since=2024-12-01T00:00:00Z&status=open,won,lost,deleted",
    )
    .await;
    assert!(!tail["data"].as_array().unwrap().is_empty());
    let (_, _, deleted) = get(
        &sb,
        "/api/v2/deals?status=deleted&limit=500&sort_by=update_time",
    )
    .await;
    assert!(!deleted["data"].as_array().unwrap().is_empty());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

async fn patch(sb: &Sandbox, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .patch(format!("{}/pipedrive{path}", sb.base_url()))
        .header("x-api-token", TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json::<Value>().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_updates_and_the_next_incremental_read_sees_it() {
    let sb = start(100).await;
    let (_, _, before) = get(&sb, "/api/v2/organizations?limit=3").await;
    let org = before["data"][1].clone();
    let id = org["id"].as_i64().unwrap();
    let (_, _, newest) = get(
        &sb,
        "/api/v2/organizations?sort_by=update_time&sort_direction=desc&limit=1",
    )
    .await;
    let since = newest["data"][0]["update_time"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, v) = patch(
        &sb,
        &format!("/api/v2/organizations/{id}"),
        serde_json::json!({"name": "Renamed GmbH", "address": {"value": "1 Main St, Oslo", "locality": "Oslo"}}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["success"], true);
    assert_eq!(v["data"]["name"], "Renamed GmbH");
    assert_eq!(v["data"]["address"]["locality"], "Oslo");
    assert_eq!(
        v["data"]["owner_id"], org["owner_id"],
        "fields not sent keep their values"
    );
    assert!(v["data"]["update_time"].as_str().unwrap() > since.as_str());
    // The next incremental read returns the row with the saved values.
    let (_, _, inc) = get(
        &sb,
        &format!(
            "/api/v2/organizations?sort_by=update_time&sort_direction=asc&updated_since={since}"
        ),
    )
    .await;
    let rows = inc["data"].as_array().unwrap();
    let hit = rows
        .iter()
        .find(|r| r["id"] == id)
        .expect("patched row listed");
    assert_eq!(hit["name"], "Renamed GmbH");
    // Products: prices replace the list.
    let (st, v) = patch(
        &sb,
        "/api/v2/products/2",
        serde_json::json!({"prices": [{"price": 42.5, "currency": "EUR", "cost": 20}]}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["prices"][0]["price"], 42.5);
    assert_eq!(v["data"]["prices"][0]["product_id"], 2);
    // Persons, unknown field, unknown id.
    let (st, _) = patch(
        &sb,
        "/api/v2/persons/3",
        serde_json::json!({"job_title": "CFO"}),
    )
    .await;
    assert_eq!(st, 200);
    let (st, v) = patch(
        &sb,
        "/api/v2/products/2",
        serde_json::json!({"colour": "red"}),
    )
    .await;
    assert_eq!((st, v["success"].as_bool()), (400, Some(false)));
    let (st, _) = patch(
        &sb,
        "/api/v2/organizations/999999",
        serde_json::json!({"name": "x"}),
    )
    .await;
    assert_eq!(st, 404);
    let w = sb.pipedrive_writes();
    assert_eq!(w.len(), 5);
    assert_eq!(w.iter().filter(|w| w.status == 200).count(), 3);
    assert_eq!(w[0].entity, "organizations");
    assert_eq!(w[0].id, id);
}

//! The Pipedrive fake over raw HTTP: token auth, OAuth refresh, v2 cursor paging, filters,
//! deleted deals, custom fields, rate-limit headers, 429s, the daily budget, mutations.

use std::collections::BTreeSet;

use ml_connector::sandbox::{Sandbox, SandboxOptions, Tenant};
use serde_json::Value;

const TOKEN: &str = "sandbox-pipedrive-api-token";

async fn start(scale: u64) -> Sandbox {
    start_as(scale, Tenant::Standard).await
}

async fn start_as(scale: u64, tenant: Tenant) -> Sandbox {
    Sandbox::start(
        SandboxOptions {
            scale,
            tenant,
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

/// Every record of a v2 list, following cursors 7 at a time.
async fn all_records(sb: &Sandbox, path: &str) -> Vec<Value> {
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
        out.extend(body["data"].as_array().unwrap().iter().cloned());
        match body["additional_data"]["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

/// Every id of a v2 list, following cursors.
async fn all_ids(sb: &Sandbox, path: &str) -> Vec<i64> {
    all_records(sb, path)
        .await
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
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
    // 50 deals: the not archived ones at /deals, the others at /deals/archived.
    let ids = all_ids(&sb, "/api/v2/deals").await;
    let archived = all_ids(&sb, "/api/v2/deals/archived").await;
    assert_eq!(ids.len() + archived.len(), 50);
    let all: BTreeSet<i64> = ids.iter().chain(&archived).copied().collect();
    assert_eq!(all.len(), 50);
    sb.pipedrive_mutate();
    let live: BTreeSet<i64> = sb
        .pipedrive_live_rows("deal")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut listed: BTreeSet<i64> =
        all_ids(&sb, "/api/v2/deals?sort_by=update_time&sort_direction=asc")
            .await
            .into_iter()
            .collect();
    let archived: BTreeSet<i64> = all_ids(
        &sb,
        "/api/v2/deals/archived?sort_by=update_time&sort_direction=asc",
    )
    .await
    .into_iter()
    .collect();
    assert!(listed.is_disjoint(&archived));
    listed.extend(archived);
    assert_eq!(listed, live, "default status leaves deleted deals out");
    let with_deleted = all_ids(&sb, "/api/v2/deals?status=open,won,lost,deleted")
        .await
        .len()
        + all_ids(&sb, "/api/v2/deals/archived?status=open,won,lost,deleted")
            .await
            .len();
    assert!(with_deleted > live.len());
    let (_, _, del) = get(&sb, "/api/v2/deals?status=deleted").await;
    for d in del["data"].as_array().unwrap() {
        assert_eq!(d["is_deleted"], true);
        assert_eq!(d["status"], "deleted");
    }
    // updated_since: the changed rows only, in update order (the newest change may be an
    // archiving, listed at /deals/archived).
    let base = sb.pipedrive_live_rows("deal");
    let newest = base.iter().map(|(_, t)| t.clone()).max().unwrap();
    let mut found = 0;
    for list in ["deals", "deals/archived"] {
        let (_, _, recent) = get(
            &sb,
            &format!("/api/v2/{list}?sort_by=update_time&sort_direction=asc&updated_since={newest}&status=open,won,lost,deleted"),
        )
        .await;
        let rows = recent["data"].as_array().unwrap();
        found += rows.len();
        let times: Vec<&str> = rows
            .iter()
            .map(|r| r["update_time"].as_str().unwrap())
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }
    assert!(found > 0 && found < 10);
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

fn is_hex40(k: &str) -> bool {
    k.len() == 40 && k.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Every definition of `/api/v2/{entity}Fields`, following cursors 5 at a time.
async fn field_defs(sb: &Sandbox, entity: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("/api/v2/{entity}Fields?limit=5&cursor={c}"),
            None => format!("/api/v2/{entity}Fields?limit=5"),
        };
        let (status, _, body) = get(sb, &url).await;
        assert_eq!(status, 200, "{body}");
        out.extend(body["data"].as_array().unwrap().iter().cloned());
        match body["additional_data"]["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

fn custom_defs(defs: &[Value]) -> Vec<&Value> {
    defs.iter()
        .filter(|d| d["is_custom_field"] == true)
        .collect()
}

fn def_named<'a>(defs: &'a [Value], name: &str) -> Option<&'a Value> {
    defs.iter().find(|d| d["field_name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_deals_are_listed_apart_and_archiving_is_an_update() {
    let sb = start(100).await;
    let archived = all_records(&sb, "/api/v2/deals/archived").await;
    let ids: Vec<i64> = archived.iter().map(|d| d["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [13, 33], "one initial deal in twenty starts archived");
    for d in &archived {
        assert_eq!(d["is_archived"], true);
        assert_eq!(
            d["archive_time"], d["update_time"],
            "archived at its last update"
        );
    }
    for d in all_records(&sb, "/api/v2/deals").await {
        assert_eq!(d["is_archived"], false);
        assert!(d["archive_time"].is_null());
    }
    // Line items of archived deals are still served for their ids.
    let (_, _, dp) = get(&sb, "/api/v2/deals/products?deal_ids=13,33").await;
    assert!(dp["data"].as_array().unwrap().len() >= 2);
    // Archived deals cost more tokens (x-token-cost 20).
    let (_, h1, _) = get(&sb, "/api/v2/deals?limit=1").await;
    let (_, h2, _) = get(&sb, "/api/v2/deals/archived?limit=1").await;
    let left = |h: &reqwest::header::HeaderMap| -> i64 {
        h["x-daily-ratelimit-token-remaining"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(left(&h1) - left(&h2), 20);

    // A mutation round archives a deal: it leaves /deals for /deals/archived with a new
    // update_time equal to its archive_time; an incremental read of /deals/archived finds it.
    let newest = sb
        .pipedrive_live_rows("deal")
        .into_iter()
        .map(|(_, t)| t)
        .max()
        .unwrap();
    sb.pipedrive_mutate();
    let recent = all_records(
        &sb,
        &format!(
            "/api/v2/deals/archived?sort_by=update_time&sort_direction=asc&updated_since={newest}&status=open,won,lost,deleted"
        ),
    )
    .await;
    let fresh: Vec<&Value> = recent
        .iter()
        .filter(|d| d["archive_time"].as_str() > Some(newest.as_str()))
        .collect();
    assert!(!fresh.is_empty(), "{recent:?}");
    for d in fresh {
        assert_eq!(d["archive_time"], d["update_time"]);
        let id = d["id"].as_i64().unwrap();
        let active = all_ids(&sb, "/api/v2/deals?status=open,won,lost,deleted").await;
        assert!(!active.contains(&id));
    }
    // Live rows and the truth include archived deals.
    let truth = sb.truth("pipedrive", "deal").unwrap();
    let live = sb.pipedrive_live_rows("deal");
    assert_eq!(truth.len(), live.len());
    assert_eq!(sb.live_count("pipedrive", "deal"), Some(live.len() as u64));
    assert!(truth.iter().any(|d| d["is_archived"] == true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_definitions_list_standard_and_custom_fields_per_tenant() {
    // (tenant, custom fields of deal, person, organization, product).
    for (tenant, counts) in [
        (Tenant::Standard, [4, 2, 2, 1]),
        (Tenant::Lean, [1, 0, 0, 0]),
        (Tenant::Custom, [15, 5, 9, 4]),
    ] {
        let sb = start_as(60, tenant).await;
        for (entity, plural, n) in [
            ("deal", "deals", counts[0]),
            ("person", "persons", counts[1]),
            ("organization", "organizations", counts[2]),
            ("product", "products", counts[3]),
        ] {
            let defs = field_defs(&sb, entity).await;
            let (_, _, whole) = get(&sb, &format!("/api/v2/{entity}Fields")).await;
            assert_eq!(
                whole["data"].as_array().unwrap(),
                &defs,
                "paging changes nothing"
            );
            for d in &defs {
                for k in ["field_name", "field_code", "field_type"] {
                    assert!(d[k].is_string(), "{tenant}: {d}");
                }
                assert!(d["is_optional_response_field"].is_boolean());
            }
            assert!(
                defs.iter()
                    .any(|d| d["field_code"] == "id" && d["is_custom_field"] == false),
                "{tenant} {entity}: standard fields are listed"
            );
            let custom = custom_defs(&defs);
            assert_eq!(custom.len(), n, "{tenant} {entity}");
            assert!(
                custom
                    .iter()
                    .all(|d| is_hex40(d["field_code"].as_str().unwrap()))
            );
            // Each record's custom_fields holds exactly the tenant's custom keys.
            let codes: BTreeSet<&str> = custom
                .iter()
                .map(|d| d["field_code"].as_str().unwrap())
                .collect();
            let (_, _, page) = get(&sb, &format!("/api/v2/{plural}?limit=3")).await;
            for r in page["data"].as_array().unwrap() {
                let keys: BTreeSet<&str> = r["custom_fields"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(String::as_str)
                    .collect();
                assert_eq!(keys, codes, "{tenant} {entity}");
            }
        }
        let deal = field_defs(&sb, "deal").await;
        let value = deal.iter().find(|d| d["field_code"] == "value").unwrap();
        assert_eq!(value["field_type"], "monetary");
        assert_eq!(value["subfields"][1]["field_code"], "currency");
        // ARR/MRR/ACV exist from the Growth plan up: not in the lean tenant.
        let has_arr = deal.iter().any(|d| d["field_code"] == "arr");
        assert_eq!(has_arr, tenant != Tenant::Lean, "{tenant}");
        let (_, _, deals) = get(&sb, "/api/v2/deals?limit=1").await;
        assert_eq!(deals["data"][0].get("arr").is_some(), has_arr);
        // v2 organizations: industry (an option id), website, linkedin, revenue, headcount.
        let org = field_defs(&sb, "organization").await;
        let industry = org.iter().find(|d| d["field_code"] == "industry").unwrap();
        assert_eq!(industry["field_type"], "enum");
        assert_eq!(industry["is_custom_field"], false);
        let options: BTreeSet<i64> = industry["options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_i64().unwrap())
            .collect();
        for o in all_records(&sb, "/api/v2/organizations").await {
            for k in [
                "website",
                "linkedin",
                "industry",
                "annual_revenue",
                "employee_count",
            ] {
                assert!(o.get(k).is_some(), "{k}");
            }
            if let Some(i) = o["industry"].as_i64() {
                assert!(options.contains(&i));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_custom_tenant_has_colliding_and_non_latin_names_and_drifting_types() {
    let sb = start_as(200, Tenant::Custom).await;
    let org = field_defs(&sb, "organization").await;
    // A custom field named like the standard `industry` field, under its own hash key.
    let named: Vec<&Value> = org
        .iter()
        .filter(|d| d["field_name"] == "Industry")
        .collect();
    assert_eq!(named.len(), 2);
    assert!(named.iter().any(|d| d["field_code"] == "industry"));
    assert!(
        named
            .iter()
            .any(|d| is_hex40(d["field_code"].as_str().unwrap()))
    );
    assert!(def_named(&org, "Отрасль").is_some());
    let deal = field_defs(&sb, "deal").await;
    assert!(def_named(&deal, "業種").is_some());
    assert!(def_named(&deal, "Région").is_some());
    let types: BTreeSet<&str> = custom_defs(&deal)
        .iter()
        .map(|d| d["field_type"].as_str().unwrap())
        .collect();
    for t in [
        "enum", "set", "monetary", "date", "double", "varchar", "text", "address", "user", "org",
        "people", "phone",
    ] {
        assert!(types.contains(t), "{t} in {types:?}");
    }
    let key = |name: &str| {
        def_named(&deal, name).unwrap()["field_code"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let deals = all_records(&sb, "/api/v2/deals").await;
    let values = |k: &str| -> Vec<Value> {
        deals
            .iter()
            .map(|d| d["custom_fields"][k].clone())
            .filter(|v| !v.is_null())
            .collect()
    };
    // The drifting double: mostly numbers, "n/a" in a few records.
    let score = values(&key("Forecast Score"));
    assert!(score.iter().any(|v| v == "n/a"));
    assert!(score.iter().filter(|v| v.is_number()).count() > score.len() / 2);
    // Raw v2 values: address objects, related ids as integers, set option ids.
    assert!(
        values(&key("Billing Address"))
            .iter()
            .all(|v| v["value"].is_string())
    );
    assert!(values(&key("Champion")).iter().all(Value::is_i64));
    assert!(values(&key("Account Manager")).iter().all(Value::is_i64));
    assert!(values(&key("業種")).iter().all(|v| {
        v.as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_i64))
    }));
    // Users: `is_admin` drifts between a boolean and a number.
    let (_, _, users) = get(&sb, "/api/v1/users?limit=100").await;
    let users = users["data"].as_array().unwrap();
    assert!(users.iter().any(|u| u["is_admin"].is_boolean()));
    assert!(users.iter().any(|u| u["is_admin"].is_number()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_carry_is_admin_only_where_the_tenant_sends_it() {
    for (tenant, admin) in [
        (Tenant::Standard, Some(true)),
        (Tenant::Lean, None),
        (Tenant::Custom, Some(false)),
    ] {
        let sb = start_as(50, tenant).await;
        let (_, _, users) = get(&sb, "/api/v1/users?limit=100").await;
        for u in users["data"].as_array().unwrap() {
            match admin {
                None => assert!(u.get("is_admin").is_none(), "{tenant}: {u}"),
                Some(true) => assert!(u["is_admin"].is_number(), "{tenant}: {u}"),
                Some(false) => assert!(u.get("is_admin").is_some(), "{tenant}: {u}"),
            }
            assert!(u["access"].is_array());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renaming_a_custom_field_keeps_its_key_and_values() {
    let sb = start(60).await;
    let before = field_defs(&sb, "deal").await;
    let key = def_named(&before, "Contract Type").unwrap()["field_code"].clone();
    let (_, _, deals_before) = get(&sb, "/api/v2/deals?limit=10").await;
    assert!(sb.pipedrive_rename_custom_field("deal", "Contract Type", "Agreement Type"));
    assert!(!sb.pipedrive_rename_custom_field("deal", "Contract Type", "Again"));
    assert!(!sb.pipedrive_rename_custom_field("deal", "No Such Field", "X"));
    let after = field_defs(&sb, "deal").await;
    assert!(def_named(&after, "Contract Type").is_none());
    assert_eq!(
        def_named(&after, "Agreement Type").unwrap()["field_code"],
        key
    );
    assert_eq!(after.len(), before.len());
    let (_, _, deals_after) = get(&sb, "/api/v2/deals?limit=10").await;
    assert_eq!(deals_before, deals_after, "records do not change");
    // The same through the admin route.
    let c = reqwest::Client::new();
    let url = format!("{}/_sandbox/pipedrive/rename-field", sb.base_url());
    let r = c
        .post(&url)
        .json(&serde_json::json!({"entity": "organization", "old_name": "Industry Segment", "new_name": "Segment"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let org = field_defs(&sb, "organization").await;
    assert!(def_named(&org, "Segment").is_some());
    let r = c
        .post(&url)
        .json(&serde_json::json!({"entity": "organization", "old_name": "Industry Segment", "new_name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

/// `truth` equals what the lists serve, row by row, in every tenant (after a mutation round).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truth_is_what_the_lists_serve() {
    for tenant in Tenant::ALL {
        let sb = start_as(80, tenant).await;
        sb.pipedrive_mutate();
        let by_id = |mut v: Vec<Value>| {
            v.sort_by_key(|r| r["id"].as_i64().unwrap());
            v
        };
        let served = |t: Vec<ml_connector::sandbox::TruthRow>| -> Vec<Value> {
            t.into_iter().map(Value::Object).collect()
        };
        let mut deals = all_records(&sb, "/api/v2/deals").await;
        deals.extend(all_records(&sb, "/api/v2/deals/archived").await);
        let deals = by_id(deals);
        assert_eq!(
            served(sb.truth("pipedrive", "deal").unwrap()),
            deals,
            "{tenant}"
        );
        for (entity, path) in [
            ("person", "/api/v2/persons"),
            ("organization", "/api/v2/organizations"),
            ("product", "/api/v2/products"),
            ("pipeline", "/api/v2/pipelines"),
            ("stage", "/api/v2/stages"),
        ] {
            let listed = by_id(all_records(&sb, path).await);
            assert_eq!(
                served(sb.truth("pipedrive", entity).unwrap()),
                listed,
                "{tenant} {entity}"
            );
        }
        let mut items = Vec::new();
        let ids: Vec<String> = deals.iter().map(|d| d["id"].to_string()).collect();
        for chunk in ids.chunks(100) {
            items.extend(
                all_records(
                    &sb,
                    &format!("/api/v2/deals/products?deal_ids={}", chunk.join(",")),
                )
                .await,
            );
        }
        assert_eq!(
            served(sb.truth("pipedrive", "deal_product").unwrap()),
            by_id(items),
            "{tenant}"
        );
        let (_, _, users) = get(&sb, "/api/v1/users?limit=500").await;
        assert_eq!(
            served(sb.truth("pipedrive", "user").unwrap()),
            users["data"].as_array().unwrap().clone(),
            "{tenant}"
        );
        assert!(sb.truth("pipedrive", "lead").is_none());
    }
}

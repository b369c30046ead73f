//! The Business Central fake over raw HTTP: auth with the BC scope, the companies list,
//! server-driven paging with Prefer/Preference-Applied and absolute next links, $select (and
//! BC's 400 for an unknown property), $filter/$orderby on lastModifiedDateTime, $top/$skip,
//! ETags, $metadata, 429 and mutations.

use std::time::Duration;

use ml_connector::sandbox::{Sandbox, SandboxOptions};
use serde_json::Value;

async fn start(opts: SandboxOptions) -> (Sandbox, reqwest::Client, String, String) {
    let sb = Sandbox::start(opts, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let tok = token(
        &sb,
        &http,
        "https://api.businesscentral.dynamics.com/.default",
    )
    .await
    .unwrap();
    let root = format!(
        "{}/bc/v2.0/{}/Production/api/v2.0",
        sb.base_url(),
        sb.tenant_id()
    );
    (sb, http, tok, root)
}

async fn token(sb: &Sandbox, http: &reqwest::Client, scope: &str) -> Result<String, Value> {
    let r = http
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            sb.authority_url(),
            sb.tenant_id()
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", sb.client_id()),
            ("client_secret", sb.client_secret()),
            ("scope", scope),
        ])
        .send()
        .await
        .unwrap();
    let ok = r.status().is_success();
    let v: Value = r.json().await.unwrap();
    if ok {
        Ok(v["access_token"].as_str().unwrap().to_string())
    } else {
        Err(v)
    }
}

async fn get(
    http: &reqwest::Client,
    url: &str,
    tok: &str,
    prefer: Option<&str>,
) -> reqwest::Response {
    let mut r = http.get(url).bearer_auth(tok);
    if let Some(p) = prefer {
        r = r.header("prefer", p);
    }
    r.send().await.unwrap()
}

async fn get_json(http: &reqwest::Client, url: &str, tok: &str, prefer: Option<&str>) -> Value {
    let r = get(http, url, tok, prefer).await;
    assert_eq!(r.status(), 200, "{url}");
    r.json().await.unwrap()
}

#[tokio::test]
async fn auth_needs_a_bc_token() {
    let (sb, http, tok, root) = start(SandboxOptions::default()).await;
    let r = get(&http, &format!("{root}/companies"), "nope", None).await;
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "Authentication_InvalidCredentials");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("CorrelationId")
    );
    assert!(
        token(&sb, &http, "https://wrong.example/.default")
            .await
            .is_err()
    );
    // A token for another resource (Dataverse) does not open Business Central.
    let dv = token(&sb, &http, &format!("{}/.default", sb.dataverse_url()))
        .await
        .unwrap();
    let r = get(&http, &format!("{root}/companies"), &dv, None).await;
    assert_eq!(r.status(), 401);
    let r = get(&http, &format!("{root}/companies"), &tok, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["odata-version"], "4.0");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json; odata.metadata=minimal")
    );
    let v: Value = r.json().await.unwrap();
    let names: Vec<&str> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["CRONUS USA, Inc.", "CRONUS Canada, Inc."]);
    let r = get(&http, &root.replace("Production", "Nowhere"), &tok, None).await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn pages_follow_prefer_and_next_links_cover_every_row() {
    let (sb, http, tok, root) = start(SandboxOptions {
        scale: 3000,
        ..Default::default()
    })
    .await;
    let (cid, _) = sb.business_central_companies()[1].clone();
    let mut url =
        format!("{root}/companies({cid})/customers?$select=id,number,lastModifiedDateTime");
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let r = get(&http, &url, &tok, Some("odata.maxpagesize=70")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["preference-applied"], "odata.maxpagesize=70");
        let v: Value = r.json().await.unwrap();
        let rows = v["value"].as_array().unwrap();
        assert!(rows.len() <= 70);
        for row in rows {
            assert!(row["@odata.etag"].as_str().unwrap().starts_with("W/\"Jz"));
            assert_eq!(
                row.as_object().unwrap().len(),
                4,
                "etag + 3 selected fields"
            );
            ids.push(row["id"].as_str().unwrap().to_string());
        }
        pages += 1;
        match v["@odata.nextLink"].as_str() {
            Some(n) => {
                assert!(n.starts_with(&root) && n.contains("$skiptoken="), "{n}");
                url = n.to_string();
            }
            None => break,
        }
    }
    let live: Vec<String> = sb
        .business_central_live_rows("customers")
        .unwrap()
        .into_iter()
        .filter(|r| r.company_id == cid)
        .map(|r| r.id)
        .collect();
    assert_eq!(ids.len(), live.len());
    assert_eq!(pages, live.len().div_ceil(70));
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, live);

    // $top/$skip, and the older ?company= form.
    let v = get_json(
        &http,
        &format!("{root}/customers?company=CRONUS%20Canada%2C%20Inc.&$top=5&$skip=2&$select=id"),
        &tok,
        None,
    )
    .await;
    let got: Vec<&str> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        ids[2..7].iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(v.get("@odata.nextLink").is_none());
}

#[tokio::test]
async fn select_and_filter_errors_look_like_bc() {
    let (sb, http, tok, root) = start(SandboxOptions::default()).await;
    let (cid, _) = sb.business_central_companies()[0].clone();
    let r = get(
        &http,
        &format!("{root}/companies({cid})/items?$select=id,noSuchField"),
        &tok,
        None,
    )
    .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "BadRequest");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Could not find a property named 'noSuchField' on type 'Microsoft.NAV.item'")
    );
    // Lines carry no lastModifiedDateTime in v2.0.
    let r = get(&http, &format!("{root}/companies({cid})/salesOrderLines?$filter=lastModifiedDateTime%20gt%202025-01-01T00:00:00Z"), &tok, None).await;
    assert_eq!(r.status(), 400);
    let r = get(
        &http,
        &format!("{root}/companies({cid})/nosuch"),
        &tok,
        None,
    )
    .await;
    assert_eq!(r.status(), 404);
    let r = http
        .post(format!("{root}/companies({cid})/customers"))
        .bearer_auth(&tok)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn filters_and_orderby_on_last_modified_see_mutations() {
    let (sb, http, tok, root) = start(SandboxOptions::default()).await;
    let (cid, _) = sb.business_central_companies()[0].clone();
    let url = format!(
        "{root}/companies({cid})/vendors?$filter=lastModifiedDateTime%20ge%202025-01-01T00:00:00Z&$orderby=lastModifiedDateTime%20asc"
    );
    let v = get_json(&http, &url, &tok, None).await;
    assert_eq!(
        v["value"].as_array().unwrap().len(),
        0,
        "nothing changed yet"
    );
    let changes = sb.business_central_mutate();
    let v = get_json(&http, &url, &tok, None).await;
    let rows = v["value"].as_array().unwrap();
    let c = &changes["vendors"];
    assert!(!rows.is_empty());
    assert!(rows.len() as u64 <= c.inserted + c.updated);
    let stamps: Vec<&str> = rows
        .iter()
        .map(|r| r["lastModifiedDateTime"].as_str().unwrap())
        .collect();
    let mut sorted = stamps.clone();
    sorted.sort_by_key(|s| chrono::DateTime::parse_from_rfc3339(s).unwrap());
    assert_eq!(stamps, sorted, "ordered by lastModifiedDateTime");
    // gt the newest stamp: nothing; or-ed ranges work.
    let newest = stamps.last().unwrap();
    let v = get_json(
        &http,
        &format!("{root}/companies({cid})/vendors?$filter=lastModifiedDateTime%20gt%20{newest}"),
        &tok,
        None,
    )
    .await;
    assert_eq!(v["value"].as_array().unwrap().len(), 0);
    let v = get_json(&http, &format!("{root}/companies({cid})/vendors?$filter=(lastModifiedDateTime%20le%202000-01-01T00:00:00Z)%20or%20lastModifiedDateTime%20ge%20{newest}"), &tok, None).await;
    assert_eq!(v["value"].as_array().unwrap().len(), 1);
    // One entity by id.
    let id = rows[0]["id"].as_str().unwrap();
    let one = get_json(
        &http,
        &format!("{root}/companies({cid})/vendors({id})"),
        &tok,
        None,
    )
    .await;
    assert_eq!(one["id"], id);
    assert!(
        one["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("/$entity")
    );
}

#[tokio::test]
async fn metadata_describes_the_served_entities() {
    let (_sb, http, tok, root) = start(SandboxOptions::default()).await;
    let r = get(&http, &format!("{root}/$metadata"), &tok, None).await;
    assert_eq!(r.status(), 200);
    let x = r.text().await.unwrap();
    assert!(x.contains(r#"<EntityType Name="customer">"#));
    assert!(x.contains(r#"<Property Name="mlcLoyaltyTier" Type="Edm.String" />"#));
    assert!(x.contains(
        r#"<EntitySet Name="generalLedgerEntries" EntityType="Microsoft.NAV.generalLedgerEntry" />"#
    ));
}

#[tokio::test]
async fn the_request_budget_answers_application_too_many_requests() {
    let (sb, http, tok, root) = start(SandboxOptions {
        budget: Some((5, Duration::from_secs(60))),
        retry_after_secs: 7,
        ..Default::default()
    })
    .await;
    for _ in 0..5 {
        assert_eq!(
            get(&http, &format!("{root}/companies"), &tok, None)
                .await
                .status(),
            200
        );
    }
    let r = get(&http, &format!("{root}/companies"), &tok, None).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "Application_TooManyRequests");
    drop(sb);
}

#[tokio::test]
async fn admin_endpoints_mutate_count_and_poison() {
    let (sb, http, tok, root) = start(SandboxOptions::default()).await;
    let base = sb.base_url();
    let before: Value = http
        .get(format!("{base}/_sandbox/business_central/counts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(before["customers"], 400, "scale 2000: 200 per company");
    let changes: Value = http
        .post(format!("{base}/_sandbox/business_central/mutate"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let c = &changes["customers"];
    let after = sb.business_central_counts();
    assert_eq!(
        after["customers"] as i64,
        400 + c["inserted"].as_i64().unwrap() - c["deleted"].as_i64().unwrap()
    );
    let r = http
        .post(format!(
            "{base}/_sandbox/business_central/poison?entity_set=items&count=1"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (cid, _) = sb.business_central_companies()[0].clone();
    let v = get_json(
        &http,
        &format!("{root}/companies({cid})/items?$top=1&$select=id,unitPrice"),
        &tok,
        None,
    )
    .await;
    assert_eq!(v["value"][0]["unitPrice"], "n/a");
    let keys: Vec<(String, String, Option<i64>)> = http
        .get(format!("{base}/_sandbox/business_central/currencies/keys"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(keys.len(), 20);
    assert!(keys.iter().all(|k| k.2.is_some()));
}

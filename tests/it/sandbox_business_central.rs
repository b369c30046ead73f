//! The Business Central fake over raw HTTP: auth with the BC scope, the companies list,
//! server-driven paging with Prefer/Preference-Applied and absolute next links, $select (and
//! BC's 400 for an unknown property), $filter/$orderby on lastModifiedDateTime, $top/$skip,
//! ETags, $metadata, 429 and mutations; the tenant variants (Lean's missing entity set and
//! properties, Custom's extension fields and drifting type), FlowFields that move without
//! `lastModifiedDateTime`, and the tenant's truth against a full paged read.

use std::time::Duration;

use ml_connector::sandbox::{Sandbox, SandboxOptions, Tenant};
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
        .post(format!("{root}/companies({cid})/vendors"))
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
        r#"<EntitySet Name="generalLedgerEntries" EntityType="Microsoft.NAV.generalLedgerEntry">"#
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

// ---------------------------------------------------------------------------------------------
// Writes (issue #7): creates, PATCH with If-Match, deep insert, the post action, hooks.

async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    tok: &str,
    if_match: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = http.request(method, url).bearer_auth(tok);
    if let Some(m) = if_match {
        r = r.header("if-match", m);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn company_root(sb: &Sandbox, root: &str) -> String {
    let (cid, _) = sb.business_central_companies()[0].clone();
    format!("{root}/companies({cid})")
}

fn small() -> SandboxOptions {
    SandboxOptions {
        scale: 2000,
        ..Default::default()
    }
}

#[tokio::test]
async fn create_then_read_back_by_id_and_by_equality_filter() {
    let (sb, http, tok, root) = start(small()).await;
    let c = company_root(&sb, &root).await;
    let (st, v) = send(
        &http,
        reqwest::Method::POST,
        &format!("{c}/customers"),
        &tok,
        None,
        Some(serde_json::json!({"displayName": "O'Brien Contoso", "email": "a@b.com", "city": "Lyon", "balanceDue": 99})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    assert!(v["number"].as_str().unwrap().starts_with('C'));
    assert!(v["@odata.etag"].as_str().unwrap().starts_with("W/"));
    assert_eq!(v["city"], "Lyon");
    assert_eq!(v["balanceDue"], 0, "read-only fields are ignored");
    assert_eq!(v["addressLine1"], "", "fields not sent are blank");
    // By id.
    let one = get_json(&http, &format!("{c}/customers({id})"), &tok, None).await;
    assert_eq!(one["displayName"], "O'Brien Contoso");
    assert_eq!(one["@odata.etag"], v["@odata.etag"]);
    // By equality, case-insensitive, with '' escaping, combined with `and`.
    let url =
        format!("{c}/customers?$filter=displayName eq 'o''brien contoso' and email eq 'A@B.com'");
    let found = get_json(&http, &url, &tok, None).await;
    let rows = found["value"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{found}");
    assert_eq!(rows[0]["id"], id.as_str());
    // By number, and a generated row by its generated number.
    let num = v["number"].as_str().unwrap();
    let found = get_json(
        &http,
        &format!("{c}/customers?$filter=number eq '{num}'"),
        &tok,
        None,
    )
    .await;
    assert_eq!(found["value"].as_array().unwrap().len(), 1);
    let generated = get_json(&http, &format!("{c}/customers?$top=1&$skip=5"), &tok, None).await;
    let gnum = generated["value"][0]["number"]
        .as_str()
        .unwrap()
        .to_string();
    let found = get_json(
        &http,
        &format!("{c}/customers?$filter=number eq '{gnum}'"),
        &tok,
        None,
    )
    .await;
    assert_eq!(found["value"][0]["id"], generated["value"][0]["id"]);
    // Duplicate number → 400; unknown property → 400; missing displayName → 400.
    let (st, e) = send(
        &http,
        reqwest::Method::POST,
        &format!("{c}/customers"),
        &tok,
        None,
        Some(serde_json::json!({"displayName": "X", "number": num})),
    )
    .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (400, Some("Internal_EntityWithSameKeyExists"))
    );
    let (st, e) = send(
        &http,
        reqwest::Method::POST,
        &format!("{c}/customers"),
        &tok,
        None,
        Some(serde_json::json!({"displayName": "X", "colour": "red"})),
    )
    .await;
    assert_eq!(st, 400);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'colour' does not exist")
    );
    let (st, _) = send(
        &http,
        reqwest::Method::POST,
        &format!("{c}/contacts"),
        &tok,
        None,
        Some(serde_json::json!({"email": "x@y.z"})),
    )
    .await;
    assert_eq!(st, 400);
    // Items take the client's number.
    let (st, it) = send(
        &http,
        reqwest::Method::POST,
        &format!("{c}/items"),
        &tok,
        None,
        Some(
            serde_json::json!({"displayName": "Widget", "number": "PD-PROD-7", "unitPrice": 12.5}),
        ),
    )
    .await;
    assert_eq!(st, 201, "{it}");
    assert_eq!(it["number"], "PD-PROD-7");
    let writes = sb.business_central_writes();
    assert_eq!(writes.iter().filter(|w| w.status == 201).count(), 2);
    let admin: Value = http
        .get(format!(
            "{}/_sandbox/business_central/writes",
            sb.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(admin.as_array().unwrap().len(), writes.len());
}

#[tokio::test]
async fn patch_needs_the_current_etag() {
    let (sb, http, tok, root) = start(small()).await;
    let c = company_root(&sb, &root).await;
    let list = get_json(&http, &format!("{c}/customers?$top=1"), &tok, None).await;
    let row = &list["value"][0];
    let id = row["id"].as_str().unwrap().to_string();
    let etag = row["@odata.etag"].as_str().unwrap().to_string();
    let url = format!("{c}/customers({id})");
    let body = serde_json::json!({"displayName": "Renamed Ltd"});
    let (st, e) = send(
        &http,
        reqwest::Method::PATCH,
        &url,
        &tok,
        None,
        Some(body.clone()),
    )
    .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (400, Some("BadRequest_InvalidToken"))
    );
    let (st, v) = send(
        &http,
        reqwest::Method::PATCH,
        &url,
        &tok,
        Some(&etag),
        Some(body.clone()),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["displayName"], "Renamed Ltd");
    assert_eq!(
        v["email"], row["email"],
        "fields not sent keep their values"
    );
    assert_ne!(v["@odata.etag"], etag.as_str());
    assert!(
        v["lastModifiedDateTime"].as_str().unwrap() > row["lastModifiedDateTime"].as_str().unwrap()
    );
    // The old etag is stale now.
    let (st, e) = send(
        &http,
        reqwest::Method::PATCH,
        &url,
        &tok,
        Some(&etag),
        Some(body.clone()),
    )
    .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (409, Some("Request_EntityChanged"))
    );
    // Another user changes the row: our fresh etag goes stale.
    let fresh = v["@odata.etag"].as_str().unwrap().to_string();
    sb.business_central_set_field(0, "customers", &id, "city", Value::from("Oslo"))
        .unwrap();
    let (st, _) = send(
        &http,
        reqwest::Method::PATCH,
        &url,
        &tok,
        Some(&fresh),
        Some(body.clone()),
    )
    .await;
    assert_eq!(st, 409);
    let (st, v) = send(
        &http,
        reqwest::Method::PATCH,
        &url,
        &tok,
        Some("*"),
        Some(body),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(v["city"], "Oslo");
    // The renamed row is found by its new name and read incrementally.
    let found = get_json(
        &http,
        &format!("{c}/customers?$filter=displayName eq 'renamed ltd'"),
        &tok,
        None,
    )
    .await;
    assert_eq!(found["value"].as_array().unwrap().len(), 1);
    let since = row["lastModifiedDateTime"].as_str().unwrap();
    let inc = get_json(
        &http,
        &format!("{c}/customers?$filter=lastModifiedDateTime gt {since}"),
        &tok,
        None,
    )
    .await;
    assert!(
        inc["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str())
    );
    // Unknown id → 404.
    let (cid, _) = sb.business_central_companies()[0].clone();
    let _ = cid;
    let (st, e) = send(
        &http,
        reqwest::Method::PATCH,
        &format!("{c}/customers(00000000-0000-0000-0000-000000000001)"),
        &tok,
        Some("*"),
        Some(serde_json::json!({"city": "x"})),
    )
    .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (404, Some("Internal_RecordNotFound"))
    );
}

#[tokio::test]
async fn deep_insert_then_post_once() {
    let (sb, http, tok, root) = start(small()).await;
    let c = company_root(&sb, &root).await;
    let cust = get_json(&http, &format!("{c}/customers?$top=1"), &tok, None).await;
    let cust_id = cust["value"][0]["id"].as_str().unwrap().to_string();
    let items = get_json(&http, &format!("{c}/items?$top=2"), &tok, None).await;
    let item0 = items["value"][0]["id"].as_str().unwrap().to_string();
    let item1_no = items["value"][1]["number"].as_str().unwrap().to_string();
    let body = serde_json::json!({
        "customerId": cust_id, "externalDocumentNumber": "PD-42", "currencyCode": "EUR",
        "salesInvoiceLines": [
            {"lineType": "Item", "itemId": item0, "quantity": 2, "unitPrice": 10.5, "discountPercent": 10},
            {"lineType": "Item", "lineObjectNumber": item1_no, "quantity": 1, "unitPrice": 100, "discountAmount": 5}
        ]
    });
    let (st, inv) = send(
        &http,
        reqwest::Method::POST,
        &format!("{c}/salesInvoices"),
        &tok,
        None,
        Some(body.clone()),
    )
    .await;
    assert_eq!(st, 201, "{inv}");
    assert_eq!(inv["status"], "Draft");
    assert_eq!(inv["customerId"], cust_id.as_str());
    // 2 × 10.5 − 10 % = 18.9; 100 − 5 = 95.
    assert_eq!(inv["totalAmountExcludingTax"].as_f64(), Some(113.9));
    assert_eq!(inv["totalAmountIncludingTax"].as_f64(), Some(113.9));
    assert_eq!(inv["discountAmount"].as_f64(), Some(7.1));
    let id = inv["id"].as_str().unwrap().to_string();
    let lines = get_json(
        &http,
        &format!("{c}/salesInvoices({id})/salesInvoiceLines"),
        &tok,
        None,
    )
    .await;
    let lines = lines["value"].as_array().unwrap().clone();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["sequence"], 10000);
    assert_eq!(lines[1]["sequence"], 20000);
    assert_eq!(lines[0]["documentId"], id.as_str());
    assert_eq!(lines[0]["amountExcludingTax"].as_f64(), Some(18.9));
    assert_eq!(lines[1]["lineObjectNumber"], item1_no.as_str());
    // Top-level line collection and header search by external reference.
    let top = get_json(
        &http,
        &format!("{c}/salesInvoiceLines?$filter=documentId eq {id}"),
        &tok,
        None,
    )
    .await;
    assert_eq!(top["value"].as_array().unwrap().len(), 2);
    let found = get_json(
        &http,
        &format!("{c}/salesInvoices?$filter=externalDocumentNumber eq 'PD-42'"),
        &tok,
        None,
    )
    .await;
    assert_eq!(found["value"].as_array().unwrap().len(), 1);
    // Unknown item: refused whole, nothing saved.
    let before = sb.business_central_count("sales_invoice").unwrap();
    let mut bad = body.clone();
    bad["salesInvoiceLines"][1]["lineObjectNumber"] = Value::from("NO-SUCH-ITEM");
    let (st, _) = send(
        &http,
        reqwest::Method::POST,
        &format!("{c}/salesInvoices"),
        &tok,
        None,
        Some(bad),
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(sb.business_central_count("sales_invoice").unwrap(), before);
    // Post once; the second post and a PATCH are refused.
    let post = format!("{c}/salesInvoices({id})/Microsoft.NAV.post");
    let (st, _) = send(&http, reqwest::Method::POST, &post, &tok, None, None).await;
    assert_eq!(st, 204);
    let after = get_json(&http, &format!("{c}/salesInvoices({id})"), &tok, None).await;
    assert_eq!(after["status"], "Open");
    assert_ne!(after["@odata.etag"], inv["@odata.etag"]);
    let (st, _) = send(&http, reqwest::Method::POST, &post, &tok, None, None).await;
    assert_eq!(st, 400);
    let (st, _) = send(
        &http,
        reqwest::Method::PATCH,
        &format!("{c}/salesInvoices({id})"),
        &tok,
        Some("*"),
        Some(serde_json::json!({"externalDocumentNumber": "X"})),
    )
    .await;
    assert_eq!(st, 400);
    let lid = lines[0]["id"].as_str().unwrap();
    let (st, _) = send(
        &http,
        reqwest::Method::PATCH,
        &format!("{c}/salesInvoiceLines({lid})"),
        &tok,
        Some("*"),
        Some(serde_json::json!({"quantity": 3})),
    )
    .await;
    assert_eq!(st, 400);
    // An order: line PATCH recomputes the totals.
    let mut order = body.clone();
    let obj = order.as_object_mut().unwrap();
    let l = obj.remove("salesInvoiceLines").unwrap();
    obj.insert("salesOrderLines".into(), l);
    let (st, so) = send(
        &http,
        reqwest::Method::POST,
        &format!("{c}/salesOrders"),
        &tok,
        None,
        Some(order),
    )
    .await;
    assert_eq!(st, 201, "{so}");
    let sid = so["id"].as_str().unwrap();
    let ol = get_json(
        &http,
        &format!("{c}/salesOrders({sid})/salesOrderLines"),
        &tok,
        None,
    )
    .await;
    let l0 = &ol["value"][0];
    let (st, v) = send(
        &http,
        reqwest::Method::PATCH,
        &format!("{c}/salesOrderLines({})", l0["id"].as_str().unwrap()),
        &tok,
        l0["@odata.etag"].as_str(),
        Some(serde_json::json!({"quantity": 4})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["amountExcludingTax"].as_f64(), Some(37.8));
    let so2 = get_json(&http, &format!("{c}/salesOrders({sid})"), &tok, None).await;
    assert_eq!(so2["totalAmountExcludingTax"].as_f64(), Some(132.8));
    // A line added to the order (by item number, customer by number on the order).
    let (st, nl) = send(
        &http,
        reqwest::Method::POST,
        &format!("{c}/salesOrders({sid})/salesOrderLines"),
        &tok,
        None,
        Some(serde_json::json!({"lineType": "Item", "lineObjectNumber": item1_no, "quantity": 1, "unitPrice": 7})),
    )
    .await;
    assert_eq!(st, 201, "{nl}");
    assert_eq!(nl["sequence"], 30000);
    let so3 = get_json(&http, &format!("{c}/salesOrders({sid})"), &tok, None).await;
    assert_eq!(so3["totalAmountExcludingTax"].as_f64(), Some(139.8));
    // Ship and invoice the order: a posted invoice with its lines, the order gone.
    let onum = so3["number"].as_str().unwrap().to_string();
    let (st, _) = send(
        &http,
        reqwest::Method::POST,
        &format!("{c}/salesOrders({sid})/Microsoft.NAV.shipAndInvoice"),
        &tok,
        None,
        None,
    )
    .await;
    assert_eq!(st, 204);
    let r = get(&http, &format!("{c}/salesOrders({sid})"), &tok, None).await;
    assert_eq!(r.status(), 404);
    let posted = get_json(
        &http,
        &format!("{c}/salesInvoices?$filter=orderNumber eq '{onum}'"),
        &tok,
        None,
    )
    .await;
    let posted = &posted["value"][0];
    assert_eq!(posted["status"], "Open");
    assert_eq!(posted["externalDocumentNumber"], "PD-42");
    assert_eq!(posted["totalAmountExcludingTax"].as_f64(), Some(139.8));
    let pid = posted["id"].as_str().unwrap();
    let pl = get_json(
        &http,
        &format!("{c}/salesInvoices({pid})/salesInvoiceLines"),
        &tok,
        None,
    )
    .await;
    assert_eq!(pl["value"].as_array().unwrap().len(), 3);
    let (st, _) = send(
        &http,
        reqwest::Method::POST,
        &format!("{c}/salesInvoices({id})/salesInvoiceLines"),
        &tok,
        None,
        Some(serde_json::json!({"lineType": "Comment", "description": "late"})),
    )
    .await;
    assert_eq!(st, 400, "no lines on a posted invoice");
    let cnum = cust["value"][0]["number"].as_str().unwrap();
    let (st, byno) = send(
        &http,
        reqwest::Method::POST,
        &format!("{c}/salesOrders"),
        &tok,
        None,
        Some(serde_json::json!({"customerNumber": cnum, "salesOrderLines": []})),
    )
    .await;
    assert_eq!(st, 201, "{byno}");
    assert_eq!(byno["customerId"], cust_id.as_str());
    assert_eq!(byno["totalAmountIncludingTax"].as_f64(), Some(0.0));
}

#[tokio::test]
async fn a_dropped_create_is_applied_once() {
    let (sb, http, tok, root) = start(small()).await;
    let c = company_root(&sb, &root).await;
    sb.business_central_drop_create_responses(1);
    let r = http
        .post(format!("{c}/contacts"))
        .bearer_auth(&tok)
        .json(&serde_json::json!({"displayName": "Dropped Person", "email": "d@p.com"}))
        .send()
        .await;
    let failed = match r {
        Err(_) => true,
        Ok(resp) => resp.bytes().await.is_err(),
    };
    assert!(failed, "the answer should be cut off");
    let found = get_json(
        &http,
        &format!("{c}/contacts?$filter=email eq 'd@p.com'"),
        &tok,
        None,
    )
    .await;
    assert_eq!(found["value"].as_array().unwrap().len(), 1);
    let w = sb.business_central_writes();
    assert_eq!(w.len(), 1);
    assert!(w[0].dropped);
    assert_eq!(w[0].status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equality_search_at_scale_stays_fast() {
    let (sb, http, tok, root) = start(SandboxOptions {
        scale: 1_000_000,
        ..Default::default()
    })
    .await;
    let c = company_root(&sb, &root).await;
    let t = std::time::Instant::now();
    let (st, v) = send(
        &http,
        reqwest::Method::POST,
        &format!("{c}/customers"),
        &tok,
        None,
        Some(serde_json::json!({"displayName": "Needle Inc", "email": "needle@hay.com"})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let found = get_json(
        &http,
        &format!("{c}/customers?$filter=email eq 'needle@hay.com'"),
        &tok,
        None,
    )
    .await;
    assert_eq!(found["value"].as_array().unwrap().len(), 1);
    // G/L entries (500k a company): too big to index, written rows only, still answers.
    let found = get_json(
        &http,
        &format!("{c}/generalLedgerEntries?$filter=documentNumber eq 'nope'"),
        &tok,
        None,
    )
    .await;
    assert_eq!(found["value"].as_array().unwrap().len(), 0);
    let found = get_json(
        &http,
        &format!("{c}/customers?$filter=email eq 'needle@hay.com'"),
        &tok,
        None,
    )
    .await;
    assert_eq!(found["value"].as_array().unwrap().len(), 1);
    eprintln!("scale 1M: create + 3 searches in {:?}", t.elapsed());
    assert!(t.elapsed() < std::time::Duration::from_secs(20));
}

// ---------------------------------------------------------------------------------------------
// Tenant variants, FlowFields and the truth.

fn tenant(t: Tenant) -> SandboxOptions {
    SandboxOptions {
        scale: 1000,
        tenant: t,
        ..Default::default()
    }
}

/// (name, type) of every property of entity type `ty` in a CSDL document, in order.
fn properties(csdl: &str, ty: &str) -> Vec<(String, String)> {
    let start = format!("<EntityType Name=\"{ty}\">");
    let Some(at) = csdl.find(&start) else {
        return Vec::new();
    };
    let body = &csdl[at..];
    let body = &body[..body.find("</EntityType>").unwrap()];
    body.split("<Property ")
        .skip(1)
        .map(|p| {
            let attr = |a: &str| {
                let s = &p[p.find(&format!("{a}=\"")).unwrap() + a.len() + 2..];
                s[..s.find('"').unwrap()].to_string()
            };
            (attr("Name"), attr("Type"))
        })
        .collect()
}

/// Every row of `set` in company `cid`, following next links.
async fn read_all(
    http: &reqwest::Client,
    tok: &str,
    root: &str,
    cid: &str,
    set: &str,
    query: &str,
) -> Vec<serde_json::Map<String, Value>> {
    let mut url = format!("{root}/companies({cid})/{set}{query}");
    let mut out = Vec::new();
    loop {
        let v = get_json(http, &url, tok, Some("odata.maxpagesize=150")).await;
        for r in v["value"].as_array().unwrap() {
            out.push(r.as_object().unwrap().clone());
        }
        match v["@odata.nextLink"].as_str() {
            Some(n) => url = n.to_string(),
            None => return out,
        }
    }
}

#[tokio::test]
async fn each_tenant_declares_in_metadata_what_it_serves() {
    for t in Tenant::ALL {
        let (sb, http, tok, root) = start(tenant(t)).await;
        let x = get(&http, &format!("{root}/$metadata"), &tok, None)
            .await
            .text()
            .await
            .unwrap();
        assert!(x.starts_with("<?xml"), "{t}");
        assert!(x.contains(r#"<Schema Namespace="Microsoft.NAV""#));
        assert!(x.contains(r#"<EntityContainer Name="NAV">"#));
        let customer = properties(&x, "customer");
        let names: Vec<&str> = customer.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(&names[..3], ["id", "number", "displayName"], "{t}");
        assert!(customer.contains(&("blocked".into(), "Microsoft.NAV.customerBlocked".into())));
        assert!(x.contains(r#"<Member Name="_x0020_" Value="0" />"#));
        assert!(x.contains(
            r#"<Property Name="displayName" Type="Edm.String" Nullable="false" MaxLength="100" />"#
        ));
        let has = |n: &str| names.contains(&n);
        match t {
            Tenant::Standard => {
                assert!(has("salespersonCode") && has("mlcLoyaltyTier") && has("mlcCreditScore"));
                assert!(x.contains(r#"<EntitySet Name="dimensionValues""#));
            }
            Tenant::Lean => {
                assert!(!has("salespersonCode") && !has("mlcLoyaltyTier"));
                assert!(!x.contains("dimensionValue"), "no set, no type");
                let item = properties(&x, "item");
                assert!(!item.iter().any(|p| p.0 == "displayName2"));
                assert!(
                    !properties(&x, "contact")
                        .iter()
                        .any(|p| p.0 == "privacyBlocked")
                );
            }
            Tenant::Custom => {
                for (n, ty) in [
                    ("industryCode", "Edm.String"),
                    ("creditScore", "Edm.Int32"),
                    ("loyaltyTier", "Microsoft.NAV.loyaltyTier"),
                    ("annualBudget", "Edm.Decimal"),
                    ("companyId", "Edm.Guid"),
                ] {
                    assert!(customer.contains(&(n.into(), ty.into())), "{n}");
                }
                assert!(x.contains(r#"<EnumType Name="loyaltyTier">"#));
                assert!(
                    properties(&x, "item")
                        .iter()
                        .any(|p| p.0 == "shelfLifeDays")
                );
            }
        }
        // What a row carries is exactly what the type declares, for every served set.
        let (cid, _) = sb.business_central_companies()[0].clone();
        for set in sb.business_central_counts().keys() {
            let ty = x
                .split(&format!(
                    "<EntitySet Name=\"{set}\" EntityType=\"Microsoft.NAV."
                ))
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap()
                .to_string();
            let v = get_json(
                &http,
                &format!("{root}/companies({cid})/{set}?$top=1"),
                &tok,
                None,
            )
            .await;
            let row = v["value"][0].as_object().unwrap();
            let mut keys: Vec<String> = row
                .keys()
                .filter(|k| !k.starts_with('@'))
                .cloned()
                .collect();
            let mut declared: Vec<String> = properties(&x, &ty).into_iter().map(|p| p.0).collect();
            keys.sort();
            declared.sort();
            assert_eq!(keys, declared, "{t}: {set}");
        }
    }
}

#[tokio::test]
async fn lean_tenant_answers_404_for_its_missing_set_and_400_for_missing_properties() {
    let (sb, http, tok, root) = start(tenant(Tenant::Lean)).await;
    let (cid, _) = sb.business_central_companies()[0].clone();
    let r = get(
        &http,
        &format!("{root}/companies({cid})/dimensionValues"),
        &tok,
        None,
    )
    .await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "BadRequest_NotFound");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("CorrelationId")
    );
    // Writes to it are not found either, and the controls do not know it.
    let (status, _) = send(
        &http,
        reqwest::Method::POST,
        &format!("{root}/companies({cid})/dimensionValues"),
        &tok,
        None,
        Some(serde_json::json!({"code": "X"})),
    )
    .await;
    assert_eq!(status, 404);
    assert!(sb.business_central_live_rows("dimensionValues").is_err());
    assert_eq!(sb.business_central_count("dimension_value"), None);
    assert!(sb.truth("business_central", "dimension_value").is_none());
    assert!(!sb.business_central_mutate().contains_key("dimensionValues"));
    // A property the catalog reads but this tenant lacks.
    for (set, ty, prop) in [
        ("customers", "customer", "salespersonCode"),
        ("items", "item", "displayName2"),
    ] {
        let r = get(
            &http,
            &format!("{root}/companies({cid})/{set}?$select=id,{prop}"),
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
                .starts_with(&format!(
                    "Could not find a property named '{prop}' on type 'Microsoft.NAV.{ty}'."
                )),
            "{v}"
        );
        let v = get_json(
            &http,
            &format!("{root}/companies({cid})/{set}?$top=1"),
            &tok,
            None,
        )
        .await;
        assert!(v["value"][0].get(prop).is_none());
    }
}

#[tokio::test]
async fn an_unknown_select_is_a_400_in_every_tenant() {
    for t in Tenant::ALL {
        let (sb, http, tok, root) = start(tenant(t)).await;
        let (cid, _) = sb.business_central_companies()[1].clone();
        let r = get(
            &http,
            &format!("{root}/companies({cid})/customers?$select=id,X"),
            &tok,
            None,
        )
        .await;
        assert_eq!(r.status(), 400, "{t}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "BadRequest", "{t}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(
            m.starts_with("Could not find a property named 'X' on type 'Microsoft.NAV.customer'.")
                && m.contains("CorrelationId"),
            "{t}: {m}"
        );
    }
}

#[tokio::test]
async fn custom_tenant_serves_its_extension_fields_as_declared_and_one_drifts() {
    let (sb, http, tok, root) = start(tenant(Tenant::Custom)).await;
    let mut budgets_as_text = Vec::new();
    let mut rows = 0;
    for (cid, _) in sb.business_central_companies() {
        for r in read_all(&http, &tok, &root, &cid, "customers", "").await {
            rows += 1;
            assert!(r["industryCode"].is_string());
            assert!(r["creditScore"].is_i64());
            assert!(
                ["_x0020_", "Bronze", "Silver", "Gold"]
                    .contains(&r["loyaltyTier"].as_str().unwrap())
            );
            assert_eq!(r["companyId"].as_str().unwrap().len(), 36);
            assert!(r["balanceDue"].is_number());
            match &r["annualBudget"] {
                Value::Number(_) => {}
                Value::String(s) => budgets_as_text.push(s.clone()),
                other => panic!("annualBudget {other}"),
            }
        }
        let items = read_all(
            &http,
            &tok,
            &root,
            &cid,
            "items",
            "?$select=id,shelfLifeDays,hazardClass,launchDate",
        )
        .await;
        assert!(items.iter().all(|r| r["shelfLifeDays"].is_i64()
            && r["hazardClass"].is_string()
            && r["launchDate"].as_str().unwrap().len() == 10));
    }
    // A small, deterministic fraction of rows carries text in the decimal.
    assert!(!budgets_as_text.is_empty());
    assert!(
        budgets_as_text.len() * 10 < rows,
        "{} of {rows}",
        budgets_as_text.len()
    );
    assert!(budgets_as_text.iter().any(|s| s == "n/a"));
    assert!(
        budgets_as_text
            .iter()
            .any(|s| s.contains(',') || s.contains('.'))
    );
    // Extension fields are selectable and filterable like any property.
    let (cid, _) = sb.business_central_companies()[0].clone();
    let v = get_json(
        &http,
        &format!("{root}/companies({cid})/customers?$select=id,loyaltyTier&$filter=loyaltyTier%20eq%20'Gold'"),
        &tok,
        None,
    )
    .await;
    let gold = v["value"].as_array().unwrap();
    assert!(!gold.is_empty() && gold.iter().all(|r| r["loyaltyTier"] == "Gold"));
    // The same options serve the same bytes.
    let (sb2, http2, tok2, root2) = start(tenant(Tenant::Custom)).await;
    let url = |root: &str| format!("{root}/companies({cid})/customers?$top=50");
    let a = get(&http, &url(&root), &tok, None)
        .await
        .text()
        .await
        .unwrap();
    let b = get(&http2, &url(&root2), &tok2, None)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(a.replace(&root, ""), b.replace(&root2, ""));
    drop(sb2);
}

#[tokio::test]
async fn flowfields_move_without_last_modified_so_only_a_full_read_sees_them() {
    let (sb, http, tok, root) = start(tenant(Tenant::Standard)).await;
    let (cid, _) = sb.business_central_companies()[0].clone();
    let snapshot = |rows: Vec<serde_json::Map<String, Value>>, f: &str| {
        rows.into_iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap().to_string(),
                    (
                        r[f].as_f64().unwrap(),
                        r["lastModifiedDateTime"].as_str().unwrap().to_string(),
                        r["@odata.etag"].as_str().unwrap().to_string(),
                    ),
                )
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let flows = [
        ("customers", "balanceDue"),
        ("vendors", "balance"),
        ("items", "inventory"),
        ("accounts", "netChange"),
    ];
    let mut before = std::collections::BTreeMap::new();
    for (set, f) in flows {
        before.insert(
            set,
            snapshot(read_all(&http, &tok, &root, &cid, set, "").await, f),
        );
    }
    let changes = sb.business_central_mutate();
    for (set, f) in flows {
        assert!(changes[set].recomputed > 0, "{set}");
        let old = &before[set];
        let cursor = old
            .values()
            .map(|v| v.1.clone())
            .max_by_key(|s| chrono::DateTime::parse_from_rfc3339(s).unwrap())
            .unwrap();
        let now = snapshot(read_all(&http, &tok, &root, &cid, set, "").await, f);
        // Rows whose FlowField moved while the row itself did not.
        let moved: Vec<&String> = now
            .iter()
            .filter(|(id, v)| {
                old.get(*id)
                    .is_some_and(|o| o.0 != v.0 && o.1 == v.1 && o.2 == v.2)
            })
            .map(|(id, _)| id)
            .collect();
        assert!(!moved.is_empty(), "{set}: no {f} moved silently");
        let since = read_all(
            &http,
            &tok,
            &root,
            &cid,
            set,
            &format!("?$filter=lastModifiedDateTime%20gt%20{cursor}&$select=id"),
        )
        .await;
        let seen: Vec<&str> = since.iter().map(|r| r["id"].as_str().unwrap()).collect();
        for id in &moved {
            assert!(
                !seen.contains(&id.as_str()),
                "{set}: {id} came through the cursor"
            );
        }
    }
    // The truth shows the current balances.
    let truth = sb.business_central_company_truth(&cid, "customer").unwrap();
    let now = snapshot(
        read_all(&http, &tok, &root, &cid, "customers", "").await,
        "balanceDue",
    );
    for t in &truth {
        assert_eq!(
            t["balanceDue"].as_f64().unwrap(),
            now[t["id"].as_str().unwrap()].0
        );
    }

    // Posting an invoice through the API: the customer owes its total, the customer record
    // (lastModifiedDateTime, etag) does not change.
    let c = format!("{root}/companies({cid})");
    let cust = get_json(&http, &format!("{c}/customers?$top=1&$skip=3"), &tok, None).await["value"]
        [0]
    .clone();
    let item = get_json(&http, &format!("{c}/items?$top=1"), &tok, None).await["value"][0].clone();
    let (status, inv) = send(
        &http,
        reqwest::Method::POST,
        &format!("{c}/salesInvoices"),
        &tok,
        None,
        Some(serde_json::json!({
            "customerId": cust["id"],
            "salesInvoiceLines": [{"lineType": "Item", "itemId": item["id"], "quantity": 3, "unitPrice": 12.5}]
        })),
    )
    .await;
    assert_eq!(status, 201, "{inv}");
    let (status, _) = send(
        &http,
        reqwest::Method::POST,
        &format!(
            "{c}/salesInvoices({})/Microsoft.NAV.post",
            inv["id"].as_str().unwrap()
        ),
        &tok,
        None,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let after = get_json(
        &http,
        &format!("{c}/customers({})", cust["id"].as_str().unwrap()),
        &tok,
        None,
    )
    .await;
    let total = inv["totalAmountIncludingTax"].as_f64().unwrap();
    assert!(total > 0.0);
    assert!(
        (after["balanceDue"].as_f64().unwrap() - cust["balanceDue"].as_f64().unwrap() - total)
            .abs()
            < 0.005
    );
    assert_eq!(after["lastModifiedDateTime"], cust["lastModifiedDateTime"]);
    assert_eq!(after["@odata.etag"], cust["@odata.etag"]);
    let item_after = get_json(
        &http,
        &format!("{c}/items({})", item["id"].as_str().unwrap()),
        &tok,
        None,
    )
    .await;
    assert!(
        (item_after["inventory"].as_f64().unwrap() - (item["inventory"].as_f64().unwrap() - 3.0))
            .abs()
            < 0.005
    );
    assert_eq!(
        item_after["lastModifiedDateTime"],
        item["lastModifiedDateTime"]
    );
}

#[tokio::test]
async fn truth_equals_a_full_paged_read_in_every_tenant() {
    for t in Tenant::ALL {
        let (sb, http, tok, root) = start(tenant(t)).await;
        sb.business_central_mutate();
        sb.business_central_mutate();
        for (entity, set) in [
            ("customer", "customers"),
            ("item", "items"),
            ("sales_order_line", "salesOrderLines"),
            ("general_ledger_entry", "generalLedgerEntries"),
            ("dimension_value", "dimensionValues"),
        ] {
            let Some(truth) = sb.truth("business_central", entity) else {
                assert!(
                    t == Tenant::Lean && entity == "dimension_value",
                    "{t}: {entity}"
                );
                continue;
            };
            let mut read = Vec::new();
            for (cid, _) in sb.business_central_companies() {
                let rows = read_all(&http, &tok, &root, &cid, set, "").await;
                assert_eq!(
                    Some(rows.clone()),
                    sb.business_central_company_truth(&cid, entity),
                    "{t}: {entity} in {cid}"
                );
                read.extend(rows);
            }
            assert_eq!(read.len(), truth.len(), "{t}: {entity}");
            assert!(
                read == truth,
                "{t}: {entity}: truth differs from a full read"
            );
            assert_eq!(Some(truth.len() as u64), sb.business_central_count(entity));
        }
    }
}

//! The Dataverse + Entra sandbox against its own contract: tokens, paging, `$select`,
//! annotations, change tracking, errors, service protection and fault injection.

use std::collections::BTreeSet;
use std::time::Duration;

use ml_connector::sandbox::{Faults, Sandbox, SandboxOptions};
use serde_json::Value;

async fn start(opts: SandboxOptions) -> Sandbox {
    Sandbox::start(opts, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("sandbox starts")
}

fn small(scale: u64) -> SandboxOptions {
    SandboxOptions {
        scale,
        ..SandboxOptions::default()
    }
}

fn token_url(sb: &Sandbox, tenant: &str) -> String {
    format!("{}/{tenant}/oauth2/v2.0/token", sb.authority_url())
}

fn form(sb: &Sandbox) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "client_credentials".into()),
        ("client_id", sb.client_id().into()),
        ("client_secret", sb.client_secret().into()),
        ("scope", format!("{}/.default", sb.dataverse_url())),
    ]
}

async fn token(sb: &Sandbox, http: &reqwest::Client) -> String {
    let r = http
        .post(token_url(sb, sb.tenant_id()))
        .form(&form(sb))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

fn api(sb: &Sandbox, rest: &str) -> String {
    format!("{}/api/data/v9.2/{rest}", sb.dataverse_url())
}

async fn get(http: &reqwest::Client, url: &str, tok: &str, prefer: &[&str]) -> reqwest::Response {
    let mut rb = http.get(url).bearer_auth(tok);
    for p in prefer {
        rb = rb.header("Prefer", *p);
    }
    rb.send().await.unwrap()
}

async fn get_json(http: &reqwest::Client, url: &str, tok: &str, prefer: &[&str]) -> Value {
    let r = get(http, url, tok, prefer).await;
    assert_eq!(r.status(), 200, "{url}");
    r.json().await.unwrap()
}

async fn error_of(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    (
        status,
        v["error"]["code"].as_str().unwrap_or_default().to_string(),
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// Follows nextLinks verbatim; returns every page.
async fn all_pages(http: &reqwest::Client, first: &str, tok: &str, prefer: &[&str]) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut url = first.to_string();
    loop {
        let v = get_json(http, &url, tok, prefer).await;
        let next = v["@odata.nextLink"].as_str().map(str::to_string);
        pages.push(v);
        match next {
            Some(n) => url = n,
            None => return pages,
        }
    }
}

fn ids(pages: &[Value], pk: &str) -> Vec<String> {
    pages
        .iter()
        .flat_map(|p| p["value"].as_array().unwrap().iter())
        .filter_map(|r| r[pk].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn token_endpoint_errors_follow_entra() {
    let sb = start(small(10)).await;
    let http = reqwest::Client::new();

    let mut bad_secret = form(&sb);
    bad_secret[2].1 = "wrong".into();
    let r = http
        .post(token_url(&sb, sb.tenant_id()))
        .form(&bad_secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid_client");
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS7000215:")
    );
    assert_eq!(v["error_codes"][0], 7000215);
    for k in ["timestamp", "trace_id", "correlation_id"] {
        assert!(v[k].is_string(), "{k}");
    }

    let mut bad_scope = form(&sb);
    bad_scope[3].1 = "https://other.crm.dynamics.com/.default".into();
    let r = http
        .post(token_url(&sb, sb.tenant_id()))
        .form(&bad_scope)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid_scope");
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS70011:")
    );

    let r = http
        .post(token_url(&sb, "not-my-tenant"))
        .form(&form(&sb))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid_request");
    assert_eq!(v["error_codes"][0], 90002);

    let mut unknown = form(&sb);
    unknown[1].1 = "11111111-2222-4333-8444-555555555555".into();
    let r = http
        .post(token_url(&sb, sb.tenant_id()))
        .form(&unknown)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "unauthorized_client"
    );

    let mut grant = form(&sb);
    grant[0].1 = "password".into();
    let r = http
        .post(token_url(&sb, sb.tenant_id()))
        .form(&grant)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );

    // HTTP Basic client authentication works too.
    let r = http
        .post(token_url(&sb, sb.tenant_id()))
        .basic_auth(sb.client_id(), Some(sb.client_secret()))
        .form(&[
            ("grant_type", "client_credentials".to_string()),
            ("scope", format!("{}/.default", sb.dataverse_url())),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3599);
    assert_eq!(v["ext_expires_in"], 3599);
    assert!(v["access_token"].as_str().unwrap().starts_with("eyJ"));
    sb.shutdown().await;
}

#[tokio::test]
async fn auth_whoami_and_application_user() {
    let sb = start(small(10)).await;
    let http = reqwest::Client::new();
    let r = http.get(api(&sb, "WhoAmI")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = get(&http, &api(&sb, "WhoAmI"), "eyJnot.a.token", &[]).await;
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );

    let tok = token(&sb, &http).await;
    let r = get(&http, &api(&sb, "WhoAmI"), &tok, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["odata-version"], "4.0");
    assert_eq!(
        r.headers()["content-type"],
        "application/json; odata.metadata=minimal"
    );
    let v: Value = r.json().await.unwrap();
    assert!(
        v["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse")
    );
    for k in ["BusinessUnitId", "UserId", "OrganizationId"] {
        assert_eq!(v[k].as_str().unwrap().len(), 36, "{k}");
    }

    sb.set_app_user(false);
    let _ = token(&sb, &http).await; // tokens are still issued
    let (status, code, message) =
        error_of(get(&http, &api(&sb, "accounts"), &tok, &[]).await).await;
    assert_eq!((status, code.as_str()), (403, "0x80072560"));
    assert_eq!(message, "The user is not a member of the organization.");
    sb.set_app_user(true);

    let (status, code, _) = error_of(get(&http, &api(&sb, "nothings"), &tok, &[]).await).await;
    assert_eq!((status, code.as_str()), (404, "0x8006088a"));
    sb.shutdown().await;
}

#[tokio::test]
async fn paging_caps_at_5000_and_serves_every_row_once_in_key_order() {
    let sb = start(small(6000)).await;
    let http = reqwest::Client::new();
    let tok = token(&sb, &http).await;

    let r = get(
        &http,
        &api(&sb, "accounts?$select=name"),
        &tok,
        &["odata.maxpagesize=20000"],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["preference-applied"], "odata.maxpagesize=5000");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["value"].as_array().unwrap().len(), 5000);
    let next = v["@odata.nextLink"].as_str().unwrap();
    assert!(
        next.starts_with(&api(&sb, "accounts?$select=name&$skiptoken=")),
        "{next}"
    );
    assert!(next.contains("istracking=%22False%22"), "{next}");

    let pages = all_pages(
        &http,
        &api(&sb, "accounts?$select=name"),
        &tok,
        &["odata.maxpagesize=1000"],
    )
    .await;
    assert_eq!(pages.len(), 6);
    assert!(
        pages[..5]
            .iter()
            .all(|p| p["value"].as_array().unwrap().len() == 1000)
    );
    let got = ids(&pages, "accountid");
    let want: Vec<String> = sb
        .live_rows("accounts")
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(got, want);
    assert!(got.windows(2).all(|w| w[0] < w[1]));
    assert!(pages.last().unwrap().get("@odata.deltaLink").is_none());
    sb.shutdown().await;
}

#[tokio::test]
async fn select_annotations_and_query_option_errors() {
    let sb = start(small(200)).await;
    let http = reqwest::Client::new();
    let tok = token(&sb, &http).await;

    let v = get_json(
        &http,
        &api(&sb, "accounts?$select=name,revenue"),
        &tok,
        &["odata.maxpagesize=5"],
    )
    .await;
    assert!(
        v["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#accounts(name,revenue)")
    );
    let row = v["value"][0].as_object().unwrap();
    let keys: BTreeSet<&str> = row.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["@odata.etag", "name", "revenue", "accountid"])
    );

    let (status, _, message) =
        error_of(get(&http, &api(&sb, "accounts?$select=name,bogus"), &tok, &[]).await).await;
    assert_eq!(status, 400);
    assert_eq!(
        message,
        "Could not find a property named 'bogus' on type 'Microsoft.Dynamics.CRM.account'."
    );

    // All catalog fields, with the lookup target annotation.
    let prefer = ["odata.include-annotations=\"Microsoft.Dynamics.CRM.lookuplogicalname\""];
    let r = get(&http, &api(&sb, "opportunities"), &tok, &prefer).await;
    assert_eq!(
        r.headers()["preference-applied"],
        "odata.include-annotations=\"Microsoft.Dynamics.CRM.lookuplogicalname\""
    );
    let v: Value = r.json().await.unwrap();
    let rows = v["value"].as_array().unwrap();
    let mut kinds = BTreeSet::new();
    for r in rows {
        assert_eq!(
            r["_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"],
            "systemuser"
        );
        kinds.insert(
            r["_customerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        assert!(
            r.get("_ownerid_value@OData.Community.Display.V1.FormattedValue")
                .is_none()
        );
        if r["_parentaccountid_value"].is_null() {
            assert!(
                r.get("_parentaccountid_value@Microsoft.Dynamics.CRM.lookuplogicalname")
                    .is_none()
            );
        }
    }
    assert_eq!(
        kinds,
        BTreeSet::from(["account".to_string(), "contact".to_string()])
    );

    let v = get_json(
        &http,
        &api(&sb, "opportunities"),
        &tok,
        &["odata.include-annotations=\"*\""],
    )
    .await;
    let r = &v["value"][0];
    assert!(
        r["_customerid_value@Microsoft.Dynamics.CRM.associatednavigationproperty"]
            .as_str()
            .unwrap()
            .starts_with("customerid_")
    );
    assert!(r["statecode@OData.Community.Display.V1.FormattedValue"].is_string());
    assert!(r["_ownerid_value@OData.Community.Display.V1.FormattedValue"].is_string());
    assert!(
        r["estimatedvalue@OData.Community.Display.V1.FormattedValue"]
            .as_str()
            .unwrap()
            .starts_with('$')
    );

    let (status, _, message) =
        error_of(get(&http, &api(&sb, "accounts?$skip=10"), &tok, &[]).await).await;
    assert_eq!(status, 400);
    assert!(message.contains("$skip"), "{message}");
    for o in [
        "$filter=modifiedon%20ge%202024-01-01T00:00:00Z",
        "$orderby=modifiedon",
        "$top=5",
        "$expand=primarycontactid",
    ] {
        let url = api(&sb, &format!("accounts?{o}"));
        let (status, _, message) =
            error_of(get(&http, &url, &tok, &["odata.track-changes"]).await).await;
        let name = o.split('=').next().unwrap();
        assert_eq!(status, 400);
        assert_eq!(
            message,
            format!(
                "The \"{name}\" query parameter isn't supported when Change Tracking is enabled."
            )
        );
    }
    sb.shutdown().await;
}

#[tokio::test]
async fn filter_window_top_and_count_without_tracking() {
    let sb = start(small(300)).await;
    let http = reqwest::Client::new();
    let tok = token(&sb, &http).await;
    // Account versions are 1..=300; modifiedon = 2024-01-01 + version seconds.
    let url = api(
        &sb,
        "accounts?$select=versionnumber&$filter=modifiedon%20ge%202024-01-01T00:00:10Z%20and%20modifiedon%20lt%202024-01-01T00:00:20Z",
    );
    let pages = all_pages(&http, &url, &tok, &["odata.maxpagesize=4"]).await;
    let versions: Vec<i64> = pages
        .iter()
        .flat_map(|p| {
            p["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["versionnumber"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(versions, (10..20).collect::<Vec<_>>());

    let v = get_json(&http, &api(&sb, "accounts?$top=7&$count=true"), &tok, &[]).await;
    assert_eq!(v["value"].as_array().unwrap().len(), 7);
    assert_eq!(v["@odata.count"], 300);
    assert!(v.get("@odata.nextLink").is_none());

    let v = get_json(
        &http,
        &api(
            &sb,
            "accounts(00000001-0000-4000-8000-000000000005)?$select=name",
        ),
        &tok,
        &[],
    )
    .await;
    assert!(
        v["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#accounts(name)/$entity")
    );
    assert_eq!(v["accountid"], "00000001-0000-4000-8000-000000000005");
    let (status, code, _) = error_of(
        get(
            &http,
            &api(&sb, "accounts(00000001-0000-4000-8000-0000000fffff)"),
            &tok,
            &[],
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (404, "0x80040217"));
    sb.shutdown().await;
}

#[tokio::test]
async fn change_tracking_snapshot_mutate_delta_and_expiry() {
    let sb = start(small(400)).await;
    let http = reqwest::Client::new();
    let tok = token(&sb, &http).await;
    let track = ["odata.track-changes", "odata.maxpagesize=150"];
    let first = api(&sb, "accounts?$select=name,modifiedon");
    let pages = all_pages(&http, &first, &tok, &track).await;
    assert_eq!(pages.len(), 3);
    assert!(
        pages[0]["@odata.nextLink"]
            .as_str()
            .unwrap()
            .contains("istracking=%22True%22")
    );
    assert!(
        pages[..2]
            .iter()
            .all(|p| p.get("@odata.deltaLink").is_none())
    );
    let delta = pages[2]["@odata.deltaLink"].as_str().unwrap().to_string();
    assert!(
        delta.starts_with(&format!("{first}&$deltatoken=")),
        "{delta}"
    );
    assert_eq!(ids(&pages, "accountid").len(), 400);

    let before: std::collections::BTreeMap<String, i64> =
        sb.live_rows("accounts").unwrap().into_iter().collect();
    let summary = sb.mutate();
    let acc = summary.entity_sets["accounts"];
    assert_eq!((acc.inserted, acc.updated, acc.deleted), (8, 8, 8));
    let after: std::collections::BTreeMap<String, i64> =
        sb.live_rows("accounts").unwrap().into_iter().collect();
    let changed: BTreeSet<String> = after
        .iter()
        .filter(|(id, v)| before.get(*id) != Some(*v))
        .map(|(id, _)| id.clone())
        .collect();
    let deleted: BTreeSet<String> = before
        .keys()
        .filter(|id| !after.contains_key(*id))
        .cloned()
        .collect();
    assert_eq!(changed.len(), 16);
    assert_eq!(deleted.len(), 8);

    let dpages = all_pages(&http, &delta, &tok, &["odata.maxpagesize=5"]).await;
    assert!(dpages.len() >= 5, "delta pages with nextLink");
    let ctx = dpages[0]["@odata.context"].as_str().unwrap();
    assert!(
        ctx.ends_with("$metadata#accounts(name,modifiedon)/$delta"),
        "{ctx}"
    );
    let items: Vec<&Value> = dpages
        .iter()
        .flat_map(|p| p["value"].as_array().unwrap().iter())
        .collect();
    let got_rows: BTreeSet<String> = items
        .iter()
        .filter_map(|i| i["accountid"].as_str().map(str::to_string))
        .collect();
    let tombstones: Vec<&&Value> = items.iter().filter(|i| i.get("id").is_some()).collect();
    let got_deleted: BTreeSet<String> = tombstones
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got_rows, changed);
    assert_eq!(got_deleted, deleted);
    for t in &tombstones {
        assert!(
            t["@odata.context"]
                .as_str()
                .unwrap()
                .ends_with("$metadata#accounts/$deletedEntity")
        );
        assert_eq!(t["reason"], "deleted");
    }
    // Upserts come first (by version), then deletions.
    let first_tomb = items.iter().position(|i| i.get("id").is_some()).unwrap();
    assert!(items[first_tomb..].iter().all(|i| i.get("id").is_some()));
    let next_delta = dpages.last().unwrap()["@odata.deltaLink"]
        .as_str()
        .unwrap()
        .to_string();

    // Nothing changed since: an empty delta with a fresh link.
    let v = get_json(&http, &next_delta, &tok, &["odata.track-changes"]).await;
    assert_eq!(v["value"].as_array().unwrap().len(), 0);
    assert!(v["@odata.deltaLink"].is_string());

    sb.expire_delta_tokens();
    let expired = error_of(get(&http, &next_delta, &tok, &[]).await).await;
    assert_eq!(
        expired,
        (
            400,
            "0x80044352".to_string(),
            "Version stamp associated with the client has expired. Please perform a full sync."
                .to_string()
        )
    );
    let malformed = error_of(
        get(
            &http,
            &api(&sb, "accounts?$deltatoken=yesterday"),
            &tok,
            &[],
        )
        .await,
    )
    .await;
    assert_eq!(malformed.1, "0x80044352");
    sb.shutdown().await;
}

#[tokio::test]
async fn poisoned_rows_serve_bad_values_until_mutated() {
    let sb = start(small(50)).await;
    let http = reqwest::Client::new();
    let tok = token(&sb, &http).await;
    sb.poison("accounts", 2).unwrap();
    assert!(sb.poison("nothing", 1).is_err());
    let v = get_json(
        &http,
        &api(
            &sb,
            "accounts?$select=revenue,lastusedincampaign,donotemail",
        ),
        &tok,
        &[],
    )
    .await;
    let rows = v["value"].as_array().unwrap();
    assert_eq!(rows[0]["revenue"], "n/a");
    assert_eq!(rows[1]["lastusedincampaign"], "yesterday");
    assert!(!rows[2]["revenue"].is_string());
    sb.mutate();
    let v = get_json(&http, &api(&sb, "accounts?$select=revenue"), &tok, &[]).await;
    let rows = v["value"].as_array().unwrap();
    assert!(rows.iter().all(|r| !r["revenue"].is_string()));
    sb.shutdown().await;
}

#[tokio::test]
async fn service_protection_budget_answers_429_with_retry_after() {
    let sb = start(SandboxOptions {
        scale: 10,
        budget: Some((3, Duration::from_secs(60))),
        retry_after_secs: 2,
        ..SandboxOptions::default()
    })
    .await;
    let http = reqwest::Client::new();
    let tok = token(&sb, &http).await;
    for _ in 0..3 {
        assert_eq!(
            get(&http, &api(&sb, "WhoAmI"), &tok, &[]).await.status(),
            200
        );
    }
    let r = get(&http, &api(&sb, "accounts"), &tok, &[]).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "2");
    let (_, code, message) = error_of(r).await;
    assert_eq!(code, "0x80072322");
    assert_eq!(
        message,
        "Number of requests exceeded the limit of 3 over time window of 60 seconds."
    );
    let stats = sb.stats();
    assert_eq!(stats.kind("data"), 4);
    assert_eq!(stats.kind("token"), 1);
    assert_eq!(stats.status(429), 1);
    sb.shutdown().await;
}

#[tokio::test]
async fn injected_faults_fire() {
    let sb = start(SandboxOptions {
        scale: 300,
        faults: "429=1.0".parse().unwrap(),
        ..SandboxOptions::default()
    })
    .await;
    let http = reqwest::Client::new();
    let tok = token(&sb, &http).await; // tokens never get faults
    for _ in 0..5 {
        let r = get(&http, &api(&sb, "accounts"), &tok, &[]).await;
        assert_eq!(r.status(), 429);
        assert!(r.headers().contains_key("retry-after"));
    }

    sb.set_faults("5xx=1".parse().unwrap());
    for _ in 0..5 {
        let r = get(&http, &api(&sb, "accounts"), &tok, &[]).await;
        assert!([500, 502, 503].contains(&r.status().as_u16()));
        let (_, code, _) = error_of(r).await;
        assert_eq!(code, "0x80040216");
    }

    sb.set_faults("reset=1".parse().unwrap());
    let r = get(&http, &api(&sb, "accounts"), &tok, &[]).await;
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.is_err(), "the body must be cut");

    sb.set_faults("expire=1".parse().unwrap());
    let r = get(&http, &api(&sb, "accounts"), &tok, &[]).await;
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("The access token expired")
    );

    sb.set_faults(Faults::default());
    // The expire fault revoked the token: a new one is needed.
    assert_eq!(
        get(&http, &api(&sb, "WhoAmI"), &tok, &[]).await.status(),
        401
    );
    let tok = token(&sb, &http).await;
    assert_eq!(
        get(&http, &api(&sb, "WhoAmI"), &tok, &[]).await.status(),
        200
    );

    // Admin endpoints are never faulted.
    sb.set_faults("429=1".parse().unwrap());
    let r = http
        .get(format!("{}/_sandbox/health", sb.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    sb.shutdown().await;
}

#[tokio::test]
async fn expired_access_token_is_refused() {
    let sb = start(SandboxOptions {
        scale: 10,
        token_ttl: Duration::from_secs(1),
        ..SandboxOptions::default()
    })
    .await;
    let http = reqwest::Client::new();
    let tok = token(&sb, &http).await;
    assert_eq!(
        get(&http, &api(&sb, "WhoAmI"), &tok, &[]).await.status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = get(&http, &api(&sb, "WhoAmI"), &tok, &[]).await;
    assert_eq!(r.status(), 401);
    let www = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        www.starts_with(
            "Bearer error=\"invalid_token\", error_description=\"The access token expired\""
        ),
        "{www}"
    );
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["code"].is_string());
    sb.shutdown().await;
}

#[tokio::test]
async fn same_seed_same_bytes() {
    async fn page(seed: u64) -> String {
        let sb = start(SandboxOptions {
            scale: 100,
            seed,
            ..SandboxOptions::default()
        })
        .await;
        let http = reqwest::Client::new();
        let tok = token(&sb, &http).await;
        sb.mutate();
        let mut out = String::new();
        for set in ["accounts", "contacts", "opportunities", "systemusers"] {
            let r = get(
                &http,
                &api(&sb, set),
                &tok,
                &["odata.include-annotations=\"*\""],
            )
            .await;
            out.push_str(&r.text().await.unwrap().replace(&sb.base_url(), "BASE"));
        }
        sb.shutdown().await;
        out
    }
    let a = page(7).await;
    assert_eq!(a, page(7).await);
    assert_ne!(a, page(8).await);
}

#[tokio::test]
async fn admin_endpoints_mirror_the_api() {
    let sb = start(small(100)).await;
    let http = reqwest::Client::new();
    let base = sb.base_url();
    let counts: Value = http
        .get(format!("{base}/_sandbox/counts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counts["accounts"], 100);
    assert_eq!(counts["contacts"], 200);
    let summary: Value = http
        .post(format!("{base}/_sandbox/mutate"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(summary["entity_sets"]["accounts"]["inserted"], 2);
    let keys: Vec<(String, i64)> = http
        .get(format!("{base}/_sandbox/dataverse/accounts/keys"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(keys, sb.live_rows("accounts").unwrap());
    let r = http
        .put(format!("{base}/_sandbox/faults"))
        .body("boom=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("boom"));
    let r = http
        .put(format!("{base}/_sandbox/faults"))
        .body("429=0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = http
        .post(format!(
            "{base}/_sandbox/dataverse/poison?entity_set=contacts&count=3"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{base}/_sandbox/dataverse/expire-delta-tokens"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = http
        .put(format!("{base}/_sandbox/app-user"))
        .body("false")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let stats: Value = http
        .get(format!("{base}/_sandbox/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(stats["by_kind"]["admin"].as_u64().unwrap() >= 8);
    sb.shutdown().await;
}

//! The Dataverse + Entra sandbox against its own contract: tokens, paging, `$select`,
//! annotations, change tracking, errors, service protection and fault injection; and the
//! tenant variants (standard, lean, custom) at the HTTP level: metadata, absent tables and
//! columns, custom columns, and `truth()` against what the API serves.

use std::collections::BTreeSet;
use std::time::Duration;

use ml_connector::sandbox::{Faults, Sandbox, SandboxOptions, Tenant};
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
    // A token just issued is never hit (a refused fresh login is another failure) ...
    let fresh = token(&sb, &http).await;
    let r = get(&http, &api(&sb, "accounts"), &fresh, &[]).await;
    assert_eq!(r.status(), 200);
    // ... one in use for a while is.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
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
    // The admin URL `mlc sandbox` prints lists the endpoints, and each one it lists answers.
    let index: Vec<Value> = http
        .get(format!("{base}/_sandbox/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(index.len() > 20);
    for e in &index {
        let path = e["path"]
            .as_str()
            .unwrap()
            .replace("{entity_set}", "accounts")
            .replace("{entity}", "project");
        let method = reqwest::Method::from_bytes(e["method"].as_str().unwrap().as_bytes()).unwrap();
        if method != reqwest::Method::GET {
            // Not sent (they change the sandbox): a route that exists refuses a GET with 405.
            let r = http.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(r.status(), 405, "{path}");
            continue;
        }
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
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

// ---------------------------------------------------------------------------------------------
// Tenant variants.

fn tenant(t: Tenant, scale: u64) -> SandboxOptions {
    SandboxOptions {
        scale,
        tenant: t,
        ..SandboxOptions::default()
    }
}

const ALL_TABLES: [(&str, &str); 9] = [
    ("account", "accounts"),
    ("contact", "contacts"),
    ("lead", "leads"),
    ("opportunity", "opportunities"),
    ("quote", "quotes"),
    ("salesorder", "salesorders"),
    ("invoice", "invoices"),
    ("product", "products"),
    ("systemuser", "systemusers"),
];

fn lean_has(logical: &str) -> bool {
    !matches!(logical, "lead" | "quote" | "salesorder" | "invoice")
}

/// The table's attributes as `EntityDefinitions(...)/Attributes` lists them, by logical name.
async fn attributes(
    http: &reqwest::Client,
    sb: &Sandbox,
    tok: &str,
    logical: &str,
) -> std::collections::BTreeMap<String, Value> {
    let v = get_json(
        http,
        &api(
            sb,
            &format!("EntityDefinitions(LogicalName='{logical}')/Attributes"),
        ),
        tok,
        &[],
    )
    .await;
    v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["LogicalName"].as_str().unwrap().to_string(), a.clone()))
        .collect()
}

fn label(a: &Value) -> &str {
    a["DisplayName"]["UserLocalizedLabel"]["Label"]
        .as_str()
        .unwrap_or_default()
}

/// Whether a served value has the JSON shape its attribute's type gives it.
fn typed_as(attr: &Value, v: &Value) -> bool {
    if v.is_null() {
        return true;
    }
    let date_only = attr["DateTimeBehavior"]["Value"] == "DateOnly";
    match attr["AttributeType"].as_str().unwrap() {
        "String" | "Memo" | "Uniqueidentifier" | "Lookup" | "Customer" | "Owner" => v.is_string(),
        "Integer" | "BigInt" | "Picklist" | "State" | "Status" => v.is_i64(),
        "Money" | "Decimal" | "Double" => v.is_number(),
        "Boolean" => v.is_boolean(),
        "DateTime" if date_only => v
            .as_str()
            .is_some_and(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()),
        "DateTime" => v
            .as_str()
            .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok() && s.ends_with('Z')),
        other => panic!("unexpected attribute type {other}"),
    }
}

/// The payload key of a metadata attribute the Web API serves as a property (`None` for
/// facets such as `parentaccountidname`).
fn payload_key(a: &Value) -> Option<String> {
    let name = a["LogicalName"].as_str().unwrap();
    match (
        a["AttributeOf"].as_str(),
        a["AttributeType"].as_str().unwrap(),
    ) {
        (Some(_), "Money") => Some(name.to_string()),
        (Some(_), _) => None,
        (None, "Lookup" | "Customer" | "Owner") => Some(format!("_{name}_value")),
        (None, _) => Some(name.to_string()),
    }
}

#[tokio::test]
async fn metadata_answers_follow_the_tenant() {
    for t in Tenant::ALL {
        let sb = start(tenant(t, 20)).await;
        let http = reqwest::Client::new();
        let tok = token(&sb, &http).await;

        // The table list.
        let v = get_json(
            &http,
            &api(&sb, "EntityDefinitions?$select=LogicalName,EntitySetName&$filter=ChangeTrackingEnabled%20eq%20true"),
            &tok,
            &[],
        )
        .await;
        let listed: BTreeSet<&str> = v["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["LogicalName"].as_str().unwrap())
            .collect();
        let want: BTreeSet<&str> = ALL_TABLES
            .iter()
            .map(|(l, _)| *l)
            .filter(|l| t != Tenant::Lean || lean_has(l))
            .collect();
        assert_eq!(listed, want, "{t}");

        // What `mlc discover dataverse` asks for, per table.
        for (logical, set) in ALL_TABLES {
            let url = api(
                &sb,
                &format!(
                    "EntityDefinitions(LogicalName='{logical}')?$select=LogicalName,EntitySetName,PrimaryIdAttribute,ChangeTrackingEnabled&$expand=Attributes($select=LogicalName,AttributeType,AttributeTypeName,AttributeOf,IsCustomAttribute,IsValidForRead,DisplayName)"
                ),
            );
            let r = get(&http, &url, &tok, &[]).await;
            if t == Tenant::Lean && !lean_has(logical) {
                let (status, code, message) = error_of(r).await;
                assert_eq!((status, code.as_str()), (404, "0x80041102"), "{logical}");
                assert!(message.contains(&format!("'{logical}'")), "{message}");
                let (status, _, _) = error_of(
                    get(
                        &http,
                        &api(
                            &sb,
                            &format!("EntityDefinitions(LogicalName='{logical}')/Attributes"),
                        ),
                        &tok,
                        &[],
                    )
                    .await,
                )
                .await;
                assert_eq!(status, 404);
                continue;
            }
            assert_eq!(r.status(), 200, "{t} {logical}");
            let e: Value = r.json().await.unwrap();
            assert_eq!(e["LogicalName"], logical);
            assert_eq!(e["EntitySetName"], set);
            assert_eq!(e["PrimaryIdAttribute"], format!("{logical}id"));
            assert_eq!(e["ChangeTrackingEnabled"], true);
            assert!(e["MetadataId"].is_string());
            assert!(e.get("DisplayName").is_none(), "only what was selected");
            for a in e["Attributes"].as_array().unwrap() {
                let ty = a["AttributeType"].as_str().unwrap();
                assert_eq!(a["AttributeTypeName"]["Value"], format!("{ty}Type"));
                assert!(
                    a["@odata.type"]
                        .as_str()
                        .unwrap()
                        .starts_with("#Microsoft.Dynamics.CRM.")
                );
                assert!(a["IsCustomAttribute"].is_boolean());
                assert_eq!(a["IsValidForRead"], true);
                assert!(a.get("AttributeOf").is_some());
                assert!(a.get("Targets").is_none(), "Targets was not selected");
                let name = a["LogicalName"].as_str().unwrap();
                if a["AttributeOf"].is_null() {
                    assert!(!label(a).is_empty(), "{logical}.{name} has a display name");
                    assert!(
                        a["DisplayName"]["LocalizedLabels"]
                            .as_array()
                            .unwrap()
                            .len()
                            == 1
                    );
                }
            }
        }

        let account = attributes(&http, &sb, &tok, "account").await;
        let contact = attributes(&http, &sb, &tok, "contact").await;
        let opportunity = attributes(&http, &sb, &tok, "opportunity").await;
        assert_eq!(account["revenue"]["AttributeType"], "Money");
        assert_eq!(account["revenue_base"]["AttributeOf"], "revenue");
        assert_eq!(account["revenue_base"]["IsBaseCurrency"], true);
        assert_eq!(
            account["parentaccountidname"]["AttributeOf"],
            "parentaccountid"
        );
        assert_eq!(
            account["parentaccountid"]["Targets"],
            serde_json::json!(["account"])
        );
        assert_eq!(account["ownerid"]["AttributeType"], "Owner");
        assert_eq!(
            account["ownerid"]["Targets"],
            serde_json::json!(["systemuser", "team"])
        );
        assert_eq!(account["owneridtype"]["AttributeOf"], "ownerid");
        assert_eq!(
            account["accountid"]["@odata.type"],
            "#Microsoft.Dynamics.CRM.UniqueIdentifierAttributeMetadata"
        );
        assert_eq!(account["accountid"]["IsPrimaryId"], true);
        assert_eq!(account["lastusedincampaign"]["Format"], "DateOnly");
        assert_eq!(
            account["lastusedincampaign"]["DateTimeBehavior"]["Value"],
            "UserLocal"
        );
        assert_eq!(
            opportunity["estimatedclosedate"]["DateTimeBehavior"]["Value"],
            "DateOnly"
        );
        assert_eq!(
            opportunity["customerid"]["Targets"],
            serde_json::json!(["account", "contact"])
        );
        let custom = |m: &std::collections::BTreeMap<String, Value>| -> BTreeSet<String> {
            m.values()
                .filter(|a| a["IsCustomAttribute"] == true && a["AttributeOf"].is_null())
                .map(|a| a["LogicalName"].as_str().unwrap().to_string())
                .collect()
        };
        match t {
            Tenant::Standard => {
                assert_eq!(
                    custom(&account),
                    BTreeSet::from(["new_region".into(), "new_tier".into()])
                );
                assert_eq!(
                    custom(&opportunity),
                    BTreeSet::from(["new_forecastcategory".into()])
                );
                assert!(custom(&contact).is_empty());
                assert_eq!(account["new_tier"]["AttributeType"], "Picklist");
                assert!(account.contains_key("telephone2"));
                assert!(opportunity.contains_key("originatingleadid"));
            }
            Tenant::Lean => {
                assert!(custom(&account).is_empty() && custom(&opportunity).is_empty());
                assert!(!account.contains_key("telephone2"));
                assert!(!contact.contains_key("department") && !contact.contains_key("jobtitle"));
                assert!(!opportunity.contains_key("originatingleadid"));
                assert!(!opportunity.contains_key("originatingleadidname"));
            }
            Tenant::Custom => {
                let c = custom(&account);
                assert!(c.len() >= 9, "{c:?}");
                assert!(c.iter().filter(|n| n.starts_with("cr4f2_")).count() >= 7);
                assert_eq!(label(&account["cr4f2_sector"]), "Отрасль");
                assert_eq!(label(&account["cr4f2_area"]), "地域");
                assert_eq!(label(&account["cr4f2_region"]), "Région");
                assert_eq!(label(&account["cr4f2_revenue"]), label(&account["revenue"]));
                assert_eq!(account["cr4f2_budget_base"]["AttributeOf"], "cr4f2_budget");
                let partner = &opportunity["cr4f2_partneraccountid"];
                assert_eq!(partner["AttributeType"], "Lookup");
                assert_eq!(partner["Targets"], serde_json::json!(["account"]));
                assert_eq!(partner["IsCustomAttribute"], true);
                assert!(custom(&contact).len() >= 5);
                for a in account.values().chain(contact.values()) {
                    assert!(a["LogicalName"].as_str().unwrap().is_ascii());
                }
            }
        }

        // The date-only cast discovery reads.
        let v = get_json(
            &http,
            &api(&sb, "EntityDefinitions(LogicalName='opportunity')/Attributes/Microsoft.Dynamics.CRM.DateTimeAttributeMetadata?$select=LogicalName,Format"),
            &tok,
            &[],
        )
        .await;
        let formats: std::collections::BTreeMap<&str, &str> = v["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["LogicalName"].as_str().unwrap(),
                    a["Format"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(formats["estimatedclosedate"], "DateOnly");
        assert_eq!(formats["modifiedon"], "DateAndTime");
        assert!(
            v["value"]
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a.get("AttributeType").is_none())
        );

        // Targets: through the lookup cast or qualified; on the base type it is an error.
        let v = get_json(
            &http,
            &api(&sb, "EntityDefinitions(LogicalName='contact')/Attributes/Microsoft.Dynamics.CRM.LookupAttributeMetadata?$select=LogicalName,Targets"),
            &tok,
            &[],
        )
        .await;
        let lookups = v["value"].as_array().unwrap();
        assert!(lookups.iter().all(|a| a["Targets"].is_array()));
        assert!(
            lookups
                .iter()
                .any(|a| a["LogicalName"] == "parentcustomerid")
        );
        let v = get_json(
            &http,
            &api(&sb, "EntityDefinitions(LogicalName='contact')/Attributes?$select=LogicalName,Microsoft.Dynamics.CRM.LookupAttributeMetadata/Targets&$filter=AttributeType%20eq%20Microsoft.Dynamics.CRM.AttributeTypeCode'Customer'"),
            &tok,
            &[],
        )
        .await;
        assert_eq!(v["value"][0]["LogicalName"], "parentcustomerid");
        assert_eq!(
            v["value"][0]["Targets"],
            serde_json::json!(["account", "contact"])
        );
        let (status, code, message) = error_of(
            get(&http, &api(&sb, "EntityDefinitions(LogicalName='contact')/Attributes?$select=LogicalName,Targets"), &tok, &[]).await,
        )
        .await;
        assert_eq!((status, code.as_str()), (400, "0x80060888"));
        assert_eq!(
            message,
            "Could not find a property named 'Targets' on type 'Microsoft.Dynamics.CRM.AttributeMetadata'."
        );

        // One attribute; an unknown property of a table.
        let v = get_json(
            &http,
            &api(&sb, "EntityDefinitions(LogicalName='account')/Attributes(LogicalName='revenue_base')?$select=LogicalName,AttributeOf,AttributeType"),
            &tok,
            &[],
        )
        .await;
        assert_eq!(
            (&v["LogicalName"], &v["AttributeOf"], &v["AttributeType"]),
            (
                &Value::from("revenue_base"),
                &Value::from("revenue"),
                &Value::from("Money")
            )
        );
        let (status, _, message) = error_of(
            get(
                &http,
                &api(
                    &sb,
                    "EntityDefinitions(LogicalName='account')?$select=LogicalName,Colour",
                ),
                &tok,
                &[],
            )
            .await,
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(
            message,
            "Could not find a property named 'Colour' on type 'Microsoft.Dynamics.CRM.EntityMetadata'."
        );

        // Choice labels through the picklist cast.
        let v = get_json(
            &http,
            &api(&sb, "EntityDefinitions(LogicalName='account')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet"),
            &tok,
            &[],
        )
        .await;
        let industry = v["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["LogicalName"] == "industrycode")
            .unwrap();
        assert_eq!(industry["OptionSet"]["Options"][0]["Value"], 1);
        assert_eq!(
            industry["OptionSet"]["Options"][0]["Label"]["UserLocalizedLabel"]["Label"],
            "Accounting"
        );
        sb.shutdown().await;
    }
}

/// Every attribute the metadata lists as a property is served under its payload key, typed
/// as its `AttributeType` says, and nothing else is served.
#[tokio::test]
async fn served_rows_match_the_metadata() {
    for t in Tenant::ALL {
        let sb = start(tenant(t, 30)).await;
        let http = reqwest::Client::new();
        let tok = token(&sb, &http).await;
        for (logical, set) in ALL_TABLES {
            if t == Tenant::Lean && !lean_has(logical) {
                continue;
            }
            let attrs = attributes(&http, &sb, &tok, logical).await;
            let by_key: std::collections::BTreeMap<String, &Value> = attrs
                .values()
                .filter_map(|a| payload_key(a).map(|k| (k, a)))
                .collect();
            let v = get_json(&http, &api(&sb, set), &tok, &[]).await;
            let rows = v["value"].as_array().unwrap();
            assert!(!rows.is_empty());
            for r in rows {
                let keys: BTreeSet<&str> = r
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(String::as_str)
                    .filter(|k| *k != "@odata.etag")
                    .collect();
                let want: BTreeSet<&str> = by_key.keys().map(String::as_str).collect();
                assert_eq!(keys, want, "{t} {set}");
                for (k, a) in &by_key {
                    assert!(
                        typed_as(a, &r[k.as_str()]),
                        "{t} {set}.{k} = {}",
                        r[k.as_str()]
                    );
                }
            }
        }
        sb.shutdown().await;
    }
}

#[tokio::test]
async fn absent_tables_answer_404_in_the_lean_tenant() {
    let sb = start(tenant(Tenant::Lean, 20)).await;
    let http = reqwest::Client::new();
    let tok = token(&sb, &http).await;
    for (logical, set) in ALL_TABLES {
        let r = get(
            &http,
            &api(&sb, &format!("{set}?$select={logical}id")),
            &tok,
            &[],
        )
        .await;
        if lean_has(logical) {
            assert_eq!(r.status(), 200, "{set}");
            assert!(sb.live_rows(set).is_ok());
            assert!(sb.truth("dataverse", logical).is_some());
            continue;
        }
        assert_eq!(r.status(), 404, "{set}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": "0x8006088a", "message": format!("Resource not found for the segment '{set}'.")}})
        );
        for path in [
            format!("{set}/$count"),
            format!("{set}(00000003-0000-4000-8000-000000000001)"),
        ] {
            let (status, code, _) = error_of(get(&http, &api(&sb, &path), &tok, &[]).await).await;
            assert_eq!((status, code.as_str()), (404, "0x8006088a"), "{path}");
        }
        assert!(sb.live_rows(set).is_err());
        assert!(sb.poison(set, 1).is_err());
        assert!(sb.truth("dataverse", logical).is_none());
        assert!(!sb.counts().contains_key(set));
    }
    let summary = sb.mutate();
    assert!(!summary.entity_sets.contains_key("leads"));
    assert_eq!(summary.entity_sets["accounts"].inserted, 1);
    sb.shutdown().await;
}

#[tokio::test]
async fn unknown_select_names_answer_400_in_every_tenant() {
    for t in Tenant::ALL {
        let sb = start(tenant(t, 10)).await;
        let http = reqwest::Client::new();
        let tok = token(&sb, &http).await;
        let mut unknown = vec![
            ("accounts", "name,nosuchcolumn", "nosuchcolumn", "account"),
            (
                "contacts",
                "parentcustomerid",
                "parentcustomerid",
                "contact",
            ),
            ("systemusers", "statecode", "statecode", "systemuser"),
            ("products", "_ownerid_value", "_ownerid_value", "product"),
            (
                "accounts",
                "cr4f2_sector,new_tier",
                "cr4f2_sector",
                "account",
            ),
        ];
        match t {
            Tenant::Lean => unknown.extend([
                ("accounts", "name,telephone2", "telephone2", "account"),
                ("contacts", "jobtitle", "jobtitle", "contact"),
                ("contacts", "fullname,department", "department", "contact"),
                (
                    "opportunities",
                    "_originatingleadid_value",
                    "_originatingleadid_value",
                    "opportunity",
                ),
                ("accounts", "new_tier", "new_tier", "account"),
            ]),
            Tenant::Standard => unknown.push((
                "opportunities",
                "cr4f2_budget",
                "cr4f2_budget",
                "opportunity",
            )),
            Tenant::Custom => {
                unknown.retain(|u| u.1 != "cr4f2_sector,new_tier");
                unknown.push((
                    "accounts",
                    "cr4f2_partneraccountid",
                    "cr4f2_partneraccountid",
                    "account",
                ));
            }
        }
        for (set, select, bad, ty) in unknown {
            let (status, code, message) = error_of(
                get(
                    &http,
                    &api(&sb, &format!("{set}?$select={select}")),
                    &tok,
                    &[],
                )
                .await,
            )
            .await;
            assert_eq!(
                (status, code.as_str()),
                (400, "0x80060888"),
                "{t} {set}?$select={select}"
            );
            assert_eq!(
                message,
                format!(
                    "Could not find a property named '{bad}' on type 'Microsoft.Dynamics.CRM.{ty}'."
                ),
                "{t}"
            );
        }
        if t != Tenant::Lean {
            let v = get_json(&http, &api(&sb, "accounts?$select=telephone2"), &tok, &[]).await;
            assert!(v["value"][0].get("telephone2").is_some());
        }
        sb.shutdown().await;
    }
}

#[tokio::test]
async fn custom_columns_are_served_when_selected_and_typed_as_declared() {
    let sb = start(tenant(Tenant::Custom, 300)).await;
    let http = reqwest::Client::new();
    let tok = token(&sb, &http).await;
    let attrs = attributes(&http, &sb, &tok, "account").await;
    let prefer = ["odata.include-annotations=\"*\""];
    let pages = all_pages(
        &http,
        &api(&sb, "accounts?$select=name,cr4f2_sector,cr4f2_area,cr4f2_region,cr4f2_revenue,cr4f2_budget,cr4f2_budget_base,cr4f2_headcount,cr4f2_onboardedon,cr4f2_isstrategic,_cr4f2_partneraccountid_value,new_tier"),
        &tok,
        &["odata.maxpagesize=100", prefer[0]],
    )
    .await;
    let rows: Vec<&Value> = pages
        .iter()
        .flat_map(|p| p["value"].as_array().unwrap().iter())
        .collect();
    assert_eq!(rows.len(), 300);
    let mut seen = BTreeSet::new();
    for r in &rows {
        for (k, v) in r.as_object().unwrap() {
            if k.contains('@') || k == "accountid" {
                continue;
            }
            let attr = attrs
                .get(k.trim_start_matches('_').trim_end_matches("_value"))
                .unwrap_or_else(|| panic!("{k} is not in the metadata"));
            assert!(typed_as(attr, v), "{k} = {v}");
            if !v.is_null() {
                seen.insert(k.clone());
            }
        }
        assert_eq!(r["cr4f2_budget"], r["cr4f2_budget_base"]);
        if let Some(code) = r["cr4f2_sector"].as_i64() {
            assert!((412_300_000..412_300_004).contains(&code));
            let l = r["cr4f2_sector@OData.Community.Display.V1.FormattedValue"]
                .as_str()
                .unwrap();
            assert!(!l.is_ascii(), "{l}");
        }
        if r["_cr4f2_partneraccountid_value"].is_string() {
            assert_eq!(
                r["_cr4f2_partneraccountid_value@Microsoft.Dynamics.CRM.lookuplogicalname"],
                "account"
            );
            assert_eq!(
                r["_cr4f2_partneraccountid_value@Microsoft.Dynamics.CRM.associatednavigationproperty"],
                "cr4f2_PartnerAccountId"
            );
        }
    }
    assert_eq!(seen.len(), 12, "every custom column has values: {seen:?}");

    // The standard tenant's own custom columns.
    let sb2 = start(tenant(Tenant::Standard, 50)).await;
    let tok2 = token(&sb2, &http).await;
    let v = get_json(
        &http,
        &api(&sb2, "accounts?$select=new_tier,new_region"),
        &tok2,
        &prefer,
    )
    .await;
    let rows = v["value"].as_array().unwrap();
    assert!(rows.iter().any(|r| r["new_tier"].is_i64()
        && r["new_tier@OData.Community.Display.V1.FormattedValue"].is_string()));
    assert!(rows.iter().any(|r| r["new_region"].is_string()));
    let v = get_json(
        &http,
        &api(&sb2, "opportunities?$select=new_forecastcategory"),
        &tok2,
        &[],
    )
    .await;
    assert!(v["value"].as_array().unwrap().iter().any(|r| {
        r["new_forecastcategory"]
            .as_i64()
            .is_some_and(|c| c >= 100_000_000)
    }));
    // Without $select every column is served, the custom ones too.
    let v = get_json(&http, &api(&sb2, "accounts"), &tok2, &[]).await;
    for k in [
        "new_tier",
        "new_region",
        "_createdby_value",
        "exchangerate",
        "address1_composite",
        "revenue_base",
    ] {
        assert!(v["value"][0].get(k).is_some(), "{k}");
    }
    assert_eq!(v["value"][0]["exchangerate"], 1.0);
    sb2.shutdown().await;
    sb.shutdown().await;
}

/// `truth()` is exactly what a full paged read without `$select` serves (lookup annotations
/// kept, ETags dropped), before and after a mutation round, in every tenant.
#[tokio::test]
async fn truth_equals_a_full_paged_read() {
    for t in Tenant::ALL {
        let sb = start(tenant(t, 60)).await;
        let http = reqwest::Client::new();
        let tok = token(&sb, &http).await;
        sb.poison("accounts", 2).unwrap();
        for round in 0..2 {
            if round == 1 {
                sb.mutate();
            }
            for (logical, set) in ALL_TABLES {
                let Some(truth) = sb.truth("dataverse", logical) else {
                    assert!(t == Tenant::Lean && !lean_has(logical), "{t} {logical}");
                    continue;
                };
                let pages = all_pages(
                    &http,
                    &api(&sb, set),
                    &tok,
                    &[
                        "odata.maxpagesize=37",
                        "odata.include-annotations=\"Microsoft.Dynamics.CRM.lookuplogicalname\"",
                    ],
                )
                .await;
                let served: Vec<serde_json::Map<String, Value>> = pages
                    .iter()
                    .flat_map(|p| p["value"].as_array().unwrap().iter())
                    .map(|r| {
                        let mut m = r.as_object().unwrap().clone();
                        assert!(m.remove("@odata.etag").is_some());
                        m
                    })
                    .collect();
                assert_eq!(served.len(), truth.len(), "{t} {set}");
                assert_eq!(served, truth, "{t} {set} round {round}");
                assert_eq!(truth.len() as u64, sb.counts()[set]);
                let keys: Vec<String> = truth
                    .iter()
                    .map(|r| r[&format!("{logical}id")].as_str().unwrap().to_string())
                    .collect();
                let live: Vec<String> = sb
                    .live_rows(set)
                    .unwrap()
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect();
                assert_eq!(keys, live, "{t} {set}: key order");
                if logical == "opportunity" {
                    assert!(truth.iter().any(
                        |r| r["_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"]
                            == "systemuser"
                    ));
                }
            }
        }
        assert!(sb.truth("dataverse", "nothing").is_none());
        sb.shutdown().await;
    }
}

/// The fake is a tenant, not a mirror of mlc's catalog (DESIGN.md §12): none of the
/// Dataverse sandbox sources reads the catalog or the built-in definitions.
#[test]
fn the_dataverse_fake_never_reads_the_catalog() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sandbox");
    let mut files: Vec<std::path::PathBuf> = [
        "dataverse.rs",
        "entities.rs",
        "metadata.rs",
        "odata.rs",
        "pages.rs",
        "store.rs",
        "values.rs",
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect();
    for e in std::fs::read_dir(dir.join("dataverse")).unwrap() {
        files.push(e.unwrap().path());
    }
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for needle in [
            "catalog/",
            "crate::spec",
            "Definitions::builtin",
            "CatalogFile",
        ] {
            assert!(!text.contains(needle), "{} mentions {needle}", f.display());
        }
    }
}

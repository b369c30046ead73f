//! The Deltek fake over raw HTTP: password and refresh grants and their refusals, paging,
//! fieldFilter, filterHash on ModDate, always-array answers, 401/403/429, mutations; the tenant
//! variants (metadata per variant, unknown fields, a missing metadata endpoint, an unlicensed
//! table, custom fields, type drift) and `Sandbox::truth` against full paged reads; and the
//! password-grant provider against it (refresh ahead of expiry, re-login on 401).

use std::time::Duration;

use ml_connector::config::Config;
use ml_connector::connect;
use ml_connector::sandbox::{Faults, Sandbox, SandboxOptions, Tenant};
use ml_connector::vault::{Secrets, Vault};
use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use secrecy::SecretString;
use serde_json::Value;

async fn start(opts: SandboxOptions) -> Sandbox {
    Sandbox::start(opts, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn form(sb: &Sandbox, overrides: &[(&str, &str)]) -> Vec<(String, String)> {
    let (_, secrets) = sb.deltek_connection();
    let secret = |k: &str| secrets.iter().find(|(n, _)| n == k).unwrap().1.clone();
    let mut f: Vec<(String, String)> = vec![
        ("grant_type".into(), "password".into()),
        ("Username".into(), "API_USER".into()),
        ("Password".into(), secret("password")),
        ("integrated".into(), "N".into()),
        ("database".into(), "ACME_PROD".into()),
        ("Client_Id".into(), "mlc-sandbox-consumer-key".into()),
        ("client_secret".into(), secret("client_secret")),
    ];
    for (k, v) in overrides {
        f.retain(|(n, _)| !n.eq_ignore_ascii_case(k));
        f.push((k.to_string(), v.to_string()));
    }
    f
}

async fn login(sb: &Sandbox, overrides: &[(&str, &str)]) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/token", sb.deltek_base_url()))
        .form(&form(sb, overrides))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

pub(crate) async fn get(sb: &Sandbox, token: &str, path_and_query: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(format!("{}/{path_and_query}", sb.deltek_base_url()))
        .header("Authorization", format!("bearer {token}"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn password_and_refresh_grants_and_their_refusals() {
    let sb = start(SandboxOptions::default()).await;
    let (s, tok) = login(&sb, &[]).await;
    assert_eq!(s, 200, "{tok}");
    assert_eq!(tok["token_type"], "bearer");
    let refresh = tok["refresh_token"].as_str().unwrap().to_string();
    // Refresh rotates: the old refresh token is spent.
    let rf = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
    ];
    let (s, t2) = login(&sb, &rf).await;
    assert_eq!(s, 200);
    assert_ne!(t2["refresh_token"], tok["refresh_token"]);
    let (s, e) = login(&sb, &rf).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));

    let (s, e) = login(&sb, &[("database", "WRONG")]).await;
    assert_eq!(s, 400);
    assert!(
        e["error_description"]
            .as_str()
            .unwrap()
            .contains("database")
    );
    let (s, e) = login(&sb, &[("password", "nope")]).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
    let (s, e) = login(&sb, &[("client_secret", "nope")]).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_client")));
    sb.deltek_allow_password_grant(false);
    let (s, e) = login(&sb, &[]).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("unauthorized_client")));
}

#[tokio::test]
async fn hubs_page_project_filter_and_answer_arrays() {
    let sb = start(SandboxOptions {
        scale: 200,
        ..SandboxOptions::default()
    })
    .await;
    let (_, tok) = login(&sb, &[]).await;
    let t = tok["access_token"].as_str().unwrap();
    let counts = sb.deltek_counts();

    // Paging until a short page reads every employee exactly once.
    let mut seen = Vec::new();
    for page in 1.. {
        let (s, v) = get(
            &sb,
            t,
            &format!("employee?page={page}&pageSize=7&fieldFilter=Employee,ModDate"),
        )
        .await;
        assert_eq!(s, 200);
        let rows = v.as_array().unwrap();
        seen.extend(
            rows.iter()
                .map(|r| r["Employee"].as_str().unwrap().to_string()),
        );
        assert_eq!(
            rows[0].as_object().map(|o| o.len()),
            if rows.is_empty() { None } else { Some(2) }
        );
        if rows.len() < 7 {
            break;
        }
    }
    assert_eq!(seen.len() as u64, counts["employee"]);
    // offset/limit is the same thing.
    let (_, v) = get(&sb, t, "employee?offset=7&limit=7&fieldFilter=Employee").await;
    assert_eq!(v[0]["Employee"], Value::String(seen[7].clone()));

    // By key: still an array.
    let (s, v) = get(
        &sb,
        t,
        &format!("employee/{}?fieldFilter=Employee", seen[3]),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v.as_array().unwrap().len(), 1);

    // Unknown field: 400 {message, detail}.
    let (s, v) = get(&sb, t, "firm?fieldFilter=ClientID,Nope").await;
    assert_eq!(s, 400);
    assert!(v["detail"].as_str().unwrap().contains("Nope"));

    // Levels: wbstype, and Y/N strings, zone-less dates.
    let (_, v) = get(
        &sb,
        t,
        "project?wbstype=wbs3&pageSize=2&fieldFilter=WBS1,WBS2,WBS3,SubLevel,ModDate",
    )
    .await;
    assert_eq!(v[0]["SubLevel"], "N");
    let md = v[0]["ModDate"].as_str().unwrap();
    assert_eq!(md.len(), 23, "{md}");
    assert!(!md.ends_with('Z'));

    // ModDate filter: only the changes of a mutation round.
    let changes = sb.deltek_mutate();
    let c = changes["firm"];
    let q = "firm?pageSize=1000&fieldFilter=ClientID,ModDate&order=ModDate\
             &filterHash[0][name]=ModDate&filterHash[0][value]=2025-12-31T19:00:00.000\
             &filterHash[0][opp]=%3E%3D&filterHash[0][type]=datetime";
    let (s, v) = get(&sb, t, q).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v.as_array().unwrap().len() as u64, c.inserted + c.updated);
    assert_eq!(
        sb.deltek_counts()["firm"],
        counts["firm"] + c.inserted - c.deleted
    );

    // Pursuits through the project hub (5.0+ model).
    let q = "project?wbstype=wbs1&pageSize=3&fieldFilter=WBS1,Stage,Fee\
             &filterHash[0][name]=Stage&filterHash[0][value]=&filterHash[0][opp]=!%3D";
    let (s, v) = get(&sb, t, q).await;
    assert_eq!(s, 200, "{v}");
    assert!(v[0]["WBS1"].as_str().unwrap().starts_with("PUR-"));

    // Expired token: 401; role without access: 403.
    sb.deltek_expire_tokens();
    let (s, _) = get(&sb, t, "firm?pageSize=1").await;
    assert_eq!(s, 401);
    let (_, tok) = login(&sb, &[]).await;
    let t = tok["access_token"].as_str().unwrap();
    sb.deltek_role_access(false);
    let (s, v) = get(&sb, t, "firm?pageSize=1").await;
    assert_eq!(s, 403);
    assert!(v["message"].is_string());
}

#[tokio::test]
async fn throttling_answers_429_with_retry_after() {
    let sb = start(SandboxOptions {
        retry_after_secs: 7,
        ..SandboxOptions::default()
    })
    .await;
    let (_, tok) = login(&sb, &[]).await;
    sb.set_faults("429=1".parse::<Faults>().unwrap());
    let r = reqwest::Client::new()
        .get(format!("{}/firm?pageSize=1", sb.deltek_base_url()))
        .header(
            "Authorization",
            format!("bearer {}", tok["access_token"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
}

/// A project folder with the sandbox's Deltek connection `vp`.
pub fn deltek_config(dir: &std::path::Path, sb: &Sandbox, extra: &str) -> Config {
    let (body, secrets) = sb.deltek_connection();
    let text = format!(
        "[connections.vp]\n{body}requests_per_minute = 100000\nmax_concurrency = 4\n{extra}\n"
    );
    let path = dir.join("mlc.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap();
    let mut s = Secrets::new();
    for (k, v) in secrets {
        s.insert(k, SecretString::from(v));
    }
    Vault::new(&config.vault).put("vp", &s).unwrap();
    config
}

#[tokio::test]
async fn provider_refreshes_ahead_of_expiry_and_relogs_on_401() {
    let sb = start(SandboxOptions {
        token_ttl: Duration::from_secs(2),
        ..SandboxOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = deltek_config(dir.path(), &sb, "");
    let conn = config.connection("vp").unwrap().clone();
    let ep = connect::endpoint(&conn, &Vault::new(&config.vault)).unwrap();
    let mut h = HeaderMap::new();
    h.insert(ACCEPT, HeaderValue::from_static("application/json"));
    let url = format!(
        "{}/employee?page=1&pageSize=1&fieldFilter=Employee",
        ep.base
    );
    ep.http.get(&url, &h, "t").await.unwrap();
    assert_eq!(sb.deltek_tokens_issued(), 1);
    ep.http.get(&url, &h, "t").await.unwrap();
    assert_eq!(sb.deltek_tokens_issued(), 1, "the cached token is reused");
    tokio::time::sleep(Duration::from_millis(1800)).await;
    ep.http.get(&url, &h, "t").await.unwrap();
    assert_eq!(sb.deltek_tokens_issued(), 2, "renewed ahead of expiry");
    sb.deltek_expire_tokens();
    ep.http.get(&url, &h, "t").await.unwrap();
    assert_eq!(sb.deltek_tokens_issued(), 3, "one new login after a 401");

    // connection check explains a refused password grant.
    sb.deltek_allow_password_grant(false);
    let report = connect::check(&conn, &Vault::new(&config.vault)).await;
    assert!(!report.ok);
    let p = report.problem.unwrap();
    assert!(p.contains("Allow Password Grant Type"), "{p}");
    sb.deltek_allow_password_grant(true);
    let report = connect::check(&conn, &Vault::new(&config.vault)).await;
    assert!(report.ok, "{:?}", report.problem);
    sb.deltek_role_access(false);
    let report = connect::check(&conn, &Vault::new(&config.vault)).await;
    let p = report.problem.unwrap();
    assert!(p.contains("role"), "{p}");
    sb.deltek_role_access(true);

    // A wrong database name is named in the advice.
    let dir2 = tempfile::tempdir().unwrap();
    let config = deltek_config(dir2.path(), &sb, "");
    let text = std::fs::read_to_string(dir2.path().join("mlc.toml"))
        .unwrap()
        .replace("ACME_PROD", "ACME_TEST");
    std::fs::write(dir2.path().join("mlc.toml"), text).unwrap();
    let config2 = Config::load(&dir2.path().join("mlc.toml")).unwrap();
    let conn2 = config2.connection("vp").unwrap().clone();
    let report = connect::check(&conn2, &Vault::new(&config.vault)).await;
    let p = report.problem.unwrap();
    assert!(
        p.contains("ACME_TEST") && p.contains("Database Name"),
        "{p}"
    );
}

/// Writes tests/fixtures/deltek/<entity>/page.json from the sandbox when
/// `MLC_WRITE_DELTEK_FIXTURES=1` (the fixtures are checked in; this regenerates them).
#[tokio::test]
async fn write_fixtures_when_asked() {
    if std::env::var("MLC_WRITE_DELTEK_FIXTURES").is_err() {
        return;
    }
    let sb = start(SandboxOptions::default()).await;
    let (_, tok) = login(&sb, &[]).await;
    let t = tok["access_token"].as_str().unwrap();
    sb.deltek_opportunity_hub(true);
    let defs = ml_connector::spec::Definitions::builtin().unwrap();
    for s in defs.select(&["deltek".into()]).unwrap() {
        let mut q = format!("{}?page=2&pageSize=3", s.spec.path.clone().unwrap());
        for (k, v) in &s.spec.params {
            q.push_str(&format!("&{k}={v}"));
        }
        let (status, v) = get(&sb, t, &q).await;
        assert_eq!(status, 200, "{}: {v}", s.id);
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/deltek")
            .join(&s.id.entity);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("page.json"),
            serde_json::to_string_pretty(&v).unwrap(),
        )
        .unwrap();
    }
}

#[tokio::test]
async fn discover_adds_custom_fields_from_metadata() {
    let sb = start(SandboxOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = deltek_config(dir.path(), &sb, "");
    let conn = config.connection("vp").unwrap().clone();
    let ep = connect::endpoint(&conn, &Vault::new(&config.vault)).unwrap();
    let defs = ml_connector::spec::Definitions::builtin().unwrap();
    let drafts = ml_connector::systems::discover(&conn, &ep, &defs, &["project".into()])
        .await
        .unwrap()
        .into_iter()
        .filter_map(ml_connector::discover::Discovered::into_draft)
        .collect::<Vec<_>>();
    assert_eq!(drafts.len(), 1);
    let cat = &drafts[0].catalog;
    let sector = cat
        .columns
        .iter()
        .find(|c| c.name == "cust_sector")
        .unwrap();
    assert_eq!(sector.source.as_deref(), Some("CustSector"));
    let hours = cat
        .columns
        .iter()
        .find(|c| c.name == "cust_budget_hours")
        .unwrap();
    assert_eq!(hours.ty.to_string(), "decimal(19,4)");
    // Known columns are kept as they are.
    assert!(cat.columns.iter().any(|c| c.name == "wbs1" && !c.nullable));
}

#[tokio::test]
async fn a_million_tasks_page_fast_anywhere() {
    let sb = start(SandboxOptions {
        scale: 1_000_000,
        ..SandboxOptions::default()
    })
    .await;
    assert_eq!(sb.deltek_counts()["project_task"], 1_000_000);
    sb.deltek_mutate();
    let (_, tok) = login(&sb, &[]).await;
    let t = tok["access_token"].as_str().unwrap();
    for page in [1, 1000, 2000] {
        let started = std::time::Instant::now();
        let (s, v) = get(
            &sb,
            t,
            &format!("project?wbstype=wbs3&page={page}&pageSize=500"),
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(v.as_array().unwrap().len(), 500, "page {page}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "page {page}: {:?}",
            started.elapsed()
        );
    }
}

pub(crate) async fn token(sb: &Sandbox) -> String {
    let (s, tok) = login(sb, &[]).await;
    assert_eq!(s, 200, "{tok}");
    tok["access_token"].as_str().unwrap().to_string()
}

fn tenant(tenant: Tenant, scale: u64) -> SandboxOptions {
    SandboxOptions {
        scale,
        tenant,
        ..SandboxOptions::default()
    }
}

/// The main table of a metadata answer and its fields by name.
fn main_table<'a>(v: &'a Value, table: &str) -> (&'a Value, Vec<&'a Value>) {
    let t = &v[table];
    let fields = t["Fields"].as_array().unwrap_or_else(|| panic!("{v}"));
    (t, fields.iter().collect())
}

fn named<'a>(fields: &[&'a Value], name: &str) -> Option<&'a Value> {
    fields.iter().copied().find(|f| f["FieldName"] == name)
}

fn custom_count(fields: &[&Value]) -> usize {
    fields.iter().filter(|f| f["CustomField"] == true).count()
}

#[tokio::test]
async fn metadata_answers_per_tenant_variant() {
    // Standard: Vantagepoint's shape, pursuit fields on projects, a few custom fields.
    let sb = start(tenant(Tenant::Standard, 40)).await;
    let t = token(&sb).await;
    let (s, v) = get(&sb, &t, "metadata/project").await;
    assert_eq!(s, 200, "{v}");
    let (pr, fields) = main_table(&v, "PR");
    assert_eq!(pr["TableName"], "PR");
    assert_eq!(pr["Keys"], "WBS1,WBS2,WBS3");
    assert!(pr["GridID"].is_null());
    assert_eq!(v["EMProjectAssoc"]["GridID"], "EMProjectAssoc");
    let wbs1 = named(&fields, "WBS1").unwrap();
    assert_eq!(
        (&wbs1["FieldType"], &wbs1["Required"], &wbs1["MaxLength"]),
        (&Value::from("WBS1"), &Value::from(true), &Value::from(30))
    );
    assert_eq!(named(&fields, "Fee").unwrap()["FieldType"], "Currency");
    assert_eq!(named(&fields, "ModDate").unwrap()["FieldType"], "Datetime");
    assert_eq!(named(&fields, "SubLevel").unwrap()["FieldType"], "Checkbox");
    assert!(named(&fields, "Probability").is_some());
    let hours = named(&fields, "CustBudgetHours").unwrap();
    assert_eq!(
        (
            &hours["FieldType"],
            &hours["CustomField"],
            &hours["Decimals"]
        ),
        (&Value::from("Numeric"), &Value::from(true), &Value::from(2))
    );
    assert!(named(&fields, "CustSector").is_some());
    let (_, firm) = {
        let (_, v) = get(&sb, &t, "metadata/firm").await;
        let (t, f) = main_table(&v, "Clendor");
        (t.clone(), f.into_iter().cloned().collect::<Vec<Value>>())
    };
    let firm: Vec<&Value> = firm.iter().collect();
    assert!(custom_count(&firm) >= 3);
    // A standard field that merely starts like a custom one.
    let ccc = named(&firm, "CustomCurrencyCode").unwrap();
    assert!(ccc.get("CustomField").is_none());
    // 5.0+: no Opportunities hub, so no metadata for it; pre-5.0: the hub, projects without
    // pursuit fields.
    assert_eq!(get(&sb, &t, "metadata/opportunity").await.0, 404);
    sb.deltek_opportunity_hub(true);
    let (s, v) = get(&sb, &t, "metadata/opportunity").await;
    assert_eq!(s, 200);
    let (_, opp) = main_table(&v, "Opportunity");
    assert!(named(&opp, "Probability").is_some());
    let (_, v) = get(&sb, &t, "metadata/project").await;
    let (_, pre5) = main_table(&v, "PR");
    assert!(named(&pre5, "Stage").is_none() && named(&pre5, "Probability").is_none());
    // Ledgers and configuration paths have no hub metadata.
    assert_eq!(get(&sb, &t, "metadata/psaledger/ap").await.0, 404);

    // Every field metadata lists is served, and nothing else.
    sb.deltek_opportunity_hub(false);
    for (hub, table, path) in [
        ("project", "PR", "project?pageSize=1"),
        ("firm", "Clendor", "firm?pageSize=1"),
        ("contact", "Contacts", "contact?pageSize=1"),
        ("employee", "EM", "employee?pageSize=1"),
        ("activity", "Activity", "activity?pageSize=1"),
    ] {
        let (_, m) = get(&sb, &t, &format!("metadata/{hub}")).await;
        let (_, fields) = main_table(&m, table);
        let mut listed: Vec<&str> = fields
            .iter()
            .map(|f| f["FieldName"].as_str().unwrap())
            .collect();
        let (_, rows) = get(&sb, &t, path).await;
        let mut served: Vec<&str> = rows[0]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        listed.sort_unstable();
        served.sort_unstable();
        assert_eq!(listed, served, "{hub}");
    }

    // Lean: no Probability, one custom field at most, no activity metadata though the hub
    // answers.
    let sb = start(tenant(Tenant::Lean, 40)).await;
    let t = token(&sb).await;
    let (_, v) = get(&sb, &t, "metadata/project").await;
    let (_, fields) = main_table(&v, "PR");
    assert!(named(&fields, "Probability").is_none());
    assert!(named(&fields, "Stage").is_some());
    assert_eq!(custom_count(&fields), 1);
    let (s, v) = get(&sb, &t, "metadata/activity").await;
    assert_eq!(s, 404, "{v}");
    assert!(v["message"].is_string());
    assert_eq!(get(&sb, &t, "activity?pageSize=2").await.0, 200);
    let (_, v) = get(&sb, &t, "metadata/employee").await;
    assert_eq!(custom_count(&main_table(&v, "EM").1), 0);

    // Custom: many custom fields, captions in other scripts, one captioned like a standard
    // field, the drifting field declared with its declared type.
    let sb = start(tenant(Tenant::Custom, 40)).await;
    let t = token(&sb).await;
    let (_, v) = get(&sb, &t, "metadata/project").await;
    let (_, fields) = main_table(&v, "PR");
    assert!(custom_count(&fields) >= 10, "{}", custom_count(&fields));
    let captions: Vec<&str> = fields
        .iter()
        .filter(|f| f["CustomField"] == true)
        .map(|f| f["Caption"].as_str().unwrap())
        .collect();
    for c in ["Отрасль", "地域", "Région", "Status"] {
        assert!(captions.contains(&c), "{c}: {captions:?}");
    }
    assert_eq!(
        named(&fields, "CustBudgetHours").unwrap()["FieldType"],
        "Numeric"
    );
    let (_, v) = get(&sb, &t, "metadata/firm").await;
    assert!(custom_count(&main_table(&v, "Clendor").1) >= 10);
}

#[tokio::test]
async fn an_unknown_field_filter_is_a_400_in_every_variant() {
    for variant in Tenant::ALL {
        let sb = start(tenant(variant, 40)).await;
        let t = token(&sb).await;
        let (s, v) = get(&sb, &t, "firm?fieldFilter=ClientID,Nope").await;
        assert_eq!(s, 400, "{variant}");
        assert_eq!(
            v["message"], "Invalid field 'Nope' in fieldFilter",
            "{variant}"
        );
        assert!(v["detail"].as_str().unwrap().contains("Nope"));
        // A custom field of another tenant is just as unknown.
        let (s, v) = get(&sb, &t, "firm?fieldFilter=ClientID,CustRegion").await;
        assert_eq!(
            s,
            if variant == Tenant::Custom { 200 } else { 400 },
            "{variant}: {v}"
        );
        // Probability: the field a Lean tenant lacks, on projects, pursuits and the pre-5.0 hub.
        let pursuits = "project?wbstype=wbs1&fieldFilter=WBS1,Probability\
                        &filterHash[0][name]=Stage&filterHash[0][value]=&filterHash[0][opp]=!%3D";
        for path in ["project?fieldFilter=WBS1,Probability", pursuits] {
            let (s, v) = get(&sb, &t, path).await;
            if variant == Tenant::Lean {
                assert_eq!(s, 400, "{path}");
                assert_eq!(
                    v,
                    serde_json::json!({
                        "message": "Invalid field 'Probability' in fieldFilter",
                        "detail": "Field 'Probability' does not exist on project."
                    })
                );
            } else {
                assert_eq!(s, 200, "{variant} {path}: {v}");
                assert!(v[0]["Probability"].is_number(), "{v}");
            }
        }
        sb.deltek_opportunity_hub(true);
        let (s, v) = get(&sb, &t, "opportunity?fieldFilter=OpportunityID,Probability").await;
        assert_eq!(s, if variant == Tenant::Lean { 400 } else { 200 }, "{v}");
        // Pre-5.0 projects have no Stage: a filter on it is refused too.
        let (s, v) = get(
            &sb,
            &t,
            "project?filterHash[0][name]=Stage&filterHash[0][value]=&filterHash[0][opp]=!%3D",
        )
        .await;
        assert_eq!(s, 400);
        assert_eq!(v["message"], "Invalid field 'Stage' in filterHash");
    }
}

#[tokio::test]
async fn a_lean_tenant_has_no_ap_ledger() {
    let sb = start(tenant(Tenant::Lean, 40)).await;
    let t = token(&sb).await;
    let (s, v) = get(&sb, &t, "PSALedger/AP?pageSize=5").await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["message"], "Access denied.");
    assert!(
        v["detail"].as_str().unwrap().contains("not licensed"),
        "{v}"
    );
    assert_eq!(get(&sb, &t, "PSALedger/IN?pageSize=5").await.0, 200);
    assert!(sb.truth("deltek", "ap_voucher").is_none());
    assert!(sb.truth("deltek", "ar_invoice").is_some());
    assert!(!sb.deltek_counts().contains_key("ap_voucher"));
    assert!(!sb.deltek_mutate().contains_key("ap_voucher"));
    assert!(sb.deltek_live_rows("ap_voucher").is_none());
    // Standard has it.
    let sb = start(tenant(Tenant::Standard, 40)).await;
    let t = token(&sb).await;
    assert_eq!(get(&sb, &t, "PSALedger/AP?pageSize=5").await.0, 200);
    assert_eq!(sb.deltek_counts().len(), 12);
}

#[tokio::test]
async fn custom_fields_come_without_field_filter_or_when_named() {
    let sb = start(tenant(Tenant::Standard, 40)).await;
    let t = token(&sb).await;
    let (_, v) = get(&sb, &t, "firm?pageSize=40").await;
    let rows = v.as_array().unwrap();
    for r in rows {
        let r = r.as_object().unwrap();
        for f in [
            "CustDynamicsId",
            "CustIndustry",
            "CustAccountTier",
            "CustCreditLimit",
        ] {
            assert!(r.contains_key(f), "{f}");
        }
        // An external id only the integration writes: empty on generated rows.
        assert!(r["CustDynamicsId"].is_null());
    }
    assert!(rows.iter().any(|r| r["CustIndustry"].is_string()));
    assert!(rows.iter().any(|r| r["CustCreditLimit"].is_number()));
    let (_, v) = get(&sb, &t, "firm?pageSize=3&fieldFilter=ClientID,custindustry").await;
    let keys: Vec<&String> = v[0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["ClientID", "CustIndustry"]);
    let (_, v) = get(&sb, &t, "firm?pageSize=3&fieldFilter=ClientID,Name").await;
    assert_eq!(v[0].as_object().unwrap().len(), 2);

    // A custom field saved through the API is served and searchable; a custom field the
    // tenant lacks is refused.
    let client = reqwest::Client::new();
    let post = |body: Value| {
        client
            .post(format!("{}/firm", sb.deltek_base_url()))
            .header("Authorization", format!("bearer {t}"))
            .json(&body)
            .send()
    };
    let r = post(
        serde_json::json!([{"Name": "Acme Water", "CustDynamicsId": "dv-1", "Employees": "42"}]),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let saved: Value = r.json().await.unwrap();
    assert_eq!(saved[0]["CustDynamicsId"], "dv-1");
    assert_eq!(saved[0]["Employees"], 42);
    let (_, found) = get(
        &sb,
        &t,
        "firm?filterHash[0][name]=CustDynamicsId&filterHash[0][value]=DV-1&filterHash[0][opp]=%3D",
    )
    .await;
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found[0]["Name"], "Acme Water");
    let r = post(serde_json::json!([{"Name": "Acme Air", "CustRegion": "Québec"}]))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let e: Value = r.json().await.unwrap();
    assert!(e["detail"].as_str().unwrap().contains("CustRegion"), "{e}");

    // Custom tenant: the non-Latin values come through as UTF-8.
    let sb = start(tenant(Tenant::Custom, 40)).await;
    let t = token(&sb).await;
    let (_, v) = get(
        &sb,
        &t,
        "firm?pageSize=40&fieldFilter=ClientID,CustChiiki,CustOtrasl",
    )
    .await;
    let values: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["CustChiiki"].as_str())
        .collect();
    assert!(
        values
            .iter()
            .any(|s| ["関東", "関西", "九州", "北海道"].contains(s)),
        "{values:?}"
    );
}

#[tokio::test]
async fn custom_budget_hours_drift_between_records() {
    let opts = tenant(Tenant::Custom, 2000);
    let sb = start(opts.clone()).await;
    let t = token(&sb).await;
    let path = "project?pageSize=500&fieldFilter=WBS1,CustBudgetHours";
    let (_, v) = get(&sb, &t, path).await;
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 500);
    let count =
        |f: &dyn Fn(&Value) -> bool| rows.iter().filter(|r| f(&r["CustBudgetHours"])).count();
    let tbd = count(&|v| v == "TBD");
    let blank = count(&|v| v == "");
    let numbers = count(&|v| v.is_number());
    assert!(tbd > 0 && blank > 0, "tbd {tbd}, blank {blank}");
    assert!(tbd + blank < 50, "a small fraction: {tbd} + {blank}");
    assert_eq!(tbd + blank + numbers, 500);
    // Deterministic: the same options serve the same bytes.
    let again = start(opts).await;
    let t2 = token(&again).await;
    let a = reqwest::Client::new()
        .get(format!("{}/{path}", sb.deltek_base_url()))
        .header("Authorization", format!("bearer {t}"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let b = reqwest::Client::new()
        .get(format!("{}/{path}", again.deltek_base_url()))
        .header("Authorization", format!("bearer {t2}"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(a, b);
    // Standard: always a number (or empty).
    let sb = start(tenant(Tenant::Standard, 2000)).await;
    let t = token(&sb).await;
    let (_, v) = get(&sb, &t, path).await;
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|r| r["CustBudgetHours"].is_number() || r["CustBudgetHours"].is_null())
    );
}

/// Every page of `path` (no fieldFilter), read until a short page.
async fn read_everything(sb: &Sandbox, t: &str, path: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for page in 1.. {
        let sep = if path.contains('?') { '&' } else { '?' };
        let (s, v) = get(sb, t, &format!("{path}{sep}page={page}&pageSize=17")).await;
        assert_eq!(s, 200, "{path}: {v}");
        let rows = v.as_array().unwrap().clone();
        let n = rows.len();
        out.extend(rows);
        if n < 17 {
            break;
        }
    }
    out
}

fn canonical(rows: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn truth_is_a_full_paged_read() {
    let blank_wbs2 = "filterHash[0][name]=WBS2&filterHash[0][value]=&filterHash[0][opp]=%3D";
    let paths = [
        ("project", format!("project?wbstype=wbs1&{blank_wbs2}")),
        ("project_phase", "project?wbstype=wbs2".to_string()),
        ("project_task", "project?wbstype=wbs3".to_string()),
        ("firm", "firm".to_string()),
        ("contact", "contact".to_string()),
        ("employee", "employee".to_string()),
        (
            "opportunity",
            "project?wbstype=wbs1&filterHash[0][name]=Stage&filterHash[0][value]=&filterHash[0][opp]=!%3D"
                .to_string(),
        ),
        ("activity", "activity".to_string()),
        ("ap_voucher", "PSALedger/AP".to_string()),
        ("ar_invoice", "PSALedger/IN".to_string()),
        ("journal_entry", "PSALedger/JE".to_string()),
        ("gl_account", "accountConfiguration/glAccount".to_string()),
    ];
    for variant in Tenant::ALL {
        let sb = start(tenant(variant, 60)).await;
        let t = token(&sb).await;
        // Changed, deleted, inserted rows and a record saved through the API are all in it.
        sb.deltek_mutate();
        // A Lean tenant keeps its external id on firms under another name.
        let xid = if variant == Tenant::Lean {
            "CustCRMId"
        } else {
            "CustDynamicsId"
        };
        let r = reqwest::Client::new()
            .post(format!("{}/firm", sb.deltek_base_url()))
            .header("Authorization", format!("bearer {t}"))
            .json(&serde_json::json!([{"Name": "Saved Through The API", xid: "x-1"}]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        for (entity, path) in &paths {
            let Some(truth) = sb.truth("deltek", entity) else {
                assert!(
                    variant == Tenant::Lean && *entity == "ap_voucher",
                    "{variant} {entity}"
                );
                continue;
            };
            assert_eq!(
                truth.len() as u64,
                sb.deltek_counts()[*entity],
                "{variant} {entity}"
            );
            let truth: Vec<Value> = truth.into_iter().map(Value::Object).collect();
            let served = read_everything(&sb, &t, path).await;
            assert_eq!(
                canonical(&truth),
                canonical(&served),
                "{variant} {entity}: truth is not what the API serves"
            );
        }
        // Key order: numbers numerically (ledger periods, posting sequences).
        let ar = sb.truth("deltek", "ar_invoice").unwrap();
        let keys: Vec<(i64, i64, String)> = ar
            .iter()
            .map(|r| {
                (
                    r["Period"].as_i64().unwrap(),
                    r["PostSeq"].as_i64().unwrap(),
                    r["PKey"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        let firms = sb.truth("deltek", "firm").unwrap();
        assert!(
            firms
                .windows(2)
                .all(|w| w[0]["ClientID"].as_str() < w[1]["ClientID"].as_str())
        );
        assert!(firms.iter().any(|r| r[xid] == "x-1"));
        // Pre-5.0: opportunities are the hub's records.
        sb.deltek_opportunity_hub(true);
        let truth: Vec<Value> = sb
            .truth("deltek", "opportunity")
            .unwrap()
            .into_iter()
            .map(Value::Object)
            .collect();
        assert!(truth[0].get("OpportunityID").is_some());
        assert_eq!(
            canonical(&truth),
            canonical(&read_everything(&sb, &t, "opportunity").await),
            "{variant} opportunity hub"
        );
    }
}

//! The Deltek fake over raw HTTP: password and refresh grants and their refusals, paging,
//! fieldFilter, filterHash on ModDate, always-array answers, 401/403/429, mutations; and the
//! password-grant provider against it (refresh ahead of expiry, re-login on 401).

use std::time::Duration;

use ml_connector::config::Config;
use ml_connector::connect;
use ml_connector::sandbox::{Faults, Sandbox, SandboxOptions};
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

async fn get(sb: &Sandbox, token: &str, path_and_query: &str) -> (u16, Value) {
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
    let drafts = ml_connector::discover::discover(&conn, &ep, &defs, &["project".into()])
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

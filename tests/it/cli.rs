//! The `mlc` binary as a user meets it: help, init, configuration errors, connections.

use std::path::Path;
use std::process::{Command, Output};

use ml_connector::sandbox::{Sandbox, SandboxOptions};

pub fn mlc(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mlc"))
        .args(args)
        .current_dir(dir)
        .env_remove("MLC_CONFIG")
        .env_remove("MLC_MASTER_KEY")
        .output()
        .expect("run mlc")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn help_lists_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let out = mlc(dir.path(), &["--help"]);
    assert!(out.status.success());
    let help = text(&out);
    for cmd in [
        "demo",
        "sandbox",
        "init",
        "sync",
        "backfill",
        "query",
        "state",
        "catalog",
        "connection",
        "discover",
        "lookml",
    ] {
        assert!(help.contains(cmd), "`{cmd}` missing from --help:\n{help}");
    }
}

#[test]
fn init_writes_a_config_that_loads() {
    let dir = tempfile::tempdir().unwrap();
    let out = mlc(dir.path(), &["init"]);
    assert!(out.status.success(), "{}", text(&out));
    // The project's .mlc/ (vault, key, state, data) is kept out of git.
    let ignore = std::fs::read_to_string(dir.path().join(".gitignore")).unwrap();
    assert!(ignore.lines().any(|l| l == ".mlc/"), "{ignore}");
    // Nothing to check yet: said so, not a silent success.
    let check = mlc(dir.path(), &["connection", "check"]);
    assert!(!check.status.success());
    assert!(
        text(&check).contains("no connections to check"),
        "{}",
        text(&check)
    );
    let cfg = ml_connector::config::Config::load(&dir.path().join("mlc.toml")).unwrap();
    assert!(cfg.connections.is_empty());
    let again = mlc(dir.path(), &["init"]);
    assert!(!again.status.success());
    assert!(text(&again).contains("--force"));
}

#[test]
fn missing_and_bad_configs_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = mlc(dir.path(), &["sync"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("mlc init"), "{}", text(&out));

    std::fs::write(
        dir.path().join("mlc.toml"),
        "[connections.crm]\nsystem = \"dataverse\"\nenvironment_url = \"not a url\"\ntenant_id = \"t\"\nclient_id = \"c\"\n",
    )
    .unwrap();
    let out = mlc(dir.path(), &["sync"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("connections.crm.environment_url"),
        "{}",
        text(&out)
    );

    std::fs::write(
        dir.path().join("mlc.toml"),
        "[connections.crm]\nsystem = \"dataverse\"\nenvironment_url = \"https://x.crm.dynamics.com\"\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"hunter2\"\n",
    )
    .unwrap();
    let out = mlc(dir.path(), &["sync"]);
    let t = text(&out);
    assert!(
        t.contains("literal secret") && !t.contains("hunter2"),
        "{t}"
    );

    let out = mlc(dir.path(), &["query", "SELECT 1"]);
    assert!(!out.status.success());
}

#[test]
fn catalog_commands_show_definitions() {
    let dir = tempfile::tempdir().unwrap();
    let out = mlc(dir.path(), &["catalog", "list"]);
    assert!(out.status.success());
    assert!(text(&out).contains("raw_dataverse.opportunity"));
    let out = mlc(dir.path(), &["catalog", "list", "--json"]);
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let opp = list
        .iter()
        .find(|s| s["stream"] == "dataverse.opportunity")
        .unwrap();
    assert_eq!(opp["table"], "raw_dataverse.opportunity");
    assert!(opp["columns"].as_u64().unwrap() > 10);
    let out = mlc(dir.path(), &["catalog", "show", "dataverse.opportunity"]);
    assert!(text(&out).contains("_customerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"));
    let out = mlc(dir.path(), &["catalog", "show", "dataverse.nope"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("dataverse.account"),
        "lists known streams"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_add_check_list_remove() {
    let sb = Sandbox::start(SandboxOptions::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let env_url = sb.dataverse_url();
    let authority = sb.authority_url();
    let (tenant, client, secret) = (
        sb.tenant_id().to_string(),
        sb.client_id().to_string(),
        sb.client_secret().to_string(),
    );
    let run = move |args: Vec<String>, secret: Option<String>| {
        let d = d.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = Command::new(env!("CARGO_BIN_EXE_mlc"));
            c.args(&args).current_dir(&d).env_remove("MLC_MASTER_KEY");
            if let Some(s) = secret {
                c.env("TEST_SECRET", s);
            }
            c.output().unwrap()
        })
    };
    let add = || -> Vec<String> {
        [
            "connection",
            "add",
            "crm",
            "--environment-url",
            &env_url,
            "--tenant-id",
            &tenant,
            "--client-id",
            &client,
            "--authority-url",
            &authority,
            "--client-secret-env",
            "TEST_SECRET",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };

    let out = run(add(), Some(secret.clone())).await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let toml = std::fs::read_to_string(dir.path().join("mlc.toml")).unwrap();
    assert!(toml.contains("\n[connections.crm]") && !toml.contains(&secret));

    let out = run(vec!["connection".into(), "list".into()], None)
        .await
        .unwrap();
    assert!(text(&out).contains("stored (encrypted)"), "{}", text(&out));
    let out = run(
        vec!["connection".into(), "list".into(), "--json".into()],
        None,
    )
    .await
    .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["name"], "crm");
    assert_eq!(list[0]["system"], "dataverse");
    assert_eq!(list[0]["secret"], "stored (encrypted)");

    let out = run(
        vec!["connection".into(), "check".into(), "crm".into()],
        None,
    )
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("connection works"));

    // The app registration is not an application user of the org.
    sb.set_app_user(false);
    let out = run(vec!["connection".into(), "check".into()], None)
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("application user"), "{}", text(&out));
    let out = run(
        vec!["connection".into(), "check".into(), "--json".into()],
        None,
    )
    .await
    .unwrap();
    assert!(!out.status.success());
    let checks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(checks[0]["connection"], "crm");
    assert_eq!(checks[0]["ok"], false);
    assert!(
        checks[0]["problem"]
            .as_str()
            .unwrap()
            .contains("application user")
    );
    sb.set_app_user(true);

    // A wrong secret.
    let out = run(add(), Some("wrong-secret".into())).await.unwrap();
    assert!(out.status.success());
    let out = run(vec!["connection".into(), "check".into()], None)
        .await
        .unwrap();
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("client secret") && !t.contains("wrong-secret"),
        "{t}"
    );

    // A wrong environment URL: the scope built from it is refused, and the message says where
    // to look.
    let mut wrong_url = add();
    wrong_url[4] = format!("{}/wrong-org", sb.base_url());
    let out = run(wrong_url, Some(secret.clone())).await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = run(vec!["connection".into(), "check".into()], None)
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("environment URL"), "{}", text(&out));

    let out = run(
        vec!["connection".into(), "remove".into(), "crm".into()],
        None,
    )
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let cfg = ml_connector::config::Config::load(&dir.path().join("mlc.toml")).unwrap();
    assert!(cfg.connections.is_empty());
    assert!(
        ml_connector::vault::Vault::new(&cfg.vault)
            .names()
            .unwrap()
            .is_empty()
    );
}

/// A tenant that lacks tables and columns: `mlc sync` succeeds (absent is not failed) and says
/// what it skipped, in its table and in `--json`; `mlc catalog diff` shows the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_and_catalog_diff_say_how_the_tenant_differs() {
    let sb = Sandbox::start(
        SandboxOptions {
            scale: 50,
            tenant: ml_connector::sandbox::Tenant::Lean,
            ..SandboxOptions::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    ml_connector::demo::write_project(dir.path(), &sb, "", false).unwrap();
    let d = dir.path().to_path_buf();
    let run = move |args: &'static [&'static str]| {
        let d = d.clone();
        tokio::task::spawn_blocking(move || mlc(&d, args))
    };
    let out = run(&["sync", "--json", "dataverse"]).await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let runs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let by = |s: &str| runs.iter().find(|r| r["stream"] == s).unwrap().clone();
    assert_eq!(by("dataverse.lead")["status"], "absent");
    assert!(by("dataverse.lead")["schema"]["entity_absent"].is_string());
    assert_eq!(by("dataverse.account")["status"], "ok");
    assert!(
        by("dataverse.account")["schema"]["absent_columns"]
            .as_array()
            .unwrap()
            .contains(&"telephone2".into())
    );

    let out = run(&["sync", "deltek"]).await.unwrap();
    let table = text(&out);
    assert!(out.status.success(), "{table}");
    assert!(table.contains("absent in tenant"), "{table}");
    assert!(table.contains("deletes last reconciled"), "{table}");
    // Off a terminal, a line per stream as it ends (stderr), and the table ends with totals.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let streams = stdout.lines().filter(|l| l.starts_with("vp/")).count();
    assert!(streams > 5, "{stdout}");
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.starts_with("vp/") && l.contains(" done: "))
            .count()
            + stderr.lines().filter(|l| l.contains(": FAILED: ")).count(),
        streams,
        "{stderr}"
    );
    let last = stdout.lines().last().unwrap();
    assert!(last.starts_with(&format!("{streams} streams")), "{last}");
    // The header's columns line up with the rows', however long a stream's name.
    let header = stdout.lines().next().unwrap();
    let row = stdout.lines().nth(1).unwrap();
    assert_eq!(
        header.find("extracted").map(|i| i + "extracted".len()),
        row.split_whitespace()
            .nth(2)
            .and_then(|n| row.find(&format!(" {n} ")).map(|i| i + 1 + n.len())),
        "{stdout}"
    );

    let out = run(&["catalog", "diff", "dataverse.account", "dataverse.lead"])
        .await
        .unwrap();
    let diff = text(&out);
    assert!(out.status.success(), "{diff}");
    assert!(
        diff.contains("dataverse.account: crm: absent in tenant (NULL): telephone2"),
        "{diff}"
    );
    assert!(
        diff.contains("dataverse.lead: crm: absent in tenant:"),
        "{diff}"
    );
    let out = run(&["catalog", "diff", "--json", "dataverse.account"])
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["tenants"]["crm"]["absent_columns"][0], "telephone2");

    // Discovery, for a machine: one object per entity; drafts beside mlc.toml by default.
    let out = run(&[
        "discover", "crm", "--json", "--entity", "account", "--entity", "lead",
    ])
    .await
    .unwrap();
    let found: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    let by = |e: &str| found.iter().find(|f| f["entity"] == e).unwrap().clone();
    assert_eq!(by("dataverse.account")["outcome"], "ok");
    assert_eq!(by("dataverse.account")["new_stream"], false);
    let file = by("dataverse.account")["catalog_file"]
        .as_str()
        .unwrap()
        .to_string();
    // (Paths as mlc shows them: relative to where it runs, the project folder here.)
    assert!(dir.path().join(&file).is_file(), "{file}");
    assert!(file.starts_with("discovered/catalog/dataverse/"), "{file}");
    assert_eq!(by("dataverse.lead")["outcome"], "absent");
}

/// `mlc … | head` closes the pipe early: the process ends quietly, with success.
#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mlc"))
        .args(["catalog", "list"])
        .current_dir(dir.path())
        .env_remove("MLC_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader is gone before the first line is written.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
}

/// `mlc runs` lists the run history with where each run stands, and `--failed` only the
/// failed and interrupted ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_lists_the_history_with_where_each_run_stands() {
    let sb = Sandbox::start(
        SandboxOptions {
            scale: 30,
            ..SandboxOptions::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    ml_connector::demo::write_project(dir.path(), &sb, "", false).unwrap();
    let d = dir.path().to_path_buf();
    let run = move |args: &'static [&'static str]| {
        let d = d.clone();
        tokio::task::spawn_blocking(move || mlc(&d, args))
    };
    let out = run(&["sync", "dataverse.account", "dataverse.contact"])
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&["runs", "--json"]).await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let runs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(
        runs.iter()
            .all(|r| r["standing"] == "committed" && r["kind"] == "snapshot")
    );
    let out = run(&["runs", "dataverse.account"]).await.unwrap();
    let table = text(&out);
    assert!(
        table.contains("dataverse.account") && !table.contains("dataverse.contact"),
        "{table}"
    );
    let out = run(&["runs", "--failed"]).await.unwrap();
    assert!(text(&out).contains("no runs failed"), "{}", text(&out));
}

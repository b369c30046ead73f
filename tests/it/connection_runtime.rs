//! One runtime per connection: every stream run of a process shares the connection's token,
//! rate limit and concurrency limit, so a tenant's per-user limits hold for the connection as a
//! whole whatever `sync.concurrency` is.

use std::fmt::Write;
use std::time::Duration;

use ml_connector::config::{Config, Connection};
use ml_connector::run::{Context, RunRequest, run_many};
use ml_connector::sandbox::{Sandbox, SandboxOptions};
use ml_connector::vault::{Secrets, Vault};
use secrecy::SecretString;
use tempfile::TempDir;

/// A project on `sb` with every system but Looker; Pipedrive through OAuth (a refresh grant
/// per token, like the Entra and Deltek logins), `requests_per_minute` as given and `sync`
/// running `concurrency` streams at once.
fn project(sb: &Sandbox, dir: &TempDir, rpm: u32, concurrency: usize) -> Context {
    let mut text = format!(
        "[lake]\nurl = \"file://.mlc/lake\"\n[state]\npath = \".mlc/state.db\"\n[warehouse]\nkind = \"local\"\npath = \".mlc/warehouse\"\n[sync]\nconcurrency = {concurrency}\n"
    );
    let mut secrets = Vec::new();
    for c in sb.connections() {
        let (settings, s) = match c.system {
            "looker" => continue,
            "pipedrive" => sb.pipedrive_oauth_connection(),
            _ => (c.settings, c.secrets),
        };
        let _ = write!(
            text,
            "\n[connections.{}]\n{settings}requests_per_minute = {rpm}\n",
            c.name
        );
        secrets.push((c.name, s));
    }
    let path = dir.path().join("mlc.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap();
    let vault = Vault::new(&config.vault);
    for (name, s) in secrets {
        let s: Secrets = s
            .into_iter()
            .map(|(k, v)| (k, SecretString::from(v)))
            .collect();
        vault.put(&name, &s).unwrap();
    }
    Context::open(config).unwrap()
}

/// Runs every stream of `conns`; panics with the failures.
async fn sync(ctx: &Context, conns: &[&Connection]) -> usize {
    let results = run_many(ctx, conns, &[], &RunRequest::Sync { full: false })
        .await
        .unwrap();
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(l, r)| r.as_ref().err().map(|e| format!("{l}: {e}")))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    results.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_requests_one_token_per_connection() {
    let sb = Sandbox::start(
        SandboxOptions {
            scale: 100,
            retry_after_secs: 0,
            ..SandboxOptions::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctx = project(&sb, &dir, 100_000, 4);
    let conns: Vec<&Connection> = ctx.config.connections.values().collect();
    assert_eq!(
        conns.len(),
        4,
        "Dataverse, Business Central, Deltek, Pipedrive"
    );

    // Every stream of the four connections, four at a time: one token each (Entra for
    // Dataverse and Business Central, Deltek's password grant, Pipedrive's refresh grant).
    let before = sb.stats().kind("token");
    let streams = sync(&ctx, &conns).await;
    assert!(streams > 30, "{streams} streams");
    assert_eq!(sb.stats().kind("token") - before, 4);

    // The same process syncing again reuses them: no token at all.
    sync(&ctx, &conns).await;
    sync(&ctx, &conns).await;
    assert_eq!(sb.stats().kind("token") - before, 4);

    // A new process (a new context) asks once per connection again.
    let again = Context::open(ctx.config.clone()).unwrap();
    let conns2: Vec<&Connection> = again.config.connections.values().collect();
    sync(&again, &conns2).await;
    assert_eq!(sb.stats().kind("token") - before, 8);
}

/// The sandbox admits `BUDGET` requests per client in any `WINDOW` (Dataverse's and Business
/// Central's service protection, shrunk); the connection's `requests_per_minute` is sized for it
/// the way the README says (a minute's tenth as burst plus the rate over the window). With four
/// streams at once, each with a limiter of its own, the bursts alone would pass the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_stay_within_the_connections_budget() {
    const BUDGET: u32 = 40;
    const WINDOW: Duration = Duration::from_secs(3);
    let sb = Sandbox::start(
        SandboxOptions {
            scale: 20,
            retry_after_secs: 1,
            budget: Some((BUDGET, WINDOW)),
            ..SandboxOptions::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    // burst + rate × window ≤ budget: rpm/10 + rpm × 3/60 ≤ 40 → rpm ≤ 266.
    let rpm = 240;
    assert!(rpm / 10 + rpm * WINDOW.as_secs() as u32 / 60 <= BUDGET);
    let dir = tempfile::tempdir().unwrap();
    // Small pages: more requests than one window admits.
    crate::support::small_pages(dir.path(), 5);
    let ctx = project(&sb, &dir, rpm, 4);
    let crm = ctx.config.connection("crm").unwrap();
    let before = sb.stats();
    let streams = sync(&ctx, &[crm]).await;
    let after = sb.stats();
    let requests =
        after.kind("data") + after.kind("metadata") - before.kind("data") - before.kind("metadata");
    assert!(
        requests > u64::from(BUDGET),
        "{requests} requests for {streams} streams: more than one window's budget"
    );
    assert_eq!(
        after.status(429) - before.status(429),
        0,
        "the connection exceeded the tenant's budget"
    );
}

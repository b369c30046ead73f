//! Several `mlc` workers on one project, as an integrator runs them from a scheduler: the
//! same mlc.toml, one state store (SQLite on one machine, or a shared Postgres), one lake and
//! warehouse, one sandbox tenant of every system. Real processes, so in the slow suite.
//!
//! What must hold whatever the interleaving: every stream run and every sink job is done
//! once (a unit another worker holds is left to it, never a failure), a killed worker's work
//! is resumed by another, no two runs of a stream overlap, the warehouse equals the source,
//! and no target record is written twice.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use ml_connector::config::Config;
use ml_connector::run::Context;
use ml_connector::sandbox::{Sandbox, SandboxOptions};
use ml_connector::state::{JobStatus, StateStore};

const FLOW: &str = "dynamics_to_deltek";

/// Where the workers keep their state and lake.
struct Shared {
    /// Lines for mlc.toml's `[state]` (after `path = …`).
    state: String,
    /// The lake's URL (`None`: the project's local folder).
    lake: Option<String>,
    /// Environment every worker gets (object storage credentials).
    env: Vec<(&'static str, String)>,
}

/// A demo project on `sandbox`, with leases of 5 s and the state and lake of `shared`.
fn project(dir: &Path, sandbox: &Sandbox, shared: &Shared) -> std::path::PathBuf {
    ml_connector::demo::write_project(dir, sandbox, "", false).unwrap();
    let toml = dir.join("mlc.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap().replace(
        "path = \".mlc/state.db\"",
        &format!(
            "path = \".mlc/state.db\"\nlease_seconds = 5\n{}",
            shared.state
        ),
    );
    assert!(text.contains("lease_seconds = 5"));
    if let Some(lake) = &shared.lake {
        text = text.replace("url = \"file://.mlc/lake\"", &format!("url = \"{lake}\""));
        assert!(text.contains(lake.as_str()));
    }
    std::fs::write(&toml, text).unwrap();
    toml
}

fn worker(toml: &Path, shared: &Shared, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_mlc"))
        .arg("--config")
        .arg(toml)
        .args(args)
        .envs(shared.env.iter().map(|(k, v)| (k, v)))
        .env_remove("MLC_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Waits until one of `workers` holds a lease whose unit `busy` accepts (with its pid): it
/// is in the middle of that work. Kills that one and returns the others.
async fn kill_one_when_busy(
    mut workers: Vec<tokio::process::Child>,
    store: &StateStore,
    busy: impl Fn(&str, u32) -> bool,
) -> Vec<tokio::process::Child> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let holders = store.lease_holders(ml_connector::lease::now_ms()).unwrap();
        let found = workers.iter().position(|w| {
            let Some(pid) = w.id() else { return false };
            let owner = format!(":{pid}:");
            holders
                .iter()
                .any(|(unit, holder, _)| holder.contains(&owner) && busy(unit, pid))
        });
        if let Some(i) = found {
            let mut victim = workers.remove(i);
            victim.start_kill().unwrap();
            let _ = victim.wait().await;
            return workers;
        }
        assert!(Instant::now() < deadline, "no worker took the work");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn outputs(workers: Vec<tokio::process::Child>) -> Vec<std::process::Output> {
    let mut out = Vec::new();
    for w in workers {
        out.push(w.wait_with_output().await.unwrap());
    }
    out
}

async fn three_workers_share_streams_and_a_sink_flow(shared: Shared) {
    let sandbox = Sandbox::start(
        SandboxOptions {
            scale: 3000,
            retry_after_secs: 0,
            ..SandboxOptions::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let toml = project(dir.path(), &sandbox, &shared);
    let config = Config::load(&toml).unwrap();
    let store = StateStore::for_location(&config.state_location()).unwrap();

    // Syncs: one worker is killed in the middle of a run (it holds the stream's lease and has
    // begun the run), the next round (the next cron firing) resumes what it left.
    let sync = ["sync", "--json"];
    let workers = (0..3).map(|_| worker(&toml, &shared, &sync)).collect();
    let left = kill_one_when_busy(workers, &store, |unit, pid| {
        store.runs(None, 200).unwrap().iter().any(|r| {
            r.owner_pid == Some(pid)
                && r.status == "running"
                && unit == format!("run:{}/{}", r.connection, r.stream)
        })
    })
    .await;
    let mut done = outputs(left).await;
    done.extend(outputs(vec![worker(&toml, &shared, &sync)]).await);
    let (mut held, mut resumed) = (0, 0);
    for out in done {
        assert!(
            out.status.success(),
            "a worker failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let runs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        held += runs.iter().filter(|r| r["status"] == "held").count();
        resumed += runs
            .iter()
            .filter(|r| r["notes"].to_string().contains("resumed run"))
            .count();
    }
    assert!(held > 0, "the workers met on some stream");
    assert!(resumed > 0, "the killed worker's run was resumed");

    // Every stream committed, its runs never overlapped, and its table equals the source
    // (read before the sink writes to the Vantagepoint tenant).
    {
        let ctx = Context::open(config.clone()).unwrap();
        let local = ctx.warehouse.local().unwrap();
        let (mut streams, mut mismatches) = (0, Vec::new());
        for conn in ctx.config.connections.values() {
            for stream in ctx.streams_for(conn, &[]).unwrap() {
                streams += 1;
                let sid = stream.id.to_string();
                let mut runs: Vec<_> = ctx
                    .state
                    .runs(Some(&sid), 100)
                    .unwrap()
                    .into_iter()
                    .filter(|r| r.connection == conn.name && r.status == "committed")
                    .collect();
                assert!(!runs.is_empty(), "{sid} on {} never committed", conn.name);
                runs.sort_by(|a, b| a.started_at.cmp(&b.started_at));
                for w in runs.windows(2) {
                    assert!(
                        w[0].finished_at.as_deref() <= Some(w[1].started_at.as_str()),
                        "{sid}: runs {} and {} overlapped",
                        w[0].run_id,
                        w[1].run_id
                    );
                }
                if let Some(source) = sandbox.live_count(&stream.id.system, &stream.id.entity) {
                    let got = local
                        .row_count(&stream.dataset(), &stream.id.entity)
                        .unwrap();
                    if got != source {
                        mismatches.push(format!("{sid}: warehouse {got}, sandbox {source}"));
                    }
                }
            }
        }
        assert!(streams >= 20, "only {streams} streams");
        assert!(mismatches.is_empty(), "{mismatches:#?}");
    }

    // The sink flow: three workers apply it at once; the one holding the flow is killed
    // after its first writes, and the next round finishes what it left.
    let apply = ["sink", "apply", FLOW, "--yes", "--json"];
    let workers = (0..3).map(|_| worker(&toml, &shared, &apply)).collect();
    let unit = ml_connector::lease::sink_unit(FLOW);
    let left = kill_one_when_busy(workers, &store, |u, _| {
        u == unit && !sandbox.deltek_writes().is_empty()
    })
    .await;
    let mut done = outputs(left).await;
    done.extend(outputs(vec![worker(&toml, &shared, &apply)]).await);
    for out in done {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Each worker either applied (a report; jobs the sink refuses to guess fail) or left
        // the flow to the worker holding it.
        assert!(
            stderr.contains("left to another worker")
                || serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok(),
            "a sink worker crashed: {stderr}"
        );
    }

    // Every sink job ran to an end, and every Vantagepoint record was created once and
    // linked: no worker's write was repeated by another.
    assert!(
        store
            .sink_jobs(FLOW, Some(JobStatus::Planned))
            .unwrap()
            .is_empty(),
        "jobs left planned"
    );
    let creates: Vec<String> = sandbox
        .deltek_writes()
        .into_iter()
        .filter(|w| w.method == "POST" && w.status == 200)
        .filter_map(|w| w.key)
        .collect();
    let unique: BTreeSet<_> = creates.iter().cloned().collect();
    assert!(!creates.is_empty(), "the flow created nothing");
    assert_eq!(unique.len(), creates.len(), "a record was created twice");
    let linked: BTreeSet<String> = store
        .sink_links(FLOW)
        .unwrap()
        .into_iter()
        .map(|(_, _, l)| l.target_key)
        .collect();
    assert!(unique.is_subset(&linked), "every created record is linked");
}

/// One machine, the default SQLite state and local lake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: several workers as real processes"]
async fn workers_on_one_machine_share_the_work_and_resume_a_killed_one() {
    three_workers_share_streams_and_a_sink_flow(Shared {
        state: String::new(),
        lake: None,
        env: Vec::new(),
    })
    .await;
}

/// What several machines share: a Postgres state and an object-storage lake (S3, here the
/// moto emulator).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow, and needs PostgreSQL (.ci/postgres.sh) and the S3 emulator (.ci/emulators.sh)"]
async fn workers_on_postgres_and_s3_share_the_work_and_resume_a_killed_one() {
    let test = "workers_on_postgres_and_s3_share_the_work_and_resume_a_killed_one";
    let Some(server) = crate::support::postgres_server(test) else {
        return;
    };
    let Some(s3) = crate::bigquery::env_or_skip(test, &["MLC_TEST_S3_URL"]) else {
        return;
    };
    let s3 = s3[0].clone();
    let bucket = crate::bigquery::unique("mlc-workers-");
    // moto creates a bucket on an unsigned PUT.
    let made = reqwest::Client::new()
        .put(format!("{s3}/{bucket}"))
        .send()
        .await
        .unwrap();
    assert!(made.status().is_success(), "{}", made.status());
    three_workers_share_streams_and_a_sink_flow(Shared {
        state: format!("url = \"{}\"\n", crate::support::postgres_database(&server)),
        lake: Some(format!("s3://{bucket}/lake")),
        env: vec![
            ("AWS_ENDPOINT", s3),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false".into()),
        ],
    })
    .await;
}

/// `mlc state migrate` moves a project's SQLite state into an empty Postgres state: with
/// `[state] url` set, the next sync carries on from the cursors (incremental runs, no row
/// read again), the history is there, and a second migration into the filled store is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (.ci/postgres.sh)"]
async fn state_migrate_carries_a_project_into_postgres() {
    let Some(server) =
        crate::support::postgres_server("state_migrate_carries_a_project_into_postgres")
    else {
        return;
    };
    let url = crate::support::postgres_database(&server);
    let sandbox = Sandbox::start(
        SandboxOptions {
            scale: 100,
            ..SandboxOptions::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let local = Shared {
        state: String::new(),
        lake: None,
        env: Vec::new(),
    };
    let toml = project(dir.path(), &sandbox, &local);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mlc"))
            .arg("--config")
            .arg(&toml)
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            text,
        )
    };
    let (ok, _, text) = run(&["sync", "--connection", "crm"]);
    assert!(ok, "{text}");
    let (ok, before, text) = run(&["state", "show", "--json"]);
    assert!(ok, "{text}");
    let before: serde_json::Value = serde_json::from_str(&before).unwrap();

    let (ok, _, text) = run(&["state", "migrate", "--to", &url]);
    assert!(ok, "{text}");
    assert!(text.contains("copied") && text.contains("runs"), "{text}");
    let config = std::fs::read_to_string(&toml).unwrap().replace(
        "lease_seconds = 5",
        &format!("lease_seconds = 5\nurl = \"{url}\""),
    );
    std::fs::write(&toml, config).unwrap();

    let (ok, after, text) = run(&["state", "show", "--json"]);
    assert!(ok, "{text}");
    let after: serde_json::Value = serde_json::from_str(&after).unwrap();
    assert!(after["state"].as_str().unwrap().starts_with("postgres://"));
    assert_eq!(
        after["streams"], before["streams"],
        "the cursors moved over"
    );
    assert_eq!(after["runs"], before["runs"], "the history moved over");

    let (ok, out, text) = run(&["sync", "--connection", "crm", "--json"]);
    assert!(ok, "{text}");
    let runs: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert!(!runs.is_empty());
    for r in &runs {
        assert_ne!(r["kind"], "snapshot", "{} started over: {r}", r["stream"]);
    }

    let (ok, _, text) = run(&["state", "migrate", "--to", &url]);
    assert!(!ok, "a second migration is refused");
    assert!(text.contains("already holds state"), "{text}");
}

//! `kill -9` in the middle of a sync, several times, at different stages: the reruns end with
//! tables equal to the source, row by row — no duplicate, no gap. Runs real processes (the
//! sandbox and mlc), so it is in the slow suite.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ml_connector::config::Config;
use ml_connector::run::Context;
use ml_connector::sandbox::entra::{CLIENT_ID, CLIENT_SECRET, TENANT_ID};
use ml_connector::state::StateStore;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sync(dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mlc"))
        .args(["sync", "dataverse.account"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until `cond` holds on the state store (or the child exits), then kills the child.
fn kill_when(mut child: Child, dir: &Path, cond: impl Fn(&StateStore) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(300);
    let store = StateStore::open(&dir.join(".mlc/state.db")).unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if cond(&store) {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
        assert!(
            Instant::now() < deadline,
            "the sync never reached the kill point"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn source_keys(base: &str) -> Vec<Vec<String>> {
    let body = curl::get(&format!("{base}/_sandbox/dataverse/accounts/keys"));
    let rows: Vec<(String, i64)> = serde_json::from_str(&body).unwrap();
    let mut v: Vec<Vec<String>> = rows
        .into_iter()
        .map(|(k, ver)| vec![k, ver.to_string()])
        .collect();
    v.sort();
    v
}

mod curl {
    /// A tiny blocking GET for the admin API (the test runs outside tokio).
    pub fn get(url: &str) -> String {
        let out = std::process::Command::new("curl")
            .args(["-sf", url])
            .output()
            .expect("curl");
        assert!(out.status.success(), "GET {url} failed");
        String::from_utf8(out.stdout).unwrap()
    }
    pub fn post(url: &str) {
        let out = std::process::Command::new("curl")
            .args(["-sf", "-X", "POST", url])
            .output()
            .expect("curl");
        assert!(out.status.success(), "POST {url} failed");
    }
}

fn warehouse_keys(dir: &Path) -> Vec<Vec<String>> {
    let cfg = Config::load(&dir.join("mlc.toml")).unwrap();
    let ctx = Context::open(cfg).unwrap();
    ctx.warehouse
        .local()
        .unwrap()
        .keys("raw_dataverse", "account", &["accountid", "versionnumber"])
        .unwrap()
}

#[test]
#[ignore = "slow: kill -9 end to end with real processes"]
fn kill_9_mid_sync_then_rerun_equals_the_source() {
    let port = free_port();
    let sandbox = Killed(
        Command::new(env!("CARGO_BIN_EXE_mlc"))
            .args(["sandbox", "--port", &port.to_string(), "--scale", "60000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while std::process::Command::new("curl")
        .args(["-sf", &format!("{base}/_sandbox/health")])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "sandbox did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("streams/dataverse")).unwrap();
    std::fs::write(
        d.join("streams/dataverse/_source.toml"),
        crate::support::DATAVERSE_SOURCE.replace("page_size = 5000", "page_size = 1000"),
    )
    .unwrap();
    std::fs::write(
        d.join("mlc.toml"),
        format!(
            "[sync]\npart_size_mb = 0.5\n\n[connections.crm]\nsystem = \"dataverse\"\nenvironment_url = \"{base}/dataverse\"\nauthority_url = \"{base}/entra\"\ntenant_id = \"{TENANT_ID}\"\nclient_id = \"{CLIENT_ID}\"\nrequests_per_minute = 1000000\n"
        ),
    )
    .unwrap();
    let cfg = Config::load(&d.join("mlc.toml")).unwrap();
    let mut secrets = ml_connector::vault::Secrets::new();
    secrets.insert("client_secret".into(), CLIENT_SECRET.to_string().into());
    ml_connector::vault::Vault::new(&cfg.vault)
        .put("crm", &secrets)
        .unwrap();

    let parts_at_least = |n: u32| {
        move |s: &StateStore| {
            s.open_run("crm", "dataverse.account")
                .unwrap()
                .is_some_and(|r| r.status == "running" && r.next_part >= n)
        }
    };
    // Killed twice while extracting (the second time in the resumed run) ...
    assert!(
        kill_when(sync(d), d, parts_at_least(2)),
        "first kill point reached"
    );
    let killed_again = kill_when(sync(d), d, parts_at_least(6));
    // ... then once as soon as the extraction is complete (during or before the merge).
    kill_when(sync(d), d, |s| {
        s.open_run("crm", "dataverse.account")
            .unwrap()
            .is_some_and(|r| r.status != "running")
    });
    let mut last = sync(d);
    assert!(last.wait().unwrap().success(), "the final rerun succeeds");
    assert_eq!(
        warehouse_keys(d),
        source_keys(&base),
        "tables equal the source after kills"
    );
    let _ = killed_again;

    // The same after changes and a kill during the incremental run.
    curl::post(&format!("{base}/_sandbox/mutate"));
    kill_when(sync(d), d, |s| {
        s.open_run("crm", "dataverse.account").unwrap().is_some()
    });
    let mut last = sync(d);
    assert!(last.wait().unwrap().success());
    assert_eq!(
        warehouse_keys(d),
        source_keys(&base),
        "incremental after a kill"
    );

    // History shows the resumed and abandoned-free path: one committed snapshot, no duplicates.
    let store = StateStore::open(&d.join(".mlc/state.db")).unwrap();
    let runs = store.runs(Some("dataverse.account"), 50).unwrap();
    assert!(
        runs.iter()
            .any(|r| r.kind == "snapshot" && r.status == "committed")
    );
    drop(sandbox);
}

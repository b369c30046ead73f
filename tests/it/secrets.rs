//! Secrets stay secret: after a whole demo (debug logging on), the sandbox's client secret
//! appears in no file on disk and in no output.

use std::path::Path;
use std::process::Command;

use ml_connector::sandbox::entra::CLIENT_SECRET;

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn the_demo_leaves_no_plaintext_secret() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mlc"))
        .args(["-vv", "demo", "--dir", "demo", "--scale", "100"])
        .current_dir(dir.path())
        .env("MLC_LOG", "debug")
        .env_remove("MLC_MASTER_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("Incremental sync"), "{stdout}");
    assert!(!stderr.is_empty(), "debug logging produced output to check");
    assert!(!stdout.contains(CLIENT_SECRET) && !stderr.contains(CLIENT_SECRET));

    let mut all = Vec::new();
    files(dir.path(), &mut all);
    assert!(
        all.iter().any(|p| p.ends_with("vault.json")),
        "the secret was stored"
    );
    assert!(
        all.iter()
            .any(|p| p.extension().is_some_and(|e| e == "parquet"))
    );
    for p in &all {
        let bytes = std::fs::read(p).unwrap();
        assert!(
            !bytes
                .windows(CLIENT_SECRET.len())
                .any(|w| w == CLIENT_SECRET.as_bytes()),
            "{} contains the client secret in plaintext",
            p.display()
        );
    }
}

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

/// Many writers on one fresh vault at once: `mlc connection add` in parallel processes (each
/// with its own config file, all sharing the project's `.mlc/` vault and, since none exists
/// yet, racing to create the master key) while threads of this process update fields of one
/// shared entry. Afterwards every connection and every field is there and decrypts with the
/// one key file.
#[test]
fn parallel_processes_and_threads_lose_no_vault_update() {
    use ml_connector::vault::Vault;
    use ml_connector::vault::VaultConfig;
    use secrecy::{ExposeSecret, SecretString};

    const PROCESSES: usize = 8;
    const THREADS: usize = 4;
    const ROUNDS: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::new(&VaultConfig {
        path: dir.path().join(".mlc/vault.json"),
        key_file: dir.path().join(".mlc/master.key"),
    });
    let children: Vec<_> = (0..PROCESSES)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_mlc"))
                .args([
                    "--config",
                    &format!("mlc-{i}.toml"),
                    "connection",
                    "add",
                    &format!("crm{i}"),
                    "--environment-url",
                    &format!("https://org{i}.crm.dynamics.com"),
                    "--tenant-id",
                    "00000000-0000-0000-0000-000000000001",
                    "--client-id",
                    "00000000-0000-0000-0000-000000000002",
                    "--client-secret-env",
                    "TEST_SECRET",
                ])
                .current_dir(dir.path())
                .env_remove("MLC_MASTER_KEY")
                .env_remove("MLC_CONFIG")
                .env("TEST_SECRET", format!("secret-of-crm{i}"))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let vault = &vault;
            s.spawn(move || {
                for r in 0..ROUNDS {
                    vault
                        .update("shared", |secrets| {
                            secrets.insert(
                                format!("t{t}_r{r}"),
                                SecretString::from(format!("v{t}.{r}")),
                            );
                            Ok(())
                        })
                        .unwrap();
                }
            });
        }
    });
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let mut names = vault.names().unwrap();
    names.sort();
    let mut want: Vec<String> = (0..PROCESSES).map(|i| format!("crm{i}")).collect();
    want.push("shared".into());
    want.sort();
    assert_eq!(names, want);
    for i in 0..PROCESSES {
        let s = vault.get(&format!("crm{i}")).unwrap().unwrap();
        assert_eq!(
            s["client_secret"].expose_secret(),
            format!("secret-of-crm{i}")
        );
    }
    let shared = vault.get("shared").unwrap().unwrap();
    assert_eq!(shared.len(), THREADS * ROUNDS);
    for t in 0..THREADS {
        for r in 0..ROUNDS {
            assert_eq!(
                shared[&format!("t{t}_r{r}")].expose_secret(),
                format!("v{t}.{r}")
            );
        }
    }
    // Only the vault, its lock and the one key are left: no temp file survived.
    let mut left: Vec<String> = std::fs::read_dir(dir.path().join(".mlc"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["master.key", "vault.json", "vault.json.lock"]);
}

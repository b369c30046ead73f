//! The encrypted credential store (DESIGN.md §11): secrets of each connection, sealed with
//! XChaCha20-Poly1305 (random 24-byte nonce per entry, the connection name as associated data so
//! entries cannot be swapped). The 32-byte key comes from `MLC_MASTER_KEY` (base64) or a key
//! file created on first use with mode 0600. Secrets leave this module only as `SecretString`.
//!
//! Several writers share one vault: parallel streams storing a rotated OAuth refresh token,
//! `mlc connection add` while `mlc serve` runs. Every change therefore takes an exclusive lock
//! on `<vault>.lock` (a side file: `vault.json` itself is replaced by rename, so a lock on it
//! would guard a file nobody reads any more), reads the vault again under the lock, changes one
//! entry, and publishes the result by writing a unique temp file in the same directory, syncing
//! it, renaming it over `vault.json` and syncing the directory. Readers take no lock: a rename
//! shows them either the old file or the new one, never a half-written one.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where the vault and its key live (`[vault]` in mlc.toml).
#[derive(Debug, Clone)]
pub struct VaultConfig {
    pub path: PathBuf,
    pub key_file: PathBuf,
}

/// Environment variable holding the base64 master key.
pub const MASTER_KEY_ENV: &str = "MLC_MASTER_KEY";

/// The secrets of one connection, by field name (`client_secret`, ...).
pub type Secrets = BTreeMap<String, SecretString>;

#[derive(Serialize, Deserialize, Default)]
struct VaultFile {
    version: u32,
    cipher: String,
    entries: BTreeMap<String, Sealed>,
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    nonce: String,
    ciphertext: String,
}

/// The vault on disk.
#[derive(Debug, Clone)]
pub struct Vault {
    path: PathBuf,
    key_file: PathBuf,
}

impl Vault {
    pub fn new(cfg: &VaultConfig) -> Self {
        Self {
            path: cfg.path.clone(),
            key_file: cfg.key_file.clone(),
        }
    }

    /// Stores (replacing) the secrets of `connection`.
    pub fn put(&self, connection: &str, secrets: &Secrets) -> Result<()> {
        self.update(connection, |s| {
            *s = secrets.clone();
            Ok(())
        })
    }

    /// Changes the secrets of `connection` in place (empty when none are stored yet) and stores
    /// them, all under the vault lock: concurrent updates of other fields or other connections
    /// are never lost. `change`'s value is returned; when it fails nothing is written.
    pub fn update<T>(
        &self,
        connection: &str,
        change: impl FnOnce(&mut Secrets) -> Result<T>,
    ) -> Result<T> {
        let _lock = self.lock()?;
        let mut file = self.read()?;
        let cipher = self.cipher_for_write(&file, connection)?;
        let mut secrets = match file.entries.get(connection) {
            Some(sealed) => open(&cipher, connection, sealed).map_err(|e| self.wrong_key(e))?,
            None => Secrets::new(),
        };
        let out = change(&mut secrets)?;
        file.entries
            .insert(connection.to_string(), seal(&cipher, connection, &secrets)?);
        self.write(&file)?;
        Ok(out)
    }

    /// The secrets of `connection`, or `None` if none are stored.
    pub fn get(&self, connection: &str) -> Result<Option<Secrets>> {
        let file = self.read()?;
        let Some(sealed) = file.entries.get(connection) else {
            return Ok(None);
        };
        let cipher = self.cipher(false)?;
        open(&cipher, connection, sealed)
            .map(Some)
            .map_err(|e| self.wrong_key(e))
    }

    /// Removes the secrets of `connection`; false if there were none. Needs no key, so entries
    /// sealed with a lost key can still be cleared.
    pub fn remove(&self, connection: &str) -> Result<bool> {
        let _lock = self.lock()?;
        let mut file = self.read()?;
        let had = file.entries.remove(connection).is_some();
        if had {
            self.write(&file)?;
        }
        Ok(had)
    }

    /// Connections that have stored secrets.
    pub fn names(&self) -> Result<Vec<String>> {
        Ok(self.read()?.entries.into_keys().collect())
    }

    /// Turns an undecryptable entry into the message that names the key in use.
    fn wrong_key(&self, e: OpenError) -> Error {
        match e {
            OpenError::Key(connection) => Error::vault(format!(
                "cannot decrypt the secrets of `{connection}`: the master key ({MASTER_KEY_ENV} or {}) is not the one they were stored with",
                self.key_file.display()
            )),
            OpenError::Corrupt(m) => Error::vault(m),
        }
    }

    /// The exclusive lock every writer holds from reading the vault to renaming the new one;
    /// released when the returned file is closed (also when the process dies).
    fn lock(&self) -> Result<File> {
        let path = side_file(&self.path, ".lock");
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let f = opts.open(&path).map_err(|e| Error::io(&path, e))?;
        f.lock().map_err(|e| Error::io(&path, e))?;
        Ok(f)
    }

    fn read(&self) -> Result<VaultFile> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::vault_from(format!("{} is not a vault file", self.path.display()), e)
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(VaultFile {
                version: 1,
                cipher: "xchacha20poly1305".into(),
                entries: BTreeMap::new(),
            }),
            Err(e) => Err(Error::io(&self.path, e)),
        }
    }

    fn write(&self, file: &VaultFile) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(file)
            .map_err(|e| Error::vault_from("writing the vault", e))?;
        publish(&self.path, &bytes, Publish::Replace).map(|_| ())
    }

    /// The cipher a write may seal with: the configured key, refused when it cannot open every
    /// entry already in the vault (an entry sealed with another key would become unreadable
    /// next to the new one). A key file is created only for a vault with no entries.
    fn cipher_for_write(&self, file: &VaultFile, connection: &str) -> Result<XChaCha20Poly1305> {
        let env_set = env_key().is_some();
        if !env_set && !self.key_file.exists() && !file.entries.is_empty() {
            return Err(Error::vault(format!(
                "refusing to store `{connection}`: {} holds {} entr{} sealed with a master key, but neither {MASTER_KEY_ENV} is set nor the key file {} exists, and a new key would leave those entries unreadable. Restore {} (or set {MASTER_KEY_ENV}) to the key the vault was created with; or, if that key is lost, remove the old entries (`mlc connection remove NAME`) or move {} aside, then store the secrets again",
                self.path.display(),
                file.entries.len(),
                if file.entries.len() == 1 { "y" } else { "ies" },
                self.key_file.display(),
                self.key_file.display(),
                self.path.display(),
            )));
        }
        let cipher = self.cipher(true)?;
        let unreadable: Vec<&str> = file
            .entries
            .iter()
            .filter(|(name, sealed)| open(&cipher, name, sealed).is_err())
            .map(|(name, _)| name.as_str())
            .collect();
        if !unreadable.is_empty() {
            let source = if env_set {
                MASTER_KEY_ENV.to_string()
            } else {
                format!("key file {}", self.key_file.display())
            };
            return Err(Error::vault(format!(
                "refusing to store `{connection}`: the master key in use ({source}) cannot decrypt {} of the entries in {} ({}); they were sealed with another key or are damaged. Use the key the vault was created with ({MASTER_KEY_ENV} or {}); or, if that key is lost, remove those entries (`mlc connection remove NAME`) or move {} aside, then store the secrets again",
                unreadable.len(),
                self.path.display(),
                unreadable.join(", "),
                self.key_file.display(),
                self.path.display(),
            )));
        }
        Ok(cipher)
    }

    /// The cipher from `MLC_MASTER_KEY`, else from the key file (created when `create`).
    fn cipher(&self, create: bool) -> Result<XChaCha20Poly1305> {
        let key = match env_key() {
            Some(v) => decode_key(&v).map_err(|why| {
                Error::vault(format!(
                    "{MASTER_KEY_ENV} {why}: set it to 32 random bytes in base64, e.g. `openssl rand -base64 32`"
                ))
            })?,
            None => self.file_key(create)?,
        };
        XChaCha20Poly1305::new_from_slice(&key).map_err(|_| Error::vault("bad key length"))
    }

    fn file_key(&self, create: bool) -> Result<Vec<u8>> {
        match std::fs::read_to_string(&self.key_file) {
            Ok(text) => decode_key(text.trim())
                .map_err(|why| Error::vault(format!("key file {} {why}", self.key_file.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let mut key = [0u8; 32];
                rand::fill(&mut key);
                // No-clobber: when another process published a key first, use that one.
                match publish(&self.key_file, B64.encode(key).as_bytes(), Publish::New)? {
                    Published::Written => Ok(key.to_vec()),
                    Published::Exists => self.file_key(false),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::vault(format!(
                "no master key: neither {MASTER_KEY_ENV} nor {} exists",
                self.key_file.display()
            ))),
            Err(e) => Err(Error::io(&self.key_file, e)),
        }
    }
}

/// `MLC_MASTER_KEY` when set to something.
fn env_key() -> Option<String> {
    std::env::var(MASTER_KEY_ENV)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Why an entry could not be opened.
enum OpenError {
    /// The key does not open it (the connection's name).
    Key(String),
    /// It is not a well-formed entry (the message).
    Corrupt(String),
}

fn seal(cipher: &XChaCha20Poly1305, connection: &str, secrets: &Secrets) -> Result<Sealed> {
    let plain: BTreeMap<&str, &str> = secrets
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose_secret()))
        .collect();
    let plain = serde_json::to_vec(&plain).map_err(|e| Error::vault_from("sealing secrets", e))?;
    let mut nonce = [0u8; 24];
    rand::fill(&mut nonce);
    let sealed = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &plain,
                aad: connection.as_bytes(),
            },
        )
        .map_err(|_| Error::vault("encryption failed"))?;
    Ok(Sealed {
        nonce: B64.encode(nonce),
        ciphertext: B64.encode(sealed),
    })
}

fn open(
    cipher: &XChaCha20Poly1305,
    connection: &str,
    sealed: &Sealed,
) -> std::result::Result<Secrets, OpenError> {
    let bad_nonce = || OpenError::Corrupt(format!("entry `{connection}` has a corrupt nonce"));
    let nonce = B64.decode(&sealed.nonce).map_err(|_| bad_nonce())?;
    let ct = B64
        .decode(&sealed.ciphertext)
        .map_err(|_| OpenError::Corrupt(format!("entry `{connection}` is corrupt")))?;
    let nonce = XNonce::try_from(nonce.as_slice()).map_err(|_| bad_nonce())?;
    let plain = cipher
        .decrypt(
            &nonce,
            Payload {
                msg: &ct,
                aad: connection.as_bytes(),
            },
        )
        .map_err(|_| OpenError::Key(connection.to_string()))?;
    let map: BTreeMap<String, String> = serde_json::from_slice(&plain)
        .map_err(|e| OpenError::Corrupt(format!("entry `{connection}`: {e}")))?;
    Ok(map
        .into_iter()
        .map(|(k, v)| (k, SecretString::from(v)))
        .collect())
}

fn decode_key(b64: &str) -> std::result::Result<Vec<u8>, String> {
    let key = B64
        .decode(b64)
        .map_err(|_| "is not valid base64".to_string())?;
    if key.len() != 32 {
        return Err(format!("decodes to {} bytes, not 32", key.len()));
    }
    Ok(key)
}

/// `path` with `suffix` appended to its file name (`vault.json` -> `vault.json.lock`).
fn side_file(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Whether [`publish`] may replace an existing file.
#[derive(Clone, Copy, PartialEq)]
enum Publish {
    Replace,
    /// Only create: an existing file wins.
    New,
}

#[derive(Debug, PartialEq)]
enum Published {
    Written,
    /// `Publish::New` found the file already there; nothing was written.
    Exists,
}

/// Writes a file readable only by its owner, atomically and durably: a unique temp file in the
/// same directory (tempfile creates it 0600 on Unix), synced, renamed over `path` (or linked
/// without replacing, for `Publish::New`), then the directory synced so the rename survives a
/// crash. A failed write leaves `path` as it was and removes the temp file.
fn publish(path: &Path, bytes: &[u8], mode: Publish) -> Result<Published> {
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d,
        None => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let prefix = path
        .file_name()
        .map(|n| format!(".{}.", n.to_string_lossy()))
        .unwrap_or_else(|| ".mlc.".into());
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(tmp.path(), e))?;
    let done = match mode {
        Publish::Replace => tmp.persist(path).map(|_| Published::Written),
        Publish::New => match tmp.persist_noclobber(path) {
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
                return Ok(Published::Exists);
            }
            other => other.map(|_| Published::Written),
        },
    };
    let done = done.map_err(|e| Error::io(path, e.error))?;
    sync_dir(dir)?;
    Ok(done)
}

/// Makes a rename in `dir` durable (Unix; elsewhere the rename is as durable as the OS makes it).
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault(dir: &Path) -> Vault {
        Vault::new(&VaultConfig {
            path: dir.join("vault.json"),
            key_file: dir.join("master.key"),
        })
    }

    #[test]
    fn round_trip_without_plaintext_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(dir.path());
        let mut s = Secrets::new();
        s.insert(
            "client_secret".into(),
            SecretString::from("very-secret-value-123"),
        );
        v.put("crm", &s).unwrap();
        let got = v.get("crm").unwrap().unwrap();
        assert_eq!(
            got["client_secret"].expose_secret(),
            "very-secret-value-123"
        );
        let on_disk = std::fs::read_to_string(dir.path().join("vault.json")).unwrap();
        assert!(!on_disk.contains("very-secret-value-123"));
        assert_eq!(v.names().unwrap(), vec!["crm"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("master.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(v.remove("crm").unwrap());
        assert!(v.get("crm").unwrap().is_none());
    }

    fn secrets(pairs: &[(&str, &str)]) -> Secrets {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), SecretString::from(v.to_string())))
            .collect()
    }

    #[test]
    fn parallel_updates_of_fields_and_entries_are_all_kept() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(dir.path());
        std::thread::scope(|s| {
            for t in 0..6 {
                let v = &v;
                s.spawn(move || {
                    for r in 0..15 {
                        v.update("one", |s| {
                            s.insert(format!("f{t}_{r}"), SecretString::from(format!("{t}{r}")));
                            Ok(())
                        })
                        .unwrap();
                        v.put(&format!("c{t}_{r}"), &secrets(&[("k", "x")]))
                            .unwrap();
                    }
                });
            }
        });
        let one = v.get("one").unwrap().unwrap();
        assert_eq!(one.len(), 6 * 15);
        assert_eq!(one["f5_14"].expose_secret(), "514");
        assert_eq!(v.names().unwrap().len(), 1 + 6 * 15);
        for name in v.names().unwrap() {
            assert!(v.get(&name).unwrap().is_some(), "{name} decrypts");
        }
    }

    #[test]
    fn a_failed_change_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(dir.path());
        v.put("crm", &secrets(&[("a", "1")])).unwrap();
        let before = std::fs::read(dir.path().join("vault.json")).unwrap();
        let err = v
            .update("crm", |s| {
                s.clear();
                Err::<(), _>(Error::vault("no"))
            })
            .unwrap_err();
        assert!(err.to_string().contains("no"));
        assert_eq!(
            std::fs::read(dir.path().join("vault.json")).unwrap(),
            before
        );
    }

    #[test]
    fn put_refuses_a_new_key_next_to_entries_of_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(dir.path());
        v.put("crm", &secrets(&[("client_secret", "x")])).unwrap();
        std::fs::remove_file(dir.path().join("master.key")).unwrap();
        let before = std::fs::read(dir.path().join("vault.json")).unwrap();
        let err = v
            .put("erp", &secrets(&[("client_secret", "y")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("master.key") && err.contains("vault.json"),
            "{err}"
        );
        assert!(err.contains("mlc connection remove"), "{err}");
        assert!(
            !dir.path().join("master.key").exists(),
            "no key was created beside the old entries"
        );
        assert_eq!(
            std::fs::read(dir.path().join("vault.json")).unwrap(),
            before
        );
        // Clearing the old entry needs no key; then a fresh key is fine.
        assert!(v.remove("crm").unwrap());
        v.put("erp", &secrets(&[("client_secret", "y")])).unwrap();
        assert_eq!(
            v.get("erp").unwrap().unwrap()["client_secret"].expose_secret(),
            "y"
        );
    }

    #[test]
    fn put_refuses_a_key_that_cannot_open_the_entries() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(dir.path());
        v.put("crm", &secrets(&[("client_secret", "x")])).unwrap();
        let mut other = [0u8; 32];
        rand::fill(&mut other);
        std::fs::write(dir.path().join("master.key"), B64.encode(other)).unwrap();
        let before = std::fs::read(dir.path().join("vault.json")).unwrap();
        for name in ["erp", "crm"] {
            let err = v
                .put(name, &secrets(&[("client_secret", "y")]))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("cannot decrypt")
                    && err.contains("(crm)")
                    && err.contains("master.key"),
                "{err}"
            );
        }
        assert_eq!(
            std::fs::read(dir.path().join("vault.json")).unwrap(),
            before
        );
    }

    #[test]
    fn the_first_published_key_wins() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("keys/master.key");
        let results: Vec<Published> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let key = &key;
                    s.spawn(move || {
                        publish(key, format!("key-{i}").as_bytes(), Publish::New).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(
            results.iter().filter(|r| **r == Published::Written).count(),
            1
        );
        let text = std::fs::read_to_string(&key).unwrap();
        assert!(text.starts_with("key-"), "{text}");
        assert_eq!(
            std::fs::read_dir(dir.path().join("keys")).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn wrong_key_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(dir.path());
        let mut s = Secrets::new();
        s.insert("client_secret".into(), SecretString::from("x"));
        v.put("crm", &s).unwrap();
        let mut other = [0u8; 32];
        rand::fill(&mut other);
        std::fs::write(dir.path().join("master.key"), B64.encode(other)).unwrap();
        let err = v.get("crm").unwrap_err().to_string();
        assert!(err.contains("master key"), "{err}");
    }
}

//! The encrypted credential store (DESIGN.md §11): secrets of each connection, sealed with
//! XChaCha20-Poly1305 (random 24-byte nonce per entry, the connection name as associated data so
//! entries cannot be swapped). The 32-byte key comes from `MLC_MASTER_KEY` (base64) or a key
//! file created on first use with mode 0600. Secrets leave this module only as `SecretString`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::VaultConfig;
use crate::error::{Error, Result};

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
        let cipher = self.cipher(true)?;
        let mut file = self.read()?;
        let plain: BTreeMap<&str, &str> = secrets
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose_secret()))
            .collect();
        let plain = serde_json::to_vec(&plain).map_err(|e| Error::Vault(e.to_string()))?;
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
            .map_err(|_| Error::Vault("encryption failed".into()))?;
        file.entries.insert(
            connection.to_string(),
            Sealed {
                nonce: B64.encode(nonce),
                ciphertext: B64.encode(sealed),
            },
        );
        self.write(&file)
    }

    /// The secrets of `connection`, or `None` if none are stored.
    pub fn get(&self, connection: &str) -> Result<Option<Secrets>> {
        let file = self.read()?;
        let Some(sealed) = file.entries.get(connection) else {
            return Ok(None);
        };
        let cipher = self.cipher(false)?;
        let nonce = B64
            .decode(&sealed.nonce)
            .map_err(|_| Error::Vault(format!("entry `{connection}` has a corrupt nonce")))?;
        let ct = B64
            .decode(&sealed.ciphertext)
            .map_err(|_| Error::Vault(format!("entry `{connection}` is corrupt")))?;
        let nonce = XNonce::try_from(nonce.as_slice())
            .map_err(|_| Error::Vault(format!("entry `{connection}` has a corrupt nonce")))?;
        let plain = cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &ct,
                    aad: connection.as_bytes(),
                },
            )
            .map_err(|_| {
                Error::Vault(format!(
                    "cannot decrypt the secrets of `{connection}`: the master key ({MASTER_KEY_ENV} or {}) is not the one they were stored with",
                    self.key_file.display()
                ))
            })?;
        let map: BTreeMap<String, String> =
            serde_json::from_slice(&plain).map_err(|e| Error::Vault(e.to_string()))?;
        Ok(Some(
            map.into_iter()
                .map(|(k, v)| (k, SecretString::from(v)))
                .collect(),
        ))
    }

    /// Removes the secrets of `connection`; false if there were none.
    pub fn remove(&self, connection: &str) -> Result<bool> {
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

    fn read(&self) -> Result<VaultFile> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::Vault(format!("{} is not a vault file: {e}", self.path.display()))
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
        let bytes = serde_json::to_vec_pretty(file).map_err(|e| Error::Vault(e.to_string()))?;
        write_private(&self.path, &bytes)
    }

    /// The cipher from `MLC_MASTER_KEY`, else from the key file (created when `create`).
    fn cipher(&self, create: bool) -> Result<XChaCha20Poly1305> {
        let key = match std::env::var(MASTER_KEY_ENV) {
            Ok(v) if !v.trim().is_empty() => decode_key(v.trim()).map_err(|why| {
                Error::Vault(format!(
                    "{MASTER_KEY_ENV} {why}: set it to 32 random bytes in base64, e.g. `openssl rand -base64 32`"
                ))
            })?,
            _ => self.file_key(create)?,
        };
        XChaCha20Poly1305::new_from_slice(&key).map_err(|_| Error::Vault("bad key length".into()))
    }

    fn file_key(&self, create: bool) -> Result<Vec<u8>> {
        match std::fs::read_to_string(&self.key_file) {
            Ok(text) => decode_key(text.trim())
                .map_err(|why| Error::Vault(format!("key file {} {why}", self.key_file.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let mut key = [0u8; 32];
                rand::fill(&mut key);
                write_private(&self.key_file, B64.encode(key).as_bytes())?;
                Ok(key.to_vec())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Vault(format!(
                "no master key: neither {MASTER_KEY_ENV} nor {} exists",
                self.key_file.display()
            ))),
            Err(e) => Err(Error::io(&self.key_file, e)),
        }
    }
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

/// Writes a file readable only by its owner, atomically (temp file + rename).
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
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

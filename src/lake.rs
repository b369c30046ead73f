//! The lake: Parquet parts of every run on object storage (DESIGN.md §7).
//!
//! Layout, per stream `system.entity` and run:
//! `raw/<system>/<entity>/run=<run_id>/part-00000.parquet` … then `_manifest.json`, written last:
//! a run directory without a manifest is incomplete (resumed or ignored, never loaded). A run
//! written under a lease names its parts and manifest for the lease token
//! (`part-00000-w2.parquet`, `_manifest-w2.json`), and the state store records which manifest
//! is the run's.
//! Records that could not be typed go to `quarantine/<system>/<entity>/run=<run_id>/part-00000.jsonl`
//! (one file per part rather than one per run, because object stores cannot append and a
//! resumed run must not rewrite what an earlier attempt wrote).

use std::path::Path as FsPath;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::batches::Quarantined;
use crate::error::{Error, Result};
use crate::spec::StreamId;

/// A lake rooted at a URL.
#[derive(Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    url: String,
    /// Where a `file://` lake lives on disk (the BigQuery emulator reads from there too).
    local_root: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lake").field("url", &self.url).finish()
    }
}

/// `-w<token>` for a part written under a lease, nothing otherwise.
fn writer_suffix(writer: Option<i64>) -> String {
    writer.map(|t| format!("-w{t}")).unwrap_or_default()
}

impl Lake {
    /// Opens the lake at `url`: `file://<path>` (relative paths resolve against `base_dir`, the
    /// folder of mlc.toml), `memory://`, `gs://bucket/prefix` or `s3://bucket/prefix`. Cloud
    /// credentials come from the usual environment variables (`GOOGLE_APPLICATION_CREDENTIALS`,
    /// `GOOGLE_SERVICE_ACCOUNT`, `AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT`, …).
    pub fn open(url: &str, base_dir: &FsPath) -> Result<Self> {
        let at = format!("lake.url `{url}`");
        if let Some(rest) = url.strip_prefix("file://") {
            let path = if rest.starts_with('/') {
                std::path::PathBuf::from(rest)
            } else {
                base_dir.join(rest)
            };
            std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
            let store =
                LocalFileSystem::new_with_prefix(&path).map_err(|e| Error::config_from(&at, e))?;
            return Ok(Self {
                store: Arc::new(store),
                url: url.to_string(),
                local_root: Some(path),
            });
        }
        if url.starts_with("memory://") {
            return Ok(Self {
                store: Arc::new(InMemory::new()),
                url: url.to_string(),
                local_root: None,
            });
        }
        let parsed = url::Url::parse(url).map_err(|e| Error::config_from(&at, e))?;
        let prefix = parsed.path().trim_matches('/').to_string();
        let store: Arc<dyn ObjectStore> = match parsed.scheme() {
            "gs" => Arc::new(
                GoogleCloudStorageBuilder::from_env()
                    .with_url(url)
                    .build()
                    .map_err(|e| Error::config_from(&at, e))?,
            ),
            "s3" => Arc::new(
                AmazonS3Builder::from_env()
                    .with_url(url)
                    .build()
                    .map_err(|e| Error::config_from(&at, e))?,
            ),
            other => {
                return Err(Error::config(format!(
                    "lake.url `{url}`: unsupported scheme `{other}`; use file://, memory://, gs:// or s3://"
                )));
            }
        };
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            store
        } else {
            Arc::new(PrefixStore::new(store, prefix.as_str()))
        };
        Ok(Self {
            store,
            url: url.to_string(),
            local_root: None,
        })
    }

    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The on-disk folder of a `file://` lake.
    pub fn local_root(&self) -> Option<&FsPath> {
        self.local_root.as_deref()
    }

    pub fn run_dir(id: &StreamId, run_id: &str) -> String {
        format!("{}/run={run_id}", id.lake_prefix())
    }

    /// Where part `part` of a run goes. `writer`: the lease token the run is written under
    /// (`lease.rs`); a part written under a lease is named for it (`part-00003-w2.parquet`),
    /// so a worker that lost its lease and still finishes a part never overwrites the part
    /// the new owner wrote and checkpointed.
    pub fn part_path(id: &StreamId, run_id: &str, part: u32, writer: Option<i64>) -> Path {
        Path::from(format!(
            "{}/part-{part:05}{}.parquet",
            Self::run_dir(id, run_id),
            writer_suffix(writer)
        ))
    }

    /// Where a run's manifest goes (`writer` as for [`Lake::part_path`]): a worker that lost
    /// its lease and still writes its manifest never replaces the new owner's. Which manifest
    /// is the run's is recorded in the state store when the run is marked extracted.
    pub fn manifest_path(id: &StreamId, run_id: &str, writer: Option<i64>) -> Path {
        Path::from(format!(
            "{}/_manifest{}.json",
            Self::run_dir(id, run_id),
            writer_suffix(writer)
        ))
    }

    /// A run's manifest as the state store recorded it when the run was marked extracted
    /// (`recorded`; runs extracted before it was recorded: the unleased name).
    pub fn recorded_manifest(id: &StreamId, run_id: &str, recorded: Option<&str>) -> Path {
        recorded.map_or_else(|| Self::manifest_path(id, run_id, None), Path::from)
    }

    /// Where the quarantined records of part `part` go (`writer` as for [`Lake::part_path`]).
    pub fn quarantine_path(id: &StreamId, run_id: &str, part: u32, writer: Option<i64>) -> Path {
        Path::from(format!(
            "quarantine/{}/{}/run={run_id}/part-{part:05}{}.jsonl",
            id.system,
            id.entity,
            writer_suffix(writer)
        ))
    }

    /// Writes an object in one piece (overwriting: parts are rewritten verbatim on resume).
    pub async fn put(&self, path: &Path, bytes: Bytes) -> Result<()> {
        self.store
            .put(path, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| Error::lake(path, e))
    }

    pub async fn get(&self, path: &Path) -> Result<Bytes> {
        let got = self
            .store
            .get(path)
            .await
            .map_err(|e| Error::lake(path, e))?;
        got.bytes().await.map_err(|e| Error::lake(path, e))
    }

    /// Writes the quarantined records of one part as JSON lines.
    pub async fn put_quarantine(
        &self,
        id: &StreamId,
        run_id: &str,
        part: (u32, Option<i64>),
        records: &[Quarantined],
    ) -> Result<Path> {
        let path = Self::quarantine_path(id, run_id, part.0, part.1);
        let mut out = Vec::new();
        for q in records {
            let line = serde_json::json!({
                "stream": id.to_string(),
                "run_id": run_id,
                "key": q.key,
                "key_values": q.key_values,
                "reason": q.reason,
                "raw": q.raw,
            });
            serde_json::to_writer(&mut out, &line).map_err(|e| Error::lake(&path, e))?;
            out.push(b'\n');
        }
        self.put(&path, Bytes::from(out)).await?;
        Ok(path)
    }

    /// The keys of the records quarantined in `files` (each a list of key values in key-column
    /// order), and how many quarantined records had no readable key.
    ///
    /// Fails when a file cannot be read; a line that is not JSON counts as a record without a
    /// key (it protects the whole table, which is the safe side).
    pub async fn quarantined_keys(&self, files: &[String]) -> Result<(Vec<Vec<String>>, u64)> {
        #[derive(serde::Deserialize)]
        struct Line {
            #[serde(default)]
            key_values: Option<Vec<String>>,
        }
        let mut keys = Vec::new();
        let mut unkeyed = 0;
        for f in files {
            let bytes = self.get(&Path::from(f.as_str())).await?;
            for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                match serde_json::from_slice::<Line>(line)
                    .ok()
                    .and_then(|l| l.key_values)
                {
                    Some(k) => keys.push(k),
                    None => unkeyed += 1,
                }
            }
        }
        keys.sort();
        keys.dedup();
        Ok((keys, unkeyed))
    }

    /// Writes the manifest of a run written under lease token `writer`: the run is complete
    /// from this moment on. Returns where it went.
    pub async fn write_manifest(&self, m: &Manifest, writer: Option<i64>) -> Result<Path> {
        let id: StreamId = m.stream.parse()?;
        let path = Self::manifest_path(&id, &m.run_id, writer);
        let bytes = serde_json::to_vec_pretty(m).map_err(|e| Error::lake(&path, e))?;
        self.put(&path, Bytes::from(bytes)).await?;
        Ok(path)
    }

    /// The manifest at `path`, or `None` when there is none (the run never completed its
    /// extraction).
    pub async fn read_manifest_at(&self, path: &Path) -> Result<Option<Manifest>> {
        let path = path.clone();
        match self.store.get(&path).await {
            Ok(got) => {
                let bytes = got.bytes().await.map_err(|e| Error::lake(&path, e))?;
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| Error::lake(&path, format!("unreadable manifest: {e}")))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::lake(&path, e)),
        }
    }
}

/// What a run read, which decides how the loaders and the sink treat its rows. Travels in
/// manifests and the state store by its lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// Every row (a first run, `--full`, an expired delta): with `reconcile`, keys absent from
    /// it are deleted.
    Snapshot,
    /// What changed since the cursor.
    #[default]
    Incremental,
    /// A window of the cursor re-read without moving it; never deletes.
    Backfill,
    /// Every key (and computed column) only: finds deletes, refreshes computed values.
    Keyset,
    /// Nothing read: the tenant does not have the entity (a run-history entry, no manifest).
    Absent,
}

crate::names::stored_by_name!(RunKind, "run kind", {
    Snapshot => "snapshot",
    Incremental => "incremental",
    Backfill => "backfill",
    Keyset => "keyset",
    Absent => "absent",
});

/// What a complete run wrote: the contract between extraction and every loader and sink.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Manifest {
    pub run_id: String,
    pub stream: String,
    pub connection: String,
    pub kind: RunKind,
    /// A full snapshot: keys absent from it are deleted in the warehouse.
    pub reconcile: bool,
    pub schema_hash: String,
    pub started_at: String,
    pub finished_at: String,
    pub rows: u64,
    pub deleted: u64,
    pub quarantined: u64,
    /// Cursor / delta position the run started from, and the one it leads to.
    pub cursor_start: Option<String>,
    pub cursor_end: Option<String>,
    pub files: Vec<PartInfo>,
    pub quarantine_files: Vec<String>,
    /// Keys of the records this run quarantined (values in key-column order): a reconciling
    /// merge treats them as present, so a row is never deleted because it could not be read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quarantined_keys: Vec<Vec<String>>,
    /// Quarantined records whose key could not be read: a reconciling merge then deletes
    /// nothing (any row could be one of them).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub quarantined_unkeyed: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Most quarantined keys a reconciling merge excludes one by one; beyond this the run deletes
/// nothing (a quarantine that large means something is wrong with the read, not the rows).
pub const MAX_PROTECTED_KEYS: usize = 10_000;

impl Manifest {
    /// Whether the run may delete the live keys it does not carry: a full snapshot (or key-set
    /// pass) whose quarantined records all have a readable key.
    pub fn reconciles_deletes(&self) -> bool {
        self.reconcile
            && self.quarantined_unkeyed == 0
            && self.quarantined_keys.len() <= MAX_PROTECTED_KEYS
    }
}

/// One Parquet part.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PartInfo {
    pub path: String,
    pub rows: u64,
    pub deleted: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// Hex SHA-256 of a part, recorded in the manifest.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Encodes one Parquet part in memory (zstd, small dictionaries, statistics on, the Arrow
/// schema embedded, one row group per part). CPU-bound: call from a blocking thread.
pub struct PartWriter {
    writer: ArrowWriter<Vec<u8>>,
    rows: u64,
    deleted: u64,
}

impl PartWriter {
    pub fn new(schema: SchemaRef) -> Result<Self> {
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(1).map_err(|e| Error::lake("parquet", e))?,
            ))
            .set_max_row_group_row_count(Some(16 * 1024 * 1024))
            // Dictionaries only for columns with few distinct values (codes, states,
            // countries): a column that fills 64 KiB of dictionary falls back to plain pages
            // early instead of interning up to 1 MiB of names and ids per column, which cost
            // CPU and memory and gained nothing under zstd (bench/sync.sh, README).
            .set_dictionary_page_size_limit(64 * 1024)
            .set_created_by(concat!("ml-connector ", env!("CARGO_PKG_VERSION")).to_string())
            .build();
        let writer = ArrowWriter::try_new(Vec::with_capacity(8 << 20), schema, Some(props))
            .map_err(|e| Error::lake("parquet", e))?;
        Ok(Self {
            writer,
            rows: 0,
            deleted: 0,
        })
    }

    pub fn write(&mut self, batch: &RecordBatch, deleted: u64) -> Result<()> {
        self.writer
            .write(batch)
            .map_err(|e| Error::lake("parquet", e))?;
        self.rows += batch.num_rows() as u64;
        self.deleted += deleted;
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn deleted(&self) -> u64 {
        self.deleted
    }

    /// Encoded bytes buffered so far (the part is cut when this passes the target).
    pub fn buffered_bytes(&self) -> usize {
        self.writer.in_progress_size() + self.writer.bytes_written()
    }

    pub fn finish(self) -> Result<Bytes> {
        let buf = self
            .writer
            .into_inner()
            .map_err(|e| Error::lake("parquet", e))?;
        Ok(Bytes::from(buf))
    }
}

/// Reads a Parquet part back (tests, conformance checks).
pub fn read_parquet(bytes: Bytes) -> Result<Vec<RecordBatch>> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| Error::lake("parquet", e))?
        .build()
        .map_err(|e| Error::lake("parquet", e))?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::lake("parquet", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    #[test]
    fn run_kinds_travel_by_name_and_pad_in_tables() {
        assert_eq!(RunKind::ALL.len(), 5);
        for &k in RunKind::ALL {
            assert_eq!(k.as_str().parse::<RunKind>().unwrap(), k);
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
        }
        assert!("full".parse::<RunKind>().is_err());
        assert_eq!(format!("[{:<8}]", RunKind::Keyset), "[keyset  ]");
    }

    #[tokio::test]
    async fn parts_and_manifest_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open("file://lake", dir.path()).unwrap();
        assert!(dir.path().join("lake").is_dir());
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(vec!["x", "y"])) as ArrayRef],
        )
        .unwrap();
        let mut w = PartWriter::new(schema).unwrap();
        w.write(&batch, 0).unwrap();
        let bytes = w.finish().unwrap();
        let id: StreamId = "dataverse.account".parse().unwrap();
        let path = Lake::part_path(&id, "r1", 0, None);
        assert_eq!(
            path.as_ref(),
            "raw/dataverse/account/run=r1/part-00000.parquet"
        );
        lake.put(&path, bytes.clone()).await.unwrap();
        assert!(
            dir.path()
                .join("lake/raw/dataverse/account/run=r1/part-00000.parquet")
                .is_file()
        );
        let back = read_parquet(lake.get(&path).await.unwrap()).unwrap();
        assert_eq!(back[0].num_rows(), 2);

        assert!(
            lake.read_manifest_at(&Lake::manifest_path(&id, "r1", None))
                .await
                .unwrap()
                .is_none()
        );
        let m = Manifest {
            run_id: "r1".into(),
            stream: id.to_string(),
            connection: "crm".into(),
            kind: RunKind::Snapshot,
            reconcile: true,
            schema_hash: "h".into(),
            started_at: "s".into(),
            finished_at: "f".into(),
            rows: 2,
            deleted: 0,
            quarantined: 0,
            cursor_start: None,
            cursor_end: Some("tok".into()),
            files: vec![PartInfo {
                path: path.to_string(),
                rows: 2,
                deleted: 0,
                bytes: bytes.len() as u64,
                sha256: sha256_hex(&bytes),
            }],
            quarantine_files: vec![],
            ..Default::default()
        };
        lake.write_manifest(&m, None).await.unwrap();
        assert_eq!(
            lake.read_manifest_at(&Lake::manifest_path(&id, "r1", None))
                .await
                .unwrap(),
            Some(m.clone())
        );

        // Under leases: the new owner (token 2) writes the run's manifest and the state records
        // it; the worker it took over from (token 1) writes its late one after. The run's is
        // still the new owner's.
        let owner = Manifest {
            rows: 3,
            ..m.clone()
        };
        let recorded = lake.write_manifest(&owner, Some(2)).await.unwrap();
        lake.write_manifest(&m, Some(1)).await.unwrap();
        let read = lake
            .read_manifest_at(&Lake::recorded_manifest(&id, "r1", Some(recorded.as_ref())))
            .await
            .unwrap();
        assert_eq!(read, Some(owner));
    }

    #[test]
    fn rejects_unknown_scheme() {
        let err = Lake::open("ftp://x/y", FsPath::new(".")).unwrap_err();
        assert!(err.to_string().contains("unsupported scheme"));
    }
}

//! The split phase of a merge: stream a run's Parquet parts from the lake (arrow-rs), align
//! every batch to the run's storage schema, assign each row to its key's bucket and write the
//! rows of each bucket to staging files under `<root>/_staging/<dataset>/<table>/`.
//!
//! Memory is bounded by the staging budget plus a couple of decoded batches, whatever the size
//! of the change set: decoded batches are held only until the budget is reached, then every
//! bucket's rows are gathered (strings are read as views, so gathering moves 16-byte views,
//! not string bytes) and written out, uncompressed (see [`StagingWriter`]). Decoding runs on its
//! own thread and writing on two, so reading the lake, partitioning and writing overlap on two
//! cores. Staging needs temporary disk of about the uncompressed size of the change set.
//!
//! Layout: each spill writes files of up to 16 buckets, each bucket's rows as consecutive row
//! groups; a bucket's staged rows are a list of slices of those files, in extraction order.
//! Why not one file per bucket per spill: creating thousands of small files costs more than
//! writing them. Why not one open writer per bucket: each holds a compression context and page
//! buffers per column (hundreds of MiB at 64 buckets × 36 columns). Why not one file per spill:
//! every bucket read would parse a footer describing every bucket.

use std::collections::HashSet;
use std::fs;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::sync_channel;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, new_null_array};
use arrow_schema::{DataType, Schema, SchemaRef};
use arrow_select::interleave::interleave_record_batch;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryFutureExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::{
    AsyncFileReader, MetadataSuffixFetch, ParquetRecordBatchStreamBuilder,
};
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use tokio::runtime::Handle;

use super::hash::{bucket_of, row_hashes};
use crate::error::{Error, Result};

/// Rows per decoded batch.
const BATCH_ROWS: usize = 8192;
/// Threads gathering and writing staging files during a spill.
const SPILL_THREADS: usize = 2;
/// Buckets per spill file: few enough that reading one bucket's row group parses a small
/// footer, many enough to keep the file count low.
const BUCKETS_PER_SPILL_FILE: usize = 16;

/// Where a bucket's pending rows are: (batch, row) pairs, in extraction order.
type Positions = Vec<(usize, usize)>;
/// A bucket and its pending rows.
type BucketRows = (usize, Positions);

/// What the split phase needs.
pub(super) struct StageInput<'a> {
    pub handle: Handle,
    pub store: Arc<dyn ObjectStore>,
    pub parts: &'a [Path],
    /// The run's schema in storage types, strings as views; every batch is aligned to it.
    pub schema: SchemaRef,
    /// Indices of the key columns in `schema`.
    pub key: Vec<usize>,
    /// Index of `_ml_deleted` in `schema`.
    pub deleted: usize,
    pub buckets: u32,
    /// Staging directory (created; must be empty).
    pub dir: PathBuf,
    /// Bytes of decoded rows held in memory before spilling.
    pub budget: usize,
}

/// A bucket's rows inside a staging file: `len` rows from row `offset` (whole row groups).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StagedSlice {
    pub path: PathBuf,
    pub offset: usize,
    pub len: usize,
}

/// The staged change set.
#[derive(Debug, Default)]
pub(super) struct Staged {
    /// Per bucket, where its rows are, in extraction order.
    pub files: Vec<Vec<StagedSlice>>,
    /// Per bucket, the number of staged rows.
    pub rows: Vec<u64>,
    /// Rows read from the parts.
    pub rows_in: u64,
}

/// Reads a Parquet object for arrow-rs's async reader: ranged GETs, footer by one suffix GET.
#[derive(Clone)]
struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
}

impl ObjectReader {
    fn new(store: Arc<dyn ObjectStore>, path: Path) -> Self {
        Self { store, path }
    }
}

fn store_err(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.store
            .get_range(&self.path, range)
            .map_err(store_err)
            .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(store_err)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_via_suffix_and_finish(self)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

impl MetadataSuffixFetch for &mut ObjectReader {
    fn fetch_suffix(&mut self, suffix: usize) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        let options = GetOptions {
            range: Some(GetRange::Suffix(suffix as u64)),
            ..Default::default()
        };
        async move {
            let resp = self
                .store
                .get_opts(&self.path, options)
                .await
                .map_err(store_err)?;
            resp.bytes().await.map_err(store_err)
        }
        .boxed()
    }
}

/// `schema` with every string column as a string view (`Utf8View`).
pub(super) fn view_schema(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Utf8 | DataType::LargeUtf8 => {
                    f.as_ref().clone().with_data_type(DataType::Utf8View)
                }
                _ => f.as_ref().clone(),
            })
            .collect::<Vec<_>>(),
        schema.metadata().clone(),
    ))
}

/// Size of a change set, from the parts' Parquet footers (no data is read).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct PartsSize {
    pub rows: u64,
    /// Uncompressed bytes of the column data: about the size of the rows in memory.
    pub bytes: u64,
}

/// Rows and uncompressed bytes of the parts, from their footers.
///
/// Fails when a part cannot be found or is not Parquet.
pub(super) fn parts_size(
    handle: &Handle,
    store: &Arc<dyn ObjectStore>,
    parts: &[Path],
) -> Result<PartsSize> {
    let mut total = PartsSize::default();
    for part in parts {
        let reader = ObjectReader::new(store.clone(), part.clone());
        let builder = handle
            .block_on(ParquetRecordBatchStreamBuilder::new(reader))
            .map_err(|e| Error::lake(part, e))?;
        let md = builder.metadata();
        total.rows += u64::try_from(md.file_metadata().num_rows()).unwrap_or(0);
        total.bytes += md
            .row_groups()
            .iter()
            .map(|rg| u64::try_from(rg.total_byte_size()).unwrap_or(0))
            .sum::<u64>();
    }
    Ok(total)
}

/// Splits the parts by bucket into staging files.
///
/// Fails when a part cannot be read, a column cannot be cast to the run's schema, or a staging
/// file cannot be written.
pub(super) fn stage(input: StageInput<'_>) -> Result<Staged> {
    let StageInput {
        handle,
        store,
        parts,
        schema,
        key,
        deleted,
        buckets,
        dir,
        budget,
    } = input;
    fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let (tx, rx) = sync_channel::<Result<(usize, RecordBatch)>>(2);
    let mut splitter = Splitter::new(schema, key, deleted, buckets, dir, budget);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for (i, part) in parts.iter().enumerate() {
                let opened = handle.block_on(async {
                    // Strings are read as views: splitting rows by bucket then moves 16-byte
                    // views, never the string bytes.
                    let mut reader = ObjectReader::new(store.clone(), part.clone());
                    let md =
                        ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new())
                            .await?;
                    let views = view_schema(md.schema());
                    let md = ArrowReaderMetadata::try_new(
                        md.metadata().clone(),
                        ArrowReaderOptions::new().with_schema(views),
                    )?;
                    ParquetRecordBatchStreamBuilder::new_with_metadata(reader, md)
                        .with_batch_size(BATCH_ROWS)
                        .build()
                });
                let mut stream = match opened {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(Error::lake(part, e)));
                        return;
                    }
                };
                loop {
                    let next = match handle.block_on(stream.next()) {
                        None => break,
                        Some(Ok(b)) => Ok((i, b)),
                        Some(Err(e)) => Err(Error::lake(part, e)),
                    };
                    let failed = next.is_err();
                    if tx.send(next).is_err() || failed {
                        // The splitter gave up (its error is reported) or this part failed.
                        return;
                    }
                }
            }
        });
        for msg in rx {
            let (i, batch) = msg?;
            splitter.push(batch, &parts[i])?;
        }
        splitter.finish()
    })
}

/// Holds decoded batches and, per bucket, the (batch, row) positions of its rows; when the
/// budget is reached, gathers each bucket's rows into one batch (a single `interleave`) and
/// writes it out.
struct Splitter {
    schema: SchemaRef,
    key: Vec<usize>,
    deleted: usize,
    buckets: u32,
    dir: PathBuf,
    budget: usize,
    batches: Vec<RecordBatch>,
    positions: Vec<Positions>,
    pending_bytes: usize,
    /// Data buffers already counted in `pending_bytes` (string views of consecutive batches
    /// share the decoded pages).
    counted: HashSet<usize>,
    spills: u32,
    out: Staged,
    warned_extra: bool,
}

impl Splitter {
    fn new(
        schema: SchemaRef,
        key: Vec<usize>,
        deleted: usize,
        buckets: u32,
        dir: PathBuf,
        budget: usize,
    ) -> Self {
        let n = buckets as usize;
        Self {
            schema,
            key,
            deleted,
            buckets,
            dir,
            budget,
            batches: Vec::new(),
            positions: vec![Vec::new(); n],
            pending_bytes: 0,
            counted: HashSet::new(),
            spills: 0,
            out: Staged {
                files: vec![Vec::new(); n],
                rows: vec![0; n],
                rows_in: 0,
            },
            warned_extra: false,
        }
    }

    fn push(&mut self, batch: RecordBatch, part: &Path) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let batch = self.align(batch, part)?;
        self.out.rows_in += n as u64;
        let b_idx = self.batches.len();
        if self.buckets == 1 {
            self.positions[0].extend((0..n).map(|r| (b_idx, r)));
            self.out.rows[0] += n as u64;
        } else {
            let hashes = row_hashes(&batch, &self.key)?;
            for (row, h) in hashes.iter().enumerate() {
                let b = bucket_of(*h, self.buckets) as usize;
                self.positions[b].push((b_idx, row));
                self.out.rows[b] += 1;
            }
        }
        self.pending_bytes += self.batch_bytes(&batch);
        self.batches.push(batch);
        if self.pending_bytes >= self.budget {
            self.spill()?;
        }
        Ok(())
    }

    /// Memory held by a batch, counting each shared data buffer once.
    fn batch_bytes(&mut self, batch: &RecordBatch) -> usize {
        let mut total = 0;
        for col in batch.columns() {
            match col.as_string_view_opt() {
                Some(views) => {
                    total += views.views().inner().capacity();
                    total += views.nulls().map_or(0, |n| n.buffer().capacity());
                    for buf in views.data_buffers() {
                        if self.counted.insert(buf.as_ptr() as usize) {
                            total += buf.capacity();
                        }
                    }
                }
                None => total += col.get_array_memory_size(),
            }
        }
        total
    }

    /// Aligns a batch to the run's schema by column name (missing columns become nulls, other
    /// encodings are cast) and makes a null `_ml_deleted` false (a live row).
    fn align(&mut self, batch: RecordBatch, part: &Path) -> Result<RecordBatch> {
        let src = batch.schema();
        let same = src.fields().len() == self.schema.fields().len()
            && src
                .fields()
                .iter()
                .zip(self.schema.fields())
                .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
        let mut cols: Vec<ArrayRef> = if same {
            batch.columns().to_vec()
        } else {
            self.align_columns(&batch, part)?
        };
        let del = cols[self.deleted].as_boolean();
        if let Some(nulls) = del.nulls() {
            let filled = BooleanArray::new(del.values() & nulls.inner(), None);
            cols[self.deleted] = Arc::new(filled);
        }
        RecordBatch::try_new(self.schema.clone(), cols).map_err(|e| Error::warehouse_from(part, e))
    }

    fn align_columns(&mut self, batch: &RecordBatch, part: &Path) -> Result<Vec<ArrayRef>> {
        let src = batch.schema();
        if !self.warned_extra {
            let extra: Vec<&str> = src
                .fields()
                .iter()
                .filter(|f| self.schema.field_with_name(f.name()).is_err())
                .map(|f| f.name().as_str())
                .collect();
            if !extra.is_empty() {
                tracing::warn!(
                    part = %part,
                    columns = ?extra,
                    "part has columns the run's schema does not list; they are not loaded"
                );
                self.warned_extra = true;
            }
        }
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for f in self.schema.fields() {
            let col = match src.index_of(f.name()) {
                Ok(i) => {
                    let a = batch.column(i);
                    if a.data_type() == f.data_type() {
                        a.clone()
                    } else {
                        arrow_cast::cast(a.as_ref(), f.data_type()).map_err(|e| {
                            Error::warehouse_from(
                                format!(
                                    "{part}: column `{}` ({}) cannot be read as {}",
                                    f.name(),
                                    a.data_type(),
                                    f.data_type()
                                ),
                                e,
                            )
                        })?
                    }
                }
                Err(_) => new_null_array(f.data_type(), batch.num_rows()),
            };
            cols.push(col);
        }
        Ok(cols)
    }

    /// Gathers and writes out the pending rows.
    fn spill(&mut self) -> Result<()> {
        let batches = std::mem::take(&mut self.batches);
        let jobs: Vec<BucketRows> = self
            .positions
            .iter_mut()
            .enumerate()
            .filter(|(_, p)| !p.is_empty())
            .map(|(b, p)| (b, std::mem::take(p)))
            .collect();
        self.pending_bytes = 0;
        self.counted.clear();
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        self.spill_files(&refs, jobs)
    }

    /// Writes the pending rows as new files of up to [`BUCKETS_PER_SPILL_FILE`] buckets each,
    /// a bucket's rows as its own row group(s).
    fn spill_files(&mut self, refs: &[&RecordBatch], jobs: Vec<BucketRows>) -> Result<()> {
        let seq = self.spills;
        self.spills += 1;
        let mut groups: Vec<(usize, Vec<BucketRows>)> = Vec::new();
        for job in jobs {
            match groups.last_mut() {
                Some((_, g)) if g.len() < BUCKETS_PER_SPILL_FILE => g.push(job),
                _ => groups.push((groups.len(), vec![job])),
            }
        }
        let schema = &self.schema;
        let dir = &self.dir;
        let done = parallel(groups, |(w, group)| {
            let path = dir.join(format!("spill-{seq:06}-{w:04}.parquet"));
            let mut writer = StagingWriter::create(&path, schema)?;
            let mut slices = Vec::with_capacity(group.len());
            let mut offset = 0usize;
            for (b, positions) in &group {
                let rows = interleave_record_batch(refs, positions)
                    .map_err(|e| Error::warehouse_from(format!("gathering bucket {b}"), e))?;
                writer.write_group(&rows)?;
                let len = rows.num_rows();
                slices.push((
                    *b,
                    StagedSlice {
                        path: path.clone(),
                        offset,
                        len,
                    },
                ));
                offset += len;
            }
            writer.close()?;
            Ok(slices)
        })?;
        // Each spill adds at most one slice per bucket, after the bucket's earlier ones: a
        // bucket's slices are in extraction order.
        for (b, slice) in done.into_iter().flatten() {
            self.out.files[b].push(slice);
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Staged> {
        if !self.batches.is_empty() {
            self.spill()?;
        }
        Ok(self.out)
    }
}

/// Runs `f` over `items` on [`SPILL_THREADS`] threads; the first error wins.
fn parallel<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> Result<R> + Sync) -> Result<Vec<R>> {
    let mut lanes: Vec<Vec<T>> = (0..SPILL_THREADS).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        lanes[i % SPILL_THREADS].push(item);
    }
    let f = &f;
    let results: Vec<Result<Vec<R>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = lanes
            .into_iter()
            .map(|lane| scope.spawn(move || lane.into_iter().map(f).collect::<Result<Vec<R>>>()))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::warehouse("a staging thread panicked")))
            })
            .collect()
    });
    let mut out = Vec::new();
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

/// A staging file: plain encoding, no statistics, uncompressed. It is read once, in whole row
/// groups, by the bucket merges; and its row groups are small (a bucket's share of one spill),
/// so compressing them would create a zstd context per page on both sides — that costs more
/// than the whole merge. The price is temporary disk: about the uncompressed size of the
/// change set.
struct StagingWriter<'a> {
    path: &'a FsPath,
    writer: ArrowWriter<fs::File>,
}

impl<'a> StagingWriter<'a> {
    fn create(path: &'a FsPath, schema: &SchemaRef) -> Result<Self> {
        let file = fs::File::create(path).map_err(|e| Error::io(path, e))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::UNCOMPRESSED)
            .set_statistics_enabled(EnabledStatistics::None)
            .set_dictionary_enabled(false)
            .build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
            .map_err(|e| Self::err(path, e))?;
        Ok(Self { path, writer })
    }

    fn err(path: &FsPath, e: ParquetError) -> Error {
        Error::warehouse_from(format!("writing staging file {}", path.display()), e)
    }

    /// Writes `rows` as their own row group(s).
    fn write_group(&mut self, rows: &RecordBatch) -> Result<()> {
        self.writer
            .write(rows)
            .and_then(|()| self.writer.flush())
            .map_err(|e| Self::err(self.path, e))
    }

    fn close(self) -> Result<()> {
        self.writer
            .close()
            .map(|_| ())
            .map_err(|e| Self::err(self.path, e))
    }
}

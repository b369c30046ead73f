//! JSON pages → Arrow `RecordBatch`es, typed by the catalog through the arrow-json decoder.
//!
//! A page arrives as its raw bytes plus the byte range of every record (found by the source's
//! envelope parser), so no `serde_json::Value` tree is ever built. Each record's top-level keys
//! are scanned once ([`scan`]) for what arrow-json cannot do on its own — tombstones, `json`
//! columns kept as text, fields the catalog does not type (kept in `_ml_extra`) — and for the
//! value of each typed column. The decoder is then fed the typed values alone, as a positional
//! array in column order (`[v0,v1,null,…]`, arrow-json's list mode): it parses values only, not
//! keys, annotations or untyped fields, and looks up no field names. A record the decoder
//! cannot type does not fail the page: the page is re-decoded record by record, and in a record
//! the decoder rejects each typed field is tried alone. A field whose value does not fit its
//! column (type drift: a boolean where the catalog says int64) leaves that column NULL, its raw
//! value goes to `_ml_extra` under the column's name, and the drift is counted per column: the
//! record lands.
//! Only a record that cannot be parsed at all, or whose key is missing or unreadable, goes to
//! the quarantine, with the decoder's reason and, where it can be read, its key (a reconciling
//! merge keeps quarantined keys: a row is never deleted because it could not be read).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::{
    Array, ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_json::StructMode;
use arrow_json::reader::{Decoder, ReaderBuilder};
use arrow_schema::{Field, Schema, SchemaRef};

use crate::error::{Error, Result};
use crate::schema::{arrow_type, table_schema};
use crate::spec::{ColumnType, Stream, Tombstone};

pub mod scan;

/// Largest slice of a bad record kept in the quarantine.
const QUARANTINE_RAW_MAX: usize = 1 << 20;

/// A record that could not be typed, with why.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Quarantined {
    /// The primary key, when it could be read (its columns joined by `|`).
    pub key: Option<String>,
    /// The primary key's values in key-column order, when every one could be read: what a
    /// reconciling merge keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_values: Option<Vec<String>>,
    /// What was wrong, in the decoder's words.
    pub reason: String,
    /// The record as received (cut at 1 MiB).
    pub raw: String,
}

/// One decoded page.
#[derive(Debug)]
pub struct DecodedPage {
    /// Good rows in the table schema (`None` when the page held none).
    pub batch: Option<RecordBatch>,
    /// Rows in `batch` that are deletes.
    pub deleted: usize,
    pub quarantined: Vec<Quarantined>,
    /// Bytes of record JSON in the page (for throughput figures).
    pub json_bytes: usize,
    /// Values that did not fit their column, per column (the records landed with the column
    /// NULL and the value in `_ml_extra`).
    pub drift: BTreeMap<String, u64>,
}

/// What a payload key is to the decoder.
#[derive(Debug, Clone, Copy)]
enum KeyRole {
    /// A typed catalog column: arrow-json reads it (index in the decode schema).
    Typed(usize),
    /// A `json` catalog column: kept as text (index into the json columns).
    Json(usize),
}

/// Where a primary-key value comes from.
#[derive(Debug, Clone)]
enum KeyPart {
    /// A payload key.
    Payload(String),
    /// A value the reader supplies per page (context name).
    Context(String),
}

/// Where a catalog column of the output comes from.
#[derive(Debug, Clone, Copy)]
enum OutCol {
    Decoded(usize),
    Json(usize),
    /// A value the reader supplies per page (index into `context_cols`).
    Context(usize),
}

/// Values a reader supplies for every record of a page (e.g. `company_id` of a Business
/// Central page), by context name (the catalog `source` without its `$`).
pub type PageContext = std::collections::BTreeMap<String, String>;

/// Decodes pages of one stream for one run. Cheap to share across threads.
pub struct RowDecoder {
    stream: String,
    decode_schema: SchemaRef,
    output_schema: SchemaRef,
    plan: Vec<OutCol>,
    json_count: usize,
    known: HashMap<String, KeyRole, foldhash::fast::RandomState>,
    tombstone: Option<Tombstone>,
    /// Decode-schema index and payload key of each primary-key column read from the payload.
    key_cols: Vec<(usize, String)>,
    /// Every primary-key column in key order, for the key of a quarantined record.
    key_parts: Vec<KeyPart>,
    /// Column name of each typed column, by decode-schema index (drift is reported by column).
    columns: Vec<String>,
    /// Fields the catalog does not type go to `_ml_extra` (off for key-set passes, whose
    /// other fields are not wanted).
    keep_extra: bool,
    /// Context names of the columns the reader supplies.
    context_cols: Vec<String>,
    /// Decode-schema indexes of timestamp columns written as zone-less wall time, and the
    /// zone they are in.
    zoned: Vec<usize>,
    zone: Option<arrow_array::timezone::Tz>,
    connection: String,
    run_id: String,
}

impl fmt::Debug for RowDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RowDecoder")
            .field("stream", &self.stream)
            .finish()
    }
}

/// One scanned record: slices of the page body (the typed values go to the caller's slots).
struct Scan<'a> {
    tombstone: bool,
    tombstone_id: Option<&'a [u8]>,
    json: Vec<(usize, &'a [u8])>,
    extra: Vec<(Cow<'a, str>, &'a [u8])>,
}

/// What a top-level key of a record means to the decoder.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    /// A typed column (decode-schema index).
    Typed(usize),
    Json(usize),
    /// The tombstone marker (`@odata.context` ending in `$deletedEntity`, or `is_deleted`).
    Marker,
    /// A boolean tombstone marker that is also a typed catalog column (decode-schema index).
    TypedMarker(usize),
    /// The id of a tombstone.
    TombstoneId,
    /// Protocol annotations the catalog does not read (`@odata.etag`, `x@Namespace.term`).
    Ignore,
    /// A field the catalog does not type: kept in `_ml_extra`.
    Extra,
}

/// A record on its way to the decoder.
struct Kept<'a> {
    /// The record as received (in the page body).
    raw: Range<usize>,
    /// Its decoder input, the positional array of its typed values (in the side buffer).
    row: Range<usize>,
    deleted: bool,
    json: Vec<(usize, &'a [u8])>,
    extra: Option<String>,
}

/// Checks a value the decoder never sees (it is kept as text: a `json` column, `_ml_extra`):
/// the scanner only delimits values, so a malformed one must be caught here.
fn valid_json(value: &[u8]) -> std::result::Result<(), String> {
    serde_json::from_slice::<serde::de::IgnoredAny>(value)
        .map(|_| ())
        .map_err(|e| format!("a value is not valid JSON: {e}"))
}

/// Appends the positional array of a record's typed values (`null` where absent) to `out`.
fn push_row(slots: &[Option<&[u8]>], out: &mut Vec<u8>) {
    out.push(b'[');
    for (i, v) in slots.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(v.unwrap_or(b"null"));
    }
    out.push(b']');
}

impl RowDecoder {
    /// Builds the decoder for `stream`, stamping rows with `connection` and `run_id`.
    pub fn new(stream: &Stream, connection: &str, run_id: &str) -> Result<Self> {
        let cat = &stream.catalog;
        let mut decode_fields = Vec::new();
        let mut plan = Vec::new();
        let mut known = HashMap::default();
        let mut json_count = 0;
        let mut context_cols = Vec::new();
        let mut columns = Vec::new();
        for c in &cat.columns {
            if let Some(name) = c.context_name() {
                plan.push(OutCol::Context(context_cols.len()));
                context_cols.push(name.to_string());
            } else if c.ty == ColumnType::Json {
                known.insert(c.source_name().to_string(), KeyRole::Json(json_count));
                plan.push(OutCol::Json(json_count));
                json_count += 1;
            } else {
                known.insert(
                    c.source_name().to_string(),
                    KeyRole::Typed(decode_fields.len()),
                );
                columns.push(c.name.clone());
                plan.push(OutCol::Decoded(decode_fields.len()));
                decode_fields.push(Field::new(c.source_name(), arrow_type(c.ty), true));
            }
        }
        let mut key_cols = Vec::new();
        let mut key_parts = Vec::new();
        for k in &cat.primary_key {
            let col = cat
                .columns
                .iter()
                .position(|c| &c.name == k)
                .ok_or_else(|| Error::Definition {
                    path: stream.id.to_string(),
                    message: format!("primary key `{k}` is not a column"),
                })?;
            match plan[col] {
                OutCol::Decoded(i) => {
                    let source = cat.columns[col].source_name().to_string();
                    key_parts.push(KeyPart::Payload(source.clone()));
                    key_cols.push((i, source));
                }
                // Supplied by the reader for the whole page: never missing from a record.
                OutCol::Context(c) => key_parts.push(KeyPart::Context(context_cols[c].clone())),
                OutCol::Json(_) => {
                    return Err(Error::Definition {
                        path: stream.id.to_string(),
                        message: format!("primary key `{k}` cannot be a json column"),
                    });
                }
            }
        }
        if stream
            .source
            .tombstone
            .as_ref()
            .is_some_and(|t| t.id_field.is_some())
            && key_cols.len() != 1
        {
            return Err(Error::Definition {
                path: stream.id.to_string(),
                message: "inline tombstones carry one id: the primary key must be one column"
                    .into(),
            });
        }
        Ok(Self {
            stream: stream.id.to_string(),
            decode_schema: Arc::new(Schema::new(decode_fields)),
            output_schema: table_schema(cat),
            plan,
            json_count,
            known,
            tombstone: stream.source.tombstone.clone(),
            key_cols,
            key_parts,
            columns,
            keep_extra: true,
            context_cols,
            zoned: Vec::new(),
            zone: None,
            connection: connection.to_string(),
            run_id: run_id.to_string(),
        })
    }

    /// Reads timestamps written without a zone (Deltek's `2024-05-01T04:00:00.000`) as wall
    /// time in `tz` (an IANA name such as `America/New_York`). Values with an offset or `Z` are
    /// unaffected. Fails when `tz` is not a known zone.
    pub fn with_naive_time_zone(mut self, tz: &str) -> Result<Self> {
        let zone: arrow_array::timezone::Tz = tz
            .parse()
            .map_err(|e| Error::config_from(format!("time zone `{tz}`"), e))?;
        // Decoded as plain wall time (no zone), then placed in `zone` by `to_utc`: arrow's own
        // zoned parsing rejects the repeated hour of a DST fall-back, which every November
        // brings in real data.
        let mut zoned = Vec::new();
        let fields: Vec<Field> = self
            .decode_schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| match f.data_type() {
                arrow_schema::DataType::Timestamp(unit, _) => {
                    zoned.push(i);
                    Field::new(
                        f.name(),
                        arrow_schema::DataType::Timestamp(*unit, None),
                        true,
                    )
                }
                _ => f.as_ref().clone(),
            })
            .collect();
        self.decode_schema = Arc::new(Schema::new(fields));
        self.zoned = zoned;
        self.zone = Some(zone);
        Ok(self)
    }

    /// Drops the fields the catalog does not type instead of keeping them in `_ml_extra` (a
    /// key-set pass reads keys; whatever else a source sends with them is not wanted).
    pub fn without_extra(mut self) -> Self {
        self.keep_extra = false;
        self
    }

    /// The schema of the batches this decoder produces.
    pub fn schema(&self) -> SchemaRef {
        self.output_schema.clone()
    }

    fn decoder(&self, rows: usize) -> Result<Decoder> {
        ReaderBuilder::new(self.decode_schema.clone())
            .with_batch_size(rows.max(1))
            .with_coerce_primitive(true)
            .with_struct_mode(StructMode::ListOnly)
            .build_decoder()
            .map_err(|e| Error::decode_from(self.stream.clone(), "building the row decoder", e))
    }

    /// Decodes the records at `rows` (byte ranges into `body`), received at
    /// `extracted_at_micros`. Fails only if the decoder cannot be built; every record-level
    /// problem ends in [`DecodedPage::quarantined`].
    pub fn decode_page(
        &self,
        body: &[u8],
        rows: &[Range<usize>],
        extracted_at_micros: i64,
    ) -> Result<DecodedPage> {
        self.decode_page_with(body, rows, extracted_at_micros, &PageContext::new())
    }

    /// [`RowDecoder::decode_page`] with the reader's per-page values. Fails when a column the
    /// catalog takes from the context is missing from `context` (a reader bug, not bad data).
    pub fn decode_page_with(
        &self,
        body: &[u8],
        rows: &[Range<usize>],
        extracted_at_micros: i64,
        context: &PageContext,
    ) -> Result<DecodedPage> {
        let mut quarantined = Vec::new();
        let mut kept: Vec<Kept<'_>> = Vec::with_capacity(rows.len());
        let mut synth: Vec<u8> = Vec::new();
        let mut json_bytes = 0usize;
        let mut drift: BTreeMap<String, u64> = BTreeMap::new();
        // Records of one page almost always list their keys in the same order: remember the
        // previous record's keys and roles, and hash only when a key differs.
        let mut key_cache: Vec<(&[u8], Role)> = Vec::new();
        let mut slots: Vec<Option<&[u8]>> = vec![None; self.decode_schema.fields().len()];
        synth.reserve(body.len());
        for r in rows {
            let Some(raw) = body.get(r.clone()) else {
                quarantined.push(self.quarantine(
                    b"",
                    "record range outside the page".into(),
                    context,
                ));
                continue;
            };
            json_bytes += raw.len();
            slots.fill(None);
            match self.scan(raw, &mut key_cache, &mut slots) {
                Err(reason) => quarantined.push(self.quarantine(raw, reason, context)),
                Ok(scan) if scan.tombstone && self.tombstone_is_notice() => {
                    let Some(id) = scan.tombstone_id else {
                        quarantined.push(self.quarantine(
                            raw,
                            "deleted-record notice without an id".into(),
                            context,
                        ));
                        continue;
                    };
                    // A notice carries only the id: the row is the key and nulls.
                    slots.fill(None);
                    slots[self.key_cols[0].0] = Some(id);
                    let start = synth.len();
                    push_row(&slots, &mut synth);
                    kept.push(Kept {
                        raw: r.clone(),
                        row: start..synth.len(),
                        deleted: true,
                        json: Vec::new(),
                        extra: None,
                    });
                }
                Ok(scan) => {
                    let start = synth.len();
                    push_row(&slots, &mut synth);
                    kept.push(Kept {
                        raw: r.clone(),
                        row: start..synth.len(),
                        deleted: scan.tombstone,
                        extra: self.extra_of(&scan.extra),
                        json: scan.json,
                    });
                }
            }
        }

        let decoded = match self.decode_all(kept.iter().map(|k| &synth[k.row.clone()]), kept.len())
        {
            Ok(b) => b,
            Err(_) => {
                // Find the records the decoder rejects; keep what can be kept of each.
                let mut good = Vec::with_capacity(kept.len());
                for k in kept {
                    let Err(reason) = self.decode_all(std::iter::once(&synth[k.row.clone()]), 1)
                    else {
                        good.push(k);
                        continue;
                    };
                    match self.salvage(&k, body, &mut synth, &mut drift) {
                        Ok(fixed) => good.push(fixed),
                        Err(why) => {
                            let why = why.unwrap_or(reason);
                            quarantined.push(self.quarantine(&body[k.raw.clone()], why, context));
                        }
                    }
                }
                kept = good;
                self.decode_all(kept.iter().map(|k| &synth[k.row.clone()]), kept.len())
                    .map_err(|message| Error::decode(self.stream.clone(), message))?
            }
        };
        let input = |k: &Kept<'_>| -> &[u8] { &body[k.raw.clone()] };
        let Some(decoded) = decoded else {
            return Ok(DecodedPage {
                batch: None,
                deleted: 0,
                quarantined,
                json_bytes,
                drift,
            });
        };

        // A record without its key cannot be merged: quarantine it.
        let mut keep_mask: Option<Vec<bool>> = None;
        for (idx, key) in &self.key_cols {
            let col = decoded.column(*idx);
            if col.null_count() == 0 {
                continue;
            }
            let mask = keep_mask.get_or_insert_with(|| vec![true; kept.len()]);
            for (i, k) in kept.iter().enumerate() {
                if col.is_null(i) && mask[i] {
                    mask[i] = false;
                    quarantined.push(self.quarantine(
                        input(k),
                        format!("missing primary key `{key}`"),
                        context,
                    ));
                }
            }
        }
        let n = kept.len();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.output_schema.fields().len());
        let mut json_builders: Vec<StringBuilder> =
            (0..self.json_count).map(|_| StringBuilder::new()).collect();
        if self.json_count > 0 {
            for k in &kept {
                let mut vals: Vec<Option<&str>> = vec![None; self.json_count];
                for (i, raw) in &k.json {
                    // The decoder validated the record's UTF-8 already.
                    let s = std::str::from_utf8(raw).unwrap_or("null");
                    vals[*i] = if s == "null" { None } else { Some(s) };
                }
                for (b, v) in json_builders.iter_mut().zip(vals) {
                    b.append_option(v);
                }
            }
        }
        let mut json_arrays: Vec<Option<ArrayRef>> = json_builders
            .into_iter()
            .map(|mut b| Some(Arc::new(b.finish()) as ArrayRef))
            .collect();
        for out in &self.plan {
            columns.push(match out {
                OutCol::Decoded(i) if self.zoned.contains(i) => {
                    let zone = self.zone.as_ref().ok_or_else(|| {
                        Error::decode(self.stream.clone(), "zoned column without a zone")
                    })?;
                    let wall = decoded
                        .column(*i)
                        .as_primitive::<arrow_array::types::TimestampMicrosecondType>();
                    let utc: TimestampMicrosecondArray =
                        wall.unary_opt(|w| wall_to_utc_micros(w, zone));
                    Arc::new(utc.with_timezone("UTC"))
                }
                OutCol::Decoded(i) => decoded.column(*i).clone(),
                OutCol::Context(i) => {
                    let name = &self.context_cols[*i];
                    let v = context.get(name).ok_or_else(|| {
                        Error::decode(
                            self.stream.clone(),
                            format!("the reader supplied no `{name}` for this page"),
                        )
                    })?;
                    Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                        v.as_str(),
                        n,
                    )))
                }
                OutCol::Json(i) => json_arrays[*i]
                    .take()
                    .ok_or_else(|| Error::decode(self.stream.clone(), "json column used twice"))?,
            });
        }
        columns.push(Arc::new(StringArray::from_iter_values(
            std::iter::repeat_n(self.run_id.as_str(), n),
        )));
        columns.push(Arc::new(
            TimestampMicrosecondArray::from(vec![extracted_at_micros; n]).with_timezone("UTC"),
        ));
        let deleted_flags: Vec<bool> = kept.iter().map(|k| k.deleted).collect();
        columns.push(Arc::new(BooleanArray::from(deleted_flags)));
        columns.push(Arc::new(StringArray::from_iter_values(
            std::iter::repeat_n(self.connection.as_str(), n),
        )));
        columns.push(Arc::new(StringArray::from_iter(
            kept.iter().map(|k| k.extra.as_deref()),
        )));
        let batch = RecordBatch::try_new(self.output_schema.clone(), columns)
            .map_err(|e| Error::decode_from(self.stream.clone(), "assembling the batch", e))?;
        let (batch, deleted) = match keep_mask {
            None => {
                let deleted = kept.iter().filter(|k| k.deleted).count();
                (batch, deleted)
            }
            Some(mask) => {
                let deleted = kept
                    .iter()
                    .zip(&mask)
                    .filter(|(k, m)| **m && k.deleted)
                    .count();
                let filtered =
                    arrow_select::filter::filter_record_batch(&batch, &BooleanArray::from(mask))
                        .map_err(|e| {
                            Error::decode_from(self.stream.clone(), "leaving out deleted rows", e)
                        })?;
                (filtered, deleted)
            }
        };
        Ok(DecodedPage {
            batch: (batch.num_rows() > 0).then_some(batch),
            deleted,
            quarantined,
            json_bytes,
            drift,
        })
    }

    /// `_ml_extra` of a record's untyped fields, unless they are not kept.
    fn extra_of(&self, extra: &[(Cow<'_, str>, &[u8])]) -> Option<String> {
        if self.keep_extra {
            extra_json(extra)
        } else {
            None
        }
    }

    /// A record the decoder rejects, with the fields whose values do not fit their columns
    /// taken out: its row rewritten without them (in `synth`), those values in `_ml_extra`
    /// under their columns' names, each counted in `drift`. `Err(None)` when no single field
    /// is to blame (the record is broken as a whole: the decoder's reason stands), `Err(Some)`
    /// with the reason when the record cannot land (its key does not fit).
    fn salvage<'a>(
        &self,
        k: &Kept<'a>,
        body: &'a [u8],
        synth: &mut Vec<u8>,
        drift: &mut BTreeMap<String, u64>,
    ) -> std::result::Result<Kept<'a>, Option<String>> {
        let raw = &body[k.raw.clone()];
        let mut slots: Vec<Option<&[u8]>> = vec![None; self.columns.len()];
        let scan = self.scan(raw, &mut Vec::new(), &mut slots).map_err(Some)?;
        // Each value alone, in a row of nulls.
        let mut bad: Vec<(usize, &[u8])> = Vec::new();
        let mut single: Vec<Option<&[u8]>> = vec![None; slots.len()];
        let mut one = Vec::new();
        for (i, value) in slots.iter().enumerate() {
            let Some(value) = *value else { continue };
            single[i] = Some(value);
            one.clear();
            push_row(&single, &mut one);
            single[i] = None;
            if self.decode_all(std::iter::once(one.as_slice()), 1).is_err() {
                if self.key_cols.iter().any(|(kc, _)| *kc == i) {
                    return Err(Some(format!(
                        "primary key `{}` has a value of the wrong type: {}",
                        self.columns[i],
                        String::from_utf8_lossy(value)
                    )));
                }
                bad.push((i, value));
            }
        }
        if bad.is_empty() {
            return Err(None);
        }
        for (i, _) in &bad {
            slots[*i] = None;
        }
        let start = synth.len();
        push_row(&slots, synth);
        let fixed = start..synth.len();
        if let Err(reason) = self.decode_all(std::iter::once(&synth[fixed.clone()]), 1) {
            synth.truncate(start);
            return Err(Some(reason));
        }
        // Untyped fields as before, then the values that did not fit.
        let mut extra = if self.keep_extra {
            scan.extra
        } else {
            Vec::new()
        };
        for (i, value) in bad {
            let column = &self.columns[i];
            extra.push((Cow::Owned(column.clone()), value));
            *drift.entry(column.clone()).or_default() += 1;
        }
        Ok(Kept {
            raw: k.raw.clone(),
            row: fixed,
            deleted: k.deleted,
            json: k.json.clone(),
            extra: extra_json(&extra),
        })
    }

    /// Feeds records to a fresh decoder; the error is the decoder's message.
    fn decode_all<'b>(
        &self,
        records: impl Iterator<Item = &'b [u8]>,
        count: usize,
    ) -> std::result::Result<Option<RecordBatch>, String> {
        let mut dec = self.decoder(count).map_err(|e| e.to_string())?;
        for rec in records {
            let used = dec.decode(rec).map_err(|e| e.to_string())?;
            if used != rec.len() {
                return Err("the record continues after its closing brace".into());
            }
            if dec.has_partial_record() {
                return Err("the record is incomplete (truncated JSON)".into());
            }
        }
        dec.flush().map_err(|e| e.to_string())
    }

    /// Whether deletes arrive as notices carrying only an id (Dataverse) rather than as full
    /// records flagged deleted (Pipedrive).
    fn tombstone_is_notice(&self) -> bool {
        self.tombstone
            .as_ref()
            .is_some_and(|t| t.id_field.is_some())
    }

    /// The role of a top-level key (unescaped).
    fn role(&self, key: &str) -> Role {
        if let Some(t) = &self.tombstone {
            if key == t.marker_field {
                return match self.known.get(key) {
                    Some(KeyRole::Typed(i)) if t.marker_suffix.is_none() => Role::TypedMarker(*i),
                    _ => Role::Marker,
                };
            }
            if t.id_field.as_deref() == Some(key) && !self.known.contains_key(key) {
                return Role::TombstoneId;
            }
        }
        match self.known.get(key) {
            Some(KeyRole::Typed(i)) => Role::Typed(*i),
            Some(KeyRole::Json(i)) => Role::Json(*i),
            None if key.contains('@') => Role::Ignore,
            None => Role::Extra,
        }
    }

    /// Scans one record's top-level keys; the value of each typed column goes to its slot
    /// (by decode-schema index; a repeated key's last value wins, as in a JSON object).
    fn scan<'a>(
        &self,
        raw: &'a [u8],
        cache: &mut Vec<(&'a [u8], Role)>,
        slots: &mut [Option<&'a [u8]>],
    ) -> std::result::Result<Scan<'a>, String> {
        let mut out = Scan {
            tombstone: false,
            tombstone_id: None,
            json: Vec::new(),
            extra: Vec::new(),
        };
        let mut pos = 0usize;
        scan::members(raw, |m| {
            let value = &raw[m.value.clone()];
            let (role, key) = if m.escaped {
                let key: String =
                    serde_json::from_slice(&quoted(m.key)).map_err(|e| format!("bad key: {e}"))?;
                (self.role(&key), Some(key))
            } else {
                let role = match cache.get(pos) {
                    Some((k, role)) if *k == m.key => *role,
                    _ => {
                        let key = std::str::from_utf8(m.key)
                            .map_err(|_| "a key is not valid UTF-8".to_string())?;
                        let role = self.role(key);
                        if pos < cache.len() {
                            cache[pos] = (m.key, role);
                        } else {
                            cache.push((m.key, role));
                        }
                        role
                    }
                };
                (role, None)
            };
            pos += 1;
            match role {
                Role::Typed(i) => slots[i] = Some(value),
                Role::Ignore => {}
                Role::Json(i) => {
                    valid_json(value)?;
                    out.json.push((i, value));
                }
                Role::TypedMarker(i) => {
                    slots[i] = Some(value);
                    out.tombstone = value == b"true";
                }
                Role::Marker => match self
                    .tombstone
                    .as_ref()
                    .and_then(|t| t.marker_suffix.as_deref())
                {
                    Some(suffix) => {
                        let v: Cow<'_, str> = serde_json::from_slice(value).map_err(|_| {
                            "the record's deletion marker is not a string".to_string()
                        })?;
                        out.tombstone = v.ends_with(suffix);
                    }
                    None => out.tombstone = value == b"true",
                },
                Role::TombstoneId => out.tombstone_id = Some(value),
                Role::Extra => {
                    let key = match key {
                        Some(k) => Cow::Owned(k),
                        None => Cow::Borrowed(
                            std::str::from_utf8(m.key)
                                .map_err(|_| "a key is not valid UTF-8".to_string())?,
                        ),
                    };
                    valid_json(value)?;
                    out.extra.push((key, value));
                }
            }
            Ok(())
        })?;
        if out.tombstone && self.tombstone_is_notice() {
            out.extra.clear();
        }
        Ok(out)
    }

    fn quarantine(&self, raw: &[u8], reason: String, context: &PageContext) -> Quarantined {
        let cut = &raw[..raw.len().min(QUARANTINE_RAW_MAX)];
        let key_values = self.key_of(raw, context);
        Quarantined {
            key: key_values.as_ref().map(|k| k.join("|")),
            key_values,
            reason,
            raw: String::from_utf8_lossy(cut).into_owned(),
        }
    }

    /// Whether `text` can be a value of the key column read from payload key `key`.
    fn key_fits(&self, key: &str, text: &str) -> bool {
        let Some((idx, _)) = self.key_cols.iter().find(|(_, k)| k == key) else {
            return true;
        };
        match self.decode_schema.field(*idx).data_type() {
            arrow_schema::DataType::Int64 => text.parse::<i64>().is_ok(),
            arrow_schema::DataType::Date32 => {
                chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok()
            }
            arrow_schema::DataType::Timestamp(..) => {
                chrono::DateTime::parse_from_rfc3339(text).is_ok()
                    || chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
            }
            _ => true,
        }
    }

    /// Best-effort read of the primary key of a (possibly bad) record, in key-column order:
    /// `None` unless every key column could be read (a partial key protects nothing). The
    /// record is scanned member by member, so a key before a broken value is still read.
    fn key_of(&self, raw: &[u8], context: &PageContext) -> Option<Vec<String>> {
        let mut found: HashMap<String, String> = HashMap::new();
        let id_field = self.tombstone.as_ref().and_then(|t| t.id_field.as_deref());
        let _ = scan::members(raw, |m| {
            let key = match std::str::from_utf8(m.key) {
                Ok(k) if !m.escaped => k,
                _ => return Ok(()),
            };
            let wanted = id_field == Some(key)
                || self
                    .key_parts
                    .iter()
                    .any(|p| matches!(p, KeyPart::Payload(k) if k == key));
            if wanted {
                let text = match serde_json::from_slice::<serde_json::Value>(&raw[m.value.clone()])
                {
                    Ok(serde_json::Value::String(s)) => Some(s),
                    Ok(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                        Some(v.to_string())
                    }
                    _ => None,
                }
                // A key that does not fit its column names no row: protecting it would let
                // the row it garbles be deleted, so the record counts as keyless.
                .filter(|t| self.key_fits(key, t));
                if let Some(t) = text {
                    found.insert(key.to_string(), t);
                }
            }
            Ok(())
        });
        let from_payload: Option<Vec<String>> = self
            .key_parts
            .iter()
            .map(|p| match p {
                KeyPart::Payload(k) => found.get(k).cloned(),
                KeyPart::Context(c) => context.get(c).cloned(),
            })
            .collect();
        // A deletion notice carries its one key under the tombstone's id field.
        from_payload.or_else(|| {
            let id = found.get(id_field?)?;
            (self.key_parts.len() == 1).then(|| vec![id.clone()])
        })
    }
}

/// A wall-clock time in `zone` (µs as if UTC) as an instant (µs UTC). The repeated hour of a
/// DST fall-back resolves to its first occurrence; a time inside a spring-forward gap (which
/// no clock showed) is read with the offset in force just before the gap.
fn wall_to_utc_micros(wall: i64, zone: &arrow_array::timezone::Tz) -> Option<i64> {
    use chrono::{LocalResult, Offset, TimeZone};
    let naive = chrono::DateTime::from_timestamp_micros(wall)?.naive_utc();
    let t = match zone.from_local_datetime(&naive) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t,
        LocalResult::None => {
            let before = zone.offset_from_utc_datetime(&(naive - chrono::Duration::hours(3)));
            return Some((naive - before.fix()).and_utc().timestamp_micros());
        }
    };
    Some(t.timestamp_micros())
}

/// `{"key": raw, ...}` of the fields the catalog does not type, or `None`.
fn extra_json(extra: &[(Cow<'_, str>, &[u8])]) -> Option<String> {
    if extra.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(64);
    out.push(b'{');
    for (i, (k, v)) in extra.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut out, k.as_ref());
        out.push(b':');
        out.extend_from_slice(v);
    }
    out.push(b'}');
    String::from_utf8(out).ok()
}

/// The key as it appeared, quotes included, for serde to unescape.
fn quoted(key: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(key.len() + 2);
    v.push(b'"');
    v.extend_from_slice(key);
    v.push(b'"');
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Definitions;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Date32Type, Decimal128Type};

    fn decoder(id: &str) -> RowDecoder {
        let defs = Definitions::builtin().unwrap();
        let s = defs.get(&id.parse().unwrap()).unwrap();
        RowDecoder::new(s, "crm", "r1").unwrap()
    }

    /// Lays records out as a page body and returns their ranges.
    fn page(records: &[&str]) -> (Vec<u8>, Vec<Range<usize>>) {
        let mut body = b"{\"value\":[".to_vec();
        let mut ranges = Vec::new();
        for (i, r) in records.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            let start = body.len();
            body.extend_from_slice(r.as_bytes());
            ranges.push(start..body.len());
        }
        body.extend_from_slice(b"]}");
        (body, ranges)
    }

    #[test]
    fn types_rows_and_keeps_untyped_fields() {
        let d = decoder("dataverse.opportunity");
        let (body, ranges) = page(&[
            r#"{"@odata.etag":"W/\"5\"","opportunityid":"a1","name":"Tower","estimatedvalue":1234.5678,"estimatedclosedate":"2025-03-31","_customerid_value":"c1","_customerid_value@Microsoft.Dynamics.CRM.lookuplogicalname":"contact","modifiedon":"2025-01-02T03:04:05Z","statecode":1,"new_custom":{"x":[1,2]}}"#,
        ]);
        let out = d.decode_page(&body, &ranges, 1_000).unwrap();
        assert!(out.quarantined.is_empty(), "{:?}", out.quarantined);
        let b = out.batch.unwrap();
        assert_eq!(b.num_rows(), 1);
        let dec = b
            .column_by_name("estimatedvalue")
            .unwrap()
            .as_primitive::<Decimal128Type>();
        assert_eq!(dec.value(0), 12_345_678); // exact, scale 4
        let date = b
            .column_by_name("estimatedclosedate")
            .unwrap()
            .as_primitive::<Date32Type>();
        assert_eq!(date.value(0), 20178); // 2025-03-31
        let ty = b
            .column_by_name("customerid_type")
            .unwrap()
            .as_string::<i32>();
        assert_eq!(ty.value(0), "contact");
        let extra = b.column_by_name("_ml_extra").unwrap().as_string::<i32>();
        assert_eq!(extra.value(0), r#"{"new_custom":{"x":[1,2]}}"#);
        let del = b.column_by_name("_ml_deleted").unwrap().as_boolean();
        assert!(!del.value(0));
    }

    #[test]
    fn values_reach_their_columns_whatever_the_key_order() {
        // The decoder reads typed values by position: keys in any order, absent keys, a
        // repeated key (its last value, as a JSON object reads) and annotations between them
        // must all land in the right columns.
        let d = decoder("dataverse.opportunity");
        let (body, ranges) = page(&[
            r#"{"statecode":0,"name":"First","opportunityid":"a1","name@OData.Community.Display.V1.FormattedValue":"x","name":"Second"}"#,
            r#"{"opportunityid":"a2","estimatedvalue":"12.5"}"#,
        ]);
        let out = d.decode_page(&body, &ranges, 1_000).unwrap();
        assert!(out.quarantined.is_empty(), "{:?}", out.quarantined);
        let b = out.batch.unwrap();
        let name = b.column_by_name("name").unwrap().as_string::<i32>();
        assert_eq!(name.value(0), "Second");
        assert!(name.is_null(1));
        let state = b
            .column_by_name("statecode")
            .unwrap()
            .as_primitive::<arrow_array::types::Int64Type>();
        assert_eq!(state.value(0), 0);
        assert!(state.is_null(1));
        let dec = b
            .column_by_name("estimatedvalue")
            .unwrap()
            .as_primitive::<Decimal128Type>();
        assert!(dec.is_null(0));
        assert_eq!(dec.value(1), 125_000);
        assert!(b.column_by_name("_ml_extra").unwrap().is_null(0));
    }

    #[test]
    fn tombstones_become_deletes() {
        let d = decoder("dataverse.account");
        let (body, ranges) = page(&[
            r#"{"accountid":"a1","name":"Kept"}"#,
            r#"{"@odata.context":"https://x/api/data/v9.2/$metadata#accounts/$deletedEntity","id":"a2","reason":"deleted"}"#,
        ]);
        let out = d.decode_page(&body, &ranges, 7).unwrap();
        let b = out.batch.unwrap();
        assert_eq!(out.deleted, 1);
        let ids = b.column_by_name("accountid").unwrap().as_string::<i32>();
        assert_eq!(ids.value(1), "a2");
        let del = b.column_by_name("_ml_deleted").unwrap().as_boolean();
        assert!(del.value(1) && !del.value(0));
        assert!(b.column_by_name("_ml_extra").unwrap().is_null(1));
    }

    #[test]
    fn drifted_values_land_in_extra_and_only_unreadable_records_are_quarantined() {
        let d = decoder("dataverse.account");
        let (body, ranges) = page(&[
            r#"{"accountid":"a1","revenue":10.5}"#,
            r#"{"accountid":"a2","revenue":"n/a","name":"Kept","new_tier":1}"#,
            r#"{"accountid":"a3","createdon":"yesterday"}"#,
            r#"{"name":"no key"}"#,
            r#"[1,2]"#,
            r#"{"accountid":"a6","numberofemployees":true}"#,
            r#"{"accountid":{"x":1},"name":"bad key"}"#,
            r#"{"accountid":"a7"}"#,
        ]);
        let out = d.decode_page(&body, &ranges, 7).unwrap();
        let b = out.batch.unwrap();
        let ids = b.column_by_name("accountid").unwrap().as_string::<i32>();
        let kept: Vec<&str> = (0..b.num_rows()).map(|i| ids.value(i)).collect();
        assert_eq!(kept, vec!["a1", "a2", "a3", "a6", "a7"]);
        let row = |id: &str| kept.iter().position(|k| *k == id).unwrap();
        // The drifted value is NULL in its column and kept raw in _ml_extra, by column name.
        assert!(b.column_by_name("revenue").unwrap().is_null(row("a2")));
        let name = b.column_by_name("name").unwrap().as_string::<i32>();
        assert_eq!(name.value(row("a2")), "Kept");
        let extra = b.column_by_name("_ml_extra").unwrap().as_string::<i32>();
        assert_eq!(extra.value(row("a2")), r#"{"new_tier":1,"revenue":"n/a"}"#);
        assert_eq!(extra.value(row("a3")), r#"{"createdon":"yesterday"}"#);
        assert_eq!(out.drift["revenue"], 1);
        assert_eq!(out.drift["createdon"], 1);
        assert_eq!(out.drift["numberofemployees"], 1);
        // Only records without a readable key are quarantined, with the key when known.
        let reasons: Vec<_> = out.quarantined.iter().map(|q| q.reason.as_str()).collect();
        assert_eq!(out.quarantined.len(), 3, "{reasons:?}");
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("missing primary key `accountid`")),
            "{reasons:?}"
        );
        assert!(
            reasons.iter().any(|r| r.contains("not a JSON object")),
            "{reasons:?}"
        );
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("primary key `accountid` has a value of the wrong type")),
            "{reasons:?}"
        );
        assert!(out.quarantined.iter().all(|q| !q.raw.is_empty()));
    }

    #[test]
    fn quarantined_records_carry_their_whole_key_when_readable() {
        let d = decoder("business_central.customer");
        let mut ctx = PageContext::new();
        ctx.insert("company_id".into(), "c1".into());
        let (body, ranges) = page(&[r#"{"id":"k1","number":{"broken":true"#, r#"{"number":"x"}"#]);
        let out = d.decode_page_with(&body, &ranges, 7, &ctx).unwrap();
        assert_eq!(out.quarantined.len(), 2);
        // Truncated after its key: the key is read, with the company of the page.
        assert_eq!(
            out.quarantined[0].key_values,
            Some(vec!["c1".to_string(), "k1".to_string()])
        );
        // No `id`: a partial key protects nothing.
        assert_eq!(out.quarantined[1].key_values, None);
        let (body, ranges) = page(&[r#"{"id":{"not":"a key"},"number":"x"}"#]);
        let out = d.decode_page_with(&body, &ranges, 7, &ctx).unwrap();
        assert_eq!(out.quarantined.len(), 1);
        assert_eq!(out.quarantined[0].key_values, None);
        // Broken after its key.
        let (body, ranges) = page(&[r#"{"id":"k2","number":"x","note":tru}"#]);
        let out = d.decode_page_with(&body, &ranges, 7, &ctx).unwrap();
        assert_eq!(out.quarantined.len(), 1);
        assert_eq!(
            out.quarantined[0].key_values,
            Some(vec!["c1".to_string(), "k2".to_string()])
        );
    }

    #[test]
    fn truncated_record_is_quarantined() {
        let d = decoder("dataverse.account");
        let body = br#"{"accountid":"a1","name":"cut"#.to_vec();
        let out = d
            .decode_page(&body, std::slice::from_ref(&(0..body.len())), 1)
            .unwrap();
        assert!(out.batch.is_none());
        assert_eq!(out.quarantined.len(), 1);
    }

    #[test]
    fn wall_times_resolve_across_dst() {
        let ny: arrow_array::timezone::Tz = "America/New_York".parse().unwrap();
        let wall = |s: &str| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
                .unwrap()
                .and_utc()
                .timestamp_micros()
        };
        let utc = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_micros()
        };
        assert_eq!(
            wall_to_utc_micros(wall("2024-05-01T00:00:00"), &ny),
            Some(utc("2024-05-01T04:00:00Z"))
        );
        // The repeated hour of the fall-back: its first occurrence (still EDT).
        assert_eq!(
            wall_to_utc_micros(wall("2024-11-03T01:57:36"), &ny),
            Some(utc("2024-11-03T05:57:36Z"))
        );
        // Inside the spring-forward gap: the offset before it (EST).
        assert_eq!(
            wall_to_utc_micros(wall("2024-03-10T02:30:00"), &ny),
            Some(utc("2024-03-10T07:30:00Z"))
        );
    }
}

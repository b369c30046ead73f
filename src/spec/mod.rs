//! Serde types for the data folders (`streams/`, `catalog/`) and the loader that reads them.
//!
//! The binary carries a built-in copy of both folders, so `mlc demo` works in an empty
//! directory; a project may overlay its own files (same relative path replaces a built-in file,
//! a new path adds a stream) without rebuilding. Every struct denies unknown fields, so a typo in
//! a definition is an error that names the file, never a silently ignored setting. The doc
//! comments on the fields are the reference for the file formats.

pub mod live;
pub mod naming;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use include_dir::{Dir, include_dir};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::systems::system::System;

static BUILTIN_STREAMS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/streams");
static BUILTIN_CATALOG: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/catalog");

/// `system.entity`, the one name of a stream everywhere (DESIGN.md §3).
///
/// The first part is a namespace, not always a [`System`]: it names lake paths and warehouse
/// datasets, and mlc's own tables (`mlc.sink_audit`) live under it too. Code that means a
/// system builds the id with [`StreamId::of`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamId {
    pub system: String,
    pub entity: String,
}

impl StreamId {
    pub fn new(system: &str, entity: &str) -> Self {
        Self {
            system: system.to_string(),
            entity: entity.to_string(),
        }
    }

    /// The stream of `system` named `entity`.
    pub fn of(system: System, entity: &str) -> Self {
        Self::new(system.as_str(), entity)
    }

    /// Warehouse dataset of the stream's table, e.g. `raw_dataverse`.
    pub fn dataset(&self) -> String {
        format!("raw_{}", self.system)
    }

    /// Lake prefix of the stream's runs, e.g. `raw/dataverse/account`.
    pub fn lake_prefix(&self) -> String {
        format!("raw/{}/{}", self.system, self.entity)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.system, self.entity)
    }
}

impl FromStr for StreamId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.split_once('.') {
            Some((sys, ent)) if is_ident(sys) && is_ident(ent) => Ok(Self::new(sys, ent)),
            _ => Err(Error::config(format!(
                "`{s}` is not a stream id: expected `system.entity` in snake_case, e.g. `dataverse.account`"
            ))),
        }
    }
}

impl TryFrom<String> for StreamId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<StreamId> for String {
    fn from(id: StreamId) -> String {
        id.to_string()
    }
}

fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// `streams/<system>/_source.toml`: how a whole system is spoken to.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    /// Which reader speaks this system's protocol.
    pub reader: ReaderKind,
    /// How pages follow each other (a closed set; no templating).
    pub pagination: Pagination,
    /// Path under the connection's API base URL, e.g. `/api/data/v9.2`.
    #[serde(default)]
    pub api_path: String,
    /// Default rows per page (a stream may override it).
    pub page_size: u32,
    /// The service's hard page-size ceiling; larger requested sizes are clamped.
    #[serde(default)]
    pub max_page_size: Option<u32>,
    /// How a deleted record shows up in a change feed, if the system reports deletes inline.
    #[serde(default)]
    pub tombstone: Option<Tombstone>,
    /// Default lookback window for `cursor` streams, in seconds.
    #[serde(default)]
    pub lookback_seconds: u64,
    /// Entity sets live under `companies({id})/` (Business Central): the reader lists the
    /// connection's companies and reads each in turn, supplying `$company_id` to the catalog.
    #[serde(default)]
    pub company_scoped: bool,
    /// Headers sent with every read (e.g. Business Central `Data-Access-Intent: ReadOnly`,
    /// which serves reads from a replica).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Warehouse dataset of the system's tables (default `raw_<system>`). The Looker reverse
    /// stream lands in `ref_looker`: its tables are reference data computed by Looker, not
    /// raw source records.
    #[serde(default)]
    pub dataset: Option<String>,
}

/// The protocol family a system speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReaderKind {
    /// OData v4 (Dataverse, Business Central).
    Odata,
    /// Deltek Vantagepoint REST: JSON arrays, `page`/`pageSize`, `fieldFilter`, `filterHash`.
    Deltek,
    /// Pipedrive API v2: `{success, data, additional_data.next_cursor}` envelopes.
    Pipedrive,
    /// Looker API 4.0 (reverse stream): a query or a saved Look run as an async query task,
    /// its `json_bi` result landed as a reference table.
    Looker,
}

/// Closed set of paging schemes (DESIGN.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pagination {
    /// Follow `@odata.nextLink` verbatim until it is absent.
    OdataNextLink,
    /// `page`/`pageSize` until a short page.
    PageNumber,
    /// An opaque cursor returned with each page.
    Cursor,
    /// `start`/`limit` offsets.
    Offset,
    /// The whole result in one response (a Looker query task's results: Looker has no result
    /// paging, so the row limit is explicit and checked instead).
    Single,
}

/// A deleted record in a change feed. Either a notice whose `marker_field` is a string ending
/// with `marker_suffix` and which carries the deleted key in `id_field` (Dataverse:
/// `@odata.context` ending in `$deletedEntity`, key in `id`), or a full record whose
/// `marker_field` is `true` (Pipedrive: `is_deleted`), kept with `_ml_deleted = true`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tombstone {
    pub marker_field: String,
    /// Suffix of a string marker; absent = the marker is the boolean `true`.
    #[serde(default)]
    pub marker_suffix: Option<String>,
    /// Payload key of the deleted record's id in a notice (ignored for boolean markers, whose
    /// records carry their key columns).
    #[serde(default)]
    pub id_field: Option<String>,
}

/// How a stream finds what changed since its last run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Incremental {
    /// Server-side change tracking with a delta token (Dataverse).
    Delta,
    /// A modified-time column, re-read with a lookback window.
    Cursor,
    /// Every run is a full snapshot; rows absent from it are deleted.
    Full,
}

/// `streams/<system>/<entity>.toml`: where and how one entity is read.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StreamFile {
    /// What the stream holds, for humans and generated docs.
    #[serde(default)]
    pub description: Option<String>,
    /// OData entity set (`accounts`).
    #[serde(default)]
    pub entity_set: Option<String>,
    /// REST path for non-OData systems.
    #[serde(default)]
    pub path: Option<String>,
    /// Further REST paths whose records belong to the same table, read after `path` with the
    /// same parameters and read-mode filters (Pipedrive: archived deals are listed only at
    /// `/api/v2/deals/archived`, never at `/api/v2/deals`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_paths: Vec<String>,
    /// Incremental mode.
    pub incremental: Incremental,
    /// Catalog column (by its `name`) holding the last-modified time: the cursor of `cursor`
    /// streams and the window column of `mlc backfill --since/--until`.
    #[serde(default)]
    pub cursor_field: Option<String>,
    /// Overrides the source's lookback for `cursor` streams.
    #[serde(default)]
    pub lookback_seconds: Option<u64>,
    /// Overrides the source's page size.
    #[serde(default)]
    pub page_size: Option<u32>,
    /// Extra server-side filter (OData `$filter` expression), applied on full reads only where
    /// the protocol forbids it with change tracking.
    #[serde(default)]
    pub filter: Option<String>,
    /// Fixed query parameters sent with every list request (e.g. Deltek `wbstype = "wbs1"`,
    /// Pipedrive `status = "open,won,lost,deleted"`). Kept in the file so a tenant can adjust
    /// an endpoint without a rebuild.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// How deletes are found when the source has no delete feed: `keyset` reads only the key
    /// columns of the whole table every `reconcile_every_hours` (connection setting) and
    /// removes keys the source no longer has.
    #[serde(default)]
    pub reconcile: Option<Reconcile>,
    /// Fixed structured filters sent with every list request (Deltek `filterHash`, e.g.
    /// `filters = [{ name = "WBS2", value = "", opp = "=" }]` for top-level projects only).
    #[serde(default)]
    pub filters: Vec<FixedFilter>,
    /// Per-tenant variants of the endpoint, chosen by a connection setting (Deltek:
    /// `opportunity_model`, `hub` or `project_stage`). A variant replaces `path`, `params` and
    /// `filters` and may rename payload fields to the catalog's names.
    #[serde(default)]
    pub variants: BTreeMap<String, Variant>,
    /// Looker: the query to run (model, view, fields, filters, sorts). Exactly one of `query`
    /// and `look_id` is set.
    #[serde(default)]
    pub query: Option<LookerQuery>,
    /// Looker: the id of a saved Look whose query is run (Looker 4.0 ids are strings).
    #[serde(default)]
    pub look_id: Option<String>,
    /// Looker: the row limit, required and explicit (`-1` = unlimited). Looker applies a
    /// 5000-row default when a query has none, so an omitted limit would truncate silently; a
    /// result with more rows than a positive limit fails the run instead of being cut.
    #[serde(default)]
    pub limit: Option<i64>,
}

/// A Looker query definition (`POST /api/4.0/queries`); the field names are Looker's own
/// (`view.field`). Queries always run with `query_timezone = "UTC"`, so the zone-less times
/// of a result are UTC instants.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LookerQuery {
    /// LookML model.
    pub model: String,
    /// Explore name (the API calls it `view`).
    pub view: String,
    /// Fields to select, `view.field`.
    pub fields: Vec<String>,
    /// Filter expressions by field, in Looker's filter syntax (`"7 days"`, `"complete"`).
    #[serde(default)]
    pub filters: BTreeMap<String, String>,
    /// Sorts, `view.field` or `view.field desc`.
    #[serde(default)]
    pub sorts: Vec<String>,
}

/// One fixed `filterHash` entry.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FixedFilter {
    /// Payload field, e.g. `WBS2`.
    pub name: String,
    /// Value compared with (an empty string is a real value: "blank").
    #[serde(default)]
    pub value: String,
    /// Operator as the API spells it (`=`, `!=`, `>=`, `<`, `like`).
    #[serde(default = "default_opp")]
    pub opp: String,
    /// `string` (default), `datetime` or `dropdown`.
    #[serde(default, rename = "type")]
    pub ty: Option<String>,
    /// Table alias some hubs want (`PR` = projects).
    #[serde(default)]
    pub tablename: Option<String>,
}

fn default_opp() -> String {
    "=".into()
}

/// A tenant-dependent shape of one stream's endpoint.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// REST path of this variant.
    #[serde(default)]
    pub path: Option<String>,
    /// Replaces the stream's `params`.
    #[serde(default)]
    pub params: Option<BTreeMap<String, String>>,
    /// Replaces the stream's `filters`.
    #[serde(default)]
    pub filters: Option<Vec<FixedFilter>>,
    /// Payload field of this variant → the field name the catalog uses (`WBS1 = "OpportunityID"`):
    /// the reader requests the variant's names and renames them in each record.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
}

/// Delete detection for sources without a delete feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reconcile {
    /// Periodic key-set comparison.
    Keyset,
}

/// `catalog/<system>/<entity>.toml`: the shape of one table. The Arrow schema, the warehouse
/// schema, the OData `$select` and dbt sources are all derived from it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogFile {
    #[serde(default)]
    pub description: Option<String>,
    /// Column names forming the key the warehouse merges on.
    pub primary_key: Vec<String>,
    /// Date or timestamp column to partition warehouse tables by (default: `_ml_extracted_at`).
    #[serde(default)]
    pub partition_by: Option<String>,
    /// Columns to cluster warehouse tables by (default: the primary key).
    #[serde(default)]
    pub cluster_by: Vec<String>,
    pub columns: Vec<Column>,
    /// Payload fields of the tenant that must not land as columns of their own (custom fields
    /// a run would otherwise add from the tenant's live schema; see `tenant`). They stay in
    /// `_ml_extra`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// One typed column.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    /// Warehouse column name (snake_case).
    pub name: String,
    /// `string`, `int64`, `float64`, `decimal(p,s)`, `bool`, `date`, `timestamp` or `json`.
    #[serde(rename = "type")]
    pub ty: ColumnType,
    /// Whether the source may omit the value. Parquet fields are written nullable regardless
    /// (BigQuery rejects mode mismatches); a null in a non-nullable key column quarantines the
    /// record.
    #[serde(default = "default_true")]
    pub nullable: bool,
    #[serde(default)]
    pub description: Option<String>,
    /// Field name in the API payload when it differs from `name` (e.g. `_ownerid_value`, or an
    /// annotation such as `_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname`).
    #[serde(default)]
    pub source: Option<String>,
    /// The source computes the value (Business Central FlowFields such as a customer's
    /// `balanceDue`), so it changes without the record's modified time moving: every run
    /// re-reads the key and computed columns of the whole table (a projected read) so they are
    /// never older than one run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub computed: bool,
    /// Set at run time, never in a file: the tenant does not have this field (see `tenant`),
    /// so it is not requested and the column stays NULL.
    #[serde(skip)]
    pub absent: bool,
}

fn default_true() -> bool {
    true
}

impl Column {
    /// The key of this column in the API payload.
    pub fn source_name(&self) -> &str {
        self.source.as_deref().unwrap_or(&self.name)
    }

    /// A value the reader supplies for every record of a page rather than a payload field
    /// (`source = "$company_id"`: the Business Central company a page was read from).
    pub fn context_name(&self) -> Option<&str> {
        self.source_name().strip_prefix('$')
    }

    /// An OData instance annotation (`field@Namespace.term`) rather than a selectable field.
    pub fn is_annotation(&self) -> bool {
        self.source_name().contains('@')
    }
}

/// Catalog column types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ColumnType {
    String,
    Int64,
    Float64,
    /// Exact decimal (money); precision ≤ 38.
    Decimal {
        precision: u8,
        scale: i8,
    },
    Bool,
    /// A calendar date without a zone.
    Date,
    /// An instant, stored as microseconds UTC.
    Timestamp,
    /// Arbitrary JSON, kept as its text.
    Json,
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::String => f.write_str("string"),
            ColumnType::Int64 => f.write_str("int64"),
            ColumnType::Float64 => f.write_str("float64"),
            ColumnType::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            ColumnType::Bool => f.write_str("bool"),
            ColumnType::Date => f.write_str("date"),
            ColumnType::Timestamp => f.write_str("timestamp"),
            ColumnType::Json => f.write_str("json"),
        }
    }
}

impl FromStr for ColumnType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        Ok(match t {
            "string" => ColumnType::String,
            "int64" => ColumnType::Int64,
            "float64" => ColumnType::Float64,
            "bool" => ColumnType::Bool,
            "date" => ColumnType::Date,
            "timestamp" => ColumnType::Timestamp,
            "json" => ColumnType::Json,
            _ => {
                let inner = t
                    .strip_prefix("decimal(")
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| {
                        format!(
                            "unknown column type `{t}`: use string, int64, float64, decimal(p,s), bool, date, timestamp or json"
                        )
                    })?;
                let (p, s) = inner.split_once(',').ok_or_else(|| {
                    format!("`{t}`: decimal needs precision and scale, e.g. decimal(19,4)")
                })?;
                let precision: u8 = p
                    .trim()
                    .parse()
                    .map_err(|_| format!("`{t}`: bad precision"))?;
                let scale: i8 = s.trim().parse().map_err(|_| format!("`{t}`: bad scale"))?;
                if !(1..=38).contains(&precision) || scale < 0 || scale as u8 > precision {
                    return Err(format!(
                        "`{t}`: precision must be 1..=38 and 0 <= scale <= precision"
                    ));
                }
                ColumnType::Decimal { precision, scale }
            }
        })
    }
}

impl TryFrom<String> for ColumnType {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<ColumnType> for String {
    fn from(t: ColumnType) -> String {
        t.to_string()
    }
}

/// A stream with everything needed to run it: system defaults, its own file and its catalog.
#[derive(Debug, Clone)]
pub struct Stream {
    pub id: StreamId,
    pub source: SourceFile,
    pub spec: StreamFile,
    pub catalog: CatalogFile,
    /// Set at run time: the tenant's live schema the catalog was reconciled with (readers use
    /// its field definitions, e.g. Pipedrive's option labels, instead of reading them again).
    pub live: Option<std::sync::Arc<live::LiveSchema>>,
}

impl Stream {
    /// Warehouse dataset of the stream's table: the source's `dataset` (`ref_looker`) or
    /// `raw_<system>`.
    pub fn dataset(&self) -> String {
        self.source
            .dataset
            .clone()
            .unwrap_or_else(|| self.id.dataset())
    }

    /// Rows per page after the stream override and the source's ceiling.
    pub fn page_size(&self) -> u32 {
        let wanted = self.spec.page_size.unwrap_or(self.source.page_size);
        match self.source.max_page_size {
            Some(max) => wanted.min(max),
            None => wanted,
        }
    }

    /// Lookback for cursor streams.
    pub fn lookback_seconds(&self) -> u64 {
        self.spec
            .lookback_seconds
            .unwrap_or(self.source.lookback_seconds)
    }

    /// Payload keys to request (OData `$select`, Deltek `fieldFilter`): every catalog column
    /// that is a field the tenant has, not an annotation on one nor a reader-supplied context
    /// value.
    pub fn select_fields(&self) -> Vec<&str> {
        self.catalog
            .columns
            .iter()
            .filter(|c| !c.absent && !c.is_annotation() && c.context_name().is_none())
            .map(|c| c.source_name())
            .collect()
    }

    /// Whether some column is computed by the source (see [`Column::computed`]).
    pub fn has_computed(&self) -> bool {
        self.catalog.columns.iter().any(|c| c.computed && !c.absent)
    }

    /// Payload keys of the primary-key columns that come from the payload (what a key-set
    /// reconciliation requests).
    pub fn key_fields(&self) -> Vec<&str> {
        self.catalog
            .primary_key
            .iter()
            .filter_map(|k| self.catalog.columns.iter().find(|c| &c.name == k))
            .filter(|c| c.context_name().is_none())
            .map(|c| c.source_name())
            .collect()
    }

    /// The catalog column named as the cursor, if any.
    pub fn cursor_column(&self) -> Option<&Column> {
        let name = self.spec.cursor_field.as_deref()?;
        self.catalog.columns.iter().find(|c| c.name == name)
    }
}

/// The catalog of a Looker stream that has no catalog file yet: only the row key
/// (`result_row`, the row's position in the result; see `streams::looker`).
pub fn looker_row_catalog() -> CatalogFile {
    CatalogFile {
        description: None,
        primary_key: vec!["result_row".into()],
        partition_by: None,
        cluster_by: Vec::new(),
        columns: vec![Column {
            name: "result_row".into(),
            ty: ColumnType::Int64,
            nullable: false,
            description: Some(
                "Position of the row in the Looker result (1-based): the key of a reference table that every run replaces."
                    .into(),
            ),
            source: None,
            computed: false,
            absent: false,
        }],
        exclude: Vec::new(),
    }
}

/// All stream definitions known to this run, keyed by stream id.
#[derive(Debug, Clone, Default)]
pub struct Definitions {
    streams: BTreeMap<StreamId, Stream>,
}

/// Where a definition file came from, for error messages.
#[derive(Debug, Clone)]
struct RawFile {
    origin: String,
    text: String,
}

impl Definitions {
    /// The definitions compiled into the binary.
    pub fn builtin() -> Result<Self> {
        Self::load(None)
    }

    /// The built-in definitions overlaid by `<dir>/streams` and `<dir>/catalog` when they exist.
    pub fn load(overlay: Option<&Path>) -> Result<Self> {
        let mut streams = BTreeMap::new();
        collect_builtin(&BUILTIN_STREAMS, "streams", &mut streams);
        let mut catalogs = BTreeMap::new();
        collect_builtin(&BUILTIN_CATALOG, "catalog", &mut catalogs);
        if let Some(dir) = overlay {
            collect_dir(&dir.join("streams"), Path::new(""), &mut streams)?;
            collect_dir(&dir.join("catalog"), Path::new(""), &mut catalogs)?;
        }
        Self::from_files(&streams, &catalogs)
    }

    fn from_files(
        streams: &BTreeMap<PathBuf, RawFile>,
        catalogs: &BTreeMap<PathBuf, RawFile>,
    ) -> Result<Self> {
        let mut sources: BTreeMap<String, SourceFile> = BTreeMap::new();
        for (rel, raw) in streams {
            if rel.file_name().is_some_and(|n| n == "_source.toml") {
                let system = system_of(rel, raw)?;
                sources.insert(system, parse(raw)?);
            }
        }
        let mut out = BTreeMap::new();
        for (rel, raw) in streams {
            let Some(name) = rel.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name == "_source.toml" || !name.ends_with(".toml") {
                continue;
            }
            let system = system_of(rel, raw)?;
            let entity = name.trim_end_matches(".toml");
            let id: StreamId =
                format!("{system}.{entity}")
                    .parse()
                    .map_err(|e: Error| Error::Definition {
                        path: raw.origin.clone(),
                        message: e.to_string(),
                    })?;
            let source = sources
                .get(&system)
                .cloned()
                .ok_or_else(|| Error::Definition {
                    path: raw.origin.clone(),
                    message: format!("streams/{system}/_source.toml is missing"),
                })?;
            let spec: StreamFile = parse(raw)?;
            let cat_rel = PathBuf::from(&system).join(name);
            let (catalog, cat_origin) = match catalogs.get(&cat_rel) {
                Some(cat_raw) => (parse::<CatalogFile>(cat_raw)?, cat_raw.origin.clone()),
                // A new Looker stream runs before its catalog is drafted: every field lands in
                // `_ml_extra` until `mlc discover` writes the typed catalog file.
                None if source.reader == ReaderKind::Looker => {
                    (looker_row_catalog(), "(no catalog file yet)".to_string())
                }
                None => {
                    return Err(Error::Definition {
                        path: raw.origin.clone(),
                        message: format!("no catalog file catalog/{system}/{name} for stream {id}"),
                    });
                }
            };
            let stream = Stream {
                live: None,
                id: id.clone(),
                source,
                spec,
                catalog,
            };
            validate(&stream).map_err(|message| Error::Definition {
                path: format!("{} / {}", raw.origin, cat_origin),
                message,
            })?;
            out.insert(id, stream);
        }
        for (rel, raw) in catalogs {
            let Some(name) = rel.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let system = system_of(rel, raw)?;
            let id = StreamId::new(&system, name.trim_end_matches(".toml"));
            if !out.contains_key(&id) {
                return Err(Error::Definition {
                    path: raw.origin.clone(),
                    message: format!("catalog file without a stream file streams/{system}/{name}"),
                });
            }
        }
        Ok(Self { streams: out })
    }

    /// One stream by id, to change it (the columns a tenant adds).
    pub fn stream_mut(&mut self, id: &StreamId) -> Option<&mut Stream> {
        self.streams.get_mut(id)
    }

    /// Every stream, in id order.
    pub fn streams(&self) -> impl Iterator<Item = &Stream> {
        self.streams.values()
    }

    /// One stream by id; the error lists what exists.
    pub fn get(&self, id: &StreamId) -> Result<&Stream> {
        self.streams.get(id).ok_or_else(|| {
            Error::config(format!(
                "unknown stream `{id}`; known streams: {}",
                self.streams
                    .keys()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }

    /// Streams matching `patterns`: `system.entity`, `system.*` or `system`. An empty list
    /// selects everything; a pattern matching nothing is an error.
    pub fn select(&self, patterns: &[String]) -> Result<Vec<&Stream>> {
        if patterns.is_empty() {
            return Ok(self.streams.values().collect());
        }
        let mut out: Vec<&Stream> = Vec::new();
        for p in patterns {
            let system = p.strip_suffix(".*").unwrap_or(p);
            let matched: Vec<&Stream> = if p.contains('.') && !p.ends_with(".*") {
                vec![self.get(&p.parse()?)?]
            } else {
                self.streams
                    .values()
                    .filter(|s| s.id.system == system)
                    .collect()
            };
            if matched.is_empty() {
                return Err(Error::config(format!(
                    "`{p}` matches no stream; systems with streams: {}",
                    self.systems().join(", ")
                )));
            }
            for s in matched {
                if !out.iter().any(|o| o.id == s.id) {
                    out.push(s);
                }
            }
        }
        Ok(out)
    }

    /// Systems that have at least one stream.
    pub fn systems(&self) -> Vec<String> {
        let mut v: Vec<String> = self.streams.keys().map(|k| k.system.clone()).collect();
        v.dedup();
        v
    }
}

fn collect_builtin(dir: &Dir<'_>, label: &str, out: &mut BTreeMap<PathBuf, RawFile>) {
    for entry in dir.entries() {
        if let Some(sub) = entry.as_dir() {
            collect_builtin(sub, label, out);
        } else if let Some(file) = entry.as_file()
            && file.path().extension().is_some_and(|e| e == "toml")
            && let Some(text) = file.contents_utf8()
        {
            out.insert(
                file.path().to_path_buf(),
                RawFile {
                    origin: format!("(built-in) {label}/{}", file.path().display()),
                    text: text.to_string(),
                },
            );
        }
    }
}

fn collect_dir(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, RawFile>) -> Result<()> {
    let dir = root.join(rel);
    if !dir.is_dir() {
        return Ok(());
    }
    let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&dir, e))?;
        let path = entry.path();
        let rel_path = rel.join(entry.file_name());
        if path.is_dir() {
            collect_dir(root, &rel_path, out)?;
        } else if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            out.insert(
                rel_path,
                RawFile {
                    origin: path.display().to_string(),
                    text,
                },
            );
        }
    }
    Ok(())
}

fn system_of(rel: &Path, raw: &RawFile) -> Result<String> {
    let mut comps = rel.components();
    match (comps.next(), comps.next(), comps.next()) {
        (Some(sys), Some(_), None) => Ok(sys.as_os_str().to_string_lossy().into_owned()),
        _ => Err(Error::Definition {
            path: raw.origin.clone(),
            message: "definition files live at <folder>/<system>/<entity>.toml".into(),
        }),
    }
}

fn parse<T: serde::de::DeserializeOwned>(raw: &RawFile) -> Result<T> {
    toml::from_str(&raw.text).map_err(|e| Error::Definition {
        path: raw.origin.clone(),
        message: e.to_string(),
    })
}

/// Checks that cannot be expressed in serde: keys exist, names are unique and usable in every
/// warehouse, the reader has what it needs.
fn validate(s: &Stream) -> Result<(), String> {
    let cat = &s.catalog;
    if cat.columns.is_empty() {
        return Err("catalog has no columns".into());
    }
    let mut seen = std::collections::HashSet::new();
    for c in &cat.columns {
        if !is_ident(&c.name) {
            return Err(format!(
                "column `{}`: names are snake_case ASCII starting with a letter",
                c.name
            ));
        }
        if c.name.starts_with("_ml_") {
            return Err(format!(
                "column `{}`: the `_ml_` prefix is reserved",
                c.name
            ));
        }
        if !seen.insert(c.name.as_str()) {
            return Err(format!("column `{}` appears twice", c.name));
        }
    }
    if cat.primary_key.is_empty() {
        return Err("primary_key is empty: every table is merged by its key".into());
    }
    for k in &cat.primary_key {
        let col = cat
            .columns
            .iter()
            .find(|c| &c.name == k)
            .ok_or_else(|| format!("primary_key column `{k}` is not in columns"))?;
        if col.nullable {
            return Err(format!(
                "primary_key column `{k}` must have nullable = false"
            ));
        }
        if !matches!(
            col.ty,
            ColumnType::String | ColumnType::Int64 | ColumnType::Date | ColumnType::Timestamp
        ) {
            return Err(format!(
                "primary_key column `{k}` has type {}; keys are string, int64, date or timestamp",
                col.ty
            ));
        }
    }
    if let Some(cf) = &s.spec.cursor_field
        && s.cursor_column().is_none()
    {
        return Err(format!("cursor_field `{cf}` is not a catalog column"));
    }
    if s.spec.incremental == Incremental::Cursor && s.spec.cursor_field.is_none() {
        return Err("incremental = \"cursor\" needs cursor_field".into());
    }
    match s.source.reader {
        ReaderKind::Odata => {
            if s.spec.entity_set.is_none() {
                return Err("odata streams need entity_set".into());
            }
            if s.source.pagination != Pagination::OdataNextLink {
                return Err("odata sources page with pagination = \"odata_next_link\"".into());
            }
        }
        ReaderKind::Deltek => {
            if s.spec.path.is_none() {
                return Err("deltek streams need path (the hub, e.g. \"project\")".into());
            }
            if s.source.pagination != Pagination::PageNumber {
                return Err("deltek sources page with pagination = \"page_number\"".into());
            }
        }
        ReaderKind::Pipedrive => {
            if s.spec.path.is_none() {
                return Err("pipedrive streams need path (e.g. \"/api/v2/deals\")".into());
            }
            if !matches!(s.source.pagination, Pagination::Cursor | Pagination::Offset) {
                return Err(
                    "pipedrive sources page with pagination = \"cursor\" (v2) or \"offset\" (v1)"
                        .into(),
                );
            }
        }
        ReaderKind::Looker => {
            if s.source.pagination != Pagination::Single {
                return Err("looker sources have pagination = \"single\"".into());
            }
            match (&s.spec.query, &s.spec.look_id) {
                (Some(q), None) => {
                    if q.fields.is_empty() {
                        return Err("a Looker query needs fields".into());
                    }
                }
                (None, Some(_)) => {}
                _ => {
                    return Err(
                        "looker streams set exactly one of `query` (model, view, fields, ...) and `look_id`"
                            .into(),
                    );
                }
            }
            match s.spec.limit {
                Some(-1) => {}
                Some(n) if n > 0 => {}
                Some(n) => {
                    return Err(format!(
                        "limit = {n}: use a positive row limit or -1 (unlimited)"
                    ));
                }
                None => {
                    return Err(
                        "looker streams need an explicit limit (-1 = unlimited): without one Looker caps results at 5000 rows"
                            .into(),
                    );
                }
            }
            if s.spec.incremental != Incremental::Full {
                return Err(
                    "looker streams are reference tables replaced by every run: incremental = \"full\""
                        .into(),
                );
            }
        }
    }
    if let Some(ds) = &s.source.dataset
        && !is_ident(ds)
    {
        return Err(format!("dataset `{ds}`: names are snake_case ASCII"));
    }
    if s.source.reader != ReaderKind::Pipedrive && !s.spec.also_paths.is_empty() {
        return Err("also_paths is a Pipedrive stream setting".into());
    }
    if s.source.reader != ReaderKind::Looker
        && (s.spec.query.is_some() || s.spec.look_id.is_some() || s.spec.limit.is_some())
    {
        return Err("query, look_id and limit are Looker stream settings".into());
    }
    if let Some(t) = &s.source.tombstone
        && t.marker_suffix.is_some()
        && t.id_field.is_none()
    {
        return Err("a tombstone with marker_suffix needs id_field".into());
    }
    if s.spec.incremental == Incremental::Delta && s.source.reader != ReaderKind::Odata {
        return Err("incremental = \"delta\" needs an OData change-tracking source".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_types_round_trip() {
        for t in [
            "string",
            "int64",
            "float64",
            "decimal(19,4)",
            "bool",
            "date",
            "timestamp",
            "json",
        ] {
            let ty: ColumnType = t.parse().unwrap();
            assert_eq!(ty.to_string(), t);
        }
        assert!("decimal(40,2)".parse::<ColumnType>().is_err());
        assert!(
            "varchar"
                .parse::<ColumnType>()
                .unwrap_err()
                .contains("unknown column type")
        );
    }

    #[test]
    fn stream_ids() {
        let id: StreamId = "dataverse.account".parse().unwrap();
        assert_eq!(id.dataset(), "raw_dataverse");
        assert_eq!(id.lake_prefix(), "raw/dataverse/account");
        assert!("Dataverse.Account".parse::<StreamId>().is_err());
        assert!("account".parse::<StreamId>().is_err());
    }

    #[test]
    fn builtin_definitions_load_and_select() {
        let defs = Definitions::builtin().unwrap();
        let dv = defs.select(&["dataverse".into()]).unwrap();
        assert_eq!(dv.len(), 9);
        assert!(defs.select(&["nosuch".into()]).is_err());
        let one = defs.select(&["dataverse.account".into()]).unwrap();
        assert_eq!(one[0].catalog.primary_key, vec!["accountid"]);
    }

    #[test]
    fn looker_streams_are_reference_tables_with_explicit_limits() {
        let defs = Definitions::builtin().unwrap();
        let s = defs.get(&"looker.budget_summary".parse().unwrap()).unwrap();
        assert_eq!(s.dataset(), "ref_looker");
        assert_eq!(s.catalog.primary_key, vec!["result_row"]);
        let pd = defs.get(&"pipedrive.deal".parse().unwrap()).unwrap();
        assert_eq!(pd.dataset(), "raw_pipedrive");
        assert_eq!(pd.spec.also_paths, ["/api/v2/deals/archived"]);

        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("streams/looker");
        std::fs::create_dir_all(&d).unwrap();
        let load = |text: &str| {
            std::fs::write(d.join("x.toml"), text).unwrap();
            Definitions::load(Some(dir.path())).map_err(|e| e.to_string())
        };
        // No catalog file yet: the row key alone, everything else in _ml_extra.
        let ok = load("incremental = \"full\"\nlimit = -1\nlook_id = \"7\"\n").unwrap();
        let x = ok.get(&"looker.x".parse().unwrap()).unwrap();
        assert_eq!(x.catalog.columns.len(), 1);
        let e = load("incremental = \"full\"\nlook_id = \"7\"\n").unwrap_err();
        assert!(e.contains("explicit limit"), "{e}");
        let e = load("incremental = \"full\"\nlimit = 0\nlook_id = \"7\"\n").unwrap_err();
        assert!(e.contains("-1"), "{e}");
        let e = load(
            "incremental = \"full\"\nlimit = 10\nlook_id = \"7\"\n[query]\nmodel = \"m\"\nview = \"v\"\nfields = [\"v.a\"]\n",
        )
        .unwrap_err();
        assert!(e.contains("exactly one"), "{e}");
        let e = load("incremental = \"cursor\"\ncursor_field = \"result_row\"\nlimit = 10\nlook_id = \"7\"\n")
            .unwrap_err();
        assert!(e.contains("incremental = \"full\""), "{e}");
        let e =
            load("incremental = \"full\"\nlimit = -1\nlook_id = \"7\"\nalso_paths = [\"/x\"]\n")
                .unwrap_err();
        assert!(e.contains("also_paths"), "{e}");
    }

    #[test]
    fn overlay_replaces_and_adds() {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path().join("streams/dataverse");
        let c = dir.path().join("catalog/dataverse");
        std::fs::create_dir_all(&s).unwrap();
        std::fs::create_dir_all(&c).unwrap();
        std::fs::write(
            s.join("team.toml"),
            "entity_set = \"teams\"\nincremental = \"delta\"\n",
        )
        .unwrap();
        std::fs::write(
            c.join("team.toml"),
            "primary_key = [\"teamid\"]\ncolumns = [{ name = \"teamid\", type = \"string\", nullable = false }]\n",
        )
        .unwrap();
        let defs = Definitions::load(Some(dir.path())).unwrap();
        assert!(defs.get(&"dataverse.team".parse().unwrap()).is_ok());

        std::fs::write(
            c.join("team.toml"),
            "primary_key = [\"teamid\"]\ncolumns = [{ name = \"teamid\", type = \"string\", nulable = false }]\n",
        )
        .unwrap();
        let err = Definitions::load(Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains("nulable"), "{err}");
    }
}

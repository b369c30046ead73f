//! Sink flow files, `loaders/sink/<flow>.toml`: which source stream feeds which target hub and
//! how fields map. Declarative on purpose: a flow is data, the logic is in `plan.rs`/`apply`.
//! These doc comments are the reference for every key.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use include_dir::{Dir, include_dir};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::systems::system::System;

static BUILTIN_FLOWS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/loaders/sink");

/// One flow file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FlowFile {
    /// What the flow does, for `mlc sink status`.
    #[serde(default)]
    pub description: String,
    /// Source system: change sets are read from the lake under `raw/<source_system>/<entity>/`.
    pub source_system: System,
    /// Target system: the flow writes through the one mlc.toml connection of this system
    /// (`--target` picks one when there are several).
    pub target_system: System,
    /// Business Central: the company written to (name or id); default the connection's first
    /// `companies` entry.
    pub company: Option<String>,
    /// Owner → employee resolution.
    #[serde(default)]
    pub owners: Owners,
    /// A job waiting longer than this (a parent never created, lines that never come) is shown
    /// as stale by `mlc sink status`: nothing waits forever unseen.
    #[serde(default = "default_stale_hours")]
    pub stale_after_hours: f64,
    /// Entity mappings, applied in this order: list a parent (account) before what depends on
    /// it (contact), since dependencies are written first.
    pub entities: Vec<EntityMap>,
}

/// Owner (source user id) → target employee code.
fn default_stale_hours() -> f64 {
    24.0
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Owners {
    /// The `match` mapping (e.g. `systemuser` → `employee`) whose ledger links give each owner's
    /// employee: owners resolve by what that mapping matched (by email), after `overrides`.
    pub source: Option<String>,
    /// Employee code used when an owner has no override and no match; such writes are flagged
    /// in the audit (`owner=default`). Without it, the owner fields are left out.
    pub default_employee: Option<String>,
    /// Source owner id → employee code, checked first.
    #[serde(default)]
    pub overrides: BTreeMap<String, String>,
}

/// What a mapping may do in the target.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Link or create, then keep the target up to date with each newer source version.
    #[default]
    Upsert,
    /// Search only (external id, natural key) and record the link; never create or update.
    /// An unmatched record is audited (`unmatched`) and left alone. Used to resolve owners.
    Match,
    /// Create once per source record, ever; never update. A record whose link exists is a
    /// no-op whatever its later versions say (a Won → Open → Won flip seeds one project).
    Seed,
    /// Update only the records another flow linked (`linked_by`): master data flowing back to
    /// where it came from. Never searches, creates or posts; a record that flow did not link
    /// is a no-op, and a version that flow wrote itself is recognised and not echoed back.
    Update,
}

/// The other flow's mapping whose ledger pairs this flow's source records with its targets:
/// `business_central_to_pipedrive` updates the Pipedrive organization that
/// `pipedrive_to_business_central`'s `organization` mapping made this BC customer from.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LinkedBy {
    pub flow: String,
    pub mapping: String,
    /// The source column holding the key that flow's links point at (default `id`; a
    /// Business Central row's change-set id also names its company).
    #[serde(default = "default_key_column")]
    pub column: String,
}

fn default_key_column() -> String {
    "id".into()
}

/// One source entity → one target hub.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EntityMap {
    /// The mapping's name, keying its ledger links, jobs and cursor; defaults to `source`. Two
    /// mappings of one source entity (opportunity → opportunity, opportunity → project) need
    /// distinct names.
    pub name: Option<String>,
    /// Source entity (`<source_system>.<source>` is the stream whose change sets are read).
    pub source: String,
    /// Target hub (`firm`, `contact`, `employee`, `opportunity`, `project`).
    pub target: String,
    /// What the mapping may do in the target.
    #[serde(default)]
    pub mode: Mode,
    /// Source column → required value: only rows matching every entry are written (e.g.
    /// `statecode = 1`, Won); the others are no-ops with the reason.
    #[serde(default)]
    pub when: BTreeMap<String, Value>,
    /// Source field → target field. Null source values are left out of the request. A source
    /// field is a column, a JSON pointer into a JSON column (`emails/0/value`), or
    /// `custom.<name>`: a custom field by its name in snake case (Pipedrive's hashed keys are
    /// resolved by the stream, which keeps them under their names). A target field with a `/`
    /// is nested (`prices/0/price`); a nested value is always sent whole, as APIs replace it
    /// whole.
    pub fields: BTreeMap<String, String>,
    /// Target fields sent as JSON numbers (decimal columns arrive as exact text).
    #[serde(default)]
    pub numbers: Vec<String>,
    /// Values sent with every write, create or update (a price's `prices/0/currency`).
    #[serde(default)]
    pub constants: BTreeMap<String, String>,
    /// `mode = "update"`: the mapping of another flow whose links say which target record
    /// each source record is.
    pub linked_by: Option<LinkedBy>,
    /// Target custom field holding the source id (searched first; written on create). Optional:
    /// not every tenant has one.
    pub external_id_field: Option<String>,
    /// Target fields searched (all equal) when no ledger link and no external id match.
    #[serde(default)]
    pub natural_key: Vec<String>,
    /// Further natural keys, tried in order when the record has no value for every field of
    /// the previous one or it matched nothing (e.g. `[["displayName", "phoneNumber"]]`). Each
    /// match is audited (`match`, with the fields it matched on); several matches fail the job.
    #[serde(default)]
    pub match_rules: Vec<Vec<String>>,
    /// Values sent on create only (e.g. `ClientInd = "Y"`).
    #[serde(default)]
    pub defaults: BTreeMap<String, String>,
    /// Target text fields cut to the tenant's maximum length (from its metadata) instead of
    /// blocking the record: a longer value is otherwise never sent (see `preflight.rs`).
    #[serde(default)]
    pub truncate: Vec<String>,
    /// Target fields receiving the owner's employee code (from the source `ownerid` column,
    /// through `[owners]`), e.g. `["Principal", "ProjMgr"]`.
    #[serde(default)]
    pub owner_fields: Vec<String>,
    /// The parent this record attaches to (a contact's firm, an opportunity's client).
    pub parent: Option<ParentRef>,
    /// A key the client assigns on create (a project number), from a per-flow sequence.
    pub number: Option<NumberScheme>,
    /// The document's lines (a deal's products), sent with it in one request (deep insert).
    pub lines: Option<Lines>,
    /// Post the created document (Business Central `Microsoft.NAV.post`), once. Only with
    /// `mode = "seed"`: a posted document is never modified again.
    #[serde(default)]
    pub post: bool,
}

/// Lines of a document, read from a child stream of the source (deal products) and kept per
/// parent in the state store, so a document always gets every current line.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Lines {
    /// Source entity of the lines (`deal_product`).
    pub source: String,
    /// Line column holding the parent record's source id (`deal_id`).
    pub parent_column: String,
    /// Target field receiving the array of lines (`salesOrderLines`).
    pub field: String,
    /// Line column (or JSON pointer) → line field.
    pub fields: BTreeMap<String, String>,
    /// Values every line gets (`lineType = "Item"`).
    #[serde(default)]
    pub defaults: BTreeMap<String, String>,
    /// The target record every line points at (its item): a line whose product has no item
    /// yet makes the document wait for it.
    pub item: Option<ParentRef>,
    /// Lines matching a case's `when` map that case's source fields to its targets instead
    /// (a discount of `discount_type = "amount"` is an amount, not a percentage).
    #[serde(default)]
    pub cases: Vec<LineCase>,
    /// What a document whose source record has no lines at all becomes (a won deal without
    /// products): see [`WhenNone`].
    #[serde(default)]
    pub when_none: WhenNone,
}

/// What a document without lines becomes. A document waits while its lines may still come
/// (the lines' stream has not been read since the document's run ended); once they have been
/// read after it and there are none, `action` decides: `wait` on (reported stale after the
/// flow's `stale_after_hours`), `skip` it with the reason, or send one `value_line` made from
/// the document itself (its value on a configured item or G/L account).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WhenNone {
    #[serde(default)]
    pub action: NoLines,
    /// Document column (or JSON pointer) → line field, for `value_line` (`value = "unitPrice"`).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Line values as written (numbers stay numbers), for `value_line` (`lineType`, the item or
    /// account number, `quantity = 1`).
    #[serde(default)]
    pub defaults: BTreeMap<String, Value>,
}

/// See [`WhenNone`].
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NoLines {
    #[default]
    Wait,
    Skip,
    ValueLine,
}

/// Different targets for some source fields of the lines matching `when`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LineCase {
    pub when: BTreeMap<String, Value>,
    pub fields: BTreeMap<String, String>,
}

/// Why `record` does not meet `when` (every column equal to its value; numbers compare as
/// numbers, also when the record holds them as text), if it doesn't.
pub fn unmet(
    when: &BTreeMap<String, Value>,
    record: &serde_json::Map<String, Value>,
) -> Option<String> {
    when.iter().find_map(|(col, want)| {
        let have = record.get(col).unwrap_or(&Value::Null);
        let same = match (have, want) {
            (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
            (Value::String(a), Value::Number(b)) => a.parse::<f64>().ok() == b.as_f64(),
            (a, b) => a == b,
        };
        (!same).then(|| format!("{col} is {have}, the mapping wants {want}"))
    })
}

/// A lookup to a parent record that must exist in the target first.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ParentRef {
    /// Source column holding the parent's source id.
    pub column: String,
    /// Source column naming the parent's table (polymorphic lookups such as `customerid`).
    pub type_column: Option<String>,
    /// The parent's mapping (its ledger links give the target key).
    pub source: String,
    /// Target field receiving the parent's target key.
    pub field: String,
    /// Other types the lookup may point at, resolved through that mapping's own parent: an
    /// opportunity whose customer is a contact goes to that contact's account
    /// (`through = ["contact"]`). A record whose parent can't be resolved waits, visibly.
    #[serde(default)]
    pub through: Vec<String>,
}

/// A client-assigned key: `format` with `{yyyy}` (year of allocation), `{yy}` and `{seq:N}`
/// (the flow's next number for this prefix, zero-padded to N digits). A number is allocated
/// once per source record and kept, so a retry reuses it; one already taken in the target
/// moves to the next.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NumberScheme {
    /// Target field receiving the number (e.g. `WBS1`).
    pub field: String,
    pub format: String,
}

impl NumberScheme {
    /// The prefix and padding of `format` at `year`: everything before `{seq…}` rendered, the
    /// text after it, and the width.
    pub fn parts(&self, year: i32) -> (String, String, usize) {
        let render = |s: &str| {
            s.replace("{yyyy}", &format!("{year:04}"))
                .replace("{yy}", &format!("{:02}", year.rem_euclid(100)))
        };
        let Some(at) = self.format.find("{seq") else {
            return (render(&self.format), String::new(), 0);
        };
        let rest = &self.format[at..];
        let close = rest.find('}').unwrap_or(rest.len() - 1);
        let width = rest[..close]
            .strip_prefix("{seq:")
            .and_then(|w| w.parse().ok())
            .unwrap_or(0);
        (
            render(&self.format[..at]),
            render(&rest[close + 1..]),
            width,
        )
    }

    /// Number `seq` of this scheme at `year`.
    pub fn render(&self, year: i32, seq: u64) -> String {
        let (prefix, suffix, width) = self.parts(year);
        format!("{prefix}{seq:0width$}{suffix}")
    }
}

/// The column a source field reads (`emails` of `emails/0/value`; `custom.x` reads `x` once
/// typed, else `_ml_extra`).
fn source_columns(expr: &str) -> Vec<String> {
    match expr.strip_prefix("custom.") {
        Some(name) => vec![name.to_string(), "_ml_extra".to_string()],
        None => vec![expr.split('/').next().unwrap_or(expr).to_string()],
    }
}

/// A source field of a record: a column, a JSON pointer into a JSON column (`emails/0/value`:
/// the first email's value; JSON columns hold JSON text in the lake), or `custom.<name>`: the
/// custom field `<name>` (snake case), a typed column once `mlc discover` made one, else the
/// stream's `_ml_extra` entry of that name.
pub fn source_value<'a>(
    record: &'a Map<String, Value>,
    expr: &str,
) -> Option<std::borrow::Cow<'a, Value>> {
    use std::borrow::Cow;
    if let Some(name) = expr.strip_prefix("custom.") {
        if let Some(v) = record.get(name) {
            return Some(Cow::Borrowed(v));
        }
        return source_value(record, &format!("_ml_extra/{}", name.replace('/', "~1")));
    }
    let Some((col, pointer)) = expr.split_once('/') else {
        return record.get(expr).map(Cow::Borrowed);
    };
    let v = record.get(col)?;
    let parsed: Value = match v {
        Value::String(s) => serde_json::from_str(s).ok()?,
        other => other.clone(),
    };
    parsed
        .pointer(&format!("/{pointer}"))
        .cloned()
        .map(Cow::Owned)
}

impl Lines {
    /// The line columns this mapping reads.
    pub fn columns(&self) -> BTreeSet<String> {
        let mut c: BTreeSet<String> = self.fields.keys().flat_map(|f| source_columns(f)).collect();
        for case in &self.cases {
            c.extend(case.when.keys().cloned());
            c.extend(case.fields.keys().flat_map(|f| source_columns(f)));
        }
        c.insert(self.parent_column.clone());
        if let Some(i) = &self.item {
            c.insert(i.column.clone());
            c.extend(i.type_column.clone());
        }
        c
    }
}

impl EntityMap {
    /// The source columns this mapping reads (its fields, `when`, parent lookup, owner, key of
    /// the other flow's link): a plan keeps only these of each record.
    pub fn columns(&self) -> BTreeSet<String> {
        let mut c: BTreeSet<String> = self.fields.keys().flat_map(|f| source_columns(f)).collect();
        c.extend(self.when.keys().cloned());
        if let Some(p) = &self.parent {
            c.insert(p.column.clone());
            c.extend(p.type_column.clone());
        }
        if !self.owner_fields.is_empty() {
            c.insert("ownerid".into());
        }
        if let Some(lb) = &self.linked_by {
            c.insert(lb.column.clone());
        }
        if let Some(l) = &self.lines {
            c.extend(l.when_none.fields.keys().flat_map(|f| source_columns(f)));
        }
        c
    }

    /// The mapping's name (ledger, jobs, cursor key).
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.source)
    }

    /// The record's natural-key values as one lowercased text (empty when the natural key is
    /// not made of mapped fields): records that would match the same target record.
    pub fn natural_key_of(&self, record: &serde_json::Map<String, Value>) -> String {
        let mut parts = Vec::new();
        for nk in &self.natural_key {
            let Some((col, _)) = self.fields.iter().find(|(_, f)| *f == nk) else {
                return String::new();
            };
            let v = match source_value(record, col).as_deref() {
                Some(Value::String(s)) => s.trim().to_lowercase(),
                Some(Value::Null) | None => String::new(),
                Some(v) => v.to_string(),
            };
            parts.push(v);
        }
        parts.join("\u{1}")
    }

    /// Why `record` does not meet `when`, if it doesn't.
    pub fn unmet(&self, record: &serde_json::Map<String, Value>) -> Option<String> {
        unmet(&self.when, record)
    }
}

impl FlowFile {
    /// Loads flow `name`: `<definitions_dir>/loaders/sink/<name>.toml` when it exists, else the
    /// built-in file. Fails on unknown keys and on an entity whose parent is not mapped before it.
    pub fn load(definitions_dir: &Path, name: &str) -> Result<Self> {
        let file = format!("{name}.toml");
        let local = definitions_dir.join("loaders/sink").join(&file);
        let (origin, text) = if local.is_file() {
            let text = std::fs::read_to_string(&local).map_err(|e| Error::io(&local, e))?;
            (local.display().to_string(), text)
        } else {
            let f = BUILTIN_FLOWS.get_file(&file).ok_or_else(|| {
                Error::config(format!(
                    "no sink flow `{name}`: expected loaders/sink/{file} (built-in flows: {})",
                    Self::builtin_names().join(", ")
                ))
            })?;
            (
                format!("loaders/sink/{file} (built in)"),
                f.contents_utf8().unwrap_or_default().to_string(),
            )
        };
        let flow: FlowFile = toml::from_str(&text).map_err(|e| Error::Definition {
            path: origin.clone(),
            message: e.to_string(),
        })?;
        flow.validate().map_err(|message| Error::Definition {
            path: origin,
            message,
        })?;
        Ok(flow)
    }

    /// The flow as target connection `conn` needs it: its `[connections.<conn>.sink.<flow>]`
    /// settings applied per mapping (external-id field, defaults for required fields,
    /// truncated fields, posting). Unknown mappings and combinations the flow refuses are
    /// errors naming the key.
    pub fn for_tenant(mut self, flow: &str, conn: &crate::config::Connection) -> Result<Self> {
        let Some(over) = conn.sink.get(flow) else {
            return Ok(self);
        };
        let key = |m: &str| format!("connections.{}.sink.{flow}.{m}", conn.name);
        for (mapping, o) in over {
            let names: Vec<String> = self.entities.iter().map(|e| e.name().to_string()).collect();
            let em = self
                .entities
                .iter_mut()
                .find(|e| e.name() == mapping)
                .ok_or_else(|| {
                    Error::config(format!(
                        "{}: flow `{flow}` has no mapping `{mapping}` (its mappings: {})",
                        key(mapping),
                        names.join(", ")
                    ))
                })?;
            if let Some(x) = &o.external_id_field {
                em.external_id_field = (!x.trim().is_empty()).then(|| x.trim().to_string());
            }
            em.defaults.extend(o.defaults.clone());
            for t in &o.truncate {
                if !em.truncate.contains(t) {
                    em.truncate.push(t.clone());
                }
            }
            em.fields.retain(|_, dst| !o.omit.contains(dst));
            em.defaults.retain(|dst, _| !o.omit.contains(dst));
            if let Some(p) = o.post {
                em.post = p;
            }
        }
        self.validate()
            .map_err(|m| Error::config(format!("connections.{}.sink.{flow}: {m}", conn.name)))?;
        Ok(self)
    }

    /// Names of the flows compiled into the binary.
    pub fn builtin_names() -> Vec<String> {
        BUILTIN_FLOWS
            .files()
            .filter_map(|f| f.path().file_stem()?.to_str().map(String::from))
            .collect()
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let mut names = std::collections::BTreeSet::new();
        for (i, e) in self.entities.iter().enumerate() {
            let name = e.name();
            let before = &self.entities[..i];
            let mapped = |n: &str| before.iter().find(|x| x.name() == n);
            if !names.insert(name.to_string()) {
                return Err(format!(
                    "entities[{i}]: two mappings are named `{name}`: give one a distinct `name`"
                ));
            }
            if e.fields.is_empty() {
                return Err(format!("entities[{i}] ({name}) maps no fields"));
            }
            if let Some(p) = &e.parent {
                if mapped(&p.source).is_none() {
                    return Err(format!(
                        "entities[{i}] ({name}): parent `{}` must be mapped before it",
                        p.source
                    ));
                }
                for t in &p.through {
                    if mapped(t).is_none_or(|m| m.parent.is_none()) {
                        return Err(format!(
                            "entities[{i}] ({name}): `through = [\"{t}\"]` needs a mapping `{t}` with a parent, before it"
                        ));
                    }
                }
            }
            if !e.owner_fields.is_empty()
                && let Some(o) = &self.owners.source
                && mapped(o).is_none()
            {
                return Err(format!(
                    "entities[{i}] ({name}): owners come from `{o}`, which must be mapped before it"
                ));
            }
            if let Some(item) = e.lines.as_ref().and_then(|l| l.item.as_ref())
                && mapped(&item.source).is_none()
            {
                return Err(format!(
                    "entities[{i}] ({name}): the lines' item `{}` must be mapped before it",
                    item.source
                ));
            }
            if let Some(l) = &e.lines
                && l.when_none.action == NoLines::ValueLine
                && (l.when_none.fields.is_empty() || l.when_none.defaults.is_empty())
            {
                return Err(format!(
                    "entities[{i}] ({name}): lines.when_none.action = \"value_line\" needs `fields` (the document's value, e.g. {{ value = \"unitPrice\" }}) and `defaults` (the line's item or G/L account, e.g. {{ lineType = \"Item\", lineObjectNumber = \"SERVICES\", quantity = 1 }})"
                ));
            }
            if e.post && e.mode != Mode::Seed {
                return Err(format!(
                    "entities[{i}] ({name}): `post = true` needs mode = \"seed\" (a posted document is never updated)"
                ));
            }
            let update = e.mode == Mode::Update;
            if update != e.linked_by.is_some() {
                return Err(format!(
                    "entities[{i}] ({name}): `mode = \"update\"` and `linked_by = {{ flow = \"…\", mapping = \"…\" }}` go together"
                ));
            }
            if update && (e.parent.is_some() || e.lines.is_some() || e.number.is_some() || e.post) {
                return Err(format!(
                    "entities[{i}] ({name}): an update mapping only updates fields: drop parent, lines, number and post"
                ));
            }
            if let Some(n) = &e.number
                && !n.format.contains("{seq")
            {
                return Err(format!(
                    "entities[{i}] ({name}): number format `{}` needs a `{{seq}}` (e.g. \"{{yyyy}}-{{seq:04}}\")",
                    n.format
                ));
            }
        }
        if let Some(o) = &self.owners.source
            && self
                .entities
                .iter()
                .find(|e| e.name() == o)
                .is_none_or(|e| e.mode != Mode::Match)
        {
            return Err(format!(
                "[owners] source = \"{o}\" must name a mapping with mode = \"match\""
            ));
        }
        Ok(())
    }

    /// The mapping named `name`.
    pub fn mapping(&self, name: &str) -> Option<&EntityMap> {
        self.entities.iter().find(|e| e.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_flow_parses() {
        let f = FlowFile::load(Path::new("/nonexistent"), "dynamics_to_deltek").unwrap();
        assert_eq!(f.entities[0].mode, Mode::Match);
        assert_eq!(
            f.mapping("contact")
                .unwrap()
                .parent
                .as_ref()
                .unwrap()
                .source,
            "account"
        );
        let seed = f.mapping("won_project").unwrap();
        assert_eq!(
            (seed.source.as_str(), seed.mode),
            ("opportunity", Mode::Seed)
        );
    }

    #[test]
    fn every_builtin_flow_parses() {
        for name in FlowFile::builtin_names() {
            FlowFile::load(Path::new("/nonexistent"), &name)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let f = FlowFile::load(Path::new("/nonexistent"), "pipedrive_to_business_central").unwrap();
        assert_eq!(f.mapping("person").unwrap().match_rules.len(), 1);
    }

    #[test]
    fn numbers_follow_their_scheme() {
        let n = NumberScheme {
            field: "WBS1".into(),
            format: "P{yyyy}-{seq:04}/{yy}".into(),
        };
        assert_eq!(n.parts(2026), ("P2026-".to_string(), "/26".to_string(), 4));
        assert_eq!(n.render(2026, 7), "P2026-0007/26");
        assert_eq!(n.render(2026, 12345), "P2026-12345/26");
    }

    #[test]
    fn mistakes_in_a_flow_name_the_mapping() {
        let base = "source_system='dataverse'\ntarget_system='deltek'\n";
        let bad = |body: &str| {
            let f: FlowFile = toml::from_str(&format!("{base}{body}")).unwrap();
            f.validate().unwrap_err()
        };
        let e = bad(
            "[[entities]]\nsource='contact'\ntarget='contact'\nfields={a='A'}\nparent={column='p',source='account',field='ClientID'}\n",
        );
        assert!(
            e.contains("parent `account` must be mapped before it"),
            "{e}"
        );
        let e = bad(
            "[[entities]]\nsource='a'\ntarget='firm'\nfields={a='A'}\n[[entities]]\nsource='a'\ntarget='project'\nfields={a='A'}\n",
        );
        assert!(e.contains("distinct `name`"), "{e}");
        let e = bad(
            "[[entities]]\nsource='customer'\ntarget='organizations'\nmode='update'\nfields={a='A'}\n",
        );
        assert!(e.contains("linked_by"), "{e}");
        let e = bad(
            "[[entities]]\nsource='customer'\ntarget='organizations'\nmode='update'\nlinked_by={flow='f',mapping='m'}\nnumber={field='N',format='{seq}'}\nfields={a='A'}\n",
        );
        assert!(e.contains("only updates fields"), "{e}");
        let e = bad(
            "[owners]\nsource='u'\n[[entities]]\nsource='u'\ntarget='employee'\nfields={a='A'}\n",
        );
        assert!(e.contains("mode = \"match\""), "{e}");
    }

    #[test]
    fn look_alike_records_share_a_natural_key() {
        let f = FlowFile::load(Path::new("/nonexistent"), "dynamics_to_deltek").unwrap();
        let contact = f.mapping("contact").unwrap();
        let rec = |email: &str| {
            serde_json::json!({ "emailaddress1": email })
                .as_object()
                .cloned()
                .unwrap()
        };
        assert_eq!(
            contact.natural_key_of(&rec(" Ann@X.com")),
            contact.natural_key_of(&rec("ann@x.com"))
        );
        assert_ne!(
            contact.natural_key_of(&rec("a@x.com")),
            contact.natural_key_of(&rec("b@x.com"))
        );
        // The opportunity's natural key includes the parent's ClientID, not a mapped field.
        let opp = f.mapping("opportunity").unwrap();
        assert_eq!(opp.natural_key_of(&rec("x")), "");
    }

    #[test]
    fn when_compares_numbers_and_text() {
        let m: EntityMap = toml::from_str(
            "source='opportunity'\ntarget='project'\nwhen={statecode=1}\nfields={name='Name'}\n",
        )
        .unwrap();
        let rec = |v: Value| {
            serde_json::json!({ "statecode": v })
                .as_object()
                .cloned()
                .unwrap()
        };
        assert_eq!(m.unmet(&rec(Value::from(1))), None);
        assert_eq!(m.unmet(&rec(Value::from("1"))), None);
        assert!(
            m.unmet(&rec(Value::from(0)))
                .unwrap()
                .contains("statecode is 0")
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<FlowFile>(
            "source_system='dataverse'\ntarget_system='deltek'\nentities=[]\ntypo=1\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("typo"));
    }

    #[test]
    fn an_unknown_system_is_refused_with_the_list() {
        let err = toml::from_str::<FlowFile>(
            "source_system='salesforce'\ntarget_system='deltek'\nentities=[]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("salesforce") && err.contains("business_central"),
            "{err}"
        );
    }
}

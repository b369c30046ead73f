//! Plan: read the flow's new change sets and decide, per source record, what apply will do and
//! why — from the ledger and the jobs table only (no target calls, so `plan` is free to run).
//! Apply re-checks the target (search before create), so a plan is a forecast, not a promise.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use super::changes::{self, ChangeRow};
use super::flow::{EntityMap, FlowFile, Mode, ParentRef, source_value};
use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::spec::{Definitions, StreamId};
use crate::state::{JobStatus, SinkLine, StateStore};
use crate::systems::system::System;

/// What apply will do with one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// No ledger link: search the target (external id, then natural key), link or create.
    Create,
    /// Linked to `target_key` at an older version: update it.
    Update,
    /// Nothing to write.
    Noop,
    /// A dependency is missing (the contact's firm): the job waits.
    Wait,
    /// A `match` mapping: search the target and link what is found; never write.
    Match,
    /// The change row is malformed (no primary key): apply fails this job, with the reason
    /// audited, and goes on with the others.
    Invalid,
    /// The target's metadata shows it would be refused (pre-flight): apply sends nothing.
    Blocked,
}

/// Source ids given to change rows without a primary key (`?malformed:<run>#<row>`): they
/// keep such rows apart as jobs, and no attempt ever writes them.
pub const MALFORMED: &str = "?malformed:";

/// One planned job.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedJob {
    pub job_id: String,
    pub source_entity: String,
    pub source_id: String,
    pub source_version: Option<i64>,
    pub run_id: String,
    pub target: String,
    pub action: Action,
    pub target_key: Option<String>,
    /// The kind of reason (`not_linked`, `newer_version`, `parent_missing`, `up_to_date`, …):
    /// jobs are summarised by mapping, action and cause.
    pub cause: &'static str,
    pub reason: String,
    /// The source record (kept on the job, so replay needs no change set).
    #[serde(skip)]
    pub row: ChangeRow,
}

/// A flow's plan: jobs in dependency order, and where each stream's cursor moves once applied.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Plan {
    pub flow: String,
    pub jobs: Vec<PlannedJob>,
    /// Document lines read (deal products), recorded by apply with the jobs.
    #[serde(skip)]
    pub lines: Vec<SinkLine>,
    /// (stream, last run read): the cursors apply commits.
    pub cursors: Vec<(String, String)>,
    /// (mapping, source id, run) of records with a job of an earlier apply still open that a
    /// full key listing of that run no longer has: deleted in the source, never to be written.
    #[serde(skip)]
    pub deleted: Vec<(String, String, String)>,
}

impl Plan {
    /// Jobs with `action`.
    pub fn count(&self, action: &Action) -> usize {
        self.jobs.iter().filter(|j| &j.action == action).count()
    }

    /// Planned writes (creates and updates).
    pub fn writes(&self) -> usize {
        self.count(&Action::Create) + self.count(&Action::Update)
    }

    /// The jobs grouped by mapping, action and cause, in plan order (mappings in dependency
    /// order, writes before waits before no-ops), each with the first job's reason and the
    /// source ids of up to `examples` jobs: a plan of twelve thousand jobs reads in a screen.
    pub fn groups(&self, examples: usize) -> Vec<Group> {
        let mut mappings: Vec<&str> = Vec::new();
        let mut groups: BTreeMap<(usize, u8, &'static str), Group> = BTreeMap::new();
        for j in &self.jobs {
            let m = match mappings.iter().position(|m| *m == j.source_entity) {
                Some(i) => i,
                None => {
                    mappings.push(&j.source_entity);
                    mappings.len() - 1
                }
            };
            let g = groups
                .entry((m, j.action.rank(), j.cause))
                .or_insert_with(|| Group {
                    mapping: j.source_entity.clone(),
                    target: j.target.clone(),
                    action: j.action.clone(),
                    cause: j.cause,
                    count: 0,
                    reason: j.reason.clone(),
                    examples: Vec::new(),
                });
            g.count += 1;
            if g.examples.len() < examples {
                g.examples.push(j.source_id.clone());
            }
        }
        groups.into_values().collect()
    }
}

/// Jobs of one mapping with the same action and cause (see [`Plan::groups`]).
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub mapping: String,
    pub target: String,
    pub action: Action,
    pub cause: &'static str,
    pub count: usize,
    /// The first job's reason (the others differ only in ids and versions).
    pub reason: String,
    /// Source ids of the first jobs.
    pub examples: Vec<String>,
}

impl Action {
    /// Where the action's groups come in a summary: writes, then what needs attention, then
    /// what needs nothing.
    fn rank(&self) -> u8 {
        match self {
            Action::Create => 0,
            Action::Update => 1,
            Action::Match => 2,
            Action::Invalid => 3,
            Action::Blocked => 4,
            Action::Wait => 5,
            Action::Noop => 6,
        }
    }

    /// The action as the plan prints it (`create`, `no-op`, …).
    pub fn label(&self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Match => "match",
            Action::Invalid => "malformed",
            Action::Blocked => "blocked",
            Action::Wait => "wait",
            Action::Noop => "no-op",
        }
    }
}

/// The job id: a hash of (flow, source entity, source id, source version). A record read again
/// (a replayed or overlapping change set) gets the same id, so it is done once.
pub fn job_id(flow: &str, entity: &str, id: &str, version: Option<i64>) -> String {
    use sha2::{Digest, Sha256};
    let v = version.map_or_else(|| "-".to_string(), |v| v.to_string());
    let h = Sha256::digest(format!("{flow}\u{0}{entity}\u{0}{id}\u{0}{v}").as_bytes());
    hex::encode(&h[..12])
}

/// What the sink read from a stream's change sets.
#[derive(Debug, Clone, Default)]
struct RunsRead {
    /// The newest row of each record (with the run it came from).
    rows: Vec<(String, ChangeRow)>,
    /// The last run read.
    last: Option<String>,
    /// The last run read that lists every live key (a reconciling key-set pass or snapshot):
    /// its id and the keys it carries (quarantined ones included). A record it lacks was
    /// deleted in the source, as the warehouse's merge concludes from the same run. Shared,
    /// not copied, between the mappings of one stream (it can hold millions of keys).
    listing: Option<Arc<(String, HashSet<String>)>>,
}

/// The cursor key of a mapping: its stream, plus the mapping's name when it is named (each
/// mapping of one stream keeps its own place, so a mapping added later reads from the start).
pub fn cursor_key(source_system: System, em: &EntityMap) -> String {
    let stream = format!("{source_system}.{}", em.source);
    match &em.name {
        Some(n) if n != &em.source => format!("{stream}#{n}"),
        _ => stream,
    }
}

/// The cursor key of a mapping's lines (`pipedrive.deal_product#won_deal`).
pub fn lines_cursor_key(source_system: System, l: &super::flow::Lines, mapping: &str) -> String {
    format!("{source_system}.{}#{mapping}", l.source)
}

/// Plans flow `name`: every record of the change sets after the flow's cursors.
pub async fn plan(
    state: &StateStore,
    lake: &Lake,
    defs: &Definitions,
    name: &str,
    flow: &FlowFile,
) -> Result<Plan> {
    let mut out = Plan {
        flow: name.to_string(),
        ..Plan::default()
    };
    // Source ids of each mapping that this plan creates or updates (a child may depend on them).
    let mut planned: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // The newest record of each source id read by this plan, for the mappings a `through`
    // lookup goes via.
    let mut seen: BTreeMap<String, BTreeMap<String, Map<String, Value>>> = BTreeMap::new();
    let via: BTreeSet<&str> = flow
        .entities
        .iter()
        .filter_map(|e| e.parent.as_ref())
        .flat_map(|p| p.through.iter().map(String::as_str))
        .collect();
    // Change sets already read, by (stream, cursor): two mappings of one stream read it once,
    // and the last of them takes the rows over. Records keep only the columns the flow reads
    // from their stream, so a plan holds a fraction of each row.
    let mut read: BTreeMap<(String, Option<String>), RunsRead> = BTreeMap::new();
    let mut readers: BTreeMap<(String, Option<String>), usize> = BTreeMap::new();
    let mut keep: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut cursors = Vec::with_capacity(flow.entities.len());
    for em in &flow.entities {
        let sid = format!("{}.{}", flow.source_system, em.source);
        let cursor = state.sink_cursor(name, &cursor_key(flow.source_system, em))?;
        *readers.entry((sid.clone(), cursor.clone())).or_default() += 1;
        keep.entry(sid).or_default().extend(em.columns());
        cursors.push(cursor);
    }
    for (em, cursor) in flow.entities.iter().zip(cursors) {
        let mapping = em.name();
        let sid: StreamId = format!("{}.{}", flow.source_system, em.source).parse()?;
        let stream = defs.get(&sid).map_err(|_| {
            Error::config(format!(
                "sink flow `{name}` reads {sid}, which no stream defines"
            ))
        })?;
        let ckey = cursor_key(flow.source_system, em);
        let rk = (sid.to_string(), cursor.clone());
        if !read.contains_key(&rk) {
            let columns = keep.get(&rk.0).cloned().unwrap_or_default();
            read.insert(
                rk.clone(),
                read_stream(state, lake, defs, &sid, cursor.as_deref(), &columns).await?,
            );
        }
        let left = readers.entry(rk.clone()).or_default();
        *left = left.saturating_sub(1);
        let RunsRead {
            mut rows,
            last,
            listing,
        } = if *left == 0 {
            read.remove(&rk).unwrap_or_default()
        } else {
            read.get(&rk).cloned().unwrap_or_default()
        };
        // Records read before a full listing that lacks them: deleted in the source since.
        let mut unlisted: HashSet<String> = HashSet::new();
        if let Some((listed_in, keys)) = listing.as_deref() {
            for (run_id, row) in rows.iter_mut() {
                if !row.deleted && *run_id < *listed_in && !keys.contains(&row.id) {
                    row.deleted = true;
                    *run_id = listed_in.clone();
                    unlisted.insert(row.id.clone());
                }
            }
            // Jobs of earlier applies still open (waiting, failed, blocked) for a record the
            // listing lacks: recorded as deleted, so they are never written.
            for (id, job_run) in state.sink_open_jobs(name, mapping)? {
                if job_run < *listed_in && !keys.contains(&id) {
                    out.deleted
                        .push((mapping.to_string(), id, listed_in.clone()));
                }
            }
        }
        if let Some(last) = &last {
            out.cursors.push((ckey, last.clone()));
        }
        // The document's lines (deal products): their newest versions, per parent.
        let mut new_lines: BTreeMap<String, usize> = BTreeMap::new();
        // The last run of the lines' stream read once this plan is applied.
        let mut lines_read: Option<String> = None;
        if let Some(l) = &em.lines {
            let lsid: StreamId = format!("{}.{}", flow.source_system, l.source).parse()?;
            let lkey = lines_cursor_key(flow.source_system, l, mapping);
            let lcursor = state.sink_cursor(name, &lkey)?;
            let RunsRead {
                rows: lrows,
                last: llast,
                ..
            } = read_stream(state, lake, defs, &lsid, lcursor.as_deref(), &l.columns()).await?;
            lines_read = llast.clone().or(lcursor);
            if let Some(last) = llast {
                out.cursors.push((lkey, last));
            }
            for (_, row) in lrows {
                let parent = source_value(&row.record, &l.parent_column)
                    .and_then(|v| match v.as_ref() {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .unwrap_or_default();
                if !row.deleted {
                    *new_lines.entry(parent.clone()).or_default() += 1;
                }
                out.lines.push(SinkLine {
                    mapping: mapping.to_string(),
                    line_id: row.id.clone(),
                    parent_id: parent,
                    record: serde_json::to_string(&row.record)
                        .map_err(|e| Error::state_from("a line's source record", e))?,
                    deleted: row.deleted,
                });
            }
        }
        let key_cols = stream.catalog.primary_key.join(", ");
        for (run_id, row) in rows {
            if via.contains(mapping) {
                seen.entry(mapping.to_string())
                    .or_default()
                    .insert(row.id.clone(), row.record.clone());
            }
            let jid = job_id(name, mapping, &row.id, row.version);
            let mut link = state.sink_link(name, mapping, &row.id)?;
            let mirrored = match mirror(state, em, &row.record, row.version)? {
                Mirror::NotUpdate => Ok(None),
                Mirror::Key { key, .. } => Ok(Some(key)),
                Mirror::Skip(why) => Err(why),
            };
            let prior = state.sink_job(&jid)?;
            let (action, cause, reason) = if row.id.starts_with(MALFORMED) {
                (
                    Action::Invalid,
                    "malformed",
                    format!("malformed change row: no {key_cols} (primary key)"),
                )
            } else if row.deleted {
                let how = if unlisted.contains(&row.id) {
                    format!(" (absent from the full key listing of run {run_id})")
                } else {
                    String::new()
                };
                (
                    Action::Noop,
                    "deleted_in_source",
                    format!("deleted in the source{how}: the sink never deletes in the target"),
                )
            } else if prior
                .as_ref()
                .is_some_and(|j| j.status == JobStatus::Applied)
            {
                (
                    Action::Noop,
                    "already_applied",
                    "this job is already applied".into(),
                )
            } else if let Some(why) = em.unmet(&row.record) {
                (Action::Noop, "condition_unmet", why)
            } else if let Err(why) = &mirrored {
                (Action::Noop, "echo", why.clone())
            } else if let Some(l) = link.as_ref().filter(|_| em.mode == Mode::Seed) {
                (
                    Action::Noop,
                    "seeded",
                    format!(
                        "{} {} already seeded from this record (seeded once, ever)",
                        em.target, l.target_key
                    ),
                )
            } else if let Some(l) = link
                .as_ref()
                .filter(|l| l.source_version.is_some() && l.source_version >= row.version)
            {
                (
                    Action::Noop,
                    "up_to_date",
                    format!(
                        "{} {} already holds version {}",
                        em.target,
                        l.target_key,
                        l.source_version.unwrap_or_default()
                    ),
                )
            } else if let Some(decision) = match &em.lines {
                Some(l)
                    if !new_lines.contains_key(&row.id)
                        && state.sink_lines(name, mapping, &row.id)?.is_empty() =>
                {
                    let settled = lines_settled(state, lines_read.as_deref(), &run_id)?;
                    match no_lines(l, settled) {
                        NoLinesDecision::ValueLine => None,
                        d => Some(d),
                    }
                }
                _ => None,
            } {
                match decision {
                    NoLinesDecision::Skip(why) => (Action::Noop, "no_lines", why),
                    NoLinesDecision::Wait(why) => (Action::Wait, "no_lines", why),
                    NoLinesDecision::ValueLine => (
                        Action::Create,
                        "not_linked",
                        "one line made from the document (lines.when_none)".into(),
                    ),
                }
            } else if let Some(wait) =
                missing_parent(state, name, flow, em, &row.record, &planned, &seen)?
            {
                (Action::Wait, "parent_missing", wait)
            } else if em.mode == Mode::Match {
                (
                    Action::Match,
                    "match",
                    format!(
                        "apply searches {} by [{}] and links what it finds",
                        em.target,
                        em.natural_key.join(",")
                    ),
                )
            } else if let Ok(Some(key)) = &mirrored {
                link = link.or_else(|| {
                    Some(crate::state::LedgerLink {
                        target_entity: em.target.clone(),
                        target_key: key.clone(),
                        source_version: None,
                        updated_at: String::new(),
                        target_version: None,
                    })
                });
                (
                    Action::Update,
                    "linked_back",
                    format!(
                        "linked by {} to {} {key}: the change goes back there",
                        em.linked_by
                            .as_ref()
                            .map_or(String::new(), |l| format!("{}/{}", l.flow, l.mapping)),
                        em.target
                    ),
                )
            } else if let Some(l) = &link {
                (
                    Action::Update,
                    "newer_version",
                    format!(
                        "linked to {} {}; source version {} is newer",
                        em.target,
                        l.target_key,
                        row.version.map_or("?".into(), |v| v.to_string())
                    ),
                )
            } else {
                (
                    Action::Create,
                    "not_linked",
                    "no ledger link: apply searches the target (external id, then natural key) and links or creates".into(),
                )
            };
            if matches!(action, Action::Create | Action::Update) {
                planned
                    .entry(mapping.to_string())
                    .or_default()
                    .insert(row.id.clone());
            }
            out.jobs.push(PlannedJob {
                job_id: jid,
                source_entity: mapping.to_string(),
                source_id: row.id.clone(),
                source_version: row.version,
                run_id,
                target: format!("{}.{}", flow.target_system, em.target),
                action,
                target_key: link.map(|l| l.target_key),
                cause,
                reason,
                row,
            });
        }
    }
    Ok(out)
}

/// Reads the change sets of `sid` after `cursor`: the newest row of each record (with the run
/// it came from), holding only `columns`, the key and the version, and the last run read.
async fn read_stream(
    state: &StateStore,
    lake: &Lake,
    defs: &Definitions,
    sid: &StreamId,
    cursor: Option<&str>,
    columns: &BTreeSet<String>,
) -> Result<RunsRead> {
    let stream = defs
        .get(sid)
        .map_err(|_| Error::config(format!("a sink flow reads {sid}, which no stream defines")))?;
    let key = stream.catalog.primary_key.clone();
    // The row version: Dataverse's versionnumber, else the modified-time cursor.
    let version = stream
        .catalog
        .columns
        .iter()
        .find(|c| c.name == "versionnumber")
        .map(|c| c.name.clone())
        .or_else(|| stream.spec.cursor_field.clone());
    let runs = changes::runs_after(lake, state, sid, cursor).await?;
    // The newest version of each record across the runs read (later runs win).
    let mut latest: BTreeMap<String, (String, ChangeRow)> = BTreeMap::new();
    let mut listing = None;
    for m in &runs {
        let mut keys = m.reconciles_deletes().then(|| {
            m.quarantined_keys
                .iter()
                .map(|k| k.join("|"))
                .collect::<HashSet<String>>()
        });
        let changes::RunRead { rows, listed } =
            changes::read_run(lake, m, &key, version.as_deref(), Some(columns)).await?;
        if let Some(keys) = keys.as_mut() {
            keys.extend(listed);
        }
        for (i, mut row) in rows.into_iter().enumerate() {
            row.record.remove("_ml_deleted");
            if row.id.is_empty() {
                row.id = format!("{MALFORMED}{}#{i}", m.run_id);
            }
            latest.insert(row.id.clone(), (m.run_id.clone(), row));
        }
        if let Some(keys) = keys {
            listing = Some(Arc::new((m.run_id.clone(), keys)));
        }
    }
    Ok(RunsRead {
        rows: latest.into_values().collect(),
        last: runs.last().map(|m| m.run_id.clone()),
        listing,
    })
}

/// Why a record cannot be written yet: its parent (e.g. the contact's account) has no ledger
/// link and is not planned in this run either, or its lookup leads to no parent at all.
fn missing_parent(
    state: &StateStore,
    flow_name: &str,
    flow: &FlowFile,
    em: &EntityMap,
    record: &Map<String, Value>,
    planned: &BTreeMap<String, BTreeSet<String>>,
    seen: &BTreeMap<String, BTreeMap<String, Map<String, Value>>>,
) -> Result<Option<String>> {
    let Some(p) = &em.parent else {
        return Ok(None);
    };
    let recall = |m: &str, id: &str| -> Result<Option<Map<String, Value>>> {
        if let Some(r) = seen.get(m).and_then(|rows| rows.get(id)) {
            return Ok(Some(r.clone()));
        }
        Ok(state
            .sink_record(flow_name, m, id)?
            .and_then(|r| serde_json::from_str(&r).ok()))
    };
    let pid = match parent_id(flow, p, record, &recall)? {
        ParentId::None => return Ok(None),
        ParentId::Unresolved(why) => return Ok(Some(why)),
        ParentId::Id(pid) => pid,
    };
    if state.sink_link(flow_name, &p.source, &pid)?.is_some()
        || planned.get(&p.source).is_some_and(|s| s.contains(&pid))
    {
        return Ok(None);
    }
    Ok(Some(format!(
        "its {} {pid} has no target record yet and is not in these change sets",
        p.source
    )))
}

/// Where a record's parent lookup leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParentId {
    /// The record points at no parent of a mapped type: written without one.
    None,
    /// The parent mapping's source id.
    Id(String),
    /// It points somewhere the flow can't follow to a parent (a contact without an account):
    /// the job waits, with this reason.
    Unresolved(String),
}

/// A lookup value as the source id text it names (GUIDs are strings, Pipedrive ids numbers).
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Gives the newest source record of another mapping by (mapping, source id).
pub type Recall<'a> = dyn Fn(&str, &str) -> Result<Option<Map<String, Value>>> + 'a;

/// The parent source id of `record` under `p`. A lookup of a `through` type is followed to
/// that record's own parent; `recall(mapping, id)` gives the source record of another mapping
/// (from this plan, else from the flow's jobs).
pub fn parent_id(
    flow: &FlowFile,
    p: &ParentRef,
    record: &Map<String, Value>,
    recall: &Recall<'_>,
) -> Result<ParentId> {
    let Some(id) = record
        .get(&p.column)
        .and_then(id_text)
        .filter(|s| !s.is_empty())
    else {
        return Ok(ParentId::None);
    };
    let id = id.as_str();
    let source_of = |m: &str| {
        flow.mapping(m)
            .map_or_else(|| m.to_string(), |e| e.source.clone())
    };
    let Some(tc) = &p.type_column else {
        return Ok(ParentId::Id(id.to_string()));
    };
    let ty = record.get(tc).and_then(Value::as_str).unwrap_or_default();
    if ty.eq_ignore_ascii_case(&source_of(&p.source)) {
        return Ok(ParentId::Id(id.to_string()));
    }
    let Some(via) = p
        .through
        .iter()
        .find(|t| ty.eq_ignore_ascii_case(&source_of(t)))
    else {
        return Ok(if p.through.is_empty() {
            ParentId::None
        } else {
            ParentId::Unresolved(format!(
                "its {} points at a {ty} {id}, which leads to no {}",
                p.column,
                source_of(&p.source)
            ))
        });
    };
    let Some(vp) = flow.mapping(via).and_then(|m| m.parent.as_ref()) else {
        return Ok(ParentId::Unresolved(format!(
            "mapping `{via}` has no parent"
        )));
    };
    let Some(other) = recall(via, id)? else {
        return Ok(ParentId::Unresolved(format!(
            "its {} is {ty} {id}, which this flow has not read yet",
            p.column
        )));
    };
    // One hop only: the intermediate record's own parent, of the wanted type.
    let hop = ParentRef {
        through: Vec::new(),
        ..vp.clone()
    };
    Ok(match parent_id(flow, &hop, &other, recall)? {
        ParentId::Id(pid) if hop.source == p.source => ParentId::Id(pid),
        _ => ParentId::Unresolved(format!(
            "its {} is {ty} {id}, which has no {}: it waits rather than guess one",
            p.column,
            source_of(&p.source),
        )),
    })
}

/// What a document without lines becomes (shared by plan and apply).
pub enum NoLinesDecision {
    /// Wait, with the reason.
    Wait(String),
    /// A no-op, with the reason.
    Skip(String),
    /// Send one line made from the document.
    ValueLine,
}

/// A document without lines: it waits while they may still come (`settled` false); once its
/// lines have been read since its run and there are none, the flow's `lines.when_none` decides.
pub fn no_lines(l: &super::flow::Lines, settled: bool) -> NoLinesDecision {
    use super::flow::NoLines;
    match (settled, l.when_none.action) {
        (false, _) => NoLinesDecision::Wait(
            "it has no lines yet (its products arrive with a later change set)".into(),
        ),
        (true, NoLines::Wait) => NoLinesDecision::Wait(format!(
            "it has no {} in the source (read after it); the flow waits for some (lines.when_none.action = \"wait\")",
            l.source
        )),
        (true, NoLines::Skip) => NoLinesDecision::Skip(format!(
            "it has no {} in the source: skipped (lines.when_none.action = \"skip\")",
            l.source
        )),
        (true, NoLines::ValueLine) => NoLinesDecision::ValueLine,
    }
}

/// Whether a document's lines have been read since the document was: the flow read the
/// lines' stream up to a run (`lines_read`) that started after the document's run (`doc_run`)
/// finished. Then a document without lines has none, rather than lines still to come. Unknown
/// runs (a lake from another project) are never settled.
pub fn lines_settled(
    state: &crate::state::StateStore,
    lines_read: Option<&str>,
    doc_run: &str,
) -> Result<bool> {
    let Some(read) = lines_read else {
        return Ok(false);
    };
    let (Some(doc), Some(lines)) = (state.run(doc_run)?, state.run(read)?) else {
        return Ok(false);
    };
    let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    Ok(
        match (
            doc.finished_at.as_deref().and_then(at),
            at(&lines.started_at),
        ) {
            (Some(done), Some(started)) => started >= done,
            _ => false,
        },
    )
}

/// What an `update` mapping may do with a source record.
pub enum Mirror {
    /// Not an update mapping.
    NotUpdate,
    /// Update `key` (the other flow's source id). `baseline`: the version that flow last
    /// wrote to this record, whose echo (when this flow read it) is what both sides agreed on.
    Key { key: String, baseline: Option<i64> },
    /// Nothing to write, and why: not linked by the other flow, or this version is that flow's
    /// own write (an echo).
    Skip(String),
}

/// The target record an `update` mapping writes to, from the other flow's ledger: the link
/// whose target is this source record. A source version no newer than what that flow wrote
/// is its echo, not a change to send back.
pub fn mirror(
    state: &StateStore,
    em: &EntityMap,
    record: &Map<String, Value>,
    version: Option<i64>,
) -> Result<Mirror> {
    let Some(lb) = em.linked_by.as_ref().filter(|_| em.mode == Mode::Update) else {
        return Ok(Mirror::NotUpdate);
    };
    let Some(own_key) = record.get(&lb.column).and_then(id_text) else {
        return Ok(Mirror::Skip(format!("it has no {}", lb.column)));
    };
    let Some((key, l)) = state.sink_link_to(&lb.flow, &lb.mapping, &own_key)? else {
        return Ok(Mirror::Skip(format!(
            "not linked by {}/{}: this mapping only updates records that flow linked",
            lb.flow, lb.mapping
        )));
    };
    if let (Some(ours), Some(v)) = (l.target_version, version)
        && v <= ours
    {
        return Ok(Mirror::Skip(format!(
            "version {v} is {}'s own write to this record: not echoed back",
            lb.flow
        )));
    }
    Ok(Mirror::Key {
        key,
        baseline: l.target_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    use crate::lake::{Manifest, PartInfo, PartWriter, RunKind, sha256_hex};

    const ACCOUNTS: &str = "dataverse.account";

    /// Writes one complete run of `dataverse.account` to the lake by hand: rows of (account
    /// id, name, version). `manifest: false` leaves the run without its manifest (running).
    async fn put_run(
        lake: &Lake,
        run_id: &str,
        kind: RunKind,
        reconcile: bool,
        rows: &[(Option<&str>, &str, i64)],
        quarantined: &[&str],
        manifest: bool,
    ) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("accountid", DataType::Utf8, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("versionnumber", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.0))) as ArrayRef,
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))) as ArrayRef,
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))) as ArrayRef,
            ],
        )
        .unwrap();
        let mut w = PartWriter::new(schema).unwrap();
        w.write(&batch, 0).unwrap();
        let bytes = w.finish().unwrap();
        let id: StreamId = ACCOUNTS.parse().unwrap();
        let path = Lake::part_path(&id, run_id, 0, None);
        lake.put(&path, bytes.clone()).await.unwrap();
        if !manifest {
            return;
        }
        lake.write_manifest(
            &Manifest {
                run_id: run_id.into(),
                stream: id.to_string(),
                connection: "crm".into(),
                kind,
                reconcile,
                schema_hash: "h".into(),
                started_at: "s".into(),
                finished_at: "f".into(),
                rows: rows.len() as u64,
                quarantined: quarantined.len() as u64,
                quarantined_keys: quarantined.iter().map(|k| vec![k.to_string()]).collect(),
                files: vec![PartInfo {
                    path: path.to_string(),
                    rows: rows.len() as u64,
                    deleted: 0,
                    bytes: bytes.len() as u64,
                    sha256: sha256_hex(&bytes),
                }],
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    }

    /// A lake, a state store and the built-in definitions in a temporary folder.
    fn setup() -> (tempfile::TempDir, Lake, StateStore, Definitions) {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open("memory://", dir.path()).unwrap();
        let state = StateStore::open(&dir.path().join("s.db")).unwrap();
        (dir, lake, state, Definitions::builtin().unwrap())
    }

    /// A good row and one without its key.
    #[tokio::test]
    async fn a_row_without_its_key_is_planned_invalid_and_the_rest_goes_on() {
        let (dir, lake, state, defs) = setup();
        let rows = [(Some("A1"), "Acme", 7), (None, "Broken", 8)];
        put_run(
            &lake,
            "20260101T000000000Z-000001",
            RunKind::Snapshot,
            true,
            &rows,
            &[],
            true,
        )
        .await;
        // A later run without a manifest (still running): reading stops before it.
        put_run(
            &lake,
            "20260102T000000000Z-000002",
            RunKind::Snapshot,
            true,
            &rows,
            &[],
            false,
        )
        .await;
        let flow = FlowFile::load(dir.path(), "dynamics_to_deltek").unwrap();
        let p = plan(&state, &lake, &defs, "f", &flow).await.unwrap();
        assert_eq!(p.jobs.len(), 2);
        let good = p.jobs.iter().find(|j| j.source_id == "A1").unwrap();
        assert_eq!(good.action, Action::Create);
        assert_eq!(good.source_version, Some(7));
        let bad = p.jobs.iter().find(|j| j.action == Action::Invalid).unwrap();
        assert!(bad.reason.contains("accountid"), "{}", bad.reason);
        assert_eq!(
            p.cursors,
            vec![(
                ACCOUNTS.to_string(),
                "20260101T000000000Z-000001".to_string()
            )]
        );
    }

    /// A run abandoned before its manifest never completes: the sink reads the runs after
    /// it instead of waiting for it. A run the state says was extracted whose manifest the
    /// lake lost stops the plan with an error, never a silent stop.
    #[tokio::test]
    async fn an_abandoned_run_is_passed_over_and_a_lost_manifest_is_an_error() {
        use crate::state::RunRecord;
        let (dir, lake, state, defs) = setup();
        let (first, abandoned, last) = (
            "20260101T000000000Z-000001",
            "20260102T000000000Z-000002",
            "20260103T000000000Z-000003",
        );
        put_run(
            &lake,
            first,
            RunKind::Incremental,
            false,
            &[(Some("A1"), "Acme", 7)],
            &[],
            true,
        )
        .await;
        put_run(
            &lake,
            abandoned,
            RunKind::Incremental,
            false,
            &[(Some("A9"), "Half", 9)],
            &[],
            false,
        )
        .await;
        put_run(
            &lake,
            last,
            RunKind::Incremental,
            false,
            &[(Some("A2"), "Beta", 8)],
            &[],
            true,
        )
        .await;
        let flow = FlowFile::load(dir.path(), "dynamics_to_deltek").unwrap();
        // Still running: the plan stops before it.
        let run = RunRecord::new(
            abandoned,
            "crm",
            ACCOUNTS,
            RunKind::Incremental,
            false,
            "h",
            None,
        );
        state.begin_run(&run).unwrap();
        let p = plan(&state, &lake, &defs, "f", &flow).await.unwrap();
        let ids: Vec<&str> = p.jobs.iter().map(|j| j.source_id.as_str()).collect();
        assert_eq!(ids, ["A1"]);
        // Abandoned: passed over.
        state.abandon_run(abandoned, "delta token expired").unwrap();
        let p = plan(&state, &lake, &defs, "g", &flow).await.unwrap();
        let mut ids: Vec<&str> = p.jobs.iter().map(|j| j.source_id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, ["A1", "A2"]);
        assert_eq!(p.cursors, vec![(ACCOUNTS.to_string(), last.to_string())]);
        // Extracted, by the state's word, but its manifest (or its whole folder) is not in the
        // lake: an error.
        let lost = "20260104T000000000Z-000004";
        state
            .begin_run(&RunRecord::new(
                lost,
                "crm",
                ACCOUNTS,
                RunKind::Incremental,
                false,
                "h",
                None,
            ))
            .unwrap();
        state
            .mark_extracted(
                lost,
                None,
                "raw/dataverse/account/run=lost/_manifest-w3.json",
            )
            .unwrap();
        let err = plan(&state, &lake, &defs, "h", &flow)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not in the lake"), "{err}");
    }

    /// A record read from an incremental run and absent from a later key-set pass that
    /// reconciles was deleted in the source: a no-op, never a create. One the pass lists, one
    /// it quarantined (it could not read it), or any after a pass that does not reconcile is
    /// planned as usual.
    #[tokio::test]
    async fn a_record_a_later_key_listing_lacks_is_deleted_not_created() {
        for (reconcile, quarantined) in [(true, &[][..]), (false, &[]), (true, &["A2"])] {
            let (dir, lake, state, defs) = setup();
            let rows = [(Some("A1"), "Acme", 7), (Some("A2"), "Gone Ltd", 8)];
            let first = "20260101T000000000Z-000001";
            put_run(&lake, first, RunKind::Incremental, false, &rows, &[], true).await;
            let keys = [(Some("A1"), "", 7)];
            let pass = "20260101T010000000Z-000002";
            put_run(
                &lake,
                pass,
                RunKind::Keyset,
                reconcile,
                &keys,
                quarantined,
                true,
            )
            .await;
            let flow = FlowFile::load(dir.path(), "dynamics_to_deltek").unwrap();
            let p = plan(&state, &lake, &defs, "f", &flow).await.unwrap();
            let job = |id: &str| p.jobs.iter().find(|j| j.source_id == id).unwrap();
            assert_eq!(job("A1").action, Action::Create);
            let gone = job("A2");
            if reconcile && quarantined.is_empty() {
                assert_eq!(gone.action, Action::Noop);
                assert!(gone.row.deleted);
                assert!(
                    gone.reason.contains(
                        "absent from the full key listing of run 20260101T010000000Z-000002"
                    ),
                    "{}",
                    gone.reason
                );
            } else {
                assert_eq!(gone.action, Action::Create, "{}", gone.reason);
            }
        }
    }

    #[test]
    fn job_ids_are_stable_and_version_sensitive() {
        let a = job_id("f", "account", "1", Some(7));
        assert_eq!(a, job_id("f", "account", "1", Some(7)));
        assert_ne!(a, job_id("f", "account", "1", Some(8)));
        assert_ne!(a, job_id("f", "contact", "1", Some(7)));
        assert_eq!(a.len(), 24);
    }
}

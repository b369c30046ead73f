//! Apply one job idempotently, without an idempotency key (DESIGN.md §9): the ledger link
//! first; else search the target (external-id field, then natural key) and link what is found;
//! else create; then record the link. A create whose answer was lost is never sent again
//! blindly: the job fails as ambiguous, and its next attempt goes through the search first,
//! finds the record the server did save, and links it.
//!
//! An attempt's audit entries, its ledger link and the job's new status are committed together
//! ([`StateStore::sink_commit`]).

use std::time::Instant;

use serde_json::{Map, Value};

use super::flow::{EntityMap, FlowFile, Mode, source_value};
use super::plan::{Mirror, NoLinesDecision, ParentId, lines_settled, mirror, no_lines, parent_id};
use super::target::{Target, WriteError};
use crate::error::Result;
use crate::state::{AuditAction, AuditEntry, EchoLink, JobFinish, JobStatus, NewLink, StateStore};

/// What one attempt at a job ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created(String),
    Updated(String),
    /// Found by search and linked (then, in `upsert` mode, brought up to date).
    Linked(String),
    /// The target refused, or the answer was lost (`ambiguous`).
    Failed {
        reason: String,
        ambiguous: bool,
    },
    /// A dependency has no target record yet.
    Waiting(String),
    /// The pre-flight shows the target would refuse it: nothing sent.
    Blocked(String),
    /// Nothing to write, and why: the target holds a newer version (a stale job replayed),
    /// the project is already seeded, the record does not meet `when`, or a `match` mapping
    /// found nothing.
    Noop {
        key: Option<String>,
        reason: String,
    },
}

/// Everything one job attempt needs.
pub struct JobCtx<'a> {
    pub state: &'a StateStore,
    pub target: &'a dyn Target,
    pub flow_name: &'a str,
    pub flow: &'a FlowFile,
    /// The flow checked against the target's metadata: records it would refuse are blocked.
    pub preflight: &'a super::preflight::Preflight,
    /// The flow's lease the jobs run under (their commits are fenced by it).
    pub lease: &'a crate::lease::Lease,
}

/// The job's identity, for the audit.
pub struct JobRef<'a> {
    pub job_id: &'a str,
    /// The mapping's name (the source entity unless the mapping is named).
    pub source_entity: &'a str,
    pub source_id: &'a str,
    pub source_version: Option<i64>,
}

/// What an attempt did, committed with the job's status.
struct Trail {
    target: String,
    audits: Vec<AuditEntry>,
    /// (hub, key) of a successful write or link.
    link: Option<(String, String)>,
    /// The target's version after the write.
    version: Option<i64>,
    /// An update mapping's write: (flow, mapping, source id) of the link it mirrors, whose
    /// source now holds `version`.
    echo: Option<(String, String, String)>,
}

impl Trail {
    fn audit(&mut self, j: &JobRef<'_>, flow: &str, a: AuditEntry) {
        self.audits.push(AuditEntry {
            flow: flow.to_string(),
            job_id: j.job_id.to_string(),
            source_entity: j.source_entity.to_string(),
            source_id: j.source_id.to_string(),
            source_version: j.source_version,
            target: self.target.clone(),
            ..a
        });
    }
}

/// A search's result: the key found, or why the job can't go on.
type Found = std::result::Result<Option<String>, String>;

impl JobCtx<'_> {
    /// A redacted request summary for the audit: the request line and the field names sent
    /// (values can be personal data; secrets never reach this point, tokens live in the HTTP
    /// layer).
    fn summary(
        &self,
        method: &str,
        hub: &str,
        key: Option<&str>,
        body: &Map<String, Value>,
    ) -> String {
        let fields: Vec<&str> = body.keys().map(String::as_str).collect();
        format!(
            "{} fields=[{}]",
            self.target.profile().request_line(method, hub, key),
            fields.join(",")
        )
    }

    fn recall(&self, mapping: &str, id: &str) -> Result<Option<Map<String, Value>>> {
        Ok(self
            .state
            .sink_record(self.flow_name, mapping, id)?
            .and_then(|r| serde_json::from_str(&r).ok()))
    }

    /// The employee code of the record's owner: an override, else the employee the owners'
    /// `match` mapping linked, else the default (`true`: flagged in the audit).
    fn owner(&self, record: &Map<String, Value>) -> Result<(Option<String>, bool)> {
        let o = &self.flow.owners;
        if let Some(id) = record.get("ownerid").and_then(Value::as_str) {
            if let Some(e) = o.overrides.get(id) {
                return Ok((Some(e.clone()), false));
            }
            if let Some(src) = &o.source
                && let Some(l) = self.state.sink_link(self.flow_name, src, id)?
            {
                return Ok((Some(l.target_key), false));
            }
        }
        Ok((o.default_employee.clone(), true))
    }

    /// The target fields of a source record (mapped fields and owners; not the defaults, the
    /// external id, the number or the parent), and whether the owner fell back to the default.
    fn map_fields(
        &self,
        em: &EntityMap,
        record: &Map<String, Value>,
    ) -> Result<(Map<String, Value>, bool)> {
        let mut out = Map::new();
        for (src, dst) in &em.fields {
            if let Some(v) = source_value(record, src).and_then(|v| self.target.value(&v)) {
                out.insert(dst.clone(), v);
            }
        }
        for (dst, v) in &em.constants {
            out.insert(dst.clone(), Value::String(v.clone()));
        }
        for f in &em.numbers {
            if let Some(Value::String(text)) = out.get(f)
                && let Ok(n) = text.trim().parse::<serde_json::Number>()
            {
                out.insert(f.clone(), Value::Number(n));
            }
        }
        if em.owner_fields.is_empty() {
            return Ok((out, false));
        }
        let (employee, defaulted) = self.owner(record)?;
        if let Some(e) = employee {
            for f in &em.owner_fields {
                out.insert(f.clone(), Value::String(e.clone()));
            }
        }
        Ok((out, defaulted))
    }

    /// One attempt at a job: decides, writes, and commits the audit, the ledger link and the
    /// job's status together. Fails only on state-store errors; target failures are outcomes.
    pub async fn run(
        &self,
        em: &EntityMap,
        j: &JobRef<'_>,
        record: &Map<String, Value>,
    ) -> Result<Outcome> {
        let mut trail = Trail {
            target: format!("{}.{}", self.flow.target_system, em.target),
            audits: Vec::new(),
            link: None,
            version: None,
            echo: None,
        };
        let outcome = self.attempt(em, j, record, &mut trail).await?;
        let (status, error, ambiguous) = match &outcome {
            Outcome::Created(_)
            | Outcome::Updated(_)
            | Outcome::Linked(_)
            | Outcome::Noop { .. } => (JobStatus::Applied, None, false),
            Outcome::Failed { reason, ambiguous } => {
                (JobStatus::Failed, Some(reason.as_str()), *ambiguous)
            }
            Outcome::Waiting(why) => (JobStatus::Waiting, Some(why.as_str()), false),
            Outcome::Blocked(why) => (JobStatus::Blocked, Some(why.as_str()), false),
        };
        self.state.sink_commit(&JobFinish {
            fence: Some(self.lease),
            job_id: Some(j.job_id),
            status,
            error,
            ambiguous,
            attempted: !matches!(outcome, Outcome::Waiting(_) | Outcome::Blocked(_)),
            link: trail.link.as_ref().map(|(hub, key)| NewLink {
                flow: self.flow_name,
                source_entity: j.source_entity,
                source_id: j.source_id,
                target_entity: hub,
                target_key: key,
                source_version: j.source_version,
                target_version: trail.version,
            }),
            echo: trail
                .echo
                .as_ref()
                .zip(trail.version)
                .map(|((flow, mapping, id), version)| EchoLink {
                    flow,
                    source_entity: mapping,
                    source_id: id,
                    version,
                }),
            audits: &trail.audits,
        })?;
        Ok(outcome)
    }

    fn noop(
        &self,
        j: &JobRef<'_>,
        t: &mut Trail,
        action: AuditAction,
        key: Option<String>,
        reason: String,
    ) -> Outcome {
        t.audit(
            j,
            self.flow_name,
            AuditEntry {
                action,
                target_key: key.clone(),
                error: Some(reason.clone()),
                ..AuditEntry::default()
            },
        );
        Outcome::Noop { key, reason }
    }

    /// The target would certainly refuse it: nothing is sent, audited with the reason.
    fn block(&self, j: &JobRef<'_>, t: &mut Trail, why: String) -> Outcome {
        t.audit(
            j,
            self.flow_name,
            AuditEntry {
                action: AuditAction::Blocked,
                error: Some(why.clone()),
                ..AuditEntry::default()
            },
        );
        Outcome::Blocked(why)
    }

    /// A dependency is missing: the job waits, audited with the reason.
    fn wait(&self, j: &JobRef<'_>, t: &mut Trail, why: String) -> Outcome {
        t.audit(
            j,
            self.flow_name,
            AuditEntry {
                action: AuditAction::Waiting,
                error: Some(why.clone()),
                ..AuditEntry::default()
            },
        );
        Outcome::Waiting(why)
    }

    fn fail(&self, j: &JobRef<'_>, t: &mut Trail, reason: String) -> Outcome {
        t.audit(
            j,
            self.flow_name,
            AuditEntry {
                action: AuditAction::Failed,
                error: Some(reason.clone()),
                ..AuditEntry::default()
            },
        );
        Outcome::Failed {
            reason,
            ambiguous: false,
        }
    }

    async fn attempt(
        &self,
        em: &EntityMap,
        j: &JobRef<'_>,
        record: &Map<String, Value>,
        t: &mut Trail,
    ) -> Result<Outcome> {
        let hub = em.target.as_str();
        // A malformed change row (no primary key) is never written, however often replayed.
        if j.source_id.starts_with(super::plan::MALFORMED) {
            return Ok(self.fail(j, t, "malformed change row: no primary key".into()));
        }
        if let Some(why) = em.unmet(record) {
            return Ok(self.noop(j, t, AuditAction::Noop, None, why));
        }
        // An update mapping writes only to the record the other flow linked, and never a
        // version that flow wrote itself back.
        let (mirrored, baseline) = match mirror(self.state, em, record, j.source_version)? {
            Mirror::NotUpdate => (None, None),
            Mirror::Key { key, baseline } => (Some(key), baseline),
            Mirror::Skip(why) => return Ok(self.noop(j, t, AuditAction::Noop, None, why)),
        };
        let link = self
            .state
            .sink_link(self.flow_name, j.source_entity, j.source_id)?;
        match (&link, em.mode) {
            (Some(l), Mode::Seed)
                if em.post
                    && !self.state.sink_done(
                        self.flow_name,
                        j.source_entity,
                        j.source_id,
                        AuditAction::Post,
                    )? =>
            {
                // Created, but its posting failed: post it now (once).
                return Ok(self.post(em, j, t, &l.target_key).await);
            }
            (Some(l), Mode::Seed) => {
                let why = format!(
                    "{hub} {} already seeded from this record (seeded once, ever)",
                    l.target_key
                );
                return Ok(self.noop(j, t, AuditAction::Noop, Some(l.target_key.clone()), why));
            }
            (Some(l), _) if l.source_version.is_some() && l.source_version > j.source_version => {
                let why = format!(
                    "superseded: the target holds version {}",
                    l.source_version.unwrap_or_default()
                );
                return Ok(self.noop(j, t, AuditAction::Noop, Some(l.target_key.clone()), why));
            }
            _ => {}
        }
        // A record the source deleted after this job read it is not written (the plan says
        // so for a deletion in the same change sets).
        if let Some(run) =
            self.state
                .sink_deleted_in(self.flow_name, j.source_entity, j.source_id)?
            && let Some(job) = self.state.sink_job(j.job_id)?
            && run > job.run_id
        {
            let why = format!(
                "deleted in the source (change set {run}) after this version was read: not written"
            );
            return Ok(self.noop(j, t, AuditAction::Noop, None, why));
        }
        if let Some(why) = self.preflight.blocked(em, record, false) {
            return Ok(self.block(j, t, why));
        }
        let (mut body, defaulted) = self.map_fields(em, record)?;
        self.preflight.truncate(em, &mut body);
        let owner_note = if defaulted && !em.owner_fields.is_empty() {
            " owner=default"
        } else {
            ""
        };
        // The parent must exist in the target first.
        if let Some(p) = &em.parent {
            let pid = parent_id(self.flow, p, record, &|m, id| self.recall(m, id))?;
            let why = match pid {
                ParentId::None => None,
                ParentId::Unresolved(why) => Some(why),
                ParentId::Id(pid) => match self.state.sink_link(self.flow_name, &p.source, &pid)? {
                    Some(l) => {
                        body.insert(p.field.clone(), Value::String(l.target_key));
                        None
                    }
                    None => Some(format!("its {} {pid} has no target record yet", p.source)),
                },
            };
            if let Some(why) = why {
                return Ok(self.wait(j, t, why));
            }
        }
        // A document's lines: every current line, each with its item.
        let lines = match &em.lines {
            None => None,
            Some(l) => match self.lines(em, l, j, record)? {
                LinesFor::Lines(lines) => Some((l.field.clone(), Value::Array(lines))),
                LinesFor::Wait(why) => return Ok(self.wait(j, t, why)),
                LinesFor::Skip(why) => return Ok(self.noop(j, t, AuditAction::Noop, None, why)),
            },
        };
        if let Some(x) = &em.external_id_field {
            body.insert(x.clone(), Value::String(j.source_id.to_string()));
        }
        // 1. The ledger (a `match` mapping searches again: the email may have changed).
        let mut found = match (&link, em.mode) {
            (_, Mode::Update) => mirrored.map(|k| (k, false)),
            (Some(l), Mode::Upsert) => Some((l.target_key.clone(), false)),
            _ => None,
        };
        // 2. Search: external id, ...
        if found.is_none()
            && let Some(x) = &em.external_id_field
        {
            match self
                .search(em, j, t, &[(x.clone(), j.source_id.to_string())], false)
                .await?
            {
                Ok(k) => found = k.map(|k| (k, true)),
                Err(reason) => return Ok(failed_search(reason)),
            }
        }
        // ... a free number for a client-keyed create, ...
        if found.is_none()
            && let Some(n) = &em.number
            && self.target.profile().client_keyed(hub)
        {
            match self.number(em, j, t, n).await? {
                Ok(num) => {
                    body.insert(n.field.clone(), Value::String(num));
                }
                Err(reason) => return Ok(failed_search(reason)),
            }
        }
        // ... then the natural key and the further match rules, in order, each tried when
        // the record has a value for every field of it.
        for rule in std::iter::once(&em.natural_key).chain(&em.match_rules) {
            if found.is_some() {
                break;
            }
            let equals: Option<Vec<(String, String)>> = rule
                .iter()
                .map(|f| {
                    body.get(f)
                        .and_then(|v| match v {
                            Value::String(s) => Some(s.clone()),
                            Value::Number(n) => Some(n.to_string()),
                            _ => None,
                        })
                        .map(|v| (f.clone(), v))
                })
                .collect();
            let Some(equals) = equals.filter(|e| !e.is_empty()) else {
                continue;
            };
            match self.search(em, j, t, &equals, true).await? {
                Ok(k) => found = k.map(|k| (k, true)),
                Err(reason) => return Ok(failed_search(reason)),
            }
        }
        let started = Instant::now();
        match (found, em.mode) {
            (Some((key, _)), Mode::Match | Mode::Seed) => {
                t.audit(
                    j,
                    self.flow_name,
                    AuditEntry {
                        action: AuditAction::Link,
                        target_key: Some(key.clone()),
                        ..AuditEntry::default()
                    },
                );
                t.link = Some((hub.to_string(), key.clone()));
                Ok(Outcome::Linked(key))
            }
            (None, Mode::Match | Mode::Update) => {
                let keys: Vec<&str> = em.natural_key.iter().map(String::as_str).collect();
                let why = format!(
                    "no {hub} matches [{}]: records it owns use the default",
                    keys.join(",")
                );
                Ok(self.noop(j, t, AuditAction::Unmatched, None, why))
            }
            (Some((key, by_search)), Mode::Upsert | Mode::Update) => {
                // A linked record gets only what changed since the version last written: a
                // field someone changed in the target meanwhile is not overwritten by a value
                // the source did not change.
                // (An update mapping's first write compares with the echo of the other flow's
                // last write: the state both sides agreed on.)
                let last_written = link
                    .as_ref()
                    .map(|l| l.source_version)
                    .or(baseline.map(Some));
                if !by_search
                    && let Some(v) = last_written
                    && let Some(prev) = self.written_fields(em, j, v)?
                {
                    let keep: Vec<&str> = em
                        .parent
                        .iter()
                        .map(|p| p.field.as_str())
                        .chain(em.external_id_field.as_deref())
                        .collect();
                    let full = body.clone();
                    body.retain(|f, v| keep.contains(&f.as_str()) || prev.get(f) != Some(v));
                    // A nested value (an address, a price) is replaced whole by the target:
                    // one changed member sends all of them.
                    let groups: Vec<String> = body
                        .keys()
                        .filter_map(|f| group_of(f).map(String::from))
                        .collect();
                    for (f, v) in &full {
                        if group_of(f).is_some_and(|g| groups.iter().any(|x| x == g)) {
                            body.entry(f.clone()).or_insert_with(|| v.clone());
                        }
                    }
                    if body.keys().all(|f| keep.contains(&f.as_str())) {
                        let why =
                            "no mapped field changed since the version last written".to_string();
                        t.link = Some((hub.to_string(), key.clone()));
                        return Ok(self.noop(j, t, AuditAction::Noop, Some(key), why));
                    }
                }
                if body.is_empty() {
                    let why = "no mapped field has a value: nothing to send".to_string();
                    return Ok(self.noop(j, t, AuditAction::Noop, Some(key), why));
                }
                let method = self.target.profile().update_method;
                let req = self.summary(method, hub, Some(&key), &body);
                let res = self.target.update(hub, &key, &nest(body)).await;
                let ms = started.elapsed().as_millis() as u64;
                match res {
                    Ok(w) => {
                        let status = w.status;
                        t.version = w.version;
                        if let Some(lb) = em.linked_by.as_ref().filter(|_| em.mode == Mode::Update)
                        {
                            t.echo = Some((lb.flow.clone(), lb.mapping.clone(), key.clone()));
                        }
                        let action = if by_search {
                            AuditAction::Link
                        } else {
                            AuditAction::Update
                        };
                        t.audit(
                            j,
                            self.flow_name,
                            AuditEntry {
                                action,
                                method: Some(method.into()),
                                request: Some(format!("{req}{owner_note}")),
                                status: Some(status),
                                target_key: Some(key.clone()),
                                ms,
                                ..AuditEntry::default()
                            },
                        );
                        t.link = Some((hub.to_string(), key.clone()));
                        Ok(if by_search {
                            Outcome::Linked(key)
                        } else {
                            Outcome::Updated(key)
                        })
                    }
                    // The linked record is gone from the target (someone deleted it there):
                    // say how to have it created again rather than leave a bare 404.
                    Err(WriteError::Refused {
                        status: 404,
                        reason,
                    }) if !by_search => {
                        let e = WriteError::Refused {
                            status: 404,
                            reason: format!(
                                "{reason} (the linked {hub} {key} no longer exists in the target; `mlc sink unlink {} --job {}` then `mlc sink replay {} --job {} --yes` creates it again)",
                                self.flow_name, j.job_id, self.flow_name, j.job_id
                            ),
                        };
                        Ok(self.failed_write(j, t, method, req, Some(key), ms, e))
                    }
                    Err(e) => Ok(self.failed_write(j, t, method, req, Some(key), ms, e)),
                }
            }
            (None, Mode::Upsert | Mode::Seed) => {
                for (k, v) in &em.defaults {
                    body.entry(k.clone())
                        .or_insert_with(|| Value::String(v.clone()));
                }
                if let Some((field, lines)) = lines {
                    body.insert(field, lines);
                }
                if let Some(why) = self.preflight.missing_required(em, &body) {
                    return Ok(self.block(j, t, why));
                }
                let req = self.summary("POST", hub, None, &body);
                let res = self.target.create(hub, &nest(body)).await;
                let ms = started.elapsed().as_millis() as u64;
                match res {
                    Ok(w) => {
                        let (key, status) = (w.key, w.status);
                        t.version = w.version;
                        t.audit(
                            j,
                            self.flow_name,
                            AuditEntry {
                                action: AuditAction::Create,
                                method: Some("POST".into()),
                                request: Some(format!("{req}{owner_note}")),
                                status: Some(status),
                                target_key: Some(key.clone()),
                                ms,
                                ..AuditEntry::default()
                            },
                        );
                        t.link = Some((hub.to_string(), key.clone()));
                        if em.post {
                            return Ok(match self.post(em, j, t, &key).await {
                                Outcome::Failed { reason, ambiguous } => Outcome::Failed {
                                    reason: format!("created {key}, then: {reason}"),
                                    ambiguous,
                                },
                                _ => Outcome::Created(key),
                            });
                        }
                        Ok(Outcome::Created(key))
                    }
                    Err(e) => {
                        // "`Type` is required.": a rule of the tenant, not of this record. Kept
                        // for the connection; the rest of the mapping is blocked with it.
                        if let WriteError::Refused { reason, .. } = &e
                            && let Some(field) = super::preflight::learned_from(reason)
                        {
                            self.state.sink_learn_rule(
                                &self.target.profile().connection,
                                hub,
                                &field,
                                reason,
                            )?;
                            self.preflight.learn(hub, &field);
                        }
                        Ok(self.failed_write(j, t, "POST", req, None, ms, e))
                    }
                }
            }
        }
    }

    /// Posts a created document (once: the audit's successful `post` entry says it is done).
    async fn post(&self, em: &EntityMap, j: &JobRef<'_>, t: &mut Trail, key: &str) -> Outcome {
        let hub = em.target.as_str();
        let started = Instant::now();
        let res = self.target.post(hub, key).await;
        let ms = started.elapsed().as_millis() as u64;
        let request = Some(self.target.profile().request_line("POST", hub, Some(key)) + " post");
        match res {
            Ok(status) => {
                t.audit(
                    j,
                    self.flow_name,
                    AuditEntry {
                        action: AuditAction::Post,
                        method: Some("POST".into()),
                        request,
                        status: Some(status),
                        target_key: Some(key.to_string()),
                        ms,
                        ..AuditEntry::default()
                    },
                );
                Outcome::Updated(key.to_string())
            }
            Err(e) => {
                let reason = format!("posting failed: {}", e.reason());
                t.audit(
                    j,
                    self.flow_name,
                    AuditEntry {
                        action: AuditAction::Post,
                        method: Some("POST".into()),
                        request,
                        status: e.status(),
                        target_key: Some(key.to_string()),
                        ms,
                        error: Some(reason.clone()),
                        ..AuditEntry::default()
                    },
                );
                Outcome::Failed {
                    reason,
                    ambiguous: matches!(e, WriteError::Ambiguous { .. }),
                }
            }
        }
    }

    /// Every current line of the document, mapped, each with its item; a wait when a line's
    /// product has no item yet. A document without lines waits for them, unless they have
    /// been read since its run and there are none: then the flow's `lines.when_none` decides.
    fn lines(
        &self,
        em: &EntityMap,
        l: &super::flow::Lines,
        j: &JobRef<'_>,
        record: &Map<String, Value>,
    ) -> Result<LinesFor> {
        let records = self
            .state
            .sink_lines(self.flow_name, em.name(), j.source_id)?;
        if records.is_empty() {
            let doc_run = self.state.sink_job(j.job_id)?.map(|sj| sj.run_id);
            let read = self.state.sink_cursor(
                self.flow_name,
                &super::plan::lines_cursor_key(self.flow.source_system, l, em.name()),
            )?;
            let settled = match &doc_run {
                Some(run) => lines_settled(self.state, read.as_deref(), run)?,
                None => false,
            };
            return Ok(match no_lines(l, settled) {
                NoLinesDecision::Wait(why) => LinesFor::Wait(why),
                NoLinesDecision::Skip(why) => LinesFor::Skip(why),
                NoLinesDecision::ValueLine => LinesFor::Lines(vec![self.value_line(l, record)]),
            });
        }
        let mut out = Vec::with_capacity(records.len());
        for text in records {
            let Ok(rec) = serde_json::from_str::<Map<String, Value>>(&text) else {
                return Ok(LinesFor::Wait("a stored line is unreadable".into()));
            };
            let mut fields = l.fields.clone();
            for case in l
                .cases
                .iter()
                .filter(|c| super::flow::unmet(&c.when, &rec).is_none())
            {
                fields.extend(case.fields.clone());
            }
            let mut line = Map::new();
            for (src, dst) in &fields {
                if let Some(v) = source_value(&rec, src).and_then(|v| self.target.value(&v)) {
                    line.insert(dst.clone(), v);
                }
            }
            for (k, v) in &l.defaults {
                line.entry(k.clone())
                    .or_insert_with(|| Value::String(v.clone()));
            }
            if let Some(item) = &l.item {
                match parent_id(self.flow, item, &rec, &|m, id| self.recall(m, id))? {
                    ParentId::Id(pid) => {
                        match self.state.sink_link(self.flow_name, &item.source, &pid)? {
                            Some(link) => {
                                line.insert(item.field.clone(), Value::String(link.target_key));
                            }
                            None => {
                                return Ok(LinesFor::Wait(format!(
                                    "a line's {} {pid} has no target record yet",
                                    item.source
                                )));
                            }
                        }
                    }
                    ParentId::None | ParentId::Unresolved(_) => {
                        return Ok(LinesFor::Wait(format!("a line has no {}", item.column)));
                    }
                }
            }
            out.push(Value::Object(line));
        }
        Ok(LinesFor::Lines(out))
    }

    /// The one line of a document without lines (`lines.when_none.action = "value_line"`):
    /// its mapped fields from the document, then the configured values.
    fn value_line(&self, l: &super::flow::Lines, record: &Map<String, Value>) -> Value {
        let mut line = Map::new();
        for (src, dst) in &l.when_none.fields {
            if let Some(v) = source_value(record, src).and_then(|v| self.target.value(&v)) {
                line.insert(dst.clone(), v);
            }
        }
        for (k, v) in &l.when_none.defaults {
            line.entry(k.clone()).or_insert_with(|| v.clone());
        }
        Value::Object(line)
    }

    /// The fields last written for this record (the mapping of the source version the ledger
    /// holds), when that job's record is known.
    fn written_fields(
        &self,
        em: &EntityMap,
        j: &JobRef<'_>,
        version: Option<i64>,
    ) -> Result<Option<Map<String, Value>>> {
        let Some(text) =
            self.state
                .sink_record_at(self.flow_name, j.source_entity, j.source_id, version)?
        else {
            return Ok(None);
        };
        let Ok(prev) = serde_json::from_str::<Map<String, Value>>(&text) else {
            return Ok(None);
        };
        Ok(Some(self.map_fields(em, &prev)?.0))
    }

    #[allow(clippy::too_many_arguments)]
    fn failed_write(
        &self,
        j: &JobRef<'_>,
        t: &mut Trail,
        method: &str,
        req: String,
        key: Option<String>,
        ms: u64,
        e: WriteError,
    ) -> Outcome {
        let ambiguous = matches!(e, WriteError::Ambiguous { .. });
        let reason = if ambiguous {
            format!(
                "no answer to {method} ({}): it may have been applied; the next attempt searches before writing",
                e.reason()
            )
        } else {
            e.reason().to_string()
        };
        t.audit(
            j,
            self.flow_name,
            AuditEntry {
                action: AuditAction::Failed,
                method: Some(method.into()),
                request: Some(req),
                status: e.status(),
                target_key: key,
                ms,
                error: Some(reason.clone()),
                ..AuditEntry::default()
            },
        );
        Outcome::Failed { reason, ambiguous }
    }

    /// The record's number (allocated once, kept across attempts), moved on while the target
    /// already has that number on a record that is not this one.
    async fn number(
        &self,
        em: &EntityMap,
        j: &JobRef<'_>,
        t: &mut Trail,
        n: &super::flow::NumberScheme,
    ) -> Result<std::result::Result<String, String>> {
        use chrono::Datelike;
        let year = chrono::Utc::now().year();
        let (prefix, _, _) = n.parts(year);
        let mut renumber = false;
        for _ in 0..100 {
            let num = self.state.sink_number(
                self.flow_name,
                j.source_entity,
                j.source_id,
                &prefix,
                renumber,
                |seq| n.render(year, seq),
            )?;
            let taken = match self
                .lookup(em, j, t, &[(n.field.clone(), num.clone())])
                .await?
            {
                Err(reason) => return Ok(Err(reason)),
                Ok(found) => found.iter().any(|r| match &em.external_id_field {
                    Some(x) => r.get(x).and_then(Value::as_str) != Some(j.source_id),
                    // Without an external id, a record holding our number is taken to be the
                    // one a lost create saved (the natural-key search will link it).
                    None => false,
                }),
            };
            if !taken {
                return Ok(Ok(num));
            }
            renumber = true;
        }
        Ok(Err(format!(
            "no free {} after 100 numbers of `{}`",
            n.field, n.format
        )))
    }

    /// Records of the mapping's hub matching `equals`; a failed search is audited and is an
    /// error for the job, never "not found" (creating after a failed search could duplicate).
    async fn lookup(
        &self,
        em: &EntityMap,
        j: &JobRef<'_>,
        t: &mut Trail,
        equals: &[(String, String)],
    ) -> Result<std::result::Result<Vec<Map<String, Value>>, String>> {
        let hub = em.target.as_str();
        let started = Instant::now();
        let res = self.target.search(hub, equals).await;
        let fields: Vec<&str> = equals.iter().map(|(f, _)| f.as_str()).collect();
        Ok(res.map_err(|e| {
            let reason = format!("search failed: {}", e.reason());
            t.audit(
                j,
                self.flow_name,
                AuditEntry {
                    action: AuditAction::Failed,
                    method: Some("GET".into()),
                    request: Some(format!("GET /{hub} filterHash=[{}]", fields.join(","))),
                    status: e.status(),
                    ms: started.elapsed().as_millis() as u64,
                    error: Some(reason.clone()),
                    ..AuditEntry::default()
                },
            );
            reason
        }))
    }

    /// The one target key matching `equals`. `by_natural`: skip matches whose external id names
    /// another source record (a natural key must not steal a record someone else owns). `Err`
    /// when the search failed or several records match: never guess, never create blind.
    async fn search(
        &self,
        em: &EntityMap,
        j: &JobRef<'_>,
        t: &mut Trail,
        equals: &[(String, String)],
        by_natural: bool,
    ) -> Result<Found> {
        let found = match self.lookup(em, j, t, equals).await? {
            Ok(f) => f,
            Err(reason) => return Ok(Err(reason)),
        };
        let hub = em.target.as_str();
        let candidates: Vec<_> = found
            .iter()
            .filter(|r| {
                !by_natural
                    || em.external_id_field.as_ref().is_none_or(|x| {
                        match r.get(x).and_then(Value::as_str).map(str::trim) {
                            None | Some("") => true,
                            Some(v) => v == j.source_id,
                        }
                    })
            })
            .collect();
        if candidates.len() > 1 {
            let fields: Vec<&str> = equals.iter().map(|(f, _)| f.as_str()).collect();
            let reason = format!(
                "{} {hub} records match [{}]: link one by hand (the sink never guesses)",
                candidates.len(),
                fields.join(",")
            );
            t.audit(
                j,
                self.flow_name,
                AuditEntry {
                    action: AuditAction::Failed,
                    method: Some("GET".into()),
                    status: Some(200),
                    error: Some(reason.clone()),
                    ..AuditEntry::default()
                },
            );
            return Ok(Err(reason));
        }
        let key = candidates
            .first()
            .and_then(|r| r.get(self.target.profile().key_field(hub)))
            .and_then(Value::as_str)
            .map(String::from);
        // A match by natural key is a decision someone may want to review: audit it.
        if by_natural && let Some(k) = &key {
            let fields: Vec<&str> = equals.iter().map(|(f, _)| f.as_str()).collect();
            t.audit(
                j,
                self.flow_name,
                AuditEntry {
                    action: AuditAction::Match,
                    method: Some("GET".into()),
                    request: Some(format!("matched on [{}]", fields.join(","))),
                    status: Some(200),
                    target_key: Some(k.clone()),
                    ..AuditEntry::default()
                },
            );
        }
        Ok(Ok(key))
    }
}

/// A document's lines, or why it has none to send.
enum LinesFor {
    Lines(Vec<Value>),
    Wait(String),
    Skip(String),
}

/// A job stopped by a failed or ambiguous search (already audited).
fn failed_search(reason: String) -> Outcome {
    Outcome::Failed {
        reason,
        ambiguous: false,
    }
}

/// The top-level field of a nested target field (`prices` of `prices/0/price`).
fn group_of(field: &str) -> Option<&str> {
    field.split_once('/').map(|(g, _)| g)
}

/// A flat body whose nested target fields (`address/locality`, `prices/0/price`) become JSON
/// objects and arrays (a numeric segment is an array index).
fn nest(body: Map<String, Value>) -> Map<String, Value> {
    let mut out = Value::Object(Map::new());
    for (field, v) in body {
        let mut at = &mut out;
        let segments: Vec<&str> = field.split('/').collect();
        for (i, seg) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            let next_is_index = segments
                .get(i + 1)
                .is_some_and(|n| n.parse::<usize>().is_ok());
            let empty = || {
                if next_is_index {
                    Value::Array(Vec::new())
                } else {
                    Value::Object(Map::new())
                }
            };
            at = match at {
                Value::Array(items) => {
                    let idx = seg.parse::<usize>().unwrap_or(items.len());
                    while items.len() <= idx {
                        items.push(Value::Null);
                    }
                    if items[idx].is_null() && !last {
                        items[idx] = empty();
                    }
                    &mut items[idx]
                }
                Value::Object(m) => m.entry((*seg).to_string()).or_insert_with(empty),
                // A field both plain and nested (`a` and `a/b`): the nested one wins.
                other => {
                    *other = Value::Object(Map::new());
                    match other {
                        Value::Object(m) => m.entry((*seg).to_string()).or_insert_with(empty),
                        _ => unreachable!("just made an object"),
                    }
                }
            };
            if last {
                *at = v.clone();
            }
        }
    }
    match out {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn nested_target_fields_become_objects_and_arrays() {
        let flat = rec(serde_json::json!({
            "name": "Acme",
            "address/locality": "Lyon",
            "address/country": "FR",
            "prices/0/price": 12.5,
            "prices/0/currency": "USD",
        }));
        assert_eq!(
            Value::Object(nest(flat)),
            serde_json::json!({
                "name": "Acme",
                "address": {"locality": "Lyon", "country": "FR"},
                "prices": [{"price": 12.5, "currency": "USD"}],
            })
        );
        assert_eq!(group_of("prices/0/price"), Some("prices"));
        assert_eq!(group_of("name"), None);
    }

    #[test]
    fn custom_fields_resolve_by_name() {
        let r = rec(serde_json::json!({
            "id": 1,
            "_ml_extra": "{\"po_number\":\"PO-7\",\"sku_family\":\"X\"}",
            "sku_family": "typed",
        }));
        assert_eq!(
            source_value(&r, "custom.po_number").as_deref(),
            Some(&Value::from("PO-7"))
        );
        // A typed column (after `mlc discover`) wins over the raw extra.
        assert_eq!(
            source_value(&r, "custom.sku_family").as_deref(),
            Some(&Value::from("typed"))
        );
        assert!(source_value(&r, "custom.missing").is_none());
    }

    fn rec(v: serde_json::Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn parents_follow_their_type_and_go_through_contacts() {
        let flow = FlowFile::load(Path::new("/nonexistent"), "dynamics_to_deltek").unwrap();
        let contact = flow.mapping("contact").unwrap().parent.clone().unwrap();
        let opp = flow.mapping("opportunity").unwrap().parent.clone().unwrap();
        let none = |_: &str, _: &str| Ok(None);
        let c = |ty: &str| {
            rec(serde_json::json!({"parentcustomerid": "A1", "parentcustomerid_type": ty}))
        };
        assert_eq!(
            parent_id(&flow, &contact, &c("account"), &none).unwrap(),
            ParentId::Id("A1".into())
        );
        // A contact's parent that is another contact: written without a firm.
        assert_eq!(
            parent_id(&flow, &contact, &c("contact"), &none).unwrap(),
            ParentId::None
        );
        // An opportunity on a contact goes to the contact's account ...
        let o = rec(serde_json::json!({"customerid": "C1", "customerid_type": "contact"}));
        let known = |m: &str, id: &str| {
            assert_eq!((m, id), ("contact", "C1"));
            Ok(Some(c("account")))
        };
        assert_eq!(
            parent_id(&flow, &opp, &o, &known).unwrap(),
            ParentId::Id("A1".into())
        );
        // ... and waits when that contact has no account, or is unknown.
        let orphan = |_: &str, _: &str| Ok(Some(c("contact")));
        assert!(matches!(
            parent_id(&flow, &opp, &o, &orphan).unwrap(),
            ParentId::Unresolved(_)
        ));
        assert!(matches!(
            parent_id(&flow, &opp, &o, &none).unwrap(),
            ParentId::Unresolved(_)
        ));
    }
}

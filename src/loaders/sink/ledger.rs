//! Apply one job idempotently, without an idempotency key (DESIGN.md §9): the ledger link
//! first; else search the target (external-id field, then natural key) and link what is found;
//! else create; then record the link. A create whose answer was lost is never sent again
//! blindly: the job fails as ambiguous, and its next attempt goes through the search first,
//! finds the record the server did save, and links it.

use std::time::Instant;

use serde_json::{Map, Value};

use super::deltek::{DeltekTarget, WriteError, key_field};
use super::flow::{EntityMap, FlowFile, ParentRef};
use crate::error::Result;
use crate::state::{AuditEntry, StateStore, job_status};

/// What one attempt at a job ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created(String),
    Updated(String),
    /// Found by search and linked (then brought up to date with an update).
    Linked(String),
    /// The target refused, or the answer was lost (`ambiguous`).
    Failed {
        reason: String,
        ambiguous: bool,
    },
    /// A dependency has no target record yet.
    Waiting(String),
    /// The target already holds a newer version of the record (a stale job replayed): nothing
    /// written, so an old failed job can never overwrite newer data.
    Superseded(String),
}

/// The parent's source id when the row points at a parent of the mapped type.
pub fn parent_id(p: &ParentRef, record: &Map<String, Value>) -> Option<String> {
    let id = record.get(&p.column)?.as_str()?.trim();
    if id.is_empty() {
        return None;
    }
    if let Some(tc) = &p.type_column {
        let ty = record.get(tc).and_then(Value::as_str).unwrap_or_default();
        if !ty.eq_ignore_ascii_case(&p.source) {
            return None;
        }
    }
    Some(id.to_string())
}

/// A source value as the text Vantagepoint fields take (its fields are strings; numbers and
/// booleans are sent as their text, Y/N for booleans).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(if *b { "Y" } else { "N" }.into()),
        other => Some(other.to_string()),
    }
}

/// The target fields of a source record (mapped fields and the owner; not the defaults, the
/// external id or the parent). Also says whether the owner fell back to the default.
pub fn map_fields(
    flow: &FlowFile,
    em: &EntityMap,
    record: &Map<String, Value>,
) -> (Map<String, Value>, bool) {
    let mut out = Map::new();
    for (src, dst) in &em.fields {
        if let Some(v) = record.get(src).and_then(text) {
            out.insert(dst.clone(), Value::String(v));
        }
    }
    let mut defaulted = false;
    if let Some(of) = &em.owner_field {
        let owner = record.get("ownerid").and_then(Value::as_str);
        let mapped = owner.and_then(|o| flow.owners.overrides.get(o));
        match (mapped, &flow.owners.default_employee) {
            (Some(e), _) => {
                out.insert(of.clone(), Value::String(e.clone()));
            }
            (None, Some(d)) => {
                defaulted = true;
                out.insert(of.clone(), Value::String(d.clone()));
            }
            (None, None) => {}
        }
    }
    (out, defaulted)
}

/// A redacted request summary for the audit: method, hub, and the field names sent (values can
/// be personal data; secrets never reach this point, tokens live in the HTTP layer).
fn summary(method: &str, hub: &str, key: Option<&str>, body: &Map<String, Value>) -> String {
    let fields: Vec<&str> = body.keys().map(String::as_str).collect();
    let path = key.map_or_else(|| format!("/{hub}"), |k| format!("/{hub}/{k}"));
    format!(
        "{method} {path}?startWorkflow=N fields=[{}]",
        fields.join(",")
    )
}

/// Everything one job attempt needs.
pub struct JobCtx<'a> {
    pub state: &'a StateStore,
    pub target: &'a DeltekTarget,
    pub flow_name: &'a str,
    pub flow: &'a FlowFile,
}

/// The job's identity, for the audit.
pub struct JobRef<'a> {
    pub job_id: &'a str,
    pub source_entity: &'a str,
    pub source_id: &'a str,
    pub source_version: Option<i64>,
}

impl JobCtx<'_> {
    fn audit(&self, j: &JobRef<'_>, target: &str, a: AuditEntry) -> Result<()> {
        self.state.sink_audit(&AuditEntry {
            flow: self.flow_name.to_string(),
            job_id: j.job_id.to_string(),
            source_entity: j.source_entity.to_string(),
            source_id: j.source_id.to_string(),
            source_version: j.source_version,
            target: target.to_string(),
            ..a
        })
    }

    /// One attempt at a job: decides, writes, audits every call, records the ledger link and
    /// the job's status. Fails only on state-store errors; target failures are outcomes.
    pub async fn run(
        &self,
        em: &EntityMap,
        j: &JobRef<'_>,
        record: &Map<String, Value>,
    ) -> Result<Outcome> {
        let outcome = self.attempt(em, j, record).await?;
        let (status, error, ambiguous) = match &outcome {
            Outcome::Created(_)
            | Outcome::Updated(_)
            | Outcome::Linked(_)
            | Outcome::Superseded(_) => (job_status::APPLIED, None, false),
            Outcome::Failed { reason, ambiguous } => {
                (job_status::FAILED, Some(reason.as_str()), *ambiguous)
            }
            Outcome::Waiting(why) => (job_status::WAITING, Some(why.as_str()), false),
        };
        self.state.sink_finish_job(
            j.job_id,
            status,
            error,
            ambiguous,
            !matches!(outcome, Outcome::Waiting(_)),
        )?;
        Ok(outcome)
    }

    async fn attempt(
        &self,
        em: &EntityMap,
        j: &JobRef<'_>,
        record: &Map<String, Value>,
    ) -> Result<Outcome> {
        let hub = em.target.as_str();
        let target = format!("{}.{hub}", self.flow.target_system);
        // A malformed change row (no primary key) is never written, however often replayed.
        if j.source_id.starts_with(super::plan::MALFORMED) {
            let why = "malformed change row: no primary key".to_string();
            self.audit(
                j,
                &target,
                AuditEntry {
                    action: "failed".into(),
                    error: Some(why.clone()),
                    ..AuditEntry::default()
                },
            )?;
            return Ok(Outcome::Failed {
                reason: why,
                ambiguous: false,
            });
        }
        if let Some(l) = self
            .state
            .sink_link(self.flow_name, j.source_entity, j.source_id)?
            .filter(|l| l.source_version.is_some() && l.source_version > j.source_version)
        {
            self.audit(
                j,
                &target,
                AuditEntry {
                    action: "noop".into(),
                    target_key: Some(l.target_key.clone()),
                    error: Some(format!(
                        "superseded: the target holds version {}",
                        l.source_version.unwrap_or_default()
                    )),
                    ..AuditEntry::default()
                },
            )?;
            return Ok(Outcome::Superseded(l.target_key));
        }
        let (mut body, defaulted) = map_fields(self.flow, em, record);
        let owner_note = if defaulted { " owner=default" } else { "" };
        // The parent must exist in the target first.
        if let Some(p) = &em.parent
            && let Some(pid) = parent_id(p, record)
        {
            match self.state.sink_link(self.flow_name, &p.source, &pid)? {
                Some(l) => {
                    body.insert(p.field.clone(), Value::String(l.target_key));
                }
                None => {
                    let why = format!("its {} {pid} has no target record yet", p.source);
                    self.audit(
                        j,
                        &target,
                        AuditEntry {
                            action: "waiting".into(),
                            error: Some(why.clone()),
                            ..AuditEntry::default()
                        },
                    )?;
                    return Ok(Outcome::Waiting(why));
                }
            }
        }
        if let Some(x) = &em.external_id_field {
            body.insert(x.clone(), Value::String(j.source_id.to_string()));
        }
        // 1. The ledger.
        let linked = self
            .state
            .sink_link(self.flow_name, j.source_entity, j.source_id)?
            .map(|l| (l.target_key, false));
        // 2. Search: external id, then natural key.
        let found = match linked {
            Some(l) => Some(l),
            None => match self.search(em, j, &target, &body).await? {
                Ok(k) => k.map(|k| (k, true)),
                Err(reason) => {
                    return Ok(Outcome::Failed {
                        reason,
                        ambiguous: false,
                    });
                }
            },
        };
        let started = Instant::now();
        match found {
            Some((key, by_search)) => {
                let req = summary("PUT", hub, Some(&key), &body);
                let res = self.target.update(hub, &key, &body).await;
                let ms = started.elapsed().as_millis() as u64;
                match res {
                    Ok((_, status)) => {
                        let action = if by_search { "link" } else { "update" };
                        let request = format!("{req}{owner_note}");
                        self.written(j, &target, hub, &key, action, "PUT", request, status, ms)?;
                        Ok(if by_search {
                            Outcome::Linked(key)
                        } else {
                            Outcome::Updated(key)
                        })
                    }
                    Err(e) => self.failed(j, &target, "PUT", req, Some(key), ms, e),
                }
            }
            None => {
                for (k, v) in &em.defaults {
                    body.entry(k.clone())
                        .or_insert_with(|| Value::String(v.clone()));
                }
                let req = summary("POST", hub, None, &body);
                let res = self.target.create(hub, &body).await;
                let ms = started.elapsed().as_millis() as u64;
                match res {
                    Ok((key, status)) => {
                        let request = format!("{req}{owner_note}");
                        self.written(j, &target, hub, &key, "create", "POST", request, status, ms)?;
                        Ok(Outcome::Created(key))
                    }
                    Err(e) => self.failed(j, &target, "POST", req, None, ms, e),
                }
            }
        }
    }

    /// Records a successful write: the ledger link (source → target key, at this source
    /// version) and its audit entry.
    #[allow(clippy::too_many_arguments)]
    fn written(
        &self,
        j: &JobRef<'_>,
        target: &str,
        hub: &str,
        key: &str,
        action: &str,
        method: &str,
        request: String,
        status: u16,
        ms: u64,
    ) -> Result<()> {
        self.state.sink_set_link(
            self.flow_name,
            j.source_entity,
            j.source_id,
            hub,
            key,
            j.source_version,
        )?;
        self.audit(
            j,
            target,
            AuditEntry {
                action: action.into(),
                method: Some(method.into()),
                request: Some(request),
                status: Some(status),
                target_key: Some(key.to_string()),
                ms,
                ..AuditEntry::default()
            },
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn failed(
        &self,
        j: &JobRef<'_>,
        target: &str,
        method: &str,
        req: String,
        key: Option<String>,
        ms: u64,
        e: WriteError,
    ) -> Result<Outcome> {
        let ambiguous = matches!(e, WriteError::Ambiguous { .. });
        let reason = if ambiguous {
            format!(
                "no answer to {method} ({}): it may have been applied; the next attempt searches before writing",
                e.reason()
            )
        } else {
            e.reason().to_string()
        };
        self.audit(
            j,
            target,
            AuditEntry {
                action: "failed".into(),
                method: Some(method.into()),
                request: Some(req),
                status: e.status(),
                target_key: key,
                ms,
                error: Some(reason.clone()),
                ..AuditEntry::default()
            },
        )?;
        Ok(Outcome::Failed { reason, ambiguous })
    }

    /// The target key found by the external id, else by the natural key. `Err` when the search
    /// failed or the natural key is ambiguous: never guess, never create blind.
    async fn search(
        &self,
        em: &EntityMap,
        j: &JobRef<'_>,
        target: &str,
        body: &Map<String, Value>,
    ) -> Result<std::result::Result<Option<String>, String>> {
        let hub = em.target.as_str();
        let mut tries: Vec<Vec<(String, String)>> = Vec::new();
        if let Some(x) = &em.external_id_field {
            tries.push(vec![(x.clone(), j.source_id.to_string())]);
        }
        let natural: Option<Vec<(String, String)>> = em
            .natural_key
            .iter()
            .map(|f| {
                body.get(f)
                    .and_then(Value::as_str)
                    .map(|v| (f.clone(), v.to_string()))
            })
            .collect();
        if let Some(n) = natural.filter(|n| !n.is_empty()) {
            tries.push(n);
        }
        for (i, equals) in tries.into_iter().enumerate() {
            // The natural key (after the external id) must not steal a record another source
            // record already owns: skip matches whose external id names someone else.
            let by_natural = i > 0 || em.external_id_field.is_none();
            let started = Instant::now();
            let res = self.target.search(hub, &equals).await;
            let ms = started.elapsed().as_millis() as u64;
            let fields: Vec<&str> = equals.iter().map(|(f, _)| f.as_str()).collect();
            let req = format!("GET /{hub} filterHash=[{}]", fields.join(","));
            match res {
                Err(e) => {
                    let reason = format!("search failed: {}", e.reason());
                    self.audit(
                        j,
                        target,
                        AuditEntry {
                            action: "failed".into(),
                            method: Some("GET".into()),
                            request: Some(req),
                            status: e.status(),
                            ms,
                            error: Some(reason.clone()),
                            ..AuditEntry::default()
                        },
                    )?;
                    return Ok(Err(reason));
                }
                Ok(found) => {
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
                        let reason = format!(
                            "{} {hub} records match [{}]: link one by hand (the sink never guesses)",
                            candidates.len(),
                            fields.join(",")
                        );
                        self.audit(
                            j,
                            target,
                            AuditEntry {
                                action: "failed".into(),
                                method: Some("GET".into()),
                                request: Some(req),
                                status: Some(200),
                                ms,
                                error: Some(reason.clone()),
                                ..AuditEntry::default()
                            },
                        )?;
                        return Ok(Err(reason));
                    }
                    if let Some(k) = candidates
                        .first()
                        .and_then(|r| r.get(key_field(hub)))
                        .and_then(Value::as_str)
                    {
                        return Ok(Ok(Some(k.to_string())));
                    }
                }
            }
        }
        Ok(Ok(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_of_the_mapped_type_only() {
        let p = ParentRef {
            column: "parentcustomerid".into(),
            type_column: Some("parentcustomerid_type".into()),
            source: "account".into(),
            field: "ClientID".into(),
        };
        let rec = |ty: &str| {
            serde_json::json!({"parentcustomerid": "A1", "parentcustomerid_type": ty})
                .as_object()
                .cloned()
                .unwrap()
        };
        assert_eq!(parent_id(&p, &rec("account")), Some("A1".into()));
        assert_eq!(parent_id(&p, &rec("contact")), None);
    }
}

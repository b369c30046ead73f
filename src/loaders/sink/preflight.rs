//! Pre-flight: a flow checked against the target tenant's own schema before any write. The
//! target's metadata (Business Central `$metadata`) says which fields each hub has and how long
//! a text may be; a flow that maps a field the tenant lacks, or searches by an external-id field
//! it lacks, is reported once per mapping with the fix, and a record whose value is longer than
//! the tenant takes is `blocked` with the reason instead of sending a request that is certainly
//! refused. Values are never cut unless the mapping lists the field in `truncate`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::flow::{EntityMap, FlowFile};
use super::ledger::source_value;
use super::target::Target;
use crate::error::{Error, Result};

/// What the target's metadata says about one field of a hub.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FieldRule {
    /// Longest text the field takes, in characters.
    pub max_len: Option<u32>,
}

/// The fields of one hub as the target tenant has them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HubSchema {
    pub fields: BTreeMap<String, FieldRule>,
}

/// One problem of a mapping, found before any write.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub mapping: String,
    /// `business_central.customers`.
    pub target: String,
    pub problem: String,
    pub fix: String,
}

/// A flow checked against its target: the problems, and each mapping's hub schema for the
/// per-record checks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Preflight {
    pub problems: Vec<Problem>,
    /// Mappings whose hub publishes no schema the sink reads (nothing checked for them).
    pub unchecked: Vec<String>,
    #[serde(skip)]
    schemas: BTreeMap<String, HubSchema>,
}

/// Reads each mapping's hub schema from the target and checks the flow against it.
pub async fn check(flow: &FlowFile, target: &dyn Target) -> Result<Preflight> {
    let mut out = Preflight::default();
    for em in &flow.entities {
        let name = em.name().to_string();
        let hub_name = format!("{}.{}", flow.target_system, em.target);
        let schema = target.schema(&em.target).await.map_err(|e| {
            Error::Config(format!(
                "pre-flight: cannot read {hub_name}'s metadata: {}",
                e.reason()
            ))
        })?;
        let Some(schema) = schema else {
            out.unchecked.push(name);
            continue;
        };
        let mut problem = |problem: String, fix: String| {
            out.problems.push(Problem {
                mapping: name.clone(),
                target: hub_name.clone(),
                problem,
                fix,
            })
        };
        if let Some(x) = &em.external_id_field
            && !schema.fields.contains_key(x)
        {
            problem(
                format!("the external-id field `{x}` does not exist in this tenant's {hub_name}"),
                format!(
                    "create it in the tenant (README: \"Sink stage\", the external-id field), or set `external_id_field` of mapping `{}` in a project overlay of the flow to a field the tenant has",
                    em.name()
                ),
            );
        }
        let mapped = em.fields.values().chain(em.defaults.keys());
        for f in mapped.filter(|f| !f.contains('/') && !schema.fields.contains_key(*f)) {
            problem(
                format!("`{f}` is not a field of this tenant's {hub_name}"),
                format!(
                    "map it to a field {hub_name} has, or drop it from mapping `{}`",
                    em.name()
                ),
            );
        }
        for f in &em.truncate {
            if schema.fields.get(f).is_none_or(|r| r.max_len.is_none()) {
                problem(
                    format!("`truncate` names `{f}`, which has no length limit in {hub_name}"),
                    "list only text fields with a maximum length".into(),
                );
            }
        }
        out.schemas.insert(name, schema);
    }
    Ok(out)
}

impl Preflight {
    /// Whether the flow can run as it is (no problem found).
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Why a write of `record` through `em` would certainly be refused, if it would: a problem
    /// of its mapping, or a mapped value longer than the tenant takes.
    pub fn blocked(&self, em: &EntityMap, record: &Map<String, Value>) -> Option<String> {
        if let Some(p) = self.problems.iter().find(|p| p.mapping == em.name()) {
            return Some(format!("{} ({})", p.problem, p.fix));
        }
        let schema = self.schemas.get(em.name())?;
        for (src, dst) in &em.fields {
            let Some(max) = schema.fields.get(dst).and_then(|r| r.max_len) else {
                continue;
            };
            let Some(Value::String(s)) = source_value(record, src).as_deref().cloned() else {
                continue;
            };
            let n = s.chars().count();
            if n > max as usize && !em.truncate.contains(dst) {
                return Some(format!(
                    "`{dst}` would be {n} characters and {} takes at most {max}: shorten `{src}` in the source, or list `{dst}` in the mapping's `truncate`",
                    em.target
                ));
            }
        }
        None
    }

    /// Cuts the values of the mapping's `truncate` fields in `body` (the target's field names)
    /// to the tenant's maximum length.
    pub fn truncate(&self, em: &EntityMap, body: &mut Map<String, Value>) {
        let Some(schema) = self.schemas.get(em.name()) else {
            return;
        };
        for f in &em.truncate {
            let Some(max) = schema.fields.get(f).and_then(|r| r.max_len) else {
                continue;
            };
            if let Some(Value::String(s)) = body.get_mut(f)
                && s.chars().count() > max as usize
            {
                *s = s.chars().take(max as usize).collect();
            }
        }
    }
}

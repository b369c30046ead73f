//! Pre-flight: a flow checked against the target tenant's own schema before any write. The
//! target's metadata (Business Central `$metadata`, Vantagepoint `metadata/{hub}`) says which
//! fields each hub has, which a new record must have and how long a text may be; a flow that
//! maps a field the tenant lacks, searches by an external-id field it lacks, or gives a required
//! field no value is reported once per mapping with the fix, and a record the tenant would
//! certainly refuse is `blocked` with the reason instead of sending the request. Rules the
//! metadata does not show (Vantagepoint's screen-designer required fields) are learned from the
//! first refusal ([`learned_from`]) and kept per target connection, so the rest of the mapping
//! is blocked with the same reason. Values are never cut unless the mapping lists the field in
//! `truncate`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::flow::{EntityMap, FlowFile, Mode, source_value};
use super::target::{HubSchema, Target};
use crate::error::{Error, Result};
use crate::state::LearnedRule;

/// One problem of a mapping, found before any write.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub mapping: String,
    /// `business_central.customers`.
    pub target: String,
    pub problem: String,
    pub fix: String,
    /// Only a create is refused for it (a required field); updates go on.
    pub creates_only: bool,
}

/// A flow checked against its target: the problems, and each mapping's hub schema for the
/// per-record checks.
#[derive(Debug, Default, Serialize)]
pub struct Preflight {
    pub problems: Vec<Problem>,
    /// Mappings whose hub publishes no schema the sink reads (nothing checked for them).
    pub unchecked: Vec<String>,
    /// Rules of the tenant learned from refusals, for this flow's hubs.
    pub learned: Vec<LearnedRule>,
    #[serde(skip)]
    schemas: BTreeMap<String, HubSchema>,
    /// Mapping → its hub's key field, where the server assigns it on create.
    #[serde(skip)]
    server_keys: BTreeMap<String, String>,
    /// Required fields learned during this apply: hub → field.
    #[serde(skip)]
    learned_now: std::sync::Mutex<Vec<(String, String)>>,
}

/// The target fields a mapping gives a value on create: its fields, defaults, constants,
/// owner fields, parent reference, external id, lines and its hub's key (client-assigned
/// numbers, or assigned by the server).
fn given_fields(em: &EntityMap, target: &dyn Target) -> Vec<String> {
    let mut given: Vec<String> = em
        .fields
        .values()
        .chain(em.defaults.keys())
        .chain(em.constants.keys())
        .chain(em.owner_fields.iter())
        .cloned()
        .collect();
    given.extend(em.parent.as_ref().map(|p| p.field.clone()));
    given.extend(em.external_id_field.clone());
    given.extend(em.lines.as_ref().map(|l| l.field.clone()));
    given.push(target.profile().key_field(&em.target).to_string());
    given
}

/// The field a refusal says the tenant requires (Vantagepoint: "`Type` is required."), if it
/// says so: a rule of the tenant, not of one record.
pub fn learned_from(reason: &str) -> Option<String> {
    let field = reason
        .trim()
        .strip_suffix("is required.")?
        .split_whitespace()
        .last()?
        .trim_matches('`');
    (!field.is_empty() && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then(|| field.to_string())
}

/// Reads each mapping's hub schema from the target, adds the rules `learned` from earlier
/// refusals, and checks the flow against it.
pub async fn check(
    flow_name: &str,
    flow: &FlowFile,
    target: &dyn Target,
    learned: &[LearnedRule],
) -> Result<Preflight> {
    let mut out = Preflight::default();
    for em in &flow.entities {
        let name = em.name().to_string();
        // Where this tenant's settings for the mapping go.
        let settings = format!(
            "[connections.{}.sink.{flow_name}.{name}]",
            target.profile().connection
        );
        let hub_name = format!("{}.{}", flow.target_system, em.target);
        let schema = target.schema(&em.target).await.map_err(|e| {
            Error::config(format!(
                "pre-flight: cannot read {hub_name}'s metadata: {}",
                e.reason()
            ))
        })?;
        let rules: Vec<&LearnedRule> = learned.iter().filter(|r| r.hub == em.target).collect();
        let Some(mut schema) = schema.or_else(|| (!rules.is_empty()).then(HubSchema::default))
        else {
            out.unchecked.push(name);
            continue;
        };
        for r in &rules {
            schema.fields.entry(r.field.clone()).or_default().required = true;
            if !out.learned.contains(r) {
                out.learned.push((*r).clone());
            }
        }
        let mut problem = |problem: String, fix: String, creates_only: bool| {
            out.problems.push(Problem {
                mapping: name.clone(),
                target: hub_name.clone(),
                problem,
                fix,
                creates_only,
            })
        };
        if let Some(x) = &em.external_id_field
            && !schema.fields.contains_key(x)
        {
            problem(
                format!("the external-id field `{x}` does not exist in this tenant's {hub_name}"),
                format!(
                    "create it in the tenant (README: \"Sink stage\", the external-id field), or name the tenant's own in mlc.toml: {settings} external_id_field = \"…\" (\"\" for none)"
                ),
                false,
            );
        }
        // Fields the tenant lacks; a learned rule's field may not be in the metadata.
        let known = |f: &str| schema.fields.contains_key(f) || rules.iter().any(|r| r.field == f);
        let mapped = em.fields.values().chain(em.defaults.keys());
        for f in mapped.filter(|f| !f.contains('/') && !known(f)) {
            problem(
                format!("`{f}` is not a field of this tenant's {hub_name}"),
                format!("leave it out for this tenant in mlc.toml: {settings} omit = [\"{f}\"]"),
                false,
            );
        }
        for f in &em.truncate {
            if schema.fields.get(f).is_none_or(|r| r.max_len.is_none()) {
                problem(
                    format!("`truncate` names `{f}`, which has no length limit in {hub_name}"),
                    "list only text fields with a maximum length".into(),
                    false,
                );
            }
        }
        // Required fields the mapping gives no value: every create would be refused (a
        // `match` or `update` mapping never creates).
        let creates = matches!(em.mode, Mode::Upsert | Mode::Seed);
        let given = given_fields(em, target);
        for (f, _) in schema.fields.iter().filter(|(_, r)| creates && r.required) {
            if given.iter().any(|g| g == f) {
                continue;
            }
            let learned = rules
                .iter()
                .find(|r| &r.field == f)
                .map(|r| {
                    format!(
                        " (learned from a refusal on {}: {})",
                        r.learned_at, r.reason
                    )
                })
                .unwrap_or_default();
            problem(
                format!(
                    "this tenant requires `{f}` on a new {hub_name} record, and mapping `{}` gives it no value{learned}",
                    em.name()
                ),
                format!(
                    "give it a value for this tenant in mlc.toml: {settings} defaults = {{ {f} = \"…\" }} (or map a source field to it in a project overlay of the flow); or make it optional in the tenant (then `mlc sink check {flow_name} --forget-learned`)"
                ),
                true,
            );
        }
        if !target.profile().client_keyed(&em.target) {
            out.server_keys.insert(
                name.clone(),
                target.profile().key_field(&em.target).to_string(),
            );
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
    /// of its mapping (those of creates only when `creating`), or a mapped value longer than
    /// the tenant takes.
    pub fn blocked(
        &self,
        em: &EntityMap,
        record: &Map<String, Value>,
        creating: bool,
    ) -> Option<String> {
        if let Some(p) = self
            .problems
            .iter()
            .find(|p| p.mapping == em.name() && (creating || !p.creates_only))
        {
            return Some(format!("{} (fix: {})", p.problem, p.fix));
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
                    "`{dst}` would be {n} characters and {} takes at most {max}: shorten `{src}` in the source, or list `{dst}` in `truncate` (the mapping's, or this tenant's sink settings in mlc.toml)",
                    em.target
                ));
            }
        }
        None
    }

    /// Why the tenant would refuse to create `body` (the request as it would be sent): a
    /// required field without a value.
    pub fn missing_required(&self, em: &EntityMap, body: &Map<String, Value>) -> Option<String> {
        let empty = HubSchema::default();
        let schema = self.schemas.get(em.name()).unwrap_or(&empty);
        let blank = |f: &str| match body.get(f) {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.trim().is_empty(),
            Some(_) => false,
        };
        let learned = self
            .learned_now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(hub, _)| *hub == em.target)
            .map(|(_, f)| f.clone())
            .collect::<Vec<_>>();
        let mut missing: Vec<&str> = schema
            .fields
            .iter()
            .filter(|(f, r)| r.required && blank(f) && !self.server_assigned(em, f))
            .map(|(f, _)| f.as_str())
            .collect();
        for f in &learned {
            if blank(f) && !missing.contains(&f.as_str()) {
                missing.push(f);
            }
        }
        (!missing.is_empty()).then(|| {
            format!(
                "this tenant requires {} on a new {} record, and this record has no value for it",
                missing
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                em.target
            )
        })
    }

    /// Takes a rule learned from a refusal during this apply: the next creates of `hub`
    /// without `field` are blocked instead of sent.
    pub fn learn(&self, hub: &str, field: &str) {
        self.learned_now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((hub.to_string(), field.to_string()));
    }

    /// The key the server assigns on create (not the client's to give).
    fn server_assigned(&self, em: &EntityMap, field: &str) -> bool {
        self.server_keys.get(em.name()).is_some_and(|k| k == field)
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

//! The tenant's live schema (DESIGN.md §4): what a connection's tenant really has, read from its
//! own metadata (Dataverse `EntityDefinitions`, Business Central `$metadata`, Deltek
//! `metadata/{hub}`, Pipedrive `*Fields`), cached in the state store, and reconciled with the
//! catalog into the stream a run actually reads.
//!
//! Why: the catalog is a default, not a contract. Real tenants lack columns (older versions,
//! solutions not installed, field security), lack whole entities, and add their own fields. So
//! a run never requests a field the tenant does not have (the column stays NULL and the run says
//! so), skips an entity the tenant does not have (`absent`, not failed), and lands the tenant's
//! own fields as typed columns named from the field's stable identity, never colliding with a
//! catalog column. Where the metadata cannot be read, the catalog is used as is and a field the
//! tenant refuses in a request is learned from its error (see [`refused_field`]).
//!
//! Each system's `systems::<system>::metadata` turns its metadata into [`LiveEntity`]; this
//! module holds what they share: the cache, the naming of new columns (remembered per field, so
//! a renamed Pipedrive field never moves its values to another column; the naming rules are in
//! `spec::naming`) and the reconciliation.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::config::Connection;
use crate::error::{Error, Result};
use crate::http::Endpoint;
use crate::spec::live::{LiveEntity, LiveField, LiveSchema};
use crate::spec::naming::unique_name;
use crate::spec::{Column, Stream};
use crate::state::StateStore;

/// What reconciling a stream with its tenant changed, for the run summary, the run history and
/// `mlc catalog diff`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SchemaReport {
    /// The tenant does not have the entity: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_absent: Option<String>,
    /// The metadata could not be read: why (the catalog was read as it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_unknown: Option<String>,
    /// Catalog columns the tenant lacks: not requested, NULL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absent_columns: Vec<String>,
    /// Columns the table has for the tenant's own fields: (column, payload field).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub new_columns: Vec<(String, String)>,
    /// Of those, the columns named by this reconciliation (the field is new to mlc).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub named_now: Vec<String>,
}

impl SchemaReport {
    /// One line per finding, for `mlc catalog diff`: what the tenant lacks and every column it
    /// adds.
    pub fn lines(&self) -> Vec<String> {
        self.render(false)
    }

    /// One line per finding, for a run's notes: like [`SchemaReport::lines`], but only the
    /// columns new in this run (the others were reported when they appeared).
    pub fn run_lines(&self) -> Vec<String> {
        self.render(true)
    }

    fn render(&self, only_new: bool) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(r) = &self.entity_absent {
            out.push(format!("absent in tenant: {r}"));
        }
        if let Some(r) = &self.metadata_unknown {
            out.push(format!(
                "tenant metadata not readable ({r}): catalog read as is"
            ));
        }
        if !self.absent_columns.is_empty() {
            out.push(format!(
                "absent in tenant (NULL): {}",
                self.absent_columns.join(", ")
            ));
        }
        let columns: Vec<&(String, String)> = self
            .new_columns
            .iter()
            .filter(|(c, _)| !only_new || self.named_now.contains(c))
            .collect();
        if !columns.is_empty() {
            out.push(format!(
                "{} from the tenant: {}",
                if only_new { "new columns" } else { "columns" },
                columns
                    .iter()
                    .map(|(c, f)| if c == f {
                        c.clone()
                    } else {
                        format!("{c} ← {f}")
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        out
    }
}

/// A stream as this tenant has it.
#[derive(Debug, Clone)]
pub struct Reconciled {
    /// The catalog's columns (absent ones flagged, never removed, so the table keeps its
    /// shape) followed by the tenant's own fields, with the live schema they came from
    /// (`Stream::live`).
    pub stream: Stream,
    pub report: SchemaReport,
}

/// Reads the live schema of `stream`'s entity from the tenant. Never fails for a metadata
/// problem: an unreadable answer is [`LiveEntity::Unknown`] with the reason. Fails only when
/// the connection itself fails (authentication, network after retries), which the stream's
/// own read would hit too.
pub async fn read(conn: &Connection, ep: &Endpoint, stream: &Stream) -> Result<LiveEntity> {
    match crate::systems::read_metadata(conn, ep, stream).await {
        Ok(e) => Ok(e),
        // The stream's own read would fail the same way: say so once, as that failure.
        Err(e @ (Error::Auth { .. } | Error::Transport { .. } | Error::Stopped(_))) => Err(e),
        Err(e) => Ok(LiveEntity::Unknown {
            reason: e.to_string(),
        }),
    }
}

/// The cached live schema of `stream` on `conn`, read again when older than the connection's
/// TTL (or when `refresh`).
pub async fn live(
    state: &StateStore,
    conn: &Connection,
    ep: &Endpoint,
    stream: &Stream,
    refresh: bool,
) -> Result<LiveSchema> {
    let sid = stream.id.to_string();
    if !refresh
        && let Some(cached) = state.live_schema(&conn.name, &sid)?
        && fresh(&cached.fetched_at, conn.schema_ttl_minutes())
    {
        return Ok(cached);
    }
    let entity = read(conn, ep, stream).await?;
    let schema = LiveSchema {
        fetched_at: chrono::Utc::now().to_rfc3339(),
        entity,
        refused: BTreeSet::new(),
    };
    state.put_live_schema(&conn.name, &sid, &schema)?;
    Ok(schema)
}

fn fresh(fetched_at: &str, ttl_minutes: f64) -> bool {
    chrono::DateTime::parse_from_rfc3339(fetched_at).is_ok_and(|t| {
        let age = chrono::Utc::now() - t.with_timezone(&chrono::Utc);
        (age.num_seconds() as f64) < ttl_minutes * 60.0 && age.num_seconds() >= 0
    })
}

/// Remembers that the tenant refused `field` for `stream` (it is not requested again until the
/// metadata is read again).
pub fn remember_refused(
    state: &StateStore,
    conn: &str,
    stream: &Stream,
    live: &mut LiveSchema,
    field: &str,
) -> Result<()> {
    live.refused.insert(field.to_string());
    state.put_live_schema(conn, &stream.id.to_string(), live)
}

/// The payload field a tenant's 400 answer says does not exist, if that is what it says:
/// OData (`Could not find a property named 'telephone2' on type …`) and Deltek (`Invalid field
/// 'Probability' in fieldFilter`, or `Field 'X' does not exist on <hub>`).
pub fn refused_field(err: &Error) -> Option<String> {
    let Error::Http {
        status: 400, body, ..
    } = err
    else {
        return None;
    };
    for (before, after) in [
        ("Could not find a property named '", "'"),
        ("Invalid field '", "' in fieldFilter"),
        ("Field '", "' does not exist"),
    ] {
        if let Some(rest) = body.split(before).nth(1)
            && let Some((name, _)) = rest.split_once(after)
            && !name.is_empty()
        {
            return Some(name.to_string());
        }
    }
    None
}

/// The stream as `live` says the tenant has it. New columns get their remembered names (or new
/// unique ones, remembered from now on) from the state store.
pub fn reconcile(
    state: &StateStore,
    conn: &str,
    stream: &Stream,
    live: Option<&LiveSchema>,
) -> Result<Reconciled> {
    let mut out = stream.clone();
    let mut report = SchemaReport::default();
    let Some(live) = live else {
        return Ok(Reconciled {
            stream: out,
            report,
        });
    };
    out.live = Some(std::sync::Arc::new(live.clone()));
    let fields = match &live.entity {
        LiveEntity::Absent { reason } => {
            report.entity_absent = Some(reason.clone());
            return Ok(Reconciled {
                stream: out,
                report,
            });
        }
        LiveEntity::Unknown { reason } => {
            report.metadata_unknown = Some(reason.clone());
            None
        }
        LiveEntity::Unlisted => None,
        LiveEntity::Present { fields, .. } => Some(fields),
    };
    let served: Option<BTreeSet<&str>> = match &live.entity {
        LiveEntity::Present {
            fields,
            complete: true,
        } => Some(fields.iter().map(|x| x.source.as_str()).collect()),
        _ => None,
    };
    let keys: BTreeSet<&str> = stream
        .catalog
        .primary_key
        .iter()
        .map(String::as_str)
        .collect();
    // Catalog columns the tenant does not serve (by the field they read; an annotation is
    // served with the field it annotates).
    let mut missing: Vec<usize> = Vec::new();
    for (i, c) in out.catalog.columns.iter().enumerate() {
        if c.context_name().is_some() || keys.contains(c.name.as_str()) {
            continue;
        }
        let base = c.source_name().split('@').next().unwrap_or_default();
        if served.as_ref().is_some_and(|s| !s.contains(base)) || live.refused.contains(base) {
            missing.push(i);
        }
    }
    if let Some(fields) = fields {
        add_tenant_columns(
            state,
            conn,
            &mut out,
            fields,
            &live.refused,
            &mut missing,
            &mut report,
        )?;
    }
    for i in missing {
        let c = &mut out.catalog.columns[i];
        c.absent = true;
        report.absent_columns.push(c.name.clone());
    }
    Ok(Reconciled {
        stream: out,
        report,
    })
}

/// Gives each field of the tenant that lands and that no catalog column reads a column: a
/// catalog column of the name the field wants whose own field the tenant does not serve
/// (drafted by an earlier `mlc discover` under the field's name) reads it from now on;
/// otherwise a new column, named once and then always the same way. Claimed columns leave
/// `missing`.
fn add_tenant_columns(
    state: &StateStore,
    conn: &str,
    out: &mut Stream,
    fields: &[LiveField],
    refused: &BTreeSet<String>,
    missing: &mut Vec<usize>,
    report: &mut SchemaReport,
) -> Result<()> {
    let sid = out.id.to_string();
    let read: BTreeSet<String> = out
        .catalog
        .columns
        .iter()
        .map(|c| c.source_name().to_string())
        .collect();
    let excluded: BTreeSet<&str> = out.catalog.exclude.iter().map(String::as_str).collect();
    let remembered = state.field_columns(conn, &sid)?;
    // Every name a new column must not take: the catalog's, every field's wanted name (a
    // standard field the catalog does not read may be added to it later), and the names
    // already given to other fields.
    let mut taken: BTreeSet<String> = out.catalog.columns.iter().map(|c| c.name.clone()).collect();
    taken.extend(fields.iter().filter(|f| !f.lands).map(|f| f.column.clone()));
    taken.extend(remembered.values().cloned());
    for f in fields {
        if !f.lands
            || read.contains(&f.source)
            || excluded.contains(f.source.as_str())
            || refused.contains(&f.source)
        {
            continue;
        }
        let wanted = remembered.get(&f.identity).unwrap_or(&f.column);
        if let Some(pos) = missing
            .iter()
            .position(|&i| &out.catalog.columns[i].name == wanted)
        {
            let i = missing.remove(pos);
            out.catalog.columns[i].source = Some(f.source.clone());
            state.put_field_column(conn, &sid, &f.identity, wanted)?;
            continue;
        }
        let name = match remembered.get(&f.identity) {
            Some(n) => n.clone(),
            None => {
                let n = unique_name(&f.column, &f.identity, &taken);
                state.put_field_column(conn, &sid, &f.identity, &n)?;
                taken.insert(n.clone());
                report.named_now.push(n.clone());
                n
            }
        };
        if out.catalog.columns.iter().any(|c| c.name == name) {
            continue;
        }
        out.catalog.columns.push(f.as_column(name.clone()));
        report.new_columns.push((name, f.source.clone()));
    }
    Ok(())
}

/// A short hash of the columns a stream reads (name, field, type of every column the tenant
/// serves): when it changes, rows already read lack a column's values and are read again.
pub fn columns_hash(stream: &Stream) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for c in stream.catalog.columns.iter().filter(|c| !c.absent) {
        h.update(c.name.as_bytes());
        h.update(b"=");
        h.update(c.source_name().as_bytes());
        h.update(b":");
        h.update(c.ty.to_string().as_bytes());
        h.update(b";");
    }
    hex::encode(&h.finalize()[..8])
}

/// `defs` with the columns the project's tenants add (from the live schemas its runs cached,
/// named as they named them), so generated dbt sources, LookML views and `mlc catalog show`
/// list what the warehouse tables really have. Streams no run has reconciled are unchanged.
///
/// Fails when the state store cannot be read or a connection selects no stream.
pub fn with_tenant_columns(
    state: &StateStore,
    config: &crate::config::Config,
    mut defs: crate::spec::Definitions,
) -> Result<crate::spec::Definitions> {
    let mut added: Vec<(crate::spec::StreamId, Column)> = Vec::new();
    for conn in config.connections.values() {
        for stream in defs.select(&conn.streams)? {
            let Some(live) = state.live_schema(&conn.name, &stream.id.to_string())? else {
                continue;
            };
            let rec = reconcile(state, &conn.name, stream, Some(&live))?;
            let own = stream.catalog.columns.len();
            added.extend(
                rec.stream
                    .catalog
                    .columns
                    .into_iter()
                    .skip(own)
                    .map(|c| (stream.id.clone(), c)),
            );
        }
    }
    for (id, column) in added {
        if let Some(s) = defs.stream_mut(&id)
            && !s.catalog.columns.iter().any(|c| c.name == column.name)
        {
            s.catalog.columns.push(column);
        }
    }
    Ok(defs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{ColumnType, Definitions};

    fn field(source: &str, column: &str, lands: bool) -> LiveField {
        LiveField {
            source: source.into(),
            identity: source.into(),
            column: column.into(),
            ty: ColumnType::String,
            lands,
            label: None,
            source_type: None,
            options: Default::default(),
        }
    }

    fn state() -> (tempfile::TempDir, StateStore) {
        let dir = tempfile::tempdir().unwrap();
        let st = StateStore::open(&dir.path().join("state.db")).unwrap();
        (dir, st)
    }

    #[test]
    fn absent_columns_are_flagged_and_new_fields_land_unique() {
        let (_d, st) = state();
        let defs = Definitions::builtin().unwrap();
        let s = defs.get(&"dataverse.account".parse().unwrap()).unwrap();
        let mut fields: Vec<LiveField> = s
            .catalog
            .columns
            .iter()
            .filter(|c| !c.is_annotation() && c.source_name() != "telephone2")
            .map(|c| field(c.source_name(), &c.name, false))
            .collect();
        fields.push(field("new_tier", "new_tier", true));
        // Named like a catalog column: must not take it.
        fields.push(LiveField {
            identity: "cr4f2_name".into(),
            ..field("cr4f2_name", "name", true)
        });
        let live = LiveSchema {
            fetched_at: chrono::Utc::now().to_rfc3339(),
            entity: LiveEntity::Present {
                fields,
                complete: true,
            },
            refused: BTreeSet::new(),
        };
        let r = reconcile(&st, "crm", s, Some(&live)).unwrap();
        assert_eq!(r.report.absent_columns, vec!["telephone2"]);
        assert!(!r.stream.select_fields().contains(&"telephone2"));
        let names: Vec<&str> = r
            .report
            .new_columns
            .iter()
            .map(|(c, _)| c.as_str())
            .collect();
        assert_eq!(names[0], "new_tier");
        assert!(names[1].starts_with("name_") && names[1].len() == "name_".len() + 6);
        // Remembered: the same names next time, even if the wanted name changes.
        let again = reconcile(&st, "crm", s, Some(&live)).unwrap();
        assert_eq!(again.report.new_columns, r.report.new_columns);
        assert_eq!(
            r.stream.catalog.columns.len(),
            s.catalog.columns.len() + 2,
            "absent columns stay in the table"
        );
    }

    #[test]
    fn live_schemas_survive_the_state_store() {
        let (_d, st) = state();
        let defs = Definitions::builtin().unwrap();
        let s = defs.get(&"pipedrive.deal".parse().unwrap()).unwrap();
        let mut f = field("a".repeat(40).as_str(), "contract_type", true);
        f.source_type = Some("enum".into());
        f.options = vec![(11, "Annual".into())];
        let live = LiveSchema {
            fetched_at: chrono::Utc::now().to_rfc3339(),
            entity: LiveEntity::Present {
                fields: vec![f],
                complete: false,
            },
            refused: ["Probability".to_string()].into(),
        };
        st.put_live_schema("pd", "pipedrive.deal", &live).unwrap();
        assert_eq!(st.live_schema("pd", "pipedrive.deal").unwrap(), Some(live));
        let _ = s;
        for e in [
            LiveEntity::Unlisted,
            LiveEntity::Absent { reason: "r".into() },
        ] {
            let l = LiveSchema {
                fetched_at: "t".into(),
                entity: e,
                refused: BTreeSet::new(),
            };
            st.put_live_schema("pd", "x", &l).unwrap();
            assert_eq!(st.live_schema("pd", "x").unwrap(), Some(l));
        }
    }

    #[test]
    fn refused_fields_are_read_from_tenant_errors() {
        let e = |body: &str| Error::Http {
            status: 400,
            system: "x".into(),
            method: "GET".into(),
            url: "u".into(),
            body: body.into(),
            retry_after: None,
        };
        assert_eq!(
            refused_field(&e(r#"{"error":{"code":"0x80060888","message":"Could not find a property named 'telephone2' on type 'Microsoft.Dynamics.CRM.account'."}}"#)).as_deref(),
            Some("telephone2")
        );
        assert_eq!(
            refused_field(&e(
                r#"{"message":"Invalid field 'Probability' in fieldFilter"}"#
            ))
            .as_deref(),
            Some("Probability")
        );
        assert_eq!(refused_field(&e("nope")), None);
    }
}

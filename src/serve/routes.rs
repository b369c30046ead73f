//! Which streams and flows an event or a schedule means, resolved once at start from mlc.toml,
//! the stream definitions and the sink flow files: a Dataverse `PrimaryEntityName`, a Pipedrive
//! object or a Business Central entity set → the stream ids of that connection, plus the flows
//! enabled for serve whose source consumes them.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::loaders::sink::flow::FlowFile;
use crate::spec::Definitions;

use super::queue::{Origin, Trigger};
use crate::systems::system::System;

/// One connection's streams as events name them.
#[derive(Debug, Clone)]
pub struct ConnectionRoutes {
    pub system: System,
    /// Every stream id the connection runs.
    pub streams: BTreeSet<String>,
    /// Entity name (`account`) or API entity set (`customers`, `accounts`) → stream id.
    by_name: BTreeMap<String, String>,
}

impl ConnectionRoutes {
    /// The stream an event's entity name or entity set refers to, if the connection runs it.
    pub fn stream_for(&self, name: &str) -> Option<&str> {
        self.by_name
            .get(name)
            .or_else(|| self.by_name.get(&name.to_ascii_lowercase()))
            .map(String::as_str)
    }
}

/// Everything serve mode routes, by connection name.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    pub connections: BTreeMap<String, ConnectionRoutes>,
    /// Flows enabled for webhook-driven applies: (flow, source system, source entities).
    flows: Vec<(String, System, BTreeSet<String>)>,
}

impl Routes {
    /// Resolves every connection's streams and the `[serve] flows` against the definitions.
    /// Fails on a flow that does not exist.
    pub fn new(config: &Config, defs: &Definitions) -> Result<Self> {
        let mut connections = BTreeMap::new();
        for (name, conn) in &config.connections {
            let mut r = ConnectionRoutes {
                system: conn.system(),
                streams: BTreeSet::new(),
                by_name: BTreeMap::new(),
            };
            for s in defs.select(&conn.streams)? {
                let id = s.id.to_string();
                r.by_name.insert(s.id.entity.clone(), id.clone());
                if let Some(set) = &s.spec.entity_set {
                    r.by_name.insert(set.clone(), id.clone());
                    r.by_name.insert(set.to_ascii_lowercase(), id.clone());
                }
                r.streams.insert(id);
            }
            connections.insert(name.clone(), r);
        }
        let mut flows = Vec::new();
        for f in &config.serve.flows {
            let file = FlowFile::load(&config.definitions_dir, f)
                .map_err(|e| Error::config(format!("serve.flows: `{f}`: {e}")))?;
            let entities = file.entities.iter().map(|e| e.source.clone()).collect();
            flows.push((f.clone(), file.source_system, entities));
        }
        Ok(Self { connections, flows })
    }

    pub fn connection(&self, name: &str) -> Option<&ConnectionRoutes> {
        self.connections.get(name)
    }

    /// A webhook trigger for `streams` of `connection`, with the enabled flows that consume
    /// any of them.
    pub fn webhook_trigger(
        &self,
        system: System,
        connection: &str,
        streams: BTreeSet<String>,
    ) -> Trigger {
        let flows = self
            .flows
            .iter()
            .filter(|(_, src, entities)| {
                *src == system
                    && streams.iter().any(|s| {
                        s.split_once('.').is_some_and(|(sys, ent)| {
                            sys == system.as_str() && entities.contains(ent)
                        })
                    })
            })
            .map(|(f, _, _)| f.clone())
            .collect();
        Trigger {
            origin: Origin::Webhook(system),
            connection: connection.to_string(),
            streams,
            flows,
        }
    }

    /// The triggers of one schedule firing: one per connection with matching streams.
    pub fn schedule_triggers(
        &self,
        name: &str,
        connection: Option<&str>,
        patterns: &[String],
        defs: &Definitions,
        flows: &[String],
    ) -> Result<Vec<Trigger>> {
        let wanted: Option<BTreeSet<String>> = if patterns.is_empty() {
            None
        } else {
            Some(
                defs.select(patterns)?
                    .iter()
                    .map(|s| s.id.to_string())
                    .collect(),
            )
        };
        let mut out = Vec::new();
        for (cname, r) in &self.connections {
            if connection.is_some_and(|c| c != cname) {
                continue;
            }
            let streams: BTreeSet<String> = match &wanted {
                Some(w) => r.streams.intersection(w).cloned().collect(),
                None => r.streams.clone(),
            };
            if streams.is_empty() {
                continue;
            }
            out.push(Trigger {
                origin: Origin::Schedule(name.to_string()),
                connection: cname.clone(),
                streams,
                flows: flows.iter().cloned().collect(),
            });
        }
        if let Some(c) = connection
            && !self.connections.contains_key(c)
        {
            return Err(Error::config(format!(
                "schedule `{name}`: no connection `{c}` in mlc.toml"
            )));
        }
        if out.is_empty() {
            return Err(Error::config(format!(
                "schedule `{name}`: no configured connection runs a stream matching {patterns:?}"
            )));
        }
        Ok(out)
    }
}

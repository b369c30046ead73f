//! The real executor: a trigger runs exactly what `mlc sync <streams> --connection <c>` runs
//! (`run_many` with `RunRequest::Sync`), then `mlc sink apply <flow> --yes` for each flow — same
//! state, audit and summaries as the commands, because it is the same code.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::loaders::sink::{ApplyReport, Sink};

use crate::run::{Context, RunOutcome, RunRequest, run_many};

use super::metrics::{FlowStatus, Metrics, StreamLabel, StreamStatus};
use super::queue::{Executor, Trigger};

/// Runs triggers against a project.
pub struct SyncExecutor {
    pub ctx: Arc<Context>,
    pub metrics: Arc<Metrics>,
}

impl SyncExecutor {
    async fn apply(&self, flow: &str) -> Result<ApplyReport> {
        let sink = Sink::open(&self.ctx, flow)?;
        let plan = sink.plan().await?;
        let target = sink.target(None)?;
        sink.apply(&plan, &target).await
    }
}

#[async_trait]
impl Executor for SyncExecutor {
    async fn execute(&self, t: Trigger) {
        let ctx = &self.ctx;
        let Ok(conn) = ctx.config.connection(&t.connection) else {
            tracing::error!(connection = %t.connection, "trigger for an unknown connection");
            return;
        };
        let patterns: Vec<String> = t.streams.iter().cloned().collect();
        tracing::info!(origin = ?t.origin, connection = %t.connection, streams = ?patterns, flows = ?t.flows, "run starting");
        // A trigger whose connection has no stream selected (flows only) goes straight to them.
        let runs = match ctx.streams_for(conn, &patterns) {
            Ok(selected) if selected.is_empty() => Ok(Vec::new()),
            Ok(_) => run_many(ctx, &[conn], &patterns, &RunRequest::Sync { full: false }).await,
            Err(e) => Err(e),
        };
        match runs {
            Ok(results) => {
                for (label, r) in results {
                    // Labels are `connection/stream`.
                    let id = label
                        .strip_prefix(&format!("{}/", t.connection))
                        .unwrap_or(&label);
                    let stream = StreamLabel::new(&t.connection, id);
                    match r {
                        Ok(s) if s.status == RunOutcome::Held => {
                            tracing::info!(stream = %label, "left to another worker: {}", s.notes.join("; "));
                        }
                        Ok(s) => {
                            tracing::info!(stream = %label, rows = s.rows_extracted, upserted = s.upserted, deleted = s.deleted, seconds = s.seconds, "run committed");
                            self.metrics
                                .runs
                                .get_or_create(&StreamStatus::ok(stream.clone()))
                                .inc();
                            self.metrics
                                .rows
                                .get_or_create(&stream)
                                .inc_by(s.rows_extracted);
                        }
                        Err(e) => {
                            tracing::error!(stream = %label, error = %e, "run failed");
                            self.metrics
                                .runs
                                .get_or_create(&StreamStatus::failed(stream.clone()))
                                .inc();
                            self.metrics.errors.get_or_create(&stream).inc();
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(connection = %t.connection, error = %e, "run not started");
                return;
            }
        }
        for flow in &t.flows {
            match self.apply(flow).await {
                Ok(r) => {
                    tracing::info!(flow = %flow, created = r.created, updated = r.updated, linked = r.linked, failed = r.failed, waiting = r.waiting, "sink applied");
                    for (outcome, n) in r.by_outcome() {
                        if n > 0 {
                            self.metrics
                                .sink_jobs
                                .get_or_create(&FlowStatus::new(flow, outcome.as_str()))
                                .inc_by(n as u64);
                        }
                    }
                }
                Err(held @ crate::Error::Held { .. }) => {
                    tracing::info!(flow = %flow, "left to another worker: {held}");
                }
                Err(e) => tracing::error!(flow = %flow, error = %e, "sink apply failed"),
            }
        }
    }
}

//! Prometheus metrics of `mlc serve` (`GET /metrics`, text exposition format).
//!
//! Built on `prometheus-client`, the Prometheus project's own Rust client: OpenMetrics text out
//! of the box, typed label sets, no global registry and no protobuf dependency (the older
//! `prometheus` crate has a process-global default registry and pulls protobuf for a format
//! Prometheus no longer needs).

use crate::systems::system::System;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::state::StateStore;

/// A stream of a connection: two labels, so a dashboard can group by either.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabel {
    pub connection: String,
    pub stream: String,
}

impl StreamLabel {
    pub fn new(connection: &str, stream: &str) -> Self {
        Self {
            connection: connection.to_string(),
            stream: stream.to_string(),
        }
    }
}

/// A stream run's end: `ok` or `failed` (the constructors are the only ways to make one).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamStatus {
    #[prometheus(flatten)]
    stream: StreamLabel,
    status: &'static str,
}

impl StreamStatus {
    pub fn ok(stream: StreamLabel) -> Self {
        Self {
            stream,
            status: "ok",
        }
    }

    pub fn failed(stream: StreamLabel) -> Self {
        Self {
            stream,
            status: "failed",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlowStatus {
    flow: String,
    status: &'static str,
}

impl FlowStatus {
    /// `outcome`: a sink `JobOutcome`'s name.
    pub fn new(flow: &str, outcome: &'static str) -> Self {
        Self {
            flow: flow.to_string(),
            status: outcome,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SystemLabel {
    system: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Rejection {
    system: &'static str,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabel {
    origin: &'static str,
    outcome: &'static str,
}

/// Every metric, shared by the receivers, the dispatcher and the scrape handler.
pub struct Metrics {
    registry: Registry,
    pub runs: Family<StreamStatus, Counter>,
    pub rows: Family<StreamLabel, Counter>,
    pub errors: Family<StreamLabel, Counter>,
    pub sink_jobs: Family<FlowStatus, Counter>,
    pub webhooks_received: Family<SystemLabel, Counter>,
    pub webhooks_rejected: Family<Rejection, Counter>,
    pub triggers: Family<TriggerLabel, Counter>,
    lag: Family<StreamLabel, Gauge<f64, AtomicU64>>,
    retries: Counter,
    throttled: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("mlc");
        let runs = Family::<StreamStatus, Counter>::default();
        let rows = Family::<StreamLabel, Counter>::default();
        let errors = Family::<StreamLabel, Counter>::default();
        let sink_jobs = Family::<FlowStatus, Counter>::default();
        let webhooks_received = Family::<SystemLabel, Counter>::default();
        let webhooks_rejected = Family::<Rejection, Counter>::default();
        let triggers = Family::<TriggerLabel, Counter>::default();
        let lag = Family::<StreamLabel, Gauge<f64, AtomicU64>>::default();
        let retries = Counter::default();
        let throttled = Counter::default();
        registry.register("runs", "Stream runs by final status", runs.clone());
        registry.register("rows", "Rows extracted by stream runs", rows.clone());
        registry.register("run_errors", "Stream runs that failed", errors.clone());
        registry.register(
            "sink_jobs",
            "Sink jobs applied, by flow and outcome",
            sink_jobs.clone(),
        );
        registry.register(
            "webhooks_received",
            "Webhook requests accepted",
            webhooks_received.clone(),
        );
        registry.register(
            "webhooks_rejected",
            "Webhook requests rejected, by reason",
            webhooks_rejected.clone(),
        );
        registry.register(
            "triggers",
            "Run triggers by origin (schedule, webhook) and outcome (queued, merged, skipped, duplicate)",
            triggers.clone(),
        );
        registry.register(
            "stream_lag_seconds",
            "Seconds since the stream's cursor was last committed",
            lag.clone(),
        );
        registry.register(
            "http_retries",
            "HTTP requests retried after a transient failure",
            retries.clone(),
        );
        registry.register(
            "http_throttled",
            "HTTP 429 answers received",
            throttled.clone(),
        );
        Arc::new(Self {
            registry,
            runs,
            rows,
            errors,
            sink_jobs,
            webhooks_received,
            webhooks_rejected,
            triggers,
            lag,
            retries,
            throttled,
        })
    }

    pub fn received(&self, system: System) {
        self.webhooks_received
            .get_or_create(&SystemLabel {
                system: system.as_str(),
            })
            .inc();
    }

    pub fn rejected(&self, system: System, reason: &str) {
        self.webhooks_rejected
            .get_or_create(&Rejection {
                system: system.as_str(),
                reason: reason.into(),
            })
            .inc();
    }

    /// A trigger counted by its origin's and outcome's labels (`queue::Origin::label`,
    /// `queue::Submitted::label`).
    pub fn trigger(&self, origin: &'static str, outcome: &'static str) {
        self.triggers
            .get_or_create(&TriggerLabel { origin, outcome })
            .inc();
    }

    /// The exposition text; refreshes the gauges read from the state store and the process-wide
    /// HTTP counters first.
    pub fn render(&self, state: Option<&StateStore>, now: DateTime<Utc>) -> String {
        let sync = |c: &Counter, v: &AtomicU64| {
            let cur = v.load(Ordering::Relaxed);
            let seen = c.get();
            if cur > seen {
                c.inc_by(cur - seen);
            }
        };
        sync(&self.retries, &crate::http::RETRIES);
        sync(&self.throttled, &crate::http::THROTTLED);
        if let Some(state) = state
            && let Ok(states) = state.stream_states()
        {
            for s in states {
                if let Ok(t) = DateTime::parse_from_rfc3339(&s.updated_at) {
                    let lag = (now - t.with_timezone(&Utc)).num_milliseconds() as f64 / 1000.0;
                    self.lag
                        .get_or_create(&StreamLabel::new(&s.connection, &s.stream))
                        .set(lag.max(0.0));
                }
            }
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::new();
        m.received(System::Pipedrive);
        m.rejected(System::Dataverse, "bad_key");
        let text = m.render(None, Utc::now());
        assert!(
            text.contains("mlc_webhooks_received_total{system=\"pipedrive\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("mlc_webhooks_rejected_total{system=\"dataverse\",reason=\"bad_key\"} 1"),
            "{text}"
        );
        assert!(text.contains("mlc_http_retries_total"), "{text}");
    }
}

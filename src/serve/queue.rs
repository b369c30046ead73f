//! The work queue between triggers (schedules, webhooks) and runs.
//!
//! Receivers and the scheduler only [`Queue::submit`]; the dispatcher ([`Queue::dispatch`])
//! starts runs, at most `max_concurrent_runs` at a time and never two runs of the same stream
//! (or two applies of the same flow) at once:
//! - a **schedule** whose streams are all still running (or queued) is skipped and logged —
//!   the run in flight already covers it;
//! - a **webhook** for a stream that is running stays queued and runs once after it: the change
//!   may have landed after the running read passed it. Webhooks for the same connection that
//!   are waiting merge into one trigger, so a burst of events costs one run.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use super::metrics::Metrics;
use crate::systems::system::System;

/// Where a trigger came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A schedule, by name.
    Schedule(String),
    /// A webhook of this system.
    Webhook(System),
}

impl Origin {
    pub fn label(&self) -> &'static str {
        match self {
            Origin::Schedule(_) => "schedule",
            Origin::Webhook(_) => "webhook",
        }
    }
}

/// One unit of work: an incremental run of some streams of one connection, then sink flows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub origin: Origin,
    pub connection: String,
    /// Stream ids (`dataverse.account`).
    pub streams: BTreeSet<String>,
    /// Sink flows applied after the runs.
    pub flows: BTreeSet<String>,
}

impl Trigger {
    fn keys(&self) -> Vec<String> {
        self.streams
            .iter()
            .map(|s| format!("{}/{s}", self.connection))
            .chain(self.flows.iter().map(|f| format!("flow:{f}")))
            .collect()
    }
}

/// What became of a trigger: what [`Queue::submit`] did with it, or, for a webhook event the
/// receiver found delivered before, that it never reached the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    Queued,
    /// Folded into a waiting trigger of the same connection.
    Merged,
    /// A schedule whose work is already running or queued.
    Skipped,
    /// A webhook event delivered before: never submitted (the receiver counts it).
    Duplicate,
}

impl Submitted {
    pub fn label(self) -> &'static str {
        match self {
            Submitted::Queued => "queued",
            Submitted::Merged => "merged",
            Submitted::Skipped => "skipped",
            Submitted::Duplicate => "duplicate",
        }
    }
}

/// Runs a trigger: the real one syncs and applies sinks (executor.rs); tests count.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    async fn execute(&self, trigger: Trigger);
}

#[derive(Default)]
struct Inner {
    pending: Vec<Trigger>,
    in_flight: HashSet<String>,
    submitted: u64,
    started: u64,
}

/// The queue; shared (`Arc`) by receivers, the scheduler and the dispatcher.
pub struct Queue {
    inner: Mutex<Inner>,
    wake: Notify,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Queue")
    }
}

impl Queue {
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner::default()),
            wake: Notify::new(),
            metrics,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds work (never blocks, never runs anything itself).
    pub fn submit(&self, t: Trigger) -> Submitted {
        let origin = t.origin.label();
        let outcome = {
            let mut g = self.lock();
            let keys = t.keys();
            match &t.origin {
                Origin::Schedule(name) => {
                    let busy = |k: &String| {
                        g.in_flight.contains(k) || g.pending.iter().any(|p| p.keys().contains(k))
                    };
                    let busy_keys: HashSet<String> =
                        keys.iter().filter(|k| busy(k)).cloned().collect();
                    // Streams still running (or queued) from an earlier firing are left out;
                    // the rest run now.
                    let mut t = t.clone();
                    let conn = t.connection.clone();
                    t.streams
                        .retain(|s| !busy_keys.contains(&format!("{conn}/{s}")));
                    if t.streams.is_empty() {
                        tracing::info!(schedule = %name, connection = %t.connection, "skipped: the previous run of these streams is still in flight or queued");
                        Submitted::Skipped
                    } else {
                        if !busy_keys.is_empty() {
                            tracing::info!(schedule = %name, skipped = ?busy_keys, "some streams still in flight: left out of this firing");
                        }
                        g.submitted += 1;
                        g.pending.push(t);
                        Submitted::Queued
                    }
                }
                Origin::Webhook(_) => {
                    if let Some(p) = g.pending.iter_mut().find(|p| {
                        matches!(p.origin, Origin::Webhook(_)) && p.connection == t.connection
                    }) {
                        p.streams.extend(t.streams);
                        p.flows.extend(t.flows);
                        Submitted::Merged
                    } else {
                        g.submitted += 1;
                        g.pending.push(t);
                        Submitted::Queued
                    }
                }
            }
        };
        self.metrics.trigger(origin, outcome.label());
        self.wake.notify_one();
        outcome
    }

    /// Triggers accepted (queued, not merged or skipped) so far.
    pub fn submitted(&self) -> u64 {
        self.lock().submitted
    }

    /// Runs started so far.
    pub fn started(&self) -> u64 {
        self.lock().started
    }

    /// Triggers waiting.
    pub fn pending(&self) -> Vec<Trigger> {
        self.lock().pending.clone()
    }

    /// Whether nothing is waiting or running.
    pub fn idle(&self) -> bool {
        let g = self.lock();
        g.pending.is_empty() && g.in_flight.is_empty()
    }

    /// Takes the first waiting trigger none of whose streams or flows is running.
    fn take_ready(&self) -> Option<Trigger> {
        let mut g = self.lock();
        let pos = g
            .pending
            .iter()
            .position(|t| t.keys().iter().all(|k| !g.in_flight.contains(k)))?;
        let t = g.pending.remove(pos);
        for k in t.keys() {
            g.in_flight.insert(k);
        }
        g.started += 1;
        Some(t)
    }

    fn finish(&self, t: &Trigger) {
        let mut g = self.lock();
        for k in t.keys() {
            g.in_flight.remove(&k);
        }
        drop(g);
        self.wake.notify_one();
    }

    /// Starts runs until `stop` turns true; then waits for the runs in flight (each commits
    /// its state as it finishes) and returns. Waiting triggers are dropped on stop: the next
    /// start's schedules and the poll pick their work up.
    pub async fn dispatch(
        self: Arc<Self>,
        executor: Arc<dyn Executor>,
        max_concurrent: usize,
        mut stop: watch::Receiver<bool>,
    ) {
        let permits = Arc::new(Semaphore::new(max_concurrent.max(1)));
        let mut running = JoinSet::new();
        loop {
            if *stop.borrow() {
                break;
            }
            // Start what can start.
            while let Ok(permit) = permits.clone().try_acquire_owned() {
                let Some(t) = self.take_ready() else {
                    drop(permit);
                    break;
                };
                let q = self.clone();
                let ex = executor.clone();
                running.spawn(async move {
                    ex.execute(t.clone()).await;
                    q.finish(&t);
                    drop(permit);
                });
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
                _ = stop.changed() => {}
            }
        }
        let n = running.len();
        if n > 0 {
            tracing::info!(runs = n, "shutting down: finishing the runs in flight");
        }
        while running.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(origin: Origin, streams: &[&str]) -> Trigger {
        Trigger {
            origin,
            connection: "crm".into(),
            streams: streams.iter().map(|s| s.to_string()).collect(),
            flows: BTreeSet::new(),
        }
    }

    #[test]
    fn schedules_skip_busy_streams_and_webhooks_merge() {
        let q = Queue::new(Metrics::new());
        let s = || Origin::Schedule("s".into());
        let w = || Origin::Webhook(System::Dataverse);
        assert_eq!(q.submit(t(s(), &["dataverse.account"])), Submitted::Queued);
        // Queued and not started: a second firing adds nothing.
        assert_eq!(q.submit(t(s(), &["dataverse.account"])), Submitted::Skipped);
        let running = q.take_ready().unwrap();
        assert_eq!(q.submit(t(s(), &["dataverse.account"])), Submitted::Skipped);
        assert_eq!(q.submit(t(w(), &["dataverse.account"])), Submitted::Queued);
        assert_eq!(q.submit(t(w(), &["dataverse.contact"])), Submitted::Merged);
        // The webhook waits for the running account run.
        assert!(q.take_ready().is_none());
        q.finish(&running);
        let next = q.take_ready().unwrap();
        assert_eq!(next.streams.len(), 2);
        assert_eq!(q.submitted(), 2);
        // A schedule over a running stream and an idle one runs only the idle one.
        assert_eq!(
            q.submit(t(s(), &["dataverse.account", "dataverse.lead"])),
            Submitted::Queued
        );
        let partial = q.take_ready().unwrap();
        assert_eq!(
            partial.streams,
            BTreeSet::from(["dataverse.lead".to_string()])
        );
    }
}

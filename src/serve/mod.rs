//! `mlc serve` (DESIGN.md §10): cron schedules, the webhook receivers (Dataverse, Pipedrive,
//! Business Central), Business Central subscription upkeep, `/healthz` and `/metrics`, in one
//! process with graceful shutdown.
//!
//! ```text
//! schedule.rs ─┐                                    ┌─ executor.rs: run_many (= mlc sync)
//! dataverse.rs ├─ routes.rs → queue.rs (no overlap, ─┤               then sink apply
//! pipedrive.rs │               max_concurrent_runs)  │
//! business_central.rs ┘                              └─ metrics.rs
//! subscriptions.rs: BC subscriptions created / renewed / recreated (clock.rs drives time)
//! ```
//!
//! Webhooks and schedules only trigger ordinary incremental runs of the affected streams (a
//! Business Central `deleted` notice also asks for a key-set pass, as deletes are invisible to
//! a cursor read); the runs read the source as `mlc sync` does, so a lost or forged event can
//! cost at most a run, never wrong data, and the scheduled poll still reconciles everything.

pub mod clock;
pub mod config;
pub mod executor;
pub mod http;
pub mod metrics;
pub mod queue;
pub mod receiver;
pub mod register;
pub mod routes;
pub mod schedule;
pub mod secrets;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::run::Context;
use crate::systems::system::System;

use crate::systems::business_central::subscriptions::BcSubscriptions;
use clock::Clock;
use metrics::Metrics;
use queue::{Executor, Queue};
use routes::Routes;
use schedule::Scheduler;

/// How a server runs; the defaults are production's.
pub struct ServeOptions {
    /// Overrides `serve.listen` (`--listen`); port 0 picks a free port.
    pub listen: Option<String>,
    pub clock: Arc<dyn Clock>,
    /// Longest sleep of the scheduler between clock reads (it wakes earlier when a schedule
    /// is due). A test with a manual clock sets it low.
    pub tick: Duration,
    /// How often subscriptions are checked for renewal; `None`: not managed by the server.
    pub subscription_check: Option<Duration>,
    /// Replaces the real executor (tests count runs).
    pub executor: Option<Arc<dyn Executor>>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            listen: None,
            clock: Arc::new(clock::SystemClock),
            tick: Duration::from_secs(30),
            subscription_check: Some(Duration::from_secs(600)),
            executor: None,
        }
    }
}

/// A running `mlc serve`.
pub struct Server {
    pub addr: SocketAddr,
    /// Base URL the receivers are reachable at (`serve.public_url`, or the bound address).
    pub public_base: String,
    pub queue: Arc<Queue>,
    pub metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    dispatcher: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds the listener, then starts the receivers, the dispatcher, the scheduler and the
    /// subscription upkeep. Fails on a bad listen address, an unknown flow or stream in
    /// `[serve]`, or an unreadable vault.
    pub async fn start(ctx: Arc<Context>, opts: ServeOptions) -> Result<Server> {
        let cfg = ctx.config.serve.clone();
        if let Some(w) = cfg.idle_warning() {
            tracing::warn!("{w}");
        }
        let now = opts.clock.now();
        ctx.state
            .serve_prune_events(now - chrono::Duration::days(7))?;
        let routes = Routes::new(&ctx.config, &ctx.defs)?;
        let mut scheduler = Scheduler::new(&cfg, &ctx.state, now)?;
        // Resolve every schedule once now, so a typo fails at start, not at 3 a.m.
        let mut schedule_triggers = BTreeMap::new();
        for s in &scheduler.schedules {
            for f in &s.flows {
                crate::loaders::sink::flow::FlowFile::load(&ctx.config.definitions_dir, f)
                    .map_err(|e| {
                        Error::config(format!("schedule `{}`: flow `{f}`: {e}", s.name))
                    })?;
            }
            schedule_triggers.insert(
                s.name.clone(),
                routes.schedule_triggers(
                    &s.name,
                    s.connection.as_deref(),
                    &s.streams,
                    &ctx.defs,
                    &s.flows,
                )?,
            );
        }
        let listen = opts.listen.clone().unwrap_or(cfg.listen.clone());
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .map_err(|e| Error::config_from(format!("serve: cannot listen on {listen}"), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::config_from("serve: no local address", e))?;
        let public_base = cfg
            .public_url
            .clone()
            .map(|u| u.trim_end_matches('/').to_string())
            .unwrap_or_else(|| format!("http://{addr}"));
        // Subscription managers first: they generate a missing clientState, which the
        // receiver must know before the first notification.
        let mut managers = Vec::new();
        for (name, w) in &cfg.webhooks {
            let Ok(conn) = ctx.config.connection(name) else {
                return Err(Error::config(format!(
                    "serve.webhooks.{name}: no connection `{name}` in mlc.toml"
                )));
            };
            if conn.system() == System::BusinessCentral && opts.subscription_check.is_some() {
                managers.push(BcSubscriptions::new(
                    conn,
                    &ctx.vault,
                    ctx.runtimes.endpoint(conn)?,
                    w.bc_resources(),
                    &public_base,
                    cfg.renew_before_hours,
                    ctx.state.clone(),
                )?);
            }
        }
        let mut secrets_by_conn = BTreeMap::new();
        for name in ctx.config.connections.keys() {
            secrets_by_conn.insert(name.clone(), secrets::load(&ctx.vault, name)?);
        }
        let metrics = Metrics::new();
        let queue = Queue::new(metrics.clone());
        let receiver = Arc::new(receiver::Receiver {
            routes,
            queue: queue.clone(),
            metrics: metrics.clone(),
            state: ctx.state.clone(),
            clock: opts.clock.clone(),
            secrets: receiver::SecretCache::new(Some(ctx.vault.clone()), secrets_by_conn),
            webhooks: cfg.webhooks.clone(),
        });
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let app = http::router(receiver, cfg.max_body_bytes);
        let mut rx = stop_rx.clone();
        tasks.spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = rx.wait_for(|s| *s).await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "serve: HTTP server stopped");
            }
        });
        let executor = opts.executor.clone().unwrap_or_else(|| {
            Arc::new(executor::SyncExecutor {
                ctx: ctx.clone(),
                metrics: metrics.clone(),
            })
        });
        let dispatcher = tokio::spawn(queue.clone().dispatch(
            executor,
            cfg.max_concurrent_runs,
            stop_rx.clone(),
        ));
        // Scheduler.
        if !scheduler.schedules.is_empty() {
            let clock = opts.clock.clone();
            let state = ctx.state.clone();
            let q = queue.clone();
            let tick = opts.tick;
            let mut rx = stop_rx.clone();
            tasks.spawn(async move {
                loop {
                    let now = clock.now();
                    match scheduler.due(now, &state) {
                        Ok(due) => {
                            for s in due {
                                for t in schedule_triggers.get(&s.name).into_iter().flatten() {
                                    let outcome = q.submit(t.clone());
                                    tracing::info!(schedule = %s.name, connection = %t.connection, ?outcome, "schedule fired");
                                }
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "scheduler"),
                    }
                    let wait = scheduler
                        .next_due()
                        .and_then(|n| (n - clock.now()).to_std().ok())
                        .unwrap_or(tick)
                        .min(tick)
                        .max(Duration::from_millis(5));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = rx.wait_for(|s| *s) => break,
                    }
                }
            });
        }
        // Business Central subscriptions, once the receiver listens (BC handshakes first).
        if let Some(every) = opts.subscription_check {
            for mgr in managers {
                let clock = opts.clock.clone();
                let mut rx = stop_rx.clone();
                tasks.spawn(async move {
                    loop {
                        match mgr.ensure(clock.now()).await {
                            Ok(r) => {
                                if let Some(owner) = r.left_to {
                                    tracing::debug!(%owner, "business central subscriptions kept by another worker");
                                }
                            }
                            Err(e) => tracing::error!(error = %e, "business central subscriptions: will retry"),
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(every) => {}
                            _ = rx.wait_for(|s| *s) => break,
                        }
                    }
                });
            }
        }
        tracing::info!(%addr, public = %public_base, "mlc serve listening");
        Ok(Server {
            addr,
            public_base,
            queue,
            metrics,
            stop,
            tasks,
            dispatcher: Some(dispatcher),
        })
    }

    /// Stops taking work, lets the runs in flight finish (each commits its state) and returns.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(d) = self.dispatcher.take() {
            let _ = d.await;
        }
        while self.tasks.join_next().await.is_some() {}
    }

    /// Waits until nothing is queued or running (tests, the demo), at most `limit`.
    pub async fn settle(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.queue.idle() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

//! The sink stage (DESIGN.md §9): change sets in the lake → plan → apply against an ERP,
//! idempotent (ledger + search before create), audited (every write), replayable (jobs keep
//! their source record).
//!
//! ```text
//! flow.rs       loaders/sink/<flow>.toml: source stream → target hub, field mapping, keys,
//!               and what a mapping's source field reads off a record
//! changes.rs    the change sets newer than the flow's cursor, in run order (the one read path)
//! plan.rs       per record: create / update / no-op / wait, with the reason (no target calls);
//!               the per-record decisions apply takes again (parent, mirror, lines)
//! ledger.rs     one job, idempotently: ledger link → search (external id, natural key) → create
//! target.rs     what the sink needs from a target system (search, create, update, keys, schema)
//! preflight.rs  a flow checked against the target tenant's schema before any write
//! deltek.rs, business_central.rs, pipedrive.rs: the targets
//! audit.rs      the audit landed in the warehouse (`mlc_sink.audit`)
//! ```
//!
//! Layers, each using only those above it: flow → changes → target → preflight → plan →
//! ledger → this module (the stage as a whole).
//!
//! Flows: Dynamics → Vantagepoint (`dynamics_to_deltek`), Pipedrive → Business Central and back;
//! see the README's "Sink stage" section.

pub mod audit;
pub mod business_central;
pub mod changes;
pub mod deltek;
pub mod flow;
pub mod ledger;
pub mod pipedrive;
pub mod plan;
pub mod preflight;
pub mod target;

use serde::Serialize;
use serde_json::{Map, Value};

use self::flow::FlowFile;
use self::ledger::{JobCtx, JobRef, Outcome};
use self::plan::{Action, Plan};
use self::preflight::Preflight;
use self::target::Target;
use crate::error::{Error, Result};
use crate::lease::{LeaseGuard, sink_unit};
use crate::run::Context;
use crate::state::{AuditAction, AuditEntry, JobFinish, JobStatus, SinkJob};
use crate::systems::system::System;

/// What `replay` re-runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Every failed or waiting job of the flow.
    Failed,
    /// One job, whatever its status.
    Job(String),
}

/// What one job came to in an apply or replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobOutcome {
    Created,
    Updated,
    /// Found by search and linked.
    Linked,
    /// Its ledger link was dropped (`mlc sink unlink`); the target record is unchanged.
    Unlinked,
    /// Nothing to write (the reason says why).
    Noop,
    Failed,
    Waiting,
    /// The pre-flight shows the target would refuse it: nothing sent.
    Blocked,
}

crate::names::stored_by_name!(JobOutcome, "job outcome", {
    Created => "created",
    Updated => "updated",
    Linked => "linked",
    Unlinked => "unlinked",
    Noop => "noop",
    Failed => "failed",
    Waiting => "waiting",
    Blocked => "blocked",
});

impl JobOutcome {
    /// Outcomes a person has to look at (listed even without `--details`).
    pub fn needs_attention(self) -> bool {
        matches!(
            self,
            JobOutcome::Failed | JobOutcome::Blocked | JobOutcome::Waiting
        )
    }
}

/// One job's result, for printing.
#[derive(Debug, Clone, Serialize)]
pub struct JobResult {
    pub job_id: String,
    pub source_entity: String,
    pub source_id: String,
    pub outcome: JobOutcome,
    pub target_key: Option<String>,
    pub detail: String,
}

/// What an apply or replay did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ApplyReport {
    pub flow: String,
    pub created: usize,
    pub updated: usize,
    pub linked: usize,
    pub noop: usize,
    pub failed: usize,
    pub waiting: usize,
    /// Jobs the target would certainly refuse (pre-flight): nothing sent.
    pub blocked: usize,
    /// Audit entries landed in the warehouse (`mlc_sink.audit`) after the run.
    pub audit_landed: usize,
    pub jobs: Vec<JobResult>,
}

impl ApplyReport {
    /// The jobs counted by outcome (an unlink counts as a no-op: nothing was written).
    pub fn by_outcome(&self) -> [(JobOutcome, usize); 7] {
        [
            (JobOutcome::Created, self.created),
            (JobOutcome::Updated, self.updated),
            (JobOutcome::Linked, self.linked),
            (JobOutcome::Noop, self.noop),
            (JobOutcome::Failed, self.failed),
            (JobOutcome::Waiting, self.waiting),
            (JobOutcome::Blocked, self.blocked),
        ]
    }

    fn push(&mut self, j: JobResult) {
        match j.outcome {
            JobOutcome::Created => self.created += 1,
            JobOutcome::Updated => self.updated += 1,
            JobOutcome::Linked => self.linked += 1,
            JobOutcome::Failed => self.failed += 1,
            JobOutcome::Waiting => self.waiting += 1,
            JobOutcome::Blocked => self.blocked += 1,
            JobOutcome::Noop | JobOutcome::Unlinked => self.noop += 1,
        }
        self.jobs.push(j);
    }
}

/// Job counts by status, for `mlc sink status`.
#[derive(Debug, Clone, Serialize)]
pub struct FlowStatus {
    pub flow: String,
    pub description: String,
    pub links: usize,
    pub jobs_by_status: std::collections::BTreeMap<String, usize>,
    pub cursors: Vec<(String, Option<String>)>,
    pub failed: Vec<SinkJob>,
    /// Waiting jobs older than the flow's `stale_after_hours`.
    pub stale: usize,
    pub stale_after_hours: f64,
}

/// One lane's jobs run in order: (plan index, result) of each.
type LaneRun<'a> = futures::future::BoxFuture<'a, Result<Vec<(usize, JobResult)>>>;

/// A flow bound to a project.
pub struct Sink<'a> {
    ctx: &'a Context,
    name: String,
    /// The flow, with its target tenant's settings applied.
    flow: FlowFile,
    /// The target connection whose settings the flow carries.
    tenant: Option<String>,
}

/// The mlc.toml connection `name`, or the only connection of `flow`'s target system.
fn target_connection<'c>(
    ctx: &'c Context,
    flow: &FlowFile,
    flow_name: &str,
    name: Option<&str>,
) -> Result<&'c crate::config::Connection> {
    let conn = match name {
        Some(n) => ctx.config.connection(n)?,
        None => {
            let mine: Vec<_> = ctx
                .config
                .connections
                .values()
                .filter(|c| c.system() == flow.target_system)
                .collect();
            match mine.as_slice() {
                [one] => *one,
                [] => {
                    return Err(Error::config(format!(
                        "sink flow `{flow_name}` writes to {}, and mlc.toml has no {} connection: add one with `mlc connection add NAME --system {}`",
                        flow.target_system, flow.target_system, flow.target_system
                    )));
                }
                _ => {
                    return Err(Error::config(format!(
                        "several {} connections: pick one with --target NAME",
                        flow.target_system
                    )));
                }
            }
        }
    };
    if conn.system() != flow.target_system {
        return Err(Error::config(format!(
            "connection `{}` is {}, the flow writes to {}",
            conn.name,
            conn.system(),
            flow.target_system
        )));
    }
    Ok(conn)
}

impl<'a> Sink<'a> {
    /// Loads flow `name` (project overlay or built in), with the settings of its only target
    /// connection.
    pub fn open(ctx: &'a Context, name: &str) -> Result<Self> {
        Self::open_for(ctx, name, None)
    }

    /// Loads flow `name` with the settings of target connection `target` (default: the only
    /// connection of the flow's target system).
    pub fn open_for(ctx: &'a Context, name: &str, target: Option<&str>) -> Result<Self> {
        let flow = FlowFile::load(&ctx.config.definitions_dir, name)?;
        // Only these hubs have a key, search and tested write path; refuse the rest rather
        // than write half-mapped records.
        let Some(support) = crate::systems::sink_support(flow.target_system) else {
            return Err(Error::config(format!(
                "sink flow `{name}`: target system `{}` is not supported ({})",
                flow.target_system,
                System::ALL
                    .iter()
                    .filter(|s| crate::systems::sink_support(**s).is_some())
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let hubs = support.hubs;
        if support.update_only
            && let Some(e) = flow.entities.iter().find(|e| e.mode != flow::Mode::Update)
        {
            return Err(Error::config(format!(
                "sink flow `{name}`: {} writes to {}, which the sink only updates: set mode = \"update\" with linked_by = {{ flow = \"…\", mapping = \"…\" }}",
                e.name(),
                flow.target_system
            )));
        }
        if let Some(e) = flow
            .entities
            .iter()
            .find(|e| !hubs.contains(&e.target.as_str()))
        {
            return Err(Error::config(format!(
                "sink flow `{name}`: {} → {} is not supported (the sink writes {} {})",
                e.name(),
                e.target,
                flow.target_system,
                hubs.join(", ")
            )));
        }
        // The target tenant's settings, when the flow has one target connection (or is opened
        // for one: `open_for`).
        let tenant = target_connection(ctx, &flow, name, target).ok();
        let flow = match tenant {
            Some(c) => flow.for_tenant(name, c)?,
            None => flow,
        };
        Ok(Self {
            ctx,
            name: name.to_string(),
            flow,
            tenant: tenant.map(|c| c.name.clone()),
        })
    }

    pub fn flow(&self) -> &FlowFile {
        &self.flow
    }

    /// Plans the flow's new change sets (reads the lake and the state store only).
    pub async fn plan(&self) -> Result<Plan> {
        plan::plan(
            &self.ctx.state,
            &self.ctx.lake,
            &self.ctx.defs,
            &self.name,
            &self.flow,
        )
        .await
    }

    /// The target client: the mlc.toml connection `name`, or the only connection of the flow's
    /// target system.
    pub fn target(&self, name: Option<&str>) -> Result<Box<dyn Target>> {
        let conn = target_connection(self.ctx, &self.flow, &self.name, name)?;
        if self.tenant.as_deref() != Some(conn.name.as_str()) && !conn.sink.is_empty() {
            return Err(Error::config(format!(
                "sink flow `{}` was opened without connection `{}`'s settings: open it for that connection (`--target {}`)",
                self.name, conn.name, conn.name
            )));
        }
        let ep = self.ctx.runtimes.endpoint(conn)?;
        crate::systems::sink_target(&self.name, &self.flow, conn, ep, &self.ctx.defs)
    }

    /// Holds the flow's lease until dropped: one apply or replay per flow at a time, across
    /// workers (two at once could both search, both miss, and both create).
    fn lease(&self) -> Result<LeaseGuard> {
        LeaseGuard::acquire(
            &self.ctx.state,
            &sink_unit(&self.name),
            self.ctx.config.state_lease,
        )
    }

    fn job_ctx<'b>(
        &'b self,
        target: &'b dyn Target,
        preflight: &'b Preflight,
        lease: &'b LeaseGuard,
    ) -> JobCtx<'b> {
        JobCtx {
            state: &self.ctx.state,
            target,
            flow_name: &self.name,
            flow: &self.flow,
            preflight,
            lease: lease.lease(),
        }
    }

    /// The flow checked against the target tenant's metadata (`mlc sink check`); every apply
    /// and replay runs it before any write.
    pub async fn preflight(&self, target: &dyn Target) -> Result<Preflight> {
        let learned = self.ctx.state.sink_rules(&target.profile().connection)?;
        preflight::check(&self.name, &self.flow, target, &learned).await
    }

    /// The plan with the pre-flight applied: a job the target would certainly refuse is
    /// `blocked`, with the reason, instead of a create or update.
    pub async fn plan_checked(&self, target: &dyn Target) -> Result<(Plan, Preflight)> {
        let mut p = self.plan().await?;
        let pre = self.preflight(target).await?;
        for j in &mut p.jobs {
            if !matches!(j.action, Action::Create | Action::Update | Action::Match) {
                continue;
            }
            let Some(em) = self.flow.mapping(&j.source_entity) else {
                continue;
            };
            if let Some(why) = pre.blocked(em, &j.row.record, j.action == Action::Create) {
                j.action = Action::Blocked;
                j.cause = "blocked";
                j.reason = why;
            }
        }
        Ok((p, pre))
    }

    /// Performs `plan`: records every job, writes the creates and updates in dependency order,
    /// audits no-ops of deleted rows, then moves the flow's cursors (failed jobs stay in the jobs
    /// table for `replay`). Then retries jobs still waiting from earlier applies.
    pub async fn apply(&self, plan: &Plan, target: &dyn Target) -> Result<ApplyReport> {
        let pre = self.preflight(target).await?;
        self.apply_checked(plan, target, &pre).await
    }

    /// [`Sink::apply`] with a pre-flight already made (the one [`Sink::plan_checked`] returns),
    /// so the target's metadata is not read twice.
    pub async fn apply_checked(
        &self,
        plan: &Plan,
        target: &dyn Target,
        pre: &Preflight,
    ) -> Result<ApplyReport> {
        let lease = self.lease()?;
        let mut report = ApplyReport {
            flow: self.name.clone(),
            ..ApplyReport::default()
        };
        let jc = self.job_ctx(target, pre, &lease);
        let now = chrono::Utc::now().to_rfc3339();
        // Made one at a time as they are stored, so the plan's records are not held twice.
        let jobs = plan.jobs.iter().map(|pj| SinkJob {
            job_id: pj.job_id.clone(),
            flow: self.name.clone(),
            source_entity: pj.source_entity.clone(),
            source_id: pj.source_id.clone(),
            source_version: pj.source_version,
            run_id: pj.run_id.clone(),
            // A map of JSON values always serializes (string keys, plain values).
            record: serde_json::to_string(&pj.row.record).unwrap_or_default(),
            status: JobStatus::Planned,
            attempts: 0,
            last_error: None,
            ambiguous: false,
            created_at: now.clone(),
            updated_at: now.clone(),
        });
        // Deletions read by this plan: a job of the same record read earlier (waiting, failed)
        // must not write it any more.
        let deleted: Vec<(&str, &str, &str)> = plan
            .jobs
            .iter()
            .filter(|j| j.row.deleted)
            .map(|j| {
                (
                    j.source_entity.as_str(),
                    j.source_id.as_str(),
                    j.run_id.as_str(),
                )
            })
            .chain(
                plan.deleted
                    .iter()
                    .map(|(m, id, run)| (m.as_str(), id.as_str(), run.as_str())),
            )
            .collect();
        // Every job is recorded and the cursors move in one transaction: from here the jobs
        // are the flow's to finish (a crash leaves them `planned`, picked up below next time).
        let new =
            self.ctx
                .state
                .sink_add_jobs(jobs, &plan.lines, &self.name, &plan.cursors, &deleted)?;
        let in_plan: std::collections::HashSet<&str> =
            plan.jobs.iter().map(|j| j.job_id.as_str()).collect();
        let bar = self.progress(plan.jobs.len() as u64);
        // Mapping by mapping (dependencies first), the writes of one mapping concurrently.
        for group in plan
            .jobs
            .chunk_by(|a, b| a.source_entity == b.source_entity)
        {
            let mut runnable = Vec::new();
            for pj in group {
                match pj.action {
                    Action::Noop | Action::Invalid => {
                        report.push(self.settle(pj, new.contains(&pj.job_id))?);
                        if let Some(b) = &bar {
                            b.inc(1);
                        }
                    }
                    Action::Create
                    | Action::Update
                    | Action::Wait
                    | Action::Match
                    | Action::Blocked => {
                        runnable.push(pj);
                    }
                }
            }
            for r in self
                .run_concurrently(&jc, &runnable, target.profile().parallelism, bar.as_ref())
                .await?
            {
                report.push(r);
            }
        }
        // Jobs that waited for a parent created just now, jobs a crashed apply left planned,
        // and blocked jobs (the tenant or the flow may have been fixed).
        let mut left = Vec::new();
        for status in [JobStatus::Waiting, JobStatus::Planned, JobStatus::Blocked] {
            left.extend(self.ctx.state.sink_jobs(&self.name, Some(status))?);
        }
        left.retain(|j| !in_plan.contains(j.job_id.as_str()));
        for j in self.ordered(left) {
            report.push(self.rerun(&jc, &j).await?);
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        self.land_audit(&mut report).await;
        Ok(report)
    }

    /// A progress bar of `jobs` jobs when a person is watching (`Context::progress`).
    fn progress(&self, jobs: u64) -> Option<indicatif::ProgressBar> {
        let m = self.ctx.progress.as_ref()?;
        let pb = m.add(indicatif::ProgressBar::new(jobs));
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix:28} {wide_bar} {human_pos}/{human_len} jobs  {elapsed}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb.set_prefix(self.name.clone());
        Some(pb)
    }

    /// Records a planned no-op or malformed row (once: a re-read record keeps its job).
    fn settle(&self, pj: &plan::PlannedJob, new: bool) -> Result<JobResult> {
        let failed = pj.action == Action::Invalid;
        if new {
            let audit = AuditEntry {
                flow: self.name.clone(),
                job_id: pj.job_id.clone(),
                source_entity: pj.source_entity.clone(),
                source_id: pj.source_id.clone(),
                source_version: pj.source_version,
                target: pj.target.clone(),
                action: if failed {
                    AuditAction::Failed
                } else {
                    AuditAction::Noop
                },
                target_key: pj.target_key.clone(),
                error: Some(pj.reason.clone()),
                ..AuditEntry::default()
            };
            self.ctx.state.sink_commit(&JobFinish {
                job_id: Some(&pj.job_id),
                status: if failed {
                    JobStatus::Failed
                } else {
                    JobStatus::Applied
                },
                error: failed.then_some(pj.reason.as_str()),
                attempted: failed,
                audits: std::slice::from_ref(&audit),
                ..JobFinish::default()
            })?;
        }
        Ok(JobResult {
            job_id: pj.job_id.clone(),
            source_entity: pj.source_entity.clone(),
            source_id: pj.source_id.clone(),
            outcome: if failed {
                JobOutcome::Failed
            } else {
                JobOutcome::Noop
            },
            target_key: pj.target_key.clone(),
            detail: pj.reason.clone(),
        })
    }

    /// Runs the jobs of one mapping, `parallelism` at a time, in plan order within a lane.
    /// Jobs whose natural key is the same share a lane, so two source records that look alike
    /// never search, miss and create side by side; a real API's latency then overlaps across
    /// lanes (the target's HTTP client still enforces its rate and concurrency limits).
    async fn run_concurrently(
        &self,
        jc: &JobCtx<'_>,
        jobs: &[&plan::PlannedJob],
        parallelism: usize,
        bar: Option<&indicatif::ProgressBar>,
    ) -> Result<Vec<JobResult>> {
        use futures::{StreamExt, TryStreamExt};
        let mut lanes: Vec<Vec<(usize, &plan::PlannedJob)>> = Vec::new();
        let mut lane_of: std::collections::HashMap<String, usize> = Default::default();
        for (i, pj) in jobs.iter().enumerate() {
            let key = self
                .flow
                .mapping(&pj.source_entity)
                .map(|em| em.natural_key_of(&pj.row.record))
                .filter(|k| !k.is_empty())
                .unwrap_or_else(|| format!("\u{0}{}", pj.job_id));
            let lane = *lane_of.entry(key).or_insert_with(|| {
                lanes.push(Vec::new());
                lanes.len() - 1
            });
            lanes[lane].push((i, *pj));
        }
        // Boxed so the futures' type is named: a `map` closure here trips rustc's higher-ranked
        // `Send` inference when the apply runs inside a spawned task (`mlc serve`).
        let mut runs: Vec<LaneRun<'_>> = Vec::with_capacity(lanes.len());
        for lane in lanes {
            runs.push(Box::pin(async move {
                let mut out = Vec::with_capacity(lane.len());
                for (i, pj) in lane {
                    let Some(em) = self.flow.mapping(&pj.source_entity) else {
                        continue;
                    };
                    let jr = JobRef {
                        job_id: &pj.job_id,
                        source_entity: &pj.source_entity,
                        source_id: &pj.source_id,
                        source_version: pj.source_version,
                    };
                    let o = jc.run(em, &jr, &pj.row.record).await?;
                    if let Some(b) = bar {
                        b.inc(1);
                    }
                    out.push((
                        i,
                        outcome_result(&pj.job_id, &pj.source_entity, &pj.source_id, o),
                    ));
                }
                Ok(out)
            }));
        }
        let per_lane: Vec<Vec<(usize, JobResult)>> = futures::stream::iter(runs)
            .buffer_unordered(parallelism.max(1))
            .try_collect()
            .await?;
        let mut done: Vec<(usize, JobResult)> = per_lane.into_iter().flatten().collect();
        done.sort_by_key(|(i, _)| *i);
        Ok(done.into_iter().map(|(_, r)| r).collect())
    }

    /// Lands the new audit entries in the warehouse. The writes are done and audited in the
    /// state store whatever happens here; entries a failed landing missed go with the next one.
    async fn land_audit(&self, report: &mut ApplyReport) {
        match audit::land(self.ctx).await {
            Ok(n) => report.audit_landed = n,
            Err(e) => {
                tracing::warn!(flow = %self.name, "the sink audit was not landed in the warehouse (the next apply retries): {e}")
            }
        }
    }

    /// The job `job_id` of this flow, or an error saying where to find the right id.
    fn job(&self, job_id: &str) -> Result<SinkJob> {
        match self.ctx.state.sink_job(job_id)? {
            Some(j) if j.flow == self.name => Ok(j),
            _ => Err(Error::config(format!(
                "no job `{job_id}` in flow `{}`: `mlc sink status {}` lists the failed and waiting jobs with their ids",
                self.name, self.name
            ))),
        }
    }

    /// `mlc sink link`: links the source record of `job_id` to the target record `target_key`
    /// chosen by a person (a search found several candidates, and the sink never guesses).
    /// The record is checked to exist first; the link is audited (`link`, "by hand") and the
    /// job set to run again, so the next apply (or a replay of the job) writes the record's
    /// fields to the linked record through the usual audited path.
    pub async fn link(
        &self,
        job_id: &str,
        target_key: &str,
        target: &dyn Target,
    ) -> Result<JobResult> {
        let lease = self.lease()?;
        let job = self.job(job_id)?;
        let em = self.flow.mapping(&job.source_entity).ok_or_else(|| {
            Error::config(format!(
                "flow `{}` has no mapping `{}` any more (job {job_id})",
                self.name, job.source_entity
            ))
        })?;
        let hub = em.target.as_str();
        let target_name = format!("{}.{hub}", self.flow.target_system);
        if let Some(l) = self
            .ctx
            .state
            .sink_link(&self.name, &job.source_entity, &job.source_id)?
        {
            return Err(Error::config(format!(
                "{} {} is already linked to {target_name} {}: `mlc sink unlink {} --job {job_id}` first",
                job.source_entity, job.source_id, l.target_key, self.name
            )));
        }
        let key_field = target.profile().key_field(hub).to_string();
        let found = target
            .search(hub, &[(key_field.clone(), target_key.to_string())])
            .await
            .map_err(|e| {
                Error::config(format!(
                    "cannot check that {target_name} {target_key} exists: {}",
                    e.reason()
                ))
            })?;
        if found.is_empty() {
            return Err(Error::config(format!(
                "{target_name} has no record with {key_field} = {target_key}"
            )));
        }
        let audit = self.by_hand(&job, target_name.clone(), AuditAction::Link, target_key);
        // A `match` mapping only links: linked, it is done. Others write the record's fields
        // to the linked record when the job runs again.
        let matched = em.mode == flow::Mode::Match;
        self.ctx.state.sink_commit(&JobFinish {
            fence: Some(lease.lease()),
            job_id: Some(&job.job_id),
            status: if matched {
                JobStatus::Applied
            } else {
                JobStatus::Planned
            },
            error: None,
            ambiguous: false,
            attempted: false,
            link: Some(crate::state::NewLink {
                flow: &self.name,
                source_entity: &job.source_entity,
                source_id: &job.source_id,
                target_entity: hub,
                target_key,
                source_version: matched.then_some(job.source_version).flatten(),
                target_version: None,
            }),
            echo: None,
            audits: std::slice::from_ref(&audit),
        })?;
        Ok(JobResult {
            job_id: job.job_id,
            source_entity: job.source_entity,
            source_id: job.source_id,
            outcome: JobOutcome::Linked,
            target_key: Some(target_key.to_string()),
            detail: if matched {
                "linked by hand".into()
            } else {
                format!(
                    "linked by hand; the next `mlc sink apply {0} --yes` (or `mlc sink replay {0} --job {job_id} --yes`) writes the record's fields to it",
                    self.name
                )
            },
        })
    }

    /// The audit entry of a link or unlink made by hand (`mlc sink link` / `unlink`).
    fn by_hand(
        &self,
        job: &SinkJob,
        target: String,
        action: AuditAction,
        target_key: &str,
    ) -> AuditEntry {
        AuditEntry {
            flow: self.name.clone(),
            job_id: job.job_id.clone(),
            source_entity: job.source_entity.clone(),
            source_id: job.source_id.clone(),
            source_version: job.source_version,
            target,
            action,
            request: Some(format!("{action}ed by hand (mlc sink {action})")),
            target_key: Some(target_key.to_string()),
            ..AuditEntry::default()
        }
    }

    /// `mlc sink unlink`: removes the ledger link of `job_id`'s source record (a link made by
    /// mistake), audited (`unlink`). The target record is left as it is; the job is set to run
    /// again, and searches the target as if it had never been linked.
    pub fn unlink(&self, job_id: &str) -> Result<JobResult> {
        let _lease = self.lease()?;
        let job = self.job(job_id)?;
        let Some(link) =
            self.ctx
                .state
                .sink_link(&self.name, &job.source_entity, &job.source_id)?
        else {
            return Err(Error::config(format!(
                "{} {} has no link in flow `{}`",
                job.source_entity, job.source_id, self.name
            )));
        };
        let target = format!("{}.{}", self.flow.target_system, link.target_entity);
        let audit = self.by_hand(&job, target, AuditAction::Unlink, &link.target_key);
        self.ctx.state.sink_unlink(
            &self.name,
            &job.source_entity,
            &job.source_id,
            &job.job_id,
            &audit,
        )?;
        Ok(JobResult {
            job_id: job.job_id,
            source_entity: job.source_entity,
            source_id: job.source_id,
            outcome: JobOutcome::Unlinked,
            target_key: Some(link.target_key),
            detail: "the target record is unchanged; the job runs again with the next apply and searches the target first".into(),
        })
    }

    /// Re-runs failed and waiting jobs (or one job) from their stored records. Safe to repeat:
    /// each attempt goes through the ledger and the search before any create.
    pub async fn replay(&self, which: &Replay, target: &dyn Target) -> Result<ApplyReport> {
        let lease = self.lease()?;
        let jobs = match which {
            Replay::Failed => {
                let mut v = Vec::new();
                for status in [JobStatus::Failed, JobStatus::Waiting, JobStatus::Blocked] {
                    v.extend(self.ctx.state.sink_jobs(&self.name, Some(status))?);
                }
                v
            }
            Replay::Job(id) => match self.ctx.state.sink_job(id)? {
                Some(j) if j.flow == self.name => vec![j],
                _ => {
                    return Err(Error::config(format!(
                        "no job `{id}` in flow `{}`: see `mlc sink status {}`",
                        self.name, self.name
                    )));
                }
            },
        };
        let pre = self.preflight(target).await?;
        let jc = self.job_ctx(target, &pre, &lease);
        let mut report = ApplyReport {
            flow: self.name.clone(),
            ..ApplyReport::default()
        };
        for j in self.ordered(jobs) {
            report.push(self.rerun(&jc, &j).await?);
        }
        // A one-job replay (done by hand, often many in a row) leaves landing to the next
        // apply or replay of the failed jobs: a warehouse merge per job would dominate.
        if *which == Replay::Failed {
            self.land_audit(&mut report).await;
        }
        Ok(report)
    }

    /// Jobs in the flow's dependency order (entity order), oldest first within an entity.
    fn ordered(&self, mut jobs: Vec<SinkJob>) -> Vec<SinkJob> {
        let rank = |e: &str| {
            self.flow
                .entities
                .iter()
                .position(|m| m.name() == e)
                .unwrap_or(usize::MAX)
        };
        jobs.sort_by(|a, b| {
            rank(&a.source_entity)
                .cmp(&rank(&b.source_entity))
                .then_with(|| a.created_at.cmp(&b.created_at))
        });
        jobs
    }

    async fn rerun(&self, jc: &JobCtx<'_>, j: &SinkJob) -> Result<JobResult> {
        let Some(em) = self.flow.mapping(&j.source_entity) else {
            return Ok(JobResult {
                job_id: j.job_id.clone(),
                source_entity: j.source_entity.clone(),
                source_id: j.source_id.clone(),
                outcome: JobOutcome::Failed,
                target_key: None,
                detail: format!("the flow no longer maps {}", j.source_entity),
            });
        };
        let record: Map<String, Value> = match serde_json::from_str(&j.record) {
            Ok(r) => r,
            Err(e) => {
                let why = format!("the stored source record is unreadable: {e}");
                self.ctx.state.sink_commit(&JobFinish {
                    job_id: Some(&j.job_id),
                    status: JobStatus::Failed,
                    error: Some(&why),
                    attempted: true,
                    ..JobFinish::default()
                })?;
                return Ok(JobResult {
                    job_id: j.job_id.clone(),
                    source_entity: j.source_entity.clone(),
                    source_id: j.source_id.clone(),
                    outcome: JobOutcome::Failed,
                    target_key: None,
                    detail: why,
                });
            }
        };
        let jr = JobRef {
            job_id: &j.job_id,
            source_entity: &j.source_entity,
            source_id: &j.source_id,
            source_version: j.source_version,
        };
        let out = jc.run(em, &jr, &record).await?;
        Ok(outcome_result(
            &j.job_id,
            &j.source_entity,
            &j.source_id,
            out,
        ))
    }

    /// Links, job counts, cursors and failed jobs.
    pub fn status(&self) -> Result<FlowStatus> {
        let st = &self.ctx.state;
        let mut by = std::collections::BTreeMap::new();
        let jobs = st.sink_jobs(&self.name, None)?;
        for j in &jobs {
            *by.entry(j.status.to_string()).or_insert(0) += 1;
        }
        let cursors = self
            .flow
            .entities
            .iter()
            .map(|e| {
                let s = plan::cursor_key(self.flow.source_system, e);
                let c = st.sink_cursor(&self.name, &s)?;
                Ok((s, c))
            })
            .collect::<Result<Vec<_>>>()?;
        let stale_before = chrono::Utc::now()
            - chrono::Duration::seconds((self.flow.stale_after_hours * 3600.0) as i64);
        let stale = jobs
            .iter()
            .filter(|j| j.status == JobStatus::Waiting && is_before(&j.created_at, stale_before))
            .count();
        Ok(FlowStatus {
            flow: self.name.clone(),
            description: self.flow.description.clone(),
            links: st.sink_links(&self.name)?.len(),
            jobs_by_status: by,
            cursors,
            stale,
            stale_after_hours: self.flow.stale_after_hours,
            failed: jobs
                .into_iter()
                .filter(|j| {
                    [JobStatus::Failed, JobStatus::Waiting, JobStatus::Blocked].contains(&j.status)
                })
                .collect(),
        })
    }
}

/// Whether an RFC 3339 time (a job's `created_at`) is before `t`; unreadable times are not.
fn is_before(at: &str, t: chrono::DateTime<chrono::Utc>) -> bool {
    chrono::DateTime::parse_from_rfc3339(at).is_ok_and(|a| a < t)
}

/// A held flow lease, given back on drop (a crash leaves it to be taken over: its pid is dead).
fn outcome_result(job_id: &str, entity: &str, id: &str, o: Outcome) -> JobResult {
    let (outcome, key, detail) = match o {
        Outcome::Created(k) => (JobOutcome::Created, Some(k), String::new()),
        Outcome::Updated(k) => (JobOutcome::Updated, Some(k), String::new()),
        Outcome::Linked(k) => (JobOutcome::Linked, Some(k), "found by search".into()),
        Outcome::Failed { reason, .. } => (JobOutcome::Failed, None, reason),
        Outcome::Waiting(why) => (JobOutcome::Waiting, None, why),
        Outcome::Blocked(why) => (JobOutcome::Blocked, None, why),
        Outcome::Noop { key, reason } => (JobOutcome::Noop, key, reason),
    };
    JobResult {
        job_id: job_id.into(),
        source_entity: entity.into(),
        source_id: id.into(),
        outcome,
        target_key: key,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every outcome a job can end in is counted for the metrics; an unlink counts as a no-op.
    #[test]
    fn every_outcome_is_counted() {
        let mut report = ApplyReport::default();
        for outcome in JobOutcome::ALL {
            report.push(JobResult {
                job_id: outcome.to_string(),
                source_entity: "account".into(),
                source_id: "a1".into(),
                outcome: *outcome,
                target_key: None,
                detail: String::new(),
            });
        }
        let counted: usize = report.by_outcome().iter().map(|(_, n)| n).sum();
        assert_eq!(counted, JobOutcome::ALL.len());
        let of = |o: JobOutcome| report.by_outcome().into_iter().find(|(x, _)| *x == o);
        assert_eq!(of(JobOutcome::Blocked), Some((JobOutcome::Blocked, 1)));
        assert_eq!(of(JobOutcome::Noop), Some((JobOutcome::Noop, 2)));
    }
}

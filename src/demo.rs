//! `mlc demo`: the main job end to end on embedded defaults, with no credentials and no network.
//! Starts the sandbox in-process, configures a project folder for it (the sandbox's client
//! secret goes to the encrypted vault, never to mlc.toml), runs a full sync of every stream of
//! every system (the Looker reverse stream included: one query and one saved Look landed as
//! `ref_looker` reference tables), mutates the sandbox, runs an incremental sync, checks every
//! table against the source, applies the `dynamics_to_deltek` sink flow to the Deltek sandbox
//! and prints a summary and sample queries.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use secrecy::SecretString;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::loaders::warehouse::OutputFormat;
use crate::run::{Context, RunRequest, RunSummary, run_many};
use crate::sandbox::{Sandbox, SandboxOptions};
use crate::systems::system::System;
use crate::vault::{Secrets, Vault};

/// The sink flows the demo applies, in order.
const SINK_FLOWS: [&str; 2] = ["dynamics_to_deltek", "pipedrive_to_business_central"];

/// The connection the demo configures.
pub const DEMO_CONNECTION: &str = "crm";

/// Options of `mlc demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Project folder to create (wiped of earlier demo state).
    pub dir: PathBuf,
    /// Sandbox accounts; the other tables scale with it.
    pub scale: u64,
}

/// Writes a project for a running sandbox into `dir`: an mlc.toml with one connection per
/// system (no secrets in it) and the sandbox's credentials in the project's encrypted vault.
/// Shared by `mlc demo`, `mlc sandbox --project` and the benchmarks. `keyset_every_run` sets
/// `reconcile_every_hours = 0`, so deletes of sources without a delete feed are found by every
/// incremental run (the demo shows them at once).
pub fn write_project(
    dir: &Path,
    sb: &Sandbox,
    extra: &str,
    keyset_every_run: bool,
) -> Result<Config> {
    let mut text = String::from(
        r#"# A project reading the local sandbox (written by mlc).
# The sandbox's credentials are in the encrypted vault (.mlc/vault.json), not here.

[lake]
url = "file://.mlc/lake"

[state]
path = ".mlc/state.db"

[warehouse]
kind = "local"
path = ".mlc/warehouse"
"#,
    );
    text.push_str(extra);
    let conns = sb.connections();
    for c in &conns {
        // The sandbox is local: client-side pacing would only slow the demo down (the
        // sandboxes still answer 429 when their own limits are exceeded).
        let _ = write!(
            text,
            "\n[connections.{}]\n{}requests_per_minute = 100000\n{}",
            c.name,
            c.settings,
            if keyset_every_run {
                "reconcile_every_hours = 0\n"
            } else {
                ""
            }
        );
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(crate::config::CONFIG_FILE);
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    let config = Config::load(&path)?;
    let vault = Vault::new(&config.vault);
    for c in &conns {
        let secrets: Secrets = c
            .secrets
            .iter()
            .map(|(k, v)| (k.clone(), SecretString::from(v.clone())))
            .collect();
        vault.put(&c.name, &secrets)?;
    }
    Ok(config)
}

fn summary_table(
    title: &str,
    results: &[(String, Result<RunSummary>)],
    defs: &crate::spec::Definitions,
) -> (String, bool) {
    use crate::text_table::{Align::*, Table};
    let mut ok = true;
    let mut t = Table::new(&[
        ("table", Left),
        ("extracted", Right),
        ("upserted", Right),
        ("deleted", Right),
        ("quarantined", Right),
        ("rows", Right),
        ("seconds", Right),
    ]);
    let mut sorted: Vec<_> = results.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (label, r) in sorted {
        match r {
            Ok(s) => {
                // `raw_<system>.<entity>`, or the source's own dataset (`ref_looker`).
                let table = match s.stream.parse().ok().and_then(|id| defs.get(&id).ok()) {
                    Some(st) => format!("{}.{}", st.dataset(), st.id.entity),
                    None => format!("raw_{}", s.stream),
                };
                t.row(vec![
                    table,
                    s.rows_extracted.to_string(),
                    s.upserted.to_string(),
                    s.deleted.to_string(),
                    s.quarantined.to_string(),
                    s.table_rows.to_string(),
                    format!("{:.2}", s.seconds),
                ]);
                for n in &s.notes {
                    t.note(format!("note: {n}"));
                }
            }
            Err(e) => {
                ok = false;
                t.span(label.clone(), format!("FAILED: {e}"));
            }
        }
    }
    (format!("\n{title}\n{}", t.render("  ")), ok)
}

/// Runs the demo, printing as it goes through `print`.
pub async fn run_demo(opts: &DemoOptions, print: &mut dyn FnMut(&str)) -> Result<()> {
    let dir = &opts.dir;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let state_dir = dir.join(".mlc");
    if state_dir.exists() {
        std::fs::remove_dir_all(&state_dir).map_err(|e| Error::io(&state_dir, e))?;
    }
    let sandbox = Sandbox::start(
        SandboxOptions {
            scale: opts.scale,
            ..SandboxOptions::default()
        },
        "127.0.0.1:0"
            .parse()
            .map_err(|e| Error::config_from("the sandbox address", e))?,
    )
    .await?;
    print(&format!(
        "ml-connector demo in {}\nsandbox (Entra, Dataverse, Business Central, Deltek, Pipedrive, Looker) at {}",
        dir.display(),
        sandbox.base_url()
    ));

    let config = write_project(dir, &sandbox, "", true)?;
    let ctx = Context::open(config)?;
    let conns: Vec<&crate::config::Connection> = ctx.config.connections.values().collect();

    let full = run_many(&ctx, &conns, &[], &RunRequest::Sync { full: false }).await?;
    let (table, ok1) = summary_table(
        "Full sync (change tracking started; Looker queries run as reference tables):",
        &full,
        &ctx.defs,
    );
    print(&table);

    let changes = sandbox.mutate();
    let changes = serde_json::to_value(&changes).unwrap_or_default();
    print(&format!("\nChanged the sandbox: {changes}"));

    let incr = run_many(&ctx, &conns, &[], &RunRequest::Sync { full: false }).await?;
    let (table, ok2) = summary_table(
        "Incremental sync (delta tokens, modified-time cursors, key-set passes; Looker tables replaced):",
        &incr,
        &ctx.defs,
    );
    print(&table);

    // Every table must equal its source.
    let mut check = String::from("\nWarehouse vs sandbox:\n");
    let mut all_equal = true;
    let local = ctx
        .warehouse
        .local()
        .ok_or_else(|| Error::config("the demo needs the local warehouse"))?;
    let mut streams = Vec::new();
    for conn in &conns {
        streams.extend(ctx.streams_for(conn, &[])?);
    }
    for stream in streams {
        // A Looker stream's source is its query's (or Look's) result.
        let source = match (&stream.spec.query, &stream.spec.look_id) {
            (Some(q), _) => sandbox.looker_query_rows(q, stream.spec.limit),
            (None, Some(look)) => sandbox.looker_look_rows(look, stream.spec.limit),
            _ => sandbox.live_count(&stream.id.system, &stream.id.entity),
        };
        let Some(source) = source else {
            continue;
        };
        let rows = local.row_count(&stream.dataset(), &stream.id.entity)?;
        let mark = if rows == source { "ok" } else { "MISMATCH" };
        all_equal &= rows == source;
        let _ = writeln!(
            check,
            "  {:<44} {:>8} rows  (sandbox {:>8})  {mark}",
            format!("{}.{}", stream.dataset(), stream.id.entity),
            rows,
            source
        );
    }
    print(&check);

    let sql = "SELECT a.name AS account, a.address1_city AS city, o.name AS opportunity, o.actualvalue \
               FROM raw_dataverse.opportunity o JOIN raw_dataverse.account a ON o.customerid = a.accountid \
               WHERE o.statecode = 1 ORDER BY o.actualvalue DESC LIMIT 5";
    print(&format!("\nmlc query \"{sql}\""));
    print(&ctx.warehouse.query(sql, OutputFormat::Table)?);
    // The Looker reverse stream: one query and one saved Look, landed as reference tables.
    let sql = "SELECT department, ROUND(SUM(planned_amount), 2) AS planned, ROUND(SUM(actual_amount), 2) AS actual \
               FROM ref_looker.budget_summary GROUP BY department ORDER BY department LIMIT 5";
    print(&format!("\nmlc query \"{sql}\""));
    print(&ctx.warehouse.query(sql, OutputFormat::Table)?);
    let sql = "SELECT * FROM ref_looker.pipeline_by_stage ORDER BY result_row";
    print(&format!("\nmlc query \"{sql}\""));
    print(&ctx.warehouse.query(sql, OutputFormat::Table)?);
    let mut sink_ok = true;
    for flow in SINK_FLOWS {
        sink_ok &= run_sink(&ctx, flow, print).await?;
    }
    sink_ok &= master_data_back(&ctx, &sandbox, print).await?;
    let sql = "SELECT mapping, target, action, COUNT(*) AS entries FROM mlc_sink.audit GROUP BY mapping, target, action ORDER BY mapping, action";
    print(&format!("\nmlc query \"{sql}\""));
    print(&ctx.warehouse.query(sql, OutputFormat::Table)?);
    print(&format!(
        "\nTry it yourself:\n  cd {}\n  mlc query \"SELECT name, address1_city, revenue FROM raw_dataverse.account LIMIT 10\"\n  mlc query \"SELECT * FROM ref_looker.budget_summary LIMIT 10\"\n  mlc sink status\n  mlc sink audit dynamics_to_deltek\n  mlc sink audit pipedrive_to_business_central\n  mlc state show\n",
        dir.display()
    ));
    sandbox.shutdown().await;
    if !(ok1 && ok2) {
        return Err(Error::Stopped("some streams failed; see above".into()));
    }
    if !sink_ok {
        return Err(Error::Stopped(
            "sink jobs failed for a reason other than an ambiguous match; see `mlc sink status` in the demo folder".into(),
        ));
    }
    if !all_equal {
        return Err(Error::Stopped(
            "the warehouse does not match the sandbox; see above".into(),
        ));
    }
    Ok(())
}

/// Master data back to Pipedrive: a Business Central user moves a customer and reprices an
/// item that pipedrive_to_business_central wrote; Business Central is synced again and
/// business_central_to_pipedrive sends those two changes (and not the echoes of the sink's own
/// writes) to the linked Pipedrive organization and product.
async fn master_data_back(
    ctx: &Context,
    sandbox: &Sandbox,
    print: &mut dyn FnMut(&str),
) -> Result<bool> {
    const FORWARD: &str = "pipedrive_to_business_central";
    let links = ctx.state.sink_links(FORWARD)?;
    let first = |mapping: &str| {
        links
            .iter()
            .find(|(m, _, _)| m == mapping)
            .map(|(_, _, l)| l.target_key.clone())
    };
    let (Some(customer), Some(item)) = (first("organization"), first("product")) else {
        return Ok(true);
    };
    const BACK: &str = "business_central_to_pipedrive";
    let erp: Vec<&crate::config::Connection> = ctx
        .config
        .connections
        .values()
        .filter(|c| c.system() == System::BusinessCentral)
        .collect();
    let patterns = [
        "business_central.customer".to_string(),
        "business_central.item".to_string(),
    ];
    let sync_bc = || async {
        for (label, r) in run_many(ctx, &erp, &patterns, &RunRequest::Sync { full: false }).await? {
            r.map_err(|e| Error::Stopped(format!("{label}: {e}")))?;
        }
        Ok::<_, Error>(())
    };
    // Business Central read back right after the sink wrote it: every record it wrote comes
    // back as its own echo, and nothing goes to Pipedrive.
    sync_bc().await?;
    let sink = crate::loaders::sink::Sink::open(ctx, BACK)?;
    let echo = sink.apply(&sink.plan().await?, &sink.target(None)?).await?;
    print(&format!(
        "\nBusiness Central read back: {} customers and items checked, {} written to Pipedrive (the sink's own writes are recognised, not echoed)",
        echo.jobs.len(),
        echo.created + echo.updated
    ));
    sandbox.business_central_set_field(0, "customers", &customer, "city", "Rotterdam".into())?;
    sandbox.business_central_set_field(0, "items", &item, "unitPrice", 249.5.into())?;
    print(&format!(
        "Changed in Business Central: customer {customer} moved to Rotterdam, item {item} repriced to 249.50"
    ));
    sync_bc().await?;
    let ok = run_sink(ctx, BACK, print).await?;
    for w in sandbox.pipedrive_writes() {
        let fields: Vec<&str> = w
            .fields
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        print(&format!(
            "  Pipedrive {} {} /api/v2/{}/{} [{}]",
            w.status,
            w.method,
            w.entity,
            w.id,
            fields.join(", ")
        ));
    }
    Ok(ok)
}

/// One sink flow over the change sets just synced (Dynamics 365 Sales → Vantagepoint:
/// employees matched by email, clients, contacts, pursuits, one project per Won opportunity;
/// Pipedrive → Business Central: customers, contacts, items, one sales order per won deal).
/// Returns whether every failed job is one the sink refused to guess (an ambiguous match).
async fn run_sink(ctx: &Context, flow: &str, print: &mut dyn FnMut(&str)) -> Result<bool> {
    use crate::loaders::sink::{Sink, plan::Action};
    let sink = Sink::open(ctx, flow)?;
    let plan = sink.plan().await?;
    let target = sink.target(None)?;
    let started = std::time::Instant::now();
    let report = sink.apply(&plan, &target).await?;
    let secs = started.elapsed().as_secs_f64();
    let mut out = format!(
        "\nSink {flow}: {} jobs planned ({} creates, {} updates, {} matches) and applied in {secs:.1} s:\n",
        plan.jobs.len(),
        plan.count(&Action::Create),
        plan.count(&Action::Update),
        plan.count(&Action::Match)
    );
    let mut by: std::collections::BTreeMap<(&str, &str), usize> = Default::default();
    for j in &report.jobs {
        *by.entry((j.source_entity.as_str(), j.outcome.as_str()))
            .or_default() += 1;
    }
    for ((mapping, outcome), n) in &by {
        let _ = writeln!(out, "  {mapping:<12} {outcome:<8} {n:>6}");
    }
    let _ = write!(
        out,
        "  waiting jobs are retried by the next apply or `mlc sink replay {flow} --yes`; {} audit entries landed in mlc_sink.audit",
        report.audit_landed
    );
    print(&out);
    // Failed jobs are the sink refusing to guess (two target records match one natural key):
    // they wait for a person, visibly, and are not a failure of the demo.
    for j in report.jobs.iter().filter(|j| j.outcome == "failed") {
        print(&format!(
            "  failed {} {}: {}",
            j.source_entity, j.source_id, j.detail
        ));
    }
    // The documents a deal or an opportunity seeded (the flow's last mapping).
    let last = sink.flow().entities.last().map(|e| e.name().to_string());
    for j in report
        .jobs
        .iter()
        .filter(|j| Some(&j.source_entity) == last.as_ref() && j.outcome == "created")
        .take(3)
    {
        print(&format!(
            "  {} {} seeded {}",
            j.source_entity,
            j.source_id,
            j.target_key.as_deref().unwrap_or("?")
        ));
    }
    // Every failure must be one the sink chose (an ambiguous match), never an error.
    Ok(report
        .jobs
        .iter()
        .filter(|j| j.outcome == "failed")
        .all(|j| j.detail.contains("the sink never guesses")))
}

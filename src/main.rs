//! `mlc`, the command line. Parsing and printing only: the work lives in the library, and this is
//! the one place `anyhow` is used.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use ml_connector::config::{CONFIG_FILE, Config};
use ml_connector::connect;
use ml_connector::demo::{DemoOptions, run_demo};
use ml_connector::loaders::warehouse::OutputFormat;
use ml_connector::run::{Context, RunOutcome, RunRequest, RunSummary, run_many_reporting};
use ml_connector::sandbox::{Faults, Sandbox, SandboxOptions, Tenant};
use ml_connector::spec::Definitions;
use ml_connector::systems::System;
use ml_connector::vault::{Secrets, Vault};
use secrecy::SecretString;

/// `println!` that ends the process quietly when standard output is closed (`mlc query … |
/// head -1`): the reader is done, which is no error (cargo and ripgrep treat it the same way).
/// Defined before any use, so it replaces the standard macro in this file.
macro_rules! println {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            stdout_failed(e);
        }
    }};
}

/// `print!` with the same closed-pipe handling as [`println!`].
macro_rules! print {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = write!(std::io::stdout(), $($arg)*) {
            stdout_failed(e);
        }
    }};
}

/// Where writing to standard output failed: a closed pipe ends the process with success,
/// anything else with an error.
fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: cannot write to standard output: {e}");
    std::process::exit(1);
}

#[derive(Parser)]
#[command(
    name = "mlc",
    version,
    about = "ml-connector: ERP/CRM → Parquet lake → warehouse",
    long_about = "ml-connector moves data out of Deltek Vantagepoint, Dynamics 365 (Dataverse, Business Central) and Pipedrive into a Parquet lake and a warehouse, incrementally, with deletes, and brings Looker results back as reference tables.\n\nStart with `mlc demo`."
)]
struct Cli {
    /// Path of the configuration file.
    #[arg(long, global = true, env = "MLC_CONFIG", default_value = CONFIG_FILE)]
    config: PathBuf,
    /// More logging (-v info, -vv debug). MLC_LOG overrides with a tracing filter.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Logs as JSON lines (for schedulers and log shippers).
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the main job on the built-in sandbox: full sync, changes, incremental sync, query.
    Demo {
        /// Project folder to create.
        #[arg(long, default_value = "mlc-demo")]
        dir: PathBuf,
        /// Sandbox accounts (other tables scale with it).
        #[arg(long, default_value_t = 2000)]
        scale: u64,
    },
    /// Serve the local fakes (Entra, Dataverse, Business Central, Deltek, Pipedrive, Looker) for tests, demos and benchmarks.
    Sandbox(SandboxArgs),
    /// Write a commented mlc.toml.
    Init {
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Extract streams incrementally and load them into the warehouse.
    Sync {
        /// Streams: `system.entity`, `system.*` or `system` (default: every stream of every connection).
        streams: Vec<String>,
        /// Only this connection.
        #[arg(long)]
        connection: Option<String>,
        /// Re-read everything and mark rows missing from the source as deleted.
        #[arg(long)]
        full: bool,
        /// Print the run summaries as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-read a window of one stream without touching its incremental state.
    Backfill {
        /// Stream id, e.g. dataverse.account (`mlc catalog list` lists them).
        stream: String,
        /// Start of the window (YYYY-MM-DD or RFC 3339), inclusive.
        #[arg(long)]
        since: Option<String>,
        /// End of the window, exclusive.
        #[arg(long)]
        until: Option<String>,
        /// Only this connection (its `[connections.NAME]` section in mlc.toml).
        #[arg(long)]
        connection: Option<String>,
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Run SQL over the warehouse tables (e.g. raw_dataverse.account).
    Query {
        /// The query, with tables named `dataset.table`. Unaliased expressions are named by
        /// their text (`COUNT(*)`).
        #[arg(required_unless_present = "tables")]
        sql: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// List the local warehouse's tables with their column and row counts instead.
        #[arg(long, conflicts_with = "sql")]
        tables: bool,
    },
    /// Run history, newest first: start, end, kind, rows, where each run stands (running,
    /// failed, interrupted, committed, absent, abandoned) and its error.
    Runs {
        /// Only this stream (e.g. dataverse.account).
        stream: Option<String>,
        /// Only runs that failed or were interrupted.
        #[arg(long)]
        failed: bool,
        /// How many runs to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show or reset stream state and run history.
    #[command(subcommand)]
    State(StateCmd),
    /// Inspect stream and table definitions.
    #[command(subcommand)]
    Catalog(CatalogCmd),
    /// Draft catalog (and stream) files from a connection's live metadata, custom fields
    /// included. Review the drafts, then move them into catalog/ and streams/ to use them.
    Discover {
        /// Connection to read (its system decides the metadata endpoint).
        connection: String,
        /// Only these entities (stream entity names, or API names for new ones).
        #[arg(long = "entity")]
        entities: Vec<String>,
        /// Folder receiving catalog/<system>/<entity>.toml (and streams/ for new entities);
        /// default `discovered` beside mlc.toml.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Machine-readable output (JSON): one object per entity.
        #[arg(long)]
        json: bool,
    },
    /// Manage connections and their encrypted credentials.
    #[command(subcommand)]
    Connection(ConnectionCmd),
    /// The CRM → ERP sink stage: plan, apply (dry run unless --yes), replay, status, audit.
    #[command(subcommand)]
    Sink(SinkCmd),
    /// Run schedules and webhook receivers (Dataverse, Pipedrive, Business Central) until
    /// SIGTERM or Ctrl-C; /healthz and /metrics on the same listener.
    Serve {
        /// Address to listen on (default: serve.listen, 127.0.0.1:8787).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Webhook registration and secrets for `mlc serve`.
    #[command(subcommand)]
    Webhooks(WebhooksCmd),
    /// Generate LookML views (one per stream) from the catalog, for a Looker project.
    Lookml {
        /// Streams: `system.entity`, `system.*` or `system` (default: every stream).
        streams: Vec<String>,
        /// Folder receiving <system>/<entity>.view.lkml; default `lookml` beside mlc.toml.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Machine-readable output (JSON): the files written and unchanged.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct SandboxArgs {
    /// Address the sandbox listens on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port the sandbox listens on.
    #[arg(long, default_value_t = 8800)]
    port: u16,
    /// Accounts to serve (other tables scale with it).
    #[arg(long, default_value_t = 2000)]
    scale: u64,
    /// Seed of every generated value and fault draw (same seed, same data).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Fault rates, e.g. "429=0.05,5xx=0.02,reset=0.01,slow=0.01,expire=0.01".
    #[arg(long, default_value = "none")]
    faults: String,
    /// Which tenant the fakes play: `standard` (a typical current tenant), `lean` (older or
    /// smaller: columns and entities missing) or `custom` (many custom fields, type drift).
    #[arg(long, default_value = "standard")]
    tenant: String,
    /// Access-token lifetime in seconds.
    #[arg(long, default_value_t = 3599)]
    token_ttl: u64,
    /// Also write a project for this sandbox into DIR (mlc.toml with one connection per
    /// system, credentials in its encrypted vault), ready for `mlc --config DIR/mlc.toml sync`.
    #[arg(long, value_name = "DIR")]
    project: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Subcommand)]
enum StateCmd {
    /// Committed cursors, the latest runs, and the leases workers hold now.
    Show {
        /// Stream id, e.g. dataverse.account (`mlc catalog list` lists them).
        stream: Option<String>,
        /// How many runs to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Copy the SQLite state (`state.path`) into an empty Postgres state, to run many workers:
    /// cursors, runs and checkpoints, the sink ledger, jobs and audit, leases, webhook keys,
    /// subscriptions and schedule fire times. Then set `[state] url` in every worker's mlc.toml.
    Migrate {
        /// The Postgres state to fill (default: `state.url` of mlc.toml). A password belongs in
        /// the environment: `--to 'postgres://mlc:${MLC_STATE_PASSWORD}@db/mlc'`.
        #[arg(long)]
        to: Option<String>,
        /// The SQLite file to copy (default: `state.path` of mlc.toml).
        #[arg(long)]
        from: Option<PathBuf>,
    },
    /// Forget a stream's cursor: its next sync is a full snapshot.
    Reset {
        /// Stream id, e.g. dataverse.account (`mlc catalog list` lists them).
        stream: String,
        /// Only this connection (its `[connections.NAME]` section in mlc.toml).
        #[arg(long)]
        connection: Option<String>,
    },
}

#[derive(Subcommand)]
enum SinkCmd {
    /// What apply would do with the flow's new change sets: creates, updates, matches, waits,
    /// blocked jobs and no-ops, each with its reason, checked against the target's metadata.
    /// Writes nothing. Built-in flows: dynamics_to_deltek, pipedrive_to_business_central,
    /// business_central_to_pipedrive.
    Plan {
        /// Sink flow: loaders/sink/<FLOW>.toml (built in: dynamics_to_deltek, pipedrive_to_business_central, business_central_to_pipedrive).
        flow: String,
        /// Every job on its own line (the default shows each mapping × action × cause once,
        /// with a few example ids).
        #[arg(long)]
        details: bool,
        /// Target connection for the pre-flight (default: the only connection of the flow's
        /// target system; without one the plan is not checked against the tenant).
        #[arg(long)]
        target: Option<String>,
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Check the flow against the target tenant's metadata (fields, external-id field, text
    /// lengths) without writing; exits non-zero on problems (for a customer's CI).
    Check {
        /// Sink flow: loaders/sink/<FLOW>.toml (built in: dynamics_to_deltek, pipedrive_to_business_central, business_central_to_pipedrive).
        flow: String,
        /// Target connection (default: the only connection of the flow's target system).
        #[arg(long)]
        target: Option<String>,
        /// Forget the rules learned from the target's refusals (after the tenant changed).
        #[arg(long)]
        forget_learned: bool,
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Perform the plan. A dry run (prints the plan, writes nothing) unless --yes is given.
    /// Exits non-zero when a job failed (the other jobs still ran; see `mlc sink status`).
    Apply {
        /// Sink flow: loaders/sink/<FLOW>.toml (built in: dynamics_to_deltek, pipedrive_to_business_central, business_central_to_pipedrive).
        flow: String,
        /// Really write to the target.
        #[arg(long)]
        yes: bool,
        /// Every job on its own line (plan and report).
        #[arg(long)]
        details: bool,
        /// Target connection (default: the only connection of the flow's target system).
        #[arg(long)]
        target: Option<String>,
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Re-run failed and waiting jobs (the default, --failed) or one job (--job ID) from their
    /// stored source records; each attempt searches the target before any create. Dry run
    /// unless --yes.
    Replay {
        /// Sink flow: loaders/sink/<FLOW>.toml (built in: dynamics_to_deltek, pipedrive_to_business_central, business_central_to_pipedrive).
        flow: String,
        /// Every failed, blocked and waiting job (the default).
        #[arg(long, conflicts_with = "job")]
        failed: bool,
        /// Job id (`mlc sink status FLOW` lists the failed, blocked and waiting ones).
        #[arg(long)]
        job: Option<String>,
        /// Really write to the target (without it: a dry run that writes nothing).
        #[arg(long)]
        yes: bool,
        /// Target connection (default: the only connection of the flow's target system).
        #[arg(long)]
        target: Option<String>,
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Link a job's source record to a target record you chose (a search found several and
    /// the sink never guesses). Checks the record exists; audited; the job then runs again and
    /// writes the record's fields to it.
    Link {
        /// Sink flow: loaders/sink/<FLOW>.toml (built in: dynamics_to_deltek, pipedrive_to_business_central, business_central_to_pipedrive).
        flow: String,
        /// The job id (`mlc sink status FLOW` lists failed and waiting jobs).
        #[arg(long)]
        job: String,
        /// The target record's key (e.g. the firm's ClientID, the customer's id).
        #[arg(long)]
        target_id: String,
        /// Target connection (default: the only connection of the flow's target system).
        #[arg(long)]
        target: Option<String>,
    },
    /// Remove a job's ledger link (made by mistake); audited. The target record is unchanged;
    /// the job runs again and searches the target first.
    Unlink {
        /// Sink flow: loaders/sink/<FLOW>.toml (built in: dynamics_to_deltek, pipedrive_to_business_central, business_central_to_pipedrive).
        flow: String,
        /// Job id (`mlc sink status FLOW` lists the failed, blocked and waiting ones).
        #[arg(long)]
        job: String,
    },
    /// Links, jobs by status, cursors over run manifests, and failed or waiting jobs with why.
    Status {
        /// Flow name (default: every built-in flow).
        flow: Option<String>,
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Every audited write (and no-op) of a flow, or of one job.
    Audit {
        /// Sink flow: loaders/sink/<FLOW>.toml (built in: dynamics_to_deltek, pipedrive_to_business_central, business_central_to_pipedrive).
        flow: String,
        /// Only this job's entries.
        #[arg(long)]
        job: Option<String>,
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum WebhooksCmd {
    /// Create the Pipedrive webhooks and Business Central subscriptions of a connection (or of
    /// every connection of a system), or print the Dataverse service-endpoint steps.
    Register {
        /// Connection name, or a system name (dataverse, pipedrive, business_central).
        target: String,
    },
    /// Store one webhook secret (e.g. Pipedrive `signing_secret`, or your own Dataverse `key`)
    /// from an environment variable into the vault.
    Secret {
        /// The connection the secret belongs to.
        connection: String,
        /// key (Dataverse), password or signing_secret (Pipedrive), client_state (BC).
        field: String,
        /// Environment variable holding the value.
        #[arg(long)]
        env: String,
    },
}

#[derive(Subcommand)]
enum CatalogCmd {
    /// Every stream with its table and incremental mode.
    List {
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// One stream's definition and columns.
    Show {
        /// Stream id, e.g. dataverse.account (`mlc catalog list` lists them).
        stream: String,
    },
    /// How each tenant differs from the catalog: absent entities and columns, columns added
    /// for the tenant's own fields, values whose type drifted, fields kept in `_ml_extra`.
    Diff {
        /// Stream ids or patterns (e.g. dataverse.account, deltek.*); default: all.
        streams: Vec<String>,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Generate the dbt project's sources.yml and staging models from the catalog.
    ExportDbt {
        /// The dbt project folder (receives models/sources.yml and models/staging/); default
        /// `dbt` beside mlc.toml.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConnectionCmd {
    /// Add (or replace) a connection: settings go to mlc.toml, secrets to the encrypted vault.
    Add(AddArgs),
    /// Configured connections and whether their secrets are stored.
    List {
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Get a token and read one row; explains what is wrong.
    Check {
        /// Connection name (default: every connection in mlc.toml).
        name: Option<String>,
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Remove a connection and its stored secrets.
    Remove {
        /// Connection name (its `[connections.NAME]` section in mlc.toml).
        name: String,
    },
}

/// `--system`: one of the systems, with the list when it is not.
fn parse_system(s: &str) -> std::result::Result<System, String> {
    s.parse()
        .map_err(|_| format!("not a system; one of {}", System::names()))
}

#[derive(Args)]
struct AddArgs {
    /// Connection name (its `[connections.NAME]` section in mlc.toml).
    name: String,
    /// dataverse, business_central, deltek, pipedrive or looker.
    #[arg(long, default_value_t = System::Dataverse, value_parser = parse_system)]
    system: System,
    /// Dataverse: https://<org>.crm.dynamics.com
    #[arg(long)]
    environment_url: Option<String>,
    /// Entra tenant id or verified domain (Dataverse, Business Central).
    #[arg(long)]
    tenant_id: Option<String>,
    /// Client id of the app registration (or the API key pair).
    #[arg(long)]
    client_id: Option<String>,
    /// Entra authority host (national clouds use their own login host).
    #[arg(long)]
    authority_url: Option<String>,
    /// Any other setting of the system, as key=value (repeatable), e.g.
    /// --set environment=Production --set 'companies=["CRONUS USA, Inc."]'.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// Read the client secret from this environment variable.
    #[arg(long, conflicts_with = "client_secret_stdin")]
    client_secret_env: Option<String>,
    /// Read the client secret from standard input.
    #[arg(long)]
    client_secret_stdin: bool,
    /// Another secret from an environment variable, as FIELD=VAR (repeatable), e.g.
    /// --secret-env password=VP_PASSWORD --secret-env api_token=PIPEDRIVE_TOKEN.
    #[arg(long, value_name = "FIELD=VAR")]
    secret_env: Vec<String>,
}

fn init_logging(verbose: u8, json: bool, serving: bool) {
    let default = match verbose {
        0 if serving => "warn,ml_connector=info",
        0 => "warn",
        1 => "warn,ml_connector=info",
        _ => "info,ml_connector=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MLC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// glibc's malloc raises its mmap threshold after big buffers are freed and keeps one arena per
/// thread, so the page-sized buffers of the decode pipeline stayed resident long after use
/// (peak RSS of a 1 M-row sync 440 MiB → 270 MiB with these two settings, no slower).
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    // A long-running server logs JSON lines whenever nobody is watching its stderr.
    let serving = matches!(cli.command, Command::Serve { .. });
    init_logging(
        cli.verbose,
        cli.log_json || (serving && !std::io::stderr().is_terminal()),
        serving,
    );
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", report(&e));
            ExitCode::FAILURE
        }
    }
}

/// A sink apply or replay another worker is running: it is that worker's, not a failure (so
/// several workers can run the same schedule).
fn left_to_another(held: &ml_connector::Error) -> ExitCode {
    eprintln!("left to another worker: {held}");
    ExitCode::SUCCESS
}

/// An error and its causes on one line ([`ml_connector::error::in_words`]).
fn report(e: &anyhow::Error) -> String {
    ml_connector::error::in_words(e.as_ref())
}

/// Keeps the project's `.mlc/` folder (encrypted vault and its key, state, lake, warehouse) out
/// of git: a `.gitignore` next to mlc.toml gets the line when no line covers it yet.
fn ensure_gitignore(config: &Path) -> Result<()> {
    let dir = config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let path = dir.join(".gitignore");
    let existing = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let covered = existing
        .lines()
        .map(str::trim)
        .any(|l| matches!(l, ".mlc" | ".mlc/" | "/.mlc" | "/.mlc/" | ".mlc/*" | "*"));
    if covered {
        return Ok(());
    }
    let mut text = existing;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(
        "# mlc: the encrypted vault and its key, state, lake and local warehouse\n.mlc/\n",
    );
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Where a generating command writes: `--out` as given (relative to the working directory,
/// as paths typed in a shell are), else `default` in the project folder (beside mlc.toml),
/// wherever the command runs from.
fn out_dir(config: &Path, out: Option<PathBuf>, default: &str) -> PathBuf {
    out.unwrap_or_else(|| match config.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.join(default),
        _ => PathBuf::from(default),
    })
}

fn load_config(path: &Path) -> Result<Config> {
    Ok(Config::load(path)?)
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Demo { dir, scale } => {
            run_demo(&DemoOptions { dir, scale }, &mut |s| println!("{s}")).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sandbox(a) => sandbox(a).await,
        Command::Init { force } => {
            if cli.config.exists() && !force {
                bail!(
                    "{} exists; use --force to overwrite it",
                    cli.config.display()
                );
            }
            std::fs::write(&cli.config, ml_connector::config::template())
                .with_context(|| format!("writing {}", cli.config.display()))?;
            ensure_gitignore(&cli.config)?;
            println!(
                "wrote {}: add a connection with `mlc connection add`, then `mlc sync`",
                cli.config.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync {
            streams,
            connection,
            full,
            json,
        } => {
            let ctx = with_progress(Context::open(load_config(&cli.config)?)?);
            run_and_report(
                &ctx,
                connection.as_deref(),
                &streams,
                &RunRequest::Sync { full },
                json,
            )
            .await
        }
        Command::Backfill {
            stream,
            since,
            until,
            connection,
            json,
        } => {
            let ctx = with_progress(Context::open(load_config(&cli.config)?)?);
            run_and_report(
                &ctx,
                connection.as_deref(),
                &[stream],
                &RunRequest::Backfill { since, until },
                json,
            )
            .await
        }
        Command::Query {
            sql,
            format,
            tables,
        } => {
            let ctx = Context::open(load_config(&cli.config)?)?;
            if tables {
                let Some(local) = ctx.warehouse.local() else {
                    bail!(
                        "--tables lists the local warehouse; in BigQuery, query INFORMATION_SCHEMA.TABLES of each dataset"
                    );
                };
                let all = local.describe()?;
                if matches!(format, Format::Json) {
                    let out: Vec<serde_json::Value> = all
                        .iter()
                        .map(|(t, c, r)| serde_json::json!({"table": t, "columns": c, "rows": r}))
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&out)?);
                } else {
                    println!("{:<48} {:>8} {:>12}", "table", "columns", "rows");
                    for (t, c, r) in &all {
                        println!("{t:<48} {c:>8} {r:>12}");
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            let fmt = match format {
                Format::Table => OutputFormat::Table,
                Format::Csv => OutputFormat::Csv,
                Format::Json => OutputFormat::Json,
            };
            let out = ctx
                .warehouse
                .query(sql.as_deref().unwrap_or_default(), fmt)?;
            println!("{}", out.trim_end());
            Ok(ExitCode::SUCCESS)
        }
        Command::State(cmd) => state(cmd, &cli.config),
        Command::Runs {
            stream,
            failed,
            limit,
            json,
        } => runs(&cli.config, stream.as_deref(), failed, limit, json),
        Command::Catalog(cmd) => catalog(cmd, &cli.config),
        Command::Discover {
            connection,
            entities,
            out,
            json,
        } => {
            let out = out_dir(&cli.config, out, "discovered");
            discover(&cli.config, &connection, &entities, &out, json).await
        }
        Command::Connection(cmd) => connection(cmd, &cli.config).await,
        Command::Sink(cmd) => sink(cmd, &cli.config).await,
        Command::Serve { listen } => serve(&cli.config, listen).await,
        Command::Webhooks(cmd) => webhooks(cmd, &cli.config).await,
        Command::Lookml { streams, out, json } => {
            let out = out_dir(&cli.config, out, "lookml");
            let defs = definitions(&cli.config)?;
            let selected = defs.select(&streams)?;
            let files = ml_connector::catalog_export::lookml::generate(&selected);
            let report = ml_connector::catalog_export::write_files(&out, &files, &[], &|_| false)?;
            if json {
                let paths = |ps: &[PathBuf]| -> Vec<String> {
                    ps.iter()
                        .map(|p| out.join(p).display().to_string())
                        .collect()
                };
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "out": out.display().to_string(),
                        "views": files.len(),
                        "written": paths(&report.written),
                        "unchanged": report.unchanged,
                    }))?
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{} views under {} ({} written, {} unchanged)",
                files.len(),
                out.display(),
                report.written.len(),
                report.unchanged
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn sink(cmd: SinkCmd, config: &Path) -> Result<ExitCode> {
    use ml_connector::loaders::sink::{ApplyReport, Replay, Sink, plan::Plan};
    let ctx = with_progress(Context::open(load_config(config)?)?);
    let print_plan = |p: &Plan, details: bool| {
        println!(
            "{}: {} jobs — {} creates, {} updates, {} matches, {} blocked, {} waiting, {} malformed, {} no-ops",
            p.flow,
            p.jobs.len(),
            p.count(&Action::Create),
            p.count(&Action::Update),
            p.count(&Action::Match),
            p.count(&Action::Blocked),
            p.count(&Action::Wait),
            p.count(&Action::Invalid),
            p.count(&Action::Noop),
        );
        for g in p.groups(3) {
            let examples = if g.action == Action::Noop || g.examples.is_empty() {
                String::new()
            } else {
                let more = if g.count > g.examples.len() {
                    ", …"
                } else {
                    ""
                };
                format!(" (e.g. {}{more})", g.examples.join(", "))
            };
            println!(
                "  {:<24} -> {:<28} {:<9} {:>7}  {}{examples}",
                g.mapping,
                g.target,
                g.action.label(),
                g.count,
                g.reason
            );
        }
        if details {
            for j in &p.jobs {
                println!(
                    "{:<9} {} {} v{} -> {}{}: {}",
                    j.action.label(),
                    j.source_entity,
                    j.source_id,
                    j.source_version.map_or("?".into(), |v| v.to_string()),
                    j.target,
                    j.target_key
                        .as_ref()
                        .map_or(String::new(), |k| format!(" {k}")),
                    j.reason
                );
            }
        } else if !p.jobs.is_empty() {
            println!(
                "  (one line per mapping, action and cause; --details lists every job, --json all of it)"
            );
        }
    };
    let print_preflight = |pre: &ml_connector::loaders::sink::preflight::Preflight| {
        for p in &pre.problems {
            println!(
                "pre-flight {} -> {}: {}\n    fix: {}",
                p.mapping, p.target, p.problem, p.fix
            );
        }
    };
    let print_learned = |pre: &ml_connector::loaders::sink::preflight::Preflight, flow: &str| {
        for r in &pre.learned {
            println!(
                "learned: the tenant requires `{}` on a new {} (from a refusal on {}: {}); once the tenant changes, `mlc sink check {flow} --forget-learned`",
                r.field, r.hub, r.learned_at, r.reason
            );
        }
    };
    let print_unchecked = |pre: &ml_connector::loaders::sink::preflight::Preflight| {
        if !pre.unchecked.is_empty() {
            println!(
                "  (pre-flight: the target publishes no schema mlc reads for {}: not checked)",
                pre.unchecked.join(", ")
            );
        }
    };
    let print_report = |r: &ApplyReport, details: bool| {
        println!(
            "{}: {} created, {} updated, {} linked, {} no-ops, {} failed, {} blocked, {} waiting",
            r.flow, r.created, r.updated, r.linked, r.noop, r.failed, r.blocked, r.waiting
        );
        // Mapping × outcome, in the order the mappings ran.
        let mut by_mapping: Vec<(&str, std::collections::BTreeMap<&str, usize>)> = Vec::new();
        for j in &r.jobs {
            let i = match by_mapping.iter().position(|(m, _)| *m == j.source_entity) {
                Some(i) => i,
                None => {
                    by_mapping.push((&j.source_entity, Default::default()));
                    by_mapping.len() - 1
                }
            };
            *by_mapping[i].1.entry(j.outcome.as_str()).or_default() += 1;
        }
        for (m, counts) in &by_mapping {
            let line: Vec<String> = counts.iter().map(|(o, n)| format!("{n} {o}")).collect();
            println!("  {m:<24} {}", line.join(", "));
        }
        const SHOWN: usize = 20;
        let notable: Vec<_> = r
            .jobs
            .iter()
            .filter(|j| details || j.outcome.needs_attention())
            .collect();
        let limit = if details { notable.len() } else { SHOWN };
        for j in notable.iter().take(limit) {
            println!(
                "  {:<8} {} {} {}{} {}",
                j.outcome,
                j.job_id,
                j.source_entity,
                j.source_id,
                j.target_key
                    .as_ref()
                    .map_or(String::new(), |k| format!(" -> {k}")),
                j.detail
            );
        }
        if notable.len() > limit {
            println!(
                "  … and {} more: `mlc sink status {}` lists every failed and waiting job, --details every job",
                notable.len() - limit,
                r.flow
            );
        }
    };
    use ml_connector::loaders::sink::plan::Action;
    let code = |r: &ApplyReport| {
        if r.failed > 0 || r.blocked > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    };
    match cmd {
        SinkCmd::Plan {
            flow,
            details,
            target,
            json,
        } => {
            let s = Sink::open_for(&ctx, &flow, target.as_deref())?;
            // The plan reads only the lake and the state: without the target (not configured,
            // unreachable) it is still made, unchecked, and says so.
            let checked = match s.target(target.as_deref()) {
                Ok(t) => s.plan_checked(&t).await,
                Err(e) => Err(e),
            };
            let (p, pre) = match checked {
                Ok((p, pre)) => (p, Some(pre)),
                Err(e) => {
                    eprintln!(
                        "no pre-flight against the target ({e}): the plan is not checked against the tenant"
                    );
                    (s.plan().await?, None)
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                if let Some(pre) = &pre {
                    print_preflight(pre);
                }
                print_plan(&p, details);
                if let Some(pre) = &pre {
                    print_unchecked(pre);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SinkCmd::Check {
            flow,
            target,
            forget_learned,
            json,
        } => {
            let s = Sink::open_for(&ctx, &flow, target.as_deref())?;
            let t = s.target(target.as_deref())?;
            if forget_learned {
                let n = ctx.state.sink_forget_rules(&t.profile().connection)?;
                eprintln!(
                    "forgot {n} learned rules of connection `{}`",
                    t.profile().connection
                );
            }
            let pre = s.preflight(&t).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&pre)?);
            } else {
                print_preflight(&pre);
                print_learned(&pre, &flow);
                print_unchecked(&pre);
                if pre.ok() {
                    println!("{flow}: no problem found against the target's metadata");
                }
            }
            Ok(if pre.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        SinkCmd::Apply {
            flow,
            yes,
            details,
            target,
            json,
        } => {
            let s = Sink::open_for(&ctx, &flow, target.as_deref())?;
            let t = s.target(target.as_deref())?;
            let (p, pre) = s.plan_checked(&t).await?;
            if !yes {
                print_preflight(&pre);
                print_plan(&p, details);
                println!("dry run: nothing written; run again with --yes to apply");
                return Ok(ExitCode::SUCCESS);
            }
            let r = match s.apply_checked(&p, &t, &pre).await {
                Err(held @ ml_connector::Error::Held { .. }) => return Ok(left_to_another(&held)),
                r => r?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print_report(&r, details);
            }
            Ok(code(&r))
        }
        SinkCmd::Replay {
            flow,
            failed: _,
            job,
            yes,
            target,
            json,
        } => {
            let s = Sink::open_for(&ctx, &flow, target.as_deref())?;
            let which = job.map_or(Replay::Failed, Replay::Job);
            if !yes {
                let jobs = match &which {
                    Replay::Failed => s.status()?.failed,
                    Replay::Job(id) => ctx.state.sink_job(id)?.into_iter().collect(),
                };
                for j in &jobs {
                    println!(
                        "would replay {} {} {} ({}, {} attempts): {}",
                        j.job_id,
                        j.source_entity,
                        j.source_id,
                        j.status,
                        j.attempts,
                        j.last_error.as_deref().unwrap_or("")
                    );
                }
                println!("dry run: nothing written; run again with --yes to replay");
                return Ok(ExitCode::SUCCESS);
            }
            let t = s.target(target.as_deref())?;
            let r = match s.replay(&which, &t).await {
                Err(held @ ml_connector::Error::Held { .. }) => return Ok(left_to_another(&held)),
                r => r?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print_report(&r, true);
            }
            Ok(code(&r))
        }
        SinkCmd::Link {
            flow,
            job,
            target_id,
            target,
        } => {
            let s = Sink::open_for(&ctx, &flow, target.as_deref())?;
            let t = s.target(target.as_deref())?;
            let r = s.link(&job, &target_id, &t).await?;
            println!(
                "{} {} {} -> {}: {}",
                r.job_id,
                r.source_entity,
                r.source_id,
                r.target_key.as_deref().unwrap_or(""),
                r.detail
            );
            Ok(ExitCode::SUCCESS)
        }
        SinkCmd::Unlink { flow, job } => {
            let r = Sink::open(&ctx, &flow)?.unlink(&job)?;
            println!(
                "{} {} {} no longer linked to {}: {}",
                r.job_id,
                r.source_entity,
                r.source_id,
                r.target_key.as_deref().unwrap_or(""),
                r.detail
            );
            Ok(ExitCode::SUCCESS)
        }
        SinkCmd::Status { flow, json } => {
            let flows = match flow {
                Some(f) => vec![f],
                None => ml_connector::loaders::sink::flow::FlowFile::builtin_names(),
            };
            let mut all = Vec::new();
            for f in flows {
                all.push(Sink::open(&ctx, &f)?.status()?);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(ExitCode::SUCCESS);
            }
            for st in all {
                println!("{}: {}", st.flow, st.description);
                println!("  links: {}", st.links);
                let jobs: Vec<String> = st
                    .jobs_by_status
                    .iter()
                    .map(|(k, v)| format!("{v} {k}"))
                    .collect();
                println!(
                    "  jobs: {}",
                    if jobs.is_empty() {
                        "none".to_string()
                    } else {
                        jobs.join(", ")
                    }
                );
                if st.stale > 0 {
                    println!(
                        "  stale: {} waiting for more than {} h (see why below; `mlc sink link`, a flow setting or a fix in the source ends the wait)",
                        st.stale, st.stale_after_hours
                    );
                }
                for (stream, c) in &st.cursors {
                    println!("  cursor {stream}: {}", c.as_deref().unwrap_or("(start)"));
                }
                const SHOWN: usize = 20;
                for j in st.failed.iter().take(SHOWN) {
                    println!(
                        "  {} {} {} {}: {}",
                        j.status,
                        j.job_id,
                        j.source_entity,
                        j.source_id,
                        j.last_error.as_deref().unwrap_or("")
                    );
                }
                if st.failed.len() > SHOWN {
                    println!(
                        "  … and {} more failed, blocked or waiting jobs (`--json` lists them all)",
                        st.failed.len() - SHOWN
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SinkCmd::Audit { flow, job, json } => {
            Sink::open(&ctx, &flow)?;
            let entries = ctx.state.sink_audit_entries(&flow, job.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
                return Ok(ExitCode::SUCCESS);
            }
            // A failed, blocked or waiting entry says where its job stands now (a replay may
            // have written it since); the HTTP status is named with its method, so a search
            // that answered 200 and matched several records does not read as a success.
            let now: std::collections::HashMap<String, ml_connector::state::JobStatus> = ctx
                .state
                .sink_jobs(&flow, None)?
                .into_iter()
                .map(|j| (j.job_id, j.status))
                .collect();
            for a in entries {
                let call = match (&a.method, a.status) {
                    (Some(m), Some(s)) => format!("{m} HTTP {s} "),
                    (None, Some(s)) => format!("HTTP {s} "),
                    _ => String::new(),
                };
                let standing = if a.action.held_up() {
                    now.get(&a.job_id)
                        .map(|s| format!(" [job now {s}]"))
                        .unwrap_or_default()
                } else {
                    String::new()
                };
                println!(
                    "{} {} {:<7} {} {} -> {} {} {}ms {call}{}{standing}",
                    a.at,
                    a.job_id,
                    a.action,
                    a.source_entity,
                    a.source_id,
                    a.target,
                    a.target_key.as_deref().unwrap_or("-"),
                    a.ms,
                    a.error.or(a.request).unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Progress bars when a person is watching; structured logs otherwise.
fn with_progress(mut ctx: Context) -> Context {
    if std::io::stderr().is_terminal() {
        ctx.progress = Some(indicatif::MultiProgress::new());
    }
    ctx
}

async fn sandbox(a: SandboxArgs) -> Result<ExitCode> {
    let faults: Faults = a.faults.parse().map_err(|e| anyhow!("--faults: {e}"))?;
    let tenant: Tenant = a.tenant.parse().map_err(|e| anyhow!("--tenant: {e}"))?;
    let addr = format!("{}:{}", a.host, a.port)
        .parse()
        .with_context(|| format!("--host/--port: `{}:{}` is not an address", a.host, a.port))?;
    let sb = Sandbox::start(
        SandboxOptions {
            scale: a.scale,
            seed: a.seed,
            faults,
            tenant,
            token_ttl: std::time::Duration::from_secs(a.token_ttl),
            ..SandboxOptions::default()
        },
        addr,
    )
    .await?;
    println!("sandbox listening on {}", sb.base_url());
    if let Some(dir) = &a.project {
        let cfg = ml_connector::demo::write_project(dir, &sb, "", false)?;
        println!(
            "  project:           {} (connections: {})",
            dir.join("mlc.toml").display(),
            cfg.connections
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!("  Entra authority:   {}", sb.authority_url());
    println!("  Dataverse env URL: {}", sb.dataverse_url());
    println!("  tenant_id:         {}", sb.tenant_id());
    println!("  client_id:         {}", sb.client_id());
    println!("  client secret:     {} (sandbox only)", sb.client_secret());
    // Every system's connection, as mlc.toml would hold it (the credentials are the sandbox's
    // own, public and useless anywhere else).
    for c in sb.connections() {
        println!("  [connections.{}]  ({})", c.name, c.system);
        for line in c.settings.lines() {
            println!("    {line}");
        }
        for (field, _) in &c.secrets {
            println!("    {field}: stored in the vault by --project (sandbox only)");
        }
    }
    println!(
        "  admin:             {}/_sandbox/ (lists the admin endpoints: mutate, faults, counts, stats, …)",
        sb.base_url()
    );
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    sb.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn run_and_report(
    ctx: &Context,
    connection: Option<&str>,
    streams: &[String],
    req: &RunRequest,
    json: bool,
) -> Result<ExitCode> {
    let conns: Vec<_> = match connection {
        Some(name) => vec![ctx.config.connection(name)?],
        None => ctx.config.connections.values().collect(),
    };
    if conns.is_empty() {
        bail!("no connections in mlc.toml: add one with `mlc connection add`");
    }
    // Off a terminal (a scheduler's log) nothing would show until the end: a line per stream
    // as it ends. On a terminal the progress bars show it.
    let lines = !json && ctx.progress.is_none();
    let done = |label: &str, r: &ml_connector::Result<RunSummary>| {
        if !lines {
            return;
        }
        match r {
            Ok(s) if s.status == RunOutcome::Held => {
                eprintln!("{label}: left to another worker: {}", s.notes.join("; "))
            }
            Ok(s) => eprintln!(
                "{label}: {} done: {} rows extracted, {} upserted, {} deleted, {} quarantined in {:.1} s",
                s.kind, s.rows_extracted, s.upserted, s.deleted, s.quarantined, s.seconds
            ),
            Err(e) => eprintln!("{label}: FAILED: {e}"),
        }
    };
    let results = run_many_reporting(ctx, &conns, streams, req, &done).await?;
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    if json {
        let out: Vec<serde_json::Value> = results
            .iter()
            .map(|(label, r)| match r {
                Ok(s) => serde_json::to_value(s).unwrap_or_default(),
                Err(e) => serde_json::json!({"stream": label, "error": e.to_string()}),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_summaries(&results);
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_summaries(results: &[(String, ml_connector::Result<RunSummary>)]) {
    use ml_connector::text_table::{Align::*, Table};
    let mut t = Table::new(&[
        ("stream", Left),
        ("kind", Left),
        ("extracted", Right),
        ("upserted", Right),
        ("deleted", Right),
        ("quarantined", Right),
        ("rows", Right),
        ("MB", Right),
        ("seconds", Right),
    ]);
    let mut sorted: Vec<_> = results.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut sum = [0u64; 5];
    let (mut mb, mut failed) = (0.0, 0);
    for (label, r) in sorted {
        match r {
            Ok(s) if s.status == RunOutcome::Held => {
                t.span(
                    label.clone(),
                    format!("left to another worker: {}", s.notes.join("; ")),
                );
            }
            Ok(s) => {
                t.row(vec![
                    label.clone(),
                    s.kind.to_string(),
                    s.rows_extracted.to_string(),
                    s.upserted.to_string(),
                    s.deleted.to_string(),
                    s.quarantined.to_string(),
                    s.table_rows.to_string(),
                    format!("{:.1}", s.json_bytes as f64 / 1e6),
                    format!("{:.2}", s.seconds),
                ]);
                for (acc, v) in sum.iter_mut().zip([
                    s.rows_extracted,
                    s.upserted,
                    s.deleted,
                    s.quarantined,
                    s.table_rows,
                ]) {
                    *acc += v;
                }
                mb += s.json_bytes as f64 / 1e6;
                for n in &s.notes {
                    t.note(format!("note: {n}"));
                }
                if let Some(k) = &s.last_keyset {
                    t.note(format!("deletes last reconciled: {k}"));
                }
            }
            Err(e) => {
                failed += 1;
                t.span(label.clone(), format!("FAILED: {e}"));
            }
        }
    }
    let mut total = format!("{} streams", results.len());
    if failed > 0 {
        total.push_str(&format!(", {failed} failed"));
    }
    let mut cells = vec![total, String::new()];
    cells.extend(sum.iter().map(u64::to_string));
    cells.push(format!("{mb:.1}"));
    t.totals(cells);
    print!("{}", t.render(""));
}

/// A listing as a text table: the keys of `headers`, numbers right-aligned.
fn print_table(headers: &[&str], rows: &[serde_json::Value]) {
    use ml_connector::text_table::{Align, Table};
    let numeric = |h: &str| rows.iter().any(|r| r[h].is_number());
    let cols: Vec<(&str, Align)> = headers
        .iter()
        .map(|h| {
            (
                *h,
                if numeric(h) {
                    Align::Right
                } else {
                    Align::Left
                },
            )
        })
        .collect();
    let mut t = Table::new(&cols);
    for r in rows {
        t.row(
            headers
                .iter()
                .map(|h| match &r[*h] {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => String::new(),
                    v => v.to_string(),
                })
                .collect(),
        );
    }
    print!("{}", t.render(""));
}

fn runs(
    config: &Path,
    stream: Option<&str>,
    failed: bool,
    limit: usize,
    json: bool,
) -> Result<ExitCode> {
    let ctx = Context::open(load_config(config)?)?;
    let stream = match stream {
        Some(s) => Some(ctx.defs.get(&s.parse()?)?.id.to_string()),
        None => None,
    };
    // Failed runs among the newest `limit` of all when filtering would hide older ones: read
    // more and keep `limit` of those wanted.
    let read = if failed {
        limit.saturating_mul(50)
    } else {
        limit
    };
    let mut runs = Vec::new();
    for r in ctx.state.runs(stream.as_deref(), read)? {
        let standing = r.standing(ctx.state.run_held(&r)?);
        if !failed || matches!(standing, "failed" | "interrupted") {
            runs.push((r, standing));
        }
        if runs.len() == limit {
            break;
        }
    }
    if json {
        let out: Vec<serde_json::Value> = runs
            .iter()
            .map(|(r, standing)| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                v["standing"] = serde_json::Value::from(*standing);
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    if runs.is_empty() {
        println!("no runs{}", if failed { " failed" } else { "" });
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<30} {:<34} {:<11} {:<12} {:<20} {:<20} {:>10}  error",
        "run", "stream", "kind", "standing", "started", "ended", "rows"
    );
    let short = |t: &str| t.get(..19).unwrap_or(t).replace('T', " ");
    for (r, standing) in &runs {
        println!(
            "{:<30} {:<34} {:<11} {:<12} {:<20} {:<20} {:>10}  {}",
            r.run_id,
            r.stream,
            r.kind,
            standing,
            short(&r.started_at),
            r.finished_at.as_deref().map(short).unwrap_or_default(),
            r.rows_extracted,
            r.error.as_deref().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn state(cmd: StateCmd, config: &Path) -> Result<ExitCode> {
    let open = || -> Result<Context> { Ok(Context::open(load_config(config)?)?) };
    match cmd {
        StateCmd::Show {
            stream,
            limit,
            json,
        } => {
            let ctx = open()?;
            let states = ctx.state.stream_states()?;
            let runs = ctx.state.runs(stream.as_deref(), limit)?;
            let held = ctx.state.lease_holders(ml_connector::lease::now_ms())?;
            if json {
                let held: Vec<serde_json::Value> = held
                    .iter()
                    .map(|(unit, owner, left)| {
                        serde_json::json!({"unit": unit, "owner": owner, "expires_in_s": left.as_secs()})
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "state": ctx.state.shown(),
                        "streams": states,
                        "runs": runs,
                        "leases": held
                    }))?
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!("state: {}\n", ctx.state.shown());
            println!(
                "{:<12} {:<28} {:<26} cursor",
                "connection", "stream", "updated"
            );
            for s in states
                .iter()
                .filter(|s| stream.as_deref().is_none_or(|w| w == s.stream))
            {
                let cursor = s.cursor.as_deref().unwrap_or("-");
                let shown = if cursor.len() > 60 {
                    format!(
                        "{}…",
                        &cursor[..cursor
                            .char_indices()
                            .nth(60)
                            .map_or(cursor.len(), |(i, _)| i)]
                    )
                } else {
                    cursor.to_string()
                };
                println!(
                    "{:<12} {:<28} {:<26} {}",
                    s.connection, s.stream, s.updated_at, shown
                );
            }
            println!(
                "\n{:<28} {:<28} {:<11} {:<10} {:>9} {:>8} {:>8} {:>5}",
                "run", "stream", "kind", "status", "extracted", "deleted", "quarant.", "parts"
            );
            for r in runs {
                let parts = ctx.state.parts(&r.run_id)?.len();
                println!(
                    "{:<28} {:<28} {:<11} {:<10} {:>9} {:>8} {:>8} {:>5}{}",
                    r.run_id,
                    r.stream,
                    r.kind,
                    r.status,
                    r.rows_extracted,
                    r.rows_removed,
                    r.rows_quarantined,
                    parts,
                    r.error.map(|e| format!("  ({e})")).unwrap_or_default()
                );
            }
            if !held.is_empty() {
                println!("\n{:<44} {:<40} expires in", "held now", "by worker");
                for (unit, owner, left) in held {
                    println!("{unit:<44} {owner:<40} {} s", left.as_secs());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        StateCmd::Migrate { to, from } => migrate_state(config, to, from),
        StateCmd::Reset { stream, connection } => {
            let ctx = open()?;
            let id = ctx.defs.get(&stream.parse()?)?.id.to_string();
            let conns: Vec<String> = match connection {
                Some(c) => vec![ctx.config.connection(&c)?.name.clone()],
                None => ctx.config.connections.keys().cloned().collect(),
            };
            for c in conns {
                if ctx.state.reset(&c, &id)? {
                    println!("{c}/{id}: state reset; the next sync is a full snapshot");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `mlc state migrate`: the SQLite state copied into an empty Postgres state.
fn migrate_state(config: &Path, to: Option<String>, from: Option<PathBuf>) -> Result<ExitCode> {
    use ml_connector::state::StateStore;
    let cfg = load_config(config)?;
    let url = match to {
        Some(u) => ml_connector::config::state_url(&u, &|k| std::env::var(k).ok())?,
        None => cfg.state_url.clone().context(
            "no Postgres state to migrate into: set [state] url in mlc.toml, or pass --to postgres://user@host/database",
        )?,
    };
    let from = from.unwrap_or_else(|| cfg.state_path.clone());
    if !from.exists() {
        bail!("no SQLite state at {}: nothing to migrate", from.display());
    }
    let source = StateStore::open(&from)?;
    let target = StateStore::for_location(&ml_connector::state::StateLocation::Postgres(url))?;
    let copied = target.copy_from(&source)?;
    let total: u64 = copied.iter().map(|(_, n)| n).sum();
    for (table, n) in copied.iter().filter(|(_, n)| *n > 0) {
        println!("{table:<24} {n:>9}");
    }
    println!(
        "copied {total} rows from {} into {}; set [state] url in the mlc.toml of every worker (the SQLite file stays as it was)",
        from.display(),
        target.shown()
    );
    Ok(ExitCode::SUCCESS)
}

/// Definitions of the project at `config`, or the built-in ones when there is no project.
/// The project's definitions, with the columns its tenants added once runs have met them (so
/// generated dbt sources and LookML list them); the built-in ones outside a project.
fn definitions(config: &Path) -> Result<Definitions> {
    let Ok(c) = Config::load(config) else {
        return Ok(Definitions::builtin()?);
    };
    let defs = Definitions::load(Some(&c.definitions_dir))?;
    if c.state_url.is_none() && !c.state_path.exists() {
        return Ok(defs);
    }
    let state = ml_connector::state::StateStore::for_location(&c.state_location())?;
    Ok(ml_connector::tenant::with_tenant_columns(&state, &c, defs)?)
}

fn catalog(cmd: CatalogCmd, config: &Path) -> Result<ExitCode> {
    match cmd {
        CatalogCmd::Diff { streams, json } => {
            let ctx = Context::open(load_config(config)?)?;
            let selected = ctx.defs.select(&streams)?;
            let diffs =
                ml_connector::drift::diff(&ctx.config, &ctx.state, &ctx.warehouse, &selected)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&diffs)?);
                return Ok(ExitCode::SUCCESS);
            }
            let mut clean = true;
            for d in &diffs {
                for line in d.lines() {
                    clean = false;
                    println!("{}: {line}", d.stream);
                }
            }
            if clean {
                println!(
                    "no drift: every tenant has what the catalog reads, and every field the sources sent is typed by the catalog"
                );
            }
        }
        CatalogCmd::ExportDbt { out } => {
            use ml_connector::catalog_export::{dbt, write_files};
            let out = out_dir(config, out, "dbt");
            let defs = definitions(config)?;
            let files = dbt::generate(&defs);
            let report = write_files(&out, &files, &dbt::owned_dirs(), &dbt::is_generated)?;
            for p in &report.written {
                println!("wrote {}", out.join(p).display());
            }
            for p in &report.removed {
                println!(
                    "removed {} (its stream no longer exists)",
                    out.join(p).display()
                );
            }
            println!(
                "{} files under {}: {} written, {} unchanged, {} removed",
                files.len(),
                out.display(),
                report.written.len(),
                report.unchanged,
                report.removed.len()
            );
        }
        CatalogCmd::List { json } => {
            let defs = definitions(config)?;
            let rows: Vec<serde_json::Value> = defs
                .streams()
                .map(|s| {
                    serde_json::json!({
                        "stream": s.id.to_string(),
                        "table": format!("{}.{}", s.dataset(), s.id.entity),
                        "incremental": format!("{:?}", s.spec.incremental).to_lowercase(),
                        "columns": s.catalog.columns.len(),
                    })
                })
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print_table(&["stream", "table", "incremental", "columns"], &rows);
            }
        }
        CatalogCmd::Show { stream } => {
            let defs = definitions(config)?;
            let s = defs.get(&stream.parse()?)?;
            println!("{} → {}.{}", s.id, s.dataset(), s.id.entity);
            if let Some(d) = &s.catalog.description {
                println!("{d}");
            }
            println!("primary key: {}", s.catalog.primary_key.join(", "));
            println!(
                "incremental: {:?}, page size {}",
                s.spec.incremental,
                s.page_size()
            );
            println!(
                "\n{:<28} {:<14} {:<8} {:<40}",
                "column", "type", "null", "source"
            );
            for c in &s.catalog.columns {
                println!(
                    "{:<28} {:<14} {:<8} {:<40}",
                    c.name,
                    c.ty.to_string(),
                    if c.nullable { "yes" } else { "no" },
                    c.source.as_deref().unwrap_or("")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The secrets of `mlc connection add`: every `--secret-env FIELD=VAR`, plus the client
/// secret from `--client-secret-env`, `--client-secret-stdin` or piped standard input.
fn read_secrets(a: &AddArgs) -> Result<Secrets> {
    let mut out = Secrets::new();
    for item in &a.secret_env {
        let (field, var) = item
            .split_once('=')
            .ok_or_else(|| anyhow!("--secret-env `{item}`: expected FIELD=VAR"))?;
        let v =
            std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?;
        out.insert(field.to_string(), SecretString::from(v));
    }
    let wants_client_secret = a.client_secret_env.is_some()
        || a.client_secret_stdin
        || (out.is_empty() && !std::io::stdin().is_terminal())
        || (out.is_empty() && a.system.has_client_secret());
    if wants_client_secret {
        out.insert("client_secret".into(), read_secret(a)?);
    }
    if out.is_empty() {
        bail!(
            "give the connection's secrets with --secret-env FIELD=VAR (e.g. password=VP_PASSWORD, api_token=PIPEDRIVE_TOKEN) or --client-secret-env / --client-secret-stdin; they are stored encrypted, never in mlc.toml"
        );
    }
    Ok(out)
}

fn read_secret(a: &AddArgs) -> Result<SecretString> {
    if let Some(var) = &a.client_secret_env {
        let v =
            std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?;
        return Ok(SecretString::from(v));
    }
    if a.client_secret_stdin || !std::io::stdin().is_terminal() {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the client secret from standard input")?;
        let s = s.trim_end_matches(['\r', '\n']).to_string();
        if s.is_empty() {
            bail!("no client secret on standard input");
        }
        return Ok(SecretString::from(s));
    }
    bail!(
        "give the client secret with --client-secret-env VAR or --client-secret-stdin (it is stored encrypted, never in mlc.toml)"
    )
}

async fn discover(
    config: &Path,
    name: &str,
    only: &[String],
    out: &Path,
    json: bool,
) -> Result<ExitCode> {
    let cfg = load_config(config)?;
    let conn = cfg.connection(name)?;
    let defs = ml_connector::spec::Definitions::load(Some(&cfg.definitions_dir))?;
    let vault = Vault::new(&cfg.vault);
    let ep = ml_connector::connect::endpoint(conn, &vault)?;
    use ml_connector::discover::Outcome;
    let found = ml_connector::systems::discover(conn, &ep, &defs, only).await?;
    let system = conn.system();
    let (mut drafted, mut failed) = (0, 0);
    // One object per entity, for --json.
    let mut report = Vec::new();
    let mut say = |id: &str, outcome: &str, detail: &str, extra: serde_json::Value| {
        if json {
            let mut o = serde_json::json!({"entity": id, "outcome": outcome, "detail": detail});
            if let (Some(o), serde_json::Value::Object(x)) = (o.as_object_mut(), extra) {
                o.extend(x);
            }
            report.push(o);
        } else {
            println!("{id:<36} {outcome}: {detail}");
        }
    };
    for f in &found {
        let id = format!("{system}.{}", f.entity);
        let d = match &f.outcome {
            Outcome::Drafted(d) => d,
            Outcome::Absent(why) => {
                say(&id, "absent", why, serde_json::Value::Null);
                continue;
            }
            Outcome::Available(how) => {
                say(&id, "available", how, serde_json::Value::Null);
                continue;
            }
            Outcome::Failed(why) => {
                failed += 1;
                say(&id, "error", why, serde_json::Value::Null);
                continue;
            }
        };
        drafted += 1;
        let cat_path = out
            .join("catalog")
            .join(system.as_str())
            .join(format!("{}.toml", d.entity));
        if let Some(dir) = cat_path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&cat_path, ml_connector::discover::catalog_toml(&d.catalog))
            .with_context(|| format!("writing {}", cat_path.display()))?;
        let known = id
            .parse()
            .ok()
            .and_then(|sid| defs.get(&sid).ok())
            .map(|s| {
                s.catalog
                    .columns
                    .iter()
                    .map(|c| c.name.clone())
                    .collect::<Vec<_>>()
            });
        let new: Vec<&str> = d
            .catalog
            .columns
            .iter()
            .filter(|c| known.as_ref().is_some_and(|cols| !cols.contains(&c.name)))
            .map(|c| c.name.as_str())
            .collect();
        let note = match &known {
            Some(_) if new.is_empty() => "no columns beyond the current catalog".to_string(),
            Some(_) => format!("{} new: {}", new.len(), new.join(", ")),
            None => "new stream".to_string(),
        };
        let mut stream_path = None;
        if let Some(stream) = &d.stream_toml {
            let p = out
                .join("streams")
                .join(system.as_str())
                .join(format!("{}.toml", d.entity));
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            std::fs::write(&p, stream).with_context(|| format!("writing {}", p.display()))?;
            stream_path = Some(p.display().to_string());
        }
        say(
            &id,
            "ok",
            &format!(
                "{:>4} columns  {note}  -> {}",
                d.catalog.columns.len(),
                cat_path.display()
            ),
            serde_json::json!({
                "columns": d.catalog.columns.len(),
                "new_stream": known.is_none(),
                "new_columns": new,
                "catalog_file": cat_path.display().to_string(),
                "stream_file": stream_path,
            }),
        );
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{drafted} drafts written under {}{}; review them and copy into catalog/ and streams/ (next to mlc.toml) to use them",
            out.display(),
            if failed > 0 {
                format!(" ({failed} entities could not be read: see above)")
            } else {
                String::new()
            }
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn connection(cmd: ConnectionCmd, config: &Path) -> Result<ExitCode> {
    match cmd {
        ConnectionCmd::Add(a) => {
            let secrets = read_secrets(&a)?;
            let text = match std::fs::read_to_string(config) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    ml_connector::config::template().to_string()
                }
                Err(e) => return Err(e).with_context(|| format!("reading {}", config.display())),
            };
            let mut doc: toml_edit::DocumentMut = text
                .parse()
                .with_context(|| format!("parsing {}", config.display()))?;
            let conns = doc
                .entry("connections")
                .or_insert_with(|| {
                    let mut t = toml_edit::Table::new();
                    t.set_implicit(true);
                    toml_edit::Item::Table(t)
                })
                .as_table_mut()
                .ok_or_else(|| anyhow!("`connections` in {} is not a table", config.display()))?;
            let mut t = toml_edit::Table::new();
            t.insert("system", toml_edit::value(a.system.as_str()));
            for (k, v) in [
                ("environment_url", &a.environment_url),
                ("tenant_id", &a.tenant_id),
                ("client_id", &a.client_id),
                ("authority_url", &a.authority_url),
            ] {
                if let Some(v) = v {
                    t.insert(k, toml_edit::value(v));
                }
            }
            for item in &a.settings {
                let (k, v) = item
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--set `{item}`: expected KEY=VALUE"))?;
                if secrets.contains_key(k)
                    || ["client_secret", "password", "api_token", "refresh_token"].contains(&k)
                {
                    bail!(
                        "--set {k}: secrets go through --secret-env {k}=VAR, never into mlc.toml"
                    );
                }
                // A TOML literal (number, bool, array) when it parses as one, else a string.
                let value = format!("v = {v}")
                    .parse::<toml_edit::DocumentMut>()
                    .ok()
                    .and_then(|d| d.get("v").and_then(|i| i.as_value()).cloned())
                    .unwrap_or_else(|| toml_edit::Value::from(v));
                t.insert(k, toml_edit::Item::Value(value));
            }
            conns.insert(&a.name, toml_edit::Item::Table(t));
            let new_text = doc.to_string();
            // Validate before writing anything.
            let dir = config
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let parsed = Config::parse(&new_text, dir, &|k| std::env::var(k).ok())?;
            Vault::new(&parsed.vault).put(&a.name, &secrets)?;
            std::fs::write(config, new_text)
                .with_context(|| format!("writing {}", config.display()))?;
            ensure_gitignore(config)?;
            println!(
                "connection `{}` saved to {} (secret encrypted in {}); check it with `mlc connection check {}`",
                a.name,
                config.display(),
                parsed.vault.path.display(),
                a.name
            );
            Ok(ExitCode::SUCCESS)
        }
        ConnectionCmd::List { json } => {
            let cfg = load_config(config)?;
            let stored = Vault::new(&cfg.vault).names()?;
            let rows: Vec<serde_json::Value> = cfg
                .connections
                .values()
                .map(|c| {
                    let secret = if c.secrets_from_environment() {
                        "from environment"
                    } else if stored.contains(&c.name) {
                        "stored (encrypted)"
                    } else {
                        "MISSING"
                    };
                    serde_json::json!({
                        "name": c.name,
                        "system": c.system(),
                        "url": c.url(),
                        "secret": secret,
                    })
                })
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print_table(&["name", "system", "url", "secret"], &rows);
            }
            Ok(ExitCode::SUCCESS)
        }
        ConnectionCmd::Check { name, json } => {
            let cfg = load_config(config)?;
            let vault = Vault::new(&cfg.vault);
            let conns: Vec<_> = match &name {
                Some(n) => vec![cfg.connection(n)?],
                None => cfg.connections.values().collect(),
            };
            if conns.is_empty() {
                bail!(
                    "{} has no connections to check: add one with `mlc connection add NAME --system SYSTEM`",
                    config.display()
                );
            }
            let mut all_ok = true;
            let mut results = Vec::new();
            for c in conns {
                let r = connect::check(c, &vault).await;
                all_ok &= r.problem.is_none();
                if json {
                    results.push(serde_json::json!({
                        "connection": r.connection,
                        "ok": r.problem.is_none(),
                        "steps": r.steps,
                        "problem": r.problem,
                    }));
                    continue;
                }
                for s in &r.steps {
                    println!("{}: ok: {s}", r.connection);
                }
                match &r.problem {
                    None => println!("{}: connection works", r.connection),
                    Some(p) => println!("{}: PROBLEM: {p}", r.connection),
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&results)?);
            }
            Ok(if all_ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        ConnectionCmd::Remove { name } => {
            let text = std::fs::read_to_string(config)
                .with_context(|| format!("reading {}", config.display()))?;
            let mut doc: toml_edit::DocumentMut = text.parse()?;
            let removed = doc
                .get_mut("connections")
                .and_then(|c| c.as_table_mut())
                .and_then(|t| t.remove(&name))
                .is_some();
            let cfg = load_config(config)?;
            let had_secret = Vault::new(&cfg.vault).remove(&name)?;
            if !removed && !had_secret {
                bail!("no connection `{name}`");
            }
            std::fs::write(config, doc.to_string())?;
            println!("connection `{name}` removed");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(config: &Path, listen: Option<String>) -> Result<ExitCode> {
    use ml_connector::serve::{ServeOptions, Server};
    let ctx = std::sync::Arc::new(Context::open(load_config(config)?)?);
    let server = Server::start(
        ctx,
        ServeOptions {
            listen,
            ..ServeOptions::default()
        },
    )
    .await?;
    println!(
        "mlc serve on http://{} (webhooks at {}/webhooks/<system>/<connection>, /healthz, /metrics); Ctrl-C or SIGTERM stops it",
        server.addr, server.public_base
    );
    wait_for_stop().await?;
    eprintln!("stopping: finishing the runs in flight (signal again to stop now)");
    tokio::select! {
        _ = server.shutdown() => Ok(ExitCode::SUCCESS),
        r = wait_for_stop() => {
            r?;
            // Safe to cut short: an interrupted run resumes from its last part, and sink
            // jobs search the target before any create.
            eprintln!("stopped with runs in flight; the next start resumes them");
            Ok(ExitCode::from(130))
        }
    }
}

/// Ctrl-C or SIGTERM (what schedulers and Kubernetes send).
async fn wait_for_stop() -> Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}

async fn webhooks(cmd: WebhooksCmd, config: &Path) -> Result<ExitCode> {
    let cfg = load_config(config)?;
    let vault = Vault::new(&cfg.vault);
    match cmd {
        WebhooksCmd::Register { target } => {
            let conns: Vec<_> = match cfg.connections.get(&target) {
                Some(c) => vec![c],
                None => cfg
                    .connections
                    .values()
                    .filter(|c| target.parse::<System>().ok() == Some(c.system()))
                    .collect(),
            };
            if conns.is_empty() {
                bail!(
                    "`{target}` is neither a connection nor the system of one in {}",
                    config.display()
                );
            }
            let state = std::sync::Arc::new(ml_connector::state::StateStore::for_location(
                &cfg.state_location(),
            )?);
            for c in conns {
                let out =
                    ml_connector::serve::register::register(&cfg, &vault, state.clone(), c).await?;
                print!("{out}");
            }
            Ok(ExitCode::SUCCESS)
        }
        WebhooksCmd::Secret {
            connection,
            field,
            env,
        } => {
            cfg.connection(&connection)?;
            let value = std::env::var(&env)
                .with_context(|| format!("environment variable {env} is not set"))?;
            ml_connector::serve::secrets::put(
                &vault,
                &connection,
                &field,
                SecretString::from(value),
            )?;
            println!(
                "stored {field} for `{connection}` webhooks (encrypted); a running `mlc serve` picks it up by itself"
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// The state store's error keeps rusqlite's as its source and quotes it: printed once.
    #[test]
    fn a_cause_the_message_already_quotes_is_printed_once() {
        let e: ml_connector::error::Error = rusqlite::Error::QueryReturnedNoRows.into();
        assert!(std::error::Error::source(&e).is_some());
        let e = anyhow::Error::from(e).context("reading run r1");
        let line = super::report(&e);
        assert!(line.starts_with("reading run r1: state store: "), "{line}");
        let cause = rusqlite::Error::QueryReturnedNoRows.to_string();
        assert_eq!(line.matches(&cause).count(), 1, "{line}");
    }

    /// Every argument of every command, positional or flag, says what it is for in `--help`.
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "mlc", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    }
}

//! Faithful, fast, deterministic local fakes of the source systems (DESIGN.md §12): Microsoft
//! Entra (token endpoint), the Dataverse Web API v9.2, Business Central, Deltek Vantagepoint,
//! Pipedrive and Looker (API 4.0, the reverse stream), served by axum.
//!
//! ```text
//! {base}/entra/{tenant}/oauth2/v2.0/token     client-credentials grant (entra.rs)
//! {base}/dataverse/api/data/v9.2/...          Web API: WhoAmI, entity sets, deltas (dataverse.rs)
//! {base}/_sandbox/...                         admin mirror of the control methods (admin.rs)
//! ```
//!
//! Why it is shaped this way:
//! - **No stored rows.** Every value is a pure function of (seed, entity set, row ordinal,
//!   revision), so the sandbox holds only per-row metadata for rows that changed (store.rs)
//!   and renders each page straight into a byte buffer (values.rs, json.rs). 10 M accounts
//!   cost a few MB, and rendering runs at hundreds of MB/s: the sandbox is never the
//!   bottleneck of a benchmark.
//! - **Quirks included.** Paging cookies inside `$skiptoken`, `$deltatoken` format, error codes
//!   and messages, `$deletedEntity` tombstones, the 5000-row cap, options refused with change
//!   tracking, service-protection 429s: the client is tested against the real protocol.
//! - **Deterministic.** Same options, same bytes; mutations and fault draws come from seeded
//!   generators, so a failing test replays.
//!
//! Credentials are fixed and public (they only open this fake): see [`entra::TENANT_ID`],
//! [`entra::CLIENT_ID`], [`entra::CLIENT_SECRET`].

mod admin;
mod business_central;
mod dataverse;
mod deltek;
mod entities;
pub mod entra;
mod json;
mod looker;
mod metadata;
mod odata;
mod options;
mod pages;
mod pipedrive;
mod protection;
mod rng;
mod stats;
mod store;
mod values;
mod words;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use axum::Router;
use axum::routing::{any, post};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

pub use business_central::BcWriteLog;
pub use looker::LookerStats;
pub use options::{Faults, SandboxOptions, Tenant};
pub use pipedrive::PdWriteLog;
pub use stats::RequestStats;
pub use store::{MutationSummary, SetChanges};

use entities::{ALL, Entity, Set};
use protection::Protection;
use store::Org;
use values::Dims;

/// State shared by every handler.
pub(crate) struct App {
    base: String,
    scale: u64,
    seed: u64,
    token_ttl: Duration,
    retry_after_secs: u64,
    /// The tenant every fake plays.
    tenant: Tenant,
    /// Dataverse table schemas by `Set::index`; `None` for tables the tenant does not have.
    entities: Vec<Option<Entity>>,
    dims: Dims,
    org: RwLock<Org>,
    tokens: entra::Tokens,
    protection: Protection,
    stats: Mutex<RequestStats>,
    app_user: AtomicBool,
    /// The other systems, each in its own module with its own routes and admin endpoints.
    business_central: business_central::BusinessCentral,
    deltek: deltek::Deltek,
    pipedrive: pipedrive::Pipedrive,
    looker: looker::Looker,
    /// Dataverse service endpoints (webhooks) notified after mutation rounds.
    dataverse_hooks: Arc<dataverse::webhooks::Endpoints>,
}

impl App {
    fn dataverse_url(&self) -> String {
        format!("{}/dataverse", self.base)
    }

    fn authority_url(&self) -> String {
        format!("{}/entra", self.base)
    }

    /// The Web API root, ending in `/`.
    fn root(&self) -> String {
        format!("{}/dataverse/api/data/v9.2/", self.base)
    }

    /// The schema of a Dataverse table, `None` when the tenant does not have it.
    fn entity(&self, set: Set) -> Option<&Entity> {
        self.entities.get(set.index()).and_then(Option::as_ref)
    }

    fn org(&self) -> RwLockReadGuard<'_, Org> {
        self.org.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn org_mut(&self) -> RwLockWriteGuard<'_, Org> {
        self.org.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// One round of changes in every system; the Dataverse summary is returned (the other
    /// systems report theirs through their own controls).
    fn mutate(&self) -> MutationSummary {
        self.business_central.mutate();
        self.deltek.mutate();
        self.pipedrive.mutate();
        self.looker.mutate();
        self.dataverse_mutate()
    }

    fn dataverse_mutate(&self) -> MutationSummary {
        let summary = self.org_mut().mutate();
        let host = self.base.trim_start_matches("http://").to_string();
        self.dataverse_hooks.deliver(host, &summary);
        summary
    }

    fn set_faults(&self, faults: Faults) {
        self.protection.set_faults(faults);
        self.business_central.set_faults(faults);
        self.deltek.set_faults(faults);
        self.pipedrive.set_faults(faults);
        self.looker.set_faults(faults);
    }

    fn stats(&self) -> RequestStats {
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_app_user(&self, registered: bool) {
        self.app_user.store(registered, Ordering::Relaxed);
    }

    fn app_user(&self) -> bool {
        self.app_user.load(Ordering::Relaxed)
    }
}

/// The message of an error carried by a 2xx answer, the fault the `<system>_error_in_2xx`
/// hooks inject (`deltek_error_in_2xx`, `business_central_error_in_2xx`,
/// `pipedrive_error_in_2xx`): each system's own error body, with a success status, and nothing
/// saved.
pub const ERROR_IN_2XX: &str = "sandbox fault: an error in a success answer, nothing saved";

/// One record as the tenant's API serves it.
pub type TruthRow = serde_json::Map<String, serde_json::Value>;

/// How a project connects to one system of the sandbox.
#[derive(Debug, Clone)]
pub struct SandboxConnection {
    /// Connection name in mlc.toml (`crm`, `erp`, …).
    pub name: String,
    pub system: &'static str,
    /// The body of the `[connections.<name>]` section (no secrets).
    pub settings: String,
    /// (field, value) pairs for the vault.
    pub secrets: Vec<(String, String)>,
}

/// A running sandbox. Dropping it stops the server too; [`Sandbox::shutdown`] waits for it.
pub struct Sandbox {
    app: Arc<App>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("base_url", &self.app.base)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Binds `addr` (port 0 = any free port) and serves on the current tokio runtime.
    /// Fails when the address cannot be bound or a system's tables cannot be built.
    pub async fn start(opts: SandboxOptions, addr: SocketAddr) -> Result<Sandbox> {
        let entities: Vec<Option<Entity>> = ALL
            .into_iter()
            .map(|s| dataverse::schema::entity(s, opts.tenant))
            .collect();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::config(format!("sandbox: cannot bind {addr}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::config(format!("sandbox: no local address: {e}")))?;
        let host = if local.ip().is_unspecified() {
            match local {
                SocketAddr::V4(_) => "127.0.0.1".to_string(),
                SocketAddr::V6(_) => "[::1]".to_string(),
            }
        } else {
            match local {
                SocketAddr::V4(a) => a.ip().to_string(),
                SocketAddr::V6(a) => format!("[{}]", a.ip()),
            }
        };
        let dims = Dims {
            initial: ALL.map(|s| Org::initial_rows(s, opts.scale, opts.tenant)),
        };
        let app = Arc::new(App {
            base: format!("http://{host}:{}", local.port()),
            scale: opts.scale,
            seed: opts.seed,
            token_ttl: opts.token_ttl,
            retry_after_secs: opts.retry_after_secs,
            tenant: opts.tenant,
            entities,
            dims,
            org: RwLock::new(Org::for_tenant(opts.scale, opts.seed, opts.tenant)),
            tokens: entra::Tokens::new(opts.seed),
            protection: Protection::new(opts.budget, opts.faults, opts.seed),
            stats: Mutex::new(RequestStats::default()),
            app_user: AtomicBool::new(true),
            business_central: business_central::BusinessCentral::new(&opts),
            deltek: deltek::Deltek::new(&opts),
            pipedrive: pipedrive::Pipedrive::new(&opts),
            looker: looker::Looker::new(&opts),
            dataverse_hooks: Arc::default(),
        });
        let router = Router::new()
            .route("/entra/{tenant}/oauth2/v2.0/token", post(entra::token))
            .route("/dataverse/api/data/v9.2/{*rest}", any(dataverse::handle))
            .route("/dataverse/api/data/v9.2/", any(dataverse::handle))
            .merge(admin::routes())
            .merge(business_central::routes())
            .merge(deltek::routes())
            .merge(pipedrive::routes())
            .merge(looker::routes())
            .fallback(dataverse::not_found)
            .layer(axum::middleware::from_fn_with_state(
                app.clone(),
                stats::record,
            ))
            .with_state(app.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "sandbox server stopped");
            }
        });
        Ok(Sandbox {
            app,
            stop: Some(tx),
            task: Some(task),
        })
    }

    /// Every system the sandbox serves as (connection name, body of its mlc.toml
    /// `[connections.<name>]` section, secrets to store in the vault). Used by `mlc demo`,
    /// `mlc sandbox --project` and the tests, so they all configure the same project.
    pub fn connections(&self) -> Vec<SandboxConnection> {
        // (name, system, (settings, secrets)).
        type Each<'a> = (&'a str, &'static str, (String, Vec<(String, String)>));
        let each: [Each<'_>; 5] = [
            ("crm", "dataverse", self.dataverse_connection()),
            (
                "erp",
                "business_central",
                self.business_central_connection(),
            ),
            ("vp", "deltek", self.deltek_connection()),
            ("pd", "pipedrive", self.pipedrive_connection()),
            ("bi", "looker", self.looker_connection()),
        ];
        each.into_iter()
            .map(|(name, system, (settings, secrets))| SandboxConnection {
                name: name.into(),
                system,
                settings,
                secrets,
            })
            .collect()
    }

    /// The tenant's own truth for one table: every live row as the API serves it when every
    /// field is selected (Dataverse: with the `lookuplogicalname` annotations; Pipedrive: with
    /// its nested `custom_fields`), in key order. Tables are named as mlc's built-in streams
    /// name them (`dataverse` / `account`). `None`: not a table this tenant has. Tests compare
    /// warehouse tables with this row by row and column by column.
    pub fn truth(&self, system: &str, entity: &str) -> Option<Vec<TruthRow>> {
        match system {
            "dataverse" => self.dataverse_truth(entity),
            "business_central" => self.business_central_truth(entity),
            "deltek" => self.deltek_truth(entity),
            "pipedrive" => self.pipedrive_truth(entity),
            _ => None,
        }
    }

    /// Live rows of the table behind a stream (`None`: not a table this sandbox serves).
    /// Looker results are queries the caller defines, not tables of the instance: `None`
    /// (see [`Sandbox::looker_query_rows`] and [`Sandbox::looker_look_rows`]).
    pub fn live_count(&self, system: &str, entity: &str) -> Option<u64> {
        match system {
            "dataverse" => {
                let set = Set::from_logical(entity)?;
                self.counts().get(set.name()).copied()
            }
            "deltek" => self.deltek_counts().get(entity).copied(),
            "business_central" => self.business_central_count(entity),
            "pipedrive" => match entity {
                "deal" | "person" | "organization" | "product" | "deal_product" => {
                    Some(self.pipedrive_live_rows(entity).len() as u64)
                }
                "user" | "pipeline" | "stage" => {
                    self.pipedrive_truth(entity).map(|t| t.len() as u64)
                }
                _ => self
                    .pipedrive_counts()
                    .into_iter()
                    .find(|(k, _)| k == entity)
                    .and_then(|(_, n)| u64::try_from(n).ok()),
            },
            _ => None,
        }
    }

    /// The Dataverse connection: settings (no secret) and the client secret.
    pub fn dataverse_connection(&self) -> (String, Vec<(String, String)>) {
        (
            format!(
                "system = \"dataverse\"\nenvironment_url = \"{}\"\ntenant_id = \"{}\"\nclient_id = \"{}\"\nauthority_url = \"{}\"\n",
                self.dataverse_url(),
                self.tenant_id(),
                self.client_id(),
                self.authority_url()
            ),
            vec![("client_secret".into(), self.client_secret().to_string())],
        )
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.app.base.clone()
    }

    /// The Dataverse environment URL (`{base}/dataverse`); the token scope is this plus
    /// `/.default` and the Web API root is this plus `/api/data/v9.2/`.
    pub fn dataverse_url(&self) -> String {
        self.app.dataverse_url()
    }

    /// The Entra authority (`{base}/entra`); the token endpoint is
    /// `{authority}/{tenant}/oauth2/v2.0/token`.
    pub fn authority_url(&self) -> String {
        self.app.authority_url()
    }

    pub fn tenant_id(&self) -> &str {
        entra::TENANT_ID
    }

    pub fn client_id(&self) -> &str {
        entra::CLIENT_ID
    }

    pub fn client_secret(&self) -> &str {
        entra::CLIENT_SECRET
    }

    /// One deterministic round of inserts, updates and deletes on every entity set of every
    /// system.
    pub fn mutate(&self) -> MutationSummary {
        self.app.mutate()
    }

    /// One round on Dataverse alone (a sink test whose target is another system of this
    /// sandbox must not have the target's rows deleted at random under it).
    pub fn dataverse_mutate(&self) -> MutationSummary {
        self.app.dataverse_mutate()
    }

    /// Registers a Dataverse webhook service endpoint (what the Plugin Registration Tool does):
    /// every later mutation round POSTs a RemoteExecutionContext per changed table to `url`,
    /// with `?code=<key>` (auth type WebhookKey) when a key is given.
    pub fn dataverse_register_webhook(&self, url: &str, key: Option<&str>) {
        self.app
            .dataverse_hooks
            .register(url.to_string(), key.map(str::to_string));
    }

    /// Dataverse webhook requests sent so far.
    pub fn dataverse_webhooks_delivered(&self) -> u64 {
        self.app.dataverse_hooks.delivered()
    }

    /// Every delta token issued so far becomes expired (the next delta read gets
    /// "Version stamp associated with the client has expired").
    pub fn expire_delta_tokens(&self) {
        self.app.org_mut().expire_delta_tokens();
    }

    /// Like [`Sandbox::expire_delta_tokens`], the refusal answered with `status` (Microsoft
    /// documents the message, not the status: a 500 must be recognised as well as a 400).
    pub fn expire_delta_tokens_with_status(&self, status: u16) {
        let mut org = self.app.org_mut();
        org.set_expired_status(status);
        org.expire_delta_tokens();
    }

    /// Replaces the fault rates (takes effect on the next request).
    pub fn set_faults(&self, faults: Faults) {
        self.app.set_faults(faults);
    }

    /// The next `count` live rows of `entity_set` (in key order) serve badly typed values
    /// until the next [`Sandbox::mutate`] (which always updates them). Fails for an unknown
    /// entity set.
    pub fn poison(&self, entity_set: &str, count: usize) -> Result<()> {
        let set = self.dataverse_set(entity_set)?;
        self.app.org_mut().poison(set, count);
        Ok(())
    }

    /// The next `count` live rows of `entity_set` serve their primary key unreadable (a JSON
    /// object) until the next [`Sandbox::mutate`] repairs them; each counts as an update, so
    /// deltas carry it. Returns the keys those rows really have. Fails for an unknown entity
    /// set.
    pub fn break_keys(&self, entity_set: &str, count: usize) -> Result<Vec<String>> {
        let set = self.dataverse_set(entity_set)?;
        let ordinals = self.app.org_mut().break_keys(set, count);
        Ok(ordinals
            .into_iter()
            .map(|o| {
                let mut g = Vec::new();
                json::guid_bare(&mut g, set.code(), o);
                String::from_utf8_lossy(&g).into_owned()
            })
            .collect())
    }

    /// (primary key, versionnumber) of every live row, sorted by key. Fails for an unknown
    /// entity set.
    pub fn live_rows(&self, entity_set: &str) -> Result<Vec<(String, i64)>> {
        let set = self.dataverse_set(entity_set)?;
        Ok(self.app.org().live_rows(set))
    }

    /// The tenant's truth for one Dataverse table (see [`Sandbox::truth`]), keyed by logical
    /// name (`account`): each live row exactly as `GET <set>` serves it without `$select` and
    /// with `Prefer: odata.include-annotations="Microsoft.Dynamics.CRM.lookuplogicalname"`,
    /// minus `@odata.etag`. Rendered by the same code as the pages, so it cannot drift from
    /// what the API serves.
    pub(crate) fn dataverse_truth(&self, entity: &str) -> Option<Vec<TruthRow>> {
        let set = Set::from_logical(entity)?;
        let ent = self.app.entity(set)?;
        let rows = self.app.org().table(set).scan(0, usize::MAX, |_| true).0;
        let sel: Vec<usize> = (0..ent.fields.len()).collect();
        let ann = values::Ann {
            logical: true,
            ..values::Ann::default()
        };
        let mut out = Vec::with_capacity(rows.len());
        let mut buf = Vec::with_capacity(4096);
        for row in &rows {
            buf.clear();
            let ctx = values::Ctx::new(self.app.seed, set, row, &self.app.dims);
            values::write_row(&mut buf, ent, &ctx, &sel, ann);
            match serde_json::from_slice::<TruthRow>(&buf) {
                Ok(mut r) => {
                    r.remove("@odata.etag");
                    out.push(r);
                }
                Err(e) => {
                    tracing::error!(error = %e, table = entity, "sandbox rendered invalid JSON");
                    return None;
                }
            }
        }
        Some(out)
    }

    /// A Dataverse entity set the tenant has, by name.
    fn dataverse_set(&self, name: &str) -> Result<Set> {
        Set::from_name(name)
            .filter(|s| s.in_tenant(self.app.tenant))
            .ok_or_else(|| {
                Error::config(format!(
                    "sandbox: unknown entity set `{name}`; known: {}",
                    ALL.into_iter()
                        .filter(|s| s.in_tenant(self.app.tenant))
                        .map(|s| s.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    /// Live rows per entity set.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.app.org().counts()
    }

    /// Requests answered so far.
    pub fn stats(&self) -> RequestStats {
        self.app.stats()
    }

    /// `false`: the app registration is not an application user of the org, so every Web API
    /// call answers 403 (tokens are still issued, as with the real service).
    pub fn set_app_user(&self, registered: bool) {
        self.app.set_app_user(registered);
    }

    /// Stops accepting connections and waits (at most 5 s) for the server task.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

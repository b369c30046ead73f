//! From a configured connection to a working client: secrets from the environment or the vault,
//! the auth provider, rate and concurrency limits; and `mlc connection check`, which gets a
//! token, reads one row and explains failures in plain words.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::Connection;
use crate::error::Result;
use crate::http::Endpoint;
use crate::systems::settings::CheckReport;
use crate::systems::settings::Wiring;
use crate::vault::Vault;

/// The one runtime of each connection in this process (DESIGN.md §5).
///
/// A tenant's limits apply to the connection (the application user, the token), not to one
/// stream: Dataverse allows 6 000 requests per 5 minutes per user, Business Central processes
/// 5 requests at once. So every stream run, discovery, the sink's targets and `mlc serve`
/// share the endpoint built the first time a connection is used: one token per connection,
/// and the configured `requests_per_minute` and `max_concurrency` hold for the connection
/// whatever `sync.concurrency` is.
#[derive(Debug, Clone)]
pub struct Runtimes {
    vault: Vault,
    built: Arc<Mutex<HashMap<String, Endpoint>>>,
}

impl Runtimes {
    pub fn new(vault: Vault) -> Self {
        Self {
            vault,
            built: Arc::default(),
        }
    }

    /// The endpoint of `conn`, built on first use (secrets read then) and shared afterwards.
    pub fn endpoint(&self, conn: &Connection) -> Result<Endpoint> {
        let mut built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(ep) = built.get(&conn.name) {
            return Ok(ep.clone());
        }
        let ep = endpoint(conn, &self.vault)?;
        built.insert(conn.name.clone(), ep.clone());
        Ok(ep)
    }
}

/// Builds a new client of `conn`, with limits of its own: use [`Runtimes::endpoint`] wherever
/// more than one piece of work may use the connection.
pub fn endpoint(conn: &Connection, vault: &Vault) -> Result<Endpoint> {
    conn.settings.endpoint(&Wiring {
        system: conn.system(),
        name: &conn.name,
        requests_per_minute: conn.requests_per_minute,
        max_concurrency: conn.max_concurrency,
        vault,
    })
}

/// Gets a token, calls a cheap endpoint and reads one row; every failure becomes advice.
pub async fn check(conn: &Connection, vault: &Vault) -> CheckReport {
    let mut report = CheckReport {
        connection: conn.name.clone(),
        system: conn.system().to_string(),
        ok: false,
        steps: Vec::new(),
        problem: None,
    };
    match endpoint(conn, vault) {
        Ok(ep) => conn.settings.check(&ep, &mut report).await,
        Err(e) => report.problem = Some(e.to_string()),
    }
    report
}

//! `mlc webhooks register <connection|system>`: what each system's registration needs
//! ([`Registration`]), handed to the system (`systems/<system>/webhook.rs`): Pipedrive webhooks,
//! Business Central subscriptions, the steps to register a Dataverse service endpoint.

use std::sync::Arc;

use crate::config::{Config, Connection};
use crate::error::Result;
use crate::state::StateStore;
use crate::vault::Vault;

use super::receiver::Registration;

/// The webhook URL of a connection.
pub fn webhook_url(public_base: &str, conn: &Connection) -> String {
    format!("{public_base}/webhooks/{}/{}", conn.system(), conn.name)
}

/// Registers the webhooks of `conn`; returns what to print.
pub async fn register(
    config: &Config,
    vault: &Vault,
    state: Arc<StateStore>,
    conn: &Connection,
) -> Result<String> {
    let public = config.serve.public_base();
    let reg = Registration {
        url: webhook_url(&public, conn),
        public,
        conn,
        vault,
        state,
        webhook: config
            .serve
            .webhooks
            .get(&conn.name)
            .cloned()
            .unwrap_or_default(),
        renew_before_hours: config.serve.renew_before_hours,
    };
    crate::systems::register_webhooks(&reg).await
}

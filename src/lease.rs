//! Leases on units of work (DESIGN.md §16). A stream run holds `run:<connection>/<stream>` for
//! as long as it runs, so workers sharing one state store never run the same stream at once.
//!
//! A lease has an expiry that its holder renews while it works. A worker that crashed or
//! stalled loses the lease at expiry (at once when it ran on this host and its process is gone),
//! and the next worker takes it over and resumes the run from its last checkpoint. Every take
//! bumps the unit's fencing token; a run keeps the token it was taken with, and its commit
//! checks it ([`StateStore::commit_run`]), so a worker that lost its lease (paused past its
//! expiry, cut off) cannot commit over the new owner.
//!
//! A released lease keeps its row (expired) so that the token never goes back.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::state::StateStore;
use crate::state::host_name;
pub use crate::state::{Lease, Take, now_ms, run_unit, sink_unit, subscriptions_unit};

/// This process as a lease owner: `host:pid:nonce` (the nonce tells a reused pid apart).
pub fn worker_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        format!(
            "{}:{}:{:08x}",
            host_name(),
            std::process::id(),
            rand::random::<u32>()
        )
    })
}

/// A lease this process holds, renewed in the background (every third of its time to live)
/// until it is dropped, which releases it.
#[derive(Debug)]
pub struct LeaseGuard {
    lease: Lease,
    state: Arc<StateStore>,
    renewal: Option<tokio::task::JoinHandle<()>>,
}

impl LeaseGuard {
    /// Takes `unit` for this process, or says who holds it.
    ///
    /// Fails with [`Error::Held`] when another worker holds it, and when the state store
    /// fails.
    pub fn acquire(state: &Arc<StateStore>, unit: &str, ttl: Duration) -> Result<Self> {
        let lease = match state.lease_take(unit, worker_id(), ttl, now_ms())? {
            Take::Taken(l) => l,
            Take::Held { owner, expires_in } => {
                return Err(Error::Held {
                    unit: unit.to_string(),
                    owner,
                    expires_in_secs: expires_in.as_secs().max(1),
                });
            }
        };
        // Outside an async runtime (a short command) nothing renews: the work ends long
        // before the lease.
        let renewal = tokio::runtime::Handle::try_current().ok().map(|rt| {
            let (state, lease) = (state.clone(), lease.clone());
            rt.spawn(async move {
                let every = (ttl / 3).max(Duration::from_millis(50));
                loop {
                    tokio::time::sleep(every).await;
                    if !matches!(state.lease_renew(&lease, ttl, now_ms()), Ok(true)) {
                        // Its writes are refused from now on (fencing); say why once.
                        tracing::warn!(unit = %lease.unit, "lease lost: another worker took this unit over");
                        return;
                    }
                }
            })
        });
        Ok(Self {
            lease,
            state: state.clone(),
            renewal,
        })
    }

    pub fn lease(&self) -> &Lease {
        &self.lease
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if let Some(r) = &self.renewal {
            r.abort();
        }
        if let Err(e) = self.state.lease_release(&self.lease) {
            tracing::warn!(unit = %self.lease.unit, error = %e, "could not release a lease; it expires on its own");
        }
    }
}

//! The BusinessCentral fake (placeholder: no routes yet).

use std::sync::Arc;

use axum::Router;

use super::options::Faults;
use super::{App, SandboxOptions};

/// State of the BusinessCentral fake.
pub(crate) struct BusinessCentral;

impl BusinessCentral {
    pub(crate) fn new(_opts: &SandboxOptions) -> Self {
        Self
    }

    /// One round of inserts, updates and deletes.
    pub(crate) fn mutate(&self) {}

    pub(crate) fn set_faults(&self, _faults: Faults) {}
}

/// Routes of the BusinessCentral fake.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
}

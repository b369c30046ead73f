//! Pipedrive discovery (placeholder).

use super::Draft;
use crate::connect::Endpoint;
use crate::error::{Error, Result};
use crate::spec::Definitions;

/// Drafts catalog files from Pipedrive's metadata.
pub async fn discover(_ep: &Endpoint, _defs: &Definitions, _only: &[String]) -> Result<Vec<Draft>> {
    Err(Error::Config(
        "discovery for Pipedrive is not built yet".into(),
    ))
}

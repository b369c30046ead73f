//! The one integration-test binary (DESIGN.md §14): modules per area, sharing helpers.

mod sandbox_dataverse;
mod sandbox_pipedrive;

mod cli;
mod conformance;
mod crash_resume;
mod dataverse_sync;
mod http_runtime;
mod pipedrive_sync;
mod secrets;
mod support;

//! The one integration-test binary (DESIGN.md §14): modules per area, sharing helpers.

mod sandbox_business_central;
mod sandbox_dataverse;
mod sandbox_deltek;
mod sandbox_looker;
mod sandbox_pipedrive;

mod bigquery;
mod business_central_sync;
mod cli;
mod conformance;
mod connection_runtime;
mod crash_resume;
mod dataverse_sync;
mod dbt_lookml;
mod deltek_paging;
mod deltek_sync;
mod fuzz_edges;
mod http_runtime;
mod looker_sync;
mod many_workers;
mod pipedrive_sync;
mod secrets;
mod serve;
mod sink;
mod sink_conformance;
mod sink_pipedrive_bc;
mod state_conformance;
mod support;
mod tenants;
mod warehouse_conformance;
mod write_contracts;

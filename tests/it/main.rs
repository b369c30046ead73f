//! The one integration-test binary (DESIGN.md §14): modules per area, sharing helpers.

mod sandbox_dataverse;

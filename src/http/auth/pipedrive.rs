//! Pipedrive API token and OAuth refresh grant (placeholder until the Pipedrive source lands).

//! Looker discovery: runs each Looker stream's query (or Look) once with a one-row limit and
//! drafts its catalog from the `json_bi` field metadata, so counts are integers, sums floats,
//! `date_date` fields dates and `date_time` fields timestamps without hand-typing them. The key
//! column is always `result_row` (see `streams::looker`).

use super::{Draft, snake_case};
use crate::config::Connection;
use crate::connect::Endpoint;
use crate::error::{Error, Result};
use crate::spec::{Column, ColumnType, Definitions, ReaderKind, looker_row_catalog};
use crate::streams::looker::{LookerApi, ResultField, TaskSettings, column_type, parse_json_bi};

/// Column names for result fields: the field part of `view.field` in snake_case, or
/// `view_field` when two views share a field name.
fn column_names(fields: &[ResultField]) -> Vec<String> {
    let short: Vec<String> = fields
        .iter()
        .map(|f| snake_case(f.name.rsplit('.').next().unwrap_or(&f.name)))
        .collect();
    fields
        .iter()
        .zip(&short)
        .map(|(f, s)| {
            if short.iter().filter(|o| *o == s).count() > 1 || s == "result_row" {
                snake_case(&f.name.replace('.', "_"))
            } else {
                s.clone()
            }
        })
        .collect()
}

/// Drafts the catalog of every Looker stream (or those named in `only`).
pub async fn discover(
    conn: &Connection,
    ep: &Endpoint,
    defs: &Definitions,
    only: &[String],
) -> Result<Vec<Draft>> {
    let mut drafts = Vec::new();
    for stream in defs.streams() {
        if stream.source.reader != ReaderKind::Looker {
            continue;
        }
        if !only.is_empty() && !only.contains(&stream.id.entity) {
            continue;
        }
        let api = LookerApi::new(ep, &stream.id.to_string(), TaskSettings::of(conn));
        let query_id = match (&stream.spec.query, &stream.spec.look_id) {
            (Some(q), _) => api.create_query(q, "1").await?,
            (None, Some(l)) => api.look_query_id(l).await?,
            (None, None) => continue,
        };
        let body = api
            .run(&query_id, stream.spec.look_id.as_deref(), "1")
            .await?;
        let result = parse_json_bi(&body).map_err(|e| Error::Decode {
            stream: stream.id.to_string(),
            message: format!("the query task result is not json_bi: {e}"),
        })?;
        let mut catalog = looker_row_catalog();
        catalog.description = stream.catalog.description.clone().or_else(|| {
            stream
                .spec
                .description
                .clone()
                .map(|d| format!("Reference table from Looker: {d}"))
        });
        for (f, name) in result.fields.iter().zip(column_names(&result.fields)) {
            let ty: ColumnType = column_type(f);
            let what = match (&f.label, &f.description) {
                (Some(l), Some(d)) => format!("{l}: {d}"),
                (Some(l), None) => l.clone(),
                (None, Some(d)) => d.clone(),
                (None, None) => f.name.clone(),
            };
            catalog.columns.push(Column {
                source: (name != f.name).then(|| f.name.clone()),
                name,
                ty,
                nullable: true,
                description: Some(format!("{what} (Looker {})", f.looker_type)),
            });
        }
        drafts.push(Draft {
            entity: stream.id.entity.clone(),
            stream_toml: None,
            catalog,
        });
    }
    Ok(drafts)
}

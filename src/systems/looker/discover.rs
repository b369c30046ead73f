//! Looker discovery: runs each Looker stream's query (or Look) once with a one-row limit and
//! drafts its catalog from the `json_bi` field metadata, so counts are integers, sums floats,
//! `date_date` fields dates and `date_time` fields timestamps without hand-typing them. The key
//! column is always `result_row` (see `streams::looker`). The instance's saved Looks that no
//! stream reads yet get a stream file and a catalog each; its models' explores are listed with
//! the streams that read them.

use crate::config::Connection;
use crate::discover::draft::{Discovered, Draft};
use crate::error::{Error, Result};
use crate::http::Endpoint;
use crate::spec::naming::snake_case;
use crate::spec::{
    CatalogFile, Column, ColumnType, Definitions, LookerQuery, ReaderKind, looker_row_catalog,
};
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

/// Drafts the catalog of every Looker stream (or those named in `only`), and a stream and
/// catalog for every saved Look of the instance that no stream reads yet (`look_<id>`), so a
/// user starts from their own Looks.
pub async fn discover(
    conn: &Connection,
    ep: &Endpoint,
    defs: &Definitions,
    only: &[String],
) -> Result<Vec<Discovered>> {
    let mut out = Vec::new();
    let mut read_looks: Vec<String> = Vec::new();
    // (model, explore) → the streams that query it.
    let mut read_explores: Vec<((String, String), String)> = Vec::new();
    for stream in defs.streams() {
        if stream.source.reader != ReaderKind::Looker {
            continue;
        }
        read_looks.extend(stream.spec.look_id.clone());
        if let Some(q) = &stream.spec.query {
            read_explores.push(((q.model.clone(), q.view.clone()), stream.id.entity.clone()));
        }
        if !only.is_empty() && !only.contains(&stream.id.entity) {
            continue;
        }
        let api = LookerApi::new(ep, &stream.id.to_string(), TaskSettings::of(conn));
        let what = match (&stream.spec.query, &stream.spec.look_id) {
            (Some(q), _) => Source::Query(q),
            (None, Some(l)) => Source::Look(l),
            (None, None) => continue,
        };
        let description = stream.catalog.description.clone().or_else(|| {
            stream
                .spec
                .description
                .clone()
                .map(|d| format!("Reference table from Looker: {d}"))
        });
        match draft(&api, what, description).await {
            Ok(catalog) => out.push(Discovered::drafted(Draft {
                entity: stream.id.entity.clone(),
                stream_toml: None,
                catalog,
            })),
            Err(e @ (Error::Auth { .. } | Error::Transport { .. })) => return Err(e),
            Err(e) => out.push(Discovered::failed(&stream.id.entity, e)),
        }
    }
    let api = LookerApi::new(ep, "looker.looks", TaskSettings::of(conn));
    let looks = match api.looks().await {
        Ok(l) => l,
        Err(e @ (Error::Auth { .. } | Error::Transport { .. })) => return Err(e),
        Err(e) => {
            out.push(Discovered::failed("looks", e));
            Vec::new()
        }
    };
    for look in looks {
        let id: String = look
            .id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let entity = format!("look_{id}");
        if read_looks.contains(&look.id) || (!only.is_empty() && !only.contains(&entity)) {
            continue;
        }
        let api = LookerApi::new(ep, &format!("looker.{entity}"), TaskSettings::of(conn));
        let description = Some(format!(
            "Reference table from the Looker Look \"{}\"{}.",
            look.title,
            look.description
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        ));
        match draft(&api, Source::Look(&look.id), description).await {
            Ok(catalog) => out.push(Discovered::drafted(Draft {
                stream_toml: Some(format!(
                    "# Drafted by `mlc discover` from the Look \"{}\".\ndescription = {}\nincremental = \"full\"\nlook_id = {}\n# Set an explicit row limit (-1 = unlimited): Looker caps results at 5000 otherwise.\nlimit = -1\n",
                    look.title.replace('"', "'"),
                    toml::Value::String(look.title.clone()),
                    toml::Value::String(look.id.clone()),
                )),
                entity,
                catalog,
            })),
            Err(e @ (Error::Auth { .. } | Error::Transport { .. })) => return Err(e),
            Err(e) => out.push(Discovered::failed(&entity, e)),
        }
    }
    if only.is_empty() {
        out.extend(explores(&api, &read_explores).await?);
    }
    Ok(out)
}

/// The instance's explores, each with how to read it: a query stream names the fields it
/// wants, so an explore is listed rather than drafted (a real explore has hundreds of fields).
async fn explores(api: &LookerApi, read: &[((String, String), String)]) -> Result<Vec<Discovered>> {
    let explores = match api.explores().await {
        Ok(e) => e,
        Err(e @ (Error::Auth { .. } | Error::Transport { .. })) => return Err(e),
        Err(e) => return Ok(vec![Discovered::failed("lookml_models", e)]),
    };
    Ok(explores
        .into_iter()
        .map(|e| {
            let readers: Vec<&str> = read
                .iter()
                .filter(|((m, v), _)| *m == e.model && *v == e.name)
                .map(|(_, s)| s.as_str())
                .collect();
            let label = e.label.map(|l| format!(" \"{l}\"")).unwrap_or_default();
            let how = if readers.is_empty() {
                format!(
                    "explore{label}: no stream reads it; add one with [query] model = \"{}\", view = \"{}\" and the fields you need, then run discover again for its catalog",
                    e.model, e.name
                )
            } else {
                format!("explore{label}: read by {}", readers.join(", "))
            };
            Discovered::available(&format!("explore_{}_{}", e.model, e.name), how)
        })
        .collect())
}

/// What a Looker stream runs.
#[derive(Clone, Copy)]
enum Source<'a> {
    Query(&'a LookerQuery),
    Look(&'a str),
}

/// Runs `what` once with a one-row limit and drafts the catalog from its field metadata.
async fn draft(
    api: &LookerApi,
    what: Source<'_>,
    description: Option<String>,
) -> Result<CatalogFile> {
    let (query_id, look) = match what {
        Source::Query(q) => (api.create_query(q, "1").await?, None),
        Source::Look(l) => (api.look_query_id(l).await?, Some(l)),
    };
    let body = api.run(&query_id, look, "1").await?;
    let result = parse_json_bi(&body).map_err(|e| {
        Error::decode(
            api.stream().to_string(),
            format!("the query task result is not json_bi: {e}"),
        )
    })?;
    let mut catalog = looker_row_catalog();
    catalog.description = description;
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
            computed: false,
            absent: false,
        });
    }
    Ok(catalog)
}

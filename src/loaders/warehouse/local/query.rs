//! `mlc query`: SQL over the local warehouse with polars SQL, and the rendering of results as a
//! text table, CSV or JSON.
//!
//! Tables are addressed `dataset.table` (`raw_dataverse.account`), like BigQuery. polars-sql
//! resolves only the first part of a table name, so the statement is parsed with sqlparser (the
//! parser polars uses, same dialect and options), every two-part relation naming a warehouse table
//! is replaced by the single quoted identifier `"raw_dataverse.account"` (under which the table
//! is registered), and the statement is printed back for polars. Column references qualified
//! with the table (`raw_dataverse.account.name`, `raw_dataverse.account.*`) are rewritten the
//! same way. Working on the syntax tree, never on the text, keeps string literals and comments
//! untouched.
//!
//! Value rendering (shared by all three formats and by `keys`): strings as is; integers in
//! decimal; floats in Rust's shortest round-trip form; decimals exactly, with their scale's
//! number of fraction digits (`1234.5678`, `10.0000`); booleans `true`/`false`; dates
//! `YYYY-MM-DD`; timestamps RFC 3339 in UTC with a `Z` and only the fraction digits needed
//! (`2024-05-01T12:30:00Z`, `2024-05-01T12:30:00.250Z`). In JSON, integers, floats and booleans
//! are JSON numbers/booleans, and **decimals are JSON strings** (so money stays exact in any JSON
//! reader); dates and timestamps are strings; nulls are `null`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::ops::ControlFlow;

use polars::prelude::*;
use sqlparser::ast::{
    Expr as SqlExpr, Ident, ObjectName, ObjectNamePart, Select, SelectItem,
    SelectItemQualifiedWildcardKind, Statement, VisitMut, VisitorMut,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::{Parser, ParserOptions};

use super::hash::{date_text, decimal_text};
use crate::error::{Error, Result};
use crate::loaders::warehouse::OutputFormat;

/// Rows shown by the text table (the rest are counted).
pub(super) const TABLE_MAX_ROWS: usize = 50;
/// Characters shown per cell by the text table.
const TABLE_MAX_CELL: usize = 60;

/// Known tables, for error messages.
pub(super) fn known_list(known: &BTreeSet<String>) -> String {
    if known.is_empty() {
        "none yet (run `mlc sync` first)".to_string()
    } else {
        known.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// Rewrites `dataset.table` references to the single identifiers tables are registered under.
///
/// Fails when the SQL does not parse, is not exactly one query (`SELECT`/`WITH`/set operation),
/// or names a `dataset.table` that does not exist; the message lists the known tables.
pub(super) fn rewrite(sql: &str, known: &BTreeSet<String>) -> Result<String> {
    let mut statements = Parser::new(&GenericDialect)
        .with_options(ParserOptions {
            trailing_commas: true,
            ..Default::default()
        })
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| {
            Error::warehouse(format!(
                "cannot parse the query: {e}. Known tables: {}",
                known_list(known)
            ))
        })?;
    if statements.len() != 1 {
        return Err(Error::warehouse(format!(
            "expected exactly one SQL statement, got {}",
            statements.len()
        )));
    }
    let mut stmt = statements.remove(0);
    if !matches!(stmt, Statement::Query(_)) {
        return Err(Error::warehouse(
            "only queries (SELECT / WITH ...) can run against the local warehouse; tables are changed by `mlc sync`",
        ));
    }
    let mut v = Rewriter { known };
    if let ControlFlow::Break(unknown) = stmt.visit(&mut v) {
        return Err(Error::warehouse(format!(
            "unknown table `{unknown}`. Known tables: {}",
            known_list(known)
        )));
    }
    Ok(stmt.to_string())
}

struct Rewriter<'a> {
    known: &'a BTreeSet<String>,
}

impl Rewriter<'_> {
    /// `Some(quoted ident)` when `parts` are `dataset.table` of a known table; `Err(name)` when
    /// they look like one but the table does not exist; `Ok(None)` for anything else.
    fn table_ident(&self, parts: &[&Ident]) -> Result<Option<Ident>, String> {
        if parts.len() != 2 {
            return Ok(None);
        }
        let name = format!("{}.{}", parts[0].value, parts[1].value);
        if self.known.contains(&name) {
            Ok(Some(Ident::with_quote('"', name)))
        } else {
            Err(name)
        }
    }
}

impl VisitorMut for Rewriter<'_> {
    type Break = String;

    fn pre_visit_relation(&mut self, relation: &mut ObjectName) -> ControlFlow<String> {
        let parts: Option<Vec<&Ident>> = relation
            .0
            .iter()
            .map(|p| match p {
                ObjectNamePart::Identifier(i) => Some(i),
                _ => None,
            })
            .collect();
        let Some(parts) = parts else {
            return ControlFlow::Continue(());
        };
        if parts.len() > 2 {
            let name: Vec<&str> = parts.iter().map(|i| i.value.as_str()).collect();
            return ControlFlow::Break(name.join("."));
        }
        match self.table_ident(&parts) {
            Ok(Some(ident)) => *relation = ObjectName::from(vec![ident]),
            Ok(None) => {}
            Err(name) => return ControlFlow::Break(name),
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut SqlExpr) -> ControlFlow<String> {
        // raw_dataverse.account.name -> "raw_dataverse.account".name
        if let SqlExpr::CompoundIdentifier(idents) = expr
            && idents.len() >= 3
        {
            let name = format!("{}.{}", idents[0].value, idents[1].value);
            if self.known.contains(&name) {
                let mut rest = idents.split_off(2);
                rest.insert(0, Ident::with_quote('"', name));
                *idents = rest;
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &mut Select) -> ControlFlow<String> {
        // An unaliased expression is named by its text, as SQL engines do (`COUNT(*)`,
        // `COUNT(DISTINCT ownerid)`), not by polars' choice (`len`, the inner column's name,
        // which would label a count `ownerid`). Plain column references keep their names.
        for item in &mut select.projection {
            if let SelectItem::UnnamedExpr(expr) = item
                && !matches!(
                    expr,
                    SqlExpr::Identifier(_) | SqlExpr::CompoundIdentifier(_)
                )
            {
                let alias = Ident::with_quote('"', expr.to_string());
                *item = SelectItem::ExprWithAlias {
                    expr: expr.clone(),
                    alias,
                };
            }
        }
        // raw_dataverse.account.* -> "raw_dataverse.account".*
        for item in &mut select.projection {
            if let SelectItem::QualifiedWildcard(
                SelectItemQualifiedWildcardKind::ObjectName(n),
                _,
            ) = item
            {
                let parts: Vec<&Ident> =
                    n.0.iter()
                        .filter_map(|p| match p {
                            ObjectNamePart::Identifier(i) => Some(i),
                            _ => None,
                        })
                        .collect();
                if parts.len() == n.0.len()
                    && let Ok(Some(ident)) = self.table_ident(&parts)
                {
                    *n = ObjectName::from(vec![ident]);
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// A value as text (see the module docs); `None` for null.
pub(super) fn value_text(v: &AnyValue<'_>) -> Option<String> {
    let mut s = String::new();
    match v {
        AnyValue::Null => return None,
        AnyValue::Boolean(b) => s.push_str(if *b { "true" } else { "false" }),
        AnyValue::String(x) => s.push_str(x),
        AnyValue::StringOwned(x) => s.push_str(x.as_str()),
        AnyValue::Int8(x) => write_display(&mut s, x),
        AnyValue::Int16(x) => write_display(&mut s, x),
        AnyValue::Int32(x) => write_display(&mut s, x),
        AnyValue::Int64(x) => write_display(&mut s, x),
        AnyValue::UInt8(x) => write_display(&mut s, x),
        AnyValue::UInt16(x) => write_display(&mut s, x),
        AnyValue::UInt32(x) => write_display(&mut s, x),
        AnyValue::UInt64(x) => write_display(&mut s, x),
        AnyValue::Float32(x) => write_display(&mut s, x),
        AnyValue::Float64(x) => write_display(&mut s, x),
        AnyValue::Decimal(x, _, scale) => decimal_text(&mut s, *x, (*scale).min(38) as i8),
        AnyValue::Date(d) => date_text(&mut s, *d),
        AnyValue::Datetime(x, unit, _) => timestamp_text(&mut s, *x, *unit),
        AnyValue::DatetimeOwned(x, unit, _) => timestamp_text(&mut s, *x, *unit),
        other => write_display(&mut s, other),
    }
    Some(s)
}

fn write_display(s: &mut String, v: &impl std::fmt::Display) {
    let _ = write!(s, "{v}");
}

fn timestamp_text(out: &mut String, v: i64, unit: TimeUnit) {
    let nanos: Option<i128> = match unit {
        TimeUnit::Nanoseconds => Some(i128::from(v)),
        TimeUnit::Microseconds => Some(i128::from(v) * 1_000),
        TimeUnit::Milliseconds => Some(i128::from(v) * 1_000_000),
    };
    let dt = nanos.and_then(|n| {
        let secs = n.div_euclid(1_000_000_000);
        let sub = n.rem_euclid(1_000_000_000) as u32;
        chrono::DateTime::from_timestamp(i64::try_from(secs).ok()?, sub)
    });
    match dt {
        Some(dt) => out.push_str(&dt.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        None => write_display(out, &v),
    }
}

/// A column type as the catalog names it (polars' name for anything else).
fn type_name(dt: &DataType) -> String {
    match dt {
        DataType::String => "string".into(),
        // Counts and other integer results are integers, whatever width polars gives them.
        DataType::Int64
        | DataType::Int32
        | DataType::Int16
        | DataType::Int8
        | DataType::UInt64
        | DataType::UInt32
        | DataType::UInt16
        | DataType::UInt8 => "int64".into(),
        DataType::Float32 => "float64".into(),
        DataType::Float64 => "float64".into(),
        DataType::Boolean => "bool".into(),
        DataType::Date => "date".into(),
        DataType::Datetime(_, _) => "timestamp".into(),
        DataType::Decimal(p, s) => format!("decimal({p},{s})"),
        other => other.to_string(),
    }
}

/// Renders a query result.
///
/// Fails only if polars cannot produce a column's values.
pub(super) fn render(df: &DataFrame, format: OutputFormat) -> Result<String> {
    match format {
        OutputFormat::Table => render_table(df),
        OutputFormat::Csv => render_csv(df),
        OutputFormat::Json => render_json(df),
    }
}

fn cell(df: &DataFrame, c: usize, r: usize) -> Result<AnyValue<'_>> {
    df.columns()[c]
        .get(r)
        .map_err(|e| Error::warehouse_from("reading the result", e))
}

fn render_table(df: &DataFrame) -> Result<String> {
    let ncols = df.width();
    let shown = df.height().min(TABLE_MAX_ROWS);
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    let types: Vec<String> = df.dtypes().iter().map(type_name).collect();
    let mut rows: Vec<Vec<String>> = Vec::with_capacity(shown);
    for r in 0..shown {
        let mut row = Vec::with_capacity(ncols);
        for c in 0..ncols {
            let text = value_text(&cell(df, c, r)?).unwrap_or_else(|| "null".into());
            let one_line: String = text.replace(['\n', '\r'], " ");
            row.push(if one_line.chars().count() > TABLE_MAX_CELL {
                let cut: String = one_line.chars().take(TABLE_MAX_CELL - 1).collect();
                format!("{cut}…")
            } else {
                one_line
            });
        }
        rows.push(row);
    }
    let width = |c: usize| -> usize {
        rows.iter()
            .map(|r| r[c].chars().count())
            .chain([names[c].chars().count(), types[c].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..ncols).map(width).collect();
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!(" {v}{} ", " ".repeat(w - v.chars().count())))
            .collect();
        out.push_str(parts.join("|").trim_end());
        out.push('\n');
    };
    line(&mut out, &names);
    line(&mut out, &types);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
    out.push_str(&rule.join("+"));
    out.push('\n');
    for r in &rows {
        line(&mut out, r);
    }
    let total = df.height();
    if total > shown {
        let _ = writeln!(out, "({total} rows, first {shown} shown)");
    } else {
        let _ = writeln!(out, "({total} row{})", if total == 1 { "" } else { "s" });
    }
    Ok(out)
}

fn csv_field(out: &mut String, v: &str) {
    if v.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(v);
    }
}

fn render_csv(df: &DataFrame) -> Result<String> {
    let mut out = String::new();
    for (i, n) in df.get_column_names().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(&mut out, n.as_str());
    }
    out.push('\n');
    for r in 0..df.height() {
        for c in 0..df.width() {
            if c > 0 {
                out.push(',');
            }
            if let Some(v) = value_text(&cell(df, c, r)?) {
                csv_field(&mut out, &v);
            }
        }
        out.push('\n');
    }
    Ok(out)
}

fn json_string(out: &mut String, s: &str) {
    // serde_json never fails on a &str.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "null".into()));
}

fn render_json(df: &DataFrame) -> Result<String> {
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    let mut out = String::from("[");
    for r in 0..df.height() {
        out.push_str(if r == 0 { "\n  {" } else { ",\n  {" });
        for (c, name) in names.iter().enumerate() {
            if c > 0 {
                out.push(',');
            }
            json_string(&mut out, name);
            out.push(':');
            let v = cell(df, c, r)?;
            match &v {
                AnyValue::Null => out.push_str("null"),
                AnyValue::Boolean(_)
                | AnyValue::Int8(_)
                | AnyValue::Int16(_)
                | AnyValue::Int32(_)
                | AnyValue::Int64(_)
                | AnyValue::UInt8(_)
                | AnyValue::UInt16(_)
                | AnyValue::UInt32(_)
                | AnyValue::UInt64(_) => out.push_str(&value_text(&v).unwrap_or_default()),
                AnyValue::Float32(x) if x.is_finite() => write_display(&mut out, x),
                AnyValue::Float64(x) if x.is_finite() => write_display(&mut out, x),
                AnyValue::Float32(_) | AnyValue::Float64(_) => out.push_str("null"),
                _ => match value_text(&v) {
                    Some(t) => json_string(&mut out, &t),
                    None => out.push_str("null"),
                },
            }
        }
        out.push('}');
    }
    out.push_str(if df.height() == 0 { "]\n" } else { "\n]\n" });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> BTreeSet<String> {
        ["raw_dataverse.account", "raw_dataverse.contact"]
            .into_iter()
            .map(String::from)
            .collect()
    }

    #[test]
    fn rewrites_dataset_table_references() {
        let sql = rewrite(
            "SELECT a.name, raw_dataverse.contact.fullname, 'raw_dataverse.account' AS s \
             FROM raw_dataverse.account a JOIN raw_dataverse.contact ON a.accountid = raw_dataverse.contact.parentcustomerid",
            &known(),
        )
        .unwrap();
        assert!(sql.contains(r#"FROM "raw_dataverse.account" a"#), "{sql}");
        assert!(sql.contains(r#"JOIN "raw_dataverse.contact""#), "{sql}");
        assert!(sql.contains(r#""raw_dataverse.contact".fullname"#), "{sql}");
        assert!(sql.contains("'raw_dataverse.account' AS s"), "{sql}");
    }

    #[test]
    fn unknown_table_lists_known_ones() {
        let err = rewrite("SELECT * FROM raw_dataverse.nope", &known())
            .unwrap_err()
            .to_string();
        assert!(err.contains("raw_dataverse.nope"), "{err}");
        assert!(
            err.contains("raw_dataverse.account, raw_dataverse.contact"),
            "{err}"
        );
        assert!(rewrite("DELETE FROM raw_dataverse.account", &known()).is_err());
        assert!(rewrite("SELEC 1", &known()).is_err());
    }

    #[test]
    fn renders_values_exactly() {
        assert_eq!(
            value_text(&AnyValue::Decimal(12_345_678, 19, 4)).as_deref(),
            Some("1234.5678")
        );
        assert_eq!(
            value_text(&AnyValue::Date(19_844)).as_deref(),
            Some("2024-05-01")
        );
        assert_eq!(
            value_text(&AnyValue::Datetime(
                1_714_566_600_250_000,
                TimeUnit::Microseconds,
                None
            ))
            .as_deref(),
            Some("2024-05-01T12:30:00.250Z")
        );
        assert_eq!(value_text(&AnyValue::Null), None);
    }
}

//! Plain-text tables for the command line: columns as wide as their widest cell (a long stream
//! name never shifts the columns after it), numbers right-aligned, and lines that belong to a
//! row (notes, a failure's message) that do not widen any column.

use std::fmt::Write;

/// How a column's cells are aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

#[derive(Debug, Clone)]
enum Line {
    Cells(Vec<String>),
    /// The first cell in its column, then free text (a failure's message).
    Span(String, String),
    /// Indented free text under the row before it.
    Note(String),
    /// A rule above the totals.
    Rule,
}

/// A table being built; [`Table::render`] lays it out.
#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<(String, Align)>,
    lines: Vec<Line>,
}

impl Table {
    pub fn new(headers: &[(&str, Align)]) -> Self {
        Table {
            headers: headers.iter().map(|(h, a)| (h.to_string(), *a)).collect(),
            lines: Vec::new(),
        }
    }

    /// A row of cells (missing ones are blank).
    pub fn row(&mut self, cells: Vec<String>) {
        self.lines.push(Line::Cells(cells));
    }

    /// A row whose first cell is `first` and the rest of the line `text`.
    pub fn span(&mut self, first: impl Into<String>, text: impl Into<String>) {
        self.lines.push(Line::Span(first.into(), text.into()));
    }

    /// A note under the previous row.
    pub fn note(&mut self, text: impl Into<String>) {
        self.lines.push(Line::Note(text.into()));
    }

    /// A rule, then the totals row.
    pub fn totals(&mut self, cells: Vec<String>) {
        self.lines.push(Line::Rule);
        self.lines.push(Line::Cells(cells));
    }

    /// Every line of the table, each prefixed with `indent`.
    pub fn render(&self, indent: &str) -> String {
        let mut width: Vec<usize> = self
            .headers
            .iter()
            .map(|(h, _)| h.chars().count())
            .collect();
        for line in &self.lines {
            match line {
                Line::Cells(cells) => {
                    for (w, c) in width.iter_mut().zip(cells) {
                        *w = (*w).max(c.chars().count());
                    }
                }
                Line::Span(first, _) => {
                    if let Some(w) = width.first_mut() {
                        *w = (*w).max(first.chars().count());
                    }
                }
                Line::Note(_) | Line::Rule => {}
            }
        }
        let cells = |cells: &[String]| -> String {
            let mut out = String::new();
            for (i, ((_, align), w)) in self.headers.iter().zip(&width).enumerate() {
                let c = cells.get(i).map(String::as_str).unwrap_or("");
                if i > 0 {
                    out.push_str("  ");
                }
                let _ = match align {
                    Align::Left => write!(out, "{c:<w$}"),
                    Align::Right => write!(out, "{c:>w$}"),
                };
            }
            out.trim_end().to_string()
        };
        let headers: Vec<String> = self.headers.iter().map(|(h, _)| h.clone()).collect();
        let mut out = String::new();
        let _ = writeln!(out, "{indent}{}", cells(&headers));
        for line in &self.lines {
            let text = match line {
                Line::Cells(c) => cells(c),
                Line::Span(first, rest) => {
                    let w = width.first().copied().unwrap_or(0);
                    format!("{first:<w$}  {rest}")
                }
                Line::Note(n) => format!("    {n}"),
                Line::Rule => {
                    "-".repeat(width.iter().sum::<usize>() + 2 * width.len().saturating_sub(1))
                }
            };
            let _ = writeln!(out, "{indent}{text}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_their_widest_cell_and_notes_do_not_widen_them() {
        let mut t = Table::new(&[("stream", Align::Left), ("rows", Align::Right)]);
        t.row(vec!["crm/dataverse.account".into(), "12".into()]);
        t.note("a note longer than any column of this table, which must not widen it");
        t.row(vec!["pd/x".into(), "3".into()]);
        t.span("bi/looker.budget", "FAILED: no such Look");
        t.totals(vec!["3 streams".into(), "15".into()]);
        let text = t.render("");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "stream                 rows");
        assert_eq!(lines[1], "crm/dataverse.account    12");
        assert_eq!(lines[3], "pd/x                      3");
        assert_eq!(lines[4], "bi/looker.budget       FAILED: no such Look");
        assert_eq!(lines[5], "-".repeat(27));
        assert_eq!(lines[6], "3 streams                15");
    }
}

//! Files generated from the catalog for the tools downstream of the warehouse: the dbt project's
//! sources and staging models (`dbt.rs`) and Looker views (`lookml.rs`).
//!
//! Why generated: the catalog is the one description of every table (DESIGN.md §4), so a column
//! added there reaches dbt and Looker by re-running a command, never by hand-editing YAML in
//! three places. Generators are pure functions from [`Definitions`](crate::spec::Definitions)
//! to a list of [`GeneratedFile`]s, so they are unit-tested on text and a staleness test can
//! compare them with the committed copies.

pub mod dbt;
pub mod lookml;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One generated file: its path relative to the output folder and its full text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    pub path: PathBuf,
    pub contents: String,
}

/// What [`write_files`] did, for the command's summary.
#[derive(Debug, Default, Clone)]
pub struct WriteReport {
    /// Files whose text changed or that did not exist.
    pub written: Vec<PathBuf>,
    /// Files already up to date.
    pub unchanged: usize,
    /// Generated files of streams that no longer exist, removed.
    pub removed: Vec<PathBuf>,
}

/// Writes `files` under `root`, touching only files whose text changes (so build tools and
/// `git status` see real changes only). Then removes stale generated files: every file under
/// one of `owned` folders (relative to `root`) that `is_generated` recognises but `files` does
/// not contain — a stream removed from the catalog must not leave a model behind.
///
/// Fails on the first file that cannot be written, naming it.
pub fn write_files(
    root: &Path,
    files: &[GeneratedFile],
    owned: &[&Path],
    is_generated: &dyn Fn(&Path) -> bool,
) -> Result<WriteReport> {
    let mut report = WriteReport::default();
    for f in files {
        let path = root.join(&f.path);
        if std::fs::read_to_string(&path).is_ok_and(|old| old == f.contents) {
            report.unchanged += 1;
            continue;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        std::fs::write(&path, &f.contents).map_err(|e| Error::io(&path, e))?;
        report.written.push(f.path.clone());
    }
    for dir in owned {
        for rel in list_files(root, dir)? {
            if is_generated(&rel) && !files.iter().any(|f| f.path == rel) {
                let path = root.join(&rel);
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                report.removed.push(rel);
            }
        }
    }
    Ok(report)
}

/// Every file under `root/rel` (recursively), as paths relative to `root`, sorted. A missing
/// folder has no files.
pub fn list_files(root: &Path, rel: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let dir = root.join(rel);
    if !dir.is_dir() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
        let entry = entry.map_err(|e| Error::io(&dir, e))?;
        let child = rel.join(entry.file_name());
        if entry.path().is_dir() {
            out.extend(list_files(root, &child)?);
        } else {
            out.push(child);
        }
    }
    out.sort();
    Ok(out)
}

/// A double-quoted string literal valid in YAML and in LookML (both accept `\"` and `\\`
/// escapes inside double quotes); newlines become spaces so every value stays on one line.
pub(crate) fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' | '\r' | '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes() {
        assert_eq!(quoted(r#"a "b" \c"#), r#""a \"b\" \\c""#);
        assert_eq!(quoted("two\nlines"), "\"two lines\"");
    }

    #[test]
    fn write_files_skips_unchanged_and_removes_stale() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let f = |p: &str, c: &str| GeneratedFile {
            path: PathBuf::from(p),
            contents: c.into(),
        };
        let owned = [Path::new("m")];
        let is_gen = |p: &Path| p.extension().is_some_and(|e| e == "sql");
        let r = write_files(
            root,
            &[f("m/a.sql", "1"), f("m/b.sql", "2")],
            &owned,
            &is_gen,
        )
        .unwrap();
        assert_eq!(r.written.len(), 2);
        std::fs::write(root.join("m/keep.md"), "hand-written").unwrap();
        let r = write_files(root, &[f("m/a.sql", "1")], &owned, &is_gen).unwrap();
        assert_eq!(r.unchanged, 1);
        assert_eq!(r.removed, vec![PathBuf::from("m/b.sql")]);
        assert!(root.join("m/keep.md").exists());
    }
}

//! The files generated from the catalog: the committed dbt sources and staging models must match
//! what `mlc catalog export-dbt` generates now, and the CLI writes dbt and LookML files.

use std::path::{Path, PathBuf};

use ml_connector::catalog_export::{dbt, list_files};
use ml_connector::spec::Definitions;

use crate::cli::mlc;

fn repo_dbt() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dbt")
}

#[test]
fn committed_dbt_sources_and_staging_models_are_current() {
    let defs = Definitions::builtin().unwrap();
    let files = dbt::generate(&defs);
    let root = repo_dbt();
    let fix = "run `cargo run -- catalog export-dbt` at the repository root and commit dbt/";
    for f in &files {
        let path = root.join(&f.path);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == f.contents,
            "dbt/{} is stale or missing (the catalog changed): {fix}",
            f.path.display()
        );
    }
    for dir in dbt::owned_dirs() {
        for rel in list_files(&root, dir).unwrap() {
            assert!(
                !dbt::is_generated(&rel) || files.iter().any(|f| f.path == rel),
                "dbt/{} belongs to no stream any more: {fix}",
                rel.display()
            );
        }
    }
}

#[test]
fn dbt_export_command_writes_the_project_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = mlc(dir.path(), &["catalog", "export-dbt", "--out", "proj"]);
    assert!(out.status.success(), "{out:?}");
    let defs = Definitions::builtin().unwrap();
    for f in dbt::generate(&defs) {
        let written = std::fs::read_to_string(dir.path().join("proj").join(&f.path)).unwrap();
        assert_eq!(written, f.contents, "{}", f.path.display());
    }
    // A stale model of a stream that no longer exists is removed; hand-written files stay.
    let staging = dir.path().join("proj/models/staging/deltek");
    std::fs::write(staging.join("stg_deltek__gone.sql"), "select 1").unwrap();
    std::fs::write(staging.join("notes.md"), "mine").unwrap();
    let again = mlc(dir.path(), &["catalog", "export-dbt", "--out", "proj"]);
    assert!(again.status.success());
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(text.contains("0 written"), "{text}");
    assert!(!staging.join("stg_deltek__gone.sql").exists());
    assert!(staging.join("notes.md").exists());
}

#[test]
fn dbt_lookml_command_writes_one_view_per_stream() {
    let dir = tempfile::tempdir().unwrap();
    let out = mlc(dir.path(), &["lookml", "--out", "views"]);
    assert!(out.status.success(), "{out:?}");
    let defs = Definitions::builtin().unwrap();
    let views = list_files(dir.path(), Path::new("views")).unwrap();
    assert_eq!(views.len(), defs.streams().count());
    let project =
        std::fs::read_to_string(dir.path().join("views/deltek/project.view.lkml")).unwrap();
    assert!(project.contains("view: deltek_project {\n  sql_table_name: raw_deltek.project ;;"));

    let only = mlc(dir.path(), &["lookml", "pipedrive", "--out", "pd"]);
    assert!(only.status.success());
    let pd = list_files(dir.path(), Path::new("pd")).unwrap();
    assert_eq!(pd.len(), defs.select(&["pipedrive".into()]).unwrap().len());

    // Without --out, the views go into the project of the --config given, wherever mlc runs.
    std::fs::create_dir(dir.path().join("proj")).unwrap();
    std::fs::write(dir.path().join("proj/mlc.toml"), "").unwrap();
    let elsewhere = mlc(
        dir.path(),
        &["--config", "proj/mlc.toml", "lookml", "pipedrive"],
    );
    assert!(elsewhere.status.success(), "{elsewhere:?}");
    assert_eq!(
        list_files(dir.path(), Path::new("proj/lookml"))
            .unwrap()
            .len(),
        pd.len()
    );
    assert!(!dir.path().join("lookml").exists());
}

//! Every stream and catalog file, checked the same way (DESIGN.md §14): the definitions parse,
//! the stream's fixture page decodes to the catalog schema with nothing quarantined or left
//! untyped, keys are unique and non-null, and a second incremental run against the sandbox
//! yields nothing new.

use std::collections::HashSet;
use std::path::PathBuf;

use arrow_array::Array;
use ml_connector::batches::{PageContext, RowDecoder};
use ml_connector::schema::table_schema;
use ml_connector::spec::Definitions;

use ml_connector::run::{Context, RunRequest, run_many};
use ml_connector::sandbox::{Sandbox, SandboxOptions};
use ml_connector::spec::Incremental;

fn fixture(system: &str, entity: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(system)
        .join(entity)
        .join("page.json")
}

#[test]
fn every_stream_decodes_its_fixture_to_its_catalog() {
    let defs = Definitions::builtin().unwrap();
    let mut checked = 0;
    for stream in defs.streams() {
        let path = fixture(&stream.id.system, &stream.id.entity);
        let raw = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: fixture {} missing: {e}", stream.id, path.display()));
        let (body, ranges) = ml_connector::streams::decoder_input(stream, &raw)
            .unwrap_or_else(|e| panic!("{}: fixture is not a page: {e}", stream.id));
        assert!(!ranges.is_empty(), "{}: empty fixture", stream.id);
        // The fixture exercises every selectable catalog field.
        let first: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&body[ranges[0].clone()]).unwrap();
        for c in stream
            .catalog
            .columns
            .iter()
            .filter(|c| !c.is_annotation() && c.context_name().is_none())
        {
            assert!(
                first.contains_key(c.source_name()),
                "{}: fixture lacks `{}`",
                stream.id,
                c.source_name()
            );
        }

        let dec = RowDecoder::new(stream, "fixture", "r0").unwrap();
        let context: PageContext = stream
            .catalog
            .columns
            .iter()
            .filter_map(|c| c.context_name())
            .map(|n| (n.to_string(), format!("fixture-{n}")))
            .collect();
        let page = dec.decode_page_with(&body, &ranges, 0, &context).unwrap();
        assert!(
            page.quarantined.is_empty(),
            "{}: {:?}",
            stream.id,
            page.quarantined
        );
        let batch = page.batch.unwrap();
        assert_eq!(
            batch.schema(),
            table_schema(&stream.catalog),
            "{}",
            stream.id
        );
        assert_eq!(batch.num_rows(), ranges.len());
        // Nothing outside the catalog, except Pipedrive's raw `custom_fields`: its reader
        // rewrites them into readable keys per company (tested in pipedrive_sync).
        let extra = batch
            .column_by_name("_ml_extra")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .unwrap();
        for v in extra.iter().flatten() {
            let keys: serde_json::Map<String, serde_json::Value> = serde_json::from_str(v).unwrap();
            assert!(
                stream.id.system == "pipedrive" && keys.keys().all(|k| k == "custom_fields"),
                "{}: fields outside the catalog: {v}",
                stream.id
            );
        }
        let mut seen = HashSet::new();
        for i in 0..batch.num_rows() {
            let key: Vec<String> = stream
                .catalog
                .primary_key
                .iter()
                .map(|k| {
                    let col = batch.column_by_name(k).unwrap();
                    assert!(!col.is_null(i), "{}: null key", stream.id);
                    arrow_cast::display::array_value_to_string(col, i).unwrap()
                })
                .collect();
            assert!(seen.insert(key), "{}: duplicate key in fixture", stream.id);
        }
        checked += 1;
    }
    assert!(checked >= 9);
}

/// Every system, every stream: after a full sync, a second run against the unchanged sandbox
/// fetches no rows (one request per stream for most), except streams that are full snapshots
/// by design (`incremental = "full"`), which read their table again and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_incremental_run_yields_nothing_new() {
    let dir = tempfile::tempdir().unwrap();
    let sb = Sandbox::start(
        SandboxOptions {
            scale: 100,
            ..Default::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let config = ml_connector::demo::write_project(dir.path(), &sb, "", false).unwrap();
    let ctx = Context::open(config).unwrap();
    let conns: Vec<_> = ctx.config.connections.values().collect();
    assert_eq!(conns.len(), 5, "one connection per system");
    let req = RunRequest::Sync { full: false };
    let first = run_many(&ctx, &conns, &[], &req).await.unwrap();
    let mut table_rows = std::collections::BTreeMap::new();
    for (label, r) in &first {
        let s = r.as_ref().unwrap_or_else(|e| panic!("{label}: {e}"));
        table_rows.insert(s.stream.clone(), s.table_rows);
    }
    assert_eq!(first.len(), ctx.defs.streams().count(), "every stream ran");
    let second = run_many(&ctx, &conns, &[], &req).await.unwrap();
    for (label, r) in second {
        let s = r.unwrap_or_else(|e| panic!("{label}: {e}"));
        let stream = ctx.defs.get(&s.stream.parse().unwrap()).unwrap();
        assert_eq!(
            s.table_rows, table_rows[&s.stream],
            "{label}: the table changed"
        );
        if stream.spec.incremental == Incremental::Full {
            assert_eq!(s.kind, "snapshot", "{label}");
            assert_eq!(s.deleted, 0, "{label}");
        } else {
            assert_eq!(s.kind, "incremental", "{label}");
            assert_eq!(
                s.rows_extracted, 0,
                "{label}: an unchanged source yields no rows"
            );
        }
    }
    sb.shutdown().await;
}

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

use crate::support::Project;

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
        let body = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: fixture {} missing: {e}", stream.id, path.display()));
        let ranges = ml_connector::streams::records(stream, &body)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_incremental_run_yields_nothing_new() {
    let p = Project::new(
        ml_connector::sandbox::SandboxOptions {
            scale: 50,
            ..Default::default()
        },
        "",
    )
    .await;
    p.sync_incremental().await;
    let second = p.sync_incremental().await;
    assert_eq!(
        second.len(),
        p.ctx.defs.select(&["dataverse".into()]).unwrap().len()
    );
    for (stream, s) in second {
        assert_eq!(s.kind, "incremental", "{stream}");
        assert_eq!(s.rows_extracted, 0, "{stream}");
    }
}

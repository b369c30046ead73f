//! Micro-benchmarks of the sync hot path (DESIGN.md §15), on real sandbox pages of
//! `dataverse.account`: sandbox serving (render + HTTP), OData envelope parse, JSON → Arrow
//! decode, Parquet encode (one core each), and the embedded warehouse's first-load merge.
//! Prints MB/s of JSON per stage. End-to-end figures come from `bench/sync.sh`.
//!
//!     cargo bench --bench pipeline

use std::time::Instant;

use ml_connector::batches::RowDecoder;
use ml_connector::config::DeleteMode;
use ml_connector::lake::{Lake, PartWriter};
use ml_connector::loaders::warehouse::local::{LocalWarehouse, MergeRequest};
use ml_connector::sandbox::{Sandbox, SandboxOptions};
use ml_connector::spec::Definitions;
use ml_connector::streams::odata::parse_envelope;
use object_store::path::Path as ObjPath;

const ROWS: u64 = 100_000;

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let t = Instant::now();
    let pages = rt.block_on(fetch_pages());
    let bytes: usize = pages.iter().map(|p| p.len()).sum();
    let mb = bytes as f64 / 1e6;
    println!(
        "{} pages, {ROWS} account rows, {mb:.1} MB of JSON",
        pages.len()
    );
    report("sandbox serve (HTTP)", mb, t);

    let defs = Definitions::builtin().expect("definitions");
    let stream = defs
        .get(&"dataverse.account".parse().expect("id"))
        .expect("stream");
    let decoder = RowDecoder::new(stream, "bench", "run").expect("decoder");

    let t = Instant::now();
    let parsed: Vec<_> = pages
        .iter()
        .map(|p| parse_envelope(p).expect("envelope"))
        .collect();
    report("envelope parse", mb, t);

    let t = Instant::now();
    let mut batches = Vec::new();
    for (p, env) in pages.iter().zip(&parsed) {
        let d = decoder.decode_page(p, &env.rows, 0).expect("decode");
        assert!(d.quarantined.is_empty());
        batches.extend(d.batch);
    }
    report("decode to Arrow", mb, t);

    let t = Instant::now();
    let mut w = PartWriter::new(decoder.schema()).expect("writer");
    for b in &batches {
        w.write(b, 0).expect("write");
    }
    let parquet = w.finish().expect("finish");
    report("Parquet encode (zstd)", mb, t);
    println!(
        "Parquet part: {:.1} MB ({:.1}x smaller than the JSON)",
        parquet.len() as f64 / 1e6,
        bytes as f64 / parquet.len() as f64
    );

    // First load of the part into an empty embedded-warehouse table.
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::open("memory://", dir.path()).expect("lake");
    let part = ObjPath::from("raw/dataverse/account/run=r/part-00000.parquet");
    let wh = LocalWarehouse::open(&dir.path().join("wh"), DeleteMode::Hard).expect("warehouse");
    let t = Instant::now();
    let stats = rt
        .block_on(async {
            lake.put(&part, parquet).await?;
            wh.merge(MergeRequest {
                dataset: "raw_dataverse",
                table: "account",
                store: lake.store(),
                parts: std::slice::from_ref(&part),
                primary_key: &stream.catalog.primary_key,
                schema: decoder.schema(),
                reconcile: true,
                protected: &[],
                keys_only: false,
                run_id: "r",
                extracted_at_micros: 0,
            })
            .await
        })
        .expect("merge");
    assert_eq!(stats.table_rows, ROWS);
    report("warehouse merge (2 cores)", mb, t);
}

fn report(stage: &str, mb: f64, t: Instant) {
    let s = t.elapsed().as_secs_f64();
    println!("{stage:<24} {s:>7.3} s  {:>8.1} MB/s", mb / s);
}

/// All account pages of a sandbox with `ROWS` accounts, as received.
async fn fetch_pages() -> Vec<bytes::Bytes> {
    let sb = Sandbox::start(
        SandboxOptions {
            scale: ROWS,
            ..Default::default()
        },
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("sandbox");
    let http = reqwest::Client::new();
    let token: serde_json::Value = http
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            sb.authority_url(),
            sb.tenant_id()
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", sb.client_id()),
            ("client_secret", sb.client_secret()),
            ("scope", &format!("{}/.default", sb.dataverse_url())),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token json");
    let token = token["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    let defs = Definitions::builtin().expect("definitions");
    let stream = defs
        .get(&"dataverse.account".parse().expect("id"))
        .expect("stream");
    let select = stream.select_fields();
    let mut next = Some(format!(
        "{}/api/data/v9.2/accounts?$select={}",
        sb.dataverse_url(),
        select.join(",")
    ));
    let mut pages = Vec::new();
    while let Some(url) = next {
        let body = http
            .get(&url)
            .bearer_auth(&token)
            .header(
                "Prefer",
                "odata.maxpagesize=5000,odata.include-annotations=\"Microsoft.Dynamics.CRM.lookuplogicalname\"",
            )
            .send()
            .await
            .expect("page")
            .bytes()
            .await
            .expect("body");
        next = parse_envelope(&body).expect("envelope").next_link;
        pages.push(body);
    }
    pages
}

//! Property tests of the edges where outside bytes enter: every reader's page parser, the row
//! decoder behind them, and every webhook receiver's body parser. Arbitrary bytes, invalid
//! UTF-8, deep nesting and JSON of the right shape with wrong types, missing keys and huge
//! numbers must never panic: a page parser answers `Err`, the decoder keeps a record or
//! quarantines it (its type drift lands in `_ml_extra`), a receiver refuses the body.
//!
//! The case budget is fixed (and nothing is persisted) so the suite costs CI seconds, not
//! minutes; a failure prints its minimal input, to be kept as an ordinary regression test.

use std::sync::LazyLock;

use ml_connector::batches::{PageContext, RowDecoder};
use ml_connector::spec::{Definitions, Stream};
use ml_connector::streams::{self, looker, odata};
use ml_connector::systems::business_central::webhook as business_central;
use ml_connector::systems::dataverse::webhook as dataverse;
use ml_connector::systems::pipedrive::webhook as pipedrive;
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Value, json};

/// Cases per property.
const CASES: u32 = 256;

fn config() -> Config {
    Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    }
}

static DEFS: LazyLock<Definitions> = LazyLock::new(|| Definitions::builtin().unwrap());

/// Every built-in stream, in a fixed order (a case picks one by index).
fn all_streams() -> Vec<&'static Stream> {
    let mut v: Vec<&Stream> = DEFS.select(&[]).unwrap();
    v.sort_by_key(|s| s.id.to_string());
    v
}

static STREAMS: LazyLock<Vec<&'static Stream>> = LazyLock::new(all_streams);

/// Keys a page or a record is likely to have, so structured cases reach past the first check.
const KEYS: &[&str] = &[
    "value",
    "@odata.nextLink",
    "@odata.deltaLink",
    "@odata.context",
    "@odata.etag",
    "$deletedEntity",
    "id",
    "data",
    "additional_data",
    "pagination",
    "more_items_in_collection",
    "next_cursor",
    "next_start",
    "rows",
    "fields",
    "dimensions",
    "measures",
    "totalRecords",
    "items",
    "meta",
    "entity",
    "action",
    "current",
    "previous",
    "reason",
];

/// JSON leaves, hostile ones included: huge and tiny numbers, NaN-looking strings, long text.
fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!("NaN")),
        Just(json!("2026-13-45T99:99:99Z")),
        Just(json!("")),
        ".{0,40}".prop_map(Value::String),
        proptest::collection::vec(any::<char>(), 0..300)
            .prop_map(|c| Value::String(c.into_iter().collect())),
    ]
}

/// Arbitrary JSON up to a few levels deep, keys mostly from [`KEYS`] and the stream's columns.
fn value(columns: Vec<String>) -> impl Strategy<Value = Value> {
    let mut keys: Vec<String> = KEYS.iter().map(|k| k.to_string()).collect();
    keys.extend(columns);
    let key = prop_oneof![
        4 => proptest::sample::select(keys),
        1 => ".{0,12}",
    ];
    leaf().prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::vec((key.clone(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A page envelope of each system with records of wrong types and missing keys.
fn page(columns: Vec<String>) -> impl Strategy<Value = Value> {
    let records = proptest::collection::vec(value(columns.clone()), 0..6);
    let record = value(columns.clone());
    (records, record, value(columns), 0..6usize).prop_map(
        |(records, one, other, shape)| match shape {
            0 => json!({ "value": records, "@odata.nextLink": other }),
            1 => json!({ "success": true, "data": records, "additional_data": other }),
            2 => json!({ "items": records, "totalRecords": other }),
            3 => Value::Array(records),
            4 => json!({ "value": one }),
            _ => json!({ "data": { "rows": records }, "fields": other }),
        },
    )
}

/// Bodies that are not JSON at all, or barely: raw bytes, invalid UTF-8 inside strings,
/// nesting far past any parser's recursion limit, numbers longer than any type.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        (0usize..6, any::<u8>()).prop_map(|(n, b)| {
            let mut v = br#"{"value":[{"id":""#.to_vec();
            v.extend(std::iter::repeat_n(0xFF ^ b, n + 1));
            v.extend_from_slice(br#""}]}"#);
            v
        }),
        (1usize..20_000).prop_map(|d| {
            let mut v = b"{\"value\":".to_vec();
            v.extend(std::iter::repeat_n(b'[', d));
            v.extend(std::iter::repeat_n(b']', d));
            v.push(b'}');
            v
        }),
        (1usize..5_000).prop_map(|n| {
            let mut v = br#"{"value":[{"id":"#.to_vec();
            v.extend(std::iter::repeat_n(b'9', n));
            v.extend_from_slice(b"}]}");
            v
        }),
        Just(b"\xEF\xBB\xBF{\"value\":[]}".to_vec()),
        Just(b"{\"value\":[{}".to_vec()),
    ]
}

/// What a reader and the decoder make of `body` for `stream`: either the parser refuses it,
/// or every record range lies in the body and every record is kept or quarantined.
fn read_and_decode(stream: &Stream, body: &[u8]) {
    let Ok((body, rows)) = streams::decoder_input(stream, body) else {
        return;
    };
    for r in &rows {
        assert!(
            r.start <= r.end && r.end <= body.len(),
            "{}: record range {r:?} outside a {}-byte body",
            stream.id,
            body.len()
        );
    }
    let decoder = RowDecoder::new(stream, "fuzz", "run-fuzz").unwrap();
    let mut context = PageContext::new();
    for c in &stream.catalog.columns {
        if let Some(name) = c.context_name() {
            context.insert(
                name.to_string(),
                "00000000-0000-0000-0000-000000000001".into(),
            );
        }
    }
    let page = decoder
        .decode_page_with(&body, &rows, 0, &context)
        .unwrap_or_else(|e| panic!("{}: decoder failed on the whole page: {e}", stream.id));
    let kept = page.batch.as_ref().map_or(0, |b| b.num_rows());
    assert!(
        kept + page.quarantined.len() <= rows.len(),
        "{}: {kept} kept + {} quarantined from {} records",
        stream.id,
        page.quarantined.len(),
        rows.len()
    );
    for q in &page.quarantined {
        assert!(
            !q.reason.is_empty(),
            "{}: quarantined without a reason",
            stream.id
        );
    }
}

fn columns(stream: &Stream) -> Vec<String> {
    stream
        .catalog
        .columns
        .iter()
        .map(|c| c.name.clone())
        .collect()
}

/// A stream index and a structured page for it.
fn stream_and_page() -> impl Strategy<Value = (usize, Value)> {
    (0..STREAMS.len()).prop_flat_map(|i| (Just(i), page(columns(STREAMS[i]))))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn readers_and_decoder_survive_arbitrary_bytes(i in 0..STREAMS.len(), body in hostile_bytes()) {
        read_and_decode(STREAMS[i], &body);
        // The system parsers on their own, whatever the stream.
        let _ = odata::parse_envelope(&body);
        let _ = ml_connector::systems::deltek::page::parse_page(&body);
        let _ = streams::pipedrive::parse_page(&body);
        let _ = looker::parse_page(&body);
        let _ = looker::parse_json_bi(&body);
    }

    #[test]
    fn readers_and_decoder_survive_wrong_json((i, page) in stream_and_page()) {
        let body = serde_json::to_vec(&page).unwrap();
        read_and_decode(STREAMS[i], &body);
    }

    #[test]
    fn receivers_refuse_what_they_cannot_read(body in hostile_bytes(), v in value(Vec::new())) {
        for body in [body, serde_json::to_vec(&v).unwrap()] {
            if let Ok(p) = business_central::parse_notifications(&body) {
                prop_assert!(!p.client_states.is_empty());
            }
            let _ = pipedrive::parse(&body);
            if let Ok(ctx) = serde_json::from_slice::<dataverse::ExecutionContext>(&body) {
                let _ = dataverse::entities(&ctx);
            }
        }
    }

    #[test]
    fn receivers_survive_notices_of_the_right_shape(
        items in proptest::collection::vec(value(vec![
            "subscriptionId".into(), "clientState".into(), "resource".into(), "changeType".into(),
            "MessageName".into(), "PrimaryEntityName".into(), "PrimaryEntityId".into(),
            "OutputParameters".into(), "CreatedEntities".into(), "LogicalName".into(),
        ]), 0..5),
        resource in ".{0,60}",
        change in prop_oneof![Just("deleted".to_string()), Just("collection".to_string()), ".{0,10}"],
    ) {
        let mut notices: Vec<Value> = items.clone();
        notices.push(json!({"subscriptionId": "s", "clientState": "c", "resource": resource, "changeType": change}));
        let body = serde_json::to_vec(&json!({ "value": notices })).unwrap();
        // Any item that is not a notice refuses the whole body. (serde also reads a struct
        // from an array of its fields in order.)
        let all_notices = items.iter().all(|i| match i {
            Value::Object(_) => ["subscriptionId", "clientState", "resource", "changeType"]
                .iter()
                .all(|k| {
                    i.get(*k).is_some_and(Value::is_string)
                        || (*k == "subscriptionId" && i.get(*k).is_none())
                }),
            Value::Array(a) => a.len() == 4 && a.iter().all(Value::is_string),
            _ => false,
        });
        let parsed = business_central::parse_notifications(&body);
        prop_assert_eq!(parsed.is_ok(), all_notices, "{:?}", parsed);
        let _ = business_central::entity_set(&resource);
        for i in &items {
            let body = serde_json::to_vec(i).unwrap();
            let _ = pipedrive::parse(&body);
            if let Ok(ctx) = serde_json::from_slice::<dataverse::ExecutionContext>(&body) {
                let _ = dataverse::entities(&ctx);
            }
        }
    }
}

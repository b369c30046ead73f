//! The key hash that assigns a row to a bucket: FNV-1a 64 over the key's canonical bytes.
//!
//! **This function is part of the on-disk format and must never change** for hash name
//! [`HASH_NAME`]: a table's rows live in the bucket this hash chose when they were written, and
//! a merge only looks in that bucket. A different hash needs a new name (recorded in
//! `_table.json`) and a rewrite of the table.
//!
//! Definition (`fnv1a64-v1`):
//! - start from the FNV-1a 64 offset basis `0xcbf29ce484222325`; every byte is mixed as
//!   `h = (h ^ byte) * 0x100000001b3` (wrapping);
//! - key columns are mixed in primary-key order, with the byte `0x1F` between two columns;
//! - a null value is the single byte `0x00`; otherwise the value's canonical text in UTF-8:
//!   string as is; int64 in decimal (`-42`); float64 as Rust's shortest round-trip `Display`;
//!   bool `true`/`false`; decimal(p,s) as plain text with exactly `s` fraction digits
//!   (`1234.5000`); date `YYYY-MM-DD`; timestamp as microseconds since the Unix epoch in decimal;
//! - the bucket is `(h ^ (h >> 32)) % buckets` (folding the high half in, because FNV's low bits
//!   alone mix poorly and bucket counts are powers of two).

use std::fmt::Write as _;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float64Type, Int64Type, TimestampMicrosecondType,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;

use crate::error::{Error, Result};

/// Name and version of the hash, recorded in `_table.json`.
pub(super) const HASH_NAME: &str = "fnv1a64-v1";

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const COLUMN_SEPARATOR: u8 = 0x1F;
const NULL_MARKER: u8 = 0x00;

#[inline]
fn mix(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The bucket of a finished key hash.
#[inline]
pub(super) fn bucket_of(hash: u64, buckets: u32) -> u32 {
    ((hash ^ (hash >> 32)) % u64::from(buckets.max(1))) as u32
}

/// Hash of a key given as canonical text values (`None` = null); the reference form of
/// [`row_hashes`], used by tests to pin the format.
#[cfg(test)]
pub(super) fn hash_text_key(values: &[Option<&str>]) -> u64 {
    let mut h = FNV_OFFSET;
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            h = mix(h, &[COLUMN_SEPARATOR]);
        }
        h = match v {
            None => mix(h, &[NULL_MARKER]),
            Some(s) => mix(h, s.as_bytes()),
        };
    }
    h
}

/// Canonical text of a decimal: exactly `scale` fraction digits.
pub(super) fn decimal_text(out: &mut String, unscaled: i128, scale: i8) {
    if scale <= 0 {
        let _ = write!(out, "{unscaled}");
        for _ in 0..(-(scale as i32)) {
            out.push('0');
        }
        return;
    }
    let scale = scale as u32;
    let neg = unscaled < 0;
    let abs = unscaled.unsigned_abs();
    let pow = 10u128.pow(scale);
    let (int, frac) = (abs / pow, abs % pow);
    if neg {
        out.push('-');
    }
    let _ = write!(out, "{int}.{frac:0width$}", width = scale as usize);
}

/// Canonical text of a date (days since the epoch).
pub(super) fn date_text(out: &mut String, days: i32) {
    match chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|e| e.checked_add_signed(chrono::Duration::days(i64::from(days))))
    {
        Some(d) => {
            let _ = write!(out, "{}", d.format("%Y-%m-%d"));
        }
        None => {
            let _ = write!(out, "{days}");
        }
    }
}

/// The hash of every row's key. `key` are column indices into `batch`, whose key columns must
/// already have their storage types (Utf8 or Utf8View, Int64, Float64, Decimal128, Boolean, Date32,
/// Timestamp(µs)).
///
/// Fails on a key column of another type.
pub(super) fn row_hashes(batch: &RecordBatch, key: &[usize]) -> Result<Vec<u64>> {
    let n = batch.num_rows();
    let mut hashes = vec![FNV_OFFSET; n];
    let mut buf = String::new();
    for (k, &idx) in key.iter().enumerate() {
        let arr = batch.column(idx);
        if k > 0 {
            for h in hashes.iter_mut() {
                *h = mix(*h, &[COLUMN_SEPARATOR]);
            }
        }
        macro_rules! each {
            ($typed:expr, |$v:ident| $text:expr) => {{
                let typed = $typed;
                for (i, h) in hashes.iter_mut().enumerate() {
                    if typed.is_null(i) {
                        *h = mix(*h, &[NULL_MARKER]);
                    } else {
                        let $v = typed.value(i);
                        buf.clear();
                        $text;
                        *h = mix(*h, buf.as_bytes());
                    }
                }
            }};
        }
        match arr.data_type() {
            DataType::Utf8 => {
                let typed = arr.as_string::<i32>();
                for (i, h) in hashes.iter_mut().enumerate() {
                    *h = if typed.is_null(i) {
                        mix(*h, &[NULL_MARKER])
                    } else {
                        mix(*h, typed.value(i).as_bytes())
                    };
                }
            }
            DataType::Utf8View => {
                let typed = arr.as_string_view();
                for (i, h) in hashes.iter_mut().enumerate() {
                    *h = if typed.is_null(i) {
                        mix(*h, &[NULL_MARKER])
                    } else {
                        mix(*h, typed.value(i).as_bytes())
                    };
                }
            }
            DataType::Int64 => each!(arr.as_primitive::<Int64Type>(), |v| {
                let _ = write!(buf, "{v}");
            }),
            DataType::Float64 => each!(arr.as_primitive::<Float64Type>(), |v| {
                let _ = write!(buf, "{v}");
            }),
            DataType::Boolean => each!(arr.as_boolean(), |v| {
                buf.push_str(if v { "true" } else { "false" });
            }),
            DataType::Decimal128(_, scale) => {
                let scale = *scale;
                each!(arr.as_primitive::<Decimal128Type>(), |v| {
                    decimal_text(&mut buf, v, scale)
                })
            }
            DataType::Date32 => each!(arr.as_primitive::<Date32Type>(), |v| {
                date_text(&mut buf, v)
            }),
            DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, _) => {
                each!(arr.as_primitive::<TimestampMicrosecondType>(), |v| {
                    let _ = write!(buf, "{v}");
                })
            }
            other => {
                return Err(Error::warehouse(format!(
                    "primary key column `{}` has type {other}, which cannot be hashed",
                    batch.schema().field(idx).name()
                )));
            }
        }
    }
    debug_assert_eq!(hashes.len(), n);
    Ok(hashes)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Decimal128Array, Int64Array, StringArray};
    use arrow_schema::{Field, Schema};

    use super::*;

    /// Pins the on-disk hash: if this test fails, existing tables would be read wrongly.
    #[test]
    fn hash_is_stable() {
        assert_eq!(hash_text_key(&[]), 0xcbf2_9ce4_8422_2325);
        // FNV-1a 64 of "a" is the published test vector.
        assert_eq!(hash_text_key(&[Some("a")]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash_text_key(&[Some("foobar")]), 0x8594_4171_f739_67e8);
        // Separator and null marker are part of the format.
        assert_ne!(
            hash_text_key(&[Some("a"), Some("b")]),
            hash_text_key(&[Some("ab")])
        );
        assert_ne!(hash_text_key(&[None]), hash_text_key(&[Some("")]));
        assert_eq!(bucket_of(hash_text_key(&[Some("a")]), 1), 0);
        assert_eq!(
            bucket_of(0xaf63_dc4c_8601_ec8c, 1024),
            ((0xaf63_dc4c_8601_ec8cu64 ^ 0xaf63_dc4c) % 1024) as u32
        );
    }

    #[test]
    fn array_hash_matches_text_definition() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new("d", DataType::Decimal128(19, 4), true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("x"), None])),
                Arc::new(Int64Array::from(vec![Some(-42), Some(7)])),
                Arc::new(
                    Decimal128Array::from(vec![Some(12_345_678), Some(-5)])
                        .with_precision_and_scale(19, 4)
                        .unwrap(),
                ),
            ],
        )
        .unwrap();
        let h = row_hashes(&batch, &[0, 1, 2]).unwrap();
        assert_eq!(
            h[0],
            hash_text_key(&[Some("x"), Some("-42"), Some("1234.5678")])
        );
        assert_eq!(h[1], hash_text_key(&[None, Some("7"), Some("-0.0005")]));
    }
}

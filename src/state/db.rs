//! The one SQL surface the state store is written against, over its two backends: SQLite (the
//! zero-setup default, one machine) and Postgres (shared by many workers, `[state] url`).
//!
//! Every query of the store is written once, in the SQL both engines take: `?N` parameters
//! (rewritten to `$N` for Postgres), `INSERT … ON CONFLICT`, `CASE` instead of SQLite's
//! two-argument `MAX`, `IS NOT DISTINCT FROM` for null-safe equality. Values travel as [`Value`]s: integers are 64-bit everywhere (the
//! Postgres schema uses `BIGINT` where SQLite says `INTEGER`), booleans are 0/1.
//!
//! A transaction ([`Db::transaction`]) is one writer at a time on either backend: SQLite's
//! `BEGIN IMMEDIATE`, and on Postgres a transaction-scoped advisory lock taken first. The
//! state's transactions are small (a checkpoint, a lease, a job's end), so serialising them
//! costs little, and every read-then-write in them (a lease take, a fire-time claim, a number
//! allocation) keeps the meaning it has on SQLite without per-query locking.

use crate::error::{Error, Result};

/// A value bound to a parameter or read from a column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Int(_) => "an integer",
            Value::Real(_) => "a real",
            Value::Text(_) => "text",
            Value::Blob(_) => "a blob",
        }
    }
}

/// What can be bound to a parameter.
pub(crate) trait ToValue {
    fn to_value(&self) -> Value;
}

/// What a column can be read as.
pub(crate) trait FromValue: Sized {
    /// `None`: the value is not of this type (the caller says which column).
    fn from_value(v: &Value) -> Option<Self>;
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl FromValue for String {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}

impl FromValue for bool {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i != 0),
            _ => None,
        }
    }
}

impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

/// Integers: stored as i64; reading one that does not fit the Rust type is an error, not a
/// wrap.
macro_rules! integer {
    ($($t:ty),+) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
            }
        }
        impl FromValue for $t {
            fn from_value(v: &Value) -> Option<Self> {
                match v {
                    Value::Int(i) => <$t>::try_from(*i).ok(),
                    _ => None,
                }
            }
        }
    )+};
}
integer!(i64, u32, u16, u64, usize);

/// Parameters of a statement: `params![a, b.c, d as i64]`.
macro_rules! params {
    () => {
        &[] as &[&dyn $crate::state::db::ToValue]
    };
    ($($p:expr),+ $(,)?) => {
        &[$(&$p as &dyn $crate::state::db::ToValue),+] as &[&dyn $crate::state::db::ToValue]
    };
}
pub(crate) use params;

/// One row of a result, owned (the state's results are small).
#[derive(Debug, Clone)]
pub(crate) struct Row(pub(super) Vec<Value>);

impl Row {
    /// Column `i` as `T`; a state error naming the column when it is not one.
    pub(crate) fn get<T: FromValue>(&self, i: usize) -> Result<T> {
        let v = self
            .0
            .get(i)
            .ok_or_else(|| Error::state(format!("no column {i} in a result")))?;
        T::from_value(v).ok_or_else(|| {
            Error::state(format!(
                "column {i} holds {} where {} was expected",
                v.kind(),
                std::any::type_name::<T>()
            ))
        })
    }

    /// A count, never negative.
    pub(crate) fn count(&self, i: usize) -> Result<u64> {
        Ok(self.get::<i64>(i)?.max(0) as u64)
    }
}

/// A state backend: a connection that runs the store's SQL, and the few things each engine
/// does its own way. The store itself is written once, against [`Db`].
pub(crate) trait Backend: Send {
    /// Runs one statement; the number of rows it changed.
    fn execute(&mut self, sql: &str, params: Vec<Value>) -> Result<u64>;
    /// Runs one query; its rows.
    fn query(&mut self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>>;
    /// Runs several statements without parameters.
    fn batch(&mut self, sql: &str) -> Result<()>;
    /// What opens a write transaction (one writer at a time: see the module's doc).
    fn begin_write(&self) -> &'static str;
    /// Creates the schema's first version from the tables' DDL (written for SQLite).
    fn create_base_schema(&mut self, ddl: &[&str]) -> Result<()>;
    /// What orders a table's rows as they were inserted (`sink_jobs` lists jobs in the order
    /// they were planned).
    fn insertion_order(&self) -> &'static str;
    /// After rows were copied in with their own keys (`mlc state migrate`): the next
    /// generated key continues after them.
    fn after_copy(&mut self) -> Result<()>;
}

/// A connection to the state's database, and the calls the store's queries are written with.
pub(crate) struct Db(Box<dyn Backend>);

impl Db {
    pub(crate) fn new(backend: impl Backend + 'static) -> Self {
        Self(Box::new(backend))
    }

    /// The backend, for what each engine does its own way.
    pub(crate) fn backend(&mut self) -> &mut dyn Backend {
        self.0.as_mut()
    }

    /// Runs one statement; the number of rows it changed.
    pub(crate) fn execute(&mut self, sql: &str, params: &[&dyn ToValue]) -> Result<u64> {
        self.0.execute(sql, values(params))
    }

    /// Runs one query; its rows.
    pub(crate) fn query(&mut self, sql: &str, params: &[&dyn ToValue]) -> Result<Vec<Row>> {
        self.0.query(sql, values(params))
    }

    /// The rows of a query, each read by `f`.
    pub(crate) fn query_map<T>(
        &mut self,
        sql: &str,
        params: &[&dyn ToValue],
        f: impl FnMut(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.query(sql, params)?.iter().map(f).collect()
    }

    /// The first row of a query read by `f`, if it has one.
    pub(crate) fn query_opt<T>(
        &mut self,
        sql: &str,
        params: &[&dyn ToValue],
        f: impl FnOnce(&Row) -> Result<T>,
    ) -> Result<Option<T>> {
        self.query(sql, params)?.first().map(f).transpose()
    }

    /// The first row of a query that always has one (an aggregate, `EXISTS`).
    pub(crate) fn query_one<T>(
        &mut self,
        sql: &str,
        params: &[&dyn ToValue],
        f: impl FnOnce(&Row) -> Result<T>,
    ) -> Result<T> {
        self.query_opt(sql, params, f)?
            .ok_or_else(|| Error::state(format!("no row from `{}`", first_words(sql))))
    }

    /// Runs several statements without parameters (a schema).
    pub(crate) fn batch(&mut self, sql: &str) -> Result<()> {
        self.0.batch(sql)
    }

    /// Runs `f` in one transaction, the only writer while it runs (see the module's doc):
    /// committed when `f` succeeds, rolled back when it fails.
    pub(crate) fn transaction<T>(&mut self, f: impl FnOnce(&mut Db) -> Result<T>) -> Result<T> {
        let begin = self.0.begin_write();
        if let Err(e) = self.batch(begin) {
            // A begin that opened the transaction and then failed (Postgres's lock) must not
            // leave the connection inside it.
            let _ = self.batch("ROLLBACK");
            return Err(e);
        }
        match f(self) {
            Ok(out) => match self.batch("COMMIT") {
                Ok(()) => Ok(out),
                Err(e) => {
                    let _ = self.batch("ROLLBACK");
                    Err(e)
                }
            },
            Err(e) => {
                // The error that stopped the work is the one to report; a failed rollback
                // leaves nothing committed either.
                let _ = self.batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

fn values(params: &[&dyn ToValue]) -> Vec<Value> {
    params.iter().map(|p| p.to_value()).collect()
}

/// The start of a statement, for an error message.
pub(super) fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(6).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_wrong_types_name_the_column() {
        let row = Row(vec![
            Value::Int(7),
            Value::Null,
            Value::Text("x".into()),
            Value::Int(-3),
        ]);
        assert_eq!(row.get::<u32>(0).unwrap(), 7);
        assert_eq!(row.get::<Option<String>>(1).unwrap(), None);
        assert_eq!(row.get::<String>(2).unwrap(), "x");
        assert_eq!(row.count(3).unwrap(), 0);
        let err = row.get::<i64>(2).unwrap_err().to_string();
        assert!(err.contains("column 2 holds text"), "{err}");
        assert!(row.get::<u32>(3).is_err(), "a negative is not a u32");
        assert_eq!(true.to_value(), Value::Int(1));
        assert_eq!(None::<i64>.to_value(), Value::Null);
        assert_eq!(u64::MAX.to_value(), Value::Int(i64::MAX));
    }
}

//! One SQL connection interface over both backends: the store's SQL is written once against
//! [`Db`], and runs on an embedded SQLite connection (rusqlite) or a PostgreSQL connection
//! (the `postgres` client).
//!
//! What this layer smooths over, so that most statements need no per-backend text:
//! * placeholders: statements are written with SQLite's `?1`/`?`; on PostgreSQL they are
//!   rewritten to `$1` (outside string literals and quoted identifiers), once per connection
//!   and statement, and the prepared statement is cached per connection;
//! * types: values cross as [`ValueRef`] (null, integer, real, text, blob). PostgreSQL is
//!   strictly typed, so a bound value is converted to whatever type the server inferred for its
//!   placeholder (an integer bound where it inferred `int4`, `bool`, `text`...), and a column is
//!   read from any of the integer, boolean, float, numeric, text, json and bytea types;
//! * errors: a unique key taken is `Conflict`, a foreign key failing `NotFound`, on both.
//!
//! What it does not smooth over: SQL that only one dialect has (`json_each`, `COLLATE
//! NOCASE`, `rowid`, `char()`...). Such a statement picks its text with [`Db::dialect`].

use super::{Error, Result};
use postgres::types::{IsNull, Type};
use std::cell::RefCell;
use std::collections::HashMap;

/// Which SQL dialect a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A borrowed SQL value: what statements bind and rows give back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// A Rust value that can be bound to a placeholder.
pub trait ToValue {
    fn to_value(&self) -> ValueRef<'_>;
}

/// A Rust value that can be read from a column.
pub trait FromValue: Sized {
    fn from_value(v: ValueRef<'_>) -> std::result::Result<Self, String>;
}

macro_rules! int_values {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> ValueRef<'_> {
                ValueRef::Int(*self as i64)
            }
        }
        impl FromValue for $t {
            fn from_value(v: ValueRef<'_>) -> std::result::Result<Self, String> {
                match v {
                    ValueRef::Int(i) => <$t>::try_from(i)
                        .map_err(|_| format!("{i} does not fit in {}", stringify!($t))),
                    ValueRef::Real(f) if f.fract() == 0.0 => Ok(f as $t),
                    other => Err(format!("expected an integer, found {other:?}")),
                }
            }
        }
    )*};
}
int_values!(i64, i32, i16, u8, u16, u32, u64, usize);

impl ToValue for bool {
    fn to_value(&self) -> ValueRef<'_> {
        ValueRef::Int(*self as i64)
    }
}
impl FromValue for bool {
    fn from_value(v: ValueRef<'_>) -> std::result::Result<Self, String> {
        match v {
            ValueRef::Int(i) => Ok(i != 0),
            other => Err(format!("expected a boolean, found {other:?}")),
        }
    }
}
impl ToValue for f64 {
    fn to_value(&self) -> ValueRef<'_> {
        ValueRef::Real(*self)
    }
}
impl FromValue for f64 {
    fn from_value(v: ValueRef<'_>) -> std::result::Result<Self, String> {
        match v {
            ValueRef::Real(f) => Ok(f),
            ValueRef::Int(i) => Ok(i as f64),
            other => Err(format!("expected a number, found {other:?}")),
        }
    }
}
impl ToValue for str {
    fn to_value(&self) -> ValueRef<'_> {
        ValueRef::Text(self)
    }
}
impl ToValue for String {
    fn to_value(&self) -> ValueRef<'_> {
        ValueRef::Text(self)
    }
}
impl FromValue for String {
    fn from_value(v: ValueRef<'_>) -> std::result::Result<Self, String> {
        match v {
            ValueRef::Text(s) => Ok(s.to_string()),
            ValueRef::Blob(b) => String::from_utf8(b.to_vec()).map_err(|e| e.to_string()),
            ValueRef::Int(i) => Ok(i.to_string()),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}
impl ToValue for [u8] {
    fn to_value(&self) -> ValueRef<'_> {
        ValueRef::Blob(self)
    }
}
impl ToValue for Vec<u8> {
    fn to_value(&self) -> ValueRef<'_> {
        ValueRef::Blob(self)
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: ValueRef<'_>) -> std::result::Result<Self, String> {
        match v {
            ValueRef::Blob(b) => Ok(b.to_vec()),
            ValueRef::Text(s) => Ok(s.as_bytes().to_vec()),
            other => Err(format!("expected a blob, found {other:?}")),
        }
    }
}
impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> ValueRef<'_> {
        (**self).to_value()
    }
}
impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> ValueRef<'_> {
        match self {
            Some(v) => v.to_value(),
            None => ValueRef::Null,
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: ValueRef<'_>) -> std::result::Result<Self, String> {
        match v {
            ValueRef::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}
impl ToValue for ValueRef<'_> {
    fn to_value(&self) -> ValueRef<'_> {
        *self
    }
}

/// An owned SQL value (what `store copy` moves between backends).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}
impl ToValue for Value {
    fn to_value(&self) -> ValueRef<'_> {
        match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Int(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s),
            Value::Blob(b) => ValueRef::Blob(b),
        }
    }
}
impl FromValue for Value {
    fn from_value(v: ValueRef<'_>) -> std::result::Result<Self, String> {
        Ok(match v {
            ValueRef::Null => Value::Null,
            ValueRef::Int(i) => Value::Int(i),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(s) => Value::Text(s.to_string()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        })
    }
}

/// What a statement binds: `params![a, b]`, an array of one type (`[org, id]`), or `[]`.
pub trait Params {
    fn values(&self) -> Vec<ValueRef<'_>>;
}
/// No parameters: `()`.
impl Params for () {
    fn values(&self) -> Vec<ValueRef<'_>> {
        Vec::new()
    }
}
impl Params for &[&dyn ToValue] {
    fn values(&self) -> Vec<ValueRef<'_>> {
        self.iter().map(|v| v.to_value()).collect()
    }
}
impl<T: ToValue, const N: usize> Params for [T; N] {
    fn values(&self) -> Vec<ValueRef<'_>> {
        self.iter().map(|v| v.to_value()).collect()
    }
}
impl<T: ToValue, const N: usize> Params for &[T; N] {
    fn values(&self) -> Vec<ValueRef<'_>> {
        self.iter().map(|v| v.to_value()).collect()
    }
}
impl<T: ToValue> Params for Vec<T> {
    fn values(&self) -> Vec<ValueRef<'_>> {
        self.iter().map(|v| v.to_value()).collect()
    }
}
impl<T: ToValue> Params for &Vec<T> {
    fn values(&self) -> Vec<ValueRef<'_>> {
        self.iter().map(|v| v.to_value()).collect()
    }
}

/// `params![a, b, c]`: values of different types for one statement.
#[macro_export]
macro_rules! sql_params {
    () => { &[] as &[&dyn $crate::store::db::ToValue] };
    ($($v:expr),+ $(,)?) => { &[$(&$v as &dyn $crate::store::db::ToValue),+] as &[&dyn $crate::store::db::ToValue] };
}
pub use crate::sql_params as params;

/// One row of a result.
pub enum Row<'r> {
    Lite(&'r rusqlite::Row<'r>),
    Pg(&'r postgres::Row),
}

impl Row<'_> {
    /// Column `i` (0-based) as `T`.
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T> {
        let conv = |r: std::result::Result<T, String>| {
            r.map_err(|e| Error::Other(format!("column {i}: {e}")))
        };
        match self {
            Row::Lite(r) => {
                let v = r.get_ref(i)?;
                conv(T::from_value(lite_ref(v)?))
            }
            Row::Pg(r) => {
                let v: ValueRef<'_> = r
                    .try_get(i)
                    .map_err(|e| Error::Other(format!("column {i}: {e}")))?;
                conv(T::from_value(v))
            }
        }
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        match self {
            Row::Lite(r) => r.as_ref().column_count(),
            Row::Pg(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn lite_ref(v: rusqlite::types::ValueRef<'_>) -> Result<ValueRef<'_>> {
    use rusqlite::types::ValueRef as L;
    Ok(match v {
        L::Null => ValueRef::Null,
        L::Integer(i) => ValueRef::Int(i),
        L::Real(f) => ValueRef::Real(f),
        L::Text(t) => ValueRef::Text(
            std::str::from_utf8(t).map_err(|e| Error::Other(format!("stored text: {e}")))?,
        ),
        L::Blob(b) => ValueRef::Blob(b),
    })
}

impl rusqlite::ToSql for ValueRef<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef as L};
        Ok(ToSqlOutput::Borrowed(match *self {
            ValueRef::Null => L::Null,
            ValueRef::Int(i) => L::Integer(i),
            ValueRef::Real(f) => L::Real(f),
            ValueRef::Text(s) => L::Text(s.as_bytes()),
            ValueRef::Blob(b) => L::Blob(b),
        }))
    }
}

impl postgres::types::ToSql for ValueRef<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use bytes::BufMut;
        let bad = || -> Box<dyn std::error::Error + Sync + Send> {
            format!("cannot bind {self:?} as {ty}").into()
        };
        match *self {
            ValueRef::Null => return Ok(IsNull::Yes),
            ValueRef::Int(i) => match *ty {
                Type::INT8 => out.put_i64(i),
                Type::INT4 => out.put_i32(i32::try_from(i).map_err(|_| bad())?),
                Type::INT2 => out.put_i16(i16::try_from(i).map_err(|_| bad())?),
                Type::BOOL => out.put_u8((i != 0) as u8),
                Type::FLOAT8 => out.put_f64(i as f64),
                Type::FLOAT4 => out.put_f32(i as f32),
                Type::NUMERIC => put_numeric(i, out),
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    out.put_slice(i.to_string().as_bytes())
                }
                _ => return Err(bad()),
            },
            ValueRef::Real(f) => match *ty {
                Type::FLOAT8 => out.put_f64(f),
                Type::FLOAT4 => out.put_f32(f as f32),
                Type::INT8 if f.fract() == 0.0 => out.put_i64(f as i64),
                Type::TEXT | Type::VARCHAR | Type::UNKNOWN => {
                    out.put_slice(f.to_string().as_bytes())
                }
                _ => return Err(bad()),
            },
            ValueRef::Text(s) => match *ty {
                Type::JSONB => {
                    out.put_u8(1);
                    out.put_slice(s.as_bytes())
                }
                Type::INT8 => out.put_i64(s.parse().map_err(|_| bad())?),
                Type::INT4 => out.put_i32(s.parse().map_err(|_| bad())?),
                Type::BOOL => out.put_u8(matches!(s, "1" | "true" | "t") as u8),
                Type::FLOAT8 => out.put_f64(s.parse().map_err(|_| bad())?),
                // Text, json, bytea and unknown all take the bytes as they are.
                _ => out.put_slice(s.as_bytes()),
            },
            ValueRef::Blob(b) => match *ty {
                Type::JSONB => {
                    out.put_u8(1);
                    out.put_slice(b)
                }
                _ => out.put_slice(b),
            },
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// An integer as PostgreSQL's binary `numeric` (base-10000 digits, most significant first).
fn put_numeric(i: i64, out: &mut bytes::BytesMut) {
    use bytes::BufMut;
    let neg = i < 0;
    let mut n = i.unsigned_abs();
    let mut digits = Vec::new();
    while n > 0 {
        digits.push((n % 10_000) as i16);
        n /= 10_000;
    }
    digits.reverse();
    // The weight is the first group's power of 10,000; trailing zero groups are implied by it.
    let weight = digits.len().saturating_sub(1) as i16;
    while digits.last() == Some(&0) {
        digits.pop();
    }
    out.put_i16(digits.len() as i16);
    out.put_i16(weight);
    out.put_u16(if neg { 0x4000 } else { 0 });
    out.put_i16(0);
    for d in digits {
        out.put_i16(d);
    }
}

/// A binary `numeric` as an integer when it is whole and fits, otherwise a float.
fn numeric_value(raw: &[u8]) -> std::result::Result<ValueRef<'static>, String> {
    let rd = |o: usize| -> std::result::Result<i16, String> {
        raw.get(o..o + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "short numeric".to_string())
    };
    let ndigits = rd(0)? as usize;
    let weight = rd(2)? as i32;
    let sign = rd(4)? as u16;
    if sign == 0xC000 {
        return Ok(ValueRef::Real(f64::NAN));
    }
    let mut whole: i128 = 0;
    let mut frac = 0f64;
    for k in 0..ndigits {
        let d = rd(8 + 2 * k)? as i128;
        let pos = weight - k as i32;
        if pos >= 0 {
            whole = whole.saturating_mul(10_000).saturating_add(d);
        } else {
            frac += d as f64 * 10_000f64.powi(pos);
        }
    }
    // Groups between the last digit and the decimal point are zeros.
    let last = weight - ndigits as i32 + 1;
    if ndigits > 0 && last > 0 {
        for _ in 0..last {
            whole = whole.saturating_mul(10_000);
        }
    }
    let neg = sign == 0x4000;
    if frac == 0.0
        && let Ok(v) = i64::try_from(if neg { -whole } else { whole })
    {
        return Ok(ValueRef::Int(v));
    }
    let f = whole as f64 + frac;
    Ok(ValueRef::Real(if neg { -f } else { f }))
}

impl<'a> postgres::types::FromSql<'a> for ValueRef<'a> {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let int = |n: usize| -> std::result::Result<i64, Box<dyn std::error::Error + Sync + Send>> {
            if raw.len() != n {
                return Err(format!("bad {ty} value").into());
            }
            let mut b = [0u8; 8];
            b[8 - n..].copy_from_slice(raw);
            // Sign-extend.
            let shift = 64 - 8 * n as u32;
            Ok((i64::from_be_bytes(b) << shift) >> shift)
        };
        Ok(match *ty {
            Type::BOOL => ValueRef::Int((raw.first() == Some(&1)) as i64),
            Type::INT2 => ValueRef::Int(int(2)?),
            Type::INT4 | Type::OID => ValueRef::Int(int(4)?),
            Type::INT8 => ValueRef::Int(int(8)?),
            Type::FLOAT4 => {
                ValueRef::Real(f32::from_be_bytes(raw.try_into().map_err(|_| "bad float4")?) as f64)
            }
            Type::FLOAT8 => ValueRef::Real(f64::from_be_bytes(
                raw.try_into().map_err(|_| "bad float8")?,
            )),
            Type::NUMERIC => numeric_value(raw)?,
            Type::BYTEA => ValueRef::Blob(raw),
            Type::JSONB => ValueRef::Text(std::str::from_utf8(raw.get(1..).unwrap_or_default())?),
            _ => ValueRef::Text(std::str::from_utf8(raw)?),
        })
    }

    fn from_sql_null(
        _: &Type,
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(ValueRef::Null)
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Rewrites SQLite placeholders (`?N`, `?`) to PostgreSQL's (`$N`), leaving string literals,
/// quoted identifiers and comments alone. A bare `?` takes the number after the largest one
/// so far, as SQLite numbers it.
pub fn pg_placeholders(sql: &str) -> String {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 8);
    let mut i = 0;
    let mut max = 0u32;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                let start = i;
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
                i = (i + 1).min(b.len());
                out.push_str(&sql[start..i]);
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                let start = i;
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                out.push_str(&sql[start..i]);
            }
            b'?' => {
                i += 1;
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                let n = if i > start {
                    sql[start..i].parse().unwrap_or(0)
                } else {
                    max + 1
                };
                max = max.max(n);
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => {
                // Copy up to the next interesting byte in one piece (keeps UTF-8 intact).
                let start = i;
                while i < b.len() && !matches!(b[i], b'\'' | b'"' | b'-' | b'?') {
                    i += 1;
                }
                if i == start {
                    i += 1;
                }
                out.push_str(&sql[start..i]);
            }
        }
    }
    out
}

/// Exchanges with a PostgreSQL server (each prepare, query, execute and batch is one round
/// trip with this client), for `botyard bench --database`.
static PG_ROUND_TRIPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Round trips to PostgreSQL made by this process so far.
pub fn pg_round_trips() -> u64 {
    PG_ROUND_TRIPS.load(std::sync::atomic::Ordering::Relaxed)
}

fn round_trip() {
    PG_ROUND_TRIPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Most prepared statements one PostgreSQL connection keeps (dynamic SQL could grow it).
const PG_STATEMENT_CACHE: usize = 512;

/// A PostgreSQL connection with its prepared statements.
pub struct PgConn {
    client: RefCell<postgres::Client>,
    stmts: RefCell<HashMap<String, postgres::Statement>>,
}

impl PgConn {
    pub fn new(client: postgres::Client) -> PgConn {
        PgConn {
            client: RefCell::new(client),
            stmts: RefCell::new(HashMap::new()),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.client.borrow().is_closed()
    }

    pub fn batch(&self, sql: &str) -> Result<()> {
        round_trip();
        self.client.borrow_mut().batch_execute(sql)?;
        Ok(())
    }

    /// The raw client (migrations, LISTEN).
    pub fn client(&self) -> std::cell::RefMut<'_, postgres::Client> {
        self.client.borrow_mut()
    }

    fn statement(&self, sql: &str) -> Result<postgres::Statement> {
        if let Some(s) = self.stmts.borrow().get(sql) {
            return Ok(s.clone());
        }
        round_trip();
        let st = self.client.borrow_mut().prepare(&pg_placeholders(sql))?;
        let mut cache = self.stmts.borrow_mut();
        if cache.len() >= PG_STATEMENT_CACHE {
            cache.clear();
        }
        cache.insert(sql.to_string(), st.clone());
        Ok(st)
    }

    fn query(&self, st: &postgres::Statement, vals: &[ValueRef<'_>]) -> Result<Vec<postgres::Row>> {
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = vals
            .iter()
            .map(|v| v as &(dyn postgres::types::ToSql + Sync))
            .collect();
        round_trip();
        Ok(self.client.borrow_mut().query(st, &refs)?)
    }

    fn execute(&self, st: &postgres::Statement, vals: &[ValueRef<'_>]) -> Result<usize> {
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = vals
            .iter()
            .map(|v| v as &(dyn postgres::types::ToSql + Sync))
            .collect();
        round_trip();
        Ok(self.client.borrow_mut().execute(st, &refs)? as usize)
    }
}

/// A connection of either backend, as store functions see it.
#[derive(Clone, Copy)]
pub enum Db<'c> {
    Lite(&'c rusqlite::Connection),
    Pg(&'c PgConn),
}

impl<'c> Db<'c> {
    pub fn dialect(&self) -> Dialect {
        match self {
            Db::Lite(_) => Dialect::Sqlite,
            Db::Pg(_) => Dialect::Postgres,
        }
    }

    pub fn is_pg(&self) -> bool {
        matches!(self, Db::Pg(_))
    }

    /// `lite` on SQLite, `pg` on PostgreSQL: for the few statements the dialects spell
    /// differently.
    pub fn pick<'s>(&self, lite: &'s str, pg: &'s str) -> &'s str {
        match self {
            Db::Lite(_) => lite,
            Db::Pg(_) => pg,
        }
    }

    /// A statement, prepared once per connection.
    pub fn prepare_cached(&self, sql: &str) -> Result<Stmt<'c>> {
        Ok(match *self {
            Db::Lite(c) => Stmt::Lite(c.prepare_cached(sql)?),
            Db::Pg(c) => Stmt::Pg(c, c.statement(sql)?),
        })
    }

    /// Run a statement that returns no rows; the number of rows it changed.
    pub fn execute(&self, sql: &str, p: impl Params) -> Result<usize> {
        self.prepare_cached(sql)?.execute(p)
    }

    /// The first row, or `Error::NoRows`.
    pub fn query_row<T>(
        &self,
        sql: &str,
        p: impl Params,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        self.prepare_cached(sql)?.query_row(p, f)
    }

    /// Every row, mapped.
    pub fn query_map<T>(
        &self,
        sql: &str,
        p: impl Params,
        f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.prepare_cached(sql)?.query_map(p, f)
    }

    /// Several statements without parameters (DDL, transaction control).
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match self {
            Db::Lite(c) => Ok(c.execute_batch(sql)?),
            Db::Pg(c) => c.batch(sql),
        }
    }
}

/// A prepared statement of either backend.
pub enum Stmt<'c> {
    Lite(rusqlite::CachedStatement<'c>),
    Pg(&'c PgConn, postgres::Statement),
}

impl Stmt<'_> {
    pub fn execute(&mut self, p: impl Params) -> Result<usize> {
        let vals = p.values();
        match self {
            Stmt::Lite(s) => Ok(s.execute(rusqlite::params_from_iter(vals.iter()))?),
            Stmt::Pg(c, s) => c.execute(s, &vals),
        }
    }

    pub fn query_map<T>(
        &mut self,
        p: impl Params,
        mut f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let vals = p.values();
        match self {
            Stmt::Lite(s) => {
                let mut rows = s.query(rusqlite::params_from_iter(vals.iter()))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    out.push(f(&Row::Lite(r))?);
                }
                Ok(out)
            }
            Stmt::Pg(c, s) => c.query(s, &vals)?.iter().map(|r| f(&Row::Pg(r))).collect(),
        }
    }

    pub fn query_row<T>(
        &mut self,
        p: impl Params,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        let vals = p.values();
        match self {
            Stmt::Lite(s) => {
                let mut rows = s.query(rusqlite::params_from_iter(vals.iter()))?;
                match rows.next()? {
                    Some(r) => f(&Row::Lite(r)),
                    None => Err(Error::NoRows),
                }
            }
            Stmt::Pg(c, s) => match c.query(s, &vals)?.first() {
                Some(r) => f(&Row::Pg(r)),
                None => Err(Error::NoRows),
            },
        }
    }

    /// Whether the statement returns at least one row.
    pub fn exists(&mut self, p: impl Params) -> Result<bool> {
        self.query_row(p, |_| Ok(()))
            .optional()
            .map(|o| o.is_some())
    }
}

/// `.optional()`: a query that found no row is `Ok(None)`.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(Error::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// PostgreSQL errors in the store's terms: a unique key taken is a conflict, a foreign key
/// failing is a row gone (see the SQLite mapping in `store`), a serialization failure or
/// deadlock is `Busy` (the caller may retry).
impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            let code = db.code().code();
            match code {
                "23505" => return Error::Conflict(db.message().to_string()),
                "23503" => {
                    return Error::NotFound(
                        "something this refers to no longer exists (deleted meanwhile)".into(),
                    );
                }
                _ => {}
            }
        }
        // `postgres::Error`'s own text is only "db error": keep the server's message.
        match e.as_db_error() {
            Some(db) => Error::Postgres(format!(
                "{} ({}){}",
                db.message(),
                db.code().code(),
                db.detail().map(|d| format!(": {d}")).unwrap_or_default()
            )),
            None => Error::Postgres(match std::error::Error::source(&e) {
                Some(src) => format!("{e}: {src}"),
                None => e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten_outside_literals() {
        assert_eq!(
            pg_placeholders(
                "SELECT a FROM t WHERE a = ?1 AND b = '?2' AND c = ? -- ?\n AND d = ?3"
            ),
            "SELECT a FROM t WHERE a = $1 AND b = '?2' AND c = $2 -- ?\n AND d = $3"
        );
        assert_eq!(pg_placeholders("x = ?, y = ?"), "x = $1, y = $2");
        assert_eq!(pg_placeholders("\"q?\" = ?5 AND ?"), "\"q?\" = $5 AND $6");
        assert_eq!(pg_placeholders("a - b"), "a - b");
        assert_eq!(pg_placeholders("'ы' = ?1"), "'ы' = $1");
    }

    #[test]
    fn numeric_round_trips() {
        for i in [
            0i64,
            1,
            -1,
            9999,
            10_000,
            123_456_789,
            -10_000_000,
            i64::MAX,
            i64::MIN + 1,
        ] {
            let mut b = bytes::BytesMut::new();
            put_numeric(i, &mut b);
            assert_eq!(numeric_value(&b).unwrap(), ValueRef::Int(i), "{i}");
        }
    }
}

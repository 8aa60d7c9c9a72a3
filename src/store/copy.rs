//! `botyard store copy`: every row of one store copied into another, either backend to
//! either backend, verified, all-or-nothing. SQL only; the command (`cli::store_cmd`) opens
//! both stores (and so migrates both to this binary's schema) and hands over the key files.
//!
//! How:
//! * **One destination write job** ([`Store::write`], one transaction on both backends). The
//!   source is read inside it, through the source store's own read connection, in one read
//!   transaction (a snapshot: SQLite `BEGIN`, PostgreSQL `REPEATABLE READ READ ONLY`). Any
//!   error rolls the destination back: nothing is half-copied.
//! * **Refusals** (checked inside the job, so in the same snapshot and transaction): a source
//!   or destination with a `nodes` heartbeat younger than [`crate::cluster::STALE_MS`] (it is
//!   being served: a copy of a store that changes meanwhile would be a torn copy, and a served
//!   destination could write between our checks), and a destination holding any row in any
//!   copied table except the migrations' seed rows in [`SEEDED`].
//! * **Tables**: every table of both schemas except [`SKIPPED`] (the migration ledger; the
//!   PostgreSQL key fingerprint, which the destination records itself when opened; the
//!   heartbeats). Both sides must list the same tables with the same columns in the same order
//!   (the PostgreSQL schema keeps SQLite's names and order), else the copy stops naming the
//!   difference. Inserted in foreign-key order (parents first, ties by name), the
//!   trigger-maintained [`DERIVED`] (`ocs_file_usage`) last; before a table's rows go in, the
//!   destination's rows of that table are deleted (the seeded `meta` row, the usage rows the
//!   `ocs_files` trigger just wrote), so the copy is exactly the source's rows.
//! * **Rowid <-> seq**: the store reads SQLite's implicit rowid of [`ROWID_AS_SEQ`] (delivery
//!   order); on PostgreSQL those tables end with an identity column `seq` standing in for it.
//!   The copy reads and writes `rowid` on SQLite as the column `seq`, so order survives both
//!   ways. Explicit ids into PostgreSQL identity columns do not move their sequences: the copy
//!   moves each past the largest id (`setval`). SQLite's AUTOINCREMENT follows explicit ids.
//! * **Verification** before the commit: per table, the row count and an order-independent
//!   checksum, the wrapping sum of one 64-bit hash per row (the first 8 bytes of SHA-256 over
//!   the row's values, each a tag and its bytes: null, integer (8 bytes), real (IEEE bits),
//!   text or blob (length and bytes, one tag for both: PostgreSQL's `bytea` and SQLite's BLOB
//!   hold the same bytes whichever way SQLite typed them)). The source's figures come from the
//!   rows as read (and the count is checked against `COUNT(*)`, so a row the keyset paging
//!   missed is caught), the destination's from reading every table back inside the transaction
//!   after all tables are in. Any difference fails the job, naming the table.
//! * **Bounded memory**: tables are read in keyset pages on the primary key, at most
//!   [`MAX_PAGE_ROWS`] rows, fewer when rows are big: the next page's size is
//!   [`PAGE_BYTES`] divided by the largest row seen so far in the table (the first page is one
//!   row), so a page of plugin binaries stays near that budget. A page is one multi-row INSERT
//!   (split to stay under both backends' parameter limits).
//!
//! Not copied, because it is not in the database: files a store keeps in its data directory
//! (OCS uploads on SQLite) and the key files, which the command copies itself.

use super::db::{Db, Dialect, OptionalExtension, Value};
use super::{Error, Result, Store};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Tables not copied: the migration ledger (each side has its own, checked equal), the
/// PostgreSQL key fingerprint (the destination records its own on open), the heartbeats.
pub const SKIPPED: &[&str] = &["schema_migrations", "node_settings", "nodes"];
/// Tables whose migration-seeded rows do not make a destination "not empty" (the copy
/// replaces them with the source's).
pub const SEEDED: &[&str] = &["meta"];
/// Kept by triggers on another table: copied last, after that table, replacing what the
/// triggers wrote.
pub const DERIVED: &str = "ocs_file_usage";
/// Tables whose SQLite rowid the store reads; PostgreSQL's column `seq` stands in for it.
pub const ROWID_AS_SEQ: &[&str] = &["outbox", "inbound_events"];
/// Most rows in one page (one read, one INSERT).
pub const MAX_PAGE_ROWS: usize = 200;
/// Byte budget of a page (see the module doc).
pub const PAGE_BYTES: usize = 8 << 20;
/// Most parameters in one statement (SQLite's default limit is 32766, PostgreSQL's 65535).
const MAX_PARAMS: usize = 30_000;

/// One copied table in the report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TableCopy {
    pub name: String,
    pub rows: u64,
    /// The table checksum (see the module doc), 16 hex digits.
    pub checksum: String,
}

/// Row count and checksum of a table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Sum {
    rows: u64,
    sum: u64,
}

impl Sum {
    fn add(&mut self, row: &[Value]) {
        self.rows += 1;
        self.sum = self.sum.wrapping_add(row_hash(row));
    }
}

/// The 64-bit hash of one row's values (see the module doc for the encoding).
fn row_hash(row: &[Value]) -> u64 {
    let mut h = Sha256::new();
    for v in row {
        match v {
            Value::Null => h.update([0u8]),
            Value::Int(i) => {
                h.update([1u8]);
                h.update(i.to_le_bytes());
            }
            Value::Real(f) => {
                h.update([2u8]);
                h.update(f.to_bits().to_le_bytes());
            }
            Value::Text(s) => bytes_value(&mut h, s.as_bytes()),
            Value::Blob(b) => bytes_value(&mut h, b),
        }
    }
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().expect("SHA-256 has 32 bytes"))
}

fn bytes_value(h: &mut Sha256, b: &[u8]) {
    h.update([3u8]);
    h.update((b.len() as u64).to_le_bytes());
    h.update(b);
}

/// Bytes a row takes in memory, roughly (for page sizing).
fn row_bytes(row: &[Value]) -> usize {
    row.iter()
        .map(|v| match v {
            Value::Text(s) => s.len() + 24,
            Value::Blob(b) => b.len() + 24,
            _ => 16,
        })
        .sum()
}

/// A copied table: how each side selects and inserts its columns (the same columns in the same
/// order; SQLite's rowid as PostgreSQL's `seq`).
#[derive(Debug)]
struct Table {
    name: String,
    src: Vec<String>,
    dst: Vec<String>,
    /// Positions of the primary-key columns in `logical`.
    pk: Vec<usize>,
}

/// A name from a schema, checked before it is spliced into SQL (and quoted anyway).
fn ident(name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if !ok {
        return Err(Error::Other(format!(
            "unexpected name `{name}` in the schema: not copied"
        )));
    }
    Ok(format!("\"{name}\""))
}

/// The copied tables of one side, sorted by name.
fn table_names(c: &Db) -> Result<Vec<String>> {
    let sql = match c.dialect() {
        Dialect::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
        }
        Dialect::Postgres => {
            "SELECT c.relname::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') ORDER BY 1"
        }
    };
    let all: Vec<String> = c.query_map(sql, (), |r| r.get(0))?;
    Ok(all
        .into_iter()
        .filter(|t| !SKIPPED.contains(&t.as_str()))
        .collect())
}

/// A table's columns as (logical name, SQL expression), in order; SQLite's rowid of
/// [`ROWID_AS_SEQ`] tables last, as `seq`.
fn columns(c: &Db, table: &str) -> Result<Vec<(String, String)>> {
    let names: Vec<String> = match c.dialect() {
        Dialect::Sqlite => c.query_map(
            "SELECT name FROM pragma_table_info(?1) ORDER BY cid",
            [table],
            |r| r.get(0),
        )?,
        Dialect::Postgres => c.query_map(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = CAST(?1 AS TEXT) \
             ORDER BY ordinal_position",
            [table],
            |r| r.get(0),
        )?,
    };
    let mut out = names
        .into_iter()
        .map(|n| ident(&n).map(|q| (n, q)))
        .collect::<Result<Vec<_>>>()?;
    if c.dialect() == Dialect::Sqlite && ROWID_AS_SEQ.contains(&table) {
        out.push(("seq".to_string(), "rowid".to_string()));
    }
    Ok(out)
}

/// A table's primary-key columns, in key order.
fn primary_key(c: &Db, table: &str) -> Result<Vec<String>> {
    match c.dialect() {
        Dialect::Sqlite => c.query_map(
            "SELECT name FROM pragma_table_info(?1) WHERE pk > 0 ORDER BY pk",
            [table],
            |r| r.get(0),
        ),
        Dialect::Postgres => c.query_map(
            "SELECT k.column_name::text FROM information_schema.table_constraints t \
             JOIN information_schema.key_column_usage k \
               ON k.constraint_schema = t.constraint_schema \
              AND k.constraint_name = t.constraint_name AND k.table_name = t.table_name \
             WHERE t.constraint_type = 'PRIMARY KEY' AND t.table_schema = current_schema() \
               AND t.table_name = CAST(?1 AS TEXT) ORDER BY k.ordinal_position",
            [table],
            |r| r.get(0),
        ),
    }
}

/// (child, parent) for every foreign key of the schema.
fn foreign_keys(c: &Db, tables: &[String]) -> Result<Vec<(String, String)>> {
    match c.dialect() {
        Dialect::Sqlite => {
            let mut out = Vec::new();
            for t in tables {
                let parents: Vec<String> = c.query_map(
                    "SELECT \"table\" FROM pragma_foreign_key_list(?1)",
                    [t],
                    |r| r.get(0),
                )?;
                out.extend(parents.into_iter().map(|p| (t.clone(), p)));
            }
            Ok(out)
        }
        Dialect::Postgres => c.query_map(
            "SELECT c.relname::text, p.relname::text FROM pg_constraint k \
             JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE k.contype = 'f' AND n.nspname = current_schema()",
            (),
            |r| Ok((r.get(0)?, r.get(1)?)),
        ),
    }
}

/// `tables` with every parent before its children (ties by name), [`DERIVED`] last.
fn dependency_order(tables: &[String], fks: &[(String, String)]) -> Result<Vec<String>> {
    let mut left: Vec<String> = tables.iter().filter(|t| *t != DERIVED).cloned().collect();
    left.sort();
    let mut out = Vec::with_capacity(tables.len());
    while !left.is_empty() {
        // A table is ready when none of its parents (itself aside) is still waiting.
        let ready = left.iter().position(|t| {
            !fks.iter()
                .any(|(c, p)| c == t && p != t && left.contains(p))
        });
        match ready {
            Some(i) => out.push(left.remove(i)),
            None => {
                return Err(Error::Other(format!(
                    "the foreign keys between {} form a cycle: no order to copy them in",
                    left.join(", ")
                )));
            }
        }
    }
    if tables.iter().any(|t| t == DERIVED) {
        out.push(DERIVED.to_string());
    }
    Ok(out)
}

/// The tables to copy, in insertion order, with both sides' column expressions; an error
/// naming the difference when the two schemas differ.
fn plan(s: &Db, d: &Db) -> Result<Vec<Table>> {
    let (st, dt) = (table_names(s)?, table_names(d)?);
    if st != dt {
        let only = |a: &[String], b: &[String]| {
            a.iter()
                .filter(|t| !b.contains(t))
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(Error::Invalid(format!(
            "the two schemas differ: tables only in the source: [{}]; only in the destination: [{}]",
            only(&st, &dt),
            only(&dt, &st)
        )));
    }
    let order = dependency_order(&dt, &foreign_keys(d, &dt)?)?;
    let mut out = Vec::with_capacity(order.len());
    for name in order {
        let (sc, dc) = (columns(s, &name)?, columns(d, &name)?);
        let logical: Vec<String> = sc.iter().map(|c| c.0.clone()).collect();
        let dl: Vec<String> = dc.iter().map(|c| c.0.clone()).collect();
        if logical != dl {
            return Err(Error::Invalid(format!(
                "table {name} differs: source columns ({}), destination columns ({})",
                logical.join(", "),
                dl.join(", ")
            )));
        }
        let (spk, dpk) = (primary_key(s, &name)?, primary_key(d, &name)?);
        if spk.is_empty() || spk != dpk {
            return Err(Error::Invalid(format!(
                "table {name}: the primary keys differ or are missing (source ({}), \
                 destination ({}))",
                spk.join(", "),
                dpk.join(", ")
            )));
        }
        let pk = spk
            .iter()
            .map(|k| logical.iter().position(|l| l == k))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Error::Other(format!("table {name}: key column not listed")))?;
        out.push(Table {
            name,
            src: sc.into_iter().map(|c| c.1).collect(),
            dst: dc.into_iter().map(|c| c.1).collect(),
            pk,
        });
    }
    Ok(out)
}

/// A node that heartbeat within [`crate::cluster::STALE_MS`]: (its id, ms since).
fn serving_node(c: &Db, now: i64) -> Result<Option<(String, i64)>> {
    c.query_row(
        "SELECT id, last_seen FROM nodes WHERE last_seen >= ?1 ORDER BY last_seen DESC LIMIT 1",
        [now - crate::cluster::STALE_MS],
        |r| Ok((r.get::<String>(0)?, now - r.get::<i64>(1)?)),
    )
    .optional()
}

/// Read every row of `t` on `c` (the `exprs` side) in keyset pages, handing each page to `f`.
fn scan(
    c: &Db,
    t: &Table,
    exprs: &[String],
    mut f: impl FnMut(Vec<Vec<Value>>) -> Result<()>,
) -> Result<()> {
    let table = ident(&t.name)?;
    let cols = exprs.join(", ");
    let keys: Vec<&str> = t.pk.iter().map(|&i| exprs[i].as_str()).collect();
    let order = keys.join(", ");
    let marks = (1..=keys.len())
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let lim = keys.len() + 1;
    let first = format!("SELECT {cols} FROM {table} ORDER BY {order} LIMIT ?1");
    let next = format!(
        "SELECT {cols} FROM {table} WHERE ({order}) > ({marks}) ORDER BY {order} LIMIT ?{lim}"
    );
    let mut after: Option<Vec<Value>> = None;
    let mut biggest = PAGE_BYTES;
    loop {
        let limit = (PAGE_BYTES / biggest.max(1)).clamp(1, MAX_PAGE_ROWS);
        let read = |r: &super::db::Row<'_>| {
            (0..exprs.len())
                .map(|i| r.get::<Value>(i))
                .collect::<Result<Vec<_>>>()
        };
        let page = match &after {
            None => c.query_map(&first, [limit as i64], read)?,
            Some(key) => {
                let mut p = key.clone();
                p.push(Value::Int(limit as i64));
                c.query_map(&next, p, read)?
            }
        };
        let Some(last) = page.last() else {
            return Ok(());
        };
        let full = page.len() == limit;
        after = Some(t.pk.iter().map(|&i| last[i].clone()).collect());
        biggest = page.iter().map(|r| row_bytes(r)).max().unwrap_or(1);
        f(page)?;
        if !full {
            return Ok(());
        }
    }
}

/// Insert `rows` into `t` on the destination, in statements under [`MAX_PARAMS`].
fn insert(d: &Db, t: &Table, rows: Vec<Vec<Value>>) -> Result<()> {
    let table = ident(&t.name)?;
    let n = t.dst.len();
    let per = (MAX_PARAMS / n.max(1)).max(1);
    let tuple = format!("({})", vec!["?"; n].join(", "));
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Value>> = rows.by_ref().take(per).collect();
        let sql = format!(
            "INSERT INTO {table} ({}) VALUES {}",
            t.dst.join(", "),
            vec![tuple.as_str(); chunk.len()].join(", ")
        );
        let params: Vec<Value> = chunk.into_iter().flatten().collect();
        // Named, since a foreign-key or type error would not say which table it came from.
        d.execute(&sql, params)
            .map_err(|e| Error::Other(format!("inserting into {}: {e}", t.name)))?;
    }
    Ok(())
}

/// Move every identity sequence of `t` past its largest value (PostgreSQL).
fn bump_identities(d: &Db, t: &Table) -> Result<()> {
    let cols: Vec<String> = d.query_map(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = CAST(?1 AS TEXT) \
           AND is_identity = 'YES'",
        [&t.name],
        |r| r.get(0),
    )?;
    let table = ident(&t.name)?;
    for col in cols {
        let q = ident(&col)?;
        // The table name as pg_get_serial_sequence parses it (quoted); the column as is.
        let _: i64 = d.query_row(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{col}'), \
                 COALESCE(MAX({q}), 0) + 1, false) FROM {table}"
            ),
            (),
            |r| r.get(0),
        )?;
    }
    Ok(())
}

/// The copy itself, on the source snapshot `s` and the destination transaction `d`.
fn copy_all(s: &Db, d: &Db) -> Result<Vec<TableCopy>> {
    let now = super::ids::now_millis();
    if let Some((id, ago)) = serving_node(s, now)? {
        return Err(Error::Invalid(format!(
            "the source is being served (node {id} was alive {ago} ms ago): stop every botyard \
             serving it first, then copy"
        )));
    }
    if let Some((id, ago)) = serving_node(d, now)? {
        return Err(Error::Invalid(format!(
            "the destination is being served (node {id} was alive {ago} ms ago): copy into a \
             store no botyard serves"
        )));
    }
    let tables = plan(s, d)?;
    for t in tables.iter().filter(|t| !SEEDED.contains(&t.name.as_str())) {
        let any = d
            .prepare_cached(&format!("SELECT 1 FROM {} LIMIT 1", ident(&t.name)?))?
            .exists(())?;
        if any {
            return Err(Error::Conflict(format!(
                "the destination is not empty (table {} has rows): copy into a new, empty \
                 database or data directory",
                t.name
            )));
        }
    }
    let mut sums = Vec::with_capacity(tables.len());
    for t in &tables {
        d.execute(&format!("DELETE FROM {}", ident(&t.name)?), ())?;
        let mut sum = Sum::default();
        scan(s, t, &t.src, |page| {
            for row in &page {
                sum.add(row);
            }
            insert(d, t, page)
        })?;
        let counted: i64 = s.query_row(
            &format!("SELECT COUNT(*) FROM {}", ident(&t.name)?),
            (),
            |r| r.get(0),
        )?;
        if counted as u64 != sum.rows {
            return Err(Error::Other(format!(
                "table {}: the source has {counted} rows but {} were read (a null in its \
                 primary key?): nothing was copied",
                t.name, sum.rows
            )));
        }
        if d.dialect() == Dialect::Postgres {
            bump_identities(d, t)?;
        }
        sums.push(sum);
    }
    // Read everything back only now: a later table's writes (triggers, cascades) must not
    // have changed an earlier one.
    let mut report = Vec::with_capacity(tables.len());
    for (t, want) in tables.iter().zip(sums) {
        let mut got = Sum::default();
        scan(d, t, &t.dst, |page| {
            page.iter().for_each(|r| got.add(r));
            Ok(())
        })?;
        if got != want {
            return Err(Error::Other(format!(
                "verification failed for table {}: the source has {} rows (checksum {:016x}), \
                 the destination would have {} (checksum {:016x}): nothing was copied",
                t.name, want.rows, want.sum, got.rows, got.sum
            )));
        }
        report.push(TableCopy {
            name: t.name.clone(),
            rows: want.rows,
            checksum: format!("{:016x}", want.sum),
        });
    }
    Ok(report)
}

/// Runs `f` in a read transaction on `s` (one snapshot of the source), ended either way.
fn snapshot<R>(s: &Db, f: impl FnOnce(&Db) -> Result<R>) -> Result<R> {
    s.execute_batch(s.pick("BEGIN", "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"))?;
    let out = f(s);
    let end = s.execute_batch(if out.is_ok() { "COMMIT" } else { "ROLLBACK" });
    let out = out?;
    end?;
    Ok(out)
}

impl Store {
    /// Copy every row of this store into `dst` (see the module doc): one transaction on
    /// `dst`, verified before it commits. Returns each table's row count and checksum, in
    /// copy order. `dst` must be empty, neither may be served, both at one schema version.
    pub fn copy_to(&self, dst: &Store) -> Result<Vec<TableCopy>> {
        let (from, to) = (self.schema_version()?, dst.schema_version()?);
        if from != to {
            return Err(Error::Invalid(format!(
                "the source is at schema version {from}, the destination at {to}"
            )));
        }
        let src = self.clone();
        dst.write(move |d| src.read(|s| snapshot(s, |s| copy_all(s, d))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_hash_is_positional_and_types_matter_text_and_blob_do_not() {
        let a = [Value::Int(1), Value::Text("x".into())];
        let b = [Value::Text("x".into()), Value::Int(1)];
        assert_ne!(row_hash(&a), row_hash(&b));
        assert_eq!(
            row_hash(&[Value::Text("ab".into())]),
            row_hash(&[Value::Blob(b"ab".to_vec())])
        );
        assert_ne!(
            row_hash(&[Value::Text("1".into())]),
            row_hash(&[Value::Int(1)])
        );
        assert_ne!(row_hash(&[Value::Null]), row_hash(&[Value::Int(0)]));
        // Lengths are part of the encoding: ("ab","") is not ("a","b").
        assert_ne!(
            row_hash(&[Value::Text("ab".into()), Value::Text(String::new())]),
            row_hash(&[Value::Text("a".into()), Value::Text("b".into())])
        );
    }

    #[test]
    fn parents_come_first_and_derived_last() {
        let tables: Vec<String> = ["bots", "ocs_file_usage", "orgs", "flows", "meta"]
            .map(String::from)
            .to_vec();
        let fks = [
            ("bots", "orgs"),
            ("flows", "bots"),
            ("flows", "orgs"),
            ("ocs_file_usage", "orgs"),
            ("orgs", "orgs"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()));
        assert_eq!(
            dependency_order(&tables, &fks).unwrap(),
            ["meta", "orgs", "bots", "flows", "ocs_file_usage"]
        );
        let cyclic = [("a", "b"), ("b", "a")].map(|(a, b)| (a.to_string(), b.to_string()));
        let err = dependency_order(&["a".into(), "b".into()], &cyclic).unwrap_err();
        assert!(err.to_string().contains("cycle"), "{err}");
    }

    #[test]
    fn names_are_checked_before_they_reach_sql() {
        assert_eq!(ident("outbox").unwrap(), "\"outbox\"");
        for bad in ["", "a\"b", "a b", "1a", "x;--"] {
            assert!(ident(bad).is_err(), "{bad}");
        }
    }
}

//! `gateway migrate`: copies a one-machine SQLite store (schema [`crate::schema::VERSION`])
//! into a PostgreSQL store, table by table, in batches, then accounts for every row.
//!
//! What is copied: every logical table, by the PostgreSQL table's column names. Readings and
//! rollups are read through SQLite's views (`readings`, `rollup_20min`, `rollup_hour`,
//! `rollup_day`), which present the logical columns over the integer-keyed layout
//! ([`crate::series`]); the sink queue's rows get their post and quantity back from `series`.
//! SQLite's internal tables (`series`, `samples`, `sample_arrivals`, `agg_*`) are not copied:
//! their data is what the views show. A table this module does not know on either side stops
//! the copy, so a table added later cannot be left behind unnoticed.
//!
//! Idempotent: rows go in with `INSERT ... ON CONFLICT DO NOTHING`, one transaction per batch,
//! so a copy interrupted at any point is finished by running it again. A row the target
//! already holds is compared with the source's, column for column: equal, it counts as
//! present; different, the copy stops and names the table and the key (the target holds other
//! data for the same identity, e.g. gateways already wrote there, and merging would be wrong).
//! Rows the target holds under other keys are left alone and reported (two one-machine
//! installations with different posts can be merged into one shared store).
//!
//! At the end each table must account for every source row (`copied + present = source`,
//! target count at least the source's), and a sample of rows spread over each table is read
//! back from the target and compared.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rusqlite::types::ValueRef;
use rusqlite::OpenFlags;

use super::{Pg, PgStore, ToSql};
use crate::StoreError;

/// The logical tables, in an order that satisfies references (posts before their credentials,
/// alerts before their events and notifications).
pub const TABLES: &[&str] = &[
    "store_meta",
    "posts",
    "post_credentials",
    "post_audit",
    "zones",
    "post_status",
    "readings",
    "rollup_20min",
    "rollup_hour",
    "rollup_day",
    "day_scores_year",
    "day_dirty",
    "alerts",
    "alert_events",
    "outbox",
    "sink_queue",
];

/// SQLite's own layout, whose data the logical tables above carry.
const SQLITE_INTERNAL: &[&str] = &[
    "series",
    "samples",
    "sample_arrivals",
    "agg_20min",
    "agg_hour",
    "agg_day",
];

/// PostgreSQL's own tables, with nothing to copy into them from SQLite.
const PG_ONLY: &[&str] = &["taza_schema", "committed"];

/// Rows read back from the target per table after the copy.
const SAMPLE_ROWS: u64 = 200;

/// What happened to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    /// The table.
    pub table: &'static str,
    /// Rows in the SQLite store.
    pub source: u64,
    /// Rows this run inserted.
    pub copied: u64,
    /// Rows the target already held, equal to the source's (an earlier run).
    pub present: u64,
    /// Rows in the target after the copy.
    pub target: u64,
    /// Rows read back and compared after the copy.
    pub sampled: u64,
}

impl TableReport {
    /// Every source row is in the target.
    pub fn complete(&self) -> bool {
        self.copied + self.present == self.source && self.target >= self.source
    }
}

/// Copies the SQLite store at `sqlite_db` (the `taza.db` file) into `target`, `batch` rows per
/// transaction; `progress` hears of each table as it finishes. Fails on a source of another
/// schema version, on a row the target holds with other values, and when a table does not
/// account for every source row.
pub async fn from_sqlite(
    sqlite_db: &Path,
    target: &PgStore,
    batch: usize,
    progress: impl Fn(&TableReport) + Send + 'static,
) -> Result<Vec<TableReport>, StoreError> {
    let (path, target) = (sqlite_db.to_path_buf(), target.clone());
    tokio::task::spawn_blocking(move || copy_all(&path, &target, batch.max(1), &progress))
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

/// A column's PostgreSQL type, as far as the copy converts values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Int8,
    Int4,
    Int2,
    Float8,
    Float4,
    Text,
    Bytea,
    Bool,
    Jsonb,
}

impl Ty {
    fn of(data_type: &str) -> Option<Self> {
        Some(match data_type {
            "bigint" => Self::Int8,
            "integer" => Self::Int4,
            "smallint" => Self::Int2,
            "double precision" => Self::Float8,
            "real" => Self::Float4,
            "text" | "character varying" => Self::Text,
            "bytea" => Self::Bytea,
            "boolean" => Self::Bool,
            "jsonb" | "json" => Self::Jsonb,
            _ => return None,
        })
    }

    fn array(self) -> &'static str {
        match self {
            Self::Int8 => "int8[]",
            Self::Int4 => "int4[]",
            Self::Int2 => "int2[]",
            Self::Float8 => "float8[]",
            Self::Float4 => "float4[]",
            Self::Text => "text[]",
            Self::Bytea => "bytea[]",
            Self::Bool => "bool[]",
            Self::Jsonb => "jsonb[]",
        }
    }
}

/// One value, converted to its target column's type.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Bool(bool),
    Json(serde_json::Value),
}

/// How one table is copied.
#[derive(Debug)]
struct Plan {
    table: &'static str,
    /// Target columns, in order, with their types.
    columns: Vec<(String, Ty)>,
    /// Indexes into `columns` of the primary key.
    key: Vec<usize>,
    /// Columns filled by a sequence (set past the copied ids afterwards).
    serial: Vec<String>,
    /// The SQLite query giving `columns` in order.
    select: String,
}

/// One row, its cells in the plan's column order.
type Values = Vec<Cell>;

fn corrupt(table: &'static str, key: impl Into<String>, what: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        table,
        key: key.into(),
        what: what.into(),
    }
}

fn copy_all(
    path: &Path,
    target: &PgStore,
    batch: usize,
    progress: &dyn Fn(&TableReport),
) -> Result<Vec<TableReport>, StoreError> {
    let rt = target.runtime().clone();
    let source = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    source.busy_timeout(crate::BUSY_TIMEOUT)?;
    let version: i64 = source.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version != crate::schema::VERSION {
        return Err(StoreError::Config(format!(
            "{} is at SQLite schema {version}, this gateway copies schema {}: start this \
             gateway once on it (it migrates SQLite in place), stop it, then copy",
            path.display(),
            crate::schema::VERSION
        )));
    }
    // One read transaction: every table from the same moment.
    source.execute_batch("BEGIN")?;
    let plans = rt.block_on(target.run(true, plans))?;
    check_sqlite_tables(&source)?;
    let mut reports = Vec::with_capacity(plans.len());
    for plan in plans {
        let plan = Arc::new(plan);
        let report = copy_table(&source, target, &plan, batch)?;
        progress(&report);
        reports.push(report);
    }
    source.execute_batch("COMMIT")?;
    if let Some(r) = reports.iter().find(|r| !r.complete()) {
        return Err(StoreError::Config(format!(
            "table {}: {} source rows, {} copied + {} already present, {} in the target",
            r.table, r.source, r.copied, r.present, r.target
        )));
    }
    Ok(reports)
}

/// Every SQLite table or view is a logical table or part of SQLite's own layout.
fn check_sqlite_tables(source: &rusqlite::Connection) -> Result<(), StoreError> {
    let names: Vec<String> = source
        .prepare(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')
             AND name NOT LIKE 'sqlite_%'",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for name in names {
        if !TABLES.contains(&name.as_str()) && !SQLITE_INTERNAL.contains(&name.as_str()) {
            return Err(StoreError::Config(format!(
                "the SQLite store has a table `{name}` this gateway does not know how to copy"
            )));
        }
    }
    Ok(())
}

/// The plan of every logical table, from the target's catalog.
fn plans(pg: &Pg<'_>) -> Result<Vec<Plan>, StoreError> {
    let rows = pg.query(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
        &[],
    )?;
    let mut present = Vec::with_capacity(rows.len());
    for row in &rows {
        present.push(super::get::<String>(row, "information_schema.tables", 0)?);
    }
    for name in &present {
        if !TABLES.contains(&name.as_str()) && !PG_ONLY.contains(&name.as_str()) {
            return Err(StoreError::Config(format!(
                "the PostgreSQL store has a table `{name}` this gateway does not know how to fill"
            )));
        }
    }
    let mut plans = Vec::with_capacity(TABLES.len());
    for &table in TABLES {
        if !present.iter().any(|p| p == table) {
            return Err(StoreError::Config(format!(
                "the PostgreSQL store has no table `{table}` (is it at this gateway's schema?)"
            )));
        }
        let mut columns = Vec::new();
        let mut serial = Vec::new();
        for row in pg.query(
            "SELECT column_name::text, data_type::text,
                    coalesce(column_default LIKE 'nextval(%', false) OR is_identity = 'YES'
             FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1
             ORDER BY ordinal_position",
            &[&table],
        )? {
            let name: String = super::get(&row, "information_schema.columns", 0)?;
            let data_type: String = super::get(&row, "information_schema.columns", 1)?;
            let ty = Ty::of(&data_type).ok_or_else(|| {
                StoreError::Config(format!(
                    "{table}.{name} is {data_type}, which the copy does not convert"
                ))
            })?;
            if super::get::<bool>(&row, "information_schema.columns", 2)? {
                serial.push(name.clone());
            }
            columns.push((name, ty));
        }
        let mut key = Vec::new();
        for row in pg.query(
            "SELECT a.attname::text FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
             WHERE i.indrelid = $1::text::regclass AND i.indisprimary
             ORDER BY array_position(i.indkey::int2[], a.attnum)",
            &[&table],
        )? {
            let name: String = super::get(&row, "pg_index", 0)?;
            let at = columns
                .iter()
                .position(|(c, _)| *c == name)
                .ok_or_else(|| {
                    StoreError::Config(format!("{table}: key column {name} not found"))
                })?;
            key.push(at);
        }
        if key.is_empty() {
            // Without a key a second run would copy every row again.
            return Err(StoreError::Config(format!(
                "the PostgreSQL table {table} has no primary key: a copy could not be rerun"
            )));
        }
        let select = match table {
            // Since SQLite's schema 8 a queued row names its series by id.
            "sink_queue" => "SELECT q.id, s.post, s.quantity, q.at, q.value, q.flags
                             FROM sink_queue q JOIN series s ON s.id = q.series"
                .to_owned(),
            _ => format!(
                "SELECT {} FROM {table}",
                columns
                    .iter()
                    .map(|(c, _)| format!("\"{c}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        if table == "sink_queue" {
            let names: Vec<&str> = columns.iter().map(|(c, _)| c.as_str()).collect();
            if names != ["id", "post", "quantity", "at", "value", "flags"] {
                return Err(StoreError::Config(format!(
                    "sink_queue has columns {names:?}; the copy knows (id, post, quantity, at, value, flags)"
                )));
            }
        }
        plans.push(Plan {
            table,
            columns,
            key,
            serial,
            select,
        });
    }
    Ok(plans)
}

fn copy_table(
    source: &rusqlite::Connection,
    target: &PgStore,
    plan: &Arc<Plan>,
    batch: usize,
) -> Result<TableReport, StoreError> {
    let rt = target.runtime().clone();
    let table = plan.table;
    let count: i64 =
        source.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
    let source_rows = u64::try_from(count).unwrap_or(0);
    let every = (source_rows / SAMPLE_ROWS).max(1);
    let mut report = TableReport {
        table,
        source: source_rows,
        copied: 0,
        present: 0,
        target: 0,
        sampled: 0,
    };
    let mut stmt = source.prepare(&plan.select).map_err(|e| {
        StoreError::Config(format!(
            "table {table}: the SQLite store lacks a column the PostgreSQL table has ({e})"
        ))
    })?;
    let mut rows = stmt.query([])?;
    let mut pending: Vec<Values> = Vec::with_capacity(batch);
    let mut sample: Vec<Values> = Vec::new();
    let mut seen = 0u64;
    loop {
        let row = rows.next()?;
        if let Some(row) = row {
            let mut values = Vec::with_capacity(plan.columns.len());
            for (i, (name, ty)) in plan.columns.iter().enumerate() {
                values.push(cell(table, name, *ty, row.get_ref(i)?)?);
            }
            if seen % every == 0 {
                sample.push(values.clone());
            }
            seen += 1;
            pending.push(values);
        }
        let last = row.is_none();
        if pending.len() >= batch || (last && !pending.is_empty()) {
            let (plan, chunk) = (Arc::clone(plan), std::mem::take(&mut pending));
            let (copied, present) =
                rt.block_on(target.run(false, move |pg| insert_batch(pg, &plan, chunk)))?;
            report.copied += copied;
            report.present += present;
        }
        if last {
            break;
        }
    }
    let (plan, serial) = (Arc::clone(plan), plan.serial.clone());
    let (target_rows, sampled) = rt.block_on(target.run(false, move |pg| {
        for column in &serial {
            // Past the copied ids, so rows the gateways add next do not collide with them.
            pg.execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{t}', '{column}'),
                                   coalesce(max(\"{column}\"), 0) + 1, false) FROM {t}",
                    t = plan.table
                ),
                &[],
            )?;
        }
        let differing = differing(pg, &plan, &sample)?;
        if let Some(key) = differing.first() {
            return Err(corrupt(
                plan.table,
                key.clone(),
                "the row read back differs from the source's",
            ));
        }
        let n: i64 = super::get(
            &pg.query_one(&format!("SELECT count(*) FROM {}", plan.table), &[])?,
            plan.table,
            0,
        )?;
        Ok::<_, StoreError>((u64::try_from(n).unwrap_or(0), sample.len() as u64))
    }))?;
    report.target = target_rows;
    report.sampled = sampled;
    Ok(report)
}

/// A SQLite value as the target column's type; a value that does not fit is refused.
fn cell(table: &'static str, column: &str, ty: Ty, v: ValueRef<'_>) -> Result<Cell, StoreError> {
    let bad = |what: &str| {
        corrupt(
            table,
            column.to_owned(),
            format!("{what} for a {ty:?} column"),
        )
    };
    Ok(match (ty, v) {
        (_, ValueRef::Null) => Cell::Null,
        (Ty::Int8 | Ty::Int4 | Ty::Int2, ValueRef::Integer(i)) => {
            let fits = match ty {
                Ty::Int4 => i32::try_from(i).is_ok(),
                Ty::Int2 => i16::try_from(i).is_ok(),
                _ => true,
            };
            if !fits {
                return Err(bad(&format!("{i} out of range")));
            }
            Cell::Int(i)
        }
        (Ty::Float8, ValueRef::Real(f)) => Cell::Real(f),
        // As the target will hold it, so that reading it back compares equal.
        (Ty::Float4, ValueRef::Real(f)) => Cell::Real(f64::from(f as f32)),
        // A REAL column holds an INTEGER when one was bound to it.
        (Ty::Float8, ValueRef::Integer(i)) => Cell::Real(i as f64),
        (Ty::Float4, ValueRef::Integer(i)) => Cell::Real(f64::from(i as f32)),
        (Ty::Bool, ValueRef::Integer(i)) => Cell::Bool(i != 0),
        (Ty::Text, ValueRef::Text(t)) => Cell::Text(
            std::str::from_utf8(t)
                .map_err(|_| bad("text that is not UTF-8"))?
                .to_owned(),
        ),
        (Ty::Jsonb, ValueRef::Text(t)) => Cell::Json(
            serde_json::from_slice(t).map_err(|e| bad(&format!("text that is not JSON ({e})")))?,
        ),
        (Ty::Bytea, ValueRef::Blob(b)) => Cell::Blob(b.to_vec()),
        (_, other) => return Err(bad(&format!("a {:?} value", other.data_type()))),
    })
}

/// Column `i` of `rows` as one typed array parameter.
fn column(rows: &[Values], i: usize, ty: Ty) -> Box<dyn ToSql + Sync + Send> {
    macro_rules! gather {
        ($pat:pat => $v:expr) => {
            Box::new(
                rows.iter()
                    .map(|r| match &r[i] {
                        $pat => Some($v),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            )
        };
    }
    match ty {
        Ty::Int8 => gather!(Cell::Int(v) => *v),
        Ty::Int4 => gather!(Cell::Int(v) => *v as i32),
        Ty::Int2 => gather!(Cell::Int(v) => *v as i16),
        Ty::Float8 => gather!(Cell::Real(v) => *v),
        Ty::Float4 => gather!(Cell::Real(v) => *v as f32),
        Ty::Text => gather!(Cell::Text(v) => v.clone()),
        Ty::Bytea => gather!(Cell::Blob(v) => v.clone()),
        Ty::Bool => gather!(Cell::Bool(v) => *v),
        Ty::Jsonb => gather!(Cell::Json(v) => v.clone()),
    }
}

/// Column `i` of a target row as a [`Cell`].
fn read_cell(row: &super::Row, table: &'static str, i: usize, ty: Ty) -> Result<Cell, StoreError> {
    let opt = |c: Option<Cell>| c.unwrap_or(Cell::Null);
    Ok(match ty {
        Ty::Int8 => opt(super::get::<Option<i64>>(row, table, i)?.map(Cell::Int)),
        Ty::Int4 => opt(super::get::<Option<i32>>(row, table, i)?.map(|v| Cell::Int(v.into()))),
        Ty::Int2 => opt(super::get::<Option<i16>>(row, table, i)?.map(|v| Cell::Int(v.into()))),
        Ty::Float8 => opt(super::get::<Option<f64>>(row, table, i)?.map(Cell::Real)),
        Ty::Float4 => opt(super::get::<Option<f32>>(row, table, i)?.map(|v| Cell::Real(v.into()))),
        Ty::Text => opt(super::get::<Option<String>>(row, table, i)?.map(Cell::Text)),
        Ty::Bytea => opt(super::get::<Option<Vec<u8>>>(row, table, i)?.map(Cell::Blob)),
        Ty::Bool => opt(super::get::<Option<bool>>(row, table, i)?.map(Cell::Bool)),
        Ty::Jsonb => opt(super::get::<Option<serde_json::Value>>(row, table, i)?.map(Cell::Json)),
    })
}

/// A row's key, for matching and for messages.
fn key_of(plan: &Plan, values: &[Cell]) -> String {
    let parts: Vec<String> = plan
        .key
        .iter()
        .map(|&k| match &values[k] {
            Cell::Text(t) => t.clone(),
            Cell::Int(i) => i.to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    parts.join("/")
}

/// Inserts `rows` (absent keys only); returns (inserted, already present and equal). A key
/// present with other values is an error.
fn insert_batch(pg: &Pg<'_>, plan: &Plan, rows: Vec<Values>) -> Result<(u64, u64), StoreError> {
    let names: Vec<String> = plan
        .columns
        .iter()
        .map(|(c, _)| format!("\"{c}\""))
        .collect();
    let arrays: Vec<String> = plan
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| format!("${}::{}", i + 1, ty.array()))
        .collect();
    let keys: Vec<&str> = plan.key.iter().map(|&k| names[k].as_str()).collect();
    let sql = format!(
        "INSERT INTO {t} ({cols}) SELECT * FROM unnest({arrays})
         ON CONFLICT DO NOTHING RETURNING {keys}",
        t = plan.table,
        cols = names.join(", "),
        arrays = arrays.join(", "),
        keys = keys.join(", "),
    );
    let params: Vec<Box<dyn ToSql + Sync + Send>> = plan
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| column(&rows, i, *ty))
        .collect();
    let refs: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let inserted = pg.query(&sql, &refs)?;
    let mut new = std::collections::HashSet::with_capacity(inserted.len());
    for row in &inserted {
        let mut values = vec![Cell::Null; plan.columns.len()];
        for (j, &k) in plan.key.iter().enumerate() {
            values[k] = read_cell(row, plan.table, j, plan.columns[k].1)?;
        }
        new.insert(key_of(plan, &values));
    }
    let already: Vec<Values> = rows
        .into_iter()
        .filter(|r| !new.contains(&key_of(plan, r)))
        .collect();
    if let Some(key) = differing(pg, plan, &already)?.first() {
        return Err(corrupt(
            plan.table,
            key.clone(),
            "the PostgreSQL store already holds this key with other values; \
             refusing to copy into it (copy into an empty database, or one an earlier run \
             of this copy filled)",
        ));
    }
    Ok((new.len() as u64, already.len() as u64))
}

/// Keys of `rows` whose target row is missing or differs.
fn differing(pg: &Pg<'_>, plan: &Plan, rows: &[Values]) -> Result<Vec<String>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<String> = plan
        .columns
        .iter()
        .map(|(c, _)| format!("\"{c}\""))
        .collect();
    let key_names: Vec<&str> = plan.key.iter().map(|&k| names[k].as_str()).collect();
    let key_arrays: Vec<String> = plan
        .key
        .iter()
        .enumerate()
        .map(|(j, &k)| format!("${}::{}", j + 1, plan.columns[k].1.array()))
        .collect();
    let sql = format!(
        "SELECT {cols} FROM {t} WHERE ({keys}) IN (SELECT * FROM unnest({arrays}))",
        cols = names.join(", "),
        t = plan.table,
        keys = key_names.join(", "),
        arrays = key_arrays.join(", "),
    );
    let params: Vec<Box<dyn ToSql + Sync + Send>> = plan
        .key
        .iter()
        .map(|&k| column(rows, k, plan.columns[k].1))
        .collect();
    let refs: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let mut stored: HashMap<String, Values> = HashMap::new();
    for row in pg.query(&sql, &refs)? {
        let values = plan
            .columns
            .iter()
            .enumerate()
            .map(|(i, (_, ty))| read_cell(&row, plan.table, i, *ty))
            .collect::<Result<Values, _>>()?;
        stored.insert(key_of(plan, &values), values);
    }
    Ok(rows
        .iter()
        .map(|r| (key_of(plan, r), r))
        .filter(|(k, r)| stored.get(k) != Some(*r))
        .map(|(k, _)| k)
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::time::Duration;

    use super::*;
    use crate::pg::{get, test_server};
    use protocol::{PostId, QaFlags, Quantity, UnixSeconds};
    use taza_domain::pipeline::Reading;

    /// 2026-01-01T00:00:00Z.
    const T0: i64 = 1_767_225_600;

    /// A SQLite store with a row in every logical table: readings written by the SQLite
    /// writer (so rollups, day marks and series are its own), the rest as the stages write it.
    fn sqlite_store(dir: &Path) -> std::path::PathBuf {
        let cfg = crate::config::StoreConfig {
            data_dir: dir.to_path_buf(),
            ..Default::default()
        };
        let conn = crate::open_writer(&cfg).unwrap();
        conn.execute_batch(
            r#"
            INSERT INTO posts (id, kind, name, latitude, longitude, district, sensors, cadence_s,
                               updated_at, details, managed_by)
                VALUES ('air-1', 'air', 'Абай', 43.24, 76.95, 'Алмалинский', '["pm2_5"]', 60,
                        1767225600, '{"id":"air-1"}', 'registry');
            INSERT INTO post_credentials (post, username, password_hash, issued_at, issued_by)
                VALUES ('air-1', 'post-air-1', '$7$101$abc', 1767225600, 'cli:root');
            INSERT INTO post_audit (at, actor, post, action, detail)
                VALUES (1767225600, 'cli:root', 'air-1', 'add', '{"name":"Абай"}');
            INSERT INTO zones (id, name, start_date, geometry, updated_at, updated_by)
                VALUES ('lez-1', 'Центр', '2026-01-01', '{"type":"Polygon","coordinates":[]}', 5, 'config');
            INSERT INTO post_status (post, online, firmware, config_hash, sensors, dropped, reconnects,
                                     received_at, clock_offset_ms, rssi_dbm, supply_mv, uptime_s)
                VALUES ('air-1', 1, '1.4.0', 77, '["pm2_5"]', 0, 2, 1767225660, -120, -71, 4980, 3600);
            INSERT INTO store_meta (key, value) VALUES ('day_scores_fingerprint', 'norms-v1');
            INSERT INTO day_scores_year (post, quantity, year, days) VALUES ('air-1', 'pm2_5', 2026, x'00010203');
            INSERT INTO alerts (rule, post, severity, quantity, state, value, threshold, message, fired_at,
                                resolved_at, resolved_by)
                VALUES ('pm25-high', 'air-1', 'critical', 'pm2_5', 'resolved', 180.5, 160, 'PM2.5 высокий',
                        1767229200, 1767232800, 'rule');
            INSERT INTO alerts (rule, post, severity, quantity, state, value, threshold, message, fired_at)
                VALUES ('pm25-high', 'air-2', 'warning', 'pm2_5', 'firing', 170.25, 160, 'PM2.5', 1767232800);
            INSERT INTO alert_events (alert_id, at, event, by, detail) VALUES (1, 1767229200, 'fired', 'rule', NULL);
            INSERT INTO alert_events (alert_id, at, event, by, detail) VALUES (1, 1767232800, 'resolved', 'rule', 'below');
            INSERT INTO outbox (key, alert_id, channel, recipient, subject, text, payload, state, attempts,
                                next_attempt_ms, created_at)
                VALUES ('alert-1-fired-duty', 1, 'webhook', 'ops', 'PM2.5', 'PM2.5 высокий', '{"alert":1}',
                        'pending', 1, 1767229200000, 1767229200);
            "#,
        )
        .unwrap();
        let writer = crate::writer::TestWriter::spawn(
            conn,
            taza_domain::registry::Registry::new(&[], Duration::from_secs(60), false),
        );
        // Three posts, two quantities, 30 hours of minutes: several days, hours, 20 minutes;
        // some readings flagged (stored, not rolled up), some with an hour's window.
        for post in ["air-1", "air-2", "air-3"] {
            let id = PostId::parse(post).unwrap();
            for m in 0..30 * 60i64 {
                let readings = [Quantity::Pm2_5, Quantity::Temperature]
                    .iter()
                    .map(|&q| Reading {
                        quantity: q,
                        value: (m % 97) as f64 * 0.5 + 0.125,
                        at: UnixSeconds(T0 + m * 60),
                        flags: if m % 41 == 0 {
                            QaFlags::STUCK
                        } else {
                            QaFlags::NONE
                        },
                        window_s: (m % 60 == 0).then_some(3600),
                    })
                    .collect();
                writer.blocking_send(&id, readings);
            }
        }
        writer.finish();
        let conn = crate::open_connection(&crate::db_path(&cfg)).unwrap();
        conn.execute_batch(
            "INSERT INTO sink_queue (series, at, value, flags)
                 SELECT id, 1767225660, 1.5, 0 FROM series ORDER BY id;
             INSERT INTO sink_queue (series, at, value, flags)
                 SELECT id, 1767225720, 2.5, 4 FROM series ORDER BY id;",
        )
        .unwrap();
        crate::db_path(&cfg)
    }

    type ReadingRow = (String, String, i64, f64, i64, Option<i64>, i64);
    type HourRow = (String, String, i64, i64, f64, i64, f64, f64, i64);
    type AlertRow = (i64, String, String, String, f64, i64, Option<i64>);

    const READINGS: &str = "SELECT post, quantity, at, value, flags, window_s, received_at
                            FROM readings ORDER BY post, quantity, at";
    const HOURS: &str =
        "SELECT post, quantity, start, count, weighted_sum, covered_s, min, max, expected
                         FROM rollup_hour ORDER BY post, quantity, start";
    const ALERTS: &str = "SELECT id, rule, post, state, value, fired_at, resolved_at
                          FROM alerts ORDER BY id";

    fn sqlite_rows(db: &Path) -> (Vec<ReadingRow>, Vec<HourRow>, Vec<AlertRow>) {
        let c = rusqlite::Connection::open(db).unwrap();
        let readings = c
            .prepare(READINGS)
            .unwrap()
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let hours = c
            .prepare(HOURS)
            .unwrap()
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let alerts = c
            .prepare(ALERTS)
            .unwrap()
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        (readings, hours, alerts)
    }

    async fn pg_rows(pg: &PgStore) -> (Vec<ReadingRow>, Vec<HourRow>, Vec<AlertRow>) {
        pg.run(true, |pg| {
            let readings = pg
                .query(READINGS, &[])?
                .iter()
                .map(|r| {
                    Ok((
                        get(r, "t", 0)?,
                        get(r, "t", 1)?,
                        get(r, "t", 2)?,
                        get(r, "t", 3)?,
                        get(r, "t", 4)?,
                        get(r, "t", 5)?,
                        get(r, "t", 6)?,
                    ))
                })
                .collect::<Result<Vec<ReadingRow>, StoreError>>()?;
            let hours = pg
                .query(HOURS, &[])?
                .iter()
                .map(|r| {
                    Ok((
                        get(r, "t", 0)?,
                        get(r, "t", 1)?,
                        get(r, "t", 2)?,
                        get(r, "t", 3)?,
                        get(r, "t", 4)?,
                        get(r, "t", 5)?,
                        get(r, "t", 6)?,
                        get(r, "t", 7)?,
                        get(r, "t", 8)?,
                    ))
                })
                .collect::<Result<Vec<HourRow>, StoreError>>()?;
            let alerts = pg
                .query(ALERTS, &[])?
                .iter()
                .map(|r| {
                    Ok((
                        get(r, "t", 0)?,
                        get(r, "t", 1)?,
                        get(r, "t", 2)?,
                        get(r, "t", 3)?,
                        get(r, "t", 4)?,
                        get(r, "t", 5)?,
                        get(r, "t", 6)?,
                    ))
                })
                .collect::<Result<Vec<AlertRow>, StoreError>>()?;
            Ok::<_, StoreError>((readings, hours, alerts))
        })
        .await
        .unwrap()
    }

    #[test]
    fn a_sqlite_store_round_trips_into_postgres_and_reruns_copy_nothing_twice() {
        let Some(url) = test_server::database("pg::copy::a_sqlite_store_round_trips") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let db = sqlite_store(dir.path());
        let source = sqlite_rows(&db);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let pg = PgStore::connect(&url).await.unwrap();
            let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
            let heard = Arc::clone(&seen);
            let first = from_sqlite(&db, &pg, 1000, move |r| heard.lock().unwrap().push(r.table))
                .await
                .unwrap();
            assert_eq!(*seen.lock().unwrap(), TABLES);
            for r in &first {
                assert!(r.source > 0, "the fixture fills {}", r.table);
                assert_eq!(
                    (r.copied, r.present, r.target),
                    (r.source, 0, r.source),
                    "{r:?}"
                );
                assert!(r.sampled > 0 && r.sampled <= r.source, "{r:?}");
            }
            let count = |t: &str| first.iter().find(|r| r.table == t).unwrap().source;
            assert_eq!(count("readings"), 3 * 2 * 30 * 60);
            assert_eq!(count("alerts"), 2);
            // Readings, hourly rollups and alerts are equal, row for row.
            let target = pg_rows(&pg).await;
            assert_eq!(target.0, source.0);
            assert_eq!(target.1, source.1);
            assert_eq!(target.2, source.2);
            assert!(source.1.iter().any(|h| h.3 > 1), "rollups of many readings");

            // Run again: nothing copied, everything present.
            let again = from_sqlite(&db, &pg, 1000, |_| {}).await.unwrap();
            for r in &again {
                assert_eq!(
                    (r.copied, r.present, r.target),
                    (0, r.source, r.source),
                    "{r:?}"
                );
            }
            // An interrupted copy (the newest readings never arrived) is finished by a rerun.
            let lost = pg
                .run(false, |pg| {
                    pg.execute("DELETE FROM readings WHERE at >= $1", &[&(T0 + 20 * 3600)])
                })
                .await
                .unwrap();
            assert!(lost > 0);
            let resumed = from_sqlite(&db, &pg, 700, |_| {}).await.unwrap();
            let readings = resumed.iter().find(|r| r.table == "readings").unwrap();
            assert_eq!((readings.copied, readings.target), (lost, readings.source));
            assert_eq!(pg_rows(&pg).await.0, source.0);

            // Rows the gateways add next get ids after the copied ones.
            let (queued, next): (i64, i64) = pg
                .run(false, |pg| {
                    let max = pg.query_one("SELECT max(id) FROM sink_queue", &[])?;
                    let row = pg.query_one(
                        "INSERT INTO sink_queue (post, quantity, at, value, flags)
                         VALUES ('air-1', 'pm2_5', 1, 1.0, 0) RETURNING id",
                        &[],
                    )?;
                    Ok::<_, StoreError>((
                        super::super::get(&max, "sink_queue", 0)?,
                        super::super::get(&row, "sink_queue", 0)?,
                    ))
                })
                .await
                .unwrap();
            assert!(next > queued, "{next} after {queued}");

            // The same reading with another value in the target: refused, named.
            pg.run(false, |pg| {
                pg.execute(
                    "UPDATE readings SET value = value + 1 WHERE post = 'air-2' AND at = $1
                     AND quantity = 'pm2_5'",
                    &[&(T0 + 600)],
                )
            })
            .await
            .unwrap();
            let refused = from_sqlite(&db, &pg, 1000, |_| {}).await.unwrap_err();
            match &refused {
                StoreError::Corrupt { table, key, .. } => {
                    assert_eq!(*table, "readings");
                    assert_eq!(key, &format!("air-2/pm2_5/{}", T0 + 600));
                }
                other => panic!("{other}"),
            }
        });
    }
}

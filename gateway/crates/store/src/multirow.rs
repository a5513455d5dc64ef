//! Multi-row statements for the writer: `INSERT ... VALUES (?, ..), (?, ..) ...` over a slice,
//! in chunks whose sizes come from a fixed set, so a group commit runs a handful of prepared
//! statements instead of one per row and the statement cache holds a few shapes per table.

use rusqlite::{Statement, Transaction};

/// Chunk sizes, largest first; a remainder is split greedily (300 rows = 256 + 32 + 8 + 4).
const SIZES: [usize; 6] = [256, 64, 32, 8, 4, 1];

/// Statements the writer's connection keeps prepared (several shapes per table).
pub const STATEMENT_CACHE: usize = 128;

/// A multi-row statement: `head` (up to `VALUES`), rows of `width` parameters, then `tail`
/// (`ON CONFLICT ...`, `RETURNING ...` or nothing).
pub struct Rows<'a> {
    pub head: &'a str,
    pub width: usize,
    pub tail: &'a str,
}

impl Rows<'_> {
    fn sql(&self, rows: usize) -> String {
        let one = format!("({})", vec!["?"; self.width].join(","));
        let mut sql = String::with_capacity(self.head.len() + rows * (one.len() + 1) + 64);
        sql.push_str(self.head);
        sql.push(' ');
        for i in 0..rows {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&one);
        }
        sql.push(' ');
        sql.push_str(self.tail);
        sql
    }

    /// Runs the statement over `items`; `bind` binds one item's `width` parameters starting at
    /// the given 1-based index. `each` sees every chunk's statement after binding, and returns
    /// how many rows it changed (the caller steps it: plain execution or reading RETURNING
    /// rows). Returns the sum of what `each` returned.
    pub fn run<T>(
        &self,
        tx: &Transaction<'_>,
        items: &[T],
        mut bind: impl FnMut(&mut Statement<'_>, usize, &T) -> rusqlite::Result<()>,
        mut each: impl FnMut(&mut Statement<'_>) -> rusqlite::Result<usize>,
    ) -> rusqlite::Result<usize> {
        let mut done = 0;
        let mut rest = items;
        while !rest.is_empty() {
            let n = SIZES
                .iter()
                .copied()
                .find(|&s| s <= rest.len())
                .unwrap_or(1);
            let (chunk, tail) = rest.split_at(n);
            let mut stmt = tx.prepare_cached(&self.sql(n))?;
            for (i, item) in chunk.iter().enumerate() {
                bind(&mut stmt, 1 + i * self.width, item)?;
            }
            done += each(&mut stmt)?;
            rest = tail;
        }
        Ok(done)
    }

    /// [`Rows::run`], executing each chunk; returns the rows changed.
    pub fn execute<T>(
        &self,
        tx: &Transaction<'_>,
        items: &[T],
        bind: impl FnMut(&mut Statement<'_>, usize, &T) -> rusqlite::Result<()>,
    ) -> rusqlite::Result<usize> {
        self.run(tx, items, bind, |stmt| stmt.raw_execute())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn every_row_goes_in_whatever_the_count() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT NOT NULL)")
            .unwrap();
        let rows = Rows {
            head: "INSERT OR IGNORE INTO t (a, b) VALUES",
            width: 2,
            tail: "",
        };
        for n in [0_i64, 1, 3, 255, 256, 300, 1000] {
            let tx = conn.transaction().unwrap();
            tx.execute("DELETE FROM t", []).unwrap();
            let items: Vec<i64> = (0..n).collect();
            let changed = rows
                .execute(&tx, &items, |s, i, a| {
                    s.raw_bind_parameter(i, a)?;
                    s.raw_bind_parameter(i + 1, format!("row {a}"))
                })
                .unwrap();
            let (count, sum): (i64, i64) = tx
                .query_row("SELECT count(*), coalesce(sum(a), 0) FROM t", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .unwrap();
            assert_eq!((changed as i64, count, sum), (n, n, n * (n - 1) / 2));
            tx.commit().unwrap();
        }
    }
}

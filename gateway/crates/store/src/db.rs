//! The one handle every store function takes: a SQLite connection (the embedded default, one
//! machine) or a PostgreSQL transaction (past one machine, [`crate::pg`]). Store functions stay
//! synchronous and run on the blocking pool for both: SQLite is a synchronous library, and the
//! PostgreSQL driver (`tokio-postgres`, async) is driven from there with
//! [`tokio::runtime::Handle::block_on`], its connections living on the gateway's runtime. So a
//! function has one signature and two bodies, side by side, and its callers do not know which
//! engine answers.
//!
//! Each function matches on [`Db`] once, at its top:
//!
//! ```ignore
//! pub fn zones(db: &Db<'_>) -> Result<Vec<ZoneRow>, StoreError> {
//!     match db {
//!         Db::Sqlite(c) => { /* rusqlite, ?1 placeholders */ }
//!         Db::Pg(pg) => { /* pg.query("... $1 ...", &[&x])?, rows mapped with pg::get */ }
//!     }
//! }
//! ```

use crate::pg::Pg;

/// A store connection: SQLite, or a PostgreSQL transaction.
pub enum Db<'a> {
    /// A SQLite connection (inside a transaction when the caller opened one).
    Sqlite(&'a rusqlite::Connection),
    /// A PostgreSQL transaction ([`crate::Store::read`] opens a read-only one,
    /// [`crate::Store::write`] a read-write one that commits when the closure succeeds).
    Pg(&'a Pg<'a>),
}

impl std::fmt::Debug for Db<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Db::Sqlite(_) => "Db::Sqlite",
            Db::Pg(_) => "Db::Pg",
        })
    }
}

impl<'a> Db<'a> {
    /// The SQLite connection, for the few functions that exist only there (WAL checkpoints,
    /// the SQLite layout's own maintenance); None on PostgreSQL.
    pub fn sqlite(&self) -> Option<&'a rusqlite::Connection> {
        match self {
            Db::Sqlite(c) => Some(c),
            Db::Pg(_) => None,
        }
    }
}

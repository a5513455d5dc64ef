//! The PostgreSQL backend: past one machine, several gateway replicas share one PostgreSQL
//! server (Debian's `postgresql`) as their store. This module owns the connection pool, the
//! versioned migrations ([`schema`]) and the session type store functions query through
//! ([`Pg`]); the SQL itself lives beside the SQLite SQL in each store module.
//!
//! Driver: `tokio-postgres` with `deadpool-postgres`. Chosen over `sqlx` because it is the
//! driver alone (sqlx brings its own SQLite driver beside our rusqlite, macros and a larger
//! tree), and its pool is a thin layer with a statement cache per connection. Plain TCP
//! (`NoTls`): the server is expected on the cluster network or loopback; TLS to a remote
//! server is a follow-up.

pub mod commit_log;
pub mod copy;
pub mod lease;
pub mod schema;
#[cfg(any(test, feature = "test-support"))]
pub mod test_server;
pub mod writer;

use std::str::FromStr;
use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::runtime::Handle;
pub use tokio_postgres::types::ToSql;
pub use tokio_postgres::Row;

use crate::StoreError;

/// Connections a gateway keeps to the server (its writer, API reads, alert work).
const MAX_CONNECTIONS: usize = 12;

/// A parameter list for [`Pg`]'s queries.
pub type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

/// The PostgreSQL store: a pool and the runtime its connections live on.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    rt: Handle,
    /// The URL without its password, for logs and `/healthz`.
    shown: Arc<str>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/db`), checks that the server
    /// answers and brings the schema to [`schema::VERSION`] (under an advisory lock, so
    /// replicas starting together migrate once). Call from within the gateway's runtime.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError::Config(format!("store url: {e}")))?;
        let shown = redact(url);
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(MAX_CONNECTIONS)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .create_timeout(Some(std::time::Duration::from_secs(10)))
            .wait_timeout(Some(std::time::Duration::from_secs(30)))
            .build()
            .map_err(|e| StoreError::Config(format!("store url {shown}: {e}")))?;
        let store = Self {
            pool,
            rt: Handle::current(),
            shown: shown.into(),
        };
        store
            .run(false, schema::migrate)
            .await
            .map_err(|e| match e {
                StoreError::Pool(why) => StoreError::Pool(format!("{}: {why}", store.shown)),
                e => e,
            })?;
        Ok(store)
    }

    /// The URL without its password.
    pub fn shown_url(&self) -> &str {
        &self.shown
    }

    /// Runs `f` in a transaction (read-only when `read_only`) on the blocking pool; commits
    /// when `f` succeeds, rolls back otherwise.
    pub async fn run<T, E, F>(&self, read_only: bool, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Pg<'_>) -> Result<T, E> + Send + 'static,
    {
        let (pool, rt) = (self.pool.clone(), self.rt.clone());
        tokio::task::spawn_blocking(move || {
            let mut client = rt
                .block_on(pool.get())
                .map_err(|e| E::from(StoreError::Pool(e.to_string())))?;
            let tx = rt
                .block_on(client.build_transaction().read_only(read_only).start())
                .map_err(|e| E::from(e.into()))?;
            let session = Pg { tx, rt: rt.clone() };
            let out = f(&session);
            let Pg { tx, .. } = session;
            match out {
                Ok(v) => {
                    rt.block_on(tx.commit()).map_err(|e| E::from(e.into()))?;
                    Ok(v)
                }
                Err(e) => {
                    // Dropping the transaction rolls it back; say so explicitly to return the
                    // connection clean at once.
                    let _ = rt.block_on(tx.rollback());
                    Err(e)
                }
            }
        })
        .await
        .map_err(|e| E::from(StoreError::Task(e.to_string())))?
    }

    /// A connection of its own, outside the pool's transactions: the leader lease holds one
    /// for as long as it leads (a session advisory lock lives and dies with it).
    pub async fn session(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Pool(e.to_string()))
    }

    /// The runtime the connections live on.
    pub fn runtime(&self) -> &Handle {
        &self.rt
    }
}

/// A PostgreSQL transaction as store functions see it: synchronous calls, each one a
/// `block_on` of the driver's future on the gateway's runtime (store functions run on the
/// blocking pool, where that is allowed). Statements are prepared once per connection.
pub struct Pg<'a> {
    tx: deadpool_postgres::Transaction<'a>,
    rt: Handle,
}

impl Pg<'_> {
    /// Rows of `sql` (`$1`, `$2`... placeholders).
    pub fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, StoreError> {
        self.rt.block_on(async {
            let st = self.tx.prepare_cached(sql).await?;
            Ok(self.tx.query(&st, params).await?)
        })
    }

    /// The one row of `sql`, if any (more than one is an error).
    pub fn query_opt(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>, StoreError> {
        self.rt.block_on(async {
            let st = self.tx.prepare_cached(sql).await?;
            Ok(self.tx.query_opt(&st, params).await?)
        })
    }

    /// The one row of `sql` (none or more is an error).
    pub fn query_one(&self, sql: &str, params: Params<'_>) -> Result<Row, StoreError> {
        self.rt.block_on(async {
            let st = self.tx.prepare_cached(sql).await?;
            Ok(self.tx.query_one(&st, params).await?)
        })
    }

    /// Runs `sql`; returns the rows it changed.
    pub fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, StoreError> {
        self.rt.block_on(async {
            let st = self.tx.prepare_cached(sql).await?;
            Ok(self.tx.execute(&st, params).await?)
        })
    }

    /// Runs several `;`-separated statements without parameters (migrations).
    pub fn batch_execute(&self, sql: &str) -> Result<(), StoreError> {
        Ok(self.rt.block_on(self.tx.batch_execute(sql))?)
    }

    /// Drives any other future of the driver (COPY, pipelined statements) to completion.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The transaction itself, for what [`Self::block_on`] drives.
    pub fn tx(&self) -> &deadpool_postgres::Transaction<'_> {
        &self.tx
    }
}

/// Column `idx` of `row` as `T`; a value that does not convert is a [`StoreError::Corrupt`]
/// naming the table and the column, never a panic.
pub fn get<'r, T>(row: &'r Row, table: &'static str, idx: usize) -> Result<T, StoreError>
where
    T: tokio_postgres::types::FromSql<'r>,
{
    row.try_get(idx).map_err(|e| StoreError::Corrupt {
        table,
        key: format!("column {idx}"),
        what: e.to_string(),
    })
}

/// Column `idx`, a BIGINT that may be NULL, as the narrower integer the store's types hold
/// (PostgreSQL has no unsigned types); a value out of range is [`StoreError::Corrupt`].
pub fn get_int_opt<T: TryFrom<i64>>(
    row: &Row,
    table: &'static str,
    idx: usize,
) -> Result<Option<T>, StoreError> {
    let Some(v) = get::<Option<i64>>(row, table, idx)? else {
        return Ok(None);
    };
    T::try_from(v).map(Some).map_err(|_| StoreError::Corrupt {
        table,
        key: format!("column {idx}"),
        what: format!("{v} is out of range for {}", std::any::type_name::<T>()),
    })
}

/// [`get_int_opt`] of a NOT NULL column.
pub fn get_int<T: TryFrom<i64>>(
    row: &Row,
    table: &'static str,
    idx: usize,
) -> Result<T, StoreError> {
    get_int_opt(row, table, idx)?.ok_or_else(|| StoreError::Corrupt {
        table,
        key: format!("column {idx}"),
        what: "NULL where a value is required".into(),
    })
}

/// `url` with its password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, None), |(a, p)| (a, Some(p)));
    let shown = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{user_info}@{host}"),
        },
        None => authority.to_owned(),
    };
    match path {
        Some(p) => format!("{scheme}://{shown}/{p}"),
        None => format!("{scheme}://{shown}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_real_server_is_migrated_once_and_answers_in_transactions() {
        let Some(url) = test_server::database("pg::a_real_server_is_migrated_once") else {
            return;
        };
        // Two replicas starting together: the advisory lock makes one of them migrate.
        let (a, b) = tokio::join!(PgStore::connect(&url), PgStore::connect(&url));
        let (a, _b) = (a.unwrap(), b.unwrap());
        let versions: Vec<i64> = a
            .run(true, |pg| {
                let rows = pg.query("SELECT version FROM taza_schema ORDER BY version", &[])?;
                rows.iter().map(|r| get(r, "taza_schema", 0)).collect()
            })
            .await
            .unwrap();
        assert_eq!(versions, (1..=schema::VERSION).collect::<Vec<_>>());
        // A failing closure rolls back what it wrote.
        let failed: Result<(), StoreError> = a
            .run(false, |pg| {
                pg.execute("INSERT INTO store_meta (key, value) VALUES ('k', 'v')", &[])?;
                Err(StoreError::Task("refused".into()))
            })
            .await;
        assert!(failed.is_err());
        let left: i64 = a
            .run(true, |pg| {
                get(
                    &pg.query_one("SELECT count(*) FROM store_meta", &[])?,
                    "store_meta",
                    0,
                )
            })
            .await
            .unwrap();
        assert_eq!(left, 0);
        // A read-only transaction refuses writes.
        let refused = a
            .run(true, |pg| {
                pg.execute("INSERT INTO store_meta (key, value) VALUES ('k', 'v')", &[])
            })
            .await;
        assert!(
            matches!(refused, Err(StoreError::Postgres(_))),
            "{refused:?}"
        );
    }

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(
            redact("postgres://taza:s3cr:et@db.local:5432/taza"),
            "postgres://taza:***@db.local:5432/taza"
        );
        assert_eq!(redact("postgres://db/taza"), "postgres://db/taza");
        assert_eq!(redact("postgres://u@db"), "postgres://u@db");
    }
}

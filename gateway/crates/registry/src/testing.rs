//! Stores for this crate's tests: SQLite in a folder, and a fresh database on the test
//! PostgreSQL server (`taza_store::pg::test_server`), so one body of assertions runs on both.

#![allow(clippy::unwrap_used)]

use taza_store::Store;

/// SQLite in `dir`, created and migrated as the gateway does at start.
pub fn sqlite(dir: &std::path::Path) -> Store {
    let cfg = taza_store::config::StoreConfig {
        data_dir: dir.to_path_buf(),
        ..Default::default()
    };
    drop(taza_store::open_writer(&cfg).unwrap());
    Store::sqlite(&taza_store::db_path(&cfg)).unwrap()
}

/// A fresh PostgreSQL database, migrated; None when no server can run here (the test server
/// said SKIPPED on stderr; with `TAZA_REQUIRE_POSTGRES=1` it panics instead).
pub async fn postgres(test: &str) -> Option<Store> {
    let url = taza_store::pg::test_server::database(test)?;
    Some(postgres_at(&url).await)
}

/// Another replica's handle on the database at `url`.
pub async fn postgres_at(url: &str) -> Store {
    Store::Pg(taza_store::pg::PgStore::connect(url).await.unwrap())
}

//! The post registry's tables: `posts` (one row per post ever registered; `details` holds the
//! whole [`PostEntry`] as JSON, the other columns serve queries), `post_credentials` (MQTT
//! password hashes) and `post_audit` (who changed what, when). Every change goes through here in
//! the caller's transaction (SQLite, or PostgreSQL shared by replicas, changes one at a time under
//! [`lock`]) and leaves an audit row, whose id doubles as the registry's version (running gateways
//! reload when it moves).

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use crate::db::Db;
use crate::pg;
use crate::StoreError;
use protocol::{PostId, Quantity, UnixSeconds};
use taza_domain::calendar::{self, rfc3339};
use taza_domain::post::{PostEntry, PostKind};

/// The tables (migration 6).
pub const SCHEMA: &str = r#"
    ALTER TABLE posts ADD COLUMN details TEXT;              -- JSON of config::PostEntry
    ALTER TABLE posts ADD COLUMN retired_at INTEGER;        -- unix s; NULL while in service
    ALTER TABLE posts ADD COLUMN managed_by TEXT NOT NULL DEFAULT 'config'; -- config | registry
    CREATE TABLE post_credentials (
        post          TEXT PRIMARY KEY,
        username      TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,                       -- Mosquitto $7$ PBKDF2-SHA512
        issued_at     INTEGER NOT NULL,
        issued_by     TEXT NOT NULL
    );
    CREATE TABLE post_audit (
        id      INTEGER PRIMARY KEY,
        at      INTEGER NOT NULL,
        actor   TEXT NOT NULL,
        post    TEXT NOT NULL,
        action  TEXT NOT NULL,                             -- add | update | retire | credentials | provision | commission
        detail  TEXT NOT NULL                              -- JSON
    );
    CREATE INDEX post_audit_by_post ON post_audit (post, id);
    -- What commissioning checks in a post's live status.
    ALTER TABLE post_status ADD COLUMN clock_offset_ms INTEGER;
    ALTER TABLE post_status ADD COLUMN rssi_dbm INTEGER;
    ALTER TABLE post_status ADD COLUMN supply_mv INTEGER;
    ALTER TABLE post_status ADD COLUMN uptime_s INTEGER;
"#;

/// Who owns a post's row: the config file (rewritten at every start) or the registry commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ManagedBy {
    /// `[[posts]]` in the config file.
    Config,
    /// `gateway posts add` or the API.
    Registry,
}

impl ManagedBy {
    fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Registry => "registry",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Config, Self::Registry]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// A registered post as stored.
#[derive(Debug, Clone, Serialize)]
pub struct PostRecord {
    /// Everything the registry knows about it.
    #[serde(flatten)]
    pub entry: PostEntry,
    /// When it was retired (RFC 3339), if it was.
    pub retired_at: Option<String>,
    /// Config file or registry.
    pub managed_by: ManagedBy,
    /// MQTT user name, once credentials were issued (the hash never leaves the store).
    pub mqtt_username: Option<String>,
}

impl PostRecord {
    /// Still in service.
    pub fn active(&self) -> bool {
        self.retired_at.is_none()
    }
}

/// A post's stored MQTT credentials.
#[derive(Debug, Clone)]
pub struct StoredCredential {
    /// The post.
    pub post: PostId,
    /// User name.
    pub username: String,
    /// `$7$...` hash.
    pub password_hash: String,
}

/// One audit row.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    /// Sequence number.
    pub id: i64,
    /// When (RFC 3339).
    pub at: String,
    /// Token name, `cli:<user>` or `config`.
    pub actor: String,
    /// The post.
    pub post: String,
    /// add | update | retire | credentials | provision | commission.
    pub action: String,
    /// What changed (`before`/`after` for edits, a summary otherwise).
    pub detail: serde_json::Value,
}

/// Key of the transaction-scoped advisory lock every registry change takes on PostgreSQL
/// ([`lock`]): replicas' changes then run one at a time, as SQLite's IMMEDIATE transactions do.
pub const REGISTRY_LOCK: i64 = 0x7A5A_5245;

/// Serializes registry changes: a change reads (does the post exist? is it retired?) and then
/// writes, and two replicas must not both add the same post. On PostgreSQL it also makes audit
/// ids follow commit order, so a replica that saw version n has seen every change up to n.
/// SQLite's write transactions are already serial (the caller holds an IMMEDIATE one).
/// Idempotent within a transaction.
pub fn lock(db: &Db<'_>) -> Result<(), StoreError> {
    match db {
        Db::Sqlite(_) => Ok(()),
        Db::Pg(pg) => {
            pg.execute("SELECT pg_advisory_xact_lock($1)", &[&REGISTRY_LOCK])?;
            Ok(())
        }
    }
}

/// Every post ever registered (retired ones too), sorted by id. Rows of posts seen unregistered
/// in demo mode are left out.
pub fn all(db: &Db<'_>) -> Result<Vec<PostRecord>, StoreError> {
    select(db, None)
}

/// One post (retired or not).
pub fn get(db: &Db<'_>, post: &PostId) -> Result<Option<PostRecord>, StoreError> {
    Ok(select(db, Some(post))?.into_iter().next())
}

/// Every post, or only `post`.
fn select(db: &Db<'_>, post: Option<&PostId>) -> Result<Vec<PostRecord>, StoreError> {
    let raw = match db {
        Db::Sqlite(conn) => {
            let mut stmt = conn.prepare_cached(
                "SELECT p.id, p.kind, p.name, p.latitude, p.longitude, p.district, p.river, p.sensors,
                        p.cadence_s, p.critical_level, p.details, p.retired_at, p.managed_by, c.username
                 FROM posts p LEFT JOIN post_credentials c ON c.post = p.id
                 WHERE p.kind IN ('air', 'river') AND (?1 IS NULL OR p.id = ?1) ORDER BY p.id",
            )?;
            let rows = stmt.query_map([post.map(PostId::as_str)], |r| {
                Ok(RawRow {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    name: r.get(2)?,
                    latitude: r.get(3)?,
                    longitude: r.get(4)?,
                    district: r.get(5)?,
                    river: r.get(6)?,
                    sensors: r.get(7)?,
                    cadence_s: r.get(8)?,
                    critical_level: r.get(9)?,
                    details: r.get(10)?,
                    retired_at: r.get(11)?,
                    managed_by: r.get(12)?,
                    username: r.get(13)?,
                })
            })?;
            rows.collect::<Result<Vec<_>, _>>()?
        }
        // Byte order, as SQLite sorts (the database's collation may not).
        Db::Pg(pg) => {
            let rows = pg.query(
                "SELECT p.id, p.kind, p.name, p.latitude, p.longitude, p.district, p.river, p.sensors,
                        p.cadence_s, p.critical_level, p.details, p.retired_at, p.managed_by, c.username
                 FROM posts p LEFT JOIN post_credentials c ON c.post = p.id
                 WHERE p.kind IN ('air', 'river') AND ($1::text IS NULL OR p.id = $1::text)
                 ORDER BY p.id COLLATE \"C\"",
                &[&post.map(PostId::as_str)],
            )?;
            rows.iter()
                .map(|r| {
                    Ok(RawRow {
                        id: pg::get(r, "posts", 0)?,
                        kind: pg::get(r, "posts", 1)?,
                        name: pg::get(r, "posts", 2)?,
                        latitude: pg::get(r, "posts", 3)?,
                        longitude: pg::get(r, "posts", 4)?,
                        district: pg::get(r, "posts", 5)?,
                        river: pg::get(r, "posts", 6)?,
                        sensors: pg::get(r, "posts", 7)?,
                        cadence_s: pg::get(r, "posts", 8)?,
                        critical_level: pg::get(r, "posts", 9)?,
                        details: pg::get(r, "posts", 10)?,
                        retired_at: pg::get(r, "posts", 11)?,
                        managed_by: pg::get(r, "posts", 12)?,
                        username: pg::get(r, "posts", 13)?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?
        }
    };
    let mut out = Vec::new();
    for row in raw {
        match row.into_record()? {
            Some(rec) => out.push(rec),
            None => tracing::warn!("registry row with an invalid id skipped"),
        }
    }
    Ok(out)
}

struct RawRow {
    id: String,
    kind: String,
    name: String,
    latitude: Option<f64>,
    longitude: Option<f64>,
    district: Option<String>,
    river: Option<String>,
    sensors: String,
    cadence_s: i64,
    critical_level: Option<String>,
    details: Option<String>,
    retired_at: Option<i64>,
    managed_by: String,
    username: Option<String>,
}

impl RawRow {
    /// The record, or None for a row whose id is not a post id (nothing this gateway wrote).
    /// A value that does not read back is an error naming the post, never a default.
    fn into_record(self) -> Result<Option<PostRecord>, StoreError> {
        let Ok(id) = PostId::parse(&self.id) else {
            return Ok(None);
        };
        let corrupt = |what: String| StoreError::Corrupt {
            table: "posts",
            key: id.to_string(),
            what,
        };
        // Rows written before the registry kept `details` are rebuilt from their columns.
        let entry = match self.details.as_deref() {
            Some(details) => serde_json::from_str::<PostEntry>(details)
                .map_err(|e| corrupt(format!("details: {e}")))?,
            None => {
                let kind = self
                    .kind
                    .parse::<PostKind>()
                    .map_err(|e| corrupt(format!("kind: {e}")))?;
                let mut e = PostEntry::new(
                    id.clone(),
                    kind,
                    self.name,
                    self.latitude.unwrap_or(f64::NAN),
                    self.longitude.unwrap_or(f64::NAN),
                );
                e.district = self.district;
                e.river = self.river;
                e.sensors = serde_json::from_str::<Vec<String>>(&self.sensors)
                    .map_err(|err| corrupt(format!("sensors: {err}")))?
                    .iter()
                    // A quantity this build does not know was written by a newer gateway.
                    .filter_map(|q| Quantity::parse(q))
                    .collect();
                e.cadence = u64::try_from(self.cadence_s)
                    .ok()
                    .map(std::time::Duration::from_secs);
                e.critical_level = self
                    .critical_level
                    .map(|c| serde_json::from_str(&c))
                    .transpose()
                    .map_err(|err| corrupt(format!("critical_level: {err}")))?;
                e
            }
        };
        let managed_by = ManagedBy::parse(&self.managed_by)
            .ok_or_else(|| corrupt(format!("managed_by: {:?}", self.managed_by)))?;
        Ok(Some(PostRecord {
            entry,
            retired_at: self.retired_at.map(|t| rfc3339(UnixSeconds(t))),
            managed_by,
            mqtt_username: self.username,
        }))
    }
}

/// Writes `entry` (insert or replace), un-retiring nothing: the caller decides.
pub fn write(
    db: &Db<'_>,
    entry: &PostEntry,
    managed_by: ManagedBy,
    default_cadence: std::time::Duration,
) -> Result<(), StoreError> {
    let sensors: Vec<&str> = entry.quantities().iter().map(|q| q.as_str()).collect();
    let sensors = serde_json::to_string(&sensors).unwrap_or_else(|_| "[]".into());
    let details = serde_json::to_string(entry).map_err(|e| StoreError::Task(e.to_string()))?;
    let cadence_s =
        i64::try_from(entry.cadence.unwrap_or(default_cadence).as_secs()).unwrap_or(i64::MAX);
    let critical_level = entry
        .critical_level
        .as_ref()
        .and_then(|c| serde_json::to_string(c).ok());
    let now = calendar::now().0;
    match db {
        Db::Sqlite(c) => {
            c.prepare_cached(
                "INSERT INTO posts (id, kind, name, latitude, longitude, district, river, sensors, cadence_s,
                                    updated_at, critical_level, details, managed_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                 ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, name = excluded.name,
                   latitude = excluded.latitude, longitude = excluded.longitude, district = excluded.district,
                   river = excluded.river, sensors = excluded.sensors, cadence_s = excluded.cadence_s,
                   critical_level = excluded.critical_level, details = excluded.details,
                   managed_by = excluded.managed_by, updated_at = excluded.updated_at",
            )?
            .execute(params![
                entry.id.as_str(),
                entry.kind.as_str(),
                entry.name,
                entry.latitude,
                entry.longitude,
                entry.district,
                entry.river,
                sensors,
                cadence_s,
                now,
                critical_level,
                details,
                managed_by.as_str(),
            ])?;
        }
        Db::Pg(pg) => {
            pg.execute(
                "INSERT INTO posts (id, kind, name, latitude, longitude, district, river, sensors, cadence_s,
                                    updated_at, critical_level, details, managed_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, name = excluded.name,
                   latitude = excluded.latitude, longitude = excluded.longitude, district = excluded.district,
                   river = excluded.river, sensors = excluded.sensors, cadence_s = excluded.cadence_s,
                   critical_level = excluded.critical_level, details = excluded.details,
                   managed_by = excluded.managed_by, updated_at = excluded.updated_at",
                &[
                    &entry.id.as_str(),
                    &entry.kind.as_str(),
                    &entry.name,
                    &entry.latitude,
                    &entry.longitude,
                    &entry.district,
                    &entry.river,
                    &sensors,
                    &cadence_s,
                    &now,
                    &critical_level,
                    &details,
                    &managed_by.as_str(),
                ],
            )?;
        }
    }
    Ok(())
}

/// Marks `post` retired and deletes its credentials (it can no longer log in).
pub fn retire(db: &Db<'_>, post: &PostId) -> Result<(), StoreError> {
    let now = calendar::now().0;
    match db {
        Db::Sqlite(c) => {
            c.prepare_cached("UPDATE posts SET retired_at = ?2, updated_at = ?2 WHERE id = ?1")?
                .execute(params![post.as_str(), now])?;
            c.prepare_cached("DELETE FROM post_credentials WHERE post = ?1")?
                .execute([post.as_str()])?;
        }
        Db::Pg(pg) => {
            pg.execute(
                "UPDATE posts SET retired_at = $2, updated_at = $2 WHERE id = $1",
                &[&post.as_str(), &now],
            )?;
            pg.execute(
                "DELETE FROM post_credentials WHERE post = $1",
                &[&post.as_str()],
            )?;
        }
    }
    Ok(())
}

/// Stores (or replaces) `post`'s credentials.
pub fn set_credential(
    db: &Db<'_>,
    post: &PostId,
    username: &str,
    password_hash: &str,
    actor: &str,
) -> Result<(), StoreError> {
    let now = calendar::now().0;
    match db {
        Db::Sqlite(c) => {
            c.prepare_cached(
                "INSERT INTO post_credentials (post, username, password_hash, issued_at, issued_by)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (post) DO UPDATE SET username = excluded.username,
                   password_hash = excluded.password_hash, issued_at = excluded.issued_at,
                   issued_by = excluded.issued_by",
            )?
            .execute(params![post.as_str(), username, password_hash, now, actor])?;
        }
        Db::Pg(pg) => {
            pg.execute(
                "INSERT INTO post_credentials (post, username, password_hash, issued_at, issued_by)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (post) DO UPDATE SET username = excluded.username,
                   password_hash = excluded.password_hash, issued_at = excluded.issued_at,
                   issued_by = excluded.issued_by",
                &[&post.as_str(), &username, &password_hash, &now, &actor],
            )?;
        }
    }
    Ok(())
}

/// Credentials of posts in service.
pub fn credentials(db: &Db<'_>) -> Result<Vec<StoredCredential>, StoreError> {
    let rows: Vec<(String, String, String)> = match db {
        Db::Sqlite(conn) => {
            let mut stmt = conn.prepare_cached(
                "SELECT c.post, c.username, c.password_hash FROM post_credentials c
                 JOIN posts p ON p.id = c.post WHERE p.retired_at IS NULL ORDER BY c.username",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect::<Result<_, _>>()?
        }
        // Byte order, as SQLite sorts (the database's collation may not).
        Db::Pg(pg) => pg
            .query(
                "SELECT c.post, c.username, c.password_hash FROM post_credentials c
                 JOIN posts p ON p.id = c.post WHERE p.retired_at IS NULL
                 ORDER BY c.username COLLATE \"C\"",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok((
                    pg::get(r, "post_credentials", 0)?,
                    pg::get(r, "post_credentials", 1)?,
                    pg::get(r, "post_credentials", 2)?,
                ))
            })
            .collect::<Result<_, StoreError>>()?,
    };
    let mut out = Vec::new();
    for (post, username, password_hash) in rows {
        if let Ok(post) = PostId::parse(&post) {
            out.push(StoredCredential {
                post,
                username,
                password_hash,
            });
        }
    }
    Ok(out)
}

/// Appends an audit row (on PostgreSQL under [`lock`], numbered max + 1 so that ids follow
/// commit order and the version never skips a change still being committed).
pub fn audit(
    db: &Db<'_>,
    actor: &str,
    post: &PostId,
    action: &str,
    detail: &serde_json::Value,
) -> Result<(), StoreError> {
    let (now, detail) = (calendar::now().0, detail.to_string());
    match db {
        Db::Sqlite(c) => {
            c.prepare_cached(
                "INSERT INTO post_audit (at, actor, post, action, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![now, actor, post.as_str(), action, detail])?;
        }
        Db::Pg(pg) => {
            lock(db)?;
            pg.execute(
                "INSERT INTO post_audit (id, at, actor, post, action, detail)
                 SELECT coalesce(max(id), 0) + 1, $1, $2, $3, $4, $5 FROM post_audit",
                &[&now, &actor, &post.as_str(), &action, &detail],
            )?;
        }
    }
    Ok(())
}

/// `post`'s audit trail, oldest first (every post's when `post` is None), at most `limit` rows
/// from the newest.
pub fn audit_trail(
    db: &Db<'_>,
    post: Option<&PostId>,
    limit: usize,
) -> Result<Vec<AuditEntry>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let post = post.map(|p| p.as_str());
    let rows: Vec<(i64, i64, String, String, String, String)> = match db {
        Db::Sqlite(conn) => {
            let mut stmt = conn.prepare_cached(
                "SELECT id, at, actor, post, action, detail FROM post_audit
                 WHERE ?1 IS NULL OR post = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![post, limit], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?;
            rows.collect::<Result<_, _>>()?
        }
        Db::Pg(pg) => pg
            .query(
                "SELECT id, at, actor, post, action, detail FROM post_audit
                 WHERE $1::text IS NULL OR post = $1::text ORDER BY id DESC LIMIT $2",
                &[&post, &limit],
            )?
            .iter()
            .map(|r| {
                Ok((
                    pg::get(r, "post_audit", 0)?,
                    pg::get(r, "post_audit", 1)?,
                    pg::get(r, "post_audit", 2)?,
                    pg::get(r, "post_audit", 3)?,
                    pg::get(r, "post_audit", 4)?,
                    pg::get(r, "post_audit", 5)?,
                ))
            })
            .collect::<Result<_, StoreError>>()?,
    };
    Ok(rows
        .into_iter()
        .rev()
        .map(|(id, at, actor, post, action, detail)| AuditEntry {
            id,
            at: rfc3339(UnixSeconds(at)),
            actor,
            post,
            action,
            detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
        })
        .collect())
}

/// The registry's version: the newest audit row's id (0 before any change). One index lookup:
/// running gateways poll it every second ([`REGISTRY_LOCK`] keeps it in commit order on
/// PostgreSQL).
pub fn version(db: &Db<'_>) -> Result<i64, StoreError> {
    match db {
        Db::Sqlite(c) => Ok(c
            .prepare_cached("SELECT max(id) FROM post_audit")?
            .query_row([], |r| r.get::<_, Option<i64>>(0))
            .optional()?
            .flatten()
            .unwrap_or(0)),
        Db::Pg(pg) => {
            let row = pg.query_one("SELECT max(id) FROM post_audit", &[])?;
            Ok(pg::get::<Option<i64>>(&row, "post_audit", 0)?.unwrap_or(0))
        }
    }
}

/// The registry as the running gateway admits by: posts in service and their credentials, with
/// the version read first (a change landing during the read is picked up next time).
pub fn snapshot(db: &Db<'_>) -> Result<taza_domain::registry::Snapshot, StoreError> {
    let version = version(db)?;
    let posts = all(db)?
        .into_iter()
        .filter(|p| p.active())
        .map(|p| p.entry)
        .collect();
    let credentials = credentials(db)?
        .into_iter()
        .filter_map(|c| {
            let hash = taza_domain::credentials::PasswordHash::parse(&c.password_hash);
            if hash.is_none() {
                tracing::warn!(post = %c.post, "stored MQTT password hash unreadable; post cannot log in");
            }
            Some(taza_domain::registry::Credential {
                username: c.username,
                post: c.post,
                hash: hash?,
            })
        })
        .collect();
    Ok(taza_domain::registry::Snapshot {
        posts,
        credentials,
        version,
    })
}

/// This module's tables on PostgreSQL ([`crate::pg::schema`]): SQLite's after all its
/// migrations (1, 3 and 6 for `posts`), column for column, so `gateway migrate` copies them as
/// they are. `post_audit.id` has no sequence: [`audit`] numbers rows under [`REGISTRY_LOCK`],
/// so ids follow commit order and a copied trail keeps its ids.
pub const PG_SCHEMA: &str = r#"
    CREATE TABLE posts (
        id             TEXT PRIMARY KEY,
        kind           TEXT NOT NULL,                -- air | river | unregistered
        name           TEXT NOT NULL,
        latitude       DOUBLE PRECISION,
        longitude      DOUBLE PRECISION,
        district       TEXT,
        river          TEXT,
        sensors        TEXT NOT NULL DEFAULT '[]',   -- JSON array of quantity names
        cadence_s      BIGINT NOT NULL,
        updated_at     BIGINT NOT NULL,
        critical_level TEXT,                         -- JSON of score::input::CriticalLevel
        details        TEXT,                         -- JSON of config::PostEntry
        retired_at     BIGINT,                       -- unix s; NULL while in service
        managed_by     TEXT NOT NULL DEFAULT 'config' -- config | registry
    );
    CREATE TABLE post_credentials (
        post          TEXT PRIMARY KEY,
        username      TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,                 -- Mosquitto $7$ PBKDF2-SHA512
        issued_at     BIGINT NOT NULL,
        issued_by     TEXT NOT NULL
    );
    CREATE TABLE post_audit (
        id     BIGINT PRIMARY KEY,
        at     BIGINT NOT NULL,
        actor  TEXT NOT NULL,
        post   TEXT NOT NULL,
        action TEXT NOT NULL,                        -- add | update | retire | credentials | provision | commission
        detail TEXT NOT NULL                         -- JSON
    );
    CREATE INDEX post_audit_by_post ON post_audit (post, id);
"#;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    use serde_json::json;
    use taza_domain::credentials::PasswordHash;

    use crate::pg::{test_server, PgStore};
    use crate::schema::in_memory;
    use crate::Store;

    const ID: &str = "alm-air-900";
    const MIN: Duration = Duration::from_secs(60);

    fn id() -> PostId {
        PostId::parse(ID).unwrap()
    }

    fn entry() -> PostEntry {
        let mut entry = PostEntry::new(id(), PostKind::Air, "x", 43.2, 76.9);
        entry.sensors = vec![Quantity::Pm2_5, Quantity::No2];
        entry.district = Some("Алмалинский".into());
        entry
    }

    /// SQLite in `dir`, created and migrated as the gateway does at start.
    fn sqlite(dir: &std::path::Path) -> Store {
        let cfg = crate::config::StoreConfig {
            data_dir: dir.to_path_buf(),
            ..Default::default()
        };
        drop(crate::open_writer(&cfg).unwrap());
        Store::sqlite(&crate::db_path(&cfg)).unwrap()
    }

    /// A fresh PostgreSQL database, or None when no server can run here (said on stderr).
    async fn postgres(test: &str) -> Option<Store> {
        let url = test_server::database(test)?;
        Some(Store::Pg(PgStore::connect(&url).await.unwrap()))
    }

    /// Runs SQL without parameters on either backend (hand edits of the tests).
    fn exec(db: &Db<'_>, sql: &str) -> Result<(), StoreError> {
        match db {
            Db::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Db::Pg(pg) => pg.batch_execute(sql),
        }
    }

    async fn set(store: &Store, sql: &str) {
        let sql = sql.to_string();
        store.write(move |db| exec(db, &sql)).await.unwrap();
    }

    async fn read<T: Send + 'static>(
        store: &Store,
        f: impl FnOnce(&Db<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        store.read(f).await
    }

    /// What every registry change must do, the same on both backends.
    async fn changes_are_stored_audited_and_move_the_version(store: &Store) {
        assert_eq!(read(store, version).await.unwrap(), 0);
        assert!(read(store, snapshot).await.unwrap().posts.is_empty());

        let e = entry();
        store
            .write(move |db| {
                write(db, &e, ManagedBy::Registry, MIN)?;
                audit(db, "cli:aigerim", &e.id, "add", &json!({ "after": e.name }))
            })
            .await
            .unwrap();
        let added = read(store, version).await.unwrap();
        assert!(added > 0);
        let rec = read(store, |db| get(db, &id())).await.unwrap().unwrap();
        assert_eq!(rec.entry.sensors, [Quantity::Pm2_5, Quantity::No2]);
        assert_eq!(rec.entry.district.as_deref(), Some("Алмалинский"));
        assert_eq!(rec.managed_by, ManagedBy::Registry);
        assert!(rec.active() && rec.mqtt_username.is_none());

        // Replace: the same row, new details and owner.
        let mut moved = entry();
        moved.latitude = 43.25;
        moved.cadence = Some(Duration::from_secs(300));
        store
            .write(move |db| {
                write(db, &moved, ManagedBy::Config, MIN)?;
                audit(db, "config", &moved.id, "update", &json!({ "lat": 43.25 }))
            })
            .await
            .unwrap();
        let all_posts = read(store, all).await.unwrap();
        assert_eq!(all_posts.len(), 1);
        assert_eq!(all_posts[0].entry.latitude, 43.25);
        assert_eq!(all_posts[0].entry.cadence, Some(Duration::from_secs(300)));
        assert_eq!(all_posts[0].managed_by, ManagedBy::Config);

        // Credentials: stored, replaced, listed, and admitted by the snapshot.
        let hash = PasswordHash::new("first password").unwrap();
        let second = PasswordHash::new("second password").unwrap();
        let (h1, h2) = (hash.as_str().to_string(), second.as_str().to_string());
        store
            .write(move |db| {
                set_credential(db, &id(), ID, &h1, "cli:aigerim")?;
                set_credential(db, &id(), ID, &h2, "cli:aigerim")?;
                audit(db, "cli:aigerim", &id(), "credentials", &json!({}))
            })
            .await
            .unwrap();
        let creds = read(store, credentials).await.unwrap();
        assert_eq!(creds.len(), 1);
        assert_eq!(
            (creds[0].post.as_str(), creds[0].username.as_str()),
            (ID, ID)
        );
        assert_eq!(creds[0].password_hash, second.as_str());
        let snap = read(store, snapshot).await.unwrap();
        assert_eq!(snap.posts.len(), 1);
        assert_eq!(snap.credentials.len(), 1);
        assert_eq!(snap.version, read(store, version).await.unwrap());
        let rec = read(store, |db| get(db, &id())).await.unwrap().unwrap();
        assert_eq!(rec.mqtt_username.as_deref(), Some(ID));

        // A change whose transaction fails leaves neither the row nor the audit behind.
        let before = read(store, version).await.unwrap();
        let refused: Result<(), StoreError> = store
            .write(|db| {
                let other = PostEntry::new(
                    PostId::parse("alm-air-901").unwrap(),
                    PostKind::Air,
                    "y",
                    43.2,
                    76.9,
                );
                write(db, &other, ManagedBy::Registry, MIN)?;
                audit(db, "t", &other.id, "add", &json!({}))?;
                Err(StoreError::Task("refused".into()))
            })
            .await;
        assert!(refused.is_err());
        assert_eq!(read(store, version).await.unwrap(), before);
        assert_eq!(read(store, all).await.unwrap().len(), 1);

        // Retire: kept in the registry, out of the snapshot, credentials gone.
        store
            .write(|db| {
                retire(db, &id())?;
                audit(
                    db,
                    "token:admin",
                    &id(),
                    "retire",
                    &json!({ "reason": "stolen" }),
                )
            })
            .await
            .unwrap();
        let rec = read(store, |db| get(db, &id())).await.unwrap().unwrap();
        assert!(!rec.active() && rec.retired_at.is_some());
        assert!(rec.mqtt_username.is_none());
        assert!(read(store, credentials).await.unwrap().is_empty());
        let snap = read(store, snapshot).await.unwrap();
        assert!(snap.posts.is_empty() && snap.credentials.is_empty());

        // The trail: oldest first, filtered by post, the newest `limit`, ids as the version.
        let trail = read(store, |db| audit_trail(db, Some(&id()), 100))
            .await
            .unwrap();
        let actions: Vec<(&str, &str)> = trail
            .iter()
            .map(|a| (a.action.as_str(), a.actor.as_str()))
            .collect();
        assert_eq!(
            actions,
            [
                ("add", "cli:aigerim"),
                ("update", "config"),
                ("credentials", "cli:aigerim"),
                ("retire", "token:admin")
            ]
        );
        assert_eq!(trail[0].detail["after"], "x");
        assert_eq!(trail[3].detail["reason"], "stolen");
        assert!(trail.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(trail[3].id, read(store, version).await.unwrap());
        let newest = read(store, |db| audit_trail(db, None, 2)).await.unwrap();
        assert_eq!(
            newest.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(),
            ["credentials", "retire"]
        );
        let other = PostId::parse("alm-air-901").unwrap();
        assert!(read(store, move |db| audit_trail(db, Some(&other), 10))
            .await
            .unwrap()
            .is_empty());

        // Posts seen unregistered in demo mode are not registry records.
        set(
            store,
            "INSERT INTO posts (id, kind, name, cadence_s, updated_at)
             VALUES ('alm-air-999', 'unregistered', 'alm-air-999', 60, 0)",
        )
        .await;
        assert_eq!(read(store, all).await.unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn changes_are_stored_audited_and_move_the_version_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        changes_are_stored_audited_and_move_the_version(&sqlite(dir.path())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn changes_are_stored_audited_and_move_the_version_on_postgres() {
        let Some(store) = postgres("registry::changes_are_stored_audited").await else {
            return;
        };
        changes_are_stored_audited_and_move_the_version(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn on_postgres_audit_ids_follow_commit_order_across_replicas() {
        let Some(url) = test_server::database("registry::audit_ids_follow_commit_order") else {
            return;
        };
        let a = Store::Pg(PgStore::connect(&url).await.unwrap());
        let b = Store::Pg(PgStore::connect(&url).await.unwrap());
        // Replica A's change is still being committed when replica B's starts: B must wait
        // for A, not number its row past A's uncommitted one (a reader seeing B's id would
        // take it for a version that includes A's change, and never reload for it).
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let slow = tokio::spawn({
            let a = a.clone();
            async move {
                a.write(move |db| {
                    audit(db, "replica-a", &id(), "add", &json!({}))?;
                    let _ = started_tx.send(());
                    std::thread::sleep(Duration::from_millis(400));
                    Ok::<_, StoreError>(())
                })
                .await
            }
        });
        started_rx.await.unwrap();
        assert_eq!(
            read(&b, version).await.unwrap(),
            0,
            "an uncommitted change is not a version"
        );
        b.write(|db| audit(db, "replica-b", &id(), "update", &json!({})))
            .await
            .unwrap();
        slow.await.unwrap().unwrap();
        let trail = read(&b, |db| audit_trail(db, None, 10)).await.unwrap();
        let rows: Vec<(i64, &str)> = trail.iter().map(|a| (a.id, a.actor.as_str())).collect();
        assert_eq!(rows, [(1, "replica-a"), (2, "replica-b")]);
    }

    /// A stored post with columns edited by hand as `set` says, on both backends.
    async fn corrupted(store: &Store, set_sql: &str) {
        let e = entry();
        store
            .write(move |db| write(db, &e, ManagedBy::Registry, MIN))
            .await
            .unwrap();
        set(
            store,
            &format!("UPDATE posts SET {set_sql} WHERE id = '{ID}'"),
        )
        .await;
    }

    fn names_the_post(err: StoreError, what: &str) {
        let text = err.to_string();
        assert!(
            matches!(&err, StoreError::Corrupt { table: "posts", key, .. } if key == ID),
            "{err:?}"
        );
        assert!(text.contains(ID) && text.contains(what), "{text}");
    }

    /// Rows that do not read back as written: errors naming the post, never defaults.
    async fn hand_edited_rows_are_rebuilt_or_refused(stores: impl Fn() -> Store) {
        let store = stores();
        corrupted(&store, "details = NULL, kind = 'river', river = 'Есентай'").await;
        let rec = read(&store, |db| get(db, &id())).await.unwrap().unwrap();
        assert_eq!(rec.entry.kind, PostKind::River);
        assert_eq!(rec.entry.river.as_deref(), Some("Есентай"));
        assert_eq!(rec.entry.sensors, [Quantity::Pm2_5, Quantity::No2]);
        assert_eq!(rec.managed_by, ManagedBy::Registry);

        let store = stores();
        corrupted(&store, "details = NULL, sensors = 'pm2_5,no2'").await;
        names_the_post(
            read(&store, |db| get(db, &id())).await.unwrap_err(),
            "sensors",
        );
        names_the_post(read(&store, all).await.unwrap_err(), "sensors");

        let store = stores();
        corrupted(&store, "details = '{\"id\": \"alm-air-900\"'").await;
        names_the_post(
            read(&store, |db| get(db, &id())).await.unwrap_err(),
            "details",
        );
        // The running gateway's copy refuses to load rather than admit a post without its
        // calibration.
        names_the_post(read(&store, snapshot).await.unwrap_err(), "details");

        let store = stores();
        corrupted(&store, "managed_by = 'nobody'").await;
        names_the_post(
            read(&store, |db| get(db, &id())).await.unwrap_err(),
            "managed_by",
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hand_edited_rows_are_rebuilt_or_refused_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let next = std::sync::atomic::AtomicU32::new(0);
        hand_edited_rows_are_rebuilt_or_refused(|| {
            let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            sqlite(&dir.path().join(n.to_string()))
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hand_edited_rows_are_rebuilt_or_refused_on_postgres() {
        let mut stores = Vec::new();
        for i in 0..4 {
            match postgres(&format!("registry::hand_edited_rows_{i}")).await {
                Some(s) => stores.push(s),
                None => return,
            }
        }
        let stores = std::sync::Mutex::new(stores);
        hand_edited_rows_are_rebuilt_or_refused(|| stores.lock().unwrap().remove(0)).await;
    }

    #[test]
    fn corrupt_sensors_are_an_error_in_the_post_list_too() {
        let conn = in_memory();
        let db = Db::Sqlite(&conn);
        write(&db, &entry(), ManagedBy::Registry, MIN).unwrap();
        conn.execute(
            "UPDATE posts SET details = NULL, sensors = 'pm2_5,no2' WHERE id = ?1",
            [ID],
        )
        .unwrap();
        names_the_post(crate::read::posts(&db).unwrap_err(), "sensors");
    }
}

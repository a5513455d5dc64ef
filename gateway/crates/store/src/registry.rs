//! The post registry's tables: `posts` (one row per post ever registered; `details` holds the
//! whole [`PostEntry`] as JSON, the other columns serve queries), `post_credentials` (MQTT
//! password hashes) and `post_audit` (who changed what, when). Every change goes through here in
//! the caller's transaction and leaves an audit row, whose id doubles as the registry's version
//! (running gateways reload when it moves).

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;

use super::StoreError;
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

/// Every post ever registered (retired ones too), sorted by id. Rows of posts seen unregistered
/// in demo mode are left out.
pub fn all(conn: &Connection) -> Result<Vec<PostRecord>, StoreError> {
    select(conn, None)
}

/// One post (retired or not).
pub fn get(conn: &Connection, post: &PostId) -> Result<Option<PostRecord>, StoreError> {
    Ok(select(conn, Some(post))?.into_iter().next())
}

/// Every post, or only `post`.
fn select(conn: &Connection, post: Option<&PostId>) -> Result<Vec<PostRecord>, StoreError> {
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
    let mut out = Vec::new();
    for row in rows {
        match row?.into_record()? {
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
    tx: &Transaction<'_>,
    entry: &PostEntry,
    managed_by: ManagedBy,
    default_cadence: std::time::Duration,
) -> Result<(), StoreError> {
    let sensors: Vec<&str> = entry.quantities().iter().map(|q| q.as_str()).collect();
    let details = serde_json::to_string(entry).map_err(|e| StoreError::Task(e.to_string()))?;
    tx.prepare_cached(
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
        serde_json::to_string(&sensors).unwrap_or_else(|_| "[]".into()),
        entry.cadence.unwrap_or(default_cadence).as_secs() as i64,
        calendar::now().0,
        entry
            .critical_level
            .as_ref()
            .and_then(|c| serde_json::to_string(c).ok()),
        details,
        managed_by.as_str(),
    ])?;
    Ok(())
}

/// Marks `post` retired and deletes its credentials (it can no longer log in).
pub fn retire(tx: &Transaction<'_>, post: &PostId) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE posts SET retired_at = ?2, updated_at = ?2 WHERE id = ?1")?
        .execute(params![post.as_str(), calendar::now().0])?;
    tx.prepare_cached("DELETE FROM post_credentials WHERE post = ?1")?
        .execute([post.as_str()])?;
    Ok(())
}

/// Stores (or replaces) `post`'s credentials.
pub fn set_credential(
    tx: &Transaction<'_>,
    post: &PostId,
    username: &str,
    password_hash: &str,
    actor: &str,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO post_credentials (post, username, password_hash, issued_at, issued_by)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (post) DO UPDATE SET username = excluded.username,
           password_hash = excluded.password_hash, issued_at = excluded.issued_at,
           issued_by = excluded.issued_by",
    )?
    .execute(params![
        post.as_str(),
        username,
        password_hash,
        calendar::now().0,
        actor
    ])?;
    Ok(())
}

/// Credentials of posts in service.
pub fn credentials(conn: &Connection) -> Result<Vec<StoredCredential>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT c.post, c.username, c.password_hash FROM post_credentials c
         JOIN posts p ON p.id = c.post WHERE p.retired_at IS NULL ORDER BY c.username",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (post, username, password_hash) = row?;
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

/// Appends an audit row.
pub fn audit(
    tx: &Transaction<'_>,
    actor: &str,
    post: &PostId,
    action: &str,
    detail: &serde_json::Value,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO post_audit (at, actor, post, action, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        calendar::now().0,
        actor,
        post.as_str(),
        action,
        detail.to_string()
    ])?;
    Ok(())
}

/// `post`'s audit trail, oldest first (every post's when `post` is None), at most `limit` rows
/// from the newest.
pub fn audit_trail(
    conn: &Connection,
    post: Option<&PostId>,
    limit: usize,
) -> Result<Vec<AuditEntry>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, actor, post, action, detail FROM post_audit
         WHERE ?1 IS NULL OR post = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![post.map(|p| p.as_str()), limit as i64], |r| {
        let detail: String = r.get(5)?;
        Ok(AuditEntry {
            id: r.get(0)?,
            at: rfc3339(UnixSeconds(r.get(1)?)),
            actor: r.get(2)?,
            post: r.get(3)?,
            action: r.get(4)?,
            detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
        })
    })?;
    let mut out: Vec<AuditEntry> = rows.collect::<Result<_, _>>()?;
    out.reverse();
    Ok(out)
}

/// The registry's version: the newest audit row's id (0 before any change).
pub fn version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT max(id) FROM post_audit")?
        .query_row([], |r| r.get::<_, Option<i64>>(0))
        .optional()?
        .flatten()
        .unwrap_or(0))
}

/// The registry as the running gateway admits by: posts in service and their credentials, with
/// the version read first (a change landing during the read is picked up next time).
pub fn snapshot(conn: &Connection) -> Result<taza_domain::registry::Snapshot, StoreError> {
    let version = version(conn)?;
    let posts = all(conn)?
        .into_iter()
        .filter(|p| p.active())
        .map(|p| p.entry)
        .collect();
    let credentials = credentials(conn)?
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

/// This module's tables on PostgreSQL ([`crate::pg::schema`]).
pub const PG_SCHEMA: &str = "";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    use crate::schema::in_memory;

    const ID: &str = "alm-air-900";

    fn stored() -> Connection {
        let mut conn = in_memory();
        let mut entry = PostEntry::new(PostId::parse(ID).unwrap(), PostKind::Air, "x", 43.2, 76.9);
        entry.sensors = vec![Quantity::Pm2_5, Quantity::No2];
        let tx = conn.transaction().unwrap();
        write(&tx, &entry, ManagedBy::Registry, Duration::from_secs(60)).unwrap();
        tx.commit().unwrap();
        conn
    }

    fn corrupt(conn: &Connection, set: &str) {
        conn.execute(&format!("UPDATE posts SET {set} WHERE id = ?1"), [ID])
            .unwrap();
    }

    fn names_the_post(err: StoreError, what: &str) {
        let text = err.to_string();
        assert!(
            matches!(&err, StoreError::Corrupt { table: "posts", key, .. } if key == ID),
            "{err:?}"
        );
        assert!(text.contains(ID) && text.contains(what), "{text}");
    }

    #[test]
    fn rows_from_before_details_are_rebuilt_from_their_columns() {
        let conn = stored();
        corrupt(&conn, "details = NULL, kind = 'river', river = 'Есентай'");
        let rec = get(&conn, &PostId::parse(ID).unwrap()).unwrap().unwrap();
        assert_eq!(rec.entry.kind, PostKind::River);
        assert_eq!(rec.entry.sensors, [Quantity::Pm2_5, Quantity::No2]);
        assert_eq!(rec.managed_by, ManagedBy::Registry);
    }

    #[test]
    fn corrupt_sensors_are_an_error_naming_the_post_not_an_empty_list() {
        let conn = stored();
        corrupt(&conn, "details = NULL, sensors = 'pm2_5,no2'");
        names_the_post(
            get(&conn, &PostId::parse(ID).unwrap()).unwrap_err(),
            "sensors",
        );
        names_the_post(all(&conn).unwrap_err(), "sensors");
        names_the_post(crate::read::posts(&conn).unwrap_err(), "sensors");
    }

    #[test]
    fn corrupt_details_are_an_error_not_a_rebuild_from_the_columns() {
        let conn = stored();
        corrupt(&conn, "details = '{\"id\": \"alm-air-900\"'");
        names_the_post(
            get(&conn, &PostId::parse(ID).unwrap()).unwrap_err(),
            "details",
        );
        // The running gateway's copy refuses to load rather than admit a post without its
        // calibration.
        names_the_post(snapshot(&conn).unwrap_err(), "details");
    }

    #[test]
    fn an_unknown_owner_is_an_error_naming_the_post() {
        let conn = stored();
        corrupt(&conn, "managed_by = 'nobody'");
        names_the_post(
            get(&conn, &PostId::parse(ID).unwrap()).unwrap_err(),
            "managed_by",
        );
    }
}

//! What commissioning reads about one post: its last status (`post_status`, with the clock,
//! signal and supply columns of migration 6) and the newest reading per quantity received since
//! a given moment (SQLite: `samples`, found through `sample_arrivals`, see [`crate::series`];
//! PostgreSQL: `readings` by its `received_at` index). Read-only.

use std::collections::HashMap;

use protocol::{PostId, QaFlags, Quantity, UnixSeconds};
use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;
use crate::db::Db;
use crate::pg;
use crate::series::bucket_of;

/// A post's last status as stored.
#[derive(Debug, Clone)]
pub struct StatusSnapshot {
    /// Online (birth message, not the last will).
    pub online: bool,
    /// Firmware version.
    pub firmware: String,
    /// Config hash it runs.
    pub config_hash: Option<u32>,
    /// When the gateway received it.
    pub received_at: UnixSeconds,
    /// Post clock minus gateway clock, ms (from a live status).
    pub clock_offset_ms: Option<i64>,
    /// Signal, dBm.
    pub rssi_dbm: Option<i16>,
    /// Supply, mV.
    pub supply_mv: Option<u16>,
}

/// The newest reading of one quantity received since some moment.
#[derive(Debug, Clone, Copy)]
pub struct LatestReading {
    /// Its timestamp.
    pub at: UnixSeconds,
    /// Its value, in the quantity's unit.
    pub value: f64,
    /// QA flags.
    pub flags: QaFlags,
    /// How many arrived since that moment.
    pub count: u32,
}

/// `post`'s last status, if it ever sent one.
pub fn post_status(db: &Db<'_>, post: &PostId) -> Result<Option<StatusSnapshot>, StoreError> {
    match db {
        Db::Sqlite(conn) => Ok(conn
            .prepare_cached(
                "SELECT online, firmware, config_hash, received_at, clock_offset_ms, rssi_dbm, supply_mv
                 FROM post_status WHERE post = ?1",
            )?
            .query_row([post.as_str()], |r| {
                Ok(StatusSnapshot {
                    online: r.get(0)?,
                    firmware: r.get(1)?,
                    config_hash: r.get(2)?,
                    received_at: UnixSeconds(r.get(3)?),
                    clock_offset_ms: r.get(4)?,
                    rssi_dbm: r.get(5)?,
                    supply_mv: r.get(6)?,
                })
            })
            .optional()?),
        Db::Pg(pg) => {
            const T: &str = "post_status";
            let Some(r) = pg.query_opt(
                "SELECT online, firmware, config_hash, received_at, clock_offset_ms, rssi_dbm, supply_mv
                 FROM post_status WHERE post = $1",
                &[&post.as_str()],
            )?
            else {
                return Ok(None);
            };
            Ok(Some(StatusSnapshot {
                online: pg::get::<i64>(&r, T, 0)? != 0,
                firmware: pg::get(&r, T, 1)?,
                config_hash: pg::get_int_opt(&r, T, 2)?,
                received_at: UnixSeconds(pg::get(&r, T, 3)?),
                clock_offset_ms: pg::get(&r, T, 4)?,
                rssi_dbm: pg::get_int_opt(&r, T, 5)?,
                supply_mv: pg::get_int_opt(&r, T, 6)?,
            }))
        }
    }
}

/// Per quantity, the newest of `post`'s readings received at or after `since`, with how many
/// arrived. Quantities this build does not know (a newer gateway wrote them) are left out.
pub fn latest_readings_since(
    db: &Db<'_>,
    post: &PostId,
    since: UnixSeconds,
) -> Result<HashMap<Quantity, LatestReading>, StoreError> {
    match db {
        Db::Sqlite(conn) => sqlite_latest_readings_since(conn, post, since),
        Db::Pg(pg) => {
            // Per quantity the newest reading received since then, and how many arrived.
            let rows = pg.query(
                "SELECT DISTINCT ON (quantity) quantity, at, value, flags,
                        count(*) OVER (PARTITION BY quantity)
                 FROM readings WHERE post = $1 AND received_at >= $2
                 ORDER BY quantity, at DESC",
                &[&post.as_str(), &since.0],
            )?;
            let mut out = HashMap::new();
            for r in rows {
                const T: &str = "readings";
                // Quantities this build does not know were written by a newer gateway.
                let Some(q) = Quantity::parse(&pg::get::<String>(&r, T, 0)?) else {
                    continue;
                };
                out.insert(
                    q,
                    LatestReading {
                        at: UnixSeconds(pg::get(&r, T, 1)?),
                        value: pg::get(&r, T, 2)?,
                        flags: QaFlags(pg::get_int(&r, T, 3)?),
                        count: pg::get_int::<u32>(&r, T, 4)?,
                    },
                );
            }
            Ok(out)
        }
    }
}

/// [`latest_readings_since`] on SQLite's layout.
fn sqlite_latest_readings_since(
    conn: &Connection,
    post: &PostId,
    since: UnixSeconds,
) -> Result<HashMap<Quantity, LatestReading>, StoreError> {
    // Where the readings received since then can be: per series, the spans of `at` recorded
    // for the receive slices from `since` on, merged.
    let mut spans: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
    let mut names: HashMap<i64, (String, i64)> = HashMap::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT s.id, s.quantity, a.min_at, a.max_at, s.post_key
             FROM sample_arrivals a CROSS JOIN series s
             WHERE a.bucket >= ?2 AND s.id = a.series AND s.post = ?1",
        )?;
        let rows = stmt.query_map(params![post.as_str(), bucket_of(since.0)], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        for row in rows {
            let (id, quantity, lo, hi, post_key) = row?;
            spans.entry(id).or_default().push((lo, hi));
            names.insert(id, (quantity, post_key));
        }
    }
    let mut stmt = conn.prepare_cached(
        "SELECT at, value, flags FROM samples
         WHERE post_key = ?7 AND bucket >= ?2 AND bucket <= ?3 AND series = ?1
           AND at >= ?4 AND at <= ?5 AND received_at >= ?6",
    )?;
    let mut out: HashMap<Quantity, LatestReading> = HashMap::new();
    for (id, mut list) in spans {
        // Quantities this build does not know were written by a newer gateway.
        let Some((q, post_key)) = names
            .get(&id)
            .and_then(|(n, k)| Quantity::parse(n).map(|q| (q, *k)))
        else {
            continue;
        };
        for (lo, hi) in merge(&mut list) {
            let rows = stmt.query_map(
                params![id, bucket_of(lo), bucket_of(hi), lo, hi, since.0, post_key],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, f64>(1)?,
                        r.get::<_, u16>(2)?,
                    ))
                },
            )?;
            for row in rows {
                let (at, value, flags) = row?;
                let entry = out.entry(q).or_insert(LatestReading {
                    at: UnixSeconds(at),
                    value,
                    flags: QaFlags(flags),
                    count: 0,
                });
                entry.count += 1;
                if at >= entry.at.0 {
                    entry.at = UnixSeconds(at);
                    entry.value = value;
                    entry.flags = QaFlags(flags);
                }
            }
        }
    }
    Ok(out)
}

/// `spans` sorted and merged where they overlap or touch, so no reading is counted twice.
fn merge(spans: &mut [(i64, i64)]) -> Vec<(i64, i64)> {
    spans.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(spans.len());
    for &(lo, hi) in spans.iter() {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_newest_reading_per_quantity_since_the_start_is_counted() {
        let conn = crate::schema::in_memory();
        let post = PostId::parse("alm-air-901").unwrap();
        for (q, at, value, received) in [
            ("pm2_5", 100, 5.0, 100),
            ("pm2_5", 160, 7.0, 160),
            ("pm2_5", 220, 9.0, 220),
            ("no2", 40, 30.0, 40),
            ("smog", 200, 1.0, 200),
        ] {
            conn.execute(
                "INSERT INTO readings (post, quantity, at, value, flags, received_at)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5)",
                params![post.as_str(), q, at, value, received],
            )
            .unwrap();
        }
        let db = Db::Sqlite(&conn);
        let latest = latest_readings_since(&db, &post, UnixSeconds(150)).unwrap();
        assert_eq!(
            latest.len(),
            1,
            "no2 came before the start, smog is unknown"
        );
        let pm = latest.get(&Quantity::Pm2_5).unwrap();
        assert_eq!((pm.at, pm.value, pm.count), (UnixSeconds(220), 9.0, 2));
        assert!(post_status(&db, &post).unwrap().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn status_and_readings_since_a_moment_answer_the_same_on_both_backends() {
        use crate::read::tests::{fixture, T0};
        let stores = crate::read::both::stores("status::status_and_readings_since").await;
        for store in &stores.list {
            crate::read::both::write(store, fixture()).await;
            let (status, none, since_120, since_186, since_end) = store
                .read(|db| {
                    let b = PostId::parse("alm-b").unwrap();
                    let a = PostId::parse("alm_a").unwrap();
                    Ok((
                        post_status(db, &b)?,
                        post_status(db, &a)?,
                        latest_readings_since(db, &b, UnixSeconds(T0 + 120))?,
                        latest_readings_since(db, &b, UnixSeconds(T0 + 186))?,
                        latest_readings_since(db, &b, UnixSeconds(T0 + 201))?,
                    ))
                })
                .await
                .unwrap();
            let status = status.unwrap();
            assert!(status.online);
            assert_eq!(
                (
                    status.firmware.as_str(),
                    status.config_hash,
                    status.received_at
                ),
                ("1.2.0", Some(0xDEAD_BEEF), UnixSeconds(T0))
            );
            assert_eq!(
                (status.clock_offset_ms, status.rssi_dbm, status.supply_mv),
                (Some(-40), Some(-71), Some(12_100))
            );
            assert!(none.is_none());
            // Received from T0 + 120: three PM2.5 readings (the newest by time is flagged) and
            // one NO2; the unknown quantity is left out.
            assert_eq!(since_120.len(), 2, "{store:?}");
            let pm = since_120[&Quantity::Pm2_5];
            assert_eq!(
                (pm.at, pm.value, pm.flags, pm.count),
                (UnixSeconds(T0 + 180), 99.0, QaFlags(1), 3)
            );
            let no2 = since_120[&Quantity::No2];
            assert_eq!(
                (no2.at, no2.value, no2.count),
                (UnixSeconds(T0 + 120), 30.0, 1)
            );
            // From T0 + 186 only the late arrival for the day before.
            assert_eq!(since_186.len(), 1);
            let late = since_186[&Quantity::Pm2_5];
            assert_eq!(
                (late.at, late.value, late.count),
                (UnixSeconds(T0 - 86_400), 5.0, 1)
            );
            assert!(since_end.is_empty());
        }
    }
}

//! The commit log (`committed`): what every replica's writer committed, in commit order, so
//! the one replica that evaluates alerts (the leader, [`crate::pg::lease`]) sees the whole
//! fleet's new readings although each replica's shared subscription hands it only part of
//! them. The writer appends inside its group commit; the leader tails from the last sequence
//! number it handled.
//!
//! Commit order: sequence numbers are taken at insert time, so without care a transaction
//! that took seq 10 could commit after one that took 11, and a tail that had read up to 11
//! would never see 10. Each append therefore first takes a transaction-scoped advisory lock
//! ([`ORDER_LOCK`]), held to its commit: appends from all replicas commit in seq order. The
//! lock is held only from the append to the commit, the last statements of a group commit.

use protocol::{PostId, QaFlags, Quantity, UnixSeconds};
use serde_json::{json, Value};
use taza_domain::pipeline::{Committed, Reading};

use super::Pg;
use crate::StoreError;

/// Advisory lock key that orders appends to the log.
pub const ORDER_LOCK: i64 = 0x7A5A_0002;

/// Appends one post's new readings (call last in the writer's transaction, for each post
/// with new readings: the first call takes the ordering lock).
pub fn append(
    pg: &Pg<'_>,
    post: &PostId,
    readings: &[Reading],
    received_at: UnixSeconds,
) -> Result<(), StoreError> {
    if readings.is_empty() {
        return Ok(());
    }
    pg.execute("SELECT pg_advisory_xact_lock($1)", &[&ORDER_LOCK])?;
    pg.execute(
        "INSERT INTO committed (post, readings, received_at) VALUES ($1, $2, $3)",
        &[&post.as_str(), &encode(readings), &received_at.0],
    )?;
    Ok(())
}

/// [`append`] for several posts in one statement (the writer's group commit: one round trip
/// instead of one per post), entries numbered in the given order.
pub fn append_many(
    pg: &Pg<'_>,
    entries: &[(&PostId, &[Reading])],
    received_at: UnixSeconds,
) -> Result<(), StoreError> {
    let (posts, bodies): (Vec<&str>, Vec<Value>) = entries
        .iter()
        .filter(|(_, readings)| !readings.is_empty())
        .map(|(post, readings)| (post.as_str(), encode(readings)))
        .unzip();
    if posts.is_empty() {
        return Ok(());
    }
    pg.execute("SELECT pg_advisory_xact_lock($1)", &[&ORDER_LOCK])?;
    pg.execute(
        "INSERT INTO committed (post, readings, received_at)
         SELECT p, r, $3 FROM unnest($1::text[], $2::json[]) WITH ORDINALITY AS t (p, r, n)
         ORDER BY n",
        &[&posts, &bodies, &received_at.0],
    )?;
    Ok(())
}

/// A post's readings as the log stores them (read back by `decode`).
fn encode(readings: &[Reading]) -> Value {
    Value::Array(
        readings
            .iter()
            .map(|r| json!([r.quantity.as_str(), r.value, r.at.0, r.flags.0, r.window_s]))
            .collect(),
    )
}

/// Up to `limit` entries after sequence number `after`, oldest first, with their numbers.
pub fn tail(pg: &Pg<'_>, after: i64, limit: i64) -> Result<Vec<(i64, Committed)>, StoreError> {
    let rows = pg.query(
        "SELECT seq, post, readings, received_at FROM committed WHERE seq > $1 ORDER BY seq LIMIT $2",
        &[&after, &limit],
    )?;
    rows.iter()
        .map(|r| parse(r).map(|(seq, _, c)| (seq, c)))
        .collect()
}

/// Up to `limit` entries with numbers in `(after, upto]` received at or after `since`, oldest
/// first, each with its receive time: what a new leader replays (without acting on it) to
/// rebuild the evaluator's windows as its predecessor had them.
pub fn history(
    pg: &Pg<'_>,
    after: i64,
    upto: i64,
    since: UnixSeconds,
    limit: i64,
) -> Result<Vec<(i64, UnixSeconds, Committed)>, StoreError> {
    let rows = pg.query(
        "SELECT seq, post, readings, received_at FROM committed
         WHERE seq > $1 AND seq <= $2 AND received_at >= $3 ORDER BY seq LIMIT $4",
        &[&after, &upto, &since.0, &limit],
    )?;
    rows.iter().map(parse).collect()
}

fn parse(row: &super::Row) -> Result<(i64, UnixSeconds, Committed), StoreError> {
    let seq: i64 = super::get(row, "committed", 0)?;
    let post: String = super::get(row, "committed", 1)?;
    let body: Value = super::get(row, "committed", 2)?;
    let received_at: i64 = super::get(row, "committed", 3)?;
    let corrupt = |what: String| StoreError::Corrupt {
        table: "committed",
        key: seq.to_string(),
        what,
    };
    let post = PostId::parse(&post).map_err(|e| corrupt(format!("post {post:?}: {e}")))?;
    let readings = body
        .as_array()
        .ok_or_else(|| corrupt("readings is not an array".into()))?
        .iter()
        .map(|r| decode(r).ok_or_else(|| corrupt(format!("reading {r}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((seq, UnixSeconds(received_at), Committed { post, readings }))
}

/// The newest sequence number (0 for an empty log): where a first leader starts.
pub fn head(pg: &Pg<'_>) -> Result<i64, StoreError> {
    let row = pg.query_one("SELECT coalesce(max(seq), 0) FROM committed", &[])?;
    super::get(&row, "committed", 0)
}

/// Removes entries up to `upto` (handled by the leader), so the log stays short.
pub fn trim(pg: &Pg<'_>, upto: i64) -> Result<u64, StoreError> {
    pg.execute("DELETE FROM committed WHERE seq <= $1", &[&upto])
}

fn decode(v: &Value) -> Option<Reading> {
    let a = v.as_array()?;
    let window_s = match a.get(4)? {
        Value::Null => None,
        w => Some(u32::try_from(w.as_u64()?).ok()?),
    };
    Some(Reading {
        quantity: Quantity::parse(a.first()?.as_str()?)?,
        value: a.get(1)?.as_f64()?,
        at: UnixSeconds(a.get(2)?.as_i64()?),
        flags: QaFlags(u16::try_from(a.get(3)?.as_u64()?).ok()?),
        window_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_survives_the_log_encoding_and_damage_is_refused() {
        let r = Reading {
            quantity: Quantity::Pm2_5,
            value: 12.25,
            at: UnixSeconds(1_767_225_660),
            flags: QaFlags(3),
            window_s: Some(60),
        };
        let v = json!([r.quantity.as_str(), r.value, r.at.0, r.flags.0, r.window_s]);
        assert_eq!(decode(&v), Some(r));
        let no_window = json!(["no2", 40.0, 5, 0, null]);
        assert_eq!(decode(&no_window).map(|r| r.window_s), Some(None));
        assert_eq!(decode(&json!(["pm9", 1.0, 5, 0, null])), None);
        assert_eq!(decode(&json!(["no2", 1.0, 5, 70000, null])), None);
    }
}

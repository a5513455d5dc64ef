//! Incremental rollups: a group commit folds its new, valid readings into per-bucket
//! aggregates, then upserts each bucket once (`count += n, sum += s, min = min(..)`), so the
//! cost per commit is one row per touched bucket, not per reading.

use std::collections::HashMap;
use std::time::Duration;

use protocol::{PostId, Quantity, UnixSeconds};
use rusqlite::{params, Transaction};

use crate::calendar::{hour_start, LocalDay};

#[derive(Debug, Clone, Copy)]
struct Agg {
    count: i64,
    sum: f64,
    min: f64,
    max: f64,
    expected: i64,
}

impl Agg {
    fn new(value: f64, expected: i64) -> Self {
        Self {
            count: 1,
            sum: value,
            min: value,
            max: value,
            expected,
        }
    }

    fn add(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }
}

/// Aggregates of one group commit, not yet written.
#[derive(Debug, Default)]
pub(super) struct Rollups {
    hours: HashMap<(PostId, Quantity, i64), Agg>,
    days: HashMap<(PostId, Quantity, LocalDay), Agg>,
    day_of_hour: HashMap<i64, LocalDay>,
}

/// Readings a post at `cadence` should produce in `seconds` (at least 1).
fn expected_in(seconds: i64, cadence: Duration) -> i64 {
    let cadence_s = cadence.as_secs().max(1) as i64;
    (seconds / cadence_s).max(1)
}

impl Rollups {
    /// Folds one new reading in.
    pub(super) fn add(
        &mut self,
        post: &PostId,
        quantity: Quantity,
        at: UnixSeconds,
        value: f64,
        cadence: Duration,
    ) {
        let hour = hour_start(at).0;
        self.hours
            .entry((post.clone(), quantity, hour))
            .and_modify(|a| a.add(value))
            .or_insert_with(|| Agg::new(value, expected_in(3600, cadence)));
        // Almaty's UTC offset is whole hours, so every reading of a UTC hour shares its local day.
        let day = *self
            .day_of_hour
            .entry(hour)
            .or_insert_with(|| LocalDay::containing(UnixSeconds(hour)));
        self.days
            .entry((post.clone(), quantity, day))
            .and_modify(|a| a.add(value))
            .or_insert_with(|| Agg::new(value, expected_in(day.end.0 - day.start.0, cadence)));
    }

    /// Upserts every touched bucket.
    pub(super) fn flush(&mut self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        let mut hour = tx.prepare_cached(
            "INSERT INTO rollup_hour (post, quantity, start, count, sum, min, max, expected)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (post, quantity, start) DO UPDATE SET
               count = count + excluded.count, sum = sum + excluded.sum,
               min = min(min, excluded.min), max = max(max, excluded.max)",
        )?;
        for ((post, q, start), a) in self.hours.drain() {
            hour.execute(params![
                post.as_str(),
                q.as_str(),
                start,
                a.count,
                a.sum,
                a.min,
                a.max,
                a.expected
            ])?;
        }
        let mut day = tx.prepare_cached(
            "INSERT INTO rollup_day (post, quantity, day, start, end_at, count, sum, min, max, expected)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (post, quantity, day) DO UPDATE SET
               count = count + excluded.count, sum = sum + excluded.sum,
               min = min(min, excluded.min), max = max(max, excluded.max)",
        )?;
        for ((post, q, d), a) in self.days.drain() {
            day.execute(params![
                post.as_str(),
                q.as_str(),
                d.label(),
                d.start.0,
                d.end.0,
                a.count,
                a.sum,
                a.min,
                a.max,
                a.expected
            ])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_counts_follow_the_cadence() {
        assert_eq!(expected_in(3600, Duration::from_secs(60)), 60);
        assert_eq!(expected_in(86_400, Duration::from_secs(60)), 1440);
        assert_eq!(expected_in(3600, Duration::from_secs(7200)), 1);
        assert_eq!(expected_in(3600, Duration::ZERO), 3600);
    }
}

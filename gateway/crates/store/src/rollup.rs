//! Incremental rollups: a group commit folds its new, valid readings into per-bucket
//! aggregates, then upserts each bucket once (`count += n, weighted_sum += s, ...`), so the cost
//! per commit is one row per touched bucket, not per reading.
//!
//! Two rules decide what a reading contributes:
//! - its time is the end of its averaging window, so it belongs to the bucket containing
//!   `at - 1 s` (a mean stamped 13:00:00 covers 12:00-13:00);
//! - it covers `window_s` (or the post's cadence) seconds, capped at the bucket's length, and
//!   means are weighted by that coverage; data capture is coverage over the bucket's length.

use std::collections::HashMap;
use std::time::Duration;

use protocol::{PostId, Quantity};
use rusqlite::{params, Transaction};

use taza_domain::calendar::{hour_start, LocalDay};
use taza_domain::pipeline::Reading;

const HOUR_S: i64 = 3600;
/// How a stored bucket absorbs a group's aggregate: counts and sums add, extremes widen. One
/// rule for every resolution, so hourly, 20-minute and daily rollups can never disagree.
const MERGE: &str = "count = count + excluded.count, weighted_sum = weighted_sum + excluded.weighted_sum, \
     covered_s = covered_s + excluded.covered_s, min = min(min, excluded.min), max = max(max, excluded.max)";
/// One-time limits (ПДК м.р.) are judged on 20-minute means.
const TWENTY_MIN_S: i64 = 1200;

#[derive(Debug, Clone, Copy)]
struct Agg {
    count: i64,
    weighted_sum: f64,
    covered_s: i64,
    min: f64,
    max: f64,
    expected: i64,
}

impl Agg {
    fn new(expected: i64) -> Self {
        Self {
            count: 0,
            weighted_sum: 0.0,
            covered_s: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            expected,
        }
    }

    fn add(&mut self, value: f64, covered_s: i64) {
        self.count += 1;
        self.weighted_sum += value * covered_s as f64;
        self.covered_s += covered_s;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }
}

/// Aggregates of one group commit, not yet written.
#[derive(Debug, Default)]
pub(super) struct Rollups {
    twenty_minutes: HashMap<(PostId, Quantity, i64), Agg>,
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
    /// Folds one new reading of `post` (reporting every `cadence`) in.
    pub(super) fn add(&mut self, post: &PostId, r: &Reading, cadence: Duration) {
        let window_s = r
            .window_s
            .map_or(cadence.as_secs().max(1) as i64, i64::from);
        let window_end = r.at.offset(-1);
        let twenty = window_end.0.div_euclid(TWENTY_MIN_S) * TWENTY_MIN_S;
        self.twenty_minutes
            .entry((post.clone(), r.quantity, twenty))
            .or_insert_with(|| Agg::new(expected_in(TWENTY_MIN_S, cadence)))
            .add(r.value, window_s.min(TWENTY_MIN_S));
        let hour = hour_start(window_end).0;
        self.hours
            .entry((post.clone(), r.quantity, hour))
            .or_insert_with(|| Agg::new(expected_in(HOUR_S, cadence)))
            .add(r.value, window_s.min(HOUR_S));
        // Almaty's UTC offset is whole hours, so every reading of a UTC hour shares its local day.
        let day = *self
            .day_of_hour
            .entry(hour)
            .or_insert_with(|| LocalDay::containing(protocol::UnixSeconds(hour)));
        let day_s = day.end.0 - day.start.0;
        self.days
            .entry((post.clone(), r.quantity, day))
            .or_insert_with(|| Agg::new(expected_in(day_s, cadence)))
            .add(r.value, window_s.min(day_s));
    }

    /// Upserts every touched bucket.
    pub(super) fn flush(&mut self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        let mut twenty = tx.prepare_cached(&format!(
            "INSERT INTO rollup_20min (post, quantity, start, count, weighted_sum, covered_s, min, max)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (post, quantity, start) DO UPDATE SET {MERGE}"
        ))?;
        for ((post, q, start), a) in self.twenty_minutes.drain() {
            twenty.execute(params![
                post.as_str(),
                q.as_str(),
                start,
                a.count,
                a.weighted_sum,
                a.covered_s,
                a.min,
                a.max
            ])?;
        }
        let mut hour = tx.prepare_cached(&format!(
            "INSERT INTO rollup_hour (post, quantity, start, count, weighted_sum, covered_s, min, max, expected)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (post, quantity, start) DO UPDATE SET {MERGE}"
        ))?;
        for ((post, q, start), a) in self.hours.drain() {
            hour.execute(params![
                post.as_str(),
                q.as_str(),
                start,
                a.count,
                a.weighted_sum,
                a.covered_s,
                a.min,
                a.max,
                a.expected
            ])?;
        }
        let mut day = tx.prepare_cached(&format!(
            "INSERT INTO rollup_day (post, quantity, day, start, end_at, count, weighted_sum, covered_s, min, max, expected)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (post, quantity, day) DO UPDATE SET {MERGE}"
        ))?;
        for ((post, q, d), a) in self.days.drain() {
            day.execute(params![
                post.as_str(),
                q.as_str(),
                d.label(),
                d.start.0,
                d.end.0,
                a.count,
                a.weighted_sum,
                a.covered_s,
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
    use protocol::{QaFlags, UnixSeconds};

    fn reading(at: i64, value: f64, window_s: Option<u32>) -> Reading {
        Reading {
            quantity: Quantity::Pm2_5,
            value,
            at: UnixSeconds(at),
            flags: QaFlags::NONE,
            window_s,
        }
    }

    #[test]
    fn expected_counts_follow_the_cadence() {
        assert_eq!(expected_in(3600, Duration::from_secs(60)), 60);
        assert_eq!(expected_in(86_400, Duration::from_secs(60)), 1440);
        assert_eq!(expected_in(3600, Duration::from_secs(7200)), 1);
        assert_eq!(expected_in(3600, Duration::ZERO), 3600);
    }

    #[test]
    fn a_reading_stamped_on_the_hour_belongs_to_the_hour_it_ends() {
        let post = PostId::parse("p").unwrap();
        let mut r = Rollups::default();
        let base = 1_767_225_600; // 2026-01-01T00:00:00Z
        r.add(
            &post,
            &reading(base + 3600, 10.0, None),
            Duration::from_secs(60),
        );
        r.add(
            &post,
            &reading(base + 3601, 99.0, None),
            Duration::from_secs(60),
        );
        let first = r.hours[&(post.clone(), Quantity::Pm2_5, base)];
        let second = r.hours[&(post, Quantity::Pm2_5, base + 3600)];
        assert_eq!((first.count, first.max), (1, 10.0));
        assert_eq!((second.count, second.max), (1, 99.0));
    }

    #[test]
    fn an_hourly_mean_weighs_as_much_as_sixty_minute_means() {
        let post = PostId::parse("p").unwrap();
        let mut r = Rollups::default();
        let base = 1_767_225_600;
        // One backfilled hourly mean of 40 for 00:00-01:00 ...
        r.add(
            &post,
            &reading(base + 3600, 40.0, Some(3600)),
            Duration::from_secs(60),
        );
        // ... and sixty 1-minute means of 10 for 01:00-02:00 (cadence 60 s, no window given).
        for k in 1..=60 {
            r.add(
                &post,
                &reading(base + 3600 + k * 60, 10.0, None),
                Duration::from_secs(60),
            );
        }
        let h1 = r.hours[&(post.clone(), Quantity::Pm2_5, base)];
        let h2 = r.hours[&(post.clone(), Quantity::Pm2_5, base + 3600)];
        assert_eq!(
            (
                h1.count,
                h1.covered_s,
                h1.weighted_sum / h1.covered_s as f64
            ),
            (1, 3600, 40.0)
        );
        assert_eq!(
            (
                h2.count,
                h2.covered_s,
                h2.weighted_sum / h2.covered_s as f64
            ),
            (60, 3600, 10.0)
        );
        // Local day 2026-01-01 (Almaty, UTC+5) holds both hours: the time-weighted mean is 25,
        // where a plain mean of the 61 values would be (40 + 600) / 61 = 10.5.
        let day = r.days.values().next().unwrap();
        assert_eq!(r.days.len(), 1);
        assert_eq!(
            (day.covered_s, day.weighted_sum / day.covered_s as f64),
            (7200, 25.0)
        );
    }
}

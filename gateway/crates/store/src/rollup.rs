//! Incremental rollups: a group commit folds its new, valid readings into per-bucket
//! aggregates, then upserts each bucket once (`count += n, weighted_sum += s, ...`), so the cost
//! per commit is one row per touched bucket, not per reading; the rows go in as multi-row
//! upserts in key order (`agg_20min`, `agg_hour`, `agg_day`, keyed post first, then time, see
//! [`crate::series`]). Local days of the scored quantities that gain readings are marked in
//! `day_dirty` in the same transaction ([`crate::day_scores`]).
//!
//! Two rules decide what a reading contributes:
//! - its time is the end of its averaging window, so it belongs to the bucket containing
//!   `at - 1 s` (a mean stamped 13:00:00 covers 12:00-13:00);
//! - it covers `window_s` (or the post's cadence) seconds, capped at the bucket's length, and
//!   means are weighted by that coverage; data capture is coverage over the bucket's length.

use std::collections::HashMap;
use std::time::Duration;

use protocol::{PostId, Quantity};
use rusqlite::Transaction;

use crate::multirow::Rows;
use taza_domain::calendar::{hour_start, LocalDay};
use taza_domain::pipeline::Reading;

const HOUR_S: i64 = 3600;
/// How a stored bucket absorbs a group's aggregate: counts and sums add, extremes widen. One
/// rule for every resolution, so hourly, 20-minute and daily rollups can never disagree.
const MERGE: &str = "count = count + excluded.count, weighted_sum = weighted_sum + excluded.weighted_sum, \
     covered_s = covered_s + excluded.covered_s, min = min(min, excluded.min), max = max(max, excluded.max)";
/// One-time limits (ПДК м.р.) are judged on 20-minute means.
const TWENTY_MIN_S: i64 = 1200;

/// One bucket's aggregate of a commit's new readings (both backends' writers).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Agg {
    pub count: i64,
    pub weighted_sum: f64,
    pub covered_s: i64,
    pub min: f64,
    pub max: f64,
    pub expected: i64,
}

impl Agg {
    pub(crate) fn new(expected: i64) -> Self {
        Self {
            count: 0,
            weighted_sum: 0.0,
            covered_s: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            expected,
        }
    }

    pub(crate) fn add(&mut self, value: f64, covered_s: i64) {
        self.count += 1;
        self.weighted_sum += value * covered_s as f64;
        self.covered_s += covered_s;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }
}

/// A day's aggregate with what `day_dirty` needs to name it (only for marked quantities).
#[derive(Debug)]
struct DayAgg {
    agg: Agg,
    mark: Option<(PostId, Quantity)>,
}

/// Aggregates of one group commit, not yet written. Keys as the tables': (post key, start,
/// series) for 20 minutes and hours, (post key, local day, series) for days.
#[derive(Debug, Default)]
pub(super) struct Rollups {
    twenty_minutes: HashMap<(i64, i64, i64), Agg>,
    hours: HashMap<(i64, i64, i64), Agg>,
    days: HashMap<(i64, LocalDay, i64), DayAgg>,
    day_of_hour: HashMap<i64, LocalDay>,
}

/// Readings a post at `cadence` should produce in `seconds` (at least 1).
fn expected_in(seconds: i64, cadence: Duration) -> i64 {
    let cadence_s = cadence.as_secs().max(1) as i64;
    (seconds / cadence_s).max(1)
}

/// One bucket a reading falls in: its start (a local day for days), the seconds the reading
/// covers there and the readings the post's cadence promises for the whole bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot<T> {
    pub start: T,
    pub covered_s: i64,
    pub expected: i64,
}

/// The 20-minute, hour and local-day buckets of one valid reading: the arithmetic both
/// backends' writers share. `day_of_hour` caches the local day of each UTC hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Place {
    pub twenty: Slot<i64>,
    pub hour: Slot<i64>,
    pub day: Slot<LocalDay>,
}

impl Place {
    pub(crate) fn of(
        r: &Reading,
        cadence: Duration,
        day_of_hour: &mut HashMap<i64, LocalDay>,
    ) -> Self {
        let window_s = r
            .window_s
            .map_or(cadence.as_secs().max(1) as i64, i64::from);
        let window_end = r.at.offset(-1);
        let twenty = window_end.0.div_euclid(TWENTY_MIN_S) * TWENTY_MIN_S;
        let hour = hour_start(window_end).0;
        // Almaty's UTC offset is whole hours, so every reading of a UTC hour shares its local day.
        let day = *day_of_hour
            .entry(hour)
            .or_insert_with(|| LocalDay::containing(protocol::UnixSeconds(hour)));
        let day_s = day.end.0 - day.start.0;
        Self {
            twenty: Slot {
                start: twenty,
                covered_s: window_s.min(TWENTY_MIN_S),
                expected: expected_in(TWENTY_MIN_S, cadence),
            },
            hour: Slot {
                start: hour,
                covered_s: window_s.min(HOUR_S),
                expected: expected_in(HOUR_S, cadence),
            },
            day: Slot {
                start: day,
                covered_s: window_s.min(day_s),
                expected: expected_in(day_s, cadence),
            },
        }
    }
}

/// Whether days of `quantity` are marked in `day_dirty` (it has day aggregates for scoring).
pub(crate) fn marks_days(quantity: Quantity) -> bool {
    taza_domain::series::SCORED_POLLUTANTS.contains(&quantity)
}

impl Rollups {
    /// Folds one new reading of `post` (its key and the reading's series, reporting every
    /// `cadence`) in.
    pub(super) fn add(
        &mut self,
        (post_key, series): (i64, i64),
        post: &PostId,
        r: &Reading,
        cadence: Duration,
    ) {
        let place = Place::of(r, cadence, &mut self.day_of_hour);
        self.twenty_minutes
            .entry((post_key, place.twenty.start, series))
            .or_insert_with(|| Agg::new(place.twenty.expected))
            .add(r.value, place.twenty.covered_s);
        self.hours
            .entry((post_key, place.hour.start, series))
            .or_insert_with(|| Agg::new(place.hour.expected))
            .add(r.value, place.hour.covered_s);
        self.days
            .entry((post_key, place.day.start, series))
            .or_insert_with(|| DayAgg {
                agg: Agg::new(place.day.expected),
                mark: marks_days(r.quantity).then(|| (post.clone(), r.quantity)),
            })
            .agg
            .add(r.value, place.day.covered_s);
    }

    /// Upserts every touched bucket and marks the touched days.
    pub(super) fn flush(&mut self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        let merge = format!("ON CONFLICT (post_key, start, series) DO UPDATE SET {MERGE}");
        let mut twenty: Vec<_> = self.twenty_minutes.drain().collect();
        twenty.sort_unstable_by_key(|(k, _)| *k);
        Rows {
            head: "INSERT INTO agg_20min (post_key, start, series, count, weighted_sum, covered_s, min, max) VALUES",
            width: 8,
            tail: &merge,
        }
        .execute(tx, &twenty, |s, i, ((post_key, start, series), a)| {
            s.raw_bind_parameter(i, post_key)?;
            s.raw_bind_parameter(i + 1, start)?;
            s.raw_bind_parameter(i + 2, series)?;
            s.raw_bind_parameter(i + 3, a.count)?;
            s.raw_bind_parameter(i + 4, a.weighted_sum)?;
            s.raw_bind_parameter(i + 5, a.covered_s)?;
            s.raw_bind_parameter(i + 6, a.min)?;
            s.raw_bind_parameter(i + 7, a.max)
        })?;
        let mut hours: Vec<_> = self.hours.drain().collect();
        hours.sort_unstable_by_key(|(k, _)| *k);
        Rows {
            head: "INSERT INTO agg_hour (post_key, start, series, count, weighted_sum, covered_s, min, max, expected) VALUES",
            width: 9,
            tail: &merge,
        }
        .execute(tx, &hours, |s, i, ((post_key, start, series), a)| {
            s.raw_bind_parameter(i, post_key)?;
            s.raw_bind_parameter(i + 1, start)?;
            s.raw_bind_parameter(i + 2, series)?;
            s.raw_bind_parameter(i + 3, a.count)?;
            s.raw_bind_parameter(i + 4, a.weighted_sum)?;
            s.raw_bind_parameter(i + 5, a.covered_s)?;
            s.raw_bind_parameter(i + 6, a.min)?;
            s.raw_bind_parameter(i + 7, a.max)?;
            s.raw_bind_parameter(i + 8, a.expected)
        })?;
        let mut days: Vec<_> = self
            .days
            .drain()
            .map(|((post_key, d, series), a)| ((post_key, d.start.0, series), d, a))
            .collect();
        days.sort_unstable_by_key(|(k, ..)| *k);
        Rows {
            head: "INSERT INTO agg_day (post_key, day, series, start, end_at, count, weighted_sum, covered_s, min, max, expected) VALUES",
            width: 11,
            tail: &format!("ON CONFLICT (post_key, day, series) DO UPDATE SET {MERGE}"),
        }
        .execute(tx, &days, |s, i, ((post_key, _, series), d, DayAgg { agg: a, .. })| {
            s.raw_bind_parameter(i, post_key)?;
            s.raw_bind_parameter(i + 1, d.label())?;
            s.raw_bind_parameter(i + 2, series)?;
            s.raw_bind_parameter(i + 3, d.start.0)?;
            s.raw_bind_parameter(i + 4, d.end.0)?;
            s.raw_bind_parameter(i + 5, a.count)?;
            s.raw_bind_parameter(i + 6, a.weighted_sum)?;
            s.raw_bind_parameter(i + 7, a.covered_s)?;
            s.raw_bind_parameter(i + 8, a.min)?;
            s.raw_bind_parameter(i + 9, a.max)?;
            s.raw_bind_parameter(i + 10, a.expected)
        })?;
        let marks: Vec<_> = days
            .iter()
            .filter_map(|(_, d, a)| a.mark.as_ref().map(|(p, q)| (p, *q, d.label())))
            .collect();
        Rows {
            head: "INSERT OR IGNORE INTO day_dirty (post, quantity, day) VALUES",
            width: 3,
            tail: "",
        }
        .execute(tx, &marks, |s, i, (post, q, day)| {
            s.raw_bind_parameter(i, post.as_str())?;
            s.raw_bind_parameter(i + 1, q.as_str())?;
            s.raw_bind_parameter(i + 2, day)
        })?;
        self.day_of_hour.clear();
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
    fn commits_into_one_day_add_up_and_mark_it_dirty_once() {
        let mut conn = crate::schema::in_memory();
        let post = PostId::parse("p").unwrap();
        let base = 1_767_225_600;
        for (k, value) in [(1, 10.0), (2, 20.0), (3, 30.0)] {
            let tx = conn.transaction().unwrap();
            let mut r = Rollups::default();
            r.add(
                (1, 7),
                &post,
                &reading(base + k * 60, value, None),
                Duration::from_secs(60),
            );
            // A quantity without day aggregates is rolled up but not marked.
            let mut no_mark = reading(base + k * 60, value, None);
            no_mark.quantity = Quantity::Temperature;
            r.add((1, 8), &post, &no_mark, Duration::from_secs(60));
            r.flush(&tx).unwrap();
            tx.commit().unwrap();
        }
        let (count, weighted_sum, max): (i64, f64, f64) = conn
            .query_row(
                "SELECT count, weighted_sum, max FROM agg_day WHERE series = 7",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((count, weighted_sum, max), (3, 3600.0, 30.0));
        let marks: Vec<(String, String, String)> = conn
            .prepare("SELECT post, quantity, day FROM day_dirty")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(marks, [("p".into(), "pm2_5".into(), "2026-01-01".into())]);
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
            (1, 7),
            &post,
            &reading(base + 3600, 10.0, None),
            Duration::from_secs(60),
        );
        r.add(
            (1, 7),
            &post,
            &reading(base + 3601, 99.0, None),
            Duration::from_secs(60),
        );
        let first = r.hours[&(1, base, 7)];
        let second = r.hours[&(1, base + 3600, 7)];
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
            (1, 7),
            &post,
            &reading(base + 3600, 40.0, Some(3600)),
            Duration::from_secs(60),
        );
        // ... and sixty 1-minute means of 10 for 01:00-02:00 (cadence 60 s, no window given).
        for k in 1..=60 {
            r.add(
                (1, 7),
                &post,
                &reading(base + 3600 + k * 60, 10.0, None),
                Duration::from_secs(60),
            );
        }
        let h1 = r.hours[&(1, base, 7)];
        let h2 = r.hours[&(1, base + 3600, 7)];
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
        let day = &r.days.values().next().unwrap().agg;
        assert_eq!(r.days.len(), 1);
        assert_eq!(
            (day.covered_s, day.weighted_sum / day.covered_s as f64),
            (7200, 25.0)
        );
    }
}

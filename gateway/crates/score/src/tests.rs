//! Cross-module tests of the entry points: norms overrides change scores, the city scorecard's
//! city values and trajectory, and the report renderings.

use chrono::NaiveDate;
use protocol::{PostId, Quantity, UnixSeconds};

use super::input::HOUR_S;
use super::scorecard::TrajectoryStatus;
use super::*;
use taza_domain::calendar::{parse_rfc3339, LocalDay};

fn air_post(id: &str, series: Vec<QuantitySeries>) -> PostSeries {
    PostSeries {
        post: PostDescriptor {
            id: PostId::parse(id).unwrap(),
            kind: PostKind::Air,
            lat_deg: 43.24,
            lon_deg: 76.92,
            district: Some("Алмалинский".into()),
            river: None,
            critical_level: None,
        },
        series,
    }
}

/// `n` full hours at `mean` from `start`.
fn hours(start: UnixSeconds, n: i64, mean: f64) -> Vec<HourlyMean> {
    (0..n)
        .map(|i| HourlyMean {
            start: start.offset(i * HOUR_S),
            mean,
            covered_s: HOUR_S,
            count: 60,
            max: mean,
        })
        .collect()
}

fn pm25(hourly: Vec<HourlyMean>) -> QuantitySeries {
    QuantitySeries {
        days: Vec::new(),
        quantity: Quantity::Pm2_5,
        hourly,
        twenty_minute: vec![],
    }
}

#[test]
fn changing_a_limit_in_an_override_toml_changes_the_score() {
    // 20 local days of PM2.5 at 40 µg/m³ from local 2025-01-01.
    let start = LocalDay::of(NaiveDate::from_ymd_opt(2025, 1, 1).unwrap()).start;
    let post = air_post("alm-01", vec![pm25(hours(start, 24 * 20, 40.0))]);
    let to = start.offset(20 * 24 * HOUR_S);

    let default = Norms::embedded().unwrap();
    let s = post_scores(&default, &post, start, to);
    let d = s.quantities[0].daily_exceedances.as_ref().unwrap();
    // ПДК с.с. 0.035 mg/m³ = 35 µg/m³: all 20 days at 40 exceed; multiple 40 / 35 = 1.142857.
    assert_eq!((d.valid_days, d.exceedance_days), (20, 20));
    assert!((d.largest_multiple.unwrap() - 1.142857).abs() < 1e-6);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("air.toml"),
        "[limit_sets.kz_dsm70.substances.pm2_5.daily_mg_m3]\n\
         value = 0.045\nsource = \"department test\"\nstatus = \"unconfirmed\"\n",
    )
    .unwrap();
    let patched = Norms::load(EMBEDDED, Some(dir.path())).unwrap();
    let s = post_scores(&patched, &post, start, to);
    let d = s.quantities[0].daily_exceedances.as_ref().unwrap();
    // 0.045 mg/m³ = 45 µg/m³: no day at 40 exceeds; multiple 40 / 45 = 0.888889.
    assert_eq!(d.exceedance_days, 0);
    assert!((d.largest_multiple.unwrap() - 0.888889).abs() < 1e-6);
    // Everything else still comes from the embedded file.
    assert_eq!(patched.limit("no2"), default.limit("no2"));

    // Switching the active set by override works the same way.
    std::fs::write(
        dir.path().join("air.toml"),
        "active_set = \"kz_dsm70_no2_daily_0_1\"\n",
    )
    .unwrap();
    let n = Norms::load(EMBEDDED, Some(dir.path())).unwrap();
    let no2 = n.limit("no2").unwrap().daily_ug_m3.as_ref().unwrap();
    assert!((no2.value - 100.0).abs() < 1e-9);
}

#[test]
fn city_value_is_the_mean_over_posts_with_a_valid_year() {
    let n = Norms::embedded().unwrap();
    // 2023 (Almaty UTC+6 then): 365 local days = 8760 hours from local 2023-01-01.
    let start = LocalDay::of(NaiveDate::from_ymd_opt(2023, 1, 1).unwrap()).start;
    let year_h = 365 * 24;
    // A: 30 all year. C: 36 all year. B: 42 but only 325 days: 325 / 365 = 0.890 < 0.9 ->
    // invalid, left out. City = (30 + 36) / 2 = 33 from 2 posts of 3.
    let posts = vec![
        air_post("alm-a", vec![pm25(hours(start, year_h, 30.0))]),
        air_post("alm-b", vec![pm25(hours(start, 325 * 24, 42.0))]),
        air_post("alm-c", vec![pm25(hours(start, year_h, 36.0))]),
    ];
    let now = parse_rfc3339("2024-06-01T00:00:00Z").unwrap();
    let card = city_scorecard(&n, 2023, &posts, now);
    assert!(!card.in_progress);
    let pm = card
        .pollutants
        .iter()
        .find(|c| c.quantity == Quantity::Pm2_5)
        .unwrap();
    assert!((pm.annual_mean_ug_m3.unwrap() - 33.0).abs() < 1e-9);
    assert_eq!((pm.posts_valid, pm.posts_with_data), (2, 3));
    // Days above 35: C every day (365) + B every measured day (325, still counted as valid
    // days even though B's year is invalid) = 690.
    assert_eq!(pm.daily_exceedance_days, 690);
    // ИЗА from PM2.5 alone: 33 / 35 = 0.942857 (class 3, C = 1), incomplete.
    assert!((card.iza.value - 0.942857).abs() < 1e-6);
    assert!(!card.iza.complete);
    assert!(!card.notes.is_empty());

    let row = |metric: &str, year: i32| {
        card.trajectory
            .iter()
            .find(|r| r.metric == metric && r.year == year)
            .unwrap()
            .clone()
    };
    // Plan 2023 baseline 36; measured 33 ≤ 36: met.
    let r = row("pm2_5_city_annual_mean", 2023);
    assert_eq!(r.status, TrajectoryStatus::Met);
    assert_eq!(r.posts, 2);
    // 2022: no data. 2024: the current year, in progress. 2025: not yet listed.
    assert_eq!(
        row("pm2_5_city_annual_mean", 2022).status,
        TrajectoryStatus::NotEnoughData
    );
    assert_eq!(
        row("pm2_5_city_annual_mean", 2024).status,
        TrajectoryStatus::InProgress
    );
    assert!(!card.trajectory.iter().any(|r| r.year == 2025));
    // NO2 2023 baseline 81, no NO2 data: not enough data.
    assert_eq!(
        row("no2_city_annual_mean", 2023).status,
        TrajectoryStatus::NotEnoughData
    );

    let md = scorecard_markdown(&card);
    assert!(md.contains("Цели плана (plan targets)"));
    assert!(md.contains("| pm2_5 | 33.0 | 2 / 3 |"));
    let csv = scorecard_csv(&card);
    assert!(csv
        .lines()
        .any(|l| l.starts_with("2023,city,,pm2_5,33.00,")));
    assert_eq!(csv.lines().count(), 1 + 3 + 3);
    // The scorecard is the API's JSON as is.
    let json = serde_json::to_value(&card).unwrap();
    assert_eq!(json["pollutants"][0]["posts_valid"], 2);
}

#[test]
fn targets_table_carries_the_plan_values_with_seed_refs() {
    let n = Norms::embedded().unwrap();
    let t = targets(&n);
    let pm = t
        .metrics
        .iter()
        .find(|m| m.id == "pm2_5_city_annual_mean")
        .unwrap();
    let values: Vec<f64> = pm.rows.iter().map(|r| r.value).collect();
    assert_eq!(values, [30.0, 34.0, 36.0, 36.0, 36.0, 30.0, 30.0]);
    assert!(pm.source.contains("002:8883-8901"));
    let no2 = t
        .metrics
        .iter()
        .find(|m| m.id == "no2_city_annual_mean")
        .unwrap();
    let values: Vec<f64> = no2.rows.iter().map(|r| r.value).collect();
    assert_eq!(values, [65.0, 70.0, 81.0, 81.0, 81.0, 60.0, 60.0]);
    let iza = t.metrics.iter().find(|m| m.id == "iza5_city").unwrap();
    let r2025 = iza.rows.iter().find(|r| r.year == 2025).unwrap();
    assert_eq!(r2025.value, 5.0);
    assert!(r2025.source.as_deref().unwrap().contains("001:3139-3140"));
}

#[test]
fn scorecard_of_a_year_chrono_cannot_represent_is_empty_not_a_panic() {
    let n = Norms::embedded().unwrap();
    let start = LocalDay::of(NaiveDate::from_ymd_opt(2023, 1, 1).unwrap()).start;
    let posts = vec![air_post("alm-a", vec![pm25(hours(start, 48, 30.0))])];
    let now = parse_rfc3339("2024-06-01T00:00:00Z").unwrap();
    let card = city_scorecard(&n, i32::MAX, &posts, now);
    assert!(card.episodes.is_empty());
    let annual = &card.posts[0].pollutants[0].annual;
    assert_eq!((annual.days, annual.mean), (0, None));
}

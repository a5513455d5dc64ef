//! Engine behaviour, with thresholds and means worked by hand.

use super::*;
use crate::rules;
use taza_domain::post::PostKind;
use taza_score::CriticalLevel;

const T0: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
const MIN: i64 = 60;

fn post(id: &str, kind: PostKind) -> PostEntry {
    PostEntry {
        river: (kind == PostKind::River).then(|| "Киши Алматы".into()),
        cadence: Some(Duration::from_secs(60)),
        critical_level: (kind == PostKind::River).then(|| CriticalLevel {
            level_cm: 136.0,
            seasons: vec![],
            source: "test".into(),
        }),
        ..PostEntry::new(PostId::parse(id).unwrap(), kind, id, 43.25, 76.9)
    }
}

fn posts() -> Vec<PostEntry> {
    vec![
        post("air-1", PostKind::Air),
        post("river-1", PostKind::River),
    ]
}

fn engine() -> Engine {
    engine_with(&taza_score::Norms::embedded().unwrap())
}

/// The shipped rules resolved against `norms`.
fn engine_with(norms: &taza_score::Norms) -> Engine {
    let rules = rules::load(None, norms).unwrap();
    Engine::new(
        rules,
        &posts(),
        Duration::from_secs(60),
        Duration::from_secs(30 * 60),
        UnixSeconds(T0),
    )
}

fn r(q: Quantity, value: f64, at: i64) -> Reading {
    Reading {
        quantity: q,
        value,
        at: UnixSeconds(at),
        flags: QaFlags::NONE,
        window_s: None,
    }
}

fn id(s: &str) -> PostId {
    PostId::parse(s).unwrap()
}

/// Feeds one reading a minute from `start` (`values[k]` at `start + k min`), each judged at its
/// own time, and returns the fired rule ids and cleared rule ids in order.
fn feed(e: &mut Engine, post: &str, q: Quantity, start: i64, values: &[f64]) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in values.iter().enumerate() {
        let at = start + k as i64 * MIN;
        for t in e.on_readings(&id(post), &[r(q, *v, at)], UnixSeconds(at)) {
            out.push(match t {
                Transition::Fire(f) => format!("fire:{}", f.rule),
                Transition::Clear { rule, .. } => format!("clear:{rule}"),
            });
        }
    }
    out
}

#[test]
fn pm2_5_episode_fires_once_when_the_20_minute_mean_passes_160_and_clears_below_140() {
    let mut e = engine();
    // 170 every minute: the 20-minute mean is 170 > 160 as soon as 15 readings (75 % of 20 at
    // a 60 s cadence) are in, i.e. at the 15th reading; the 1600 (ВЗ) rule stays quiet.
    let mut got = feed(&mut e, "air-1", Quantity::Pm2_5, T0, &[170.0; 30]);
    assert_eq!(got, ["fire:pm2_5_one_time_limit"]);
    // Then 100 every minute: the 20-minute window at minute 30+k holds (20-k-... ) readings;
    // the mean (170·n + 100·m)/20 first drops below 140 when 170·(20-m) + 100·m < 2800, i.e.
    // m > 8.57: at the 9th reading of 100.
    got = feed(
        &mut e,
        "air-1",
        Quantity::Pm2_5,
        T0 + 30 * MIN,
        &[100.0; 12],
    );
    assert_eq!(got, ["clear:pm2_5_one_time_limit"]);
}

#[test]
fn a_signal_oscillating_around_the_limit_fires_once_not_a_storm() {
    let mut e = engine();
    // 150, 175, 150, 175, ...: the 20-minute mean settles at 162.5 (> 160, fires once) and
    // never falls below 140, so it never clears and never fires again.
    let values: Vec<f64> = (0..120)
        .map(|k| if k % 2 == 0 { 150.0 } else { 175.0 })
        .collect();
    let got = feed(&mut e, "air-1", Quantity::Pm2_5, T0, &values);
    assert_eq!(got, ["fire:pm2_5_one_time_limit"]);
}

#[test]
fn a_replayed_backlog_with_old_timestamps_fires_nothing() {
    let mut e = engine();
    // An hour of 500 µg/m³ recorded two hours ago arrives now (store-and-forward replay).
    let now = UnixSeconds(T0 + 3 * 3600);
    let backlog: Vec<Reading> = (0..60)
        .map(|k| r(Quantity::Pm2_5, 500.0, T0 + 3600 + k * MIN))
        .collect();
    assert_eq!(e.on_readings(&id("air-1"), &backlog, now), vec![]);
    assert_eq!(
        e.on_tick(now.offset(60))
            .iter()
            .filter(|t| matches!(t, Transition::Fire(f) if f.rule != "post_silent"))
            .count(),
        0
    );
}

#[test]
fn low_oxygen_fires_only_after_its_ten_minute_for_duration() {
    let mut e = engine();
    let got = feed(&mut e, "river-1", Quantity::DissolvedOxygen, T0, &[2.8; 10]);
    assert!(got.is_empty(), "{got:?}");
    // The 11th reading is 10 minutes after the first below 3 mg/L.
    let got = feed(
        &mut e,
        "river-1",
        Quantity::DissolvedOxygen,
        T0 + 10 * MIN,
        &[2.8],
    );
    assert_eq!(got, ["fire:dissolved_oxygen_low"]);
    // 3.2 is between fire (3.0) and clear (3.5): nothing; 3.6 clears.
    assert!(feed(
        &mut e,
        "river-1",
        Quantity::DissolvedOxygen,
        T0 + 11 * MIN,
        &[3.2]
    )
    .is_empty());
    assert_eq!(
        feed(
            &mut e,
            "river-1",
            Quantity::DissolvedOxygen,
            T0 + 12 * MIN,
            &[3.6]
        ),
        ["clear:dissolved_oxygen_low"]
    );
}

#[test]
fn river_level_warns_20_cm_below_critical_and_fires_critical_at_critical() {
    let mut e = engine();
    // Critical 136 cm: warning at ≥ 116, critical at ≥ 136; a rise from 100 to 140 in 40 min
    // is 60 cm/h, above the 30 cm/h mudflow threshold once half the hour is spanned.
    let levels: Vec<f64> = (0..=40).map(|k| 100.0 + k as f64).collect();
    let got = feed(&mut e, "river-1", Quantity::WaterLevel, T0, &levels);
    assert_eq!(
        got,
        [
            "fire:river_level_near_critical",
            "fire:river_fast_rise",
            "fire:river_level_critical"
        ]
    );
    // Falling to 130 (< 136 - 5) clears the critical one only.
    assert_eq!(
        feed(
            &mut e,
            "river-1",
            Quantity::WaterLevel,
            T0 + 41 * MIN,
            &[130.0]
        ),
        ["clear:river_level_critical"]
    );
}

#[test]
fn a_silent_post_fires_after_15_minutes_and_clears_on_its_next_reading() {
    let mut e = engine();
    feed(&mut e, "air-1", Quantity::No2, T0, &[20.0]);
    let silent = |ts: Vec<Transition>| {
        ts.into_iter().filter(|t| matches!(t, Transition::Fire(f) if f.post == id("air-1") && f.rule == "post_silent")).count()
    };
    assert_eq!(silent(e.on_tick(UnixSeconds(T0 + 14 * MIN))), 0);
    assert_eq!(silent(e.on_tick(UnixSeconds(T0 + 15 * MIN))), 1);
    assert_eq!(
        silent(e.on_tick(UnixSeconds(T0 + 16 * MIN))),
        0,
        "fires once"
    );
    let got = feed(&mut e, "air-1", Quantity::No2, T0 + 20 * MIN, &[21.0]);
    assert_eq!(got, ["clear:post_silent"]);
}

#[test]
fn an_alert_resolved_by_hand_stays_quiet_until_its_condition_clears() {
    let mut e = engine();
    assert_eq!(
        feed(&mut e, "air-1", Quantity::Pm2_5, T0, &[170.0; 15]),
        ["fire:pm2_5_one_time_limit"]
    );
    // A person resolves it while PM2.5 is still high: no re-fire, no clear.
    e.sync_open(&[]);
    assert!(feed(
        &mut e,
        "air-1",
        Quantity::Pm2_5,
        T0 + 15 * MIN,
        &[170.0; 10]
    )
    .is_empty());
    // It clears silently, then a new episode fires again.
    assert!(feed(&mut e, "air-1", Quantity::Pm2_5, T0 + 25 * MIN, &[50.0; 20]).is_empty());
    assert_eq!(
        feed(
            &mut e,
            "air-1",
            Quantity::Pm2_5,
            T0 + 45 * MIN,
            &[170.0; 20]
        ),
        ["fire:pm2_5_one_time_limit"]
    );
}

#[test]
fn an_alert_open_before_a_restart_is_not_fired_again() {
    let mut e = engine();
    e.restore_open("pm2_5_one_time_limit", &id("air-1"));
    assert!(feed(&mut e, "air-1", Quantity::Pm2_5, T0, &[170.0; 20]).is_empty());
}

#[test]
fn a_daily_mean_above_35_fires_once_and_the_next_clean_day_clears_it() {
    let mut e = engine();
    let now = UnixSeconds(T0);
    let day = |m| vec![(id("air-1"), Quantity::Pm2_5, m)];
    let fired: Vec<_> = e
        .on_daily_means(&day(41.0), now)
        .into_iter()
        .map(|t| matches!(t, Transition::Fire(_)))
        .collect();
    assert_eq!(fired, [true]);
    assert_eq!(
        e.on_daily_means(&day(50.0), now),
        vec![],
        "still open: no second alert"
    );
    assert!(matches!(
        e.on_daily_means(&day(20.0), now).as_slice(),
        [Transition::Clear { .. }]
    ));
}

#[test]
fn a_changed_one_time_limit_moves_the_alert_and_its_message_shows_the_limit_in_force() {
    // A department norms folder setting ПДК м.р. PM2.5 to 0.1 mg/m³ (100 µg/m³).
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("air.toml"),
        "[limit_sets.kz_dsm70.substances.pm2_5.one_time_mg_m3]\nvalue = 0.1\n",
    )
    .unwrap();
    let norms = taza_score::Norms::load_configured(&taza_score::config::ScoreConfig {
        norms_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    })
    .unwrap();
    // 120 µg/m³ is below the shipped 160 but above 100: it fires only under the department's.
    assert!(feed(&mut engine(), "air-1", Quantity::Pm2_5, T0, &[120.0; 20]).is_empty());
    let mut e = engine_with(&norms);
    let mut fired = Vec::new();
    for k in 0..15 {
        let at = T0 + k * MIN;
        fired.extend(e.on_readings(
            &id("air-1"),
            &[r(Quantity::Pm2_5, 120.0, at)],
            UnixSeconds(at),
        ));
    }
    let [Transition::Fire(f)] = fired.as_slice() else {
        panic!("{fired:?}")
    };
    assert_eq!(
        (f.rule.as_str(), f.threshold),
        ("pm2_5_one_time_limit", 100.0)
    );
    let oncall = crate::route::OnCallConfig::default();
    let ctx = crate::lifecycle::Context {
        rules: e.rules(),
        posts: &posts(),
        oncall: &oncall,
        public_url: "http://taza",
    };
    assert_eq!(
        crate::lifecycle::render(&ctx, &f.rule, &f.post, f.value, f.threshold, "en"),
        "air-1: PM2.5 120.0 µg/m³ (20-min mean) above the one-time limit 100.0 µg/m³"
    );
    // The 87.5 % clear threshold (87.5 µg/m³) moved with it.
    let got = feed(&mut e, "air-1", Quantity::Pm2_5, T0 + 15 * MIN, &[50.0; 20]);
    assert_eq!(got, ["clear:pm2_5_one_time_limit"]);
}

//! Score routes: the city scorecard, a post's scores, the plan targets, rivers, and low-emission
//! zones with their effect. Reads through [`crate::scoring::Scoring`]; zone writes need an
//! operator token.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::{PostId, Quantity, UnixSeconds};
use serde::{Deserialize, Serialize};

use super::{bad_query, ApiError, AppState, Caller, Role};
use crate::scoring::{self, ScoringError};
use taza_domain::calendar::{self, parse_rfc3339};
use taza_score::air::{Episode, Iza, PollutionLevel};
use taza_score::means::PeriodMean;
use taza_score::scorecard::{CityPollutant, TrajectoryRow};
use taza_score::CityScorecard;
use taza_store::{read, StoreError};

impl From<ScoringError> for ApiError {
    fn from(e: ScoringError) -> Self {
        match e {
            ScoringError::NotFound(m) => ApiError::NotFound(m),
            ScoringError::Invalid(m) => ApiError::BadRequest(m),
            ScoringError::Store(e) => ApiError::Store(e),
            // Operator data (a zone) stored around the API's checks: say which one.
            ScoringError::Corrupt(m) => ApiError::Misconfigured(m),
            ScoringError::Task(m) => ApiError::Store(StoreError::Task(m)),
            // The department's own files: tell them which file and key is wrong.
            ScoringError::Norms(e) => {
                ApiError::Misconfigured(format!("norms files are invalid: {e}"))
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct YearQuery {
    year: Option<i32>,
    /// With `to_year`: the multi-year view, one summary per local year.
    from_year: Option<i32>,
    to_year: Option<i32>,
    /// `summary`: city values, level, ИЗА and trajectory only (no per-post tables), for
    /// overview pages that must stay light.
    view: Option<String>,
}

/// `view=summary`: the scorecard without comparisons, each post cut to its annual means (an
/// overview shows an indicative city value from them while the year has too little data for a
/// valid one).
#[derive(Debug, Serialize)]
struct CitySummary<'a> {
    year: i32,
    generated_at: UnixSeconds,
    in_progress: bool,
    limit_set: &'a str,
    air_posts: usize,
    pollutants: &'a [CityPollutant],
    iza: &'a Iza,
    level: &'a PollutionLevel,
    posts: Vec<PostSummary<'a>>,
    episodes: &'a [Episode],
    trajectory: &'a [TrajectoryRow],
    notes: &'a [String],
}

#[derive(Debug, Serialize)]
struct PostSummary<'a> {
    post: &'a PostId,
    pollutants: Vec<PollutantSummary<'a>>,
}

#[derive(Debug, Serialize)]
struct PollutantSummary<'a> {
    quantity: Quantity,
    annual: &'a PeriodMean,
}

impl<'a> CitySummary<'a> {
    fn of(card: &'a CityScorecard) -> Self {
        // Every field named, so a new scorecard field is a decision here, not a silent omission.
        let CityScorecard {
            year,
            generated_at,
            in_progress,
            limit_set,
            air_posts,
            pollutants,
            iza,
            level,
            posts,
            episodes,
            trajectory,
            comparisons: _,
            notes,
        } = card;
        Self {
            year: *year,
            generated_at: *generated_at,
            in_progress: *in_progress,
            limit_set,
            air_posts: *air_posts,
            pollutants,
            iza,
            level,
            posts: posts
                .iter()
                .map(|p| PostSummary {
                    post: &p.post,
                    pollutants: p
                        .pollutants
                        .iter()
                        .map(|q| PollutantSummary {
                            quantity: q.quantity,
                            annual: &q.annual,
                        })
                        .collect(),
                })
                .collect(),
            episodes,
            trajectory,
            notes,
        }
    }
}

pub(super) async fn city(
    State(s): State<AppState>,
    q: Result<Query<YearQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let summary = match q.view.as_deref() {
        None | Some("full") => false,
        Some("summary") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "view must be full or summary, not {other:?}"
            )))
        }
    };
    match (q.from_year, q.to_year, q.year) {
        (Some(from_year), Some(to_year), None) => {
            // Years are checked against `scoring::YEARS` (HTTP 400 outside it).
            let cards = s.scoring.city_years(from_year, to_year).await?;
            let years: Vec<CitySummary<'_>> = cards.iter().map(CitySummary::of).collect();
            return Ok(Json(serde_json::json!({
                "from_year": from_year,
                "to_year": to_year,
                "years": years,
            }))
            .into_response());
        }
        (None, None, _) => {}
        _ => {
            return Err(ApiError::BadRequest(
                "give year, or from_year and to_year together".into(),
            ))
        }
    }
    // The year is checked against `scoring::YEARS` (HTTP 400 outside it).
    let year = q.year.unwrap_or_else(scoring::current_year);
    let card = s.scoring.city(year).await?;
    Ok(if summary {
        Json(CitySummary::of(&card)).into_response()
    } else {
        Json(&*card).into_response()
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SpanQuery {
    from: Option<String>,
    to: Option<String>,
}

pub(super) async fn post(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    q: Result<Query<SpanQuery>, QueryRejection>,
) -> Result<Json<taza_score::PostScores>, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let post = PostId::parse(&raw).map_err(|_| ApiError::NotFound(format!("no post {raw:?}")))?;
    let parse =
        |name: &str, v: &Option<String>| -> Result<Option<protocol::UnixSeconds>, ApiError> {
            v.as_deref()
                .map(|t| {
                    parse_rfc3339(t)
                        .ok_or_else(|| ApiError::BadRequest(format!("{name} must be RFC 3339")))
                })
                .transpose()
        };
    let to = parse("to", &q.to)?.unwrap_or_else(|| calendar::now().offset(1));
    let from = parse("from", &q.from)?.unwrap_or(to.offset(-7 * 86_400));
    if from >= to || to.0 - from.0 > 400 * 86_400 {
        return Err(ApiError::BadRequest(
            "from must be before to, at most 400 days apart".into(),
        ));
    }
    Ok(Json(s.scoring.post(post, from, to).await?))
}

pub(super) async fn targets(
    State(s): State<AppState>,
) -> Result<Json<taza_score::TargetTable>, ApiError> {
    let norms = s.scoring.norms().await?;
    Ok(Json(taza_score::targets(&norms)))
}

/// The active limit set (µg/m³), for reference lines and map colours.
pub(super) async fn limits(
    State(s): State<AppState>,
) -> Result<Json<taza_score::norms::LimitSet>, ApiError> {
    let norms = s.scoring.norms().await?;
    Ok(Json(norms.active().clone()))
}

pub(super) async fn rivers(
    State(s): State<AppState>,
) -> Result<Json<Vec<taza_score::RiverStatus>>, ApiError> {
    Ok(Json(s.scoring.rivers().await?))
}

pub(super) async fn zones(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let (zones, posts) = s
        .store
        .read(|db| Ok((read::zones(db)?, read::post_descriptors(db)?)))
        .await?;
    let out: Vec<serde_json::Value> = zones
        .into_iter()
        .map(|z| {
            let zone = chrono::NaiveDate::parse_from_str(&z.start_date, "%Y-%m-%d")
                .map_err(|_| format!("stored start_date {:?} is not YYYY-MM-DD", z.start_date))
                .and_then(|d| {
                    taza_score::Zone::from_geojson(&z.id, &z.name, d, &z.geometry.to_string())
                        .map_err(|e| format!("stored geometry does not parse: {e}"))
                });
            // A zone that does not parse is listed with `posts_inside: null` and why, not as a
            // zone with no posts inside.
            let (inside, error) = match zone {
                Ok(zone) => {
                    let inside: Vec<&str> = posts
                        .iter()
                        .filter(|p| {
                            p.kind == taza_score::PostKind::Air
                                && zone.contains(p.lon_deg, p.lat_deg)
                        })
                        .map(|p| p.id.as_str())
                        .collect();
                    (Some(inside), None)
                }
                Err(e) => {
                    tracing::warn!(zone = %z.id, error = %e, "stored zone does not parse");
                    (None, Some(e))
                }
            };
            let mut v = serde_json::json!({
                "id": z.id, "name": z.name, "start_date": z.start_date, "geometry": z.geometry,
                "posts_inside": inside, "updated_by": z.updated_by, "updated_at": z.updated_at,
            });
            if let (Some(error), Some(o)) = (error, v.as_object_mut()) {
                o.insert("error".into(), error.into());
            }
            v
        })
        .collect();
    Ok(Json(serde_json::Value::Array(out)))
}

pub(super) async fn add_zone(
    State(s): State<AppState>,
    caller: Caller,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    caller.require(Role::Operator)?;
    let Json(feature) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let zone = scoring::zone_from_feature(&feature)?;
    let id = zone.id.clone();
    let by = caller.name.clone();
    let created = s
        .store
        .write(move |db| taza_store::admin::upsert_zone(db, &zone, &by))
        .await?;
    tracing::info!(zone = %id, by = %caller.name, created, "zone saved");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(serde_json::json!({ "id": id, "created": created })),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EffectQuery {
    quantity: Option<String>,
}

pub(super) async fn zone_effect(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<EffectQuery>, QueryRejection>,
) -> Result<Json<Vec<taza_score::ZoneEffect>>, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let quantities = match q.quantity.as_deref() {
        None | Some("") => vec![Quantity::No2, Quantity::Pm2_5],
        Some(name) => match Quantity::parse(name) {
            Some(q @ (Quantity::No2 | Quantity::Pm2_5 | Quantity::Pm10)) => vec![q],
            _ => {
                return Err(ApiError::BadRequest(
                    "quantity must be no2, pm2_5 or pm10".into(),
                ))
            }
        },
    };
    let mut out = Vec::new();
    for quantity in quantities {
        out.push(s.scoring.zone_effect(id.clone(), quantity).await?);
    }
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use crate::scoring::Scoring;
    use crate::{router, AppState, TechnicianContext};

    const PM25_DAILY_45: &str = "[limit_sets.kz_dsm70.substances.pm2_5.daily_mg_m3]\nvalue = 0.045\nsource = \"department decision (test)\"\nstatus = \"unconfirmed\"\n";
    const PM25_BROKEN: &str =
        "[limit_sets.kz_dsm70.substances.pm2_5.daily_mg_m3]\nvalue = \"high\"\n";
    /// A square around 76.89 E 43.24 N.
    const SQUARE: &str = r#"{"type":"Polygon","coordinates":[[[76.88,43.23],[76.90,43.23],[76.90,43.25],[76.88,43.25],[76.88,43.23]]]}"#;

    /// The API over a fresh SQLite store, scoring with `score`; the dir must outlive the router.
    fn app(score: taza_score::config::ScoreConfig) -> (tempfile::TempDir, AppState) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = taza_store::config::StoreConfig {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        drop(taza_store::open_writer(&cfg).unwrap());
        let path = taza_store::db_path(&cfg);
        let store = taza_store::Store::sqlite(&path).unwrap();
        (dir, state_on(store, score))
    }

    /// The API over `store`, scoring with `score`.
    fn state_on(store: taza_store::Store, score: taza_score::config::ScoreConfig) -> AppState {
        let registry = taza_domain::registry::Registry::new(&[], Duration::from_secs(60), false);
        AppState {
            scoring: Scoring::try_new(score, store.clone()).unwrap(),
            store,
            metrics: crate::telemetry::Metrics::new(),
            live: tokio::sync::broadcast::channel(1).0,
            tokens: Arc::new(Vec::new()),
            alerts: Arc::new(taza_alert::Shared {
                rules: Vec::new(),
                oncall: Default::default(),
                public_url: String::new(),
                registry: registry.clone(),
                wake: tokio::sync::mpsc::channel(1).0,
                channels: Vec::new(),
            }),
            registry,
            technician: Arc::new(TechnicianContext {
                broker: "mqtt://127.0.0.1:1883".parse().unwrap(),
                topic_prefix: "taza".into(),
                default_cadence: Duration::from_secs(60),
                ranges: Arc::new(taza_registry::commission::PlausibleRanges::shipped().unwrap()),
            }),
            tasks: Default::default(),
            shutdown: tokio_util::sync::CancellationToken::new(),
        }
    }

    async fn get(state: &AppState, uri: &str) -> (u16, serde_json::Value) {
        let resp = router(state.clone())
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    async fn pm25_daily_limit(state: &AppState) -> serde_json::Value {
        let (status, limits) = get(state, "/api/v1/limits").await;
        assert_eq!(status, 200, "{limits}");
        limits["substances"]["pm2_5"]["daily_ug_m3"]["value"].clone()
    }

    #[tokio::test]
    async fn a_norms_edit_applies_at_the_next_request_and_a_broken_one_keeps_serving_and_shows_in_healthz(
    ) {
        let norms_dir = tempfile::tempdir().unwrap();
        let (_db, state) = app(taza_score::config::ScoreConfig {
            norms_dir: Some(norms_dir.path().to_path_buf()),
            ..Default::default()
        });
        assert_eq!(pm25_daily_limit(&state).await, 35.0);
        let air = norms_dir.path().join("air.toml");
        std::fs::write(&air, PM25_DAILY_45).unwrap();
        assert_eq!(pm25_daily_limit(&state).await, 45.0, "no restart needed");
        let (_, health) = get(&state, "/healthz").await;
        assert_eq!(health["norms"]["status"], "ok", "{health}");
        assert_eq!(health["norms"]["version"], 2, "{health}");

        std::fs::write(&air, PM25_BROKEN).unwrap();
        assert_eq!(
            pm25_daily_limit(&state).await,
            45.0,
            "the last good norms stay in use"
        );
        let (_, health) = get(&state, "/healthz").await;
        assert_eq!(health["norms"]["status"], "stale", "{health}");
        assert_eq!(health["norms"]["version"], 2, "{health}");
        let error = health["norms"]["error"].as_str().unwrap();
        assert!(error.contains("air.toml"), "{error}");
        assert_ne!(health["status"], "ok");

        std::fs::remove_file(&air).unwrap();
        assert_eq!(pm25_daily_limit(&state).await, 35.0);
        let (_, health) = get(&state, "/healthz").await;
        assert_eq!(health["norms"]["status"], "ok", "{health}");
        assert_eq!(health["norms"]["error"], serde_json::Value::Null);
    }

    #[tokio::test]
    async fn healthz_names_the_task_whose_failure_is_stopping_the_gateway() {
        let (_db, state) = app(Default::default());
        let (_, health) = get(&state, "/healthz").await;
        assert_eq!(health["task"], serde_json::Value::Null, "{health}");
        state.tasks.record(crate::tasks::TaskFailure {
            task: "alert evaluator",
            reason: "panicked: boom".into(),
        });
        let (status, health) = get(&state, "/healthz").await;
        assert_eq!(status, 503, "{health}");
        assert_eq!(health["status"], "failing", "{health}");
        assert_eq!(health["task"]["task"], "alert evaluator", "{health}");
        assert_eq!(health["task"]["reason"], "panicked: boom", "{health}");
    }

    #[tokio::test]
    async fn a_city_scorecard_for_year_999999_is_a_bad_request() {
        let (_db, state) = app(Default::default());
        let (status, body) = get(&state, "/api/v1/scores/city?year=999999").await;
        assert_eq!(status, 400, "{body}");
        assert!(body["error"].as_str().unwrap().contains("year"), "{body}");
        assert_eq!(get(&state, "/api/v1/scores/city?year=2025").await.0, 200);
    }

    #[tokio::test]
    async fn the_summary_view_is_the_scorecard_without_comparisons() {
        let (_db, state) = app(Default::default());
        let (_, full) = get(&state, "/api/v1/scores/city?year=2025").await;
        let (status, summary) = get(&state, "/api/v1/scores/city?year=2025&view=summary").await;
        assert_eq!(status, 200, "{summary}");
        let mut keys: Vec<&String> = full.as_object().unwrap().keys().collect();
        keys.retain(|k| *k != "comparisons");
        let summary_keys: Vec<&String> = summary.as_object().unwrap().keys().collect();
        assert_eq!(summary_keys, keys);
        assert_eq!(summary["iza"], full["iza"]);
    }

    #[tokio::test]
    async fn a_stored_zone_that_does_not_parse_is_listed_with_why_not_with_no_posts() {
        let (_db, state) = app(Default::default());
        state
            .store
            .write(|db| {
                let zone = taza_store::admin::NewZone {
                    id: "centre-lez".into(),
                    name: "Центр".into(),
                    start_date: "5 Jan".into(),
                    geometry: r#"{"type":"Polygon","coordinates":[[[76.88,43.23],[76.90,43.23],[76.90,43.25],[76.88,43.23]]]}"#.into(),
                };
                taza_store::admin::upsert_zone(db, &zone, "test")
            })
            .await
            .unwrap();
        let (status, zones) = get(&state, "/api/v1/zones").await;
        assert_eq!(status, 200, "{zones}");
        assert_eq!(zones[0]["posts_inside"], serde_json::Value::Null, "{zones}");
        let error = zones[0]["error"].as_str().unwrap();
        assert!(error.contains("5 Jan"), "{error}");
    }

    /// An air post with two days of PM2.5 (one whole, one of ten hours) and a whole day of NO2
    /// in November 2026, a river post with a day of dissolved oxygen up to `now`, a zone around
    /// the air post: readings and rollups in the logical layout, as both writers leave them.
    fn fixture(now: protocol::UnixSeconds) -> String {
        use protocol::UnixSeconds;
        use std::fmt::Write;
        let day = taza_domain::calendar::LocalDay::of(
            chrono::NaiveDate::from_ymd_opt(2026, 11, 10).unwrap(),
        );
        let mut sql = String::from(
            "INSERT INTO posts (id, kind, name, latitude, longitude, district, river, sensors, cadence_s, updated_at)
                 VALUES ('alm-b', 'air', 'B', 43.24, 76.89, 'Алмалинский', NULL, '[\"pm2_5\",\"no2\"]', 60, 0),
                        ('riv-1', 'river', 'R', 43.2, 76.95, NULL, 'Есентай', '[\"dissolved_oxygen\"]', 600, 0);
             INSERT INTO zones (id, name, start_date, geometry, updated_at, updated_by)
                 VALUES ('centre-lez', 'Центр', '2026-11-11', '",
        );
        sql.push_str(SQUARE);
        sql.push_str("', 0, 'test');\n");
        let series: [(&str, &str, i64, usize, f64); 4] = [
            ("alm-b", "pm2_5", day.start.0, 24, 20.0),
            ("alm-b", "pm2_5", day.end.0, 10, 80.0),
            ("alm-b", "no2", day.start.0, 24, 50.0),
            (
                "riv-1",
                "dissolved_oxygen",
                (now.0 / 3600 - 24) * 3600,
                24,
                5.0,
            ),
        ];
        for (post, q, start, hours, base) in series {
            let local = taza_domain::calendar::LocalDay::containing(UnixSeconds(start));
            let (mut count, mut sum) = (0, 0.0);
            for h in 0..hours as i64 {
                let (at, mean) = (start + h * 3600, base + h as f64);
                let (w, ws) = (3600.0 * mean, 1200.0 * mean);
                writeln!(
                    sql,
                    "INSERT INTO readings (post, quantity, at, value, flags, window_s, received_at)
                         VALUES ('{post}', '{q}', {}, {mean:?}, 0, 3600, {at});
                     INSERT INTO rollup_hour (post, quantity, start, count, weighted_sum, covered_s, min, max, expected)
                         VALUES ('{post}', '{q}', {at}, 1, {w:?}, 3600, {mean:?}, {mean:?}, 60);
                     INSERT INTO rollup_20min (post, quantity, start, count, weighted_sum, covered_s, min, max)
                         VALUES ('{post}', '{q}', {at}, 1, {ws:?}, 1200, {mean:?}, {mean:?}),
                                ('{post}', '{q}', {at} + 1200, 1, {ws:?}, 1200, {mean:?}, {mean:?}),
                                ('{post}', '{q}', {at} + 2400, 1, {ws:?}, 1200, {mean:?}, {mean:?});",
                    at + 3600
                )
                .unwrap();
                count += 1;
                sum += w;
            }
            writeln!(
                sql,
                "INSERT INTO rollup_day (post, quantity, day, start, end_at, count, weighted_sum, covered_s, min, max, expected)
                     VALUES ('{post}', '{q}', '{}', {}, {}, {count}, {sum:?}, {}, {base:?}, {:?}, 1440);",
                local.label(),
                local.start.0,
                local.end.0,
                count * 3600,
                base + hours as f64 - 1.0,
            )
            .unwrap();
        }
        sql
    }

    /// Runs `sql` (several statements, no parameters) in a write transaction of `state`'s store.
    async fn load(state: &AppState, sql: String) {
        state
            .store
            .write(move |db| match db {
                taza_store::Db::Sqlite(c) => Ok(c.execute_batch(&sql)?),
                taza_store::Db::Pg(pg) => pg.batch_execute(&sql),
            })
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_api_reads_and_scores_the_same_on_sqlite_and_postgres() {
        let now = taza_domain::calendar::now();
        let (_dir, sqlite) = app(Default::default());
        let mut states = vec![sqlite];
        if let Some(url) = taza_store::pg::test_server::database("api::reads_and_scores") {
            let store =
                taza_store::Store::Pg(taza_store::pg::PgStore::connect(&url).await.unwrap());
            states.push(state_on(store, Default::default()));
        }
        let day = taza_domain::calendar::LocalDay::of(
            chrono::NaiveDate::from_ymd_opt(2026, 11, 10).unwrap(),
        );
        let (from, to) = (
            taza_domain::calendar::rfc3339(day.start),
            taza_domain::calendar::rfc3339(day.end.offset(86_400)),
        );
        let uris = [
            format!("/api/v1/posts/alm-b/readings?from={from}&to={to}"),
            format!("/api/v1/posts/alm-b/readings?quantity=no2&from={from}&to={to}&limit=5"),
            format!("/api/v1/posts/alm-b/rollups?quantity=pm2_5&period=hour&from={from}&to={to}"),
            format!("/api/v1/posts/alm-b/rollups?quantity=pm2_5&period=day&from={from}&to={to}"),
            "/api/v1/latest".to_string(),
            "/api/v1/zones".to_string(),
            format!("/api/v1/scores/posts/alm-b?from={from}&to={to}"),
            "/api/v1/scores/city?year=2026".to_string(),
            "/api/v1/rivers".to_string(),
            "/api/v1/zones/centre-lez/effect?quantity=pm2_5".to_string(),
        ];
        let mut answers = Vec::new();
        for state in &states {
            load(state, fixture(now)).await;
            let mut got = Vec::new();
            for uri in &uris {
                let (status, mut body) = get(state, uri).await;
                assert_eq!(status, 200, "{uri}: {body}");
                if let Some(o) = body.as_object_mut() {
                    o.remove("generated_at");
                }
                got.push(body);
            }
            answers.push(got);
        }
        let sqlite = &answers[0];
        assert_eq!(
            sqlite[0]["readings"].as_array().unwrap().len(),
            24 + 10 + 24
        );
        assert_eq!(sqlite[1]["readings"].as_array().unwrap().len(), 5);
        assert_eq!(sqlite[1]["truncated"], true);
        assert_eq!(sqlite[2]["rollups"].as_array().unwrap().len(), 34);
        let days = sqlite[3]["rollups"].as_array().unwrap();
        assert_eq!(days.len(), 2, "{}", sqlite[3]);
        assert_eq!(days[0]["mean"], 31.5, "the mean of 20..=43");
        assert_eq!(sqlite[4].as_array().unwrap().len(), 3, "{}", sqlite[4]);
        assert_eq!(sqlite[5][0]["posts_inside"], serde_json::json!(["alm-b"]));
        let pm = sqlite[7]["pollutants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["quantity"] == "pm2_5")
            .unwrap();
        // From the day aggregates the refresh computed (the largest 20-minute mean).
        assert_eq!(pm["posts_with_data"], 1, "{pm}");
        assert!(pm["si_max"]["value"].as_f64().unwrap() > 0.0, "{pm}");
        let oxygen = &sqlite[8][0]["parameters"][0];
        assert_eq!(oxygen["quantity"], "dissolved_oxygen", "{}", sqlite[8]);
        assert!(oxygen["valid_hours"].as_u64().unwrap() >= 23, "{oxygen}");
        for (backend, got) in answers.iter().enumerate().skip(1) {
            for ((uri, a), b) in uris.iter().zip(sqlite).zip(got) {
                assert_eq!(a, b, "backend {backend}: {uri}");
            }
        }
    }

    #[test]
    fn the_summary_keeps_per_post_only_the_annual_means() {
        use taza_score::{HourlyMean, PostDescriptor, PostKind, PostSeries, QuantitySeries};
        let start = taza_domain::calendar::parse_rfc3339("2024-12-31T19:00:00Z").unwrap();
        let hourly = (0..24 * 20)
            .map(|i| HourlyMean {
                start: start.offset(i * 3600),
                mean: 40.0,
                covered_s: 3600,
                count: 60,
                max: 40.0,
            })
            .collect();
        let post = PostSeries {
            post: PostDescriptor {
                id: protocol::PostId::parse("alm-01").unwrap(),
                kind: PostKind::Air,
                lat_deg: 43.24,
                lon_deg: 76.92,
                district: Some("Алмалинский".into()),
                river: None,
                critical_level: None,
            },
            series: vec![QuantitySeries {
                days: Vec::new(),
                quantity: protocol::Quantity::Pm2_5,
                hourly,
                twenty_minute: vec![],
            }],
        };
        let now = taza_domain::calendar::parse_rfc3339("2025-06-01T00:00:00Z").unwrap();
        let norms = taza_score::Norms::embedded().unwrap();
        let card = taza_score::city_scorecard(&norms, 2025, &[post], now);
        // What the summary was before it was typed: the full JSON with keys removed.
        let mut expected = serde_json::to_value(&card).unwrap();
        let o = expected.as_object_mut().unwrap();
        o.remove("comparisons");
        for p in o["posts"].as_array_mut().unwrap() {
            for q in p["pollutants"].as_array_mut().unwrap() {
                q.as_object_mut()
                    .unwrap()
                    .retain(|k, _| k == "quantity" || k == "annual");
            }
            p.as_object_mut()
                .unwrap()
                .retain(|k, _| k == "post" || k == "pollutants");
        }
        let summary = serde_json::to_value(super::CitySummary::of(&card)).unwrap();
        assert_eq!(summary, expected);
        assert_eq!(
            summary["posts"][0]["pollutants"][0]["annual"]["valid_days"],
            20
        );
    }
}

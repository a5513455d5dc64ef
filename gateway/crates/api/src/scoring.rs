//! The I/O side of scoring: loads the norms (shipped files patched by the department's folder,
//! re-read at every computation so an edited limit applies without a rebuild or restart), reads
//! rollups into [`score`] inputs, and caches city scorecards. The engine itself ([`score`]) is
//! pure; this module is what the API and `gateway report` call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use chrono::NaiveDate;
use protocol::{PostId, Quantity, UnixSeconds};

use taza_domain::calendar::{self, LocalDay};
use taza_score::config::ScoreConfig;
use taza_score::{self as score, Norms, NormsError, PostKind};
use taza_store::{read, ReadPool, StoreError};

/// Pollutants the air scores cover.
pub const AIR_QUANTITIES: [Quantity; 3] = [Quantity::Pm2_5, Quantity::Pm10, Quantity::No2];
/// River quantities the river status covers.
pub const RIVER_QUANTITIES: [Quantity; 6] = [
    Quantity::WaterLevel,
    Quantity::WaterTemperature,
    Quantity::Conductivity,
    Quantity::Turbidity,
    Quantity::DissolvedOxygen,
    Quantity::Ph,
];
/// How long a city scorecard is reused before it is computed again.
const CACHE_TTL: Duration = Duration::from_secs(60);
/// First year of the city plan's trajectory.
const FIRST_PLAN_YEAR: i32 = 2019;
/// Days of history a zone effect looks at on each side of the zone's start.
const ZONE_WINDOW_DAYS: i64 = 365;
/// Seed of the zone-effect bootstrap, so the same data always gives the same interval.
const ZONE_BOOTSTRAP_SEED: u64 = 2023;

/// Why a score could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum ScoringError {
    /// The norms files are broken.
    #[error(transparent)]
    Norms(#[from] NormsError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No such post or zone.
    #[error("{0}")]
    NotFound(String),
    /// A request that cannot be scored (a zone geometry that does not parse, say).
    #[error("{0}")]
    Invalid(String),
}

/// Fingerprint of the department's norms folder: file names, sizes and modification times.
type NormsStamp = Vec<(String, u64, Option<SystemTime>)>;

/// Scoring over the store.
pub struct Scoring {
    cfg: ScoreConfig,
    pool: Arc<ReadPool>,
    cache: Mutex<HashMap<i32, CachedCard>>,
}

/// A computed scorecard, when, and under which norms.
struct CachedCard {
    at: Instant,
    stamp: NormsStamp,
    card: Arc<score::CityScorecard>,
}

impl std::fmt::Debug for Scoring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scoring")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Scoring {
    /// Scoring with `cfg` over `pool`.
    pub fn new(cfg: ScoreConfig, pool: Arc<ReadPool>) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            pool,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The norms as they stand now.
    pub fn norms(&self) -> Result<Norms, NormsError> {
        load_norms(&self.cfg)
    }

    fn stamp(&self) -> NormsStamp {
        let Some(dir) = &self.cfg.norms_dir else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut stamp: NormsStamp = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((
                    e.file_name().to_string_lossy().into_owned(),
                    meta.len(),
                    meta.modified().ok(),
                ))
            })
            .collect();
        stamp.sort();
        stamp
    }

    /// The city scorecard of local `year` (cached for a minute, and recomputed at once when the
    /// department's norms change).
    pub async fn city(&self, year: i32) -> Result<Arc<score::CityScorecard>, ScoringError> {
        let stamp = self.stamp();
        if let Ok(cache) = self.cache.lock() {
            if let Some(c) = cache.get(&year) {
                if c.at.elapsed() < CACHE_TTL && c.stamp == stamp {
                    return Ok(Arc::clone(&c.card));
                }
            }
        }
        let norms = self.norms()?;
        let card = Arc::new(city_scorecard_from(&self.pool, norms, year).await?);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(
                year,
                CachedCard {
                    at: Instant::now(),
                    stamp,
                    card: Arc::clone(&card),
                },
            );
        }
        Ok(card)
    }

    /// Scores of one post over `[from, to)`.
    pub async fn post(
        &self,
        post: PostId,
        from: UnixSeconds,
        to: UnixSeconds,
    ) -> Result<score::PostScores, ScoringError> {
        let norms = self.norms()?;
        let series = self
            .pool
            .run(move |c| {
                let descriptors: Vec<_> = read::post_descriptors(c)?
                    .into_iter()
                    .filter(|d| d.id == post)
                    .collect();
                // Whole local days around the span, so daily means are judged whole.
                let (day_from, day_to) = (
                    LocalDay::containing(from).start,
                    LocalDay::containing(to.offset(-1)).end,
                );
                read::post_series(c, descriptors, &AIR_QUANTITIES, day_from, day_to)
            })
            .await?;
        let post = series
            .first()
            .ok_or_else(|| ScoringError::NotFound("no such registered post".into()))?;
        Ok(score::post_scores(&norms, post, from, to))
    }

    /// Status of every river post over the last two days.
    pub async fn rivers(&self) -> Result<Vec<score::RiverStatus>, ScoringError> {
        let norms = self.norms()?;
        let now = calendar::now();
        let series = self
            .pool
            .run(move |c| {
                let rivers: Vec<_> = read::post_descriptors(c)?
                    .into_iter()
                    .filter(|d| d.kind == PostKind::River)
                    .collect();
                read::post_series(
                    c,
                    rivers,
                    &RIVER_QUANTITIES,
                    now.offset(-2 * 86_400),
                    now.offset(1),
                )
            })
            .await?;
        Ok(score::river_statuses(&norms, &series, now))
    }

    /// The effect of zone `id` on `quantity` (difference in differences of daily means).
    pub async fn zone_effect(
        &self,
        id: String,
        quantity: Quantity,
    ) -> Result<score::ZoneEffect, ScoringError> {
        let norms = self.norms()?;
        let (zone, series) = self
            .pool
            .run(move |c| {
                let row = read::zones(c)?.into_iter().find(|z| z.id == id);
                let Some(row) = row else { return Ok(None) };
                let start =
                    NaiveDate::parse_from_str(&row.start_date, "%Y-%m-%d").unwrap_or_default();
                let day0 = LocalDay::of(start).start;
                let air: Vec<_> = read::post_descriptors(c)?
                    .into_iter()
                    .filter(|d| d.kind == PostKind::Air)
                    .collect();
                let series = read::post_series(
                    c,
                    air,
                    &[quantity],
                    day0.offset(-ZONE_WINDOW_DAYS * 86_400),
                    day0.offset(ZONE_WINDOW_DAYS * 86_400),
                )?;
                Ok(Some((row, start, series)))
            })
            .await?
            .map(|(row, start, series)| {
                (
                    score::Zone::from_geojson(&row.id, &row.name, start, &row.geometry.to_string()),
                    series,
                )
            })
            .ok_or_else(|| ScoringError::NotFound("no such zone".into()))?;
        let zone = zone.map_err(|e| {
            ScoringError::Invalid(format!("stored zone geometry does not parse: {e}"))
        })?;
        Ok(score::zone::zone_effect_with(
            &zone,
            &series,
            quantity,
            ZONE_BOOTSTRAP_SEED,
            &norms.capture_rules(),
        ))
    }
}

/// Norms per `cfg`: shipped files, the department's folder over them, the chosen limit set.
pub fn load_norms(cfg: &ScoreConfig) -> Result<Norms, NormsError> {
    let mut norms = Norms::load(score::EMBEDDED, cfg.norms_dir.as_deref())?;
    if let Some(set) = &cfg.limit_set {
        norms.select_limit_set(set)?;
    }
    Ok(norms)
}

/// Reads what a year's scorecard needs (every plan year with data up to `year`, for the
/// trajectory) and computes it.
pub async fn city_scorecard_from(
    pool: &Arc<ReadPool>,
    norms: Norms,
    year: i32,
) -> Result<score::CityScorecard, ScoringError> {
    let now = calendar::now();
    let posts = pool
        .run(move |c| {
            let to =
                LocalDay::of(NaiveDate::from_ymd_opt(year + 1, 1, 1).unwrap_or_default()).start;
            let plan_start = LocalDay::of(
                NaiveDate::from_ymd_opt(FIRST_PLAN_YEAR.min(year), 1, 1).unwrap_or_default(),
            )
            .start;
            let from = read::earliest_rollup(c)?.map_or(plan_start, |e| e.max(plan_start));
            let descriptors = read::post_descriptors(c)?;
            read::post_series(c, descriptors, &AIR_QUANTITIES, from, to)
        })
        .await?;
    Ok(score::city_scorecard(&norms, year, &posts, now))
}

/// Current local year in Almaty.
pub fn current_year() -> i32 {
    calendar::local_year(calendar::now())
}

/// A zone from a GeoJSON Feature whose properties carry `id`, `name` and `start_date`
/// (YYYY-MM-DD, local), checked by parsing its geometry as the engine will.
pub fn zone_from_feature(
    feature: &serde_json::Value,
) -> Result<taza_store::admin::NewZone, ScoringError> {
    let props = feature.get("properties").ok_or_else(|| {
        ScoringError::Invalid("a zone is a GeoJSON Feature with properties".into())
    })?;
    let text = |key: &str| {
        props
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ScoringError::Invalid(format!("zone property {key:?} is missing")))
    };
    let id = text("id")?;
    if PostId::parse(id).is_err() {
        return Err(ScoringError::Invalid(
            "zone id must be a slug: a-z, 0-9, '-', '_', at most 32".into(),
        ));
    }
    let name = text("name")?;
    let start_date = text("start_date")?;
    let start = NaiveDate::parse_from_str(start_date, "%Y-%m-%d")
        .map_err(|_| ScoringError::Invalid("start_date must be YYYY-MM-DD".into()))?;
    let geometry = feature
        .get("geometry")
        .ok_or_else(|| ScoringError::Invalid("zone has no geometry".into()))?;
    score::Zone::from_geojson(id, name, start, &geometry.to_string())
        .map_err(|e| ScoringError::Invalid(format!("zone geometry: {e}")))?;
    Ok(taza_store::admin::NewZone {
        id: id.to_string(),
        name: name.to_string(),
        start_date: start.format("%Y-%m-%d").to_string(),
        geometry: geometry.to_string(),
    })
}

/// The zones of a GeoJSON FeatureCollection file.
pub fn zones_from_file(
    path: &std::path::Path,
) -> Result<Vec<taza_store::admin::NewZone>, ScoringError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ScoringError::Invalid(format!("{}: {e}", path.display())))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ScoringError::Invalid(format!("{}: {e}", path.display())))?;
    let features = v
        .get("features")
        .and_then(|f| f.as_array())
        .ok_or_else(|| {
            ScoringError::Invalid(format!(
                "{}: not a GeoJSON FeatureCollection",
                path.display()
            ))
        })?;
    features
        .iter()
        .map(|f| {
            zone_from_feature(f)
                .map_err(|e| ScoringError::Invalid(format!("{}: {e}", path.display())))
        })
        .collect()
}

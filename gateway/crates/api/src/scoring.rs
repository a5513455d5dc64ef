//! The I/O side of scoring: loads the norms (shipped files patched by the department's folder),
//! reads rollups into [`score`] inputs, and caches city scorecards. The engine itself ([`score`])
//! is pure; this module is what the API and `gateway report` call.
//!
//! Norms are loaded once at start and reloaded only when the department's folder changes: each
//! request stats the folder's `*.toml` files (names, sizes, modification times) on the blocking
//! pool, which costs a directory listing, and parses and validates only when that fingerprint
//! moved, so an edited limit still applies at the next request without a restart. A reload that
//! fails validation keeps the last good norms in use, logs a warning once per refused edit, and
//! shows in `/healthz` under `norms` (`status: "stale"` with the file and key) until the folder
//! is fixed. Cached scorecards carry the version of the norms they were computed under, so a
//! reload that changes the norms invalidates them at once.

use std::collections::HashMap;
use std::ffi::OsString;
use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use chrono::NaiveDate;
use protocol::{PostId, Quantity, UnixSeconds};

use taza_domain::calendar::{self, LocalDay};
use taza_score::config::ScoreConfig;
use taza_score::{self as score, Norms, NormsError, PostKind};
use taza_store::day_scores::{self, SharedAggregate};
use taza_store::{read, Store, StoreError};

/// River quantities the river status covers.
pub const RIVER_QUANTITIES: [Quantity; 6] = [
    Quantity::WaterLevel,
    Quantity::WaterTemperature,
    Quantity::Conductivity,
    Quantity::Turbidity,
    Quantity::DissolvedOxygen,
    Quantity::Ph,
];
/// Years a city scorecard can be asked for (API and `gateway report`): the plans' span with room
/// on both sides, and well inside what chrono can represent.
pub const YEARS: RangeInclusive<i32> = 2000..=2100;
/// How long a city scorecard is reused before it is computed again (for new data; changed
/// norms invalidate it at once through their version).
/// Read connections one scorecard reads the day aggregates over (the machine has 2 cores).
const READ_PARTS: usize = 2;
/// Most years one multi-year request may ask for (beyond: several requests).
const MAX_YEARS_AT_ONCE: i32 = 30;
/// First year of the city plan's trajectory.
const FIRST_PLAN_YEAR: i32 = 2019;
/// Days of history a zone effect looks at on each side of the zone's start.
const ZONE_WINDOW_DAYS: i64 = 365;
/// Seed of the zone-effect bootstrap, so the same data always gives the same interval.
const ZONE_BOOTSTRAP_SEED: u64 = 2023;

/// Why a score could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum ScoringError {
    /// The norms files are broken (and no earlier version of them loaded).
    #[error(transparent)]
    Norms(#[from] NormsError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No such post or zone.
    #[error("{0}")]
    NotFound(String),
    /// A request that cannot be scored (a year out of range, a zone that does not parse).
    #[error("{0}")]
    Invalid(String),
    /// Stored data that does not parse (a zone's start date or geometry); names the zone.
    #[error("{0}")]
    Corrupt(String),
    /// The blocking task checking the norms panicked or was cancelled.
    #[error("{0}")]
    Task(String),
}

/// Fingerprint of the department's norms folder: per `*.toml` file (the only files
/// [`Norms::load`] reads) its name and, following symlinks (a mounted ConfigMap swaps them), its
/// size and modification time. Two edits that keep the size and land within one tick of the file
/// system's clock look alike; the file systems the gateway runs on keep nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NormsStamp {
    /// No `norms_dir` configured: the shipped files only, which never change.
    Shipped,
    /// The folder's norms files, sorted by name.
    Files(Vec<(OsString, FileStamp)>),
    /// The folder could not be listed (the load will say why).
    Unlisted(std::io::ErrorKind),
}

/// A norms file's size (bytes) and modification time, or why its metadata could not be read.
type FileStamp = Result<(u64, Option<SystemTime>), std::io::ErrorKind>;

impl NormsStamp {
    fn of(dir: Option<&Path>) -> Self {
        let Some(dir) = dir else {
            return Self::Shipped;
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => return Self::Unlisted(e.kind()),
        };
        let mut files = Vec::new();
        for entry in entries {
            let (path, name) = match entry {
                Ok(entry) => (entry.path(), entry.file_name()),
                Err(e) => return Self::Unlisted(e.kind()),
            };
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let meta = std::fs::metadata(&path)
                .map(|m| (m.len(), m.modified().ok()))
                .map_err(|e| e.kind());
            files.push((name, meta));
        }
        files.sort();
        Self::Files(files)
    }
}

/// Norms with the version they were loaded as (1 at start, +1 at each reload that changed them).
#[derive(Debug, Clone)]
struct Versioned {
    version: u64,
    norms: Arc<Norms>,
}

/// What the last load attempt left.
#[derive(Debug, Default)]
struct NormsState {
    /// The folder's fingerprint at the last load attempt (taken before reading, so an edit made
    /// during a load shows as a change at the next check).
    stamp: Option<NormsStamp>,
    /// The last norms that loaded and validated.
    good: Option<Versioned>,
    /// Why the folder's current content was refused, while `good` stays in use.
    refused: Option<String>,
}

/// The norms in use, reloaded when the department's folder changes.
#[derive(Debug)]
struct NormsCell {
    cfg: ScoreConfig,
    state: Mutex<NormsState>,
    /// Load attempts so far (tests check that a quiet folder is not parsed again).
    loads: AtomicU64,
}

impl NormsCell {
    fn new(cfg: ScoreConfig) -> Self {
        Self {
            cfg,
            state: Mutex::new(NormsState::default()),
            loads: AtomicU64::new(0),
        }
    }

    /// The norms to score with: the last good ones while the folder is as it was at the last
    /// load attempt, else freshly loaded. A refused reload keeps the last good norms (and says
    /// why in [`Self::health`]); with none yet, it is the error. Blocking: a directory listing,
    /// and on a change reading and parsing the files.
    fn current(&self) -> Result<Versioned, NormsError> {
        let stamp = NormsStamp::of(self.cfg.norms_dir.as_deref());
        // The state is replaced whole under the lock, never left half-written: a poisoned lock
        // still holds a consistent value.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(good) = &state.good {
            if state.stamp.as_ref() == Some(&stamp) {
                return Ok(good.clone());
            }
        }
        self.loads.fetch_add(1, Ordering::Relaxed);
        let loaded = load_norms(&self.cfg);
        state.stamp = Some(stamp);
        match loaded {
            Ok(norms) => {
                if state.refused.take().is_some() {
                    tracing::info!("department norms folder is valid again");
                }
                let good = match state.good.take() {
                    // A touched or rewritten file with the same content: same version, so
                    // cached scorecards stay.
                    Some(good) if *good.norms == norms => good,
                    Some(old) => {
                        tracing::info!(version = old.version + 1, "department norms reloaded");
                        Versioned {
                            version: old.version + 1,
                            norms: Arc::new(norms),
                        }
                    }
                    None => Versioned {
                        version: 1,
                        norms: Arc::new(norms),
                    },
                };
                state.good = Some(good.clone());
                Ok(good)
            }
            Err(e) => {
                let Some(good) = state.good.clone() else {
                    return Err(e);
                };
                tracing::warn!(
                    error = %e,
                    version = good.version,
                    "department norms edit refused; scoring keeps the last good norms"
                );
                state.refused = Some(e.to_string());
                Ok(good)
            }
        }
    }

    /// Checks the folder (reloading on a change) and reports the outcome.
    fn health(&self) -> NormsHealth {
        match self.current() {
            Ok(current) => {
                let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                NormsHealth {
                    status: if state.refused.is_some() {
                        "stale"
                    } else {
                        "ok"
                    },
                    version: Some(current.version),
                    error: state.refused.clone(),
                }
            }
            Err(e) => NormsHealth {
                status: "failing",
                version: None,
                error: Some(e.to_string()),
            },
        }
    }
}

/// The norms' line in `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NormsHealth {
    /// `ok`; `stale` while the department's folder holds an edit that does not validate (the
    /// last good norms stay in use); `failing` when no norms loaded at all (score routes answer
    /// HTTP 500 naming the file).
    pub status: &'static str,
    /// Version of the norms in use: 1 as loaded at start, +1 at each reload that changed them.
    pub version: Option<u64>,
    /// Why the folder's content was refused: file, key and problem.
    pub error: Option<String>,
}

/// Scoring over the store.
pub struct Scoring {
    store: Store,
    norms: Arc<NormsCell>,
    cache: Mutex<HashMap<i32, CachedCard>>,
    /// One refresh of the day aggregates at a time in this process (replicas take turns in
    /// the store, [`day_scores::refresh_store`]).
    refreshing: tokio::sync::Mutex<()>,
}

/// A computed scorecard, and the versions of the norms and the data it was computed from.
struct CachedCard {
    norms_version: u64,
    /// [`day_scores::aggregates_version`] when computed: it moves when any replica's refresh
    /// changes the aggregates.
    data_version: i64,
    card: Arc<score::CityScorecard>,
}

impl std::fmt::Debug for Scoring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scoring")
            .field("cfg", &self.norms.cfg)
            .finish_non_exhaustive()
    }
}

impl Scoring {
    /// Scoring with `cfg` over `store`; loads the norms now. A broken norms folder at start is
    /// logged and reported by every score request until it is fixed (see [`Self::try_new`]).
    pub fn new(cfg: ScoreConfig, store: Store) -> Arc<Self> {
        let norms = NormsCell::new(cfg);
        if let Err(e) = norms.current() {
            tracing::warn!(error = %e, "norms do not load; score requests fail until fixed");
        }
        Self::with(norms, store)
    }

    /// Like [`Self::new`], but a norms folder that does not load is an error.
    pub fn try_new(cfg: ScoreConfig, store: Store) -> Result<Arc<Self>, ScoringError> {
        let norms = NormsCell::new(cfg);
        norms.current()?;
        Ok(Self::with(norms, store))
    }

    fn with(norms: NormsCell, store: Store) -> Arc<Self> {
        Arc::new(Self {
            store,
            norms: Arc::new(norms),
            cache: Mutex::new(HashMap::new()),
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    /// The norms in use (reloaded first if the department's folder changed).
    pub async fn norms(&self) -> Result<Arc<Norms>, ScoringError> {
        Ok(self.versioned().await?.norms)
    }

    /// The norms' state for `/healthz` (checks the folder, as a score request would).
    pub async fn norms_health(&self) -> NormsHealth {
        let cell = Arc::clone(&self.norms);
        tokio::task::spawn_blocking(move || cell.health())
            .await
            .unwrap_or_else(|e| NormsHealth {
                status: "failing",
                version: None,
                error: Some(format!("norms check failed: {e}")),
            })
    }

    async fn versioned(&self) -> Result<Versioned, ScoringError> {
        let cell = Arc::clone(&self.norms);
        tokio::task::spawn_blocking(move || cell.current())
            .await
            .map_err(|e| ScoringError::Task(format!("norms check failed: {e}")))?
            .map_err(ScoringError::from)
    }

    /// The city scorecard of local `year`, from the day aggregates. Cached until the data or
    /// the norms change: each request first brings the aggregates up to date (cheap when no
    /// reading committed since), and a cached card is reused only while neither moved.
    pub async fn city(&self, year: i32) -> Result<Arc<score::CityScorecard>, ScoringError> {
        year_dates(year)?;
        let norms = self.versioned().await?;
        let data_version = self.refresh_aggregates(&norms.norms).await?;
        if let Ok(cache) = self.cache.lock() {
            if let Some(c) = cache.get(&year) {
                if c.norms_version == norms.version && c.data_version == data_version {
                    return Ok(Arc::clone(&c.card));
                }
            }
        }
        let card = Arc::new(
            city_scorecards_from_aggregates(&self.store, (*norms.norms).clone(), year, year)
                .await?
                .pop()
                .ok_or_else(|| ScoringError::Task("no scorecard computed".into()))?,
        );
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(
                year,
                CachedCard {
                    norms_version: norms.version,
                    data_version,
                    card: Arc::clone(&card),
                },
            );
        }
        Ok(card)
    }

    /// City scorecards of every local year in `from_year..=to_year` from one read of the day
    /// aggregates (the multi-year view and the dashboard's trajectory).
    pub async fn city_years(
        &self,
        from_year: i32,
        to_year: i32,
    ) -> Result<Vec<score::CityScorecard>, ScoringError> {
        if from_year > to_year || to_year - from_year > MAX_YEARS_AT_ONCE {
            return Err(ScoringError::Invalid(format!(
                "from_year must not be after to_year, and at most {} years at once",
                MAX_YEARS_AT_ONCE + 1
            )));
        }
        year_dates(from_year)?;
        year_dates(to_year)?;
        let norms = self.versioned().await?;
        self.refresh_aggregates(&norms.norms).await?;
        city_scorecards_from_aggregates(&self.store, (*norms.norms).clone(), from_year, to_year)
            .await
    }

    /// Recomputes the day aggregates that readings changed since the last call; returns the
    /// data version ([`day_scores::aggregates_version`]). A read transaction first asks whether
    /// anything is dirty, so a quiet store costs one indexed probe and never the write lock.
    async fn refresh_aggregates(&self, norms: &Arc<Norms>) -> Result<i64, ScoringError> {
        let fingerprint = score::days::fingerprint(norms);
        let asked = fingerprint.clone();
        let (pending, version) = self
            .store
            .read(move |db| {
                Ok((
                    day_scores::needs_refresh(db, &asked)?,
                    day_scores::aggregates_version(db)?,
                ))
            })
            .await?;
        if !pending {
            return Ok(version);
        }
        let _one = self.refreshing.lock().await;
        day_scores::refresh_store(&self.store, &fingerprint, aggregate(Arc::clone(norms))).await?;
        // Read again: the refresh moved it if it changed anything (here or on another replica).
        Ok(self.store.read(day_scores::aggregates_version).await?)
    }

    /// Scores of one post over `[from, to)`.
    pub async fn post(
        &self,
        post: PostId,
        from: UnixSeconds,
        to: UnixSeconds,
    ) -> Result<score::PostScores, ScoringError> {
        let norms = self.norms().await?;
        let series = self
            .store
            .read(move |db| {
                let Some(descriptor) = read::post_descriptors(db)?
                    .into_iter()
                    .find(|d| d.id == post)
                else {
                    return Ok(None);
                };
                // Whole local days around the span, so daily means are judged whole.
                let (day_from, day_to) = (
                    LocalDay::containing(from).start,
                    LocalDay::containing(to.offset(-1)).end,
                );
                read::one_post_series(db, descriptor, &score::days::SCORED, day_from, day_to)
                    .map(Some)
            })
            .await?;
        let post =
            series.ok_or_else(|| ScoringError::NotFound("no such registered post".into()))?;
        Ok(score::post_scores(&norms, &post, from, to))
    }

    /// Status of every river post over the last two days.
    pub async fn rivers(&self) -> Result<Vec<score::RiverStatus>, ScoringError> {
        let norms = self.norms().await?;
        let now = calendar::now();
        let series = self
            .store
            .read(move |db| {
                let rivers: Vec<_> = read::post_descriptors(db)?
                    .into_iter()
                    .filter(|d| d.kind == PostKind::River)
                    .collect();
                read::post_series(
                    db,
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
        let norms = self.norms().await?;
        let row = self
            .store
            .read(move |db| Ok(read::zones(db)?.into_iter().find(|z| z.id == id)))
            .await?
            .ok_or_else(|| ScoringError::NotFound("no such zone".into()))?;
        // The API checks both before storing; a row that fails here was written around it.
        let start = NaiveDate::parse_from_str(&row.start_date, "%Y-%m-%d").map_err(|_| {
            ScoringError::Corrupt(format!(
                "zone {:?}: stored start_date {:?} is not YYYY-MM-DD",
                row.id, row.start_date
            ))
        })?;
        let zone = score::Zone::from_geojson(&row.id, &row.name, start, &row.geometry.to_string())
            .map_err(|e| {
                ScoringError::Corrupt(format!(
                    "zone {:?}: stored geometry does not parse: {e}",
                    row.id
                ))
            })?;
        let day0 = LocalDay::of(start).start;
        let series = self
            .store
            .read(move |db| {
                let air: Vec<_> = read::post_descriptors(db)?
                    .into_iter()
                    .filter(|d| d.kind == PostKind::Air)
                    .collect();
                read::post_series(
                    db,
                    air,
                    &[quantity],
                    day0.offset(-ZONE_WINDOW_DAYS * 86_400),
                    day0.offset(ZONE_WINDOW_DAYS * 86_400),
                )
            })
            .await?;
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
    Norms::load_configured(cfg)
}

/// Reads what a year's scorecard needs (every plan year with data up to `year`, for the
/// trajectory) and computes it.
pub async fn city_scorecard_from(
    store: &Store,
    norms: Norms,
    year: i32,
) -> Result<score::CityScorecard, ScoringError> {
    year_dates(year)?;
    let norms = Arc::new(norms);
    refresh_aggregates(store, Arc::clone(&norms)).await?;
    city_scorecards_from_aggregates(store, (*norms).clone(), year, year)
        .await?
        .pop()
        .ok_or_else(|| ScoringError::Task("no scorecard computed".into()))
}

/// The span a city scorecard of `year` reads, local midnights: 1 January of the plan's first
/// year (or of `year`, if earlier) to 1 January of the year after (what a history source
/// such as InfluxDB must give, `taza_sink::history::read_series`).
pub fn scorecard_span(year: i32) -> Result<(UnixSeconds, UnixSeconds), ScoringError> {
    let (from, to) = year_dates(year)?;
    Ok((LocalDay::of(from).start, LocalDay::of(to).start))
}

/// The city scorecard of `year` from hourly and 20-minute means read from elsewhere (InfluxDB,
/// `taza_sink::history::read_series`, over [`scorecard_span`]), through the same arithmetic as
/// the store's: each series' local days aggregated by [`score::days::day_stats`] (what the
/// store's refresh keeps in `day_scores_year`), the 20-minute detail of the days that reach a
/// ВЗ multiple, the hourly means from 26 hours before `now` for the comparison views, then
/// the one engine, [`score::city_scorecard`]. The source only feeds it.
pub fn city_scorecard_from_buckets(
    norms: &Norms,
    year: i32,
    posts: Vec<score::PostSeries>,
    now: UnixSeconds,
) -> Result<score::CityScorecard, ScoringError> {
    let (from, to) = year_dates(year)?;
    let rules = norms.capture_rules();
    let high = norms.episodes.high_multiple.value;
    let recent_from = now.offset(-26 * 3600);
    let posts: Vec<score::PostSeries> = posts
        .into_iter()
        .map(|p| score::PostSeries {
            post: p.post,
            series: p
                .series
                .into_iter()
                .filter(|s| score::days::SCORED.contains(&s.quantity))
                .filter_map(|mut s| {
                    s.hourly.sort_by_key(|h| h.start);
                    s.twenty_minute.sort_by_key(|t| t.start);
                    let limit = score::days::one_time_limit(norms, s.quantity);
                    let days: Vec<score::DayStats> =
                        score::days::day_stats(&s.hourly, &s.twenty_minute, &rules, limit)
                            .into_iter()
                            .filter(|d| d.date >= from && d.date < to)
                            .collect();
                    if days.is_empty() {
                        return None;
                    }
                    let detail: Vec<(UnixSeconds, UnixSeconds)> = days
                        .iter()
                        .filter(|d| limit.is_some_and(|l| score::days::needs_detail(d, l, high)))
                        .map(|d| (d.start, d.start.offset(i64::from(d.hours) * 3600)))
                        .collect();
                    let twenty_minute = s
                        .twenty_minute
                        .into_iter()
                        .filter(|t| detail.iter().any(|(a, b)| t.start >= *a && t.start < *b))
                        .collect();
                    let hourly = s
                        .hourly
                        .into_iter()
                        .filter(|h| h.start >= recent_from)
                        .collect();
                    Some(score::QuantitySeries {
                        quantity: s.quantity,
                        hourly,
                        twenty_minute,
                        days,
                    })
                })
                .collect(),
        })
        .collect();
    Ok(score::city_scorecard(norms, year, &posts, now))
}

/// Brings the store's day aggregates up to date under `norms` (for `gateway report` and
/// tests; the API goes through [`Scoring`]); returns how many days were recomputed.
pub async fn refresh_aggregates(store: &Store, norms: Arc<Norms>) -> Result<usize, ScoringError> {
    let fingerprint = score::days::fingerprint(&norms);
    Ok(day_scores::refresh_store(store, &fingerprint, aggregate(norms)).await?)
}

/// The engine's arithmetic of a day under `norms`, for the store's refresh.
fn aggregate(norms: Arc<Norms>) -> SharedAggregate {
    let rules = norms.capture_rules();
    Arc::new(
        move |q: Quantity, hourly: &[score::HourlyMean], twenty: &[score::TwentyMinuteMean]| {
            score::days::day_stats(
                hourly,
                twenty,
                &rules,
                score::days::one_time_limit(&norms, q),
            )
        },
    )
}

/// Scorecards of `from_year..=to_year` from the day aggregates (which the caller refreshed):
/// the aggregates of every day from the plan's first year, the 20-minute detail of days that
/// reach a ВЗ multiple (episodes), and the last day of hourly means (comparison views).
async fn city_scorecards_from_aggregates(
    store: &Store,
    norms: Norms,
    from_year: i32,
    to_year: i32,
) -> Result<Vec<score::CityScorecard>, ScoringError> {
    let (plan_start, _) = year_dates(from_year)?;
    let (_, next_year) = year_dates(to_year)?;
    let now = calendar::now();
    let norms = Arc::new(norms);
    let descriptors = store.read(read::post_descriptors).await?;
    // The read dominates (some 150 000 aggregate rows for the plan years): split the posts over
    // READ_PARTS read connections, each on its own blocking thread.
    let per_part = descriptors.len().div_ceil(READ_PARTS).max(1);
    let mut parts = Vec::new();
    for chunk in descriptors.chunks(per_part) {
        let chunk = chunk.to_vec();
        let read_norms = Arc::clone(&norms);
        let store = store.clone();
        parts.push(async move {
            store
                .read(move |db| {
                    let high = read_norms.episodes.high_multiple.value;
                    let limits: Vec<(Quantity, Option<f64>)> = score::days::SCORED
                        .iter()
                        .map(|q| (*q, score::days::one_time_limit(&read_norms, *q)))
                        .collect();
                    let detail = |q: Quantity, d: &score::DayStats| {
                        limits
                            .iter()
                            .find(|(lq, _)| *lq == q)
                            .and_then(|(_, l)| *l)
                            .is_some_and(|l| score::days::needs_detail(d, l, high))
                    };
                    taza_store::day_scores::day_series(
                        db,
                        chunk,
                        &score::days::SCORED,
                        plan_start,
                        next_year,
                        // compare_latest reads the 24 hours before the last complete hour.
                        now.offset(-26 * 3600),
                        &detail,
                    )
                })
                .await
        });
    }
    let mut posts = Vec::with_capacity(descriptors.len());
    for part in futures_util::future::join_all(parts).await {
        posts.extend(part?);
    }
    Ok((from_year..=to_year)
        .map(|year| score::city_scorecard(&norms, year, &posts, now))
        .collect())
}

/// 1 January of the plan's first year (or of `year`, if earlier) and of the year after `year`;
/// a `year` outside [`YEARS`] is refused (chrono's own range ends near 262 000, and a year it
/// cannot represent must not become 1970's scorecard).
fn year_dates(year: i32) -> Result<(NaiveDate, NaiveDate), ScoringError> {
    let refused = || {
        ScoringError::Invalid(format!(
            "year must be between {} and {}",
            YEARS.start(),
            YEARS.end()
        ))
    };
    if !YEARS.contains(&year) {
        return Err(refused());
    }
    let january_1 = |y: i32| NaiveDate::from_ymd_opt(y, 1, 1).ok_or_else(refused);
    Ok((january_1(FIRST_PLAN_YEAR.min(year))?, january_1(year + 1)?))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The department raises the PM2.5 daily limit to 45 µg/m³.
    const PM25_DAILY_45: &str = "[limit_sets.kz_dsm70.substances.pm2_5.daily_mg_m3]\nvalue = 0.045\nsource = \"department decision (test)\"\nstatus = \"unconfirmed\"\n";
    /// A value that is not a number.
    const PM25_BROKEN: &str =
        "[limit_sets.kz_dsm70.substances.pm2_5.daily_mg_m3]\nvalue = \"high\"\n";
    /// A square around 76.89 E 43.24 N.
    const SQUARE: &str = r#"{"type":"Polygon","coordinates":[[[76.88,43.23],[76.90,43.23],[76.90,43.25],[76.88,43.25],[76.88,43.23]]]}"#;

    fn with_dir(dir: &Path) -> ScoreConfig {
        ScoreConfig {
            norms_dir: Some(dir.to_path_buf()),
            ..ScoreConfig::default()
        }
    }

    fn pm25_daily_ug_m3(norms: &Norms) -> f64 {
        norms
            .limit("pm2_5")
            .and_then(|l| l.daily_ug_m3.as_ref())
            .unwrap()
            .value
    }

    fn loads(cell: &NormsCell) -> u64 {
        cell.loads.load(Ordering::Relaxed)
    }

    /// A fresh SQLite store; the dir must outlive it.
    fn store() -> (tempfile::TempDir, std::path::PathBuf, Store) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = taza_store::config::StoreConfig {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        drop(taza_store::open_writer(&cfg).unwrap());
        let path = taza_store::db_path(&cfg);
        let store = Store::sqlite(&path).unwrap();
        (dir, path, store)
    }

    #[test]
    fn a_quiet_norms_folder_is_not_parsed_again_and_an_edit_is_at_the_next_check() {
        let dir = tempfile::tempdir().unwrap();
        let cell = NormsCell::new(with_dir(dir.path()));
        let first = cell.current().unwrap();
        for _ in 0..5 {
            assert_eq!(cell.current().unwrap().version, first.version);
        }
        assert_eq!(loads(&cell), 1, "an unchanged folder is only listed");
        // Files the loader ignores (an editor's swap file) are no change either.
        std::fs::write(dir.path().join(".air.toml.swp"), "x").unwrap();
        cell.current().unwrap();
        assert_eq!(loads(&cell), 1);

        std::fs::write(dir.path().join("air.toml"), PM25_DAILY_45).unwrap();
        let edited = cell.current().unwrap();
        assert_eq!(loads(&cell), 2);
        assert_eq!(edited.version, first.version + 1);
        assert_eq!(pm25_daily_ug_m3(&edited.norms), 45.0);
        cell.current().unwrap();
        assert_eq!(loads(&cell), 2);
        assert_eq!(cell.health().status, "ok");
    }

    #[test]
    fn a_broken_norms_edit_keeps_the_last_good_norms_and_says_which_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("air.toml"), PM25_DAILY_45).unwrap();
        let cell = NormsCell::new(with_dir(dir.path()));
        let good = cell.current().unwrap();

        std::fs::write(dir.path().join("air.toml"), PM25_BROKEN).unwrap();
        let kept = cell.current().unwrap();
        assert_eq!(kept.version, good.version);
        assert_eq!(pm25_daily_ug_m3(&kept.norms), 45.0);
        let health = cell.health();
        assert_eq!(health.status, "stale");
        assert_eq!(health.version, Some(good.version));
        let error = health.error.unwrap();
        assert!(error.contains("air.toml"), "{error}");
        assert_eq!(
            loads(&cell),
            2,
            "the broken file is parsed once, not per request"
        );

        // Fixed (here: the override removed): the shipped 35 µg/m³ apply again, as a new version.
        std::fs::remove_file(dir.path().join("air.toml")).unwrap();
        let fixed = cell.current().unwrap();
        assert_eq!(fixed.version, good.version + 1);
        assert_eq!(pm25_daily_ug_m3(&fixed.norms), 35.0);
        assert_eq!(
            cell.health(),
            NormsHealth {
                status: "ok",
                version: Some(fixed.version),
                error: None
            }
        );
    }

    #[test]
    fn norms_that_never_loaded_are_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("air.toml"), PM25_BROKEN).unwrap();
        let cell = NormsCell::new(with_dir(dir.path()));
        let error = cell.current().unwrap_err().to_string();
        assert!(error.contains("air.toml"), "{error}");
        assert_eq!(cell.health().status, "failing");
    }

    #[tokio::test]
    async fn the_cached_scorecard_is_reused_until_the_norms_version_changes() {
        let (_db, _, store) = store();
        let dir = tempfile::tempdir().unwrap();
        let scoring = Scoring::try_new(with_dir(dir.path()), store).unwrap();
        let a = scoring.city(2025).await.unwrap();
        let b = scoring.city(2025).await.unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.limit_set, "kz_dsm70");
        std::fs::write(
            dir.path().join("air.toml"),
            "active_set = \"kz_dsm70_no2_daily_0_1\"\n",
        )
        .unwrap();
        let c = scoring.city(2025).await.unwrap();
        assert_eq!(c.limit_set, "kz_dsm70_no2_daily_0_1");
    }

    #[tokio::test]
    async fn a_year_outside_the_scorecard_range_is_refused_not_scored_as_1970() {
        let (_db, _, store) = store();
        let scoring = Scoring::try_new(ScoreConfig::default(), store.clone()).unwrap();
        for year in [999_999, 262_143, 1999, 2101, i32::MAX, i32::MIN] {
            let city = scoring.city(year).await;
            assert!(matches!(city, Err(ScoringError::Invalid(_))), "{year}");
            let report = city_scorecard_from(&store, Norms::embedded().unwrap(), year).await;
            assert!(matches!(report, Err(ScoringError::Invalid(_))), "{year}");
        }
        assert_eq!(scoring.city(2025).await.unwrap().year, 2025);
    }

    #[tokio::test]
    async fn a_stored_zone_whose_start_date_does_not_parse_is_an_error_naming_the_zone() {
        let (_db, _, store) = store();
        store
            .write(|db| {
                let zone = taza_store::admin::NewZone {
                    id: "centre-lez".into(),
                    name: "Центр".into(),
                    start_date: "5 Jan".into(),
                    geometry: SQUARE.into(),
                };
                taza_store::admin::upsert_zone(db, &zone, "test")
            })
            .await
            .unwrap();
        let scoring = Scoring::try_new(ScoreConfig::default(), store).unwrap();
        let error = scoring
            .zone_effect("centre-lez".into(), Quantity::No2)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ScoringError::Corrupt(m) if m.contains("centre-lez") && m.contains("5 Jan")),
            "{error}"
        );
    }

    /// Readings for one post and PM2.5 over a random month of 2025: random times, windows,
    /// invalidating flags, replays and late arrivals, in random order.
    fn random_month(seed: u64) -> (chrono::NaiveDate, Vec<taza_domain::pipeline::Reading>) {
        use protocol::QaFlags;
        let mut rng = fastrand::Rng::with_seed(seed);
        let month = rng.u32(1..=12);
        let first = NaiveDate::from_ymd_opt(2025, month, 1).unwrap();
        let start = LocalDay::of(first).start;
        let mut out = Vec::new();
        for i in 0..rng.usize(1500..4000) {
            let at = start.offset(rng.i64(1..31 * 1440) * 60);
            let flags = if rng.u8(..20) == 0 {
                QaFlags::STUCK
            } else {
                QaFlags::NONE
            };
            let window_s = [None, Some(60), Some(300), Some(1200), Some(3600)][rng.usize(..5)];
            let r = taza_domain::pipeline::Reading {
                quantity: Quantity::Pm2_5,
                value: rng.f64() * 150.0 + if i % 97 == 0 { 1800.0 } else { 0.0 },
                at,
                flags,
                window_s,
            };
            out.push(r);
            if rng.u8(..15) == 0 {
                out.push(r); // a replay
            }
        }
        rng.shuffle(&mut out);
        (first, out)
    }

    /// The buckets of the stored raw readings, computed here from the rules rollup.rs states
    /// (a reading covers its window, or the cadence, ending at its time, capped at the bucket),
    /// independently of the writer's incremental rollups.
    fn buckets_from_raw(
        conn: &taza_store::Connection,
        cadence_s: i64,
    ) -> (Vec<score::HourlyMean>, Vec<score::TwentyMinuteMean>) {
        use std::collections::BTreeMap;
        let mut stmt = conn
            .prepare("SELECT at, value, flags, window_s FROM readings WHERE quantity = 'pm2_5'")
            .unwrap();
        let rows: Vec<(i64, f64, u16, Option<i64>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut hours: BTreeMap<i64, (f64, i64, u32, f64)> = BTreeMap::new();
        let mut twenty: BTreeMap<i64, (f64, i64)> = BTreeMap::new();
        for (at, value, flags, window) in rows {
            if !protocol::QaFlags(flags).is_valid_for_means() {
                continue;
            }
            let w = window.unwrap_or(cadence_s);
            let end = at - 1;
            let h = hours
                .entry(end.div_euclid(3600) * 3600)
                .or_insert((0.0, 0, 0, f64::MIN));
            h.0 += value * w.min(3600) as f64;
            h.1 += w.min(3600);
            h.2 += 1;
            h.3 = h.3.max(value);
            let t = twenty
                .entry(end.div_euclid(1200) * 1200)
                .or_insert((0.0, 0));
            t.0 += value * w.min(1200) as f64;
            t.1 += w.min(1200);
        }
        (
            hours
                .into_iter()
                .map(|(start, (sum, covered_s, count, max))| score::HourlyMean {
                    start: UnixSeconds(start),
                    mean: sum / covered_s as f64,
                    covered_s,
                    count,
                    max,
                })
                .collect(),
            twenty
                .into_iter()
                .map(|(start, (sum, covered_s))| score::TwentyMinuteMean {
                    start: UnixSeconds(start),
                    mean: sum / covered_s as f64,
                    covered_s,
                })
                .collect(),
        )
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn day_aggregates_equal_a_recomputation_from_raw_readings_for_random_months() {
        let norms = Arc::new(Norms::load(score::EMBEDDED, None).unwrap());
        let rules = norms.capture_rules();
        let limit = score::days::one_time_limit(&norms, Quantity::Pm2_5);
        for seed in 0..6u64 {
            let (_dir, path, store) = store();
            let post = PostId::parse("alm-01").unwrap();
            let mut entry = taza_domain::post::PostEntry::new(
                post.clone(),
                taza_domain::post::PostKind::Air,
                "one",
                43.2,
                76.9,
            );
            entry.cadence = Some(std::time::Duration::from_secs(60));
            let registry = taza_domain::registry::Registry::new(
                &[entry],
                std::time::Duration::from_secs(60),
                false,
            );
            let writer = taza_store::writer::TestWriter::spawn(
                taza_store::open_connection(&path).unwrap(),
                registry,
            );
            let (first, readings) = random_month(seed);
            // Aggregates are refreshed between deliveries too: later readings land in days
            // already aggregated, as late readings do.
            for (k, chunk) in readings.chunks(200).enumerate() {
                writer.send(&post, chunk.to_vec()).await;
                if k % 4 == 1 {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    refresh_aggregates(&store, Arc::clone(&norms))
                        .await
                        .unwrap();
                }
            }
            tokio::task::spawn_blocking(move || writer.finish())
                .await
                .unwrap();
            refresh_aggregates(&store, Arc::clone(&norms))
                .await
                .unwrap();

            let next = first + chrono::Months::new(2);
            let stored = store
                .read(move |db| {
                    // The post is in the writer's registry only, not in the `posts` table.
                    let descriptors = vec![score::PostDescriptor {
                        id: PostId::parse("alm-01").unwrap(),
                        kind: PostKind::Air,
                        lat_deg: 43.2,
                        lon_deg: 76.9,
                        district: None,
                        river: None,
                        critical_level: None,
                    }];
                    let mut series = taza_store::day_scores::day_series(
                        db,
                        descriptors,
                        &[Quantity::Pm2_5],
                        first,
                        next,
                        UnixSeconds(i64::MAX),
                        &|_, _| false,
                    )?;
                    let raw = buckets_from_raw(db.sqlite().unwrap(), 60);
                    Ok((series.pop(), raw))
                })
                .await
                .unwrap();
            let (Some(series), (hourly, twenty)) = stored else {
                panic!("seed {seed}: no post series")
            };
            let stored_days = &series.series[0].days;
            let expected = score::days::day_stats(&hourly, &twenty, &rules, limit);
            assert_eq!(stored_days.len(), expected.len(), "seed {seed}");
            for (s, e) in stored_days.iter().zip(&expected) {
                let same = s.date == e.date
                    && s.start == e.start
                    && s.hours == e.hours
                    && s.hour_buckets == e.hour_buckets
                    && s.valid_hours == e.valid_hours
                    && close(s.sum_valid_hourly, e.sum_valid_hourly)
                    && s.max_valid_hourly
                        .zip(e.max_valid_hourly)
                        .is_none_or(|(a, b)| close(a, b))
                    && s.max_valid_hourly.is_some() == e.max_valid_hourly.is_some()
                    && s.valid_20min == e.valid_20min
                    && s.invalid_20min == e.invalid_20min
                    && s.over_one_time == e.over_one_time
                    && s.max_20min
                        .zip(e.max_20min)
                        .is_none_or(|(a, b)| close(a, b))
                    && s.max_20min.is_some() == e.max_20min.is_some();
                assert!(same, "seed {seed}: stored {s:?}\nrecomputed {e:?}");
            }
        }
    }
}

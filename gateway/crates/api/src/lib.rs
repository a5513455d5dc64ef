//! HTTP API (axum): `/api/v1/...` JSON over the store, Server-Sent Events of committed
//! readings, `/healthz` and Prometheus `/metrics`. Reads and writes the store (SQLite or
//! PostgreSQL) through [`taza_store::Store`], and the live broadcast.

mod alerts;
mod auth;
pub mod config;
mod dashboard;
mod error;
mod health;
mod posts;
mod scores;
pub mod scoring;
pub mod tasks;
pub mod telemetry;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::Stream;
use protocol::{PostId, Quantity, UnixSeconds};
use serde::Deserialize;
use tokio::sync::broadcast;

pub use auth::{ApiToken, Caller, Role};
pub use error::ApiError;
pub use posts::TechnicianContext;

use crate::telemetry::{LiveLagged, Metrics};
use taza_domain::calendar::{self, parse_rfc3339, rfc3339};
use taza_domain::pipeline::LiveSender;
use taza_store::read::{self, Period};

/// Default window of `/readings` and `/rollups` when `from` is not given.
const DEFAULT_WINDOW_S: i64 = 86_400;
/// Most raw readings one request returns.
const MAX_READINGS: usize = 100_000;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The store (SQLite or PostgreSQL): reads and people's changes go through it.
    pub store: taza_store::Store,
    /// Metrics, rendered at `/metrics`.
    pub metrics: Metrics,
    /// Committed readings, for `/api/v1/live`.
    pub live: LiveSender,
    /// Tokens that may write.
    pub tokens: Arc<Vec<ApiToken>>,
    /// Scores over the store.
    pub scoring: Arc<crate::scoring::Scoring>,
    /// Alert rules, rota and the delivery wake-up.
    pub alerts: Arc<taza_alert::Shared>,
    /// The post registry in memory.
    pub registry: taza_domain::registry::Registry,
    /// Provisioning and commissioning settings.
    pub technician: Arc<TechnicianContext>,
    /// Tasks the supervisor saw fail (for `/healthz`).
    pub tasks: crate::tasks::TaskHealth,
    /// Cancelled when HTTP stops, so open SSE streams end and graceful shutdown can finish.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// The router with every route.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/posts", get(posts::list).post(posts::add))
        .route("/api/v1/posts/{post}", get(posts::show).put(posts::replace))
        .route("/api/v1/posts/{post}/retire", post(posts::retire))
        .route("/api/v1/posts/{post}/provision", post(posts::provision))
        .route("/api/v1/posts/{post}/commission", post(posts::commission))
        .route("/api/v1/registry/audit", get(posts::audit))
        .route("/api/v1/posts/{post}/readings", get(post_readings))
        .route("/api/v1/posts/{post}/rollups", get(post_rollups))
        .route("/api/v1/live", get(live))
        .route("/api/v1/latest", get(latest))
        .route("/api/v1/limits", get(scores::limits))
        .route("/api/v1/scores/city", get(scores::city))
        .route("/api/v1/scores/posts/{post}", get(scores::post))
        .route("/api/v1/targets", get(scores::targets))
        .route("/api/v1/rivers", get(scores::rivers))
        .route("/api/v1/zones", get(scores::zones).post(scores::add_zone))
        .route("/api/v1/zones/{zone}/effect", get(scores::zone_effect))
        .route("/api/v1/alerts", get(alerts::list))
        .route("/api/v1/alerts/{id}", get(alerts::get))
        .route("/api/v1/alerts/{id}/ack", post(alerts::ack))
        .route("/api/v1/alerts/{id}/resolve", post(alerts::resolve))
        .route("/api/v1/alert-rules", get(alerts::rules))
        .route("/api/v1/outbox", get(alerts::outbox))
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(metrics))
        .merge(dashboard::routes())
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .with_state(state)
}

async fn latest(State(s): State<AppState>) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    Ok(Json(s.store.read(read::latest).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeQuery {
    quantity: Option<String>,
    from: Option<String>,
    to: Option<String>,
    period: Option<String>,
    limit: Option<usize>,
}

impl RangeQuery {
    fn quantity(&self) -> Result<Option<Quantity>, ApiError> {
        match self.quantity.as_deref() {
            None | Some("") => Ok(None),
            Some(name) => Quantity::parse(name)
                .map(Some)
                .ok_or_else(|| ApiError::BadRequest(format!("unknown quantity {name:?}"))),
        }
    }

    fn range(&self) -> Result<(UnixSeconds, UnixSeconds), ApiError> {
        let parse = |name: &str, v: &Option<String>| -> Result<Option<UnixSeconds>, ApiError> {
            match v.as_deref() {
                None | Some("") => Ok(None),
                Some(text) => parse_rfc3339(text).map(Some).ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "{name} must be RFC 3339, e.g. 2026-01-15T00:00:00+05:00"
                    ))
                }),
            }
        };
        let to = parse("to", &self.to)?.unwrap_or_else(|| calendar::now().offset(1));
        let from = parse("from", &self.from)?.unwrap_or(to.offset(-DEFAULT_WINDOW_S));
        if from >= to {
            return Err(ApiError::BadRequest("from must be before to".into()));
        }
        Ok((from, to))
    }
}

pub(crate) fn bad_query(e: QueryRejection) -> ApiError {
    ApiError::BadRequest(e.body_text())
}

fn post_id(raw: &str) -> Result<PostId, ApiError> {
    PostId::parse(raw).map_err(|_| ApiError::NotFound(format!("no post {raw:?}")))
}

async fn ensure_post(s: &AppState, post: &PostId) -> Result<(), ApiError> {
    let p = post.clone();
    if s.store.read(move |db| read::post_exists(db, &p)).await? {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!("no post {:?}", post.as_str())))
    }
}

async fn post_readings(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    q: Result<Query<RangeQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let post = post_id(&raw)?;
    let quantity = q.quantity()?;
    let (from, to) = q.range()?;
    let limit = q.limit.unwrap_or(10_000).min(MAX_READINGS);
    ensure_post(&s, &post).await?;
    let p = post.clone();
    let rows = s
        .store
        .read(move |db| read::readings(db, &p, quantity, from, to, limit))
        .await?;
    Ok(Json(serde_json::json!({
        "post": post.as_str(),
        "from": rfc3339(from),
        "to": rfc3339(to),
        "truncated": rows.len() == limit,
        "readings": rows,
    })))
}

async fn post_rollups(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    q: Result<Query<RangeQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let post = post_id(&raw)?;
    let quantity = q
        .quantity()?
        .ok_or_else(|| ApiError::BadRequest("quantity is required".into()))?;
    let period = match q.period.as_deref() {
        None | Some("hour") => Period::Hour,
        Some("day") => Period::Day,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "period must be hour or day, not {other:?}"
            )))
        }
    };
    let (from, to) = q.range()?;
    ensure_post(&s, &post).await?;
    let p = post.clone();
    let rows = s
        .store
        .read(move |db| read::rollups(db, &p, quantity, period, from, to))
        .await?;
    Ok(Json(serde_json::json!({
        "post": post.as_str(),
        "quantity": quantity,
        "unit": quantity.unit().as_str(),
        "period": if period == Period::Hour { "hour" } else { "day" },
        "time_zone": calendar::CITY_TZ.name(),
        "rollups": rows,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LiveQuery {
    post: Option<String>,
}

async fn live(
    State(s): State<AppState>,
    q: Result<Query<LiveQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let filter = q.post.as_deref().map(post_id).transpose()?;
    let rx = s.live.subscribe();
    let metrics = s.metrics.clone();
    let stop = s.shutdown.clone();
    let state = (rx, filter, metrics, stop);
    let stream = futures_util::stream::unfold(
        state,
        |(mut rx, filter, metrics, stop)| async move {
            loop {
                let next = tokio::select! {
                    _ = stop.cancelled() => return None,
                    next = rx.recv() => next,
                };
                match next {
                    Ok(batch) => {
                        if filter.as_ref().is_some_and(|f| f != &batch.post) {
                            continue;
                        }
                        let readings: Vec<serde_json::Value> = batch
                            .readings
                            .iter()
                            .map(|r| {
                                serde_json::json!({
                                    "quantity": r.quantity,
                                    "time": rfc3339(r.at),
                                    "value": r.value,
                                    "unit": r.quantity.unit().as_str(),
                                    "flags": r.flags.names().collect::<Vec<_>>(),
                                })
                            })
                            .collect();
                        let data = serde_json::json!({ "post": batch.post.as_str(), "readings": readings });
                        let event = Event::default().event("readings").data(data.to_string());
                        return Some((Ok(event), (rx, filter, metrics, stop)));
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        LiveLagged { missed }.emit(&metrics);
                        let event = Event::default().event("lagged").data(missed.to_string());
                        return Some((Ok(event), (rx, filter, metrics, stop)));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

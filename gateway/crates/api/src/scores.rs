//! Score routes: the city scorecard, a post's scores, the plan targets, rivers, and low-emission
//! zones with their effect. Reads through [`crate::scoring::Scoring`]; zone writes need an
//! operator token.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use protocol::{PostId, Quantity};
use serde::Deserialize;

use super::{bad_query, ApiError, AppState, Caller, Role};
use crate::scoring::{self, ScoringError};
use taza_domain::calendar::{self, parse_rfc3339};
use taza_store::read;

impl From<ScoringError> for ApiError {
    fn from(e: ScoringError) -> Self {
        match e {
            ScoringError::NotFound(m) => ApiError::NotFound(m),
            ScoringError::Invalid(m) => ApiError::BadRequest(m),
            ScoringError::Store(e) => ApiError::Store(e),
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
    /// `summary`: city values, level, ИЗА and trajectory only (no per-post tables), for
    /// overview pages that must stay light.
    view: Option<String>,
}

pub(super) async fn city(
    State(s): State<AppState>,
    q: Result<Query<YearQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let year = q.year.unwrap_or_else(scoring::current_year);
    if !(2000..=2100).contains(&year) {
        return Err(ApiError::BadRequest(
            "year must be between 2000 and 2100".into(),
        ));
    }
    let card = s.scoring.city(year).await?;
    let mut v = serde_json::to_value(&*card).unwrap_or_default();
    match q.view.as_deref() {
        None | Some("full") => {}
        Some("summary") => {
            if let Some(o) = v.as_object_mut() {
                o.remove("comparisons");
                // Per post only the annual means (an overview shows an indicative city value
                // from them while the year has too little data for a valid one).
                if let Some(serde_json::Value::Array(posts)) = o.get_mut("posts") {
                    for p in posts.iter_mut() {
                        if let Some(pollutants) =
                            p.get_mut("pollutants").and_then(|x| x.as_array_mut())
                        {
                            for q in pollutants.iter_mut() {
                                if let Some(q) = q.as_object_mut() {
                                    q.retain(|k, _| k == "quantity" || k == "annual");
                                }
                            }
                        }
                        if let Some(p) = p.as_object_mut() {
                            p.retain(|k, _| k == "post" || k == "pollutants");
                        }
                    }
                }
            }
        }
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "view must be full or summary, not {other:?}"
            )))
        }
    }
    Ok(Json(v))
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
    let norms = s.scoring.norms().map_err(ScoringError::from)?;
    Ok(Json(taza_score::targets(&norms)))
}

/// The active limit set (µg/m³), for reference lines and map colours.
pub(super) async fn limits(
    State(s): State<AppState>,
) -> Result<Json<taza_score::norms::LimitSet>, ApiError> {
    let norms = s.scoring.norms().map_err(ScoringError::from)?;
    Ok(Json(norms.active().clone()))
}

pub(super) async fn rivers(
    State(s): State<AppState>,
) -> Result<Json<Vec<taza_score::RiverStatus>>, ApiError> {
    Ok(Json(s.scoring.rivers().await?))
}

pub(super) async fn zones(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let (zones, posts) = s
        .pool
        .run(|c| Ok((read::zones(c)?, read::post_descriptors(c)?)))
        .await?;
    let out: Vec<serde_json::Value> = zones
        .into_iter()
        .map(|z| {
            let inside: Vec<&str> = chrono::NaiveDate::parse_from_str(&z.start_date, "%Y-%m-%d")
                .ok()
                .and_then(|d| {
                    taza_score::Zone::from_geojson(&z.id, &z.name, d, &z.geometry.to_string()).ok()
                })
                .map(|zone| {
                    posts
                        .iter()
                        .filter(|p| {
                            p.kind == taza_score::PostKind::Air
                                && zone.contains(p.lon_deg, p.lat_deg)
                        })
                        .map(|p| p.id.as_str())
                        .collect()
                })
                .unwrap_or_default();
            serde_json::json!({
                "id": z.id, "name": z.name, "start_date": z.start_date, "geometry": z.geometry,
                "posts_inside": inside, "updated_by": z.updated_by, "updated_at": z.updated_at,
            })
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
        .admin
        .run(move |tx| taza_store::admin::upsert_zone(tx, &zone, &by))
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

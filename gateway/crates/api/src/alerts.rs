//! Alert routes: list and detail (with history), acknowledge and resolve (operator token),
//! the rules in force, and the notification outbox (dead letters visible).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;

use super::{bad_query, ApiError, AppState, Caller, Role};
use taza_alert::{lifecycle, outbox};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StateQuery {
    state: Option<String>,
    limit: Option<usize>,
}

const STATES: [&str; 4] = ["firing", "acknowledged", "resolved", "open"];

pub(super) async fn list(
    State(s): State<AppState>,
    q: Result<Query<StateQuery>, QueryRejection>,
) -> Result<Json<Vec<lifecycle::AlertRow>>, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let state = q.state.filter(|s| !s.is_empty());
    if let Some(st) = &state {
        if !STATES.contains(&st.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "state must be one of {}",
                STATES.join(", ")
            )));
        }
    }
    let limit = q.limit.unwrap_or(200).min(2000);
    Ok(Json(
        s.store
            .read(move |db| lifecycle::list(db, state.as_deref(), limit))
            .await?,
    ))
}

pub(super) async fn get(
    State(s): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let found = s.store.read(move |db| lifecycle::get(db, id)).await?;
    let (alert, events) = found.ok_or_else(|| ApiError::NotFound(format!("no alert {id}")))?;
    Ok(Json(
        serde_json::json!({ "alert": alert, "events": events }),
    ))
}

async fn act(
    s: AppState,
    caller: Caller,
    id: i64,
    resolve: bool,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Role::Operator)?;
    let shared = s.alerts.clone();
    let by = caller.name.clone();
    let outcome = s
        .store
        .write(move |db| {
            let now = taza_domain::calendar::now();
            if resolve {
                shared.with_context(|ctx| lifecycle::resolve(db, ctx, id, &by, now))
            } else {
                lifecycle::acknowledge(db, id, &by, now)
            }
        })
        .await?;
    match outcome {
        lifecycle::Outcome::Done => {
            if resolve {
                s.alerts.wake_delivery();
            }
            tracing::info!(alert = id, by = %caller.name, action = if resolve { "resolve" } else { "acknowledge" }, "alert updated");
            Ok(Json(
                serde_json::json!({ "id": id, "state": if resolve { "resolved" } else { "acknowledged" } }),
            ))
        }
        lifecycle::Outcome::NotFound => Err(ApiError::NotFound(format!("no alert {id}"))),
        lifecycle::Outcome::AlreadyDone => Err(ApiError::Conflict(format!(
            "alert {id} is already {}",
            if resolve {
                "resolved"
            } else {
                "acknowledged or resolved"
            }
        ))),
    }
}

pub(super) async fn ack(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    act(s, caller, id, false).await
}

pub(super) async fn resolve(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    act(s, caller, id, true).await
}

pub(super) async fn rules(State(s): State<AppState>) -> Json<Vec<taza_alert::rules::Rule>> {
    Json(s.alerts.rules.clone())
}

pub(super) async fn outbox(
    State(s): State<AppState>,
    q: Result<Query<StateQuery>, QueryRejection>,
) -> Result<Json<Vec<outbox::OutboxRow>>, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let state = match q.state.as_deref() {
        None | Some("") => None,
        Some(name) => Some(outbox::OutboxState::parse(name).ok_or_else(|| {
            ApiError::BadRequest("state must be pending, delivered or dead".into())
        })?),
    };
    let limit = q.limit.unwrap_or(200).min(2000);
    Ok(Json(
        s.store
            .read(move |db| outbox::list(db, state, limit))
            .await?,
    ))
}

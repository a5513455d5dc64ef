//! Registry routes: a post's full record with its audit trail; add, replace and retire posts and
//! provision them (admin token); commission a post (operator token, so the technician's phone
//! can run it from the dashboard). The same operations as `gateway posts ...`.

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;

use super::{bad_query, post_id, ApiError, AppState, Caller, Role};
use taza_domain::post::PostEntry;
use taza_registry::commission::Lang;
use taza_registry::manage::RegistryError;
use taza_registry::service::{RegistryService, RegistrySettings, ServiceError};
use taza_store::read::PostSummary;
use taza_store::registry::AuditEntry;

/// What provisioning and commissioning through the API need besides the store.
#[derive(Debug, Clone)]
pub struct TechnicianContext {
    /// The broker address written into device configs.
    pub broker: taza_ingest::config::BrokerUrl,
    /// Topic prefix.
    pub topic_prefix: String,
    /// Cadence of posts that set none.
    pub default_cadence: Duration,
    /// Plausible ranges for commissioning.
    pub ranges: std::sync::Arc<taza_registry::commission::PlausibleRanges>,
}

impl TechnicianContext {
    /// The registry service's settings.
    pub fn settings(&self) -> RegistrySettings {
        RegistrySettings {
            default_cadence: self.default_cadence,
            topic_prefix: self.topic_prefix.clone(),
            post_broker: self.broker.clone(),
            ranges: self.ranges.clone(),
        }
    }
}

/// Longest a commissioning request may wait.
const MAX_COMMISSION_WAIT: Duration = Duration::from_secs(600);
/// Rows `/api/v1/registry/audit` returns, the newest.
const AUDIT_ROWS: usize = 1000;

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::NotFound(_) => ApiError::NotFound(e.to_string()),
            RegistryError::Exists(_)
            | RegistryError::Retired(_)
            | RegistryError::ManagedByConfig(_) => ApiError::Conflict(e.to_string()),
            RegistryError::Invalid(_) => ApiError::BadRequest(e.to_string()),
            RegistryError::Random(_) => ApiError::Misconfigured(e.to_string()),
            RegistryError::Store(s) => ApiError::Store(s),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Registry(r) => r.into(),
            ServiceError::Config { .. } => ApiError::BadRequest(e.to_string()),
            ServiceError::NotInService(_) => ApiError::NotFound(e.to_string()),
            // The API runs no step of its own inside a transaction; should one fail, it is ours.
            ServiceError::Step(step) => {
                ApiError::Store(taza_store::StoreError::Task(step.to_string()))
            }
        }
    }
}

/// The registry service on this gateway's store, keeping its in-memory registry in step.
fn service(s: &AppState) -> RegistryService {
    RegistryService::new(s.store.clone(), s.technician.settings()).with_running(s.registry.clone())
}

/// Every post with its status and whether it runs the config the registry wants.
pub(super) async fn list(State(s): State<AppState>) -> Result<Json<Vec<PostSummary>>, ApiError> {
    let posts = service(&s).list().await?;
    Ok(Json(posts.into_iter().map(|p| p.summary).collect()))
}

/// A post's record (retired ones too) and its audit trail.
pub(super) async fn show(
    State(s): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = post_id(&raw)?;
    let found = service(&s)
        .show(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no post {raw:?}")))?;
    Ok(Json(
        serde_json::json!({ "post": found.record, "audit": found.audit }),
    ))
}

/// Registers a post (body: the same fields as `[[posts]]` in the config file, as JSON).
pub(super) async fn add(
    State(s): State<AppState>,
    caller: Caller,
    Json(entry): Json<PostEntry>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    caller.require(Role::Admin)?;
    let id = entry.id.clone();
    service(&s).add(entry, &actor(&caller)).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "post": id.as_str(), "added": true })),
    ))
}

/// Replaces a post's details.
pub(super) async fn replace(
    State(s): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    Json(entry): Json<PostEntry>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Role::Admin)?;
    let id = post_id(&raw)?;
    if entry.id != id {
        return Err(ApiError::BadRequest(format!(
            "the body's id {} is not the path's {id}",
            entry.id
        )));
    }
    service(&s).replace(entry, &actor(&caller)).await?;
    Ok(Json(
        serde_json::json!({ "post": id.as_str(), "replaced": true }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RetireBody {
    reason: String,
}

/// Retires a post: refused from now on, credentials deleted, history kept.
pub(super) async fn retire(
    State(s): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    Json(body): Json<RetireBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Role::Admin)?;
    let id = post_id(&raw)?;
    if body.reason.trim().is_empty() {
        return Err(ApiError::BadRequest(
            "say why the post is retired (reason)".into(),
        ));
    }
    service(&s)
        .retire(id.clone(), &actor(&caller), &body.reason)
        .await?;
    Ok(Json(
        serde_json::json!({ "post": id.as_str(), "retired": true }),
    ))
}

/// Issues credentials and returns the device config blob (base64): the only time the password
/// leaves the gateway.
pub(super) async fn provision(
    State(s): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    let id = post_id(&raw)?;
    let done = service(&s)
        .provision(id, &actor(&caller), None, |_| Ok(()))
        .await?;
    let body = serde_json::json!({
        "post": done.post.as_str(),
        "config_hash": format!("{:08x}", done.config_hash),
        "summary": done.summary,
        "device_config_base64": base64::engine::general_purpose::STANDARD.encode(&done.blob),
    });
    // The body holds a password: no cache may keep it.
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CommissionQuery {
    /// How long to wait for the post, e.g. `3m` (default: two reporting windows + 30 s).
    wait: Option<String>,
    /// `text` for the plain-text report.
    format: Option<String>,
    /// Language of the details: `ru`, `kk` or `en` (default).
    lang: Option<String>,
}

/// Runs commissioning and returns the report (waits until it passes or the wait is over).
pub(super) async fn commission(
    State(s): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    q: Result<Query<CommissionQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(Role::Operator)?;
    let Query(q) = q.map_err(bad_query)?;
    let id = post_id(&raw)?;
    let lang = match q.lang.as_deref() {
        None | Some("") => Lang::En,
        Some(l) => Lang::parse(l)
            .ok_or_else(|| ApiError::BadRequest(format!("lang must be ru, kk or en, not {l:?}")))?,
    };
    let registry = service(&s);
    let post = registry.start_commissioning(id).await?;
    let wait = match q.wait.as_deref() {
        Some(w) => {
            humantime::parse_duration(w).map_err(|e| ApiError::BadRequest(format!("wait: {e}")))?
        }
        None => post.default_wait(),
    }
    .min(MAX_COMMISSION_WAIT);
    let report = registry
        .commission(post, wait, lang, &actor(&caller))
        .await?;
    if q.format.as_deref() == Some("text") {
        return Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            report.to_text(),
        )
            .into_response());
    }
    Ok(Json(report).into_response())
}

/// The audit trail of every post, newest last.
pub(super) async fn audit(State(s): State<AppState>) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    Ok(Json(service(&s).audit(None, AUDIT_ROWS).await?))
}

/// Who the audit trail names for `caller`.
fn actor(caller: &Caller) -> String {
    format!("token:{}", caller.name)
}

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
use taza_registry::manage::{self, RegistryError};
use taza_registry::provision::ProvisionError;
use taza_store::read::{self, ConfigState, PostSummary};
use taza_store::registry as table;

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

/// Longest a commissioning request may wait.
const MAX_COMMISSION_WAIT: Duration = Duration::from_secs(600);

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

impl From<ProvisionError> for ApiError {
    fn from(e: ProvisionError) -> Self {
        match e {
            ProvisionError::Registry(r) => r.into(),
            ProvisionError::Config { .. } => ApiError::BadRequest(e.to_string()),
        }
    }
}

/// Every post with its status and whether it runs the config the registry wants.
pub(super) async fn list(State(s): State<AppState>) -> Result<Json<Vec<PostSummary>>, ApiError> {
    let mut posts = s.pool.run(read::posts).await?;
    let cadence = s.registry.default_cadence();
    for p in &mut posts {
        let Ok(id) = protocol::PostId::parse(&p.id) else {
            continue;
        };
        if let Some(desired) = s
            .registry
            .get(&id)
            .and_then(|e| taza_registry::config_push::desired_hash(&e, cadence))
        {
            p.config = Some(ConfigState::compare(
                desired,
                p.status.as_ref().and_then(|st| st.config_hash),
            ));
        }
    }
    Ok(Json(posts))
}

/// A post's record (retired ones too) and its audit trail.
pub(super) async fn show(
    State(s): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = post_id(&raw)?;
    let found = s
        .pool
        .run(move |c| {
            let rec = table::get(c, &id)?;
            let trail = table::audit_trail(c, Some(&id), 200)?;
            Ok(rec.map(|r| (r, trail)))
        })
        .await?;
    let (record, audit) = found.ok_or_else(|| ApiError::NotFound(format!("no post {raw:?}")))?;
    Ok(Json(serde_json::json!({ "post": record, "audit": audit })))
}

/// Registers a post (body: the same fields as `[[posts]]` in the config file, as JSON).
pub(super) async fn add(
    State(s): State<AppState>,
    caller: Caller,
    Json(entry): Json<PostEntry>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    caller.require(Role::Admin)?;
    let actor = format!("token:{}", caller.name);
    let cadence = s.registry.default_cadence();
    let id = entry.id.clone();
    s.admin
        .run_checked(move |tx| manage::add(tx, &entry, &actor, cadence))
        .await
        .map_err(ApiError::from)?;
    refresh(&s).await;
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
    let actor = format!("token:{}", caller.name);
    let cadence = s.registry.default_cadence();
    s.admin
        .run_checked(move |tx| manage::replace(tx, &entry, &actor, cadence))
        .await
        .map_err(ApiError::from)?;
    refresh(&s).await;
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
    let actor = format!("token:{}", caller.name);
    let post = id.clone();
    s.admin
        .run_checked(move |tx| manage::retire(tx, &post, &actor, body.reason.trim()))
        .await
        .map_err(ApiError::from)?;
    refresh(&s).await;
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
    let actor = format!("token:{}", caller.name);
    let target = s.technician.clone();
    let done = s
        .admin
        .run_checked(move |tx| {
            taza_registry::provision::provision(
                tx,
                &id,
                &actor,
                &target.broker,
                &target.topic_prefix,
                target.default_cadence,
            )
        })
        .await
        .map_err(ApiError::from)?;
    refresh(&s).await;
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
        None | Some("") => taza_registry::commission::Lang::En,
        Some(l) => taza_registry::commission::Lang::parse(l)
            .ok_or_else(|| ApiError::BadRequest(format!("lang must be ru, kk or en, not {l:?}")))?,
    };
    let entry = s
        .registry
        .get(&id)
        .ok_or_else(|| ApiError::NotFound(format!("post {id} is not in service")))?;
    let cadence = entry.cadence.unwrap_or(s.registry.default_cadence());
    let wait = match q.wait.as_deref() {
        Some(w) => {
            humantime::parse_duration(w).map_err(|e| ApiError::BadRequest(format!("wait: {e}")))?
        }
        None => taza_registry::commission::default_wait(cadence),
    }
    .min(MAX_COMMISSION_WAIT);
    let desired = taza_registry::provision::desired_config(&entry, s.registry.default_cadence())
        .map_err(ApiError::from)?
        .hash();
    let report = taza_registry::commission::run(
        s.pool.clone(),
        entry,
        desired,
        cadence,
        wait,
        s.technician.ranges.clone(),
        lang,
    )
    .await?;
    let actor = format!("token:{}", caller.name);
    let summary = serde_json::json!({
        "passed": report.passed,
        "failed": report.failures().map(|c| c.name.clone()).collect::<Vec<_>>(),
    });
    let post = report.post.clone();
    s.admin
        .run(move |tx| table::audit(tx, &actor, &post, "commission", &summary))
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
pub(super) async fn audit(
    State(s): State<AppState>,
) -> Result<Json<Vec<table::AuditEntry>>, ApiError> {
    Ok(Json(
        s.pool.run(|c| table::audit_trail(c, None, 1000)).await?,
    ))
}

/// Brings the in-memory registry up to date at once (the periodic refresh would in 2 s), so the
/// caller's next request already sees its change.
async fn refresh(s: &AppState) {
    let r = s.registry.clone();
    if let Err(e) = s
        .pool
        .run(move |c| taza_registry::refresh::reload_if_changed(&r, c))
        .await
    {
        tracing::warn!(error = %e, "cannot reload the registry after a change");
    }
}

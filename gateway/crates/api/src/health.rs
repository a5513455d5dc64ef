//! `GET /healthz`: can the gateway ingest, and are its outputs keeping up. Pings the store
//! ([`taza_store::Store::ping`]), reads the MQTT connection and sink state from
//! [`Metrics`], the `outbox` table's counts per alert channel, and the norms' state from
//! [`crate::scoring::Scoring::norms_health`] (which also notices an edited norms folder). Makes no
//! network call (probes hit it every few seconds).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::AppState;
use taza_store::outbox::{self, Channel, ChannelBacklog};

/// One alert channel's line in `/healthz`.
#[derive(Debug, serde::Serialize)]
struct ChannelHealth {
    channel: Channel,
    /// Configured in `[alert.channels]`; an unconfigured channel with notifications queued for
    /// it shows up too (they go dead: "not configured").
    configured: bool,
    /// `degraded` while notifications are retrying or dead, else `ok`.
    status: &'static str,
    #[serde(flatten)]
    backlog: ChannelBacklog,
}

/// HTTP 503 (`"status": "failing"`) only when the gateway cannot ingest: the store does not
/// answer or the MQTT session is down. Everything downstream of a committed reading (the InfluxDB
/// sink, alert channels) degrades to HTTP 200 with `"status": "degraded"`: the readings are safe
/// in SQLite and queued, and restarting the gateway (what a failing probe leads to) would not
/// bring InfluxDB or an SMTP relay back. Body: `store`, `mqtt`, `sink` (see
/// [`taza_sink::SinkHealth`]), `channels` (per channel: pending, retrying, dead, last
/// delivery error) and `norms` ([`crate::scoring::NormsHealth`]: a department norms edit that
/// does not validate is `"stale"`, with the file and key, and degrades the gateway while the
/// last good norms stay in use), `task` (the supervisor's first failed task, while the gateway
/// stops because of it: 503), `leader` (this replica holds the leader lease: it evaluates
/// alerts and drains the outbox and the sink queue; always true on SQLite).
pub(super) async fn healthz(State(s): State<AppState>) -> Response {
    let listed: Vec<(Channel, bool)> = Channel::ALL
        .into_iter()
        .map(|c| (c, s.alerts.channels.contains(&c)))
        .collect();
    let store = s.store.clone();
    let checked: Result<_, taza_store::StoreError> = async move {
        store.ping().await?;
        store
            .read(move |db| {
                let mut channels = Vec::new();
                for (channel, configured) in listed {
                    let backlog = outbox::backlog(db, channel)?;
                    if configured || backlog != ChannelBacklog::default() {
                        channels.push((channel, configured, backlog));
                    }
                }
                Ok(channels)
            })
            .await
    }
    .await;
    let (store_ok, checked) = match checked {
        Ok(channels) => (true, channels),
        Err(e) => {
            // The body says only "failing" (no internal detail); the log says why.
            tracing::warn!(error = %e, "healthz: the store does not answer");
            (false, Vec::new())
        }
    };
    let channels: Vec<ChannelHealth> = checked
        .into_iter()
        .map(|(channel, configured, backlog)| ChannelHealth {
            channel,
            configured,
            status: if backlog.retrying > 0 || backlog.dead > 0 {
                "degraded"
            } else {
                "ok"
            },
            backlog,
        })
        .collect();
    let mqtt_ok = s.metrics.mqtt_connected();
    let sink = s.metrics.sink().health(taza_domain::calendar::now());
    let norms = s.scoring.norms_health().await;
    let degraded =
        sink.status != "ok" || channels.iter().any(|c| c.status != "ok") || norms.status != "ok";
    let failed_task = s.tasks.failure();
    let (code, status) = if !(store_ok && mqtt_ok) || failed_task.is_some() {
        (StatusCode::SERVICE_UNAVAILABLE, "failing")
    } else if degraded {
        (StatusCode::OK, "degraded")
    } else {
        (StatusCode::OK, "ok")
    };
    let body = serde_json::json!({
        "status": status,
        "store": if store_ok { "ok" } else { "failing" },
        "mqtt": if mqtt_ok { "connected" } else { "disconnected" },
        "sink": sink,
        "channels": channels,
        "norms": norms,
        "task": failed_task,
        "leader": s.metrics.delivery.is_leader(),
    });
    (code, Json(body)).into_response()
}

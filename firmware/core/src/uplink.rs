//! The uplink: an [`MqttClient`] trait (what a board's network stack or the simulator's broker
//! connection provides) and the [`run_uplink`] task that drains the store-and-forward queue.
//!
//! Reads the queue, writes topics `{prefix}/v1/posts/{post}/telemetry` (QoS 1), `.../status`
//! (retained birth message; the last will `offline` is registered at connect) and subscribes
//! to `.../config` (retained, gateway -> post), whose valid payloads are sent on the config
//! `Watch` so the sensors and the sampler pick them up. A pack is removed from the queue only
//! after its PUBACK; after any failure the task reconnects with exponential backoff and
//! replays from the oldest pack, so readings arrive in time order with their original times.
//!
//! The retained status (birth message) is published at every connect, again right after a
//! new config is applied (so the gateway sees the new `cfg` hash at once) and as a heartbeat
//! every [`STATUS_HEARTBEAT`]. It carries the post's clock (Unix ms from [`Clock`]), its uptime
//! (the monotonic clock, which starts at boot) and the [`Vitals`] the board provides.

use core::sync::atomic::{AtomicU32, Ordering};

use embassy_futures::select::select;
use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_sync::mutex::Mutex;
use embassy_sync::signal::Signal;
use embassy_sync::watch::Sender;
use embassy_time::{Duration, Instant, Timer};
use embedded_storage_async::nor_flash::MultiwriteNorFlash;
use protocol::post_config::{self, PostConfig, MAX_CONFIG_BYTES};
use protocol::status::{PostStatus, MAX_SENSORS};
use protocol::topic::{self, TopicKind, TopicString};
use protocol::{PostId, Quantity};

use crate::fmt::{debug, warn};
use crate::store::{RecordQueue, MAX_RECORD_BYTES};
use crate::Clock;

/// First reconnect delay; doubles per failure up to [`MAX_RECONNECT_BACKOFF`].
pub const MIN_RECONNECT_BACKOFF: Duration = Duration::from_secs(1);
/// Longest reconnect delay.
pub const MAX_RECONNECT_BACKOFF: Duration = Duration::from_secs(60);
/// With nothing queued, the uplink still looks for config messages this often.
pub const IDLE_POLL: Duration = Duration::from_secs(1);
/// The status is republished this often while connected, so the gateway's view of the clock,
/// signal and supply stays fresh.
pub const STATUS_HEARTBEAT: Duration = Duration::from_secs(15 * 60);

/// Health readings only the board knows; each is `None` when the board cannot measure it.
pub trait Vitals {
    /// Signal strength of the network link (cellular / Wi-Fi RSSI), dBm.
    fn rssi_dbm(&mut self) -> Option<i16>;
    /// Supply voltage (battery or mains adapter rail), millivolts.
    fn supply_mv(&mut self) -> Option<u16>;
}

/// A board that measures neither signal nor supply.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoVitals;

impl Vitals for NoVitals {
    fn rssi_dbm(&mut self) -> Option<i16> {
        None
    }
    fn supply_mv(&mut self) -> Option<u16> {
        None
    }
}

impl<T: Vitals + ?Sized> Vitals for &mut T {
    fn rssi_dbm(&mut self) -> Option<i16> {
        (**self).rssi_dbm()
    }
    fn supply_mv(&mut self) -> Option<u16> {
        (**self).supply_mv()
    }
}

/// The last will registered at connect.
#[derive(Debug, Clone, Copy)]
pub struct LastWill<'a> {
    /// Topic (the post's status topic).
    pub topic: &'a str,
    /// Payload ([`protocol::status::OFFLINE`]).
    pub payload: &'a [u8],
}

/// An MQTT 3.1.1 session as the uplink needs it.
pub trait MqttClient {
    /// Connection or protocol failure.
    type Error: core::fmt::Debug;

    /// Opens a session (clean session off, so the broker keeps our config subscription) with
    /// `will` as the retained QoS 1 last will. Returns once CONNACK arrived.
    async fn connect(&mut self, client_id: &str, will: LastWill<'_>) -> Result<(), Self::Error>;

    /// Subscribes with QoS 1; returns once SUBACK arrived.
    async fn subscribe(&mut self, topic: &str) -> Result<(), Self::Error>;

    /// Publishes with QoS 1; returns once PUBACK arrived (the broker has the message).
    async fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        retain: bool,
    ) -> Result<(), Self::Error>;

    /// Copies the newest message received on a subscribed topic into `buf` and returns its
    /// length (messages longer than `buf` are dropped). Does not wait.
    fn try_receive(&mut self, buf: &mut [u8]) -> Option<usize>;
}

/// Counters reported in the birth message and read by the simulator.
#[derive(Debug, Default)]
pub struct UplinkStats {
    /// Packs acknowledged by the broker.
    pub published: AtomicU32,
    /// Connections made after the first.
    pub reconnects: AtomicU32,
    /// Failed connects or publishes.
    pub failures: AtomicU32,
    /// Config messages applied.
    pub configs_applied: AtomicU32,
    /// Config messages refused as invalid.
    pub configs_refused: AtomicU32,
}

impl UplinkStats {
    /// Zeroed counters.
    pub const fn new() -> Self {
        Self {
            published: AtomicU32::new(0),
            reconnects: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            configs_applied: AtomicU32::new(0),
            configs_refused: AtomicU32::new(0),
        }
    }
}

/// What the uplink needs to know about its post.
pub struct UplinkIdentity<'a> {
    /// The post.
    pub post: &'a PostId,
    /// Topic prefix (default `taza`).
    pub prefix: &'a str,
    /// Quantities the post's sensors provide (for the birth message).
    pub sensors: &'a [Quantity],
    /// The post's wall clock, reported in the status as `t_ms`.
    pub clock: Clock,
}

/// Reconnect delay after `failures` consecutive failures (1-based).
pub fn reconnect_backoff(failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(10);
    let d = Duration::from_ticks(MIN_RECONNECT_BACKOFF.as_ticks().saturating_mul(1 << shift));
    if d > MAX_RECONNECT_BACKOFF {
        MAX_RECONNECT_BACKOFF
    } else {
        d
    }
}

struct Topics {
    telemetry: TopicString,
    status: TopicString,
    config: TopicString,
}

/// The uplink task. Never returns; cancel it by dropping the future.
pub async fn run_uplink<
    C: MqttClient,
    V: Vitals,
    M: RawMutex,
    F: MultiwriteNorFlash,
    const W: usize,
>(
    client: &mut C,
    id: UplinkIdentity<'_>,
    mut vitals: V,
    queue: &Mutex<M, RecordQueue<F>>,
    queued: &Signal<M, ()>,
    config: Sender<'_, M, PostConfig, W>,
    stats: &UplinkStats,
) -> ! {
    let topics = match (
        topic::format(id.prefix, id.post, TopicKind::Telemetry),
        topic::format(id.prefix, id.post, TopicKind::Status),
        topic::format(id.prefix, id.post, TopicKind::Config),
    ) {
        (Ok(telemetry), Ok(status), Ok(config)) => Topics {
            telemetry,
            status,
            config,
        },
        _ => {
            // A prefix too long for MQTT topics is a provisioning error; nothing can be sent.
            warn!("uplink: topic prefix too long, uplink disabled");
            loop {
                Timer::after(Duration::from_secs(3600)).await;
            }
        }
    };
    let mut failures: u32 = 0;
    let mut connected_once = false;
    loop {
        if failures > 0 {
            Timer::after(reconnect_backoff(failures)).await;
        }
        match session(
            client,
            &id,
            &mut vitals,
            &topics,
            queue,
            queued,
            &config,
            stats,
            &mut connected_once,
        )
        .await
        {
            Ok(never) => match never {},
            Err(SessionEnd::BeforeConnect) => failures = failures.saturating_add(1),
            // A session that got going resets the backoff: the next attempt starts fast.
            Err(SessionEnd::AfterConnect) => failures = 1,
        }
        stats.failures.fetch_add(1, Ordering::Relaxed);
    }
}

enum SessionEnd {
    BeforeConnect,
    AfterConnect,
}

#[allow(clippy::too_many_arguments)]
async fn session<C: MqttClient, V: Vitals, M: RawMutex, F: MultiwriteNorFlash, const W: usize>(
    client: &mut C,
    id: &UplinkIdentity<'_>,
    vitals: &mut V,
    topics: &Topics,
    queue: &Mutex<M, RecordQueue<F>>,
    queued: &Signal<M, ()>,
    config: &Sender<'_, M, PostConfig, W>,
    stats: &UplinkStats,
    connected_once: &mut bool,
) -> Result<core::convert::Infallible, SessionEnd> {
    let will = LastWill {
        topic: &topics.status,
        payload: protocol::status::OFFLINE,
    };
    if let Err(e) = client.connect(id.post.as_str(), will).await {
        debug!("uplink: connect failed: {:?}", e);
        return Err(SessionEnd::BeforeConnect);
    }
    if *connected_once {
        stats.reconnects.fetch_add(1, Ordering::Relaxed);
    }
    *connected_once = true;
    let after = |_| SessionEnd::AfterConnect;
    client.subscribe(&topics.config).await.map_err(after)?;
    publish_birth(client, id, vitals, topics, queue, config, stats).await?;
    let mut status_at = Instant::now();
    let mut pack = [0u8; MAX_RECORD_BYTES];
    let mut cfg_buf = [0u8; MAX_CONFIG_BYTES];
    loop {
        let applied = client
            .try_receive(&mut cfg_buf)
            .is_some_and(|n| apply_config(cfg_buf.get(..n).unwrap_or(&[]), config, stats));
        if applied || Instant::now().saturating_duration_since(status_at) >= STATUS_HEARTBEAT {
            publish_birth(client, id, vitals, topics, queue, config, stats).await?;
            status_at = Instant::now();
        }
        let len = match queue.lock().await.peek(&mut pack).await {
            Ok(Some(p)) => Some(p.len()),
            Ok(None) => None,
            Err(e) => {
                warn!("uplink: queue read failed: {:?}", e);
                None
            }
        };
        let Some(len) = len else {
            // Nothing to send: wait for the sampler, but wake up to look for config.
            let _ = select(queued.wait(), Timer::after(IDLE_POLL)).await;
            continue;
        };
        let published = pack.get(..len).unwrap_or(&[]);
        client
            .publish(&topics.telemetry, published, false)
            .await
            .map_err(after)?;
        stats.published.fetch_add(1, Ordering::Relaxed);
        // PUBACK received: only now may the pack leave flash.
        if let Err(e) = queue.lock().await.remove_if_oldest(published).await {
            warn!("uplink: queue pop failed: {:?}", e);
        }
    }
}

async fn publish_birth<
    C: MqttClient,
    V: Vitals,
    M: RawMutex,
    F: MultiwriteNorFlash,
    const W: usize,
>(
    client: &mut C,
    id: &UplinkIdentity<'_>,
    vitals: &mut V,
    topics: &Topics,
    queue: &Mutex<M, RecordQueue<F>>,
    config: &Sender<'_, M, PostConfig, W>,
    stats: &UplinkStats,
) -> Result<(), SessionEnd> {
    let mut status = PostStatus {
        online: true,
        config_hash: config.try_get().map(|c| c.hash()),
        dropped: queue.lock().await.dropped(),
        reconnects: stats.reconnects.load(Ordering::Relaxed),
        clock_ms: Some(id.clock.now_ms()),
        rssi_dbm: vitals.rssi_dbm(),
        supply_mv: vitals.supply_mv(),
        // The monotonic clock starts at boot; u32 seconds last 136 years.
        uptime_s: Some(u32::try_from(Instant::now().as_secs()).unwrap_or(u32::MAX)),
        ..PostStatus::default()
    };
    let _ = status.firmware.push_str(crate::FIRMWARE_VERSION);
    for q in id.sensors.iter().take(MAX_SENSORS) {
        let _ = status.sensors.push(*q);
    }
    // 16 sensors with their names plus every optional field stay well under 512 bytes.
    let mut buf = [0u8; 512];
    let n = protocol::status::encode(&status, &mut buf).map_err(|_| SessionEnd::AfterConnect)?;
    client
        .publish(&topics.status, buf.get(..n).unwrap_or(&[]), true)
        .await
        .map_err(|_| SessionEnd::AfterConnect)
}

/// Decodes and applies a config payload; true when the running config changed.
fn apply_config<M: RawMutex, const W: usize>(
    payload: &[u8],
    config: &Sender<'_, M, PostConfig, W>,
    stats: &UplinkStats,
) -> bool {
    match post_config::decode(payload) {
        Ok(new) => {
            if config.try_get().is_some_and(|c| c.hash() == new.hash()) {
                return false;
            }
            config.send(new);
            stats.configs_applied.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(e) => {
            warn!("uplink: config refused: {:?}", e);
            stats.configs_refused.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_backoff_doubles_from_one_second_to_a_minute() {
        let secs: heapless::Vec<u64, 8> = (1..=8).map(|f| reconnect_backoff(f).as_secs()).collect();
        assert_eq!(secs.as_slice(), &[1, 2, 4, 8, 16, 32, 60, 60]);
    }
}

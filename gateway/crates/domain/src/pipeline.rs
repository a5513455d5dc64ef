//! The messages that flow between stages: ingest -> store writer -> (acks, live readings).
//! Stages meet only through these types and the bounded channels named here.

use std::sync::Arc;

use protocol::status::PostStatus;
use protocol::{PostId, QaFlags, Quantity, UnixSeconds};

/// Capacity of ingest -> store. Must exceed the broker's in-flight window for the gateway's
/// client, so a full channel means unacknowledged messages at the broker, not a stalled poll.
/// Full policy: block (backpressure).
pub const INGEST_CHANNEL_CAPACITY: usize = 4096;
/// Capacity of store -> acker (tokens in arrival order). Full policy: block.
pub const ACK_CHANNEL_CAPACITY: usize = 4096;
/// Capacity of the live-readings broadcast. Full policy: drop for lagging receivers (SSE
/// clients re-fetch history), never block the store.
pub const LIVE_CHANNEL_CAPACITY: usize = 1024;

/// One stored reading: the value is in `quantity.unit()`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Which quantity (and so which unit).
    pub quantity: Quantity,
    /// Value in `quantity.unit()`.
    pub value: f64,
    /// When, UTC.
    pub at: UnixSeconds,
    /// QA flags from the post.
    pub flags: QaFlags,
    /// Seconds the value averages over, ending at `at`; `None` = the post's cadence.
    pub window_s: Option<u32>,
}

/// What one MQTT message carried, after decoding.
#[derive(Debug)]
pub enum Payload {
    /// Readings from a post.
    Readings {
        /// The post.
        post: PostId,
        /// Its readings.
        readings: Vec<Reading>,
    },
    /// A post's status (birth message or last will).
    Status {
        /// The post.
        post: PostId,
        /// What it reported.
        status: PostStatus,
        /// The post's clock minus the gateway's when the status arrived, milliseconds; None for
        /// a retained copy (sent long ago) or a status without a clock.
        clock_offset_ms: Option<i64>,
    },
    /// Refused at ingest (already counted): nothing to store, but it must still be
    /// acknowledged in arrival order so the broker does not redeliver it for ever.
    Refused,
}

/// A message for the store writer with the token that acknowledges it once committed.
#[derive(Debug)]
pub struct Inbound {
    /// What to store.
    pub payload: Payload,
    /// Acknowledges the MQTT message.
    pub ack: AckToken,
    /// When the gateway received it (for publish-to-commit latency).
    pub received: std::time::Instant,
}

/// The MQTT message to acknowledge (QoS 0 messages have nothing to acknowledge), and the
/// connection it arrived on: a PUBACK for a packet id of an earlier connection must not be sent
/// on a later one, where that id may name a different, uncommitted message.
#[derive(Debug)]
pub struct AckToken {
    /// What the acknowledgement needs of the packet (not its payload); None for QoS 0.
    pub packet: Option<PacketRef>,
    /// Which connection of the ingest client the message arrived on.
    pub connection: u64,
}

/// The part of an MQTT PUBLISH its acknowledgement names. Kept free of the MQTT client's types
/// so the stages after ingest do not depend on the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketRef {
    /// Packet identifier.
    pub pkid: u16,
    /// QoS 2 (PUBREC) rather than QoS 1 (PUBACK).
    pub exactly_once: bool,
}

/// Readings committed by one group commit, for live views and later stages. Only readings new
/// to the store appear (replays are absorbed before this).
#[derive(Debug, Clone)]
pub struct Committed {
    /// The post.
    pub post: PostId,
    /// Its new readings.
    pub readings: Vec<Reading>,
}

/// Live feed of committed readings.
pub type LiveSender = tokio::sync::broadcast::Sender<Arc<Committed>>;

//! MQTT ingest: one rumqttc client with a persistent session (fixed client id, clean session
//! off), QoS 1, manual acknowledgements. The loop polls, decodes and forwards [`Inbound`]
//! messages into the bounded store channel, and sends each PUBACK only when the store writer
//! returns the message's token after its commit, in arrival order.
//!
//! PUBACKs are sent from this same loop, never from another task: a token from an earlier
//! connection is then always recognised and dropped (the broker redelivers that message, the
//! store absorbs the replay, and the new copy is acknowledged on the connection it came on).
//!
//! Reads: `{prefix}/v1/posts/+/telemetry` and `.../status` (as `$share/<group>/...` when
//! `[mqtt] shared_group` is set: the broker then hands each message to one gateway of the group,
//! and delivers it under its original topic, which is what [`decode`] parses). Writes: the store
//! channel. Over TLS when the broker URL is `mqtts://` ([`tls`]).

pub mod broker;
pub mod config;
mod decode;
pub mod metrics;
pub mod tls;

use std::collections::VecDeque;
use std::time::Duration;

use rumqttc::{AsyncClient, ClientError, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::MqttConfig;
use crate::metrics::{IngestMetrics, MessageReceived, MqttConnection, PayloadRejected};
use taza_domain::pipeline::{AckToken, Inbound, PacketRef, Payload};
use taza_domain::registry::Registry;

pub use decode::decode;

/// Capacity of rumqttc's request channel (PUBACKs and subscribes go through it).
const REQUEST_CHANNEL_CAPACITY: usize = 4096;
/// Largest incoming packet the client accepts. Larger than anything valid, so an oversized
/// payload is refused with a counted reason instead of breaking the connection (which would
/// make the broker redeliver it for ever).
const MAX_INCOMING_PACKET_BYTES: usize = 1024 * 1024;
/// How long shutdown waits for the last acknowledgements to reach the broker.
const ACK_FLUSH_DEADLINE: Duration = Duration::from_secs(5);

/// Where to connect.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Credentials.
    pub credentials: Option<(String, String)>,
    /// TLS client configuration (`mqtts://`); None: plain TCP.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Endpoint {
    /// Client options for this broker: address, credentials and TLS. Every connection the
    /// gateway makes (ingest, the config publisher) starts here and adds its own session settings.
    pub fn options(&self, client_id: String, keep_alive: std::time::Duration) -> MqttOptions {
        let mut options = MqttOptions::new(client_id, self.host.clone(), self.port);
        options.set_keep_alive(keep_alive);
        if let Some((user, pass)) = &self.credentials {
            options.set_credentials(user.clone(), pass.clone());
        }
        if let Some(tls) = &self.tls {
            options.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Rustls(
                tls.clone(),
            )));
        }
        options
    }
}

/// The subscription filters for `topic_prefix`: telemetry and status, each as
/// `$share/<group>/<filter>` when `shared_group` is set.
pub fn subscription_filters(topic_prefix: &str, shared_group: Option<&str>) -> Vec<String> {
    [
        protocol::topic::TopicKind::Telemetry,
        protocol::topic::TopicKind::Status,
    ]
    .into_iter()
    .filter_map(|k| protocol::topic::filter(topic_prefix, k).ok())
    .map(|t| match shared_group {
        Some(group) => format!("$share/{group}/{t}"),
        None => t.to_string(),
    })
    .collect()
}

/// Starts ingest. `output` carries messages to the store writer; `acks` brings back the tokens
/// of committed messages. The task ends after shutdown once the writer has returned every
/// token and the PUBACKs are flushed.
pub fn spawn(
    cfg: MqttConfig,
    endpoint: Endpoint,
    registry: Registry,
    metrics: IngestMetrics,
    output: mpsc::Sender<Inbound>,
    acks: mpsc::Receiver<AckToken>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let mut options = endpoint.options(cfg.client_id.clone(), cfg.keep_alive);
    options
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_max_packet_size(MAX_INCOMING_PACKET_BYTES, 64 * 1024)
        .set_request_channel_capacity(REQUEST_CHANNEL_CAPACITY);
    let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CHANNEL_CAPACITY);
    // PUBACKs are small and latency-bound: do not let Nagle hold them back.
    eventloop.network_options.set_tcp_nodelay(true);
    let ingest = Ingest {
        filters: subscription_filters(&cfg.topic_prefix, cfg.shared_group.as_deref()),
        cfg,
        client,
        registry,
        metrics,
        connection: 0,
        unsent: VecDeque::new(),
    };
    tokio::spawn(ingest.run(eventloop, output, acks, shutdown))
}

struct Ingest {
    cfg: MqttConfig,
    filters: Vec<String>,
    client: AsyncClient,
    registry: Registry,
    metrics: IngestMetrics,
    /// Incremented on every connect and every disconnect.
    connection: u64,
    /// PUBACKs that did not fit rumqttc's request channel yet. Bounded by the messages the
    /// pipeline can hold (store channel + one group + ack channel), since each message yields
    /// one token and the event loop is not polled while the store channel is full.
    unsent: VecDeque<rumqttc::Publish>,
}

impl Ingest {
    async fn run(
        mut self,
        mut eventloop: EventLoop,
        output: mpsc::Sender<Inbound>,
        mut acks: mpsc::Receiver<AckToken>,
        shutdown: CancellationToken,
    ) {
        let mut output = Some(output);
        // A message that found the store channel full. While one is held the event loop is not
        // polled (backpressure reaches the socket), but tokens keep being taken from the writer,
        // so the writer can always make progress: taking tokens never waits on the network.
        let mut held: Option<Inbound> = None;
        let mut acks_open = true;
        let mut backoff = Duration::from_millis(100);
        let mut flush_deadline: Option<tokio::time::Instant> = None;
        loop {
            self.send_unsent();
            if output.is_none() && !acks_open && self.unsent.is_empty() {
                // The writer has returned every token: push the PUBACKs out, then leave.
                let _ = self.client.try_disconnect();
                let deadline = flush_deadline.unwrap_or_else(tokio::time::Instant::now);
                flush_until_disconnect(&mut eventloop, deadline).await;
                break;
            }
            let reserve_for = output.clone().filter(|_| held.is_some());
            let reserve = async move {
                match reserve_for {
                    Some(tx) => tx.reserve_owned().await.ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.cancelled(), if output.is_some() => {
                    // Dropping the sender lets the writer drain, commit and return the tokens. A
                    // held message stays unacknowledged: the broker keeps it for our next session.
                    output = None;
                    held = None;
                    flush_deadline = Some(tokio::time::Instant::now() + ACK_FLUSH_DEADLINE);
                    tracing::info!("ingest stopping: draining commits and acknowledgements");
                }
                _ = sleep_until_opt(flush_deadline) => {
                    tracing::warn!("acknowledgements not flushed before the deadline; the broker will redeliver them");
                    break;
                }
                token = acks.recv(), if acks_open => match token {
                    Some(token) => self.ack(token),
                    None => acks_open = false,
                },
                permit = reserve => match (permit, held.take()) {
                    (Some(permit), Some(inbound)) => {
                        permit.send(inbound);
                    }
                    _ => {
                        tracing::error!("store writer stopped; ingest stops");
                        break;
                    }
                },
                event = eventloop.poll(), if held.is_none() => match event {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        self.connection += 1;
                        MqttConnection { connected: true, session_present: ack.session_present, stopping: false }.emit(&self.metrics);
                        backoff = Duration::from_millis(100);
                        // Resubscribe on every ConnAck: a broker that lost our session lost our
                        // subscriptions with it.
                        let subs = self.filters.iter().map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                        if let Err(e) = self.client.try_subscribe_many(subs) {
                            tracing::error!(error = %e, "cannot queue subscription");
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        // While draining, new messages stay unacknowledged: the broker keeps
                        // them for our next session.
                        let Some(tx) = &output else { continue };
                        MessageReceived.emit(&self.metrics);
                        match tx.try_send(self.to_inbound(publish)) {
                            Ok(()) => {}
                            Err(mpsc::error::TrySendError::Full(inbound)) => held = Some(inbound),
                            Err(mpsc::error::TrySendError::Closed(_)) => {
                                tracing::error!("store writer stopped; ingest stops");
                                break;
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        // rumqttc dropped the PUBACKs still queued; tokens of that connection
                        // are now stale.
                        self.connection += 1;
                        self.unsent.clear();
                        MqttConnection { connected: false, session_present: false, stopping: output.is_none() }.emit(&self.metrics);
                        tracing::debug!(error = %e, ?backoff, "MQTT connection error");
                        if output.is_none() {
                            // Shutting down without a broker: nothing more can be acknowledged.
                            break;
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = shutdown.cancelled() => {}
                        }
                        backoff = (backoff * 2).min(self.cfg.reconnect_max_backoff);
                    }
                }
            }
        }
        MqttConnection {
            connected: false,
            session_present: false,
            stopping: true,
        }
        .emit(&self.metrics);
    }

    fn ack(&mut self, token: AckToken) {
        let Some(packet) = token.packet else { return };
        if token.connection != self.connection {
            return;
        }
        let qos = if packet.exactly_once {
            QoS::ExactlyOnce
        } else {
            QoS::AtLeastOnce
        };
        let mut publish = rumqttc::Publish::new(String::new(), qos, Vec::new());
        publish.pkid = packet.pkid;
        self.unsent.push_back(publish);
        self.send_unsent();
    }

    fn send_unsent(&mut self) {
        while let Some(p) = self.unsent.front() {
            match self.client.try_ack(p) {
                Ok(()) => {
                    self.unsent.pop_front();
                }
                // Full: the next poll drains the request channel; retry then.
                Err(ClientError::TryRequest(_)) => return,
                Err(_) => {
                    self.unsent.clear();
                    return;
                }
            }
        }
    }

    fn to_inbound(&self, publish: rumqttc::Publish) -> Inbound {
        let received = std::time::Instant::now();
        let payload = match decode(
            &self.cfg.topic_prefix,
            &self.registry,
            &publish.topic,
            &publish.payload,
            taza_domain::calendar::now(),
        ) {
            // A live status (not the broker's retained copy) tells how far the post's clock is
            // off; measured here, on arrival, not after the group commit.
            Ok(Payload::Status {
                post,
                status,
                clock_offset_ms: _,
            }) => Payload::Status {
                clock_offset_ms: status
                    .clock_ms
                    .filter(|_| !publish.retain)
                    .map(|t| t - taza_domain::calendar::now_ms()),
                post,
                status,
            },
            Ok(p) => p,
            Err((reason, post)) => {
                PayloadRejected {
                    reason,
                    post: post.as_ref(),
                }
                .emit(&self.metrics);
                Payload::Refused
            }
        };
        // Keep only what the PUBACK needs, not the payload, while the message waits.
        let packet = match publish.qos {
            QoS::AtMostOnce => None,
            qos => Some(PacketRef {
                pkid: publish.pkid,
                exactly_once: qos == QoS::ExactlyOnce,
            }),
        };
        Inbound {
            payload,
            ack: AckToken {
                packet,
                connection: self.connection,
            },
            received,
        }
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn flush_until_disconnect(eventloop: &mut EventLoop, deadline: tokio::time::Instant) {
    loop {
        match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Ok(Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(_)) => {}
        }
    }
}

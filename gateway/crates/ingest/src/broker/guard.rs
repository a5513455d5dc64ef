//! The embedded broker's front door, on when `[mqtt] embedded_auth = true`: posts connect here,
//! rumqttd listens on loopback behind it. rumqttd can check a password but has no topic ACL, so
//! the guard enforces the same rules as the shipped Mosquitto ACL (deploy/mosquitto/acl):
//!
//! - CONNECT must carry the credentials the registry issued (user name = post id, password
//!   checked against its stored hash), and the client id must be the post id, so no post can
//!   take over another's session;
//! - a post may PUBLISH only to its own `telemetry` and `status` topics (its last will too) and
//!   SUBSCRIBE only to its own `config` topic;
//! - a post retired while connected is disconnected at its next PUBLISH.
//!
//! A refused CONNECT gets CONNACK 4 (bad user name or password) or 5 (not authorised); any later
//! violation closes the connection, counted in `taza_broker_refused_total`. Closing rather than
//! dropping the message keeps it in the post's flash queue, where a technician can still find it.
//! Packets that pass are forwarded byte for byte; the broker's packets flow back untouched.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use protocol::topic::{self, TopicKind};
use protocol::PostId;
use rumqttc::mqttbytes::v4::{ConnAck, ConnectReturnCode, Packet};
use rumqttc::mqttbytes::{check, Error as MqttError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::{BrokerRefused, IngestMetrics};
use taza_domain::registry::{Admission, Registry};

/// How long a new connection may take to send its CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the guard checks against.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Topic prefix.
    pub prefix: String,
    /// Posts and their credentials.
    pub registry: Registry,
    /// Where `broker_refused` is counted.
    pub metrics: IngestMetrics,
}

/// Accepts posts on `listener` and relays them to rumqttd at `upstream` until `shutdown`.
pub fn spawn(
    listener: TcpListener,
    upstream: SocketAddr,
    policy: Policy,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let policy = Arc::new(policy);
    tokio::spawn(async move {
        loop {
            let (client, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(error = %e, "embedded broker guard cannot accept");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = client.set_nodelay(true);
            let policy = Arc::clone(&policy);
            let stop = shutdown.child_token();
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = serve(client, peer, upstream, &policy) => {}
                }
            });
        }
    })
}

/// Why a connection was closed; the label and what it tried.
struct Refusal {
    reason: &'static str,
    detail: String,
}

impl Refusal {
    fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

async fn serve(mut client: TcpStream, peer: SocketAddr, upstream: SocketAddr, policy: &Policy) {
    let mut buf = BytesMut::with_capacity(4096);
    let first = match tokio::time::timeout(CONNECT_TIMEOUT, next_frame(&mut client, &mut buf)).await
    {
        Ok(Ok(Some(frame))) => frame,
        // Closed, timed out or unreadable before CONNECT: nothing to tell it.
        _ => return,
    };
    let (post, username) = match admit(&first, policy) {
        Ok(ok) => ok,
        Err((code, refusal, username)) => {
            BrokerRefused {
                reason: refusal.reason,
                peer,
                username: username.as_deref(),
                detail: &refusal.detail,
            }
            .emit(&policy.metrics);
            let mut out = BytesMut::new();
            if let Some(code) = code {
                if ConnAck::new(code, false).write(&mut out).is_ok() {
                    let _ = client.write_all(&out).await;
                }
            }
            return;
        }
    };
    let mut broker = match TcpStream::connect(upstream).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "embedded broker unreachable behind the guard");
            return;
        }
    };
    let _ = broker.set_nodelay(true);
    if broker.write_all(&first.raw).await.is_err() {
        return;
    }
    let (mut from_broker, mut to_broker_half) = broker.into_split();
    let (mut from_client, mut to_client) = client.into_split();
    let downstream = tokio::io::copy(&mut from_broker, &mut to_client);
    let upstream_relay = async {
        // Every whole packet a read brought is checked, and the allowed ones go to the broker in
        // one write: one syscall per read, not per packet, when a post floods its backlog.
        let mut out = BytesMut::with_capacity(4096);
        loop {
            let frame = match next_frame(&mut from_client, &mut buf).await {
                Ok(Some(f)) => f,
                Ok(None) | Err(_) => return None,
            };
            let mut next = Some(frame);
            while let Some(frame) = next {
                if let Err(refusal) = allowed(&frame.packet, &post, policy) {
                    return Some(refusal);
                }
                out.extend_from_slice(&frame.raw);
                next = match buffered_frame(&mut buf) {
                    Ok(f) => f,
                    Err(_) => return None,
                };
            }
            if to_broker_half.write_all(&out).await.is_err() {
                return None;
            }
            out.clear();
        }
    };
    tokio::select! {
        _ = downstream => {}
        refused = upstream_relay => {
            if let Some(r) = refused {
                BrokerRefused {
                    reason: r.reason,
                    peer,
                    username: Some(&username),
                    detail: &r.detail,
                }
                .emit(&policy.metrics);
            }
        }
    }
    // Dropping both halves closes both sockets; the broker then publishes the post's will.
}

/// One whole MQTT packet: its bytes as received and its parse.
struct Frame {
    raw: bytes::Bytes,
    packet: Packet,
}

/// Reads until `buf` holds a whole packet and splits it off. `Ok(None)` when the peer closed.
async fn next_frame<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
) -> Result<Option<Frame>, MqttError> {
    loop {
        if let Some(frame) = buffered_frame(buf)? {
            return Ok(Some(frame));
        }
        match r.read_buf(buf).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
}

/// Splits the next whole packet off `buf`, if it holds one.
fn buffered_frame(buf: &mut BytesMut) -> Result<Option<Frame>, MqttError> {
    match check(buf.iter(), super::MAX_PACKET_BYTES) {
        Ok(header) => {
            let raw = buf.split_to(header.frame_length()).freeze();
            let packet = Packet::read(&mut BytesMut::from(&raw[..]), super::MAX_PACKET_BYTES)?;
            Ok(Some(Frame { raw, packet }))
        }
        Err(MqttError::InsufficientBytes(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

type Denied = (Option<ConnectReturnCode>, Refusal, Option<String>);

/// Checks the CONNECT; on success the post it authenticated as and its user name.
fn admit(frame: &Frame, policy: &Policy) -> Result<(PostId, String), Denied> {
    let Packet::Connect(connect) = &frame.packet else {
        return Err((
            None,
            Refusal::new("malformed", "first packet is not CONNECT"),
            None,
        ));
    };
    let Some(login) = &connect.login else {
        return Err((
            Some(ConnectReturnCode::NotAuthorized),
            Refusal::new("no_credentials", connect.client_id.clone()),
            None,
        ));
    };
    let user = Some(login.username.clone());
    let Some(post) = policy
        .registry
        .authenticate(&login.username, &login.password)
    else {
        return Err((
            Some(ConnectReturnCode::BadUserNamePassword),
            Refusal::new("bad_credentials", ""),
            user,
        ));
    };
    if connect.client_id != post.as_str() {
        return Err((
            Some(ConnectReturnCode::NotAuthorized),
            Refusal::new("client_id_mismatch", connect.client_id.clone()),
            user,
        ));
    }
    if let Some(will) = &connect.last_will {
        if !own_topic(&will.topic, &post, &policy.prefix, &[TopicKind::Status]) {
            return Err((
                Some(ConnectReturnCode::NotAuthorized),
                Refusal::new("foreign_topic", will.topic.clone()),
                user,
            ));
        }
    }
    Ok((post, login.username.clone()))
}

/// Whether a post may send `packet` after CONNECT.
fn allowed(packet: &Packet, post: &PostId, policy: &Policy) -> Result<(), Refusal> {
    match packet {
        // Retired while connected: its credentials are gone, and so is this connection.
        Packet::Publish(_) if policy.registry.admit(post) != Admission::Registered => {
            Err(Refusal::new("not_in_service", post.as_str()))
        }
        Packet::Publish(p) => {
            if own_topic(
                &p.topic,
                post,
                &policy.prefix,
                &[TopicKind::Telemetry, TopicKind::Status],
            ) {
                Ok(())
            } else {
                Err(Refusal::new("foreign_topic", p.topic.clone()))
            }
        }
        Packet::Subscribe(s) => {
            match s
                .filters
                .iter()
                .find(|f| !own_topic(&f.path, post, &policy.prefix, &[TopicKind::Config]))
            {
                Some(f) => Err(Refusal::new("foreign_filter", f.path.clone())),
                None => Ok(()),
            }
        }
        Packet::Connect(_) => Err(Refusal::new("malformed", "second CONNECT")),
        _ => Ok(()),
    }
}

/// `topic` is exactly one of `post`'s own topics of `kinds` (no wildcards: a filter like
/// `taza/v1/posts/+/config` names other posts' topics too).
fn own_topic(topic: &str, post: &PostId, prefix: &str, kinds: &[TopicKind]) -> bool {
    kinds.iter().any(|k| {
        topic::format(prefix, post, *k)
            .map(|t| t.as_str() == topic)
            .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_post_owns_exactly_its_own_topics() {
        let post = PostId::parse("alm-air-001").unwrap();
        let all = [TopicKind::Telemetry, TopicKind::Status];
        assert!(own_topic(
            "taza/v1/posts/alm-air-001/telemetry",
            &post,
            "taza",
            &all
        ));
        assert!(own_topic(
            "taza/v1/posts/alm-air-001/status",
            &post,
            "taza",
            &all
        ));
        for foreign in [
            "taza/v1/posts/alm-air-002/telemetry",
            "taza/v1/posts/alm-air-001/config",
            "taza/v1/posts/+/telemetry",
            "taza/v1/posts/alm-air-001/#",
            "taza/v1/posts/alm-air-001/telemetry/x",
            "other/v1/posts/alm-air-001/telemetry",
        ] {
            assert!(!own_topic(foreign, &post, "taza", &all), "{foreign}");
        }
    }
}

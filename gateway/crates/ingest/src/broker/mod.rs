//! The embedded MQTT broker (rumqttd), started when no external broker is configured so one
//! command runs the whole system.
//!
//! What a crash can lose in this mode: rumqttd acknowledges a post's QoS 1 PUBLISH as soon as
//! it holds the message in memory, and it lives in the gateway's process. If the process dies
//! (kill -9, power loss), messages the broker had acknowledged to posts but the gateway had not
//! yet committed are gone: at most the broker's in-flight window to the gateway
//! ([`MAX_INFLIGHT`]) plus what queued behind it, typically the last fraction of a second of
//! traffic. With an external broker (Mosquitto with persistence) nothing acknowledged is lost.

pub mod guard;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Largest message the embedded broker accepts (the gateway refuses anything above
/// `protocol::senml::MAX_PAYLOAD_BYTES` with a counted reason; this only keeps abuse out).
pub const MAX_PACKET_BYTES: usize = 256 * 1024;
/// Unacknowledged QoS 1 messages the broker keeps in flight per connection.
pub const MAX_INFLIGHT: usize = 500;
/// How long startup waits for the broker's listener.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the embedded broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The address is taken or not ours.
    #[error("embedded broker cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The listener never came up.
    #[error("embedded broker did not start listening on {0} within 10 s")]
    NotReady(SocketAddr),
}

/// Starts rumqttd on `listen` on its own threads and waits until it accepts connections.
/// The broker runs until the process exits.
pub fn start(listen: SocketAddr) -> Result<SocketAddr, BrokerError> {
    // rumqttd reports bind failures only in its own thread's log: check the address first.
    let probe = TcpListener::bind(listen).map_err(|source| BrokerError::Bind {
        addr: listen,
        source,
    })?;
    let addr = probe.local_addr().map_err(|source| BrokerError::Bind {
        addr: listen,
        source,
    })?;
    drop(probe);

    let connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: MAX_PACKET_BYTES,
        max_inflight_count: MAX_INFLIGHT,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "v4-1".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_010,
            max_outgoing_packet_count: 200,
            // The router keeps a bounded in-memory log per topic filter.
            max_segment_size: 16 * 1024 * 1024,
            max_segment_count: 8,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Config::default()
    };
    std::thread::Builder::new()
        .name("taza-broker".into())
        .spawn(move || {
            let mut broker = Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        })
        .map_err(|source| BrokerError::Bind { addr, source })?;

    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        if mqtt_handshake(addr).is_ok() {
            tracing::info!(%addr, "embedded MQTT broker listening");
            return Ok(addr);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(BrokerError::NotReady(addr))
}

/// A real MQTT 3.1.1 CONNECT / CONNACK / DISCONNECT: a bare TCP probe would make the broker log
/// an aborted connection as an error.
fn mqtt_handshake(addr: SocketAddr) -> std::io::Result<()> {
    use std::io::{Read, Write};
    // CONNECT, protocol "MQTT" level 4, clean session, keep-alive 60 s, client id "taza-probe".
    const CONNECT: [u8; 24] = [
        0x10, 22, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 10, b't', b'a', b'z', b'a',
        b'-', b'p', b'r', b'o', b'b', b'e',
    ];
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    s.write_all(&CONNECT)?;
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack)?;
    if connack[0] != 0x20 || connack[3] != 0 {
        return Err(std::io::Error::other("broker refused the probe"));
    }
    s.write_all(&[0xe0, 0])
}

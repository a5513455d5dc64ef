//! The simulator's [`MqttClient`]: a real MQTT connection per post through rumqttc, whose event
//! loop runs on the caller's tokio runtime while the post's firmware runs on the embassy
//! executor thread. The two meet through runtime-agnostic channels (flume inside rumqttc,
//! tokio::sync::mpsc here); every network wait is bounded in real time by a tokio timer, because
//! embassy time in the simulator is virtual and may run hundreds of times faster.
//!
//! A network outage (from the scenario or the seed) drops the TCP connection without
//! DISCONNECT, so the broker publishes the post's last will, and refuses to reconnect until the
//! outage ends.

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration as StdDuration;

use embassy_futures::select::{select, Either};
use protocol::UnixSeconds;
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, LastWill as RLastWill, MqttOptions, Packet, QoS,
};
use taza_firmware_core::uplink::{LastWill, MqttClient};
use taza_firmware_core::Clock;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

/// Longest real-time wait for CONNACK, SUBACK or PUBACK.
pub const NETWORK_TIMEOUT: StdDuration = StdDuration::from_secs(10);
/// Events buffered between the event loop and the post (acks arrive one at a time).
const EVENTS: usize = 16;

/// Why an MQTT operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimMqttError {
    /// The post's network is down (simulated outage).
    LinkDown,
    /// No session.
    NotConnected,
    /// The broker refused the connection.
    Refused,
    /// The connection closed.
    Closed,
    /// No answer within [`NETWORK_TIMEOUT`].
    Timeout,
    /// rumqttc's request channel is gone.
    Client,
}

#[derive(Debug)]
enum Ev {
    ConnAck(ConnectReturnCode),
    PubAck,
    SubAck,
    Closed,
}

struct Conn {
    client: AsyncClient,
    events: mpsc::Receiver<Ev>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Dropping the event loop drops the socket without DISCONNECT: the will fires.
        self.task.abort();
    }
}

/// Decides whether the post's link is up at a time.
pub type LinkPlan = Arc<dyn Fn(UnixSeconds) -> bool + Send + Sync>;

/// One post's MQTT connection.
pub struct SimMqtt {
    rt: Handle,
    host: String,
    port: u16,
    clock: Clock,
    link_up: LinkPlan,
    conn: Option<Conn>,
    inbox: Arc<StdMutex<Option<Vec<u8>>>>,
    credentials: Option<(String, String)>,
}

impl SimMqtt {
    /// A client for the broker at `host:port`; connections live on `rt`.
    pub fn new(rt: Handle, host: &str, port: u16, clock: Clock, link_up: LinkPlan) -> Self {
        Self {
            rt,
            host: host.to_owned(),
            port,
            clock,
            link_up,
            conn: None,
            inbox: Arc::new(StdMutex::new(None)),
            credentials: None,
        }
    }

    /// Connects with this MQTT user name and password (what provisioning issued).
    pub fn with_credentials(mut self, username: &str, password: &str) -> Self {
        self.credentials = Some((username.to_owned(), password.to_owned()));
        self
    }

    fn check_link(&mut self) -> Result<(), SimMqttError> {
        if (self.link_up)(self.clock.now()) {
            Ok(())
        } else {
            self.conn = None;
            Err(SimMqttError::LinkDown)
        }
    }

    async fn wait_for(&mut self, want: fn(&Ev) -> bool) -> Result<Ev, SimMqttError> {
        let timer = self
            .rt
            .spawn(async { tokio::time::sleep(NETWORK_TIMEOUT).await });
        let conn = self.conn.as_mut().ok_or(SimMqttError::NotConnected)?;
        let wait = async {
            loop {
                match conn.events.recv().await {
                    Some(Ev::Closed) | None => return Err(SimMqttError::Closed),
                    Some(ev) if want(&ev) => return Ok(ev),
                    Some(_) => {}
                }
            }
        };
        let result = match select(wait, timer).await {
            Either::First(r) => r,
            Either::Second(_) => Err(SimMqttError::Timeout),
        };
        if result.is_err() {
            self.conn = None;
        }
        result
    }
}

impl MqttClient for SimMqtt {
    type Error = SimMqttError;

    async fn connect(&mut self, client_id: &str, will: LastWill<'_>) -> Result<(), Self::Error> {
        self.conn = None;
        self.check_link()?;
        let mut opts = MqttOptions::new(client_id, self.host.clone(), self.port);
        opts.set_keep_alive(StdDuration::from_secs(10));
        opts.set_clean_session(false);
        if let Some((user, password)) = &self.credentials {
            opts.set_credentials(user.clone(), password.clone());
        }
        opts.set_last_will(RLastWill::new(
            will.topic,
            will.payload.to_vec(),
            QoS::AtLeastOnce,
            true,
        ));
        let (client, mut eventloop) = AsyncClient::new(opts, 16);
        let (tx, events) = mpsc::channel(EVENTS);
        let inbox = self.inbox.clone();
        let task = self.rt.spawn(async move {
            loop {
                let ev = match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(c))) => Ev::ConnAck(c.code),
                    Ok(Event::Incoming(Packet::PubAck(_))) => Ev::PubAck,
                    Ok(Event::Incoming(Packet::SubAck(_))) => Ev::SubAck,
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if let Ok(mut slot) = inbox.lock() {
                            *slot = Some(p.payload.to_vec());
                        }
                        continue;
                    }
                    Ok(_) => continue,
                    Err(_) => Ev::Closed,
                };
                let closed = matches!(ev, Ev::Closed);
                if tx.send(ev).await.is_err() || closed {
                    // The firmware reconnects itself; rumqttc must not do it behind its back.
                    return;
                }
            }
        });
        self.conn = Some(Conn {
            client,
            events,
            task,
        });
        match self.wait_for(|e| matches!(e, Ev::ConnAck(_))).await? {
            Ev::ConnAck(ConnectReturnCode::Success) => Ok(()),
            _ => {
                self.conn = None;
                Err(SimMqttError::Refused)
            }
        }
    }

    async fn subscribe(&mut self, topic: &str) -> Result<(), Self::Error> {
        self.check_link()?;
        let conn = self.conn.as_ref().ok_or(SimMqttError::NotConnected)?;
        conn.client
            .subscribe(topic, QoS::AtLeastOnce)
            .await
            .map_err(|_| SimMqttError::Client)?;
        self.wait_for(|e| matches!(e, Ev::SubAck)).await.map(|_| ())
    }

    async fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        retain: bool,
    ) -> Result<(), Self::Error> {
        self.check_link()?;
        let conn = self.conn.as_ref().ok_or(SimMqttError::NotConnected)?;
        conn.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.to_vec())
            .await
            .map_err(|_| SimMqttError::Client)?;
        self.wait_for(|e| matches!(e, Ev::PubAck)).await.map(|_| ())
    }

    fn try_receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        let msg = self.inbox.lock().ok()?.take()?;
        let dst = buf.get_mut(..msg.len())?;
        dst.copy_from_slice(&msg);
        Some(msg.len())
    }
}

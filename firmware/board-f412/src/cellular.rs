//! The post's network: LTE-M / NB-IoT attach on the SIM7080G and the core's
//! [`MqttClient`] over the modem's built-in MQTT client (`AT+SMCONF` / `AT+SMCONN` /
//! `AT+SMPUB` / `AT+SMSUB`), so no TCP/IP stack runs on the MCU.
//!
//! Writes AT commands through [`Modem`]; reads received messages from the runner's inbox.
//! Records the signal strength (`AT+CSQ`, dBm) in [`crate::status::BoardStatus`] at every
//! connect. The modem runs MQTT in its synchronous mode (`ASYNCMODE` 0), in which `AT+SMPUB`
//! with QoS 1 answers `OK` only after the broker's PUBACK; that is the promise
//! [`MqttClient::publish`] makes to the core's uplink.

use embassy_time::{Duration, Timer};
use embedded_io_async::Write;
use protocol::topic::TopicString;
use taza_firmware_core::uplink::{LastWill, MqttClient};

use crate::at;
use crate::modem::{Arg, AtError, Modem, COMMAND_TIMEOUT};
use crate::provisioning::NetworkSettings;
use crate::status::BoardStatus;

/// How long the modem may take to register on the network after power-up.
pub const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(180);
/// `AT+SMCONN`: DNS, TCP (and TLS) handshake and CONNACK over a cold LTE-M link.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// `AT+SMPUB` / `AT+SMSUB`: until PUBACK / SUBACK.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// MQTT keep-alive, seconds (NAT timeouts on Kazakh LTE operators are a few minutes).
const KEEPALIVE_S: u32 = 120;

/// The modem as an MQTT 3.1.1 client.
pub struct CellularMqtt<'a, W> {
    modem: Modem<'a, W>,
    net: &'a NetworkSettings,
    status: &'a BoardStatus,
    subscribed: TopicString,
}

impl<'a, W: Write> CellularMqtt<'a, W> {
    /// A client that connects with `net` and records link quality in `status`.
    pub fn new(modem: Modem<'a, W>, net: &'a NetworkSettings, status: &'a BoardStatus) -> Self {
        Self {
            modem,
            net,
            status,
            subscribed: TopicString::new(),
        }
    }

    /// The modem handle (for bring-up before the uplink starts).
    pub fn modem(&mut self) -> &mut Modem<'a, W> {
        &mut self.modem
    }

    /// Echo off, numeric errors, SIM ready, LTE-M (+ NB-IoT fallback) with the APN, then waits
    /// for registration and opens the PDP context.
    pub async fn attach(&mut self) -> Result<(), AtError<W::Error>> {
        let m = &mut self.modem;
        if !m.alive().await {
            return Err(AtError::Timeout);
        }
        m.command("E0", &[], None, COMMAND_TIMEOUT).await?;
        m.command("+CMEE", &[Arg::Num(1)], None, COMMAND_TIMEOUT)
            .await?;
        let sim = m
            .command("+CPIN?", &[], Some("+CPIN:"), COMMAND_TIMEOUT)
            .await?;
        if sim.as_deref() != Some("+CPIN: READY") {
            defmt::warn!("modem: SIM not ready");
            return Err(AtError::Error);
        }
        // 38 = LTE only; CMNB 3 = LTE-M preferred, NB-IoT as fallback.
        m.command("+CNMP", &[Arg::Num(38)], None, COMMAND_TIMEOUT)
            .await?;
        m.command("+CMNB", &[Arg::Num(3)], None, COMMAND_TIMEOUT)
            .await?;
        m.command(
            "+CGDCONT",
            &[Arg::Num(1), Arg::Quoted("IP"), Arg::Quoted(self.net.apn)],
            None,
            COMMAND_TIMEOUT,
        )
        .await?;
        self.wait_registered().await?;
        self.ensure_pdp().await
    }

    async fn wait_registered(&mut self) -> Result<(), AtError<W::Error>> {
        let polls = REGISTRATION_TIMEOUT.as_secs() / 2;
        for _ in 0..polls {
            let reg = self
                .modem
                .command("+CEREG?", &[], Some("+CEREG:"), COMMAND_TIMEOUT)
                .await?;
            // `+CEREG: <n>,<stat>`: 1 registered home, 5 registered roaming.
            if reg.is_some_and(|l| l.ends_with(",1") || l.ends_with(",5")) {
                return Ok(());
            }
            Timer::after_secs(2).await;
        }
        Err(AtError::Timeout)
    }

    /// Activates PDP context 0 unless it is active (`+CNACT: 0,1,"<ip>"`).
    async fn ensure_pdp(&mut self) -> Result<(), AtError<W::Error>> {
        let m = &mut self.modem;
        let state = m
            .command("+CNACT?", &[], Some("+CNACT: 0,"), COMMAND_TIMEOUT)
            .await?;
        if state.is_some_and(|l| l.starts_with("+CNACT: 0,1")) {
            return Ok(());
        }
        m.command("+CNACT", &[Arg::Num(0), Arg::Num(1)], None, ACK_TIMEOUT)
            .await?;
        for _ in 0..15 {
            let state = m
                .command("+CNACT?", &[], Some("+CNACT: 0,"), COMMAND_TIMEOUT)
                .await?;
            if state.is_some_and(|l| l.starts_with("+CNACT: 0,1")) {
                return Ok(());
            }
            Timer::after_secs(2).await;
        }
        Err(AtError::Timeout)
    }

    /// Network time: NTP through the modem (`AT+CNTP`, UTC), read back with `AT+CCLK?`.
    pub async fn unix_time_s(&mut self) -> Result<i64, AtError<W::Error>> {
        let m = &mut self.modem;
        m.command(
            "+CNTP",
            &[Arg::Quoted(self.net.ntp_server), Arg::Num(0)],
            None,
            COMMAND_TIMEOUT,
        )
        .await?;
        m.command("+CNTP", &[], None, COMMAND_TIMEOUT).await?;
        // `+CNTP: 1` = synchronised; other codes are failures (network, DNS, timeout).
        let sync = m.wait_line("+CNTP:", ACK_TIMEOUT).await?;
        if !sync.starts_with("+CNTP: 1") {
            return Err(AtError::Error);
        }
        let clock = m
            .command("+CCLK?", &[], Some("+CCLK:"), COMMAND_TIMEOUT)
            .await?
            .ok_or(AtError::Parse(at::ParseError::Malformed))?;
        let t = at::cclk_unix_s(&clock).map_err(AtError::Parse)?;
        if t < at::EARLIEST_PLAUSIBLE_UNIX_S {
            return Err(AtError::Parse(at::ParseError::OutOfRange));
        }
        Ok(t)
    }

    async fn conf(&mut self, key: &str, value: Arg<'_>) -> Result<(), AtError<W::Error>> {
        self.modem
            .command("+SMCONF", &[Arg::Quoted(key), value], None, COMMAND_TIMEOUT)
            .await
            .map(|_| ())
    }
}

impl<W: Write> MqttClient for CellularMqtt<'_, W> {
    type Error = AtError<W::Error>;

    async fn connect(&mut self, client_id: &str, will: LastWill<'_>) -> Result<(), Self::Error> {
        self.modem.shared().set_mqtt_up(false);
        // A session the modem still holds (or believes it holds) would refuse SMCONF.
        let _ = self
            .modem
            .command("+SMDISC", &[], None, COMMAND_TIMEOUT)
            .await;
        self.ensure_pdp().await?;
        match self.modem.rssi_dbm().await {
            Ok(rssi) => self.status.set_rssi_dbm(rssi),
            Err(e) => defmt::debug!("modem: CSQ failed: {}", defmt::Debug2Format(&e)),
        }
        let will_payload = core::str::from_utf8(will.payload).map_err(|_| AtError::BadArgument)?;
        let net = self.net;
        let mut url: heapless::String<96> = heapless::String::new();
        url.push_str(&net.broker_host)
            .map_err(|_| AtError::BadArgument)?;
        // `"URL","host",port`: the port is a separate, unquoted argument.
        self.modem
            .command(
                "+SMCONF",
                &[
                    Arg::Quoted("URL"),
                    Arg::Quoted(&url),
                    Arg::Num(u32::from(net.broker_port)),
                ],
                None,
                COMMAND_TIMEOUT,
            )
            .await?;
        self.conf("KEEPTIME", Arg::Num(KEEPALIVE_S)).await?;
        // Clean session off: the broker keeps our config subscription and QoS 1 state.
        self.conf("CLEANSS", Arg::Num(0)).await?;
        self.conf("CLIENTID", Arg::Quoted(client_id)).await?;
        self.conf("USERNAME", Arg::Quoted(&net.username)).await?;
        self.conf("PASSWORD", Arg::Quoted(&net.password)).await?;
        // TOPIC / MESSAGE / QOS / RETAIN are the last will.
        self.conf("TOPIC", Arg::Quoted(will.topic)).await?;
        self.conf("MESSAGE", Arg::Quoted(will_payload)).await?;
        self.conf("QOS", Arg::Num(1)).await?;
        self.conf("RETAIN", Arg::Num(1)).await?;
        // Incoming payloads as hex: a CBOR config may hold any byte, quotes and CR/LF included.
        self.conf("SUBHEX", Arg::Num(1)).await?;
        self.conf("ASYNCMODE", Arg::Num(0)).await?;
        self.modem
            .command("+SMCONN", &[], None, CONNECT_TIMEOUT)
            .await?;
        self.modem.shared().set_mqtt_up(true);
        Ok(())
    }

    async fn subscribe(&mut self, topic: &str) -> Result<(), Self::Error> {
        self.modem
            .command(
                "+SMSUB",
                &[Arg::Quoted(topic), Arg::Num(1)],
                None,
                ACK_TIMEOUT,
            )
            .await?;
        self.subscribed.clear();
        self.subscribed
            .push_str(topic)
            .map_err(|_| AtError::BadArgument)
    }

    async fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        retain: bool,
    ) -> Result<(), Self::Error> {
        if !self.modem.shared().mqtt_up() {
            return Err(AtError::Error);
        }
        let len = u32::try_from(payload.len()).map_err(|_| AtError::BadArgument)?;
        self.modem
            .command_with_data(
                "+SMPUB",
                &[
                    Arg::Quoted(topic),
                    Arg::Num(len),
                    Arg::Num(1),
                    Arg::Num(u32::from(retain)),
                ],
                payload,
                ACK_TIMEOUT,
            )
            .await
    }

    fn try_receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        if self.subscribed.is_empty() {
            return None;
        }
        self.modem.shared().take_message(&self.subscribed, buf)
    }
}

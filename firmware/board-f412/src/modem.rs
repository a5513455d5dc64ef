//! SIMCom SIM7080G (LTE-M / NB-IoT) AT driver: the [`ModemRunner`] task owns the modem's RX
//! line, splits it into lines and routes them; the [`Modem`] handle owns TX and issues one
//! command at a time, waiting for its final result (`OK`, `ERROR`, `+CME ERROR`) under a
//! timeout. URCs are handled by the runner whatever the handle is doing: `+SMSUB` (an MQTT
//! message, kept in a one-slot inbox, newest wins), `+SMSTATE: 0` (MQTT session lost) and the
//! `>` prompt of `AT+SMPUB`.
//!
//! Reads the modem UART (RX), writes AT commands to it (TX); shares [`ModemShared`] between the
//! two halves. Generic over embedded-io-async so the same code drives any UART.

use core::cell::RefCell;
use core::fmt::Write as _;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embassy_sync::blocking_mutex::Mutex as BlockingMutex;
use embassy_sync::channel::Channel;
use embassy_sync::signal::Signal;
use embassy_time::{with_timeout, Duration, Instant, Timer};
use embedded_io_async::{Read, Write};
use heapless::{String, Vec};
use protocol::post_config::MAX_CONFIG_BYTES;
use protocol::topic::TopicString;

use crate::at;

/// Longest response line kept for the command side (longer lines are cut).
pub const RESPONSE_LINE_BYTES: usize = 128;
/// Longest line the runner assembles: a `+SMSUB` URC with a hex config payload and its topic.
pub const URC_LINE_BYTES: usize = 2 * MAX_CONFIG_BYTES + 160;
/// Response lines buffered between runner and handle; when full, new lines are dropped and
/// counted (the runner never stalls the UART).
const LINE_QUEUE: usize = 8;
/// Longest AT command line built.
const COMMAND_BYTES: usize = 320;
/// Default wait for a command's final result.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// A response line.
pub type Line = String<RESPONSE_LINE_BYTES>;

/// AT-level failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum AtError<E> {
    /// The UART failed.
    Uart(E),
    /// No final result within the command's timeout.
    Timeout,
    /// The modem answered `ERROR`.
    Error,
    /// The modem answered `+CME ERROR: <code>` (numeric, `AT+CMEE=1`).
    Cme(u16),
    /// An argument cannot be sent inside a quoted AT string, or the command is too long.
    BadArgument,
    /// A response did not parse.
    Parse(at::ParseError),
    /// The modem did not prompt for data.
    NoPrompt,
}

/// The newest MQTT message: its topic and payload.
type Message = (TopicString, Vec<u8, MAX_CONFIG_BYTES>);

/// What the runner and the handle share.
pub struct ModemShared {
    lines: Channel<NoopRawMutex, Line, LINE_QUEUE>,
    prompt: Signal<NoopRawMutex, ()>,
    inbox: BlockingMutex<NoopRawMutex, RefCell<Option<Message>>>,
    mqtt_up: AtomicBool,
    /// Lines dropped because the response queue was full or a URC did not parse.
    pub dropped_lines: AtomicU32,
}

impl ModemShared {
    /// Empty state.
    pub const fn new() -> Self {
        Self {
            lines: Channel::new(),
            prompt: Signal::new(),
            inbox: BlockingMutex::new(RefCell::new(None)),
            mqtt_up: AtomicBool::new(false),
            dropped_lines: AtomicU32::new(0),
        }
    }

    /// Whether the modem reports an MQTT session (cleared by the `+SMSTATE: 0` URC).
    pub fn mqtt_up(&self) -> bool {
        self.mqtt_up.load(Ordering::Relaxed)
    }

    pub(crate) fn set_mqtt_up(&self, up: bool) {
        self.mqtt_up.store(up, Ordering::Relaxed);
    }

    /// Takes the newest MQTT message received on `topic`, if any.
    pub fn take_message(&self, topic: &str, buf: &mut [u8]) -> Option<usize> {
        let msg = self.inbox.lock(|cell| cell.borrow_mut().take())?;
        let (t, payload) = msg;
        if t.as_str() != topic {
            return None;
        }
        let dst = buf.get_mut(..payload.len())?;
        dst.copy_from_slice(&payload);
        Some(payload.len())
    }
}

impl Default for ModemShared {
    fn default() -> Self {
        Self::new()
    }
}

/// The RX half: run [`ModemRunner::run`] as its own future for as long as the modem is used.
pub struct ModemRunner<'a, R> {
    rx: R,
    shared: &'a ModemShared,
    line: Vec<u8, URC_LINE_BYTES>,
    overflow: bool,
}

impl<'a, R: Read> ModemRunner<'a, R> {
    /// The runner reading `rx`.
    pub fn new(rx: R, shared: &'a ModemShared) -> Self {
        Self {
            rx,
            shared,
            line: Vec::new(),
            overflow: false,
        }
    }

    /// Reads forever. UART errors (overrun, noise) drop the partial line and go on.
    pub async fn run(&mut self) -> ! {
        let mut chunk = [0u8; 64];
        loop {
            let n = match self.rx.read(&mut chunk).await {
                Ok(n) => n,
                Err(e) => {
                    defmt::warn!("modem rx: {}", defmt::Debug2Format(&e));
                    self.line.clear();
                    continue;
                }
            };
            for &b in chunk.iter().take(n) {
                self.push(b);
            }
            // `AT+SMPUB` answers with "> " and no line end: the modem now wants the payload.
            if matches!(self.line.as_slice(), b">" | b"> ") {
                self.line.clear();
                self.shared.prompt.signal(());
            }
        }
    }

    fn push(&mut self, b: u8) {
        match b {
            b'\n' => {
                if !self.overflow {
                    self.dispatch();
                }
                self.line.clear();
                self.overflow = false;
            }
            b'\r' => {}
            _ => {
                if self.line.push(b).is_err() {
                    self.overflow = true;
                }
            }
        }
    }

    fn dispatch(&mut self) {
        let Ok(text) = core::str::from_utf8(&self.line) else {
            self.shared.dropped_lines.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        if text.starts_with("+SMSUB:") {
            match at::smsub(text) {
                Ok(msg) => {
                    let mut topic = TopicString::new();
                    if topic.push_str(msg.topic).is_ok() {
                        self.shared
                            .inbox
                            .lock(|cell| *cell.borrow_mut() = Some((topic, msg.payload)));
                    }
                }
                Err(e) => {
                    defmt::warn!("modem: +SMSUB refused: {}", e);
                    self.shared.dropped_lines.fetch_add(1, Ordering::Relaxed);
                }
            }
            return;
        }
        if text == "+SMSTATE: 0" {
            self.shared.set_mqtt_up(false);
        }
        let mut line = Line::new();
        for c in text.chars() {
            if line.push(c).is_err() {
                break;
            }
        }
        if self.shared.lines.try_send(line).is_err() {
            self.shared.dropped_lines.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The TX half: one command at a time.
pub struct Modem<'a, W> {
    tx: W,
    shared: &'a ModemShared,
}

/// One argument of a `AT+CMD=` command.
#[derive(Clone, Copy)]
pub enum Arg<'s> {
    /// Sent in double quotes; must be [`at::quotable`].
    Quoted(&'s str),
    /// Sent as a decimal number.
    Num(u32),
}

impl<'a, W: Write> Modem<'a, W> {
    /// The handle writing `tx`.
    pub fn new(tx: W, shared: &'a ModemShared) -> Self {
        Self { tx, shared }
    }

    /// The state shared with the runner.
    pub fn shared(&self) -> &'a ModemShared {
        self.shared
    }

    /// Sends `AT<name>=<args>` (or `AT<name>` without args) and waits up to `timeout` for the
    /// final result. Returns the last intermediate line starting with `want` (e.g. `+CSQ:`).
    pub async fn command(
        &mut self,
        name: &str,
        args: &[Arg<'_>],
        want: Option<&str>,
        timeout: Duration,
    ) -> Result<Option<Line>, AtError<W::Error>> {
        let cmd = build(name, args).ok_or(AtError::BadArgument)?;
        // Lines left over from an earlier, timed-out command are not this command's answer.
        while self.shared.lines.try_receive().is_ok() {}
        self.shared.prompt.reset();
        self.tx
            .write_all(cmd.as_bytes())
            .await
            .map_err(AtError::Uart)?;
        self.tx.flush().await.map_err(AtError::Uart)?;
        self.final_result(want, timeout).await
    }

    /// Reads lines until `OK` / `ERROR` / `+CME ERROR`, keeping the last one starting with `want`.
    async fn final_result(
        &mut self,
        want: Option<&str>,
        timeout: Duration,
    ) -> Result<Option<Line>, AtError<W::Error>> {
        let deadline = Instant::now() + timeout;
        let mut found = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = with_timeout(left, self.shared.lines.receive())
                .await
                .map_err(|_| AtError::Timeout)?;
            match line.as_str() {
                "OK" => return Ok(found),
                "ERROR" => return Err(AtError::Error),
                l if l.starts_with("+CME ERROR:") => {
                    let code = l.get(11..).and_then(|c| c.trim().parse().ok()).unwrap_or(0);
                    return Err(AtError::Cme(code));
                }
                l if want.is_some_and(|w| l.starts_with(w)) => found = Some(line),
                _ => {}
            }
        }
    }

    /// Waits up to `timeout` for a line starting with `prefix` (a URC that follows `OK`).
    pub async fn wait_line(
        &mut self,
        prefix: &str,
        timeout: Duration,
    ) -> Result<Line, AtError<W::Error>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = with_timeout(left, self.shared.lines.receive())
                .await
                .map_err(|_| AtError::Timeout)?;
            if line.starts_with(prefix) {
                return Ok(line);
            }
        }
    }

    /// Sends a command that answers with the `>` prompt, then `data`, then waits for the
    /// final result.
    pub async fn command_with_data(
        &mut self,
        name: &str,
        args: &[Arg<'_>],
        data: &[u8],
        timeout: Duration,
    ) -> Result<(), AtError<W::Error>> {
        let cmd = build(name, args).ok_or(AtError::BadArgument)?;
        while self.shared.lines.try_receive().is_ok() {}
        self.shared.prompt.reset();
        self.tx
            .write_all(cmd.as_bytes())
            .await
            .map_err(AtError::Uart)?;
        self.tx.flush().await.map_err(AtError::Uart)?;
        match embassy_futures::select::select(
            with_timeout(COMMAND_TIMEOUT, self.shared.prompt.wait()),
            self.shared.lines.receive(),
        )
        .await
        {
            embassy_futures::select::Either::First(Ok(())) => {}
            embassy_futures::select::Either::First(Err(_)) => return Err(AtError::NoPrompt),
            // An answer instead of the prompt is the refusal (`ERROR`, `+CME ERROR`).
            embassy_futures::select::Either::Second(line) => {
                defmt::debug!("modem: {} refused: {}", name, line.as_str());
                return Err(AtError::NoPrompt);
            }
        }
        self.tx.write_all(data).await.map_err(AtError::Uart)?;
        self.tx.flush().await.map_err(AtError::Uart)?;
        self.final_result(None, timeout).await.map(|_| ())
    }

    /// Checks that the modem answers `AT` (it autobauds on the first few).
    pub async fn alive(&mut self) -> bool {
        for _ in 0..5 {
            if self
                .command("", &[], None, Duration::from_millis(500))
                .await
                .is_ok()
            {
                return true;
            }
            Timer::after_millis(200).await;
        }
        false
    }

    /// Signal strength from `AT+CSQ`, dBm (`None` when the modem does not know).
    pub async fn rssi_dbm(&mut self) -> Result<Option<i16>, AtError<W::Error>> {
        let line = self
            .command("+CSQ", &[], Some("+CSQ:"), COMMAND_TIMEOUT)
            .await?
            .ok_or(AtError::Parse(at::ParseError::Malformed))?;
        at::csq_rssi_dbm(&line).map_err(AtError::Parse)
    }
}

/// `AT` + `name` [+ `=` + comma-separated args] + CR; `None` when an argument is not quotable or
/// the line is too long.
fn build(name: &str, args: &[Arg<'_>]) -> Option<String<COMMAND_BYTES>> {
    let mut cmd: String<COMMAND_BYTES> = String::new();
    cmd.push_str("AT").ok()?;
    cmd.push_str(name).ok()?;
    for (i, arg) in args.iter().enumerate() {
        cmd.push(if i == 0 { '=' } else { ',' }).ok()?;
        match arg {
            Arg::Quoted(s) => {
                if !at::quotable(s) {
                    return None;
                }
                write!(cmd, "\"{s}\"").ok()?;
            }
            Arg::Num(n) => write!(cmd, "{n}").ok()?,
        }
    }
    cmd.push('\r').ok()?;
    Some(cmd)
}

//! Board health the post's status message carries (signal strength and supply voltage).
//! Written by the cellular client (`AT+CSQ` at every connect) and the supply monitor (ADC
//! divider, every minute); read by the core's uplink through its [`Vitals`] trait, implemented
//! here for `&BoardStatus`.

use core::sync::atomic::{AtomicI32, Ordering};

use taza_firmware_core::uplink::Vitals;

/// Stored when a value is not known.
const UNKNOWN: i32 = i32::MIN;

/// Link and power figures of the board.
#[derive(Debug)]
pub struct BoardStatus {
    rssi_dbm: AtomicI32,
    supply_mv: AtomicI32,
}

impl BoardStatus {
    /// Nothing measured yet.
    pub const fn new() -> Self {
        Self {
            rssi_dbm: AtomicI32::new(UNKNOWN),
            supply_mv: AtomicI32::new(UNKNOWN),
        }
    }

    /// Received signal strength at the last connect, dBm (`None`: not measured or unknown to
    /// the modem).
    pub fn rssi_dbm(&self) -> Option<i16> {
        let v = self.rssi_dbm.load(Ordering::Relaxed);
        i16::try_from(v).ok()
    }

    /// Records the signal strength.
    pub fn set_rssi_dbm(&self, rssi: Option<i16>) {
        self.rssi_dbm
            .store(rssi.map_or(UNKNOWN, i32::from), Ordering::Relaxed);
    }

    /// Supply (battery) voltage at the last measurement, mV.
    pub fn supply_mv(&self) -> Option<u16> {
        let v = self.supply_mv.load(Ordering::Relaxed);
        u16::try_from(v).ok()
    }

    /// Records the supply voltage.
    pub fn set_supply_mv(&self, mv: u16) {
        self.supply_mv.store(i32::from(mv), Ordering::Relaxed);
    }
}

impl Default for BoardStatus {
    fn default() -> Self {
        Self::new()
    }
}

/// The uplink reads the latest figures when it builds a status (at connect, after a config,
/// every heartbeat).
impl Vitals for &BoardStatus {
    fn rssi_dbm(&mut self) -> Option<i16> {
        BoardStatus::rssi_dbm(self)
    }

    fn supply_mv(&mut self) -> Option<u16> {
        BoardStatus::supply_mv(self)
    }
}

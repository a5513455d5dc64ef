//! Board health the post's status message will carry once `protocol::status::PostStatus` has
//! fields for it (signal strength and supply voltage). Written by the cellular client (at every
//! connect) and the supply monitor; read by whoever builds the status.

use core::sync::atomic::{AtomicI32, Ordering};

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
    #[allow(dead_code)] // read by the status message once PostStatus has `supply_mv`
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

//! The internal flash map of the STM32F412RG (1 MiB, single bank; sectors 0-3 of 16 KiB, 4 of
//! 64 KiB, 5-11 of 128 KiB). Offsets are from the flash base 0x0800_0000, the form
//! embassy-stm32's flash driver takes. memory.x must agree (the image ends where
//! [`PROVISIONING`] starts).

use core::ops::Range;

/// Sectors 0-5: the application image (256 KiB).
pub const APPLICATION: Range<u32> = 0x0000_0000..0x0004_0000;
/// Where the flash is mapped: [`PROVISIONING`] is flashed at `FLASH_BASE + PROVISIONING.start`
/// (0x0804_0000).
pub const FLASH_BASE: u32 = 0x0800_0000;
/// Sector 6: the device config blob (`protocol::device_config`: post id, broker, credentials,
/// installed sensors, initial config) that `gateway posts provision` writes. Its own sector, so
/// re-provisioning erases neither image nor queue. The core reads its first
/// `MAX_DEVICE_CONFIG_BYTES` (1 KiB) at boot.
pub const PROVISIONING: Range<u32> = 0x0004_0000..0x0006_0000;
/// Sectors 7-11: the store-and-forward queue (640 KiB, five 128 KiB erase pages).
pub const QUEUE: Range<u32> = 0x0006_0000..0x0010_0000;

// The partitions tile the flash without gaps or overlaps, and the queue is whole 128 KiB sectors.
const _: () = assert!(APPLICATION.end == PROVISIONING.start);
const _: () = assert!(PROVISIONING.end == QUEUE.start);
const _: () = assert!(QUEUE.end == 1024 * 1024);
const _: () = assert!((QUEUE.end - QUEUE.start) % (128 * 1024) == 0);
const _: () = assert!(
    protocol::device_config::MAX_DEVICE_CONFIG_BYTES as u32
        <= PROVISIONING.end - PROVISIONING.start
);

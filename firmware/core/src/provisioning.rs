//! The device config partition: where a technician's provisioning leaves the
//! [`protocol::device_config`] blob (identity, broker, credentials, installed sensors, initial
//! post config) and how the post reads it at boot.
//!
//! The blob sits at the start of its own flash range (whole erase pages, apart from the
//! store-and-forward queue). [`read_device_config`] reads at most
//! [`MAX_DEVICE_CONFIG_BYTES`] from there and tells "never provisioned" (erased flash) apart
//! from "damaged" (bad magic, truncated, CRC mismatch), "written by a newer gateway" (format
//! version) and "readable but refused" (a field fails validation), because a technician fixes
//! each differently. [`write_device_config`] is the factory / serial-console side.

use core::ops::Range;

use embedded_storage_async::nor_flash::{NorFlash, ReadNorFlash};
use protocol::device_config::{self, DeviceConfig, DeviceConfigError, MAX_DEVICE_CONFIG_BYTES};

/// Why the post has no usable device config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisioningError<E> {
    /// The flash driver failed.
    Flash(E),
    /// The range is empty, beyond the flash, or not aligned to the flash's read/erase size.
    BadRange,
    /// The range is erased: the post was never provisioned.
    NotProvisioned,
    /// The blob is damaged (bad magic, truncated, too large or CRC mismatch); the inner error
    /// says which.
    Corrupt(DeviceConfigError),
    /// The blob uses a layout version this firmware does not read: update the firmware.
    UnsupportedVersion(u8),
    /// The blob is intact but a field is refused (missing key, bad port, invalid post config…).
    Invalid(DeviceConfigError),
    /// The blob does not fit the range (writing).
    TooLarge,
}

impl<E> From<DeviceConfigError> for ProvisioningError<E> {
    fn from(e: DeviceConfigError) -> Self {
        match e {
            DeviceConfigError::Erased => Self::NotProvisioned,
            DeviceConfigError::BadMagic
            | DeviceConfigError::Truncated
            | DeviceConfigError::TooLarge
            | DeviceConfigError::BadCrc => Self::Corrupt(e),
            DeviceConfigError::UnsupportedVersion(v) => Self::UnsupportedVersion(v),
            _ => Self::Invalid(e),
        }
    }
}

/// Reads and decodes the device config blob at the start of `range` of `flash`.
pub async fn read_device_config<F: ReadNorFlash>(
    flash: &mut F,
    range: Range<u32>,
) -> Result<DeviceConfig, ProvisioningError<F::Error>> {
    let span = range.end.saturating_sub(range.start) as usize;
    // Whole read units only: a blob shorter than the read is followed by erased bytes anyway.
    let len = span.min(MAX_DEVICE_CONFIG_BYTES) / F::READ_SIZE * F::READ_SIZE;
    if len == 0 || range.end as usize > flash.capacity() || range.start as usize % F::READ_SIZE != 0
    {
        return Err(ProvisioningError::BadRange);
    }
    let mut buf = [0xFFu8; MAX_DEVICE_CONFIG_BYTES];
    let dst = buf.get_mut(..len).ok_or(ProvisioningError::BadRange)?;
    flash
        .read(range.start, dst)
        .await
        .map_err(ProvisioningError::Flash)?;
    Ok(device_config::decode(dst)?)
}

/// Erases `range` and writes `blob` (an encoded device config) at its start. The blob is
/// checked by decoding it first, so a bad blob never replaces a good one.
pub async fn write_device_config<F: NorFlash>(
    flash: &mut F,
    range: Range<u32>,
    blob: &[u8],
) -> Result<(), ProvisioningError<F::Error>> {
    device_config::decode(blob)?;
    let span = range.end.saturating_sub(range.start) as usize;
    if span == 0
        || range.start as usize % F::ERASE_SIZE != 0
        || range.end as usize % F::ERASE_SIZE != 0
        || range.end as usize > flash.capacity()
    {
        return Err(ProvisioningError::BadRange);
    }
    // Pad to whole write units with the erased value, which programs nothing.
    let padded = blob.len().div_ceil(F::WRITE_SIZE) * F::WRITE_SIZE;
    if padded > span || padded > MAX_DEVICE_CONFIG_BYTES + F::WRITE_SIZE {
        return Err(ProvisioningError::TooLarge);
    }
    let mut buf = [0xFFu8; MAX_DEVICE_CONFIG_BYTES + 64];
    buf.get_mut(..blob.len())
        .ok_or(ProvisioningError::TooLarge)?
        .copy_from_slice(blob);
    flash
        .erase(range.start, range.end)
        .await
        .map_err(ProvisioningError::Flash)?;
    flash
        .write(
            range.start,
            buf.get(..padded).ok_or(ProvisioningError::TooLarge)?,
        )
        .await
        .map_err(ProvisioningError::Flash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RamNorFlash, RAM_FLASH_PAGE};
    use embassy_futures::block_on;
    use protocol::post_config::PostConfig;
    use protocol::{PostId, Quantity};

    /// Two pages: the device config partition is the second.
    type Flash = RamNorFlash<{ 2 * RAM_FLASH_PAGE }>;
    const PARTITION: Range<u32> = RAM_FLASH_PAGE as u32..2 * RAM_FLASH_PAGE as u32;

    fn device() -> DeviceConfig {
        let mut d = DeviceConfig {
            post: PostId::parse("almaty-007").unwrap(),
            broker_host: heapless::String::new(),
            broker_port: 1883,
            broker_tls: false,
            username: heapless::String::new(),
            password: heapless::String::new(),
            topic_prefix: heapless::String::new(),
            sensors: heapless::Vec::new(),
            config: PostConfig::default(),
        };
        d.broker_host.push_str("mqtt.taza.kz").unwrap();
        d.username.push_str("almaty-007").unwrap();
        d.password.push_str("s3cret-issued-by-gateway").unwrap();
        d.topic_prefix.push_str("taza").unwrap();
        d.sensors.push(Quantity::Pm2_5).unwrap();
        d
    }

    fn blob(d: &DeviceConfig) -> heapless::Vec<u8, MAX_DEVICE_CONFIG_BYTES> {
        let mut buf = [0u8; MAX_DEVICE_CONFIG_BYTES];
        let n = device_config::encode(d, &mut buf).unwrap();
        heapless::Vec::from_slice(&buf[..n]).unwrap()
    }

    #[test]
    fn a_provisioned_partition_reads_back_the_device_config() {
        block_on(async {
            let mut flash = Flash::new();
            write_device_config(&mut flash, PARTITION, &blob(&device()))
                .await
                .unwrap();
            let read = read_device_config(&mut flash, PARTITION).await.unwrap();
            assert_eq!(read, device());
            assert_eq!(read.config.hash(), PostConfig::default().hash());
        });
    }

    #[test]
    fn erased_flash_is_not_provisioned() {
        block_on(async {
            let mut flash = Flash::new();
            assert_eq!(
                read_device_config(&mut flash, PARTITION).await,
                Err(ProvisioningError::NotProvisioned)
            );
        });
    }

    #[test]
    fn a_cleared_bit_in_the_blob_is_reported_corrupt() {
        block_on(async {
            let mut flash = Flash::new();
            write_device_config(&mut flash, PARTITION, &blob(&device()))
                .await
                .unwrap();
            // NOR decay: one set bit of the body (past the 7-byte header) drops to 0.
            let at = PARTITION.start + 20;
            let mut word = [0u8; 4];
            flash.read(at, &mut word).await.unwrap();
            let bits = u32::from_le_bytes(word);
            assert_ne!(bits, 0, "the test needs a set bit to clear");
            let mask = !(1u32 << bits.trailing_zeros());
            flash.write(at, &mask.to_le_bytes()).await.unwrap();
            assert_eq!(
                read_device_config(&mut flash, PARTITION).await,
                Err(ProvisioningError::Corrupt(DeviceConfigError::BadCrc))
            );
        });
    }

    #[test]
    fn foreign_newer_and_invalid_blobs_are_told_apart() {
        block_on(async {
            let mut flash = Flash::new();
            // Something else lives here (e.g. an old firmware's settings).
            flash.write(PARTITION.start, b"SETTINGS").await.unwrap();
            assert_eq!(
                read_device_config(&mut flash, PARTITION).await,
                Err(ProvisioningError::Corrupt(DeviceConfigError::BadMagic))
            );
            // A valid but refused config is not written in the first place.
            let mut bad = device();
            bad.broker_port = 0;
            let b = blob(&bad);
            assert_eq!(
                write_device_config(&mut flash, PARTITION, &b).await,
                Err(ProvisioningError::Invalid(DeviceConfigError::BadPort))
            );
            // ...and is refused on read if it got there some other way.
            flash.erase(PARTITION.start, PARTITION.end).await.unwrap();
            let mut padded = [0xFFu8; MAX_DEVICE_CONFIG_BYTES];
            padded[..b.len()].copy_from_slice(&b);
            flash.write(PARTITION.start, &padded).await.unwrap();
            assert_eq!(
                read_device_config(&mut flash, PARTITION).await,
                Err(ProvisioningError::Invalid(DeviceConfigError::BadPort))
            );
            assert_eq!(
                read_device_config(&mut flash, 0..3 * RAM_FLASH_PAGE as u32).await,
                Err(ProvisioningError::BadRange)
            );
        });
    }
}

//! One partition of the internal flash (sectors of embassy-stm32's async flash driver,
//! addressed from 0) as an embedded-storage-async `MultiwriteNorFlash`: at boot the
//! [`crate::partitions::PROVISIONING`] sector for the core's `read_device_config`, then the
//! [`crate::partitions::QUEUE`] sectors for the core's `RecordQueue`.
//!
//! Why multiwrite holds here: the STM32F4 flash has no ECC and programming only clears bits
//! (RM0402 §3.5.3), so rewriting a programmed word with a value that only clears more bits is
//! allowed. sequential-storage relies on this to mark a popped item by zeroing its header CRC.
//! (STM32L4/G4/U5/H7 parts have ECC on 64-bit or wider words and forbid this; that is one
//! reason this board is an F4.)
//!
//! Single-bank F4 caveat: while a sector is erased (128 KiB, typically 1-2 s) the CPU stalls on
//! any flash fetch. DMA keeps filling the UART ring buffers meanwhile, so no sensor or modem
//! bytes are lost; timers fire late by that much, which the sampler's windows tolerate.

use core::ops::Range;

use embassy_stm32::flash::{Async, Error, Flash};
use embedded_storage_async::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// One partition of the internal flash.
pub struct FlashPartition<'d> {
    flash: Flash<'d, Async>,
    range: Range<u32>,
}

/// Flash failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum PartitionError {
    /// The driver failed (program, erase or alignment error).
    Driver(#[defmt(Debug2Format)] Error),
    /// An access outside the partition.
    OutOfBounds,
}

impl NorFlashError for PartitionError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::Driver(e) => e.kind(),
            Self::OutOfBounds => NorFlashErrorKind::OutOfBounds,
        }
    }
}

impl<'d> FlashPartition<'d> {
    /// The partition `range` (offsets from the flash base, whole sectors) of `flash`.
    pub fn new(flash: Flash<'d, Async>, range: Range<u32>) -> Self {
        Self { flash, range }
    }

    /// The driver back, to map another partition.
    pub fn into_inner(self) -> Flash<'d, Async> {
        self.flash
    }

    /// Partition offset -> flash offset, checking that `len` bytes fit.
    fn map(&self, offset: u32, len: usize) -> Result<u32, PartitionError> {
        let len = u32::try_from(len).map_err(|_| PartitionError::OutOfBounds)?;
        let start = self
            .range
            .start
            .checked_add(offset)
            .ok_or(PartitionError::OutOfBounds)?;
        let end = start.checked_add(len).ok_or(PartitionError::OutOfBounds)?;
        if end > self.range.end {
            return Err(PartitionError::OutOfBounds);
        }
        Ok(start)
    }
}

impl ErrorType for FlashPartition<'_> {
    type Error = PartitionError;
}

impl ReadNorFlash for FlashPartition<'_> {
    const READ_SIZE: usize = <Flash<'static, Async> as ReadNorFlash>::READ_SIZE;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let at = self.map(offset, bytes.len())?;
        self.flash
            .blocking_read(at, bytes)
            .map_err(PartitionError::Driver)
    }

    fn capacity(&self) -> usize {
        (self.range.end - self.range.start) as usize
    }
}

impl NorFlash for FlashPartition<'_> {
    const WRITE_SIZE: usize = <Flash<'static, Async> as NorFlash>::WRITE_SIZE;
    const ERASE_SIZE: usize = <Flash<'static, Async> as NorFlash>::ERASE_SIZE;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        let start = self.map(from, 0)?;
        let end = self.map(to, 0)?;
        self.flash
            .erase(start, end)
            .await
            .map_err(PartitionError::Driver)
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        let at = self.map(offset, bytes.len())?;
        self.flash
            .write(at, bytes)
            .await
            .map_err(PartitionError::Driver)
    }
}

// See the module docs: F4 flash programming only clears bits and has no ECC.
impl MultiwriteNorFlash for FlashPartition<'_> {}

//! Store-and-forward: a bounded FIFO of encoded SenML CBOR packs on NOR flash, through
//! embedded-storage-async and sequential-storage's queue, so a reboot loses nothing.
//!
//! A pack leaves the queue only through [`RecordQueue::remove_if_oldest`], which the uplink
//! calls after the broker's PUBACK, and only if the oldest pack is still the one it published
//! (the sampler may have dropped it meanwhile). When the flash is full the oldest packs are
//! dropped, one at a time until the new one fits, and counted in [`RecordQueue::dropped`].
//! Packs are pushed in window order, so a replay after an outage is in time order.
//!
//! [`RamNorFlash`] emulates NOR flash in RAM with NOR's rules (erase to 0xFF, writes only clear
//! bits); the simulator gives each post one, and the tests "reboot" by reopening the queue on
//! the same bytes.

use core::ops::Range;

use embedded_storage_async::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use sequential_storage::cache::{Cache, Uncached};
use sequential_storage::queue::{QueueConfig, QueueStorage};

/// Largest encoded pack stored (one window of a ten-quantity post is about 260 bytes).
pub const MAX_RECORD_BYTES: usize = 512;

type NoCache = Cache<Uncached, Uncached, Uncached, ()>;

/// Why the queue failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError<E> {
    /// The flash driver failed.
    Flash(E),
    /// The flash range is not whole pages, or too small.
    BadRange,
    /// The flash contents are corrupted (sequential-storage could not repair them).
    Corrupted,
    /// The pack is larger than [`MAX_RECORD_BYTES`] or a flash page.
    TooBig,
    /// Anything else sequential-storage reports.
    Other,
}

fn map_err<E>(e: sequential_storage::Error<E>) -> StoreError<E> {
    match e {
        sequential_storage::Error::Storage { value, .. } => StoreError::Flash(value),
        sequential_storage::Error::Corrupted { .. } => StoreError::Corrupted,
        sequential_storage::Error::ItemTooBig | sequential_storage::Error::BufferTooSmall(_) => {
            StoreError::TooBig
        }
        _ => StoreError::Other,
    }
}

/// The flash-backed record queue.
pub struct RecordQueue<F: NorFlash> {
    storage: QueueStorage<F, NoCache>,
    scratch: [u8; MAX_RECORD_BYTES],
    dropped: u32,
}

impl<F: MultiwriteNorFlash> RecordQueue<F> {
    /// Opens the queue kept in `range` of `flash` (whole erase pages). Existing contents are
    /// kept: this is also how the queue reopens after a reboot.
    pub fn open(flash: F, range: Range<u32>) -> Result<Self, StoreError<F::Error>> {
        let config = QueueConfig::try_new(range).map_err(|_| StoreError::BadRange)?;
        Ok(Self {
            storage: QueueStorage::new(flash, config, Cache::new_uncached()),
            scratch: [0; MAX_RECORD_BYTES],
            dropped: 0,
        })
    }

    /// Packs dropped (oldest first) because the flash was full, since this queue was opened.
    pub fn dropped(&self) -> u32 {
        self.dropped
    }

    /// Appends `pack`, dropping the oldest packs while it does not fit.
    pub async fn push(&mut self, pack: &[u8]) -> Result<(), StoreError<F::Error>> {
        if pack.len() > MAX_RECORD_BYTES {
            return Err(StoreError::TooBig);
        }
        loop {
            match self.storage.push(pack, false).await {
                Ok(()) => return Ok(()),
                Err(sequential_storage::Error::FullStorage) => {
                    let popped = self.storage.pop(&mut self.scratch).await.map_err(map_err)?;
                    if popped.is_none() {
                        // Empty and still full: the pack can never fit.
                        return Err(StoreError::TooBig);
                    }
                    self.dropped = self.dropped.saturating_add(1);
                }
                Err(e) => return Err(map_err(e)),
            }
        }
    }

    /// Copies the oldest pack into `buf` and returns it, without removing it.
    pub async fn peek<'b>(
        &mut self,
        buf: &'b mut [u8],
    ) -> Result<Option<&'b [u8]>, StoreError<F::Error>> {
        Ok(self.storage.peek(buf).await.map_err(map_err)?.map(|b| &*b))
    }

    /// Removes the oldest pack if it equals `published`; returns whether it did.
    pub async fn remove_if_oldest(
        &mut self,
        published: &[u8],
    ) -> Result<bool, StoreError<F::Error>> {
        let mut it = self.storage.iter().await.map_err(map_err)?;
        let Some(entry) = it.next(&mut self.scratch).await.map_err(map_err)? else {
            return Ok(false);
        };
        if &entry[..] != published {
            return Ok(false);
        }
        entry.pop().await.map_err(map_err)?;
        Ok(true)
    }

    /// Packs waiting (reads through the queue).
    pub async fn pending_packs(&mut self) -> Result<usize, StoreError<F::Error>> {
        let mut it = self.storage.iter().await.map_err(map_err)?;
        let mut n = 0;
        while it.next(&mut self.scratch).await.map_err(map_err)?.is_some() {
            n += 1;
        }
        Ok(n)
    }

    /// Gives the flash back (for a simulated reboot).
    pub fn into_flash(self) -> F {
        self.storage.destroy().0
    }
}

/// Erase-page size of [`RamNorFlash`] (a common SPI NOR sector).
pub const RAM_FLASH_PAGE: usize = 4096;

/// NOR flash emulated in RAM (`N` bytes, a multiple of [`RAM_FLASH_PAGE`]).
#[derive(Clone)]
pub struct RamNorFlash<const N: usize> {
    bytes: [u8; N],
}

impl<const N: usize> RamNorFlash<N> {
    /// Erased flash (all 0xFF).
    pub const fn new() -> Self {
        Self { bytes: [0xFF; N] }
    }
}

impl<const N: usize> Default for RamNorFlash<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Access outside the flash or not aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RamFlashError {
    /// Beyond the end.
    OutOfBounds,
    /// Not aligned to the write or erase size.
    NotAligned,
}

impl NorFlashError for RamFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            Self::NotAligned => NorFlashErrorKind::NotAligned,
        }
    }
}

impl<const N: usize> ErrorType for RamNorFlash<N> {
    type Error = RamFlashError;
}

impl<const N: usize> RamNorFlash<N> {
    fn range(&self, offset: u32, len: usize) -> Result<Range<usize>, RamFlashError> {
        let start = offset as usize;
        let end = start.checked_add(len).ok_or(RamFlashError::OutOfBounds)?;
        if end > N {
            return Err(RamFlashError::OutOfBounds);
        }
        Ok(start..end)
    }
}

impl<const N: usize> ReadNorFlash for RamNorFlash<N> {
    const READ_SIZE: usize = 1;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let r = self.range(offset, bytes.len())?;
        bytes.copy_from_slice(self.bytes.get(r).ok_or(RamFlashError::OutOfBounds)?);
        Ok(())
    }

    fn capacity(&self) -> usize {
        N
    }
}

impl<const N: usize> NorFlash for RamNorFlash<N> {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = RAM_FLASH_PAGE;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        if from as usize % RAM_FLASH_PAGE != 0 || to as usize % RAM_FLASH_PAGE != 0 || to < from {
            return Err(RamFlashError::NotAligned);
        }
        let r = self.range(from, (to - from) as usize)?;
        self.bytes
            .get_mut(r)
            .ok_or(RamFlashError::OutOfBounds)?
            .fill(0xFF);
        Ok(())
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        if offset as usize % Self::WRITE_SIZE != 0 || bytes.len() % Self::WRITE_SIZE != 0 {
            return Err(RamFlashError::NotAligned);
        }
        let r = self.range(offset, bytes.len())?;
        for (cell, b) in self
            .bytes
            .get_mut(r)
            .ok_or(RamFlashError::OutOfBounds)?
            .iter_mut()
            .zip(bytes)
        {
            // NOR: programming can only clear bits.
            *cell &= *b;
        }
        Ok(())
    }
}

/// Writing a word twice (clearing more bits) is allowed, as on most NOR parts.
impl<const N: usize> MultiwriteNorFlash for RamNorFlash<N> {}

//! The one place that touches memory-mapped registers: a 32-bit register at a fixed address of
//! QEMU's mps2-an386 peripheral map (`0x4000_0000..0x4001_0000`, hw/arm/mps2.c). The drivers
//! (`time_driver`, `uart`) name their registers as [`Reg`] constants and never use raw pointers.

/// A 32-bit device register.
#[derive(Clone, Copy)]
pub struct Reg(usize);

impl Reg {
    /// The register at `base + offset`. Only constants of this crate's peripheral map are built.
    pub const fn at(base: usize, offset: usize) -> Self {
        Self(base + offset)
    }

    /// Reads the register.
    pub fn read(self) -> u32 {
        // SAFETY: every `Reg` is one of the CMSDK APB timer/UART registers that the mps2-an386
        // machine maps at that address: always mapped, 4-byte aligned, and reading has no effect
        // on memory Rust owns. Volatile because the device changes it behind the compiler's back.
        unsafe { core::ptr::read_volatile(self.0 as *const u32) }
    }

    /// Writes the register.
    pub fn write(self, value: u32) {
        // SAFETY: as in `read`; the address is a device register, not memory Rust owns, so a
        // write cannot break any Rust reference.
        unsafe { core::ptr::write_volatile(self.0 as *mut u32, value) }
    }
}

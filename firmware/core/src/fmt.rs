//! Logging shim: `log` in the simulator (feature `log`), nothing otherwise (the arguments are
//! still type-checked). A board crate adds a `defmt` arm here; call sites never change.

#![allow(unused_macros)]

macro_rules! log_debug {
    ($($arg:tt)*) => {{
        #[cfg(feature = "log")]
        ::log::debug!($($arg)*);
        #[cfg(not(feature = "log"))]
        let _ = ::core::format_args!($($arg)*);
    }};
}

macro_rules! log_warn {
    ($($arg:tt)*) => {{
        #[cfg(feature = "log")]
        ::log::warn!($($arg)*);
        #[cfg(not(feature = "log"))]
        let _ = ::core::format_args!($($arg)*);
    }};
}

pub(crate) use log_debug as debug;
pub(crate) use log_warn as warn;

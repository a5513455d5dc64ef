//! Puts memory.x where cortex-m-rt's link.x finds it and passes `-Tlink.x` to the linker, so the
//! image links the same whether cargo runs from this directory (which reads .cargo/config.toml)
//! or from anywhere else with `--manifest-path`.

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    if let Err(e) = std::fs::write(out.join("memory.x"), include_bytes!("memory.x")) {
        panic!("writing memory.x to {}: {e}", out.display());
    }
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
}

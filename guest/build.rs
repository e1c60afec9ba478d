//! Links the guest with its own linker script (fixed load address 1 MiB, PT_NOTE for PVH).
//!
//! The script is copied into `OUT_DIR` and linked from there: cargo keeps a build script's
//! output when the source tree moves (another checkout sharing the target directory), so an
//! absolute path into the source tree could point at a checkout that is gone.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let script = std::path::Path::new(&out).join("linker.ld");
    std::fs::copy(std::path::Path::new(&dir).join("linker.ld"), &script)
        .expect("copy linker.ld into OUT_DIR");
    println!("cargo:rustc-link-arg=-T{}", script.display());
    println!("cargo:rustc-link-arg=--no-pie");
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=build.rs");
}

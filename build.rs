//! The binary's ELF entry point is `sbx_oci_entry` (early/src/lib.rs) where that
//! code exists: the protective re-execution before the C library starts.

fn main() {
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if arch == "x86_64" && os == "linux" {
        println!(
            "cargo:rustc-link-arg-bin=sbx-oci=-Wl,--entry=sbx_oci_entry,--undefined=sbx_oci_entry"
        );
    }
    println!("cargo:rerun-if-changed=build.rs");
}

//! The binary's ELF entry point is `sbx_oci_entry` (early/src/lib.rs) where that
//! code exists: the protective re-execution before the C library starts.
//!
//! The functions the common commands execute are laid out together at the
//! start of .text (tools/hot-functions.txt, made by tools/hot-functions.py):
//! the kernel maps text 64 KiB around each touched page, so scattered hot
//! code made nearly all 4 MiB of it resident in every run. Names the list
//! has and the binary lacks (a debug build, changed code) are skipped.

fn main() {
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if arch == "x86_64" && os == "linux" {
        println!(
            "cargo:rustc-link-arg-bin=sbx-oci=-Wl,--entry=sbx_oci_entry,--undefined=sbx_oci_entry"
        );
        let list = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap())
            .join("tools/hot-functions.txt");
        if list.exists() {
            println!(
                "cargo:rustc-link-arg-bin=sbx-oci=-Wl,--symbol-ordering-file={},--no-warn-symbol-ordering",
                list.display()
            );
        }
        println!("cargo:rerun-if-changed=tools/hot-functions.txt");
    }
    println!("cargo:rerun-if-changed=build.rs");
}

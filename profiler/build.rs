//! Embeds the eBPF object built by `cargo xtask build` into the `profiler` binary.
//!
//! aya-build is not used: it runs cargo through rustup and strips `RUSTC`, which rules out
//! the Debian route (rustc-web with a prebuilt `core` for `bpfel-unknown-none`). xtask
//! builds the object with whichever toolchain the machine has and points us at it.

use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=PROFILER_EBPF_OBJECT");
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let object = env::var_os("PROFILER_EBPF_OBJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            manifest_dir.join("../target/ebpf/bpfel-unknown-none/release/profiler-ebpf")
        });
    println!("cargo:rerun-if-changed={}", object.display());
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo")).join("profiler-ebpf.o");
    if let Err(err) = fs::copy(&object, &out) {
        eprintln!(
            "error: the eBPF object {} is missing ({err}): build with `cargo xtask build`, \
             or set PROFILER_EBPF_OBJECT to a built object",
            object.display()
        );
        std::process::exit(1);
    }
}

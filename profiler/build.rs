//! Embeds the eBPF object built by `cargo xtask build` into the `profiler` binary, and
//! builds the heap profile's `LD_PRELOAD` interposer (`preload/heap_preload.c`) into a
//! shared object that it embeds too.
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
    build_interposer(&manifest_dir);
}

/// Compiles the interposer with the C compiler cc finds (C, as its allocation paths must
/// not allocate themselves): position independent, with frame pointers and unwind tables
/// for the stacks taken through it.
fn build_interposer(manifest_dir: &std::path::Path) {
    let source = manifest_dir.join("preload/heap_preload.c");
    println!("cargo:rerun-if-changed={}", source.display());
    // The layout it shares with the profiler, included by the source.
    let layout = manifest_dir.join("preload/heap_preload.h");
    println!("cargo:rerun-if-changed={}", layout.display());
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"))
        .join("libprofiler-heap-preload.so");
    let compiler = cc::Build::new()
        .opt_level(2)
        .pic(true)
        .cargo_metadata(false)
        .get_compiler();
    let status = compiler
        .to_command()
        .args([
            "-shared",
            "-fno-omit-frame-pointer",
            "-fasynchronous-unwind-tables",
            // No DWARF: its inlined helpers would show as frames above the program's own
            // `malloc` call; the symbol table names the entry points.
            "-g0",
            "-Wall",
            "-Werror",
            "-o",
        ])
        .arg(&out)
        .arg(&source)
        .arg("-ldl")
        .status();
    match status {
        Ok(status) if status.success() => {}
        other => {
            eprintln!(
                "error: cannot build the heap interposer {} ({other:?}): install a C \
                 compiler (gcc), or set CC",
                source.display()
            );
            std::process::exit(1);
        }
    }
}

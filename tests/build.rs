//! Compiles the C fixtures in `fixtures/` into `$OUT_DIR/fixtures/` and exports
//! that directory to the crate as the `FIXTURE_DIR` compile-time variable.
//!
//! Flags keep every frame walkable with frame pointers (leaf functions too), so
//! a frame-pointer unwinder sees the fixtures' named functions.
//!
//! The `stacks_*` fixtures are the opposite: built the way distributions build
//! software, optimized and without frame pointers (`-O2 -fomit-frame-pointer`),
//! so that only an unwinder reading the call frame information (`.eh_frame`)
//! finds their callers. `-fno-inline`, `-fno-optimize-sibling-calls` and
//! `-fno-ipa-icf` keep every named function a real frame of its own (no
//! inlining, no tail calls, no merging of identical functions). The Rust
//! fixture `stacks_rust` is compiled with the same `rustc` that builds this
//! crate, `-C opt-level=3 -C debuginfo=1`, without forced frame pointers.
//!
//! `unnamed_hot` runs in `libunnamed_hot.so`, a shared library stripped of every symbol
//! but its exported ones (`strip --strip-all`), found next to it through its rpath.

use std::path::PathBuf;
use std::process::Command;

const FIXTURES: &[&str] = &[
    "cpu_split",
    "cpu_share",
    "threads",
    "bystander",
    "syscalls",
    "short_lived",
    "forker",
    "io_mix",
    "io_bystander",
    "io_siblings",
    "io_cases",
    "io_zero_copy",
    "block_mutex",
    "block_condvar",
    "block_uncontended",
    "block_stuck",
    "report_mix",
    "names_c",
    "heap_native",
    "offcpu_waits",
    "pid_tree",
];

/// C fixtures built without frame pointers (see the module comment).
const NO_FRAME_POINTER_FIXTURES: &[&str] =
    &["stacks_deep", "stacks_libc", "stacks_tree", "stacks_ns_app"];

/// Rust fixtures (`fixtures/NAME.rs`), built by rustc without frame pointers.
const RUST_FIXTURES: &[&str] = &["stacks_rust", "heap_rust"];

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let src = manifest.join("fixtures");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("fixtures");
    std::fs::create_dir_all(&out).expect("create fixture output dir");
    let cc = std::env::var("FIXTURE_CC").unwrap_or_else(|_| "cc".to_owned());

    println!("cargo:rerun-if-changed=fixtures");
    println!("cargo:rerun-if-env-changed=FIXTURE_CC");
    println!("cargo:rerun-if-env-changed=RUSTC");
    let with_frame_pointers = [
        "-O1",
        "-g",
        "-fno-omit-frame-pointer",
        "-mno-omit-leaf-frame-pointer",
        "-pthread",
        "-Wall",
    ];
    let without_frame_pointers = [
        "-O2",
        "-g",
        "-fomit-frame-pointer",
        "-fno-inline",
        "-fno-optimize-sibling-calls",
        "-fno-ipa-icf",
        "-pthread",
        "-Wall",
    ];
    let builds = FIXTURES
        .iter()
        .map(|name| (name, &with_frame_pointers[..]))
        .chain(
            NO_FRAME_POINTER_FIXTURES
                .iter()
                .map(|name| (name, &without_frame_pointers[..])),
        );
    for (name, flags) in builds {
        let c = src.join(format!("{name}.c"));
        let exe = out.join(name);
        let status = Command::new(&cc)
            .args(flags)
            .arg("-o")
            .arg(&exe)
            .arg(&c)
            .status()
            .unwrap_or_else(|e| {
                panic!("cannot run the C compiler `{cc}` for the test fixtures: {e}")
            });
        assert!(
            status.success(),
            "compiling fixture {} failed ({status})",
            c.display()
        );
    }

    build_stripped_library(&cc, &src, &out, &with_frame_pointers);

    // Cargo tells build scripts which rustc it uses.
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    for name in RUST_FIXTURES {
        let rs = src.join(format!("{name}.rs"));
        let exe = out.join(name);
        let status = Command::new(&rustc)
            .args([
                "--edition",
                "2021",
                "-C",
                "opt-level=3",
                "-C",
                "debuginfo=1",
            ])
            .arg("-o")
            .arg(&exe)
            .arg(&rs)
            // Keep the workspace's flags (RUSTFLAGS, e.g. forced frame pointers) out.
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTFLAGS")
            .status()
            .unwrap_or_else(|e| panic!("cannot run `{rustc}` for the Rust test fixtures: {e}"));
        assert!(
            status.success(),
            "compiling fixture {} failed ({status})",
            rs.display()
        );
    }
    println!("cargo:rustc-env=FIXTURE_DIR={}", out.display());
}

/// Builds `libunnamed_hot.so` stripped and `unnamed_hot` linked against it (see the module
/// comment).
fn build_stripped_library(cc: &str, src: &std::path::Path, out: &std::path::Path, flags: &[&str]) {
    let run = |cmd: &mut Command, what: &str| {
        let status = cmd
            .status()
            .unwrap_or_else(|e| panic!("cannot run {what} for the test fixtures: {e}"));
        assert!(status.success(), "{what} failed ({status})");
    };
    let library = out.join("libunnamed_hot.so");
    run(
        Command::new(cc)
            .args(flags)
            .args(["-fPIC", "-shared", "-o"])
            .arg(&library)
            .arg(src.join("unnamed_hot_lib.c")),
        "compiling libunnamed_hot.so",
    );
    run(
        Command::new("strip").arg("--strip-all").arg(&library),
        "strip --strip-all libunnamed_hot.so",
    );
    run(
        Command::new(cc)
            .args(flags)
            .arg("-o")
            .arg(out.join("unnamed_hot"))
            .arg(src.join("unnamed_hot.c"))
            .arg("-L")
            .arg(out)
            .args(["-lunnamed_hot", "-Wl,-rpath,$ORIGIN"]),
        "compiling unnamed_hot",
    );
}

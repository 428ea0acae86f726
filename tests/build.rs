//! Compiles the C fixtures in `fixtures/` into `$OUT_DIR/fixtures/` and exports
//! that directory to the crate as the `FIXTURE_DIR` compile-time variable.
//!
//! Flags keep every frame walkable with frame pointers (leaf functions too), so
//! a frame-pointer unwinder sees the fixtures' named functions.

use std::path::PathBuf;
use std::process::Command;

const FIXTURES: &[&str] = &[
    "cpu_split",
    "threads",
    "bystander",
    "syscalls",
    "short_lived",
    "forker",
    "io_mix",
    "io_bystander",
    "io_siblings",
    "block_mutex",
    "block_condvar",
    "block_uncontended",
    "block_stuck",
    "report_mix",
];

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let src = manifest.join("fixtures");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("fixtures");
    std::fs::create_dir_all(&out).expect("create fixture output dir");
    let cc = std::env::var("FIXTURE_CC").unwrap_or_else(|_| "cc".to_owned());

    println!("cargo:rerun-if-changed=fixtures");
    println!("cargo:rerun-if-env-changed=FIXTURE_CC");
    for name in FIXTURES {
        let c = src.join(format!("{name}.c"));
        let exe = out.join(name);
        let status = Command::new(&cc)
            .args([
                "-O1",
                "-g",
                "-fno-omit-frame-pointer",
                "-mno-omit-leaf-frame-pointer",
                "-pthread",
                "-Wall",
                "-o",
            ])
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
    println!("cargo:rustc-env=FIXTURE_DIR={}", out.display());
}

//! Harness for the profiler's end-to-end tests (`tests/tests/*.rs`).
//!
//! Every test runs the real `profiler` binary against small C programs (the
//! fixtures in `tests/fixtures/`, compiled by `build.rs` into [`FIXTURE_DIR`])
//! that measure their own CPU use, so the tests compare the profile with what
//! the fixture saw rather than with hard-coded numbers.
//!
//! Rules shared by all tests:
//! - the binary is `$PROFILER_BIN`, else `<workspace>/target/release/profiler`;
//!   if it does not exist the test fails ([`prerequisites`] panics);
//! - without root the test prints `skipping: needs root to load eBPF` and
//!   passes (the only skip);
//! - every profiler run is killed and failed after a timeout, and fails if a
//!   stderr line mentions `panicked` or `RUST_BACKTRACE`.

// Each job lives in its own module; everything is re-exported here, so tests keep naming
// `integration_tests::NAME`.
mod block_scratch;
mod debuginfod;
mod fixture;
mod folded;
mod go;
mod host;
mod hostile;
mod nginx;
mod postgres;
mod process;
mod profiler;
mod protobuf;
mod python;
mod redis;
mod setup;

pub use block_scratch::BlockScratch;
pub use debuginfod::{Server, debuginfod, tool};
pub use fixture::{FixtureProcess, FixtureResult};
pub use folded::{Folded, Stack};
pub use go::{GoToolchain, debian_go_toolchain, go_binary, go_toolchains, pprof};
pub use host::{
    NOBODY, assert_counted_to_window_end, free_port, kernel_symbols, monotonic_ns, set_mode,
    setpriv_nobody, unused_pid,
};
pub use hostile::{
    Attacker, Snapshot, as_nobody, assert_bounded, attacker_dir, cc_as_nobody, nobody, snapshot,
};
pub use nginx::{AbResult, AccessLine, Nginx, NginxConfig, nginx_missing};
pub use postgres::{
    Activity, ActivitySample, Postgres, Sampler, WalStats, is_tmpfs, postgres_bin_dir,
};
pub use process::{DEFAULT_TIMEOUT, ERROR_PREFIX, Run, Running, default_timeout, run_command};
pub use profiler::{
    assert_outputs, contention_section, profiler_command, run_profiler, run_report, spawn_profiler,
};
pub use protobuf::{BLOCK_SAMPLE_TYPES, CPU_SAMPLE_TYPES, IO_SAMPLE_TYPES, Msg};
pub use python::{PYENV, debian_python_3_14, pyenv_python};
pub use redis::{Redis, redis_missing};
pub use setup::{
    FIXTURE_DIR, fixture, is_root, prerequisites, profiler_bin, temp_dir, workspace_dir,
};

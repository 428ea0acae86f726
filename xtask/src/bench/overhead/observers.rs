//! The observers of the overhead rows: the profiler and bpftrace in the background.

use std::ffi::OsString;
use std::time::Duration;

use crate::bench::Ctx;
use crate::bench::runner::{Observer, Ready, Workdir};

/// The profiler in the background over the whole host.
pub(super) fn profiler_bg(ctx: &Ctx, dir: &Workdir, extra: &[&str]) -> Observer {
    profiler_bin_bg(ctx, &ctx.profiler, dir, extra)
}

/// The profiler binary `bin` in the background over the whole host.
pub(super) fn profiler_bin_bg(
    ctx: &Ctx,
    bin: &std::path::Path,
    dir: &Workdir,
    extra: &[&str],
) -> Observer {
    let mut argv = vec![bin.as_os_str().to_owned()];
    argv.extend(extra.iter().map(OsString::from));
    argv.push("-o".into());
    argv.push(dir.out.clone().into_os_string());
    Observer::Background {
        argv,
        ready: Ready::After(ctx.plan.settle),
    }
}

/// bpftrace with a program; it announces "Attaching N probes..." just before attaching.
pub(super) fn bpftrace_bg(program: &str) -> Observer {
    Observer::Background {
        argv: vec!["bpftrace".into(), "-e".into(), program.into()],
        ready: Ready::Line("Attaching", Duration::from_secs(1)),
    }
}

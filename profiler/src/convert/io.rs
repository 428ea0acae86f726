//! Builds the I/O profile: every traced read/write-family syscall, by call stack.

use profiler_common::{counter, io_syscall};
use profiler_model::{IoValue, Label, LostStack, Profile, ProfileKind};

use crate::collect::session::RunOutcome;
use crate::config::Config;
use crate::convert::cpu::comm;
use crate::convert::facts;
use crate::convert::stacks::{StackResolver, stacks_by_site};

/// Builds the symbolized I/O profile: sample types as [`ProfileKind::Io`] names them
/// (`calls/count` the default); labels `syscall`, `pid`, `comm`, and `descriptor` (file, socket, pipe, tty,
/// ...) where it was seen.
pub fn build<'run>(
    run: &'run RunOutcome,
    config: &Config,
    resolver: &mut StackResolver<'run>,
) -> Profile {
    let mut builder = facts::start(ProfileKind::Io, run, config, accounting(run));
    let mut stacks_of = stacks_by_site(&run.samples.io);
    for (key, value) in &run.io_calls {
        let syscall = io_syscall::NAMES
            .get(key.syscall as usize)
            .copied()
            .unwrap_or("unknown");
        let mut labels = vec![
            Label::str("syscall", syscall),
            Label::num("pid", i64::from(key.pid)),
            Label::str("comm", comm(&value.comm)),
        ];
        let kind = resolver
            .processes()
            .get(key.pid)
            .and_then(|p| p.fds.get(&value.fd));
        if let Some(kind) = kind {
            labels.push(Label::str("descriptor", *kind));
        }
        let sampled = stacks_of.remove(key).unwrap_or_default();
        let mut totals = [0; IoValue::Eagain.index() + 1];
        for (v, total) in [
            (IoValue::Calls, value.calls),
            (IoValue::Bytes, value.bytes),
            (IoValue::Time, value.nanos),
            (IoValue::Errors, value.errors),
            (IoValue::Requested, value.requested),
            (IoValue::Short, value.short),
            (IoValue::Eagain, value.eagain),
        ] {
            totals[v.index()] = total;
        }
        let missing = LostStack::RingBufferFull;
        resolver.add_site(&mut builder, &sampled, missing, &totals, &labels);
    }
    builder.build()
}

fn accounting(run: &RunOutcome) -> Vec<String> {
    let c = &run.counters;
    vec![
        "traced: every call of read, write, pread64, pwrite64, readv, writev, preadv(2), \
         pwritev(2), recvfrom, sendto, recvmsg, sendmsg, recvmmsg and sendmmsg (for the *mmsg \
         calls, bytes and requested are messages); stacks are sampled 1 call in 64 per call \
         site"
            .to_owned(),
        format!(
            "requested: what each call asked for, failed calls included (for vector calls \
             and *msg, the first {} iovecs: {} calls had more); short: calls that moved less; \
             eagain: calls that found nothing (EAGAIN)",
            profiler_common::MAX_IOVECS,
            c.get(counter::IO_REQUESTED_PARTIAL)
        ),
        format!(
            "calls: {} traced; lost: {} (I/O map full), {} (entry overwritten by a thread \
             sharing its slot); stack samples: {} taken, {} lost (ring buffer full)",
            c.get(counter::IO_CALLS),
            c.get(counter::LOST_IO_FULL),
            c.get(counter::LOST_SLOT),
            c.get(counter::IO_STACKS),
            c.get(counter::LOST_IO_STACK)
        ),
    ]
}

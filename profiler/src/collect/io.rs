//! The I/O profile's collector: every traced read/write-family syscall and every call
//! between two descriptors (`sendfile`, `splice`, ...), counted by the kernel per call
//! site, and the stacks sampled at each site.

use anyhow::Result;
use profiler_common::{IoKey, counter, sample_kind};
use profiler_model::{
    Account, Cause, Comment, Count, Counted, IoValue, Label, Loss, LostStack, ProfileKind, Subject,
    Table, Tally,
};
use profiler_model::{IoSyscall, LabelKey};

use crate::collect::collector::{Collector, RunEnd, Sample};
use crate::collect::probes::Probes;
use crate::collect::raw_profile::{RawProfile, SiteStacks};
use crate::collect::records::comm;

/// Counts the stacks sampled at each I/O call site.
#[derive(Default)]
pub struct IoCollector {
    stacks: SiteStacks<IoKey>,
}

impl Collector for IoCollector {
    fn takes(&self, kind: u32) -> bool {
        kind == sample_kind::IO
    }

    fn take(&mut self, sample: &Sample) {
        self.stacks
            .count(sample.header.io_site, sample.user, &sample.program);
    }

    /// Sample types as [`ProfileKind::Io`] names them (`calls/count` the default); labels
    /// `syscall`, `pid`, `comm`, and `descriptor` (file, socket, pipe, tty, ...) where it
    /// was seen.
    fn finish(self: Box<Self>, probes: &mut Probes, run: &RunEnd<'_>) -> Result<RawProfile> {
        let mut calls = probes.read_io_calls()?;
        calls.retain(|(key, _)| run.keeps(key.pid));
        let mut raw = RawProfile::new(ProfileKind::Io, accounting(run));
        let mut stacks_of = self.stacks.by_site();
        for (key, value) in &calls {
            let syscall = syscall_of(key.syscall).map_or("unknown", IoSyscall::name);
            let mut labels = vec![
                Label::str(LabelKey::Syscall, syscall),
                Label::num(LabelKey::Pid, i64::from(key.pid)),
                Label::str(LabelKey::Comm, comm(&value.comm)),
            ];
            let kind = run
                .processes
                .get(key.pid)
                .and_then(|p| p.descriptor(key.ip, value.fd));
            if let Some(kind) = kind {
                labels.push(Label::str(LabelKey::Descriptor, kind));
            }
            let sampled = stacks_of.remove(key).unwrap_or_default();
            let mut totals = [0; IoValue::Turns.index() + 1];
            for (v, total) in [
                (IoValue::Calls, value.calls),
                (IoValue::Bytes, value.bytes),
                (IoValue::Time, value.nanos),
                (IoValue::Errors, value.errors),
                (IoValue::Requested, value.requested),
                (IoValue::Short, value.short),
                (IoValue::Eagain, value.eagain),
                (IoValue::Turns, value.turns),
            ] {
                totals[v.index()] = total;
            }
            raw.add_site(&sampled, LostStack::RingBufferFull, &totals, &labels);
        }
        Ok(raw)
    }
}

/// The syscall of the kernel's index into [`profiler_common::io_syscall::NAMES`], whose order
/// [`IoSyscall::ALL`] follows (a test ties the two).
fn syscall_of(index: u32) -> Option<IoSyscall> {
    IoSyscall::ALL.get(index as usize).copied()
}

fn accounting(run: &RunEnd<'_>) -> Vec<Comment> {
    let c = run.counters;
    vec![
        Comment::Method(format!(
            "traced: every call of read, write, pread64, pwrite64, readv, writev, preadv(2), \
         pwritev(2), recvfrom, sendto, recvmsg, sendmsg, recvmmsg, sendmmsg (for the *mmsg \
         calls, bytes and requested are messages), sendfile, splice, tee, vmsplice and \
         copy_file_range (by the descriptor written to); stacks are sampled 1 call in {} per \
         call site",
            profiler_common::IO_STACK_SAMPLE_EVERY
        )),
        Comment::Account(Account::IoRequested {
            iovecs: profiler_common::MAX_IOVECS,
            more: c.get(counter::IO_REQUESTED_PARTIAL),
        }),
        Comment::Account(Account::Tally(Tally {
            subject: Subject::Calls,
            counts: vec![Count {
                count: c.get(counter::IO_CALLS),
                what: Counted::Traced,
            }],
            lost: vec![
                Loss {
                    count: c.get(counter::LOST_IO_FULL),
                    cause: Cause::MapFull(Table::Io),
                },
                Loss {
                    count: c.get(counter::LOST_SLOT),
                    cause: Cause::SlotShared,
                },
            ],
            stacks_taken: c.get(counter::IO_STACKS),
            stacks_lost: c.get(counter::LOST_IO_STACK),
        })),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use profiler_common::io_syscall;

    #[test]
    fn kernel_indices_name_their_syscalls() {
        assert_eq!(IoSyscall::ALL.len(), io_syscall::NAMES.len());
        for (index, name) in io_syscall::NAMES.iter().enumerate() {
            assert_eq!(syscall_of(index as u32).map(IoSyscall::name), Some(*name));
        }
        assert_eq!(syscall_of(io_syscall::SENDFILE), Some(IoSyscall::Sendfile));
        assert_eq!(syscall_of(io_syscall::NAMES.len() as u32), None);
    }
}

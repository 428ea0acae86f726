//! Converting: turn a run's raw profiles into symbolized profiles, one generic pass.
//!
//! In: a [`crate::collect::session::RunOutcome`], its collectors' raw profiles. Out: one
//! [`profiler_model::Profile`] per profile kind, raw profiles of the same kind merged
//! (the futex and goroutine waits make one blocking profile). Every address of every raw
//! stack is symbolized at once ([`stacks`]), one batch per file, before any profile is
//! built; building only reads the results.

pub mod facts;
pub mod go_stack_start;
pub mod idle_threads;
pub mod io_sites;
pub mod offcpu_stacks;
pub mod stacks;

use profiler_model::{
    Account, Cause, Comment, Label, LabelKey, Profile, ProfileBuilder, ProfileKind, Waker,
};

use crate::collect::raw_profile::{RawProfile, StackStart};
use crate::collect::session::RunOutcome;
use crate::config::Config;
use crate::symbolize::Symbolizer;
use crate::symbolize::debuginfod::Debuginfod;

/// Symbolizes the stacks of every raw profile of `run` at once, then builds one profile
/// per kind: its comments the run's facts first, then each raw profile's accounting, then
/// the unwinding line. Also returns the summary's notes on where names came from
/// (separate debug info, debuginfod).
pub fn profiles(run: &RunOutcome, config: &Config) -> (Vec<Profile>, Vec<String>) {
    let symbolizer = Symbolizer::with_sources(
        &config.debuginfo_dirs,
        Debuginfod::from_env(),
        run.bpf_symbols.clone(),
    );
    let mut resolver =
        stacks::StackResolver::with_symbolizer(&run.unwinding.stacks, &run.processes, symbolizer);
    resolver.prepare(run.profiles.iter().flat_map(|raw| {
        raw.samples.iter().flat_map(|sample| {
            std::iter::once(sample.stack).chain(sample.waker.as_ref().map(|w| w.stack))
        })
    }));
    let facts = facts::describe(run, config);
    let unwinding = facts::unwinding(run);
    let ring_full = facts::ring_full(
        run.ring_bytes,
        run.ring_lost,
        &run.unwinding.stats,
        run.duration,
    );
    let ring_full_in = ring_full_kind(&run.profiles);
    let mut profiles = Vec::new();
    for kind in ProfileKind::ALL {
        let raws: Vec<&RawProfile> = run.profiles.iter().filter(|r| r.kind == kind).collect();
        if raws.is_empty() {
            continue;
        }
        let mut builder = ProfileBuilder::new(kind, run.start, run.duration);
        builder.comment(Comment::run(facts.clone()));
        for raw in &raws {
            for line in &raw.accounting {
                builder.comment(line.clone());
            }
            if let Some((period_type, period)) = &raw.period {
                builder.period(period_type.clone(), *period);
            }
        }
        if kind == ProfileKind::Cpu {
            for note in &run.jit_map_notes {
                builder.comment(Comment::Account(Account::Note(note.clone())));
            }
        }
        if let Some(ring_full) = ring_full.as_ref().filter(|_| ring_full_in == Some(kind)) {
            builder.comment(Comment::Account(ring_full.clone()));
        }
        builder.comment(Comment::Unwinding(unwinding.clone()));
        for sample in raws.iter().flat_map(|raw| &raw.samples) {
            let stack = resolver.intern(&mut builder, sample.stack, sample.start);
            let mut labels = sample.labels.clone();
            run.process_names.relabel(&mut labels);
            let waker = sample.waker.as_ref().map(|waker| {
                // Named once the profile is built and its stacks can be read.
                labels.push(Label::str(LabelKey::Waker, waker.comm.as_str()));
                Waker {
                    stack: resolver.intern(&mut builder, waker.stack, StackStart::Leaf),
                    comm: waker.comm.clone(),
                }
            });
            let program = sample.program.clone();
            builder.add_sample_from(stack, &sample.values, labels, program, waker);
        }
        let mut profile = builder.build();
        match kind {
            ProfileKind::Block => idle_threads::mark_idle_threads(&mut profile),
            ProfileKind::Io => io_sites::label_call_sites(&mut profile),
            ProfileKind::OffCpu => offcpu_stacks::finish(&mut profile),
            _ => {}
        }
        profiles.push(profile);
    }
    (profiles, resolver.notes())
}

/// The profile that says once what the run lost to a full sample ring and what to rerun
/// with, right below its own loss lines: the first whose collectors lost samples there,
/// else the first (the losses were of a kind no profile counts).
fn ring_full_kind(raws: &[RawProfile]) -> Option<ProfileKind> {
    let lost_in_ring = |raw: &&RawProfile| {
        raw.accounting.iter().any(|line| match line {
            // Announcements go through the process-event ring, which has a size of its own.
            Comment::Account(Account::ProcessesLost { .. }) => false,
            Comment::Account(account) => account.losses().iter().any(|loss| {
                loss.count > 0 && matches!(loss.cause, Cause::RingBufferFull | Cause::EndsLost)
            }),
            _ => false,
        })
    };
    let first_of = |raw: &RawProfile| ProfileKind::ALL.iter().position(|&k| k == raw.kind);
    raws.iter()
        .filter(lost_in_ring)
        .min_by_key(|raw| first_of(raw))
        .or_else(|| raws.iter().min_by_key(|raw| first_of(raw)))
        .map(|raw| raw.kind)
}

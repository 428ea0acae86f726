//! Builds the I/O profile: every traced read/write-family syscall, by call stack.

use std::collections::HashMap;

use profiler_common::{IoKey, counter, io_syscall};

use crate::config::{Config, Target};
use crate::cpu_profile::comm;
use crate::profile::{Label, Profile, ProfileBuilder, ValueType};
use crate::session::RunOutcome;
use crate::stacks::StackResolver;

/// Index of `calls` in the I/O profile's sample types.
pub const CALLS: usize = 0;
/// Index of `bytes`.
pub const BYTES: usize = 1;
/// Index of `time`.
pub const TIME: usize = 2;
/// Index of `errors`.
pub const ERRORS: usize = 3;

/// `-ENOMEM` as a stack id: shown as a lost stack.
const ENOMEM: i32 = -12;

/// Builds the symbolized I/O profile: sample types `calls/count` (the default),
/// `bytes/bytes`, `time/nanoseconds` and `errors/count`; labels `syscall`, `pid`, `comm`, and
/// `descriptor` (file, socket, pipe, tty, ...) where it was seen.
pub fn build(run: &RunOutcome, config: &Config, resolver: &mut StackResolver<'_>) -> Profile {
    let mut builder = ProfileBuilder::new(
        "io",
        vec![
            ValueType::new("calls", "count"),
            ValueType::new("bytes", "bytes"),
            ValueType::new("time", "nanoseconds"),
            ValueType::new("errors", "count"),
        ],
        run.start,
        run.duration,
    );
    builder.default_sample_type(CALLS);
    for comment in accounting(run) {
        builder.comment(comment);
    }
    let mut stacks_of: HashMap<IoKey, Vec<(i32, u64)>> = HashMap::new();
    for (key, samples) in &run.io_stack_samples {
        stacks_of
            .entry(key.site)
            .or_default()
            .push((key.user_stack_id, *samples));
    }
    for (key, value) in &run.io_calls {
        // In command mode the profiler is a target for the instant it forks the command.
        if !matches!(config.target, Target::Host) && key.pid == std::process::id() {
            continue;
        }
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
        // Every stack id is an error when all of the site's stack samples were lost.
        let mut sampled = stacks_of.remove(key).unwrap_or_default();
        if sampled.is_empty() {
            sampled.push((ENOMEM, 1));
        }
        let weights: Vec<u64> = sampled.iter().map(|&(_, n)| n).collect();
        let totals = [value.calls, value.bytes, value.nanos, value.errors];
        let shares = totals.map(|total| apportion(total, &weights));
        for (i, &(stack_id, _)) in sampled.iter().enumerate() {
            let stack = resolver.intern(&mut builder, key.pid, stack_id, -1);
            let values = shares.each_ref().map(|share| share[i] as i64);
            builder.add_sample(stack, &values, labels.clone());
        }
    }
    builder.build()
}

fn accounting(run: &RunOutcome) -> Vec<String> {
    let c = &run.counters;
    vec![
        format!(
            "window: {:.2}s; {}; every call of read, write, pread64, pwrite64, readv, writev, \
             preadv(2), pwritev(2), recvfrom, sendto, recvmsg, sendmsg, recvmmsg and sendmmsg \
             is counted (for the *mmsg calls, bytes are messages)",
            run.duration.as_secs_f64(),
            run.stop
        ),
        format!(
            "calls: {} traced; lost: {} (I/O map full), {} (entry overwritten by a thread \
             sharing its slot); {} stacks lost (stack-map collisions or full map)",
            c.get(counter::IO_CALLS),
            c.get(counter::LOST_IO_FULL),
            c.get(counter::LOST_IO_SLOT),
            c.get(counter::LOST_IO_STACK)
        ),
    ]
}

/// Splits `total` in proportion to `weights`, exactly: the parts add up to `total`, and the
/// remainder goes to the largest fractional parts.
fn apportion(total: u64, weights: &[u64]) -> Vec<u64> {
    let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    if sum == 0 {
        let mut parts = vec![0; weights.len()];
        if let Some(first) = parts.first_mut() {
            *first = total;
        }
        return parts;
    }
    let exact: Vec<(u64, u128)> = weights
        .iter()
        .map(|&w| {
            let scaled = u128::from(total) * u128::from(w);
            ((scaled / sum) as u64, scaled % sum)
        })
        .collect();
    let mut parts: Vec<u64> = exact.iter().map(|&(q, _)| q).collect();
    let mut left = total - parts.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by(|&a, &b| exact[b].1.cmp(&exact[a].1));
    for i in order {
        if left == 0 {
            break;
        }
        parts[i] += 1;
        left -= 1;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apportion_is_exact_and_proportional() {
        assert_eq!(apportion(10, &[1]), vec![10]);
        assert_eq!(apportion(10, &[1, 1]), vec![5, 5]);
        assert_eq!(apportion(10, &[1, 2]), vec![3, 7]);
        assert_eq!(apportion(7, &[0, 0]), vec![7, 0]);
        let parts = apportion(1_000_003, &[3, 5, 7]);
        assert_eq!(parts.iter().sum::<u64>(), 1_000_003);
        assert_eq!(parts, vec![200_001, 333_334, 466_668]);
    }
}

//! Reading figures out of what the fixtures and the profiler print.
//!
//! The fixtures print `key=value` tokens. The profiler's summary is meant for people, so
//! each parser looks for one line by its leading word and pulls numbers out by the words
//! around them; a format change makes the parser return `None`, and the row then fails
//! loudly rather than reporting a wrong figure.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

/// The value of a `key=value` token anywhere in `text`.
pub fn field(text: &str, key: &str) -> Option<f64> {
    text.split_whitespace()
        .find_map(|token| token.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// Like [`field`], failing with the text quoted when the key is missing.
pub fn need_field(text: &str, key: &str, who: &str) -> Result<f64> {
    field(text, key)
        .with_context(|| format!("{who} printed no `{key}=` value; it printed:\n{text}"))
}

/// The first line (trimmed) starting with `prefix`.
fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines().map(str::trim).find(|l| l.starts_with(prefix))
}

/// The number right before `word` (the first occurrence after `from`), e.g. the `198`
/// of `198 ticks`.
fn number_before(text: &str, word: &str) -> Option<f64> {
    let at = text.find(word)?;
    text[..at]
        .split_whitespace()
        .next_back()?
        .trim_matches(|c: char| c == '(' || c == ',')
        .parse()
        .ok()
}

/// The `received:` line of the CPU profile summary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Received {
    /// Ticks on busy CPUs the programs received.
    pub ticks: f64,
    /// Ticks expected from /proc/stat's busy time.
    pub expected: f64,
    /// Busy CPU-seconds of the whole host over the window.
    pub busy_cpu_seconds: f64,
}

/// `received: 198 ticks on busy CPUs of 202 expected (99 Hz x 2.04 busy CPU-seconds ...`
pub fn received(stdout: &str) -> Option<Received> {
    let l = line(stdout, "received:")?;
    Some(Received {
        ticks: number_before(l, " ticks on busy CPUs")?,
        expected: number_before(l, " expected")?,
        busy_cpu_seconds: number_before(l, " busy CPU-seconds")?,
    })
}

/// `samples: N recorded; ...`
pub fn samples_recorded(stdout: &str) -> Option<u64> {
    number_before(line(stdout, "samples:")?, " recorded").map(|n| n as u64)
}

/// The profile window in seconds: `window: 3.00s of ...`, also when it follows other
/// facts on the line (`run: host vm, ...; window: 10.00s from ...`).
pub fn window_seconds(stdout: &str) -> Option<f64> {
    stdout.lines().find_map(|l| {
        let (_, rest) = l.split_once("window: ")?;
        rest.split_whitespace()
            .next()?
            .strip_suffix('s')?
            .parse()
            .ok()
    })
}

/// The `profiler cost:` line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    /// Kernel program run time, when `kernel.bpf_stats_enabled` was on.
    pub run_ms: Option<f64>,
    pub runs: Option<u64>,
    pub map_mib: f64,
}

/// `profiler cost: kernel programs ran 357.4 ms in 3844209 runs; BPF maps hold 20.5 MiB`
/// or `profiler cost: BPF maps hold 20.5 MiB; kernel program run time unknown (...)`.
pub fn cost(stdout: &str) -> Option<Cost> {
    let l = line(stdout, "profiler cost:")?;
    let run_ms = l
        .contains("programs ran")
        .then(|| number_before(l, " ms in"));
    let runs = l
        .contains("programs ran")
        .then(|| number_before(l, " runs"));
    Some(Cost {
        run_ms: run_ms.flatten(),
        runs: runs.flatten().map(|n| n as u64),
        map_mib: number_before(l, " MiB")?,
    })
}

/// `finished: all files written 650 ms after the window closed`
pub fn finished_ms(stdout: &str) -> Option<f64> {
    number_before(line(stdout, "finished:")?, " ms after")
}

/// How fast the profiler unwound its samples: the `unwinding:` line's `(N samples/s on one
/// core)`.
pub fn unwinding_rate(stdout: &str) -> Option<f64> {
    number_before(line(stdout, "unwinding:")?, " samples/s on one core")
}

/// What the summary says about the ring buffer that carries the stack copies of
/// `--call-graph dwarf`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RingBuffer {
    /// Throughput as printed (MB/s), when printed.
    pub mb_per_s: Option<f64>,
    /// Samples dropped because the ring buffer was full, when printed.
    pub lost: Option<u64>,
}

/// Parsed loosely from either wording: a `ring buffer: N records, M bytes (X MB/s), K
/// lost` line, or the `unwinding: ... (B bytes, X MB/s, through a R MiB ring buffer)`
/// and `lost: N samples (ring buffer full); ...` lines. `None` when no line mentions
/// the ring buffer's throughput or losses (a build that copies no stacks).
pub fn ring_buffer(stdout: &str) -> Option<RingBuffer> {
    let lines = || stdout.lines().map(str::trim);
    let mb_per_s = lines()
        .filter(|l| l.to_lowercase().contains("ring buffer"))
        .find_map(|l| number_before(l, " MB/s"));
    let lost = lines()
        .filter(|l| l.to_lowercase().contains("ring buffer:"))
        .find_map(|l| number_before(l, " lost"))
        .or_else(|| {
            lines()
                .filter(|l| l.starts_with("lost:") && l.contains("ring buffer full"))
                .find_map(|l| number_before(l, " samples"))
        })
        .map(|n| n as u64);
    (mb_per_s.is_some() || lost.is_some()).then_some(RingBuffer { mb_per_s, lost })
}

/// Samples of `perf script -F comm,ip,sym` output whose comm satisfies `comm`, and how
/// many of them have a frame for which `frame` holds. perf prints one block per sample: a
/// header line (the comm first), then one indented `IP SYMBOL` line per frame.
pub fn perf_script_share(
    text: &str,
    comm: impl Fn(&str) -> bool,
    frame: impl Fn(&str) -> bool,
) -> (u64, u64) {
    let (mut total, mut hits) = (0, 0);
    for block in text.split("\n\n") {
        let mut lines = block.lines().filter(|l| !l.trim().is_empty());
        let Some(header) = lines.next() else { continue };
        if !header.split_whitespace().next().is_some_and(&comm) {
            continue;
        }
        total += 1;
        let hit = lines.any(|l| {
            let sym = l
                .trim()
                .split_once(char::is_whitespace)
                .map_or("", |(_, s)| s.trim());
            frame(sym.strip_suffix(" (inlined)").unwrap_or(sym))
        });
        if hit {
            hits += 1;
        }
    }
    (total, hits)
}

/// The total count of a bpftrace `@[ustack] = count()` map as printed at exit, and the
/// count of the stacks having a frame whose symbol (without `+OFFSET`) satisfies `frame`.
/// Each entry is `@[` newline, one frame per line (`sym+off` or an address), `]: N`.
pub fn bpftrace_stacks_share(text: &str, frame: impl Fn(&str) -> bool) -> (u64, u64) {
    let (mut total, mut hits) = (0, 0);
    let mut in_entry = false;
    let mut hit = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with("@[") {
            in_entry = true;
            hit = false;
            continue;
        }
        if !in_entry {
            continue;
        }
        if let Some(count) = line.strip_prefix("]:") {
            let n: u64 = count.trim().parse().unwrap_or(0);
            total += n;
            if hit {
                hits += n;
            }
            in_entry = false;
            continue;
        }
        let sym = line.rsplit_once('+').map_or(line, |(s, _)| s);
        // bpftrace appends the module in some versions: `main+12 (/usr/bin/python3.11)`.
        let sym = sym.split(" (").next().unwrap_or(sym);
        if frame(sym) {
            hit = true;
        }
    }
    (total, hits)
}

/// A folded-stacks file: `comm;frame;frame COUNT` per line.
pub struct Folded {
    pub lines: Vec<(String, u64)>,
}

impl Folded {
    pub fn read(path: &Path) -> Result<Folded> {
        let text =
            fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Folded::parse(&text))
    }

    pub fn parse(text: &str) -> Folded {
        let lines = text
            .lines()
            .filter_map(|l| {
                let (stack, count) = l.trim_end().rsplit_once(' ')?;
                Some((stack.to_string(), count.parse().ok()?))
            })
            .collect();
        Folded { lines }
    }

    /// Sum of the counts of lines whose first element (the thread's comm) satisfies `comm`.
    pub fn total(&self, comm: impl Fn(&str) -> bool) -> u64 {
        self.lines
            .iter()
            .filter(|(stack, _)| comm(first(stack)))
            .map(|(_, n)| n)
            .sum()
    }

    /// Sum of the counts of lines that have a frame named exactly `frame`.
    pub fn with_frame(&self, frame: &str) -> u64 {
        self.lines
            .iter()
            .filter(|(stack, _)| stack.split(';').skip(1).any(|f| f == frame))
            .map(|(_, n)| n)
            .sum()
    }

    /// Sum of the counts of lines whose comm satisfies `comm` and that have a frame for
    /// which `frame` holds.
    pub fn with_frame_where(
        &self,
        comm: impl Fn(&str) -> bool,
        frame: impl Fn(&str) -> bool,
    ) -> u64 {
        self.lines
            .iter()
            .filter(|(stack, _)| {
                let mut parts = stack.split(';');
                parts.next().is_some_and(&comm) && parts.any(&frame)
            })
            .map(|(_, n)| n)
            .sum()
    }

    /// Lines (distinct comm + stack) whose comm satisfies `comm`.
    pub fn keys(&self, comm: impl Fn(&str) -> bool) -> usize {
        self.lines.iter().filter(|(s, _)| comm(first(s))).count()
    }

    /// Distinct call stacks (the frames without the comm) of threads whose comm
    /// satisfies `comm`: threads of one program running the same code share stacks.
    pub fn distinct_stacks(&self, comm: impl Fn(&str) -> bool) -> usize {
        self.lines
            .iter()
            .filter(|(s, _)| comm(first(s)))
            .map(|(s, _)| s.split_once(';').map_or("", |(_, frames)| frames))
            .collect::<HashSet<_>>()
            .len()
    }
}

fn first(stack: &str) -> &str {
    stack.split(';').next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUMMARY: &str = "\
cpu profile: samples (count)
  window: 3.00s of the whole host at 99 Hz on 2 CPUs; the duration elapsed
  received: 198 ticks on busy CPUs of 202 expected (99 Hz x 2.04 busy CPU-seconds from /proc/stat), 98.0%; at most 594 (99 Hz x 3.00s x 2 CPUs) if every CPU had been busy; idle CPUs take no ticks
  samples: 190 recorded; 8 ticks in other processes not recorded
  lost: 1 samples (aggregation map full), 22 user and 3 kernel stacks (stack-map collisions or full map, kept as [... stack lost] frames)

profiler cost: kernel programs ran 357.4 ms in 3844209 runs; BPF maps hold 20.5 MiB
finished: all files written 650 ms after the window closed
";

    #[test]
    fn profiler_summary_lines() {
        assert_eq!(
            received(SUMMARY),
            Some(Received {
                ticks: 198.0,
                expected: 202.0,
                busy_cpu_seconds: 2.04
            })
        );
        assert_eq!(samples_recorded(SUMMARY), Some(190));
        assert_eq!(window_seconds(SUMMARY), Some(3.0));
        assert_eq!(
            cost(SUMMARY),
            Some(Cost {
                run_ms: Some(357.4),
                runs: Some(3844209),
                map_mib: 20.5
            })
        );
        assert_eq!(finished_ms(SUMMARY), Some(650.0));
        let newer = "  run: host vm, kernel 6.18, 2 CPUs; target: the whole host; window: 10.00s \
                     from 2026-11-27T22:58:53Z; the duration elapsed";
        assert_eq!(window_seconds(newer), Some(10.0));
        assert_eq!(received("nothing"), None);
    }

    #[test]
    fn cost_without_bpf_stats() {
        let line = "profiler cost: BPF maps hold 1.5 MiB; kernel program run time unknown \
                    (sysctl kernel.bpf_stats_enabled=1 measures it)";
        assert_eq!(
            cost(line),
            Some(Cost {
                run_ms: None,
                runs: None,
                map_mib: 1.5
            })
        );
    }

    #[test]
    fn fixture_fields() {
        let out = "ns_per_call=271.48 calls=1000000 elapsed_ns=271475504\n";
        assert_eq!(field(out, "ns_per_call"), Some(271.48));
        assert_eq!(field(out, "calls"), Some(1e6));
        assert_eq!(field(out, "elapsed"), None);
        assert!(need_field(out, "missing", "bench_pread").is_err());
    }

    #[test]
    fn ring_buffer_lines() {
        let out = "  ring buffer: 1200 records, 19660800 bytes (4.9 MB/s), 3 lost\n";
        assert_eq!(
            ring_buffer(out),
            Some(RingBuffer {
                mb_per_s: Some(4.9),
                lost: Some(3)
            })
        );
        let lead = "  lost: 2 samples (ring buffer full); 0 user stacks unreadable, 0 kernel \
                    stacks not taken\n  unwinding: call graph dwarf, 16384 bytes of stack per \
                    sample; 990 stack samples (16220160 bytes, 5.41 MB/s, through a 8 MiB ring \
                    buffer), 12 distinct stacks\n";
        assert_eq!(
            ring_buffer(lead),
            Some(RingBuffer {
                mb_per_s: Some(5.41),
                lost: Some(2)
            })
        );
        assert_eq!(
            ring_buffer("also lost: 0 announcements (ring buffer full)"),
            None
        );
        assert_eq!(ring_buffer(SUMMARY), None);
    }

    #[test]
    fn perf_script_and_bpftrace_shares() {
        let perf = "python3 \n\t  1 foo\n\t  2 Py_BytesMain\n\npython3 \n\t  3 bar\n\n\
                    other \n\t 4 main\n";
        let main = |f: &str| f == "main" || f == "Py_BytesMain";
        assert_eq!(perf_script_share(perf, |c| c == "python3", main), (2, 1));
        let bt = "Attaching 1 probe...\n\n@[\n    leaf_a+12\n    main+100\n]: 7\n\
                  @[\n    0x7f00\n]: 3\n";
        assert_eq!(bpftrace_stacks_share(bt, main), (10, 7));
    }

    #[test]
    fn folded_counts() {
        let f = Folded::parse(
            "bstk-0;main;step_one;leaf_work 5\n\
             bstk-1;main;step_one;leaf_work 2\n\
             bstk-1;main;step_zero;leaf_work 1\n\
             kworker;ret_from_fork 7\n",
        );
        let ours = |c: &str| c.starts_with("bstk-");
        assert_eq!(f.total(ours), 8);
        assert_eq!(f.keys(ours), 3);
        assert_eq!(f.distinct_stacks(ours), 2);
        assert_eq!(f.with_frame("step_one"), 7);
        assert_eq!(f.with_frame("bstk-0"), 0);
        assert_eq!(f.with_frame_where(|c| c == "bstk-1", |f| f == "main"), 3);
    }
}

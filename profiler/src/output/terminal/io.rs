//! The I/O part of the terminal summary: the busiest call sites, and the small-I/O hot paths
//! with what to do about them.

pub use crate::analysis::units::human_bytes;
use std::fmt::Write;

use super::paths::{self, PATH_WIDTH};
use super::summary::{group, human_time, shorten};
use super::{brief, line};
use crate::analysis::finding::Fact;
use crate::analysis::io::{IoSite, SmallIoFinding};
use crate::analysis::words;

/// Renders the `top` call sites by calls and every small-I/O finding given.
pub fn render(sites: &[IoSite], findings: &[SmallIoFinding], seconds: f64, top: usize) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail, so the fmt::Results below are ignored.
    if sites.is_empty() {
        let _ = writeln!(
            out,
            "No I/O syscalls were made by the target during the run."
        );
        return out;
    }
    let _ = writeln!(out, "Top {top} I/O call sites by calls:");
    let _ = writeln!(
        out,
        "  {:>12}  {:>10}  {:>11}  {:>10}  {:>9}  {:>10}  {:>10}  {:<15}  call site",
        "calls", "requested", "transferred", "asked/call", "got/call", "time", "calls/s", "syscall"
    );
    for site in sites.iter().take(top) {
        let _ = writeln!(
            out,
            "  {:>12}  {:>10}  {:>11}  {:>10}  {:>9}  {:>10}  {:>10}  {:<15}  {}",
            group(site.calls as i64),
            site.requested
                .map_or("-".to_owned(), |r| human_bytes(r as f64)),
            human_bytes(site.bytes as f64),
            site.avg_requested().map_or("-".to_owned(), human_bytes),
            human_bytes(site.avg_bytes()),
            human_time(site.nanos as i64),
            group((site.calls as f64 / seconds.max(1e-3)).round() as i64),
            site.syscall_name(),
            shorten(&site_name(site)),
        );
    }
    let _ = writeln!(out);
    if findings.is_empty() {
        let _ = writeln!(out, "Small I/O hot paths: none.");
        return out;
    }
    let _ = writeln!(
        out,
        "Small I/O hot paths (small requests: buffer them; small arrivals: the peer sends \
         little; empty polls: wait instead of retrying; round trips: fewer round trips, \
         not buffers):"
    );
    // The paths are fitted together, so that each shows where it parts from the others.
    let paths = paths::fit(
        &findings
            .iter()
            .map(|f| &f.site.path[..])
            .collect::<Vec<_>>(),
        PATH_WIDTH,
    );
    for (finding, path) in findings.iter().zip(paths) {
        let finding = words::small_io(finding);
        let _ = writeln!(out, "  * {}", brief(&finding.title));
        line(&mut out, "    ", finding.details_of(Fact::Case));
        let _ = writeln!(out, "    path: {path}");
        let _ = writeln!(out, "    fix:  {}", finding.hint);
        line(&mut out, "    ", finding.details_of(Fact::Saves));
    }
    out
}

fn site_name(site: &IoSite) -> String {
    format!("{} ({})", site.caller, site.comm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::io::SmallIoKind;
    use crate::analysis::language::Language;

    fn site(calls: u64, bytes: u64) -> IoSite {
        IoSite {
            syscall: Some(profiler_model::IoSyscall::Pread64),
            comm: "app".to_owned(),
            caller: "read_bytewise".to_owned(),
            path: vec![
                "main".into(),
                "read_bytewise".into(),
                "__libc_pread64".into(),
            ],
            descriptors: vec!["file".to_owned()],
            calls,
            bytes,
            nanos: 1_500_000,
            errors: 0,
            requested: Some(bytes),
            short: 0,
            eagain: 0,
            turns: None,
            language: Language::C,
        }
    }

    #[test]
    fn renders_sites_and_findings() {
        let sites = vec![site(20_000, 20_000)];
        let finding = SmallIoFinding {
            site: sites[0].clone(),
            calls_per_sec: 10_000.0,
            kind: SmallIoKind::SmallRequests {
                calls_saved: 19_999,
            },
            hint: "read through stdio".to_owned(),
        };
        let text = render(&sites, std::slice::from_ref(&finding), 2.0, 10);
        assert!(text.contains("20,000"), "{text}");
        assert!(
            text.contains(
                "pread64 in read_bytewise: 20,000 calls (10,000/s) of 1 B on average, on a file"
            ),
            "{text}"
        );
        assert!(
            text.contains("path: main > read_bytewise > __libc_pread64"),
            "{text}"
        );
        assert!(text.contains("fix:  read through stdio"), "{text}");
        assert!(text.contains("saves: 19,999 of 20,000 calls"), "{text}");
        assert!(
            text.contains("case: small requests: asks for 1 B per call"),
            "{text}"
        );
        let arrivals = SmallIoFinding {
            kind: SmallIoKind::SmallArrivals,
            ..finding
        };
        let text = render(&sites, &[arrivals], 2.0, 10);
        assert!(!text.contains("saves:"), "{text}");
    }

    #[test]
    fn says_when_there_is_nothing() {
        assert!(render(&[], &[], 1.0, 10).contains("No I/O syscalls"));
        assert!(render(&[site(3, 3)], &[], 1.0, 10).contains("Small I/O hot paths: none."));
    }

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(1.0), "1 B");
        assert_eq!(human_bytes(4096.0), "4.0 KiB");
        assert_eq!(human_bytes(3.5 * 1024.0 * 1024.0), "3.5 MiB");
    }
}

//! I/O call sites and the small-I/O hot paths among them, with what to do about each.

use std::collections::HashMap;

use crate::build::io::{BYTES, CALLS, ERRORS, TIME};
use crate::config::SmallIo;
use crate::profile::Profile;

use super::language::{self, Language};

/// Bytes a buffered reader or writer would move per syscall, for the saving estimate.
pub const BUFFER_BYTES: u64 = 64 * 1024;

/// One call site: a stack and the syscall it made, with everything summed over threads.
#[derive(Debug, Clone, PartialEq)]
pub struct IoSite {
    /// The syscall, such as `pread64`.
    pub syscall: String,
    /// Process name of the first sample at the site.
    pub comm: String,
    /// The function that called into the C library (or made the syscall itself).
    pub caller: String,
    /// The stack's functions, root first.
    pub path: Vec<String>,
    /// The descriptor kinds seen at the site (file, socket, pipe, ...).
    pub descriptors: Vec<String>,
    /// Calls made.
    pub calls: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// Nanoseconds inside the syscalls.
    pub nanos: u64,
    /// Calls that failed.
    pub errors: u64,
    /// The language the frames are written in.
    pub language: Language,
}

impl IoSite {
    /// Average bytes per call.
    pub fn avg_bytes(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.bytes as f64 / self.calls as f64
        }
    }

    /// Whether the syscall moves data into the program.
    pub fn is_read(&self) -> bool {
        self.syscall.contains("read") || self.syscall.starts_with("recv")
    }
}

/// A call site doing many small calls, and what buffering would save.
#[derive(Debug, Clone, PartialEq)]
pub struct SmallIoFinding {
    /// The site.
    pub site: IoSite,
    /// Calls per second over the run.
    pub calls_per_sec: f64,
    /// Calls that moving the same bytes through a [`BUFFER_BYTES`] buffer would remove.
    pub calls_saved: u64,
    /// What to do, in the site's language.
    pub hint: String,
}

/// The call sites of an I/O profile, most calls first.
pub fn sites(profile: &Profile) -> Vec<IoSite> {
    let mut by_site: HashMap<(usize, &str), IoSite> = HashMap::new();
    for sample in &profile.samples {
        let syscall = sample.label_str("syscall").unwrap_or("unknown");
        let site = by_site.entry((sample.stack, syscall)).or_insert_with(|| {
            let functions = profile.stack_functions(sample.stack);
            IoSite {
                syscall: syscall.to_owned(),
                comm: sample.label_str("comm").unwrap_or("").to_owned(),
                caller: language::user_caller(profile, sample.stack),
                language: language::detect(functions.iter().rev().copied()),
                path: functions.into_iter().map(str::to_owned).collect(),
                descriptors: Vec::new(),
                calls: 0,
                bytes: 0,
                nanos: 0,
                errors: 0,
            }
        });
        let value = |i: usize| sample.values.get(i).copied().unwrap_or(0).max(0) as u64;
        // Saturating: values read from a file can add up past the largest number.
        site.calls = site.calls.saturating_add(value(CALLS));
        site.bytes = site.bytes.saturating_add(value(BYTES));
        site.nanos = site.nanos.saturating_add(value(TIME));
        site.errors = site.errors.saturating_add(value(ERRORS));
        if let Some(kind) = sample.label_str("descriptor")
            && !site.descriptors.iter().any(|d| d == kind)
        {
            site.descriptors.push(kind.to_owned());
        }
    }
    let mut sites: Vec<IoSite> = by_site.into_values().collect();
    // A total order, so the live summary and a later `profiler report` list the same sites.
    sites.sort_by(|a, b| {
        (b.calls, &a.caller, &a.syscall, &a.comm, &a.path)
            .cmp(&(a.calls, &b.caller, &b.syscall, &b.comm, &b.path))
    });
    sites
}

/// The sites that make many small calls, by the thresholds, most calls first.
pub fn small_io(sites: &[IoSite], thresholds: SmallIo, seconds: f64) -> Vec<SmallIoFinding> {
    let seconds = seconds.max(1e-3);
    sites
        .iter()
        .filter(|site| site.calls > 0 && site.avg_bytes() <= thresholds.max_avg_bytes as f64)
        .filter_map(|site| {
            let calls_per_sec = site.calls as f64 / seconds;
            if calls_per_sec < thresholds.min_calls_per_sec {
                return None;
            }
            let needed = site.bytes.div_ceil(BUFFER_BYTES).max(1);
            Some(SmallIoFinding {
                calls_per_sec,
                calls_saved: site.calls.saturating_sub(needed),
                hint: hint(site),
                site: site.clone(),
            })
        })
        .collect()
}

fn hint(site: &IoSite) -> String {
    let uses_stdio = site.path.iter().any(|f| {
        matches!(
            f.as_str(),
            "fread" | "fwrite" | "fgets" | "fputs" | "getc" | "putc"
        ) || f.starts_with("_IO_")
    });
    let socket = site.descriptors.iter().any(|d| d == "socket");
    let vectored = site.syscall.ends_with('v') || site.syscall.contains("v2");
    let read = site.is_read();
    match (site.language, read) {
        _ if uses_stdio => {
            "stdio is buffering with a small buffer here: give the FILE a larger one \
             with setvbuf(f, NULL, _IOFBF, 1 << 16)"
                .to_owned()
        }
        (Language::Go, true) => {
            "wrap the reader in bufio.NewReader (or bufio.NewReaderSize)".to_owned()
        }
        (Language::Go, false) => {
            "wrap the writer in bufio.NewWriter and Flush once at the end".to_owned()
        }
        (Language::Rust, true) => {
            "wrap the reader in std::io::BufReader (BufReader::with_capacity for larger reads)"
                .to_owned()
        }
        (Language::Rust, false) => {
            "wrap the writer in std::io::BufWriter and flush once at the end".to_owned()
        }
        (Language::Cpp, true) => "read in large blocks (istream::read into a buffer) instead of \
             small reads"
            .to_owned(),
        (Language::Cpp, false) => "write '\\n' instead of std::endl and let the stream buffer; \
             enlarge it with rdbuf()->pubsetbuf"
            .to_owned(),
        (Language::C, true) if socket => "read into a large buffer and parse from memory; \
             recvmmsg receives many datagrams per call"
            .to_owned(),
        (Language::C, false) if socket => "gather the pieces and send once with writev/sendmsg \
             (or sendmmsg for datagrams); MSG_MORE or TCP_CORK batch small sends"
            .to_owned(),
        (Language::C, true) => "read through stdio (fdopen + fread/getc) or read() into a \
             64 KiB buffer and parse from memory"
            .to_owned(),
        (Language::C, false) if vectored => "the scattered pieces are already gathered: collect \
             more of them per writev call"
            .to_owned(),
        (Language::C, false) => "write through stdio (fdopen + fwrite with setvbuf), or gather \
             the pieces into one buffer or one writev call"
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(syscall: &str, calls: u64, bytes: u64, language: Language) -> IoSite {
        IoSite {
            syscall: syscall.to_owned(),
            comm: "app".to_owned(),
            caller: "read_bytewise".to_owned(),
            path: vec![
                "main".to_owned(),
                "read_bytewise".to_owned(),
                syscall.to_owned(),
            ],
            descriptors: vec!["file".to_owned()],
            calls,
            bytes,
            nanos: 0,
            errors: 0,
            language,
        }
    }

    #[test]
    fn flags_many_small_calls_only() {
        let sites = vec![
            site("pread64", 100_000, 100_000, Language::C),
            site("read", 100, 6_553_600, Language::C),
            site("write", 500, 500, Language::C),
        ];
        let found = small_io(&sites, SmallIo::default(), 10.0);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].site.syscall, "pread64");
        assert_eq!(found[0].calls_per_sec, 10_000.0);
        // 100,000 bytes fit in two 64 KiB buffers.
        assert_eq!(found[0].calls_saved, 99_998);
        assert!(found[0].hint.contains("fread"), "{}", found[0].hint);
    }

    #[test]
    fn hints_name_the_fix_in_the_language() {
        let hint_for = |s: &str, l| {
            small_io(&[site(s, 10_000, 10, l)], SmallIo::default(), 1.0)[0]
                .hint
                .clone()
        };
        assert!(hint_for("read", Language::Rust).contains("BufReader"));
        assert!(hint_for("write", Language::Rust).contains("BufWriter"));
        assert!(hint_for("read", Language::Go).contains("bufio"));
        assert!(hint_for("write", Language::C).contains("setvbuf"));
        let mut stdio = site("read", 10_000, 10, Language::C);
        stdio.path.insert(1, "fread".to_owned());
        assert!(hint(&stdio).contains("setvbuf"));
    }
}

//! I/O call sites and the small-I/O hot paths among them, with what to do about each.
//!
//! A hot path is one of four cases ([`SmallIoKind`]), told apart by what the calls asked
//! for, what they got, how many found nothing and how many answered the peer; each needs a
//! different fix, and only the first is fixed by buffering.

use std::collections::BTreeMap;

use profiler_model::LabelKey;
use profiler_model::{IoDirection, IoShape, IoSyscall, IoValue};
use profiler_model::{Profile, StackId};

use crate::config::SmallIo;

use super::io_hints;
use super::language::{self, Language};
use crate::analysis::units::{group, human_bytes};

/// Bytes a buffered reader or writer would move per syscall, for the saving estimate.
pub const BUFFER_BYTES: u64 = 64 * 1024;

/// Share of a site's calls failing with `EAGAIN` from which it is an empty poll: three
/// empty looks per call that found something. A server that reads until `EAGAIN` and then
/// waits in epoll (Go's netpoller, PostgreSQL's `secure_read`) makes one per request,
/// about half its calls, and is not polling.
pub const EMPTY_POLL_SHARE: f64 = 0.75;

/// Share of a site's calls turning the data's direction around from which it is a
/// request/response exchange.
pub const ROUND_TRIP_SHARE: f64 = 0.5;

/// One call site: a stack and the syscall it made, with everything summed over threads.
#[derive(Debug, Clone, PartialEq)]
pub struct IoSite {
    /// The syscall, such as `pread64`; `None` for a name this build does not trace (a
    /// profile read back from a file).
    pub syscall: Option<IoSyscall>,
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
    /// What the calls asked for (bytes; messages for `*mmsg`); `None` in a profile written
    /// before requests were recorded.
    pub requested: Option<u64>,
    /// Calls that moved less than they asked for.
    pub short: u64,
    /// Calls that failed with `EAGAIN`: nothing was there yet.
    pub eagain: u64,
    /// Calls that moved data the other way than the process's last call on the same
    /// descriptor (a reply after a request); `None` in a profile written before they were
    /// counted.
    pub turns: Option<u64>,
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

    /// Average bytes asked for per call, where the profile recorded requests.
    pub fn avg_requested(&self) -> Option<f64> {
        let requested = self.requested?;
        Some(if self.calls == 0 {
            0.0
        } else {
            requested as f64 / self.calls as f64
        })
    }

    /// Share of the calls that succeeded which turned the data's direction around, 0 to 1,
    /// where counted. A failed call moves nothing, so it cannot turn: Go's reads of a
    /// connection are half `EAGAIN`s, each read of a request followed by one that finds
    /// the next not yet sent.
    pub fn turn_share(&self) -> Option<f64> {
        let turns = self.turns?;
        let succeeded = self.calls.saturating_sub(self.errors);
        Some(if succeeded == 0 {
            0.0
        } else {
            turns as f64 / succeeded as f64
        })
    }

    /// Share of the calls that failed with `EAGAIN`, 0 to 1.
    pub fn eagain_share(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.eagain as f64 / self.calls as f64
        }
    }

    /// Whether the descriptor is a socket or a pipe, where data arrives as a peer sends it.
    pub fn on_stream(&self) -> bool {
        self.descriptors
            .iter()
            .any(|d| d == "socket" || d == "pipe")
    }

    /// The syscall's name, as the profile's label has it.
    pub fn syscall_name(&self) -> &'static str {
        self.syscall.map_or("unknown", IoSyscall::name)
    }

    /// Whether the syscall moves data into the program.
    pub fn is_read(&self) -> bool {
        self.syscall.map(IoSyscall::direction) == Some(IoDirection::In)
    }

    /// Whether the calls move data between two descriptors in the kernel (`sendfile`,
    /// `splice`, ...), where the program's buffers are not in the way.
    pub fn between_descriptors(&self) -> bool {
        self.syscall.map(IoSyscall::shape) == Some(IoShape::BetweenDescriptors)
    }
}

/// Why a hot call site makes many small calls, which decides what fixes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmallIoKind {
    /// The program asks for little per call: buffering would merge its calls.
    SmallRequests {
        /// Calls that moving the same bytes through a [`BUFFER_BYTES`] buffer would remove.
        calls_saved: u64,
    },
    /// The program asks for plenty but each read of a socket or pipe gets little: the
    /// peer sends small pieces, and no buffer on this side merges them.
    SmallArrivals,
    /// At least [`EMPTY_POLL_SHARE`] of the calls failed with `EAGAIN`: a non-blocking
    /// descriptor retried in a loop.
    EmptyPolls,
    /// At least [`ROUND_TRIP_SHARE`] of the calls on a socket or pipe moved data the other
    /// way than the last call on it: request, reply, request. One side waits for the other
    /// each time; only fewer round trips (pipelining, batching) cut the calls.
    RoundTrips,
}

impl SmallIoKind {
    /// The case's name, as the summary and the report show it.
    pub fn name(self) -> &'static str {
        match self {
            SmallIoKind::SmallRequests { .. } => "small requests",
            SmallIoKind::SmallArrivals => "small arrivals",
            SmallIoKind::EmptyPolls => "empty polls",
            SmallIoKind::RoundTrips => "round trips",
        }
    }

    /// The calls buffering would save, for the one case buffering fixes.
    pub fn calls_saved(self) -> Option<u64> {
        match self {
            SmallIoKind::SmallRequests { calls_saved } => Some(calls_saved),
            SmallIoKind::SmallArrivals | SmallIoKind::EmptyPolls | SmallIoKind::RoundTrips => None,
        }
    }
}

/// A call site making many small calls: which case it is, and what to do.
#[derive(Debug, Clone, PartialEq)]
pub struct SmallIoFinding {
    /// The site.
    pub site: IoSite,
    /// Which of the four cases it is.
    pub kind: SmallIoKind,
    /// Calls per second over the run.
    pub calls_per_sec: f64,
    /// What to do, in the site's language where that matters.
    pub hint: String,
}

impl SmallIoFinding {
    /// One line telling the case by its numbers.
    pub fn case(&self) -> String {
        let site = &self.site;
        let asks = human_bytes(site.avg_requested().unwrap_or(0.0));
        match self.kind {
            SmallIoKind::SmallRequests { .. } if site.requested.is_none() => format!(
                "{} by the bytes moved: this profile was written before requests were \
                 recorded, so small arrivals would look the same",
                self.kind.name()
            ),
            SmallIoKind::SmallRequests { .. } => {
                format!("{}: asks for {asks} per call", self.kind.name())
            }
            SmallIoKind::SmallArrivals => format!(
                "{}: asks for {asks} per call, gets {} ({} of {} calls short)",
                self.kind.name(),
                human_bytes(site.avg_bytes()),
                group(site.short as i64),
                group(site.calls as i64),
            ),
            SmallIoKind::EmptyPolls => format!(
                "{}: {:.0}% of the calls ({} of {}) found nothing (EAGAIN)",
                self.kind.name(),
                site.eagain_share() * 100.0,
                group(site.eagain as i64),
                group(site.calls as i64),
            ),
            SmallIoKind::RoundTrips => format!(
                "{}: {} of {} calls ({} a second) moved data the other way than the last \
                 call on the same connection, {} each on average, {} in the calls",
                self.kind.name(),
                group(site.turns.unwrap_or(0) as i64),
                group(site.calls as i64),
                group((self.calls_per_sec * site.turn_share().unwrap_or(0.0)).round() as i64),
                human_bytes(site.avg_bytes()),
                super::units::human_time(site.nanos as i64),
            ),
        }
    }

    /// The saving line, only where buffering would really save the calls.
    pub fn saving(&self) -> Option<String> {
        let saved = self.kind.calls_saved().filter(|&saved| saved > 0)?;
        let site = &self.site;
        Some(format!(
            "{} of {} calls if the same {} moved through a {} buffer",
            group(saved as i64),
            group(site.calls as i64),
            human_bytes(site.bytes as f64),
            human_bytes(BUFFER_BYTES as f64),
        ))
    }
}

/// The call sites of an I/O profile, most calls first.
pub fn sites(profile: &Profile) -> Vec<IoSite> {
    // By stack id, so sites alike in every compared field (two unnamed stacks) keep one order.
    let mut by_site: BTreeMap<(StackId, Option<IoSyscall>), IoSite> = BTreeMap::new();
    for sample in &profile.samples {
        let syscall = sample
            .label_str(LabelKey::Syscall)
            .and_then(IoSyscall::from_name);
        let site = by_site.entry((sample.stack, syscall)).or_insert_with(|| {
            let functions = profile.stack_functions(sample.stack);
            IoSite {
                syscall,
                comm: sample.label_str(LabelKey::Comm).unwrap_or("").to_owned(),
                caller: language::user_caller(profile, sample.stack),
                language: language::detect(functions.iter().rev().copied()),
                path: functions.into_iter().map(str::to_owned).collect(),
                descriptors: Vec::new(),
                calls: 0,
                bytes: 0,
                nanos: 0,
                errors: 0,
                requested: (profile.sample_types.len() > IoValue::Requested.index()).then_some(0),
                short: 0,
                eagain: 0,
                turns: (profile.sample_types.len() > IoValue::Turns.index()).then_some(0),
            }
        });
        let value = |v: IoValue| sample.count(v.index());
        // Saturating: values read from a file can add up past the largest number.
        site.calls = site.calls.saturating_add(value(IoValue::Calls));
        site.bytes = site.bytes.saturating_add(value(IoValue::Bytes));
        site.nanos = site.nanos.saturating_add(value(IoValue::Time));
        site.errors = site.errors.saturating_add(value(IoValue::Errors));
        if let Some(requested) = &mut site.requested {
            *requested = requested.saturating_add(value(IoValue::Requested));
        }
        site.short = site.short.saturating_add(value(IoValue::Short));
        site.eagain = site.eagain.saturating_add(value(IoValue::Eagain));
        if let Some(turns) = &mut site.turns {
            *turns = turns.saturating_add(value(IoValue::Turns));
        }
        if let Some(kind) = sample.label_str(LabelKey::Descriptor)
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
        .filter_map(|site| {
            let calls_per_sec = site.calls as f64 / seconds;
            if site.calls == 0 || calls_per_sec < thresholds.min_calls_per_sec {
                return None;
            }
            // sendfile, splice and their kin move data between descriptors in the kernel:
            // no buffer of the program lies in the way, and a call per response of a small
            // file is the protocol's shape, not a program writing in pieces. None of the
            // three cases' fixes (buffer, gather into writev, pipeline, epoll) applies as
            // worded, so these calls are left out of small-I/O findings; their bytes and
            // calls are in the I/O profile and its tables.
            if site.between_descriptors() {
                return None;
            }
            let kind = classify(site, thresholds.max_avg_bytes as f64)?;
            let hint = io_hints::for_kind(&kind, site);
            Some(SmallIoFinding {
                calls_per_sec,
                kind,
                hint,
                site: site.clone(),
            })
        })
        .collect()
}

/// Which case a hot site is, if any. Empty polls come first: whatever such a loop asks
/// for, it mostly gets nothing. Then what the site asks for decides between a program
/// that should buffer and a peer that sends little.
fn classify(site: &IoSite, small_bytes: f64) -> Option<SmallIoKind> {
    if site.eagain_share() >= EMPTY_POLL_SHARE {
        return Some(SmallIoKind::EmptyPolls);
    }
    // Whatever a request/response exchange asks for per call, each call is one side's
    // turn: a buffer here merges none of them (redis's replies, one write each, were told
    // to use writev "saving" all but 21 of 235,711 writes).
    // Turns need a descriptor both sides use; one whose kind was not seen (closed before
    // it was read) is taken for one, since files are rarely read and written in turn.
    if (site.on_stream() || site.descriptors.is_empty())
        && site.avg_bytes() <= small_bytes
        && site
            .turn_share()
            .is_some_and(|share| share >= ROUND_TRIP_SHARE)
    {
        return Some(SmallIoKind::RoundTrips);
    }
    // A profile written before requests were recorded is judged by the bytes moved, as
    // the build that wrote it did.
    if site.avg_requested().unwrap_or(site.avg_bytes()) <= small_bytes {
        // Each turn needs its own call: only the calls between turns can merge.
        let needed = site
            .bytes
            .div_ceil(BUFFER_BYTES)
            .max(site.turns.unwrap_or(0))
            .max(1);
        return Some(SmallIoKind::SmallRequests {
            calls_saved: site.calls.saturating_sub(needed),
        });
    }
    // A file read that gets little is at its end, which no peer changes.
    (site.is_read() && site.on_stream() && site.avg_bytes() <= small_bytes)
        .then_some(SmallIoKind::SmallArrivals)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn site(syscall: &str, calls: u64, bytes: u64, language: Language) -> IoSite {
        IoSite {
            syscall: IoSyscall::from_name(syscall),
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
            requested: Some(bytes),
            short: 0,
            eagain: 0,
            turns: Some(0),
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
        assert_eq!(found[0].site.syscall, Some(IoSyscall::Pread64));
        assert_eq!(found[0].calls_per_sec, 10_000.0);
        // 100,000 bytes fit in two 64 KiB buffers.
        assert_eq!(
            found[0].kind,
            SmallIoKind::SmallRequests {
                calls_saved: 99_998
            }
        );
        assert!(found[0].hint.contains("fread"), "{}", found[0].hint);
        assert!(
            found[0]
                .saving()
                .unwrap()
                .starts_with("99,998 of 100,000 calls")
        );
    }

    #[test]
    fn tells_small_arrivals_from_small_requests() {
        // Asks for 8 KiB, gets 40 B: on a socket a chatty peer, on a file its end.
        let mut socket = site("recvfrom", 10_000, 400_000, Language::C);
        (socket.requested, socket.short) = (Some(10_000 * 8192), 10_000);
        socket.descriptors = vec!["socket".to_owned()];
        let found = small_io(std::slice::from_ref(&socket), SmallIo::default(), 1.0);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].kind, SmallIoKind::SmallArrivals);
        assert_eq!(found[0].saving(), None);
        assert!(!found[0].hint.contains("buffer"), "{}", found[0].hint);
        assert!(found[0].hint.contains("TCP_CORK"), "{}", found[0].hint);
        assert!(
            found[0]
                .case()
                .contains("asks for 8.0 KiB per call, gets 40 B")
        );
        let mut file = socket.clone();
        file.descriptors = vec!["file".to_owned()];
        assert!(small_io(&[file], SmallIo::default(), 1.0).is_empty());
        // Without requests (an earlier build's profile) it is judged by the bytes moved.
        socket.requested = None;
        let found = small_io(&[socket], SmallIo::default(), 1.0);
        assert!(matches!(found[0].kind, SmallIoKind::SmallRequests { .. }));
        assert!(found[0].case().contains("before requests were recorded"));
    }

    #[test]
    fn calls_between_descriptors_get_no_read_write_advice() {
        // 10,000 sendfiles/s of 1 KiB to a socket: small by every threshold, yet no buffer
        // or writev of this program would merge them.
        for syscall in ["sendfile", "splice", "tee", "vmsplice", "copy_file_range"] {
            let mut zero_copy = site(syscall, 10_000, 10_000 * 1024, Language::C);
            zero_copy.descriptors = vec!["socket".to_owned()];
            assert!(zero_copy.between_descriptors(), "{syscall}");
            assert!(!zero_copy.is_read(), "{syscall}");
            assert!(
                small_io(&[zero_copy], SmallIo::default(), 1.0).is_empty(),
                "{syscall}"
            );
        }
        // The same numbers on write are a finding.
        let write = site("write", 10_000, 10_000 * 1024, Language::C);
        assert_eq!(small_io(&[write], SmallIo::default(), 1.0).len(), 1);
    }

    #[test]
    fn request_response_sockets_are_round_trips_without_savings() {
        // redis answering each GET with one 6-byte write: every write follows a read of
        // the same connection.
        let mut replies = site("write", 235_711, 235_711 * 6, Language::C);
        replies.descriptors = vec!["socket".to_owned()];
        replies.turns = Some(235_690);
        let found = small_io(std::slice::from_ref(&replies), SmallIo::default(), 10.0);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].kind, SmallIoKind::RoundTrips);
        assert_eq!(found[0].saving(), None);
        for word in ["buffer or writev here", "pipelines", "batches"] {
            assert!(found[0].hint.contains(word), "{word}: {}", found[0].hint);
        }
        assert!(
            found[0].case().contains("235,690 of 235,711 calls"),
            "{}",
            found[0].case()
        );
        // A read asking for 16 KiB and getting a request is one too, not a small arrival.
        let mut requests = site("read", 100_000, 100_000 * 30, Language::C);
        (requests.requested, requests.short) = (Some(100_000 * 16384), 100_000);
        requests.descriptors = vec!["socket".to_owned()];
        requests.turns = Some(99_000);
        let found = small_io(&[requests], SmallIo::default(), 10.0);
        assert_eq!(found[0].kind, SmallIoKind::RoundTrips);
        // The same calls on a file are no exchange with a peer.
        let mut file = replies.clone();
        file.descriptors = vec!["file".to_owned()];
        let found = small_io(&[file], SmallIo::default(), 10.0);
        assert!(matches!(found[0].kind, SmallIoKind::SmallRequests { .. }));
        // Go's reads of a connection: one request, then one EAGAIN before parking.
        let mut go = site("read", 114_140, 61_000 * 22, Language::Go);
        (go.requested, go.errors, go.eagain) = (Some(114_140 * 4096), 53_140, 53_140);
        go.descriptors = vec!["socket".to_owned()];
        go.turns = Some(60_678);
        assert_eq!(go.turn_share(), Some(60_678.0 / 61_000.0));
        let found = small_io(&[go], SmallIo::default(), 10.0);
        assert_eq!(found[0].kind, SmallIoKind::RoundTrips);
        // PostgreSQL's: exactly one EAGAIN per request, then epoll_wait.
        let mut pg = site("recvfrom", 20_000, 10_000 * 60, Language::C);
        (pg.requested, pg.errors, pg.eagain) = (Some(20_000 * 8192), 10_000, 10_000);
        pg.descriptors = vec!["socket".to_owned()];
        pg.turns = Some(10_000);
        let found = small_io(&[pg], SmallIo::default(), 10.0);
        assert_eq!(found[0].kind, SmallIoKind::RoundTrips);
    }

    #[test]
    fn only_the_calls_between_turns_count_as_saved() {
        // Three writes per reply: one turn each, two that writev would fold into it.
        let mut pieces = site("write", 30_000, 30_000 * 10, Language::C);
        pieces.descriptors = vec!["socket".to_owned()];
        pieces.turns = Some(10_000);
        let found = small_io(&[pieces], SmallIo::default(), 10.0);
        assert_eq!(
            found[0].kind,
            SmallIoKind::SmallRequests {
                calls_saved: 20_000
            }
        );
        assert!(found[0].hint.contains("writev"), "{}", found[0].hint);
        assert!(!found[0].hint.contains("TCP_CORK"), "{}", found[0].hint);
        // A profile written before turns were counted keeps the buffer estimate.
        let mut old = site("write", 30_000, 30_000 * 10, Language::C);
        old.turns = None;
        let found = small_io(&[old], SmallIo::default(), 10.0);
        assert_eq!(
            found[0].kind,
            SmallIoKind::SmallRequests {
                calls_saved: 29_995
            }
        );
    }

    #[test]
    fn a_full_buffered_reader_is_not_small() {
        // bufio's 4096-byte fills, and stdio's, are buffered already.
        let mut bufio = site("read", 10_000, 10_000 * 4096, Language::Go);
        bufio.requested = Some(10_000 * 4096);
        assert!(small_io(&[bufio], SmallIo::default(), 1.0).is_empty());
    }

    #[test]
    fn empty_polls_come_first() {
        let mut poll = site("read", 10_000, 0, Language::C);
        (poll.requested, poll.errors, poll.eagain) = (Some(10_000 * 65536), 10_000, 10_000);
        poll.descriptors = vec!["pipe".to_owned()];
        let found = small_io(&[poll], SmallIo::default(), 1.0);
        assert_eq!(found[0].kind, SmallIoKind::EmptyPolls);
        assert_eq!(found[0].saving(), None);
        assert!(found[0].hint.contains("epoll"), "{}", found[0].hint);
        assert!(found[0].case().contains("100% of the calls"));
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
        assert!(io_hints::buffering(&stdio).contains("setvbuf"));
    }
}

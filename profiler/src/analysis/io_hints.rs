//! What to do about each kind of small-I/O hot path ([`SmallIoKind`]): buffering for small
//! requests, in the site's language and API; fewer round trips, larger writes at the
//! other end, or readiness waits for the three cases buffering cannot help.

use profiler_model::{IoShape, IoSyscall};

use super::io::{IoSite, SmallIoKind};
use super::language::Language;

/// The fix of a small-I/O hot path of `kind` at `site`.
pub fn for_kind(kind: &SmallIoKind, site: &IoSite) -> String {
    match kind {
        SmallIoKind::SmallRequests { .. } => buffering(site),
        SmallIoKind::SmallArrivals => arrivals_hint(site),
        SmallIoKind::EmptyPolls => polls_hint(site),
        SmallIoKind::RoundTrips => round_trips_hint(site),
    }
}

fn arrivals_hint(site: &IoSite) -> String {
    if site.descriptors.iter().any(|d| d == "socket") {
        "the peer sends small messages and each read gets one: batch or pipeline the \
         requests so more is in flight per round trip, and coalesce messages where they are \
         sent (one writev/sendmsg per batch, MSG_MORE or TCP_CORK); reading more per call \
         here cannot help"
            .to_owned()
    } else {
        "the writer at the other end of the pipe writes small pieces and each read gets \
         one: have it gather them into larger writes (one writev per batch); reading more \
         per call here cannot help"
            .to_owned()
    }
}

fn round_trips_hint(site: &IoSite) -> String {
    let what = if site.is_read() {
        "each read takes a message that came after this side's last one"
    } else {
        "each write answers (or follows) the peer's last message"
    };
    format!(
        "request/response: {what}, and one side waits for the other every time, so no \
         buffer or writev here merges these calls. Fewer round trips can: the side that sends \
         the requests pipelines them (several in flight per connection) or batches them \
         (multi-key commands, a batch API)"
    )
}

fn polls_hint(site: &IoSite) -> String {
    let what = if site.is_read() { "data" } else { "room" };
    format!(
        "the descriptor is non-blocking and retried in a loop, one syscall per empty look: \
         wait until there is {what} with epoll (or poll), or hand the call to io_uring, \
         instead of retrying"
    )
}

/// The buffering fix of small requests, in the language and the API the site calls.
pub(super) fn buffering(site: &IoSite) -> String {
    let uses_stdio = site.path.iter().any(|f| {
        matches!(
            f.as_str(),
            "fread" | "fwrite" | "fgets" | "fputs" | "getc" | "putc"
        ) || f.starts_with("_IO_")
    });
    let socket = site.descriptors.iter().any(|d| d == "socket");
    let vectored = site.syscall.map(IoSyscall::shape) == Some(IoShape::Vector);
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
        (Language::C, true) if socket => {
            "read into a large buffer and parse from memory".to_owned()
        }
        (Language::C, false) if socket => "several writes go out between the peer's messages: \
             gather the pieces and send them with one writev/sendmsg call"
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

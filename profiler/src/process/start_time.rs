//! A process's start time, field 22 (`starttime`) of `/proc/PID/stat`, read with a bound:
//! with its pid, it names one process, where a pid alone may name another process that got
//! the number after the first exited.

use std::fs::File;
use std::io::{self, Read};

/// The most of a stat file read: about 1 KiB in practice (a 16-byte name and 50 numbers).
const MAX_STAT_BYTES: u64 = 4096;

/// Fields of a stat line after its name: the name (field 2) ends at the line's last `)`,
/// then come the state (field 3) and the others in order.
const FIRST_FIELD_AFTER_NAME: usize = 3;

/// The start time's field number in `proc_pid_stat(5)`.
const START_TIME_FIELD: usize = 22;

/// The process's start time, in clock ticks after boot, from `/proc/PID/stat`; an error
/// when it is gone or the line cannot be read.
pub fn read(pid: u32) -> io::Result<u64> {
    let mut text = Vec::new();
    File::open(format!("/proc/{pid}/stat"))?
        .take(MAX_STAT_BYTES)
        .read_to_end(&mut text)?;
    parse(&text).ok_or_else(|| io::Error::other(format!("no start time in /proc/{pid}/stat")))
}

/// The start time of a stat line, `pid (name) state ppid ...`: counted from the last `)`,
/// since the name may hold spaces and parentheses of its own. `None` when the line is cut
/// short: the field must be followed by another, or a number cut in its middle would pass.
pub fn parse(line: &[u8]) -> Option<u64> {
    let after_name = line.iter().rposition(|&b| b == b')')? + 1;
    let mut fields = line[after_name..]
        .split(u8::is_ascii_whitespace)
        .filter(|field| !field.is_empty())
        .skip(START_TIME_FIELD - FIRST_FIELD_AFTER_NAME);
    let start_time = fields.next()?;
    fields.next()?;
    std::str::from_utf8(start_time).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stat line of a process named `name`, as Linux 6.18 writes it, with start time
    /// 424242 (field 22) and vsize 9999 (field 23) after it.
    fn line(name: &str) -> String {
        format!(
            "77 ({name}) S 1 77 77 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 424242 9999 \
             300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
        )
    }

    #[test]
    fn the_start_time_is_counted_from_the_last_parenthesis() {
        assert_eq!(parse(line("java").as_bytes()), Some(424242));
        assert_eq!(parse(line("a b) S 1 2 3 (c").as_bytes()), Some(424242));
        assert_eq!(parse(line(") ) )").as_bytes()), Some(424242));
        assert_eq!(parse(line("").as_bytes()), Some(424242));
    }

    #[test]
    fn a_line_cut_short_or_garbled_has_no_start_time() {
        let full = line("java");
        let at = full.find("424242").unwrap();
        // Cut before, inside and just after the field: none is taken for a start time.
        for end in [at, at + 3, at + "424242".len(), at + "424242 ".len()] {
            assert_eq!(parse(&full.as_bytes()[..end]), None, "cut at {end}");
        }
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"77 (java S 1 2"), None);
        assert_eq!(
            parse(line("java").replace("424242", "42x").as_bytes()),
            None
        );
    }

    #[test]
    fn a_live_process_has_one_start_time_and_a_pid_of_none_has_none() {
        let me = std::process::id();
        let first = read(me).unwrap();
        assert_eq!(read(me).unwrap(), first);
        assert!(read(u32::MAX).is_err());
    }
}

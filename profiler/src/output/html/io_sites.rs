//! The I/O tab's call-site table: one row per call site (process, syscall, stack), as the
//! terminal's I/O table counts them, rather than the function table's rows merged by
//! function, where every site of `write` is one row.

use std::collections::HashMap;

use profiler_model::StringTable;
use serde::Serialize;

use crate::analysis::io::IoSite;
use crate::output::folded::frame_name;

/// At most this many call sites are listed, the most calls first.
pub const MAX_SITES: usize = 500;

/// One call site: names and frames index [`IoSitesData::strings`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SiteRow {
    /// The process's name.
    pub process: u32,
    /// The process's frame at the root of the flame graph (the name made safe for it).
    pub frame: u32,
    /// The syscall's name.
    pub syscall: &'static str,
    /// The function that called into the C library (or made the syscall itself).
    pub caller: u32,
    /// Where other sites of the same process, syscall and caller exist: the frame above the
    /// caller, nearest first, at which this site's path parts from theirs (0 when none
    /// does): a Rust or C++ program's caller is often its standard library's `read`.
    pub via: u32,
    /// The stack's functions, root first: what tells two sites of one caller apart.
    pub path: Vec<u32>,
    /// The descriptor kinds seen at the site (file, socket, pipe, ...).
    pub descriptors: Vec<u32>,
    /// Calls made.
    pub calls: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// Bytes asked for, where the profile recorded requests.
    pub requested: Option<u64>,
    /// Nanoseconds inside the calls.
    pub nanos: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Calls that moved less than they asked for.
    pub short: u64,
    /// Calls that failed with `EAGAIN`.
    pub eagain: u64,
}

/// The call sites of the I/O profile, laid out for the page.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IoSitesData {
    /// Names and frames, referenced by index (0 is "").
    pub strings: Vec<String>,
    /// The sites, the most calls first.
    pub rows: Vec<SiteRow>,
    /// Sites left out beyond [`MAX_SITES`].
    pub omitted: usize,
}

/// The first [`MAX_SITES`] of `sites` (already ranked by calls) as table rows.
pub(super) fn site_rows(sites: &[IoSite]) -> IoSitesData {
    let mut strings = StringTable::<u32>::new();
    let listed = &sites[..sites.len().min(MAX_SITES)];
    let via = parting_frames(listed);
    let rows = listed
        .iter()
        .zip(via)
        .map(|(site, via)| SiteRow {
            process: strings.intern(&site.comm),
            frame: strings.intern(&frame_name(&site.comm)),
            syscall: site.syscall_name(),
            caller: strings.intern(&site.caller),
            via: via.map_or(0, |f| strings.intern(f)),
            path: site.path.iter().map(|f| strings.intern(f)).collect(),
            descriptors: site.descriptors.iter().map(|d| strings.intern(d)).collect(),
            calls: site.calls,
            bytes: site.bytes,
            requested: site.requested,
            nanos: site.nanos,
            errors: site.errors,
            short: site.short,
            eagain: site.eagain,
        })
        .collect();
    IoSitesData {
        strings: strings.table,
        rows,
        omitted: sites.len().saturating_sub(MAX_SITES),
    }
}

/// Per site, the frame above its caller at which its path parts from the other sites of the
/// same process, syscall and caller: one past the deepest point any of them still shares
/// with it, counted from the caller towards the root. `None` for a site alone in its group
/// or alike by name to every other in it (stacks apart only in their addresses).
fn parting_frames(sites: &[IoSite]) -> Vec<Option<&str>> {
    // The frames above each site's caller, nearest first.
    let above: Vec<Vec<&str>> = sites
        .iter()
        .map(|site| {
            let at = site
                .path
                .iter()
                .rposition(|f| *f == site.caller)
                .unwrap_or(site.path.len());
            site.path[..at].iter().rev().map(String::as_str).collect()
        })
        .collect();
    let mut groups: HashMap<(&str, &str, &str), Vec<usize>> = HashMap::new();
    for (i, site) in sites.iter().enumerate() {
        groups
            .entry((&site.comm, site.syscall_name(), &site.caller))
            .or_default()
            .push(i);
    }
    let mut via = vec![None; sites.len()];
    for members in groups.values().filter(|m| m.len() > 1) {
        for &i in members {
            let shared = |j: usize| {
                above[i]
                    .iter()
                    .zip(&above[j])
                    .take_while(|(a, b)| a == b)
                    .count()
            };
            let depth = members
                .iter()
                // A site whose frames are this one's (stacks apart only in their
                // addresses) cannot be told from it by name: the others can.
                .filter(|&&j| j != i && above[j] != above[i])
                .map(|&j| shared(j))
                .max()
                .unwrap_or(0);
            via[i] = above[i].get(depth).copied();
        }
    }
    via
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::language::Language;

    fn site(caller: &str, calls: u64) -> IoSite {
        IoSite {
            syscall: Some(profiler_model::IoSyscall::Write),
            comm: "app;x".to_owned(),
            caller: caller.to_owned(),
            path: vec!["main".into(), caller.into(), "__libc_write".into()],
            descriptors: vec!["file".into()],
            calls,
            bytes: calls * 20,
            nanos: 1000,
            errors: 1,
            requested: Some(calls * 20),
            short: 2,
            eagain: 0,
            turns: None,
            language: Language::C,
        }
    }

    #[test]
    fn each_site_is_a_row_of_its_own() {
        // Two sites of one leaf function (write) are two rows, told apart by their callers.
        let data = site_rows(&[site("write_records", 5000), site("write_header", 100)]);
        assert_eq!(data.rows.len(), 2);
        assert_eq!(data.omitted, 0);
        let s = |i: u32| data.strings[i as usize].as_str();
        let r = &data.rows[0];
        assert_eq!(
            (s(r.process), s(r.frame), r.syscall, s(r.caller)),
            ("app;x", "app:x", "write", "write_records")
        );
        assert_eq!(
            r.path.iter().map(|&i| s(i)).collect::<Vec<_>>(),
            ["main", "write_records", "__libc_write"]
        );
        assert_eq!(
            (r.calls, r.bytes, r.requested),
            (5000, 100_000, Some(100_000))
        );
        assert_eq!((r.nanos, r.errors, r.short, r.eagain), (1000, 1, 2, 0));
        assert_eq!(s(data.rows[1].caller), "write_header");
        // Shared names are stored once.
        assert_eq!(data.strings.iter().filter(|n| *n == "main").count(), 1);
    }

    #[test]
    fn sites_of_one_caller_are_told_apart_by_where_their_paths_part() {
        let at = |path: &[&str], calls| IoSite {
            caller: "FileDesc::read".into(),
            path: path.iter().map(|f| f.to_string()).collect(),
            ..site("FileDesc::read", calls)
        };
        let data = site_rows(&[
            at(
                &[
                    "main",
                    "load",
                    "parse",
                    "read_exact",
                    "FileDesc::read",
                    "read",
                ],
                40,
            ),
            at(
                &[
                    "main",
                    "load",
                    "scan",
                    "read_exact",
                    "FileDesc::read",
                    "read",
                ],
                30,
            ),
            at(
                &["main", "watch", "read_to_end", "FileDesc::read", "read"],
                20,
            ),
            at(
                &["main", "watch", "read_to_end", "FileDesc::read", "read"],
                10,
            ),
            site("alone", 5),
        ]);
        let via: Vec<&str> = data
            .rows
            .iter()
            .map(|r| data.strings[r.via as usize].as_str())
            .collect();
        // The first two share read_exact and part at parse/scan; the third and fourth part
        // from them at read_to_end (nothing tells these two apart by name).
        assert_eq!(via, ["parse", "scan", "read_to_end", "read_to_end", ""]);
    }

    #[test]
    fn sites_past_the_cap_are_counted() {
        let sites: Vec<IoSite> = (0..MAX_SITES + 3)
            .map(|i| site(&format!("f{i}"), 10))
            .collect();
        let data = site_rows(&sites);
        assert_eq!(data.rows.len(), MAX_SITES);
        assert_eq!(data.omitted, 3);
    }
}

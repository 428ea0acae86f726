//! Unit tests of `preload.rs`, kept apart to keep the module under the line budget.

use super::*;

/// Writes a site record into slot `slot` as a command could.
fn forge(preload: &Preload, slot: usize, pid: u32, allocs: u64, frees: u64) {
    let at = HEADER_BYTES + slot * SITE_BYTES;
    // SAFETY: within the mapping, aligned; the test is the only writer.
    unsafe {
        let put = |offset: usize, value: u64| {
            (*preload.base.add(at + offset).cast::<AtomicU64>()).store(value, Ordering::Release);
        };
        put(site_at::RET, 0x1000 + slot as u64);
        put(site_at::ALLOCS, allocs);
        put(site_at::BYTES, allocs * 16);
        put(site_at::FREES, frees);
        put(site_at::FREED_BYTES, frees * 16);
        let half = |offset: usize| &*preload.base.add(at + offset).cast::<AtomicU32>();
        half(site_at::PID).store(pid, Ordering::Release);
        half(site_at::STATE).store(SITE_READY, Ordering::Release);
    }
}

#[test]
fn only_the_command_s_possible_records_are_believed() {
    let preload = Preload::create().unwrap();
    let command = 4_000_000;
    preload.note_pids([command, std::process::id()]);
    forge(&preload, 0, command, 10, 4);
    forge(&preload, 1, 1, 10, 4);
    forge(&preload, 2, std::process::id(), 10, 4);
    forge(&preload, 3, command, u64::MAX, 4);
    forge(&preload, 4, command, 10, 1 << 40);
    let sites = preload.sites();
    assert_eq!(sites.len(), 1);
    assert_eq!((sites[0].0.pid, sites[0].1.allocs), (command, 10));
    let refused = preload.refused();
    assert_eq!((refused.foreign_pids, refused.impossible), (2, 2));
    // A forged total is shown as nothing, and counted.
    // SAFETY: within the mapping, aligned.
    unsafe {
        (*preload.base.add(at::LOST_SITES).cast::<AtomicU64>()).store(u64::MAX, Ordering::Release)
    };
    assert_eq!(preload.counts().lost_sites, 0);
    assert_eq!(preload.refused().header, 1);
}

#[test]
fn a_killed_run_s_directory_is_swept_and_nothing_else() {
    let parent = tempfile::tempdir().unwrap();
    let dead = 4_194_000
        + (0..1000)
            .find(|i| !Path::new(&format!("/proc/{}", 4_194_000 + i)).exists())
            .unwrap();
    let stale = parent.path().join(format!("{TEMP_PREFIX}{dead}-abcdef"));
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join(LIBRARY_NAME), b"library").unwrap();
    let live = parent
        .path()
        .join(format!("{TEMP_PREFIX}{}-abcdef", std::process::id()));
    std::fs::create_dir(&live).unwrap();
    let other = parent.path().join(format!("{TEMP_PREFIX}{dead}-link"));
    std::os::unix::fs::symlink(&live, &other).unwrap();
    sweep_stale(parent.path());
    assert!(!stale.exists());
    assert!(live.exists() && other.symlink_metadata().is_ok());
}

/// Prints every offset, size and constant the profiler relies on, as the C compiler lays
/// out `heap_preload.h`: one `name value` line each.
const LAYOUT_PROGRAM: &str = r#"
#include <stddef.h>
#include <stdio.h>
#include "heap_preload.h"
#define SHOW(name, value) printf("%s %llu\n", name, (unsigned long long)(value))
#define HEADER(field) SHOW("header." #field, offsetof(struct header, field))
#define SITE(field) SHOW("site." #field, offsetof(struct site, field))
int main(void) {
    SHOW("MAGIC", MAGIC);
    SHOW("MAX_PROCESSES", MAX_PROCESSES);
    SHOW("READY", READY);
    SHOW("sizeof header", sizeof(struct header));
    HEADER(magic); HEADER(site_slots); HEADER(live_slots); HEADER(sample_every);
    HEADER(allocs); HEADER(frees); HEADER(frees_unknown); HEADER(lost_sites);
    HEADER(lost_live); HEADER(stacks); HEADER(processes); HEADER(pids);
    SHOW("sizeof site", sizeof(struct site));
    SITE(state); SITE(pid); SITE(ret); SITE(allocs); SITE(bytes); SITE(frees);
    SITE(freed_bytes); SITE(comm);
    SHOW("sizeof site.comm", sizeof(((struct site *)0)->comm));
    return 0;
}
"#;

#[test]
fn the_rust_layout_is_the_interposer_s() {
    let rust: [(&str, u64); 25] = [
        ("MAGIC", MAGIC),
        ("MAX_PROCESSES", MAX_PROCESSES as u64),
        ("READY", u64::from(SITE_READY)),
        ("sizeof header", HEADER_BYTES as u64),
        ("header.magic", at::MAGIC as u64),
        ("header.site_slots", at::SITE_SLOTS as u64),
        ("header.live_slots", at::LIVE_SLOTS as u64),
        ("header.sample_every", at::SAMPLE_EVERY as u64),
        ("header.allocs", at::ALLOCS as u64),
        ("header.frees", at::FREES as u64),
        ("header.frees_unknown", at::FREES_UNKNOWN as u64),
        ("header.lost_sites", at::LOST_SITES as u64),
        ("header.lost_live", at::LOST_LIVE as u64),
        ("header.stacks", at::STACKS as u64),
        ("header.processes", at::PROCESSES as u64),
        ("header.pids", at::PIDS as u64),
        ("sizeof site", SITE_BYTES as u64),
        ("site.state", site_at::STATE as u64),
        ("site.pid", site_at::PID as u64),
        ("site.ret", site_at::RET as u64),
        ("site.allocs", site_at::ALLOCS as u64),
        ("site.bytes", site_at::BYTES as u64),
        ("site.frees", site_at::FREES as u64),
        ("site.freed_bytes", site_at::FREED_BYTES as u64),
        ("site.comm", site_at::COMM as u64),
    ];
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("layout.c");
    let program = dir.path().join("layout");
    std::fs::write(&source, LAYOUT_PROGRAM).unwrap();
    let headers = Path::new(env!("CARGO_MANIFEST_DIR")).join("preload");
    // The compiler build.rs builds the interposer with, by the same name cc-rs looks for.
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let built = std::process::Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Werror", "-I"])
        .arg(&headers)
        .arg("-o")
        .arg(&program)
        .arg(&source)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cc} to compile heap_preload.h: {e}"));
    assert!(
        built.status.success(),
        "heap_preload.h does not compile:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let ran = std::process::Command::new(&program).output().unwrap();
    assert!(ran.status.success());
    let c: std::collections::BTreeMap<String, u64> = String::from_utf8(ran.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_owned(), value.parse().unwrap())
        })
        .collect();
    for (name, value) in rust {
        assert_eq!(
            c.get(name),
            Some(&value),
            "{name}: heap_preload.h and preload.rs disagree (change both together)"
        );
    }
    assert_eq!(
        c["sizeof site.comm"], COMM_LEN as u64,
        "the site's command name"
    );
    assert_eq!(c.len(), rust.len() + 1, "every printed value is compared");
}

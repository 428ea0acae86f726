//! `--call-graph` (issue 10): `fp` still walks frame pointers and profiles the
//! frame-pointer fixture `cpu_split` as before (its split matching the
//! fixture's own CPU clock, its stacks reaching main); `dwarf,SIZE` is accepted
//! and named in the summary; a bad value is one clear usage error. Helpers:
//! `tests/stacks_common/mod.rs`.

#[path = "../stacks_common/mod.rs"]
mod common;

use common::{
    SPLIT_CPU_SECONDS, SPLIT_HZ, UNWOUND_SHARE, assert_received, assert_share, assert_split,
    in_order, named, profile_budgeted, profile_command,
};
use integration_tests::{
    ERROR_PREFIX, FixtureResult, Folded, fixture, prerequisites, profiler_command, run_command,
    temp_dir,
};

#[test]
fn call_graph_fp_still_profiles_frame_pointer_fixture() {
    if !prerequisites() {
        return;
    }
    // Enough samples for the 3-point tolerance to span 3 sd of the sampling
    // noise of cpu_split's 70/30 split (see SPLIT_HZ).
    const HZ: u64 = SPLIT_HZ;
    let (measured, folded) =
        profile_budgeted("cpu_split", HZ, &["--call-graph", "fp"], SPLIT_CPU_SECONDS);
    let (alpha_ns, beta_ns) = (measured.u64("alpha_ns"), measured.u64("beta_ns"));
    let alpha = folded.samples_containing("burn_alpha");
    let beta = folded.samples_containing("burn_beta");
    // As in cpu.rs's command-mode test: -F is a rate per CPU-second of the
    // command, so alpha+beta get about HZ per second the fixture measured.
    assert_received(
        "burn_alpha+burn_beta with --call-graph fp (the fixture's own thread CPU clock)",
        alpha + beta,
        HZ,
        alpha_ns + beta_ns,
        &folded,
    );
    assert_split(
        "burn_alpha vs burn_beta with --call-graph fp",
        alpha,
        beta,
        alpha_ns,
        beta_ns,
        &folded,
    );
    // The fixture keeps frame pointers, so the frame-pointer walk reaches main.
    let rooted = folded.samples_where(|s| {
        in_order(s, &[&named("main"), &named("burn_alpha")])
            || in_order(s, &[&named("main"), &named("burn_beta")])
    });
    assert_share(
        rooted,
        alpha + beta,
        UNWOUND_SHARE,
        "burn_alpha/burn_beta samples with main above them (--call-graph fp)",
        &folded,
    );
}

#[test]
fn call_graph_dwarf_with_size_is_accepted_and_named_in_summary() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let result = tmp.path().join("result.txt");
    let exe = fixture("cpu_split");
    let run = profile_command(
        199,
        &["--profiles", "cpu", "--call-graph", "dwarf,4096"],
        &[exe.as_os_str(), "2".as_ref(), result.as_os_str()],
        &out,
    );
    FixtureResult::read(&result);
    assert!(
        run.stdout.lines().any(|l| {
            let l = l.to_lowercase();
            l.contains("dwarf") && l.contains("4096")
        }),
        "no summary line names the call graph mode (`call graph: dwarf, 4096 bytes`)\n{}",
        run.transcript()
    );
    let folded = Folded::load(&out);
    assert!(
        folded.samples_containing("burn_alpha") > 0,
        "burn_alpha missing with --call-graph dwarf,4096\n{}",
        folded.summary(15)
    );
}

#[test]
fn bad_call_graph_values_are_clear_errors() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    for value in ["bogus", "dwarf,0", "dwarf,abc"] {
        let out = tmp.path().join(format!("out-{}", value.replace(',', "_")));
        let mut cmd = profiler_command(&["--call-graph", value, "--duration", "1s", "-o"]);
        cmd.arg(&out);
        let run = run_command(cmd);
        // A bad value is a usage error, refused before anything is loaded: exit
        // status 2 and the profiler's one error line, `profiler: error: invalid
        // value 'bogus' for '--call-graph <MODE>': ...`, and nothing else.
        assert_eq!(
            run.status.code(),
            Some(2),
            "--call-graph {value}: want exit status 2 (a usage error)\n{}",
            run.transcript()
        );
        run.assert_no_panic();
        let lines: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with(ERROR_PREFIX),
            "--call-graph {value}: want stderr to be exactly one line starting with \
             {ERROR_PREFIX:?}\n{}",
            run.transcript()
        );
        run.assert_error_mentioning(&["--call-graph"]);
        assert!(
            !out.exists(),
            "--call-graph {value} was rejected but still created the output directory {}",
            out.display()
        );
    }
}

//! The CPU summary's per-process lines: a launched shell runs three copies of a spinner
//! under three names, each spinning until its own process CPU clock reaches a different
//! budget; each process's line must name it by its name and pid, come before the function
//! table, and give it the share of the samples that its measured share of the CPU time
//! predicts, within what sampling that many ticks allows; report.html's CPU tab must list
//! the same processes with the same samples.

use std::path::{Path, PathBuf};

use integration_tests::{FixtureResult, fixture, prerequisites, run_profiler, temp_dir};

/// Samples per CPU-second: not a multiple of the scheduler's tick, so the two cannot beat.
const FREQUENCY: u32 = 499;

/// The spinners: the name each runs under and the CPU seconds it spins for. Their shares
/// (1/6, 1/3, 1/2) lie further apart than sampling can blur them.
const SPINNERS: [(&str, f64); 3] = [
    ("spin_small", 0.4),
    ("spin_medium", 0.8),
    ("spin_large", 1.2),
];

/// Standard deviations of sampling error a share may be off by: a sample lands in a
/// process with the probability of its share of the CPU time, so n samples estimate a
/// share p with a deviation of sqrt(p(1-p)/n); four make a false failure rarer than one
/// run in ten thousand.
const SIGMAS: f64 = 4.0;

/// One spinner as it measured itself.
struct Spinner {
    name: &'static str,
    pid: u32,
    cpu_ns: u64,
}

/// A row of the summary's per-process table: samples, CPU time in nanoseconds, and the
/// row's text.
struct Row {
    samples: u64,
    cpu_ns: f64,
    text: String,
}

/// The lines of the summary's "CPU by process" table after its heading (the column titles
/// first), up to the blank line that ends it.
fn process_table(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("CPU by process"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect()
}

/// Nanoseconds of a time as the summary writes it: `1.23 s`, `45.6 ms`, `7.8 µs`.
fn nanos(value: &str, unit: &str) -> Option<f64> {
    let v: f64 = value.parse().ok()?;
    Some(match unit {
        "s" => v * 1e9,
        "ms" => v * 1e6,
        "µs" => v * 1e3,
        _ => return None,
    })
}

/// The row ending in `NAME (pid PID)`, parsed.
fn row_of(table: &[&str], name: &str, pid: u32) -> Option<Row> {
    let suffix = format!("  {name} (pid {pid})");
    let line = table.iter().find(|l| l.ends_with(&suffix))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    Some(Row {
        samples: words.first()?.replace(',', "").parse().ok()?,
        cpu_ns: nanos(words.get(2)?, words.get(3)?)?,
        text: (*line).to_owned(),
    })
}

/// Copies of the spinner under each name of [`SPINNERS`] in `dir`.
fn spinner_copies(dir: &Path) -> Vec<PathBuf> {
    SPINNERS
        .iter()
        .map(|(name, _)| {
            let exe = dir.join(name);
            std::fs::copy(fixture("cpu_share"), &exe)
                .unwrap_or_else(|e| panic!("cannot copy cpu_share to {}: {e}", exe.display()));
            exe
        })
        .collect()
}

#[test]
fn per_process_lines_name_each_process_with_its_measured_share() {
    if !prerequisites() {
        return;
    }
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let exes = spinner_copies(tmp.path());
    let results: Vec<PathBuf> = SPINNERS
        .iter()
        .map(|(name, _)| tmp.path().join(format!("{name}.txt")))
        .collect();
    // One shell starts all three at once and waits for them: the launched command is the
    // shell, the spinners its children.
    let script: String = SPINNERS
        .iter()
        .zip(&exes)
        .zip(&results)
        .map(|(((_, budget), exe), result)| {
            format!("'{}' {budget} 60 '{}' & ", exe.display(), result.display())
        })
        .chain(std::iter::once("wait".to_owned()))
        .collect();
    let frequency = FREQUENCY.to_string();
    let run = run_profiler(
        &[
            "-F",
            &frequency,
            "--profiles",
            "cpu",
            "--duration",
            "120s",
            "--",
            "/bin/sh",
            "-c",
            &script,
        ],
        &out,
    );
    run.assert_success();
    let spinners: Vec<Spinner> = SPINNERS
        .iter()
        .zip(&results)
        .map(|((name, _), result)| {
            let m = FixtureResult::read(result);
            Spinner {
                name,
                pid: u32::try_from(m.u64("pid")).expect("a pid"),
                cpu_ns: m.u64("cpu_ns"),
            }
        })
        .collect();
    let stdout = &run.stdout;

    // The per-process lines are the first thing the CPU section shows.
    let section = stdout
        .find("cpu profile: ")
        .unwrap_or_else(|| panic!("no CPU summary\n{}", run.transcript()));
    let table_at = stdout[section..].find("\nCPU by process");
    let functions_at = stdout[section..].find("\nTop ");
    assert!(
        matches!((table_at, functions_at), (Some(t), Some(f)) if t < f),
        "the CPU section does not show its per-process lines before the function table\n{}",
        run.transcript()
    );

    let table = process_table(stdout);
    let rows: Vec<Row> = spinners
        .iter()
        .map(|s| {
            row_of(&table, s.name, s.pid).unwrap_or_else(|| {
                panic!(
                    "no per-process line names {} (pid {}), which measured {:.3} s of CPU\n{}",
                    s.name,
                    s.pid,
                    s.cpu_ns as f64 / 1e9,
                    run.transcript()
                )
            })
        })
        .collect();

    let n: u64 = rows.iter().map(|r| r.samples).sum();
    let measured: u64 = spinners.iter().map(|s| s.cpu_ns).sum();
    assert!(
        n >= 200,
        "the spinners have {n} samples in all for {:.2} CPU-seconds at -F {FREQUENCY}: too few \
         to compare shares\n{}",
        measured as f64 / 1e9,
        run.transcript()
    );
    let mut report = String::new();
    for (s, r) in spinners.iter().zip(&rows) {
        let want = s.cpu_ns as f64 / measured as f64;
        let got = r.samples as f64 / n as f64;
        // Sampling error, plus one sample's worth of rounding.
        let tolerance = SIGMAS * (want * (1.0 - want) / n as f64).sqrt() + 1.0 / n as f64;
        report.push_str(&format!(
            "{} (pid {}): measured {:.3} s = {:.1}%, {} samples = {:.1}% (±{:.1} pp allowed)\n",
            s.name,
            s.pid,
            s.cpu_ns as f64 / 1e9,
            want * 100.0,
            r.samples,
            got * 100.0,
            tolerance * 100.0
        ));
        assert!(
            (got - want).abs() <= tolerance,
            "{}'s share of the spinners' samples is {:.1}%, its share of their measured CPU \
             time {:.1}%: more than {:.1} pp apart, which {n} samples allow\n{report}{}",
            s.name,
            got * 100.0,
            want * 100.0,
            tolerance * 100.0,
            run.transcript()
        );
        // The CPU time column is samples / frequency, which for a fully sampled process is
        // about what it measured (the bound the CPU tests allow a command's samples).
        let ratio = r.cpu_ns / s.cpu_ns as f64;
        assert!(
            (0.5..=1.3).contains(&ratio),
            "{}'s line says {:.3} s of CPU, it measured {:.3} s: `{}`\n{}",
            s.name,
            r.cpu_ns / 1e9,
            s.cpu_ns as f64 / 1e9,
            r.text,
            run.transcript()
        );
    }
    eprintln!("{report}");

    // report.html's CPU tab lists the same processes with the same samples.
    let data = report_data(&out.join("report.html"));
    let cpu = data["profiles"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "cpu"))
        .expect("the report has the CPU profile");
    for (s, r) in spinners.iter().zip(&rows) {
        let row = cpu["processes"]["rows"]
            .as_array()
            .and_then(|rows| {
                rows.iter()
                    .find(|row| row["pid"].as_u64() == Some(u64::from(s.pid)))
            })
            .unwrap_or_else(|| {
                panic!(
                    "report.html's CPU processes have no row for {} (pid {}): {}",
                    s.name, s.pid, cpu["processes"]
                )
            });
        assert_eq!(
            (row["name"].as_str(), row["samples"].as_u64()),
            (Some(s.name), Some(r.samples)),
            "report.html's row of pid {} differs from the summary's `{}`",
            s.pid,
            r.text
        );
    }
}

/// The JSON data embedded in a report page.
fn report_data(page: &Path) -> serde_json::Value {
    let html = std::fs::read_to_string(page)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", page.display()));
    let open = "<script id=\"report-data\" type=\"application/json\">";
    let start = html.find(open).expect("the report embeds its data") + open.len();
    let end = start
        + html[start..]
            .find("</script>")
            .expect("the data block ends");
    serde_json::from_str(&html[start..end]).expect("the embedded data is JSON")
}

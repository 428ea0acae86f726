//! Reading the summary's "Small I/O hot paths" section back into its findings.

/// A parsed `  * SYSCALL in FUNCTION: N calls (R/s) of X on average[, on a KIND]` entry of
/// the summary's small-I/O section, with the lines under it.
#[derive(Debug)]
pub(crate) struct Finding {
    pub(crate) syscall: String,
    pub(crate) function: String,
    pub(crate) calls: u64,
    pub(crate) header: String,
    pub(crate) details: Vec<String>,
}

impl Finding {
    /// The entry's header and the lines under it, for a failure message.
    pub(crate) fn text(&self) -> String {
        format!("{}\n{}", self.header, self.details.join("\n"))
    }

    /// Whether it is told as the round-trip case with no saving claimed; `Err` says which
    /// of `who`'s sites is not, with the entry.
    pub(crate) fn check_round_trip(&self, who: &str) -> Result<(), String> {
        let round_trip = self
            .details
            .iter()
            .any(|d| d.trim_start().starts_with("case: round trips:"));
        if !round_trip {
            return Err(format!(
                "{who}'s {} site is not told as round trips:\n{}",
                self.syscall,
                self.text()
            ));
        }
        if self.details.iter().any(|d| d.contains("saves")) {
            return Err(format!(
                "a saving is claimed for {who}'s {} site, round trips no buffer can merge:\n{}",
                self.syscall,
                self.text()
            ));
        }
        Ok(())
    }

    pub(crate) fn fix(&self) -> Option<&str> {
        self.details
            .iter()
            .find_map(|d| d.trim_start().strip_prefix("fix:"))
            .map(str::trim)
            .filter(|f| !f.is_empty())
    }
}

/// The entries of the "Small I/O hot paths" section of the summary.
pub(crate) fn small_io_findings(stdout: &str) -> Vec<Finding> {
    let mut findings: Vec<Finding> = Vec::new();
    let mut inside = false;
    for line in stdout.lines() {
        if line.starts_with("Small I/O hot paths") {
            inside = true;
            continue;
        }
        if !inside {
            continue;
        }
        if let Some(entry) = line.strip_prefix("  * ") {
            let (site, rest) = entry.split_once(": ").unwrap_or((entry, ""));
            let (syscall, function) = site.split_once(" in ").unwrap_or(("", site));
            let calls = rest
                .split_whitespace()
                .next()
                .map(|n| n.replace(',', ""))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            findings.push(Finding {
                syscall: syscall.to_owned(),
                function: function.to_owned(),
                calls,
                header: line.to_owned(),
                details: Vec::new(),
            });
        } else if line.starts_with("    ") {
            if let Some(last) = findings.last_mut() {
                last.details.push(line.to_owned());
            }
        } else {
            inside = false;
        }
    }
    findings
}

/// The finding for `who`'s `syscall` among `found`, told as round trips with no saving;
/// `Err` says what is missing or wrong, with the summary.
pub(crate) fn round_trip_finding<'a>(
    found: &'a [Finding],
    who: &str,
    syscall: &str,
    stdout: &str,
) -> Result<&'a Finding, String> {
    let f = found
        .iter()
        .find(|f| f.syscall == syscall)
        .ok_or_else(|| format!("no small-I/O finding for {who}'s {syscall}\n{stdout}"))?;
    f.check_round_trip(who)?;
    Ok(f)
}

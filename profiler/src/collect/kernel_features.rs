//! Which of the requested profiles can run on a kernel, from the BPF features it has: the
//! feature table (what each is, the first Linux that has it, which profiles need it) and
//! [`decide`], a pure function from the features found to the profiles that run and one
//! line for each that cannot. [`crate::collect::kernel_probe`] asks the kernel.

use std::fmt;

use crate::config::ProfileSet;

/// A kernel facility the profiler's programs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Feature {
    /// The kernel's own BTF at `/sys/kernel/btf/vmlinux`.
    Btf,
    /// Global variables in BPF programs (`.rodata`/`.data`/`.bss` maps).
    GlobalData,
    /// `BPF_MAP_TYPE_RINGBUF` and its helpers (output, query).
    RingBuffer,
    /// BPF programs on tracepoints (the scheduler's fork, exit and exec).
    TracepointPrograms,
    /// `bpf_probe_read_kernel` (refused under kernel lockdown's confidentiality mode).
    ProbeReadKernel,
    /// `bpf_probe_read_user`.
    ProbeReadUser,
    /// `bpf_get_current_task_btf`.
    CurrentTaskBtf,
    /// `bpf_task_pt_regs`: a thread's user registers from any program.
    TaskPtRegs,
    /// BPF programs on perf events (the `cpu-clock` sampler).
    PerfEventPrograms,
    /// `bpf_get_stack` (kernel stacks; user stacks by frame pointers).
    GetStack,
    /// BTF-enabled raw tracepoints (`tp_btf`) on `sys_enter`/`sys_exit`.
    BtfTracepoints,
    /// The perf `uprobe` PMU.
    Uprobes,
    /// Return probes of the `uprobe` PMU.
    Uretprobes,
    /// BPF links for perf events, through which a probe is given its cookie.
    PerfLink,
    /// A `sched_switch` tracepoint that passes the task's state at the switch (the
    /// off-CPU profile tells a preemption from a sleep by it).
    SchedSwitchState,
    /// `bpf_get_attach_cookie` in uprobe programs.
    AttachCookie,
}

impl Feature {
    /// Every feature, in the order the README's table lists them.
    pub const ALL: [Feature; 16] = [
        Feature::Btf,
        Feature::GlobalData,
        Feature::RingBuffer,
        Feature::TracepointPrograms,
        Feature::ProbeReadKernel,
        Feature::ProbeReadUser,
        Feature::CurrentTaskBtf,
        Feature::TaskPtRegs,
        Feature::PerfEventPrograms,
        Feature::GetStack,
        Feature::BtfTracepoints,
        Feature::Uprobes,
        Feature::Uretprobes,
        Feature::PerfLink,
        Feature::AttachCookie,
        Feature::SchedSwitchState,
    ];

    /// The feature in the words of the lines the user sees, and whether it is plural.
    fn words(self) -> (&'static str, bool) {
        match self {
            Feature::Btf => ("kernel BTF (/sys/kernel/btf/vmlinux)", false),
            Feature::GlobalData => ("BPF global data", false),
            Feature::RingBuffer => ("the BPF ring buffer", false),
            Feature::TracepointPrograms => ("BPF programs on tracepoints", true),
            Feature::ProbeReadKernel => ("the BPF helper bpf_probe_read_kernel", false),
            Feature::ProbeReadUser => ("the BPF helper bpf_probe_read_user", false),
            Feature::CurrentTaskBtf => ("the BPF helper bpf_get_current_task_btf", false),
            Feature::TaskPtRegs => ("the BPF helper bpf_task_pt_regs", false),
            Feature::PerfEventPrograms => ("BPF programs on perf events", true),
            Feature::GetStack => ("the BPF helper bpf_get_stack", false),
            Feature::BtfTracepoints => ("BTF-enabled tracepoints (tp_btf)", true),
            Feature::Uprobes => ("uprobes (the perf uprobe PMU)", true),
            Feature::Uretprobes => ("uretprobes", true),
            Feature::PerfLink => ("BPF perf links", true),
            Feature::AttachCookie => ("uprobe BPF cookies", true),
            Feature::SchedSwitchState => ("the task state argument of sched_switch", false),
        }
    }

    /// The first mainline Linux release that has the feature.
    pub fn first_linux(self) -> (u32, u32) {
        match self {
            Feature::TracepointPrograms => (4, 7),
            Feature::PerfEventPrograms => (4, 9),
            Feature::Uprobes | Feature::Uretprobes => (4, 17),
            Feature::GetStack => (4, 18),
            Feature::GlobalData => (5, 2),
            Feature::Btf => (5, 4),
            Feature::ProbeReadKernel | Feature::ProbeReadUser | Feature::BtfTracepoints => (5, 5),
            Feature::RingBuffer => (5, 8),
            Feature::CurrentTaskBtf => (5, 11),
            Feature::TaskPtRegs | Feature::PerfLink | Feature::AttachCookie => (5, 15),
            Feature::SchedSwitchState => (5, 18),
        }
    }

    /// Why a kernel at least as new as [`Self::first_linux`] may still lack the feature.
    fn when_new_enough(self) -> &'static str {
        match self {
            Feature::Btf | Feature::BtfTracepoints | Feature::CurrentTaskBtf => {
                "it was built without CONFIG_DEBUG_INFO_BTF=y"
            }
            Feature::ProbeReadKernel => "kernel lockdown (confidentiality mode) forbids it",
            Feature::Uprobes | Feature::Uretprobes => "it was built without CONFIG_UPROBE_EVENTS=y",
            Feature::PerfEventPrograms | Feature::TracepointPrograms => {
                "it was built without CONFIG_BPF_EVENTS=y"
            }
            _ => "asked, the kernel refused (its build or settings leave this out)",
        }
    }

    /// The profiles that cannot run without the feature; `None` for every profile.
    /// `frame_pointers` is `--call-graph fp`, where every user stack is walked by
    /// `bpf_get_stack`.
    fn needed_by(self, frame_pointers: bool) -> Option<&'static [Profile]> {
        use Profile::*;
        match self {
            Feature::Btf
            | Feature::GlobalData
            | Feature::RingBuffer
            | Feature::TracepointPrograms
            | Feature::ProbeReadKernel
            | Feature::ProbeReadUser
            | Feature::CurrentTaskBtf
            | Feature::TaskPtRegs => None,
            Feature::GetStack if frame_pointers => None,
            // Kernel stacks of CPU samples; a Go runtime's allocations and a goroutine's
            // park site walk frame pointers.
            Feature::GetStack => Some(&[Cpu, Heap, Goroutines]),
            Feature::PerfEventPrograms => Some(&[Cpu]),
            Feature::BtfTracepoints => Some(&[Io, Block, OffCpu]),
            Feature::SchedSwitchState => Some(&[OffCpu]),
            Feature::Uprobes | Feature::PerfLink | Feature::AttachCookie => {
                Some(&[Goroutines, Heap])
            }
            Feature::Uretprobes => Some(&[Heap]),
        }
    }

    /// The name `PROFILER_KERNEL_WITHOUT` takes (tests use it to play a kernel that lacks
    /// the feature).
    pub fn key(self) -> &'static str {
        match self {
            Feature::Btf => "btf",
            Feature::GlobalData => "global_data",
            Feature::RingBuffer => "ring_buffer",
            Feature::TracepointPrograms => "tracepoint_programs",
            Feature::ProbeReadKernel => "probe_read_kernel",
            Feature::ProbeReadUser => "probe_read_user",
            Feature::CurrentTaskBtf => "current_task_btf",
            Feature::TaskPtRegs => "task_pt_regs",
            Feature::PerfEventPrograms => "perf_event_programs",
            Feature::GetStack => "get_stack",
            Feature::BtfTracepoints => "btf_tracepoints",
            Feature::Uprobes => "uprobes",
            Feature::Uretprobes => "uretprobes",
            Feature::PerfLink => "perf_link",
            Feature::AttachCookie => "attach_cookie",
            Feature::SchedSwitchState => "sched_switch_state",
        }
    }
}

/// A profile a run can collect, as [`ProfileSet`] names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// The CPU profile.
    Cpu,
    /// The I/O profile.
    Io,
    /// Futex waits (the blocking profile).
    Block,
    /// Goroutine waits (written into the blocking profile).
    Goroutines,
    /// The heap profile.
    Heap,
    /// The off-CPU profile.
    OffCpu,
}

impl Profile {
    const ALL: [Profile; 6] = [
        Profile::Cpu,
        Profile::Io,
        Profile::Block,
        Profile::Goroutines,
        Profile::Heap,
        Profile::OffCpu,
    ];

    fn flag(self, set: &mut ProfileSet) -> &mut bool {
        match self {
            Profile::Cpu => &mut set.cpu,
            Profile::Io => &mut set.io,
            Profile::Block => &mut set.block,
            Profile::Goroutines => &mut set.goroutines,
            Profile::Heap => &mut set.heap,
            Profile::OffCpu => &mut set.offcpu,
        }
    }

    /// How the line about a refused profile starts.
    fn refused(self) -> &'static str {
        match self {
            Profile::Cpu => "CPU profile not collected",
            Profile::Io => "I/O profile not collected",
            Profile::Block => "futex waits (blocking profile) not traced",
            Profile::Goroutines => "goroutine waits not traced",
            Profile::Heap => "heap profile not collected",
            Profile::OffCpu => "off-CPU profile not collected",
        }
    }
}

/// What the running kernel was found to have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelFeatures {
    /// The kernel release (`uname -r`).
    pub release: String,
    /// The features it lacks, in [`Feature::ALL`] order.
    pub missing: Vec<Feature>,
}

impl KernelFeatures {
    /// A kernel `release` that has every feature.
    pub fn complete(release: &str) -> Self {
        Self {
            release: release.to_owned(),
            missing: Vec::new(),
        }
    }

    /// This kernel without `feature`.
    pub fn without(mut self, feature: Feature) -> Self {
        if !self.missing.contains(&feature) {
            self.missing.push(feature);
            self.missing.sort();
        }
        self
    }

    /// The one line saying why `feature` is missing here.
    fn why_missing(&self, feature: Feature) -> String {
        let (words, plural) = feature.words();
        let (major, minor) = feature.first_linux();
        let release = &self.release;
        match version(release) {
            Some(version) if version >= (major, minor) => format!(
                "{words} {} missing from this kernel ({release}) although Linux {major}.{minor} \
                 has {}: {}",
                if plural { "are" } else { "is" },
                if plural { "them" } else { "it" },
                feature.when_new_enough()
            ),
            _ => format!(
                "{words} {} Linux {major}.{minor}; this kernel is {release}",
                if plural { "need" } else { "needs" }
            ),
        }
    }
}

/// The profiles that run, and the line said about each requested one that cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The requested profiles this kernel can collect.
    pub profiles: ProfileSet,
    /// One line per requested profile that is not collected.
    pub refused: Vec<String>,
}

/// Which of the `wanted` profiles can run on `kernel`, with `frame_pointers` for
/// `--call-graph fp`.
///
/// # Errors
/// One line when nothing can run: a feature every program needs is missing, or every
/// requested profile is refused.
pub fn decide(
    kernel: &KernelFeatures,
    wanted: ProfileSet,
    frame_pointers: bool,
) -> Result<Decision, String> {
    // The newest missing feature is the one to name: a kernel that has it has the others.
    let newest = |features: &mut dyn Iterator<Item = Feature>| {
        features.max_by_key(|feature| (feature.first_linux(), *feature))
    };
    let mut everything = kernel
        .missing
        .iter()
        .copied()
        .filter(|feature| feature.needed_by(frame_pointers).is_none());
    if let Some(feature) = newest(&mut everything) {
        return Err(format!(
            "the profiler cannot run on this kernel: {} (see \"Kernel requirements\" in the README)",
            kernel.why_missing(feature)
        ));
    }
    let mut profiles = wanted;
    let mut refused = Vec::new();
    for profile in Profile::ALL {
        if !*profile.flag(&mut profiles) {
            continue;
        }
        let mut lacking = kernel.missing.iter().copied().filter(|feature| {
            feature
                .needed_by(frame_pointers)
                .is_some_and(|profiles| profiles.contains(&profile))
        });
        if let Some(feature) = newest(&mut lacking) {
            *profile.flag(&mut profiles) = false;
            refused.push(format!(
                "{}: {}",
                profile.refused(),
                kernel.why_missing(feature)
            ));
        }
    }
    let any = Profile::ALL
        .iter()
        .any(|profile| *profile.flag(&mut profiles));
    if !any {
        let why = refused
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(format!(
            "no requested profile can run on this kernel: {why}"
        ));
    }
    Ok(Decision { profiles, refused })
}

impl fmt::Display for KernelFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.missing.is_empty() {
            return write!(
                f,
                "kernel {}: every BPF feature the profiles use is present",
                self.release
            );
        }
        let keys: Vec<_> = self.missing.iter().map(|feature| feature.key()).collect();
        write!(f, "kernel {}: lacks {}", self.release, keys.join(", "))
    }
}

/// The (major, minor) of a release such as `6.1.0-47-amd64`.
pub fn version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> ProfileSet {
        ProfileSet {
            cpu: true,
            io: true,
            block: true,
            goroutines: true,
            heap: true,
            offcpu: true,
        }
    }

    #[test]
    fn a_complete_kernel_runs_everything_it_is_asked() {
        let kernel = KernelFeatures::complete("6.1.0-47-amd64");
        let decision = decide(&kernel, all(), false).unwrap();
        assert_eq!(decision.profiles, all());
        assert!(decision.refused.is_empty());
        let defaults = decide(&kernel, ProfileSet::default(), true).unwrap();
        assert_eq!(defaults.profiles, ProfileSet::default());
    }

    #[test]
    fn without_cookies_heap_and_goroutines_are_refused_and_the_rest_runs() {
        let kernel = KernelFeatures::complete("5.10.0-28-amd64").without(Feature::AttachCookie);
        let decision = decide(&kernel, all(), false).unwrap();
        assert_eq!(
            decision.profiles,
            ProfileSet {
                goroutines: false,
                heap: false,
                ..all()
            }
        );
        assert_eq!(
            decision.refused,
            [
                "goroutine waits not traced: uprobe BPF cookies need Linux 5.15; this kernel is \
                 5.10.0-28-amd64",
                "heap profile not collected: uprobe BPF cookies need Linux 5.15; this kernel is \
                 5.10.0-28-amd64",
            ]
        );
    }

    #[test]
    fn the_newest_missing_feature_is_named() {
        let kernel = KernelFeatures::complete("4.14.0")
            .without(Feature::Uprobes)
            .without(Feature::PerfLink)
            .without(Feature::AttachCookie)
            .without(Feature::Uretprobes);
        let wanted = ProfileSet {
            heap: true,
            goroutines: true,
            ..ProfileSet::default()
        };
        let decision = decide(&kernel, wanted, false).unwrap();
        // Both 5.15: the later in the table wins the tie, deterministically.
        assert!(decision.refused[1].contains("uprobe BPF cookies need Linux 5.15"));
        assert_eq!(decision.refused.len(), 2);
    }

    #[test]
    fn a_feature_missing_from_a_new_enough_kernel_says_why() {
        let kernel = KernelFeatures::complete("6.12.0").without(Feature::Uprobes);
        let wanted = ProfileSet {
            goroutines: true,
            ..ProfileSet::default()
        };
        let decision = decide(&kernel, wanted, false).unwrap();
        assert_eq!(
            decision.refused,
            [
                "goroutine waits not traced: uprobes (the perf uprobe PMU) are missing from this \
              kernel (6.12.0) although Linux 4.17 has them: it was built without \
              CONFIG_UPROBE_EVENTS=y"
            ]
        );
        assert!(!decision.profiles.goroutines && decision.profiles.cpu);
    }

    #[test]
    fn without_a_ring_buffer_nothing_runs() {
        let kernel = KernelFeatures::complete("5.4.0-150-generic").without(Feature::RingBuffer);
        let err = decide(&kernel, all(), false).unwrap_err();
        assert_eq!(
            err,
            "the profiler cannot run on this kernel: the BPF ring buffer needs Linux 5.8; this \
             kernel is 5.4.0-150-generic (see \"Kernel requirements\" in the README)"
        );
    }

    #[test]
    fn without_btf_nothing_runs_and_the_line_says_how_to_get_it() {
        let kernel = KernelFeatures::complete("6.18.0").without(Feature::Btf);
        let err = decide(&kernel, ProfileSet::default(), false).unwrap_err();
        assert!(err.contains("kernel BTF"), "{err}");
        assert!(err.contains("CONFIG_DEBUG_INFO_BTF=y"), "{err}");
    }

    #[test]
    fn an_old_kernel_is_refused_by_its_newest_missing_feature() {
        // Linux 5.10 as mainline made it: every 5.11+ feature is missing.
        let mut kernel = KernelFeatures::complete("5.10.0");
        for feature in Feature::ALL {
            if feature.first_linux() > (5, 10) {
                kernel = kernel.without(feature);
            }
        }
        let err = decide(&kernel, all(), false).unwrap_err();
        assert!(
            err.contains("bpf_task_pt_regs needs Linux 5.15; this kernel is 5.10.0"),
            "{err}"
        );
    }

    #[test]
    fn get_stack_is_needed_by_every_profile_only_with_frame_pointers() {
        let kernel = KernelFeatures::complete("4.17.0").without(Feature::GetStack);
        let wanted = ProfileSet {
            heap: true,
            goroutines: true,
            ..ProfileSet::default()
        };
        let decision = decide(&kernel, wanted, false).unwrap();
        assert!(!decision.profiles.cpu && !decision.profiles.heap && !decision.profiles.goroutines);
        assert!(decision.profiles.io && decision.profiles.block);
        assert_eq!(decision.refused.len(), 3);
        assert!(decide(&kernel, wanted, true).is_err());
    }

    #[test]
    fn when_every_requested_profile_is_refused_it_is_one_error_line() {
        let kernel = KernelFeatures::complete("6.1.0").without(Feature::BtfTracepoints);
        let wanted = ProfileSet {
            cpu: false,
            io: true,
            block: true,
            goroutines: false,
            heap: false,
            offcpu: false,
        };
        let err = decide(&kernel, wanted, false).unwrap_err();
        assert!(err.starts_with("no requested profile can run on this kernel: I/O profile"));
        assert!(!err.contains('\n'));
    }

    #[test]
    fn releases_give_their_version() {
        assert_eq!(version("6.1.0-47-amd64"), Some((6, 1)));
        assert_eq!(version("6.12.101+deb12-amd64"), Some((6, 12)));
        assert_eq!(version("5.14.0-427.13.1.el9_4.x86_64"), Some((5, 14)));
        assert_eq!(version("unknown"), None);
    }

    #[test]
    fn every_feature_has_a_distinct_key() {
        let mut keys: Vec<_> = Feature::ALL.iter().map(|f| f.key()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), Feature::ALL.len());
    }
}

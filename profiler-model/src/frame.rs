//! What a location stands for: a named function, or why it has no name, as data.
//!
//! The symbolizer and the stack builder decide a frame's kind once; every output reads
//! the kind instead of parsing the frame's display name back. Display names of frames
//! without a function (`libc.so.6+0x1f2a`, `[unknown]`, `[user stack lost: map full]`)
//! are made here, and only here, from the kind.

/// What a location is: code with a name, or a stand-in saying why there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// User code named from its file's symbols or debug information.
    Function,
    /// Kernel code, named from kallsyms where it could be.
    Kernel,
    /// Code of a kernel module, named from kallsyms; its location's mapping names the
    /// module (`[fuse]`).
    KernelModule,
    /// A JIT-compiled BPF program, named `bpf_prog_<tag>_<name>` as kallsyms lists it.
    Bpf,
    /// Code generated at run time, named by the JIT's perf map.
    Jit,
    /// A function of an interpreted language (CPython), named from the interpreter's own
    /// data: its qualified name, source file and line.
    Python,
    /// User code whose address could not be named, and why.
    Unnamed(Unnamed),
    /// Kernel code whose address kallsyms does not cover.
    KernelUnnamed,
    /// A stand-in for a user stack that could not be collected, and why.
    Lost(LostStack),
}

/// Why a user address has no function name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unnamed {
    /// The address is in no mapping the process was seen with.
    NoMapping,
    /// The mapping has no file behind it (anonymous memory).
    Anonymous,
    /// The mapped file could not be opened while the process lived.
    FileNotHeld,
    /// The file was read but has no symbol covering the address.
    NoSymbol,
    /// The file is stripped (no symbol table, no DWARF, no MiniDebugInfo) and no separate
    /// debug information was found for it (build-ID directories, debug link, debuginfod).
    NoDebugInfo,
    /// The file could not be parsed as ELF, or reading it failed.
    FileUnreadable,
    /// Naming the file took longer than its time budget, and its symbolizing process was
    /// stopped.
    OverTimeBudget,
    /// The file's debug information would inflate past its memory budget and was not read,
    /// or its symbolizing process died on it (out of its memory limit).
    OverMemoryBudget,
    /// The run's time budget for naming files was spent before this file's turn.
    RunBudgetSpent,
}

/// Why a sample has no user stack frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LostStack {
    /// The sample had no frame at all.
    NoFrames,
    /// The user stack could not be read or unwound.
    Unreadable,
    /// The stack samples of a call site were dropped because the ring buffer was full.
    RingBufferFull,
    /// The call site itself could not be recorded: its aggregation map was full.
    MapFull,
    /// No wait of the site had its stacks taken: one wait in 64 is sampled, and the first
    /// of a site unless its CPU was over its stack-sample rate or the ring buffer was full.
    NotSampled,
    /// The thread waited through the whole window: it never left or regained a CPU, so no
    /// stack was taken.
    WholeWindow,
}

impl FrameKind {
    /// Whether the frame has a name from symbols (rather than a stand-in).
    pub fn is_named(self) -> bool {
        matches!(
            self,
            Self::Function
                | Self::Kernel
                | Self::KernelModule
                | Self::Bpf
                | Self::Jit
                | Self::Python
        )
    }

    /// Whether the frame is kernel code.
    pub fn is_kernel(self) -> bool {
        matches!(
            self,
            Self::Kernel | Self::KernelModule | Self::Bpf | Self::KernelUnnamed
        )
    }

    /// A short machine-readable tag, written in pprof as the function's system name of
    /// frames that are not plain functions, so that `profiler report` reads the kind back;
    /// [`Self::from_tag`] is its inverse.
    pub fn tag(self) -> &'static str {
        match self {
            Self::Function => "",
            Self::Kernel => "",
            Self::Jit => "[profiler:jit]",
            Self::Python => "[profiler:python]",
            Self::KernelModule => "[profiler:kernel-module]",
            Self::Bpf => "[profiler:bpf]",
            Self::KernelUnnamed => "[profiler:unnamed:kernel]",
            Self::Unnamed(Unnamed::NoMapping) => "[profiler:unnamed:no-mapping]",
            Self::Unnamed(Unnamed::Anonymous) => "[profiler:unnamed:anonymous]",
            Self::Unnamed(Unnamed::FileNotHeld) => "[profiler:unnamed:file-not-held]",
            Self::Unnamed(Unnamed::NoSymbol) => "[profiler:unnamed:no-symbol]",
            Self::Unnamed(Unnamed::NoDebugInfo) => "[profiler:unnamed:no-debug-info]",
            Self::Unnamed(Unnamed::FileUnreadable) => "[profiler:unnamed:file-unreadable]",
            Self::Unnamed(Unnamed::OverTimeBudget) => "[profiler:unnamed:over-time-budget]",
            Self::Unnamed(Unnamed::OverMemoryBudget) => "[profiler:unnamed:over-memory-budget]",
            Self::Unnamed(Unnamed::RunBudgetSpent) => "[profiler:unnamed:run-budget-spent]",
            Self::Lost(LostStack::NoFrames) => "[profiler:lost:no-frames]",
            Self::Lost(LostStack::Unreadable) => "[profiler:lost:unreadable]",
            Self::Lost(LostStack::RingBufferFull) => "[profiler:lost:ring-buffer-full]",
            Self::Lost(LostStack::MapFull) => "[profiler:lost:map-full]",
            Self::Lost(LostStack::NotSampled) => "[profiler:lost:not-sampled]",
            Self::Lost(LostStack::WholeWindow) => "[profiler:lost:whole-window]",
        }
    }

    /// The kind a [`Self::tag`] stands for; `None` for any other text (a real function's
    /// system name).
    pub fn from_tag(tag: &str) -> Option<Self> {
        Self::TAGGED.iter().copied().find(|kind| kind.tag() == tag)
    }

    /// Every kind with a non-empty tag.
    const TAGGED: [Self; 20] = [
        Self::Jit,
        Self::Python,
        Self::KernelModule,
        Self::Bpf,
        Self::KernelUnnamed,
        Self::Unnamed(Unnamed::NoMapping),
        Self::Unnamed(Unnamed::Anonymous),
        Self::Unnamed(Unnamed::FileNotHeld),
        Self::Unnamed(Unnamed::NoSymbol),
        Self::Unnamed(Unnamed::NoDebugInfo),
        Self::Unnamed(Unnamed::FileUnreadable),
        Self::Unnamed(Unnamed::OverTimeBudget),
        Self::Unnamed(Unnamed::OverMemoryBudget),
        Self::Unnamed(Unnamed::RunBudgetSpent),
        Self::Lost(LostStack::NoFrames),
        Self::Lost(LostStack::Unreadable),
        Self::Lost(LostStack::RingBufferFull),
        Self::Lost(LostStack::MapFull),
        Self::Lost(LostStack::NotSampled),
        Self::Lost(LostStack::WholeWindow),
    ];

    /// Why the frame has no name, in a few words for a tooltip; `None` for named frames.
    pub fn reason(self) -> Option<&'static str> {
        Some(match self {
            Self::Function
            | Self::Kernel
            | Self::KernelModule
            | Self::Bpf
            | Self::Jit
            | Self::Python => {
                return None;
            }
            Self::KernelUnnamed => "no kallsyms symbol covers the address",
            Self::Unnamed(Unnamed::NoMapping) => "the address is in no mapping of the process",
            Self::Unnamed(Unnamed::Anonymous) => "anonymous memory: no file to read symbols from",
            Self::Unnamed(Unnamed::FileNotHeld) => "the mapped file could not be opened",
            Self::Unnamed(Unnamed::NoSymbol) => "no symbol in the file covers the address",
            Self::Unnamed(Unnamed::NoDebugInfo) => {
                "stripped file, and no debug info found for it (install its -dbgsym package, \
                 pass --debuginfo-dir, or set DEBUGINFOD_URLS)"
            }
            Self::Unnamed(Unnamed::FileUnreadable) => "the file could not be read as ELF",
            Self::Unnamed(Unnamed::OverTimeBudget) => {
                "naming this file took longer than its time budget and was stopped"
            }
            Self::Unnamed(Unnamed::OverMemoryBudget) => {
                "this file's debug information would take more memory than its budget: not read"
            }
            Self::Unnamed(Unnamed::RunBudgetSpent) => {
                "the run's time budget for naming files was spent before this file"
            }
            Self::Lost(LostStack::NoFrames) => "the sample had no frames",
            Self::Lost(LostStack::Unreadable) => "the user stack could not be read",
            Self::Lost(LostStack::RingBufferFull) => "stack samples dropped: ring buffer full",
            Self::Lost(LostStack::MapFull) => "the call site was not recorded: map full",
            Self::Lost(LostStack::NotSampled) => {
                "no wait of this site had its stack taken (1 in 64 are; the profile's comments \
                 count those over the rate or lost)"
            }
            Self::Lost(LostStack::WholeWindow) => {
                "waited the whole window without leaving or regaining a CPU: no stack taken"
            }
        })
    }
}

impl LostStack {
    /// The display name of the stand-in frame, as the profiles have always shown it.
    pub fn frame_name(self) -> &'static str {
        match self {
            Self::NoFrames => "[unknown]",
            Self::Unreadable => "[user stack unreadable]",
            Self::RingBufferFull => "[user stack lost: ring buffer full]",
            Self::MapFull => "[user stack lost: map full]",
            Self::NotSampled => "[stack not sampled]",
            Self::WholeWindow => "[waited the whole window: no stack taken]",
        }
    }
}

/// `libc.so.6+0x1234`: the display name of an unnamed address, the file's base name and
/// the offset in it, as perf prints them; `[unknown]` without a file.
pub fn module_offset(path: Option<&str>, offset: u64) -> String {
    match path {
        None => "[unknown]".to_owned(),
        Some(path) => {
            let name = path
                .rsplit('/')
                .next()
                .filter(|n| !n.is_empty())
                .unwrap_or("[anon]");
            format!("{name}+{offset:#x}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_kinds_are_inverse() {
        for kind in FrameKind::TAGGED {
            assert!(!kind.tag().is_empty());
            assert_eq!(FrameKind::from_tag(kind.tag()), Some(kind), "{kind:?}");
            assert_eq!(kind.reason().is_some(), !kind.is_named(), "{kind:?}");
        }
        assert_eq!(FrameKind::from_tag(""), None);
        assert_eq!(FrameKind::from_tag("main"), None);
        assert!(FrameKind::Function.is_named() && !FrameKind::KernelUnnamed.is_named());
    }

    #[test]
    fn display_names() {
        assert_eq!(
            module_offset(Some("/usr/lib/libc.so.6"), 0x10),
            "libc.so.6+0x10"
        );
        assert_eq!(module_offset(Some(""), 0x10), "[anon]+0x10");
        assert_eq!(module_offset(None, 0x10), "[unknown]");
        assert_eq!(
            LostStack::MapFull.frame_name(),
            "[user stack lost: map full]"
        );
    }
}

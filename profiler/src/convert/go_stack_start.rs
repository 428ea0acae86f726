//! Where a Go program's heap and goroutine-wait stacks start: where Go's own profiles start
//! them, so that `go tool pprof` shows the same leaves in both.
//!
//! - Go's heap profile (`writeHeapProto` in runtime/pprof/protomem.go) hides the leading
//!   frames of the runtime (`runtime.`, and from Go 1.24 `internal/runtime/`), judged by the
//!   innermost function at each address, unless every frame is the runtime's.
//! - Go's block profile records a wait from the function that called `blockevent`, minus
//!   `skip` logical (inlined included) frames: the blocking call. The skips are constants at
//!   the callers in runtime/chan.go, select.go and sema.go, the same from Go 1.19 to 1.27;
//!   a semaphore's adds the `skipframes` its caller in `sync` passes.
//!
//! A wait that Go's block profile does not record (a sleep, the network poller) keeps its
//! stack from `runtime.gopark`, as Go's goroutine profile shows it.

use profiler_model::Line;

use crate::collect::raw_profile::StackStart;

/// The function-name prefixes of the frames Go's heap profile hides at the leaf.
const HEAP_HIDDEN: [&str; 2] = ["runtime.", "internal/runtime/"];

/// The runtime's functions that park a goroutine, at the leaf of a goroutine wait's stack,
/// below the function that records the wait.
const PARKS: [&str; 2] = ["runtime.gopark", "runtime.goparkunlock"];

/// A runtime function that records a block event (calls `blockevent`), by the name the
/// binary gives it (a `go:linkname` target is named as its target).
struct BlockEvent {
    /// The function, as the binary names it.
    function: &'static str,
    /// `blockevent`'s `skip` there: Go's stack starts at the `skip`-th frame counted from
    /// `blockevent` itself (0), so `skip - 1` frames above `function`.
    skip: usize,
    /// The callers that add to `skip` (`skipframes`), two frames above `function` (past
    /// the runtime's wrapper they call), with what they add.
    skipframes: &'static [(&'static str, usize)],
}

/// Every function of the runtime that records a block event.
const BLOCK_EVENTS: [BlockEvent; 5] = [
    // chan.go: `blockevent(mysg.releasetime-t0, 2)` in chansend and chanrecv.
    BlockEvent {
        function: "runtime.chanrecv",
        skip: 2,
        skipframes: &[],
    },
    BlockEvent {
        function: "runtime.chansend",
        skip: 2,
        skipframes: &[],
    },
    // select.go: `blockevent(caseReleaseTime-t0, 1)`.
    BlockEvent {
        function: "runtime.selectgo",
        skip: 1,
        skipframes: &[],
    },
    // sema.go: `blockevent(s.releasetime-t0, 3+skipframes)`.
    BlockEvent {
        function: "runtime.semacquire1",
        skip: 3,
        skipframes: &SEMAPHORE_SKIPFRAMES,
    },
    // sema.go: notifyListWait, linked as sync.runtime_notifyListWait (sync.Cond.Wait).
    BlockEvent {
        function: "sync.runtime_notifyListWait",
        skip: 2,
        skipframes: &[],
    },
];

/// The callers in `sync` that pass `semacquire1` a `skipframes` (through the runtime's
/// `sync.runtime_SemacquireMutex`), and its value: so that the stack starts at
/// `sync.(*Mutex).Lock`, not inside it. RWMutex, WaitGroup and the poller pass 0.
const SEMAPHORE_SKIPFRAMES: [(&str, usize); 2] = [
    // sync/mutex.go up to Go 1.23.
    ("sync.(*Mutex).lockSlow", 1),
    // internal/sync/mutex.go from Go 1.24 (under sync.(*Mutex).Lock).
    ("internal/sync.(*Mutex).lockSlow", 2),
];

/// Where a stack starts: the location that becomes its leaf, and the line of it (its
/// inlined frames, innermost first) that does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Start {
    /// Locations before it are left out.
    pub location: usize,
    /// Inlined frames of that location before it are left out.
    pub line: usize,
}

/// Where a stack of locations (leaf first, each its lines innermost first) starts, for a
/// sample that is to start at `start`; never past its last frame.
pub fn start(start: StackStart, locations: &[&[Line]]) -> Start {
    let found = match start {
        StackStart::Leaf => None,
        StackStart::GoHeap => heap_start(locations),
        StackStart::GoBlock => block_start(locations),
    };
    found.unwrap_or_default()
}

/// The first location whose innermost function is not the runtime's, if any.
fn heap_start(locations: &[&[Line]]) -> Option<Start> {
    let location = locations.iter().position(|lines| {
        lines
            .first()
            .is_none_or(|l| !HEAP_HIDDEN.iter().any(|p| l.function.starts_with(p)))
    })?;
    Some(Start { location, line: 0 })
}

/// The blocking call: the frame `skip - 1` above the function that recorded the wait,
/// which sits right above the park.
fn block_start(locations: &[&[Line]]) -> Option<Start> {
    // Logical frames, leaf first, with where each is.
    let frames: Vec<(&str, Start)> = locations
        .iter()
        .enumerate()
        .flat_map(|(location, lines)| {
            lines.iter().enumerate().map(move |(line, l)| {
                let at = Start { location, line };
                (l.function.as_str(), at)
            })
        })
        .collect();
    let recorder = frames.iter().position(|(f, _)| !PARKS.contains(f))?;
    let event = BLOCK_EVENTS
        .iter()
        .find(|e| e.function == frames[recorder].0)?;
    let skipframes = frames.get(recorder + 2).map_or(0, |(caller, _)| {
        let added = event.skipframes.iter().find(|(f, _)| f == caller);
        added.map_or(0, |&(_, n)| n)
    });
    let leaf = recorder + event.skip + skipframes - 1;
    frames.get(leaf).map(|&(_, at)| at)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Locations of one line each, but where a name is `a|b`: `a` inlined into `b`.
    fn stack(names: &[&str]) -> Vec<Vec<Line>> {
        names
            .iter()
            .map(|location| {
                location
                    .split('|')
                    .map(|function| Line {
                        function: function.to_owned(),
                        file: None,
                        line: 0,
                    })
                    .collect()
            })
            .collect()
    }

    fn start_of(how: StackStart, names: &[&str]) -> Start {
        let locations = stack(names);
        let lines: Vec<&[Line]> = locations.iter().map(Vec::as_slice).collect();
        start(how, &lines)
    }

    fn at(location: usize, line: usize) -> Start {
        Start { location, line }
    }

    #[test]
    fn heap_stacks_start_past_the_runtime() {
        let go_1_27 = [
            "runtime.mProf_Malloc",
            "runtime.profilealloc",
            "runtime.mallocgcSmallNoScanSC5",
            "runtime.mallocgc",
            "runtime.makeslice",
            "main.smallPieces",
            "runtime.main",
        ];
        assert_eq!(start_of(StackStart::GoHeap, &go_1_27), at(5, 0));
        // A map growing, from Go 1.24: its package is the runtime's too.
        let map = [
            "runtime.mallocgc",
            "runtime.newarray",
            "internal/runtime/maps.newTable",
            "runtime.mapassign_faststr",
            "main.index",
        ];
        assert_eq!(start_of(StackStart::GoHeap, &map), at(4, 0));
        // The innermost function at an address decides, as runtime.FuncForPC's name.
        let inlined = ["runtime.mallocgc", "runtime.add|main.f", "main.main"];
        assert_eq!(start_of(StackStart::GoHeap, &inlined), at(2, 0));
        // The runtime allocating for itself keeps its frames.
        let runtime = [
            "runtime.mProf_Malloc",
            "runtime.malg",
            "runtime.systemstack",
        ];
        assert_eq!(start_of(StackStart::GoHeap, &runtime), at(0, 0));
        // Other packages' internals are not hidden.
        let cpu = ["runtime.newobject", "internal/cpu.doinit"];
        assert_eq!(start_of(StackStart::GoHeap, &cpu), at(1, 0));
    }

    #[test]
    fn block_stacks_start_at_the_blocking_call() {
        let chan = [
            "runtime.gopark",
            "runtime.chanrecv",
            "runtime.chanrecv2",
            "main.waitChannel",
        ];
        assert_eq!(start_of(StackStart::GoBlock, &chan), at(2, 0));
        let select = ["runtime.gopark", "runtime.selectgo", "main.loop"];
        assert_eq!(start_of(StackStart::GoBlock, &select), at(1, 0));
        // Go 1.19: semacquire1's skipframes of 1 from sync.(*Mutex).lockSlow.
        let mutex_1_19 = [
            "runtime.gopark",
            "runtime.goparkunlock|runtime.semacquire1",
            "sync.runtime_SemacquireMutex",
            "sync.(*Mutex).lockSlow",
            "sync.(*Mutex).Lock|main.contendMutex",
        ];
        assert_eq!(start_of(StackStart::GoBlock, &mutex_1_19), at(4, 0));
        // Go 1.24 and later: 2 from internal/sync, the leaf an inlined frame.
        let mutex_1_27 = [
            "runtime.gopark",
            "runtime.goparkunlock|runtime.semacquire1",
            "internal/sync.runtime_SemacquireMutex",
            "internal/sync.(*Mutex).lockSlow",
            "internal/sync.(*Mutex).Lock|sync.(*Mutex).Lock|main.contendMutex",
        ];
        assert_eq!(start_of(StackStart::GoBlock, &mutex_1_27), at(4, 1));
        let wait_group = [
            "runtime.gopark",
            "runtime.goparkunlock",
            "runtime.semacquire1",
            "sync.runtime_SemacquireWaitGroup",
            "sync.(*WaitGroup).Wait",
            "main.waitGroup",
        ];
        assert_eq!(start_of(StackStart::GoBlock, &wait_group), at(4, 0));
        let cond = [
            "runtime.gopark",
            "runtime.goparkunlock|sync.runtime_notifyListWait",
            "sync.(*Cond).Wait",
            "main.consume",
        ];
        assert_eq!(start_of(StackStart::GoBlock, &cond), at(2, 0));
    }

    #[test]
    fn other_waits_and_cut_stacks_keep_every_frame() {
        let sleep = ["runtime.gopark", "time.Sleep", "main.nap"];
        assert_eq!(start_of(StackStart::GoBlock, &sleep), at(0, 0));
        // Unwound no further than the recording function: nothing to start at.
        let cut = ["runtime.gopark", "runtime.semacquire1"];
        assert_eq!(start_of(StackStart::GoBlock, &cut), at(0, 0));
        let native = ["malloc", "main"];
        assert_eq!(start_of(StackStart::Leaf, &native), at(0, 0));
    }
}

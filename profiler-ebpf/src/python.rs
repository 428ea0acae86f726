//! Reads the frame chain of a CPython thread into the CPU sample being built: the frames
//! live in the interpreter's memory only while they run, so they are read at sample time;
//! userspace names their code objects later, once each.

use aya_ebpf::helpers::bpf_probe_read_user;
use profiler_common::{
    PYTHON_FRAMES_MAX, PYTHON_NO_FIELD, PYTHON_NOT_A_THREAD, PYTHON_THREADS_WALK,
    PYTHON_WAIT_FRAMES, PythonFrames, PythonProcess, python_code_key,
};

use crate::shared::{PYTHON_PROCESSES, PYTHON_THREADS, mix};

/// The low bits of a frame's code reference that are a tag, not the address.
const PYTHON_REF_TAG: u64 = 7;

#[inline(always)]
fn user_u64(addr: u64) -> u64 {
    // SAFETY: a probe read, which never faults.
    unsafe { bpf_probe_read_user(addr as *const u64) }.unwrap_or(0)
}

/// The kernel tid of the thread whose `PyThreadState` is at `tstate`, or 0.
#[inline(always)]
fn tid_of(tstate: u64, py: &PythonProcess) -> u32 {
    let id = user_u64(tstate + u64::from(py.tstate_tid));
    if py.pthread_tid == 0 {
        return id as u32;
    }
    if id == 0 {
        return 0;
    }
    // SAFETY: a probe read, which never faults.
    unsafe { bpf_probe_read_user((id + u64::from(py.pthread_tid)) as *const u32) }.unwrap_or(0)
}

/// The `PyThreadState` of thread `tid`: `cached` (the thread map's) when it still names
/// the thread, else the first of the interpreter's list of the first
/// [`PYTHON_THREADS_WALK`] that does (a thread newer than the map, or a tid reused since);
/// 0 when none does.
#[inline(always)]
pub fn thread_state(py: &PythonProcess, tid: u32, cached: u64) -> u64 {
    if cached == PYTHON_NOT_A_THREAD {
        return 0;
    }
    if cached != 0 && tid_of(cached, py) == tid {
        return cached;
    }
    let interp = user_u64(py.interpreters_head);
    if interp == 0 {
        return 0;
    }
    let mut tstate = user_u64(interp + u64::from(py.threads_head));
    for _ in 0..PYTHON_THREADS_WALK {
        if tstate == 0 {
            break;
        }
        if tid_of(tstate, py) == tid {
            return tstate;
        }
        tstate = user_u64(tstate + u64::from(py.tstate_next));
    }
    0
}

/// The first frame of the thread whose `PyThreadState` is at `tstate`, or 0.
#[inline(always)]
fn first_frame(tstate: u64, py: &PythonProcess) -> u64 {
    if tstate == 0 {
        return 0;
    }
    let frame = user_u64(tstate + u64::from(py.tstate_frame));
    if py.cframe_frame != PYTHON_NO_FIELD && frame != 0 {
        return user_u64(frame + u64::from(py.cframe_frame));
    }
    frame
}

/// What tells apart the Python lines thread `tid` of process `tgid` waits at: a hash of
/// its innermost [`PYTHON_WAIT_FRAMES`] frames' code object addresses and instruction
/// words, 0 when it is no CPython thread or runs no Python code. Three reads a frame: the
/// names and lines are userspace's to find, from the stack sampled for the site.
#[inline(always)]
pub fn wait_hash(tgid: u32, tid: u32) -> u64 {
    // SAFETY: map values, copied out.
    let Some(py) = (unsafe { PYTHON_PROCESSES.get(&tgid) }) else {
        return 0;
    };
    // SAFETY: as above.
    let cached = unsafe { PYTHON_THREADS.get(&tid) }.map_or(0, |t| *t);
    let mut frame = first_frame(thread_state(py, tid, cached), py);
    if frame == 0 {
        return 0;
    }
    let mut hash = 0xcbf2_9ce4_8422_2325;
    for _ in 0..PYTHON_WAIT_FRAMES {
        if frame == 0 {
            break;
        }
        hash = mix(
            hash,
            user_u64(frame + u64::from(py.frame_code)) & !PYTHON_REF_TAG,
        );
        // 3.8-3.10 keep an int here, read with the next field: stable while a frame waits.
        hash = mix(hash, user_u64(frame + u64::from(py.frame_instr)));
        frame = user_u64(frame + u64::from(py.frame_previous));
    }
    // Never 0, which is every other thread's.
    hash | 1
}

/// Reads the frames of the thread whose `PyThreadState` is at `tstate` into `out`,
/// innermost first, by the offsets of `py`; false when it has none (no Python code runs,
/// or `tstate` is 0: no state was found).
///
/// # Safety
/// `out` points to writable room for a [`PythonFrames`].
#[inline(always)]
pub unsafe fn read(tstate: u64, py: &PythonProcess, out: *mut PythonFrames) -> bool {
    let mut frame = first_frame(tstate, py);
    // SAFETY: the caller's room; `i` stays below PYTHON_FRAMES_MAX.
    unsafe {
        (*out).count = 0;
        (*out).truncated = 0;
        if frame == 0 {
            return false;
        }
        let mut i = 0usize;
        while i < PYTHON_FRAMES_MAX {
            if frame == 0 {
                break;
            }
            let slot = &mut (*out).frames[i];
            // 3.14 tags the reference in its low bits (`_PyStackRef`); objects are
            // aligned to 16, so clearing them is harmless before.
            slot.code = user_u64(frame + u64::from(py.frame_code)) & !PYTHON_REF_TAG;
            let name = user_u64(slot.code + u64::from(py.code_name));
            let first_line =
                bpf_probe_read_user((slot.code + u64::from(py.code_firstlineno)) as *const u32)
                    .unwrap_or(0);
            slot.key = python_code_key(name, first_line);
            // `f_lasti` is an int; the pointers of 3.11 on are words. The high half of an
            // int read as a word is userspace's to drop.
            slot.instr = user_u64(frame + u64::from(py.frame_instr));
            (*out).markers[i] = if py.frame_marker == PYTHON_NO_FIELD {
                0
            } else {
                bpf_probe_read_user((frame + u64::from(py.frame_marker)) as *const u8).unwrap_or(0)
            };
            frame = user_u64(frame + u64::from(py.frame_previous));
            i += 1;
        }
        (*out).count = i as u32;
        (*out).truncated = u32::from(frame != 0);
        i > 0
    }
}

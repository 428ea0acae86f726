//! The registers that key a call site, read from a syscall's user registers: what the I/O
//! and blocking programs aggregate by, so they live apart from both.

use aya_ebpf::helpers::bpf_probe_read_user;

use crate::regs;

/// Largest distance from the stack pointer at which `rbp` still counts as a frame pointer.
const MAX_STACK_BYTES: u64 = 8 << 20;

/// The registers that key a call site.
pub struct SiteRegisters {
    /// User instruction pointer.
    pub ip: u64,
    /// User stack pointer.
    pub sp: u64,
    /// User frame pointer, or 0 when `rbp` held data.
    pub bp: u64,
    /// `[bp + 8]`, the return address above that frame, or 0.
    pub ret: u64,
}

/// Reads the registers that key a call site from the syscall's user registers. `rbp` is a
/// frame pointer only if it points a little above the stack pointer; C libraries built
/// without frame pointers use it for data (a futex value, say), which must not split sites.
#[inline(always)]
pub fn site_registers(regs: *const u64) -> SiteRegisters {
    // SAFETY: the tracepoint's BTF-typed pt_regs argument: the verifier checks these loads
    // against the struct's layout; the user read goes through a probe-read helper.
    unsafe {
        let (ip, sp, bp) = (
            *regs.add(regs::IP / 8),
            *regs.add(regs::SP / 8),
            *regs.add(regs::BP / 8),
        );
        site_registers_of(ip, sp, bp)
    }
}

/// The registers that key an I/O call site of a Go process: as [`site_registers`] without
/// the return address, which is the `syscall` package's own there (see `IoKey::ret`).
#[inline(always)]
pub fn go_site_registers(regs: *const u64) -> SiteRegisters {
    // SAFETY: as in `site_registers`.
    let (ip, sp, bp) = unsafe {
        (
            *regs.add(regs::IP / 8),
            *regs.add(regs::SP / 8),
            *regs.add(regs::BP / 8),
        )
    };
    let bp = if is_frame_pointer(sp, bp) { bp } else { 0 };
    SiteRegisters { ip, sp, bp, ret: 0 }
}

/// Whether `bp` can be a frame pointer for the stack at `sp`.
#[inline(always)]
fn is_frame_pointer(sp: u64, bp: u64) -> bool {
    bp > sp && bp - sp <= MAX_STACK_BYTES && bp % 8 == 0
}

/// The site of `ip`, `sp` and `bp`, with the return address above `bp` when `bp` is a
/// frame pointer.
#[inline(always)]
pub fn site_registers_of(ip: u64, sp: u64, bp: u64) -> SiteRegisters {
    if !is_frame_pointer(sp, bp) {
        return SiteRegisters {
            ip,
            sp,
            bp: 0,
            ret: 0,
        };
    }
    // SAFETY: a probe read of user memory never faults.
    let ret = unsafe { bpf_probe_read_user((bp + 8) as *const u64) }.unwrap_or(0);
    SiteRegisters { ip, sp, bp, ret }
}

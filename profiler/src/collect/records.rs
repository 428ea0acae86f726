//! Reads the stack samples the kernel programs send through the ring buffer.

use profiler_common::{
    COMM_LEN, GO_FRAMES_BYTES, GO_LABELS_BYTES, GoLabels, MAX_KERNEL_FRAMES, PYTHON_FRAMES_BYTES,
    PythonFrames, SAMPLE_FIXED_BYTES, SampleHeader, sample_flag,
};

/// One stack sample as it came out of the ring buffer, borrowed from it.
#[derive(Debug, Clone, Copy)]
pub struct SampleView<'a> {
    /// What, where and whose.
    pub header: SampleHeader,
    kernel: &'a [u8],
    user: &'a [u8],
    go_labels: Option<&'a [u8]>,
    python: Option<&'a [u8]>,
}

impl<'a> SampleView<'a> {
    /// Parses one ring-buffer item; `None` when it is too short for what its header says
    /// (which the kernel programs never send).
    pub fn parse(item: &'a [u8]) -> Option<Self> {
        if item.len() < SAMPLE_FIXED_BYTES {
            return None;
        }
        // SAFETY: the kernel wrote a SampleHeader at the start; read_unaligned copes with
        // any alignment, and every bit pattern is a valid SampleHeader.
        let header: SampleHeader = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
        let kernel_start = size_of::<SampleHeader>();
        let kernel_len = (header.kernel_bytes as usize).min(MAX_KERNEL_FRAMES * 8) & !7;
        let user_len = header.user_bytes as usize;
        let mut user = item.get(SAMPLE_FIXED_BYTES..SAMPLE_FIXED_BYTES.checked_add(user_len)?)?;
        let mut go_labels = None;
        if header.flags & sample_flag::GO_LABELS != 0 {
            let (labels, rest) = user.split_at_checked(GO_LABELS_BYTES)?;
            go_labels = Some(labels);
            user = rest;
        }
        let mut python = None;
        if header.flags & sample_flag::PYTHON_FRAMES != 0 {
            let (frames, rest) = user.split_at_checked(PYTHON_FRAMES_BYTES)?;
            python = Some(frames);
            user = rest;
        }
        Some(Self {
            header,
            kernel: &item[kernel_start..kernel_start + kernel_len],
            user,
            go_labels,
            python,
        })
    }

    /// Kernel return addresses, leaf first.
    pub fn kernel_frames(&self) -> Vec<u64> {
        words(self.kernel)
    }

    /// The user frames the kernel walked, in frame-pointer mode; `None` when the sample
    /// carries a stack copy instead.
    pub fn user_frames(&self) -> Option<Vec<u64>> {
        (self.header.flags & sample_flag::USER_FRAMES != 0).then(|| words(self.user))
    }

    /// The copy of the user stack from `header.sp` upwards (empty in frame-pointer mode).
    pub fn user_stack(&self) -> &'a [u8] {
        if self.header.flags & sample_flag::USER_FRAMES != 0 {
            &[]
        } else if self.header.flags & sample_flag::GO_FRAMES != 0 {
            self.user.get(GO_FRAMES_BYTES..).unwrap_or_default()
        } else {
            self.user
        }
    }

    /// A Go process's frame-pointer chain, sent beside its stack copy, leaf first.
    pub fn go_frames(&self) -> Option<Vec<u64>> {
        (self.header.flags & sample_flag::GO_FRAMES != 0)
            .then(|| words(self.user.get(..GO_FRAMES_BYTES).unwrap_or(self.user)))
    }

    /// The profiler labels of the goroutine a Go process's thread ran, where it had some.
    pub fn go_labels(&self) -> Option<GoLabels> {
        // SAFETY: the slice holds GO_LABELS_BYTES (checked at parse); read_unaligned copes
        // with any alignment, and every bit pattern is a valid GoLabels.
        self.go_labels
            .map(|bytes| unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) })
    }

    /// The Python frames a CPython thread's CPU sample carries.
    pub fn python_frames(&self) -> Option<PythonFrames> {
        // SAFETY: the slice holds PYTHON_FRAMES_BYTES (checked at parse); read_unaligned
        // copes with any alignment, and every bit pattern is a valid PythonFrames.
        self.python
            .map(|bytes| unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) })
    }

    /// Whether the thread's stack ended before the copy's size.
    pub fn stack_ends(&self) -> bool {
        self.header.flags & sample_flag::STACK_ENDS != 0
    }

    /// Whether the thread has no user context (a kernel thread).
    pub fn no_user(&self) -> bool {
        self.header.flags & sample_flag::NO_USER != 0
    }

    /// Whether the user stack could not be read at all.
    pub fn user_unreadable(&self) -> bool {
        self.header.flags & sample_flag::USER_UNREADABLE != 0
    }
}

fn words(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
        .take_while(|&w| w != 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use profiler_common::{SampleRecord, sample_kind};

    fn record(flags: u32, kernel: &[u64], user: &[u8]) -> Vec<u8> {
        // SAFETY: all-zero bytes are a valid SampleRecord (integers and arrays).
        let mut rec: Box<SampleRecord> = Box::new(unsafe { std::mem::zeroed() });
        rec.header.kind = sample_kind::CPU;
        rec.header.pid = 7;
        rec.header.flags = flags;
        rec.header.kernel_bytes = (kernel.len() * 8) as u32;
        rec.header.user_bytes = user.len() as u32;
        rec.kernel[..kernel.len()].copy_from_slice(kernel);
        rec.user[..user.len()].copy_from_slice(user);
        // SAFETY: a SampleRecord is plain bytes.
        let all = unsafe {
            std::slice::from_raw_parts((&raw const *rec).cast::<u8>(), size_of::<SampleRecord>())
        };
        all[..SAMPLE_FIXED_BYTES + user.len()].to_vec()
    }

    #[test]
    fn reads_a_stack_copy_and_kernel_frames() {
        let bytes = record(
            sample_flag::STACK_ENDS,
            &[0xffff_0001, 0xffff_0002],
            &[1, 2, 3, 4],
        );
        let view = SampleView::parse(&bytes).unwrap();
        assert_eq!(view.header.pid, 7);
        assert_eq!(view.kernel_frames(), vec![0xffff_0001, 0xffff_0002]);
        assert_eq!(view.user_stack(), &[1, 2, 3, 4]);
        assert!(view.user_frames().is_none());
        assert!(view.stack_ends());
    }

    #[test]
    fn reads_frame_pointer_frames() {
        let user: Vec<u8> = [0x401000u64, 0x402000]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        let bytes = record(sample_flag::USER_FRAMES, &[], &user);
        let view = SampleView::parse(&bytes).unwrap();
        assert_eq!(view.user_frames(), Some(vec![0x401000, 0x402000]));
        assert!(view.user_stack().is_empty());
    }

    #[test]
    fn reads_a_go_sample_s_frames_and_the_copy_after_them() {
        let mut user = vec![0u8; GO_FRAMES_BYTES];
        user[..16]
            .copy_from_slice(&[0x401000u64.to_le_bytes(), 0x402000u64.to_le_bytes()].concat());
        user.extend_from_slice(&[9; 24]);
        let bytes = record(sample_flag::GO_FRAMES, &[], &user);
        let view = SampleView::parse(&bytes).unwrap();
        assert_eq!(view.go_frames(), Some(vec![0x401000, 0x402000]));
        assert_eq!(view.user_stack(), &[9; 24]);
        assert!(view.user_frames().is_none());
        let plain = record(0, &[], &[9; 24]);
        assert!(SampleView::parse(&plain).unwrap().go_frames().is_none());
    }

    #[test]
    fn reads_a_go_sample_s_labels_before_its_frames_and_copy() {
        let mut user = vec![0u8; GO_LABELS_BYTES];
        user[..8].copy_from_slice(&[3, 0, 0, 0, 1, 0, 0, 0]);
        let mut frames = vec![0u8; GO_FRAMES_BYTES];
        frames[..8].copy_from_slice(&0x401000u64.to_le_bytes());
        user.extend_from_slice(&frames);
        user.extend_from_slice(&[9; 24]);
        let flags = sample_flag::GO_LABELS | sample_flag::GO_FRAMES;
        let bytes = record(flags, &[], &user);
        let view = SampleView::parse(&bytes).unwrap();
        let labels = view.go_labels().unwrap();
        assert_eq!((labels.count, labels.kept), (3, 1));
        assert_eq!(view.go_frames(), Some(vec![0x401000]));
        assert_eq!(view.user_stack(), &[9; 24]);
        // A set cut short is a malformed item, not a set read from the stack copy.
        let short = record(sample_flag::GO_LABELS, &[], &[0; 16]);
        assert!(SampleView::parse(&short).is_none());
    }

    #[test]
    fn a_short_item_is_refused() {
        let mut bytes = record(0, &[], &[0; 16]);
        bytes.truncate(bytes.len() - 8);
        assert!(SampleView::parse(&bytes).is_none());
        assert!(SampleView::parse(&[0; 16]).is_none());
    }
}

/// A NUL-padded kernel command name as text.
pub fn comm(raw: &[u8; COMM_LEN]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

#[cfg(test)]
mod comm_tests {
    use super::*;

    #[test]
    fn comm_stops_at_nul() {
        let mut raw = [0u8; COMM_LEN];
        raw[..4].copy_from_slice(b"bash");
        assert_eq!(comm(&raw), "bash");
        assert_eq!(comm(&[b'x'; COMM_LEN]), "x".repeat(COMM_LEN));
    }
}

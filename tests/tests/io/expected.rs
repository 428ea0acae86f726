//! What the fixtures did: the calls and bytes each function counted itself.

use integration_tests::FixtureResult;

/// What one function of a fixture did, by syscall: `(syscall, calls, bytes)`.
#[derive(Debug)]
pub(crate) struct Expected {
    pub(crate) function: &'static str,
    pub(crate) parts: Vec<(&'static str, u64, u64)>,
}

impl Expected {
    pub(crate) fn calls(&self) -> u64 {
        self.parts.iter().map(|p| p.1).sum()
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.2).sum()
    }
}

/// The io_mix functions and what each one's own count says it did.
pub(crate) fn io_mix_expected(m: &FixtureResult) -> Vec<Expected> {
    let one = |function: &'static str, syscall: &'static str| Expected {
        function,
        parts: vec![(
            syscall,
            m.u64(&format!("{function}_calls")),
            m.u64(&format!("{function}_bytes")),
        )],
    };
    vec![
        one("tiny_reads", "pread64"),
        one("line_writes", "write"),
        one("chunked_reads", "read"),
        Expected {
            function: "socket_ping",
            parts: vec![
                (
                    "sendto",
                    m.u64("socket_ping_send_calls"),
                    m.u64("socket_ping_send_bytes"),
                ),
                (
                    "recvfrom",
                    m.u64("socket_ping_recv_calls"),
                    m.u64("socket_ping_recv_bytes"),
                ),
            ],
        },
        one("vector_writes", "writev"),
    ]
}

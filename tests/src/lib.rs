//! Integration tests live in tests/tests; this crate builds no library code.

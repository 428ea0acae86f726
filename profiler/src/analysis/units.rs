//! Quantities in words (thousands separators, times and sizes in readable units), shared
//! by the findings' text and every output.

/// A number with thousands separators: 1234567 -> 1,234,567.
pub fn group(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Nanoseconds in the largest unit that keeps the number readable: µs, ms or s.
pub fn human_time(ns: i64) -> String {
    let n = ns as f64;
    // unsigned_abs: i64::MIN, which a file can hold, has no i64 absolute value.
    if ns.unsigned_abs() >= 1_000_000_000 {
        format!("{:.2} s", n / 1e9)
    } else if ns.unsigned_abs() >= 1_000_000 {
        format!("{:.1} ms", n / 1e6)
    } else {
        format!("{:.1} µs", n / 1e3)
    }
}

/// Bytes in B, KiB, MiB or GiB.
pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

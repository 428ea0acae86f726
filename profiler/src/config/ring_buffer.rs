//! The size of the stack-sample ring buffer as `--ring-buffer SIZE` gives it and as the
//! summary writes it back (`64M`), so the flag a loss line tells the user to rerun with is
//! one this parser takes.

/// The smallest ring buffer: a power of two that is a whole number of pages on every page
/// size Linux uses (4, 16 and 64 KiB).
pub const MIN_BYTES: u32 = 1 << 20;

/// The largest ring buffer `--ring-buffer` takes: kernel memory the profiler holds for the
/// whole run, so more than a gibibyte is more likely a typo than a need.
pub const MAX_BYTES: u32 = 1 << 30;

/// The bytes `text` asks for, rounded up to a power of two: a number with a unit `K`, `M`
/// or `G` (powers of 1024; `KiB`, `MiB` and `GiB` too), or a plain number of bytes. The
/// error is one line saying what is accepted.
pub fn parse(text: &str) -> Result<u32, String> {
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return Err(format!("{text:?} is not a size: give one like 64M or 1G")),
    };
    let Ok(number) = number.parse::<u64>() else {
        return Err(format!("{text:?} is not a size: give one like 64M or 1G"));
    };
    let bytes = number.checked_shl(shift).filter(|b| b >> shift == number);
    match bytes {
        Some(bytes) if bytes < u64::from(MIN_BYTES) => Err(format!(
            "{text} is less than the smallest ring buffer, {}: give a size with its unit, \
             as in 64M",
            flag_value(MIN_BYTES)
        )),
        Some(bytes) if bytes <= u64::from(MAX_BYTES) => {
            Ok(u32::try_from(bytes.next_power_of_two()).unwrap_or(MAX_BYTES))
        }
        _ => Err(format!(
            "{text} is more than the largest ring buffer, {}",
            flag_value(MAX_BYTES)
        )),
    }
}

/// `bytes` as `--ring-buffer` takes it: whole mebibytes (`64M`), rounded up.
pub fn flag_value(bytes: u32) -> String {
    format!("{}M", u64::from(bytes).div_ceil(1 << 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_units_and_round_up_to_a_power_of_two() {
        assert_eq!(parse("64M"), Ok(64 << 20));
        assert_eq!(parse("64MiB"), Ok(64 << 20));
        assert_eq!(parse("1g"), Ok(1 << 30));
        assert_eq!(parse("1024K"), Ok(1 << 20));
        assert_eq!(parse("48M"), Ok(64 << 20));
        assert_eq!(parse("1048577"), Ok(2 << 20));
        assert_eq!(parse("33554432"), Ok(32 << 20));
    }

    #[test]
    fn sizes_out_of_bounds_or_malformed_are_refused_in_one_line() {
        for bad in [
            "",
            "M",
            "64X",
            "-1M",
            "1.5G",
            "64 M",
            "999999999999999999999G",
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(
                err.contains("64M") || err.contains("largest"),
                "{bad}: {err}"
            );
            assert!(!err.contains('\n'), "{err}");
        }
        assert!(
            parse("64")
                .unwrap_err()
                .contains("smallest ring buffer, 1M")
        );
        assert!(parse("512K").is_err());
        assert!(
            parse("2G")
                .unwrap_err()
                .contains("largest ring buffer, 1024M")
        );
        assert!(parse("17179869184G").is_err());
    }

    #[test]
    fn the_flag_value_written_back_parses_to_the_same_size() {
        for bytes in [MIN_BYTES, 32 << 20, MAX_BYTES] {
            assert_eq!(parse(&flag_value(bytes)), Ok(bytes));
        }
        assert_eq!(flag_value(2 << 20), "2M");
    }
}

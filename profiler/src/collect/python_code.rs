//! Decodes what CPython keeps in a code object: its strings and the line of a bytecode
//! offset, from the three line-table formats (3.8–3.9 `co_lnotab`, 3.10 `co_linetable`
//! pairs, 3.11 on the location table; see CPython's `Objects/lnotab_notes.txt` and
//! `InternalDocs/locations.md`).

use crate::collect::python_layout::LineTable;

/// The line that the instruction at `offset` (bytes into the bytecode) belongs to, from
/// the line table `table` of a code object whose first line is `first`; `first` when the
/// table covers no such instruction or marks it as having no line.
pub fn line_of(format: LineTable, table: &[u8], first: u32, offset: u64) -> u32 {
    let line = match format {
        LineTable::Lnotab => lnotab(table, i64::from(first), offset),
        LineTable::Pairs => pairs(table, i64::from(first), offset),
        LineTable::Locations => locations(table, i64::from(first), offset / 2),
    };
    u32::try_from(line).ok().filter(|&l| l > 0).unwrap_or(first)
}

/// 3.8, 3.9: (bytecode bytes, signed line delta) pairs; the line is the sum of the deltas
/// of the pairs that start at or before `offset`.
fn lnotab(table: &[u8], first: i64, offset: u64) -> i64 {
    let mut line = first;
    let mut address = 0u64;
    for pair in table.chunks_exact(2) {
        address += u64::from(pair[0]);
        if address > offset {
            break;
        }
        line += i64::from(pair[1] as i8);
    }
    line
}

/// 3.10: each pair covers the next `bytes` of bytecode with the line moved by a signed
/// delta, or no line when the delta is -128 (the line moves by nothing then).
fn pairs(table: &[u8], first: i64, offset: u64) -> i64 {
    let mut line = first;
    let mut end = 0u64;
    for pair in table.chunks_exact(2) {
        let start = end;
        end += u64::from(pair[0]);
        let delta = pair[1] as i8;
        let here = if delta == -128 {
            None
        } else {
            line += i64::from(delta);
            Some(line)
        };
        if (start..end).contains(&offset) {
            return here.unwrap_or(first);
        }
    }
    first
}

/// 3.11 on: entries of a first byte `1cccclll` (code `c`, `l + 1` code units) and the
/// code's operands; the line moves by each entry's delta, and `unit` is in code units.
fn locations(table: &[u8], first: i64, unit: u64) -> i64 {
    let mut line = first;
    let mut at = 0usize;
    let mut start = 0u64;
    while at < table.len() {
        let head = table[at];
        at += 1;
        if head & 0x80 == 0 {
            // Not an entry's first byte: the table is not what it should be.
            return first;
        }
        let code = (head >> 3) & 15;
        let length = u64::from(head & 7) + 1;
        let here = match code {
            15 => None,
            14 => {
                line = line.wrapping_add(signed_varint(table, &mut at));
                // End line, column and end column.
                for _ in 0..3 {
                    varint(table, &mut at);
                }
                Some(line)
            }
            13 => {
                line = line.wrapping_add(signed_varint(table, &mut at));
                Some(line)
            }
            10..=12 => {
                line += i64::from(code) - 10;
                at += 2;
                Some(line)
            }
            _ => {
                at += 1;
                Some(line)
            }
        };
        let end = start + length;
        if (start..end).contains(&unit) {
            return here.unwrap_or(first);
        }
        start = end;
    }
    first
}

/// A location table's unsigned varint: 6 bits a byte, least significant first, bit 6
/// set on every byte but the last.
fn varint(table: &[u8], at: &mut usize) -> u64 {
    let mut value = 0u64;
    let mut shift = 0;
    while let Some(&byte) = table.get(*at) {
        *at += 1;
        if shift < 64 {
            value |= u64::from(byte & 63) << shift;
        }
        shift += 6;
        if byte & 64 == 0 {
            break;
        }
    }
    value
}

/// A location table's signed varint: the sign in the lowest bit.
fn signed_varint(table: &[u8], at: &mut usize) -> i64 {
    let value = varint(table, at);
    let magnitude = (value >> 1) as i64;
    if value & 1 != 0 {
        -magnitude
    } else {
        magnitude
    }
}

/// The `state` bits of a `PyASCIIObject`: `kind` (bits 2–4), `compact` (5), `ascii` (6),
/// the same from 3.8 to 3.13.
pub fn string_shape(state: u32) -> (u32, bool, bool) {
    (
        (state >> 2) & 7,
        state & (1 << 5) != 0,
        state & (1 << 6) != 0,
    )
}

/// The text of a compact string's characters `data`, of `kind` bytes each (1, 2 or 4).
pub fn decode_string(data: &[u8], kind: u32) -> Option<String> {
    match kind {
        1 => Some(data.iter().map(|&b| char::from(b)).collect()),
        2 => {
            let units: Vec<u16> = data
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            Some(String::from_utf16_lossy(&units))
        }
        4 => data
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lnotab_sums_the_deltas_before_the_offset() {
        // Lines 10 (bytes 0..6), 11 (6..10), 9 (10..).
        let table = [6, 1, 4, (-2i8) as u8];
        assert_eq!(line_of(LineTable::Lnotab, &table, 10, 0), 10);
        assert_eq!(line_of(LineTable::Lnotab, &table, 10, 6), 11);
        assert_eq!(line_of(LineTable::Lnotab, &table, 10, 8), 11);
        assert_eq!(line_of(LineTable::Lnotab, &table, 10, 12), 9);
    }

    #[test]
    fn pairs_cover_ranges_and_minus_128_has_no_line() {
        // 0..4 line 5 (+0), 4..8 no line, 8..12 line 7 (+2).
        let table = [4, 0, 4, 0x80, 4, 2];
        assert_eq!(line_of(LineTable::Pairs, &table, 5, 2), 5);
        assert_eq!(line_of(LineTable::Pairs, &table, 5, 6), 5);
        assert_eq!(line_of(LineTable::Pairs, &table, 5, 10), 7);
    }

    #[test]
    fn location_entries_of_each_form_move_the_line() {
        let table = [
            // No column, +1 line (signed varint 2), 2 units: 0..2 line 21.
            0x80 | (13 << 3) | 1,
            2,
            // One-line form, +2, 1 unit, two column bytes: 2..3 line 23.
            0x80 | (12 << 3),
            4,
            9,
            // Short form, same line, 3 units: 3..6 line 23.
            0x80 | (3 << 3) | 2,
            0x11,
            // No location, 1 unit: 6..7.
            0x80 | (15 << 3),
            // Long form, -3 lines (signed varint 7), end line, columns: 7..8 line 20.
            0x80 | (14 << 3),
            7,
            0,
            1,
            1,
        ];
        let line = |unit: u64| line_of(LineTable::Locations, &table, 20, unit * 2);
        assert_eq!([line(0), line(1), line(2), line(4)], [21, 21, 23, 23]);
        assert_eq!(line(6), 20);
        assert_eq!(line(7), 20);
        assert_eq!(line(99), 20);
    }

    #[test]
    fn varints_take_six_bits_a_byte() {
        let mut at = 0;
        assert_eq!(varint(&[0x40 | 1, 2], &mut at), 1 | (2 << 6));
        assert_eq!(at, 2);
        let mut at = 0;
        assert_eq!(signed_varint(&[5], &mut at), -2);
    }

    #[test]
    fn strings_decode_by_kind() {
        assert_eq!(decode_string(b"fib", 1).as_deref(), Some("fib"));
        assert_eq!(decode_string(&[0xe9, 0], 2).as_deref(), Some("é"));
        assert_eq!(string_shape(0b110_0100), (1, true, true));
    }
}

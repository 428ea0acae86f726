//! A pass over a pprof protobuf's wire format that adds up what decoding it would allocate,
//! without allocating anything.
//!
//! prost decodes a whole message at once, and a few input bytes can make it allocate many
//! more (two bytes per empty string, each a 24-byte `String`): a file that is small on disk
//! could still take gigabytes. Counting first lets `profiler report` refuse such a file
//! before decoding it.

use std::mem::size_of;

use crate::proto;

/// Bytes the decoded [`proto::Profile`] of `buf` would take on the heap, counted as if
/// every vector had grown to twice its length (prost grows them by pushing).
///
/// # Errors
/// When `buf` is not well-formed protobuf; the decoder would refuse it too.
pub fn decoded_size(buf: &[u8]) -> Result<u64, &'static str> {
    let mut total = 0u64;
    let mut add = |n: usize, each: usize| total = total.saturating_add(2 * (n * each) as u64);
    for field in Fields::new(buf) {
        let (number, value) = field?;
        match (number, value) {
            (1 | 11, _) => add(1, size_of::<proto::ValueType>()),
            (2, Value::Bytes(sample)) => {
                add(1, size_of::<proto::Sample>());
                for field in Fields::new(sample) {
                    match field? {
                        (1 | 2, v) => add(v.varints(), size_of::<u64>()),
                        (3, _) => add(1, size_of::<proto::Label>()),
                        _ => {}
                    }
                }
            }
            (3, _) => add(1, size_of::<proto::Mapping>()),
            (4, Value::Bytes(location)) => {
                add(1, size_of::<proto::Location>());
                for field in Fields::new(location) {
                    if let (4, _) = field? {
                        add(1, size_of::<proto::Line>());
                    }
                }
            }
            (5, _) => add(1, size_of::<proto::Function>()),
            (6, Value::Bytes(s)) => add(1, size_of::<String>() + s.len()),
            (13, v) => add(v.varints(), size_of::<i64>()),
            _ => {}
        }
    }
    Ok(total)
}

/// One field's payload.
#[derive(Clone, Copy)]
enum Value<'a> {
    Varint,
    Fixed,
    Bytes(&'a [u8]),
}

impl Value<'_> {
    /// How many integers a repeated integer field holds: one unpacked, or each varint of
    /// a packed run (a byte without the continuation bit ends one).
    fn varints(self) -> usize {
        match self {
            Value::Bytes(b) => b.iter().filter(|&&byte| byte & 0x80 == 0).count(),
            _ => 1,
        }
    }
}

/// The top-level fields of one message, in order.
struct Fields<'a> {
    buf: &'a [u8],
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, failed: false }
    }

    fn varint(&mut self) -> Result<u64, &'static str> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let (&byte, rest) = self.buf.split_first().ok_or("a number is cut short")?;
            self.buf = rest;
            if shift < 64 {
                value |= u64::from(byte & 0x7f) << shift;
            }
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a number is longer than ten bytes")
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], &'static str> {
        let n = usize::try_from(n).map_err(|_| "a field is longer than the file")?;
        if n > self.buf.len() {
            return Err("a field is longer than the file");
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn field(&mut self) -> Result<(u64, Value<'a>), &'static str> {
        let key = self.varint()?;
        let value = match key & 7 {
            0 => {
                self.varint()?;
                Value::Varint
            }
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let len = self.varint()?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            // Groups are long deprecated and pprof has none.
            _ => return Err("it holds a field of an unknown wire type"),
        };
        Ok((key >> 3, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.buf.is_empty() {
            return None;
        }
        let field = self.field();
        self.failed = field.is_err();
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn counts_what_prost_would_allocate() {
        let p = proto::Profile {
            string_table: vec![String::new(); 1000],
            sample: vec![
                proto::Sample {
                    location_id: vec![1, 2, 300],
                    value: vec![1],
                    label: vec![],
                };
                10
            ],
            ..Default::default()
        };
        let size = decoded_size(&p.encode_to_vec()).unwrap();
        let expected =
            2 * (1000 * size_of::<String>() + 10 * (size_of::<proto::Sample>() + 4 * 8)) as u64;
        assert_eq!(size, expected);
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(decoded_size(&[0x32, 0x05, b'a']).is_err());
        assert!(decoded_size(&[0xff; 11]).is_err());
        assert!(decoded_size(&[0x0b]).is_err());
        assert_eq!(decoded_size(&[]), Ok(0));
    }
}

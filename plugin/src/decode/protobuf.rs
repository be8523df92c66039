//! The protobuf wire format, as far as OTLP needs it: reading the fields of a message
//! one by one, and writing the few small answers the HTTP server gives. A hand-written
//! reader keeps the OTLP definitions (and a code generator) out of the build for the
//! dozen fields one route reads.

/// One field's value, by wire type. Groups (wire types 3 and 4, deprecated since
/// proto2) are refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Reads the fields of one message in order.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// The next field (number and value), `None` at the end of the message.
    pub fn field(&mut self) -> Result<Option<(u32, Wire<'a>)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let at = self.pos;
        let key = self.varint()?;
        let number = u32::try_from(key >> 3)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("bad field number at byte {at}"))?;
        let value = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(u64::from_le_bytes(
                self.take(8)?
                    .try_into()
                    .map_err(|_| format!("truncated field {number} at byte {at}"))?,
            )),
            2 => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| format!("field {number} at byte {at} is too long"))?;
                Wire::Bytes(self.take(len)?)
            }
            5 => Wire::Fixed32(u32::from_le_bytes(
                self.take(4)?
                    .try_into()
                    .map_err(|_| format!("truncated field {number} at byte {at}"))?,
            )),
            w => return Err(format!("field {number} at byte {at} has wire type {w}")),
        };
        Ok(Some((number, value)))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| format!("truncated message: {n} bytes wanted at byte {}", self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| format!("truncated varint at byte {}", self.pos))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(format!(
            "varint longer than 10 bytes before byte {}",
            self.pos
        ))
    }
}

/// Appends a varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends field `number` as a varint (int32, int64, uint, bool; negative int32 and
/// int64 take ten bytes, as protobuf writes them).
pub fn put_varint_field(out: &mut Vec<u8>, number: u32, v: u64) {
    put_varint(out, u64::from(number) << 3);
    put_varint(out, v);
}

/// Appends field `number` as length-delimited bytes (a string or an embedded message).
pub fn put_bytes_field(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_varint(out, (u64::from(number) << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_back_as_written() {
        let mut inner = Vec::new();
        put_bytes_field(&mut inner, 2, "é".as_bytes());
        let mut m = Vec::new();
        put_varint_field(&mut m, 1, 300);
        put_varint_field(&mut m, 2, u64::MAX);
        put_bytes_field(&mut m, 15, &inner);
        m.extend_from_slice(&[(16 << 3 | 1) as u8, 1]);
        m.extend_from_slice(&7u64.to_le_bytes());
        m.extend_from_slice(&[(3 << 3 | 5) as u8]);
        m.extend_from_slice(&9u32.to_le_bytes());
        let mut r = Reader::new(&m);
        assert_eq!(r.field(), Ok(Some((1, Wire::Varint(300)))));
        assert_eq!(r.field(), Ok(Some((2, Wire::Varint(u64::MAX)))));
        assert_eq!(r.field(), Ok(Some((15, Wire::Bytes(&inner[..])))));
        assert_eq!(r.field(), Ok(Some((16, Wire::Fixed64(7)))));
        assert_eq!(r.field(), Ok(Some((3, Wire::Fixed32(9)))));
        assert_eq!(r.field(), Ok(None));
        let mut r = Reader::new(&inner);
        assert_eq!(r.field(), Ok(Some((2, Wire::Bytes("é".as_bytes())))));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bad in [
            &[0x0a, 0x05, 1, 2][..], // bytes past the end
            &[0x08, 0x80][..],       // truncated varint
            &[0x09, 1, 2, 3][..],    // truncated fixed64
            &[0x0b][..],             // a group
            &[0x00, 0x00][..],       // field number 0
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ][..],
            &[
                0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ][..],
        ] {
            let mut r = Reader::new(bad);
            let mut res = Ok(Some((1, Wire::Varint(0))));
            while let Ok(Some(_)) = res {
                res = r.field();
            }
            assert!(res.is_err(), "{bad:?}");
        }
    }
}

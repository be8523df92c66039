//! What the writer must know of a finished file before it goes: its size, its
//! footer's size (for `FileTargetSize`'s estimate) and its MD5 (for `UseHash` names),
//! read from memory or from the spool without loading a spooled file whole.

use crate::open_files::Body;

/// What [`Flusher::deliver`](super::Flusher::deliver) needs to know of a finished file before it goes: its
/// size, its footer's ([`footer_len`]), and its MD5 when `UseHash` names files by it. A
/// spool is read for these (the MD5 as a stream), never loaded whole.
pub(super) fn facts(body: &Body, md5: bool) -> std::io::Result<(u64, u64, Option<String>)> {
    use md5::{Digest, Md5};
    match body {
        Body::Memory(b) => Ok((
            b.len() as u64,
            footer_len(b),
            md5.then(|| crate::record::canonical::hex(&Md5::digest(b))),
        )),
        Body::Spooled(path) => {
            use std::io::{Read, Seek, SeekFrom};
            let mut f = std::fs::File::open(path)?;
            let len = f.metadata()?.len();
            let mut tail = Vec::with_capacity(8);
            f.seek(SeekFrom::Start(len.saturating_sub(8)))?;
            f.by_ref().read_to_end(&mut tail)?;
            let footer = footer_from_tail(&tail, len);
            let hash = match md5 {
                false => None,
                true => {
                    f.seek(SeekFrom::Start(0))?;
                    let mut h = Md5::new();
                    let mut buf = vec![0u8; 1 << 20];
                    loop {
                        match f.read(&mut buf)? {
                            0 => break,
                            n => h.update(&buf[..n]),
                        }
                    }
                    Some(crate::record::canonical::hex(&h.finalize()))
                }
            };
            Ok((len, footer, hash))
        }
    }
}

/// The bytes of a Parquet file that are not column data: the footer (its length is
/// stored in the 4 bytes before the closing magic) and the two 4-byte magics.
fn footer_len(file: &[u8]) -> u64 {
    let n = file.len();
    footer_from_tail(&file[n.saturating_sub(8)..], n as u64)
}

/// [`footer_len`] from the last (up to) 8 bytes of a file of `len` bytes.
fn footer_from_tail(tail: &[u8], len: u64) -> u64 {
    match tail {
        &[a, b, c, d, _, _, _, _] if len >= 12 => {
            (u64::from(u32::from_le_bytes([a, b, c, d])) + 12).min(len)
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::footer_len;

    #[test]
    fn footer_len_reads_the_length_before_the_closing_magic() {
        let mut f = b"PAR1data!".to_vec();
        f.extend_from_slice(b"0123456789");
        f.extend_from_slice(&10u32.to_le_bytes());
        f.extend_from_slice(b"PAR1");
        assert_eq!(footer_len(&f), 22);
        assert_eq!(footer_len(b"PAR1"), 0, "too short");
        let mut bad = b"PAR1".to_vec();
        bad.extend_from_slice(&u32::MAX.to_le_bytes());
        bad.extend_from_slice(b"PAR1");
        assert_eq!(footer_len(&bad), 12, "never more than the file");
    }
}

//! The canonical byte encoding of a log record, and the keyed HMAC over it.
//!
//! Upstream's "HMAC" was an unkeyed MD5 over a msgpack encoding whose map order was
//! random (D-D6), so nobody could recompute it. Ours is HMAC-SHA256 with a secret key
//! (`HmacKey`) over this encoding, which any consumer can reproduce:
//!
//! For every column of the log schema in file order, except `hmac` itself:
//! 1. the column name as UTF-8, then a 0x00 byte;
//! 2. the value:
//!    - string: `S`, u32 big-endian byte length, the bytes; null: `N`;
//!    - boolean: `T` or `F`; null: `N`;
//!    - map (`args`, `extra-fields`): `M`, u32 BE entry count, then the entries sorted by
//!      key bytes (then value bytes), each as u32 BE length + key bytes, u32 BE length +
//!      value bytes;
//!    - list (`tags`, `trace-ip`): `L`, u32 BE count, then each element in order as
//!      u32 BE length + bytes.
//!
//! The result is written to the `hmac` column as 64 lower-case hex digits.

use super::log::{COLUMNS, Col, LogBuilder, LogRecord, Str};
use hmac::{KeyInit, Mac};

/// Read access shared by a finished record and a record under construction.
pub trait LogView {
    fn str_col(&self, c: Str) -> Option<&str>;
    fn audit_col(&self) -> Option<bool>;
    fn auto_index_col(&self) -> Option<bool>;
    fn arg_pairs(&self) -> Vec<(&str, &str)>;
    fn extra_pairs(&self) -> Vec<(&str, &str)>;
    fn tag_list(&self) -> Vec<&str>;
    fn trace_list(&self) -> Vec<&str>;
}

/// The accessors that `LogRecord` and `LogBuilder` share by name; only `str_col` differs.
macro_rules! view_accessors {
    () => {
        fn audit_col(&self) -> Option<bool> {
            self.audit()
        }
        fn auto_index_col(&self) -> Option<bool> {
            self.auto_index()
        }
        fn arg_pairs(&self) -> Vec<(&str, &str)> {
            self.args().collect()
        }
        fn extra_pairs(&self) -> Vec<(&str, &str)> {
            self.extra_fields().collect()
        }
        fn tag_list(&self) -> Vec<&str> {
            self.tags().collect()
        }
        fn trace_list(&self) -> Vec<&str> {
            self.trace_ip().collect()
        }
    };
}

impl LogView for LogRecord {
    fn str_col(&self, c: Str) -> Option<&str> {
        self.get(c)
    }
    view_accessors!();
}

impl LogView for LogBuilder {
    fn str_col(&self, c: Str) -> Option<&str> {
        match self.get(c) {
            // Defaults that `finish` will apply must be part of the MAC.
            None if c.required() => Some(if c == Str::Level { "info" } else { "" }),
            v => v,
        }
    }
    view_accessors!();
}

fn bytes(out: &mut Vec<u8>, b: &str) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b.as_bytes());
}

/// Appends the canonical encoding of `r` to `out`.
pub fn encode(r: &dyn LogView, out: &mut Vec<u8>) {
    for col in COLUMNS {
        if col == Col::S(Str::Hmac) {
            continue;
        }
        out.extend_from_slice(col.name().as_bytes());
        out.push(0);
        match col {
            Col::S(s) => match r.str_col(s) {
                Some(v) => {
                    out.push(b'S');
                    bytes(out, v);
                }
                None => out.push(b'N'),
            },
            Col::Audit | Col::AutoIndex => {
                let v = if col == Col::Audit {
                    r.audit_col()
                } else {
                    r.auto_index_col()
                };
                out.push(match v {
                    Some(true) => b'T',
                    Some(false) => b'F',
                    None => b'N',
                });
            }
            Col::Args | Col::ExtraFields => {
                let mut pairs = if col == Col::Args {
                    r.arg_pairs()
                } else {
                    r.extra_pairs()
                };
                pairs.sort_unstable();
                out.push(b'M');
                out.extend_from_slice(&(pairs.len() as u32).to_be_bytes());
                for (k, v) in pairs {
                    bytes(out, k);
                    bytes(out, v);
                }
            }
            Col::Tags | Col::TraceIp => {
                let items = if col == Col::Tags {
                    r.tag_list()
                } else {
                    r.trace_list()
                };
                out.push(b'L');
                out.extend_from_slice(&(items.len() as u32).to_be_bytes());
                for v in items {
                    bytes(out, v);
                }
            }
        }
    }
}

/// HMAC-SHA256 of `data` under `key`, as lower-case hex.
pub fn hmac_hex(key: &[u8], data: &[u8]) -> String {
    // HMAC accepts keys of any length, so construction cannot fail.
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(data);
    hex(&mac.finalize().into_bytes())
}

pub fn hex(b: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(D[(x >> 4) as usize] as char);
        s.push(D[(x & 15) as usize] as char);
    }
    s
}

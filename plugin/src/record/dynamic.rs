//! A `RecordType=dynamic` record: every field of the input, kept as compact msgpack until
//! conversion, plus its event time.
//!
//! Storing the map as msgpack (one allocation, about 60 % of the JSON size) keeps the
//! buffer cheap and lets the converter infer the schema over the whole batch before it
//! builds any column.

use super::field_rules::FieldRules;
use crate::decode::msgpack::{Reader, write};
use crate::value::{Doc, Node, ValRef};

/// What happens to a field when a record is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldAction {
    Keep,
    /// `IgnoredFields` (and the reserved `_event_time`, which became the event time).
    Drop,
    /// `MaskFields`: the value becomes `"*"`.
    Mask,
}

/// Nanoseconds since the epoch from a time value: an RFC 3339 string or an epoch number
/// (unit guessed from its magnitude, as for log records).
pub fn time_ns(v: ValRef<'_, '_>) -> Option<i64> {
    match v.node() {
        Node::Str(s) => crate::timeutil::parse_timestamp_ns(s),
        Node::Int(_) | Node::UInt(_) | Node::Float(_) => {
            let mut s = String::new();
            v.write_json(&mut s);
            crate::timeutil::parse_timestamp_ns(&s)
        }
        _ => None,
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct DynRecord {
    /// A msgpack map.
    data: Box<[u8]>,
    /// Event time (nanoseconds since the epoch).
    event_ns: i64,
}

impl super::prefetch::Prefetch for DynRecord {
    fn prefetch(&self) {
        super::prefetch::lines(&self.data);
    }
}

impl DynRecord {
    /// Keeps `map` (a map value) with its event time.
    pub fn new(map: ValRef<'_, '_>, event_ns: i64) -> DynRecord {
        let mut buf = Vec::new();
        write::value(&mut buf, map);
        DynRecord {
            data: buf.into_boxed_slice(),
            event_ns,
        }
    }

    /// Keeps `map` with `rules` applied (fields dropped or masked, nested ones too).
    /// `buf` is scratch space reused across records.
    pub fn filtered(
        map: ValRef<'_, '_>,
        event_ns: i64,
        buf: &mut Vec<u8>,
        rules: &FieldRules,
    ) -> DynRecord {
        buf.clear();
        rules.write_filtered(map, buf);
        DynRecord {
            data: buf.as_slice().into(),
            event_ns,
        }
    }

    pub fn event_ns(&self) -> i64 {
        self.event_ns
    }

    /// The record's fields, decoded into `doc` (cleared first). The bytes were written
    /// by us, so this fails only on corruption.
    pub fn decode_into<'a>(&'a self, doc: &mut Doc<'a>) -> Result<(), String> {
        doc.clear();
        Reader::new(&self.data)
            .value(Some(doc))
            .map_err(|e| e.to_string())
    }

    pub fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.data.len()
    }

    pub fn to_json(&self) -> String {
        let mut d = Doc::new();
        match self.decode_into(&mut d) {
            Ok(()) => d.root().map(|r| r.to_json()).unwrap_or_default(),
            Err(e) => format!("{{\"_error\":{:?}}}", e),
        }
    }

    /// Wire form: `D1`, i64 LE event time, the msgpack bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"D1");
        out.extend_from_slice(&self.event_ns.to_le_bytes());
        out.extend_from_slice(&self.data);
    }

    pub fn decode(bytes: &[u8]) -> Result<DynRecord, String> {
        let rest = bytes.strip_prefix(b"D1").ok_or("not a dynamic record")?;
        if rest.len() < 8 {
            return Err("truncated dynamic record".into());
        }
        let (t, data) = rest.split_at(8);
        let mut ev = [0u8; 8];
        ev.copy_from_slice(t);
        // Validate now, so a corrupt element is caught where it is read.
        let mut r = Reader::new(data);
        r.value(None).map_err(|e| e.to_string())?;
        if !r.is_empty() {
            return Err("trailing bytes after a dynamic record".into());
        }
        Ok(DynRecord {
            data: data.into(),
            event_ns: i64::from_le_bytes(ev),
        })
    }
}

impl std::fmt::Debug for DynRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::json::JsonParser;

    #[test]
    fn keeps_fields_and_round_trips() {
        let mut p = JsonParser::new();
        let mut b = br#"{"a":1,"b":[true,null,"x"],"c":{"d":2.5}}"#.to_vec();
        let doc = p.parse(&mut b).unwrap();
        let r = DynRecord::new(doc.root().unwrap(), 42);
        assert_eq!(r.to_json(), r#"{"a":1,"b":[true,null,"x"],"c":{"d":2.5}}"#);
        let mut w = Vec::new();
        r.encode(&mut w);
        assert_eq!(DynRecord::decode(&w).unwrap(), r);
        for n in 0..w.len() {
            assert!(DynRecord::decode(&w[..n]).is_err());
        }
    }
}

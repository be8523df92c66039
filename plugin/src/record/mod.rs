//! The record model: what the buffer holds between decoding and conversion.

pub mod canonical;
pub mod dynamic;
pub mod field_rules;
mod key_memory;
pub mod log;
pub mod log_map;
pub mod prefetch;

pub use dynamic::DynRecord;
pub use log::{LogBuilder, LogRecord};
pub use log_map::{LogMapper, LogRules};

/// A decoded record, ready for the buffer.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Log(LogRecord),
    Dynamic(DynRecord),
}

impl Record {
    /// The log record, when this is one: batches may mix both kinds, and each kind is
    /// converted with its own schema.
    pub fn as_log(&self) -> Option<&LogRecord> {
        match self {
            Record::Log(l) => Some(l),
            Record::Dynamic(_) => None,
        }
    }

    /// The dynamic record, when this is one.
    pub fn as_dynamic(&self) -> Option<&DynRecord> {
        match self {
            Record::Dynamic(d) => Some(d),
            Record::Log(_) => None,
        }
    }

    /// Approximate memory footprint, for buffer limits.
    pub fn mem_size(&self) -> usize {
        match self {
            Record::Log(r) => r.mem_size(),
            Record::Dynamic(r) => r.mem_size(),
        }
    }

    pub fn event_ns(&self) -> Option<i64> {
        match self {
            Record::Log(r) => r.event_ns(),
            Record::Dynamic(r) => Some(r.event_ns()),
        }
    }

    pub fn to_json(&self) -> String {
        match self {
            Record::Log(r) => r.to_json(),
            Record::Dynamic(r) => r.to_json(),
        }
    }

    /// The compact binary form stored by durable buffers (first byte tells the type).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Record::Log(r) => log::wire::encode(r, out),
            Record::Dynamic(r) => r.encode(out),
        }
    }

    /// Reads a record stored with [`Record::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Record, String> {
        match bytes.first() {
            Some(b'L') => log::wire::decode(bytes).map(Record::Log),
            Some(b'D') => DynRecord::decode(bytes).map(Record::Dynamic),
            _ => Err("unknown record encoding".into()),
        }
    }
}

//! Wire formats to documents: JSON text, msgpack, Fluent Bit chunks, OpenTelemetry
//! logs (OTLP), Splunk HEC events, and the framing of JSON inputs (NDJSON, arrays, the
//! upstream `{"logs": [...]}` document).

pub mod flb;
pub mod frame;
pub mod hec;
pub mod json;
pub mod msgpack;
pub mod otlp;
#[cfg(test)]
mod otlp_encodings;
mod otlp_protobuf;
pub mod protobuf;

/// One record of a request whose format is mapped to flat JSON records before the
/// JSON path (OTLP logs): where it was in the request
/// (`resourceLogs[0].scopeLogs[1].logRecords[2]`) and its flat JSON text, or why it
/// could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct FlatRecord {
    pub source: String,
    pub json: Result<String, Unreadable>,
}

/// A record that could not be read: why, and the record as sent (for the DLQ).
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    pub reason: String,
    pub raw: String,
}

//! Wire formats to documents: JSON text, msgpack, Fluent Bit chunks, OTLP/JSON logs,
//! and the framing of JSON inputs (NDJSON, arrays, the upstream `{"logs": [...]}`
//! document).

pub mod flb;
pub mod frame;
pub mod json;
pub mod msgpack;
pub mod otlp;
mod otlp_protobuf;
pub mod protobuf;

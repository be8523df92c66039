//! data2parquet: log records to Apache Parquet.
//!
//! Data flows one way: **decode** ([`decode`], into the [`record`] model), **buffer**
//! ([`buffer`], keyed by [`partition`]), **convert** ([`convert`]) and **write**
//! ([`writer`]). The [`receiver`] runs that pipeline on background threads behind a
//! bounded channel; the Fluent Bit plugin ([`ffi`]), `http-server` and `json2parquet` are
//! thin front ends over it.

pub mod alloc;
pub mod buffer;

pub mod config;
pub mod convert;
pub mod decode;
pub mod dlq;
pub mod ffi;
pub mod flush;
pub mod idempotency;
pub mod ingest;
pub mod logging;
pub mod metrics;
pub mod open_files;
pub mod partition;
pub mod readback;
pub mod receiver;
pub mod record;
pub mod redis_conn;
pub mod s3_source;
pub mod standalone;
pub mod timeutil;
pub mod timezone;
pub mod value;
pub mod writer;

//! End-to-end tests: the built binaries and the plugin, driven with real inputs, and
//! every Parquet file read back and compared with what went in. One test binary on
//! purpose: the machine has two cores and linking is the slow part.
//!
//! Binaries are taken from the workspace target folder; build them first
//! (`cargo build --workspace`), which the README's test command does.

mod common;
mod confs;
mod dynamic;
mod generator;
mod http;
mod json2parquet;
mod plugin;
mod redis;
mod s3;

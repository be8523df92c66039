//! FFI types of Fluent Bit's proxy ("Go") output-plugin ABI.
//!
//! `include/flb_proxy.h` is written from the ABI facts (`flb-abi.md`); `generated.rs` is
//! bindgen's output for it, committed so builds need no libclang (like
//! `libsqlite3-sys`'s bundled bindings). `tests/fresh.rs` fails when the committed output
//! is stale; `tests/layout.rs` pins every size and offset the spec gives.

#[allow(non_camel_case_types, non_upper_case_globals, dead_code, clippy::all)]
mod generated {
    include!("generated.rs");
}

pub use generated::*;

/// `FLBPluginFlushCtx`'s data length is a `size_t` on the C side.
pub type FlushLen = usize;

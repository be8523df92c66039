//! The allocator: mimalloc (see the `mimalloc` feature in Cargo.toml), with the one setting
//! this workload needs. It is statically linked into this library, so in the plugin it
//! serves our allocations only and tuning it leaves Fluent Bit's own malloc alone.

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long, in milliseconds, mimalloc keeps freed memory before it gives it back to the
/// kernel (its default is 10 ms).
///
/// The writer builds a Parquet file, frees every buffer, and a moment later builds the
/// next one. With the default the memory goes back to the kernel in between and every
/// file faults it in again, zeroed page by page. Measured with `perf stat` on the plugin
/// bench (1M records through the test host, BufferSize 100000), in two sets of
/// interleaved runs: 100–122k page faults and 3.8–5.3 s of CPU with 10 ms; 3.2–9.4k
/// faults and 2.67–3.82 s with 1000 ms, at the same peak RSS. Memory still goes back
/// within a second once a burst is over.
pub const PURGE_DELAY_MS: i64 = 1000;

/// mimalloc's `mi_option_purge_delay` (its position in `mi_option_e`, mimalloc.h, v2 and v3).
#[cfg(feature = "mimalloc")]
const MI_OPTION_PURGE_DELAY: i32 = 15;

/// Applies [`PURGE_DELAY_MS`] once per process, unless the operator set
/// `MIMALLOC_PURGE_DELAY`, which then wins as mimalloc documents.
pub fn tune() {
    #[cfg(feature = "mimalloc")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
                // SAFETY: takes two integers; an option index mimalloc does not know is
                // ignored. The Once keeps it from racing with itself.
                unsafe {
                    libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS as _)
                };
            }
        });
    }
}

/// The delay mimalloc applies now, in milliseconds (None without mimalloc).
pub fn purge_delay_ms() -> Option<i64> {
    #[cfg(feature = "mimalloc")]
    // SAFETY: reads an option by its index.
    return Some(unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) } as i64);
    #[cfg(not(feature = "mimalloc"))]
    None
}

#[cfg(all(test, feature = "mimalloc"))]
mod tests {
    #[test]
    fn purge_delay_is_set_unless_the_environment_sets_it() {
        super::tune();
        let want = match std::env::var("MIMALLOC_PURGE_DELAY") {
            Ok(v) => v.parse().expect("a number"),
            Err(_) => super::PURGE_DELAY_MS,
        };
        assert_eq!(super::purge_delay_ms(), Some(want));
    }
}

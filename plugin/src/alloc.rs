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

/// Whether mimalloc commits a new arena as soon as it reserves it (its default, 2, does on
/// Linux). A committed arena is also marked for transparent huge pages (`MADV_HUGEPAGE`),
/// and a huge page is zeroed in full when first touched and counts in full in RSS. With
/// 0 an arena's memory is committed as it is used, in 4 KiB pages, and never marked.
///
/// This is the one way to keep our memory off huge pages in the plugin without touching
/// the host: mimalloc's `allow_thp` option would turn them off for the whole process
/// (`PR_SET_THP_DISABLE`), Fluent Bit included. Measured on the plugin bench (200k
/// records through the test host to tmpfs, interleaved runs, with eager commit → without):
/// - default settings (2,040 files), five runs each: peak RSS 114–123 → 96–98 MB, mean
///   CPU 1.75 → 1.65 s;
/// - `BufferSize 100000`, four runs each: peak RSS 158–169 → 132–135 MB, mean CPU
///   1.01 → 0.86 s.
pub const ARENA_EAGER_COMMIT: i64 = 0;

/// Positions in mimalloc's `mi_option_e` (mimalloc.h, v2 and v3).
#[cfg(feature = "mimalloc")]
const MI_OPTION_ARENA_EAGER_COMMIT: i32 = 4;
#[cfg(feature = "mimalloc")]
const MI_OPTION_PURGE_DELAY: i32 = 15;

/// Applies [`PURGE_DELAY_MS`] and [`ARENA_EAGER_COMMIT`] once per process, each unless
/// the operator set its `MIMALLOC_` variable, which then wins as mimalloc documents.
///
/// Runs when the library is loaded (`ON_LOAD`), before our first allocation, so the
/// first arena is already reserved with these settings; calling it again does nothing.
pub fn tune() {
    #[cfg(feature = "mimalloc")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            for (var, option, value) in [
                (
                    "MIMALLOC_PURGE_DELAY",
                    MI_OPTION_PURGE_DELAY,
                    PURGE_DELAY_MS,
                ),
                (
                    "MIMALLOC_ARENA_EAGER_COMMIT",
                    MI_OPTION_ARENA_EAGER_COMMIT,
                    ARENA_EAGER_COMMIT,
                ),
            ] {
                if std::env::var_os(var).is_none() {
                    // SAFETY: takes two integers; an option index mimalloc does not
                    // know is ignored. The Once keeps it from racing with itself.
                    unsafe { libmimalloc_sys::mi_option_set(option, value as _) };
                }
            }
        });
    }
}

/// Runs [`tune`] when the library is loaded (`dlopen` by Fluent Bit, or the start of a
/// binary), since mimalloc reserves its first arena at our first allocation and keeps
/// the settings it had then. `std::env::var_os` reads the environment without
/// allocating a `String` for a missing variable.
#[cfg(all(feature = "mimalloc", target_os = "linux"))]
#[used]
#[unsafe(link_section = ".init_array")]
static ON_LOAD: extern "C" fn() = {
    extern "C" fn on_load() {
        // No panic may unwind out of a loader callback.
        let _ = std::panic::catch_unwind(tune);
    }
    on_load
};

/// The delay mimalloc applies now, in milliseconds (None without mimalloc).
pub fn purge_delay_ms() -> Option<i64> {
    #[cfg(feature = "mimalloc")]
    return Some(option(MI_OPTION_PURGE_DELAY));
    #[cfg(not(feature = "mimalloc"))]
    None
}

/// Whether mimalloc now commits arenas eagerly (None without mimalloc).
pub fn arena_eager_commit() -> Option<i64> {
    #[cfg(feature = "mimalloc")]
    return Some(option(MI_OPTION_ARENA_EAGER_COMMIT));
    #[cfg(not(feature = "mimalloc"))]
    None
}

#[cfg(feature = "mimalloc")]
fn option(index: i32) -> i64 {
    // SAFETY: reads an option by its index.
    unsafe { libmimalloc_sys::mi_option_get(index) as i64 }
}

#[cfg(all(test, feature = "mimalloc"))]
mod tests {
    /// Checked in a child process that runs only this test, so what it sees was set
    /// when the binary was loaded, not by a pipeline another test started.
    #[test]
    fn options_are_set_at_load_unless_the_environment_sets_them() {
        const NAME: &str = "alloc::tests::options_are_set_at_load_unless_the_environment_sets_them";
        if std::env::var_os("D2P_ALLOC_CHILD").is_none() {
            let exe = std::env::current_exe().expect("test binary path");
            let status = std::process::Command::new(exe)
                .args(["--exact", NAME])
                .env("D2P_ALLOC_CHILD", "1")
                .status()
                .expect("run child");
            assert!(status.success());
            return;
        }
        for (var, default, now) in [
            (
                "MIMALLOC_PURGE_DELAY",
                super::PURGE_DELAY_MS,
                super::purge_delay_ms(),
            ),
            (
                "MIMALLOC_ARENA_EAGER_COMMIT",
                super::ARENA_EAGER_COMMIT,
                super::arena_eager_commit(),
            ),
        ] {
            let want = match std::env::var(var) {
                Ok(v) => v.parse().expect("a number"),
                Err(_) => default,
            };
            assert_eq!(now, Some(want), "{var}");
        }
    }
}

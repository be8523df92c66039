//! The Fluent Bit output plugin `out_parquet` (proxy ABI, `flb-abi.md`).
//!
//! Every export is wrapped in `catch_unwind`: a panic crossing `extern "C"` would abort
//! Fluent Bit. All state is per instance and hangs off `context->remote_context` (a
//! leaked `Box<Arc<Instance>>`); a registry of live instances serves only the
//! context-less fallbacks (`FLBPluginFlush`, `FLBPluginExit`) and `FLBPluginUnregister`,
//! which must not leave a thread running when Fluent Bit unloads the library.
//!
//! Hot reload (`flb-abi.md`, "Hot reload"): the library is not loaded afresh, so statics
//! persist; a new `Register` comes while the old instances still flush, and the old
//! registration's `Unregister` before the new instances' `Init`. Each instance is
//! filed under the registration it was initialised after, and `Unregister` closes that
//! registration's instances only, so a host that initialised the new ones first would
//! still keep them.

pub mod flblog;
pub mod instance;

use flb_proxy_sys::*;
use flblog::FlbLogger;
use instance::Instance;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub const PLUGIN_NAME: &CStr = c"out_parquet";
pub const PLUGIN_DESCRIPTION: &CStr =
    c"Parquet output (data2parquet): mem or Redis buffer, local files or S3";

/// A live instance and the registration (`Register` call) it was initialised after.
struct Registered {
    generation: u64,
    inst: Arc<Instance>,
}

/// Live instances in Init order.
static INSTANCES: Mutex<Vec<Registered>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Registrations so far; the latest one's number is the current generation.
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// Registration blocks seen by `Register` (by address) and their generation.
static REGISTRATIONS: Mutex<Vec<(usize, u64)>> = Mutex::new(Vec::new());

fn registry() -> std::sync::MutexGuard<'static, Vec<Registered>> {
    INSTANCES.lock().unwrap_or_else(|p| p.into_inner())
}

fn registrations() -> std::sync::MutexGuard<'static, Vec<(usize, u64)>> {
    REGISTRATIONS.lock().unwrap_or_else(|p| p.into_inner())
}

fn register_instance(inst: Arc<Instance>) {
    let generation = GENERATION.load(Ordering::Acquire);
    registry().push(Registered { generation, inst });
}

/// Runs `f`, turning a panic into `fallback`.
fn guard(fallback: c_int, f: impl FnOnce() -> c_int) -> c_int {
    install_panic_hook();
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// Fluent Bit runs Flush on coroutine stacks of 24 KiB (no guard page before v5.1).
/// The default panic hook can capture and print a backtrace (RUST_BACKTRACE), which
/// needs far more stack than that. On threads that are not ours, the hook therefore
/// prints one line only; on our own threads it defers to the previous hook.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let ours = std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("d2p-"));
            if ours {
                previous(info);
            } else {
                let msg = info
                    .payload()
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("panic");
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                eprintln!("out_parquet: caught a panic in a Fluent Bit callback: {msg} ({at})");
            }
        }));
    });
}

/// Fills the five fields of the registration block that every host version has
/// (writing `event_type` at offset 32 would overflow a pre-4.2.3 host's 32-byte block).
///
/// # Safety
/// `def` is null or points to Fluent Bit's registration block.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FLBPluginRegister(def: *mut flb_plugin_proxy_def) -> c_int {
    guard(-1, || {
        if def.is_null() {
            return -1;
        }
        // SAFETY: non-null, and every host version has these five fields.
        unsafe {
            (*def).type_ = FLB_PROXY_OUTPUT_PLUGIN;
            (*def).proxy = FLB_PROXY_GOLANG;
            (*def).flags = 0;
            (*def).name = PLUGIN_NAME.as_ptr() as *mut c_char;
            (*def).description = PLUGIN_DESCRIPTION.as_ptr() as *mut c_char;
        }
        // Only bookkeeping for Unregister: nothing Flush reads changes here.
        let generation = GENERATION.fetch_add(1, Ordering::AcqRel) + 1;
        let mut regs = registrations();
        regs.retain(|(at, _)| *at != def as usize);
        regs.push((def as usize, generation));
        0
    })
}

/// Reads every key through `output_get_property` and starts the instance.
///
/// # Safety
/// `plugin` is null or Fluent Bit's init struct for the instance being initialised.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FLBPluginInit(plugin: *mut flbgo_output_plugin) -> c_int {
    guard(FLB_ERROR, || {
        if plugin.is_null() {
            return FLB_ERROR;
        }
        // SAFETY: Fluent Bit passes a valid struct; we read offsets 0-24 only and keep no
        // pointer to the struct itself (it is shared and overwritten per instance).
        let (api, o_ins, context) = unsafe { ((*plugin).api, (*plugin).o_ins, (*plugin).context) };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let name = format!("[out_parquet#{id}]");
        let log = FlbLogger::new(api, o_ins, name.clone(), false);
        let get = |key: &str| -> Option<String> {
            // SAFETY: api is Fluent Bit's table; the returned string is copied at once.
            unsafe {
                let api = api.as_ref()?;
                let f = api.output_get_property?;
                let k = std::ffi::CString::new(key).ok()?;
                let v = f(k.as_ptr(), o_ins);
                (!v.is_null()).then(|| CStr::from_ptr(v).to_string_lossy().into_owned())
            }
        };
        match Instance::start(name.clone(), get, log) {
            Ok(inst) => {
                if context.is_null() {
                    // A host without per-instance contexts: only the fallbacks can reach it.
                    register_instance(inst);
                    return FLB_OK;
                }
                let raw = Box::into_raw(Box::new(inst.clone()));
                // SAFETY: context is this instance's proxy context.
                unsafe { (*context).remote_context = raw as *mut c_void };
                register_instance(inst);
                FLB_OK
            }
            Err(e) => {
                let log = FlbLogger::new(api, o_ins, name, false);
                crate::logging::Logger::log(&log, crate::logging::Level::Error, &e);
                log.detach();
                FLB_ERROR
            }
        }
    })
}

/// Per-instance flush. Safe to call concurrently (Workers N).
///
/// # Safety
/// `ctx` is what Init stored (or null); `data` points to `size` readable bytes for the
/// duration of the call; `tag` is null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FLBPluginFlushCtx(
    ctx: *mut c_void,
    data: *const c_void,
    size: usize,
    tag: *mut c_char,
) -> c_int {
    // A panic here is a bug on our side, not the data's: ask Fluent Bit to retry.
    guard(FLB_RETRY, || {
        if ctx.is_null() {
            return FLB_ERROR;
        }
        // SAFETY: ctx is the Box<Arc<Instance>> Init stored; it lives until ExitCtx. The
        // chunk and tag are valid for this call, which is all `flush` needs.
        let inst: &Arc<Instance> = unsafe { &*(ctx as *const Arc<Instance>) };
        unsafe { inst.flush(data as *const u8, size, tag) }
    })
}

/// Fallback for hosts without FlushCtx: the most recently initialised instance.
///
/// # Safety
/// As for [`FLBPluginFlushCtx`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FLBPluginFlush(
    data: *const c_void,
    size: usize,
    tag: *const c_char,
) -> c_int {
    guard(FLB_RETRY, || {
        let Some(inst) = registry().last().map(|r| r.inst.clone()) else {
            return FLB_ERROR;
        };
        // SAFETY: as in FLBPluginFlushCtx.
        unsafe { inst.flush(data as *const u8, size, tag) }
    })
}

fn close_instance(inst: &Arc<Instance>) {
    inst.close();
    registry().retain(|r| !Arc::ptr_eq(&r.inst, inst));
}

/// Per-instance exit: writes every pending record, joins every thread of the instance.
///
/// # Safety
/// `ctx` is what Init stored, and is not used again afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FLBPluginExitCtx(ctx: *mut c_void) -> c_int {
    guard(FLB_ERROR, || {
        if ctx.is_null() {
            return FLB_ERROR;
        }
        // SAFETY: reclaims the box leaked by Init; Fluent Bit calls ExitCtx once.
        let inst: Box<Arc<Instance>> = unsafe { Box::from_raw(ctx as *mut Arc<Instance>) };
        close_instance(&inst);
        FLB_OK
    })
}

/// Fallback for hosts without ExitCtx: called once per instance, in Init order.
#[unsafe(no_mangle)]
pub extern "C" fn FLBPluginExit() -> c_int {
    guard(FLB_ERROR, || {
        let first = registry().first().map(|r| r.inst.clone());
        if let Some(inst) = first {
            close_instance(&inst);
        }
        FLB_OK
    })
}

/// Called once per registration, after its instances have exited, before `dlclose`.
/// Closes any of them still running, so no thread of ours outlives the library; the
/// instances of a later registration (a hot reload's new context) are left running.
///
/// # Safety
/// `def` is a registration block passed to [`FLBPluginRegister`] (an unknown one closes
/// every instance).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FLBPluginUnregister(def: *mut flb_plugin_proxy_def) {
    let _ = guard(0, || {
        let upto = {
            let mut regs = registrations();
            let found = regs.iter().position(|(at, _)| *at == def as usize);
            found.map_or(u64::MAX, |i| regs.remove(i).1)
        };
        let left: Vec<_> = {
            let mut reg = registry();
            let (old, keep): (Vec<_>, Vec<_>) = reg.drain(..).partition(|r| r.generation <= upto);
            *reg = keep;
            old
        };
        for r in left {
            r.inst.close();
        }
        0
    });
}

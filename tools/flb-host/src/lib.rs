//! A test host for Fluent Bit proxy plugins that behaves like Fluent Bit 5.x
//! (`flb-abi.md` §1, §2, §5 and the checklist of §8):
//!
//! - `dlopen(RTLD_LAZY | RTLD_LOCAL)`; basenames starting with `flb-` are refused;
//! - the registration block is allocated as on real hosts (48 bytes zeroed, 40 bytes, or
//!   32 bytes followed by a canary) and checked for writes past offset 32;
//! - one `flbgo_output_plugin` struct, shared and overwritten for each instance's Init;
//!   a zeroed 16-byte proxy context per instance;
//! - an API table whose property lookup ignores case, returns NULL for unset or empty
//!   keys and hides the keys Fluent Bit's core consumes; `log_print` (C-variadic) and
//!   `output_log_check` are real; every other slot traps;
//! - Flush on a small stack (24 KiB by default), concurrently for `Workers N`, with
//!   Fluent Bit's retry loop; a fresh malloc'd tag per call. The flushing threads live as
//!   long as the run, as `flb-pipeline` and the output workers do ([`Coro::Here`]); a
//!   fresh thread per flush ([`Coro::FreshThread`]) checks that a plugin keeps nothing in
//!   thread-locals between flushes;
//! - ExitCtx per instance (then the instance's properties are poisoned, and any later
//!   use of the instance by the plugin aborts the test), Unregister once, `dlclose`.

use anyhow::{Context, Result, anyhow, bail};
use flb_proxy_sys::*;
use std::collections::HashSet;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

/// Keys Fluent Bit's core consumes; a plugin never sees them (`flb-abi.md` §2.3).
pub const RESERVED: &[&str] = &[
    "match",
    "match_regex",
    "alias",
    "log_level",
    "log_suppress_interval",
    "host",
    "port",
    "ipv6",
    "retry_limit",
    "workers",
    "storage.total_limit_size",
    "name",
];

fn reserved(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    RESERVED.contains(&k.as_str())
        || k.starts_with("tls")
        || k.starts_with("net.")
        || k.starts_with("oauth2")
}

/// How the registration block is allocated (host versions differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DefAlloc {
    /// v5.1.1+: calloc(48).
    Zeroed48,
    /// v4.2.3 to v5.1.0: 40 bytes.
    Bytes40,
    /// Before v4.2.3: malloc(32); a canary follows to catch overflows.
    Bytes32Canary,
}

unsafe extern "C" {
    fn flb_host_set_log_sink(s: unsafe extern "C" fn(c_int, *const c_char));
    fn flb_host_log_print(level: c_int, file: *const c_char, line: c_int, fmt: *const c_char, ...);
}

/// Everything the plugin logged through `log_print`.
static LOGS: Mutex<Vec<(i32, String)>> = Mutex::new(Vec::new());
static ECHO_LOGS: AtomicBool = AtomicBool::new(false);
/// Off for long runs (soak tests), so the log does not grow memory.
static KEEP_LOGS: AtomicBool = AtomicBool::new(true);

unsafe extern "C" fn log_sink(level: c_int, msg: *const c_char) {
    // SAFETY: the C side passes a NUL-terminated buffer.
    let m = unsafe { CStr::from_ptr(msg) }
        .to_string_lossy()
        .into_owned();
    if ECHO_LOGS.load(Ordering::Relaxed) {
        eprintln!("[plugin {level}] {m}");
    }
    if KEEP_LOGS.load(Ordering::Relaxed) {
        LOGS.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((level, m));
    }
}

pub fn logs() -> Vec<(i32, String)> {
    LOGS.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

pub fn echo_logs(on: bool) {
    ECHO_LOGS.store(on, Ordering::Relaxed);
}

/// Whether [`logs`] keeps what the plugin logs (on by default).
pub fn keep_logs(on: bool) {
    KEEP_LOGS.store(on, Ordering::Relaxed);
}

const ALIVE: u64 = 0x0A11_7E00_F1B0_0000;
const DEAD: u64 = 0xDEAD_DEAD_DEAD_DEAD;

/// What `o_ins` points to: the host's view of one output instance.
#[repr(C)]
pub struct HostInstance {
    magic: u64,
    log_level: i32,
    props: Vec<(String, CString)>,
}

fn instance<'a>(ins: *mut flb_output_instance, what: &str) -> &'a HostInstance {
    if ins.is_null() {
        eprintln!("flb-host: plugin called {what} with a NULL instance");
        std::process::abort();
    }
    // SAFETY: the plugin got this pointer from us; we check the magic before use.
    let h = unsafe { &*(ins as *const HostInstance) };
    if h.magic != ALIVE {
        eprintln!(
            "flb-host: plugin called {what} on an instance after its ExitCtx (use after free in Fluent Bit)"
        );
        std::process::abort();
    }
    h
}

unsafe extern "C" fn output_get_property(
    key: *const c_char,
    ins: *mut flb_output_instance,
) -> *const c_char {
    let h = instance(ins, "output_get_property");
    if key.is_null() {
        return std::ptr::null();
    }
    // SAFETY: NUL-terminated per the ABI.
    let k = unsafe { CStr::from_ptr(key) }.to_string_lossy();
    if reserved(&k) {
        return std::ptr::null();
    }
    // First case-insensitive match wins; empty values are stored as NULL by Fluent Bit.
    match h
        .props
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(&k))
    {
        Some((_, v)) if !v.as_bytes().is_empty() => v.as_ptr(),
        _ => std::ptr::null(),
    }
}

unsafe extern "C" fn output_log_check(ins: *mut flb_output_instance, level: c_int) -> c_int {
    let h = instance(ins, "output_log_check");
    (level <= h.log_level) as c_int
}

macro_rules! trap {
    ($name:ident, $($arg:ty),*; $ret:ty) => {
        unsafe extern "C" fn $name($(_: $arg),*) -> $ret {
            eprintln!(concat!("flb-host: plugin called the unsupported API slot ", stringify!($name)));
            std::process::abort();
        }
    };
}
trap!(trap_input_get_property, *const c_char, *mut flb_input_instance; *const c_char);
trap!(trap_output_get_cmt, *mut flb_output_instance; *mut c_void);
trap!(trap_input_get_cmt, *mut flb_input_instance; *mut c_void);
trap!(trap_input_log_check, *mut flb_input_instance, c_int; c_int);
trap!(trap_custom_get_property, *const c_char, *mut flb_custom_instance; *const c_char);
trap!(trap_custom_log_check, *mut flb_custom_instance, c_int; c_int);

type FlushCtxFn = unsafe extern "C" fn(*mut c_void, *const c_void, usize, *mut c_char) -> c_int;
type FlushFn = unsafe extern "C" fn(*const c_void, usize, *const c_char) -> c_int;
type ExitCtxFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type ExitFn = unsafe extern "C" fn() -> c_int;

struct Syms {
    init: unsafe extern "C" fn(*mut flbgo_output_plugin) -> c_int,
    flush_ctx: Option<FlushCtxFn>,
    flush: Option<FlushFn>,
    exit_ctx: Option<ExitCtxFn>,
    exit: Option<ExitFn>,
    unregister: Option<unsafe extern "C" fn(*mut flb_plugin_proxy_def)>,
    pre_exit: Option<unsafe extern "C" fn(c_int)>,
    pre_run: Option<unsafe extern "C" fn(c_int) -> c_int>,
}

/// One initialised instance.
struct Slot {
    ins: Box<HostInstance>,
    ctx: Box<flb_plugin_proxy_context>,
    exited: bool,
}

/// A loaded plugin.
pub struct Plugin {
    handle: *mut c_void,
    def: *mut u8,
    def_alloc: DefAlloc,
    pub name: String,
    pub description: String,
    syms: Syms,
    _api: Box<flb_api>,
    shared: Box<flbgo_output_plugin>,
    _name_c: CString,
    slots: Vec<Slot>,
    /// Loaded by a hot reload: PreRegister(1) and PreRun(1), as `flb_reload.c` calls them.
    hot: bool,
    /// Every thread that has run a flush call, so a test can check where flushes ran.
    flush_threads: Mutex<HashSet<ThreadId>>,
}

// SAFETY: the plugin ABI allows concurrent flushes from several threads; the host's own
// state is only mutated through &mut self (init, exit, unload).
unsafe impl Send for Plugin {}
unsafe impl Sync for Plugin {}

const CANARY: u64 = 0x5AFE_C0DE_5AFE_C0DE;

fn sym<T>(handle: *mut c_void, name: &CStr) -> Option<T> {
    // SAFETY: dlsym on our handle; the caller picks the right function type.
    let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
    (!p.is_null()).then(|| unsafe { std::mem::transmute_copy::<*mut c_void, T>(&p) })
}

/// Where a flush attempt runs. Fluent Bit runs each flush in a libco coroutine with a small
/// stack, on a thread that lives as long as the engine (`flb-abi.md` §5.1): its
/// thread-locals, and so the allocator's per-thread heap, persist from flush to flush.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coro {
    /// On the calling thread, which the caller started with the small stack: Fluent Bit's
    /// own arrangement, and the one to measure.
    Here,
    /// On a new thread with this stack size in bytes for every attempt: thread-locals die
    /// after each flush, which catches a plugin that relies on them.
    FreshThread(usize),
}

/// A thread with a small stack, like Fluent Bit's coroutines (which have no guard page;
/// ours does, so an overflow is a clean crash instead of silent corruption).
pub fn on_small_stack<T: Send>(stack: usize, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("flb-coro".into())
            .stack_size(stack)
            .spawn_scoped(s, f)
            .expect("spawn flush thread")
            .join()
            .unwrap_or_else(|_| {
                eprintln!("flb-host: a panic escaped the plugin's flush");
                std::process::abort()
            })
    })
}

impl Plugin {
    pub fn load(path: &Path, def_alloc: DefAlloc) -> Result<Plugin> {
        Plugin::load_as(path, def_alloc, false)
    }

    /// Loads the plugin for a hot reload's new context: `dlopen` of the same path again
    /// (the same handle: statics persist), `PreRegister(1)` and `Register` of a new
    /// block, while the old context's instances may still be flushing on other threads.
    pub fn load_for_reload(path: &Path, def_alloc: DefAlloc) -> Result<Plugin> {
        Plugin::load_as(path, def_alloc, true)
    }

    fn load_as(path: &Path, def_alloc: DefAlloc, hot: bool) -> Result<Plugin> {
        let base = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if base.starts_with("flb-") {
            bail!(
                "{base}: Fluent Bit would load a `flb-*` file as a native plugin, not through the proxy"
            );
        }
        let cpath = CString::new(path.as_os_str().as_encoded_bytes())?;
        // SAFETY: plain dlopen.
        let handle = unsafe { libc::dlopen(cpath.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL) };
        if handle.is_null() {
            // SAFETY: dlerror returns a C string or NULL.
            let err = unsafe { CStr::from_ptr(libc::dlerror()) }
                .to_string_lossy()
                .into_owned();
            bail!("dlopen {}: {err}", path.display());
        }
        // SAFETY: the log sink is a plain function.
        unsafe { flb_host_set_log_sink(log_sink) };
        let size = match def_alloc {
            DefAlloc::Zeroed48 => 48,
            DefAlloc::Bytes40 => 40,
            DefAlloc::Bytes32Canary => 32 + 16,
        };
        // SAFETY: a raw block, as Fluent Bit allocates it.
        let def = unsafe { libc::calloc(1, size) as *mut u8 };
        if def.is_null() {
            bail!("out of memory");
        }
        if def_alloc == DefAlloc::Bytes32Canary {
            // SAFETY: within the allocation.
            unsafe {
                std::ptr::write_unaligned(def.add(32) as *mut u64, CANARY);
                std::ptr::write_unaligned(def.add(40) as *mut u64, CANARY);
            }
        }
        if let Some(pre) =
            sym::<unsafe extern "C" fn(c_int) -> c_int>(handle, c"FLBPluginPreRegister")
        {
            // SAFETY: the documented signature.
            if unsafe { pre(c_int::from(hot)) } == -1 {
                bail!("FLBPluginPreRegister returned -1");
            }
        }
        let register = sym::<unsafe extern "C" fn(*mut flb_plugin_proxy_def) -> c_int>(
            handle,
            c"FLBPluginRegister",
        )
        .ok_or_else(|| anyhow!("FLBPluginRegister is not exported"))?;
        // SAFETY: the block is at least 32 bytes; the plugin must write only those.
        let rc = unsafe { register(def as *mut flb_plugin_proxy_def) };
        if rc == -1 {
            bail!("FLBPluginRegister failed (-1)");
        }
        if def_alloc == DefAlloc::Bytes32Canary {
            // SAFETY: within the allocation.
            let (a, b) = unsafe {
                (
                    std::ptr::read_unaligned(def.add(32) as *const u64),
                    std::ptr::read_unaligned(def.add(40) as *const u64),
                )
            };
            if a != CANARY || b != CANARY {
                bail!("FLBPluginRegister wrote past offset 32 of the registration block");
            }
        }
        // SAFETY: the first five fields exist in every layout.
        let (ty, proxy, name_p, desc_p) = unsafe {
            let d = def as *const flb_plugin_proxy_def;
            ((*d).type_, (*d).proxy, (*d).name, (*d).description)
        };
        if ty != FLB_PROXY_OUTPUT_PLUGIN || proxy != FLB_PROXY_GOLANG {
            bail!(
                "registration says type {ty}, proxy {proxy}: expected an output (2) of the Go proxy (11)"
            );
        }
        if name_p.is_null() {
            bail!("registration has no name");
        }
        // SAFETY: NUL-terminated strings kept by the plugin.
        let name = unsafe { CStr::from_ptr(name_p) }
            .to_string_lossy()
            .into_owned();
        let description = if desc_p.is_null() {
            String::new()
        } else {
            unsafe { CStr::from_ptr(desc_p) }
                .to_string_lossy()
                .into_owned()
        };
        let init = sym(handle, c"FLBPluginInit")
            .ok_or_else(|| anyhow!("[go proxy]: could not load FLBPluginInit symbol"))?;
        let syms = Syms {
            init,
            flush_ctx: sym(handle, c"FLBPluginFlushCtx"),
            flush: sym(handle, c"FLBPluginFlush"),
            exit_ctx: sym(handle, c"FLBPluginExitCtx"),
            exit: sym(handle, c"FLBPluginExit"),
            unregister: sym(handle, c"FLBPluginUnregister"),
            pre_exit: sym(handle, c"FLBPluginOutputPreExit"),
            pre_run: sym(handle, c"FLBPluginOutputPreRun"),
        };
        if syms.flush_ctx.is_none() && syms.flush.is_none() {
            bail!("neither FLBPluginFlushCtx nor FLBPluginFlush is exported");
        }
        let api = Box::new(flb_api {
            output_get_property: Some(output_get_property),
            input_get_property: Some(trap_input_get_property),
            output_get_cmt_instance: Some(trap_output_get_cmt),
            input_get_cmt_instance: Some(trap_input_get_cmt),
            log_print: Some(flb_host_log_print),
            input_log_check: Some(trap_input_log_check),
            output_log_check: Some(output_log_check),
            custom_get_property: Some(trap_custom_get_property),
            custom_log_check: Some(trap_custom_log_check),
        });
        let name_c = CString::new(name.clone())?;
        let mut shared = Box::new(flbgo_output_plugin::default());
        shared.name = name_c.as_ptr() as *mut c_char;
        shared.api = &*api as *const flb_api as *mut flb_api;
        Ok(Plugin {
            handle,
            def,
            def_alloc,
            name,
            description,
            syms,
            _api: api,
            shared,
            _name_c: name_c,
            slots: Vec::new(),
            hot,
            flush_threads: Mutex::new(HashSet::new()),
        })
    }

    pub fn def_alloc(&self) -> DefAlloc {
        self.def_alloc
    }

    /// Initialises one `[OUTPUT]` instance; returns its index.
    pub fn init(&mut self, props: &[(String, String)], log_level: i32) -> Result<usize> {
        let mut ins = Box::new(HostInstance {
            magic: ALIVE,
            log_level,
            props: props
                .iter()
                .map(|(k, v)| Ok((k.clone(), CString::new(v.as_str())?)))
                .collect::<Result<_>>()?,
        });
        let mut ctx = Box::new(flb_plugin_proxy_context::default());
        // One shared struct, overwritten for each instance, as in Fluent Bit.
        self.shared.o_ins = &mut *ins as *mut HostInstance as *mut flb_output_instance;
        self.shared.context = &mut *ctx;
        // SAFETY: the documented call.
        let rc = unsafe { (self.syms.init)(&mut *self.shared) };
        if rc <= 0 {
            // Fluent Bit destroys a failed instance without ExitCtx.
            ins.magic = DEAD;
            bail!(
                "[go proxy]: plugin '{}' failed to initialize (Init returned {rc})",
                self.name
            );
        }
        self.slots.push(Slot {
            ins,
            ctx,
            exited: false,
        });
        Ok(self.slots.len() - 1)
    }

    /// `FLBPluginOutputPreRun` for every instance, if exported (1 after a hot reload).
    pub fn pre_run(&self) {
        if let Some(f) = self.syms.pre_run {
            for _ in &self.slots {
                // SAFETY: documented signature.
                unsafe { f(c_int::from(self.hot)) };
            }
        }
    }

    pub fn remote_context(&self, idx: usize) -> *mut c_void {
        self.slots[idx].ctx.remote_context
    }

    pub fn has_flush_ctx(&self) -> bool {
        self.syms.flush_ctx.is_some()
    }

    /// One flush call on the current thread, as Fluent Bit's proxy makes it.
    pub fn flush_here(&self, idx: usize, data: &[u8], tag: &str) -> i32 {
        self.flush_threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(std::thread::current().id());
        let ctag = CString::new(tag.replace('\0', "")).unwrap_or_default();
        // A fresh malloc'd copy per call, freed right after, like Fluent Bit's tag.
        // SAFETY: strdup of a valid C string.
        let t = unsafe { libc::strdup(ctag.as_ptr()) };
        let rc = match self.syms.flush_ctx {
            // SAFETY: documented signature; data lives for the call.
            Some(f) => unsafe {
                f(
                    self.remote_context(idx),
                    data.as_ptr() as *const c_void,
                    data.len(),
                    t,
                )
            },
            None => match self.syms.flush {
                Some(f) => unsafe { f(data.as_ptr() as *const c_void, data.len(), t) },
                None => FLB_ERROR,
            },
        };
        // SAFETY: allocated by strdup above.
        unsafe { libc::free(t as *mut c_void) };
        if (0..=2).contains(&rc) { rc } else { FLB_ERROR }
    }

    /// A flush on a small-stack thread.
    pub fn flush(&self, idx: usize, data: &[u8], tag: &str, stack: usize) -> i32 {
        on_small_stack(stack, || self.flush_here(idx, data, tag))
    }

    /// Fluent Bit's retry loop: the same bytes again after FLB_RETRY, up to
    /// `retry_limit + 1` attempts. Returns the last code and the attempts made.
    pub fn flush_with_retries(
        &self,
        idx: usize,
        data: &[u8],
        tag: &str,
        coro: Coro,
        retry_limit: u32,
        delay: Duration,
    ) -> (i32, u32) {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let rc = match coro {
                Coro::Here => self.flush_here(idx, data, tag),
                Coro::FreshThread(stack) => self.flush(idx, data, tag, stack),
            };
            if rc != FLB_RETRY || attempts > retry_limit {
                return (rc, attempts);
            }
            std::thread::sleep(delay);
        }
    }

    /// ExitCtx (or Exit) for one instance; then its properties die, as in Fluent Bit.
    pub fn exit(&mut self, idx: usize) -> i32 {
        self.exit_as(idx, false)
    }

    /// Exit of an old-context instance stopped by a hot reload: `PreExit(1)`.
    pub fn exit_for_reload(&mut self, idx: usize) -> i32 {
        self.exit_as(idx, true)
    }

    fn exit_as(&mut self, idx: usize, by_reload: bool) -> i32 {
        let slot = &mut self.slots[idx];
        if slot.exited {
            return FLB_OK;
        }
        if let Some(f) = self.syms.pre_exit {
            // SAFETY: documented signature.
            unsafe { f(c_int::from(by_reload)) };
        }
        let rc = match self.syms.exit_ctx {
            // SAFETY: documented signature; the context Init filled.
            Some(f) => unsafe { f(slot.ctx.remote_context) },
            None => match self.syms.exit {
                Some(f) => unsafe { f() },
                None => FLB_OK,
            },
        };
        slot.exited = true;
        slot.ins.magic = DEAD;
        for (k, v) in &mut slot.ins.props {
            k.clear();
            *v = CString::new(vec![b'X'; 8]).unwrap_or_default();
        }
        slot.ctx.remote_context = std::ptr::null_mut();
        rc
    }

    /// ExitCtx for every instance still running, Unregister, dlclose.
    pub fn unload(mut self) -> Result<()> {
        for i in 0..self.slots.len() {
            self.exit(i);
        }
        if let Some(f) = self.syms.unregister {
            // SAFETY: the registration block we passed to Register.
            unsafe { f(self.def as *mut flb_plugin_proxy_def) };
        }
        // SAFETY: our handle; nothing of the plugin runs any more.
        let rc = unsafe { libc::dlclose(self.handle) };
        // SAFETY: allocated with calloc in load.
        unsafe { libc::free(self.def as *mut c_void) };
        if rc != 0 {
            bail!("dlclose failed");
        }
        Ok(())
    }

    pub fn instances(&self) -> usize {
        self.slots.len()
    }

    /// How many distinct threads have run a flush call so far.
    pub fn flush_threads(&self) -> usize {
        self.flush_threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

/// Threads of this process, from /proc (to check the plugin leaves none behind).
pub fn thread_names() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc/self/task") {
        for e in rd.flatten() {
            if let Ok(n) = std::fs::read_to_string(e.path().join("comm")) {
                out.push(n.trim().to_string());
            }
        }
    }
    out
}

/// The threads that flush, as Fluent Bit's output workers.
#[derive(Clone, Copy, Debug)]
pub struct Workers {
    /// How many flush at once.
    pub count: usize,
    /// The flush stack in bytes (Fluent Bit's coroutine stack).
    pub stack: usize,
    /// Each attempt on a new thread with that stack ([`Coro::FreshThread`]), instead of
    /// on the worker itself, which then has the stack ([`Coro::Here`], as Fluent Bit's
    /// long-lived threads run their coroutines).
    pub fresh_thread_per_flush: bool,
}

impl Workers {
    fn coro(&self) -> Coro {
        if self.fresh_thread_per_flush {
            Coro::FreshThread(self.stack)
        } else {
            Coro::Here
        }
    }
}

/// Flushes `chunks` on the `workers`, round robin, with Fluent Bit's retry loop; returns
/// the codes and attempts in chunk order.
pub fn flush_concurrently(
    p: &Plugin,
    idx: usize,
    chunks: &[(Arc<Vec<u8>>, String)],
    workers: Workers,
    retry_limit: u32,
    delay: Duration,
) -> Vec<(i32, u32)> {
    let coro = workers.coro();
    let results: Vec<Mutex<(i32, u32)>> = chunks.iter().map(|_| Mutex::new((-1, 0))).collect();
    let next = AtomicI32::new(0);
    let results = Arc::new(results);
    std::thread::scope(|s| {
        for w in 0..workers.count.max(1) {
            let (results, next) = (results.clone(), &next);
            let mut builder = std::thread::Builder::new().name(format!("flb-out-w{w}"));
            if coro == Coro::Here {
                builder = builder.stack_size(workers.stack);
            }
            builder
                .spawn_scoped(s, move || {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst) as usize;
                        if i >= chunks.len() {
                            break;
                        }
                        let (data, tag) = &chunks[i];
                        let r = p.flush_with_retries(idx, data, tag, coro, retry_limit, delay);
                        *results[i].lock().unwrap_or_else(|e| e.into_inner()) = r;
                    }
                })
                .expect("spawn worker");
        }
    });
    results
        .iter()
        .map(|m| *m.lock().unwrap_or_else(|e| e.into_inner()))
        .collect()
}

/// Time a closure (benchmarks).
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed())
}

pub fn load_chunk(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

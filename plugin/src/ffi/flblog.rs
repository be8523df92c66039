//! Logging into Fluent Bit's own log, in its format, through the proxy API.
//!
//! `log_print` does not filter by level, so every message is gated by
//! `output_log_check(o_ins, level)` (the instance's `Log_Level`). The message is always
//! passed as the argument of a `"%s"` format, never as the format itself. `Debug=true`
//! raises our debug messages to info, so they show at Fluent Bit's default level.

use crate::logging::{Level, Logger};
use flb_proxy_sys::{flb_api, flb_output_instance};
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct FlbLogger {
    api: *const flb_api,
    o_ins: *mut flb_output_instance,
    prefix: String,
    debug: bool,
    /// Set when the instance exits: Fluent Bit frees `o_ins` right after ExitCtx.
    detached: AtomicBool,
}

// SAFETY: the API table lives until the plugin is unloaded and `o_ins` until this
// instance's ExitCtx returns, by which time `detach` has been called and every thread
// that logs has been joined. Fluent Bit documents log_print as callable from any thread.
unsafe impl Send for FlbLogger {}
unsafe impl Sync for FlbLogger {}

impl FlbLogger {
    pub fn new(
        api: *const flb_api,
        o_ins: *mut flb_output_instance,
        prefix: String,
        debug: bool,
    ) -> Self {
        FlbLogger {
            api,
            o_ins,
            prefix,
            debug,
            detached: AtomicBool::new(false),
        }
    }

    pub fn set_debug(&mut self, debug: bool) {
        self.debug = debug;
    }

    /// Stops all use of the instance pointer.
    pub fn detach(&self) {
        self.detached.store(true, Ordering::SeqCst);
    }

    fn effective(&self, level: Level) -> Level {
        if self.debug && level == Level::Debug {
            Level::Info
        } else {
            level
        }
    }

    fn api(&self) -> Option<&flb_api> {
        if self.detached.load(Ordering::SeqCst) || self.api.is_null() {
            return None;
        }
        // SAFETY: non-null and valid for the plugin's lifetime (see the Send impl).
        Some(unsafe { &*self.api })
    }
}

impl Logger for FlbLogger {
    fn enabled(&self, level: Level) -> bool {
        let lvl = self.effective(level);
        match self.api() {
            Some(api) => match api.output_log_check {
                // SAFETY: Fluent Bit's function, called with the instance it gave us.
                Some(check) if !self.o_ins.is_null() => unsafe {
                    check(self.o_ins, lvl as i32) != 0
                },
                _ => lvl <= Level::Info,
            },
            None => lvl <= Level::Warn,
        }
    }

    fn log(&self, level: Level, msg: &str) {
        let lvl = self.effective(level);
        let text = format!("{} {}", self.prefix, msg).replace('\0', "\\0");
        let Ok(c) = CString::new(text) else { return };
        match self.api().and_then(|a| a.log_print) {
            // SAFETY: "%s" with one C string argument, as log_print expects.
            Some(print) => unsafe {
                print(lvl as i32, std::ptr::null(), 0, c"%s".as_ptr(), c.as_ptr())
            },
            None => eprintln!("[{}] {}", level.name(), c.to_string_lossy()),
        }
    }
}

//! A small logging facade. The library reports through a [`Logger`] handed to it, so
//! the plugin can route messages to Fluent Bit's own log (per instance, with its log
//! level), and the tools to stderr, without any process-global state.

use crate::config::LogFormatter;
use std::io::Write as _;
use std::sync::Arc;

/// Fluent Bit's levels (`flb_log.h`), so the plugin maps them one to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

pub trait Logger: Send + Sync {
    fn enabled(&self, level: Level) -> bool;
    fn log(&self, level: Level, msg: &str);
}

pub type SharedLogger = Arc<dyn Logger>;

/// Logs at `level` if enabled; formats only then.
#[macro_export]
macro_rules! log_at {
    ($logger:expr, $level:expr, $($arg:tt)+) => {{
        let l: &dyn $crate::logging::Logger = &*$logger;
        if l.enabled($level) {
            l.log($level, &format!($($arg)+));
        }
    }};
}

/// Writes lines to stderr in one of upstream's formats.
pub struct StderrLogger {
    pub max: Level,
    pub format: LogFormatter,
    pub name: String,
}

impl StderrLogger {
    pub fn new(name: &str, debug: bool, format: LogFormatter) -> Arc<Self> {
        use std::io::IsTerminal;
        // Colours only on a terminal; log files and collectors get plain text.
        let format = if format == LogFormatter::Color && !std::io::stderr().is_terminal() {
            LogFormatter::Text
        } else {
            format
        };
        Arc::new(StderrLogger {
            max: if debug { Level::Debug } else { Level::Info },
            format,
            name: name.to_string(),
        })
    }
}

impl Logger for StderrLogger {
    fn enabled(&self, level: Level) -> bool {
        level <= self.max
    }

    fn log(&self, level: Level, msg: &str) {
        let now = crate::timeutil::format_rfc3339_nanos(crate::timeutil::now_ns());
        let line = match self.format {
            LogFormatter::Json => {
                let mut s = String::from("{\"when\":");
                crate::value::write_json_str(&now, &mut s);
                s.push_str(",\"level\":");
                crate::value::write_json_str(level.name(), &mut s);
                s.push_str(",\"source\":");
                crate::value::write_json_str(&self.name, &mut s);
                s.push_str(",\"msg\":");
                crate::value::write_json_str(msg, &mut s);
                s.push('}');
                s
            }
            LogFormatter::Color => {
                let c = match level {
                    Level::Error => "31",
                    Level::Warn => "33",
                    Level::Info => "32",
                    Level::Debug => "36",
                };
                format!(
                    "{now} \x1b[{c}m{:5}\x1b[0m [{}] {msg}",
                    level.name(),
                    self.name
                )
            }
            LogFormatter::Text | LogFormatter::Multi => {
                format!("{now} {:5} [{}] {msg}", level.name(), self.name)
            }
        };
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

/// Discards everything (tests, quiet tools).
pub struct NullLogger;

impl Logger for NullLogger {
    fn enabled(&self, _: Level) -> bool {
        false
    }
    fn log(&self, _: Level, _: &str) {}
}

//! A progress bar with records/s and MB/s, shown only on a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Instant;

pub struct Progress {
    bar: Option<ProgressBar>,
    start: Instant,
    last: Instant,
}

impl Progress {
    pub fn new(enabled: bool, total_bytes: Option<u64>) -> Self {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let b = match total_bytes {
                Some(t) => ProgressBar::new(t).with_style(
                    ProgressStyle::with_template(
                        "{bar:30} {percent:>3}% {msg} [{elapsed_precise}, eta {eta}]",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                ),
                None => ProgressBar::new_spinner().with_style(
                    ProgressStyle::with_template("{spinner} {msg} [{elapsed_precise}]")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                ),
            };
            b.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
            b
        });
        let now = Instant::now();
        Progress {
            bar,
            start: now,
            last: now,
        }
    }

    pub fn update(&mut self, records: u64, bytes: u64) {
        let Some(bar) = &self.bar else { return };
        let now = Instant::now();
        if now.duration_since(self.last).as_millis() < 200 {
            return;
        }
        self.last = now;
        let secs = now.duration_since(self.start).as_secs_f64().max(1e-6);
        bar.set_position(bytes);
        bar.set_message(format!(
            "{records} records, {:.0} records/s, {:.1} MB/s",
            records as f64 / secs,
            bytes as f64 / 1e6 / secs
        ));
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

//! flb-host: runs a plugin scenario the way Fluent Bit would and prints a JSON report.
//!
//! ```text
//! flb-host SCENARIO.json
//! ```
//!
//! A scenario names the plugin, its instances (properties), and steps: flushes of chunk
//! files (replayed `repeat` times, on `workers` threads with small stacks and Fluent
//! Bit's retry loop), pauses, exits, and hot reloads. The report has every return code,
//! the plugin's log lines, timings, CPU time and peak RSS, and the threads left after
//! unloading.

use anyhow::{Context, Result};
use flb_host::{DefAlloc, Plugin, Workers, flush_concurrently, logs, thread_names};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn default_stack() -> usize {
    24
}
fn default_workers() -> usize {
    1
}
fn default_retry() -> u32 {
    1
}
fn default_level() -> i32 {
    3
}
fn default_true() -> bool {
    true
}
fn default_alloc() -> DefAlloc {
    DefAlloc::Zeroed48
}
fn default_repeat() -> usize {
    1
}

#[derive(Deserialize)]
struct Scenario {
    plugin: PathBuf,
    #[serde(default = "default_alloc")]
    def_alloc: DefAlloc,
    /// Flush thread stack in KiB (Fluent Bit < 5.1: 24, >= 5.1: 64).
    #[serde(default = "default_stack")]
    stack_kib: usize,
    #[serde(default = "default_workers")]
    workers: usize,
    /// A new thread for every flush attempt, instead of long-lived flushing threads as in
    /// Fluent Bit: checks that the plugin keeps nothing in thread-locals between flushes.
    #[serde(default)]
    fresh_thread_per_flush: bool,
    #[serde(default = "default_retry")]
    retry_limit: u32,
    #[serde(default)]
    retry_delay_ms: u64,
    instances: Vec<InstanceSpec>,
    #[serde(default)]
    steps: Vec<Step>,
    #[serde(default = "default_true")]
    unload: bool,
    #[serde(default)]
    echo_logs: bool,
}

#[derive(Deserialize)]
struct InstanceSpec {
    props: BTreeMap<String, String>,
    #[serde(default = "default_level")]
    log_level: i32,
}

#[derive(Deserialize)]
struct FlushSpec {
    #[serde(default)]
    instance: usize,
    chunks: Vec<PathBuf>,
    #[serde(default)]
    tag: String,
    #[serde(default = "default_repeat")]
    repeat: usize,
    workers: Option<usize>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Step {
    Flush(FlushSpec),
    SleepMs(u64),
    Exit(usize),
    /// A hot reload (`flb_reload.c`): the plugin is loaded again for a new context with
    /// `instances` while the old one flushes `during` on another thread; then the old
    /// instances exit (PreExit(1), ExitCtx), Unregister and dlclose follow, and the new
    /// instances are initialised (Init, PreRun(1)). Later steps address the new ones.
    Reload {
        instances: Vec<InstanceSpec>,
        #[serde(default)]
        during: Option<FlushSpec>,
        /// Initialise the new instances before the old ones exit and are unregistered:
        /// not Fluent Bit's order, but one a plugin should survive.
        #[serde(default)]
        init_first: bool,
    },
}

/// Initialises every instance; their indexes (None for a failed Init) and reports.
fn init_all(
    plugin: &mut Plugin,
    specs: &[InstanceSpec],
) -> (Vec<Option<usize>>, Vec<serde_json::Value>) {
    let mut inits = Vec::new();
    let mut ids = Vec::new();
    for spec in specs {
        let props: Vec<(String, String)> = spec
            .props
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        match plugin.init(&props, spec.log_level) {
            Ok(i) => {
                inits.push(json!({"ok": true}));
                ids.push(Some(i));
            }
            Err(e) => {
                inits.push(json!({"ok": false, "error": format!("{e:#}")}));
                ids.push(None);
            }
        }
    }
    (ids, inits)
}

/// One flush step: its chunks (`repeat` times) on `workers` threads with Fluent Bit's
/// retry loop; the report of its codes.
fn run_flush(
    plugin: &Plugin,
    ids: &[Option<usize>],
    f: &FlushSpec,
    sc: &Scenario,
) -> Result<serde_json::Value> {
    let Some(Some(idx)) = ids.get(f.instance).copied() else {
        return Ok(json!({"instance": f.instance, "error": "instance not initialised"}));
    };
    // Each file is read once; repeats share its bytes, so the host's own memory does not
    // grow with `repeat` and RSS measures the plugin.
    let mut loaded = Vec::new();
    for c in &f.chunks {
        loaded.push(std::sync::Arc::new(flb_host::load_chunk(c)?));
    }
    let mut list = Vec::new();
    for _ in 0..f.repeat {
        for d in &loaded {
            list.push((d.clone(), f.tag.clone()));
        }
    }
    let t = Instant::now();
    let codes = flush_concurrently(
        plugin,
        idx,
        &list,
        Workers {
            count: f.workers.unwrap_or(sc.workers),
            stack: sc.stack_kib * 1024,
            fresh_thread_per_flush: sc.fresh_thread_per_flush,
        },
        sc.retry_limit,
        Duration::from_millis(sc.retry_delay_ms),
    );
    Ok(json!({
        "instance": f.instance,
        "codes": codes.iter().map(|(c, _)| c).collect::<Vec<_>>(),
        "attempts": codes.iter().map(|(_, a)| a).collect::<Vec<_>>(),
        "ms": t.elapsed().as_secs_f64() * 1000.0,
        // Distinct threads that have run a flush call in the run so far.
        "flush_threads": plugin.flush_threads(),
    }))
}

fn cpu_and_rss() -> (f64, u64) {
    // SAFETY: getrusage fills the struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let cpu = ru.ru_utime.tv_sec as f64
        + ru.ru_utime.tv_usec as f64 / 1e6
        + ru.ru_stime.tv_sec as f64
        + ru.ru_stime.tv_usec as f64 / 1e6;
    (cpu, ru.ru_maxrss as u64 * 1024)
}

fn main() -> Result<()> {
    let path = std::env::args()
        .nth(1)
        .context("usage: flb-host SCENARIO.json")?;
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let sc: Scenario = serde_json::from_str(&text).context("parsing the scenario")?;
    flb_host::echo_logs(sc.echo_logs);
    let started = Instant::now();
    let mut report = serde_json::Map::new();
    let mut plugin = match Plugin::load(&sc.plugin, sc.def_alloc) {
        Ok(p) => p,
        Err(e) => {
            println!("{}", json!({"load_error": format!("{e:#}")}));
            return Ok(());
        }
    };
    report.insert("name".into(), json!(plugin.name));
    report.insert("description".into(), json!(plugin.description));
    let (mut ids, inits) = init_all(&mut plugin, &sc.instances);
    report.insert("init".into(), json!(inits));
    let mut reloads = Vec::new();
    plugin.pre_run();
    let cpu0 = cpu_and_rss().0;
    let mut flushes = Vec::new();
    let mut exits = BTreeMap::new();
    let flush_started = Instant::now();
    for step in &sc.steps {
        match step {
            Step::Flush(f) => flushes.push(run_flush(&plugin, &ids, f, &sc)?),
            Step::Reload {
                instances,
                during,
                init_first,
            } => {
                let t = Instant::now();
                let (new, during) = std::thread::scope(|s| {
                    let (old, ids, sc) = (&plugin, &ids, &sc);
                    let bg = during
                        .as_ref()
                        .map(|f| s.spawn(move || run_flush(old, ids, f, sc)));
                    let new = Plugin::load_for_reload(&sc.plugin, sc.def_alloc);
                    (new, bg.map(|h| h.join().expect("flush thread")))
                });
                if let Some(d) = during {
                    flushes.push(d?);
                }
                let mut new = new?;
                let early = init_first.then(|| init_all(&mut new, instances));
                let mut old_exits = Vec::new();
                for idx in ids.iter().flatten() {
                    old_exits.push(plugin.exit_for_reload(*idx));
                }
                let old = std::mem::replace(&mut plugin, new);
                old.unload()?;
                let (new_ids, inits) = match early {
                    Some(done) => done,
                    None => init_all(&mut plugin, instances),
                };
                plugin.pre_run();
                ids = new_ids;
                reloads.push(json!({
                    "old_exits": old_exits, "init": inits,
                    "ms": t.elapsed().as_secs_f64() * 1000.0,
                }));
            }
            Step::SleepMs(ms) => std::thread::sleep(Duration::from_millis(*ms)),
            Step::Exit(i) => {
                if let Some(Some(idx)) = ids.get(*i).copied() {
                    let t = Instant::now();
                    let rc = plugin.exit(idx);
                    exits.insert(
                        i.to_string(),
                        json!({"code": rc, "ms": t.elapsed().as_secs_f64() * 1000.0}),
                    );
                }
            }
        }
    }
    let flush_secs = flush_started.elapsed().as_secs_f64();
    report.insert("flushes".into(), json!(flushes));
    report.insert("reloads".into(), json!(reloads));
    // Remaining instances exit in init order, as at shutdown.
    for (i, id) in ids.iter().enumerate() {
        if let Some(idx) = id
            && !exits.contains_key(&i.to_string())
        {
            let t = Instant::now();
            let rc = plugin.exit(*idx);
            exits.insert(
                i.to_string(),
                json!({"code": rc, "ms": t.elapsed().as_secs_f64() * 1000.0}),
            );
        }
    }
    let total_secs = started.elapsed().as_secs_f64();
    let (cpu, rss) = cpu_and_rss();
    report.insert("exits".into(), json!(exits));
    report.insert("flush_seconds".into(), json!(flush_secs));
    report.insert("total_seconds".into(), json!(total_secs));
    report.insert("cpu_seconds".into(), json!(cpu - cpu0));
    report.insert("peak_rss_bytes".into(), json!(rss));
    let threads_before_unload = thread_names();
    if sc.unload {
        plugin.unload()?;
    }
    report.insert("threads_before_unload".into(), json!(threads_before_unload));
    report.insert("threads_after_unload".into(), json!(thread_names()));
    report.insert(
        "logs".into(),
        json!(
            logs()
                .into_iter()
                .map(|(l, m)| json!([l, m]))
                .collect::<Vec<_>>()
        ),
    );
    println!("{}", serde_json::Value::Object(report));
    Ok(())
}

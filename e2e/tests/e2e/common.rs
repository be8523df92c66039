//! Helpers shared by the end-to-end tests.

use data2parquet::config::Config;
use data2parquet::ingest::{Decoder, IngestSpec, KeyedBatch};
use data2parquet::record::Record;
use data2parquet::record::log::{COLUMNS, Col, LogRecord};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The folder holding the workspace's built binaries (target/debug).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/e2e-xxxx -> target/debug
    exe.parent()
        .and_then(Path::parent)
        .expect("target folder")
        .to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        p.display()
    );
    p
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    if std::env::var("E2E_VERBOSE").is_ok() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    out
}

/// Whether Python's `duckdb` can be imported (ci/setup installs it); says so when a
/// test is skipped for want of it.
pub fn have_duckdb(test: &str) -> bool {
    let have = Command::new("python3")
        .args(["-c", "import duckdb"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        eprintln!("{test}: python3 duckdb not installed; skipped");
    }
    have
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// What the pipeline must write for one record: all 34 columns, as the readback
/// module renders them.
pub fn expected_row(r: &LogRecord) -> Map<String, Value> {
    let mut m = Map::new();
    for c in COLUMNS {
        let v = match c {
            Col::S(s) => r.get(s).map_or(Value::Null, |v| Value::String(v.into())),
            Col::Audit => r.audit().map_or(Value::Null, Value::Bool),
            Col::AutoIndex => r.auto_index().map_or(Value::Null, Value::Bool),
            Col::Args => Value::Object(
                r.args()
                    .map(|(k, v)| (k.to_string(), Value::String(v.into())))
                    .collect(),
            ),
            Col::ExtraFields => Value::Object(
                r.extra_fields()
                    .map(|(k, v)| (k.to_string(), Value::String(v.into())))
                    .collect(),
            ),
            Col::Tags => Value::Array(r.tags().map(|v| Value::String(v.into())).collect()),
            Col::TraceIp => Value::Array(r.trace_ip().map(|v| Value::String(v.into())).collect()),
        };
        m.insert(c.name().to_string(), v);
    }
    m
}

/// Maps NDJSON lines with the library's own rules (the unit tests pin the rules; here
/// they tell what the end-to-end path must deliver).
/// The rows `ndjson` must become under `cfg`, by their `id` field (generated records
/// carry one).
pub fn expected_rows_by_id(
    cfg: &Config,
    ndjson: &str,
) -> std::collections::HashMap<String, Map<String, Value>> {
    expected_records(cfg, ndjson)
        .into_iter()
        .map(|(_, r)| {
            let row = expected_row(&r);
            (extra(&row, "id").unwrap().to_string(), row)
        })
        .collect()
}

/// The rows the NDJSON `text` must become with the default configuration, in input
/// order (one file's rows).
pub fn expected_rows_in_order(text: &str) -> Vec<Map<String, Value>> {
    expected_records(&Config::default(), text)
        .into_iter()
        .map(|(_, r)| expected_row(&r))
        .collect()
}

pub fn expected_records(cfg: &Config, ndjson: &str) -> Vec<(String, LogRecord)> {
    let spec = IngestSpec::from_config(cfg).expect("spec");
    let mut d = Decoder::new(&spec);
    let mut out = Vec::new();
    for line in ndjson.lines().filter(|l| !l.trim().is_empty()) {
        let mut b = KeyedBatch::new();
        let mut bytes = line.as_bytes().to_vec();
        if d.json(&mut bytes, String::new, &mut b) {
            for (k, recs) in b.take_groups() {
                for r in recs {
                    match r {
                        Record::Log(l) => out.push((k.to_string(), l)),
                        Record::Dynamic(_) => panic!("expected_records is for log records"),
                    }
                }
            }
        }
    }
    out
}

/// Every row of every Parquet file under `dir`, with the file it came from.
pub fn read_dir_rows(dir: &Path) -> Vec<(PathBuf, Map<String, Value>)> {
    let mut rows = Vec::new();
    for f in data2parquet::readback::parquet_files(dir) {
        for r in data2parquet::readback::file_rows(&f).expect("readable parquet") {
            rows.push((f.clone(), r));
        }
    }
    rows
}

/// The value of `extra-fields[key]` (where unknown input keys such as `id` land).
pub fn extra<'a>(row: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    row.get("extra-fields")?.get(key)?.as_str()
}

/// `json2parquet -c CONFIG --out-dir OUT INPUT`.
pub fn json2parquet_out_dir(config: &Path, out: &Path, input: &Path) -> Output {
    run(Command::new(bin("json2parquet"))
        .arg("-c")
        .arg(config)
        .arg("--out-dir")
        .arg(out)
        .arg(input))
}

/// Writes `n` generated records as NDJSON and returns the text.
pub fn generate(seed: u64, n: usize) -> String {
    let mut g = datagen::Generator::new(seed);
    let mut s = String::new();
    for _ in 0..n {
        g.write_json(&mut s);
        s.push('\n');
    }
    s
}

pub fn read_dlq(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("DLQ lines are JSON"))
        .collect()
}

/// Event encodings Fluent Bit has used.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ChunkFormat {
    /// v5.x: `[[EventTime, {}], body]` with fixarray headers.
    V5,
    /// v2.1-v4.x: array32 headers and map32 metadata.
    V2Array32,
    /// <= v2.0: `[EventTime, body]`.
    Legacy,
}

/// Writes a chunk file `name` in `dir`.
pub fn write_chunk(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// Encodes NDJSON records as one Fluent Bit chunk; event i gets time base + i ms.
pub fn chunk_from_ndjson(lines: &[&str], fmt: ChunkFormat, base_secs: u32) -> Vec<u8> {
    use data2parquet::decode::json::JsonParser;
    use data2parquet::decode::msgpack::write as w;
    let mut p = JsonParser::new();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let mut bytes = line.as_bytes().to_vec();
        let doc = p.parse(&mut bytes).expect("valid JSON");
        let secs = base_secs + (i / 1000) as u32;
        let nanos = (i % 1000) as u32 * 1_000_000;
        match fmt {
            ChunkFormat::V5 => {
                w::array(&mut out, 2);
                w::array(&mut out, 2);
                w::event_time(&mut out, secs, nanos);
                w::map(&mut out, 0);
            }
            ChunkFormat::V2Array32 => {
                out.extend_from_slice(&[0xdd, 0, 0, 0, 2, 0xdd, 0, 0, 0, 2]);
                w::event_time(&mut out, secs, nanos);
                out.extend_from_slice(&[0xdf, 0, 0, 0, 0]);
            }
            ChunkFormat::Legacy => {
                w::array(&mut out, 2);
                w::event_time(&mut out, secs, nanos);
            }
        }
        w::value(&mut out, doc.root().expect("a value"));
    }
    out
}

/// `n` generated records as chunks of `per` records; returns the chunk files and the ids.
pub fn v5_chunks(dir: &Path, seed: u64, n: usize, per: usize) -> (Vec<PathBuf>, Vec<String>) {
    let text = generate(seed, n);
    let lines: Vec<&str> = text.lines().collect();
    let ids = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let files = lines
        .chunks(per)
        .enumerate()
        .map(|(i, part)| {
            let p = dir.join(format!("s{seed}-c{i}.chunk"));
            std::fs::write(&p, chunk_from_ndjson(part, ChunkFormat::V5, 1_700_000_000)).unwrap();
            p
        })
        .collect();
    (files, ids)
}

/// Plugin instance properties for the file writer under `out` (no fsync: these tests
/// are not about the disk), then `extra`, which may override them.
pub fn instance_props(out: &Path, extra: &[(&str, &str)]) -> Value {
    let mut m = Map::new();
    m.insert("WriterFilePath".into(), json!(out.to_str().unwrap()));
    m.insert("WriterFsync".into(), json!("false"));
    for (k, v) in extra {
        m.insert((*k).into(), json!(v));
    }
    Value::Object(m)
}

/// A host scenario: the built plugin, one `{"props": ...}` per instance, the steps, and
/// the host `options` (stack size, retry loop).
pub fn host_scenario(instances: Vec<Value>, steps: Vec<Value>, options: Value) -> Value {
    let mut sc = json!({
        "plugin": plugin_path(),
        "instances": instances.into_iter().map(|p| json!({"props": p})).collect::<Vec<_>>(),
        "steps": steps,
    });
    if let (Some(m), Value::Object(o)) = (sc.as_object_mut(), options) {
        m.extend(o);
    }
    sc
}

/// Fluent Bit's return codes, as the host reports them.
pub const FLB_ERROR: i64 = 0;
pub const FLB_OK: i64 = 1;
pub const FLB_RETRY: i64 = 2;

/// Runs the test host on a scenario; returns its JSON report.
pub fn run_host(scenario: &Value, env: &[(&str, &str)]) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("scenario.json");
    std::fs::write(&path, serde_json::to_vec(scenario).expect("json")).expect("write scenario");
    let mut cmd = Command::new(bin("flb-host"));
    cmd.arg(&path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(&mut cmd);
    assert!(
        out.status.success(),
        "flb-host failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "flb-host report is not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

pub fn plugin_path() -> PathBuf {
    bin("libdata2parquet.so")
}

/// The repository's fixture folder for chunks.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools/flb-host/fixtures")
}

pub fn codes(report: &Value, i: usize) -> Vec<i64> {
    report["flushes"][i]["codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_i64().expect("code"))
        .collect()
}

pub fn logs_text(report: &Value) -> Vec<(i64, String)> {
    report["logs"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|l| {
                    (
                        l[0].as_i64().unwrap_or(0),
                        l[1].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A free TCP port on the loopback interface, never the same twice in this test
/// binary: the kernel may hand a released port out again, and two tests' servers
/// would then race for it.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A listener on a port from [`free_port`], for the servers the tests run in this
/// process (proxies, fake peers). Binding port 0 directly could take a port that
/// `free_port` handed to another test a moment ago and that its server has not bound
/// yet: that server would then fail to start, and its test, probing the port, would
/// reach this listener instead, and through a proxy another test's server.
pub fn listen_free() -> std::net::TcpListener {
    loop {
        // A port taken since it was probed (an outgoing connection's local port) is
        // skipped; `free_port` never hands it out again.
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", free_port())) {
            return l;
        }
    }
}

/// A real redis-server on a free loopback port, with AOF (fsync always) in its own folder
/// so it can be restarted without losing data. Killed on drop.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
    /// With TLS: the TLS port, and the server's certificate, key and the CA its
    /// clients' certificates must come from. The plain port stays open for the
    /// test's own checks.
    tls: Option<(u16, [PathBuf; 3])>,
}

impl RedisServer {
    /// Starts a server on a free port. One that could not bind it (the port handed out
    /// twice, to another test's server too) is started again on another.
    pub fn start() -> RedisServer {
        Self::launch(None)
    }

    /// Also serves TLS on a second port, with `cert` and `key`, asking clients for a
    /// certificate from `client_ca` (Redis's default, `tls-auth-clients yes`).
    pub fn start_tls(cert: &Path, key: &Path, client_ca: &Path) -> RedisServer {
        Self::launch(Some([cert.into(), key.into(), client_ca.into()]))
    }

    /// The TLS port ([`RedisServer::start_tls`]).
    pub fn tls_port(&self) -> u16 {
        self.tls.as_ref().map_or(0, |(p, _)| *p)
    }

    fn launch(tls: Option<[PathBuf; 3]>) -> RedisServer {
        let mut s = RedisServer {
            port: 0,
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
            tls: None,
        };
        for _ in 0..5 {
            s.port = free_port();
            s.tls = tls.clone().map(|files| (free_port(), files));
            if s.spawn() {
                return s;
            }
        }
        panic!("redis-server did not start");
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's process id (0 while stopped), for tests that pause it.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// (Re)starts the server on the same port and data folder.
    pub fn restart(&mut self) {
        assert!(self.spawn(), "redis-server did not start again");
    }

    /// Starts the server; true once it answers as itself: a PING alone could be
    /// answered by another test's server on the same port.
    fn spawn(&mut self) -> bool {
        self.stop();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--protected-mode",
                "no",
            ])
            .args(self.tls.iter().flat_map(|(port, [cert, key, ca])| {
                [
                    "--tls-port".into(),
                    port.to_string().into(),
                    "--tls-cert-file".into(),
                    cert.clone().into_os_string(),
                    "--tls-key-file".into(),
                    key.clone().into_os_string(),
                    "--tls-ca-cert-file".into(),
                    ca.clone().into_os_string(),
                ]
                .into_iter()
                .collect::<Vec<std::ffi::OsString>>()
            }))
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (ci/setup installs it)");
        self.child = Some(child);
        let ours = self.dir.path().canonicalize().ok();
        let t = std::time::Instant::now();
        loop {
            if let Ok(mut c) = self.conn()
                && let Ok(dir) = redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("dir")
                    .query::<Vec<String>>(&mut c)
                && dir.get(1).map(std::path::PathBuf::from) == ours
            {
                return true;
            }
            let exited = self
                .child
                .as_mut()
                .is_none_or(|c| c.try_wait().ok().flatten().is_some());
            if exited {
                self.child = None;
                return false;
            }
            assert!(t.elapsed().as_secs() < 20, "redis-server did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn conn(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.url())?
            .get_connection_with_timeout(std::time::Duration::from_secs(2))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A real `moto_server` (S3 and STS) on a free loopback port. Killed on drop.
pub struct MotoServer {
    pub port: u16,
    child: std::process::Child,
    tls: bool,
}

impl MotoServer {
    pub fn start() -> MotoServer {
        Self::launch(None)
    }

    /// Serves HTTPS with the certificate and key given (PEM files).
    pub fn start_tls(cert: &Path, key: &Path) -> MotoServer {
        Self::launch(Some((cert, key)))
    }

    /// Starts moto_server on a free port; one that exits before it serves (it could
    /// not bind the port: another process took it since it was probed) is started
    /// again on another.
    fn launch(tls: Option<(&Path, &Path)>) -> MotoServer {
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = Command::new("moto_server");
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
            if let Some((cert, key)) = tls {
                cmd.arg("-s").arg("-c").arg(cert).arg("-k").arg(key);
            }
            let mut child = cmd
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("moto_server is installed (ci/setup installs moto[server])");
            if Self::serves(&mut child, port, tls.is_some()) {
                return MotoServer {
                    port,
                    child,
                    tls: tls.is_some(),
                };
            }
        }
        panic!("moto_server did not start");
    }

    /// Waits until `child` serves on `port`: false if it exits first.
    fn serves(child: &mut std::process::Child, port: u16, tls: bool) -> bool {
        let t = std::time::Instant::now();
        loop {
            if child.try_wait().ok().flatten().is_some() {
                return false;
            }
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::{Read, Write};
                // With TLS, a listening socket is enough (the clients retry); a plain
                // request would only fail the handshake.
                if tls {
                    return true;
                }
                let _ = s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n");
                let mut b = [0u8; 12];
                if s.read(&mut b).is_ok_and(|n| n > 0) {
                    return true;
                }
            }
            assert!(t.elapsed().as_secs() < 30, "moto_server did not start");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy in front of a server, which can be switched off and on to simulate an
/// endpoint that goes down and comes back (with the server's state intact). Going down
/// also cuts the live connections, as a real outage does: otherwise a client's pooled
/// keep-alive connection would carry on through the "outage".
pub struct Proxy {
    pub port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    live: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    pub fn start(target: u16) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = listen_free();
        let port = listener.local_addr().expect("addr").port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let live = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (flag, conns) = (up.clone(), live.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                // Checked under the lock that `set_up(false)` takes, so no connection
                // slips past an outage's cut.
                let mut held = conns.lock().unwrap();
                if !flag.load(Ordering::SeqCst) {
                    drop(client); // refused in effect: the connection is closed at once
                    continue;
                }
                if let Ok(c) = client.try_clone() {
                    held.push(c);
                }
                drop(held);
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let (c2, s2) = match (client.try_clone(), server.try_clone()) {
                    (Ok(c), Ok(s)) => (c, s),
                    _ => continue,
                };
                let pipe = |mut from: std::net::TcpStream, mut to: std::net::TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                };
                pipe(client, s2);
                pipe(server, c2);
            }
        });
        Proxy { port, up, live }
    }

    pub fn set_up(&self, on: bool) {
        let mut live = self.live.lock().unwrap();
        self.up.store(on, std::sync::atomic::Ordering::SeqCst);
        if !on {
            for c in live.drain(..) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// A response: status, headers (lower-case names), body.
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One request with a real HTTP client (ureq).
pub fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> HttpResponse {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into();
    let mut resp = match method {
        "GET" => {
            let mut r = agent.get(url);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.call()
        }
        _ => {
            let mut r = agent.post(url);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.send(body.unwrap_or(&[]))
        }
    }
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let body = resp
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .unwrap_or_default();
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// The http-server binary on a free port, with `config` (JSON object) plus the port.
pub struct HttpServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl HttpServer {
    /// Starts the server on a free port. It counts as up once its own log says it
    /// listens: a connection alone could reach another test's server, should the
    /// port have been handed out twice. A server that could not bind its port is
    /// started again on another.
    pub fn start(mut config: Value) -> HttpServer {
        let dir = tempfile::tempdir().expect("tempdir");
        if config.get("writer_file_path").is_none() {
            config["writer_file_path"] = serde_json::json!(dir.path().join("out"));
        }
        config["address"] = serde_json::json!("127.0.0.1");
        config["writer_fsync"] = serde_json::json!(false);
        config["log_formatter"] = serde_json::json!("text");
        let mut s = HttpServer {
            port: 0,
            dir,
            child: None,
        };
        for _ in 0..5 {
            s.port = free_port();
            config["port"] = serde_json::json!(s.port);
            let cfg = s.dir.path().join("config.json");
            std::fs::write(&cfg, serde_json::to_vec(&config).expect("json")).expect("write config");
            let mut child = Command::new(bin("http-server"))
                .arg(&cfg)
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(s.dir.path().join("server.log")).expect("log file"))
                .spawn()
                .expect("start http-server");
            // `http://` or, with HttpTlsCertFile, `https://`.
            let listening = format!("://127.0.0.1:{} (", s.port);
            let t = std::time::Instant::now();
            loop {
                if s.log()
                    .lines()
                    .any(|l| l.contains("listening on http") && l.contains(&listening))
                {
                    s.child = Some(child);
                    return s;
                }
                if child.try_wait().expect("child status").is_some() {
                    break; // most likely the port was taken meanwhile: another one
                }
                assert!(
                    t.elapsed().as_secs() < 20,
                    "http-server did not start: {}",
                    s.log()
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        panic!("http-server did not start: {}", s.log());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// SIGTERM, then wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        c.wait().expect("wait")
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An OTLP/JSON `ExportLogsServiceRequest` of `records` per service; record `bad` of the
/// second service is not an object.
pub fn otlp_request_json(services: &[&str], records: usize, bad: Option<usize>) -> Value {
    let resource_logs: Vec<Value> = services
        .iter()
        .enumerate()
        .map(|(si, svc)| {
            let recs: Vec<Value> = (0..records)
                .map(|i| {
                    if si == 1 && Some(i) == bad {
                        return json!(42);
                    }
                    json!({
                        "timeUnixNano": format!("{}", 1_764_220_800_000_000_000u64 + i as u64 * 1_000_000_000),
                        "severityNumber": 9 + 4 * (i as i64 % 2),
                        "body": {"stringValue": format!("{svc} event {i}")},
                        "traceId": format!("{:032x}", i + 1),
                        "attributes": [
                            {"key": "http.status_code", "value": {"intValue": format!("{}", 200 + i)}},
                            {"key": "user", "value": {"kvlistValue": {"values": [
                                {"key": "id", "value": {"stringValue": format!("u{i}")}}]}}}
                        ]
                    })
                })
                .collect();
            json!({
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": svc}}]},
                "scopeLogs": [{"scope": {"name": "app"}, "logRecords": recs}]
            })
        })
        .collect();
    json!({ "resourceLogs": resource_logs })
}

/// An OTLP/JSON request as Fluent Bit's `in_opentelemetry` (5.x) turns it into a chunk:
/// per scope, a group start marker (`{schema: otlp, resource_id, scope_id}` and
/// `{resource: {attributes}, scope: {name, version}}`), one event per log record (its
/// fields in the metadata under `otlp`, ids as bytes; a kvlist body as the body, any
/// other as `{log: body}`), and a group end marker.
pub fn in_opentelemetry_chunk(req: &Value) -> Vec<u8> {
    use data2parquet::decode::msgpack::write as w;
    fn any(out: &mut Vec<u8>, v: &Value) {
        let Some((kind, inner)) = v.as_object().and_then(|m| m.iter().next()) else {
            return w::nil(out);
        };
        match kind.as_str() {
            "stringValue" => w::str(out, inner.as_str().unwrap()),
            "intValue" => w::int(out, inner.as_str().unwrap().parse().unwrap()),
            "boolValue" => w::bool(out, inner.as_bool().unwrap()),
            "doubleValue" => w::float(out, inner.as_f64().unwrap()),
            "kvlistValue" => key_values(out, inner["values"].as_array().unwrap()),
            "arrayValue" => {
                let vs = inner["values"].as_array().unwrap();
                w::array(out, vs.len());
                vs.iter().for_each(|v| any(out, v));
            }
            other => panic!("AnyValue {other} not encoded here"),
        }
    }
    fn key_values(out: &mut Vec<u8>, kvs: &[Value]) {
        w::map(out, kvs.len());
        for kv in kvs {
            w::str(out, kv["key"].as_str().unwrap());
            any(out, &kv["value"]);
        }
    }
    let hex = |s: &str| -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    };
    let mut out = Vec::new();
    for (ri, rl) in req["resourceLogs"].as_array().unwrap().iter().enumerate() {
        for (si, sl) in rl["scopeLogs"].as_array().unwrap().iter().enumerate() {
            w::array(&mut out, 2);
            w::array(&mut out, 2);
            w::event_time(&mut out, 0xFFFF_FFFF, 0);
            w::map(&mut out, 3);
            w::str(&mut out, "schema");
            w::str(&mut out, "otlp");
            w::str(&mut out, "resource_id");
            w::int(&mut out, ri as i64);
            w::str(&mut out, "scope_id");
            w::int(&mut out, si as i64);
            w::map(&mut out, 2);
            w::str(&mut out, "resource");
            w::map(&mut out, 1);
            w::str(&mut out, "attributes");
            key_values(&mut out, rl["resource"]["attributes"].as_array().unwrap());
            w::str(&mut out, "scope");
            w::map(&mut out, 1);
            w::str(&mut out, "name");
            w::str(&mut out, sl["scope"]["name"].as_str().unwrap());
            for lr in sl["logRecords"].as_array().unwrap() {
                let ns: u64 = lr["timeUnixNano"].as_str().unwrap().parse().unwrap();
                w::array(&mut out, 2);
                w::array(&mut out, 2);
                w::event_time(
                    &mut out,
                    (ns / 1_000_000_000) as u32,
                    (ns % 1_000_000_000) as u32,
                );
                w::map(&mut out, 1);
                w::str(&mut out, "otlp");
                w::map(&mut out, 5);
                w::str(&mut out, "timestamp");
                w::uint(&mut out, ns);
                w::str(&mut out, "severity_number");
                w::uint(&mut out, lr["severityNumber"].as_u64().unwrap());
                w::str(&mut out, "attributes");
                key_values(&mut out, lr["attributes"].as_array().unwrap());
                w::str(&mut out, "trace_id");
                w::bin(&mut out, &hex(lr["traceId"].as_str().unwrap()));
                w::str(&mut out, "trace_flags");
                w::uint(&mut out, 0);
                let body = &lr["body"];
                if body.get("kvlistValue").is_some() {
                    any(&mut out, body);
                } else {
                    w::map(&mut out, 1);
                    w::str(&mut out, "log");
                    any(&mut out, body);
                }
            }
            w::array(&mut out, 2);
            w::array(&mut out, 2);
            w::event_time(&mut out, 0xFFFF_FFFE, 0);
            w::map(&mut out, 0);
            w::map(&mut out, 0);
        }
    }
    out
}

/// Every file under `dir`, hidden ones included (what a test must find gone).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

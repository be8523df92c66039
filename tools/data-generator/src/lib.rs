//! Deterministic, realistic log records in the upstream log schema.
//!
//! The same seed always gives the same records. Every field kind of the schema is
//! covered: required and optional strings (some as numbers, to exercise the
//! JSON-text rule), booleans, lists, maps, nested objects that get flattened,
//! unknown keys that land in `extra-fields`, aliases (`msg`, `lvl`, `hostname`), and
//! multi-line stack traces on errors. Partition fields follow upstream's generator,
//! which yields 60 distinct keys. Each record carries a unique `id`.

use std::fmt::Write as _;

/// SplitMix64: tiny, fast, and good enough for test data.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const WORDS: &[&str] = &[
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
    "enim",
    "ad",
    "minim",
    "veniam",
    "quis",
    "nostrud",
    "exercitation",
    "ullamco",
    "laboris",
    "nisi",
    "aliquip",
    "ex",
    "ea",
    "commodo",
    "consequat",
    "request",
    "order",
    "payment",
    "customer",
    "session",
    "token",
    "cache",
    "timeout",
    "retry",
    "upstream",
];
const LEVELS: &[&str] = &[
    "INFO", "INFO", "INFO", "INFO", "INFO", "DEBUG", "DEBUG", "WARN", "ERROR", "INFO",
];
const REGIONS: &[(&str, &str)] = &[
    ("us-east-1", "us-east-1a"),
    ("eu-west-1", "eu-west-1b"),
    ("sa-east-1", "sa-east-1c"),
];
const AGENTS: &[&str] = &[
    "curl/8.5.0",
    "Mozilla/5.0 (X11; Linux x86_64)",
    "okhttp/4.12.0",
    "Go-http-client/2.0",
];

/// Generates records; `start_ns` is the time of the first record.
pub struct Generator {
    rng: Rng,
    seq: u64,
    start_ns: i64,
    run: u64,
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        Generator {
            rng: Rng::new(seed),
            seq: 0,
            // 2026-01-01T00:00:00Z: fixed, so output is reproducible.
            start_ns: 1_767_225_600_000_000_000,
            run: seed,
        }
    }

    pub fn with_start(mut self, start_ns: i64) -> Self {
        self.start_ns = start_ns;
        self
    }

    /// The partition key values of record number `i` (upstream's 60-key scheme).
    pub fn key_of(i: u64) -> [String; 4] {
        [
            format!("buscap-{:02}", i % 10),
            format!("busdom-{:02}", i % 10),
            format!("bussvc-{:02}", i % 20),
            format!("appsvc-{:02}", i % 30),
        ]
    }

    /// The unique id of record `seq` in run `run`.
    pub fn id_of(run: u64, seq: u64) -> String {
        format!("{run:08x}-{seq:012}")
    }

    fn words(&mut self, out: &mut String, n: usize) {
        for i in 0..n {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(self.rng.pick(WORDS));
        }
    }

    fn hex(&mut self, out: &mut String, n: usize) {
        for _ in 0..n {
            let _ = write!(out, "{:x}", self.rng.below(16));
        }
    }

    /// Appends one record as a JSON object (no newline).
    pub fn write_json(&mut self, out: &mut String) {
        let seq = self.seq;
        self.seq += 1;
        let r = &mut self.rng;
        let k = Self::key_of(r.below(60 * 1000));
        let level = r.pick(LEVELS);
        let t = self.start_ns + seq as i64 * 1_000_000 + r.below(1_000_000) as i64;
        let (region, az) = REGIONS[r.below(REGIONS.len() as u64) as usize];
        out.push('{');
        let _ = write!(out, r#""id":"{}","#, Self::id_of(self.run, seq));
        let _ = write!(
            out,
            r#""time":"{}","#,
            data2parquet::timeutil::format_rfc3339_nanos(t)
        );
        // Aliases appear now and then, as they do in real fleets.
        let lvl_key = if self.rng.chance(10) { "lvl" } else { "level" };
        let _ = write!(out, r#""{lvl_key}":"{level}","#);
        let msg_key = if self.rng.chance(15) {
            "msg"
        } else {
            "message"
        };
        let _ = write!(out, r#""{msg_key}":""#);
        let sentences = 1 + self.rng.below(3) as usize;
        for s in 0..sentences {
            if s > 0 {
                out.push_str(". ");
            }
            let n = 4 + self.rng.below(6) as usize;
            self.words(out, n);
        }
        out.push_str(r#"","#);
        let _ = write!(
            out,
            r#""business-capability":"{}","business-domain":"{}","business-service":"{}","application-service":"{}","#,
            k[0], k[1], k[2], k[3]
        );
        out.push_str(r#""correlation-id":""#);
        self.hex(out, 32);
        out.push_str(r#"","session-id":""#);
        self.hex(out, 16);
        out.push_str(r#"","message-id":""#);
        self.hex(out, 16);
        out.push_str("\",");
        if self.rng.chance(70) {
            let _ = write!(out, r#""user-id":"user-{}","#, self.rng.below(100_000));
        }
        if self.rng.chance(30) {
            let _ = write!(out, r#""person-id":"p{}","#, self.rng.below(1_000_000));
        }
        if self.rng.chance(20) {
            out.push_str(r#""device-id":""#);
            self.hex(out, 12);
            out.push_str("\",");
        }
        let _ = write!(
            out,
            r#""resource-type":"ec2","cloud-provider":"aws","source-id":"src-{}","region":"{region}","az":"{az}","#,
            self.rng.below(50)
        );
        let status = if level == "ERROR" { 500 } else { 200 };
        // A number on purpose: it must land as its JSON text "200".
        let _ = write!(out, r#""http-response":{status},"#);
        let _ = write!(
            out,
            r#""duration":{}.{},"#,
            self.rng.below(2000),
            self.rng.below(10)
        );
        let _ = write!(
            out,
            r#""ttl":"30d","logger-name":"com.example.{}","thread-name":"worker-{}","#,
            self.rng.pick(&["api", "db", "queue", "auth"]),
            self.rng.below(16)
        );
        if self.rng.chance(50) {
            out.push_str(r#""transaction-message-reference":""#);
            self.hex(out, 20);
            out.push_str("\",");
        }
        let _ = write!(
            out,
            r#""audit":{},"auto-index":{},"#,
            self.rng.chance(20),
            self.rng.chance(50)
        );
        let ntags = self.rng.below(5) as usize;
        out.push_str(r#""tags":["#);
        for i in 0..ntags {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, r#""tag{}""#, self.rng.below(20));
        }
        out.push_str("],");
        let _ = write!(
            out,
            r#""trace-ip":["10.{}.{}.{}"],"#,
            self.rng.below(256),
            self.rng.below(256),
            self.rng.below(256)
        );
        let nargs = 1 + self.rng.below(3);
        out.push_str(r#""args":{"#);
        for i in 0..nargs {
            let _ = write!(out, r#""arg{i}":"val{}","#, self.rng.below(100));
        }
        let _ = write!(out, r#""retries":{}}},"#, self.rng.below(4));
        let host_key = if self.rng.chance(30) {
            "hostname"
        } else {
            "host"
        };
        let _ = write!(
            out,
            r#""{host_key}":"ip-10-0-{}-{}","#,
            self.rng.below(8),
            self.rng.below(256)
        );
        let _ = write!(out, r#""env":"{}","#, self.rng.pick(&["prod", "staging"]));
        if self.rng.chance(25) {
            let _ = write!(
                out,
                r#""details":{{"order_id":"o{}","items":[{},{}],"tags":"vip,new"}},"#,
                self.rng.below(1_000_000),
                self.rng.below(10),
                self.rng.below(10)
            );
        }
        if self.rng.chance(50) {
            let ua = self.rng.pick(AGENTS);
            let _ = write!(out, r#""user_agent":"{ua}","#);
        }
        if level == "ERROR" {
            let _ = write!(
                out,
                r#""error":"{} failed","error-code":"E{}","#,
                self.rng.pick(WORDS),
                self.rng.below(10_000)
            );
            out.push_str(r#""stack-trace":"java.lang.IllegalStateException: "#);
            self.words(out, 5);
            let frames = 6 + self.rng.below(8);
            for f in 0..frames {
                let _ = write!(
                    out,
                    r#"\n\tat com.example.{}.Service{}.handle(Service{}.java:{})"#,
                    self.rng.pick(&["api", "db", "queue"]),
                    f,
                    f,
                    10 + self.rng.below(400)
                );
            }
            out.push_str("\",");
        }
        // Every record ends with its run-wide sequence number (no trailing comma).
        let _ = write!(out, r#""seq":{seq}}}"#);
    }

    /// Records generated so far.
    pub fn count(&self) -> u64 {
        self.seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_valid_json() {
        let (mut a, mut b) = (Generator::new(7), Generator::new(7));
        let (mut sa, mut sb) = (String::new(), String::new());
        for _ in 0..200 {
            sa.clear();
            sb.clear();
            a.write_json(&mut sa);
            b.write_json(&mut sb);
            assert_eq!(sa, sb);
            let v: serde_json::Value = serde_json::from_str(&sa).unwrap();
            assert!(v.get("id").is_some());
        }
        let mut c = Generator::new(8);
        let mut sc = String::new();
        c.write_json(&mut sc);
        assert_ne!(sa, sc);
    }

    #[test]
    fn sixty_keys() {
        let keys: std::collections::HashSet<_> = (0..6000).map(Generator::key_of).collect();
        assert_eq!(keys.len(), 60);
    }
}

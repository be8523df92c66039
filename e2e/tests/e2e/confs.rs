//! The example Fluent Bit configurations: both formats describe the same outputs, every
//! out_parquet property is a valid key with a valid value, and the file-writer examples
//! run in the test host with exactly those properties.

use crate::common::*;
use data2parquet::config::ConfigBuilder;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

type Section = BTreeMap<String, String>;

fn conf_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fluent-bit-conf")
}

/// Classic format: `[SECTION]` headers and `Key Value` lines.
fn parse_classic(text: &str) -> Vec<(String, Section)> {
    let mut out: Vec<(String, Section)> = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            out.push((name.to_ascii_uppercase(), Section::new()));
            continue;
        }
        let (k, v) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
        if let Some((_, s)) = out.last_mut() {
            s.insert(k.to_string(), v.trim().to_string());
        }
    }
    out
}

/// The YAML outputs list (`pipeline: outputs: - name: ...`), for the layout our files use.
fn parse_yaml_outputs(text: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    let mut in_outputs = false;
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if t == "outputs:" {
            in_outputs = true;
            continue;
        }
        if in_outputs && indent <= 2 {
            in_outputs = false;
        }
        if !in_outputs {
            continue;
        }
        let (item_start, kv) = match t.strip_prefix("- ") {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        if item_start {
            out.push(Section::new());
        }
        if let Some((k, v)) = kv.split_once(':')
            && let Some(s) = out.last_mut()
        {
            let v = v.trim().trim_matches('\'').trim_matches('"');
            s.insert(k.trim().to_string(), v.to_string());
        }
    }
    out
}

/// Fluent Bit's `${VAR}` substitution, with sample values.
fn substitute(v: &str) -> String {
    v.replace("${REDIS_HOST}", "127.0.0.1")
        .replace("${REDIS_PASSWORD}", "secret")
        .replace("${HOSTNAME}", "node-a")
        .replace("${S3_ENDPOINT}", "http://127.0.0.1:9000")
        .replace("${D2P_HMAC_KEY}", "k")
        .replace(
            "/etc/fluent-bit/app-schema.json",
            &conf_dir()
                .join("tail-json-schema-file/app-schema.json")
                .display()
                .to_string(),
        )
}

/// The plugin's view: properties the core consumes are invisible.
fn plugin_props(s: &Section) -> Vec<(String, String)> {
    s.iter()
        .filter(|(k, _)| {
            !matches!(
                k.to_ascii_lowercase().as_str(),
                "name"
                    | "match"
                    | "match_regex"
                    | "retry_limit"
                    | "workers"
                    | "alias"
                    | "log_level"
            )
        })
        .map(|(k, v)| (k.clone(), substitute(v)))
        .collect()
}

fn validate(props: &[(String, String)], what: &str) {
    let b = ConfigBuilder::from_lookup(|key| {
        props
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
    })
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    b.build().unwrap_or_else(|e| panic!("{what}: {e}"));
    // Every property must be a key we know (Fluent Bit cannot tell us about typos).
    for (k, _) in props {
        assert!(
            data2parquet::config::keys::lookup(k).is_some(),
            "{what}: unknown key {k}"
        );
    }
}

fn outputs_of(dir: &Path) -> (Vec<Section>, Vec<Section>) {
    let classic = parse_classic(&std::fs::read_to_string(dir.join("fluent-bit.conf")).unwrap());
    let classic: Vec<Section> = classic
        .into_iter()
        .filter(|(n, s)| n == "OUTPUT" && s.get("Name").map(String::as_str) == Some("out_parquet"))
        .map(|(_, s)| s)
        .collect();
    let yaml = parse_yaml_outputs(&std::fs::read_to_string(dir.join("fluent-bit.yaml")).unwrap());
    (classic, yaml)
}

#[test]
fn examples_are_valid_and_both_formats_agree() {
    for name in [
        "tail-mem-file",
        "forward-redis-s3",
        "two-instances",
        "kubernetes-dynamic-file",
        "opentelemetry-dynamic-file",
        "tail-json-schema-file",
    ] {
        let dir = conf_dir().join(name);
        let (classic, yaml) = outputs_of(&dir);
        assert!(!classic.is_empty(), "{name}: no out_parquet output");
        assert_eq!(
            classic.len(),
            yaml.len(),
            "{name}: both formats have the same outputs"
        );
        for (i, (c, y)) in classic.iter().zip(&yaml).enumerate() {
            let (pc, py) = (plugin_props(c), plugin_props(y));
            validate(&pc, &format!("{name}/fluent-bit.conf output {i}"));
            validate(&py, &format!("{name}/fluent-bit.yaml output {i}"));
            let norm = |p: &[(String, String)]| -> BTreeMap<String, String> {
                p.iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                    .collect()
            };
            assert_eq!(
                norm(&pc),
                norm(&py),
                "{name}: output {i} differs between formats"
            );
        }
        let plugins = std::fs::read_to_string(dir.join("plugins.conf")).unwrap();
        assert!(plugins.contains("[PLUGINS]") && plugins.contains("libdata2parquet.so"));
        let yaml_text = std::fs::read_to_string(dir.join("fluent-bit.yaml")).unwrap();
        assert!(
            yaml_text.contains("libdata2parquet.so"),
            "{name}: YAML loads the plugin"
        );
    }
}

#[test]
fn file_writer_examples_run_in_the_host() {
    let chunk = fixtures().join("flb-5.1.1/varied.chunk");
    for name in [
        "tail-mem-file",
        "two-instances",
        "kubernetes-dynamic-file",
        "opentelemetry-dynamic-file",
        "tail-json-schema-file",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let (classic, _) = outputs_of(&conf_dir().join(name));
        let mut instances = Vec::new();
        let mut steps = Vec::new();
        for (i, s) in classic.iter().enumerate() {
            let mut props: serde_json::Map<String, Value> = plugin_props(s)
                .into_iter()
                .map(|(k, v)| (k, json!(v)))
                .collect();
            props.insert(
                "WriterFilePath".into(),
                json!(tmp.path().join(format!("o{i}"))),
            );
            if props.contains_key("MetricsFile") {
                props.insert(
                    "MetricsFile".into(),
                    json!(tmp.path().join(format!("m{i}.prom"))),
                );
            }
            instances.push(json!({"props": props}));
            steps.push(json!({"flush": {"instance": i, "chunks": [&chunk], "tag": "app.varied"}}));
        }
        let r = run_host(
            &json!({"plugin": plugin_path(), "instances": instances, "steps": steps}),
            &[],
        );
        for i in 0..classic.len() {
            assert_eq!(r["init"][i]["ok"], true, "{name} {i}: {r}");
            assert_eq!(codes(&r, i), [1], "{name} {i}");
            let rows = read_dir_rows(&tmp.path().join(format!("o{i}")));
            assert_eq!(rows.len(), 120, "{name} output {i}");
            if classic[i].contains_key("MetricsFile") {
                let m = std::fs::read_to_string(tmp.path().join(format!("m{i}.prom"))).unwrap();
                let want = format!("d2p_records_out_total{{output=\"m{i}\"}} 120\n");
                assert!(m.contains(&want), "{name} {i}: {m}");
            }
        }
    }
}

/// Runs the first `out_parquet` output of example `name` in the test host, writing
/// under `tmp`, with one flush of `chunk`, checks the chunk was taken, and gives the
/// output folder.
fn run_first_output(tmp: &tempfile::TempDir, name: &str, chunk: &Path, tag: &str) -> PathBuf {
    let (classic, _) = outputs_of(&conf_dir().join(name));
    let mut props: serde_json::Map<String, Value> = plugin_props(&classic[0])
        .into_iter()
        .map(|(k, v)| (k, json!(v)))
        .collect();
    let out = tmp.path().join("out");
    props.insert("WriterFilePath".into(), json!(out));
    let r = run_host(
        &json!({"plugin": plugin_path(), "instances": [{"props": props}],
                "steps": [{"flush": {"instance": 0, "chunks": [chunk], "tag": tag}}]}),
        &[],
    );
    assert_eq!(codes(&r, 0), [1], "{name}: {r}");
    out
}

/// The OpenTelemetry example does what its comment says with what `in_opentelemetry`
/// hands it: one row per log record, with the resource's `service.name`, in a folder
/// per service and hour.
#[test]
fn the_opentelemetry_example_partitions_by_service() {
    let tmp = tempfile::tempdir().unwrap();
    let req = otlp_request_json(&["checkout", "payments"], 3, None);
    let chunk = write_chunk(tmp.path(), "otel.chunk", &in_opentelemetry_chunk(&req));
    let out = run_first_output(&tmp, "opentelemetry-dynamic-file", &chunk, "otel");
    let rows = read_dir_rows(&out);
    assert_eq!(rows.len(), 6);
    for (file, row) in &rows {
        let rel = file
            .strip_prefix(&out)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let svc = row["service.name"].as_str().unwrap();
        // The records' times are 2025-11-27T05:20:0N, so one hour folder each.
        let want = format!("service={svc}/dt=2025-11-27/hour=05/");
        assert!(rel.starts_with(&want), "{rel} vs {want}");
        assert_eq!(row["otel.scope.name"], "app");
        assert!(row["trace_id"].as_str().unwrap().len() == 32);
    }
}

/// The JSON Schema example: its columns have the schema's types in every file, the
/// other keys of Fluent Bit's records have inferred columns, nothing goes to `_extra`
/// (the schema describes no objects), and the folders are by capability and event day.
#[test]
fn the_json_schema_example_pins_its_columns_and_infers_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let chunk = fixtures().join("flb-5.1.1/varied.chunk");
    let out = run_first_output(&tmp, "tail-json-schema-file", &chunk, "app.varied");
    let rows = read_dir_rows(&out);
    assert_eq!(rows.len(), 120);
    let files = data2parquet::readback::parquet_files(&out);
    for f in &files {
        let t = crate::dynamic::col_types(f);
        for (col, want) in [
            ("time", "timestamp[Microsecond,UTC]"),
            ("count", "int"),
            ("ratio", "float"),
            ("tags", "list<string>"),
            ("big", "int"),
            ("audit", "bool"),
            ("msg", "string"),
        ] {
            assert_eq!(t.get(col), Some(&json!(want)), "{}: {col}", f.display());
        }
    }
    for (file, row) in &rows {
        let rel = file.strip_prefix(&out).unwrap().to_str().unwrap();
        let cap = row["business_capability"].as_str().unwrap();
        // Record time is Fluent Bit's event time (`_event_time`), not the `time` field.
        let day = &row["_event_time"].as_str().unwrap()[..10];
        assert!(
            rel.starts_with(&format!("capability={cap}/dt={day}/")),
            "{rel}"
        );
        assert_eq!(row["_extra"], Value::Null, "{rel}");
    }
}

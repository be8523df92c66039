//! `JsonSchemaPath`: a JSON Schema that fixes the schema of dynamic records.
//!
//! Supported: `type` (a name or a list of names; `"null"` in the list makes a field
//! nullable; several other types make it a string column of JSON text), `properties`,
//! `required`, `items`, and `format: "date-time"` (a TIMESTAMP(MICROS, UTC) column).
//! A record that does not fit is rejected at decoding with the reason (and goes to the
//! DLQ); keys the schema does not name go to the `_extra` column as JSON, never dropped.

use super::dynamic::DType;
use crate::value::{Kind, Node, ValRef};
use serde_json::Value;

/// One schema node, ready for validation.
#[derive(Debug, Clone, PartialEq)]
enum Rule {
    Any,
    Bool,
    Int,
    Num,
    Str,
    DateTime,
    Array(Box<Rule>),
    Object { props: Vec<(String, Rule, bool)> },
}

#[derive(Debug, Clone, PartialEq)]
struct Check {
    rule: Rule,
    nullable: bool,
}

/// A loaded schema: the column types and the validator.
#[derive(Debug, Clone, PartialEq)]
pub struct Fixed {
    pub dtype: DType,
    root: Check,
}

fn parse(v: &Value, path: &str) -> Result<Check, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("{path}: a schema must be an object"))?;
    let types: Vec<&str> = match obj.get("type") {
        None => {
            if obj.contains_key("properties") {
                vec!["object"]
            } else if obj.contains_key("items") {
                vec!["array"]
            } else {
                vec![]
            }
        }
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        Some(_) => return Err(format!("{path}: `type` must be a string or a list")),
    };
    let nullable = types.contains(&"null") || types.is_empty();
    let concrete: Vec<&str> = types.iter().copied().filter(|t| *t != "null").collect();
    let rule = match concrete.as_slice() {
        [] => Rule::Any,
        ["boolean"] => Rule::Bool,
        ["integer"] => Rule::Int,
        ["number"] => Rule::Num,
        ["string"] if obj.get("format").and_then(Value::as_str) == Some("date-time") => {
            Rule::DateTime
        }
        ["string"] => Rule::Str,
        ["array"] => Rule::Array(Box::new(match obj.get("items") {
            Some(i) => parse(i, &format!("{path}[]"))?.rule,
            None => Rule::Any,
        })),
        ["object"] => {
            let mut props = Vec::new();
            let required: Vec<&str> = obj
                .get("required")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if let Some(p) = obj.get("properties").and_then(Value::as_object) {
                for (k, s) in p {
                    let c = parse(s, &format!("{path}.{k}"))?;
                    props.push((
                        k.clone(),
                        c.rule,
                        c.nullable || !required.contains(&k.as_str()),
                    ));
                }
            }
            for r in &required {
                if !props.iter().any(|(k, _, _)| k == r) {
                    props.push((r.to_string(), Rule::Any, false));
                }
            }
            Rule::Object { props }
        }
        [one] => return Err(format!("{path}: unsupported type `{one}`")),
        _ => Rule::Any,
    };
    Ok(Check { rule, nullable })
}

fn dtype(r: &Rule) -> DType {
    match r {
        Rule::Any | Rule::Str => DType::Str,
        Rule::Bool => DType::Bool,
        Rule::Int => DType::Int,
        Rule::Num => DType::Float,
        Rule::DateTime => DType::Timestamp,
        Rule::Array(i) => DType::List {
            item: Box::new(dtype(i)),
        },
        Rule::Object { props } if props.is_empty() => DType::Str,
        Rule::Object { props } => DType::Struct {
            fields: props
                .iter()
                .map(|(k, r, _)| (k.clone(), dtype(r)))
                .collect(),
        },
    }
}

impl Fixed {
    pub fn load(path: &std::path::Path) -> Result<Fixed, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Fixed::parse_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse_str(text: &str) -> Result<Fixed, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let root = parse(&v, "$")?;
        let Rule::Object { props } = &root.rule else {
            return Err("the top level must be an object schema".into());
        };
        for reserved in [super::dynamic::EVENT_TIME, super::dynamic::EXTRA] {
            if props.iter().any(|(k, _, _)| k == reserved) {
                return Err(format!(
                    "property `{reserved}` is reserved for data2parquet's own column"
                ));
            }
        }
        Ok(Fixed {
            dtype: dtype(&root.rule),
            root,
        })
    }

    /// The schema's columns, with their types, then the columns of `inferred` for the
    /// other keys, in `inferred`'s order (`JsonSchemaUnknownKeys=columns`). The
    /// schema's types win whatever inference made of the same keys: the records were
    /// validated against them, so those columns hold every value, and a key's files
    /// keep the types the schema promises. `_extra` and the event time stay ours.
    pub fn pin(&self, inferred: &DType) -> DType {
        let DType::Struct { fields: pinned } = &self.dtype else {
            return self.dtype.clone();
        };
        let mut fields = pinned.clone();
        if let DType::Struct { fields: seen } = inferred {
            let own = [super::dynamic::EVENT_TIME, super::dynamic::EXTRA];
            fields.extend(
                seen.iter()
                    .filter(|(n, _)| !own.contains(&n.as_str()))
                    .filter(|(n, _)| !pinned.iter().any(|(p, _)| p == n))
                    .cloned(),
            );
        }
        DType::Struct { fields }
    }

    /// `t` without the schema's own columns: what inference adds to them. A key's
    /// schema is widened and kept this way, so what inference makes of the schema's
    /// keys (text for a date-time, say) is never reported as a change of its files.
    pub fn unpinned(&self, t: DType) -> DType {
        match (t, &self.dtype) {
            (DType::Struct { fields }, DType::Struct { fields: pinned }) => DType::Struct {
                fields: fields
                    .into_iter()
                    .filter(|(n, _)| !pinned.iter().any(|(p, _)| p == n))
                    .collect(),
            },
            (t, _) => t,
        }
    }

    /// Whether a record fits; the error names the field and what was wrong.
    pub fn validate(&self, v: ValRef<'_, '_>) -> Result<(), String> {
        check(&self.root.rule, v, "")
    }
}

fn kind_name(v: ValRef<'_, '_>) -> &'static str {
    v.kind().name()
}

fn check(rule: &Rule, v: ValRef<'_, '_>, path: &str) -> Result<(), String> {
    let at = |what: &str| {
        if path.is_empty() {
            format!("the record: {what}")
        } else {
            format!("field `{path}`: {what}")
        }
    };
    let ok = match rule {
        Rule::Any => true,
        Rule::Bool => v.kind() == Kind::Bool,
        Rule::Int => match *v.node() {
            Node::Int(_) => true,
            Node::UInt(u) => u <= i64::MAX as u64,
            Node::Float(f) => f.fract() == 0.0 && f.abs() < 9.2e18,
            _ => false,
        },
        Rule::Num => matches!(v.kind(), Kind::Int | Kind::Float),
        Rule::Str => v.kind() == Kind::Str,
        Rule::DateTime => {
            return match v.as_str() {
                Some(s) if crate::timeutil::parse_timestamp_ns(s).is_some() => Ok(()),
                Some(s) => Err(at(&format!("expected a date-time, found {s:?}"))),
                None => Err(at(&format!(
                    "expected a date-time string, found {}",
                    kind_name(v)
                ))),
            };
        }
        Rule::Array(item) => {
            if v.kind() != Kind::Array {
                return Err(at(&format!("expected an array, found {}", kind_name(v))));
            }
            for (i, x) in v.items().enumerate() {
                if !x.is_null() {
                    check(item, x, &format!("{path}[{i}]"))?;
                }
            }
            true
        }
        Rule::Object { props } => {
            if v.kind() != Kind::Map {
                return Err(at(&format!("expected an object, found {}", kind_name(v))));
            }
            for (k, r, nullable) in props {
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match v.get(k).filter(|x| !x.is_null()) {
                    Some(x) => check(r, x, &sub)?,
                    None if !nullable => {
                        return Err(format!("field `{sub}`: required, but missing or null"));
                    }
                    None => {}
                }
            }
            true
        }
    };
    if ok {
        Ok(())
    } else {
        let want = match rule {
            Rule::Bool => "a boolean",
            Rule::Int => "an integer",
            Rule::Num => "a number",
            Rule::Str => "a string",
            _ => "another type",
        };
        Err(at(&format!("expected {want}, found {}", kind_name(v))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::json::JsonParser;

    const SCHEMA: &str = include_str!("../../testdata/schema.json");

    fn check_json(f: &Fixed, json: &str) -> Result<(), String> {
        let mut p = JsonParser::new();
        let mut b = json.as_bytes().to_vec();
        let d = p.parse(&mut b).unwrap();
        f.validate(d.root().unwrap())
    }

    #[test]
    fn types_and_validation() {
        let f = Fixed::parse_str(SCHEMA).unwrap();
        let DType::Struct { fields } = &f.dtype else {
            panic!()
        };
        assert_eq!(fields[0], ("id".to_string(), DType::Int));
        assert_eq!(fields[1], ("when".to_string(), DType::Timestamp));
        assert_eq!(fields[2], ("score".to_string(), DType::Float));
        assert_eq!(
            fields[3].1,
            DType::List {
                item: Box::new(DType::Str)
            }
        );
        assert!(
            check_json(
                &f,
                r#"{"id": 1, "when": "2026-01-01T00:00:00Z", "other": 5}"#
            )
            .is_ok()
        );
        assert!(
            check_json(
                &f,
                r#"{"id": 1, "when": "2026-01-01T00:00:00Z", "score": null, "user": {"name": "n"}}"#
            )
            .is_ok()
        );
        for (json, want) in [
            (
                r#"{"when": "2026-01-01T00:00:00Z"}"#,
                "field `id`: required",
            ),
            (
                r#"{"id": "1", "when": "2026-01-01T00:00:00Z"}"#,
                "field `id`: expected an integer, found string",
            ),
            (
                r#"{"id": 1, "when": "yesterday"}"#,
                "field `when`: expected a date-time",
            ),
            (
                r#"{"id": 1, "when": "2026-01-01", "tags": ["a", 2]}"#,
                "field `tags[1]`: expected a string, found integer",
            ),
            (
                r#"{"id": 1, "when": "2026-01-01", "user": {"age": 3}}"#,
                "field `user.name`: required",
            ),
            (r#"[1]"#, "the record: expected an object, found array"),
        ] {
            let e = check_json(&f, json).unwrap_err();
            assert!(e.contains(want), "{json}: {e}");
        }
        assert!(Fixed::parse_str(r#"{"type": "string"}"#).is_err());
        assert!(
            Fixed::parse_str(r#"{"type": "object", "properties": {"x": {"type": "frob"}}}"#)
                .is_err()
        );
    }

    #[test]
    fn pinning_keeps_the_schemas_columns_and_types_then_adds_the_others() {
        let f = Fixed::parse_str(SCHEMA).unwrap();
        let DType::Struct { fields: pinned } = &f.dtype else {
            panic!()
        };
        // What inference made of some records: the pinned `when` as text, `id` as a
        // float, and keys the schema does not name.
        let inferred = DType::Struct {
            fields: vec![
                ("host".into(), DType::Str),
                ("when".into(), DType::Str),
                ("id".into(), DType::Float),
                ("_extra".into(), DType::Str),
                ("_event_time".into(), DType::Timestamp),
                ("n".into(), DType::Int),
            ],
        };
        let DType::Struct { fields } = f.pin(&inferred) else {
            panic!()
        };
        assert_eq!(&fields[..pinned.len()], &pinned[..]);
        assert_eq!(
            &fields[pinned.len()..],
            &[
                ("host".to_string(), DType::Str),
                ("n".to_string(), DType::Int)
            ]
        );
        // Pinning what pinning made changes nothing, so a key's schema settles; what
        // is kept per key (the rest) pins to the same.
        assert_eq!(f.pin(&f.pin(&inferred)), f.pin(&inferred));
        let rest = f.unpinned(f.pin(&inferred));
        assert_eq!(
            rest,
            DType::Struct {
                fields: vec![("host".into(), DType::Str), ("n".into(), DType::Int)]
            }
        );
        assert_eq!(f.pin(&rest), f.pin(&inferred));
        assert_eq!(f.pin(&DType::Null), f.dtype);
    }
}

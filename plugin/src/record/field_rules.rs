//! `IgnoredFields` and `MaskFields` for dynamic records, as a tree of field paths.
//!
//! A rule names a top-level field or a field inside nested maps: Fluent Bit's kubernetes
//! filter nests what it adds (`kubernetes.annotations`, `kubernetes.labels.*`), and
//! those are the fields operators most often want dropped or hidden without dropping
//! the rest of the map. Keys match as log fields do: case-insensitively, `_` equal to
//! `-`. A path does not descend into arrays, as Fluent Bit's record accessor does not
//! without an index.

use super::dynamic::FieldAction;
use super::log_map::{normalize_in, normalize_key};
use crate::decode::msgpack::write;
use crate::value::{Kind, ValRef};
use std::collections::HashMap;

/// The rules of one record, plus the one reserved top-level key that is always dropped.
#[derive(Debug, Clone)]
pub struct FieldRules {
    root: Level,
    /// Dropped at the top level, matched exactly (`_event_time`, which became the
    /// record's event time).
    reserved: &'static str,
}

/// The rules for the keys of one map.
#[derive(Debug, Clone, Default)]
struct Level {
    /// By normalised key.
    fields: HashMap<String, Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    /// `Keep` when the rule only leads to rules inside the field's map.
    action: FieldAction,
    inner: Level,
}

/// What one key of a map gets.
enum Verdict<'r> {
    Keep,
    Drop,
    Mask,
    /// Kept, with the rules of its map applied (when it is a map).
    Descend(&'r Level),
}

impl FieldRules {
    pub fn new(reserved: &'static str) -> FieldRules {
        FieldRules {
            root: Level::default(),
            reserved,
        }
    }

    /// Adds a rule for the field at `path` (keys from the top level down). Where rules
    /// meet on one field, dropping wins over masking: neither shows the value.
    pub fn add(&mut self, path: &[String], action: FieldAction) {
        let mut level = &mut self.root;
        for (i, key) in path.iter().enumerate() {
            let rule = level
                .fields
                .entry(normalize_key(key).into_owned())
                .or_insert_with(|| Rule {
                    action: FieldAction::Keep,
                    inner: Level::default(),
                });
            if i + 1 == path.len() {
                rule.action = match (rule.action, action) {
                    (FieldAction::Drop, _) | (_, FieldAction::Drop) => FieldAction::Drop,
                    (FieldAction::Mask, _) | (_, FieldAction::Mask) => FieldAction::Mask,
                    _ => FieldAction::Keep,
                };
            }
            level = &mut rule.inner;
        }
    }

    /// What the rules do to the field at `path` (keys from the top level down): dropped
    /// or masked with a map it lies in, or by a rule of its own.
    pub fn action_on(&self, path: &[String]) -> FieldAction {
        let mut level = &self.root;
        let mut norm = String::new();
        for key in path {
            match level.verdict(key, None, &mut norm) {
                Verdict::Keep => return FieldAction::Keep,
                Verdict::Drop => return FieldAction::Drop,
                Verdict::Mask => return FieldAction::Mask,
                Verdict::Descend(inner) => level = inner,
            }
        }
        FieldAction::Keep
    }

    /// Whether any rule was added (the reserved key aside).
    pub fn is_empty(&self) -> bool {
        self.root.fields.is_empty()
    }

    /// Writes `map` to `buf` as msgpack, with the rules applied.
    pub fn write_filtered(&self, map: ValRef<'_, '_>, buf: &mut Vec<u8>) {
        let mut norm = String::new();
        self.root.write(map, Some(self.reserved), buf, &mut norm);
    }
}

impl Level {
    fn verdict<'r>(&'r self, key: &str, reserved: Option<&str>, norm: &mut String) -> Verdict<'r> {
        if reserved == Some(key) {
            return Verdict::Drop;
        }
        if self.fields.is_empty() {
            return Verdict::Keep;
        }
        match self.fields.get(normalize_in(key, norm)) {
            None => Verdict::Keep,
            Some(r) => match r.action {
                FieldAction::Drop => Verdict::Drop,
                FieldAction::Mask => Verdict::Mask,
                FieldAction::Keep => Verdict::Descend(&r.inner),
            },
        }
    }

    fn write(
        &self,
        map: ValRef<'_, '_>,
        reserved: Option<&str>,
        buf: &mut Vec<u8>,
        norm: &mut String,
    ) {
        // Most records match no rule: they are copied whole, as they came.
        let mut kept = 0;
        let mut changed = false;
        for (k, v) in map.entries() {
            match self.verdict(k, reserved, norm) {
                Verdict::Drop => changed = true,
                Verdict::Keep => kept += 1,
                Verdict::Mask => {
                    kept += 1;
                    changed = true;
                }
                Verdict::Descend(_) => {
                    kept += 1;
                    changed |= v.kind() == Kind::Map;
                }
            }
        }
        if !changed {
            write::value(buf, map);
            return;
        }
        write::map(buf, kept);
        for (k, v) in map.entries() {
            match self.verdict(k, reserved, norm) {
                Verdict::Drop => {}
                Verdict::Keep => {
                    write::str(buf, k);
                    write::value(buf, v);
                }
                Verdict::Mask => {
                    write::str(buf, k);
                    write::str(buf, "*");
                }
                Verdict::Descend(inner) => {
                    write::str(buf, k);
                    if v.kind() == Kind::Map {
                        inner.write(v, None, buf, norm);
                    } else {
                        write::value(buf, v);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::json::JsonParser;
    use crate::record::DynRecord;

    fn path(p: &str) -> Vec<String> {
        p.split('.').map(str::to_string).collect()
    }

    fn apply(rules: &FieldRules, json: &str) -> String {
        let mut p = JsonParser::new();
        let mut b = json.as_bytes().to_vec();
        let doc = p.parse(&mut b).unwrap();
        let mut buf = Vec::new();
        DynRecord::filtered(doc.root().unwrap(), 0, &mut buf, rules).to_json()
    }

    #[test]
    fn drops_and_masks_nested_fields_and_keeps_the_rest_of_their_maps() {
        let mut r = FieldRules::new("_event_time");
        r.add(&path("kubernetes.annotations"), FieldAction::Drop);
        r.add(&path("kubernetes.labels.secret_token"), FieldAction::Mask);
        r.add(&path("password"), FieldAction::Mask);
        assert_eq!(
            apply(
                &r,
                r#"{"log":"x","_event_time":1,"Password":"p","kubernetes":{"Annotations":{"a":1},"pod":"web","labels":{"app":"web","secret-token":"s"}}}"#
            ),
            r#"{"log":"x","Password":"*","kubernetes":{"pod":"web","labels":{"app":"web","secret-token":"*"}}}"#
        );
        // A path through a field that is not a map leaves the value alone.
        assert_eq!(
            apply(&r, r#"{"kubernetes":"flat","labels":{"secret-token":"s"}}"#),
            r#"{"kubernetes":"flat","labels":{"secret-token":"s"}}"#
        );
        // Arrays are not descended.
        assert_eq!(
            apply(&r, r#"{"kubernetes":[{"annotations":1}]}"#),
            r#"{"kubernetes":[{"annotations":1}]}"#
        );
        // The reserved key is dropped only at the top level.
        assert_eq!(
            apply(&r, r#"{"kubernetes":{"_event_time":1,"annotations":2}}"#),
            r#"{"kubernetes":{"_event_time":1}}"#
        );
    }

    #[test]
    fn dropping_wins_over_masking_and_a_dropped_map_takes_its_rules_with_it() {
        let mut r = FieldRules::new("_event_time");
        r.add(&path("a.b"), FieldAction::Mask);
        r.add(&path("a.b"), FieldAction::Drop);
        r.add(&path("c.d"), FieldAction::Mask);
        r.add(&path("c"), FieldAction::Drop);
        r.add(&path("e"), FieldAction::Drop);
        r.add(&path("e"), FieldAction::Mask);
        assert_eq!(
            apply(&r, r#"{"a":{"b":1,"x":2},"c":{"d":3},"e":4,"f":5}"#),
            r#"{"a":{"x":2},"f":5}"#
        );
    }

    #[test]
    fn without_rules_only_the_reserved_key_goes() {
        let r = FieldRules::new("_event_time");
        assert!(r.is_empty());
        assert_eq!(
            apply(&r, r#"{"_event_time":1,"a":{"_event_time":2}}"#),
            r#"{"a":{"_event_time":2}}"#
        );
    }
}

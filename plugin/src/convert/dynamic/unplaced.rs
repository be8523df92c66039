//! What a fixed schema has no column for, inside the objects it does have columns for.
//!
//! A JSON Schema names some keys of an object; the record's other keys at the top level
//! go to `_extra` through the column matcher. Keys of a nested object that the schema's
//! object does not name have no column either, and would be dropped by the struct
//! column: this walk finds them so that `_extra` keeps them too, at the same path
//! (`{"user": {"team": "t"}}`), with lists kept item by item (`null` for an item that has
//! nothing extra). Merging `_extra` into the columns gives the record back.

use super::DType;
use crate::value::{Kind, ValRef, write_json_str};

/// Whether a value of `t` can hold keys that `t` does not name: an object type with
/// named fields, directly or as the items of lists.
pub(super) fn can_hold_unnamed(t: &DType) -> bool {
    match t {
        DType::Struct { fields } => !fields.is_empty(),
        DType::List { item } => can_hold_unnamed(item),
        _ => false,
    }
}

/// Appends to `out`, as JSON, the parts of `v` that the columns of `t` have no place
/// for, and says whether there were any (if not, `out` is left as it was).
pub(super) fn write_unplaced(t: &DType, v: ValRef<'_, '_>, out: &mut String) -> bool {
    match (t, v.kind()) {
        (DType::Struct { fields }, Kind::Map) if !fields.is_empty() => object(fields, v, out),
        (DType::List { item }, Kind::Array) if can_hold_unnamed(item) => list(item, v, out),
        _ => false,
    }
}

/// The entries without a field (and the later ones of a duplicated key, which the
/// column does not take), and what the fields' own values have no place for.
fn object(fields: &[(String, DType)], v: ValRef<'_, '_>, out: &mut String) -> bool {
    let start = out.len();
    // Nested objects are small: a scan per key beats building an index per value.
    let mut taken = vec![false; fields.len()];
    for (k, x) in v.entries() {
        let mark = out.len();
        out.push(if mark == start { '{' } else { ',' });
        write_json_str(k, out);
        out.push(':');
        let kept = match fields.iter().position(|(n, _)| n == k) {
            Some(i) if !taken[i] => {
                taken[i] = true;
                write_unplaced(&fields[i].1, x, out)
            }
            _ => {
                x.write_json(out);
                true
            }
        };
        if !kept {
            out.truncate(mark);
        }
    }
    if out.len() == start {
        return false;
    }
    out.push('}');
    true
}

/// One entry per item, `null` for the items with nothing unplaced; nothing at all when
/// no item has any.
fn list(item: &DType, v: ValRef<'_, '_>, out: &mut String) -> bool {
    let start = out.len();
    let mut any = false;
    out.push('[');
    for (i, x) in v.items().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let mark = out.len();
        if write_unplaced(item, x, out) {
            any = true;
        } else {
            out.truncate(mark);
            out.push_str("null");
        }
    }
    if !any {
        out.truncate(start);
        return false;
    }
    out.push(']');
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::jsonschema::Fixed;
    use crate::decode::json::JsonParser;

    fn unplaced(schema: &str, json: &str) -> String {
        let f = Fixed::parse_str(schema).unwrap();
        let mut p = JsonParser::new();
        let mut b = json.as_bytes().to_vec();
        let d = p.parse(&mut b).unwrap();
        let mut out = String::from("kept");
        let any = write_unplaced(&f.dtype, d.root().unwrap(), &mut out);
        assert_eq!(any, out.len() > 4, "{out}");
        out.split_off(4)
    }

    #[test]
    fn finds_unnamed_keys_at_every_depth_and_nothing_else() {
        let schema = r#"{"type": "object", "properties": {
            "a": {"type": "integer"},
            "u": {"type": "object", "properties": {"n": {"type": "string"},
                  "deep": {"type": "object", "properties": {"x": {"type": "integer"}}}}},
            "l": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
            "any": {},
            "free": {"type": "object"}}}"#;
        for (json, want) in [
            // Everything has a column: nothing is written.
            (
                r#"{"a": 1, "u": {"n": "x"}, "l": [{"k": "1"}], "any": {"z": 1}, "free": {"y": 2}}"#,
                "",
            ),
            // Top-level keys without a column are written too (the builder routes
            // those through its matcher instead).
            (r#"{"a": 1, "b": 2}"#, r#"{"b":2}"#),
            (
                r#"{"u": {"n": "x", "team": "t", "deep": {"x": 1, "y": [true]}}}"#,
                r#"{"u":{"team":"t","deep":{"y":[true]}}}"#,
            ),
            (
                r#"{"l": [{"k": "1"}, {"k": "2", "v": null}, {}, {"w": "\"q\""}]}"#,
                r#"{"l":[null,{"v":null},null,{"w":"\"q\""}]}"#,
            ),
            // The second of a duplicated key has no column.
            (r#"{"u": {"n": "x", "n": "y"}}"#, r#"{"u":{"n":"y"}}"#),
            // Values of other types than the columns' are the validator's business.
            (r#"{"u": "text", "l": 5}"#, ""),
        ] {
            assert_eq!(unplaced(schema, json), want, "{json}");
        }
    }
}

//! The column types of dynamic records and the order they widen in (see the parent
//! module), with their Arrow types and the JSON form a key's schema is kept in.

use crate::value::{Node, ValRef};
use arrow_schema::{DataType, Field, Fields, TimeUnit};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A column type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum DType {
    Null,
    Bool,
    Int,
    Float,
    Str,
    Timestamp,
    List { item: Box<DType> },
    Struct { fields: Vec<(String, DType)> },
}

impl DType {
    /// The type's name in messages: the Parquet/Arrow type its column gets.
    pub fn name(&self) -> String {
        match self {
            DType::Null => "null".into(),
            DType::Bool => "boolean".into(),
            DType::Int => "int64".into(),
            DType::Float => "double".into(),
            DType::Str => "string".into(),
            DType::Timestamp => "timestamp".into(),
            DType::List { item } => format!("list<{}>", item.name()),
            DType::Struct { .. } => "struct".into(),
        }
    }

    fn rank(&self) -> Option<u8> {
        match self {
            DType::Bool => Some(1),
            DType::Int => Some(2),
            DType::Float => Some(3),
            DType::Str => Some(4),
            _ => None,
        }
    }

    /// The type of one value.
    pub fn of(v: ValRef<'_, '_>, nested_json: bool) -> DType {
        match v.node() {
            Node::Null => DType::Null,
            Node::Bool(_) => DType::Bool,
            Node::Int(_) => DType::Int,
            Node::UInt(u) if *u <= i64::MAX as u64 => DType::Int,
            Node::UInt(_) | Node::Float(_) => DType::Float,
            Node::Str(_) | Node::Bytes(_) => DType::Str,
            Node::Array { .. } if nested_json => DType::Str,
            Node::Array { .. } => DType::List {
                item: Box::new(
                    v.items()
                        .fold(DType::Null, |t, i| t.merge(DType::of(i, nested_json))),
                ),
            },
            Node::Map { .. } if nested_json => DType::Str,
            Node::Map { .. } => {
                let mut s = DType::Struct { fields: Vec::new() };
                s.absorb_fields(v, nested_json);
                s
            }
        }
    }

    /// Merges a map's fields into this struct type, in place (the hot path of
    /// inference: no intermediate type per record, and fields found by position first,
    /// since records of one source mostly keep their key order).
    pub fn absorb_fields(&mut self, v: ValRef<'_, '_>, nested_json: bool) {
        let DType::Struct { fields } = self else {
            return;
        };
        let mut cursor = 0;
        for (k, item) in v.entries() {
            let at = match fields.get(cursor) {
                Some((n, _)) if n == k => Some(cursor),
                _ => fields.iter().position(|(n, _)| n == k),
            };
            match at {
                Some(i) => {
                    fields[i].1.absorb(item, nested_json);
                    cursor = i + 1;
                }
                None => {
                    fields.push((k.to_string(), DType::of(item, nested_json)));
                    cursor = fields.len();
                }
            }
        }
    }

    /// Whether [`DType::absorb`] would leave this scalar column type as it is for `v`:
    /// `v` is null or its type widens to this one. A column builder answers this per
    /// value for the scalar types (see `Col::push`), so that inference can skip the
    /// records that fit; it must agree with `absorb` exactly, or a widening would go
    /// unseen.
    pub(super) fn holds_scalar(&self, v: ValRef<'_, '_>, nested_json: bool) -> bool {
        match v.node() {
            _ if *self == DType::Str => true,
            Node::Null => true,
            // Typed as a list or struct, which no scalar type holds.
            Node::Array { .. } | Node::Map { .. } if !nested_json => false,
            _ => matches!(
                (self.rank(), DType::of(v, nested_json).rank()),
                (Some(have), Some(need)) if have >= need
            ),
        }
    }

    /// Widens this type, in place, to hold `v` too.
    pub fn absorb(&mut self, v: ValRef<'_, '_>, nested_json: bool) {
        match (&mut *self, v.node()) {
            // The top of the order: nothing can widen it.
            (DType::Str, _) => {}
            (_, Node::Null) => {}
            (DType::Struct { .. }, Node::Map { .. }) if !nested_json => {
                self.absorb_fields(v, nested_json)
            }
            (DType::List { item }, Node::Array { .. }) if !nested_json => {
                for i in v.items() {
                    item.absorb(i, nested_json);
                }
            }
            _ => {
                let t = DType::of(v, nested_json);
                if *self != t {
                    *self = std::mem::replace(self, DType::Null).merge(t);
                }
            }
        }
    }

    /// The widest of two types, per the documented order.
    pub fn merge(self, other: DType) -> DType {
        if self == other {
            return self;
        }
        match (self, other) {
            (DType::Null, t) | (t, DType::Null) => t,
            (a, b) if a.rank().is_some() && b.rank().is_some() => {
                if a.rank() >= b.rank() {
                    a
                } else {
                    b
                }
            }
            (DType::List { item: a }, DType::List { item: b }) => DType::List {
                item: Box::new(a.merge(*b)),
            },
            (DType::Struct { fields: mut a }, DType::Struct { fields: b }) => {
                for (n, t) in b {
                    match a.iter_mut().find(|(x, _)| *x == n) {
                        Some((_, old)) => *old = std::mem::replace(old, DType::Null).merge(t),
                        None => a.push((n, t)),
                    }
                }
                DType::Struct { fields: a }
            }
            _ => DType::Str,
        }
    }

    pub fn arrow(&self) -> DataType {
        match self {
            DType::Null => DataType::Null,
            DType::Bool => DataType::Boolean,
            DType::Int => DataType::Int64,
            DType::Float => DataType::Float64,
            DType::Str => DataType::Utf8,
            DType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            DType::List { item } => {
                DataType::List(Arc::new(Field::new("element", item.arrow(), true)))
            }
            // Parquet has no empty groups: objects that were only ever empty are kept
            // as their JSON text (`{}`).
            DType::Struct { fields } if fields.is_empty() => DataType::Utf8,
            DType::Struct { fields } => DataType::Struct(struct_fields(fields)),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(s: &str) -> Result<DType, String> {
        serde_json::from_str(s).map_err(|e| format!("stored schema: {e}"))
    }
}

pub(super) fn struct_fields(fields: &[(String, DType)]) -> Fields {
    fields
        .iter()
        .map(|(n, t)| Field::new(n, t.arrow(), true))
        .collect::<Vec<_>>()
        .into()
}

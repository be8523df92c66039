//! Building the Arrow column of a dynamic type from record values, and finding each
//! value's column.

use super::dtype::{DType, struct_fields};
use crate::convert::ConvertError;
use crate::record::log_map::FastMap;
use crate::value::{Kind, Node, ValRef};
use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, ListArray, NullArray, StructArray};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::Field;
use std::sync::Arc;

/// Builds one column of a type from values.
pub(super) enum Col {
    Null(usize),
    Bool(BooleanBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Str(StringBuilder, String),
    /// An object type that has only ever been empty, kept as its JSON text (`{}`):
    /// written as [`Col::Str`] is, but any key in a later value widens its type.
    EmptyObject(StringBuilder, String),
    Ts(TimestampMicrosecondBuilder),
    List {
        item_type: DType,
        offsets: Vec<i32>,
        valid: Vec<bool>,
        child: Box<Col>,
    },
    Struct {
        fields: Vec<(String, DType)>,
        children: Vec<Col>,
        valid: Vec<bool>,
        matcher: Matcher,
    },
}

/// Finds the column of each entry of a map: by position first (records of one source
/// mostly keep their key order), then by name; linear scans per column would cost
/// columns × keys per record.
///
/// The position tried is the one after the last entry's column, and the few after it:
/// a record that lacks some optional keys skips their columns, and comparing a key
/// with a few names (most differ in length) is cheaper than hashing it. Without the
/// look-ahead, the name lookup took 6.5 % of the parse threads' CPU on the dynamic
/// bench, whose records lack a few of their optional keys each; with it, 2.6 %.
pub(super) struct Matcher {
    index: FastMap<Box<str>, usize>,
    /// Per column: the row (plus one) it was last filled in.
    filled: Vec<u64>,
    row: u64,
}

/// Columns tried by position, from the one after the last entry's column.
const LOOKAHEAD: usize = 4;

impl Matcher {
    pub(super) fn new(fields: &[(String, DType)]) -> Matcher {
        Matcher {
            index: fields
                .iter()
                .enumerate()
                .map(|(i, (n, _))| (n.as_str().into(), i))
                .collect(),
            filled: vec![0; fields.len()],
            row: 0,
        }
    }

    /// Pushes one row: each entry of `m` to its column (the first of duplicate keys
    /// wins), null to the columns `m` lacks; entries without a column, and the later
    /// ones of a duplicated key, go to `other`.
    /// Returns whether the row fits the columns' types (see [`Col::push`]); an entry
    /// without a column, or a duplicate key, does not.
    pub(super) fn fill<'d, 'a>(
        &mut self,
        fields: &[(String, DType)],
        m: ValRef<'d, 'a>,
        cols: &mut [Col],
        nested_json: bool,
        mut other: impl FnMut(&'d str, ValRef<'d, 'a>),
    ) -> bool {
        self.row += 1;
        let mut fits = true;
        let mut cursor = 0;
        for (k, v) in m.entries() {
            let at = fields
                .iter()
                .enumerate()
                .skip(cursor)
                .take(LOOKAHEAD)
                .find(|(_, (n, _))| crate::value::same_key(n, k))
                .map(|(c, _)| c)
                .or_else(|| self.index.get(k).copied());
            match at {
                Some(c) if self.filled[c] != self.row => {
                    self.filled[c] = self.row;
                    fits &= cols[c].push(Some(v), nested_json);
                    cursor = c + 1;
                }
                Some(_) | None => {
                    fits = false;
                    other(k, v);
                }
            }
        }
        for (c, col) in cols.iter_mut().enumerate() {
            if self.filled[c] != self.row {
                col.push(None, nested_json);
            }
        }
        fits
    }
}

fn as_i64(v: ValRef<'_, '_>) -> Option<i64> {
    match *v.node() {
        Node::Int(i) => Some(i),
        Node::UInt(u) => i64::try_from(u).ok(),
        Node::Bool(b) => Some(b as i64),
        Node::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Some(f as i64),
        _ => None,
    }
}

fn as_f64(v: ValRef<'_, '_>) -> Option<f64> {
    match *v.node() {
        Node::Bool(b) => Some(b as i64 as f64),
        _ => v.as_f64(),
    }
}

/// Microseconds since the epoch from a timestamp string or an epoch number.
fn as_micros(v: ValRef<'_, '_>) -> Option<i64> {
    match v.node() {
        Node::Str(s) => crate::timeutil::parse_timestamp_ns(s).map(|ns| ns.div_euclid(1000)),
        Node::Int(_) | Node::UInt(_) | Node::Float(_) => {
            crate::timeutil::parse_timestamp_ns(&v.to_json()).map(|ns| ns.div_euclid(1000))
        }
        _ => None,
    }
}

impl Col {
    pub(super) fn new(t: &DType) -> Col {
        match t {
            DType::Null => Col::Null(0),
            DType::Bool => Col::Bool(BooleanBuilder::new()),
            DType::Int => Col::Int(Int64Builder::new()),
            DType::Float => Col::Float(Float64Builder::new()),
            DType::Str => Col::Str(StringBuilder::new(), String::new()),
            DType::Struct { fields } if fields.is_empty() => {
                Col::EmptyObject(StringBuilder::new(), String::new())
            }
            DType::Timestamp => Col::Ts(TimestampMicrosecondBuilder::new().with_timezone("UTC")),
            DType::List { item } => Col::List {
                item_type: (**item).clone(),
                offsets: vec![0],
                valid: Vec::new(),
                child: Box::new(Col::new(item)),
            },
            DType::Struct { fields } => Col::Struct {
                matcher: Matcher::new(fields),
                fields: fields.clone(),
                children: fields.iter().map(|(_, t)| Col::new(t)).collect(),
                valid: Vec::new(),
            },
        }
    }

    /// An empty column of type `t` with room for the rows and bytes this one holds and
    /// an eighth more ([`crate::convert::with_headroom`]). json2parquet's parse threads build one batch per block with one
    /// builder, and blocks are alike: builders started at Arrow's default 1024 bytes
    /// grew the long text columns six or seven times a batch, each time copying what
    /// they held. A column of another type than `t` (never the case) starts empty.
    pub(super) fn fresh(&self, t: &DType) -> Col {
        let more = crate::convert::with_headroom;
        let text = |b: &StringBuilder| {
            StringBuilder::with_capacity(more(b.len()), more(b.values_slice().len()))
        };
        match (self, t) {
            (Col::Bool(b), DType::Bool) => Col::Bool(BooleanBuilder::with_capacity(more(b.len()))),
            (Col::Int(b), DType::Int) => Col::Int(Int64Builder::with_capacity(more(b.len()))),
            (Col::Float(b), DType::Float) => {
                Col::Float(Float64Builder::with_capacity(more(b.len())))
            }
            (Col::Str(b, _), DType::Str) => Col::Str(text(b), String::new()),
            (Col::EmptyObject(b, _), DType::Struct { fields }) if fields.is_empty() => {
                Col::EmptyObject(text(b), String::new())
            }
            (Col::Ts(b), DType::Timestamp) => Col::Ts(
                TimestampMicrosecondBuilder::with_capacity(more(b.len())).with_timezone("UTC"),
            ),
            (
                Col::List {
                    offsets,
                    valid,
                    child,
                    ..
                },
                DType::List { item },
            ) => {
                let mut fresh_offsets = Vec::with_capacity(more(offsets.len()));
                fresh_offsets.push(0);
                Col::List {
                    item_type: (**item).clone(),
                    offsets: fresh_offsets,
                    valid: Vec::with_capacity(more(valid.len())),
                    child: Box::new(child.fresh(item)),
                }
            }
            (
                Col::Struct {
                    children, valid, ..
                },
                DType::Struct { fields },
            ) if !fields.is_empty() && children.len() == fields.len() => Col::Struct {
                matcher: Matcher::new(fields),
                fields: fields.clone(),
                children: children
                    .iter()
                    .zip(fields)
                    .map(|(c, (_, t))| c.fresh(t))
                    .collect(),
                valid: Vec::with_capacity(more(valid.len())),
            },
            _ => Col::new(t),
        }
    }

    /// Appends a value (None: absent), converted to this column's type, and says
    /// whether the value fits the type as inference with `nested_json` would type it:
    /// whether [`DType::absorb`] would leave the column's type as it is. json2parquet
    /// builds a file under a schema from a sample and infers only from the records
    /// that do not fit, so this must agree with `absorb` exactly (a property test
    /// checks it); where it is unsure, it says no, which only costs that inference.
    pub(super) fn push(&mut self, v: Option<ValRef<'_, '_>>, nested_json: bool) -> bool {
        let v = v.filter(|v| !v.is_null());
        let fits = |t: DType| v.is_none_or(|v| t.holds_scalar(v, nested_json));
        match self {
            Col::Null(n) => {
                *n += 1;
                v.is_none()
            }
            Col::Bool(b) => {
                b.append_option(v.and_then(|v| v.as_bool()));
                fits(DType::Bool)
            }
            Col::Int(b) => {
                b.append_option(v.and_then(as_i64));
                fits(DType::Int)
            }
            Col::Float(b) => {
                b.append_option(v.and_then(as_f64));
                fits(DType::Float)
            }
            Col::Str(b, scratch) => {
                match v {
                    Some(v) => b.append_value(v.text_in(scratch)),
                    None => b.append_null(),
                }
                true
            }
            Col::EmptyObject(b, scratch) => match v {
                Some(v) => {
                    b.append_value(v.text_in(scratch));
                    !nested_json && v.kind() == Kind::Map && v.entries().next().is_none()
                }
                None => {
                    b.append_null();
                    true
                }
            },
            // Inference never types a value as a timestamp (only a JSON Schema does).
            Col::Ts(b) => {
                b.append_option(v.and_then(as_micros));
                v.is_none()
            }
            Col::List {
                offsets,
                valid,
                child,
                ..
            } => {
                let mut n = 0;
                let mut fits = v.is_none();
                match v.filter(|v| v.kind() == Kind::Array) {
                    Some(arr) => {
                        fits = !nested_json;
                        for item in arr.items() {
                            fits &= child.push(Some(item), nested_json);
                            n += 1;
                        }
                        valid.push(true);
                    }
                    None => valid.push(false),
                }
                let last = offsets.last().copied().unwrap_or(0);
                offsets.push(last + n);
                fits
            }
            Col::Struct {
                fields,
                children,
                valid,
                matcher,
            } => match v.filter(|v| v.kind() == Kind::Map) {
                Some(m) => {
                    let fits = matcher.fill(fields, m, children, nested_json, |_, _| {});
                    valid.push(true);
                    fits && !nested_json
                }
                None => {
                    for c in children.iter_mut() {
                        c.push(None, nested_json);
                    }
                    valid.push(false);
                    v.is_none()
                }
            },
        }
    }

    pub(super) fn push_micros(&mut self, us: i64) {
        if let Col::Ts(b) = self {
            b.append_value(us);
        }
    }

    pub(super) fn push_text(&mut self, s: Option<&str>) {
        if let Col::Str(b, _) = self {
            b.append_option(s);
        }
    }

    pub(super) fn finish(self) -> Result<ArrayRef, ConvertError> {
        Ok(match self {
            Col::Null(n) => Arc::new(NullArray::new(n)),
            Col::Bool(mut b) => Arc::new(b.finish()),
            Col::Int(mut b) => Arc::new(b.finish()),
            Col::Float(mut b) => Arc::new(b.finish()),
            Col::Str(mut b, _) | Col::EmptyObject(mut b, _) => Arc::new(b.finish()),
            Col::Ts(mut b) => Arc::new(b.finish()),
            Col::List {
                item_type,
                offsets,
                valid,
                child,
            } => {
                let nulls = NullBuffer::from(valid);
                Arc::new(ListArray::try_new(
                    Arc::new(Field::new("element", item_type.arrow(), true)),
                    OffsetBuffer::new(offsets.into()),
                    child.finish()?,
                    (nulls.null_count() > 0).then_some(nulls),
                )?)
            }
            Col::Struct {
                fields,
                children,
                valid,
                ..
            } => {
                let nulls = NullBuffer::from(valid);
                let arrays = children
                    .into_iter()
                    .map(Col::finish)
                    .collect::<Result<Vec<_>, _>>()?;
                Arc::new(StructArray::try_new(
                    struct_fields(&fields),
                    arrays,
                    (nulls.null_count() > 0).then_some(nulls),
                )?)
            }
        })
    }
}

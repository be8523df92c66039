//! A flat, borrowed document model shared by every input format.
//!
//! JSON (via simd-json's tape) and Fluent Bit msgpack both decode into a [`Doc`]: a
//! pre-order list of [`Node`]s where containers record how many nodes their subtree
//! spans. Walking a document therefore needs no allocation per value, and one record
//! mapping (log or dynamic) serves every wire format. A `Doc` is reused across records
//! by the decoders, so steady-state decoding allocates only for strings that had to
//! be unescaped or repaired.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Deepest nesting accepted by the decoders. Deeper input is rejected with a clear
/// error instead of risking unbounded recursion later (conversion and JSON rendering
/// recurse over the tree).
pub const MAX_DEPTH: usize = 128;

/// One node of a [`Doc`].
#[derive(Debug, Clone, PartialEq)]
pub enum Node<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    /// Raw bytes (msgpack bin, or ext types other than timestamps).
    Bytes(Cow<'a, [u8]>),
    /// An array of `len` elements; its subtree (excluding itself) spans `span` nodes.
    Array {
        len: u32,
        span: u32,
    },
    /// A map of `len` key/value pairs stored as alternating key and value subtrees.
    /// Keys are always `Str` nodes. Its subtree spans `span` nodes.
    Map {
        len: u32,
        span: u32,
    },
}

/// A decoded document: a pre-order node list. Index 0 is the root.
#[derive(Debug, Default, Clone)]
pub struct Doc<'a> {
    nodes: Vec<Node<'a>>,
    /// Whether some node owns heap memory (repaired text, a rendered key or time).
    /// Most documents borrow every string from their input, and then `clear` has no
    /// node to drop: documents are cleared once per record.
    owns: bool,
}

impl<'a> Node<'a> {
    fn owns_heap(&self) -> bool {
        matches!(self, Node::Str(Cow::Owned(_)) | Node::Bytes(Cow::Owned(_)))
    }
}

impl<'a> Doc<'a> {
    pub fn new() -> Self {
        Doc::default()
    }

    pub fn clear(&mut self) {
        if self.owns {
            self.nodes.clear();
            self.owns = false;
        } else {
            // SAFETY: 0 is within the capacity, and no node owns memory (every push
            // records it in `owns`), so forgetting them drops nothing.
            unsafe { self.nodes.set_len(0) }
        }
    }

    /// The root value, or `None` for an empty document.
    pub fn root(&self) -> Option<ValRef<'_, 'a>> {
        (!self.nodes.is_empty()).then_some(ValRef {
            nodes: &self.nodes,
            idx: 0,
        })
    }

    pub fn nodes(&self) -> &[Node<'a>] {
        &self.nodes
    }

    /// The value whose subtree starts at node `idx` (as returned by `len()` before it
    /// was decoded into this document).
    pub fn value_at(&self, idx: usize) -> Option<ValRef<'_, 'a>> {
        (idx < self.nodes.len()).then_some(ValRef {
            nodes: &self.nodes,
            idx,
        })
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Reuses the allocation for a document with a different lifetime.
    pub fn recycle<'b>(mut self) -> Doc<'b> {
        self.clear();
        let mut v = std::mem::ManuallyDrop::new(self.nodes);
        let (ptr, cap) = (v.as_mut_ptr(), v.capacity());
        // SAFETY: the vector is empty, so no value with lifetime 'a remains in it; only
        // the allocation is carried over, and `Node<'a>` and `Node<'b>` have the same layout.
        Doc {
            nodes: unsafe { Vec::from_raw_parts(ptr.cast::<Node<'b>>(), 0, cap) },
            owns: false,
        }
    }

    #[inline(always)]
    pub(crate) fn push(&mut self, n: Node<'a>) -> usize {
        self.owns |= n.owns_heap();
        self.nodes.push(n);
        self.nodes.len() - 1
    }

    /// Appends nodes that all borrow their data (a JSON tape's). `owns` stays as it is;
    /// an owned node here would only leak at the next `clear`. `extend` over a mapped
    /// slice knows its length up front, so this skips the per-node capacity check and
    /// ownership test of [`Doc::push`]. Node by node, the copy took about as many CPU
    /// samples as simd-json's own tape building.
    pub(crate) fn extend_borrowed(&mut self, nodes: impl ExactSizeIterator<Item = Node<'a>>) {
        let start = self.nodes.len();
        self.nodes.extend(nodes);
        debug_assert!(!self.nodes[start..].iter().any(Node::owns_heap));
    }

    /// Appends a copy of `v`: its node and every node below it. A record can so be
    /// assembled from parts of another document without rendering it as JSON and
    /// parsing that again.
    pub(crate) fn push_copy(&mut self, v: ValRef<'_, 'a>) {
        for n in &v.nodes[v.idx..v.idx + v.width()] {
            self.push(n.clone());
        }
    }

    /// Sets a container's element count and span once its children are in place.
    pub(crate) fn close_with_len(&mut self, at: usize, count: u32) {
        if let Node::Array { len, .. } | Node::Map { len, .. } = &mut self.nodes[at] {
            *len = count;
        }
        self.close(at);
    }

    /// Fixes up a container's span once its children are in place.
    pub(crate) fn close(&mut self, at: usize) {
        let span = (self.nodes.len() - at - 1) as u32;
        match &mut self.nodes[at] {
            Node::Array { span: s, .. } | Node::Map { span: s, .. } => *s = span,
            _ => {}
        }
    }
}

/// A borrowed view of one value inside a [`Doc`].
#[derive(Clone, Copy)]
pub struct ValRef<'d, 'a> {
    nodes: &'d [Node<'a>],
    idx: usize,
}

impl std::fmt::Debug for ValRef<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_json())
    }
}

/// What kind of value a [`ValRef`] is, for error messages and dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    Bool,
    Int,
    Float,
    Str,
    Bytes,
    Array,
    Map,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool => "boolean",
            Kind::Int => "integer",
            Kind::Float => "float",
            Kind::Str => "string",
            Kind::Bytes => "bytes",
            Kind::Array => "array",
            Kind::Map => "map",
        }
    }
}

impl<'d, 'a> ValRef<'d, 'a> {
    pub fn node(&self) -> &'d Node<'a> {
        &self.nodes[self.idx]
    }

    pub fn kind(&self) -> Kind {
        match self.node() {
            Node::Null => Kind::Null,
            Node::Bool(_) => Kind::Bool,
            Node::Int(_) | Node::UInt(_) => Kind::Int,
            Node::Float(_) => Kind::Float,
            Node::Str(_) => Kind::Str,
            Node::Bytes(_) => Kind::Bytes,
            Node::Array { .. } => Kind::Array,
            Node::Map { .. } => Kind::Map,
        }
    }

    /// Number of nodes this value occupies, itself included.
    fn width(&self) -> usize {
        match self.node() {
            Node::Array { span, .. } | Node::Map { span, .. } => *span as usize + 1,
            _ => 1,
        }
    }

    pub fn as_str(&self) -> Option<&'d str> {
        match self.node() {
            Node::Str(s) => Some(s.as_ref()),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.node() {
            Node::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self.node() {
            Node::Int(i) => Some(i as f64),
            Node::UInt(u) => Some(u as f64),
            Node::Float(f) => Some(f),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.node(), Node::Null)
    }

    /// Iterates the key/value pairs of a map (empty for any other kind).
    pub fn entries(&self) -> Entries<'d, 'a> {
        match self.node() {
            Node::Map { len, .. } => Entries {
                nodes: self.nodes,
                next: self.idx + 1,
                left: *len as usize,
            },
            _ => Entries {
                nodes: self.nodes,
                next: 0,
                left: 0,
            },
        }
    }

    /// Iterates the elements of an array (empty for any other kind).
    pub fn items(&self) -> Items<'d, 'a> {
        match self.node() {
            Node::Array { len, .. } => Items {
                nodes: self.nodes,
                next: self.idx + 1,
                left: *len as usize,
            },
            _ => Items {
                nodes: self.nodes,
                next: 0,
                left: 0,
            },
        }
    }

    pub fn len(&self) -> usize {
        match self.node() {
            Node::Array { len, .. } | Node::Map { len, .. } => *len as usize,
            _ => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Looks a key up in a map (first match).
    pub fn get(&self, key: &str) -> Option<ValRef<'d, 'a>> {
        self.entries()
            .find(|(k, _)| same_key(k, key))
            .map(|(_, v)| v)
    }

    /// The value as text: strings as they are, everything else as compact JSON.
    /// This is the one rule used wherever a non-string value lands in a string column.
    pub fn to_text(&self) -> Cow<'d, str> {
        match self.node() {
            Node::Str(s) => Cow::Borrowed(s.as_ref()),
            _ => Cow::Owned(self.to_json()),
        }
    }

    /// [`ValRef::to_text`] without allocating: non-strings are rendered into `scratch`.
    pub fn text_in<'s>(&self, scratch: &'s mut String) -> &'s str
    where
        'd: 's,
    {
        match self.node() {
            Node::Str(s) => s.as_ref(),
            _ => {
                scratch.clear();
                self.write_json(scratch);
                scratch.as_str()
            }
        }
    }

    pub fn to_json(&self) -> String {
        let mut s = String::new();
        self.write_json(&mut s);
        s
    }

    /// Appends the value as compact JSON. Bytes that are valid UTF-8 become strings;
    /// other bytes become a base64 string, so no input is lost. Non-finite floats, which
    /// JSON cannot express, are written as the strings "NaN", "Infinity", "-Infinity".
    pub fn write_json(&self, out: &mut String) {
        match self.node() {
            Node::Null => out.push_str("null"),
            Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Node::Int(i) => write_int(*i < 0, i.unsigned_abs(), out),
            Node::UInt(u) => write_int(false, *u, out),
            Node::Float(f) => write_json_f64(*f, out),
            Node::Str(s) => write_json_str(s, out),
            Node::Bytes(b) => match std::str::from_utf8(b) {
                Ok(s) => write_json_str(s, out),
                Err(_) => {
                    use base64::Engine as _;
                    let enc = base64::engine::general_purpose::STANDARD.encode(b);
                    write_json_str(&enc, out);
                }
            },
            Node::Array { .. } => {
                out.push('[');
                for (i, v) in self.items().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write_json(out);
                }
                out.push(']');
            }
            Node::Map { .. } => {
                out.push('{');
                for (i, (k, v)) in self.entries().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json_str(k, out);
                    out.push(':');
                    v.write_json(out);
                }
                out.push('}');
            }
        }
    }
}

/// Iterator over map entries.
pub struct Entries<'d, 'a> {
    nodes: &'d [Node<'a>],
    next: usize,
    left: usize,
}

impl<'d, 'a> Iterator for Entries<'d, 'a> {
    type Item = (&'d str, ValRef<'d, 'a>);
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let key = match &self.nodes[self.next] {
            Node::Str(s) => s.as_ref(),
            _ => "",
        };
        let val = ValRef {
            nodes: self.nodes,
            idx: self.next + 1,
        };
        self.next += 1 + val.width();
        Some((key, val))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// Iterator over array items.
pub struct Items<'d, 'a> {
    nodes: &'d [Node<'a>],
    next: usize,
    left: usize,
}

impl<'d, 'a> Iterator for Items<'d, 'a> {
    type Item = ValRef<'d, 'a>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let val = ValRef {
            nodes: self.nodes,
            idx: self.next,
        };
        self.next += val.width();
        Some(val)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// Decimal digits without the formatting machinery (numbers are frequent in logs), in
/// 64-bit arithmetic: a sign and a magnitude cover both i64 and u64.
fn write_int(negative: bool, mut n: u64, out: &mut String) {
    let mut buf = [0u8; 21];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if negative {
        i -= 1;
        buf[i] = b'-';
    }
    // SAFETY: only ASCII digits and '-' were written to `buf[i..]`.
    out.push_str(unsafe { std::str::from_utf8_unchecked(&buf[i..]) });
}

/// Whether two keys are equal, compared in place. Keys are short, and matching each key
/// of each record to its column is the decoder's most frequent comparison: `==` on
/// strings calls the C library's `memcmp`, whose call and dispatch cost more than
/// comparing a key of a few words (on the dynamic bench, `memcmp` was 8 % of the parse
/// threads' time).
#[inline]
pub fn same_key(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let n = a.len();
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    let word = |s: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_ne_bytes(w)
    };
    // Whole words, then the last word (overlapping the one before it).
    (0..n / 8).all(|i| word(a, i * 8) == word(b, i * 8)) && word(a, n - 8) == word(b, n - 8)
}

/// JSON string escaping (RFC 8259): quotes, backslash and control characters.
pub fn write_json_str(s: &str, out: &mut String) {
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Shortest round-trip text of a float, always with a fraction or exponent so it reads
/// back as a float ("12.0", not "12").
pub fn write_json_f64(f: f64, out: &mut String) {
    if f.is_nan() {
        out.push_str("\"NaN\"");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 {
            "\"Infinity\""
        } else {
            "\"-Infinity\""
        });
    } else if f == 0.0 || (1e-4..1e16).contains(&f.abs()) {
        // Where `{:?}` writes plain decimals, ryu writes them in the same form ("528.6",
        // "1.0"), with the shortest digits that read back as the same number, at a
        // fraction of the formatting machinery's cost. (When two shortest forms are
        // equally near, the two may pick a different last digit; both read back equal.)
        out.push_str(ryu::Buffer::new().format_finite(f));
    } else {
        // `{:?}` gives "1e300" or "1e-7" outside that range: valid JSON, read back as float.
        let _ = write!(out, "{f:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_agrees_with_string_equality() {
        let keys = [
            "",
            "a",
            "b",
            "ab",
            "time",
            "tima",
            "level",
            "message",
            "messagE",
            "message-id",
            "message-ie",
            "correlation-id",
            "correlation-ix",
            "xorrelation-id",
            "business-capability",
            "business-capabilitz",
            "héllo",
            "hello",
            "transaction-message-reference",
        ];
        for a in keys {
            for b in keys {
                assert_eq!(same_key(a, b), a == b, "{a:?} vs {b:?}");
            }
        }
        // Every length up to three words, differing at every position.
        for n in 0..24 {
            let a = "k".repeat(n);
            for i in 0..n {
                let mut b = a.clone().into_bytes();
                b[i] = b'j';
                assert!(
                    !same_key(&a, std::str::from_utf8(&b).unwrap()),
                    "{n} at {i}"
                );
            }
            assert!(same_key(&a, &a.clone()));
        }
    }

    fn doc() -> Doc<'static> {
        // {"a": [1, "x", {"b": null}], "c": 2.5}
        let mut d = Doc::new();
        let m = d.push(Node::Map { len: 2, span: 0 });
        d.push(Node::Str("a".into()));
        let a = d.push(Node::Array { len: 3, span: 0 });
        d.push(Node::Int(1));
        d.push(Node::Str("x".into()));
        let inner = d.push(Node::Map { len: 1, span: 0 });
        d.push(Node::Str("b".into()));
        d.push(Node::Null);
        d.close(inner);
        d.close(a);
        d.push(Node::Str("c".into()));
        d.push(Node::Float(2.5));
        d.close(m);
        d
    }

    #[test]
    fn walks_and_renders_json() {
        let d = doc();
        let root = d.root().unwrap();
        assert_eq!(root.kind(), Kind::Map);
        let keys: Vec<_> = root.entries().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a", "c"]);
        assert_eq!(root.get("c").unwrap().as_f64(), Some(2.5));
        assert_eq!(root.to_json(), r#"{"a":[1,"x",{"b":null}],"c":2.5}"#);
        assert_eq!(root.get("a").unwrap().items().count(), 3);
    }

    #[test]
    fn escapes_strings() {
        let mut s = String::new();
        write_json_str("a\"b\\c\n\u{1}é", &mut s);
        assert_eq!(s, r#""a\"b\\c\n\u0001é""#);
    }

    #[test]
    fn clearing_drops_owned_nodes_and_forgets_borrowed_ones() {
        let mut d = Doc::new();
        d.push(Node::Str(Cow::Owned("owned".to_string())));
        assert!(d.owns);
        d.clear();
        assert!(!d.owns && d.is_empty());
        d.push(Node::Str(Cow::Borrowed("b")));
        assert!(!d.owns);
        assert_eq!(d.root().unwrap().as_str(), Some("b"));
        d.clear();
        assert!(d.root().is_none());
    }

    #[test]
    fn integers_render_exactly() {
        for v in [
            0i128,
            7,
            -7,
            10,
            -10,
            i64::MAX as i128,
            i64::MIN as i128,
            u64::MAX as i128,
        ] {
            let mut s = String::new();
            write_int(v < 0, v.unsigned_abs() as u64, &mut s);
            assert_eq!(s, v.to_string());
        }
    }

    proptest::proptest! {
        /// Every finite float is written in `{:?}`'s notation, as digits that read back
        /// as exactly the same number, and no longer than `{:?}`'s.
        #[test]
        fn floats_read_back_exactly(bits in proptest::num::u64::ANY, scale in -6i32..18) {
            let f = f64::from_bits(bits);
            for v in [f, (f.fract() + 1.0) * 10f64.powi(scale), -(f.fract()) * 10f64.powi(scale)] {
                if v.is_finite() {
                    let mut s = String::new();
                    write_json_f64(v, &mut s);
                    let debug = format!("{v:?}");
                    proptest::prop_assert_eq!(s.parse::<f64>().ok().map(f64::to_bits), Some(v.to_bits()), "{}", s);
                    proptest::prop_assert_eq!(s.contains('e'), debug.contains('e'), "{} vs {}", s, debug);
                    proptest::prop_assert_eq!(s.len(), debug.len(), "{} vs {}", s, debug);
                }
            }
        }
    }

    #[test]
    fn float_edges_match_debug() {
        for v in [
            0.0,
            -0.0,
            1e-4,
            9.99e-5,
            1e16,
            9.999999999999998e15,
            528.6,
            1.0,
            -2.5,
            0.1,
        ] {
            let mut s = String::new();
            write_json_f64(v, &mut s);
            assert_eq!(s, format!("{v:?}"));
        }
    }

    #[test]
    fn floats_keep_a_fraction() {
        let mut s = String::new();
        write_json_f64(12.0, &mut s);
        assert_eq!(s, "12.0");
        s.clear();
        write_json_f64(f64::NAN, &mut s);
        assert_eq!(s, "\"NaN\"");
    }

    #[test]
    fn text_of_non_strings_is_json() {
        let d = doc();
        let root = d.root().unwrap();
        assert_eq!(root.get("c").unwrap().to_text(), "2.5");
        assert_eq!(root.get("a").unwrap().to_text(), r#"[1,"x",{"b":null}]"#);
    }
}

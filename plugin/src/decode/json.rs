//! JSON text to [`Doc`], through simd-json's tape.
//!
//! simd-json validates UTF-8 and unescapes strings in place, so every string in the
//! resulting document borrows from the caller's buffer. The parser keeps simd-json's
//! scratch buffers and tape between calls; parsing a line allocates nothing once warm.

use crate::value::{Doc, MAX_DEPTH, Node};
use simd_json::{Buffers, StaticNode, Tape};
use std::borrow::Cow;

/// Why a JSON text was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON: {0}")]
pub struct JsonError(pub String);

impl JsonError {
    /// Sharpens the message with a look at the input: a text that ends inside a string
    /// or an open object is reported as truncated. Done only on failure, since the scan
    /// costs as much as parsing.
    pub fn refine(self, input: &[u8]) -> JsonError {
        if is_truncated(input) && !self.0.contains("UTF-8") {
            JsonError("unexpected end of input (truncated JSON?)".into())
        } else {
            self
        }
    }
}

/// Bytes that must follow a value given to [`JsonParser::parse_padded_into`].
pub const PADDING: usize = simd_json::INPUT_PADDING;

pub struct JsonParser {
    buffers: Buffers,
    tape: Option<Tape<'static>>,
}

impl Default for JsonParser {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonParser {
    pub fn new() -> Self {
        JsonParser {
            buffers: Buffers::with_max_depth(4096, MAX_DEPTH),
            tape: Some(Tape::null().reset()),
        }
    }

    /// Parses one JSON value from `input` (modified in place) into `doc`, replacing
    /// its content.
    pub fn parse_into<'a>(
        &mut self,
        input: &'a mut [u8],
        doc: &mut Doc<'a>,
    ) -> Result<(), JsonError> {
        self.fill(doc, |buffers, tape| {
            simd_json::fill_tape(input, buffers, tape)
        })
    }

    /// [`JsonParser::parse_into`] for the value in `input[..len]`, where at least
    /// [`PADDING`] bytes of any content follow it (the records after it in a block, or
    /// padding at the block's end). simd-json then reads the input where it is: the
    /// plain form first copies every record into a padded buffer of its own, a
    /// `memcpy` of all the input. `input[len..]` is the same on return.
    pub fn parse_padded_into<'a>(
        &mut self,
        input: &'a mut [u8],
        len: usize,
        doc: &mut Doc<'a>,
    ) -> Result<(), JsonError> {
        self.fill(doc, |buffers, tape| {
            simd_json::fill_tape_padded(input, len, buffers, tape)
        })
    }

    /// Runs one of simd-json's tape fillers on the kept tape and turns the tape into
    /// `doc`.
    fn fill<'a>(
        &mut self,
        doc: &mut Doc<'a>,
        parse: impl FnOnce(&mut Buffers, &mut Tape<'a>) -> simd_json::Result<()>,
    ) -> Result<(), JsonError> {
        doc.clear();
        let mut tape: Tape<'a> = self
            .tape
            .take()
            .unwrap_or_else(|| Tape::null().reset())
            .reset();
        let res = parse(&mut self.buffers, &mut tape);
        if let Err(e) = res {
            self.tape = Some(tape.reset());
            return Err(JsonError(describe(&e)));
        }
        doc.extend_borrowed(tape.0.iter().map(|n| match *n {
            simd_json::Node::String(s) => Node::Str(Cow::Borrowed(s)),
            simd_json::Node::Object { len, count } => Node::Map {
                len: len as u32,
                span: count as u32,
            },
            simd_json::Node::Array { len, count } => Node::Array {
                len: len as u32,
                span: count as u32,
            },
            simd_json::Node::Static(s) => match s {
                StaticNode::Null => Node::Null,
                StaticNode::Bool(b) => Node::Bool(b),
                StaticNode::I64(i) => Node::Int(i),
                StaticNode::U64(u) => Node::UInt(u),
                StaticNode::F64(f) => Node::Float(f),
            },
        }));
        self.tape = Some(tape.reset());
        Ok(())
    }

    /// Convenience form that allocates a fresh document.
    pub fn parse<'a>(&mut self, input: &'a mut [u8]) -> Result<Doc<'a>, JsonError> {
        let mut doc = Doc::new();
        self.parse_into(input, &mut doc)?;
        Ok(doc)
    }
}

/// Whether the text ends inside a string or an open object/array: the usual shape of a
/// cut-off record, which deserves a clearer message than "syntax error".
fn is_truncated(b: &[u8]) -> bool {
    let (mut depth, mut in_str, mut esc) = (0i64, false, false);
    for &c in b {
        if in_str {
            if esc {
                esc = false;
            } else if c == b'\\' {
                esc = true;
            } else if c == b'"' {
                in_str = false;
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth -= 1,
            _ => {}
        }
    }
    in_str || depth > 0
}

fn describe(e: &simd_json::Error) -> String {
    use simd_json::ErrorType as T;
    let what = match e.error() {
        T::InvalidUtf8 => "input is not valid UTF-8".to_string(),
        T::Eof => "unexpected end of input (truncated JSON?)".to_string(),
        T::InvalidNumber => "invalid or out-of-range number".to_string(),
        T::InvalidEscape => "invalid escape sequence".to_string(),
        T::InvalidUnicodeCodepoint => "invalid unicode escape".to_string(),
        T::Syntax => "syntax error".to_string(),
        T::TrailingData | T::InternalError => "unexpected data after the value".to_string(),
        T::DepthLimitExceeded => format!("nesting deeper than {MAX_DEPTH} levels"),
        other => format!("{other:?}"),
    };
    match e.index() {
        0 => what,
        i => format!("{what} near byte {i}"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::value::Kind;

    #[test]
    fn parses_and_reuses() {
        let mut p = JsonParser::new();
        let mut a = br#"{"a":1,"b":[1,{"c":"x\ny"}],"d":{}}"#.to_vec();
        let doc = p.parse(&mut a).unwrap();
        let root = doc.root().unwrap();
        assert_eq!(
            root.get("b")
                .unwrap()
                .items()
                .nth(1)
                .unwrap()
                .get("c")
                .unwrap()
                .as_str(),
            Some("x\ny")
        );
        assert_eq!(root.get("d").unwrap().kind(), Kind::Map);
        drop(doc);
        let mut b = br#"[true,null,-3,2.5]"#.to_vec();
        let doc = p.parse(&mut b).unwrap();
        assert_eq!(doc.root().unwrap().to_json(), "[true,null,-3,2.5]");
    }

    #[test]
    fn errors_are_described() {
        let mut p = JsonParser::new();
        for (input, want) in [
            (&b"{\"a\":"[..], "truncated"),
            (b"{\"a\":\"\xff\"}", "UTF-8"),
            (b"", "end of input"),
            (b"{\"a\":1} x", "after the value"),
        ] {
            let mut v = input.to_vec();
            let e = p.parse(&mut v).unwrap_err().refine(input);
            assert!(e.0.contains(want), "{input:?}: {e}");
        }
        let mut deep = "[".repeat(MAX_DEPTH + 5).into_bytes();
        deep.extend(std::iter::repeat_n(b']', MAX_DEPTH + 5));
        assert!(p.parse(&mut deep).is_err());
    }

    /// Numbers at the edges of the 64-bit and float ranges read as serde_json reads
    /// them: an integer past 64 bits is a float rather than a rejected record, and a
    /// float keeps every bit. (`-0` differs: an integer 0 here, a float for serde_json.)
    #[test]
    fn big_and_odd_numbers_match_serde_json() {
        let mut p = JsonParser::new();
        for text in [
            "18446744073709551615",
            "-9223372036854775808",
            "18446744073709551616",
            "-9223372036854775809",
            "123456789012345678901234567890",
            "1e308",
            "-0.0",
            "0.1",
            "2.2250738585072014e-308",
            "4.9e-324",
            "1.7976931348623157e308",
            "9007199254740993",
            "1.0000000000000002",
            "123.456e-7",
            // serde_json's default float reading takes these one bit off.
            "3.4095045037942146e174",
            "123456.78901234567",
        ] {
            let want: serde_json::Value = serde_json::from_str(text).unwrap();
            let mut b = text.as_bytes().to_vec();
            let got = p
                .parse(&mut b)
                .unwrap_or_else(|e| panic!("{text}: {e}"))
                .root()
                .unwrap()
                .to_json();
            let got: serde_json::Value = serde_json::from_str(&got).unwrap();
            assert_eq!(got, want, "{text}");
        }
    }

    /// Any JSON value: scalars of every kind, strings with escapes and non-ASCII text,
    /// nested arrays and objects.
    pub(crate) fn any_json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-70_000i64..70_000).prop_map(Value::from),
            // Either side of each power of two, where encodings change width.
            (0u32..64, -1i128..=1, any::<bool>()).prop_map(|(bit, d, neg)| {
                let x = (1i128 << bit) + d;
                let x = if neg { -x } else { x };
                match (i64::try_from(x), u64::try_from(x)) {
                    (Ok(i), _) => Value::from(i),
                    (_, Ok(u)) => Value::from(u),
                    _ => Value::from(i64::MIN),
                }
            }),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            "[\\\"/\u{0}-\u{1f}a-z\u{e9}\u{1f600}]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// The parser agrees with serde_json on every JSON text: compact or pretty, one
        /// parser reused across texts (its tape and buffers are kept between calls).
        #[test]
        fn agrees_with_serde_json(values in proptest::collection::vec(any_json(), 1..4), pretty: bool) {
            let mut p = JsonParser::new();
            for v in values {
                let text = match pretty {
                    true => serde_json::to_string_pretty(&v).unwrap(),
                    false => serde_json::to_string(&v).unwrap(),
                };
                let mut b = text.clone().into_bytes();
                let doc = p.parse(&mut b);
                proptest::prop_assert!(doc.is_ok(), "{text}: {:?}", doc.err());
                let back = doc.unwrap().root().unwrap().to_json();
                let back: serde_json::Value = serde_json::from_str(&back).unwrap();
                proptest::prop_assert_eq!(back, v, "{}", text);
            }
        }

        /// Damaged JSON is an error or a value, never a panic; a value it yields prints
        /// as valid JSON, and serde_json accepted the same text.
        #[test]
        fn damaged_json_never_panics(
            v in any_json(),
            flips in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 1..6),
            cut in 0usize..4096,
        ) {
            let mut b = serde_json::to_vec(&v).unwrap();
            for (at, byte) in flips {
                let at = at % b.len();
                b[at] = byte;
            }
            b.truncate(b.len() - cut % b.len());
            let input = b.clone();
            let mut p = JsonParser::new();
            match p.parse(&mut b) {
                Ok(doc) => {
                    let json = doc.root().unwrap().to_json();
                    proptest::prop_assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok(), "{json}");
                    proptest::prop_assert!(
                        serde_json::from_slice::<serde_json::Value>(&input).is_ok(),
                        "accepted what serde_json rejects: {:?}",
                        String::from_utf8_lossy(&input)
                    );
                }
                Err(e) => {
                    let _ = e.refine(&input);
                }
            }
        }
    }
}

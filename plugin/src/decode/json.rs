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
        doc.clear();
        let mut tape: Tape<'a> = self
            .tape
            .take()
            .unwrap_or_else(|| Tape::null().reset())
            .reset();
        let res = simd_json::fill_tape(input, &mut self.buffers, &mut tape);
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
mod tests {
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
}

//! Splits a stream of JSON text into records without holding the whole input.
//!
//! Three layouts are accepted: NDJSON (one value per line), a top-level JSON array of
//! records, and the upstream document `{"logs": [ ... ]}`. Records are cut out by a
//! byte scanner that tracks strings and nesting, then handed out in blocks of whole
//! records, so parsing can run on several threads while memory stays bounded by the
//! block size, not the file size.

use std::io::Read;

/// The layout of a JSON input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Decide from the first bytes: `[` is an array, `{"logs": [{` the upstream
    /// document, anything else NDJSON.
    Auto,
    Ndjson,
    Array,
    /// `{"logs": [...]}`.
    Logs,
    /// Dead-letter entries (NDJSON of `{"raw": ...}` objects) to re-drive: framed as
    /// NDJSON; the caller unwraps each entry's `raw`.
    Dlq,
    /// OTLP/JSON `ExportLogsServiceRequest`s, one per line, as the OpenTelemetry
    /// collector's file exporter writes them: framed as NDJSON; the caller takes each
    /// line's log records.
    Otlp,
}

impl std::str::FromStr for Layout {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Layout::Auto),
            "ndjson" | "jsonl" | "lines" => Ok(Layout::Ndjson),
            "array" => Ok(Layout::Array),
            "logs" => Ok(Layout::Logs),
            "dlq" => Ok(Layout::Dlq),
            "otlp" => Ok(Layout::Otlp),
            _ => Err(format!(
                "unknown input layout `{s}` (accepted: auto, ndjson, array, logs, dlq, otlp)"
            )),
        }
    }
}

/// One record's place in a block, or a framing error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Record {
        start: usize,
        end: usize,
        /// 1-based line where the record starts.
        line: u64,
        /// 1-based record number in the input.
        number: u64,
    },
    Error {
        line: u64,
        number: u64,
        reason: String,
        /// The beginning of the offending bytes (capped), for the DLQ.
        raw: Vec<u8>,
    },
}

/// Why a record over the size limit is refused: the same words whether the framer or a
/// decoder found it, so that DLQ entries can be grouped by reason.
pub fn too_large(limit: usize, size: usize) -> String {
    format!("record is larger than the limit of {limit} bytes ({size} bytes)")
}

/// A run of whole records.
#[derive(Debug, Default)]
pub struct Block {
    pub data: Vec<u8>,
    pub pieces: Vec<Piece>,
    /// Input bytes this block covers, for progress reporting.
    pub input_bytes: u64,
}

/// The smallest read, and the room kept free in a block's buffer for the read that
/// tops a block up to its last whole record.
const MIN_READ: usize = 64 * 1024;

/// The most one read asks for, given the target block size: at least [`MIN_READ`], at
/// most 4 MiB (a target beyond that is reached over several reads).
fn read_size(block_bytes: usize) -> usize {
    block_bytes.clamp(MIN_READ, 4 << 20)
}

/// Bytes of an oversized or broken record kept in its DLQ entry.
const RAW_KEEP: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Start,
    Ndjson,
    /// Inside the records array, at this nesting depth for elements.
    InArray,
    Done,
}

pub struct Framer<R> {
    input: R,
    layout: Layout,
    mode: Mode,
    buf: Vec<u8>,
    pool: Vec<Vec<u8>>,
    /// Scan position in `buf`.
    pos: usize,
    eof: bool,
    line: u64,
    number: u64,
    block_bytes: usize,
    max_record: usize,
    // Array-scanner state.
    depth: usize,
    in_str: bool,
    esc: bool,
    item_start: Option<(usize, u64)>,
    /// Bytes dropped from the current oversized record.
    discarding: Option<(u64, Vec<u8>, usize)>,
    trailing_error: Option<String>,
}

impl<R: Read> Framer<R> {
    /// `block_bytes` is the target block size; `max_record` the largest record accepted.
    pub fn new(input: R, layout: Layout, block_bytes: usize, max_record: usize) -> Self {
        Framer {
            input,
            layout,
            mode: Mode::Start,
            buf: Vec::with_capacity(read_size(block_bytes) + MIN_READ),
            pool: Vec::new(),
            pos: 0,
            eof: false,
            line: 1,
            number: 0,
            block_bytes: block_bytes.max(1024),
            max_record: max_record.max(1),
            depth: 0,
            in_str: false,
            esc: false,
            item_start: None,
            discarding: None,
            trailing_error: None,
        }
    }

    /// Reads up to one block more, into the room the buffer already has when there is
    /// a fair amount of it. `read_to_end` appends without zeroing the buffer first,
    /// which matters at hundreds of MB/s.
    ///
    /// A block is cut after the last whole record, so a read of a full block often
    /// leaves it a record short of the target and a second read follows. Growing the
    /// buffer for that read copied the megabyte already in it (8 % of json2parquet's
    /// CPU in a profile); topping it up from its spare room copies nothing.
    fn fill(&mut self) -> std::io::Result<usize> {
        let block = read_size(self.block_bytes);
        if self.buf.capacity() - self.buf.len() < MIN_READ {
            self.buf.reserve(block);
        }
        let want = (self.buf.capacity() - self.buf.len()).min(block);
        let n = (&mut self.input)
            .take(want as u64)
            .read_to_end(&mut self.buf)?;
        if n == 0 {
            self.eof = true;
        }
        Ok(n)
    }

    /// Gives a consumed block's buffer back for reuse, sparing an allocation (and
    /// fresh-page faults) per block.
    pub fn recycle(&mut self, mut v: Vec<u8>) {
        if self.pool.len() < 4 {
            v.clear();
            self.pool.push(v);
        }
    }

    /// Decides the layout from the first non-blank bytes.
    fn start(&mut self) -> std::io::Result<()> {
        while self.buf.len() < 64 && !self.eof {
            self.fill()?;
        }
        if self.buf.starts_with(&[0xEF, 0xBB, 0xBF]) {
            self.pos = 3;
        }
        let rest = &self.buf[self.pos..];
        let skip = rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
        let first = rest.get(skip).copied();
        let layout = match self.layout {
            Layout::Auto => match first {
                Some(b'[') => Layout::Array,
                Some(b'{') if looks_like_logs_doc(&rest[skip..]) => Layout::Logs,
                _ => Layout::Ndjson,
            },
            l => l,
        };
        self.layout = layout;
        match layout {
            Layout::Ndjson | Layout::Auto | Layout::Dlq | Layout::Otlp => self.mode = Mode::Ndjson,
            Layout::Array => {
                self.count_lines(self.pos, self.pos + skip);
                self.pos += skip;
                if first != Some(b'[') {
                    self.trailing_error = Some("input is not a JSON array".into());
                    self.mode = Mode::Done;
                } else {
                    self.pos += 1;
                    self.depth = 1;
                    self.mode = Mode::InArray;
                }
            }
            Layout::Logs => {
                // Consume `{ "logs" : [` allowing whitespace.
                let mut i = self.pos;
                let mut expect: &[u8] = b"{\"logs\":[";
                while let (Some(&e), Some(&b)) = (expect.first(), self.buf.get(i)) {
                    if b.is_ascii_whitespace() {
                        i += 1;
                        continue;
                    }
                    if b != e {
                        break;
                    }
                    expect = &expect[1..];
                    i += 1;
                }
                self.count_lines(self.pos, i);
                self.pos = i;
                if !expect.is_empty() {
                    self.trailing_error = Some("input does not start with {\"logs\": [".into());
                    self.mode = Mode::Done;
                } else {
                    self.depth = 1;
                    self.mode = Mode::InArray;
                }
            }
        }
        Ok(())
    }

    fn count_lines(&mut self, from: usize, to: usize) {
        self.line += memchr::memchr_iter(b'\n', &self.buf[from..to]).count() as u64;
    }

    /// Returns the next block, or `None` at the end of input.
    pub fn next_block(&mut self) -> std::io::Result<Option<Block>> {
        if self.mode == Mode::Start {
            self.start()?;
        }
        let mut pieces = Vec::new();
        // End of the last whole record in `buf`: the block is cut there.
        let mut last_end = 0;
        loop {
            match self.mode {
                Mode::Ndjson => self.scan_lines(&mut pieces, &mut last_end),
                Mode::InArray => self.scan_array(&mut pieces, &mut last_end),
                Mode::Done | Mode::Start => {}
            }
            if self.mode == Mode::Done {
                if !pieces.is_empty() || last_end > 0 || self.eof {
                    break;
                }
                // Nothing pending: read on to the end, checking for trailing data.
                self.buf.clear();
                self.pos = 0;
                self.fill()?;
                if self.trailing_error.is_none() {
                    self.check_trailing();
                }
                continue;
            }
            if last_end >= self.block_bytes {
                break;
            }
            if self.eof {
                self.finish_eof(&mut pieces, &mut last_end);
                self.mode = Mode::Done;
                break;
            }
            self.fill()?;
        }
        if let Some(reason) = self.trailing_error.take() {
            pieces.push(Piece::Error {
                line: self.line,
                number: self.number + 1,
                reason,
                raw: Vec::new(),
            });
        }
        if pieces.is_empty() && last_end == 0 && self.mode == Mode::Done && self.eof {
            return Ok(None);
        }
        // Hand out bytes up to the end of the last whole record; keep the rest.
        let cut = last_end.min(self.buf.len());
        let mut next = self.pool.pop().unwrap_or_default();
        if !self.eof {
            // Room for a block and a top-up read (see `fill`).
            next.reserve(read_size(self.block_bytes) + MIN_READ + (self.buf.len() - cut));
        }
        next.extend_from_slice(&self.buf[cut..]);
        let mut data = std::mem::replace(&mut self.buf, next);
        data.truncate(cut);
        let input_bytes = data.len() as u64;
        self.pos = self.pos.saturating_sub(cut);
        if let Some((s, l)) = self.item_start {
            self.item_start = Some((s.saturating_sub(cut), l));
        }
        Ok(Some(Block {
            data,
            pieces,
            input_bytes,
        }))
    }

    fn scan_lines(&mut self, pieces: &mut Vec<Piece>, last_end: &mut usize) {
        loop {
            let from = self.pos;
            let Some(nl) = memchr::memchr(b'\n', &self.buf[from..]) else {
                // An unfinished line: is it already too long?
                let len = self.buf.len() - from;
                if len > self.max_record {
                    self.start_discard(from, len);
                    *last_end = self.pos;
                }
                return;
            };
            let end = from + nl;
            self.pos = end + 1;
            self.take_line(from, end, pieces);
            *last_end = self.pos;
            self.line += 1;
        }
    }

    fn start_discard(&mut self, from: usize, len: usize) {
        match &mut self.discarding {
            Some((_, _, dropped)) => *dropped += len,
            None => {
                let raw = self.buf[from..from + len.min(RAW_KEEP)].to_vec();
                self.discarding = Some((self.line, raw, len));
            }
        }
        self.pos = self.buf.len();
    }

    /// The error of a record of `size` bytes, over the limit, that starts on `line`.
    fn oversized(&self, line: u64, size: usize, raw: Vec<u8>) -> Piece {
        Piece::Error {
            line,
            number: self.number,
            reason: too_large(self.max_record, size),
            raw,
        }
    }

    fn take_line(&mut self, from: usize, end: usize, pieces: &mut Vec<Piece>) {
        if let Some((line, raw, dropped)) = self.discarding.take() {
            self.number += 1;
            pieces.push(self.oversized(line, dropped + (end - from), raw));
            return;
        }
        let mut e = end;
        if e > from && self.buf[e - 1] == b'\r' {
            e -= 1;
        }
        if self.buf[from..e].iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        self.number += 1;
        if e - from > self.max_record {
            let raw = self.buf[from..from + RAW_KEEP.min(e - from)].to_vec();
            pieces.push(self.oversized(self.line, e - from, raw));
            return;
        }
        pieces.push(Piece::Record {
            start: from,
            end: e,
            line: self.line,
            number: self.number,
        });
    }

    fn scan_array(&mut self, pieces: &mut Vec<Piece>, last_end: &mut usize) {
        let mut i = self.pos;
        let n = self.buf.len();
        while i < n {
            let b = self.buf[i];
            if self.in_str {
                if self.esc {
                    self.esc = false;
                } else if b == b'\\' {
                    self.esc = true;
                } else if b == b'"' {
                    self.in_str = false;
                } else if b == b'\n' {
                    self.line += 1;
                }
                i += 1;
                continue;
            }
            match b {
                b'\n' => self.line += 1,
                b'"' => {
                    self.begin_item(i);
                    self.in_str = true;
                }
                b'{' | b'[' => {
                    self.begin_item(i);
                    self.depth += 1;
                }
                b'}' | b']' => {
                    if self.depth == 1 {
                        // End of the records array.
                        self.end_item(i, pieces);
                        self.mode = Mode::Done;
                        i += 1;
                        self.pos = i;
                        *last_end = i;
                        self.check_trailing();
                        return;
                    }
                    self.depth -= 1;
                }
                b',' if self.depth == 1 => {
                    self.end_item(i, pieces);
                    *last_end = i + 1;
                }
                b if b.is_ascii_whitespace() => {}
                _ => self.begin_item(i),
            }
            i += 1;
        }
        self.pos = i;
        if let Some((s, _)) = self.item_start
            && i - s > self.max_record
        {
            // Too big: remember its start and keep scanning without keeping bytes.
            let raw = self.buf[s..s + RAW_KEEP.min(i - s)].to_vec();
            let line = self.item_start.map(|(_, l)| l).unwrap_or(self.line);
            let prior = self.discarding.take().map(|(_, _, d)| d).unwrap_or(0);
            self.discarding = Some((line, raw, prior + (i - s)));
            self.item_start = Some((i, line));
            *last_end = i;
        } else if self.item_start.is_none() {
            *last_end = i;
        }
    }

    fn begin_item(&mut self, at: usize) {
        if self.item_start.is_none() && self.depth == 1 {
            self.item_start = Some((at, self.line));
        }
    }

    fn end_item(&mut self, at: usize, pieces: &mut Vec<Piece>) {
        let Some((start, line)) = self.item_start.take() else {
            return;
        };
        self.number += 1;
        if let Some((l, raw, dropped)) = self.discarding.take() {
            pieces.push(self.oversized(l, dropped + (at - start), raw));
            return;
        }
        let mut end = at;
        while end > start && self.buf[end - 1].is_ascii_whitespace() {
            end -= 1;
        }
        if end - start > self.max_record {
            let raw = self.buf[start..start + RAW_KEEP.min(end - start)].to_vec();
            pieces.push(self.oversized(line, end - start, raw));
        } else {
            pieces.push(Piece::Record {
                start,
                end,
                line,
                number: self.number,
            });
        }
    }

    fn check_trailing(&mut self) {
        let rest = &self.buf[self.pos..];
        let allowed: &[u8] = if self.layout == Layout::Logs {
            b"}"
        } else {
            b""
        };
        let mut seen_close = false;
        for &b in rest {
            if b.is_ascii_whitespace() {
                continue;
            }
            if allowed.contains(&b) && !seen_close {
                seen_close = true;
                continue;
            }
            self.trailing_error = Some("unexpected data after the end of the records array".into());
            break;
        }
        self.pos = self.buf.len();
    }

    fn finish_eof(&mut self, pieces: &mut Vec<Piece>, last_end: &mut usize) {
        match self.mode {
            Mode::Ndjson => {
                let from = self.pos;
                let end = self.buf.len();
                if end > from || self.discarding.is_some() {
                    self.take_line(from, end, pieces);
                    self.pos = end;
                }
                *last_end = end;
            }
            Mode::InArray => {
                let end = self.buf.len();
                if self.item_start.is_some()
                    && self.depth == 1
                    && !self.in_str
                    && self.discarding.is_none()
                {
                    // The last record is whole; only the closing `]` is missing.
                    self.end_item(end, pieces);
                }
                if let Some((start, line)) = self.item_start.take() {
                    self.number += 1;
                    pieces.push(Piece::Error {
                        line,
                        number: self.number,
                        reason: "input ends inside a record (truncated JSON)".into(),
                        raw: self.buf[start..start + RAW_KEEP.min(end - start)].to_vec(),
                    });
                } else {
                    pieces.push(Piece::Error {
                        line: self.line,
                        number: self.number + 1,
                        reason: "input ends before the records array is closed (truncated JSON)"
                            .into(),
                        raw: Vec::new(),
                    });
                }
                self.discarding = None;
                self.pos = end;
                *last_end = end;
            }
            _ => {}
        }
    }
}

/// `{"logs": [ {` (whitespace allowed): the upstream json2parquet document.
fn looks_like_logs_doc(b: &[u8]) -> bool {
    let mut it = b.iter().copied().filter(|c| !c.is_ascii_whitespace());
    for want in b"{\"logs\":[".iter().copied() {
        if it.next() != Some(want) {
            return false;
        }
    }
    matches!(it.next(), Some(b'{') | Some(b']'))
}

/// Frames an in-memory body (HTTP) without copying it: the body becomes the data of
/// the returned block, which its pieces index into. A 1 MB request would otherwise be
/// copied (and fresh pages faulted in) once more per request.
pub fn frame_body(body: Vec<u8>, layout: Layout, max_record: usize) -> Block {
    let block_bytes = body.len().saturating_add(1);
    let mut framer = Framer::new(std::io::empty(), layout, 0, max_record);
    framer.block_bytes = block_bytes;
    // All input is already here: never read (which would grow, and so copy, the body).
    framer.buf = body;
    framer.eof = true;
    let mut out: Option<Block> = None;
    // The whole body fits one block; further blocks (none in practice) are merged.
    while let Ok(Some(b)) = framer.next_block() {
        let Some(o) = out.as_mut() else {
            out = Some(b);
            continue;
        };
        let base = o.data.len();
        o.data.extend_from_slice(&b.data);
        o.input_bytes += b.input_bytes;
        o.pieces.extend(b.pieces.into_iter().map(|p| match p {
            Piece::Record {
                start,
                end,
                line,
                number,
            } => Piece::Record {
                start: start + base,
                end: end + base,
                line,
                number,
            },
            e => e,
        }));
    }
    out.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (text, line, number) of each record, or (reason, line) of each error.
    type Framed = Vec<Result<(String, u64, u64), (String, u64)>>;

    fn records(input: &str, layout: Layout, block: usize, max: usize) -> Framed {
        let mut f = Framer::new(input.as_bytes(), layout, block, max);
        let mut out = Vec::new();
        while let Some(b) = f.next_block().unwrap() {
            framed(b, &mut out);
        }
        out
    }

    fn framed(b: Block, out: &mut Framed) {
        for p in b.pieces {
            match p {
                Piece::Record {
                    start,
                    end,
                    line,
                    number,
                } => out.push(Ok((
                    String::from_utf8(b.data[start..end].to_vec()).unwrap(),
                    line,
                    number,
                ))),
                Piece::Error { reason, line, .. } => out.push(Err((reason, line))),
            }
        }
    }

    /// 1-based line of each byte offset's line in `text`.
    fn line_at(text: &str, at: usize) -> u64 {
        1 + text.as_bytes()[..at]
            .iter()
            .filter(|&&c| c == b'\n')
            .count() as u64
    }

    proptest::proptest! {
        /// Any JSON values, one per line with any line ends and blank lines between
        /// them, come out as exactly those texts, numbered, with their lines.
        #[test]
        fn ndjson_yields_each_value_with_its_line(
            values in proptest::collection::vec(crate::decode::json::tests::any_json(), 0..24),
            seps in proptest::collection::vec(0usize..4, 24),
            trailing_newline: bool,
        ) {
            let mut input = String::new();
            let mut want = Vec::new();
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    input.push_str(["\n", "\r\n", "\n\n", "\n  \r\n\t\n"][seps[i]]);
                }
                let text = serde_json::to_string(v).unwrap();
                want.push(Ok((text.clone(), line_at(&input, input.len()), i as u64 + 1)));
                input.push_str(&text);
            }
            if trailing_newline {
                input.push('\n');
            }
            proptest::prop_assert_eq!(records(&input, Layout::Ndjson, 1024, 1 << 20), want.clone());
            let mut got = Vec::new();
            framed(frame_body(input.clone().into_bytes(), Layout::Ndjson, 1 << 20), &mut got);
            proptest::prop_assert_eq!(got, want);
        }

        /// Any JSON values as a pretty-printed array, or in upstream's `{"logs": [...]}`,
        /// come out as exactly their texts: brackets, commas and quotes inside strings
        /// never cut a record.
        #[test]
        fn arrays_yield_each_element(
            values in proptest::collection::vec(crate::decode::json::tests::any_json(), 0..16),
            logs: bool,
        ) {
            let mut input = String::from(if logs { "{\"logs\": [\n  " } else { "[\n  " });
            let mut want = Vec::new();
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    input.push_str(" ,\n  ");
                }
                let text = serde_json::to_string_pretty(v).unwrap();
                want.push(Ok((text.clone(), line_at(&input, input.len()), i as u64 + 1)));
                input.push_str(&text);
            }
            input.push_str(if logs { "\n]}\n" } else { "\n]\n" });
            let layout = if logs { Layout::Logs } else { Layout::Array };
            proptest::prop_assert_eq!(records(&input, layout, 1024, 1 << 20), want.clone());
            // Auto knows the logs document only by its first record (`{"logs": [{`).
            if !logs {
                proptest::prop_assert_eq!(records(&input, Layout::Auto, 1024, 1 << 20), want);
            }
        }
    }

    #[test]
    fn frame_body_frames_like_the_stream() {
        let long = format!("{{\"a\":\"{}\"}}", "x".repeat(300));
        let inputs = [
            "{\"a\":1}\n\n{\"b\":2}\n{\"c\":".to_string(),
            format!("{{\"a\":1}}\n{long}\n{{\"b\":2}}\n"),
            long.clone(),
            "[{\"a\":1},\n {\"b\":[1,2]}] junk".to_string(),
            "[{\"a\":1},{\"b\":".to_string(),
            "{\"logs\": [{\"a\":\"]\"}, {\"b\":2}]}\n".to_string(),
            String::new(),
        ];
        for input in &inputs {
            for layout in [Layout::Auto, Layout::Ndjson, Layout::Array] {
                let mut got = Vec::new();
                framed(
                    frame_body(input.clone().into_bytes(), layout, 100),
                    &mut got,
                );
                assert_eq!(got, records(input, layout, 64, 100), "{input:?} {layout:?}");
            }
        }
    }

    #[test]
    fn ndjson_lines_and_blank_lines() {
        let r = records(
            "{\"a\":1}\n\n  \r\n{\"b\":2}\r\n{\"c\":3}",
            Layout::Auto,
            1024,
            1 << 20,
        );
        assert_eq!(
            r,
            [
                Ok(("{\"a\":1}".into(), 1, 1)),
                Ok(("{\"b\":2}".into(), 4, 2)),
                Ok(("{\"c\":3}".into(), 5, 3))
            ]
        );
    }

    #[test]
    fn arrays_and_logs_documents() {
        let arr = "[\n {\"a\":\"x,]}\\\"\"},\n {\"b\":[1,2]} , 7\n]\n";
        let r = records(arr, Layout::Auto, 1024, 1 << 20);
        assert_eq!(
            r,
            [
                Ok(("{\"a\":\"x,]}\\\"\"}".into(), 2, 1)),
                Ok(("{\"b\":[1,2]}".into(), 3, 2)),
                Ok(("7".into(), 3, 3))
            ]
        );
        let logs = "{ \"logs\" : [ {\"m\":1},\n{\"m\":2} ] }";
        let r = records(logs, Layout::Auto, 1024, 1 << 20);
        assert_eq!(
            r,
            [
                Ok(("{\"m\":1}".into(), 1, 1)),
                Ok(("{\"m\":2}".into(), 2, 2))
            ]
        );
        assert_eq!(records("[]", Layout::Auto, 1024, 100), []);
    }

    #[test]
    fn small_blocks_give_the_same_records() {
        let mut s = String::new();
        for i in 0..500 {
            s.push_str(&format!(
                "{{\"i\":{i},\"pad\":\"{}\"}}\n",
                "x".repeat(i % 37)
            ));
        }
        let a = records(&s, Layout::Ndjson, 1024, 1 << 20);
        let b = records(&s, Layout::Ndjson, 1 << 20, 1 << 20);
        assert_eq!(a.len(), 500);
        assert_eq!(a, b);
        let arr = format!("[{}]", s.trim_end().replace('\n', ","));
        let c = records(&arr, Layout::Array, 1024, 1 << 20);
        assert_eq!(
            c.iter()
                .map(|r| r.as_ref().unwrap().0.clone())
                .collect::<Vec<_>>(),
            a.iter()
                .map(|r| r.as_ref().unwrap().0.clone())
                .collect::<Vec<_>>()
        );
    }

    /// Megabyte blocks over a reader that returns short reads: every record comes out
    /// whole and in order, and a block is cut at its first record end past the target,
    /// so it holds at most a [`MIN_READ`] top-up and the record carried over from the
    /// block before it more than the target.
    #[test]
    fn large_blocks_are_topped_up_to_a_record_end() {
        struct Short<'a>(&'a [u8]);
        impl Read for Short<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(7001).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut input = String::new();
        let mut want = Vec::new();
        for i in 0..4000 {
            let line = format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(i * 7 % 1900));
            input.push_str(&line);
            input.push('\n');
            want.push(line);
        }
        for block in [1 << 20, MIN_READ] {
            let mut f = Framer::new(Short(input.as_bytes()), Layout::Ndjson, block, 1 << 20);
            let (mut got, mut sizes) = (Vec::new(), Vec::new());
            while let Some(b) = f.next_block().unwrap() {
                sizes.push(b.data.len());
                framed(b, &mut got);
            }
            let texts: Vec<String> = got.into_iter().map(|r| r.unwrap().0).collect();
            assert_eq!(texts, want, "block {block}");
            let (last, full) = sizes.split_last().unwrap();
            let most = block + MIN_READ + 1920;
            assert!(*last <= most);
            for s in full {
                assert!((block..most).contains(s), "block {block}: {sizes:?}");
            }
        }
    }

    #[test]
    fn oversized_records_are_reported_and_skipped() {
        let big = format!("{{\"m\":\"{}\"}}", "y".repeat(5000));
        let input = format!("{{\"a\":1}}\n{big}\n{{\"b\":2}}\n");
        let r = records(&input, Layout::Ndjson, 1024, 1000);
        assert_eq!(r.len(), 3);
        assert!(
            matches!(&r[1], Err((reason, 2)) if reason.contains("larger than the limit")),
            "{r:?}"
        );
        assert_eq!(r[2], Ok(("{\"b\":2}".into(), 3, 3)));
        let arr = format!("[{{\"a\":1}},{big},{{\"b\":2}}]");
        let r = records(&arr, Layout::Array, 1024, 1000);
        assert_eq!(r.len(), 3, "{r:?}");
        assert!(r[1].is_err());
        assert_eq!(r[2].as_ref().unwrap().0, "{\"b\":2}");
    }

    #[test]
    fn truncated_arrays_are_reported() {
        let r = records("[{\"a\":1},{\"b\":", Layout::Auto, 1024, 1 << 20);
        assert_eq!(r[0], Ok(("{\"a\":1}".into(), 1, 1)));
        assert!(matches!(&r[1], Err((reason, _)) if reason.contains("truncated")));
        let r = records("[{\"a\":1}", Layout::Auto, 1024, 1 << 20);
        assert_eq!(r.len(), 2, "{r:?}");
        let r = records("[{\"a\":1}] junk", Layout::Auto, 1024, 1 << 20);
        assert!(
            matches!(&r[1], Err((reason, _)) if reason.contains("after the end")),
            "{r:?}"
        );
    }

    #[test]
    fn frame_body_in_place() {
        let body = b"{\"a\":1}\n{\"b\":2}\n".to_vec();
        let ptr = body.as_ptr();
        let block = frame_body(body, Layout::Ndjson, 1 << 20);
        assert_eq!(block.data.as_ptr(), ptr, "the body is not copied");
        let slices: Vec<&[u8]> = block
            .pieces
            .iter()
            .map(|p| match p {
                Piece::Record { start, end, .. } => &block.data[*start..*end],
                Piece::Error { reason, .. } => panic!("{reason}"),
            })
            .collect();
        assert_eq!(slices, [&b"{\"a\":1}"[..], &b"{\"b\":2}"[..]]);
        let block = frame_body(b"[{\"a\":1},{\"b\":".to_vec(), Layout::Auto, 1 << 20);
        assert!(
            matches!(&block.pieces[1], Piece::Error { reason, .. } if reason.contains("truncated"))
        );
        let block = frame_body(b"{\"a\":1}".to_vec(), Layout::Array, 1 << 20);
        assert!(
            matches!(&block.pieces[..], [Piece::Error { reason, .. }] if reason.contains("not a JSON array")),
            "{:?}",
            block.pieces
        );
        assert!(
            frame_body(Vec::new(), Layout::Ndjson, 1 << 20)
                .pieces
                .is_empty()
        );
    }
}

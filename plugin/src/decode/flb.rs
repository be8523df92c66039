//! Fluent Bit flush chunks: a plain concatenation of msgpack events (`flb-abi.md` §4).
//!
//! Accepted shapes, as Fluent Bit's own decoder accepts them:
//! - v2+: `[[timestamp, metadata_map], body_map]`
//! - legacy: `[timestamp, body_map]`
//!
//! with 8/16/32-bit array and map headers, and timestamps as EventTime (ext type 0,
//! 8 bytes: u32 seconds, u32 nanoseconds), non-negative integers (seconds) or floats.
//! Group start/end markers (EventTime seconds 0xFFFFFFFF / 0xFFFFFFFE) are not events:
//! the walk keeps the open group's metadata and attributes and hands them with each
//! event of the group, as Fluent Bit's own decoder attaches them (`in_opentelemetry`
//! puts the OTLP resource and scope there).
//!
//! A well-formed event with the wrong shape is reported and skipped, and decoding goes
//! on with the next event. Bytes that are not msgpack at all cannot be resynchronised,
//! so the rest of the chunk is reported as one bad item.

use super::msgpack::{MpError, RawTime, Reader};
use crate::value::{Doc, Node, ValRef};

pub const GROUP_START: u32 = 0xFFFF_FFFF;
pub const GROUP_END: u32 = 0xFFFF_FFFE;

/// One decoded event, borrowed from the chunk.
pub struct Event<'d, 'a> {
    /// 0-based position of the event in the chunk (group markers included).
    pub index: usize,
    /// Event time in nanoseconds since the epoch.
    pub time_ns: i64,
    pub meta: ValRef<'d, 'a>,
    pub body: ValRef<'d, 'a>,
    /// The group the event is in, if a group start came before it (and no end since).
    pub group: Option<Group<'d, 'a>>,
}

/// What a group start marker carries: `[[ext(-1), metadata], attributes]`.
#[derive(Clone, Copy)]
pub struct Group<'d, 'a> {
    pub meta: ValRef<'d, 'a>,
    pub attributes: ValRef<'d, 'a>,
}

/// What the chunk walk reports, in order.
pub enum Item<'d, 'a, 'c> {
    Event(Event<'d, 'a>),
    /// An event that cannot become a record; its bytes and the reason.
    Bad {
        index: usize,
        offset: usize,
        reason: String,
        raw: &'c [u8],
    },
}

/// Counts of what a chunk held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ChunkStats {
    pub events: usize,
    pub group_markers: usize,
    pub bad: usize,
}

fn time_ns(t: RawTime) -> Result<i64, String> {
    match t {
        RawTime::Event { secs, nanos } => {
            if nanos >= 1_000_000_000 {
                return Err(format!("EventTime nanoseconds {nanos} out of range"));
            }
            Ok(secs as i64 * 1_000_000_000 + nanos as i64)
        }
        RawTime::Int(s) => i64::try_from(s)
            .ok()
            .and_then(|s| s.checked_mul(1_000_000_000))
            .ok_or_else(|| format!("integer timestamp {s} out of range")),
        RawTime::Float(f) => {
            if !f.is_finite() || !(0.0..=9.2e9).contains(&f) {
                return Err(format!("float timestamp {f} out of range"));
            }
            Ok((f * 1e9).round() as i64)
        }
    }
}

enum Shape {
    Ok {
        time: RawTime,
        meta: usize,
        body: usize,
    },
    GroupStart {
        meta: usize,
        attributes: usize,
    },
    GroupEnd,
}

/// Decodes one event's envelope into `doc`; on a shape error the caller skips it.
fn event<'a>(r: &mut Reader<'a>, doc: &mut Doc<'a>) -> Result<Result<Shape, String>, MpError> {
    if !r.at_array() {
        return Ok(Err("event is not an array".into()));
    }
    let n = r.array_len()?;
    if n != 2 {
        return Ok(Err(format!("event array has {n} elements, expected 2")));
    }
    let (time, has_meta) = if r.at_array() {
        let h = r.array_len()?;
        if h != 2 {
            return Ok(Err(format!(
                "event header has {h} elements, expected [timestamp, metadata]"
            )));
        }
        match r.time() {
            Ok(t) => (t, true),
            Err(e) => return Ok(Err(e.reason)),
        }
    } else {
        match r.time() {
            Ok(t) => (t, false),
            Err(e) => return Ok(Err(e.reason)),
        }
    };
    let meta = doc.len();
    if has_meta {
        if !r.at_map() {
            return Ok(Err("event metadata is not a map".into()));
        }
        r.value(Some(doc))?;
    } else {
        doc.push(Node::Map { len: 0, span: 0 });
    }
    match time {
        RawTime::Event {
            secs: GROUP_START, ..
        } => {
            // Whatever the attributes are, they are kept: users of them look for maps.
            let attributes = doc.len();
            r.value(Some(doc))?;
            return Ok(Ok(Shape::GroupStart { meta, attributes }));
        }
        RawTime::Event {
            secs: GROUP_END, ..
        } => {
            r.value(None)?;
            return Ok(Ok(Shape::GroupEnd));
        }
        _ => {}
    }
    if !r.at_map() {
        return Ok(Err("event body is not a map".into()));
    }
    let body = doc.len();
    r.value(Some(doc))?;
    Ok(Ok(Shape::Ok { time, meta, body }))
}

/// Walks every event of `chunk`, calling `f` for each event and each bad item.
pub fn walk<'a>(
    chunk: &'a [u8],
    doc: &mut Doc<'a>,
    mut f: impl FnMut(Item<'_, 'a, 'a>),
) -> ChunkStats {
    let mut stats = ChunkStats::default();
    let mut r = Reader::new(chunk);
    let mut index = 0;
    // The open group's marker, kept in a document of its own so that it outlives the
    // events decoded after it.
    let mut group_doc: Doc<'a> = Doc::new();
    let mut group: Option<(usize, usize)> = None;
    while !r.is_empty() {
        let start = r.pos();
        doc.clear();
        let res = event(&mut r, doc);
        let bad_reason = match res {
            Ok(Ok(Shape::GroupStart { meta, attributes })) => {
                stats.group_markers += 1;
                // The marker was decoded into `doc`; it becomes the group's document, and
                // the next event is decoded into the previous group's (cleared) one.
                std::mem::swap(doc, &mut group_doc);
                group = Some((meta, attributes));
                None
            }
            Ok(Ok(Shape::GroupEnd)) => {
                stats.group_markers += 1;
                group = None;
                None
            }
            Ok(Ok(Shape::Ok { time, meta, body })) => match time_ns(time) {
                Ok(time_ns) => {
                    stats.events += 1;
                    let (Some(meta), Some(body)) = (doc.value_at(meta), doc.value_at(body)) else {
                        unreachable!("event() pushed both values")
                    };
                    let group = group.and_then(|(m, a)| {
                        Some(Group {
                            meta: group_doc.value_at(m)?,
                            attributes: group_doc.value_at(a)?,
                        })
                    });
                    f(Item::Event(Event {
                        index,
                        time_ns,
                        meta,
                        body,
                        group,
                    }));
                    None
                }
                Err(reason) => Some(reason),
            },
            Ok(Err(reason)) => {
                // Well-formed msgpack with the wrong shape: skip exactly this value.
                let mut skip = Reader::new(&chunk[start..]);
                match skip.value(None) {
                    Ok(()) => {
                        r.seek(start + skip.pos());
                        Some(reason)
                    }
                    Err(e) => {
                        stats.bad += 1;
                        f(fatal(index, start, chunk, e));
                        return stats;
                    }
                }
            }
            Err(e) => {
                stats.bad += 1;
                f(fatal(index, start, chunk, e));
                return stats;
            }
        };
        if let Some(reason) = bad_reason {
            stats.bad += 1;
            f(Item::Bad {
                index,
                offset: start,
                reason: format!("event {index}: {reason}"),
                raw: &chunk[start..r.pos()],
            });
        }
        index += 1;
    }
    stats
}

fn fatal<'d, 'a>(index: usize, start: usize, chunk: &'a [u8], e: MpError) -> Item<'d, 'a, 'a> {
    Item::Bad {
        index,
        offset: start,
        reason: format!(
            "event {index}: {e}; the remaining {} bytes of the chunk cannot be decoded",
            chunk.len() - start
        ),
        raw: &chunk[start..],
    }
}

#[cfg(test)]
mod tests {
    use super::super::msgpack::write as w;
    use super::*;
    use proptest::prelude::*;

    fn body(out: &mut Vec<u8>, msg: &str) {
        w::map(out, 1);
        w::str(out, "message");
        w::str(out, msg);
    }

    /// The spec's byte-level examples (flb-abi.md §4.3).
    #[test]
    fn spec_examples() {
        let a: &[u8] = &[
            0x92, 0x92, 0xd7, 0x00, 0x65, 0x53, 0xf1, 0x00, 0x07, 0x5b, 0xcd, 0x15, 0x80, 0x81,
            0xa7, b'm', b'e', b's', b's', b'a', b'g', b'e', 0xa2, b'h', b'i',
        ];
        let b: &[u8] = &[
            0xdd, 0, 0, 0, 2, 0xdd, 0, 0, 0, 2, 0xd7, 0x00, 0x65, 0x53, 0xf1, 0x00, 0x07, 0x5b,
            0xcd, 0x15, 0xdf, 0, 0, 0, 0, 0xdf, 0, 0, 0, 1, 0xa7, b'm', b'e', b's', b's', b'a',
            b'g', b'e', 0xa2, b'h', b'i',
        ];
        let c: &[u8] = &[
            0x92, 0xd7, 0x00, 0x65, 0x53, 0xf1, 0x00, 0x07, 0x5b, 0xcd, 0x15, 0x81, 0xa7, b'm',
            b'e', b's', b's', b'a', b'g', b'e', 0xa2, b'h', b'i',
        ];
        let d: &[u8] = &[
            0x92, 0x92, 0xd7, 0x00, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x80, 0x80,
        ];
        // A group start with metadata and attributes, and a group end.
        let mut g = vec![0x92, 0x92, 0xd7, 0x00, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        w::map(&mut g, 1);
        w::str(&mut g, "schema");
        w::str(&mut g, "otlp");
        w::map(&mut g, 1);
        w::str(&mut g, "resource");
        w::str(&mut g, "r1");
        let end: &[u8] = &[
            0x92, 0x92, 0xd7, 0x00, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 0, 0x80, 0x80,
        ];
        let mut chunk = Vec::new();
        for part in [a, b, d, c, &g, c, c, end, c] {
            chunk.extend_from_slice(part);
        }
        let mut doc = Doc::new();
        let mut seen = Vec::new();
        let stats = walk(&chunk, &mut doc, |it| match it {
            Item::Event(e) => {
                let group = e
                    .group
                    .map(|g| format!("{} {}", g.meta.to_json(), g.attributes.to_json()));
                seen.push((e.index, e.time_ns, e.body.to_json(), group))
            }
            Item::Bad { reason, .. } => panic!("{reason}"),
        });
        assert_eq!(
            stats,
            ChunkStats {
                events: 6,
                group_markers: 3,
                bad: 0
            }
        );
        let t = 1_700_000_000_123_456_789;
        let hi = || r#"{"message":"hi"}"#.to_string();
        let otlp = || Some(r#"{"schema":"otlp"} {"resource":"r1"}"#.to_string());
        let empty = || Some("{} {}".to_string());
        assert_eq!(
            seen,
            [
                (0, t, hi(), None),
                (1, t, hi(), None),
                (3, t, hi(), empty()),
                (5, t, hi(), otlp()),
                (6, t, hi(), otlp()),
                (8, t, hi(), None),
            ]
        );
    }

    #[test]
    fn int_and_float_times_and_bad_shapes() {
        let mut chunk = Vec::new();
        // legacy with integer seconds
        w::array(&mut chunk, 2);
        w::int(&mut chunk, 1_700_000_000);
        body(&mut chunk, "int");
        // v2 with float seconds and metadata
        w::array(&mut chunk, 2);
        w::array(&mut chunk, 2);
        w::float(&mut chunk, 1_700_000_000.5);
        w::map(&mut chunk, 1);
        w::str(&mut chunk, "k");
        w::str(&mut chunk, "v");
        body(&mut chunk, "float");
        // body is not a map: skipped, reported
        w::array(&mut chunk, 2);
        w::int(&mut chunk, 1);
        w::str(&mut chunk, "not a map");
        // three elements
        w::array(&mut chunk, 3);
        w::int(&mut chunk, 1);
        w::int(&mut chunk, 2);
        w::int(&mut chunk, 3);
        // ext type 1 timestamp
        w::array(&mut chunk, 2);
        chunk.extend_from_slice(&[0xd7, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]);
        body(&mut chunk, "x");
        // and a good one after all that
        w::array(&mut chunk, 2);
        w::event_time(&mut chunk, 10, 20);
        body(&mut chunk, "last");
        let mut doc = Doc::new();
        let mut good = Vec::new();
        let mut bad = Vec::new();
        let stats = walk(&chunk, &mut doc, |it| match it {
            Item::Event(e) => good.push((e.time_ns, e.meta.to_json(), e.body.to_json())),
            Item::Bad { reason, .. } => bad.push(reason),
        });
        assert_eq!(stats.events, 3);
        assert_eq!(stats.bad, 3);
        assert_eq!(
            good[0],
            (
                1_700_000_000_000_000_000,
                "{}".into(),
                r#"{"message":"int"}"#.into()
            )
        );
        assert_eq!(
            good[1],
            (
                1_700_000_000_500_000_000,
                r#"{"k":"v"}"#.into(),
                r#"{"message":"float"}"#.into()
            )
        );
        assert_eq!(good[2].0, 10_000_000_020);
        assert!(
            bad[0].contains("event 2: event body is not a map"),
            "{bad:?}"
        );
        assert!(bad[1].contains("3 elements"), "{bad:?}");
        assert!(bad[2].contains("type 1"), "{bad:?}");
    }

    #[test]
    fn truncated_tail_is_one_bad_item() {
        let mut chunk = Vec::new();
        w::array(&mut chunk, 2);
        w::event_time(&mut chunk, 10, 0);
        body(&mut chunk, "ok");
        let keep = chunk.len();
        w::array(&mut chunk, 2);
        w::event_time(&mut chunk, 10, 0);
        body(&mut chunk, "cut");
        chunk.truncate(chunk.len() - 2);
        let mut doc = Doc::new();
        let mut raws = Vec::new();
        let stats = walk(&chunk, &mut doc, |it| {
            if let Item::Bad { raw, offset, .. } = it {
                raws.push((offset, raw.len()))
            }
        });
        assert_eq!(stats.events, 1);
        assert_eq!(raws, [(keep, chunk.len() - keep)]);
    }

    /// How the property test below writes an event's timestamp.
    #[derive(Debug, Clone, Copy)]
    enum Stamp {
        EventTime(u32, u32),
        Int(u32),
        /// Seconds and milliseconds, written as a float.
        Float(u32, u16),
    }

    impl Stamp {
        fn write(self, out: &mut Vec<u8>) {
            match self {
                Stamp::EventTime(s, n) => w::event_time(out, s, n),
                Stamp::Int(s) => w::uint(out, u64::from(s)),
                Stamp::Float(s, ms) => w::float(out, f64::from(s) + f64::from(ms) / 1000.0),
            }
        }

        fn ns(self) -> i64 {
            match self {
                Stamp::EventTime(s, n) => i64::from(s) * 1_000_000_000 + i64::from(n),
                Stamp::Int(s) => i64::from(s) * 1_000_000_000,
                Stamp::Float(s, ms) => {
                    ((f64::from(s) + f64::from(ms) / 1000.0) * 1e9).round() as i64
                }
            }
        }
    }

    fn any_stamp() -> impl Strategy<Value = Stamp> {
        prop_oneof![
            (0u32..GROUP_END, 0u32..1_000_000_000).prop_map(|(s, n)| Stamp::EventTime(s, n)),
            (0u32..u32::MAX).prop_map(Stamp::Int),
            (0u32..2_000_000_000, 0u16..1000).prop_map(|(s, ms)| Stamp::Float(s, ms)),
        ]
    }

    /// A JSON object for an event's body or metadata.
    fn any_map() -> impl Strategy<Value = serde_json::Value> {
        proptest::collection::btree_map("[a-z]{1,6}", crate::decode::json::tests::any_json(), 0..4)
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect()))
    }

    proptest! {
        /// Any run of events, each in the v2 form with metadata or the legacy form, with
        /// any timestamp form and any msgpack widths, some inside groups, comes out as
        /// those events: their index, time, metadata, body and group, and nothing bad.
        #[test]
        fn any_events_decode_to_what_was_written(
            events in proptest::collection::vec(
                (any_stamp(), proptest::option::of(any_map()), any_map(), proptest::option::of(any_map())),
                1..8,
            ),
            seed in any::<u64>(),
        ) {
            let mut pick = crate::decode::msgpack::tests::picker(seed);
            let enc = crate::decode::msgpack::tests::encode_any_width;
            let mut chunk = Vec::new();
            // (index, ns, metadata, body, group attributes) of each event written.
            let mut want = Vec::new();
            let mut index = 0;
            for (stamp, meta, body, group) in &events {
                if let Some(attrs) = group {
                    w::array(&mut chunk, 2);
                    w::array(&mut chunk, 2);
                    w::event_time(&mut chunk, GROUP_START, 0);
                    w::map(&mut chunk, 0);
                    enc(attrs, &mut pick, &mut chunk);
                    index += 1;
                }
                w::array(&mut chunk, 2);
                match meta {
                    Some(m) => {
                        w::array(&mut chunk, 2);
                        stamp.write(&mut chunk);
                        enc(m, &mut pick, &mut chunk);
                    }
                    None => stamp.write(&mut chunk),
                }
                enc(body, &mut pick, &mut chunk);
                let meta = meta.clone().unwrap_or_else(|| serde_json::json!({}));
                want.push((index, stamp.ns(), meta, body.clone(), group.clone()));
                index += 1;
                if group.is_some() {
                    w::array(&mut chunk, 2);
                    w::array(&mut chunk, 2);
                    w::event_time(&mut chunk, GROUP_END, 0);
                    w::map(&mut chunk, 0);
                    w::map(&mut chunk, 0);
                    index += 1;
                }
            }
            let json = |v: ValRef<'_, '_>| serde_json::from_str::<serde_json::Value>(&v.to_json()).unwrap();
            let mut got = Vec::new();
            let mut bad = Vec::new();
            let mut doc = Doc::new();
            walk(&chunk, &mut doc, |it| match it {
                Item::Event(e) => got.push((
                    e.index,
                    e.time_ns,
                    json(e.meta),
                    json(e.body),
                    e.group.map(|g| json(g.attributes)),
                )),
                Item::Bad { reason, .. } => bad.push(reason),
            });
            prop_assert!(bad.is_empty(), "{bad:?}");
            prop_assert_eq!(got, want);
        }

        #[test]
        fn arbitrary_chunks_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let mut doc = Doc::new();
            let mut n = 0usize;
            walk(&bytes, &mut doc, |it| { if let Item::Event(e) = it { n += e.body.to_json().len(); } });
        }

        #[test]
        fn mutated_valid_chunks_never_panic(flips in proptest::collection::vec((0usize..200, any::<u8>()), 1..8)) {
            let mut chunk = Vec::new();
            for i in 0..4 {
                w::array(&mut chunk, 2);
                w::array(&mut chunk, 2);
                w::event_time(&mut chunk, 1_700_000_000 + i, 0);
                w::map(&mut chunk, 0);
                body(&mut chunk, "some message");
            }
            for (at, b) in flips {
                let at = at % chunk.len();
                chunk[at] = b;
            }
            let mut doc = Doc::new();
            walk(&chunk, &mut doc, |_| {});
        }
    }
}

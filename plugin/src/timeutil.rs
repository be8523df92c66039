//! Civil-time helpers in UTC: formatting event times, parsing record times, and
//! splitting a time into the partition path's year/month/day/hour.
//!
//! Written here rather than pulling a date library, because we need only UTC, only
//! RFC 3339 and epoch numbers, and these run per record on hot paths.

use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days in `month` (1-12) of `year` in the proleptic Gregorian calendar.
fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A UTC civil time broken into parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub nanos: u32,
}

impl Civil {
    pub fn from_ns(ns: i64) -> Civil {
        let secs = ns.div_euclid(1_000_000_000);
        let nanos = ns.rem_euclid(1_000_000_000) as u32;
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: sod / 3600,
            minute: sod % 3600 / 60,
            second: sod % 60,
            nanos,
        }
    }
}

/// `2023-11-14T22:13:20.123456789Z`: always nine fraction digits, always UTC.
pub fn format_rfc3339_nanos(ns: i64) -> String {
    let mut s = String::with_capacity(30);
    write_rfc3339_nanos(ns, &mut s);
    s
}

/// Like [`format_rfc3339_nanos`], appending to `out`.
pub fn write_rfc3339_nanos(ns: i64, out: &mut String) {
    TimeFormatter::default().write(ns, out);
}

/// Writes event times as RFC 3339 text, keeping the date and clock digits of the last
/// second it wrote: this runs for every Fluent Bit event (`fluent-time`), and a chunk's
/// events mostly share their second, so most calls write only the nine fraction digits.
#[derive(Debug, Clone, Default)]
pub struct TimeFormatter {
    /// The second whose digits `text` holds; `None` until the first in-range time.
    second: Option<i64>,
    text: [u8; 30],
}

impl TimeFormatter {
    pub fn write(&mut self, ns: i64, out: &mut String) {
        let second = ns.div_euclid(1_000_000_000);
        if self.second != Some(second) {
            let c = Civil::from_ns(ns);
            if !(0..=9999).contains(&c.year) {
                use std::fmt::Write as _;
                let _ = write!(
                    out,
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
                    c.year, c.month, c.day, c.hour, c.minute, c.second, c.nanos
                );
                return;
            }
            self.text = *b"0000-00-00T00:00:00.000000000Z";
            put_digits(&mut self.text[0..4], c.year as u32);
            put_digits(&mut self.text[5..7], c.month);
            put_digits(&mut self.text[8..10], c.day);
            put_digits(&mut self.text[11..13], c.hour);
            put_digits(&mut self.text[14..16], c.minute);
            put_digits(&mut self.text[17..19], c.second);
            self.second = Some(second);
        }
        put_digits(&mut self.text[20..29], ns.rem_euclid(1_000_000_000) as u32);
        // The template and the digits are ASCII, so this never fails.
        if let Ok(s) = std::str::from_utf8(&self.text) {
            out.push_str(s);
        }
    }
}

/// Writes `v` as decimal digits filling `b`, zero-padded on the left.
fn put_digits(b: &mut [u8], mut v: u32) {
    for d in b.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = b.get(at..at + n)?;
    let mut v = 0u32;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

/// Parses a record's time into nanoseconds since the epoch. Accepts RFC 3339 /
/// ISO 8601 (`T` or space, optional fraction, `Z` or `±HH:MM`/`±HHMM`, no zone meaning
/// UTC) and epoch numbers, whose unit is guessed from their magnitude (s, ms, µs, ns).
pub fn parse_timestamp_ns(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Some(n) = parse_epoch(s) {
        return Some(n);
    }
    let b = s.as_bytes();
    let year = digits(b, 0, 4)? as i64;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    // A day past its month's end (`2023-02-30`) is refused, not carried into the next
    // month: a time that does not exist is not a time to file a record under.
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut secs = days_from_civil(year, month, day) * 86_400;
    let mut nanos = 0i64;
    let mut i = 10;
    if i < b.len() {
        if !matches!(b[i], b'T' | b't' | b' ') {
            return None;
        }
        let h = digits(b, i + 1, 2)?;
        if b.get(i + 3) != Some(&b':') {
            return None;
        }
        let mi = digits(b, i + 4, 2)?;
        let mut sec = 0;
        i += 6;
        if b.get(i) == Some(&b':') {
            sec = digits(b, i + 1, 2)?;
            i += 3;
        }
        if h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        secs += (h * 3600 + mi * 60 + sec) as i64;
        if matches!(b.get(i), Some(b'.') | Some(b',')) {
            i += 1;
            let start = i;
            let mut scale = 100_000_000i64;
            while i < b.len() && b[i].is_ascii_digit() {
                nanos += (b[i] - b'0') as i64 * scale;
                scale /= 10;
                i += 1;
            }
            if i == start {
                return None;
            }
        }
        match b.get(i) {
            None => {}
            Some(b'Z' | b'z') if i + 1 == b.len() => {}
            Some(&sign @ (b'+' | b'-')) => {
                let oh = digits(b, i + 1, 2)?;
                let om = match b.len() - (i + 3) {
                    0 => 0,
                    3 if b[i + 3] == b':' => digits(b, i + 4, 2)?,
                    2 => digits(b, i + 3, 2)?,
                    _ => return None,
                };
                if oh > 23 || om > 59 {
                    return None;
                }
                let off = (oh * 3600 + om * 60) as i64;
                secs += if sign == b'+' { -off } else { off };
            }
            _ => return None,
        }
    }
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

fn parse_epoch(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        return None;
    }
    let scale = |mag: f64| -> i64 {
        if mag < 1e11 {
            1_000_000_000
        } else if mag < 1e14 {
            1_000_000
        } else if mag < 1e17 {
            1_000
        } else {
            1
        }
    };
    // Read as decimal, not through f64: a float has about 16 significant digits, so
    // `1700000000.123456` seconds would come out some hundred nanoseconds off.
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if frac.contains('.') || (int.is_empty() && frac.is_empty()) {
        return None;
    }
    let whole: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let unit = scale(whole as f64);
    let mut ns = whole.checked_mul(unit)?;
    let mut place = unit;
    for c in frac.bytes() {
        place /= 10;
        ns = ns.checked_add(i64::from(c - b'0') * place)?;
    }
    Some(if s.starts_with('-') { -ns } else { ns })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3339 text for the given parts, in one of the accepted spellings.
    #[derive(Debug)]
    struct Stamp {
        date: (i16, i8, i8),
        time: (i8, i8, i8),
        /// Fraction digits as written (0 to 12 of them).
        frac: String,
        /// Offset in minutes east of UTC; `None` writes `Z`.
        offset: Option<i32>,
        /// `T` or a space between date and time; `:` in the offset or not.
        spelling: (bool, bool),
    }

    impl Stamp {
        fn text(&self) -> String {
            let (y, mo, d) = self.date;
            let (h, mi, sec) = self.time;
            let sep = if self.spelling.0 { 'T' } else { ' ' };
            let mut t = format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{sec:02}");
            if !self.frac.is_empty() {
                t.push('.');
                t.push_str(&self.frac);
            }
            match self.offset {
                None => t.push('Z'),
                Some(o) => {
                    let sign = if o < 0 { '-' } else { '+' };
                    let (oh, om) = (o.abs() / 60, o.abs() % 60);
                    let colon = if self.spelling.1 { ":" } else { "" };
                    t.push_str(&format!("{sign}{oh:02}{colon}{om:02}"));
                }
            }
            t
        }

        /// What jiff makes of the same parts, in nanoseconds (the fraction cut to 9
        /// digits).
        fn expected_ns(&self) -> Option<i64> {
            let (y, mo, d) = self.date;
            let (h, mi, sec) = self.time;
            let mut digits = self.frac.clone();
            digits.truncate(9);
            while digits.len() < 9 {
                digits.push('0');
            }
            let nanos: i32 = digits.parse().ok()?;
            let civil = jiff::civil::DateTime::new(y, mo, d, h, mi, sec, nanos).ok()?;
            let offset = jiff::tz::Offset::from_seconds(self.offset.unwrap_or(0) * 60).ok()?;
            let ts = offset.to_timestamp(civil).ok()?;
            i64::try_from(ts.as_nanosecond()).ok()
        }
    }

    fn any_stamp() -> impl proptest::strategy::Strategy<Value = Stamp> {
        use proptest::prelude::*;
        (
            (1678i16..=2261, 1i8..=12, 1i8..=31),
            (0i8..=23, 0i8..=59, 0i8..=59),
            "[0-9]{0,12}",
            proptest::option::of(-(23 * 60 + 59)..=(23 * 60 + 59)),
            (any::<bool>(), any::<bool>()),
        )
            .prop_map(|(date, time, frac, offset, spelling)| Stamp {
                date,
                time,
                frac,
                offset,
                spelling,
            })
    }

    /// jiff's text for an instant, as [`format_rfc3339_nanos`] writes it.
    fn jiff_text(ns: i64) -> String {
        let ts = jiff::Timestamp::from_nanosecond(i128::from(ns)).unwrap();
        format!("{}", ts.strftime("%Y-%m-%dT%H:%M:%S.%NZ"))
    }

    proptest::proptest! {
        /// Any run of instants, near each other (the formatter keeps the digits of the
        /// last second) or far apart, before the epoch or after, is written as jiff
        /// writes it, and reads back as the same instant.
        #[test]
        fn written_times_agree_with_jiff_and_read_back(
            start in proptest::prelude::any::<i64>(),
            steps in proptest::collection::vec(-3_000_000_000i64..3_000_000_000, 0..20),
        ) {
            let mut f = TimeFormatter::default();
            let mut ns = start;
            for step in std::iter::once(0).chain(steps) {
                ns = ns.saturating_add(step);
                let mut text = String::new();
                f.write(ns, &mut text);
                proptest::prop_assert_eq!(&text, &jiff_text(ns));
                proptest::prop_assert_eq!(parse_timestamp_ns(&text), Some(ns), "{}", text);
            }
        }

        /// Epoch numbers, with a fraction or not, in the unit their magnitude implies
        /// (seconds below 1e11, then ms, µs, ns), read as exact nanoseconds.
        #[test]
        fn epoch_numbers_read_exactly(
            unit in 0usize..4,
            whole_frac in proptest::prelude::any::<u64>(),
            frac_digits in 0usize..10,
            negative: bool,
        ) {
            let (lo, hi, scale) = [
                (0i128, 100_000_000_000i128, 1_000_000_000i128),
                (100_000_000_000, 100_000_000_000_000, 1_000_000),
                (100_000_000_000_000, 100_000_000_000_000_000, 1_000),
                (100_000_000_000_000_000, i64::MAX as i128, 1),
            ][unit];
            let whole = lo + i128::from(whole_frac) % (hi - lo);
            // Fraction digits past the unit's nanosecond are cut.
            let frac = i128::from(whole_frac >> 7) % 10i128.pow(frac_digits as u32);
            let mut text = whole.to_string();
            if frac_digits > 0 {
                text.push_str(&format!(".{frac:0width$}", width = frac_digits));
            }
            let mut ns = whole * scale;
            let mut place = scale;
            for d in text.split_once('.').map(|(_, f)| f).unwrap_or("").bytes() {
                place /= 10;
                ns += i128::from(d - b'0') * place;
            }
            if negative {
                text.insert(0, '-');
                ns = -ns;
            }
            proptest::prop_assert_eq!(parse_timestamp_ns(&text), i64::try_from(ns).ok(), "{}", text);
        }

        /// Every RFC 3339 spelling reads as jiff reads it; a date that does not exist
        /// (a day past its month's end) reads as no time at all.
        #[test]
        fn rfc3339_agrees_with_jiff(stamp in any_stamp()) {
            let text = stamp.text();
            proptest::prop_assert_eq!(parse_timestamp_ns(&text), stamp.expected_ns(), "{}", text);
        }
    }

    #[test]
    fn impossible_dates_and_offsets_are_refused() {
        for t in [
            "2023-02-29T00:00:00Z",
            "2024-02-30T00:00:00Z",
            "2023-04-31T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2023-01-01T00:00:00+24:00",
            "2023-01-01T00:00:00-05:60",
            "2023-01-01T00:00:00+9999",
        ] {
            assert_eq!(parse_timestamp_ns(t), None, "{t}");
        }
        assert!(parse_timestamp_ns("2024-02-29T00:00:00Z").is_some());
        assert!(parse_timestamp_ns("2000-02-29T00:00:00Z").is_some());
    }

    #[test]
    fn formats_utc_with_nanos() {
        assert_eq!(
            format_rfc3339_nanos(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(format_rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(format_rfc3339_nanos(-1), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn formatter_reuse_matches_fresh_formatting() {
        // Same second, next second, a day and a year boundary, negative times and the
        // earliest time, then back: each must equal a fresh formatting.
        let times = [
            1_700_000_000_123_456_789,
            1_700_000_000_999_999_999,
            1_700_000_001_000_000_000,
            1_700_006_399_500_000_000,
            1_700_006_400_000_000_001,
            1_704_067_199_999_999_999,
            1_704_067_200_000_000_000,
            -1,
            -1_000_000_000,
            i64::MIN,
            1_700_000_000_000_000_007,
        ];
        let mut f = TimeFormatter::default();
        for ns in times {
            let mut reused = String::new();
            f.write(ns, &mut reused);
            let c = Civil::from_ns(ns);
            let fresh = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
                c.year, c.month, c.day, c.hour, c.minute, c.second, c.nanos
            );
            assert_eq!(reused, fresh, "{ns}");
        }
    }

    #[test]
    fn parses_common_forms() {
        let t = 1_700_000_000_123_456_789;
        assert_eq!(
            parse_timestamp_ns("2023-11-14T22:13:20.123456789Z"),
            Some(t)
        );
        assert_eq!(
            parse_timestamp_ns("2023-11-15T00:13:20.123456789+02:00"),
            Some(t)
        );
        assert_eq!(
            parse_timestamp_ns("2023-11-14 22:13:20"),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(
            parse_timestamp_ns("2023-11-14"),
            Some(1_699_920_000_000_000_000)
        );
        assert_eq!(
            parse_timestamp_ns("1700000000"),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(
            parse_timestamp_ns("1700000000123"),
            Some(1_700_000_000_123_000_000)
        );
        // Fractions are exact to the nanosecond (an f64 would be ~100 ns off here).
        assert_eq!(
            parse_timestamp_ns("1700000000.123456789"),
            Some(1_700_000_000_123_456_789)
        );
        assert_eq!(
            parse_timestamp_ns("1700000000123.5"),
            Some(1_700_000_000_123_500_000)
        );
        assert_eq!(parse_timestamp_ns("-1.5"), Some(-1_500_000_000));
        assert_eq!(parse_timestamp_ns(".5"), Some(500_000_000));
        assert_eq!(parse_timestamp_ns("1.2.3"), None);
        assert_eq!(parse_timestamp_ns("."), None);
        assert_eq!(parse_timestamp_ns("99999999999999999999"), None);
        assert_eq!(parse_timestamp_ns("yesterday"), None);
        assert_eq!(parse_timestamp_ns("2023-13-01"), None);
        assert_eq!(parse_timestamp_ns("2023-11-14T22:13:20Zjunk"), None);
    }

    #[test]
    fn civil_round_trip() {
        for days in [-800_000, -1, 0, 59, 60, 365, 11_000, 20_000, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        let c = Civil::from_ns(1_700_000_000_000_000_000);
        assert_eq!((c.year, c.month, c.day, c.hour), (2023, 11, 14, 22));
    }
}

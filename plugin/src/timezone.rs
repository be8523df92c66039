//! The time zone of partition folders (`PartitionTimezone`).
//!
//! Folders are cut by UTC unless configured otherwise, as upstream did and as data lakes
//! usually want. Teams whose day starts at local midnight ask for local folders
//! (`peers.md` §4.7), and a fixed offset is wrong half the year where daylight saving
//! time applies, so a zone is an IANA name resolved with the time zone database: the
//! system's copy when it has one, else the copy bundled in the library (minimal and
//! distroless images ship none). Parsing and formatting stay in `timeutil`; only the
//! offset at an instant comes from here.

use jiff::tz::{Offset, TimeZone};

/// UTC, a fixed offset, or an IANA zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// As configured, for messages.
    name: String,
    /// `None` for UTC: folders are then cut from the instant as it is, with no
    /// look-up per record.
    tz: Option<TimeZone>,
}

impl Default for Zone {
    fn default() -> Zone {
        Zone::utc()
    }
}

impl Zone {
    pub fn utc() -> Zone {
        Zone {
            name: "UTC".into(),
            tz: None,
        }
    }

    /// `UTC`, an offset (`+05:30`, `-08:00`, `+0100`, `+01`), or an IANA name
    /// (`Europe/Berlin`).
    pub fn parse(text: &str) -> Result<Zone, String> {
        let t = text.trim();
        if t.is_empty() || t.eq_ignore_ascii_case("utc") || t == "Z" {
            return Ok(Zone::utc());
        }
        let tz = match t.strip_prefix(['+', '-']) {
            Some(digits) => {
                let secs = offset_seconds(digits)
                    .ok_or_else(|| format!("`{t}` is not an offset such as `+05:30`"))?;
                let secs = if t.starts_with('-') { -secs } else { secs };
                TimeZone::fixed(Offset::from_seconds(secs).map_err(|e| format!("`{t}`: {e}"))?)
            }
            None => TimeZone::get(t).map_err(|e| {
                format!("`{t}` is not a time zone name such as `Europe/Berlin` ({e})")
            })?,
        };
        Ok(Zone {
            name: t.to_string(),
            tz: Some(tz),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_utc(&self) -> bool {
        self.tz.is_none()
    }

    /// The local time at `ns` (nanoseconds since the epoch), as nanoseconds since the
    /// epoch of a clock that reads local time: what the folder's parts are cut from.
    pub fn local_ns(&self, ns: i64) -> i64 {
        let Some(tz) = &self.tz else {
            return ns;
        };
        match jiff::Timestamp::from_nanosecond(i128::from(ns)) {
            Ok(ts) => ns.saturating_add(i64::from(tz.to_offset(ts).seconds()) * 1_000_000_000),
            Err(_) => ns,
        }
    }
}

/// `HH:MM`, `HHMM` or `HH` (up to 25:59, as offsets go) in seconds.
fn offset_seconds(digits: &str) -> Option<i32> {
    let (h, m) = match (digits.len(), digits.split_once(':')) {
        (_, Some((h, m))) => (h, m),
        (4, None) => digits.split_at(2),
        (2, None) => (digits, "00"),
        _ => return None,
    };
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 25 && m <= 59).then_some(h * 3600 + m * 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeutil::{Civil, parse_timestamp_ns};

    fn local(zone: &str, utc: &str) -> String {
        let z = Zone::parse(zone).unwrap();
        let c = Civil::from_ns(z.local_ns(parse_timestamp_ns(utc).unwrap()));
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}",
            c.year, c.month, c.day, c.hour, c.minute
        )
    }

    #[test]
    fn a_named_zone_follows_daylight_saving_time() {
        // Berlin: +01:00 in winter, +02:00 in summer.
        assert_eq!(
            local("Europe/Berlin", "2026-01-01T23:30:00Z"),
            "2026-01-02 00:30"
        );
        assert_eq!(
            local("Europe/Berlin", "2026-07-01T22:30:00Z"),
            "2026-07-02 00:30"
        );
        assert_eq!(
            local("America/New_York", "2026-03-08T06:59:00Z"),
            "2026-03-08 01:59"
        );
        assert_eq!(
            local("America/New_York", "2026-03-08T07:00:00Z"),
            "2026-03-08 03:00"
        );
    }

    #[test]
    fn offsets_and_utc() {
        assert_eq!(local("+05:30", "2026-01-01T20:00:00Z"), "2026-01-02 01:30");
        assert_eq!(local("-0800", "2026-01-01T05:00:00Z"), "2025-12-31 21:00");
        assert_eq!(local("+01", "2026-01-01T23:00:00Z"), "2026-01-02 00:00");
        for utc in ["UTC", "utc", "Z", "", " UTC "] {
            let z = Zone::parse(utc).unwrap();
            assert!(z.is_utc(), "{utc}");
            assert_eq!(z.local_ns(123), 123);
        }
        assert_eq!(Zone::default(), Zone::utc());
    }

    #[test]
    fn bad_zones_are_named_in_the_error() {
        for bad in [
            "Mars/Olympus",
            "+5",
            "+05:3",
            "+26:00",
            "+05:60",
            "-ab:cd",
            "+05:30:00",
        ] {
            let e = Zone::parse(bad).unwrap_err();
            assert!(e.contains(bad.trim()), "{bad}: {e}");
        }
    }
}

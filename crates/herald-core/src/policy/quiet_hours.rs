//! Quiet hours: a daily window of local time, in the user's IANA time zone, during which push
//! waits. The window may wrap midnight (22:00 to 07:00).

use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// Parses `HH:MM` or `HH:MM:SS` (24-hour clock).
pub fn parse_time_of_day(text: &str) -> Result<Time, String> {
    let bad = || format!("{text:?} is not a time of day; use HH:MM or HH:MM:SS, e.g. 22:00");
    let parts: Vec<&str> = text.split(':').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.len() != 2) {
        return Err(bad());
    }
    let numbers: Vec<i8> = parts
        .iter()
        .map(|p| p.parse::<i8>().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    Time::new(
        numbers[0],
        numbers[1],
        numbers.get(2).copied().unwrap_or(0),
        0,
    )
    .map_err(|_| bad())
}

/// An IANA time zone by name, e.g. `Europe/Paris`.
pub fn parse_time_zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name).map_err(|_| format!("{name:?} is not an IANA time zone, e.g. Europe/Paris"))
}

/// When quiet hours from `start` to `end` in `zone` end, if `now_ms` falls inside them
/// (Unix milliseconds); `None` outside them.
pub fn quiet_until(now_ms: i64, start: Time, end: Time, zone: &TimeZone) -> Option<i64> {
    if start == end {
        return None;
    }
    let now = Timestamp::from_millisecond(now_ms)
        .ok()?
        .to_zoned(zone.clone());
    let t = now.time();
    let today = now.date();
    let end_date = if start < end {
        if t < start || t >= end {
            return None;
        }
        today
    } else if t >= start {
        today.checked_add(1.day()).ok()?
    } else if t < end {
        today
    } else {
        return None;
    };
    // A local end time skipped by a DST change resolves to the first instant after the gap.
    let until = end_date.to_datetime(end).to_zoned(zone.clone()).ok()?;
    Some(until.timestamp().as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn t(text: &str) -> Time {
        parse_time_of_day(text).unwrap()
    }

    #[test]
    fn times_of_day_parse_strictly() {
        assert_eq!(t("07:30"), Time::new(7, 30, 0, 0).unwrap());
        assert_eq!(t("23:59:59"), Time::new(23, 59, 59, 0).unwrap());
        for bad in ["7:30", "24:00", "12:60", "12", "12:00:00:00", "ab:cd", ""] {
            assert!(parse_time_of_day(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_window_within_one_day() {
        let utc = TimeZone::UTC;
        let (s, e) = (t("12:00"), t("14:00"));
        assert_eq!(quiet_until(ms("2026-11-29T11:59:59Z"), s, e, &utc), None);
        assert_eq!(
            quiet_until(ms("2026-11-29T12:00:00Z"), s, e, &utc),
            Some(ms("2026-11-29T14:00:00Z"))
        );
        assert_eq!(quiet_until(ms("2026-11-29T14:00:00Z"), s, e, &utc), None);
    }

    #[test]
    fn a_window_over_midnight_in_the_users_zone() {
        let paris = parse_time_zone("Europe/Paris").unwrap();
        let (s, e) = (t("22:00"), t("07:00"));
        // 22:30 in Paris (UTC+1 in winter) waits until 07:00 the next morning.
        assert_eq!(
            quiet_until(ms("2026-11-29T21:30:00Z"), s, e, &paris),
            Some(ms("2026-11-30T06:00:00Z"))
        );
        // 03:00 in Paris waits until 07:00 the same day.
        assert_eq!(
            quiet_until(ms("2026-11-30T02:00:00Z"), s, e, &paris),
            Some(ms("2026-11-30T06:00:00Z"))
        );
        assert_eq!(quiet_until(ms("2026-11-30T12:00:00Z"), s, e, &paris), None);
    }

    #[test]
    fn unknown_zones_are_refused() {
        assert!(parse_time_zone("Mars/Olympus").is_err());
        assert!(parse_time_zone("America/New_York").is_ok());
    }
}

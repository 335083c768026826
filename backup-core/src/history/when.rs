//! The times a history filter takes on the command line: `7d`-style ages,
//! dates (midnight in the configured timezone) and RFC 3339 times.

use chrono::{DateTime, NaiveDate, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

/// Which end of a day a bare date stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// Its first instant (`--since 2026-11-01`).
    Start,
    /// The first instant after it (`--until 2026-11-01` includes that day).
    End,
}

/// Parses `s` as an RFC 3339 time, a date (its midnight in `tz`, or the
/// next one for [`Edge::End`]) or an age before `now` (`30m`, `12h`, `7d`,
/// `2w`). Any input gives a time or an error that says what is wanted;
/// ages past the calendar's start are an error, never an overflow.
///
/// # Errors
///
/// When `s` is none of these, or names a time chrono cannot hold.
pub fn parse_when(
    s: &str,
    now: DateTime<Utc>,
    tz: Tz,
    edge: Edge,
) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(date) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let day = match edge {
            Edge::Start => Some(date),
            Edge::End => date.succ_opt(),
        }
        .ok_or_else(|| format!("{s:?}: no day follows it in the calendar"))?;
        let midnight = day.and_time(chrono::NaiveTime::MIN);
        return tz
            .from_local_datetime(&midnight)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| format!("{s:?} has no midnight in {tz}"));
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let wanted = || {
        format!(
            "{s:?}: expected a date (2026-11-01), an RFC 3339 time or an age (30m, 12h, 7d, 2w)"
        )
    };
    if number.is_empty() || unit.is_empty() {
        return Err(wanted());
    }
    let n: i64 = number
        .parse()
        .map_err(|_| format!("{s:?}: the age is too large"))?;
    let age = match unit {
        "m" => TimeDelta::try_minutes(n),
        "h" => TimeDelta::try_hours(n),
        "d" => TimeDelta::try_days(n),
        "w" => TimeDelta::try_weeks(n),
        other => return Err(format!("{s:?}: unknown unit {other:?}; use m, h, d or w")),
    };
    age.and_then(|age| now.checked_sub_signed(age))
        .ok_or_else(|| format!("{s:?} reaches before any date there is"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-12-06T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn ages_dates_and_times_parse() {
        let utc = chrono_tz::UTC;
        assert_eq!(
            parse_when("2h", now(), utc, Edge::Start).unwrap(),
            "2026-12-06T10:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            parse_when("2026-11-01", now(), chrono_tz::Europe::Paris, Edge::Start).unwrap(),
            "2026-10-31T23:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            parse_when("2026-11-01", now(), utc, Edge::End).unwrap(),
            "2026-11-02T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn out_of_range_ages_are_errors_not_panics() {
        for s in [
            "9999999999999m",
            "153722867280912930h",
            "99999999999999999999999d",
            "+262143-12-31",
        ] {
            assert!(
                parse_when(s, now(), chrono_tz::UTC, Edge::End).is_err(),
                "{s}"
            );
        }
        assert!(
            parse_when("7x", now(), chrono_tz::UTC, Edge::End)
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(
            parse_when("", now(), chrono_tz::UTC, Edge::End)
                .unwrap_err()
                .contains("expected")
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        #[test]
        fn any_text_gives_a_time_or_an_error(s in ".{0,40}", n in proptest::num::i64::ANY, unit in "[mhdwx]") {
            let _ = parse_when(&s, now(), chrono_tz::UTC, Edge::Start);
            let _ = parse_when(&s, now(), chrono_tz::America::New_York, Edge::End);
            let _ = parse_when(&format!("{n}{unit}"), now(), chrono_tz::UTC, Edge::Start);
            let _ = parse_when(&format!("{}{unit}", n.unsigned_abs()), now(), chrono_tz::UTC, Edge::Start);
        }
    }
}

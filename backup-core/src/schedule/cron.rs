//! Cron expressions with standard `cron(8)` semantics and their fire times
//! in an IANA timezone (DST-correct).

use std::{fmt, str::FromStr};

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeDelta, TimeZone, Timelike, Utc};
use croner::{
    Cron,
    parser::{CronParser, Seconds, Year},
};

/// A validated cron expression: 5 fields (`minute hour dom month dow`), a
/// 6-field form with a leading seconds field, or `@hourly`/`@daily`/
/// `@weekly`/`@monthly`/`@yearly`.
///
/// Day-of-month and day-of-week combine with OR when both are restricted,
/// as `cron(8)` and croniter read them; `0` and `7` are both Sunday.
#[derive(Clone, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct CronSchedule {
    source: String,
    cron: Cron,
}

/// Why a cron expression was rejected.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid cron expression {expr:?}: {reason}; expected 5 fields \
     \"minute hour day-of-month month day-of-week\" (e.g. \"0 2 * * *\") or @daily/@weekly/..."
)]
pub struct CronError {
    expr: String,
    reason: String,
}

impl CronSchedule {
    /// The expression as the user wrote it.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The first fire time strictly after `after`, in the IANA zone `tz`.
    ///
    /// Matching is on wall-clock time in `tz`, as `cron(8)` does it:
    /// - a wall time that a spring-forward skips fires once, right after the
    ///   gap (several skipped times collapse into that one fire);
    /// - a wall time that a fall-back repeats fires once, in its first
    ///   occurrence (interval schedules do not run the repeated hour twice).
    ///
    /// `None` only when the expression can never match again.
    pub fn next_after<Z: TimeZone>(&self, tz: &Z, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut wall = after.with_timezone(tz).naive_local();
        // Each step moves `wall` forward; the bound covers a per-second
        // schedule crossing a repeated hour (3600 skipped wall times).
        for _ in 0..10_000 {
            let next = self
                .cron
                .find_next_occurrence(&Utc.from_utc_datetime(&wall), false)
                .ok()?
                .naive_utc();
            let fire = match tz.from_local_datetime(&next) {
                LocalResult::Single(t) => t.with_timezone(&Utc),
                // The first copy of a repeated wall time; the second never fires.
                LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
                LocalResult::None => gap_end(tz, next)?,
            };
            if fire > after {
                return Some(fire);
            }
            wall = next;
        }
        None
    }

    /// Fire times in `(after, until]`, oldest first.
    pub fn fires_between<Z: TimeZone>(
        &self,
        tz: &Z,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Vec<DateTime<Utc>> {
        let mut fires = Vec::new();
        let mut cursor = after;
        while let Some(next) = self.next_after(tz, cursor).filter(|t| *t <= until) {
            fires.push(next);
            cursor = next;
        }
        fires
    }

    /// The next `count` fire times after `after`.
    pub fn upcoming<Z: TimeZone>(
        &self,
        tz: &Z,
        after: DateTime<Utc>,
        count: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut fires = Vec::with_capacity(count);
        let mut cursor = after;
        while fires.len() < count {
            let Some(next) = self.next_after(tz, cursor) else {
                break;
            };
            fires.push(next);
            cursor = next;
        }
        fires
    }
}

impl CronSchedule {
    /// A schedule written in this crate's own defaults; they are valid.
    pub(crate) fn builtin(expr: &'static str) -> Self {
        Self::from_str(expr).unwrap_or_else(|e| unreachable!("built-in schedule: {e}"))
    }
}

/// The first instant after the spring-forward gap that swallowed `missing`.
fn gap_end<Z: TimeZone>(tz: &Z, missing: NaiveDateTime) -> Option<DateTime<Utc>> {
    let mut wall = missing.with_second(0)?.with_nanosecond(0)?;
    // Gaps are whole minutes and at most a few hours long.
    for _ in 0..(24 * 60) {
        wall += TimeDelta::minutes(1);
        match tz.from_local_datetime(&wall) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
                return Some(t.with_timezone(&Utc));
            }
            LocalResult::None => {}
        }
    }
    None
}

impl FromStr for CronSchedule {
    type Err = CronError;

    fn from_str(expr: &str) -> Result<Self, Self::Err> {
        let trimmed = expr.trim();
        let fields = trimmed.split_whitespace().count();
        let err = |reason: String| CronError {
            expr: expr.to_string(),
            reason,
        };
        if !trimmed.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(err(format!("it has {fields} fields")));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .dom_and_dow(false)
            .build();
        // cron(8) knows @midnight; croner only its synonym.
        let pattern = match trimmed {
            "@midnight" => "@daily",
            "@reboot" => return Err(err("@reboot has no fire times; use a schedule".into())),
            other => other,
        };
        let cron = parser.parse(pattern).map_err(|e| err(e.to_string()))?;
        let schedule = Self {
            source: trimmed.to_string(),
            cron,
        };
        // Without a year field a schedule repeats within 28 years, or never.
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        if schedule.next_after(&Utc, epoch).is_none() {
            return Err(err("it never fires (no such date)".into()));
        }
        Ok(schedule)
    }
}

impl TryFrom<String> for CronSchedule {
    type Error = CronError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<CronSchedule> for String {
    fn from(value: CronSchedule) -> Self {
        value.source
    }
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CronSchedule").field(&self.source).finish()
    }
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, SecondsFormat};

    use super::*;

    /// The next `want.len()` fire times of `expr` in `zone` after the local
    /// RFC 3339 time `after`, as local RFC 3339 strings.
    fn check(expr: &str, zone: &str, after: &str, want: &[&str]) {
        let tz: chrono_tz::Tz = zone.parse().expect("zone");
        let after = DateTime::parse_from_rfc3339(after)
            .expect("after")
            .with_timezone(&Utc);
        let got: Vec<String> = expr
            .parse::<CronSchedule>()
            .expect("expr")
            .upcoming(&tz, after, want.len())
            .into_iter()
            .map(|t| {
                t.with_timezone(&tz)
                    .to_rfc3339_opts(SecondsFormat::Secs, false)
            })
            .collect();
        assert_eq!(got, want, "{expr} in {zone} after {after}");
    }

    #[test]
    fn standard_cron_semantics() {
        let after = "2026-11-26T12:40:00+00:00"; // a Thursday
        #[rustfmt::skip]
        let table: &[(&str, [&str; 3])] = &[
            ("0 2 * * *", ["2026-11-27T02:00:00+00:00", "2026-11-28T02:00:00+00:00", "2026-11-29T02:00:00+00:00"]),
            // 0 and 7 are both Sunday; names work.
            ("0 3 * * 0", ["2026-11-29T03:00:00+00:00", "2026-12-06T03:00:00+00:00", "2026-12-13T03:00:00+00:00"]),
            ("0 3 * * 7", ["2026-11-29T03:00:00+00:00", "2026-12-06T03:00:00+00:00", "2026-12-13T03:00:00+00:00"]),
            ("0 3 * * sun", ["2026-11-29T03:00:00+00:00", "2026-12-06T03:00:00+00:00", "2026-12-13T03:00:00+00:00"]),
            // 1-5 is Monday to Friday (cron 0.17 would read Sunday to Thursday).
            ("0 2 * * 1-5", ["2026-11-27T02:00:00+00:00", "2026-11-30T02:00:00+00:00", "2026-12-01T02:00:00+00:00"]),
            ("0 2 * * mon-fri", ["2026-11-27T02:00:00+00:00", "2026-11-30T02:00:00+00:00", "2026-12-01T02:00:00+00:00"]),
            // Day-of-month OR day-of-week when both are restricted.
            ("30 4 1,15 * 5", ["2026-11-27T04:30:00+00:00", "2026-12-01T04:30:00+00:00", "2026-12-04T04:30:00+00:00"]),
            ("@hourly", ["2026-11-26T13:00:00+00:00", "2026-11-26T14:00:00+00:00", "2026-11-26T15:00:00+00:00"]),
            ("@daily", ["2026-11-27T00:00:00+00:00", "2026-11-28T00:00:00+00:00", "2026-11-29T00:00:00+00:00"]),
            ("@midnight", ["2026-11-27T00:00:00+00:00", "2026-11-28T00:00:00+00:00", "2026-11-29T00:00:00+00:00"]),
            ("@weekly", ["2026-11-29T00:00:00+00:00", "2026-12-06T00:00:00+00:00", "2026-12-13T00:00:00+00:00"]),
            ("@monthly", ["2026-12-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00", "2027-02-01T00:00:00+00:00"]),
            ("@yearly", ["2027-01-01T00:00:00+00:00", "2028-01-01T00:00:00+00:00", "2029-01-01T00:00:00+00:00"]),
            ("@annually", ["2027-01-01T00:00:00+00:00", "2028-01-01T00:00:00+00:00", "2029-01-01T00:00:00+00:00"]),
            ("*/15 9-17 * * mon-fri", ["2026-11-26T12:45:00+00:00", "2026-11-26T13:00:00+00:00", "2026-11-26T13:15:00+00:00"]),
            ("0 0 * jan,jul *", ["2027-01-01T00:00:00+00:00", "2027-01-02T00:00:00+00:00", "2027-01-03T00:00:00+00:00"]),
            ("0 12 29 2 *", ["2028-02-29T12:00:00+00:00", "2032-02-29T12:00:00+00:00", "2036-02-29T12:00:00+00:00"]),
            ("0 0 31 * *", ["2026-12-31T00:00:00+00:00", "2027-01-31T00:00:00+00:00", "2027-03-31T00:00:00+00:00"]),
            ("5,35 */6 * * *", ["2026-11-26T18:05:00+00:00", "2026-11-26T18:35:00+00:00", "2026-11-27T00:05:00+00:00"]),
            ("0 22 * * 1,3-5", ["2026-11-26T22:00:00+00:00", "2026-11-27T22:00:00+00:00", "2026-11-30T22:00:00+00:00"]),
            // Six fields: a leading seconds field.
            ("*/20 * * * * *", ["2026-11-26T12:40:20+00:00", "2026-11-26T12:40:40+00:00", "2026-11-26T12:41:00+00:00"]),
        ];
        for (expr, want) in table {
            check(expr, "UTC", after, want);
        }
    }

    #[test]
    fn fires_in_the_schedules_timezone() {
        check(
            "0 2 * * *",
            "Asia/Tokyo",
            "2026-11-26T12:40:00+00:00",
            &["2026-11-27T02:00:00+09:00", "2026-11-28T02:00:00+09:00"],
        );
        check(
            "0 2 * * *",
            "America/Los_Angeles",
            "2026-11-26T12:40:00+00:00",
            &["2026-11-27T02:00:00-08:00", "2026-11-28T02:00:00-08:00"],
        );
    }

    #[test]
    fn spring_forward_fires_once_right_after_the_gap() {
        #[rustfmt::skip]
        let table: &[(&str, &str, &str, &[&str])] = &[
            ("30 2 * * *", "Europe/Rome", "2026-03-28T12:00:00+01:00",
                &["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00", "2026-03-31T02:30:00+02:00"]),
            ("0 2 * * *", "Europe/Rome", "2026-03-28T12:00:00+01:00",
                &["2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"]),
            ("0 3 * * *", "Europe/Rome", "2026-03-28T12:00:00+01:00",
                &["2026-03-29T03:00:00+02:00", "2026-03-30T03:00:00+02:00"]),
            // Four skipped times collapse into one fire at the end of the gap.
            ("*/15 * * * *", "Europe/Rome", "2026-03-29T01:40:00+01:00",
                &["2026-03-29T01:45:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T03:15:00+02:00"]),
            ("30 2 * * *", "America/New_York", "2026-03-07T12:00:00-05:00",
                &["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]),
            ("15 2 * * *", "Australia/Sydney", "2026-10-03T12:00:00+10:00",
                &["2026-10-04T03:00:00+11:00", "2026-10-05T02:15:00+11:00"]),
            // Lord Howe moves by half an hour.
            ("*/10 * * * *", "Australia/Lord_Howe", "2026-10-04T01:45:00+10:30",
                &["2026-10-04T01:50:00+10:30", "2026-10-04T02:30:00+11:00", "2026-10-04T02:40:00+11:00"]),
        ];
        for (expr, zone, after, want) in table {
            check(expr, zone, after, want);
        }
    }

    #[test]
    fn fall_back_fires_a_repeated_time_once() {
        #[rustfmt::skip]
        let table: &[(&str, &str, &str, &[&str])] = &[
            ("30 2 * * *", "Europe/Rome", "2026-10-24T12:00:00+02:00",
                &["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00", "2026-10-27T02:30:00+01:00"]),
            ("*/30 * * * *", "Europe/Rome", "2026-10-25T01:45:00+02:00",
                &["2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-25T03:00:00+01:00", "2026-10-25T03:30:00+01:00"]),
            // Starting inside the second copy of the hour: nothing until it ends.
            ("*/30 * * * *", "Europe/Rome", "2026-10-25T02:10:00+01:00",
                &["2026-10-25T03:00:00+01:00", "2026-10-25T03:30:00+01:00"]),
            ("0 * * * *", "Europe/Rome", "2026-10-25T00:30:00+02:00",
                &["2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00", "2026-10-25T03:00:00+01:00", "2026-10-25T04:00:00+01:00"]),
            ("30 1 * * *", "America/New_York", "2026-10-31T12:00:00-04:00",
                &["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]),
            ("15 2 * * *", "Australia/Sydney", "2026-04-04T12:00:00+11:00",
                &["2026-04-05T02:15:00+11:00", "2026-04-06T02:15:00+10:00"]),
            ("*/10 * * * *", "Australia/Lord_Howe", "2026-04-05T01:25:00+11:00",
                &["2026-04-05T01:30:00+11:00", "2026-04-05T01:40:00+11:00", "2026-04-05T01:50:00+11:00",
                  "2026-04-05T02:00:00+10:30", "2026-04-05T02:10:00+10:30"]),
        ];
        for (expr, zone, after, want) in table {
            check(expr, zone, after, want);
        }
    }

    #[test]
    fn fires_between_is_half_open() {
        let s: CronSchedule = "0 * * * *".parse().expect("expr");
        let at = |h| {
            DateTime::parse_from_rfc3339(&format!("2026-11-26T{h:02}:00:00Z"))
                .expect("time")
                .with_timezone(&Utc)
        };
        assert_eq!(s.fires_between(&Utc, at(1), at(3)), vec![at(2), at(3)]);
        assert!(s.fires_between(&Utc, at(3), at(3)).is_empty());
    }

    #[test]
    fn accepts_the_reference_apps_examples_and_macros() {
        for expr in [
            "0 2 * * *",
            "0 3 * * 0",
            "0 1 * * 1-5",
            "0 */6 * * *",
            "0 0 1 * *",
            "@daily",
            "*/5 * * * * *",
            "0 4 * * sun,7",
        ] {
            assert!(expr.parse::<CronSchedule>().is_ok(), "{expr}");
        }
    }

    #[test]
    fn rejects_bad_expressions_with_the_expression_in_the_message() {
        let err = "0 25 * * *"
            .parse::<CronSchedule>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"0 25 * * *\""), "{err}");
        let err = "0 2 * *".parse::<CronSchedule>().unwrap_err().to_string();
        assert!(err.contains("4 fields"), "{err}");
        assert!("0 0 2 * * * 2026".parse::<CronSchedule>().is_err());
        let err = "0 0 31 2 *"
            .parse::<CronSchedule>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("never fires"), "{err}");
        assert!(
            "0 0 29 2 *".parse::<CronSchedule>().is_ok(),
            "leap days fire"
        );
    }
}

#[cfg(test)]
mod properties {
    use chrono::{DateTime, Utc};
    use proptest::prelude::*;

    use super::CronSchedule;

    /// A field that is often valid: numbers, ranges, steps, names, junk.
    fn field() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("*".to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            (0u32..100, 0u32..100).prop_map(|(a, b)| format!("{a}-{b}")),
            (any::<u32>(), any::<u32>()).prop_map(|(a, b)| format!("*/{a},{b}")),
            "[A-Za-z?L#W/,*0-9-]{1,8}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn any_text_parses_or_is_refused(s in ".{0,60}") {
            let _ = s.parse::<CronSchedule>();
        }

        #[test]
        fn any_field_mix_parses_or_is_refused_and_fires_without_panic(
            fields in proptest::collection::vec(field(), 4..=7),
            secs in 0i64..4_102_444_800,
            zone in prop_oneof![Just("UTC"), Just("Europe/Paris"), Just("Australia/Lord_Howe")],
        ) {
            if let Ok(schedule) = fields.join(" ").parse::<CronSchedule>() {
                let tz: chrono_tz::Tz = zone.parse().unwrap();
                let after = DateTime::<Utc>::from_timestamp(secs, 0).unwrap();
                let fires = schedule.upcoming(&tz, after, 3);
                prop_assert!(fires.iter().all(|t| *t > after));
            }
        }
    }
}

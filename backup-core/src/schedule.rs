//! Cron expressions with standard `cron(8)` semantics, parsed at config load.

use std::{fmt, str::FromStr};

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

    /// The parsed schedule, for computing fire times.
    pub fn cron(&self) -> &Cron {
        &self.cron
    }
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
        let cron = parser.parse(trimmed).map_err(|e| err(e.to_string()))?;
        Ok(Self {
            source: trimmed.to_string(),
            cron,
        })
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
    use super::*;

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
    }
}

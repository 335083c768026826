//! The words every module shares: what a run backs up, where it is in its
//! life, why it happened, what a target may be called, and how sizes and
//! errors read. Depends on nothing else in the crate.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name stored in history and shown to users.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            /// Case does not matter (`FAILED` is `failed`).
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s.to_ascii_lowercase().as_str() {
                    $($s => Ok($name::$variant),)+
                    other => Err(format!(
                        concat!("unknown ", stringify!($name), " {:?}; expected one of: {}"),
                        other, [$($s),+].join(", ")
                    )),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, Self::Error> { s.parse() }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

string_enum!(
    /// What a run backs up.
    BackupType { /// A database.
    Database = "database", /// A directory tree.
    Media = "media" }
);
string_enum!(
    /// Where a run is in its life.
    RunStatus { /// Started, not finished.
    Running = "running", /// Finished with a complete artifact.
    Success = "success", /// Finished without one.
    Failed = "failed" }
);
string_enum!(
    /// What a restore row records.
    RestoreKind { /// A restore asked for by an operator.
    Restore = "restore", /// A restore drill into a scratch database, dropped afterwards.
    Drill = "drill" }
);
string_enum!(
    /// Why a run happened.
    Trigger { /// By hand (`backup-cli backup`, `trigger`).
    Manual = "manual", /// At a scheduled fire time.
    Schedule = "schedule", /// For a fire time missed while no worker ran.
    CatchUp = "catch_up" }
);

/// Checks a target name. Target names become storage path segments
/// (`database/{name}/{name}-...`), so they stay plain: 1-100 letters, digits,
/// `_`, `-`, `.`, not starting with `.` or `-`.
///
/// # Errors
///
/// The rule, naming the offending name.
pub fn check_target_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "target name {name:?} must be 1-100 characters of letters, digits, '_', '-', '.', \
             not starting with '.' or '-'"
        ))
    }
}

/// A target name given as an argument (`--target NAME`), checked like a
/// name in the config: it becomes a storage path, where `..` would climb.
///
/// # Errors
///
/// The rule, as [`check_target_name`].
pub fn parse_target_name(name: &str) -> Result<String, String> {
    check_target_name(name).map(|()| name.to_string())
}

/// A valid target name made from `raw` (a directory or database name): each
/// run of characters a name cannot hold becomes one `-` (`my media` →
/// `my-media`), and leading `.` and `-` go. `None` when nothing is left.
pub fn derive_target_name(raw: &str) -> Option<String> {
    let mut name = String::with_capacity(raw.len());
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '.') {
            name.push(c);
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    let name = name.trim_start_matches(['.', '-']).trim_end_matches('-');
    let name: String = name.chars().take(100).collect();
    (!name.is_empty() && check_target_name(&name).is_ok()).then_some(name)
}

/// Collapses a multi-line message (tool stderr, say) onto one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A byte count for people: `512 B`, `1.5 KiB`, `12.3 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn names_and_errors_read_back() {
        assert_eq!("catch_up".parse::<Trigger>(), Ok(Trigger::CatchUp));
        assert_eq!("FAILED".parse::<RunStatus>(), Ok(RunStatus::Failed));
        assert!("nope".parse::<RunStatus>().is_err());
        assert!(check_target_name("app-db_1.x").is_ok());
        for bad in ["", ".hidden", "-x", "a/b", "my media"] {
            assert!(check_target_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(one_line("a\n  b\tc"), "a b c");
        assert_eq!(derive_target_name("my media").as_deref(), Some("my-media"));
        assert_eq!(
            derive_target_name(".uploads  (old)").as_deref(),
            Some("uploads-old")
        );
        assert_eq!(
            derive_target_name("app.sqlite3").as_deref(),
            Some("app.sqlite3")
        );
        assert_eq!(derive_target_name("~~~"), None);
    }
}

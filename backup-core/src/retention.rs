//! Which artifacts to keep: a pure plan, then its application.

use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Tz;

use crate::{
    model::BackupType,
    storage::{Manifest, Storage, StorageError},
};

pub use crate::config::RetentionPolicy as Policy;

/// An artifact retention keeps, and why ("last 1", "monthly 2026-10").
#[derive(Debug, Clone, PartialEq)]
pub struct Kept {
    /// The artifact.
    pub manifest: Manifest,
    /// Each rule that keeps it, with its period.
    pub reasons: Vec<String>,
}

/// What retention will do for one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Artifacts kept, newest first.
    pub keep: Vec<Kept>,
    /// Artifacts to delete, newest first.
    pub delete: Vec<Manifest>,
}

/// The calendar rules: name, the period of a time, how many periods.
type Rule = (&'static str, fn(&DateTime<Tz>) -> String, u32);

/// Artifacts that say they started later than this after `now` are from
/// a clock that ran ahead, or forged: kept, never counted.
const FUTURE_SLACK_MINUTES: i64 = 10;

/// Plans retention for one target's artifacts (any order) under `policy`,
/// periods taken in `tz` from each artifact's completion time. Pure: the
/// same input gives the same plan, and planning what it keeps again keeps
/// it all. An artifact dated after `now` is kept and counts for nothing, so
/// a manifest from the future cannot push real backups out.
pub fn plan(mut artifacts: Vec<Manifest>, policy: &Policy, tz: Tz, now: DateTime<Utc>) -> Plan {
    artifacts.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then(b.run_id.cmp(&a.run_id))
    });
    let horizon = now + chrono::Duration::minutes(FUTURE_SLACK_MINUTES);
    let (future, artifacts): (Vec<Manifest>, Vec<Manifest>) =
        artifacts.into_iter().partition(|m| m.started_at > horizon);
    let rules: [Rule; 4] = [
        ("daily", |t| t.format("%Y-%m-%d").to_string(), policy.daily),
        (
            "weekly",
            |t| {
                let w = t.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            },
            policy.weekly,
        ),
        ("monthly", |t| t.format("%Y-%m").to_string(), policy.monthly),
        ("yearly", |t| t.format("%Y").to_string(), policy.yearly),
    ];
    let mut left: Vec<u32> = rules.iter().map(|r| r.2).collect();
    let mut last_period: Vec<Option<String>> = vec![None; rules.len()];
    let mut keep: Vec<Kept> = future
        .into_iter()
        .map(|manifest| Kept {
            reasons: vec!["dated in the future (not counted)".into()],
            manifest,
        })
        .collect();
    let mut delete = Vec::new();
    for (i, manifest) in artifacts.into_iter().enumerate() {
        let mut reasons = Vec::new();
        if i == 0 || (i as u64) < u64::from(policy.last) {
            reasons.push(format!("last {}", i + 1));
        }
        let local = manifest.created_at.with_timezone(&tz);
        for (r, (name, period_of, _)) in rules.iter().enumerate() {
            if left[r] == 0 {
                continue;
            }
            let period = period_of(&local);
            // Newest first: the first artifact of a period is its newest.
            if last_period[r].as_deref() != Some(period.as_str()) {
                reasons.push(format!("{name} {period}"));
                left[r] -= 1;
                last_period[r] = Some(period);
            }
        }
        if reasons.is_empty() {
            delete.push(manifest);
        } else {
            keep.push(Kept { manifest, reasons });
        }
    }
    Plan { keep, delete }
}

impl Plan {
    /// Keeps `artifact` whatever the rules say: the artifact a run has
    /// just written is never its own retention's victim.
    pub fn protect(&mut self, artifact: &str) {
        if let Some(i) = self.delete.iter().position(|m| m.artifact == artifact) {
            let manifest = self.delete.remove(i);
            self.keep.push(Kept {
                manifest,
                reasons: vec!["this run".into()],
            });
        }
    }
}

/// Plans retention for one target from what storage holds.
///
/// # Errors
///
/// When storage cannot be listed.
pub async fn plan_target(
    storage: &Storage,
    policy: &Policy,
    tz: Tz,
    backup_type: BackupType,
    target: &str,
) -> Result<Plan, StorageError> {
    let artifacts = storage.manifests(Some(backup_type), Some(target)).await?;
    Ok(plan(artifacts, policy, tz, Utc::now()))
}

/// Deletes what the plan marks for the target `backup_type`/`target`,
/// returning the deleted artifact keys. Only keys under the target's own
/// folder are ever deleted, whatever a manifest says.
///
/// # Errors
///
/// Stops at the first delete that fails; what was deleted before stays deleted.
pub async fn apply(
    storage: &Storage,
    plan: &Plan,
    backup_type: BackupType,
    target: &str,
) -> Result<Vec<String>, StorageError> {
    let folder = format!("{}/{target}/", backup_type.as_str());
    let mut deleted = Vec::new();
    for manifest in &plan.delete {
        if !manifest.artifact.starts_with(&folder)
            || manifest.check(&manifest.manifest_key()).is_err()
        {
            tracing::warn!(artifact = %manifest.artifact, folder, "not deleted: it lies outside the target's folder");
            continue;
        }
        storage.delete(manifest).await?;
        deleted.push(manifest.artifact.clone());
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone, Utc};

    fn manifest(run_id: i64, hours: i64) -> Manifest {
        fixture(
            run_id,
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::hours(hours),
        )
    }

    /// A manifest of target `app` for run `run_id`, made at `at`.
    pub(super) fn fixture(run_id: i64, at: chrono::DateTime<Utc>) -> Manifest {
        Manifest {
            version: 1,
            run_id,
            backup_type: BackupType::Database,
            target: "app".into(),
            engine: "postgresql".into(),
            format: "pg_dump custom archive".into(),
            server_version: None,
            tool_version: None,
            compression: "zstd".into(),
            artifact: format!("database/app/app-{run_id}.dump.zst"),
            size_bytes: 1,
            sha256: String::new(),
            source_bytes: 1,
            files: None,
            started_at: at,
            created_at: at,
            encryption: None,
        }
    }

    /// A `now` after every test artifact.
    fn far() -> chrono::DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn artifacts_from_the_future_are_kept_and_never_push_real_ones_out() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap();
        let mut forged = manifest(901, 24 * 365 * 100);
        forged.artifact = "database/app/app-901.dump.zst".into();
        let p = plan(
            vec![manifest(1, 1), manifest(2, 2), manifest(3, 3), forged],
            &last(2),
            chrono_tz::UTC,
            now,
        );
        assert_eq!(ids(&p), (vec![901, 3, 2], vec![1]));
        assert_eq!(p.keep[0].reasons, ["dated in the future (not counted)"]);
        let mut p = plan(
            vec![manifest(1, 1), manifest(2, 2)],
            &last(1),
            chrono_tz::UTC,
            now,
        );
        p.protect("database/app/app-1.dump.zst");
        assert!(p.delete.is_empty());
        assert_eq!(p.keep[1].reasons, ["this run"]);
    }

    fn last(n: u32) -> Policy {
        Policy {
            last: n,
            ..Policy::default()
        }
    }

    fn ids(p: &Plan) -> (Vec<i64>, Vec<i64>) {
        (
            p.keep.iter().map(|k| k.manifest.run_id).collect(),
            p.delete.iter().map(|m| m.run_id).collect(),
        )
    }

    #[test]
    fn keeps_the_newest_n_whatever_the_input_order() {
        let p = plan(
            vec![
                manifest(1, 1),
                manifest(3, 3),
                manifest(2, 2),
                manifest(4, 4),
            ],
            &last(2),
            chrono_tz::UTC,
            far(),
        );
        assert_eq!(ids(&p), (vec![4, 3], vec![2, 1]));
        assert_eq!(p.keep[1].reasons, ["last 2"]);
    }

    #[test]
    fn never_deletes_the_newest_and_handles_few_artifacts() {
        let utc = chrono_tz::UTC;
        assert_eq!(
            plan(vec![manifest(1, 1), manifest(2, 2)], &last(0), utc, far())
                .keep
                .len(),
            1
        );
        assert!(
            plan(vec![manifest(1, 1)], &last(10), utc, far())
                .delete
                .is_empty()
        );
        assert!(plan(Vec::new(), &last(3), utc, far()).keep.is_empty());
    }

    #[test]
    fn calendar_rules_keep_the_newest_of_each_period_in_the_timezone() {
        // One backup every 6 hours for 100 days from 2026-01-01 00:00 UTC.
        let all: Vec<Manifest> = (0..400).map(|i| manifest(i + 1, i * 6)).collect();
        let policy = Policy {
            last: 2,
            daily: 7,
            weekly: 4,
            monthly: 3,
            yearly: 1,
        };
        let p = plan(all.clone(), &policy, chrono_tz::UTC, far());
        let reasons = |id: i64| {
            p.keep
                .iter()
                .find(|k| k.manifest.run_id == id)
                .map(|k| k.reasons.clone())
                .unwrap_or_default()
        };
        // The newest (day 99, 18:00 = 2026-04-10 18:00) is kept by every rule.
        assert_eq!(
            reasons(400),
            [
                "last 1",
                "daily 2026-04-10",
                "weekly 2026-W15",
                "monthly 2026-04",
                "yearly 2026"
            ]
        );
        assert_eq!(reasons(399), ["last 2"]);
        // The newest of the previous day, week and month.
        assert_eq!(reasons(396), ["daily 2026-04-09"]);
        assert_eq!(reasons(380), ["daily 2026-04-05", "weekly 2026-W14"]);
        assert_eq!(reasons(4 * 90), ["monthly 2026-03"]);
        // 2 last + 7 daily (1 shared) + 4 weekly (2 shared) + 3 monthly (1
        // shared) + 1 yearly (shared).
        assert_eq!(p.keep.len(), 2 + 6 + 2 + 2);
        // In another timezone the day boundary moves: 2026-04-10 18:00 UTC
        // is the 11th in Tokyo.
        let tokyo = plan(all, &policy, chrono_tz::Asia::Tokyo, far());
        assert!(
            tokyo.keep[0]
                .reasons
                .contains(&"daily 2026-04-11".to_string())
        );
    }
}

#[cfg(test)]
mod properties {
    use std::collections::{BTreeSet, HashSet};

    use chrono::{Duration, TimeZone, Utc};
    use proptest::prelude::*;

    use super::*;

    fn manifest(run_id: i64, minutes: i64) -> Manifest {
        super::tests::fixture(
            run_id,
            Utc.with_ymd_and_hms(2024, 12, 20, 0, 0, 0).unwrap() + Duration::minutes(minutes),
        )
    }

    fn policy() -> impl Strategy<Value = Policy> {
        (0u32..6, 0u32..10, 0u32..6, 0u32..5, 0u32..3).prop_map(
            |(last, daily, weekly, monthly, yearly)| Policy {
                last,
                daily,
                weekly,
                monthly,
                yearly,
            },
        )
    }

    fn history() -> impl Strategy<Value = Vec<Manifest>> {
        // Up to 150 backups at random minutes over about two years.
        prop::collection::btree_set(0i64..1_000_000, 0..150).prop_map(|minutes| {
            minutes
                .into_iter()
                .enumerate()
                .map(|(i, m)| manifest(i as i64 + 1, m))
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn the_plan_is_whole_keeps_the_newest_keeps_what_was_asked_and_is_idempotent(
            artifacts in history(),
            policy in policy(),
            tz in prop_oneof![Just(chrono_tz::UTC), Just(chrono_tz::Asia::Tokyo), Just(chrono_tz::America::New_York)],
        ) {
            let now = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
            let p = plan(artifacts.clone(), &policy, tz, now);
            // Every artifact is either kept or deleted, once.
            let kept: HashSet<i64> = p.keep.iter().map(|k| k.manifest.run_id).collect();
            let deleted: HashSet<i64> = p.delete.iter().map(|m| m.run_id).collect();
            prop_assert!(kept.is_disjoint(&deleted));
            prop_assert_eq!(kept.len() + deleted.len(), artifacts.len());
            // The newest is never deleted.
            if let Some(newest) = artifacts.iter().max_by_key(|m| (m.created_at, m.run_id)) {
                prop_assert!(kept.contains(&newest.run_id));
            }
            // Never fewer than asked: the newest `last`, and for each rule
            // one per period over as many periods as asked (or there are).
            prop_assert!(kept.len() >= (policy.last as usize).min(artifacts.len()));
            let period = |m: &Manifest, f: &str| m.created_at.with_timezone(&tz).format(f).to_string();
            for (n, fmt) in [(policy.daily, "%Y-%m-%d"), (policy.weekly, "%G-W%V"), (policy.monthly, "%Y-%m"), (policy.yearly, "%Y")] {
                let all: BTreeSet<String> = artifacts.iter().map(|m| period(m, fmt)).collect();
                let covered: BTreeSet<String> = p.keep.iter().map(|k| period(&k.manifest, fmt)).collect();
                let newest_periods: Vec<&String> = all.iter().rev().take(n as usize).collect();
                for wanted in newest_periods {
                    prop_assert!(covered.contains(wanted), "period {} lost", wanted);
                }
            }
            // Planning again over what is kept deletes nothing.
            let again = plan(p.keep.iter().map(|k| k.manifest.clone()).collect(), &policy, tz, now);
            prop_assert!(again.delete.is_empty());
        }
    }
}

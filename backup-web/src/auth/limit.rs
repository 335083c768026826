//! Sign-in failures, counted per address and per user name: after
//! [`MAX_FAILURES`] within [`WINDOW`], that address or name is refused
//! until the oldest failure leaves the window. Kept per process (each
//! replica counts its own), so a guesser behind a load balancer gets at
//! most `replicas x MAX_FAILURES` tries per window.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Failures allowed within [`WINDOW`].
pub const MAX_FAILURES: usize = 5;
/// How long a failure counts.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Keys tracked at most; the stalest go first (a flood of names cannot
/// grow memory without bound).
const MAX_KEYS: usize = 10_000;

#[derive(Default)]
pub struct Limiter {
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl Limiter {
    /// How long until `keys` may try again; `None` when none is locked out.
    pub fn locked(&self, keys: &[String], now: Instant) -> Option<Duration> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .filter_map(|k| {
                let times = map.get_mut(k)?;
                times.retain(|t| now.duration_since(*t) < WINDOW);
                (times.len() >= MAX_FAILURES)
                    .then(|| times.first().map(|t| WINDOW - now.duration_since(*t)))
                    .flatten()
            })
            .max()
    }

    /// Counts a failure against each of `keys`.
    pub fn failed(&self, keys: &[String], now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_KEYS {
            map.retain(|_, times| {
                times
                    .last()
                    .is_some_and(|t| now.duration_since(*t) < WINDOW)
            });
            if map.len() >= MAX_KEYS {
                map.clear();
            }
        }
        for k in keys {
            map.entry(k.clone()).or_default().push(now);
        }
    }

    /// Forgets the failures of a user who signed in.
    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_lock_out_until_the_first_leaves_the_window() {
        let limiter = Limiter::default();
        let keys = vec!["ip:10.0.0.1".to_string(), "user:admin".to_string()];
        let t0 = Instant::now();
        for i in 0..MAX_FAILURES {
            assert_eq!(limiter.locked(&keys, t0), None, "try {i}");
            limiter.failed(&keys, t0);
        }
        assert!(limiter.locked(&keys, t0).is_some());
        // Another address guessing the same user is refused too.
        let other = vec!["ip:10.0.0.2".to_string(), "user:admin".to_string()];
        assert!(limiter.locked(&other, t0).is_some());
        assert_eq!(limiter.locked(&keys, t0 + WINDOW), None);
    }
}

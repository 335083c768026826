//! Sign-in failures, counted per address and per user name: after
//! [`MAX_FAILURES`] within [`WINDOW`], that address or name is refused
//! until the oldest failure leaves the window. Kept per process (each
//! replica counts its own), so a guesser behind a load balancer gets at
//! most `replicas x MAX_FAILURES` tries per window.
//!
//! The table is bounded ([`MAX_KEYS`]); when a flood of new addresses and
//! names fills it, expired and not-locked entries go first, a lockout is
//! never dropped, and failures of keys that no longer fit are counted
//! together under one shared key: under such a flood, unknown addresses
//! and names are locked out together (failing closed) rather than
//! guessing freely.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Failures allowed within [`WINDOW`].
pub const MAX_FAILURES: usize = 5;
/// How long a failure counts.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Keys tracked at most.
const MAX_KEYS: usize = 10_000;
/// Where failures of keys that do not fit are counted.
const OVERFLOW: &str = "*";

#[derive(Default)]
pub struct Limiter {
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

fn lock_left(times: &mut Vec<Instant>, now: Instant) -> Option<Duration> {
    times.retain(|t| now.duration_since(*t) < WINDOW);
    (times.len() >= MAX_FAILURES)
        .then(|| times.first().map(|t| WINDOW - now.duration_since(*t)))
        .flatten()
}

impl Limiter {
    /// How long until `keys` may try again; `None` when none is locked out.
    pub fn locked(&self, keys: &[String], now: Instant) -> Option<Duration> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let untracked = keys.iter().any(|k| !map.contains_key(k));
        let mut wait = keys
            .iter()
            .filter_map(|k| lock_left(map.get_mut(k)?, now))
            .max();
        if untracked && let Some(times) = map.get_mut(OVERFLOW) {
            wait = wait.max(lock_left(times, now));
        }
        wait
    }

    /// Counts a failure against each of `keys`.
    pub fn failed(&self, keys: &[String], now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            if !map.contains_key(k) && map.len() >= MAX_KEYS {
                // Make room: expired and not-locked entries go; lockouts stay.
                map.retain(|key, times| key == OVERFLOW || lock_left(times, now).is_some());
            }
            let key = if map.contains_key(k) || map.len() < MAX_KEYS {
                k.as_str()
            } else {
                OVERFLOW
            };
            map.entry(key.to_string()).or_default().push(now);
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

    /// Found by a hostile probe: 10,000 failures from new addresses
    /// emptied the table, and with it the lockout of `admin`.
    #[test]
    fn a_flood_of_new_keys_never_lifts_a_lockout() {
        let limiter = Limiter::default();
        let t0 = Instant::now();
        let admin = vec!["ip:10.0.0.1".to_string(), "user:admin".to_string()];
        for _ in 0..MAX_FAILURES {
            limiter.failed(&admin, t0);
        }
        // Enough addresses and names, each locked out, to fill the table.
        for i in 0..(MAX_KEYS / 2 + 100) {
            let keys = vec![format!("ip:fd00::{i:x}"), format!("user:n{i}")];
            for _ in 0..MAX_FAILURES {
                limiter.failed(&keys, t0 + Duration::from_millis(1));
            }
        }
        let later = t0 + Duration::from_secs(60);
        let guess = vec!["ip:fd00::ffff:1".to_string(), "user:admin".to_string()];
        assert!(
            limiter.locked(&guess, later).is_some(),
            "the lockout of admin was lifted"
        );
        // The flood's own keys, past the table, are locked out together.
        let fresh = vec!["ip:fd00::1:0".to_string(), "user:someone".to_string()];
        assert!(limiter.locked(&fresh, later).is_some());
        assert!(limiter.failures.lock().expect("lock").len() <= MAX_KEYS + 1);
        // And it all ends with the window.
        assert_eq!(
            limiter.locked(&guess, t0 + WINDOW + Duration::from_secs(1)),
            None
        );
    }
}

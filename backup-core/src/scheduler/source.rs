//! One cron source per schedule: an apalis worker on an apalis-cron
//! [`CronScheduler`], driven by our own cron semantics ([`FireTimes`]
//! implements apalis-cron's `Schedule` trait with [`CronSchedule`]: 5 or 6
//! fields, day-of-month OR day-of-week, IANA timezones, DST once per wall
//! time), whose handler hands each fire to a [`Dispatch`] (a Redis push with
//! the fire's idempotency key, or a task of this process).
//!
//! apalis-cron only delivers ticks that are still ahead when its delay is
//! set: a tick already past makes its stream fail (`OutOfRange`) for good.
//! So [`FireTimes`] never hands it a past tick. A fire time that is already
//! past when it is computed (a source started just after it, or restarted
//! after an error or an overdue timer) is dispatched at once, beside the
//! stream, and the books ([`Book`]) keep every fire until it is dispatched,
//! so none is lost in between and the health view knows how far the source
//! got.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use apalis::prelude::{BoxDynError, Data, WorkerBuilder, WorkerBuilderExt};
use apalis_cron::{CronScheduler, Tick};
use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use tokio::{sync::watch, task::JoinHandle};

use super::{
    dispatch::Dispatch,
    fire::{Fire, fire},
};
use crate::{
    Error,
    context::Context,
    jobs::payload::{Chore, MaintenanceJob},
    model::Trigger,
    schedule::{cron::CronSchedule, plan::StoredSchedule},
};

/// What a source fires.
#[derive(Debug, Clone)]
pub enum Fires {
    /// A stored schedule: a backup job per target.
    Backups(StoredSchedule),
    /// A chore of the config (`worker.maintenance_schedule`,
    /// `verify_schedule`), in the config's timezone.
    Chore(Chore, CronSchedule, Tz),
}

impl Fires {
    /// The source's name in logs and worker names.
    pub fn name(&self) -> String {
        match self {
            Self::Backups(s) => Self::schedule_name(&s.schedule.name),
            Self::Chore(chore, ..) => format!("chore {}", chore.as_str()),
        }
    }

    /// The name of stored schedule `schedule`'s source.
    pub fn schedule_name(schedule: &str) -> String {
        format!("schedule {schedule}")
    }

    fn cron(&self) -> (&CronSchedule, Tz) {
        match self {
            Self::Backups(s) => (&s.schedule.cron, s.schedule.timezone.0),
            Self::Chore(_, cron, tz) => (cron, *tz),
        }
    }
}

/// The books of one source: the fire its timer waits for, and the fires
/// handed over but not yet dispatched.
#[derive(Debug, Default)]
struct Book {
    planned: Option<DateTime<Utc>>,
    in_flight: BTreeSet<DateTime<Utc>>,
}

impl Book {
    fn checked_until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.first_open()
            .map_or(now, |t| (t - TimeDelta::nanoseconds(1)).min(now))
    }

    /// The oldest fire not yet dispatched.
    fn first_open(&self) -> Option<DateTime<Utc>> {
        let flying = self.in_flight.first().copied();
        match (self.planned, flying) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// What the handler and [`FireTimes`] share.
struct Shared<D> {
    fires: Fires,
    ctx: Context,
    dispatch: D,
    book: Arc<Mutex<Book>>,
    stop: watch::Receiver<bool>,
}

impl<D: Dispatch> Shared<D> {
    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Dispatches the fire at `at` (never before it), retrying (with a
    /// growing pause) while the queue cannot take it; gives up only when the
    /// source stops, and the fire then stays open in the books.
    async fn fire(&self, at: DateTime<Utc>) {
        let mut pause = Duration::from_millis(500);
        let mut stop = self.stop.clone();
        // A fire dispatched beside the stream, or a timer that ran ahead of
        // a clock set back, waits for its wall-clock time.
        if let Ok(early) = (at - Utc::now()).to_std() {
            tokio::select! {
                () = tokio::time::sleep(early) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
        loop {
            match self.dispatch_once(at).await {
                Ok(()) => break,
                Err(e) => {
                    let name = self.fires.name();
                    if self.dispatch.is_down() {
                        tracing::debug!(source = %name, fire = %at, error = %e, "cannot enqueue a scheduled job; will retry");
                    } else {
                        tracing::error!(source = %name, fire = %at, error = %e, "cannot enqueue a scheduled job; will retry");
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            pause = (pause * 2).min(Duration::from_secs(5));
        }
        self.book().in_flight.remove(&at);
    }

    async fn dispatch_once(&self, at: DateTime<Utc>) -> Result<(), Error> {
        match &self.fires {
            Fires::Backups(s) => {
                dispatch_fire(&self.dispatch, &self.ctx, &fire(s, at, Trigger::Schedule)).await
            }
            Fires::Chore(chore, ..) => {
                let job = MaintenanceJob {
                    scheduled_for: at,
                    chore: *chore,
                };
                if self.dispatch.maintenance(job).await? {
                    tracing::info!(fire = %at, chore = chore.as_str(), "chore enqueued");
                }
                Ok(())
            }
        }
    }
}

/// Enqueues (or starts) a fire's jobs, then records the fire on its
/// schedule (what the catch-up at start-up reads).
///
/// # Errors
///
/// When the queue or history cannot take it.
pub async fn dispatch_fire<D: Dispatch>(
    dispatch: &D,
    ctx: &Context,
    fire: &Fire,
) -> Result<(), Error> {
    for job in &fire.jobs {
        let fresh = dispatch.backup(&fire.schedule, job.clone()).await?;
        if fresh {
            tracing::info!(schedule = %fire.schedule, target = %job.target, fire = %fire.at, trigger = %job.trigger, "backup job enqueued");
        } else {
            tracing::debug!(schedule = %fire.schedule, target = %job.target, fire = %fire.at, "fire already enqueued by another worker");
        }
    }
    ctx.history
        .advance_schedule(&fire.schedule, fire.at)
        .await?;
    Ok(())
}

/// Fires closer than this when they are computed go beside the stream.
const SLACK: TimeDelta = TimeDelta::milliseconds(50);

/// Our cron semantics as an apalis-cron schedule: the fire times of a
/// [`CronSchedule`] after a cursor, never one already past (see the module
/// doc); those are reported as [`Step::Late`].
pub struct FireTimes {
    cron: CronSchedule,
    after: DateTime<Utc>,
    book: Box<dyn Fn(Step) + Send + Sync>,
}

/// What [`FireTimes`] tells its source's books.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// The timer now waits for this fire; the one it waited for before (if
    /// any) is being delivered.
    Planned(DateTime<Utc>),
    /// This fire is already past, or too close to set a timer for:
    /// dispatch it beside the stream.
    Late(DateTime<Utc>),
}

impl FireTimes {
    /// Fire times of `cron` strictly after `after`; each step is reported
    /// to `book`.
    pub fn new(
        cron: CronSchedule,
        after: DateTime<Utc>,
        book: impl Fn(Step) + Send + Sync + 'static,
    ) -> Self {
        Self {
            cron,
            after,
            book: Box::new(book),
        }
    }

    /// The next tick at or after `now` (whole seconds, as cron fires), and
    /// the past fires it stepped over.
    fn next(&mut self, tz: &Tz, now: DateTime<Utc>) -> Option<Tick<Tz>> {
        loop {
            let next = self.cron.next_after(tz, self.after)?;
            self.after = next;
            if next >= now {
                (self.book)(Step::Planned(next));
                return u64::try_from(next.timestamp()).ok().map(Tick::new);
            }
            (self.book)(Step::Late(next));
        }
    }
}

impl apalis_cron::Schedule<Tz> for FireTimes {
    fn next_tick(&mut self, tz: &Tz) -> Option<Tick<Tz>> {
        // Some slack: the timer is set against the clock a moment later,
        // and a tick a few microseconds past by then would end the stream.
        // A fire this close is dispatched beside it, at its time.
        self.next(tz, Utc::now() + SLACK)
    }
}

/// A running source.
pub struct Source {
    /// What it fires.
    pub fires: Fires,
    book: Arc<Mutex<Book>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), apalis::prelude::WorkerError>>,
}

impl Source {
    /// Starts a source firing after `after`: an apalis worker named
    /// `worker` on a `CronScheduler` over [`FireTimes`], in the fire's
    /// timezone. Fires already past are dispatched at once.
    pub fn start<D: Dispatch + Clone + 'static>(
        fires: Fires,
        after: DateTime<Utc>,
        worker: String,
        ctx: Context,
        dispatch: D,
    ) -> Self {
        let (stop, stop_rx) = watch::channel(false);
        let book = Arc::new(Mutex::new(Book::default()));
        let shared = Arc::new(Shared {
            fires: fires.clone(),
            ctx,
            dispatch,
            book: book.clone(),
            stop: stop_rx.clone(),
        });
        let (cron, tz) = fires.cron();
        let noted = Arc::downgrade(&shared);
        let times = FireTimes::new(cron.clone(), after, move |step| {
            let Some(shared) = noted.upgrade() else {
                return;
            };
            let mut book = shared.book();
            match step {
                Step::Planned(at) => {
                    if let Some(delivered) = book.planned.replace(at) {
                        book.in_flight.insert(delivered);
                    }
                }
                Step::Late(at) => {
                    book.in_flight.insert(at);
                    drop(book);
                    tracing::info!(source = %shared.fires.name(), fire = %at, "dispatching a fire that is already due");
                    tokio::spawn(async move { shared.fire(at).await });
                }
            }
        });
        let backend = CronScheduler::new(times).with_timezone(tz);
        let mut until = stop_rx;
        let task = tokio::spawn(
            WorkerBuilder::new(worker)
                .backend(backend)
                .catch_panic()
                .data(shared)
                .build(on_tick::<D>)
                .run_until(async move {
                    let _ = until.wait_for(|s| *s).await;
                    Ok::<_, std::io::Error>(())
                }),
        );
        Self {
            fires,
            book,
            stop,
            task,
        }
    }

    /// Every fire before this time was dispatched (at most `now`).
    pub fn checked_until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.book().checked_until(now)
    }

    /// The fire its timer waits for.
    pub fn planned(&self) -> Option<DateTime<Utc>> {
        self.book().planned
    }

    /// The oldest fire handed over (or waited for) and not yet dispatched.
    pub fn first_open(&self) -> Option<DateTime<Utc>> {
        self.book().first_open()
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether its worker ended (an error, or no fire time left).
    pub fn ended(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops it: the timer is dropped; a dispatch being retried gives up.
    pub async fn stop(self) -> Option<apalis::prelude::WorkerError> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => {
                tracing::error!(source = %self.fires.name(), error = %e, "cron source panicked");
                None
            }
        }
    }
}

/// The cron worker's handler: dispatches the tick's fire.
async fn on_tick<D: Dispatch + 'static>(
    tick: Tick<Tz>,
    shared: Data<Arc<Shared<D>>>,
) -> Result<(), BoxDynError> {
    let at = i64::try_from(tick.get_timestamp())
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .ok_or("a cron tick out of range")?;
    shared.fire(at).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use apalis_cron::Schedule as _;
    use chrono::Timelike;

    use super::*;
    use crate::{jobs::payload::BackupJob, queue::QueueError};

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("an RFC 3339 time")
    }

    fn steps(cron: &str, after: &str) -> (FireTimes, Arc<Mutex<Vec<Step>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let times = FireTimes::new(cron.parse().expect("cron"), at(after), move |step| {
            log.lock().expect("log").push(step);
        });
        (times, seen)
    }

    #[test]
    fn fire_times_hand_apalis_no_past_tick_and_report_the_ones_stepped_over() {
        let (mut times, seen) = steps("*/10 * * * * *", "2026-12-06T12:00:00Z");
        let tick = times
            .next(&chrono_tz::UTC, at("2026-12-06T12:00:25Z"))
            .expect("a tick");
        assert_eq!(
            tick.get_timestamp(),
            at("2026-12-06T12:00:30Z").timestamp().unsigned_abs()
        );
        assert_eq!(
            *seen.lock().expect("log"),
            [
                Step::Late(at("2026-12-06T12:00:10Z")),
                Step::Late(at("2026-12-06T12:00:20Z")),
                Step::Planned(at("2026-12-06T12:00:30Z")),
            ]
        );
    }

    #[test]
    fn apalis_cron_gets_standard_cron_semantics_in_the_schedules_timezone() {
        let rome: Tz = "Europe/Rome".parse().expect("tz");
        // Weekdays 1-5 are Monday to Friday (apalis-cron's own `cron` crate
        // reads them as Sunday to Thursday). 2031-03-29 is a Saturday.
        let (mut times, _) = steps("0 2 * * 1-5", "2031-03-29T00:00:00Z");
        let tick = times.next_tick(&rome).expect("a tick");
        // Monday 31 March, 02:00 in Rome (CEST, UTC+2).
        assert_eq!(
            tick.get_timestamp(),
            at("2031-03-31T00:00:00Z").timestamp().unsigned_abs()
        );
        // The spring-forward skips 02:30 on 30 March 2031: it fires once,
        // at 03:00, then at 02:30 the next day.
        let (mut times, _) = steps("30 2 * * *", "2031-03-29T12:00:00Z");
        let ticks: Vec<u64> = (0..2)
            .map(|_| times.next_tick(&rome).expect("a tick").get_timestamp())
            .collect();
        assert_eq!(
            ticks,
            [
                at("2031-03-30T01:00:00Z").timestamp().unsigned_abs(),
                at("2031-03-31T00:30:00Z").timestamp().unsigned_abs(),
            ]
        );
    }

    /// A fire time, and when it was dispatched.
    type Got = (DateTime<Utc>, DateTime<Utc>);

    /// Records each chore dispatched, and when; fails the first `fail`
    /// tries of the first fire it is given (the queue away for that fire).
    #[derive(Clone, Default)]
    struct Recorder {
        got: Arc<Mutex<Vec<Got>>>,
        fail: Arc<AtomicUsize>,
        first: Arc<Mutex<Option<DateTime<Utc>>>>,
    }

    impl Recorder {
        fn got(&self) -> Vec<Got> {
            self.got.lock().expect("got").clone()
        }

        /// Waits for `n` fires, the first fire given among them.
        async fn wait_for(&self, n: usize) -> Vec<Got> {
            tokio::time::timeout(Duration::from_secs(20), async {
                loop {
                    let got = self.got();
                    let first = *self.first.lock().expect("first");
                    let first_in = first.is_none_or(|f| got.iter().any(|(at, _)| *at == f));
                    if got.len() >= n && first_in {
                        return got;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{n} fires within 20 s; got {:?}", self.got()))
        }
    }

    impl Dispatch for Recorder {
        async fn backup(&self, _: &str, _: BackupJob) -> Result<bool, Error> {
            unreachable!("the tests fire chores")
        }

        async fn maintenance(&self, job: MaintenanceJob) -> Result<bool, Error> {
            let first = *self
                .first
                .lock()
                .expect("first")
                .get_or_insert(job.scheduled_for);
            if first == job.scheduled_for
                && self
                    .fail
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
            {
                return Err(Error::Queue(QueueError::Redis {
                    what: "a test",
                    reason: "the queue is away".into(),
                }));
            }
            self.got
                .lock()
                .expect("got")
                .push((job.scheduled_for, Utc::now()));
            Ok(true)
        }
    }

    async fn context(dir: &std::path::Path) -> Context {
        let settings = crate::config::from_toml("[history]\nurl = \"sqlite://history.db\"\n", dir)
            .expect("config");
        Context::open(settings).await.expect("context")
    }

    fn every_second() -> Fires {
        Fires::Chore(
            Chore::Maintenance,
            "* * * * * *".parse().expect("cron"),
            chrono_tz::UTC,
        )
    }

    /// Each fire once, one second apart, none before its time; returned
    /// oldest first (a fire retried is dispatched after the next one).
    fn assert_each_second_once(mut got: Vec<Got>) -> Vec<Got> {
        got.sort();
        for pair in got.windows(2) {
            assert_eq!((pair[1].0 - pair[0].0).num_seconds(), 1, "{got:?}");
        }
        for (fire, dispatched) in &got {
            assert_eq!(fire.timestamp_subsec_nanos(), 0, "{got:?}");
            assert!(dispatched >= fire, "dispatched before its time: {got:?}");
        }
        got
    }

    #[tokio::test]
    async fn a_source_dispatches_every_fire_once_and_retries_while_the_queue_is_away() {
        let dir = tempfile::tempdir().expect("tempdir");
        let recorder = Recorder::default();
        recorder.fail.store(2, Ordering::SeqCst);
        let source = Source::start(
            every_second(),
            Utc::now(),
            "test:cron".into(),
            context(dir.path()).await,
            recorder.clone(),
        );
        let got = assert_each_second_once(recorder.wait_for(3).await);
        // The first fire was dispatched only after two failed tries (a
        // pause of 0.5 s, then 1 s), and no fire of the next seconds was
        // lost or reordered meanwhile.
        assert!(
            got[0].1 - got[0].0 >= TimeDelta::milliseconds(1500),
            "{got:?}"
        );
        let checked = source.checked_until(Utc::now());
        assert!(
            checked >= got[2].0,
            "checked until {checked}, fired {got:?}"
        );
        assert!(source.stop().await.is_none());
    }

    #[tokio::test]
    async fn a_source_started_after_fire_times_dispatches_them_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let recorder = Recorder::default();
        // As after a restart: the fires of the last 2.5 s are still open.
        let after = Utc::now() - TimeDelta::milliseconds(2500);
        let source = Source::start(
            every_second(),
            after,
            "test:cron".into(),
            context(dir.path()).await,
            recorder.clone(),
        );
        let got = assert_each_second_once(recorder.wait_for(4).await);
        let first = after.with_nanosecond(0).expect("whole second") + TimeDelta::seconds(1);
        assert_eq!(got[0].0, first, "{got:?}");
        assert!(source.stop().await.is_none());
    }

    #[tokio::test]
    async fn a_source_stops_at_once_whatever_its_next_fire() {
        let dir = tempfile::tempdir().expect("tempdir");
        let yearly = Fires::Chore(
            Chore::Verify,
            "@yearly".parse().expect("cron"),
            chrono_tz::UTC,
        );
        let source = Source::start(
            yearly,
            Utc::now(),
            "test:cron".into(),
            context(dir.path()).await,
            Recorder::default(),
        );
        // Let its timer be set for next year.
        while source.planned().is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stopped = tokio::time::timeout(Duration::from_secs(5), source.stop()).await;
        assert!(matches!(stopped, Ok(None)), "{stopped:?}");
    }
}

//! The retry policy of the backup queues, as a tower layer on the apalis
//! worker: the handler runs one attempt; this layer settles it. A retry is
//! a new delivery of the same job, pushed to start after the backoff, so
//! the worker takes other jobs meanwhile; a settled job ends the delivery
//! as done, or, failed for good, as aborted (apalis-redis would otherwise
//! retry it on its own, up to 25 times).

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use apalis::prelude::{AbortError, BoxDynError, Layer, Service, Status, Task};
use futures_util::{FutureExt, future::BoxFuture};

use super::{
    backup::{Attempted, JobFailed, Runner, Settled, settle},
    payload::BackupJob,
};
use crate::queue::{self, Queue};

/// Settles each attempt of a backup queue's handler.
#[derive(Clone)]
pub struct RetryLayer {
    runner: Arc<Runner>,
    queue: Queue,
}

impl RetryLayer {
    /// Settles with `runner`'s policy; retries go to `queue`.
    pub fn new(runner: Arc<Runner>, queue: Queue) -> Self {
        Self { runner, queue }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = RetryService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RetryService {
            inner,
            runner: self.runner.clone(),
            queue: self.queue.clone(),
        }
    }
}

/// The service [`RetryLayer`] makes.
#[derive(Clone)]
pub struct RetryService<S> {
    inner: S,
    runner: Arc<Runner>,
    queue: Queue,
}

impl<S> Service<Task<BackupJob>> for RetryService<S>
where
    S: Service<Task<BackupJob>, Response = Attempted>,
    S::Error: Into<BoxDynError>,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = BoxDynError;
    type Future = BoxFuture<'static, Result<(), BoxDynError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<BackupJob>) -> Self::Future {
        let job = task.args.clone();
        let id = job.id(task.ctx().task_id().map(ToString::to_string).as_deref());
        // What the backend files this delivery as; the lifecycle inside
        // judged only the attempt.
        let status = task.ctx().raw_status().clone();
        let attempt = self.inner.call(task);
        let (runner, queue) = (self.runner.clone(), self.queue.clone());
        async move {
            let result: Result<Attempted, BoxDynError> = attempt.await.map_err(Into::into);
            let attempted = match result {
                Ok(attempted) => attempted,
                // The attempt itself broke (a panic caught inside): a failed
                // attempt like any other; its row, if any, is finished as
                // lost by the next delivery.
                Err(e) => {
                    let attempts = match &id {
                        Some(id) => runner
                            .ctx
                            .history
                            .task_runs(id)
                            .await
                            .map_or(1, |r| r.len()),
                        None => 1,
                    };
                    Attempted::Failed {
                        failed: Box::new(JobFailed {
                            message: format!("the attempt stopped: {e}"),
                            run: None,
                        }),
                        permanent: false,
                        attempts: attempts.max(1) as u32,
                    }
                }
            };
            match settle(&runner, &job, id.as_deref(), attempted).await {
                Settled::Done(_) => {
                    status.store(Status::Done);
                    Ok(())
                }
                // Dead for the backend: it never runs the job again.
                Settled::Failed(failed) => {
                    status.store(Status::Killed);
                    Err(AbortError::new(failed).into())
                }
                Settled::RetryAfter(wait, _) => {
                    let retry = BackupJob {
                        job_id: id.clone(),
                        ..job
                    };
                    let kind = queue::backup_queue(retry.backup_type);
                    match queue.push_after(kind, &retry, None, wait).await {
                        // This delivery is over; the retry is the next one.
                        Ok(_) => {
                            status.store(Status::Done);
                            Ok(())
                        }
                        // Unscheduled, the retry is the backend's own: this
                        // delivery comes back after a few seconds and
                        // numbers on.
                        Err(e) => {
                            tracing::error!(error = %e, "cannot schedule the retry");
                            status.store(Status::Failed);
                            Err(e.into())
                        }
                    }
                }
            }
        }
        .boxed()
    }
}

//! The daemon's scheduler: fires each job when its cron schedule says, with jitter; catches
//! up once on a fire missed while the daemon was down; never runs two jobs of one policy at
//! once; bounds how many jobs run at once, globally and per repository; stops a job that
//! outlives its timeout; and on shutdown cancels running jobs and waits for them within a
//! deadline.
//!
//! Time comes from tokio's clock through [`Clock`], so the whole loop runs under paused
//! time in tests. What a job does is behind [`Runner`].

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::schedule::{jitter, missed, CronSchedule};

/// Wall-clock time derived from tokio's monotonic clock: `start` plus the time elapsed since
/// the clock was made. Under paused time it advances only when the runtime's time does.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall: jiff::Timestamp,
    instant: tokio::time::Instant,
}

impl Clock {
    pub fn starting_at(wall: jiff::Timestamp) -> Self {
        Self {
            wall,
            instant: tokio::time::Instant::now(),
        }
    }

    pub fn system() -> Self {
        Self::starting_at(jiff::Timestamp::now())
    }

    pub fn now(&self) -> jiff::Timestamp {
        let elapsed = jiff::SignedDuration::try_from(self.instant.elapsed()).unwrap_or_default();
        self.wall + elapsed
    }

    /// The tokio instant at which the wall clock reads `t` (now, if `t` is past).
    fn instant_at(&self, t: jiff::Timestamp) -> tokio::time::Instant {
        // At most a year ahead: the loop re-checks the time when it wakes.
        const YEAR: Duration = Duration::from_secs(366 * 24 * 3600);
        let offset = t.duration_since(self.now());
        match Duration::try_from(offset) {
            Ok(d) => tokio::time::Instant::now() + d.min(YEAR),
            Err(_) => tokio::time::Instant::now(),
        }
    }
}

/// One scheduled job: a policy's backup, drill, prune or check.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledJob {
    pub policy: String,
    /// `backup`, `drill`, `prune` or `check`.
    pub kind: String,
    pub repository: String,
    pub schedule: CronSchedule,
    /// When this job last started (from the catalog), for the catch-up decision.
    pub last_run: Option<jiff::Timestamp>,
}

impl ScheduledJob {
    pub fn name(&self) -> String {
        format!("{}:{}", self.kind, self.policy)
    }
}

#[derive(Debug, Clone)]
pub struct Limits {
    /// Jobs running at once, in all.
    pub global: usize,
    /// Jobs running at once against one repository.
    pub per_repository: usize,
    /// A job still running after this long is cancelled.
    pub timeout: Duration,
    /// Each fire is delayed by up to this much (spreading jobs scheduled at one time).
    pub jitter: Duration,
    /// On shutdown, how long running jobs get to stop cleanly.
    pub shutdown_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            global: 2,
            per_repository: 1,
            timeout: Duration::from_secs(6 * 3600),
            jitter: Duration::from_secs(30),
            shutdown_deadline: Duration::from_secs(30),
        }
    }
}

/// How a job ended, as the runner reports it.
pub type JobResult = Result<(), String>;

/// What runs a job. `cancel` is triggered on timeout and shutdown: the job must stop, leaving
/// nothing half-done visible.
pub trait Runner: Send + Sync + 'static {
    fn run(
        &self,
        job: ScheduledJob,
        fire: jiff::Timestamp,
        cancel: CancellationToken,
    ) -> impl std::future::Future<Output = JobResult> + Send;
}

/// Everything the scheduler did, for logs, tests and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Started {
        job: String,
        fire: jiff::Timestamp,
        catch_up: bool,
    },
    Finished {
        job: String,
        ok: bool,
        detail: Option<String>,
    },
    TimedOut {
        job: String,
    },
    /// A fire came while the same policy was still running: not started.
    Skipped {
        job: String,
        fire: jiff::Timestamp,
    },
}

pub type Events = Arc<Mutex<Vec<Event>>>;

struct Shared<R> {
    runner: R,
    limits: Limits,
    global: Semaphore,
    per_repository: Mutex<BTreeMap<String, Arc<Semaphore>>>,
    running_policies: Mutex<HashSet<String>>,
    events: Events,
}

impl<R> Shared<R> {
    fn record(&self, event: Event) {
        match &event {
            Event::Started { job, catch_up, .. } => tracing::info!(job, catch_up, "job started"),
            Event::Finished { job, ok: true, .. } => tracing::info!(job, "job finished"),
            Event::Finished { job, detail, .. } => {
                tracing::error!(job, error = ?detail, "job failed")
            }
            Event::TimedOut { job } => tracing::error!(job, "job timed out and was cancelled"),
            Event::Skipped { job, .. } => {
                tracing::warn!(job, "previous run still going; this fire is skipped")
            }
        }
        self.events.lock().expect("events lock").push(event);
    }

    fn repository_gate(&self, repository: &str) -> Arc<Semaphore> {
        self.per_repository
            .lock()
            .expect("repository gates lock")
            .entry(repository.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.limits.per_repository.max(1))))
            .clone()
    }
}

/// Runs `jobs` until `shutdown` is triggered; then cancels running jobs and waits for them
/// up to the shutdown deadline. Returns what happened.
pub async fn run<R: Runner>(
    jobs: Vec<ScheduledJob>,
    runner: R,
    limits: Limits,
    clock: Clock,
    shutdown: CancellationToken,
) -> Vec<Event> {
    let (_keep, reload) = tokio::sync::watch::channel(jobs);
    run_with_reload(reload, runner, limits, clock, shutdown).await
}

/// As [`run`], taking the jobs from `reload`: a new set replaces the old one for every
/// fire from then on (running jobs go on; the first set alone gets catch-ups).
pub async fn run_with_reload<R: Runner>(
    mut reload: tokio::sync::watch::Receiver<Vec<ScheduledJob>>,
    runner: R,
    limits: Limits,
    clock: Clock,
    shutdown: CancellationToken,
) -> Vec<Event> {
    let mut jobs = reload.borrow_and_update().clone();
    let events: Events = Arc::default();
    let shared = Arc::new(Shared {
        runner,
        global: Semaphore::new(limits.global.max(1)),
        limits,
        per_repository: Mutex::default(),
        running_policies: Mutex::default(),
        events: events.clone(),
    });
    let jobs_cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();

    // The next fire of each job; a missed fire first, once.
    let start = clock.now();
    let mut next: Vec<(jiff::Timestamp, bool)> = jobs
        .iter()
        .map(|job| match missed(&job.schedule, job.last_run, start) {
            Some(fire) => (fire, true),
            None => (
                job.schedule
                    .next_after(start)
                    .unwrap_or(jiff::Timestamp::MAX),
                false,
            ),
        })
        .collect();

    let mut reloads_open = true;
    loop {
        // The earliest next fire; with no jobs, nothing fires until a reload or shutdown.
        let earliest = next
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|(i, (fire, _))| (*fire, *i));
        let (index, fire, catch_up) = match earliest {
            Some((i, (fire, catch_up))) => (i, fire, catch_up),
            None => (usize::MAX, jiff::Timestamp::MAX, false),
        };
        let job = jobs.get(index).cloned();
        let name = job.as_ref().map(ScheduledJob::name).unwrap_or_default();
        // A catch-up runs at once; a scheduled fire waits for its time plus jitter.
        let due = if catch_up {
            start
        } else {
            // Saturating: with no jobs, `fire` is the end of time.
            fire.checked_add(
                jiff::SignedDuration::try_from(jitter(&name, fire, shared.limits.jitter))
                    .unwrap_or_default(),
            )
            .unwrap_or(jiff::Timestamp::MAX)
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(clock.instant_at(due)) => {}
            changed = reload.changed(), if reloads_open => {
                match changed {
                    Ok(()) => {
                        jobs = reload.borrow_and_update().clone();
                        let now = clock.now();
                        next = jobs
                            .iter()
                            .map(|job| (job.schedule.next_after(now).unwrap_or(jiff::Timestamp::MAX), false))
                            .collect();
                    }
                    Err(_) => reloads_open = false,
                }
                continue;
            }
        }
        let Some(job) = job else { continue };
        if clock.now() < due {
            continue; // woke early from a capped sleep
        }
        next[index] = (
            job.schedule
                .next_after(fire.max(clock.now()))
                .unwrap_or(jiff::Timestamp::MAX),
            false,
        );
        while tasks.try_join_next().is_some() {}
        dispatch(
            &shared,
            &mut tasks,
            job.clone(),
            fire,
            catch_up,
            jobs_cancel.child_token(),
        );
    }

    jobs_cancel.cancel();
    let deadline = tokio::time::sleep(shared.limits.shutdown_deadline);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            done = tasks.join_next() => if done.is_none() { break },
            _ = &mut deadline => {
                tracing::error!(still_running = tasks.len(), "jobs did not stop within the shutdown deadline");
                tasks.abort_all();
                break;
            }
        }
    }
    let events = events.lock().expect("events lock").clone();
    events
}

fn dispatch<R: Runner>(
    shared: &Arc<Shared<R>>,
    tasks: &mut JoinSet<()>,
    job: ScheduledJob,
    fire: jiff::Timestamp,
    catch_up: bool,
    cancel: CancellationToken,
) {
    let name = job.name();
    if !shared
        .running_policies
        .lock()
        .expect("running lock")
        .insert(job.policy.clone())
    {
        shared.record(Event::Skipped { job: name, fire });
        return;
    }
    let shared = shared.clone();
    tasks.spawn(async move {
        let gate = shared.repository_gate(&job.repository);
        let permits = async {
            let global = shared.global.acquire().await;
            let repository = gate.acquire().await;
            (global, repository)
        };
        let permits = tokio::select! {
            p = permits => Some(p),
            _ = cancel.cancelled() => None,
        };
        if permits.is_some() {
            shared.record(Event::Started {
                job: name.clone(),
                fire,
                catch_up,
            });
            let running = shared.runner.run(job.clone(), fire, cancel.clone());
            tokio::pin!(running);
            match tokio::time::timeout(shared.limits.timeout, &mut running).await {
                Ok(Ok(())) => shared.record(Event::Finished {
                    job: name.clone(),
                    ok: true,
                    detail: None,
                }),
                Ok(Err(e)) => shared.record(Event::Finished {
                    job: name.clone(),
                    ok: false,
                    detail: Some(e),
                }),
                Err(_) => {
                    // Cancel, then let the job wind down (record itself as cancelled, stop
                    // its tools) for up to the shutdown deadline before dropping it.
                    cancel.cancel();
                    let _ =
                        tokio::time::timeout(shared.limits.shutdown_deadline, &mut running).await;
                    shared.record(Event::TimedOut { job: name.clone() });
                }
            }
        }
        drop(permits);
        shared
            .running_policies
            .lock()
            .expect("running lock")
            .remove(&job.policy);
    });
}

//! The daemon's scheduler. A [`Timer`] fires each job's cron schedule into a queue; the
//! scheduler decides what to do with each fire: it catches up once on a fire missed while
//! the daemon was down, delays each start by a jitter capped at a tenth of the schedule's
//! interval, never runs two jobs of one policy at once (the later waits; a job fired again
//! before its last fire finished is skipped), bounds how many jobs run at once
//! (globally and per repository), stops a job that outlives its timeout, and on shutdown
//! cancels running jobs and waits for them within a deadline.
//!
//! Two timers: [`CronTimer`], tokio-cron-scheduler's, in the daemon; and [`ClockTimer`],
//! which reads tokio's clock through [`Clock`], so that every decision above runs under
//! paused time in tests. Either way the fire time handed on is the schedule's own (the
//! same on every daemon sharing a catalog, which dedupes fires by it). What a job does is
//! behind [`Runner`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
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

/// What a scheduled job does: a closed set, matched in one place (the daemon's runner).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    Backup,
    Drill,
    Prune,
    Check,
    Copy,
}

impl JobKind {
    pub const ALL: [JobKind; 5] = [
        JobKind::Backup,
        JobKind::Drill,
        JobKind::Prune,
        JobKind::Check,
        JobKind::Copy,
    ];

    /// The name used in lease names, run records, notifications and logs.
    pub fn as_str(self) -> &'static str {
        self.run_kind().as_str()
    }

    /// The kind of run record a job of this kind writes.
    pub fn run_kind(self) -> backstop_catalog::RunKind {
        use backstop_catalog::RunKind;
        match self {
            JobKind::Backup => RunKind::Backup,
            JobKind::Drill => RunKind::Drill,
            JobKind::Prune => RunKind::Prune,
            JobKind::Check => RunKind::Check,
            JobKind::Copy => RunKind::Copy,
        }
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What fires a job: its cron schedule, or (a files or config policy's backup) a change
/// under its paths.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    Cron(Box<CronSchedule>),
    OnChange(crate::watch::OnChange),
}

impl Trigger {
    pub fn cron(&self) -> Option<&CronSchedule> {
        match self {
            Trigger::Cron(schedule) => Some(schedule),
            Trigger::OnChange(_) => None,
        }
    }
}

/// One scheduled job: a policy's backup, drill, prune or check.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledJob {
    pub policy: String,
    pub kind: JobKind,
    pub repository: String,
    pub trigger: Trigger,
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
    /// A fire came while the same job was still waiting to start or running: not started.
    Skipped {
        job: String,
        fire: jiff::Timestamp,
    },
}

pub type Events = Arc<Mutex<Vec<Event>>>;

/// The concurrency permits every job takes before it starts, shared by the scheduled jobs
/// and restore requests: one of [`Limits::global`], then one of its repository's
/// [`Limits::per_repository`] (always in that order, so two jobs never wait on each other).
#[derive(Debug)]
pub struct Gates {
    global: Arc<Semaphore>,
    per_repository: KeyedSemaphores,
}

/// One semaphore of `permits` per key, made on the key's first use.
#[derive(Debug)]
struct KeyedSemaphores {
    by_key: Mutex<BTreeMap<String, Arc<Semaphore>>>,
    permits: usize,
}

impl KeyedSemaphores {
    fn new(permits: usize) -> Self {
        Self {
            by_key: Mutex::default(),
            permits,
        }
    }

    fn get(&self, key: &str) -> Arc<Semaphore> {
        self.by_key
            .lock()
            .expect("keyed semaphores lock")
            .entry(key.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.permits)))
            .clone()
    }
}

/// A job's place under the [`Gates`], held while it runs.
#[derive(Debug)]
pub struct Permits {
    _global: OwnedSemaphorePermit,
    _repository: OwnedSemaphorePermit,
}

impl Gates {
    pub fn new(limits: &Limits) -> Self {
        Self {
            global: Arc::new(Semaphore::new(limits.global.max(1))),
            per_repository: KeyedSemaphores::new(limits.per_repository.max(1)),
        }
    }

    /// Waits for a place for a job on `repository`.
    pub async fn enter(&self, repository: &str) -> Permits {
        let gate = self.per_repository.get(repository);
        let global = self.global.clone().acquire_owned().await;
        let repository = gate.acquire_owned().await;
        Permits {
            _global: global.expect("the gates are never closed"),
            _repository: repository.expect("the gates are never closed"),
        }
    }
}

struct Shared<R> {
    runner: R,
    limits: Limits,
    gates: Arc<Gates>,
    /// Jobs fired and not yet finished (waiting for their turn or running), by name: a
    /// second fire of one of them is skipped.
    pending_jobs: Mutex<HashSet<String>>,
    /// One permit per policy: its jobs run one after another (a drill that fires while its
    /// policy's backup runs waits for the backup).
    policy_turns: KeyedSemaphores,
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
                tracing::warn!(
                    job,
                    "this job's previous fire is still waiting or running; this fire is skipped"
                )
            }
        }
        self.events.lock().expect("events lock").push(event);
    }
}

/// One fire of one job, as a timer hands it to the scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fire {
    /// The job's name ([`ScheduledJob::name`]).
    pub job: String,
    /// The schedule's fire time (not the moment the timer woke).
    pub fire: jiff::Timestamp,
}

/// What wakes the scheduler: fires every job of the set it was last given into `queue`.
pub trait Timer: Send + 'static {
    /// Fires `jobs` from now on, replacing the set given before.
    fn schedule(
        &mut self,
        jobs: &[ScheduledJob],
        queue: mpsc::UnboundedSender<Fire>,
    ) -> impl std::future::Future<Output = ()> + Send;

    /// Stops firing.
    fn stop(&mut self) -> impl std::future::Future<Output = ()> + Send;
}

/// A timer on tokio's clock (through [`Clock`]): under paused time, schedules fire exactly
/// as time is advanced.
pub struct ClockTimer {
    clock: Clock,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ClockTimer {
    pub fn new(clock: Clock) -> Self {
        Self { clock, task: None }
    }
}

impl Timer for ClockTimer {
    async fn schedule(&mut self, jobs: &[ScheduledJob], queue: mpsc::UnboundedSender<Fire>) {
        self.stop().await;
        let clock = self.clock;
        let jobs: Vec<(String, CronSchedule)> = jobs
            .iter()
            .filter_map(|j| j.trigger.cron().map(|s| (j.name(), s.clone())))
            .collect();
        self.task = Some(tokio::spawn(async move {
            let now = clock.now();
            let mut next: Vec<jiff::Timestamp> = jobs
                .iter()
                .map(|(_, s)| s.next_after(now).unwrap_or(jiff::Timestamp::MAX))
                .collect();
            loop {
                let Some((i, fire)) = next
                    .iter()
                    .copied()
                    .enumerate()
                    .min_by_key(|(i, f)| (*f, *i))
                else {
                    return std::future::pending().await;
                };
                tokio::time::sleep_until(clock.instant_at(fire)).await;
                if clock.now() < fire {
                    continue; // woke early from a capped sleep
                }
                let job = jobs[i].0.clone();
                next[i] = jobs[i]
                    .1
                    .next_after(fire.max(clock.now()))
                    .unwrap_or(jiff::Timestamp::MAX);
                if queue.send(Fire { job, fire }).is_err() {
                    return;
                }
            }
        }));
    }

    async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The daemon's timer: tokio-cron-scheduler, one cron job per scheduled job, in the
/// schedule's zone. When one ticks, the fire time handed on is the schedule's last fire at
/// or before that moment (so that every daemon names a fire alike, whatever its timer's
/// latency).
pub struct CronTimer {
    scheduler: Option<tokio_cron_scheduler::JobScheduler>,
}

impl CronTimer {
    pub fn new() -> Self {
        Self { scheduler: None }
    }
}

impl Default for CronTimer {
    fn default() -> Self {
        Self::new()
    }
}

impl Timer for CronTimer {
    async fn schedule(&mut self, jobs: &[ScheduledJob], queue: mpsc::UnboundedSender<Fire>) {
        self.stop().await;
        let scheduler = match tokio_cron_scheduler::JobScheduler::new().await {
            Ok(scheduler) => scheduler,
            Err(e) => {
                tracing::error!(error = %e, "starting the cron timer; nothing will be scheduled");
                return;
            }
        };
        for job in jobs {
            let Some(schedule) = job.trigger.cron().cloned() else {
                continue;
            };
            let name = job.name();
            let queue = queue.clone();
            let expr = schedule.expr().to_string();
            let zone: chrono_tz::Tz = schedule
                .zone_name()
                .and_then(|z| z.parse().ok())
                .unwrap_or(chrono_tz::UTC);
            let tick = move |_id, _scheduler| {
                let fire = schedule.last_at_or_before(jiff::Timestamp::now());
                if let Some(fire) = fire {
                    let _ = queue.send(Fire {
                        job: name.clone(),
                        fire,
                    });
                }
                Box::pin(async {})
                    as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
            };
            let added = match tokio_cron_scheduler::Job::new_async_tz(expr.as_str(), zone, tick) {
                Ok(cron_job) => scheduler.add(cron_job).await.map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = added {
                tracing::error!(job = job.name(), error = %e, "scheduling a job on the cron timer");
            }
        }
        if let Err(e) = scheduler.start().await {
            tracing::error!(error = %e, "starting the cron timer");
        }
        self.scheduler = Some(scheduler);
    }

    async fn stop(&mut self) {
        if let Some(mut scheduler) = self.scheduler.take() {
            if let Err(e) = scheduler.shutdown().await {
                tracing::warn!(error = %e, "stopping the cron timer");
            }
        }
    }
}

/// Two timers as one: each fires the jobs it knows how to (the daemon's cron timer and its
/// change watcher).
pub struct Both<A, B>(pub A, pub B);

impl<A: Timer, B: Timer> Timer for Both<A, B> {
    async fn schedule(&mut self, jobs: &[ScheduledJob], queue: mpsc::UnboundedSender<Fire>) {
        self.0.schedule(jobs, queue.clone()).await;
        self.1.schedule(jobs, queue).await;
    }

    async fn stop(&mut self) {
        self.0.stop().await;
        self.1.stop().await;
    }
}

/// Runs `jobs` on a [`ClockTimer`] until `shutdown` is triggered; then cancels running
/// jobs and waits for them up to the shutdown deadline. Returns what happened.
pub async fn run<R: Runner>(
    jobs: Vec<ScheduledJob>,
    runner: R,
    limits: Limits,
    clock: Clock,
    shutdown: CancellationToken,
) -> Vec<Event> {
    let (_keep, reload) = tokio::sync::watch::channel(jobs);
    let gates = Arc::new(Gates::new(&limits));
    run_with_reload(
        reload,
        ClockTimer::new(clock),
        runner,
        limits,
        gates,
        clock,
        shutdown,
    )
    .await
}

/// As [`run`], on `timer`, taking the jobs from `reload`: a new set replaces the old one
/// for every fire from then on (running jobs go on; the first set alone gets catch-ups).
/// Jobs take their permits from `gates`, which others (restore requests) may share.
pub async fn run_with_reload<R: Runner, T: Timer>(
    mut reload: tokio::sync::watch::Receiver<Vec<ScheduledJob>>,
    mut timer: T,
    runner: R,
    limits: Limits,
    gates: Arc<Gates>,
    clock: Clock,
    shutdown: CancellationToken,
) -> Vec<Event> {
    let mut jobs = reload.borrow_and_update().clone();
    let events: Events = Arc::default();
    let shared = Arc::new(Shared {
        runner,
        gates,
        limits,
        pending_jobs: Mutex::default(),
        policy_turns: KeyedSemaphores::new(1),
        events: events.clone(),
    });
    let jobs_cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    // The newest fire dispatched per job: a fire is never run twice, nor an older one after
    // a newer.
    let mut dispatched: HashMap<String, jiff::Timestamp> = HashMap::new();

    // A fire missed while the daemon was down runs now, once.
    let start = clock.now();
    for job in &jobs {
        let Some(schedule) = job.trigger.cron() else {
            continue; // a change while the daemon was down is caught by the next change
        };
        if let Some(fire) = missed(schedule, job.last_run, start) {
            dispatched.insert(job.name(), fire);
            dispatch(
                &shared,
                &mut tasks,
                job.clone(),
                fire,
                true,
                jobs_cancel.child_token(),
            );
        }
    }
    let (queue, mut fires) = mpsc::unbounded_channel();
    timer.schedule(&jobs, queue.clone()).await;

    let mut reloads_open = true;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            fire = fires.recv() => {
                let Some(Fire { job: name, fire }) = fire else { break };
                let Some(job) = jobs.iter().find(|j| j.name() == name).cloned() else {
                    continue; // a fire of a job that a reload removed
                };
                if dispatched.get(&name).is_some_and(|last| *last >= fire) {
                    continue;
                }
                dispatched.insert(name, fire);
                while tasks.try_join_next().is_some() {}
                dispatch(&shared, &mut tasks, job, fire, false, jobs_cancel.child_token());
            }
            changed = reload.changed(), if reloads_open => {
                match changed {
                    Ok(()) => {
                        jobs = reload.borrow_and_update().clone();
                        timer.schedule(&jobs, queue.clone()).await;
                    }
                    Err(_) => reloads_open = false,
                }
            }
        }
    }
    timer.stop().await;

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

/// The jitter a scheduled fire waits before it starts: up to the configured jitter, but
/// never more than a tenth of the time to the schedule's next fire (a schedule every few
/// seconds with the default 30 s jitter would otherwise run only now and then).
fn jitter_for(job: &ScheduledJob, fire: jiff::Timestamp, configured: Duration) -> Duration {
    // A per-change fire already waited for the paths to be quiet.
    let Some(schedule) = job.trigger.cron() else {
        return Duration::ZERO;
    };
    let interval = schedule
        .next_after(fire)
        .and_then(|next| Duration::try_from(next.duration_since(fire)).ok())
        .unwrap_or(configured);
    jitter(&job.name(), fire, configured.min(interval / 10))
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
        .pending_jobs
        .lock()
        .expect("pending jobs lock")
        .insert(name.clone())
    {
        shared.record(Event::Skipped { job: name, fire });
        return;
    }
    let policy_turn = shared.policy_turns.get(&job.policy);
    let shared = shared.clone();
    let delay = if catch_up {
        Duration::ZERO
    } else {
        jitter_for(&job, fire, shared.limits.jitter)
    };
    tasks.spawn(async move {
        // The policy's turn before the shared gates (always in that order): a job waiting
        // for its policy's other job holds no place another policy could use.
        let permits = async {
            tokio::time::sleep(delay).await;
            let turn = policy_turn
                .acquire_owned()
                .await
                .expect("policy turns are never closed");
            (turn, shared.gates.enter(&job.repository).await)
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
            .pending_jobs
            .lock()
            .expect("pending jobs lock")
            .remove(&name);
    });
}

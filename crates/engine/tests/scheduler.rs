//! The scheduler under paused time: schedules fire, a missed fire is caught up once, one
//! policy never runs twice at once, the concurrency bounds hold, timeouts cancel, and
//! shutdown cancels running jobs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backstop_engine::schedule::CronSchedule;
use backstop_engine::scheduler::{
    self, Clock, Event, JobKind, JobResult, Limits, Runner, ScheduledJob, Trigger,
};
use tokio_util::sync::CancellationToken;

const START: &str = "2026-11-25T00:00:00Z";

/// A job that takes `duration` of (paused) time and records how many ran at once.
#[derive(Clone, Default)]
struct FakeRunner {
    duration: Duration,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    per_policy_now: Arc<Mutex<HashMap<String, usize>>>,
    per_policy_peak: Arc<Mutex<HashMap<String, usize>>>,
    cancelled: Arc<AtomicUsize>,
}

impl FakeRunner {
    fn taking(secs: u64) -> Self {
        Self {
            duration: Duration::from_secs(secs),
            ..Self::default()
        }
    }
}

impl Runner for FakeRunner {
    async fn run(
        &self,
        job: ScheduledJob,
        _fire: jiff::Timestamp,
        cancel: CancellationToken,
    ) -> JobResult {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        {
            let mut per = self.per_policy_now.lock().unwrap();
            let n = per.entry(job.policy.clone()).or_default();
            *n += 1;
            let mut peak = self.per_policy_peak.lock().unwrap();
            let p = peak.entry(job.policy.clone()).or_default();
            *p = (*p).max(*n);
        }
        let result = tokio::select! {
            _ = tokio::time::sleep(self.duration) => Ok(()),
            _ = cancel.cancelled() => {
                self.cancelled.fetch_add(1, Ordering::SeqCst);
                Err("cancelled".to_string())
            }
        };
        *self
            .per_policy_now
            .lock()
            .unwrap()
            .get_mut(&job.policy)
            .unwrap() -= 1;
        self.running.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

fn job(policy: &str, repository: &str, cron: &str, last_run: Option<&str>) -> ScheduledJob {
    ScheduledJob {
        policy: policy.into(),
        kind: JobKind::Backup,
        repository: repository.into(),
        trigger: Trigger::Cron(Box::new(CronSchedule::parse(cron).unwrap())),
        last_run: last_run.map(|t| t.parse().unwrap()),
    }
}

fn no_jitter() -> Limits {
    Limits {
        global: 8,
        per_repository: 8,
        timeout: Duration::from_secs(3600),
        jitter: Duration::ZERO,
        shutdown_deadline: Duration::from_secs(30),
    }
}

/// Runs the scheduler for `span` of paused time, then shuts it down.
async fn run_for(
    jobs: Vec<ScheduledJob>,
    runner: FakeRunner,
    limits: Limits,
    span: Duration,
) -> Vec<Event> {
    let shutdown = CancellationToken::new();
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(span).await;
        stopper.cancel();
    });
    let clock = Clock::starting_at(START.parse().unwrap());
    scheduler::run(jobs, runner, limits, clock, shutdown).await
}

fn started(events: &[Event]) -> Vec<(String, String, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Started {
                job,
                fire,
                catch_up,
            } => Some((job.clone(), fire.to_string(), *catch_up)),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn schedules_fire_at_their_times() {
    let jobs = vec![
        job("orders", "local", "*/10 * * * * *", None),
        job("files", "local", "0 * * * * *", None),
    ];
    let events = run_for(
        jobs,
        FakeRunner::taking(1),
        no_jitter(),
        Duration::from_secs(65),
    )
    .await;
    let fires: Vec<String> = started(&events)
        .into_iter()
        .filter(|s| s.0 == "backup:orders")
        .map(|s| s.1)
        .collect();
    assert_eq!(
        fires,
        [
            "2026-11-25T00:00:10Z",
            "2026-11-25T00:00:20Z",
            "2026-11-25T00:00:30Z",
            "2026-11-25T00:00:40Z",
            "2026-11-25T00:00:50Z",
            "2026-11-25T00:01:00Z"
        ]
    );
    let files: Vec<_> = started(&events)
        .into_iter()
        .filter(|s| s.0 == "backup:files")
        .collect();
    assert_eq!(
        files,
        [("backup:files".into(), "2026-11-25T00:01:00Z".into(), false)]
    );
    let finished = events
        .iter()
        .filter(|e| matches!(e, Event::Finished { ok: true, .. }))
        .count();
    assert_eq!(finished, 7);
}

#[tokio::test(start_paused = true)]
async fn a_missed_fire_is_caught_up_once_at_start() {
    // Hourly at :30; last ran five hours before the daemon started: one catch-up, not five.
    let jobs = vec![job(
        "orders",
        "local",
        "0 30 * * * *",
        Some("2026-11-24T19:30:00Z"),
    )];
    let events = run_for(
        jobs,
        FakeRunner::taking(1),
        no_jitter(),
        Duration::from_secs(45 * 60),
    )
    .await;
    assert_eq!(
        started(&events),
        [
            ("backup:orders".into(), "2026-11-24T23:30:00Z".into(), true),
            ("backup:orders".into(), "2026-11-25T00:30:00Z".into(), false),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn runs_of_one_policy_never_overlap() {
    let runner = FakeRunner::taking(25);
    let peak = runner.per_policy_peak.clone();
    let jobs = vec![job("orders", "local", "*/10 * * * * *", None)];
    let events = run_for(jobs, runner, no_jitter(), Duration::from_secs(100)).await;
    assert_eq!(peak.lock().unwrap()["orders"], 1);
    assert!(
        events.iter().any(|e| matches!(e, Event::Skipped { .. })),
        "fires during a run are skipped"
    );
    assert!(started(&events).len() >= 3);
}

/// A policy's backup and drill scheduled at one time both run at every fire, one after the
/// other (the second to fire was skipped, as if it were a second run of the first).
#[tokio::test(start_paused = true)]
async fn a_policys_jobs_fired_together_run_one_after_the_other() {
    let runner = FakeRunner::taking(20);
    let peak = runner.per_policy_peak.clone();
    let backup = job("orders", "local", "0 * * * * *", None);
    let drill = ScheduledJob {
        kind: JobKind::Drill,
        ..job("orders", "local", "0 * * * * *", None)
    };
    let events = run_for(
        vec![backup, drill],
        runner,
        no_jitter(),
        Duration::from_secs(150),
    )
    .await;
    assert_eq!(peak.lock().unwrap()["orders"], 1, "never at once");
    assert!(
        !events.iter().any(|e| matches!(e, Event::Skipped { .. })),
        "nothing skipped: {events:?}"
    );
    let started = started(&events);
    for name in ["backup:orders", "drill:orders"] {
        let fires = started.iter().filter(|(job, ..)| job == name).count();
        assert_eq!(fires, 2, "{name} started at both fires: {started:?}");
    }
}

/// A job waiting for its policy's other job holds no place under the shared bounds: another
/// policy's job runs meanwhile.
#[tokio::test(start_paused = true)]
async fn a_job_waiting_for_its_policy_leaves_its_place_to_others() {
    let runner = FakeRunner::taking(20);
    let peak = runner.peak.clone();
    let jobs = vec![
        job("orders", "local", "0 * * * * *", None),
        ScheduledJob {
            kind: JobKind::Drill,
            ..job("orders", "local", "0 * * * * *", None)
        },
        job("billing", "local", "0 * * * * *", None),
    ];
    let limits = Limits {
        global: 2,
        ..no_jitter()
    };
    let events = run_for(jobs, runner, limits, Duration::from_secs(90)).await;
    assert_eq!(peak.load(Ordering::SeqCst), 2, "billing ran beside orders");
    let started = started(&events);
    assert_eq!(
        started.len(),
        3,
        "all three started at the first fire: {started:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_concurrency_bounds_hold() {
    let jobs: Vec<_> = (0..6)
        .map(|i| {
            let repository = if i % 2 == 0 { "even" } else { "odd" };
            job(&format!("p{i}"), repository, "*/10 * * * * *", None)
        })
        .collect();
    let runner = FakeRunner::taking(7);
    let peak = runner.peak.clone();
    let limits = Limits {
        global: 3,
        per_repository: 2,
        ..no_jitter()
    };
    let events = run_for(jobs.clone(), runner, limits, Duration::from_secs(60)).await;
    assert_eq!(peak.load(Ordering::SeqCst), 3, "global bound");
    assert!(started(&events).len() >= 12, "work still gets done");

    let one_repository: Vec<_> = jobs
        .into_iter()
        .map(|j| ScheduledJob {
            repository: "one".into(),
            ..j
        })
        .collect();
    let runner = FakeRunner::taking(7);
    let peak = runner.peak.clone();
    let limits = Limits {
        global: 8,
        per_repository: 2,
        ..no_jitter()
    };
    run_for(one_repository, runner, limits, Duration::from_secs(60)).await;
    assert_eq!(peak.load(Ordering::SeqCst), 2, "per-repository bound");
}

#[tokio::test(start_paused = true)]
async fn a_job_past_its_timeout_is_cancelled() {
    let limits = Limits {
        timeout: Duration::from_secs(30),
        ..no_jitter()
    };
    let jobs = vec![job("orders", "local", "0 * * * * *", None)];
    let events = run_for(
        jobs,
        FakeRunner::taking(600),
        limits,
        Duration::from_secs(100),
    )
    .await;
    assert!(
        events.contains(&Event::TimedOut {
            job: "backup:orders".into()
        }),
        "{events:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_cancels_running_jobs_without_waiting_for_them() {
    let runner = FakeRunner::taking(600);
    let cancelled = runner.cancelled.clone();
    let before = tokio::time::Instant::now();
    let jobs = vec![job("orders", "local", "0 * * * * *", None)];
    let events = run_for(jobs, runner, no_jitter(), Duration::from_secs(90)).await;
    assert_eq!(
        cancelled.load(Ordering::SeqCst),
        1,
        "the job saw the cancellation"
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Finished { ok: false, .. })));
    assert!(
        before.elapsed() < Duration::from_secs(91),
        "shutdown did not wait for the job's own end"
    );
}

#[tokio::test(start_paused = true)]
async fn jitter_moves_the_start_not_the_fire_time() {
    let limits = Limits {
        jitter: Duration::from_secs(20),
        ..no_jitter()
    };
    let jobs = vec![job("orders", "local", "0 * * * * *", None)];
    let events = run_for(
        jobs,
        FakeRunner::taking(1),
        limits,
        Duration::from_secs(200),
    )
    .await;
    let fires: Vec<String> = started(&events).into_iter().map(|s| s.1).collect();
    assert_eq!(
        fires,
        [
            "2026-11-25T00:01:00Z",
            "2026-11-25T00:02:00Z",
            "2026-11-25T00:03:00Z"
        ]
    );
}

/// Issue 14: with the default 30 s jitter, a schedule every 4 seconds fired only now and
/// then. Jitter is capped at a tenth of the interval between two fires.
#[tokio::test(start_paused = true)]
async fn jitter_is_capped_by_the_interval_between_fires() {
    let limits = Limits {
        jitter: Duration::from_secs(30),
        ..no_jitter()
    };
    let jobs = vec![job("orders", "local", "*/4 * * * * *", None)];
    let events = run_for(jobs, FakeRunner::taking(1), limits, Duration::from_secs(41)).await;
    let fires: Vec<String> = started(&events).into_iter().map(|s| s.1).collect();
    assert_eq!(fires.len(), 10, "{fires:?}");
    assert!(!events.iter().any(|e| matches!(e, Event::Skipped { .. })));
}

/// The daemon's timer (tokio-cron-scheduler, on the wall clock) hands on the schedule's
/// own fire times, in order.
#[tokio::test]
async fn the_cron_timer_fires_schedule_times_into_the_queue() {
    use scheduler::Timer;
    let mut timer = scheduler::CronTimer::new();
    let (queue, mut fires) = tokio::sync::mpsc::unbounded_channel();
    let jobs = vec![job("orders", "local", "* * * * * *", None)];
    let before = jiff::Timestamp::now();
    timer.schedule(&jobs, queue).await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let fire = tokio::time::timeout(Duration::from_secs(10), fires.recv())
            .await
            .expect("the cron timer fired within 10 s")
            .unwrap();
        seen.push(fire);
    }
    timer.stop().await;
    assert!(seen.iter().all(|f| f.job == "backup:orders"), "{seen:?}");
    assert!(seen[0].fire < seen[1].fire, "{seen:?}");
    for f in &seen {
        assert_eq!(f.fire.subsec_nanosecond(), 0, "a schedule time: {f:?}");
        assert!(
            f.fire
                >= before
                    .checked_sub(jiff::SignedDuration::from_secs(1))
                    .unwrap()
        );
    }
}

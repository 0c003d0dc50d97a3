//! `backstop daemon`: loads and validates the policies, schedules each policy's backups,
//! drills, prunes and checks from their cron expressions, and runs them through the catalog
//! (a lease per job, renewed by a heartbeat, so that daemons sharing a PostgreSQL catalog
//! never run one twice and a daemon that dies blocks nothing for long).
//!
//! [`run`] is the daemon's whole life: it takes the listener to serve on, a shutdown token
//! and a stream of reload requests, so that signals are handled at the binary's edge. On
//! shutdown, running jobs are cancelled (no visible partial snapshot, no scratch target
//! left), the HTTP server stops taking requests and finishes those in flight, and every
//! background loop (anchoring, request windows, objectives, reconciliation) stops at its
//! next wait, all within the shutdown deadline. A reload replaces the policies only when
//! every one of them is valid, and otherwise keeps the running set and logs why.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use backstop_catalog::Catalog;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::error::EngineError;
use crate::jobs::{backup, maintenance};
use crate::notify::{merged, Event as NotifyEvent, Notifier};
use crate::policy::{load_dir, Policy};
use crate::schedule::CronSchedule;
use crate::scheduler::{self, Clock, JobKind, JobResult, Runner, ScheduledJob, Trigger};

type Policies = Arc<RwLock<BTreeMap<String, Policy>>>;

/// The policies loaded now, copied out of the lock.
fn snapshot_of(policies: &Policies) -> Vec<Policy> {
    policies
        .read()
        .expect("policies lock")
        .values()
        .cloned()
        .collect()
}

/// The scheduled jobs of a policy set: backups, drills, prunes and checks.
async fn scheduled_jobs(
    config: &Config,
    policies: &BTreeMap<String, Policy>,
    catalog: &Catalog,
) -> Result<Vec<ScheduledJob>, EngineError> {
    let zone = config.daemon.zone().map_err(EngineError::Refused)?;
    let mut jobs = Vec::new();
    for policy in policies.values() {
        for kind in JobKind::ALL {
            let expr = match kind {
                JobKind::Backup => &policy.schedule.backup,
                JobKind::Drill => &policy.schedule.drill,
                JobKind::Prune => &policy.schedule.prune,
                JobKind::Check => &policy.schedule.check,
                JobKind::Copy => &policy.schedule.copy,
            };
            let trigger = match (kind, &policy.schedule.on_change) {
                (JobKind::Backup, Some(on_change)) => Trigger::OnChange(on_change.clone()),
                _ => {
                    let Some(expr) = expr else { continue };
                    Trigger::Cron(Box::new(
                        CronSchedule::parse(expr)
                            .map_err(|e| {
                                EngineError::Refused(format!("policy `{}`: {e}", policy.name))
                            })?
                            .in_zone(zone.clone()),
                    ))
                }
            };
            jobs.push(ScheduledJob {
                policy: policy.name.clone(),
                kind,
                repository: policy.repository.clone(),
                trigger,
                last_run: catalog
                    .last_run_started(&policy.name, kind.run_kind())
                    .await?,
            });
        }
    }
    // System drills, named `system:<name>`, under the first member's repository limit.
    let systems = crate::system::load_dir(&crate::system::systems_dir(config), policies)?;
    for system in systems.values() {
        let Some(expr) = &system.drill_schedule else {
            continue;
        };
        let schedule = CronSchedule::parse(expr)
            .map_err(|e| EngineError::Refused(format!("system `{}`: {e}", system.name)))?
            .in_zone(zone.clone());
        let repository = system
            .members
            .first()
            .and_then(|m| policies.get(m))
            .map(|p| p.repository.clone())
            .unwrap_or_default();
        jobs.push(ScheduledJob {
            policy: system.record_name(),
            kind: JobKind::Drill,
            repository,
            trigger: Trigger::Cron(Box::new(schedule)),
            last_run: catalog
                .last_run_started(&system.record_name(), JobKind::Drill.run_kind())
                .await?,
        });
    }
    Ok(jobs)
}

struct JobRunner {
    config: Arc<Config>,
    catalog: Catalog,
    policies: Policies,
    running: Arc<AtomicUsize>,
    /// The running backups' counters, which the console shows.
    live: crate::jobs::live::LiveBackups,
    notifier: Notifier,
    /// Cancelled on shutdown: a job cancelled otherwise was stopped by its timeout.
    shutdown: CancellationToken,
    timeout: std::time::Duration,
}

/// Counts a job as running for as long as it lives.
struct RunningJob(Arc<AtomicUsize>);

impl RunningJob {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter.clone())
    }
}

impl Drop for RunningJob {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl JobRunner {
    /// A scheduled system drill: the systems and policies as loaded now.
    async fn system_drill(
        &self,
        name: &str,
        lease: &str,
        fire: jiff::Timestamp,
        cancel: &CancellationToken,
    ) -> JobResult {
        let policies = self.policies.read().expect("policies lock").clone();
        let systems = crate::system::load_dir(&crate::system::systems_dir(&self.config), &policies)
            .map_err(|e| e.to_string())?;
        let system = systems
            .get(name)
            .ok_or_else(|| format!("system `{name}` is no longer defined"))?;
        if !self
            .catalog
            .claim_fire(lease, fire)
            .await
            .map_err(|e| e.to_string())?
        {
            tracing::info!(
                job = lease,
                "another daemon holds this job's lease or has run this fire; not running it here"
            );
            return Ok(());
        }
        let _running = RunningJob::new(&self.running);
        let report =
            crate::system::drill_recorded(&self.config, &self.catalog, system, &policies, cancel)
                .await
                .map_err(|e| e.to_string())?;
        tracing::info!(
            job = lease,
            drill = report.drill_id,
            status = report.status.as_str(),
            rto = report
                .rto_seconds
                .map(|s| format!("{s:.1}s"))
                .unwrap_or_else(|| "none (a member was not restored)".into()),
            "system drill done"
        );
        match report.status {
            crate::drill::report::DrillStatus::Passed => Ok(()),
            crate::drill::report::DrillStatus::Failed => Err(format!(
                "system drill {} failed: {}",
                report.drill_id,
                report.error.unwrap_or_default()
            )),
        }
    }

    /// Copies the policy's snapshots that its secondaries lack (each a recorded run, each
    /// logged).
    async fn copies(&self, policy: &Policy, cancel: &CancellationToken) -> Result<(), EngineError> {
        crate::jobs::copy::catch_up_recorded(&self.config, &self.catalog, policy, cancel)
            .await
            .map(|_| ())
    }
}

impl Runner for JobRunner {
    async fn run(
        &self,
        job: ScheduledJob,
        fire: jiff::Timestamp,
        cancel: CancellationToken,
    ) -> JobResult {
        if let Some(system) = job.policy.strip_prefix(crate::system::RECORD_PREFIX) {
            return self.system_drill(system, &job.name(), fire, &cancel).await;
        }
        let policy = self
            .policies
            .read()
            .expect("policies lock")
            .get(&job.policy)
            .cloned()
            .ok_or_else(|| format!("policy `{}` is no longer loaded", job.policy))?;
        let lease = job.name();
        let taken = self
            .catalog
            .claim_fire(&lease, fire)
            .await
            .map_err(|e| e.to_string())?;
        if !taken {
            tracing::info!(
                job = lease,
                "another daemon holds this job's lease or has run this fire; not running it here"
            );
            return Ok(());
        }
        let _running = RunningJob::new(&self.running);
        let notify = merged(&self.config.notify, policy.notify.as_ref());
        self.notifier.started(&notify);
        let result = match job.kind {
            JobKind::Prune => {
                let all = snapshot_of(&self.policies);
                maintenance::prune_recorded(&self.config, &self.catalog, &policy, &all, &cancel)
                    .await
                    .map(|summary| tracing::info!(job = lease, summary, "prune done"))
            }
            JobKind::Check => {
                maintenance::check_recorded(&self.config, &self.catalog, &policy, &cancel)
                    .await
                    .map(|summary| tracing::info!(job = lease, summary, "check done"))
            }
            JobKind::Drill => {
                let options = crate::drill::DrillOptions::default();
                match crate::drill::run_recorded(
                    &self.config,
                    &self.catalog,
                    &policy,
                    &options,
                    &cancel,
                )
                .await
                {
                    Ok(report) => {
                        tracing::info!(
                            job = lease,
                            drill = report.drill_id,
                            status = report.status.as_str(),
                            // Rounded for people: logs are read, not computed with.
                            rto = report
                                .rto_seconds
                                .map(|s| format!("{s:.1}s"))
                                .unwrap_or_else(|| "none (not restored)".into()),
                            rpo = format!("{:.0}s", report.rpo_seconds),
                            "drill done"
                        );
                        if report.rpo_breached {
                            self.notifier.alert(
                                &notify,
                                NotifyEvent::new(
                                    "rpo.breached",
                                    &policy.name,
                                    format!(
                                        "drill {}: the restored snapshot is {:.0}s old, over the RPO objective",
                                        report.drill_id, report.rpo_seconds
                                    ),
                                ),
                            );
                        }
                        match report.status {
                            crate::drill::report::DrillStatus::Passed => Ok(()),
                            crate::drill::report::DrillStatus::Failed => {
                                Err(EngineError::Refused(format!(
                                    "drill {} failed: {}",
                                    report.drill_id,
                                    report.error.unwrap_or_default()
                                )))
                            }
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            JobKind::Backup => {
                let (_listed, on_start) = self.live.track(&policy.name);
                match backup::run_recorded(&self.config, &self.catalog, &policy, on_start, &cancel)
                    .await
                {
                    Ok(outcome) => {
                        tracing::info!(
                            job = lease,
                            snapshot = %outcome.snapshot_id.short(),
                            bytes_added = outcome.snapshot.summary.bytes_added,
                            "snapshot saved"
                        );
                        for anomaly in &outcome.anomalies {
                            tracing::warn!(job = lease, %anomaly, "backup anomaly");
                            self.notifier.alert(
                                &notify,
                                NotifyEvent::new(
                                    "backup.anomaly",
                                    &policy.name,
                                    format!("snapshot {}: {anomaly}", outcome.snapshot_id.short()),
                                ),
                            );
                        }
                        // The snapshot is safe; its copies follow, and their failure is the
                        // copy's, alerted as such (the backup succeeded).
                        match self.copies(&policy, &cancel).await {
                            Err(EngineError::Cancelled) => Err(EngineError::Cancelled),
                            Err(e) => {
                                self.notifier.alert(
                                    &notify,
                                    NotifyEvent::new("copy.failed", &policy.name, format!("{e:#}")),
                                );
                                Ok(())
                            }
                            Ok(()) => Ok(()),
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            JobKind::Copy => self.copies(&policy, &cancel).await,
        };
        match &result {
            Ok(()) => self.notifier.succeeded(&notify),
            // Shutdown is not a failure worth a page; a job stopped by its timeout is.
            Err(EngineError::Cancelled) if self.shutdown.is_cancelled() => {}
            Err(EngineError::Cancelled) => self.notifier.alert(
                &notify,
                NotifyEvent::new(
                    &format!("{}.timed_out", job.kind),
                    &policy.name,
                    format!(
                        "stopped after the job timeout ({}); recorded as cancelled",
                        humantime::format_duration(self.timeout)
                    ),
                ),
            ),
            Err(e) => self.notifier.alert(
                &notify,
                NotifyEvent::new(
                    &format!("{}.failed", job.kind),
                    &policy.name,
                    format!("{e:#}"),
                ),
            ),
        }
        // What the job recorded goes into the repositories too (see crate::history); after
        // a failure (often a store out of reach) the hourly anchoring writes it.
        if result.is_ok() {
            crate::history::sync_or_warn(&self.config, &self.catalog).await;
        }
        let result = result.map_err(|e| e.to_string());
        if let Err(e) = self.catalog.release_lease(&lease).await {
            tracing::warn!(job = lease, error = %e, "releasing the lease");
        }
        result
    }
}

/// Binds the address the daemon serves on: `[api] listen`, else [`DEFAULT_LISTEN`].
pub async fn bind(config: &Config) -> Result<tokio::net::TcpListener, EngineError> {
    let listen = config
        .api
        .as_ref()
        .and_then(|api| api.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let addr: SocketAddr = listen
        .parse()
        .map_err(|e| EngineError::Refused(format!("[api] listen = \"{listen}\": {e}")))?;
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| EngineError::Refused(format!("cannot listen on {addr}: {e}")))
}

/// Runs the daemon on `listener` until `shutdown` is cancelled; each message on `reloads`
/// reloads the policies. Returns once every job and background task has stopped, or the
/// shutdown deadline has passed.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
    mut reloads: mpsc::UnboundedReceiver<()>,
) -> Result<(), EngineError> {
    let config = Arc::new(config);
    let catalog = crate::catalog::open(&config)
        .await?
        .with_actor(format!("daemon@{}", hostname()));
    let loaded = load_dir(&config.policies_dir, &config)?;
    let notifier = Notifier::start();
    let policies: Policies = Arc::new(RwLock::new(loaded));
    // Before the first schedule: a run a dead daemon left `running` is closed, and its
    // lease freed, so that the next fire runs on time.
    reconcile(&config, &catalog, &policies, &notifier).await;
    // `status` tells from this whether anyone runs the schedules.
    catalog.announce_daemon().await?;
    let loaded = policies.read().expect("policies lock").clone();
    let jobs = scheduled_jobs(&config, &loaded, &catalog).await?;
    crate::catalog::record_policies_loaded(&catalog, loaded.values()).await?;
    tracing::info!(
        policies = loaded.len(),
        scheduled = jobs.len(),
        catalog = catalog.location(),
        holder = %catalog.holder(),
        "daemon started"
    );
    let (reload_tx, reload_rx) = tokio::sync::watch::channel(jobs);
    let limits = config.daemon.limits();
    let background = TaskTracker::new();

    {
        let (config, catalog, policies, shutdown) = (
            config.clone(),
            catalog.clone(),
            policies.clone(),
            shutdown.clone(),
        );
        background.spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    request = reloads.recv() => match request {
                        Some(()) => reload(&config, &catalog, &policies, &reload_tx).await,
                        None => return,
                    },
                }
            }
        });
    }

    let running = Arc::new(AtomicUsize::new(0));
    let live = crate::jobs::live::LiveBackups::default();
    // Scheduled jobs and restore requests take their places from the same gates.
    let gates = Arc::new(scheduler::Gates::new(&limits));
    let request_jobs =
        crate::api::requests::RequestJobs::new(gates.clone(), limits.timeout, shutdown.clone());
    let api = crate::api::ApiState {
        config: config.clone(),
        catalog: catalog.clone(),
        policies: policies.clone(),
        notifier: notifier.clone(),
        jobs: request_jobs.clone(),
        sessions: crate::console::Sessions::default(),
        live: live.clone(),
    };
    background.spawn(every(
        REQUEST_WINDOWS_EVERY,
        shutdown.clone(),
        crate::api::run_windows_once,
        api.clone(),
    ));
    let http = HttpState {
        catalog: catalog.clone(),
        policies: policies.clone(),
        running: running.clone(),
        metrics_tokens: config
            .api
            .as_ref()
            .is_some_and(|a| a.metrics_token)
            .then(|| crate::api::access::tokens_path(&config)),
    };
    background.spawn(serve(listener, http, api, shutdown.clone()));
    background.spawn(every(
        OBJECTIVE_CHECK_EVERY,
        shutdown.clone(),
        |w: Watch| async move { check_objectives(&w).await },
        Watch {
            config: config.clone(),
            catalog: catalog.clone(),
            policies: policies.clone(),
            notifier: notifier.clone(),
        },
    ));
    background.spawn(every(
        ANCHOR_EVERY,
        shutdown.clone(),
        |(config, catalog): (Arc<Config>, Catalog)| async move { anchor(&config, &catalog).await },
        (config.clone(), catalog.clone()),
    ));
    background.spawn(every(
        RECONCILE_EVERY,
        shutdown.clone(),
        |w: Watch| async move { reconcile(&w.config, &w.catalog, &w.policies, &w.notifier).await },
        Watch {
            config: config.clone(),
            catalog: catalog.clone(),
            policies: policies.clone(),
            notifier: notifier.clone(),
        },
    ));
    background.close();

    let (policies_left, notifier_left) = (policies.clone(), notifier.clone());
    let runner = JobRunner {
        notifier,
        running,
        live,
        config: config.clone(),
        catalog: catalog.clone(),
        policies,
        shutdown: shutdown.clone(),
        timeout: limits.timeout,
    };
    let deadline = limits.shutdown_deadline;
    let events = scheduler::run_with_reload(
        reload_rx,
        scheduler::Both(
            scheduler::CronTimer::new(),
            crate::watch::ChangeWatcher::new(),
        ),
        runner,
        limits,
        gates,
        Clock::system(),
        shutdown,
    )
    .await;
    // The scheduler has drained its jobs; restore requests, cancelled too, remove what
    // they created; the HTTP server finishes the calls in flight and the loops stop at
    // their next wait, all within the same deadline.
    let stopped = async {
        request_jobs.wait().await;
        background.wait().await;
    };
    if tokio::time::timeout(deadline, stopped).await.is_err() {
        tracing::error!("background tasks did not stop within the shutdown deadline");
    }
    // A restore request still running now will not finish: it ends `failed` (interrupted),
    // and its requester is told, instead of waiting for the next start to find it.
    match catalog.fail_own_requests(jiff::Timestamp::now()).await {
        Ok(failed) => tell_requesters(&config, &policies_left, &notifier_left, &failed).await,
        Err(e) => tracing::error!(error = %e, "recording interrupted restore requests"),
    }
    if let Err(e) = catalog.withdraw_daemon().await {
        tracing::warn!(error = %e, "saying that the daemon stops");
    }
    if !notifier_left.flush(NOTIFY_FLUSH_WITHIN).await {
        tracing::error!("some notifications were not delivered before the daemon stopped");
    }
    tracing::info!(
        jobs_started = events
            .iter()
            .filter(|e| matches!(e, scheduler::Event::Started { .. }))
            .count(),
        "daemon stopped"
    );
    catalog.close().await;
    Ok(())
}

/// Runs `step(state)` now and then every `period` until `shutdown`; a step in progress is
/// never cut short, the loop only stops while it waits.
async fn every<S, F, Fut>(
    period: std::time::Duration,
    shutdown: CancellationToken,
    step: F,
    state: S,
) where
    S: Clone,
    F: Fn(S) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        step(state.clone()).await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
    }
}

/// How long a stopping daemon waits for its last notifications to be delivered.
const NOTIFY_FLUSH_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// How often restore requests are looked at for an opened window or an expiry.
const REQUEST_WINDOWS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// How often runs left by dead holders are looked for (at most this long after a holder
/// dies, plus the lease time to live, before its runs are abandoned).
const RECONCILE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Marks runs left `running` by a holder that is gone as abandoned, and alerts on each;
/// fails the restore requests such holders left running, and tells each requester.
async fn reconcile(
    config: &Arc<Config>,
    catalog: &Catalog,
    policies: &Policies,
    notifier: &Notifier,
) {
    let now = jiff::Timestamp::now();
    match catalog.reconcile_requests(now).await {
        Ok(failed) => tell_requesters(config, policies, notifier, &failed).await,
        Err(e) => tracing::warn!(error = %e, "reconciling interrupted restore requests"),
    }
    let abandoned = match catalog.reconcile_abandoned(now).await {
        Ok(abandoned) => abandoned,
        Err(e) => {
            tracing::warn!(error = %e, "reconciling abandoned runs");
            return;
        }
    };
    for run in abandoned {
        let detail = run.error.clone().unwrap_or_default();
        tracing::error!(
            run = run.id,
            kind = run.kind,
            policy = run.policy,
            detail,
            "run abandoned"
        );
        let policy = policies
            .read()
            .expect("policies lock")
            .get(&run.policy)
            .cloned();
        notifier.alert(
            &merged(
                &config.notify,
                policy.as_ref().and_then(|p| p.notify.as_ref()),
            ),
            NotifyEvent::new(
                &format!("{}.abandoned", run.kind),
                &run.policy,
                format!("run {}: {detail}", run.id),
            ),
        );
    }
}

/// Removes what each interrupted request was creating, and tells its requester.
async fn tell_requesters(
    config: &Arc<Config>,
    policies: &Policies,
    notifier: &Notifier,
    failed: &[backstop_catalog::RestoreRequest],
) {
    for r in failed {
        tracing::error!(
            request = r.id,
            outcome = r.outcome.as_deref().unwrap_or_default(),
            "restore request interrupted"
        );
        crate::api::requests::remove_interrupted_target(r).await;
        let policy = policies
            .read()
            .expect("policies lock")
            .get(&r.policy)
            .cloned();
        if let Some(policy) = policy {
            crate::api::notify_requester(config, notifier, &policy, r);
        }
    }
}

/// How often objectives are checked for a breach between jobs.
const OBJECTIVE_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// What the objectives watch needs.
#[derive(Clone)]
struct Watch {
    config: Arc<Config>,
    catalog: Catalog,
    policies: Policies,
    notifier: Notifier,
}

/// Notifies once when a policy's RPO exposure goes over its objective, and again only after
/// it has recovered and breached anew; once per drill whose sign-off is overdue. Both are
/// remembered in the catalog, so that a restart (or a second daemon) does not alert again.
async fn check_objectives(w: &Watch) {
    let (config, catalog, notifier) = (&w.config, &w.catalog, &w.notifier);
    let current = snapshot_of(&w.policies);
    let now = jiff::Timestamp::now();
    let report = match crate::status::collect(&current, catalog, &config.daemon, now).await {
        Ok(report) => report,
        Err(e) => {
            tracing::warn!(error = %e, "checking objectives");
            return;
        }
    };
    for status in report {
        let policy = current.iter().find(|p| p.name == status.policy);
        let settings = merged(&config.notify, policy.and_then(|p| p.notify.as_ref()));
        let breach_notice = format!("rpo.breached:{}", status.policy);
        if status.rpo_breached {
            match catalog.first_notice(&breach_notice, now).await {
                Ok(true) => {
                    let detail = match (status.rpo_exposure_seconds, status.rpo_objective_seconds) {
                        (Some(e), Some(o)) => {
                            format!("RPO exposure {e}s is over the objective {o}s")
                        }
                        (None, Some(o)) => format!("no snapshot at all; the objective is {o}s"),
                        _ => "RPO objective breached".into(),
                    };
                    tracing::warn!(policy = status.policy, detail, "RPO objective breached");
                    notifier.alert(
                        &settings,
                        NotifyEvent::new("rpo.breached", &status.policy, detail),
                    );
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "recording a notice"),
            }
        } else if let Err(e) = catalog.clear_notice(&breach_notice).await {
            tracing::warn!(error = %e, "clearing a notice");
        }
        for copy in &status.copies {
            let notice = format!("copy.rpo_breached:{}:{}", status.policy, copy.repository);
            if !copy.rpo_breached {
                if let Err(e) = catalog.clear_notice(&notice).await {
                    tracing::warn!(error = %e, "clearing a notice");
                }
                continue;
            }
            match catalog.first_notice(&notice, now).await {
                Ok(true) => {
                    let detail = format!(
                        "copy in repository `{}` lags: RPO exposure {}s is over the objective {}s",
                        copy.repository,
                        copy.rpo_exposure_seconds.unwrap_or_default(),
                        status.rpo_objective_seconds.unwrap_or_default()
                    );
                    tracing::warn!(
                        policy = status.policy,
                        detail,
                        "copy RPO objective breached"
                    );
                    notifier.alert(
                        &settings,
                        NotifyEvent::new("copy.rpo_breached", &status.policy, detail),
                    );
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "recording a notice"),
            }
        }
        for drill in &status.overdue_signoffs {
            let notice = format!("signoff.overdue:{drill}");
            match catalog.first_notice(&notice, now).await {
                Ok(true) => {
                    let owner = policy
                        .and_then(|p| p.owners.recovery.clone())
                        .unwrap_or_else(|| "the recovery owner".into());
                    let detail = format!(
                        "drill {drill} passed but {owner} has not signed it off within the policy's signoff_within"
                    );
                    tracing::warn!(policy = status.policy, drill, "sign-off overdue");
                    notifier.alert(
                        &settings,
                        NotifyEvent::new("signoff.overdue", &status.policy, detail),
                    );
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "recording a notice"),
            }
        }
    }
}

/// How often the audit chain's head is written to the repositories.
const ANCHOR_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Writes the audit chain's head to every repository (at start, then hourly).
async fn anchor(config: &Config, catalog: &Catalog) {
    match crate::anchors::write(config, catalog).await {
        Ok(written) if !written.is_empty() => {
            tracing::info!(anchors = ?written, "audit chain anchored")
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "anchoring the audit chain"),
    }
}

/// SIGHUP: replaces the policy set only when every policy is valid.
async fn reload(
    config: &Config,
    catalog: &Catalog,
    policies: &Policies,
    jobs: &tokio::sync::watch::Sender<Vec<ScheduledJob>>,
) {
    let kept = policies.read().expect("policies lock").len();
    let loaded = match load_dir(&config.policies_dir, config) {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::error!(
                kept,
                "SIGHUP: policies not reloaded, keeping the {kept} running: {e}"
            );
            return;
        }
    };
    match scheduled_jobs(config, &loaded, catalog).await {
        Ok(new_jobs) => {
            tracing::info!(
                policies = loaded.len(),
                scheduled = new_jobs.len(),
                "SIGHUP: policies reloaded"
            );
            if let Err(e) = crate::catalog::record_policies_loaded(catalog, loaded.values()).await {
                tracing::error!(error = %e, "recording the reloaded policies in the audit log");
            }
            *policies.write().expect("policies lock") = loaded;
            let _ = jobs.send(new_jobs);
        }
        Err(e) => tracing::error!(
            kept,
            "SIGHUP: policies not reloaded, keeping the {kept} running: {e}"
        ),
    }
}

/// Where `/healthz` and `/metrics` are served when `[api] listen` is not set.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8470";

#[derive(Clone)]
struct HttpState {
    catalog: Catalog,
    policies: Policies,
    running: Arc<AtomicUsize>,
    /// With `[api] metrics_token = true`, /metrics needs a token from this file.
    metrics_tokens: Option<std::path::PathBuf>,
}

/// Serves `/healthz` (the daemon is up), `/metrics` (Prometheus) and the authenticated API
/// on `listener` until `shutdown`, then finishes the requests in flight.
async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    api: crate::api::ApiState,
    shutdown: CancellationToken,
) {
    use axum::routing::get;
    let bound = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(address = %bound, "serving /healthz, /metrics and the API");
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .with_state(state)
        .merge(crate::api::router(api));
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "the HTTP server stopped");
    }
}

async fn metrics(
    axum::extract::State(state): axum::extract::State<HttpState>,
    headers: axum::http::HeaderMap,
) -> Result<
    ([(axum::http::header::HeaderName, &'static str); 1], String),
    (axum::http::StatusCode, String),
> {
    if let Some(path) = &state.metrics_tokens {
        let token = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let file = crate::api::access::load(path)
            .map_err(|e| (axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        if crate::api::access::authenticate(&file, token).is_none() {
            return Err((
                axum::http::StatusCode::UNAUTHORIZED,
                "a bearer token is required for /metrics ([api] metrics_token)".into(),
            ));
        }
    }
    let policies = snapshot_of(&state.policies);
    let mut inputs = Vec::new();
    for policy in &policies {
        let stats = state
            .catalog
            .backup_stats(&policy.name)
            .await
            .map_err(|e| (axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        let drills = crate::status::DrillStats::load(&state.catalog, policy)
            .await
            .map_err(|e| (axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        let coverage = state
            .catalog
            .coverage(&policy.repository)
            .await
            .map_err(|e| (axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        inputs.push(crate::metrics::PolicyMetrics {
            policy,
            stats,
            drills,
            coverage,
        });
    }
    let body = crate::metrics::render(
        &inputs,
        state.running.load(Ordering::SeqCst),
        jiff::Timestamp::now(),
    );
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    ))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

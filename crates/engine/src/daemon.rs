//! `backstop daemon`: loads and validates the policies, schedules each policy's backups,
//! drills, prunes and checks from their cron expressions, and runs them through the catalog (a lease per job, so that
//! daemons sharing a PostgreSQL catalog never run one twice). SIGTERM and SIGINT shut it
//! down gracefully (running jobs are cancelled: no visible partial snapshot, no scratch
//! target left); SIGHUP reloads the policies when all of them are valid, and otherwise keeps
//! the running set and logs why.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use backstop_catalog::{Catalog, RunKind};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::EngineError;
use crate::jobs::{backup, maintenance};
use crate::notify::{merged, Event as NotifyEvent, Notifier};
use crate::policy::{load_dir, Policy};
use crate::schedule::CronSchedule;
use crate::scheduler::{self, Clock, JobResult, Runner, ScheduledJob};

/// Resolves when the process is asked to stop (SIGTERM or SIGINT).
pub async fn terminated() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

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
        let kinds = [
            (RunKind::Backup, &policy.schedule.backup),
            (RunKind::Drill, &policy.schedule.drill),
            (RunKind::Prune, &policy.schedule.prune),
            (RunKind::Check, &policy.schedule.check),
        ];
        for (kind, expr) in kinds {
            let Some(expr) = expr else { continue };
            let schedule = CronSchedule::parse(expr)
                .map_err(|e| EngineError::Refused(format!("policy `{}`: {e}", policy.name)))?
                .in_zone(zone.clone());
            jobs.push(ScheduledJob {
                policy: policy.name.clone(),
                kind: kind.as_str().into(),
                repository: policy.repository.clone(),
                schedule,
                last_run: catalog.last_run_started(&policy.name, kind).await?,
            });
        }
    }
    Ok(jobs)
}

struct JobRunner {
    config: Arc<Config>,
    catalog: Catalog,
    policies: Policies,
    holder: String,
    lease: std::time::Duration,
    running: Arc<AtomicUsize>,
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

impl Runner for JobRunner {
    async fn run(
        &self,
        job: ScheduledJob,
        fire: jiff::Timestamp,
        cancel: CancellationToken,
    ) -> JobResult {
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
            .claim_fire(&lease, fire, &self.holder, self.lease)
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
        let result = match job.kind.as_str() {
            "prune" => {
                let all = snapshot_of(&self.policies);
                maintenance::prune_recorded(&self.config, &self.catalog, &policy, &all, &cancel)
                    .await
                    .map(|summary| tracing::info!(job = lease, summary, "prune done"))
            }
            "check" => maintenance::check_recorded(&self.config, &self.catalog, &policy, &cancel)
                .await
                .map(|summary| tracing::info!(job = lease, summary, "check done")),
            "drill" => {
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
                            rto_seconds = report.rto_seconds,
                            rpo_seconds = report.rpo_seconds,
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
            _ => backup::run_recorded(&self.config, &self.catalog, &policy, |_| {}, &cancel)
                .await
                .map(|outcome| {
                    tracing::info!(
                        job = lease,
                        snapshot = %outcome.snapshot_id.short(),
                        bytes_added = outcome.snapshot.summary.bytes_added,
                        "snapshot saved"
                    );
                }),
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
        let result = result.map_err(|e| e.to_string());
        if let Err(e) = self.catalog.release_lease(&lease, &self.holder).await {
            tracing::warn!(job = lease, error = %e, "releasing the lease");
        }
        result
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), EngineError> {
    let config = Arc::new(config);
    let catalog = crate::catalog::open(&config)
        .await?
        .with_actor(format!("daemon@{}", hostname()));
    let loaded = load_dir(&config.policies_dir, &config)?;
    let jobs = scheduled_jobs(&config, &loaded, &catalog).await?;
    crate::catalog::record_policies_loaded(&catalog, loaded.values()).await?;
    tracing::info!(
        policies = loaded.len(),
        scheduled = jobs.len(),
        catalog = catalog.location(),
        "daemon started"
    );
    let policies: Policies = Arc::new(RwLock::new(loaded));
    let (reload_tx, reload_rx) = tokio::sync::watch::channel(jobs);
    let shutdown = CancellationToken::new();

    let mut hangup = signal(SignalKind::hangup())
        .map_err(|e| EngineError::Refused(format!("installing the SIGHUP handler: {e}")))?;
    let signals = {
        let (config, catalog, policies, shutdown) = (
            config.clone(),
            catalog.clone(),
            policies.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = terminated() => {
                        tracing::info!("shutting down: cancelling running jobs");
                        shutdown.cancel();
                        return;
                    }
                    _ = hangup.recv() => {
                        reload(&config, &catalog, &policies, &reload_tx).await;
                    }
                }
            }
        })
    };

    let running = Arc::new(AtomicUsize::new(0));
    let listen = config
        .api
        .as_ref()
        .and_then(|api| api.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let notifier = Notifier::start();
    let api = crate::api::ApiState {
        config: config.clone(),
        catalog: catalog.clone(),
        policies: policies.clone(),
        notifier: notifier.clone(),
    };
    let windows = tokio::spawn(crate::api::run_windows(api.clone()));
    let http = serve(
        &listen,
        HttpState {
            catalog: catalog.clone(),
            policies: policies.clone(),
            running: running.clone(),
            metrics_tokens: config
                .api
                .as_ref()
                .is_some_and(|a| a.metrics_token)
                .then(|| crate::api::access::tokens_path(&config)),
        },
        api,
    )
    .await?;

    let breaches = tokio::spawn(watch_objectives(
        config.clone(),
        catalog.clone(),
        policies.clone(),
        notifier.clone(),
    ));
    let anchoring = tokio::spawn(anchor_periodically(config.clone(), catalog.clone()));
    let limits = config.daemon.limits();
    let runner = JobRunner {
        notifier,
        running,
        config: config.clone(),
        catalog: catalog.clone(),
        policies,
        holder: format!("{}:{}", hostname(), std::process::id()),
        lease: limits.timeout + limits.shutdown_deadline,
        shutdown: shutdown.clone(),
        timeout: limits.timeout,
    };
    let events =
        scheduler::run_with_reload(reload_rx, runner, limits, Clock::system(), shutdown).await;
    signals.abort();
    http.abort();
    breaches.abort();
    anchoring.abort();
    windows.abort();
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

/// How often objectives are checked for a breach between jobs.
const OBJECTIVE_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// Notifies once when a policy's RPO exposure goes over its objective (and again only after
/// it has recovered and breached anew), and once per drill whose sign-off is overdue.
async fn watch_objectives(
    config: Arc<Config>,
    catalog: Catalog,
    policies: Policies,
    notifier: Notifier,
) {
    let mut breached = std::collections::HashSet::<String>::new();
    loop {
        let current = snapshot_of(&policies);
        match crate::status::collect(&current, &catalog, &config.daemon, jiff::Timestamp::now())
            .await
        {
            Ok(report) => {
                for status in report {
                    if status.rpo_breached && breached.insert(status.policy.clone()) {
                        let policy = current.iter().find(|p| p.name == status.policy);
                        let detail =
                            match (status.rpo_exposure_seconds, status.rpo_objective_seconds) {
                                (Some(e), Some(o)) => {
                                    format!("RPO exposure {e}s is over the objective {o}s")
                                }
                                (None, Some(o)) => {
                                    format!("no snapshot at all; the objective is {o}s")
                                }
                                _ => "RPO objective breached".into(),
                            };
                        tracing::warn!(policy = status.policy, detail, "RPO objective breached");
                        notifier.alert(
                            &merged(&config.notify, policy.and_then(|p| p.notify.as_ref())),
                            NotifyEvent::new("rpo.breached", &status.policy, detail),
                        );
                    } else if !status.rpo_breached {
                        breached.remove(&status.policy);
                    }
                    for drill in &status.overdue_signoffs {
                        // Once per drill, across restarts and daemons: the catalog remembers.
                        let notice = format!("signoff.overdue:{drill}");
                        match catalog.first_notice(&notice, jiff::Timestamp::now()).await {
                            Ok(true) => {
                                let policy = current.iter().find(|p| p.name == status.policy);
                                let owner = policy
                                    .and_then(|p| p.owners.recovery.clone())
                                    .unwrap_or_else(|| "the recovery owner".into());
                                let detail = format!(
                                    "drill {drill} passed but {owner} has not signed it off within the policy's signoff_within"
                                );
                                tracing::warn!(policy = status.policy, drill, "sign-off overdue");
                                notifier.alert(
                                    &merged(&config.notify, policy.and_then(|p| p.notify.as_ref())),
                                    NotifyEvent::new("signoff.overdue", &status.policy, detail),
                                );
                            }
                            Ok(false) => {}
                            Err(e) => tracing::warn!(error = %e, "recording a notice"),
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "checking objectives"),
        }
        tokio::time::sleep(OBJECTIVE_CHECK_EVERY).await;
    }
}

/// How often the audit chain's head is written to the repositories.
const ANCHOR_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Writes the audit chain's head to every repository, at start and then hourly.
async fn anchor_periodically(config: Arc<Config>, catalog: Catalog) {
    loop {
        match crate::anchors::write(&config, &catalog).await {
            Ok(written) if !written.is_empty() => {
                tracing::info!(anchors = ?written, "audit chain anchored")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "anchoring the audit chain"),
        }
        tokio::time::sleep(ANCHOR_EVERY).await;
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

/// Starts the HTTP server: `/healthz` (the daemon is up), `/metrics` (Prometheus), and the
/// authenticated API.
async fn serve(
    listen: &str,
    state: HttpState,
    api: crate::api::ApiState,
) -> Result<tokio::task::JoinHandle<()>, EngineError> {
    use axum::routing::get;
    let addr: SocketAddr = listen
        .parse()
        .map_err(|e| EngineError::Refused(format!("[api] listen = \"{listen}\": {e}")))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| EngineError::Refused(format!("cannot listen on {addr}: {e}")))?;
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
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the HTTP server stopped");
        }
    }))
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
        let drills = crate::status::DrillStats::load(&state.catalog, &policy.name)
            .await
            .map_err(|e| (axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        inputs.push(crate::metrics::PolicyMetrics {
            policy,
            stats,
            drills,
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

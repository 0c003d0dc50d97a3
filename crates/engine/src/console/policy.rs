//! A policy's page: its state, then its history over the last 30 days. The RPO exposure as a
//! line with the objective labelled and breaches shaded; each backup's duration and each
//! drill's RTO at its time; and the tables with the values themselves (size, duration,
//! outcome) for every backup, drill and restore request.

use std::fmt::Write;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::*;
use crate::error::EngineError;
use crate::evidence::html::{rpo_chart, rto_chart, time_bars, Bar};

/// How many backups the table lists (the chart shows every one in the period).
const BACKUP_ROWS: usize = 50;

/// `GET /ui/policies/{name}`.
pub async fn policy_page(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let Some((_, session)) = session(&state, &headers) else {
        return sign_in_page(StatusCode::UNAUTHORIZED, None);
    };
    let Some(policy) = state
        .policies
        .read()
        .expect("policies lock")
        .get(&name)
        .cloned()
    else {
        return refusal(
            &session,
            StatusCode::NOT_FOUND,
            &format!("There is no policy `{name}`."),
            ("/ui", "Back to the overview"),
        );
    };
    let now = jiff::Timestamp::now();
    let from = now - jiff::SignedDuration::try_from(crate::status::HISTORY).unwrap_or_default();
    let unavailable = |e: EngineError| {
        refusal(
            &session,
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("The catalog could not be read: {e}"),
            ("/ui", "Back to the overview"),
        )
    };
    let status =
        match crate::status::collect([&policy], &state.catalog, &state.config.daemon, now).await {
            Ok(mut statuses) => statuses.remove(0),
            Err(e) => return unavailable(e),
        };
    let requests = match state.catalog.requests(u32::MAX).await {
        Ok(requests) => requests,
        Err(e) => return unavailable(e.into()),
    };
    let evidence = match crate::evidence::collect_policy(
        &state.config,
        &state.catalog,
        &policy,
        &requests,
        from,
        now,
    )
    .await
    {
        Ok(evidence) => evidence,
        Err(e) => return unavailable(e),
    };
    let runs = match state.catalog.runs(Some(&policy.name), u32::MAX).await {
        Ok(runs) => runs,
        Err(e) => return unavailable(e.into()),
    };
    let backups: Vec<&backstop_catalog::Run> = runs
        .iter()
        .filter(|r| r.kind == "backup" && r.started_at >= from)
        .collect();

    let mut body = format!(
        "<h1>Policy {}</h1><ul class=\"cards\">{}</ul>",
        escape(&policy.name),
        super::overview::card(&status, now)
    );
    let _ = write!(
        body,
        "<p class=\"muted\">The last 30 days: {} to {}. Hover a bar or point for its value; every value is in the tables below.</p>",
        escape(&when(from)),
        escape(&when(now))
    );
    let _ = write!(
        body,
        "<h2>RPO exposure</h2><p>How old the newest restorable data was at each moment; shaded where it was over the objective.</p>{}",
        rpo_chart(&evidence, from, now)
    );
    let bars: Vec<Bar> = backups
        .iter()
        .map(|r| Bar {
            at: r.started_at,
            seconds: r
                .finished_at
                .map(|f| f.duration_since(r.started_at).as_secs_f64().max(0.0)),
            ok: r.status == backstop_catalog::RunStatus::Succeeded,
            name: format!("backup {}", r.status.as_str()),
        })
        .collect();
    let _ = write!(body, "<h2>Backups</h2>");
    if !bars.is_empty() {
        body.push_str(&time_bars(
            "backup-chart",
            &format!("Duration of each backup of {} over the period", policy.name),
            &bars,
            None,
            "still running",
            from,
            now,
        ));
    }
    let secs = |s: f64| crate::drill::short_duration(Duration::from_secs_f64(s.max(0.0)));
    let rows: Vec<Vec<String>> = backups
        .iter()
        .rev()
        .take(BACKUP_ROWS)
        .map(|r| {
            vec![
                escape(&when(r.started_at)),
                format!(
                    "<span class=\"state {}\">{}</span>",
                    match r.status {
                        backstop_catalog::RunStatus::Succeeded => "green",
                        backstop_catalog::RunStatus::Running => "amber",
                        _ => "red",
                    },
                    escape(r.status.as_str())
                ),
                escape(&match r.finished_at {
                    Some(f) => secs(f.duration_since(r.started_at).as_secs_f64()),
                    None => "—".into(),
                }),
                escape(
                    &r.bytes
                        .map(crate::human::bytes)
                        .unwrap_or_else(|| "—".into()),
                ),
                r.snapshot_id
                    .as_deref()
                    .map(|s| format!("<code>{}</code>", escape(&s[..s.len().min(12)])))
                    .unwrap_or_default(),
                escape(&r.error.clone().unwrap_or_else(|| r.warnings.join("; "))),
            ]
        })
        .collect();
    body.push_str(&table(
        "Backups",
        &[
            "started", "outcome", "duration", "added", "snapshot", "note",
        ],
        &rows,
    ));

    let _ = write!(body, "<h2>Drills</h2>");
    body.push_str(&rto_chart(&evidence, from, now));
    let rows: Vec<Vec<String>> = evidence
        .drills
        .iter()
        .rev()
        .map(|d| {
            vec![
                format!(
                    "<a href=\"/ui/drills/{0}\">{0}</a><br><span class=\"muted\">{1}</span>",
                    escape(&d.drill_id),
                    escape(&when(d.started_at))
                ),
                format!(
                    "<span class=\"state {}\">{}</span>",
                    if d.status == "passed" { "green" } else { "red" },
                    escape(&d.status)
                ),
                escape(&match (d.rto_seconds, evidence.objectives.rto_seconds) {
                    (None, _) => "none (not restored)".into(),
                    (Some(r), Some(o)) => format!("{} against {}", secs(r), span(Some(o))),
                    (Some(r), None) => secs(r),
                }),
                escape(&secs(d.rpo_seconds)),
                escape(
                    &d.signoff
                        .as_ref()
                        .map(|s| format!("{} on {}", s.principal, when(s.signed_at)))
                        .unwrap_or_else(|| {
                            if d.status == "passed" {
                                "awaiting".into()
                            } else {
                                "—".into()
                            }
                        }),
                ),
            ]
        })
        .collect();
    body.push_str(&table(
        "Drills",
        &["drill", "outcome", "RTO", "RPO", "sign-off"],
        &rows,
    ));

    let _ = write!(body, "<h2>Restore requests</h2>");
    let rows: Vec<Vec<String>> = evidence
        .restore_requests
        .iter()
        .rev()
        .map(|r| {
            vec![
                format!(
                    "<a href=\"/ui/requests/{0}\">{0}</a><br><span class=\"muted\">{1}</span>",
                    escape(&r.request_id),
                    escape(&when(r.created_at))
                ),
                escape(&r.requester),
                escape(&r.status),
                format!("<code>{}</code>", escape(&r.target)),
                escape(r.outcome.as_deref().unwrap_or("")),
            ]
        })
        .collect();
    body.push_str(&table(
        "Restore requests",
        &["request", "requester", "status", "target", "outcome"],
        &rows,
    ));
    page(
        StatusCode::OK,
        &format!("Policy {}", policy.name),
        Some((&session, "")),
        &body,
    )
}

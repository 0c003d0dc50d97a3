//! A drill's page and its sign-off by the policy's recovery owner.

use std::fmt::Write;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::*;

/// `GET /ui/drills/{id}`: a drill's report, every check with its output, the RTO broken
/// down, the snapshot and repository, and the sign-off (which the policy's recovery owner
/// gives here).
pub async fn drill_page(
    State(state): State<ApiState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let Some((_, session)) = session(&state, &headers) else {
        return sign_in_page(StatusCode::UNAUTHORIZED, None);
    };
    let record = match state.catalog.drill(&id).await {
        Ok(record) => record,
        Err(e) => {
            return page(
                StatusCode::NOT_FOUND,
                "Drill",
                Some((&session, "")),
                &format!("<p class=\"error\">{}</p>", escape(&e.to_string())),
            )
        }
    };
    let signoff = state.catalog.signoff(&record.id).await.ok().flatten();
    let report: Option<crate::drill::report::DrillReport> =
        serde_json::from_value(record.report.clone()).ok();
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Drill {}</h1><p class=\"state {}\">{}</p><dl>",
        escape(&record.id),
        if record.status == "passed" {
            "green"
        } else {
            "red"
        },
        escape(&record.status)
    );
    let mut row = |label: &str, value: String| {
        let _ = write!(
            body,
            "<dt>{}</dt><dd>{}</dd>",
            escape(label),
            escape(&value)
        );
    };
    row("policy", record.policy.clone());
    row("snapshot", record.snapshot_id.clone());
    row("repository", record.repository.clone());
    row(
        "data point",
        record
            .data_point
            .strftime("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
    );
    row(
        "started",
        record
            .started_at
            .strftime("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
    );
    row("target", record.target.clone());
    let secs = |s: f64| crate::drill::short_duration(Duration::from_secs_f64(s.max(0.0)));
    row(
        "RTO",
        match (record.rto_ms, record.rto_objective_ms) {
            (None, _) => "none: the restore did not complete".into(),
            (Some(ms), Some(o)) => format!(
                "{} against {}",
                secs(ms as f64 / 1000.0),
                secs(o as f64 / 1000.0)
            ),
            (Some(ms), None) => format!("{} (no objective)", secs(ms as f64 / 1000.0)),
        },
    );
    if let Some(r) = &report {
        let b = &r.rto_breakdown;
        row(
            "RTO breakdown",
            format!(
                "fetch {}, decode {}, load {}, checks {}",
                secs(b.fetch_seconds),
                secs(b.decode_seconds),
                secs(b.load_seconds),
                secs(b.checks_seconds)
            ),
        );
        row("RPO", secs(r.rpo_seconds));
    }
    if let Some(error) = &record.error {
        row("why it failed", error.clone());
    }
    let _ = write!(body, "</dl><h2>Checks</h2>");
    match &report {
        Some(r) if !r.checks.is_empty() => {
            let _ = write!(body, "<ul class=\"cards\">");
            for c in &r.checks {
                let (state, word) = match c.status {
                    crate::drill::report::CheckStatus::Passed => ("green", "passed"),
                    crate::drill::report::CheckStatus::Failed => ("red", "failed"),
                    crate::drill::report::CheckStatus::Skipped => ("amber", "skipped"),
                };
                let _ = write!(
                    body,
                    "<li class=\"card {state}\"><h3>{}</h3><p class=\"state {state}\">{word}</p><p>{}</p>",
                    escape(&c.name),
                    escape(&c.detail)
                );
                if let Some(output) = c.output.as_ref().filter(|o| !o.is_empty()) {
                    let _ = write!(body, "<pre>{}</pre>", escape(output));
                }
                let _ = write!(body, "</li>");
            }
            let _ = write!(body, "</ul>");
        }
        _ => {
            let _ = write!(body, "<p class=\"muted\">No check recorded.</p>");
        }
    }
    let _ = write!(body, "<h2>Sign-off</h2>");
    match &signoff {
        Some(s) => {
            let _ = write!(
                body,
                "<p>Signed off by <b>{}</b> on {}: {}</p>",
                escape(&s.principal),
                escape(&s.signed_at.strftime("%Y-%m-%d %H:%M UTC").to_string()),
                escape(&s.comment)
            );
        }
        None if record.status != "passed" => {
            let _ = write!(body, "<p class=\"muted\">A failed drill is not evidence of recovery and cannot be signed off.</p>");
        }
        None => {
            let policy = state
                .policies
                .read()
                .expect("policies lock")
                .get(&record.policy)
                .cloned();
            let may = access::allowed(&session.caller, access::Action::SignOff, policy.as_ref());
            match may {
                Ok(()) => {
                    let _ = write!(
                        body,
                        "<form method=\"post\" action=\"/ui/drills/{}/signoff\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                         <label for=\"comment\">What you reviewed</label><textarea id=\"comment\" name=\"comment\" rows=\"3\" required></textarea>\
                         <button type=\"submit\">Sign off</button></form>",
                        escape(&record.id),
                        escape(&session.csrf)
                    );
                }
                Err(_) => {
                    let owner = policy
                        .and_then(|p| p.owners.recovery)
                        .unwrap_or_else(|| "nobody (no recovery owner)".into());
                    let _ = write!(
                        body,
                        "<p class=\"muted\">Awaiting the sign-off of the recovery owner, {}.</p>",
                        escape(&owner)
                    );
                }
            }
        }
    }
    page(
        StatusCode::OK,
        &format!("Drill {id}"),
        Some((&session, "")),
        &body,
    )
}

#[derive(Deserialize)]
pub struct SignOffForm {
    comment: Option<String>,
}

/// `POST /ui/drills/{id}/signoff`: the recovery owner signs a passed drill off, as the API
/// and the command line let them, and only them; audited under their name.
pub async fn sign_off(
    State(state): State<ApiState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Acting { session, form, .. }: Acting<SignOffForm>,
) -> Response {
    let refuse = |status: StatusCode, why: String| {
        page(
            status,
            "Refused",
            Some((&session, "")),
            &format!(
                "<p class=\"error\">{}</p><p><a href=\"/ui/drills/{}\">Back to the drill</a></p>",
                escape(&why),
                escape(&id)
            ),
        )
    };
    let record = match state.catalog.drill(&id).await {
        Ok(record) => record,
        Err(e) => return refuse(StatusCode::NOT_FOUND, e.to_string()),
    };
    let policies = state.policies.read().expect("policies lock").clone();
    if let Err(why) = access::allowed(
        &session.caller,
        access::Action::SignOff,
        policies.get(&record.policy),
    ) {
        return refuse(StatusCode::FORBIDDEN, why);
    }
    let catalog = state
        .catalog
        .clone()
        .with_actor(session.caller.principal.clone());
    match crate::drill::signoff::sign_off(
        &state.config,
        &catalog,
        &policies,
        &record.id,
        &session.caller.principal,
        form.comment.as_deref().unwrap_or(""),
        jiff::Timestamp::now(),
    )
    .await
    {
        Ok(_) => (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, format!("/ui/drills/{}", record.id))],
        )
            .into_response(),
        Err(e) => refuse(StatusCode::CONFLICT, e.to_string()),
    }
}

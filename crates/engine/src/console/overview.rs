//! The overview: every policy on one screen, green, amber or red with why, and the jobs
//! running now.

use std::fmt::Write;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::*;

/// Green, amber or red for a policy, with why.
pub fn verdict(s: &PolicyStatus) -> (&'static str, Vec<String>) {
    let mut red = Vec::new();
    let mut amber = Vec::new();
    if s.rpo_breached {
        red.push("RPO breached: the newest restorable data is older than the objective".into());
    }
    if s.last_backup_status
        .as_deref()
        .is_some_and(|st| st != "succeeded")
    {
        red.push("the last backup did not succeed".into());
    }
    if s.last_drill_status.as_deref() == Some("failed") {
        red.push("the last drill failed".into());
    }
    if s.rto_breached {
        red.push("the last drill took longer than the RTO objective".into());
    }
    if !s.overdue_signoffs.is_empty() {
        red.push(format!("{} sign-off(s) overdue", s.overdue_signoffs.len()));
    }
    if s.last_backup_status.is_none() {
        amber.push("never backed up".into());
    }
    if s.last_drill_status.is_none() {
        amber.push("never drilled".into());
    }
    if s.pending_signoffs.len() > s.overdue_signoffs.len() {
        amber.push(format!(
            "{} drill(s) awaiting sign-off",
            s.pending_signoffs.len() - s.overdue_signoffs.len()
        ));
    }
    for copy in s.copies.iter().filter(|c| c.rpo_breached) {
        amber.push(format!(
            "copy `{}` lags beyond the RPO objective",
            copy.repository
        ));
    }
    if let Some(v) = s.verification.as_ref().filter(|v| v.packs_never_read > 0) {
        amber.push(format!(
            "{} of {} packs never read by a check",
            v.packs_never_read, v.packs
        ));
    }
    if !red.is_empty() {
        red.extend(amber);
        ("red", red)
    } else if !amber.is_empty() {
        ("amber", amber)
    } else {
        ("green", Vec::new())
    }
}

pub(super) fn card(s: &PolicyStatus, now: jiff::Timestamp) -> String {
    let (state, why) = verdict(s);
    let mut out = String::new();
    let _ = write!(
        out,
        "<li class=\"card {state}\" aria-labelledby=\"policy-{name}\"><h2 id=\"policy-{name}\"><a href=\"/ui/policies/{name}\">{name}</a></h2>\
         <p class=\"state {state}\">{state}</p><dl>",
        name = escape(&s.policy),
    );
    let mut row = |label: &str, value: String| {
        let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", escape(label), escape(&value));
    };
    row("source", s.source_kind.clone());
    row(
        "last backup",
        match &s.last_backup_status {
            Some(status) => format!("{status}, {}", age(s.last_backup_finished, now)),
            None => "never".into(),
        },
    );
    row(
        "next backup",
        if s.backup_on_change {
            "on change".into()
        } else {
            s.next_backup
                .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_else(|| "not scheduled".into())
        },
    );
    row(
        "RPO exposure",
        match (s.rpo_exposure_seconds, s.rpo_objective_seconds) {
            (None, _) => "none yet (no backup)".into(),
            (e, None) => format!("{} (no objective)", span(e)),
            (e, o) => format!("{} against {}", span(e), span(o)),
        },
    );
    let mut out_link = String::new();
    if let Some(id) = &s.last_drill_id {
        out_link = format!(
            "<p><a href=\"/ui/drills/{}\">Last drill's report</a></p>",
            escape(id)
        );
    }
    row(
        "last drill",
        match &s.last_drill_status {
            Some(status) => format!(
                "{status}, RTO {} against {}",
                s.last_drill_rto_seconds
                    .map(|r| crate::drill::short_duration(Duration::from_secs_f64(r.max(0.0))))
                    .unwrap_or_else(|| "none (not restored)".into()),
                span(s.rto_objective_seconds)
            ),
            None => "never".into(),
        },
    );
    row(
        "sign-offs",
        match (s.pending_signoffs.len(), s.overdue_signoffs.len()) {
            (0, _) => "none pending".into(),
            (p, 0) => format!("{p} pending"),
            (p, o) => format!("{p} pending, {o} overdue"),
        },
    );
    for copy in &s.copies {
        row(
            &format!("copy {}", copy.repository),
            format!("RPO exposure {}", span(copy.rpo_exposure_seconds)),
        );
    }
    if let Some(v) = &s.verification {
        row(
            "verified",
            match v.every_pack_read_within_seconds {
                Some(w) => format!("every pack read within {}", span(Some(w))),
                None => format!("{} of {} packs never read", v.packs_never_read, v.packs),
            },
        );
    }
    let _ = write!(out, "</dl>{out_link}");
    if !why.is_empty() {
        let _ = write!(out, "<ul class=\"why\">");
        for w in why {
            let _ = write!(out, "<li>{}</li>", escape(&w));
        }
        let _ = write!(out, "</ul>");
    }
    let _ = write!(out, "</li>");
    out
}

/// `GET /ui`: the overview for a signed-in browser; the sign-in page otherwise (a script,
/// which does not ask for HTML, gets the API's JSON 401).
pub async fn overview(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let Some((_, session)) = session(&state, &headers) else {
        if wants_html(&headers) {
            return sign_in_page(StatusCode::UNAUTHORIZED, None);
        }
        return crate::api::unauthorized().into_response();
    };
    let now = jiff::Timestamp::now();
    let policies: Vec<crate::policy::Policy> = state
        .policies
        .read()
        .expect("policies lock")
        .values()
        .cloned()
        .collect();
    let statuses =
        match crate::status::collect(policies.iter(), &state.catalog, &state.config.daemon, now)
            .await
        {
            Ok(statuses) => statuses,
            Err(e) => {
                return page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Overview",
                    Some((&session, "overview")),
                    &format!(
                        "<p class=\"error\">The catalog could not be read: {}</p>",
                        escape(&e.to_string())
                    ),
                )
            }
        };
    let running: Vec<backstop_catalog::Run> = state
        .catalog
        .runs(None, 200)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.status == backstop_catalog::RunStatus::Running)
        .collect();
    let counts = |state: &str| statuses.iter().filter(|s| verdict(s).0 == state).count();
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Overview</h1><p>{} policies: <span class=\"state green\">{} green</span>, \
         <span class=\"state amber\">{} amber</span>, <span class=\"state red\">{} red</span>. As of {}.</p>\
         <ul class=\"legend\" aria-label=\"Legend\"><li><span class=\"state green\">green</span>: backed up within the RPO, last drill passed within the RTO, nothing pending</li>\
         <li><span class=\"state amber\">amber</span>: something to look at (never drilled, sign-offs pending, a copy lagging, packs never verified)</li>\
         <li><span class=\"state red\">red</span>: an objective breached, a backup or drill failing, a sign-off overdue</li></ul>",
        statuses.len(),
        counts("green"),
        counts("amber"),
        counts("red"),
        now.strftime("%Y-%m-%d %H:%M:%S UTC")
    );
    let _ = write!(body, "<h2>Running jobs</h2>");
    if running.is_empty() {
        let _ = write!(body, "<p class=\"muted\">None.</p>");
    } else {
        let _ = write!(body, "<ul>");
        for r in &running {
            // A backup in this daemon shows its counters; other jobs, and jobs of other
            // daemons, their elapsed time.
            let progress = match state.live.of(&r.policy).filter(|_| r.kind == "backup") {
                Some((files, read, _)) => {
                    let previous = state
                        .catalog
                        .snapshots(Some(&r.policy))
                        .await
                        .ok()
                        .and_then(|s| s.last().map(|s| s.bytes));
                    format!(
                        ": {}",
                        crate::jobs::live::progress_words(files, read, previous)
                    )
                }
                None => String::new(),
            };
            let _ = write!(
                body,
                "<li class=\"job\">{} of <a href=\"/ui/policies/{}\">{}</a> on {}, running for {}{}</li>",
                escape(&r.kind),
                escape(&r.policy),
                escape(&r.policy),
                escape(&r.host),
                span(Some(
                    now.duration_since(r.started_at).as_secs().max(0) as u64
                )),
                escape(&progress)
            );
        }
        let _ = write!(body, "</ul>");
    }
    let _ = write!(body, "<h2>Policies</h2><ul class=\"cards\">");
    for s in &statuses {
        body.push_str(&card(s, now));
    }
    let _ = write!(body, "</ul>");
    page(
        StatusCode::OK,
        "Overview",
        Some((&session, "overview")),
        &body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::PolicyStatus;

    fn status() -> PolicyStatus {
        PolicyStatus {
            policy: "site".into(),
            daemon_running: true,
            source_kind: "files".into(),
            last_backup_status: Some("succeeded".into()),
            last_backup_finished: None,
            last_backup_error: None,
            last_success: None,
            next_backup: None,
            backup_on_change: false,
            rpo_exposure_seconds: Some(60),
            rpo_objective_seconds: Some(3600),
            rpo_breached: false,
            last_drill_status: Some("passed".into()),
            last_drill_id: None,
            last_drill_finished: None,
            last_drill_rto_seconds: Some(1.5),
            rto_objective_seconds: Some(600),
            rto_breached: false,
            last_passed_drill: None,
            next_drill: None,
            pending_signoffs: vec![],
            overdue_signoffs: vec![],
            rpo_worst_exposure_seconds: None,
            rpo_breaches: 0,
            copies: vec![],
            verification: None,
        }
    }

    /// Green only with nothing to look at; amber for what waits; red for a breach or a
    /// failure, with every reason listed.
    #[test]
    fn a_policy_is_green_amber_or_red_with_its_reasons() {
        assert_eq!(verdict(&status()), ("green", vec![]));
        let pending = PolicyStatus {
            pending_signoffs: vec!["d1".into()],
            ..status()
        };
        assert_eq!(verdict(&pending).0, "amber");
        let never = PolicyStatus {
            last_backup_status: None,
            last_drill_status: None,
            ..status()
        };
        assert_eq!(
            verdict(&never),
            (
                "amber",
                vec!["never backed up".to_string(), "never drilled".to_string()]
            )
        );
        let breached = PolicyStatus {
            rpo_breached: true,
            pending_signoffs: vec!["d1".into(), "d2".into()],
            overdue_signoffs: vec!["d1".into()],
            ..status()
        };
        let (state, why) = verdict(&breached);
        assert_eq!(state, "red");
        assert_eq!(why.len(), 3, "{why:?}");
    }
}

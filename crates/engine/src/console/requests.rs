//! Restore requests in the browser: a recovery owner asks, an approver who is not the
//! requester approves or rejects, an operator (or the requester) runs it, and everyone
//! follows it to its end. Each action goes through the same functions as the API
//! (`api::new_request`, `api::decide`, `api::start_request`), so that the roles, four eyes,
//! restore safety and the audit log are the API's own.

use std::fmt::Write;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use backstop_catalog::{RequestStatus, RestoreRequest};
use serde::Deserialize;

use super::*;
use crate::api::access::Role;
use crate::api::{error_message, NewRequest};

/// How many requests the list shows, newest first.
const LISTED: u32 = 200;
/// How often a request's page reloads itself while the request is under way.
const FOLLOW_SECONDS: u32 = 2;

fn status_class(status: RequestStatus) -> &'static str {
    match status {
        RequestStatus::Succeeded => "green",
        RequestStatus::Pending | RequestStatus::Approved | RequestStatus::Running => "amber",
        RequestStatus::Rejected | RequestStatus::Expired | RequestStatus::Failed => "red",
    }
}

fn status_html(status: RequestStatus) -> String {
    format!(
        "<span class=\"state {}\">{}</span>",
        status_class(status),
        status.as_str()
    )
}

/// `GET /ui/requests`: every request, newest first, and for a recovery owner the form to
/// ask for one.
pub async fn requests_page(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let Some((_, session)) = session(&state, &headers) else {
        return sign_in_page(StatusCode::UNAUTHORIZED, None);
    };
    if let Err(e) = crate::api::expire(&state, jiff::Timestamp::now()).await {
        tracing::warn!(error = %e, "expiring restore requests");
    }
    let requests = match state.catalog.requests(LISTED).await {
        Ok(requests) => requests,
        Err(e) => {
            return refusal(
                &session,
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("The catalog could not be read: {e}"),
                ("/ui", "Back to the overview"),
            )
        }
    };
    let mut body = String::from("<h1>Restore requests</h1>");
    body.push_str(&new_request_form(&state, &session).await);
    let _ = write!(body, "<h2>Requests</h2>");
    let rows: Vec<Vec<String>> = requests
        .iter()
        .map(|r| {
            vec![
                format!(
                    "<a href=\"/ui/requests/{0}\">{0}</a><br><span class=\"muted\">{1}</span>",
                    escape(&r.id),
                    escape(&when(r.created_at))
                ),
                format!("<a href=\"/ui/policies/{0}\">{0}</a>", escape(&r.policy)),
                escape(&r.requester),
                status_html(r.status),
                format!("<code>{}</code>", escape(&r.target)),
                escape(&r.reason),
            ]
        })
        .collect();
    body.push_str(&table(
        "Restore requests",
        &[
            "request",
            "policy",
            "requester",
            "status",
            "target",
            "reason",
        ],
        &rows,
    ));
    page(
        StatusCode::OK,
        "Restore requests",
        Some((&session, "requests")),
        &body,
    )
}

/// The form to ask for a restore, offered for the policies the caller may ask for (as a
/// recovery owner, the ones it owns); a note for everyone else.
async fn new_request_form(state: &ApiState, session: &Session) -> String {
    let policies: Vec<crate::policy::Policy> = state
        .policies
        .read()
        .expect("policies lock")
        .values()
        .filter(|p| {
            access::allowed(&session.caller, access::Action::RequestRestore, Some(p)).is_ok()
        })
        .cloned()
        .collect();
    if policies.is_empty() {
        return format!(
            "<p class=\"muted\">Restores are asked for by a policy's recovery owner; as {} you {}.</p>",
            escape(session.caller.role.as_str()),
            match session.caller.role {
                Role::Approver => "approve or reject them",
                Role::Operator => "run approved ones",
                Role::RecoveryOwner => "own no policy here",
                Role::Auditor => "read them",
            }
        );
    }
    let mut out = String::from(
        "<h2>Ask for a restore</h2><form class=\"stack\" method=\"post\" action=\"/ui/requests\">",
    );
    out.push_str(&csrf_field(session));
    let _ = write!(
        out,
        "<label for=\"policy\">Policy</label><select id=\"policy\" name=\"policy\" required>"
    );
    for p in &policies {
        let _ = write!(out, "<option>{}</option>", escape(&p.name));
    }
    let _ = write!(out, "</select>");
    // Recent snapshots as suggestions (no script: a datalist).
    let _ = write!(out, "<datalist id=\"snapshots\">");
    for p in &policies {
        let snapshots = state
            .catalog
            .snapshots(Some(&p.name))
            .await
            .unwrap_or_default();
        for s in snapshots
            .iter()
            .filter(|s| s.repository == p.repository)
            .rev()
            .take(20)
        {
            let _ = write!(
                out,
                "<option value=\"{}\">{} · {}</option>",
                escape(&s.id[..s.id.len().min(16)]),
                escape(&p.name),
                escape(&when(s.data_point))
            );
        }
    }
    let _ = write!(
        out,
        "</datalist>\
         <label for=\"snapshot\">Snapshot (an id or prefix; leave both this and the point in time empty for the newest)</label>\
         <input id=\"snapshot\" name=\"snapshot\" list=\"snapshots\" autocomplete=\"off\">\
         <label for=\"point_in_time\">Or a point in time (UTC, 2026-11-30T12:00:00Z): the newest snapshot at or before it</label>\
         <input id=\"point_in_time\" name=\"point_in_time\" autocomplete=\"off\">\
         <label for=\"target\">Target (an absolute path, or a postgres:// or mysql:// URL without a password)</label>\
         <input id=\"target\" name=\"target\" required autocomplete=\"off\">\
         <label for=\"reason\">Reason (the approver reads it; the audit log keeps it)</label>\
         <input id=\"reason\" name=\"reason\" required autocomplete=\"off\">\
         <button type=\"submit\">Ask for approval</button></form>"
    );
    out
}

#[derive(Deserialize)]
pub struct RequestForm {
    #[serde(default)]
    policy: String,
    #[serde(default)]
    snapshot: String,
    #[serde(default)]
    point_in_time: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    reason: String,
}

/// `POST /ui/requests`: asks for a restore, as the API's `POST /api/v1/requests` does.
pub async fn create_request(
    State(state): State<ApiState>,
    Acting { session, form, .. }: Acting<RequestForm>,
) -> Response {
    let back = ("/ui/requests", "Back to the requests");
    let given = |text: &str| Some(text.trim().to_string()).filter(|t| !t.is_empty());
    let (snapshot, point_in_time) = match (given(&form.snapshot), given(&form.point_in_time)) {
        // Neither: the newest snapshot as of now.
        (None, None) => (None, Some(jiff::Timestamp::now().to_string())),
        pair => pair,
    };
    let asked = NewRequest {
        policy: form.policy,
        snapshot,
        point_in_time,
        target: form.target.trim().to_string(),
        reason: form.reason.trim().to_string(),
        allow_overlap: false,
        not_before: None,
    };
    match crate::api::new_request(&state, &session.caller, asked).await {
        Ok(r) => see_other(&format!("/ui/requests/{}", r.id)),
        Err(e) => refusal(&session, e.0, &error_message(&e), back),
    }
}

/// `GET /ui/requests/{id}`: the request, its steps from the audit log, and what the caller
/// may do with it now; it reloads itself while the request is under way.
pub async fn request_page(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some((_, session)) = session(&state, &headers) else {
        return sign_in_page(StatusCode::UNAUTHORIZED, None);
    };
    if let Err(e) = crate::api::expire(&state, jiff::Timestamp::now()).await {
        tracing::warn!(error = %e, "expiring restore requests");
    }
    let back = ("/ui/requests", "Back to the requests");
    let r = match state.catalog.request(&id).await {
        Ok(r) => r,
        Err(e) => return refusal(&session, StatusCode::NOT_FOUND, &e.detail(), back),
    };
    let events = state
        .catalog
        .audit_events_about(&r.id, 100)
        .await
        .unwrap_or_default();
    let mut body = format!(
        "<h1>Restore request {}</h1><p>{}</p><dl>",
        escape(&r.id),
        status_html(r.status)
    );
    let mut row = |label: &str, value: String| {
        let _ = write!(body, "<dt>{}</dt><dd>{value}</dd>", escape(label));
    };
    row(
        "policy",
        format!("<a href=\"/ui/policies/{0}\">{0}</a>", escape(&r.policy)),
    );
    row(
        "snapshot",
        match (&r.snapshot_id, r.point_in_time) {
            (Some(s), _) => format!("<code>{}</code>", escape(s)),
            (None, Some(t)) => format!("the newest at or before {}", escape(&t.to_string())),
            (None, None) => "—".into(),
        },
    );
    row("target", format!("<code>{}</code>", escape(&r.target)));
    row("reason", escape(&r.reason));
    row(
        "asked by",
        format!(
            "{} on {}",
            escape(&r.requester),
            escape(&when(r.created_at))
        ),
    );
    if r.status == RequestStatus::Pending {
        row("expires", escape(&when(r.expires_at)));
    }
    if let (Some(by), Some(at)) = (&r.decided_by, r.decided_at) {
        row(
            "decided by",
            format!(
                "{} on {}{}",
                escape(by),
                escape(&when(at)),
                r.decision_comment
                    .as_deref()
                    .filter(|c| !c.is_empty())
                    .map(|c| format!(": {}", escape(c)))
                    .unwrap_or_default()
            ),
        );
    }
    if let Some(outcome) = &r.outcome {
        row("outcome", escape(outcome));
    }
    if let Some(finished) = r.finished_at {
        row("finished", escape(&when(finished)));
    }
    let _ = write!(body, "</dl>");
    body.push_str(&actions(&state, &session, &r));
    let _ = write!(body, "<h2>Steps, from the audit log</h2>");
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                format!(
                    "<a href=\"/ui/audit?after={}\">#{}</a>",
                    (e.seq - 1).max(0),
                    e.seq
                ),
                escape(&when(e.time)),
                escape(&e.kind),
                escape(&e.actor),
            ]
        })
        .collect();
    body.push_str(&table(
        "Steps of the request",
        &["event", "time", "what", "who"],
        &rows,
    ));
    let following = matches!(r.status, RequestStatus::Running);
    page_with(
        StatusCode::OK,
        &format!("Request {}", r.id),
        Some((&session, "requests")),
        &body,
        following.then_some(FOLLOW_SECONDS),
    )
}

/// What the caller may do with `r` now, as forms; or why not.
fn actions(state: &ApiState, session: &Session, r: &RestoreRequest) -> String {
    let policy = state
        .policies
        .read()
        .expect("policies lock")
        .get(&r.policy)
        .cloned();
    let caller = &session.caller;
    let requester = r.requester.eq_ignore_ascii_case(&caller.principal);
    let mut out = String::new();
    match r.status {
        RequestStatus::Pending => {
            if access::allowed(caller, access::Action::Decide, policy.as_ref()).is_err() {
                let _ = write!(
                    out,
                    "<p class=\"muted\">Awaiting an approver of policy {}.</p>",
                    escape(&r.policy)
                );
            } else if requester {
                let _ = write!(
                    out,
                    "<p class=\"muted\">You asked for this request, so you cannot also decide it: another approver must.</p>"
                );
            } else {
                let _ = write!(
                    out,
                    "<h2>Decide</h2><div class=\"actions\">\
                     <form class=\"stack\" method=\"post\" action=\"/ui/requests/{0}/approve\">{1}\
                     <label for=\"approve-comment\">Comment</label><input id=\"approve-comment\" name=\"comment\" autocomplete=\"off\">\
                     <button type=\"submit\">Approve</button></form>\
                     <form class=\"stack\" method=\"post\" action=\"/ui/requests/{0}/reject\">{1}\
                     <label for=\"reject-comment\">Why not</label><input id=\"reject-comment\" name=\"comment\" autocomplete=\"off\">\
                     <button type=\"submit\">Reject</button></form></div>",
                    escape(&r.id),
                    csrf_field(session)
                );
            }
        }
        RequestStatus::Approved => {
            let may = access::allowed(caller, access::Action::Run { requester }, policy.as_ref());
            let now = jiff::Timestamp::now();
            match (may, r.not_before.filter(|t| *t > now)) {
                (Ok(()), None) => {
                    let _ = write!(
                        out,
                        "<h2>Run</h2><form method=\"post\" action=\"/ui/requests/{}/run\">{}\
                         <button type=\"submit\">Run the restore now</button></form>",
                        escape(&r.id),
                        csrf_field(session)
                    );
                }
                (_, Some(t)) => {
                    let _ = write!(
                        out,
                        "<p class=\"muted\">Approved; it runs by itself from {}.</p>",
                        escape(&when(t))
                    );
                }
                (Err(_), None) => {
                    let _ = write!(
                        out,
                        "<p class=\"muted\">Approved; an operator or the requester runs it.</p>"
                    );
                }
            }
        }
        RequestStatus::Running => {
            let _ = write!(
                out,
                "<p class=\"muted\" role=\"status\">Running; this page follows it (it reloads every {FOLLOW_SECONDS} s).</p>"
            );
        }
        _ => {}
    }
    out
}

#[derive(Deserialize)]
pub struct DecisionForm {
    #[serde(default)]
    comment: String,
}

/// `POST /ui/requests/{id}/approve` and `/reject`: an approver of the policy who did not ask
/// for it decides, as the API's approve and reject do.
pub async fn decide_request(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    uri: axum::http::Uri,
    Acting { session, form, .. }: Acting<DecisionForm>,
) -> Response {
    let back_to = format!("/ui/requests/{id}");
    let back = (back_to.as_str(), "Back to the request");
    // The route says which: `…/approve` or `…/reject`.
    let approve = uri.path().ends_with("/approve");
    let comment = Some(form.comment.trim().to_string()).filter(|c| !c.is_empty());
    match crate::api::decide(&state, &session.caller, &id, comment, approve).await {
        Ok(_) => see_other(&back_to),
        Err(e) => refusal(&session, e.0, &error_message(&e), back),
    }
}

/// `POST /ui/requests/{id}/run`: starts an approved request (an operator, or its requester
/// when they own the policy); its page then follows it.
pub async fn run_request(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Acting { session, .. }: Acting<NoFields>,
) -> Response {
    let back_to = format!("/ui/requests/{id}");
    match crate::api::start_request(&state, &session.caller, &id).await {
        Ok(_) => see_other(&back_to),
        Err(e) => refusal(
            &session,
            e.0,
            &error_message(&e),
            (back_to.as_str(), "Back to the request"),
        ),
    }
}

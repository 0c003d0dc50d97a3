//! The evidence view, the audit chain, and signed evidence packs to download.

use std::fmt::Write;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::*;

#[derive(Deserialize)]
pub struct Period {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /ui/evidence`: the evidence view, live (the last 30 days unless `from`/`to` say).
pub async fn evidence(
    State(state): State<ApiState>,
    headers: HeaderMap,
    bearer: Result<Caller, crate::api::ApiError>,
    Query(period_given): Query<Period>,
) -> Response {
    // A session, or (for scripts) a bearer token: every role may read the evidence.
    let session = match (session(&state, &headers), bearer) {
        (Some((_, session)), _) => session,
        (None, Ok(caller)) => Session {
            caller,
            csrf: String::new(),
            expires: Instant::now(),
        },
        (None, Err(_)) if wants_html(&headers) => {
            return sign_in_page(StatusCode::UNAUTHORIZED, None)
        }
        (None, Err(e)) => return e.into_response(),
    };
    let (from, to) = match period(&period_given, jiff::Timestamp::now()) {
        Ok(p) => p,
        Err(e) => {
            return page(
                StatusCode::BAD_REQUEST,
                "Evidence",
                Some((&session, "evidence")),
                &format!("<p class=\"error\">{}</p>", escape(&e)),
            )
        }
    };
    let policies = all_policies(&state);
    let refs: Vec<&crate::policy::Policy> = policies.iter().collect();
    match crate::evidence::collect(&state.config, &state.catalog, &refs, from, to).await {
        Ok(evidence) => {
            let mut response =
                axum::response::Html(crate::evidence::html::render(&evidence)).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Evidence",
            Some((&session, "evidence")),
            &format!("<p class=\"error\">{}</p>", escape(&e.to_string())),
        ),
    }
}

/// The period a page or a pack covers: `from` and `to` as given (dates or UTC timestamps),
/// by default the last 30 days.
fn period(
    given: &Period,
    now: jiff::Timestamp,
) -> Result<(jiff::Timestamp, jiff::Timestamp), String> {
    let parse = |text: &Option<String>, end: bool, default: jiff::Timestamp| match text
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        Some(t) => crate::evidence::parse_when(t, end).map_err(|e| e.to_string()),
        None => Ok(default),
    };
    let from = parse(
        &given.from,
        false,
        now - jiff::SignedDuration::try_from(crate::status::HISTORY).unwrap_or_default(),
    )?;
    let to = parse(&given.to, true, now)?;
    Ok((from, to))
}

fn all_policies(state: &ApiState) -> Vec<crate::policy::Policy> {
    state
        .policies
        .read()
        .expect("policies lock")
        .values()
        .cloned()
        .collect()
}

#[derive(Deserialize)]
pub struct AuditQuery {
    after: Option<i64>,
}

/// How many audit events a page shows.
const EVENTS_PER_PAGE: i64 = 100;

/// `GET /ui/audit`: the audit chain's verification state (in itself and against the
/// repositories' anchors), the installation's public key, a signed evidence pack to
/// download, and the events themselves, a page at a time (the newest by default).
pub async fn audit_page(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Response {
    let Some((_, session)) = session(&state, &headers) else {
        return sign_in_page(StatusCode::UNAUTHORIZED, None);
    };
    let unavailable = |e: crate::error::EngineError| {
        refusal(
            &session,
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("The audit log could not be read: {e}"),
            ("/ui", "Back to the overview"),
        )
    };
    let chain = match crate::evidence::audit_evidence(&state.config, &state.catalog).await {
        Ok(chain) => chain,
        Err(e) => return unavailable(e),
    };
    let key = match crate::evidence::pack::signing_key(&state.config.data_dir) {
        Ok(key) => crate::evidence::pack::public_key_hex(&key),
        Err(e) => return unavailable(e),
    };
    let total = chain.events.map(|n| n as i64);
    let after = q
        .after
        .unwrap_or_else(|| (total.unwrap_or(0) - EVENTS_PER_PAGE).max(0))
        .max(0);
    let events = match state
        .catalog
        .audit_events(after, EVENTS_PER_PAGE as u32)
        .await
    {
        Ok(events) => events,
        Err(e) => return unavailable(e.into()),
    };
    let mut body = String::from("<h1>Audit</h1><h2>The chain</h2>");
    let (class, verdict) = match chain.status.as_str() {
        "intact" => (
            "green",
            format!(
                "Intact: {} events, each holding the hash of the one before; head <code>{}</code>; {} anchor(s) in the repositories agree.",
                chain.events.unwrap_or(0),
                escape(chain.head.as_deref().unwrap_or("")),
                chain.anchors
            ),
        ),
        "contradicted" => (
            "red",
            format!(
                "Contradicted: consistent in itself, but the repositories' anchors disagree (the catalog was rewritten): {}",
                escape(&chain.anchor_problems.join("; "))
            ),
        ),
        _ => (
            "red",
            format!(
                "Broken at event #{}: {}",
                chain.broken_at.unwrap_or(0),
                escape(chain.reason.as_deref().unwrap_or(""))
            ),
        ),
    };
    let _ = write!(
        body,
        "<p class=\"chain\"><span class=\"state {class}\">{}</span> {verdict}</p>",
        escape(&chain.status)
    );
    if !chain.anchors_unread.is_empty() {
        let _ = write!(
            body,
            "<p class=\"muted\">Anchors not checked in: {}.</p>",
            escape(&chain.anchors_unread.join("; "))
        );
    }
    let today = jiff::Timestamp::now();
    let month_ago =
        today - jiff::SignedDuration::try_from(crate::status::HISTORY).unwrap_or_default();
    let _ = write!(
        body,
        "<h2>Evidence pack</h2><p>A signed pack (evidence.json, evidence.html, the manifest and its signature) as a tar archive; \
         check it anywhere with <code>backstop evidence verify PACK.tar --public-key KEY</code>.</p>\
         <form class=\"stack\" method=\"post\" action=\"/ui/evidence/pack\">{}\
         <label for=\"pack-from\">From (a date or a UTC timestamp)</label><input id=\"pack-from\" name=\"from\" value=\"{}\" required>\
         <label for=\"pack-to\">To</label><input id=\"pack-to\" name=\"to\" value=\"{}\" required>\
         <button type=\"submit\">Download the signed evidence pack</button></form>\
         <h2>The installation's public key</h2><p>Evidence packs are signed with it (ed25519). Give it to auditors through another channel than the packs.</p>\
         <pre id=\"public-key\">{}</pre>",
        csrf_field(&session),
        month_ago.strftime("%Y-%m-%d"),
        today.strftime("%Y-%m-%d"),
        escape(&key)
    );
    let _ = write!(body, "<h2>Events</h2>");
    let mut pages = String::new();
    if after > 0 {
        let _ = write!(
            pages,
            "<a href=\"/ui/audit?after={}\">Older events</a> ",
            (after - EVENTS_PER_PAGE).max(0)
        );
    }
    if let Some(last) = events.last().filter(|e| total.is_some_and(|t| e.seq < t)) {
        let _ = write!(
            pages,
            "<a href=\"/ui/audit?after={}\">Newer events</a>",
            last.seq
        );
    }
    let _ = write!(body, "<p>{pages}</p>");
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            // `key: value` pairs read better than JSON; nulls say nothing.
            let detail = match &e.detail {
                serde_json::Value::Object(map) => map
                    .iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| match v {
                        serde_json::Value::String(text) => format!("{k}: {text}"),
                        other => format!("{k}: {other}"),
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                other => other.to_string(),
            };
            vec![
                format!("#{}", e.seq),
                escape(&e.time.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()),
                escape(&e.actor),
                escape(&e.kind),
                format!("<code>{}</code>", escape(&e.subject)),
                escape(&detail),
            ]
        })
        .collect();
    body.push_str(&table_with_class(
        "Audit events",
        "events",
        &["event", "time", "who", "what", "subject", "detail"],
        &rows,
    ));
    page(StatusCode::OK, "Audit", Some((&session, "audit")), &body)
}

#[derive(Deserialize)]
pub struct PackForm {
    from: Option<String>,
    to: Option<String>,
}

/// `POST /ui/evidence/pack`: a signed evidence pack of every policy for the period, as a tar
/// download; the export is recorded in the audit log under the signed-in principal.
pub async fn evidence_pack(
    State(state): State<ApiState>,
    Acting { session, form, .. }: Acting<PackForm>,
) -> Response {
    let back = ("/ui/audit", "Back to the audit page");
    let given = Period {
        from: form.from,
        to: form.to,
    };
    let (from, to) = match period(&given, jiff::Timestamp::now()) {
        Ok(p) => p,
        Err(e) => return refusal(&session, StatusCode::BAD_REQUEST, &e, back),
    };
    let policies = all_policies(&state);
    let refs: Vec<&crate::policy::Policy> = policies.iter().collect();
    let name = format!(
        "backstop-evidence-{}-{}",
        from.strftime("%Y%m%d"),
        to.min(jiff::Timestamp::now()).strftime("%Y%m%d")
    );
    let catalog = state
        .catalog
        .clone()
        .with_actor(session.caller.principal.clone());
    let exported = crate::evidence::pack::export(
        &state.config,
        &catalog,
        &refs,
        (from, to),
        &format!("{name}.tar (console download)"),
        |evidence, key| Ok(crate::evidence::pack::tar(&name, evidence, key)),
        |_| {},
    )
    .await;
    match exported {
        Ok((archive, _, _)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/x-tar".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}.tar\""),
                ),
                (header::CACHE_CONTROL, "no-store".to_string()),
            ],
            archive,
        )
            .into_response(),
        Err(e) => refusal(
            &session,
            StatusCode::SERVICE_UNAVAILABLE,
            &e.to_string(),
            back,
        ),
    }
}

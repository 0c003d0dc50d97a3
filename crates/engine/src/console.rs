//! The web console at `/ui`, for the people around the backups: sign-in with an API token
//! held in a session cookie, then an overview of every policy (the morning check), and the
//! evidence view. Server-rendered HTML with no script and no asset from outside the daemon,
//! so the binary stays one file that works offline.
//!
//! Sessions live in the daemon's memory: the cookie (`HttpOnly`, `SameSite=Strict`, scoped to
//! `/ui`, expiring with the session) carries a random id, never the token. Every action is
//! a POST that must carry the session's CSRF token and come from the console's own origin;
//! a session acts with its token's role, as the API would.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;

use crate::api::access::{self, Caller};
use crate::api::ApiState;
use crate::evidence::html::escape;
use crate::status::PolicyStatus;

/// The session cookie's name.
pub const COOKIE: &str = "backstop_session";
/// How long a session lasts by default (`[api] session_lifetime`).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(8 * 3600);

#[derive(Debug, Clone)]
struct Session {
    caller: Caller,
    csrf: String,
    expires: Instant,
}

/// The signed-in sessions of this daemon.
#[derive(Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<String, Session>>>,
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

impl Sessions {
    fn create(&self, caller: Caller, lifetime: Duration) -> (String, Session) {
        let id = random_hex();
        let session = Session {
            caller,
            csrf: random_hex(),
            expires: Instant::now() + lifetime,
        };
        let mut sessions = self.inner.lock().expect("sessions lock");
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(id.clone(), session.clone());
        (id, session)
    }

    /// The live session `id` names; an expired one is forgotten.
    fn get(&self, id: &str) -> Option<Session> {
        let mut sessions = self.inner.lock().expect("sessions lock");
        match sessions.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                sessions.remove(id);
                None
            }
            None => None,
        }
    }

    fn remove(&self, id: &str) {
        self.inner.lock().expect("sessions lock").remove(id);
    }
}

fn lifetime(state: &ApiState) -> Duration {
    state
        .config
        .api
        .as_ref()
        .and_then(|a| a.session_lifetime)
        .unwrap_or(DEFAULT_LIFETIME)
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            kv.trim()
                .strip_prefix(&format!("{COOKIE}="))
                .map(String::from)
        })
}

fn session(state: &ApiState, headers: &HeaderMap) -> Option<(String, Session)> {
    let id = session_id(headers)?;
    let session = state.sessions.get(&id)?;
    Some((id, session))
}

/// A POST from another site (or a page that is not the console) is refused before it is
/// read: the browser says where it comes from in `Origin` (or `Sec-Fetch-Site`).
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site != "same-origin" && site != "none" {
            return false;
        }
    }
    match (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) {
        (Some(origin), Some(host)) => {
            origin
                .strip_prefix("http://")
                .or(origin.strip_prefix("https://"))
                == Some(host)
        }
        // Not a browser's cross-site request (browsers send Origin on every POST).
        (None, _) => true,
        (Some(_), None) => false,
    }
}

/// A page: the console's frame, its security headers, no caching.
fn page(status: StatusCode, title: &str, nav: Option<(&Session, &str)>, body: &str) -> Response {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Backstop</title><style>{STYLE}</style></head><body>",
        escape(title)
    );
    if let Some((session, current)) = nav {
        let _ = write!(
            out,
            "<header><nav aria-label=\"Console\"><a href=\"/ui\"{}>Overview</a> \
             <a href=\"/ui/evidence\"{}>Evidence</a></nav>\
             <form method=\"post\" action=\"/ui/sign-out\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <span class=\"who\">{} ({})</span> <button type=\"submit\">Sign out</button></form></header>",
            if current == "overview" { " aria-current=\"page\"" } else { "" },
            if current == "evidence" { " aria-current=\"page\"" } else { "" },
            escape(&session.csrf),
            escape(&session.caller.principal),
            escape(session.caller.role.as_str()),
        );
    }
    let _ = write!(out, "<main>{body}</main></body></html>");
    let mut response = (status, axum::response::Html(out)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

const STYLE: &str = "\
:root{--ok:#1a7f37;--warn:#9a6700;--bad:#c5221f;--ink:#1f2328;--muted:#57606a;--line:#d0d7de}\
*{box-sizing:border-box}body{font-family:system-ui,sans-serif;color:var(--ink);margin:0;line-height:1.45}\
header{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;justify-content:space-between;padding:.6rem 1rem;border-bottom:1px solid var(--line)}\
nav a{margin-right:1rem;color:var(--ink)}nav a[aria-current]{font-weight:700}\
main{max-width:80rem;margin:0 auto;padding:1rem}h1{font-size:1.4rem}\
.who{color:var(--muted)}button{font:inherit;padding:.3rem .8rem}\
a:focus,button:focus,input:focus{outline:3px solid #0969da;outline-offset:2px}\
.legend{display:flex;flex-wrap:wrap;gap:.5rem 1.5rem;padding:0;list-style:none}\
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,19rem),1fr));gap:1rem;padding:0;list-style:none}\
.card{border:1px solid var(--line);border-left:.5rem solid var(--line);border-radius:.4rem;padding:.7rem 1rem}\
.card.green{border-left-color:var(--ok)}.card.amber{border-left-color:var(--warn)}.card.red{border-left-color:var(--bad)}\
.card h2{font-size:1.1rem;margin:.1rem 0 .4rem;overflow-wrap:anywhere}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.15rem .8rem;margin:0}dt{color:var(--muted)}dd{margin:0;overflow-wrap:anywhere}\
.state{font-weight:700}.state.green{color:var(--ok)}.state.amber{color:var(--warn)}.state.red{color:var(--bad)}\
.why{margin:.4rem 0 0;padding-left:1.1rem}.muted{color:var(--muted)}\
.card h3{font-size:1rem;margin:.1rem 0 .3rem;overflow-wrap:anywhere}pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f6f8fa;padding:.4rem}\
textarea{width:100%;font:inherit;margin:.3rem 0 .6rem}label{display:block}\
.signin{max-width:26rem;margin:3rem auto}.signin input{width:100%;padding:.4rem;margin:.3rem 0 .8rem}\
.error{color:var(--bad)}";

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

fn span(seconds: Option<u64>) -> String {
    match seconds {
        None => "—".into(),
        Some(s) => crate::drill::short_duration(Duration::from_secs(s)),
    }
}

fn age(t: Option<jiff::Timestamp>, now: jiff::Timestamp) -> String {
    match t {
        None => "never".into(),
        Some(t) => format!(
            "{} ago ({})",
            span(Some(now.duration_since(t).as_secs().max(0) as u64)),
            t.strftime("%Y-%m-%d %H:%M UTC")
        ),
    }
}

fn card(s: &PolicyStatus, now: jiff::Timestamp) -> String {
    let (state, why) = verdict(s);
    let mut out = String::new();
    let _ = write!(
        out,
        "<li class=\"card {state}\" aria-labelledby=\"policy-{name}\"><h2 id=\"policy-{name}\">{name}</h2>\
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

const SIGN_IN: &str = "<div class=\"signin\"><h1>Backstop</h1>\
<p>Sign in with an API token (made on the daemon's host with <code>backstop token create</code>). \
It is exchanged for a session; it is not kept in the browser.</p>";

fn sign_in_page(status: StatusCode, message: Option<&str>) -> Response {
    let mut body = String::from(SIGN_IN);
    if let Some(message) = message {
        let _ = write!(
            body,
            "<p class=\"error\" role=\"alert\">{}</p>",
            escape(message)
        );
    }
    body.push_str(
        "<form method=\"post\" action=\"/ui/sign-in\"><label for=\"token\">API token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button></form></div>",
    );
    page(status, "Sign in", None, &body)
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
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
            let _ = write!(
                body,
                "<li>{} of <b>{}</b> on {}, running for {}</li>",
                escape(&r.kind),
                escape(&r.policy),
                escape(&r.host),
                span(Some(
                    now.duration_since(r.started_at).as_secs().max(0) as u64
                ))
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

#[derive(Deserialize)]
pub struct SignIn {
    token: String,
}

/// `POST /ui/sign-in`: a valid token starts a session (the cookie), then the overview.
pub async fn sign_in(
    State(state): State<ApiState>,
    headers: HeaderMap,
    form: Result<Form<SignIn>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return sign_in_page(StatusCode::UNAUTHORIZED, Some("Give an API token."));
    };
    if !same_origin(&headers) {
        return sign_in_page(
            StatusCode::FORBIDDEN,
            Some("Sign in from the console's own page."),
        );
    }
    let file = match access::load(&access::tokens_path(&state.config)) {
        Ok(file) => file,
        Err(e) => return sign_in_page(StatusCode::INTERNAL_SERVER_ERROR, Some(&e.to_string())),
    };
    let Some(caller) = access::authenticate(&file, &form.token) else {
        return sign_in_page(StatusCode::UNAUTHORIZED, Some("That token is not known."));
    };
    let lifetime = lifetime(&state);
    let (id, _) = state.sessions.create(caller, lifetime);
    let cookie = format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}",
        lifetime.as_secs()
    );
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/ui")]).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize)]
pub struct Action {
    csrf: Option<String>,
}

/// The session an action comes from, when the action is the console's own: same origin,
/// and the session's CSRF token.
fn acting_session(
    state: &ApiState,
    headers: &HeaderMap,
    csrf: Option<&str>,
) -> Result<(String, Session), Box<Response>> {
    let Some((id, session)) = session(state, headers) else {
        return Err(Box::new(sign_in_page(
            StatusCode::UNAUTHORIZED,
            Some("Your session has ended; sign in again."),
        )));
    };
    if !same_origin(headers) || csrf != Some(session.csrf.as_str()) {
        return Err(Box::new(page(
            StatusCode::FORBIDDEN,
            "Refused",
            Some((&session, "")),
            "<p class=\"error\">This action did not come from the console's own page (its CSRF token is missing or wrong), so it was refused.</p>",
        )));
    }
    Ok((id, session))
}

/// `POST /ui/sign-out`: ends the session.
pub async fn sign_out(
    State(state): State<ApiState>,
    headers: HeaderMap,
    form: Result<Form<Action>, axum::extract::rejection::FormRejection>,
) -> Response {
    let csrf = form.ok().and_then(|Form(f)| f.csrf);
    let (id, _) = match acting_session(&state, &headers, csrf.as_deref()) {
        Ok(s) => s,
        Err(refused) => return *refused,
    };
    state.sessions.remove(&id);
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/ui")]).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "backstop_session=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    response
}

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
    Query(period): Query<Period>,
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
    let now = jiff::Timestamp::now();
    let parse = |text: &Option<String>, end: bool, default: jiff::Timestamp| match text {
        Some(t) => crate::evidence::parse_when(t, end),
        None => Ok(default),
    };
    let from = parse(
        &period.from,
        false,
        now - jiff::SignedDuration::try_from(crate::status::HISTORY).unwrap_or_default(),
    );
    let to = parse(&period.to, true, now);
    let (Ok(from), Ok(to)) = (from, to) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Evidence",
            Some((&session, "evidence")),
            "<p class=\"error\">from and to are dates (2026-11-01) or UTC timestamps.</p>",
        );
    };
    let policies: Vec<crate::policy::Policy> = state
        .policies
        .read()
        .expect("policies lock")
        .values()
        .cloned()
        .collect();
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
    csrf: Option<String>,
    comment: Option<String>,
}

/// `POST /ui/drills/{id}/signoff`: the recovery owner signs a passed drill off, as the API
/// and the command line let them, and only them; audited under their name.
pub async fn sign_off(
    State(state): State<ApiState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    form: Result<Form<SignOffForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = form.ok().map(|Form(f)| f);
    let csrf = form.as_ref().and_then(|f| f.csrf.clone());
    let (_, session) = match acting_session(&state, &headers, csrf.as_deref()) {
        Ok(s) => s,
        Err(refused) => return *refused,
    };
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
        form.and_then(|f| f.comment).as_deref().unwrap_or(""),
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn only_the_consoles_own_origin_may_post() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        assert!(same_origin(&headers(&[
            ("origin", "http://127.0.0.1:8470"),
            ("host", "127.0.0.1:8470")
        ])));
        assert!(!same_origin(&headers(&[
            ("origin", "http://evil.example"),
            ("host", "127.0.0.1:8470")
        ])));
        assert!(!same_origin(&headers(&[
            ("origin", "null"),
            ("host", "127.0.0.1:8470")
        ])));
        assert!(!same_origin(&headers(&[
            ("sec-fetch-site", "cross-site"),
            ("host", "127.0.0.1:8470")
        ])));
        assert!(
            same_origin(&headers(&[("host", "127.0.0.1:8470")])),
            "not a browser"
        );
    }

    #[test]
    fn sessions_expire_and_end() {
        let sessions = Sessions::default();
        let caller = Caller {
            principal: "a@example.com".into(),
            role: crate::api::access::Role::Auditor,
        };
        let (id, session) = sessions.create(caller.clone(), Duration::from_secs(60));
        assert_eq!(sessions.get(&id).unwrap().csrf, session.csrf);
        sessions.remove(&id);
        assert!(sessions.get(&id).is_none());
        let (short, _) = sessions.create(caller, Duration::ZERO);
        assert!(
            sessions.get(&short).is_none(),
            "an expired session is refused"
        );
    }
}

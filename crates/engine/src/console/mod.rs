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

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;

use crate::api::access::{self, Caller};
use crate::api::ApiState;
use crate::evidence::html::escape;
use crate::status::PolicyStatus;

mod drill;
mod evidence;
mod overview;
mod policy;
mod requests;

pub use drill::{drill_page, sign_off};
pub use evidence::{audit_page, evidence, evidence_pack};
pub use overview::{overview, verdict};
pub use policy::policy_page;
pub use requests::{create_request, decide_request, request_page, requests_page, run_request};

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

/// `[api] public_url` as an origin (checked when the configuration was loaded).
fn public_origin(state: &ApiState) -> Option<String> {
    state
        .config
        .api
        .as_ref()
        .and_then(|a| a.public_origin().ok().flatten())
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
/// read: the browser says where it comes from in `Origin` (or `Sec-Fetch-Site`), which must
/// be `[api] public_url` when it is set, and otherwise the `Host` it asked.
fn same_origin(headers: &HeaderMap, public_origin: Option<&str>) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site != "same-origin" && site != "none" {
            return false;
        }
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if let (Some(origin), Some(public)) = (origin, public_origin) {
        return origin == public;
    }
    match (
        origin,
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
    page_with(status, title, nav, body, None)
}

/// A page that reloads itself every `refresh` seconds (to follow something under way
/// without a script).
fn page_with(
    status: StatusCode,
    title: &str,
    nav: Option<(&Session, &str)>,
    body: &str,
    refresh: Option<u32>,
) -> Response {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{}\
         <title>{} · Backstop</title><style>{STYLE}</style></head><body>",
        refresh
            .map(|s| format!("<meta http-equiv=\"refresh\" content=\"{s}\">"))
            .unwrap_or_default(),
        escape(title)
    );
    if let Some((session, current)) = nav {
        let _ = write!(out, "<header><nav aria-label=\"Console\">");
        for (href, name, key) in [
            ("/ui", "Overview", "overview"),
            ("/ui/requests", "Restore requests", "requests"),
            ("/ui/audit", "Audit", "audit"),
            ("/ui/evidence", "Evidence", "evidence"),
        ] {
            let current = if current == key {
                " aria-current=\"page\""
            } else {
                ""
            };
            let _ = write!(out, "<a href=\"{href}\"{current}>{name}</a> ");
        }
        let _ = write!(
            out,
            "</nav><form method=\"post\" action=\"/ui/sign-out\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <span class=\"who\">{} ({})</span> <button type=\"submit\">Sign out</button></form></header>",
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
.error{color:var(--bad)}\
table.rows{border-collapse:collapse;width:100%;table-layout:fixed;margin:.5rem 0}\
.rows th,.rows td{border:1px solid var(--line);padding:.3rem .5rem;text-align:left;vertical-align:top;overflow-wrap:anywhere}\
.rows th{background:#f6f8fa}\
svg{max-width:100%;height:auto;background:#fafbfd;border:1px solid var(--line)}\
form.stack{max-width:40rem}form.stack input,form.stack select{width:100%;font:inherit;padding:.35rem;margin:.2rem 0 .7rem}\
.actions{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:flex-end}.actions form{margin:0}\
code{overflow-wrap:anywhere}\
.events th:nth-child(1){width:4.5rem}.events th:nth-child(6){width:34%}\
@media (max-width:40rem){table.rows,.rows thead,.rows tbody,.rows tr,.rows td{display:block;width:100%}\
.rows thead{position:absolute;left:-9999px}.rows tr{border:1px solid var(--line);margin-bottom:.6rem}\
.rows td{border:none;border-top:1px solid var(--line)}.rows td::before{content:attr(data-label);display:block;color:var(--muted);font-size:.85rem}}";

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

/// A time as the console shows it.
fn when(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

/// A table that fits a phone: on a narrow screen each row becomes a card whose cells carry
/// their column's name (`data-label`). Cells are HTML, already escaped.
fn table(label: &str, columns: &[&str], rows: &[Vec<String>]) -> String {
    table_with_class(label, "", columns, rows)
}

/// [`table`], with a class of its own (for its column widths).
fn table_with_class(label: &str, class: &str, columns: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return "<p class=\"muted\">None.</p>".into();
    }
    let mut out = format!(
        "<table class=\"rows {class}\" aria-label=\"{}\"><thead><tr>",
        escape(label)
    );
    for c in columns {
        let _ = write!(out, "<th scope=\"col\">{}</th>", escape(c));
    }
    let _ = write!(out, "</tr></thead><tbody>");
    for row in rows {
        let _ = write!(out, "<tr>");
        for (c, cell) in columns.iter().zip(row) {
            let _ = write!(out, "<td data-label=\"{}\">{cell}</td>", escape(c));
        }
        let _ = write!(out, "</tr>");
    }
    let _ = write!(out, "</tbody></table>");
    out
}

/// The session's CSRF token as a form field.
fn csrf_field(session: &Session) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(&session.csrf)
    )
}

/// A refusal or a failure in the console's frame, with the way back.
fn refusal(session: &Session, status: StatusCode, why: &str, back: (&str, &str)) -> Response {
    page(
        status,
        "Refused",
        Some((session, "")),
        &format!(
            "<p class=\"error\" role=\"alert\">{}</p><p><a href=\"{}\">{}</a></p>",
            escape(why),
            escape(back.0),
            escape(back.1)
        ),
    )
}

/// Where a form's action goes once done (303, so that reloading does not repeat it).
fn see_other(location: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location.to_string())],
    )
        .into_response()
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
    if !same_origin(&headers, public_origin(&state).as_deref()) {
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

/// A form with no fields of its own (sign-out, run): only the CSRF token.
#[derive(Deserialize)]
pub struct NoFields {}

/// What every console form carries: the session's CSRF token, and its own fields.
#[derive(Deserialize)]
struct WithCsrf<F> {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(flatten)]
    form: F,
}

/// An action from the console's own page: the session it comes from and its form. A POST
/// without a live session, from another origin, or without the session's CSRF token is
/// refused here, before any handler runs. The forms' fields are all optional, so that a
/// form that lacks one is answered by its handler, not mistaken for a forgery.
pub struct Acting<F> {
    id: String,
    session: Session,
    form: F,
}

impl<F> axum::extract::FromRequest<ApiState> for Acting<F>
where
    F: serde::de::DeserializeOwned + Send,
{
    type Rejection = Response;

    async fn from_request(
        req: axum::extract::Request,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let headers = req.headers().clone();
        let parsed = Form::<WithCsrf<F>>::from_request(req, state)
            .await
            .ok()
            .map(|Form(f)| f);
        let csrf = parsed.as_ref().and_then(|p| p.csrf.as_deref());
        let (id, session) = acting_session(state, &headers, csrf).map_err(|refused| *refused)?;
        match parsed {
            Some(parsed) => Ok(Acting {
                id,
                session,
                form: parsed.form,
            }),
            // Not reached: without a form there is no CSRF token, refused above.
            None => Err(refusal(
                &session,
                StatusCode::BAD_REQUEST,
                "The form could not be read.",
                ("/ui", "Back to the overview"),
            )),
        }
    }
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
    if !same_origin(headers, public_origin(state).as_deref()) || csrf != Some(session.csrf.as_str())
    {
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
pub async fn sign_out(State(state): State<ApiState>, acting: Acting<NoFields>) -> Response {
    state.sessions.remove(&acting.id);
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/ui")]).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "backstop_session=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_consoles_own_origin_may_post() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        assert!(same_origin(
            &headers(&[
                ("origin", "http://127.0.0.1:8470"),
                ("host", "127.0.0.1:8470")
            ]),
            None
        ));
        assert!(!same_origin(
            &headers(&[
                ("origin", "http://evil.example"),
                ("host", "127.0.0.1:8470")
            ]),
            None
        ));
        assert!(!same_origin(
            &headers(&[("origin", "null"), ("host", "127.0.0.1:8470")]),
            None
        ));
        assert!(!same_origin(
            &headers(&[("sec-fetch-site", "cross-site"), ("host", "127.0.0.1:8470")]),
            None
        ));
        assert!(
            same_origin(&headers(&[("host", "127.0.0.1:8470")]), None),
            "not a browser"
        );
        // Behind a proxy that sends the daemon its own Host: the configured public origin.
        let proxied = headers(&[
            ("origin", "https://backups.example.com"),
            ("host", "127.0.0.1:8470"),
        ]);
        assert!(!same_origin(&proxied, None));
        assert!(same_origin(&proxied, Some("https://backups.example.com")));
        assert!(
            !same_origin(
                &headers(&[
                    ("origin", "http://127.0.0.1:8470"),
                    ("host", "127.0.0.1:8470")
                ]),
                Some("https://backups.example.com")
            ),
            "with a public origin set, it is the only one"
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

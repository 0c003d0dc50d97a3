//! The daemon's HTTP API: restore requests with four-eyes approval, drills and sign-off,
//! for callers authenticated by bearer tokens ([`access`]). Every route but `/healthz` (and
//! `/metrics`) needs a token; the OpenAPI document is at `/openapi.json`.

pub mod access;
pub mod requests;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::{request::Parts, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use backstop_catalog::{Catalog, ErrorKind, RequestStatus, RestoreRequest};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::Config;
use crate::error::EngineError;
use crate::notify::{merged, Event as NotifyEvent, Notifier};
use crate::policy::Policy;
use access::{allowed, Action, Caller};

#[derive(Clone)]
pub struct ApiState {
    pub config: Arc<Config>,
    pub catalog: Catalog,
    pub policies: Arc<RwLock<BTreeMap<String, Policy>>>,
    pub notifier: Notifier,
    /// Runs restore requests as jobs.
    pub jobs: requests::RequestJobs,
    /// The web console's signed-in sessions.
    pub sessions: crate::console::Sessions,
    /// The running backups' counters (for the console's progress).
    pub live: crate::jobs::live::LiveBackups,
}

pub(crate) type ApiError = (StatusCode, Json<Value>);
type ApiResult = Result<Json<Value>, ApiError>;

fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    (status, Json(json!({"error": message.into()})))
}

/// What an API error says, for a page that shows it.
pub(crate) fn error_message(e: &ApiError) -> String {
    e.1 .0["error"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| e.0.to_string())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// A refusal (a wrong state, four-eyes) is the caller's conflict, not a crash; a catalog
/// error is answered by what happened.
fn conflict(e: EngineError) -> ApiError {
    match e {
        EngineError::Catalog(e) => catalog_error(e),
        e => error(StatusCode::CONFLICT, e.to_string()),
    }
}

/// A catalog error as the API answers it: 404, 409 or 503 by what happened, never with the
/// catalog's location (a file path) in the body. The whole error goes to the daemon's log.
fn catalog_error(e: backstop_catalog::CatalogError) -> ApiError {
    match e.kind() {
        ErrorKind::NotFound => error(StatusCode::NOT_FOUND, e.detail()),
        ErrorKind::Conflict => error(StatusCode::CONFLICT, e.detail()),
        ErrorKind::Unavailable => {
            tracing::error!(error = %e, "the catalog is unavailable");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the catalog is unavailable; try again later",
            )
        }
        ErrorKind::Other => {
            tracing::error!(error = %e, "catalog error");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the catalog failed; the daemon's log has the details",
            )
        }
    }
}

/// An engine error met while serving: catalog errors by their kind, others as internal.
fn engine_error(e: EngineError) -> ApiError {
    match e {
        EngineError::Catalog(e) => catalog_error(e),
        e => internal(e),
    }
}

/// A JSON body whose rejection (malformed, the wrong content type, too large) is answered
/// like every other API error: `{"error": …}` with the rejection's status (400, 413, 415
/// or 422).
struct ApiJson<T>(T);

impl<T, S> axum::extract::FromRequest<S> for ApiJson<T>
where
    Json<T>: axum::extract::FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(error(rejection.status(), rejection.body_text())),
        }
    }
}

impl<T, S> axum::extract::OptionalFromRequest<S> for ApiJson<T>
where
    Json<T>:
        axum::extract::OptionalFromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(
        req: axum::extract::Request,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        match <Json<T> as axum::extract::OptionalFromRequest<S>>::from_request(req, state).await {
            Ok(value) => Ok(value.map(|Json(value)| ApiJson(value))),
            Err(rejection) => Err(error(rejection.status(), rejection.body_text())),
        }
    }
}

/// The audit log's actor for what a caller does: the principal its token names.
fn as_caller(state: &ApiState, caller: &Caller) -> Catalog {
    state.catalog.clone().with_actor(caller.principal.clone())
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(String::from)
            .ok_or_else(unauthorized)?;
        let token = token.as_str();
        let file = access::load(&access::tokens_path(&state.config)).map_err(internal)?;
        access::authenticate(&file, token)
            .ok_or_else(|| error(StatusCode::UNAUTHORIZED, "unknown token"))
    }
}

/// The answer to a request without a bearer token.
pub(crate) fn unauthorized() -> ApiError {
    error(
        StatusCode::UNAUTHORIZED,
        "a bearer token is required (Authorization: Bearer …)",
    )
}

fn policy(state: &ApiState, name: &str) -> Result<Policy, ApiError> {
    state
        .policies
        .read()
        .expect("policies lock")
        .get(name)
        .cloned()
        .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("no policy `{name}`")))
}

async fn find_request(state: &ApiState, id: &str) -> Result<RestoreRequest, ApiError> {
    state.catalog.request(id).await.map_err(catalog_error)
}

fn permit(caller: &Caller, action: Action, policy: Option<&Policy>) -> Result<(), ApiError> {
    allowed(caller, action, policy).map_err(|why| error(StatusCode::FORBIDDEN, why))
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/ui", get(crate::console::overview))
        .route("/ui/sign-in", post(crate::console::sign_in))
        .route("/ui/sign-out", post(crate::console::sign_out))
        .route("/ui/evidence", get(crate::console::evidence))
        .route("/ui/drills/{id}", get(crate::console::drill_page))
        .route("/ui/drills/{id}/signoff", post(crate::console::sign_off))
        .route("/ui/policies/{name}", get(crate::console::policy_page))
        .route(
            "/ui/requests",
            get(crate::console::requests_page).post(crate::console::create_request),
        )
        .route("/ui/requests/{id}", get(crate::console::request_page))
        .route(
            "/ui/requests/{id}/approve",
            post(crate::console::decide_request),
        )
        .route(
            "/ui/requests/{id}/reject",
            post(crate::console::decide_request),
        )
        .route("/ui/requests/{id}/run", post(crate::console::run_request))
        .route("/ui/audit", get(crate::console::audit_page))
        .route("/ui/evidence/pack", post(crate::console::evidence_pack))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/drills", get(list_drills))
        .route("/api/v1/drills/{id}/signoff", post(sign_off))
        .route("/api/v1/requests", get(list_requests).post(create_request))
        .route("/api/v1/requests/{id}", get(get_request))
        .route("/api/v1/requests/{id}/approve", post(approve))
        .route("/api/v1/requests/{id}/reject", post(reject))
        .route("/api/v1/requests/{id}/run", post(run_request))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such route; /openapi.json lists them",
            )
        })
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "this route does not take that method; /openapi.json lists them",
            )
        })
        .with_state(state)
}

async fn whoami(caller: Caller) -> ApiResult {
    Ok(Json(
        json!({"principal": caller.principal, "role": caller.role.as_str()}),
    ))
}

#[derive(Deserialize)]
struct DrillQuery {
    policy: Option<String>,
    limit: Option<u32>,
}

async fn list_drills(
    State(state): State<ApiState>,
    caller: Caller,
    Query(q): Query<DrillQuery>,
) -> ApiResult {
    permit(&caller, Action::Read, None)?;
    let drills = state
        .catalog
        .drills(q.policy.as_deref(), q.limit.unwrap_or(50))
        .await
        .map_err(internal)?;
    Ok(Json(Value::Array(
        drills.into_iter().map(|d| d.report).collect(),
    )))
}

#[derive(Deserialize)]
struct Comment {
    comment: Option<String>,
}

async fn sign_off(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Comment>,
) -> ApiResult {
    let record = state.catalog.drill(&id).await.map_err(catalog_error)?;
    let policy = policy(&state, &record.policy)?;
    permit(&caller, Action::SignOff, Some(&policy))?;
    let policies = state.policies.read().expect("policies lock").clone();
    let signed = crate::drill::signoff::sign_off(
        &state.config,
        &as_caller(&state, &caller),
        &policies,
        &record.id,
        &caller.principal,
        body.comment.as_deref().unwrap_or(""),
        jiff::Timestamp::now(),
    )
    .await
    .map_err(conflict)?;
    Ok(Json(
        json!({"drill_id": signed.drill_id, "principal": signed.principal, "signed_at": signed.signed_at.to_string()}),
    ))
}

fn request_json(r: &RestoreRequest) -> Value {
    json!({
        "request_id": r.id,
        "policy": r.policy,
        "snapshot_id": r.snapshot_id,
        "point_in_time": r.point_in_time.map(|t| t.to_string()),
        "target": r.target,
        "reason": r.reason,
        "allow_overlap": r.allow_overlap,
        "requester": r.requester,
        "status": r.status.as_str(),
        "created_at": r.created_at.to_string(),
        "expires_at": r.expires_at.to_string(),
        "not_before": r.not_before.map(|t| t.to_string()),
        "decided_by": r.decided_by,
        "decided_at": r.decided_at.map(|t| t.to_string()),
        "decision_comment": r.decision_comment,
        "finished_at": r.finished_at.map(|t| t.to_string()),
        "outcome": r.outcome,
        "run_id": r.run_id,
    })
}

/// A restore request as asked (the API's JSON body, or the console's form).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewRequest {
    pub policy: String,
    pub snapshot: Option<String>,
    pub point_in_time: Option<String>,
    pub target: String,
    pub reason: String,
    #[serde(default)]
    pub allow_overlap: bool,
    pub not_before: Option<String>,
}

async fn create_request(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewRequest>,
) -> ApiResult {
    let request = new_request(&state, &caller, body).await?;
    Ok(Json(request_json(&request)))
}

/// Records `body` as a pending request of `caller`, after every check the API makes: the
/// caller's role, the target's form and fit, the snapshot, and restore safety. Shared by the
/// API and the console, so that both hold the same rules.
pub(crate) async fn new_request(
    state: &ApiState,
    caller: &Caller,
    body: NewRequest,
) -> Result<RestoreRequest, ApiError> {
    let policy = policy(state, &body.policy)?;
    permit(caller, Action::RequestRestore, Some(&policy))?;
    let bad = |m: String| error(StatusCode::BAD_REQUEST, m);
    if body.snapshot.is_some() == body.point_in_time.is_some() {
        return Err(bad("give exactly one of snapshot or point_in_time".into()));
    }
    if body.reason.trim().is_empty() {
        return Err(bad("a request needs a reason".into()));
    }
    if !body.target.contains("://") && !std::path::Path::new(&body.target).is_absolute() {
        return Err(bad(format!(
            "target `{}`: give an absolute path (the daemon's working directory is not yours)",
            body.target
        )));
    }
    if body.target.contains("://") {
        let url = backstop_sources::DbUrl::parse(&body.target)
            .map_err(|e| bad(format!("target: {e}")))?;
        if url.password().is_some() {
            return Err(bad("target: a URL in a request must not carry a password (it would be recorded); the daemon's environment provides it".into()));
        }
    }
    requests::target_fits(&body.target, policy.source.kind())
        .map_err(|m| error(StatusCode::UNPROCESSABLE_ENTITY, m))?;
    // The snapshot asked for exists and is this policy's; the request keeps its full id.
    let snapshot_id = match &body.snapshot {
        Some(prefix) => Some(
            requests::snapshot_of_policy(&state.config, &policy, prefix)
                .await
                .map_err(|e| match e {
                    EngineError::Repo(backstop_repo::RepoError::Storage(
                        backstop_repo::storage::StorageError::Unreachable { .. },
                    )) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
                    e => error(StatusCode::UNPROCESSABLE_ENTITY, format!("snapshot: {e}")),
                })?,
        ),
        None => None,
    };
    // Restore safety at the door: a target that is a source is refused now, not after an
    // approver has looked at it, unless the request asks for exactly that.
    let configured = {
        let policies = state.policies.read().expect("policies lock");
        let all: Vec<&Policy> = policies.values().collect();
        requests::configured_protected(&all, &state.config)
    };
    if let Some(clash) =
        requests::source_clash(&body.target, &configured).map_err(|e| bad(e.to_string()))?
    {
        if !body.allow_overlap {
            return Err(conflict(EngineError::ReplacesSource {
                clash: Box::new(clash),
                remedy: requests::REQUEST_REMEDY,
            }));
        }
    }
    let time = |t: &Option<String>, what: &str| {
        t.as_deref()
            .map(|t| {
                t.parse::<jiff::Timestamp>()
                    .map_err(|e| bad(format!("{what}: {e}")))
            })
            .transpose()
    };
    let now = jiff::Timestamp::now();
    let request = RestoreRequest {
        id: format!(
            "req-{}-{}",
            now.strftime("%Y%m%dT%H%M%S"),
            hex::encode(rand::random::<[u8; 3]>())
        ),
        policy: policy.name.clone(),
        snapshot_id,
        point_in_time: time(&body.point_in_time, "point_in_time")?,
        target: body.target.clone(),
        reason: body.reason.clone(),
        allow_overlap: body.allow_overlap,
        requester: caller.principal.clone(),
        status: RequestStatus::Pending,
        created_at: now,
        expires_at: now + jiff::SignedDuration::try_from(requests::REQUEST_TTL).unwrap_or_default(),
        not_before: time(&body.not_before, "not_before")?,
        decided_by: None,
        decided_at: None,
        decision_comment: None,
        finished_at: None,
        outcome: None,
        run_id: None,
        creates_target: false,
    };
    as_caller(state, caller)
        .create_request(&request)
        .await
        .map_err(catalog_error)?;
    Ok(request)
}

async fn list_requests(State(state): State<ApiState>, caller: Caller) -> ApiResult {
    permit(&caller, Action::Read, None)?;
    expire(&state, jiff::Timestamp::now())
        .await
        .map_err(engine_error)?;
    let all = state.catalog.requests(200).await.map_err(catalog_error)?;
    Ok(Json(Value::Array(all.iter().map(request_json).collect())))
}

async fn get_request(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult {
    permit(&caller, Action::Read, None)?;
    expire(&state, jiff::Timestamp::now())
        .await
        .map_err(engine_error)?;
    let r = find_request(&state, &id).await?;
    Ok(Json(request_json(&r)))
}

/// Approves or rejects request `id` as `caller`: an approver of its policy who is not its
/// requester (four eyes). Shared by the API and the console.
pub(crate) async fn decide(
    state: &ApiState,
    caller: &Caller,
    id: &str,
    comment: Option<String>,
    approve: bool,
) -> Result<RestoreRequest, ApiError> {
    expire(state, jiff::Timestamp::now())
        .await
        .map_err(engine_error)?;
    let r = find_request(state, id).await?;
    let policy = policy(state, &r.policy)?;
    permit(caller, Action::Decide, Some(&policy))?;
    if r.requester.eq_ignore_ascii_case(&caller.principal) {
        return Err(error(
            StatusCode::FORBIDDEN,
            format!(
                "{} asked for this request and cannot also decide it: another approver must",
                caller.principal
            ),
        ));
    }
    let to = if approve {
        RequestStatus::Approved
    } else {
        RequestStatus::Rejected
    };
    let r = as_caller(state, caller)
        .transition_request(
            id,
            to,
            &caller.principal,
            comment.as_deref(),
            jiff::Timestamp::now(),
        )
        .await
        .map_err(catalog_error)?;
    notify_requester(&state.config, &state.notifier, &policy, &r);
    Ok(r)
}

async fn approve(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<ApiJson<Comment>>,
) -> ApiResult {
    decide(&state, &caller, &id, body.and_then(|b| b.0.comment), true)
        .await
        .map(|r| Json(request_json(&r)))
}

async fn reject(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<ApiJson<Comment>>,
) -> ApiResult {
    decide(&state, &caller, &id, body.and_then(|b| b.0.comment), false)
        .await
        .map(|r| Json(request_json(&r)))
}

/// Expires stale requests and tells each requester.
pub(crate) async fn expire(state: &ApiState, now: jiff::Timestamp) -> Result<(), EngineError> {
    for r in requests::expire_stale(&state.catalog, now).await? {
        if let Ok(policy) = policy(state, &r.policy) {
            notify_requester(&state.config, &state.notifier, &policy, &r);
        }
    }
    Ok(())
}

/// Tells the requester (through the policy's notification channels, addressed to them)
/// that their request was approved, rejected, expired, or ran and how.
pub(crate) fn notify_requester(
    config: &Config,
    notifier: &Notifier,
    policy: &Policy,
    r: &RestoreRequest,
) {
    let settings = merged(&config.notify, policy.notify.as_ref());
    notifier.alert(
        &settings,
        NotifyEvent::new(
            &format!("request.{}", r.status),
            &policy.name,
            format!(
                "restore request {} by {}: {}{}",
                r.id,
                r.requester,
                r.status,
                r.outcome
                    .as_ref()
                    .map(|o| format!(": {o}"))
                    .unwrap_or_default()
            ),
        )
        .to(&r.requester),
    );
}

/// Starts an approved request as a job and answers 202 with it (`running`, and the id of
/// the run that carries it); `GET /api/v1/requests/{id}` follows it to its end.
async fn run_request(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let r = start_request(&state, &caller, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(request_json(&r))))
}

/// Starts approved request `id` as a job for `caller` (an operator, or its requester when
/// they own the policy); returns it, running. Shared by the API and the console.
pub(crate) async fn start_request(
    state: &ApiState,
    caller: &Caller,
    id: &str,
) -> Result<RestoreRequest, ApiError> {
    let r = find_request(state, id).await?;
    let policy = policy(state, &r.policy)?;
    let requester = r.requester.eq_ignore_ascii_case(&caller.principal);
    permit(caller, Action::Run { requester }, Some(&policy))?;
    let now = jiff::Timestamp::now();
    if let Some(not_before) = r.not_before.filter(|t| *t > now) {
        return Err(error(
            StatusCode::CONFLICT,
            format!("request {id} may run from {not_before}"),
        ));
    }
    state
        .jobs
        .start(state, &policy, id, &caller.principal)
        .await
        .map_err(catalog_error)
}

/// Approved requests with a window (`not_before`) run by themselves once it opens; those
/// without one wait for `request run`.
pub async fn run_windows_once(state: ApiState) {
    let now = jiff::Timestamp::now();
    match state.catalog.requests(u32::MAX).await {
        Ok(all) => {
            for r in all.into_iter().filter(|r| {
                r.status == RequestStatus::Approved && r.not_before.is_some_and(|t| t <= now)
            }) {
                let Ok(policy) = policy(&state, &r.policy) else {
                    continue;
                };
                match state.jobs.start(&state, &policy, &r.id, "daemon").await {
                    Ok(started) => tracing::info!(
                        request = started.id,
                        run = started.run_id.as_deref().unwrap_or_default(),
                        "restore request started in its window"
                    ),
                    Err(e) => {
                        tracing::warn!(request = r.id, error = %e, "starting a restore request")
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "looking for restore requests to run"),
    }
    if let Err(e) = expire(&state, now).await {
        tracing::warn!(error = %e, "expiring restore requests");
    }
}

async fn openapi(State(state): State<ApiState>, _caller: Caller) -> Json<Value> {
    let metrics_token = state
        .config
        .api
        .as_ref()
        .is_some_and(|api| api.metrics_token);
    Json(openapi_document(metrics_token))
}

/// The OpenAPI 3.1 description of every route: its parameters, bodies and answers.
fn openapi_document(metrics_token: bool) -> Value {
    let answers = json!({
        "200": {"description": "OK", "content": {"application/json": {}}},
        "400": {"description": "a malformed body or parameter (the message names it)"},
        "401": {"description": "no token, or an unknown one"},
        "403": {"description": "the caller's role or policy scope does not allow this"},
        "404": {"description": "no such policy, drill or request"},
        "409": {"description": "the request is not in a state that allows this, or four-eyes refused it, or (creating a request) its target is, is inside or holds a policy's source and allow_overlap is not set"}
    });
    let op = |summary: &str| json!({"summary": summary, "security": [{"bearer": []}], "responses": answers.clone()});
    let id = |what: &str| json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}, "description": what}]);
    // A console form: the fields, all strings, all required.
    let form = |fields: &[&str]| {
        let properties: serde_json::Map<String, Value> = fields
            .iter()
            .map(|f| (f.to_string(), json!({"type": "string"})))
            .collect();
        json!({"required": true, "content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object", "properties": properties, "required": fields}}}})
    };
    let with = |mut op: Value, key: &str, value: Value| {
        op[key] = value;
        op
    };
    let query = |names: &[(&str, &str, &str)]| -> Value {
        names
            .iter()
            .map(|(name, kind, what)| json!({"name": name, "in": "query", "required": false, "schema": {"type": kind}, "description": what}))
            .collect()
    };
    let body = |schema: Value, required: bool| json!({"required": required, "content": {"application/json": {"schema": schema}}});
    let comment = json!({"type": "object", "properties": {"comment": {"type": "string"}}, "additionalProperties": false});
    let new_request = json!({
        "type": "object",
        "required": ["policy", "target", "reason"],
        "properties": {
            "policy": {"type": "string"},
            "snapshot": {"type": "string", "description": "a snapshot id or unique prefix; or give point_in_time"},
            "point_in_time": {"type": "string", "format": "date-time", "description": "the newest snapshot at or before this time"},
            "target": {"type": "string", "description": "an absolute directory or file, or a postgres:// or mysql:// URL"},
            "reason": {"type": "string"},
            "allow_overlap": {"type": "boolean", "default": false, "description": "the target may overlap the policy's source; the approval covers it"},
            "not_before": {"type": "string", "format": "date-time", "description": "run by itself once approved and this time has come"}
        },
        "additionalProperties": false
    });
    let metrics = if metrics_token {
        json!({"summary": "Prometheus metrics (a token of any role: [api] metrics_token = true)", "security": [{"bearer": []}],
               "responses": {"200": {"description": "text exposition", "content": {"text/plain": {}}}, "401": {"description": "no token, or an unknown one"}}})
    } else {
        json!({"summary": "Prometheus metrics (no token)",
               "responses": {"200": {"description": "text exposition", "content": {"text/plain": {}}}}})
    };
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Backstop API", "version": "1"},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/healthz": {"get": {"summary": "the daemon is up (no token)", "responses": {"200": {"description": "ok", "content": {"text/plain": {}}}}}},
            "/metrics": {"get": metrics},
            "/openapi.json": {"get": op("this document")},
            "/ui": {"get": op("the web console's overview for a signed-in browser (a session cookie); the sign-in page otherwise")},
            "/ui/sign-in": {"post": with(op("a form with `token`: starts a console session (an HttpOnly, SameSite=Strict cookie) and redirects to /ui"), "requestBody", form(&["token"]))},
            "/ui/sign-out": {"post": with(op("a form with the session's `csrf`: ends the session"), "requestBody", form(&["csrf"]))},
            "/ui/drills/{id}": {"get": with(op("a drill's report in the console (a session): checks with their output, the RTO broken down, the sign-off"), "parameters", id("the drill id"))},
            "/ui/drills/{id}/signoff": {"post": with(with(op("a form with the session's `csrf` and a `comment`: the policy's recovery owner signs a passed drill off"), "parameters", id("the drill id")), "requestBody", form(&["csrf", "comment"]))},
            "/ui/policies/{name}": {"get": with(op("a policy's page in the console (a session): its state, RPO exposure, backups, drills and requests over 30 days, with charts"), "parameters", json!([{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}, "description": "the policy"}]))},
            "/ui/requests": {
                "get": op("restore requests in the console (a session), and for a recovery owner the form to ask for one"),
                "post": with(op("a form with `csrf`, `policy`, `target`, `reason` and `snapshot` or `point_in_time` (both empty: the newest snapshot): asks for a restore as POST /api/v1/requests does"), "requestBody", form(&["csrf", "policy", "target", "reason"]))
            },
            "/ui/requests/{id}": {"get": with(op("a restore request in the console: its steps from the audit log and the actions the session's role allows; reloads itself while running"), "parameters", id("the request id"))},
            "/ui/requests/{id}/approve": {"post": with(with(op("a form with `csrf` and `comment`: approve, as POST /api/v1/requests/{id}/approve"), "parameters", id("the request id")), "requestBody", form(&["csrf"]))},
            "/ui/requests/{id}/reject": {"post": with(with(op("a form with `csrf` and `comment`: reject, as POST /api/v1/requests/{id}/reject"), "parameters", id("the request id")), "requestBody", form(&["csrf"]))},
            "/ui/requests/{id}/run": {"post": with(with(op("a form with `csrf`: start the approved request, as POST /api/v1/requests/{id}/run; redirects to its page"), "parameters", id("the request id")), "requestBody", form(&["csrf"]))},
            "/ui/audit": {"get": with(op("the audit chain in the console: its verification state, the installation's public key, the evidence pack form, and the events a page at a time"), "parameters",
                query(&[("after", "integer", "show the events after this sequence number (the newest by default)")]))},
            "/ui/evidence/pack": {"post": with(op("a form with `csrf`, `from` and `to`: a signed evidence pack of every policy for the period, as a tar download (audited)"), "requestBody", form(&["csrf", "from", "to"]))},
            "/ui/evidence": {"get": with(op("the evidence view, live, as HTML, for a console session or a bearer token"), "parameters",
                query(&[("from", "string", "start of the period (a date or a UTC timestamp; 30 days ago by default)"),
                        ("to", "string", "end of the period (now by default)")]))},
            "/api/v1/whoami": {"get": op("the caller's principal and role")},
            "/api/v1/drills": {"get": with(op("recorded drills, newest first"), "parameters",
                query(&[("policy", "string", "only this policy's drills"), ("limit", "integer", "at most this many")]))},
            "/api/v1/drills/{id}/signoff": {"post": with(with(op("sign a passed drill off (the recovery owner of its policy)"), "parameters", id("the drill id")), "requestBody", body(comment.clone(), true))},
            "/api/v1/requests": {
                "get": op("restore requests, newest first"),
                "post": with(op("ask for a restore (the recovery owner of the policy)"), "requestBody", body(new_request, true))
            },
            "/api/v1/requests/{id}": {"get": with(op("one restore request"), "parameters", id("the request id"))},
            "/api/v1/requests/{id}/approve": {"post": with(with(op("approve (an approver of the policy who is not the requester)"), "parameters", id("the request id")), "requestBody", body(comment.clone(), false))},
            "/api/v1/requests/{id}/reject": {"post": with(with(op("reject (an approver of the policy who is not the requester)"), "parameters", id("the request id")), "requestBody", body(comment, false))},
            "/api/v1/requests/{id}/run": {"post": with(with(op("start an approved request now as a job (an operator, or the requester); answers 202 with the request, running, and its run_id; GET /api/v1/requests/{id} follows it to succeeded or failed"), "parameters", id("the request id")), "responses", {
                let mut started = answers.clone();
                started.as_object_mut().expect("answers").remove("200");
                started["202"] = json!({"description": "started: the request, running, with the id of the run that carries it", "content": {"application/json": {}}});
                started
            })}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::openapi_document;

    #[test]
    fn every_path_parameter_is_declared_and_only_health_goes_without_a_token() {
        for metrics_token in [false, true] {
            let doc = openapi_document(metrics_token);
            let paths = doc["paths"].as_object().unwrap();
            assert!(paths.contains_key("/openapi.json"));
            for (path, item) in paths {
                let templated: Vec<&str> = path
                    .split('/')
                    .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                    .collect();
                for (method, op) in item.as_object().unwrap() {
                    let declared: Vec<&str> = op["parameters"]
                        .as_array()
                        .map(|ps| {
                            ps.iter()
                                .filter(|p| p["in"] == "path")
                                .map(|p| p["name"].as_str().unwrap())
                                .collect()
                        })
                        .unwrap_or_default();
                    assert_eq!(declared, templated, "{method} {path}");
                    let success = if path.starts_with("/api/") && path.ends_with("/run") {
                        "202"
                    } else {
                        "200"
                    };
                    assert!(op["responses"][success].is_object(), "{method} {path}");
                    let open = path == "/healthz" || (path == "/metrics" && !metrics_token);
                    assert_eq!(op["security"].is_null(), open, "{method} {path}");
                    if method == "post" && !path.ends_with("/run") {
                        assert!(op["requestBody"].is_object(), "{method} {path}");
                    }
                }
            }
        }
    }
}

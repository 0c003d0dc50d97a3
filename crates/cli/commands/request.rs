//! `backstop token create` (on the daemon's host) and `backstop request …` (anywhere, through
//! the daemon's API).

use anyhow::{bail, Context, Result};
use backstop_engine::api::access::{self, Role};
use backstop_engine::{catalog, Config};
use serde_json::{json, Value};

use crate::args::{RequestArgs, RequestCommand};
use crate::output::{print_json, EXIT_FAILED, EXIT_OK};

pub async fn create_token(config: &Config, principal: &str, role: &str, json: bool) -> Result<u8> {
    let role = Role::parse(role).map_err(anyhow::Error::msg)?;
    let path = access::tokens_path(config);
    // The catalog first: a token is made only where its creation can be audited, and one
    // whose event could not be appended is taken back out.
    let store = catalog::open(config).await?;
    let (token, entry) = access::create(&path, principal, role)?;
    let audited = store
        .append_event(
            "token.created",
            &entry.id,
            json!({"principal": entry.principal, "role": role.as_str()}),
        )
        .await;
    if let Err(e) = audited {
        access::remove(&path, &entry.id)
            .context("removing the token whose creation could not be audited")?;
        return Err(e).context("recording the token's creation; no token was made");
    }
    if json {
        print_json(
            &json!({"id": entry.id, "principal": entry.principal, "role": role.as_str(), "token": token}),
        );
    } else {
        println!(
            "token {} for {} ({}), stored hashed in {}; it is shown only now:",
            entry.id,
            entry.principal,
            role.as_str(),
            path.display()
        );
        println!("{token}");
    }
    Ok(EXIT_OK)
}

/// The daemon's API address from the configuration's `[api] listen` (an address bound to
/// every interface is reached on the loopback one).
pub fn url_of(config: &Config) -> String {
    let listen = config
        .api
        .as_ref()
        .and_then(|api| api.listen.clone())
        .unwrap_or_else(|| backstop_engine::daemon::DEFAULT_LISTEN.to_string());
    let listen = match listen.rsplit_once(':') {
        Some(("0.0.0.0", port)) => format!("127.0.0.1:{port}"),
        Some(("[::]", port)) => format!("[::1]:{port}"),
        _ => listen,
    };
    format!("http://{listen}")
}

/// The JSON body of a successful answer, or the daemon's error as one line.
async fn answer(response: reqwest::Response) -> Result<Value> {
    let status = response.status();
    let value: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "{}: {}",
            status,
            value["error"]
                .as_str()
                .unwrap_or("the daemon refused the request")
        );
    }
    Ok(value)
}

/// How often a followed request is looked at.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Follows a started request until it ends, with a progress line on a terminal; returns
/// it as it ended.
async fn follow(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
    mut request: Value,
) -> Result<Value> {
    use std::io::{IsTerminal, Write};
    let terminal = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    while request["status"] == "running" {
        if terminal {
            eprint!(
                "\rrequest {id}: running (run {}), {}s ",
                request["run_id"].as_str().unwrap_or("?"),
                started.elapsed().as_secs()
            );
            let _ = std::io::stderr().flush();
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
        let response = client
            .get(format!("{base}/api/v1/requests/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| {
                format!(
                    "lost the daemon's API at {base} while following request {id}; it goes on (or is failed as interrupted if the daemon stopped): see `backstop request list`"
                )
            })?;
        request = answer(response).await?;
    }
    if terminal {
        eprintln!();
    }
    Ok(request)
}

pub async fn run(args: &RequestArgs, url: &str, json: bool) -> Result<u8> {
    let Some(token) = args.token.as_deref() else {
        bail!(
            "no API token: set BACKSTOP_TOKEN or pass --token (made with `backstop token create`)"
        );
    };
    let base = url.trim_end_matches('/');
    let client = reqwest::Client::new();
    let (method, path, body) = match &args.command {
        RequestCommand::Create {
            policy,
            snapshot,
            at,
            to,
            reason,
            allow_overlap,
            not_before,
        } => (
            reqwest::Method::POST,
            "/api/v1/requests".to_string(),
            Some(json!({
                "policy": policy,
                "snapshot": snapshot,
                "point_in_time": at,
                "target": to,
                "reason": reason,
                "allow_overlap": allow_overlap,
                "not_before": not_before,
            })),
        ),
        RequestCommand::List => (reqwest::Method::GET, "/api/v1/requests".into(), None),
        RequestCommand::Approve { id, comment } => (
            reqwest::Method::POST,
            format!("/api/v1/requests/{id}/approve"),
            Some(json!({"comment": comment})),
        ),
        RequestCommand::Reject { id, comment } => (
            reqwest::Method::POST,
            format!("/api/v1/requests/{id}/reject"),
            Some(json!({"comment": comment})),
        ),
        RequestCommand::Run { id, .. } => (
            reqwest::Method::POST,
            format!("/api/v1/requests/{id}/run"),
            None,
        ),
    };
    let mut request = client
        .request(method, format!("{base}{path}"))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach the daemon's API at {base}"))?;
    let mut value = answer(response).await?;
    if let RequestCommand::Run { id, no_wait: false } = &args.command {
        value = follow(&client, base, token, id, value).await?;
    }
    let failed_run =
        matches!(&args.command, RequestCommand::Run { .. }) && value["status"] == "failed";
    if json {
        print_json(&value);
    } else {
        match value {
            Value::Array(items) => {
                for r in &items {
                    println!(
                        "{}  {:<10} {:<16} by {:<24} to {}  ({})",
                        r["request_id"].as_str().unwrap_or(""),
                        r["status"].as_str().unwrap_or(""),
                        r["policy"].as_str().unwrap_or(""),
                        r["requester"].as_str().unwrap_or(""),
                        r["target"].as_str().unwrap_or(""),
                        r["reason"].as_str().unwrap_or("")
                    );
                }
                if items.is_empty() {
                    println!("no restore requests");
                }
            }
            r => {
                println!(
                    "request {}: {}",
                    r["request_id"].as_str().unwrap_or(""),
                    r["status"].as_str().unwrap_or("")
                );
                if let Some(outcome) = r["outcome"].as_str() {
                    println!("{outcome}");
                }
            }
        }
    }
    Ok(if failed_run { EXIT_FAILED } else { EXIT_OK })
}

//! Notifications: a webhook (JSON, or a Slack-compatible `{"text": …}` body) and
//! healthchecks-style pings (start, success, fail URLs), set globally in `[notify]` of
//! backstop.toml or per policy in its own `[notify]`. Sent on a failed job and on an RPO
//! breach; retried with backoff on a background task, so a slow or dead receiver never
//! blocks a job. A full queue drops the notification and logs it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySettings {
    /// Receives a POST per event.
    pub webhook: Option<String>,
    /// `json` (the default) or `slack`.
    #[serde(default)]
    pub format: WebhookFormat,
    /// Healthchecks-style pings: GET on start, success and failure of each backup.
    pub ping_start: Option<String>,
    pub ping_success: Option<String>,
    pub ping_fail: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    #[default]
    Json,
    Slack,
}

/// An event worth telling someone about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// `backup.failed`, `rpo.breached`.
    pub event: String,
    pub policy: String,
    pub time: jiff::Timestamp,
    pub host: String,
    pub detail: String,
    /// The person the event is addressed to, when there is one (a restore request's
    /// requester), so that a receiver can route it to them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
}

impl Event {
    pub fn new(event: &str, policy: &str, detail: String) -> Self {
        Self {
            event: event.into(),
            policy: policy.into(),
            time: jiff::Timestamp::now(),
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default(),
            detail,
            recipient: None,
        }
    }

    /// The same event, addressed to `recipient`.
    pub fn to(self, recipient: &str) -> Self {
        Self {
            recipient: Some(recipient.into()),
            ..self
        }
    }

    fn slack_text(&self) -> String {
        let to = self
            .recipient
            .as_ref()
            .map(|r| format!(" (for {r})"))
            .unwrap_or_default();
        format!(
            "backstop: {} for policy `{}` on {}{to}: {}",
            self.event, self.policy, self.host, self.detail
        )
    }
}

/// A ping or a webhook post.
#[derive(Debug, Clone)]
enum Delivery {
    Ping(String),
    Post {
        url: String,
        body: serde_json::Value,
    },
}

/// Hands deliveries to a background sender. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Notifier {
    client: reqwest::Client,
    /// Deliveries under way, so that a stopping daemon sends what it has to say.
    deliveries: TaskTracker,
}

const ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

impl Notifier {
    /// A notifier whose deliveries run in the background.
    pub fn start() -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            deliveries: TaskTracker::new(),
        }
    }

    fn enqueue(&self, delivery: Delivery) {
        // Each delivery retries on its own, so one dead receiver delays no other.
        let client = self.client.clone();
        self.deliveries
            .spawn(async move { deliver(&client, delivery).await });
    }

    /// Waits up to `within` for the deliveries under way (a stopping daemon's last words,
    /// such as an interrupted request's notice to its requester); returns whether all went.
    pub async fn flush(&self, within: Duration) -> bool {
        self.deliveries.close();
        let done = tokio::time::timeout(within, self.deliveries.wait())
            .await
            .is_ok();
        self.deliveries.reopen();
        done
    }

    /// A job started: the start ping.
    pub fn started(&self, settings: &NotifySettings) {
        if let Some(url) = &settings.ping_start {
            self.enqueue(Delivery::Ping(url.clone()));
        }
    }

    /// A job succeeded: the success ping.
    pub fn succeeded(&self, settings: &NotifySettings) {
        if let Some(url) = &settings.ping_success {
            self.enqueue(Delivery::Ping(url.clone()));
        }
    }

    /// Something went wrong: the fail ping (for a failed job) and the webhook.
    pub fn alert(&self, settings: &NotifySettings, event: Event) {
        if event.event.ends_with(".failed") {
            if let Some(url) = &settings.ping_fail {
                self.enqueue(Delivery::Ping(url.clone()));
            }
        }
        if let Some(url) = &settings.webhook {
            let body = match settings.format {
                WebhookFormat::Json => serde_json::to_value(&event).unwrap_or_default(),
                WebhookFormat::Slack => serde_json::json!({ "text": event.slack_text() }),
            };
            self.enqueue(Delivery::Post {
                url: url.clone(),
                body,
            });
        }
    }
}

async fn deliver(client: &reqwest::Client, delivery: Delivery) {
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        let sent = match &delivery {
            Delivery::Ping(url) => client.get(url).send().await,
            Delivery::Post { url, body } => client.post(url).json(body).send().await,
        };
        let url = match &delivery {
            Delivery::Ping(url) | Delivery::Post { url, .. } => url,
        };
        match sent {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => {
                tracing::warn!(url, attempt, status = %response.status(), "notification refused")
            }
            Err(e) => tracing::warn!(url, attempt, error = %e, "notification not delivered"),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    tracing::error!(?delivery, "notification given up after {ATTEMPTS} attempts");
}

/// A policy's settings over the global ones, key by key.
pub fn merged(global: &NotifySettings, policy: Option<&NotifySettings>) -> NotifySettings {
    let Some(p) = policy else {
        return global.clone();
    };
    NotifySettings {
        webhook: p.webhook.clone().or_else(|| global.webhook.clone()),
        format: if p.webhook.is_some() {
            p.format
        } else {
            global.format
        },
        ping_start: p.ping_start.clone().or_else(|| global.ping_start.clone()),
        ping_success: p
            .ping_success
            .clone()
            .or_else(|| global.ping_success.clone()),
        ping_fail: p.ping_fail.clone().or_else(|| global.ping_fail.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_overrides_the_global_settings_key_by_key() {
        let global = NotifySettings {
            webhook: Some("http://global/hook".into()),
            format: WebhookFormat::Slack,
            ping_fail: Some("http://global/fail".into()),
            ..NotifySettings::default()
        };
        let policy = NotifySettings {
            ping_start: Some("http://p/start".into()),
            ..NotifySettings::default()
        };
        let m = merged(&global, Some(&policy));
        assert_eq!(m.webhook.as_deref(), Some("http://global/hook"));
        assert_eq!(m.format, WebhookFormat::Slack);
        assert_eq!(m.ping_start.as_deref(), Some("http://p/start"));
        assert_eq!(m.ping_fail.as_deref(), Some("http://global/fail"));
        assert_eq!(merged(&global, None), global);
    }

    /// A receiver that answers 503 to its first `refusals` requests and 200 after; it
    /// records each request's first line and body.
    async fn flaky_receiver(
        refusals: usize,
    ) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Read until the headers end and the declared body has come.
                loop {
                    let n = stream.read(&mut buf).await.unwrap_or(0);
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() >= length || n == 0 {
                            break;
                        }
                    }
                    if n == 0 {
                        break;
                    }
                }
                let text = String::from_utf8_lossy(&request).to_string();
                let refused = {
                    let mut seen = record.lock().unwrap();
                    seen.push(text);
                    seen.len() <= refusals
                };
                let answer: &[u8] = if refused {
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                };
                let _ = stream.write_all(answer).await;
            }
        });
        (url, seen)
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_delivery_is_retried_with_backoff_until_it_is_taken() {
        let (url, seen) = flaky_receiver(2).await;
        let client = reqwest::Client::new();
        let started = tokio::time::Instant::now();
        let body = serde_json::json!({"text": "backstop: backup.failed"});
        deliver(
            &client,
            Delivery::Post {
                url: format!("{url}/hook"),
                body,
            },
        )
        .await;
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 3, "two refusals, then delivered: {seen:?}");
        assert!(seen
            .iter()
            .all(|r| r.starts_with("POST /hook") && r.contains("backup.failed")));
        // 500 ms, then 1 s, of (paused) backoff between the attempts.
        assert!(
            started.elapsed() >= FIRST_BACKOFF * 3,
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_receiver_that_never_takes_it_gets_a_bounded_number_of_attempts() {
        let (url, seen) = flaky_receiver(usize::MAX).await;
        deliver(
            &reqwest::Client::new(),
            Delivery::Ping(format!("{url}/fail")),
        )
        .await;
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), ATTEMPTS as usize, "{seen:?}");
        assert!(seen.iter().all(|r| r.starts_with("GET /fail")));
    }

    #[test]
    fn slack_bodies_are_one_line_of_text() {
        let e = Event::new("backup.failed", "orders", "pg_dump was killed".into());
        let text = e.slack_text();
        assert!(
            text.contains("backup.failed") && text.contains("`orders`") && text.contains("pg_dump")
        );
    }
}

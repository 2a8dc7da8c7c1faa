//! Notifications: the Alertmanager webhook payload (version 4), posted to `http://`
//! receivers with a timeout and bounded retries, one queue per receiver so that a slow or
//! failing receiver delays only its own messages and never an evaluation or an ingest.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::AlertCounters;
use crate::server::http_client::{HttpUrl, request};

/// A webhook receiver's URL (`http://host[:port]/path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    url: String,
    http: HttpUrl,
}

impl WebhookUrl {
    /// The URL as given.
    pub fn as_str(&self) -> &str {
        &self.url
    }
}

impl std::str::FromStr for WebhookUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(WebhookUrl {
            http: HttpUrl::parse(s.trim(), "webhook")?,
            url: s.trim().to_string(),
        })
    }
}

/// How notifications are delivered; every default documented.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WebhookOptions {
    /// How long one attempt may take (connect, send, status line). Default: 5 s.
    pub timeout: Duration,
    /// Attempts per message, the first included; a message still failing after them is
    /// dropped (logged and counted). Default: 5.
    pub max_attempts: u32,
    /// The wait before the second attempt, doubled before each next one. Default: 500 ms.
    pub backoff: Duration,
    /// The longest wait between attempts. Default: 30 s.
    pub max_backoff: Duration,
    /// Messages waiting per receiver; more are dropped (counted). Default: 256.
    pub queue: usize,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            timeout: Duration::from_secs(5),
            max_attempts: 5,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            queue: 256,
        }
    }
}

/// One alert of a notification.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PayloadAlert {
    /// `firing` or `resolved`.
    pub status: String,
    /// Its labels (`alertname` included).
    pub labels: BTreeMap<String, String>,
    /// Its annotations, rendered.
    pub annotations: BTreeMap<String, String>,
    /// When it started firing (RFC 3339).
    pub starts_at: String,
    /// When it resolved; `0001-01-01T00:00:00Z` while firing.
    #[serde(rename = "endsAt")]
    pub ends_at: String,
    /// A link to the alert's history in the web UI's SQL console (empty without one).
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    /// 16 hex digits identifying the instance.
    pub fingerprint: String,
}

/// The Alertmanager webhook payload, version 4: one group (one rule's alerts).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    /// Always `"4"`.
    pub version: String,
    /// `{}:{alertname="RULE"}`.
    pub group_key: String,
    /// Alerts left out (always 0: every alert of the group is sent).
    pub truncated_alerts: u64,
    /// `firing` if any alert of the message fires, else `resolved`.
    pub status: String,
    /// Always `scrydb`.
    pub receiver: String,
    /// `{alertname: RULE}`.
    pub group_labels: BTreeMap<String, String>,
    /// Labels every alert of the message has, with the same value.
    pub common_labels: BTreeMap<String, String>,
    /// Annotations every alert of the message has, with the same value.
    pub common_annotations: BTreeMap<String, String>,
    /// The server's address (`http://host:port`), empty when unknown.
    #[serde(rename = "externalURL")]
    pub external_url: String,
    /// The alerts: every firing alert of the rule, and those that just resolved.
    pub alerts: Vec<PayloadAlert>,
}

fn common(maps: impl Iterator<Item = BTreeMap<String, String>>) -> BTreeMap<String, String> {
    let mut out: Option<BTreeMap<String, String>> = None;
    for m in maps {
        out = Some(match out {
            None => m,
            Some(acc) => acc
                .into_iter()
                .filter(|(k, v)| m.get(k) == Some(v))
                .collect(),
        });
    }
    out.unwrap_or_default()
}

impl Payload {
    /// The message for `rule`'s `alerts`.
    pub fn new(rule: &str, external_url: &str, alerts: Vec<PayloadAlert>) -> Payload {
        let status = if alerts.iter().any(|a| a.status == "firing") {
            "firing"
        } else {
            "resolved"
        };
        Payload {
            version: "4".into(),
            group_key: format!("{{}}:{{alertname={:?}}}", rule),
            truncated_alerts: 0,
            status: status.into(),
            receiver: "scrydb".into(),
            group_labels: BTreeMap::from([("alertname".to_string(), rule.to_string())]),
            common_labels: common(alerts.iter().map(|a| a.labels.clone())),
            common_annotations: common(alerts.iter().map(|a| a.annotations.clone())),
            external_url: external_url.to_string(),
            alerts,
        }
    }
}

/// Delivers messages to receivers, one queue and one task per receiver.
pub(crate) struct Dispatcher {
    opts: WebhookOptions,
    counters: Arc<AlertCounters>,
    queues: Mutex<HashMap<String, tokio::sync::mpsc::Sender<Arc<Vec<u8>>>>>,
    runtime: tokio::runtime::Handle,
}

impl Dispatcher {
    pub fn new(
        opts: WebhookOptions,
        counters: Arc<AlertCounters>,
        runtime: tokio::runtime::Handle,
    ) -> Dispatcher {
        Dispatcher {
            opts,
            counters,
            queues: Mutex::default(),
            runtime,
        }
    }

    /// Queues `payload` for `url`; never waits (a full queue drops the message).
    pub fn send(&self, url: &WebhookUrl, payload: &Payload) {
        let body = match serde_json::to_vec(payload) {
            Ok(b) => Arc::new(b),
            Err(e) => {
                log::error!("cannot encode a notification: {e}");
                return;
            }
        };
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        let tx = queues.entry(url.url.clone()).or_insert_with(|| {
            let (tx, rx) = tokio::sync::mpsc::channel(self.opts.queue.max(1));
            self.runtime.spawn(deliver_all(
                url.clone(),
                rx,
                self.opts.clone(),
                self.counters.clone(),
            ));
            tx
        });
        if tx.try_send(body).is_err() {
            self.counters.dropped.fetch_add(1, Relaxed);
            log::error!(
                "webhook {}: {} messages wait already; this notification is dropped",
                url.url,
                self.opts.queue
            );
        }
    }
}

/// Whether an answer with `status` is worth another attempt.
fn retryable(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

async fn deliver_all(
    url: WebhookUrl,
    mut rx: tokio::sync::mpsc::Receiver<Arc<Vec<u8>>>,
    opts: WebhookOptions,
    counters: Arc<AlertCounters>,
) {
    while let Some(body) = rx.recv().await {
        let mut wait = opts.backoff;
        let mut attempt = 1;
        loop {
            let outcome = tokio::time::timeout(
                opts.timeout,
                request(
                    &url.http,
                    "POST",
                    Some("application/json"),
                    &body,
                    "scrydb-alerts",
                ),
            )
            .await;
            let (retry, why) = match outcome {
                Ok(Ok(status)) if (200..300).contains(&status) => {
                    counters.sent.fetch_add(1, Relaxed);
                    break;
                }
                Ok(Ok(status)) => (retryable(status), format!("answered HTTP {status}")),
                Ok(Err(e)) => (true, e),
                Err(_) => (
                    true,
                    format!("no answer within {} ms", opts.timeout.as_millis()),
                ),
            };
            if !retry || attempt >= opts.max_attempts {
                counters.failed.fetch_add(1, Relaxed);
                log::error!(
                    "webhook {}: notification not delivered after {attempt} attempt(s): {why}",
                    url.url
                );
                break;
            }
            counters.retries.fetch_add(1, Relaxed);
            log::warn!(
                "webhook {}: attempt {attempt} failed ({why}); retrying in {} ms",
                url.url,
                wait.as_millis()
            );
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(opts.max_backoff);
            attempt += 1;
        }
    }
}

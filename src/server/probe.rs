//! Health checks of the services being debugged: each probe polls one HTTP endpoint and
//! stores every result as metric points of service `NAME` — `up` (1 or 0),
//! `probe.duration` (seconds) and, when an answer came, `probe.status_code` — and a log
//! record whenever the state changes (the first result included): up → down at ERROR with
//! the reason, down → up at INFO. So `SELECT … FROM metrics WHERE name = 'up'` joins with
//! the traces and logs of the same minutes.
//!
//! A target counts as up when it answers with a status below 400 within the timeout. Only
//! `http://` URLs are probed (health endpoints of local services); `https://` is refused
//! when the probe is configured.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::Shared;
use super::http_client::{HttpUrl, request};
use super::telemetry::{kv, nanos, scope, store_own};
use crate::otlp::Request;

/// One service to probe: `NAME=http://host:port/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    /// The service name its results are stored under.
    pub name: String,
    /// The URL, as given.
    pub url: String,
    http: HttpUrl,
}

impl std::str::FromStr for ProbeTarget {
    type Err = String;

    /// Parses `NAME=http://host[:port][/path]`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, url) = s
            .split_once('=')
            .ok_or_else(|| format!("probe {s:?} is not NAME=URL"))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("probe {s:?} has an empty name"));
        }
        let url_parsed = HttpUrl::parse(url, &format!("probe {name}"))?;
        Ok(ProbeTarget {
            name: name.to_string(),
            url: url.to_string(),
            http: url_parsed,
        })
    }
}

/// The result of one probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Whether the target answered below 400 in time.
    pub up: bool,
    /// The HTTP status, if an answer came.
    pub status: Option<u16>,
    /// How long it took (until the status line, or until it failed).
    pub took: Duration,
    /// Why it is down, if it is.
    pub error: Option<String>,
}

/// Probes `target` once.
pub async fn probe_once(target: &ProbeTarget, timeout: Duration) -> Probe {
    let started = Instant::now();
    let result = tokio::time::timeout(timeout, fetch_status(target)).await;
    let took = started.elapsed();
    match result {
        Ok(Ok(status)) => Probe {
            up: status < 400,
            status: Some(status),
            took,
            error: (status >= 400).then(|| format!("answered HTTP {status}")),
        },
        Ok(Err(e)) => Probe {
            up: false,
            status: None,
            took,
            error: Some(e),
        },
        Err(_) => Probe {
            up: false,
            status: None,
            took,
            error: Some(format!("no answer within {} ms", timeout.as_millis())),
        },
    }
}

async fn fetch_status(t: &ProbeTarget) -> Result<u16, String> {
    request(&t.http, "GET", None, &[], "scrydb-probe").await
}

/// Probes `target` every `probe_every` until stopped, storing each result.
pub(crate) async fn run(
    shared: Arc<Shared>,
    target: ProbeTarget,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(shared.opts.probe_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<bool> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let at = SystemTime::now();
        let p = probe_once(&target, shared.opts.probe_timeout).await;
        store_own(
            &shared,
            Request::Metrics(points(&target, &p, at)),
            "a probe result",
        )
        .await;
        if last != Some(p.up) {
            if p.up {
                log::info!("probe {}: up", target.name);
            } else {
                log::warn!(
                    "probe {}: down ({})",
                    target.name,
                    p.error.as_deref().unwrap_or("?")
                );
            }
            store_own(
                &shared,
                Request::Logs(change_log(&target, &p, last, at)),
                "a probe log",
            )
            .await;
            last = Some(p.up);
        }
    }
}

fn resource(t: &ProbeTarget) -> Resource {
    Resource {
        attributes: vec![kv("service.name", &t.name), kv("probe.url", &t.url)],
        ..Default::default()
    }
}

/// The metric points of one result.
pub(crate) fn points(t: &ProbeTarget, p: &Probe, at: SystemTime) -> ExportMetricsServiceRequest {
    let time = nanos(at);
    let gauge = |name: &str, unit: &str, v: f64| Metric {
        name: name.into(),
        unit: unit.into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                attributes: vec![kv("probe.url", &t.url)],
                time_unix_nano: time,
                value: Some(number_data_point::Value::AsDouble(v)),
                ..Default::default()
            }],
        })),
        ..Default::default()
    };
    let mut metrics = vec![
        gauge("up", "1", if p.up { 1.0 } else { 0.0 }),
        gauge("probe.duration", "s", p.took.as_secs_f64()),
    ];
    if let Some(code) = p.status {
        metrics.push(gauge("probe.status_code", "1", f64::from(code)));
    }
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource(t)),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// The log record of a state change (`was`: the state before, `None` at the first probe).
fn change_log(
    t: &ProbeTarget,
    p: &Probe,
    was: Option<bool>,
    at: SystemTime,
) -> ExportLogsServiceRequest {
    let ms = p.took.as_secs_f64() * 1e3;
    let (severity, text, body) = if p.up {
        let status = p.status.map_or(String::new(), |s| format!("HTTP {s}, "));
        let verb = if was == Some(false) {
            "is up again"
        } else {
            "is up"
        };
        (
            SeverityNumber::Info,
            "INFO",
            format!("{} {verb} ({status}{ms:.1} ms) at {}", t.name, t.url),
        )
    } else {
        (
            SeverityNumber::Error,
            "ERROR",
            format!(
                "{} is down: {} ({})",
                t.name,
                p.error.as_deref().unwrap_or("unknown error"),
                t.url
            ),
        )
    };
    let time = nanos(at);
    let mut attributes = vec![
        kv("probe.url", &t.url),
        kv("probe.state", if p.up { "up" } else { "down" }),
    ];
    if let Some(s) = p.status {
        attributes.push(kv("http.response.status_code", &s.to_string()));
    }
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource(t)),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope()),
                log_records: vec![LogRecord {
                    time_unix_nano: time,
                    observed_time_unix_nano: time,
                    severity_number: severity as i32,
                    severity_text: text.into(),
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(body)),
                    }),
                    attributes,
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::ProbeTarget;

    #[test]
    fn targets_parse_and_bad_ones_say_why() {
        let t: ProbeTarget = "cart=http://127.0.0.1:8080/healthz"
            .parse()
            .expect("parses");
        assert_eq!(
            (
                t.name.as_str(),
                t.http.host.as_str(),
                t.http.port,
                t.http.path.as_str()
            ),
            ("cart", "127.0.0.1", 8080, "/healthz")
        );
        let t: ProbeTarget = "web=http://localhost".parse().expect("parses");
        assert_eq!((t.http.port, t.http.path.as_str()), (80, "/"));
        for (bad, says) in [
            ("nourl", "NAME=URL"),
            ("=http://x/", "empty name"),
            ("a=https://x/", "https is not supported"),
            ("a=ftp://x/", "not an http:// URL"),
            ("a=http://x:99999/", "bad port"),
        ] {
            let e = bad.parse::<ProbeTarget>().expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}

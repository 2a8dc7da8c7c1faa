//! Alerting: a rules file with each kind of rule over a generated shop with injected
//! faults fires the right alerts within their `for` and resolves them after recovery;
//! `scry serve` posts Alertmanager payloads to a loopback receiver, keeps alert states
//! across a restart, retries and counts a failing webhook, reloads its rules; bad rules
//! files are refused with the rule's name and the SQL error.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use scrydb::alert::{AlertCounters, AlertOptions, Evaluator, RuleSet, State};
use scrydb::otlp::Request;
use scrydb::server::{ServeOptions, Server};
use scrydb::{Db, Options};
use scrydb_workload::{Fault, FaultKind, Workload, WorkloadOptions};

use crate::common::{BASE, http};

const SEC: i64 = 1_000_000_000;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// One gauge point of `service`.
fn gauge(service: &str, name: &str, value: f64, time_ns: i64) -> Request {
    Request::Metrics(ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service)],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: time_ns as u64,
                            value: Some(number_data_point::Value::AsDouble(value)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

const SECONDS: u32 = 900;

/// A 15-minute shop with an error burst and a latency fault in its middle five minutes
/// (two workloads, one store), and a health probe of `ledger` that is down then.
fn faulty_shop(dir: &Path) -> (Fault, Fault) {
    let db = Db::open(dir, Options::default()).expect("open");
    let mut faults = Vec::new();
    for (seed, kind) in [(3, FaultKind::ErrorBurst), (5, FaultKind::Latency)] {
        let workload = Workload::new(WorkloadOptions {
            seed,
            start_ns: BASE,
            seconds: SECONDS,
            traces_per_second: 3,
            fault: Some(kind),
        });
        faults.push(workload.fault().expect("a fault").clone());
        crate::common::ingest_workload(&db, workload);
    }
    let f = &faults[0];
    for s in 0..i64::from(SECONDS) / 10 {
        let t = BASE + s * 10 * SEC;
        let up = if (f.start_ns..f.end_ns).contains(&t) {
            0.0
        } else {
            1.0
        };
        db.ingest_otlp(&gauge("ledger", "up", up, t)).expect("up");
    }
    db.close().expect("close");
    (faults[0].clone(), faults[1].clone())
}

const RULES: &str = r#"
[[groups]]
name = "shop"
interval = "30s"

[[groups.rules]]
alert = "ServerErrors"
expr = """
SELECT CAST(service_name AS VARCHAR) AS service,
       CAST(sum(errors) AS DOUBLE) / sum(count) AS value
FROM span_metrics
WHERE time > {{ $now - 1m }} AND time <= {{ $now }} AND kind = 'SERVER'
GROUP BY 1
"""
condition = "> 0.05"
for = "1m"
labels = { severity = "page" }
annotations = { summary = "{{ $labels.service }} fails {{ $value }} of its calls" }

[[builtin]]
kind = "error_rate_jump"
window = "2m"
baseline = "5m"
min_count = 10
interval = "30s"

[[builtin]]
kind = "latency_jump"
window = "2m"
baseline = "5m"
min_count = 10
interval = "30s"

[[builtin]]
kind = "probe_down"
interval = "30s"
for = "30s"

[[builtin]]
kind = "log_surge"
window = "2m"
min_count = 5
interval = "30s"
"#;

/// (time, state) of every change of the instances of `rule` whose labels include `with`.
fn changes_of(
    all: &[(i64, scrydb::alert::Alert)],
    rule: &str,
    with: &[(&str, &str)],
) -> Vec<(i64, State)> {
    all.iter()
        .filter(|(_, a)| {
            a.rule == rule
                && with
                    .iter()
                    .all(|(k, v)| a.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(t, a)| (*t, a.state))
        .collect()
}

#[test]
fn each_kind_of_rule_fires_on_the_injected_fault_and_resolves_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (errors, latency) = faulty_shop(dir.path());
    let db = Arc::new(Db::open(dir.path(), Options::default()).expect("open"));
    let set = RuleSet::parse(RULES, "rules.toml").expect("parses");
    set.check(&db, "rules.toml").expect("every query plans");
    assert_eq!(set.groups.len(), 5);
    let counters = AlertCounters::default();
    let hook: scrydb::alert::WebhookUrl = "http://127.0.0.1:9/hook".parse().expect("url");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut evaluator = Evaluator::new(db.clone(), "http://scry.test");
    let mut all = Vec::new();
    let mut payloads = Vec::new();
    // Evaluate every 30 s from minute 3 to the end (+ 3 minutes of silence).
    let mut now = BASE + 180 * SEC;
    while now <= BASE + i64::from(SECONDS + 180) * SEC {
        for g in &set.groups {
            let done = rt.block_on(evaluator.evaluate_group(
                g,
                now,
                std::slice::from_ref(&hook),
                &counters,
            ));
            for c in done.changes {
                all.push((now, c));
            }
            for n in done.notifications {
                assert_eq!(n.webhook, hook, "no rule has webhooks of its own");
                payloads.push((now, n.payload));
            }
        }
        now += 30 * SEC;
    }
    let (evaluations, failures) = counters.evaluations();
    assert!(evaluations > 100, "{evaluations}");
    assert_eq!(failures, 0, "no rule failed: {all:#?}");
    assert!(all.iter().all(|(_, a)| a.state != State::Error));

    // The SQL rule: pending when the burst starts, firing a minute later, resolved after.
    let svc = changes_of(&all, "ServerErrors", &[("service", errors.service)]);
    let states: Vec<State> = svc.iter().map(|c| c.1).collect();
    assert_eq!(
        states,
        [State::Pending, State::Firing, State::Resolved],
        "{svc:?} (fault {errors:?})"
    );
    let (pending, firing, resolved) = (svc[0].0, svc[1].0, svc[2].0);
    assert!(
        pending > errors.start_ns && pending <= errors.start_ns + 60 * SEC,
        "{svc:?}"
    );
    assert!(
        firing - pending >= 60 * SEC && firing - pending <= 90 * SEC,
        "for 1m: {svc:?}"
    );
    assert!(
        resolved > errors.end_ns && resolved <= errors.end_ns + 90 * SEC,
        "{svc:?}"
    );

    // Built-ins name the faulty service and operation.
    for (rule, f) in [("ErrorRateJump", &errors), ("LatencyJump", &latency)] {
        let c = changes_of(
            &all,
            rule,
            &[("service_name", f.service), ("operation", f.operation)],
        );
        assert_eq!(
            c.first().map(|c| c.1),
            Some(State::Firing),
            "{rule}: {c:?} for {f:?}"
        );
        assert!(
            c[0].0 > f.start_ns && c[0].0 <= f.start_ns + 120 * SEC,
            "{rule}: {c:?}"
        );
        assert_eq!(
            c.last().map(|c| c.1),
            Some(State::Resolved),
            "{rule}: {c:?}"
        );
        assert!(
            c.last().expect("resolved").0 < f.end_ns + 180 * SEC,
            "{rule}: {c:?}"
        );
    }
    let probe = changes_of(&all, "ProbeDown", &[("service_name", "ledger")]);
    let states: Vec<State> = probe.iter().map(|c| c.1).collect();
    assert_eq!(
        states,
        [State::Pending, State::Firing, State::Resolved],
        "{probe:?}"
    );
    assert!(probe[0].0 >= errors.start_ns && probe[0].0 <= errors.start_ns + 30 * SEC);
    assert!(probe[2].0 >= errors.end_ns && probe[2].0 <= errors.end_ns + 60 * SEC + 30 * SEC);
    let surge = changes_of(&all, "LogSurge", &[("service_name", errors.service)]);
    assert!(
        surge
            .iter()
            .any(|c| c.1 == State::Firing && c.0 > errors.start_ns && c.0 < errors.end_ns),
        "a log pattern of {} surges during the burst: {surge:?}",
        errors.service
    );
    // Nothing fires before any fault.
    assert!(
        all.iter()
            .all(|(t, a)| *t >= errors.start_ns.min(latency.start_ns) || a.state != State::Firing),
        "{:?}",
        all.iter()
            .filter(|(t, _)| *t < errors.start_ns)
            .collect::<Vec<_>>()
    );

    // Notifications: one per firing and resolving evaluation, in Alertmanager's shape.
    let (at, p) = payloads
        .iter()
        .find(|(_, p)| p.group_labels["alertname"] == "ServerErrors" && p.status == "firing")
        .expect("a firing message");
    assert_eq!(*at, firing);
    let json = serde_json::to_value(p).expect("json");
    assert_eq!(json["version"], "4");
    assert_eq!(json["groupKey"], "{}:{alertname=\"ServerErrors\"}");
    assert_eq!(json["receiver"], "scrydb");
    let a = json["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .find(|a| a["labels"]["service"] == errors.service)
        .expect("the faulty service's alert");
    assert_eq!(a["status"], "firing");
    assert_eq!(a["labels"]["severity"], "page");
    assert_eq!(a["labels"]["alertname"], "ServerErrors");
    assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z");
    assert!(
        a["annotations"]["summary"]
            .as_str()
            .expect("summary")
            .starts_with(&format!("{} fails 0.", errors.service)),
        "{a}"
    );
    assert_eq!(a["fingerprint"].as_str().expect("fp").len(), 16);
    assert!(
        a["generatorURL"]
            .as_str()
            .expect("url")
            .starts_with("http://scry.test/sql?q=")
    );
    let resolved_msg = payloads
        .iter()
        .find(|(_, p)| {
            p.group_labels["alertname"] == "ServerErrors"
                && p.alerts
                    .iter()
                    .any(|a| a.status == "resolved" && a.labels["service"] == errors.service)
        })
        .expect("a resolving message");
    assert_eq!(resolved_msg.0, resolved);
    let r = resolved_msg
        .1
        .alerts
        .iter()
        .find(|a| a.labels["service"] == errors.service)
        .expect("it");
    assert!(
        r.ends_at > r.starts_at && !r.ends_at.starts_with("0001"),
        "{r:?}"
    );

    // Every change is in the store's `alerts` table, joinable with the spans of its window.
    let rows = db
        .sql_blocking(&format!(
            "SELECT a.state, count(s.span_id) AS errors FROM alerts a \
             JOIN spans s ON s.time BETWEEN a.started AND a.time \
                         AND CAST(s.service_name AS VARCHAR) = a.labels['service'] \
                         AND s.status_code = 'ERROR' \
             WHERE a.rule = 'ServerErrors' AND a.labels['service'] = '{}' AND a.state = 'firing' \
             GROUP BY a.state",
            errors.service
        ))
        .expect("join");
    let got = crate::common::values(&rows);
    assert_eq!(got.len(), 1, "{got:?}");
    let n: u64 = got[0]
        .strip_prefix("firing|")
        .expect("firing")
        .parse()
        .expect("n");
    assert!(n > 0, "{got:?}");
    let history = scrydb::alert::history(&db, None, 10_000).expect("history");
    assert_eq!(history.len(), all.len(), "one row per change");
    assert!(
        scrydb::alert::current(&db).expect("current").is_empty(),
        "all resolved"
    );
}

/// A loopback webhook receiver answering each POST with the next status of `script`
/// (then 200), keeping the bodies.
struct Receiver {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    hits: Arc<Mutex<usize>>,
}

fn receiver(script: Vec<u16>, always: u16) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let hits = Arc::new(Mutex::new(0usize));
    let (b, h) = (bodies.clone(), hits.clone());
    std::thread::spawn(move || {
        let mut script = script.into_iter();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0u8; len];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            *h.lock().expect("lock") += 1;
            let status = script.next().unwrap_or(always);
            if status == 200 {
                b.lock()
                    .expect("lock")
                    .push(serde_json::from_slice(&body).expect("a JSON payload"));
            }
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    Receiver { addr, bodies, hits }
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const LIVE_RULES: &str = r#"
[[groups]]
name = "queues"
interval = "1s"

[[groups.rules]]
alert = "QueueBacklog"
expr = """
SELECT CAST(service_name AS VARCHAR) AS service, last_value(value ORDER BY time) AS value
FROM metrics WHERE name = 'queue.depth' AND time > {{ $now - 1h }} GROUP BY 1
"""
condition = "> 50"
for = "1s"
annotations = { summary = "{{ $labels.service }} has {{ $value }} waiting" }
"#;

fn start(db: &Arc<Db>, rules: &Path, hooks: &[SocketAddr]) -> Server {
    let mut opts = ServeOptions::default();
    opts.grpc_addr = "127.0.0.1:0".parse().expect("addr");
    opts.http_addr = "127.0.0.1:0".parse().expect("addr");
    opts.self_metrics_every = None;
    let mut a = AlertOptions::new(rules);
    a.webhooks = hooks
        .iter()
        .map(|h| format!("http://{h}/hook").parse().expect("url"))
        .collect();
    a.webhook.backoff = Duration::from_millis(20);
    a.webhook.max_attempts = 3;
    a.webhook.timeout = Duration::from_secs(2);
    a.watch_every = Duration::from_millis(100);
    opts.alerts = Some(a);
    Server::start(db.clone(), opts).expect("serve")
}

fn depth(db: &Db, value: f64) {
    db.ingest_otlp(&gauge(
        "orders",
        "queue.depth",
        value,
        scrydb::alert::now_ns(),
    ))
    .expect("a point");
}

#[test]
fn scry_serve_notifies_keeps_state_across_a_restart_and_retries_a_failing_webhook() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, LIVE_RULES).expect("rules");
    let store = dir.path().join("store");
    let db = Arc::new(Db::open(&store, Options::default()).expect("open"));
    let good = receiver(vec![], 200);
    // 503 twice, then accepted: delivered on the third attempt.
    let flaky = receiver(vec![503, 503], 200);
    // Always 500: given up after three attempts.
    let broken = receiver(vec![], 500);
    let server = start(&db, &rules, &[good.addr, flaky.addr, broken.addr]);

    depth(&db, 120.0);
    wait_for("the firing notification", Duration::from_secs(30), || {
        !good.bodies.lock().expect("lock").is_empty()
    });
    let first = good.bodies.lock().expect("lock")[0].clone();
    assert_eq!(first["status"], "firing");
    assert_eq!(first["version"], "4");
    assert_eq!(first["alerts"][0]["labels"]["service"], "orders");
    assert_eq!(
        first["alerts"][0]["annotations"]["summary"],
        "orders has 120 waiting"
    );
    assert_eq!(first["commonLabels"]["alertname"], "QueueBacklog");
    let started = first["alerts"][0]["startsAt"].clone();
    wait_for(
        "the retried and the failed deliveries",
        Duration::from_secs(30),
        || {
            let c = server.counters().alerts();
            c.notifications_sent() >= 2 && c.notifications_failed() >= 1
        },
    );
    assert_eq!(
        *flaky.hits.lock().expect("lock"),
        3,
        "two 503s, then delivered"
    );
    assert_eq!(flaky.bodies.lock().expect("lock").len(), 1);
    assert_eq!(*broken.hits.lock().expect("lock"), 3, "max_attempts");
    let c = server.counters().alerts();
    assert_eq!(c.notification_retries(), 4, "two for each failing receiver");
    let metrics = http(server.http_addr(), "GET", "/metrics", &[], &[]);
    let text = String::from_utf8_lossy(&metrics.2);
    assert!(
        text.contains("scrydb_alert_notifications_total{outcome=\"failed\"} 1"),
        "{text}"
    );
    assert!(text.contains("scrydb_alerts{state=\"firing\"} 1"), "{text}");

    // A restart keeps the firing alert: no second firing message, and it resolves with
    // its original start.
    server.shutdown().expect("shutdown");
    let server = start(&db, &rules, &[good.addr]);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        good.bodies.lock().expect("lock").len(),
        1,
        "not fired again"
    );
    let current = scrydb::alert::current(&db).expect("current");
    assert_eq!(current.len(), 1);
    assert_eq!(current[0].state, State::Firing);
    depth(&db, 3.0);
    wait_for(
        "the resolving notification",
        Duration::from_secs(30),
        || good.bodies.lock().expect("lock").len() >= 2,
    );
    let resolved = good.bodies.lock().expect("lock")[1].clone();
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["alerts"][0]["status"], "resolved");
    assert_eq!(
        resolved["alerts"][0]["startsAt"], started,
        "the start survived the restart"
    );

    // A reload that breaks a query keeps the running rules; a good one applies.
    std::fs::write(
        &rules,
        LIVE_RULES.replace("FROM metrics", "FROM no_such_table"),
    )
    .expect("write");
    let e = server.reload_rules().expect_err("refused");
    assert!(
        e.contains("QueueBacklog") && e.contains("no_such_table"),
        "{e}"
    );
    std::fs::write(&rules, LIVE_RULES.replace("> 50", "> 1")).expect("write");
    assert_eq!(server.reload_rules(), Ok(1));
    wait_for(
        "the lower threshold to fire",
        Duration::from_secs(30),
        || good.bodies.lock().expect("lock").len() >= 3,
    );
    // The file watcher reloads by itself: removing the rule resolves its alert.
    std::fs::write(&rules, "").expect("write");
    wait_for(
        "the removed rule's alert to resolve",
        Duration::from_secs(30),
        || good.bodies.lock().expect("lock").len() >= 4,
    );
    assert_eq!(good.bodies.lock().expect("lock")[3]["status"], "resolved");
    server.shutdown().expect("shutdown");
    let states: Vec<String> = scrydb::alert::history(&db, None, 100)
        .expect("history")
        .iter()
        .map(|a| a.state.as_str().to_string())
        .collect();
    assert_eq!(
        states,
        [
            "pending", "firing", "resolved", "pending", "firing", "resolved"
        ]
    );
    Arc::try_unwrap(db)
        .expect("one handle")
        .close()
        .expect("close");

    // `scry alerts` reads the same table.
    let (ok, out, err) = crate::common::run_scry(&[
        "--db".as_ref(),
        store.as_os_str(),
        "alerts".as_ref(),
        "--since".as_ref(),
        "1h".as_ref(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("no firing or pending alerts"), "{out}");
    assert!(
        out.contains("firing   QueueBacklog") && out.contains("service=orders"),
        "{out}"
    );
}

#[test]
fn bad_rules_are_refused_with_the_rule_and_the_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), Options::default()).expect("open");
    let group = "[[groups]]\nname = \"g\"\n[[groups.rules]]\nalert = \"R\"\n";
    for (text, says) in [
        ("[[groups]]\nname = 1", "invalid type"),
        (
            "[[groups]]\nname = \"g\"\nintervl = \"1m\"",
            "unknown field `intervl`",
        ),
        (
            &format!("{group}expr = \"SELECT 1 AS value FROM nope\""),
            "rule \"R\" (group \"g\"): the query does not plan",
        ),
        (
            &format!("{group}expr = \"SELECT 1 AS v\""),
            "no `value` column",
        ),
        (
            &format!("{group}expr = \"SELECT 'x' AS value\""),
            "not a number",
        ),
        (
            &format!("{group}expr = \"SELECT 1 AS value\"\ncondition = \"about 3\""),
            "condition",
        ),
        (
            &format!("{group}expr = \"SELECT 1 AS value\"\nfor = \"5 parsecs\""),
            "duration",
        ),
        (
            &format!(
                "{group}expr = \"SELECT 1 AS value\"\nannotations = {{ s = \"{{{{ .Value }}}}\" }}"
            ),
            "annotation \"s\"",
        ),
        (
            &format!("{group}expr = \"SELECT 1 AS value\"\nlabels = {{ alertname = \"x\" }}"),
            "alertname",
        ),
        (
            &format!("{group}expr = \"SELECT 1 AS value\"\nwebhooks = [\"https://x/\"]"),
            "https is not supported",
        ),
        (
            &format!("{group}expr = \"DROP TABLE spans\""),
            "does not plan",
        ),
        (
            &format!(
                "{group}expr = \"SELECT 1 AS value\"\n[[groups.rules]]\nalert = \"R\"\nexpr = \"SELECT 2 AS value\""
            ),
            "two rules have this name",
        ),
        ("[[builtin]]\nkind = \"cpu_melt\"", "unknown built-in kind"),
        (
            "[[builtin]]\nkind = \"error_rate_jump\"\nmin_rise = -1.0",
            "min_rise",
        ),
        (
            "[[builtin]]\nkind = \"probe_down\"\nwindow = \"soon\"",
            "window: duration",
        ),
        (
            &format!("{group}expr = \"SELECT 'x' AS alertname, 1 AS value\""),
            "column \"alertname\" cannot be a label",
        ),
        (
            &format!("{group}expr = \"SELECT 1 AS value\"\nkeep_firing_for = \"1 fortnight\""),
            "keep_firing_for: duration",
        ),
        (
            &format!("{group}expr = \"SELECT {{{{ $value }}}} AS value\""),
            "only `{{ $now }}`",
        ),
    ] {
        let e = RuleSet::parse(text, "r.toml")
            .and_then(|s| s.check(&db, "r.toml").map(|()| s))
            .expect_err(text);
        let msg = e.to_string();
        assert!(msg.starts_with("r.toml"), "{msg}");
        assert!(msg.contains(says), "{text:?}: {msg}");
    }
    // A rule failing at run time goes to `error` without stopping the others.
    let set = RuleSet::parse(
        &format!(
            "{group}expr = \"SELECT CAST(1 AS DOUBLE) / 0 AS value, 'a' AS k UNION ALL SELECT 2.0, 'a'\"\n\
             [[groups.rules]]\nalert = \"Fine\"\nexpr = \"SELECT 1.0 AS value\""
        ),
        "r.toml",
    )
    .expect("parses");
    set.check(&db, "r.toml").expect("plans");
    let db = Arc::new(db);
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let mut ev = Evaluator::new(db.clone(), "");
    let counters = AlertCounters::default();
    let done =
        rt.block_on(ev.evaluate_group(&set.groups[0], scrydb::alert::now_ns(), &[], &counters));
    let by: BTreeMap<&str, State> = done
        .changes
        .iter()
        .map(|a| (a.rule.as_str(), a.state))
        .collect();
    assert_eq!(by["R"], State::Error, "{:?}", done.changes);
    assert!(done.changes.iter().any(|a| {
        a.rule == "R"
            && a.error
                .as_deref()
                .is_some_and(|e| e.contains("two rows have the labels"))
    }));
    assert_eq!(by["Fine"], State::Firing);
    assert_eq!(
        counters.evaluations(),
        (2, 1),
        "the duplicate labels count as a failure"
    );
}

#[test]
fn keep_firing_for_holds_and_no_rows_is_nodata_or_an_alert_as_the_rule_says() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(Db::open(dir.path(), Options::default()).expect("open"));
    // queue.depth every 10 s: 100 until 40 s, 10 at 50 s and 60 s, then nothing until 120 s.
    for (s, v) in [
        (10, 100.0),
        (20, 100.0),
        (30, 100.0),
        (40, 100.0),
        (50, 10.0),
        (60, 10.0),
        (120, 100.0),
    ] {
        db.ingest_otlp(&gauge("orders", "queue.depth", v, BASE + s * SEC))
            .expect("point");
    }
    let window = "WHERE name = 'queue.depth' AND time > {{ $now - 10s }} AND time <= {{ $now }}";
    let rules = format!(
        r#"
[[groups]]
name = "g"
interval = "10s"

[[groups.rules]]
alert = "Backlog"
expr = "SELECT CAST(service_name AS VARCHAR) AS service, max(value) AS value FROM metrics {window} GROUP BY 1"
condition = "> 50"
keep_firing_for = "30s"
no_data = "nodata"

[[groups.rules]]
alert = "Heartbeat"
expr = "SELECT CAST(service_name AS VARCHAR) AS service, CAST(count(*) AS DOUBLE) AS value FROM metrics {window} GROUP BY 1"
condition = "< 0"
for = "20s"
no_data = "alerting"
"#
    );
    let set = RuleSet::parse(&rules, "r.toml").expect("parses");
    set.check(&db, "r.toml").expect("plans");
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let counters = AlertCounters::default();
    let mut ev = Evaluator::new(db.clone(), "");
    let mut got: Vec<(i64, String, State)> = Vec::new();
    for s in (10..=120).step_by(10) {
        let done = rt.block_on(ev.evaluate_group(&set.groups[0], BASE + s * SEC, &[], &counters));
        for c in done.changes {
            got.push((s, c.rule.clone(), c.state));
        }
    }
    let want: Vec<(i64, String, State)> = [
        (10, "Backlog", State::Firing),
        (70, "Backlog", State::NoData),
        (70, "Backlog", State::Resolved),
        (70, "Heartbeat", State::Pending),
        (90, "Heartbeat", State::Firing),
        (120, "Backlog", State::Inactive),
        (120, "Backlog", State::Firing),
        (120, "Heartbeat", State::Resolved),
    ]
    .into_iter()
    .map(|(s, r, st)| (s, r.to_string(), st))
    .collect();
    assert_eq!(got, want);
    let hist = scrydb::alert::history(&db, None, 100).expect("history");
    let nodata = hist
        .iter()
        .find(|a| a.state == State::NoData)
        .expect("a nodata row");
    assert_eq!(
        nodata.labels.get("alertname").map(String::as_str),
        Some("Backlog")
    );
    assert!(nodata.value.is_nan() && nodata.started.is_none());
    let resolved = hist
        .iter()
        .find(|a| a.rule == "Backlog" && a.state == State::Resolved)
        .expect("resolved");
    assert_eq!(resolved.started, Some(BASE + 10 * SEC));
    assert_eq!(
        resolved.ended,
        Some(BASE + 70 * SEC),
        "kept firing 30 s after its last active 40 s"
    );
}

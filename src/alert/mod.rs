//! Alerting: rules in SQL that `scry serve` evaluates by itself, alert states kept in the
//! store, and notifications to webhooks in Alertmanager's format.
//!
//! A rules file ([`RuleSet`], `docs/alerting.md`) holds groups of rules in Prometheus's
//! shape. Each rule's `expr` is a SQL query returning label columns and a numeric `value`
//! column, one alert instance per row (keyed by its labels); `condition` compares the value
//! with a threshold. An instance moves inactive → `pending` (active) → `firing` (active for
//! `for`) → `resolved` (no longer active, after `keep_firing_for`); a rule whose query fails
//! is in the `error` state (its instances keep theirs), and one returning no rows may be
//! `nodata` ([`NoData`]).
//!
//! Every state change is written into the store as a log record ([`crate::sql::alerts`]),
//! read back by the SQL table `alerts` — so alerts join with the spans and logs of the same
//! minutes, survive restarts (the [`Evaluator`] restores pending and firing instances from
//! it), and are flushed, compacted and retained like the rest. Firing and resolving are
//! posted to webhooks ([`webhook`]), never blocking an evaluation or an ingest.

pub mod builtin;
mod rules;
mod template;
pub mod webhook;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};

use crate::server::telemetry::kv;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;

pub use rules::{
    CompareOp, Condition, Group, MAX_INSTANCES, NoData, Rule, RuleError, RuleSet, describe,
    parse_duration,
};
pub use template::{Template, format_value, render_expr};
pub use webhook::{Payload, PayloadAlert, WebhookOptions, WebhookUrl};

use crate::Db;
use crate::arrow::array::{Array, AsArray, RecordBatch};
use crate::arrow::datatypes::{DataType, TimestampNanosecondType};
use crate::sql::alerts::{ANNOTATION_PREFIX, EVENT_NAME, SCOPE_NAME, field};

/// Nanoseconds since the epoch, now.
pub fn now_ns() -> i64 {
    crate::ui::params::now_ns()
}

/// The state of an alert instance (or, for `nodata` and `error`, of a rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not active (after pending without firing, or a rule that recovered).
    Inactive,
    /// Active, for less than the rule's `for`.
    Pending,
    /// Active for the rule's `for` (or kept by `keep_firing_for`): notified.
    Firing,
    /// Was firing, no longer is: notified.
    Resolved,
    /// The rule's query returned no rows and the rule says that is `nodata`.
    NoData,
    /// The rule's query failed.
    Error,
}

impl State {
    /// The name stored and shown (`firing`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Inactive => "inactive",
            State::Pending => "pending",
            State::Firing => "firing",
            State::Resolved => "resolved",
            State::NoData => "nodata",
            State::Error => "error",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<State> {
        Some(match s {
            "inactive" => State::Inactive,
            "pending" => State::Pending,
            "firing" => State::Firing,
            "resolved" => State::Resolved,
            "nodata" => State::NoData,
            "error" => State::Error,
            _ => return None,
        })
    }

    /// Whether an instance in this state is current (pending, firing, nodata, error).
    pub fn is_current(self) -> bool {
        matches!(
            self,
            State::Pending | State::Firing | State::NoData | State::Error
        )
    }
}

/// One alert instance as recorded: a row of the `alerts` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// When this state began (nanoseconds since the epoch).
    pub time: i64,
    /// The rule's name.
    pub rule: String,
    /// The rule's group.
    pub group: String,
    /// The state.
    pub state: State,
    /// 16 hex digits: the instance's identity (rule and labels).
    pub fingerprint: String,
    /// The rule's value for it (NaN when there is none).
    pub value: f64,
    /// When it became pending.
    pub started: Option<i64>,
    /// When it started firing.
    pub fired: Option<i64>,
    /// When it resolved.
    pub ended: Option<i64>,
    /// Its labels, `alertname` included.
    pub labels: BTreeMap<String, String>,
    /// Its annotations, rendered.
    pub annotations: BTreeMap<String, String>,
    /// A one-line summary.
    pub summary: String,
    /// Why the rule failed (`error` only).
    pub error: Option<String>,
}

/// The alerting counters (on `GET /metrics` as `scrydb_alert_*`).
#[derive(Debug, Default)]
pub struct AlertCounters {
    pub(crate) evaluations: AtomicU64,
    pub(crate) evaluation_failures: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) record_failures: AtomicU64,
    pub(crate) reloads: AtomicU64,
    pub(crate) reload_failures: AtomicU64,
    pub(crate) firing: AtomicU64,
    pub(crate) pending: AtomicU64,
}

impl AlertCounters {
    /// Notifications a receiver acknowledged (2xx).
    pub fn notifications_sent(&self) -> u64 {
        self.sent.load(Relaxed)
    }

    /// Notifications given up on (after their attempts, or refused with a 4xx).
    pub fn notifications_failed(&self) -> u64 {
        self.failed.load(Relaxed)
    }

    /// Attempts that failed and were retried.
    pub fn notification_retries(&self) -> u64 {
        self.retries.load(Relaxed)
    }

    /// Notifications dropped because their receiver's queue was full.
    pub fn notifications_dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Rule evaluations run, and those whose query failed.
    pub fn evaluations(&self) -> (u64, u64) {
        (
            self.evaluations.load(Relaxed),
            self.evaluation_failures.load(Relaxed),
        )
    }

    /// One sample per counter: name, labels, value, whether a counter (else a gauge).
    pub(crate) fn samples(&self) -> Vec<crate::server::Sample> {
        let c = |n: &'static str, l: Vec<(&'static str, String)>, v: &AtomicU64| {
            (n, l, v.load(Relaxed) as f64, true)
        };
        let outcome = |o: &str| vec![("outcome", o.to_string())];
        let mut out = vec![
            c("scrydb_alert_evaluations_total", vec![], &self.evaluations),
            c(
                "scrydb_alert_evaluation_failures_total",
                vec![],
                &self.evaluation_failures,
            ),
            c(
                "scrydb_alert_notifications_total",
                outcome("sent"),
                &self.sent,
            ),
            c(
                "scrydb_alert_notifications_total",
                outcome("failed"),
                &self.failed,
            ),
            c(
                "scrydb_alert_notifications_total",
                outcome("dropped"),
                &self.dropped,
            ),
            c(
                "scrydb_alert_notification_retries_total",
                vec![],
                &self.retries,
            ),
            c(
                "scrydb_alert_record_failures_total",
                vec![],
                &self.record_failures,
            ),
            c(
                "scrydb_alert_rule_reloads_total",
                outcome("ok"),
                &self.reloads,
            ),
            c(
                "scrydb_alert_rule_reloads_total",
                outcome("failed"),
                &self.reload_failures,
            ),
        ];
        for (state, v) in [("firing", &self.firing), ("pending", &self.pending)] {
            out.push((
                "scrydb_alerts",
                vec![("state", state.to_string())],
                v.load(Relaxed) as f64,
                false,
            ));
        }
        out
    }
}

/// 16 hex digits of a stable hash (FNV-1a, 64 bits) of `labels`, salted by `salt`.
pub fn fingerprint(labels: &BTreeMap<String, String>, salt: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: &[u8]| {
        for x in b {
            h ^= u64::from(*x);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(salt.as_bytes());
    for (k, v) in labels {
        eat(&[0xff]);
        eat(k.as_bytes());
        eat(&[0xfe]);
        eat(v.as_bytes());
    }
    format!("{h:016x}")
}

/// One row of a rule's result: its labels and value.
type Row = (BTreeMap<String, String>, f64);

/// The salt of a rule's own (`nodata`, `error`) records, so they never share a fingerprint
/// with an instance.
const HEALTH_SALT: &str = "rule health";

/// Evaluates rules against a store, keeping each instance's state, recording every change
/// in the store and returning the notifications to send.
pub struct Evaluator {
    db: Arc<Db>,
    instances: HashMap<String, Instance>,
    /// A rule's own state when it is `nodata` or `error` (with the error).
    health: HashMap<String, (State, Option<String>)>,
    external_url: String,
}

#[derive(Debug, Clone)]
struct Instance {
    alert: Alert,
    last_active: i64,
}

/// A notification to send: a receiver and the message.
#[derive(Debug, Clone)]
pub struct Notification {
    /// Where it goes.
    pub webhook: WebhookUrl,
    /// What.
    pub payload: Payload,
}

/// What one evaluation did.
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    /// The state changes recorded (or that failed to be).
    pub changes: Vec<Alert>,
    /// The messages to send.
    pub notifications: Vec<Notification>,
}

/// RFC 3339 with milliseconds, UTC (`2025-11-25T10:00:00.000Z`).
pub(crate) fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Evaluator {
    /// An evaluator over `db` with nothing restored (see [`Evaluator::restore`]).
    /// `external_url` (`http://host:port`, or empty) goes into notifications.
    pub fn new(db: Arc<Db>, external_url: &str) -> Evaluator {
        Evaluator {
            db,
            instances: HashMap::new(),
            health: HashMap::new(),
            external_url: external_url.trim_end_matches('/').to_string(),
        }
    }

    /// An evaluator that continues where the store's `alerts` table left off: pending and
    /// firing instances (their `for` keeps counting from when they became pending) and the
    /// rules' `nodata`/`error` states. Must not be called from an async task.
    pub fn restore(db: Arc<Db>, external_url: &str) -> Result<Evaluator, crate::sql::Error> {
        let mut e = Evaluator::new(db.clone(), external_url);
        let now = now_ns();
        for a in current(&db)? {
            if a.state == State::NoData || a.state == State::Error {
                e.health.insert(a.rule.clone(), (a.state, a.error.clone()));
            } else {
                e.instances.insert(
                    a.fingerprint.clone(),
                    Instance {
                        last_active: now,
                        alert: a,
                    },
                );
            }
        }
        Ok(e)
    }

    /// The current instances (pending and firing), by rule then fingerprint.
    pub fn alerts(&self) -> Vec<Alert> {
        let mut v: Vec<Alert> = self.instances.values().map(|i| i.alert.clone()).collect();
        v.sort_by(|a, b| (&a.rule, &a.fingerprint).cmp(&(&b.rule, &b.fingerprint)));
        v
    }

    /// How many instances are pending and firing.
    pub fn counts(&self) -> (u64, u64) {
        let mut pending = 0;
        let mut firing = 0;
        for i in self.instances.values() {
            match i.alert.state {
                State::Pending => pending += 1,
                State::Firing => firing += 1,
                _ => {}
            }
        }
        (pending, firing)
    }

    /// Evaluates every rule of `group` at `now` (nanoseconds since the epoch), one after
    /// another, each query cancelled after the group's timeout; records the changes in the
    /// store and returns them with the notifications to send to `default_webhooks` (or the
    /// rule's own). A failing rule goes to `error` without stopping the others.
    pub async fn evaluate_group(
        &mut self,
        group: &Group,
        now: i64,
        default_webhooks: &[WebhookUrl],
        counters: &AlertCounters,
    ) -> Evaluation {
        let mut out = Evaluation::default();
        for rule in &group.rules {
            counters.evaluations.fetch_add(1, Relaxed);
            let result = self.query(rule, now, group.timeout).await;
            let (changes, payload) = self.apply(group, rule, now, result);
            // The query failed, or its rows broke the rules (too many, duplicate labels).
            if self.health.get(&rule.name).map(|h| h.0) == Some(State::Error) {
                counters.evaluation_failures.fetch_add(1, Relaxed);
            }
            if let Some(payload) = payload {
                let hooks = if rule.webhooks.is_empty() {
                    default_webhooks
                } else {
                    &rule.webhooks
                };
                for w in hooks {
                    out.notifications.push(Notification {
                        webhook: w.clone(),
                        payload: payload.clone(),
                    });
                }
            }
            out.changes.extend(changes);
        }
        if !out.changes.is_empty()
            && let Err(e) = record(&self.db, &out.changes).await
        {
            counters.record_failures.fetch_add(1, Relaxed);
            log::error!(
                "could not record {} alert change(s): {e}",
                out.changes.len()
            );
        }
        let (pending, firing) = self.counts();
        counters.pending.store(pending, Relaxed);
        counters.firing.store(firing, Relaxed);
        out
    }

    /// Runs `rule`'s query at `now` on the SQL runtime, cancelled after `timeout`.
    async fn query(
        &self,
        rule: &Rule,
        now: i64,
        timeout: Duration,
    ) -> Result<Vec<RecordBatch>, String> {
        let sql = render_expr(&rule.expr, now)?;
        let db = self.db.clone();
        let task = crate::sql::runtime().spawn(async move {
            let session = db.session().map_err(|e| e.to_string())?;
            let df = session
                .read_only_dataframe(&sql)
                .await
                .map_err(|e| e.to_string())?;
            // One row past the most a rule may return: enough to say it returned too many.
            df.limit(0, Some(MAX_INSTANCES + 1))
                .map_err(|e| e.to_string())?
                .collect()
                .await
                .map_err(|e| e.to_string())
        });
        let abort = task.abort_handle();
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(format!("the query stopped: {e}")),
            Err(_) => {
                abort.abort();
                Err(format!(
                    "the query ran longer than the group's timeout ({} ms) and was cancelled",
                    timeout.as_millis()
                ))
            }
        }
    }

    fn base_labels(rule: &Rule) -> BTreeMap<String, String> {
        let mut l = rule.labels.clone();
        l.insert("alertname".into(), rule.name.clone());
        l
    }

    /// The rule's rows as (labels, value), checked.
    fn rows(rule: &Rule, batches: &[RecordBatch]) -> Result<Vec<Row>, String> {
        use crate::arrow::util::display::{ArrayFormatter, FormatOptions};
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for b in batches {
            let schema = b.schema();
            let vi = rules::value_column(&schema)?;
            let values = crate::arrow::compute::cast(b.column(vi), &DataType::Float64)
                .map_err(|e| format!("the value column: {e}"))?;
            let values = values.as_primitive::<crate::arrow::datatypes::Float64Type>();
            let options = FormatOptions::default();
            let mut label_cols = Vec::new();
            for (i, f) in schema.fields().iter().enumerate() {
                if i == vi {
                    continue;
                }
                rules::check_label_name(f.name())
                    .map_err(|e| format!("column {:?} cannot be a label: {e}", f.name()))?;
                let fmt = ArrayFormatter::try_new(b.column(i).as_ref(), &options)
                    .map_err(|e| format!("column {:?}: {e}", f.name()))?;
                label_cols.push((f.name().clone(), b.column(i).clone(), fmt));
            }
            for row in 0..b.num_rows() {
                if out.len() >= MAX_INSTANCES {
                    return Err(format!(
                        "the query returns more than {MAX_INSTANCES} rows; aggregate or filter \
                         it (each row is one alert)"
                    ));
                }
                let mut labels = Self::base_labels(rule);
                for (name, col, fmt) in &label_cols {
                    if col.is_valid(row) {
                        let v = fmt.value(row).to_string();
                        // The rule's own labels win over the query's, as in Prometheus.
                        labels.entry(name.clone()).or_insert(v);
                    }
                }
                let value = if values.is_valid(row) {
                    values.value(row)
                } else {
                    f64::NAN
                };
                let key = fingerprint(&labels, "");
                if !seen.insert(key) {
                    return Err(format!(
                        "two rows have the labels {labels:?}: each row must have its own \
                         labels (group by them)"
                    ));
                }
                out.push((labels, value));
            }
        }
        Ok(out)
    }

    fn annotate(rule: &Rule, a: &mut Alert) {
        a.annotations = rule
            .annotations
            .iter()
            .map(|(k, t)| (k.clone(), t.render(&a.labels, a.value)))
            .collect();
        let what = a.annotations.get("summary").cloned().unwrap_or_else(|| {
            let labels: Vec<String> = a
                .labels
                .iter()
                .filter(|(k, _)| *k != "alertname")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("value {} {}", format_value(a.value), labels.join(" "))
        });
        a.summary = format!("{} {}: {}", a.rule, a.state.as_str(), what.trim_end());
    }

    /// Moves `rule`'s instances on by one evaluation's result; returns the changes and the
    /// message to send, if any instance fired or resolved.
    fn apply(
        &mut self,
        group: &Group,
        rule: &Rule,
        now: i64,
        result: Result<Vec<RecordBatch>, String>,
    ) -> (Vec<Alert>, Option<Payload>) {
        let mut changes = Vec::new();
        let rows = result.and_then(|b| Self::rows(rule, &b));
        let health = |state: State, error: Option<String>| {
            health_alert(
                &rule.name,
                &group.name,
                rule.labels.clone(),
                state,
                error,
                now,
            )
        };
        let rows = match rows {
            Err(e) => {
                let changed = self.health.get(&rule.name) != Some(&(State::Error, Some(e.clone())));
                if changed {
                    log::warn!("alert rule {}: {e}", rule.name);
                    self.health
                        .insert(rule.name.clone(), (State::Error, Some(e.clone())));
                    changes.push(health(State::Error, Some(e)));
                }
                return (changes, None);
            }
            Ok(rows) => rows,
        };
        let returned_nothing = rows.is_empty();
        let mut active: Vec<(BTreeMap<String, String>, f64)> = if returned_nothing {
            match rule.no_data {
                NoData::Alerting => vec![(Self::base_labels(rule), f64::NAN)],
                _ => Vec::new(),
            }
        } else {
            rows.into_iter()
                .filter(|(_, v)| rule.condition.is_none_or(|c| c.holds(*v)))
                .collect()
        };
        // The rule's own state: nodata when its query returned nothing (and it says so),
        // else back to normal.
        let want = if returned_nothing && rule.no_data == NoData::NoData {
            Some(State::NoData)
        } else {
            None
        };
        let had = self.health.get(&rule.name).map(|(s, _)| *s);
        match (had, want) {
            (None, Some(s)) => {
                self.health.insert(rule.name.clone(), (s, None));
                changes.push(health(s, None));
            }
            (Some(_), None) => {
                self.health.remove(&rule.name);
                changes.push(health(State::Inactive, None));
            }
            (Some(h), Some(s)) if h != s => {
                self.health.insert(rule.name.clone(), (s, None));
                changes.push(health(s, None));
            }
            _ => {}
        }
        let mut notify = false;
        let mut resolved_now = Vec::new();
        let mut active_keys = std::collections::HashSet::new();
        for (labels, value) in active.drain(..) {
            let fp = fingerprint(&labels, "");
            active_keys.insert(fp.clone());
            match self.instances.get_mut(&fp) {
                Some(inst) => {
                    inst.last_active = now;
                    inst.alert.value = value;
                    if inst.alert.state == State::Pending {
                        let started = inst.alert.started.unwrap_or(now);
                        if now.saturating_sub(started) >= rule.for_.as_nanos() as i64 {
                            inst.alert.state = State::Firing;
                            inst.alert.fired = Some(now);
                            inst.alert.time = now;
                            Self::annotate(rule, &mut inst.alert);
                            changes.push(inst.alert.clone());
                            notify = true;
                        }
                    }
                }
                None => {
                    let firing = rule.for_.is_zero();
                    let mut alert = Alert {
                        time: now,
                        rule: rule.name.clone(),
                        group: group.name.clone(),
                        state: if firing {
                            State::Firing
                        } else {
                            State::Pending
                        },
                        fingerprint: fp.clone(),
                        value,
                        started: Some(now),
                        fired: firing.then_some(now),
                        ended: None,
                        labels,
                        annotations: BTreeMap::new(),
                        summary: String::new(),
                        error: None,
                    };
                    Self::annotate(rule, &mut alert);
                    changes.push(alert.clone());
                    notify |= firing;
                    self.instances.insert(
                        fp,
                        Instance {
                            alert,
                            last_active: now,
                        },
                    );
                }
            }
        }
        let gone: Vec<String> = self
            .instances
            .iter()
            .filter(|(fp, i)| i.alert.rule == rule.name && !active_keys.contains(*fp))
            .map(|(fp, _)| fp.clone())
            .collect();
        for fp in gone {
            let keep = {
                let inst = &self.instances[&fp];
                inst.alert.state == State::Firing
                    && now.saturating_sub(inst.last_active) < rule.keep_firing_for.as_nanos() as i64
            };
            if keep {
                continue;
            }
            let Some(mut inst) = self.instances.remove(&fp) else {
                continue;
            };
            let was_firing = inst.alert.state == State::Firing;
            inst.alert.time = now;
            if was_firing {
                inst.alert.state = State::Resolved;
                inst.alert.ended = Some(now);
                notify = true;
            } else {
                inst.alert.state = State::Inactive;
            }
            Self::annotate(rule, &mut inst.alert);
            changes.push(inst.alert.clone());
            if was_firing {
                resolved_now.push(inst.alert);
            }
        }
        if !notify {
            return (changes, None);
        }
        let mut alerts: Vec<PayloadAlert> = self
            .instances
            .values()
            .filter(|i| i.alert.rule == rule.name && i.alert.state == State::Firing)
            .map(|i| i.alert.clone())
            .chain(resolved_now)
            .map(|a| self.payload_alert(Some(rule), a))
            .collect();
        alerts.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
        (
            changes,
            Some(Payload::new(&rule.name, &self.external_url, alerts)),
        )
    }

    fn payload_alert(&self, rule: Option<&Rule>, mut a: Alert) -> PayloadAlert {
        if let Some(rule) = rule
            && a.state == State::Firing
        {
            Self::annotate(rule, &mut a);
        }
        let generator_url = if self.external_url.is_empty() {
            String::new()
        } else {
            format!(
                "{}/sql?q={}",
                self.external_url,
                crate::ui::encode(&format!(
                    "SELECT * FROM alerts WHERE fingerprint = '{}' ORDER BY time",
                    a.fingerprint
                ))
            )
        };
        PayloadAlert {
            status: if a.state == State::Firing {
                "firing".into()
            } else {
                "resolved".into()
            },
            labels: a.labels,
            annotations: a.annotations,
            starts_at: rfc3339(a.fired.or(a.started).unwrap_or(a.time)),
            ends_at: a
                .ended
                .map_or_else(|| "0001-01-01T00:00:00Z".to_string(), rfc3339),
            generator_url,
            fingerprint: a.fingerprint,
        }
    }

    /// Ends what `new` (the rules after a reload, or the rules at a start) no longer has:
    /// instances of removed rules — pending ones become inactive, firing ones resolve — and
    /// removed rules' `nodata`/`error` states (recorded `inactive`). The changes are
    /// recorded; the messages for the resolved ones are returned, addressed to the removed
    /// rule's webhooks as `old` had them (or `default_webhooks`).
    pub async fn retire_missing(
        &mut self,
        old: &RuleSet,
        new: &RuleSet,
        default_webhooks: &[WebhookUrl],
        counters: &AlertCounters,
    ) -> Vec<Notification> {
        let names: std::collections::HashSet<&str> =
            new.rules().map(|(_, r)| r.name.as_str()).collect();
        let now = now_ns();
        let gone: Vec<String> = self
            .instances
            .iter()
            .filter(|(_, i)| !names.contains(i.alert.rule.as_str()))
            .map(|(fp, _)| fp.clone())
            .collect();
        let mut changes = Vec::new();
        let dropped: Vec<String> = self
            .health
            .keys()
            .filter(|rule| !names.contains(rule.as_str()))
            .cloned()
            .collect();
        for rule in dropped {
            self.health.remove(&rule);
            let group = old
                .rules()
                .find(|(_, r)| r.name == rule)
                .map_or_else(String::new, |(g, _)| g.name.clone());
            let mut a = health_alert(&rule, &group, BTreeMap::new(), State::Inactive, None, now);
            a.summary = format!("{rule} inactive: the rule was removed");
            changes.push(a);
        }
        let mut resolved: HashMap<String, Vec<PayloadAlert>> = HashMap::new();
        for fp in gone {
            let Some(mut inst) = self.instances.remove(&fp) else {
                continue;
            };
            let a = &mut inst.alert;
            a.time = now;
            if a.state == State::Firing {
                a.state = State::Resolved;
                a.ended = Some(now);
            } else {
                a.state = State::Inactive;
            }
            a.summary = format!("{} {}: the rule was removed", a.rule, a.state.as_str());
            changes.push(a.clone());
            if a.state == State::Resolved {
                let pa = self.payload_alert(None, a.clone());
                resolved.entry(a.rule.clone()).or_default().push(pa);
            }
        }
        if !changes.is_empty()
            && let Err(e) = record(&self.db, &changes).await
        {
            counters.record_failures.fetch_add(1, Relaxed);
            log::error!("could not record {} alert change(s): {e}", changes.len());
        }
        let mut out = Vec::new();
        for (rule, alerts) in resolved {
            let payload = Payload::new(&rule, &self.external_url, alerts);
            let own = old
                .rules()
                .find(|(_, r)| r.name == rule)
                .map(|(_, r)| r.webhooks.clone())
                .unwrap_or_default();
            let hooks = if own.is_empty() {
                default_webhooks.to_vec()
            } else {
                own
            };
            for w in hooks {
                out.push(Notification {
                    webhook: w,
                    payload: payload.clone(),
                });
            }
        }
        out
    }
}

/// A rule's own state record (`nodata`, `error`, or `inactive` when it is back to normal):
/// keyed by the rule's name alone, so changing the rule's labels keeps its identity.
fn health_alert(
    rule: &str,
    group: &str,
    rule_labels: BTreeMap<String, String>,
    state: State,
    error: Option<String>,
    now: i64,
) -> Alert {
    let mut labels = rule_labels;
    labels.insert("alertname".into(), rule.to_string());
    let key = BTreeMap::from([("alertname".to_string(), rule.to_string())]);
    Alert {
        time: now,
        rule: rule.to_string(),
        group: group.to_string(),
        state,
        fingerprint: fingerprint(&key, HEALTH_SALT),
        value: f64::NAN,
        started: None,
        fired: None,
        ended: None,
        labels,
        annotations: BTreeMap::new(),
        summary: match &error {
            Some(e) => format!("{rule} error: {e}"),
            None => format!("{rule} {}", state.as_str()),
        },
        error,
    }
}

/// The log records of `changes`.
fn records(changes: &[Alert]) -> ExportLogsServiceRequest {
    let mut logs = Vec::with_capacity(changes.len());
    for a in changes {
        let mut attrs: Vec<KeyValue> = a.labels.iter().map(|(k, v)| kv(k, v)).collect();
        attrs.push(kv(field::RULE, &a.rule));
        attrs.push(kv(field::GROUP, &a.group));
        attrs.push(kv(field::STATE, a.state.as_str()));
        attrs.push(kv(field::FINGERPRINT, &a.fingerprint));
        if a.value.is_finite() {
            attrs.push(kv(field::VALUE, &a.value.to_string()));
        }
        for (key, v) in [
            (field::STARTED, a.started),
            (field::FIRED, a.fired),
            (field::ENDED, a.ended),
        ] {
            if let Some(v) = v {
                attrs.push(kv(key, &v.to_string()));
            }
        }
        if let Some(e) = &a.error {
            attrs.push(kv(field::ERROR, e));
        }
        for (k, v) in &a.annotations {
            attrs.push(kv(&format!("{ANNOTATION_PREFIX}{k}"), v));
        }
        let (number, text) = match a.state {
            State::Firing => (13, "WARN"),
            State::Error => (17, "ERROR"),
            _ => (9, "INFO"),
        };
        logs.push(LogRecord {
            time_unix_nano: u64::try_from(a.time).unwrap_or(0),
            observed_time_unix_nano: u64::try_from(now_ns()).unwrap_or(0),
            severity_number: number,
            severity_text: text.into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(a.summary.clone())),
            }),
            attributes: attrs,
            event_name: EVENT_NAME.into(),
            ..Default::default()
        });
    }
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "scrydb")],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                log_records: logs,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// Writes `changes` into the store (as the `alerts` table's rows).
async fn record(db: &Arc<Db>, changes: &[Alert]) -> Result<(), String> {
    let request = crate::otlp::Request::Logs(records(changes));
    let db = db.clone();
    match tokio::task::spawn_blocking(move || db.ingest_otlp(&request)).await {
        Ok(Ok(ingested)) if ingested.rejected == 0 => Ok(()),
        Ok(Ok(ingested)) => Err(format!("{} record(s) refused", ingested.rejected)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// The non-null entries of a map cell.
fn map_row(map: &dyn Array, row: usize) -> BTreeMap<String, String> {
    crate::ui::cells::attrs_of(map, row)
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
}

/// Every row of the store's `alerts` table with `time >= since` (all with `None`), oldest
/// first, at most `limit` of the newest. Must not be called from an async task (see
/// [`history_async`]).
pub fn history(db: &Db, since: Option<i64>, limit: usize) -> Result<Vec<Alert>, crate::sql::Error> {
    crate::sql::block_on(history_async(db, since, limit))
}

/// [`history`] in an async task.
pub async fn history_async(
    db: &Db,
    since: Option<i64>,
    limit: usize,
) -> Result<Vec<Alert>, crate::sql::Error> {
    let filter = since.map_or_else(String::new, |s| {
        format!(
            "WHERE time >= {}",
            crate::diagnose::sql_timestamp_literal(s)
        )
    });
    let sql = format!(
        "SELECT * FROM (SELECT time, rule, \"group\", state, fingerprint, value, started, fired, \
         ended, labels, annotations, summary, error FROM alerts {filter} \
         ORDER BY time DESC, fingerprint LIMIT {limit}) ORDER BY time, fingerprint"
    );
    read_alerts(db, &sql).await
}

/// The rows of `sql` (the `alerts` table's columns, in its order) as alerts.
async fn read_alerts(db: &Db, sql: &str) -> Result<Vec<Alert>, crate::sql::Error> {
    let batches = db.sql(sql).await?;
    let mut out = Vec::new();
    for b in &batches {
        let ts = |i: usize| {
            b.column(i)
                .as_primitive::<TimestampNanosecondType>()
                .clone()
        };
        let s = |i: usize| {
            crate::arrow::compute::cast(b.column(i), &DataType::Utf8)
                .map(|a| a.as_string::<i32>().clone())
                .map_err(|e| crate::sql::Error::Query(format!("reading the alerts table: {e}")))
        };
        let (time, started, fired, ended) = (ts(0), ts(6), ts(7), ts(8));
        let (rule, group, state, fp, summary, error) = (s(1)?, s(2)?, s(3)?, s(4)?, s(11)?, s(12)?);
        let value = b
            .column(5)
            .as_primitive::<crate::arrow::datatypes::Float64Type>()
            .clone();
        let labels = b.column(9).clone();
        let annotations = b.column(10).clone();
        let opt = |a: &crate::arrow::array::TimestampNanosecondArray, i: usize| {
            a.is_valid(i).then(|| a.value(i))
        };
        let text = |a: &crate::arrow::array::StringArray, i: usize| {
            if a.is_valid(i) {
                a.value(i).to_string()
            } else {
                String::new()
            }
        };
        for i in 0..b.num_rows() {
            let Some(st) = State::parse(&text(&state, i)) else {
                continue;
            };
            out.push(Alert {
                time: time.value(i),
                rule: text(&rule, i),
                group: text(&group, i),
                state: st,
                fingerprint: text(&fp, i),
                value: if value.is_valid(i) {
                    value.value(i)
                } else {
                    f64::NAN
                },
                started: opt(&started, i),
                fired: opt(&fired, i),
                ended: opt(&ended, i),
                labels: map_row(labels.as_ref(), i),
                annotations: map_row(annotations.as_ref(), i),
                summary: text(&summary, i),
                error: error.is_valid(i).then(|| error.value(i).to_string()),
            });
        }
    }
    Ok(out)
}

/// The current alerts of the store: for every instance, its latest row, kept when it is
/// pending, firing, `nodata` or `error`. Must not be called from an async task (see
/// [`current_async`]).
pub fn current(db: &Db) -> Result<Vec<Alert>, crate::sql::Error> {
    crate::sql::block_on(current_async(db))
}

/// [`current`] in an async task.
pub async fn current_async(db: &Db) -> Result<Vec<Alert>, crate::sql::Error> {
    let mut v = read_alerts(
        db,
        "SELECT * FROM (SELECT time, rule, \"group\", state, fingerprint, value, started, fired, \
         ended, labels, annotations, summary, error, row_number() OVER (PARTITION BY fingerprint \
         ORDER BY time DESC) AS newest FROM alerts) \
         WHERE newest = 1 AND state IN ('pending', 'firing', 'nodata', 'error')",
    )
    .await?;
    v.sort_by(|a, b| (&a.rule, &a.fingerprint).cmp(&(&b.rule, &b.fingerprint)));
    Ok(v)
}

/// Alerting options of `scry serve` ([`crate::server::ServeOptions::alerts`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AlertOptions {
    /// The rules file.
    pub rules: PathBuf,
    /// Where notifications of rules without webhooks of their own go.
    pub webhooks: Vec<WebhookUrl>,
    /// How notifications are delivered.
    pub webhook: WebhookOptions,
    /// How often the rules file is checked for a change (its modification time and size);
    /// a changed file is reloaded. Default: 2 s.
    pub watch_every: Duration,
    /// Reload the rules on SIGHUP (Unix). A process-wide signal handler: off by default in
    /// the library, on in `scry serve`.
    pub reload_on_sighup: bool,
}

impl AlertOptions {
    /// Options for the rules file at `rules`, every other default.
    pub fn new(rules: impl Into<PathBuf>) -> AlertOptions {
        AlertOptions {
            rules: rules.into(),
            webhooks: Vec::new(),
            webhook: WebhookOptions::default(),
            watch_every: Duration::from_secs(2),
            reload_on_sighup: false,
        }
    }
}

/// Loads and checks the rules file of `opts` against `db`.
pub fn load(db: &Db, opts: &AlertOptions) -> Result<RuleSet, RuleError> {
    let set = RuleSet::load(&opts.rules)?;
    set.check(db, &opts.rules.display().to_string())?;
    Ok(set)
}

fn file_stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// The evaluation loop `scry serve` runs: evaluates each group every interval, reloads the
/// rules on a change of the file (or SIGHUP, or a message on `reload`), sends the
/// notifications. A reload that fails keeps the rules that were running.
pub(crate) async fn run(
    db: Arc<Db>,
    mut set: RuleSet,
    opts: AlertOptions,
    external_url: String,
    counters: Arc<AlertCounters>,
    mut reload: tokio::sync::mpsc::Receiver<tokio::sync::oneshot::Sender<Result<usize, String>>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let restored = {
        let db = db.clone();
        let url = external_url.clone();
        tokio::task::spawn_blocking(move || Evaluator::restore(db, &url)).await
    };
    let mut evaluator = match restored {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => {
            log::error!("could not restore alert states from the store (starting empty): {e}");
            Evaluator::new(db.clone(), &external_url)
        }
        Err(e) => {
            log::error!("could not restore alert states from the store (starting empty): {e}");
            Evaluator::new(db.clone(), &external_url)
        }
    };
    let dispatcher = webhook::Dispatcher::new(
        opts.webhook.clone(),
        counters.clone(),
        tokio::runtime::Handle::current(),
    );
    // Alerts restored from the store whose rules are gone from the file end now.
    for n in evaluator
        .retire_missing(&set, &set, &opts.webhooks, &counters)
        .await
    {
        dispatcher.send(&n.webhook, &n.payload);
    }
    #[cfg(unix)]
    let mut hup = if opts.reload_on_sighup {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| log::error!("cannot watch SIGHUP: {e}"))
            .ok()
    } else {
        None
    };
    let mut stamp = file_stamp(&opts.rules);
    let mut due: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_watch = Instant::now();
    log::info!(
        "alerting: {} rule(s) in {} group(s) from {}",
        set.rules().count(),
        set.groups.len(),
        opts.rules.display()
    );
    loop {
        let mut reply = None;
        #[cfg(unix)]
        let hup_recv = async {
            match hup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hup_recv = std::future::pending::<Option<()>>();
        let wanted = tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => false,
            Some(()) = hup_recv => true,
            Some(tx) = reload.recv() => { reply = Some(tx); true }
        };
        let changed = if last_watch.elapsed() >= opts.watch_every {
            last_watch = Instant::now();
            let now_stamp = file_stamp(&opts.rules);
            let c = now_stamp != stamp;
            stamp = now_stamp;
            c
        } else {
            false
        };
        if wanted || changed {
            let path = opts.rules.clone();
            let db2 = db.clone();
            let o = opts.clone();
            let loaded = tokio::task::spawn_blocking(move || load(&db2, &o)).await;
            let result = match loaded {
                Ok(Ok(new)) => {
                    counters.reloads.fetch_add(1, Relaxed);
                    log::info!(
                        "alerting: reloaded {} ({} rule(s))",
                        path.display(),
                        new.rules().count()
                    );
                    for n in evaluator
                        .retire_missing(&set, &new, &opts.webhooks, &counters)
                        .await
                    {
                        dispatcher.send(&n.webhook, &n.payload);
                    }
                    // Every group is evaluated at once under its new interval.
                    due.clear();
                    let n = new.rules().count();
                    set = new;
                    Ok(n)
                }
                Ok(Err(e)) => {
                    counters.reload_failures.fetch_add(1, Relaxed);
                    log::error!("alerting: the rules were not reloaded (the old ones run): {e}");
                    Err(e.to_string())
                }
                Err(e) => {
                    counters.reload_failures.fetch_add(1, Relaxed);
                    log::error!("alerting: reloading the rules failed (the old ones run): {e}");
                    Err(format!("reloading the rules failed: {e}"))
                }
            };
            if let Some(tx) = reply {
                let _ = tx.send(result);
            }
        }
        let now_i = Instant::now();
        for group in &set.groups {
            let next = due.get(&group.name).copied().unwrap_or(now_i);
            if next > now_i {
                continue;
            }
            due.insert(group.name.clone(), now_i + group.interval);
            // Stopping does not wait for a slow group (what it changed is not recorded; the
            // next start goes on from the store).
            let done = tokio::select! {
                done = evaluator.evaluate_group(group, now_ns(), &opts.webhooks, &counters) => done,
                _ = stop.changed() => return,
            };
            for n in done.notifications {
                dispatcher.send(&n.webhook, &n.payload);
            }
        }
    }
}

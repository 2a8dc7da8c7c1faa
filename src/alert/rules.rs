//! The rules file: groups of alerting rules in TOML, checked when loaded.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::template::Template;
use super::webhook::WebhookUrl;
use crate::Db;
use crate::sql::alerts::RESERVED_PREFIX;

/// Most alert instances (rows) one rule may return; more is an error of the rule.
pub const MAX_INSTANCES: usize = 1000;

/// Why a rules file was refused: where, and what is wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// The file could not be read.
    #[error("cannot read the rules file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the rules' shape.
    #[error("{origin}: {message}")]
    Syntax {
        /// The file (or `<text>`).
        origin: String,
        /// The TOML parser's message, with line and column.
        message: String,
    },
    /// One rule is wrong.
    #[error("{origin}: rule {rule:?} (group {group:?}): {message}")]
    Rule {
        /// The file (or `<text>`).
        origin: String,
        /// The group.
        group: String,
        /// The rule.
        rule: String,
        /// What is wrong (for a query, the SQL error).
        message: String,
    },
    /// Something about a group is wrong.
    #[error("{origin}: group {group:?}: {message}")]
    Group {
        /// The file (or `<text>`).
        origin: String,
        /// The group.
        group: String,
        /// What is wrong.
        message: String,
    },
}

/// A comparison of a rule's `value` with a threshold (`condition = "> 0.05"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Condition {
    /// The comparison.
    pub op: CompareOp,
    /// The threshold.
    pub threshold: f64,
}

/// The comparison of a [`Condition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Condition {
    /// Parses `"> 0.05"`, `">=3"`, `"== 0"`, ...
    pub fn parse(s: &str) -> Result<Condition, String> {
        let s = s.trim();
        let ops = [
            (">=", CompareOp::Ge),
            ("<=", CompareOp::Le),
            ("==", CompareOp::Eq),
            ("!=", CompareOp::Ne),
            (">", CompareOp::Gt),
            ("<", CompareOp::Lt),
        ];
        for (text, op) in ops {
            if let Some(rest) = s.strip_prefix(text) {
                let threshold: f64 = rest
                    .trim()
                    .parse()
                    .map_err(|_| format!("condition {s:?}: {:?} is not a number", rest.trim()))?;
                if threshold.is_nan() {
                    return Err(format!("condition {s:?}: the threshold is NaN"));
                }
                return Ok(Condition { op, threshold });
            }
        }
        Err(format!(
            "condition {s:?} is not an operator (>, >=, <, <=, ==, !=) and a number"
        ))
    }

    /// Whether `value` meets the condition (never for NaN).
    pub fn holds(&self, value: f64) -> bool {
        let t = self.threshold;
        match self.op {
            CompareOp::Gt => value > t,
            CompareOp::Ge => value >= t,
            CompareOp::Lt => value < t,
            CompareOp::Le => value <= t,
            CompareOp::Eq => value == t,
            CompareOp::Ne => !value.is_nan() && value != t,
        }
    }
}

/// What a rule does when its query returns no rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NoData {
    /// Nothing: no rows means no alert (the default; right for rules whose query keeps
    /// only the alerting rows).
    #[default]
    Ok,
    /// The rule's state becomes `nodata` (recorded, not notified).
    NoData,
    /// No rows is itself an alert: one instance (labels: the rule's) goes pending and fires
    /// after `for` (a heartbeat that stopped).
    Alerting,
}

/// One alerting rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The rule's name: the `alertname` label of its alerts.
    pub name: String,
    /// The query: label columns plus a numeric `value` column, one alert instance per row.
    /// `{{ $now }}` (or `{{ $now - 5m }}`) stands for the evaluation time.
    pub expr: String,
    /// The threshold a row's value must meet to be active; `None`: every row is active.
    pub condition: Option<Condition>,
    /// How long an instance must stay active before it fires.
    pub for_: Duration,
    /// How long a firing instance keeps firing after it stops being active.
    pub keep_firing_for: Duration,
    /// Labels added to every instance (over the query's).
    pub labels: BTreeMap<String, String>,
    /// Annotations, rendered per instance.
    pub annotations: BTreeMap<String, Template>,
    /// Where this rule's notifications go; empty: the server's default webhooks.
    pub webhooks: Vec<WebhookUrl>,
    /// What no rows means.
    pub no_data: NoData,
}

/// A group of rules evaluated together, one after another, every `interval`.
#[derive(Debug, Clone)]
pub struct Group {
    /// The group's name (unique in a file).
    pub name: String,
    /// How often its rules are evaluated.
    pub interval: Duration,
    /// How long one rule's query may run before it is cancelled (an `error`).
    pub timeout: Duration,
    /// The rules.
    pub rules: Vec<Rule>,
}

/// A checked rules file.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    /// The groups, in file order (built-in rules after them, one group each).
    pub groups: Vec<Group>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    groups: Vec<GroupDoc>,
    #[serde(default)]
    builtin: Vec<BuiltinSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupDoc {
    name: String,
    interval: Option<String>,
    timeout: Option<String>,
    #[serde(default)]
    rules: Vec<RuleDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDoc {
    #[serde(alias = "name")]
    alert: String,
    expr: String,
    condition: Option<String>,
    #[serde(rename = "for")]
    for_: Option<String>,
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    webhooks: Vec<String>,
    no_data: Option<String>,
}

/// A duration like `30s`, `5m`, `1h`, `1.5d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::sql::search::parse_duration_ns(s.trim())
        .map(|ns| Duration::from_nanos(ns as u64))
        .map_err(|e| format!("duration {s:?}: {e}"))
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

impl RuleSet {
    /// Reads and parses the rules file at `path` (see [`RuleSet::parse`]).
    pub fn load(path: &Path) -> Result<RuleSet, RuleError> {
        let text = std::fs::read_to_string(path).map_err(|source| RuleError::Read {
            path: path.display().to_string(),
            source,
        })?;
        RuleSet::parse(&text, &path.display().to_string())
    }

    /// Parses a rules file's text; `origin` names it in errors. Checks everything that can
    /// be checked without a store: shape, durations, conditions, templates, label names,
    /// webhook URLs, unique names. [`RuleSet::check`] then plans every query.
    pub fn parse(text: &str, origin: &str) -> Result<RuleSet, RuleError> {
        let doc: FileDoc = toml::from_str(text).map_err(|e| RuleError::Syntax {
            origin: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let mut set = RuleSet::default();
        for g in doc.groups {
            let group_err = |message: String| RuleError::Group {
                origin: origin.to_string(),
                group: g.name.clone(),
                message,
            };
            if g.name.trim().is_empty() {
                return Err(group_err("the group has no name".into()));
            }
            let interval = match &g.interval {
                Some(s) => parse_duration(s).map_err(|e| group_err(format!("interval: {e}")))?,
                None => Duration::from_secs(60),
            };
            if interval < Duration::from_secs(1) {
                return Err(group_err(format!(
                    "interval {} is below 1s",
                    secs(interval)
                )));
            }
            let timeout = match &g.timeout {
                Some(s) => parse_duration(s).map_err(|e| group_err(format!("timeout: {e}")))?,
                None => interval.min(Duration::from_secs(30)),
            };
            if timeout.is_zero() {
                return Err(group_err("timeout is zero".into()));
            }
            let mut rules = Vec::new();
            for r in g.rules {
                let name = r.alert.clone();
                let rule = build_rule(r).map_err(|message| RuleError::Rule {
                    origin: origin.to_string(),
                    group: g.name.clone(),
                    rule: name,
                    message,
                })?;
                rules.push(rule);
            }
            set.groups.push(Group {
                name: g.name,
                interval,
                timeout,
                rules,
            });
        }
        for (i, b) in doc.builtin.into_iter().enumerate() {
            let label = b.name.clone().unwrap_or_else(|| b.kind.clone());
            let group = super::builtin::expand(b).map_err(|message| RuleError::Rule {
                origin: origin.to_string(),
                group: format!("builtin #{}", i + 1),
                rule: label,
                message,
            })?;
            set.groups.push(group);
        }
        let mut groups = std::collections::HashSet::new();
        let mut rules = std::collections::HashSet::new();
        for g in &set.groups {
            if !groups.insert(g.name.as_str()) {
                return Err(RuleError::Group {
                    origin: origin.to_string(),
                    group: g.name.clone(),
                    message: "two groups have this name".into(),
                });
            }
            for r in &g.rules {
                if !rules.insert(r.name.as_str()) {
                    return Err(RuleError::Rule {
                        origin: origin.to_string(),
                        group: g.name.clone(),
                        rule: r.name.clone(),
                        message: "two rules have this name (alerts are keyed by it)".into(),
                    });
                }
            }
        }
        Ok(set)
    }

    /// Plans every rule's query against `db` (at the current time), refusing the first
    /// that does not plan, is not read-only, or has no numeric `value` column — with the
    /// rule's name and the SQL error.
    pub fn check(&self, db: &Db, origin: &str) -> Result<(), RuleError> {
        let now = super::now_ns();
        for g in &self.groups {
            for r in &g.rules {
                let fail = |message: String| RuleError::Rule {
                    origin: origin.to_string(),
                    group: g.name.clone(),
                    rule: r.name.clone(),
                    message,
                };
                let sql = super::template::render_expr(&r.expr, now).map_err(&fail)?;
                let session = db.session().map_err(|e| fail(e.to_string()))?;
                let schema = crate::sql::block_on(async {
                    session
                        .read_only_dataframe(&sql)
                        .await
                        .map(|df| df.schema().inner().clone())
                })
                .map_err(|e| fail(format!("the query does not plan: {e}")))?;
                let value = value_column(&schema).map_err(&fail)?;
                for (i, f) in schema.fields().iter().enumerate() {
                    if i != value {
                        check_label_name(f.name()).map_err(|e| {
                            fail(format!("column {:?} cannot be a label: {e}", f.name()))
                        })?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Every rule, with its group.
    pub fn rules(&self) -> impl Iterator<Item = (&Group, &Rule)> {
        self.groups
            .iter()
            .flat_map(|g| g.rules.iter().map(move |r| (g, r)))
    }
}

/// The index of the `value` column, which must be numeric.
pub(crate) fn value_column(
    schema: &crate::sql::datafusion::arrow::datatypes::Schema,
) -> Result<usize, String> {
    let (i, field) = schema.column_with_name("value").ok_or_else(|| {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        format!(
            "the query returns no `value` column (it returns {}); name the number to \
             compare `AS value`",
            names.join(", ")
        )
    })?;
    if !field.data_type().is_numeric() {
        return Err(format!(
            "the `value` column is {}, not a number",
            field.data_type()
        ));
    }
    Ok(i)
}

fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    for k in labels.keys() {
        check_label_name(k)?;
    }
    Ok(())
}

/// Refuses label names that are empty or reserved.
pub(crate) fn check_label_name(k: &str) -> Result<(), String> {
    if k.is_empty() {
        return Err("a label has an empty name".into());
    }
    if k.starts_with(RESERVED_PREFIX) {
        return Err(format!(
            "label {k:?}: names starting with {RESERVED_PREFIX:?} are reserved"
        ));
    }
    if k == "alertname" {
        return Err("label \"alertname\" is the rule's name and cannot be set".into());
    }
    Ok(())
}

fn build_rule(r: RuleDoc) -> Result<Rule, String> {
    if r.alert.trim().is_empty() {
        return Err("the rule has no name (`alert`)".into());
    }
    if r.expr.trim().is_empty() {
        return Err("`expr` is empty".into());
    }
    super::template::render_expr(&r.expr, 0)?;
    let condition = r.condition.as_deref().map(Condition::parse).transpose()?;
    let named = |what: &'static str| move |e: String| format!("{what}: {e}");
    let for_ = r
        .for_
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(named("for"))?
        .unwrap_or_default();
    let keep_firing_for = r
        .keep_firing_for
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(named("keep_firing_for"))?
        .unwrap_or_default();
    check_labels(&r.labels)?;
    let mut annotations = BTreeMap::new();
    for (k, v) in r.annotations {
        if k.is_empty() {
            return Err("an annotation has an empty name".into());
        }
        let t = Template::parse(&v).map_err(|e| format!("annotation {k:?}: {e}"))?;
        annotations.insert(k, t);
    }
    let webhooks = r
        .webhooks
        .iter()
        .map(|u| u.parse::<WebhookUrl>())
        .collect::<Result<Vec<_>, _>>()?;
    let no_data = match r.no_data.as_deref() {
        None | Some("ok") => NoData::Ok,
        Some("nodata") => NoData::NoData,
        Some("alerting") => NoData::Alerting,
        Some(other) => {
            return Err(format!(
                "no_data {other:?} is not one of \"ok\", \"nodata\", \"alerting\""
            ));
        }
    };
    Ok(Rule {
        name: r.alert,
        expr: r.expr,
        condition,
        for_,
        keep_firing_for,
        labels: r.labels,
        annotations,
        webhooks,
        no_data,
    })
}

/// A built-in rule as the file gives it (see [`super::builtin`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BuiltinSpec {
    pub kind: String,
    pub name: Option<String>,
    pub interval: Option<String>,
    pub window: Option<String>,
    pub baseline: Option<String>,
    pub factor: Option<f64>,
    pub min_rise: Option<f64>,
    pub min_count: Option<u64>,
    #[serde(rename = "for")]
    pub for_: Option<String>,
    pub keep_firing_for: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub webhooks: Vec<String>,
}

impl BuiltinSpec {
    /// The rule this built-in becomes, with `expr`, default annotations and `condition`
    /// given by the kind.
    pub(crate) fn into_rule(
        self,
        name: String,
        expr: String,
        condition: Option<&str>,
        summary: &str,
    ) -> Result<Rule, String> {
        let mut annotations = self.annotations;
        annotations
            .entry("summary".into())
            .or_insert_with(|| summary.to_string());
        build_rule(RuleDoc {
            alert: name,
            expr,
            condition: condition.map(str::to_string),
            for_: self.for_,
            keep_firing_for: self.keep_firing_for,
            labels: self.labels,
            annotations,
            webhooks: self.webhooks,
            no_data: None,
        })
    }
}

/// A rules file's groups and rules as text (for `scry alerts --rules FILE --check`).
pub fn describe(set: &RuleSet) -> String {
    let mut out = String::new();
    for g in &set.groups {
        let _ = writeln!(
            out,
            "group {:?}: every {}, timeout {}, {} rule(s)",
            g.name,
            secs(g.interval),
            secs(g.timeout),
            g.rules.len()
        );
        for r in &g.rules {
            let cond = r
                .condition
                .map(|c| format!(" value {:?} {}", c.op, c.threshold))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {}:{cond} for {} keep_firing_for {}",
                r.name,
                secs(r.for_),
                secs(r.keep_firing_for)
            );
        }
    }
    out
}

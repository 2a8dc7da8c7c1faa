//! The three OpenTelemetry signals ScryDB stores.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One of the three kinds of telemetry, each stored in its own table and directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    /// Trace spans: the `spans` table.
    Spans,
    /// Log records: the `logs` table.
    Logs,
    /// Metric data points of all five OTLP metric types: the `metrics` table.
    Metrics,
}

impl Signal {
    /// All signals, in their fixed order.
    pub const ALL: [Signal; 3] = [Signal::Spans, Signal::Logs, Signal::Metrics];

    /// The table name, which is also the directory name under the database root.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Spans => "spans",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        }
    }

    /// What one row is called in OTLP terms: `spans`, `log records`, `data points`.
    pub fn record_noun(self) -> &'static str {
        match self {
            Signal::Spans => "spans",
            Signal::Logs => "log records",
            Signal::Metrics => "data points",
        }
    }

    /// The signal's position in [`Signal::ALL`]; stable, also used in WAL frames.
    pub fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn from_index(i: u8) -> Option<Signal> {
        Signal::ALL.get(usize::from(i)).copied()
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Signal {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "spans" => Ok(Signal::Spans),
            "logs" => Ok(Signal::Logs),
            "metrics" => Ok(Signal::Metrics),
            other => Err(format!(
                "unknown signal `{other}` (expected spans, logs or metrics)"
            )),
        }
    }
}

//! URL parameters: parsing a query string, building links that change one parameter, and
//! the time window every page reads.

use super::UiError;

/// The parameters of a request's query string, in order (a name may repeat).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parses `a=1&b=x+y&c=%2F`: `+` is a space, `%XX` a byte; invalid UTF-8 is replaced.
    pub fn parse(query: &str) -> Params {
        Params(
            query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }

    /// The first value of `name`, trimmed, when it is set and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim())
    }

    /// Every non-empty value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim())
            .collect()
    }

    /// Whether `name` is `1`, `true` or `on`.
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some("1" | "true" | "on"))
    }

    /// These parameters with `name` set to `value` (replacing every value it had; `None`
    /// removes it), as a query string starting with `?` (or empty).
    pub fn with(&self, name: &str, value: Option<&str>) -> String {
        let mut out: Vec<(&str, &str)> = self
            .0
            .iter()
            .filter(|(k, v)| k != name && k != "id" && !v.is_empty())
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(v) = value {
            out.push((name, v));
        }
        query_string(&out)
    }

    /// These parameters without the one value `value` of `name` (other values stay).
    pub fn without(&self, name: &str, value: &str) -> String {
        let out: Vec<(&str, &str)> = self
            .0
            .iter()
            .filter(|(k, v)| !(k == name && v.trim() == value) && k != "id" && !v.is_empty())
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        query_string(&out)
    }

    /// These parameters with one more value of `name`.
    pub fn adding(&self, name: &str, value: &str) -> String {
        let mut out: Vec<(&str, &str)> = self
            .0
            .iter()
            .filter(|(k, v)| k != "id" && !v.is_empty())
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if !self.all(name).contains(&value) {
            out.push((name, value));
        }
        query_string(&out)
    }
}

/// `?k=v&…` of `pairs`, encoded; empty for none.
pub fn query_string(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    format!("?{}", parts.join("&"))
}

/// Percent-decodes one query-string component (`+` is a space).
pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a query-string component (unreserved characters stay).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The ranges offered as links, and the default.
pub const RANGES: [&str; 7] = ["5m", "15m", "1h", "6h", "24h", "7d", "all"];

/// The time window a page reads: `[start, end)` in ns, or everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Inclusive start; `None` for `range=all`.
    pub start: Option<i64>,
    /// Exclusive end; `None` for `range=all` without an `end`.
    pub end: Option<i64>,
    /// The end the window was computed from (shown, and what "older"/"newer" shift).
    pub anchor: i64,
    /// Its length in ns (`None` for all).
    pub len: Option<i64>,
}

impl Window {
    /// The window of `params` (`range`, `end`), ending by default just after `newest` (the
    /// newest record of the page's table), or now when the table is empty.
    pub fn of(params: &Params, newest: Option<i64>) -> Result<Window, UiError> {
        let end = match params.get("end") {
            Some(e) => Some(parse_time(e).map_err(UiError::BadRequest)?),
            None => None,
        };
        // A record stamped far in the future (a client's clock) must not move every page's
        // default window there: at most an hour past now.
        let anchor = end.unwrap_or_else(|| match newest {
            Some(n) => n
                .saturating_add(1)
                .min(now_ns().saturating_add(3_600_000_000_000)),
            None => now_ns(),
        });
        // Far from i64's ends, so that SQL can always print the bounds.
        let anchor = anchor.clamp(-(1 << 62), 1 << 62);
        let range = params.get("range").unwrap_or("1h");
        if range == "all" {
            return Ok(Window {
                start: None,
                end,
                anchor,
                len: None,
            });
        }
        let len = crate::sql::search::parse_duration_ns(range)
            .map_err(|e| UiError::BadRequest(format!("range: {e}")))?
            .max(1);
        Ok(Window {
            start: Some(anchor.saturating_sub(len).max(-(1 << 62))),
            end: Some(anchor),
            anchor,
            len: Some(len),
        })
    }

    /// SQL conditions on `time` (`"true"` for everything).
    pub fn sql(&self) -> String {
        let mut c = Vec::new();
        if let Some(s) = self.start {
            c.push(format!("time >= to_timestamp_nanos({s})"));
        }
        if let Some(e) = self.end {
            c.push(format!("time < to_timestamp_nanos({e})"));
        }
        if c.is_empty() {
            "true".into()
        } else {
            c.join(" AND ")
        }
    }

    /// As an engine time range (everything for `all`).
    pub fn range(&self) -> scrydb_engine::TimeRange {
        scrydb_engine::TimeRange::new(self.start.unwrap_or(i64::MIN), self.end.unwrap_or(i64::MAX))
    }
}

/// Now, in ns since the epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Parses an RFC 3339 time (`2025-11-25T10:02:00Z`, fractional seconds and offsets
/// allowed) or ns since the epoch.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(ns) = s.parse::<i64>() {
        return Ok(ns);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map_err(|e| format!("end: {s:?} is not an RFC 3339 time or ns since the epoch ({e})"))?
        .timestamp_nanos_opt()
        .ok_or_else(|| format!("end: {s:?} is outside the years 1677–2262"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_round_trip() {
        let p = Params::parse("q=a+b%20c&attr=k%3Dv&attr=x=y&empty=&bad=%zz&tail=%4");
        assert_eq!(p.get("q"), Some("a b c"));
        assert_eq!(p.all("attr"), vec!["k=v", "x=y"]);
        assert_eq!(p.get("empty"), None);
        assert_eq!(p.get("bad"), Some("%zz"));
        assert_eq!(p.get("tail"), Some("%4"));
        let again = Params::parse(p.with("q", Some("é & ü")).trim_start_matches('?'));
        assert_eq!(again.get("q"), Some("é & ü"));
        assert_eq!(again.all("attr"), vec!["k=v", "x=y"]);
        let less = Params::parse(p.without("attr", "k=v").trim_start_matches('?'));
        assert_eq!(less.all("attr"), vec!["x=y"]);
        let more = Params::parse(p.adding("attr", "z=1").trim_start_matches('?'));
        assert_eq!(more.all("attr"), vec!["k=v", "x=y", "z=1"]);
        assert_eq!(Params::default().with("a", None), "");
    }

    #[test]
    fn windows() {
        let w = Window::of(&Params::parse("range=15m"), Some(1_000_000_000_000)).expect("window");
        assert_eq!(w.end, Some(1_000_000_000_001));
        assert_eq!(w.start, Some(1_000_000_000_001 - 900_000_000_000));
        let w = Window::of(&Params::parse("range=all"), Some(5)).expect("all");
        assert_eq!((w.start, w.end), (None, None));
        assert_eq!(w.sql(), "true");
        let w = Window::of(&Params::parse("end=2025-11-25T10:00:00Z&range=1h"), None).expect("end");
        assert_eq!(w.end, Some(1_764_064_800_000_000_000));
        assert!(matches!(
            Window::of(&Params::parse("end=yesterday"), None),
            Err(UiError::BadRequest(_))
        ));
        assert!(matches!(
            Window::of(&Params::parse("range=soon"), None),
            Err(UiError::BadRequest(_))
        ));
    }
}

//! The search syntax: what people type into Lucene, Kibana, Datadog or the Aspire
//! dashboard, compiled to a SQL predicate over the `logs` or `spans` table.
//!
//! | syntax | meaning (logs) | meaning (spans) |
//! |---|---|---|
//! | `refused` | `matches(body, 'refused')` | `matches(name, …) OR matches(status_message, …)` |
//! | `"disk full"`, `10.0.0.1` | the phrase: its tokens consecutively | the same |
//! | `service:checkout`, `service:check*` | `service_name = 'checkout'`, `LIKE 'check%'` | the same |
//! | `severity:error`, `level:warn` | `severity_number` in that level's range (ERROR 17–20) | – |
//! | `severity>=WARN`, `severity<13` | `severity_number >= 13`, `< 13` | – |
//! | `status:error` | `severity_number >= 17` | `status_code = 'ERROR'` (`ok`, `unset`) |
//! | `name:GET*`, `operation:…` | – | `name LIKE 'GET%'` |
//! | `kind:server` | – | `kind = 'SERVER'` |
//! | `event:exception`, `event:"cache miss"` | – | `matches(events, …)`: an event's name has the term or phrase |
//! | `duration>500ms` (`ns us ms s m h d`; `>= < <= :`) | – | `duration_ns > 500000000` |
//! | `trace:<32 hex>`, `span:<16 hex>` | `trace_id = '…'` | the same |
//! | `@http.route:/cart` | `attributes['http.route'] = '/cart'` or the resource's | the same |
//! | `@http.status_code>=500` | that attribute as a number `>= 500` | the same |
//! | `@user.id:*` | the attribute is present | the same |
//! | `-term`, `NOT term` | negation (a row without the field or attribute matches it) | |
//! | `a b`, `a AND b`, `a OR b`, `( … )` | AND (implicit), OR, grouping; NOT binds tightest, then AND, then OR | |
//!
//! Free terms and phrases match by token ([`scrydb_engine::search::tokenize`]): `refused`
//! does not match "refusedly". Keywords `AND`, `OR`, `NOT` are upper case; `and` is a term.
//! A value may be quoted (`service:"my svc"`); `\"` and `\\` escape inside quotes. A `*`
//! wildcard is allowed at the end of a field value, not in free text. A query that does
//! not parse is a [`SearchError`] naming the column where it went wrong.
//!
//! ```
//! use scrydb_sql::search::{SearchQuery, Target};
//! let q = SearchQuery::parse(r#"service:checkout "connection refused" -retry"#)?;
//! assert_eq!(
//!     q.to_sql(Target::Logs)?,
//!     "(service_name = 'checkout' AND matches(body, 'connection refused') AND NOT coalesce(matches(body, 'retry'), false))"
//! );
//! # Ok::<(), scrydb_sql::search::SearchError>(())
//! ```

use std::fmt;

use scrydb_engine::search::Phrase;

/// The table a search runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `logs`: free text searches `body`.
    Logs,
    /// `spans`: free text searches `name` and `status_message`.
    Spans,
}

impl Target {
    /// The table's name.
    pub fn table(self) -> &'static str {
        match self {
            Target::Logs => "logs",
            Target::Spans => "spans",
        }
    }
}

/// A search query that does not parse or does not apply to its table, with the 1-based
/// column (in characters) where the problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchError {
    /// 1-based character position in the query.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SearchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "search query, column {}: {}", self.column, self.message)
    }
}

impl std::error::Error for SearchError {}

impl SearchError {
    fn at(column: usize, message: impl Into<String>) -> Self {
        SearchError {
            column,
            message: message.into(),
        }
    }

    /// The query and a caret under the column, on two lines indented by two spaces, to
    /// print under the error for a terminal.
    pub fn render(&self, query: &str) -> String {
        format!(
            "  {query}\n  {}^",
            " ".repeat(self.column.saturating_sub(1))
        )
    }
}

type Result<T> = std::result::Result<T, SearchError>;

/// A comparison in a field expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `:` — equals (or matches, for wildcards and levels).
    Eq,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
}

impl Op {
    fn sql(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        }
    }
}

/// A parsed search query (see the [module](self) docs for the syntax).
#[derive(Debug, Clone, PartialEq)]
pub enum SearchQuery {
    /// A free term or phrase (its text as written; it has at least one token).
    Text {
        /// The text.
        text: String,
        /// Where it starts (1-based column).
        column: usize,
    },
    /// `field<op>value`.
    Field {
        /// The field as written, `@` included for attributes.
        field: String,
        /// The comparison.
        op: Op,
        /// The value (unquoted).
        value: String,
        /// Whether the value was quoted (a quoted `*` is not a wildcard).
        quoted: bool,
        /// Where the field starts (1-based column).
        column: usize,
    },
    /// Negation.
    Not(Box<SearchQuery>),
    /// All of.
    And(Vec<SearchQuery>),
    /// Any of.
    Or(Vec<SearchQuery>),
}

#[derive(Debug, Clone, PartialEq)]
enum Lexeme {
    Open,
    Close,
    Minus,
    And,
    Or,
    Not,
    /// A bare word (may contain a field operator) or a quoted string.
    Word {
        text: String,
        quoted: bool,
    },
}

#[derive(Debug, Clone)]
struct Lexed {
    lexeme: Lexeme,
    column: usize,
    /// Whether whitespace (or the start) comes right before it.
    spaced: bool,
}

fn lex(query: &str) -> Result<Vec<Lexed>> {
    let chars: Vec<char> = query.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut spaced = true;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            spaced = true;
            i += 1;
            continue;
        }
        let lexeme = match c {
            '(' => {
                i += 1;
                Lexeme::Open
            }
            ')' => {
                i += 1;
                Lexeme::Close
            }
            '-' if spaced
                || matches!(
                    out.last(),
                    Some(Lexed {
                        lexeme: Lexeme::Open,
                        ..
                    })
                ) =>
            {
                i += 1;
                Lexeme::Minus
            }
            '"' => {
                let (text, next) = quoted(&chars, i)?;
                i = next;
                Lexeme::Word { text, quoted: true }
            }
            _ => {
                let start = i;
                let mut text = String::new();
                while i < chars.len() && !chars[i].is_whitespace() && !"()".contains(chars[i]) {
                    // A quoted value right after a field operator: `service:"my svc"`.
                    if chars[i] == '"' && i > start && ":<>=".contains(chars[i - 1]) {
                        let (value, next) = quoted(&chars, i)?;
                        text.push('"');
                        text.push_str(&value);
                        i = next;
                        break;
                    }
                    if chars[i] == '"' {
                        return Err(SearchError::at(
                            i + 1,
                            "a quote inside a word (quote the whole phrase or value)",
                        ));
                    }
                    text.push(chars[i]);
                    i += 1;
                }
                match text.as_str() {
                    "AND" => Lexeme::And,
                    "OR" => Lexeme::Or,
                    "NOT" => Lexeme::Not,
                    _ => Lexeme::Word {
                        text,
                        quoted: false,
                    },
                }
            }
        };
        out.push(Lexed {
            lexeme,
            column,
            spaced,
        });
        spaced = false;
    }
    Ok(out)
}

/// The string of the quote starting at `chars[start]` and the index after its end.
fn quoted(chars: &[char], start: usize) -> Result<(String, usize)> {
    let mut i = start + 1;
    let mut text = String::new();
    while i < chars.len() {
        match chars[i] {
            '"' => return Ok((text, i + 1)),
            '\\' if i + 1 < chars.len() && matches!(chars[i + 1], '"' | '\\') => {
                text.push(chars[i + 1]);
                i += 2;
            }
            c => {
                text.push(c);
                i += 1;
            }
        }
    }
    Err(SearchError::at(start + 1, "unclosed quote"))
}

struct Parser {
    lexed: Vec<Lexed>,
    pos: usize,
    end_column: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Lexed> {
        self.lexed.get(self.pos)
    }

    fn column(&self) -> usize {
        self.peek().map_or(self.end_column, |l| l.column)
    }

    fn or(&mut self) -> Result<SearchQuery> {
        let mut parts = vec![self.and()?];
        while matches!(
            self.peek(),
            Some(Lexed {
                lexeme: Lexeme::Or,
                ..
            })
        ) {
            self.pos += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            SearchQuery::Or(parts)
        })
    }

    fn and(&mut self) -> Result<SearchQuery> {
        let mut parts = vec![self.unary()?];
        loop {
            match self.peek().map(|l| &l.lexeme) {
                None | Some(Lexeme::Or) | Some(Lexeme::Close) => break,
                Some(Lexeme::And) => {
                    self.pos += 1;
                    parts.push(self.unary()?);
                }
                Some(_) => parts.push(self.unary()?),
            }
        }
        Ok(if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            SearchQuery::And(parts)
        })
    }

    fn unary(&mut self) -> Result<SearchQuery> {
        let column = self.column();
        let Some(l) = self.peek().cloned() else {
            return Err(SearchError::at(
                column,
                "the query ends where a term was expected",
            ));
        };
        self.pos += 1;
        match l.lexeme {
            Lexeme::Minus | Lexeme::Not => {
                if matches!(l.lexeme, Lexeme::Minus) && self.peek().is_none_or(|next| next.spaced) {
                    return Err(SearchError::at(
                        column,
                        "`-` negates what follows it directly (`-term`)",
                    ));
                }
                Ok(SearchQuery::Not(Box::new(self.unary()?)))
            }
            Lexeme::Open => {
                if matches!(
                    self.peek(),
                    Some(Lexed {
                        lexeme: Lexeme::Close,
                        ..
                    })
                ) {
                    return Err(SearchError::at(column, "empty parentheses"));
                }
                let inner = self.or()?;
                match self.peek() {
                    Some(Lexed {
                        lexeme: Lexeme::Close,
                        ..
                    }) => {
                        self.pos += 1;
                        Ok(inner)
                    }
                    _ => Err(SearchError::at(column, "unclosed parenthesis")),
                }
            }
            Lexeme::Close => Err(SearchError::at(column, "`)` without its `(`")),
            Lexeme::And | Lexeme::Or => {
                Err(SearchError::at(column, "AND / OR need a term on each side"))
            }
            Lexeme::Word { text, quoted } => word(text, quoted, column),
        }
    }
}

/// A free term, a phrase or a field expression.
fn word(text: String, quoted: bool, column: usize) -> Result<SearchQuery> {
    if !quoted && let Some((field, op, rest)) = split_field(&text) {
        let (value, value_quoted) = match rest.strip_prefix('"') {
            Some(v) => (v.to_string(), true),
            None => (rest.to_string(), false),
        };
        if value.is_empty() && !value_quoted {
            return Err(SearchError::at(
                column + field.chars().count(),
                format!("`{field}` needs a value after `{}`", op_text(op)),
            ));
        }
        return Ok(SearchQuery::Field {
            field: field.to_string(),
            op,
            value,
            quoted: value_quoted,
            column,
        });
    }
    if Phrase::new(&text).is_none() {
        return Err(SearchError::at(
            column,
            format!("`{text}` has no letters or digits to search for"),
        ));
    }
    if !quoted && text.contains('*') {
        return Err(SearchError::at(
            column,
            "wildcards work at the end of field values (`service:check*`), not in free text",
        ));
    }
    Ok(SearchQuery::Text { text, column })
}

fn op_text(op: Op) -> &'static str {
    match op {
        Op::Eq => ":",
        other => other.sql(),
    }
}

/// `field<op>rest` when `text` starts with a field name (`@` + attribute key, or a
/// letter-led identifier) and an operator.
fn split_field(text: &str) -> Option<(&str, Op, &str)> {
    let body = text.strip_prefix('@').unwrap_or(text);
    let mut chars = body.char_indices();
    let (_, first) = chars.next()?;
    if !(first.is_alphabetic() || first == '_') {
        return None;
    }
    let end = body
        .char_indices()
        .find(|&(_, c)| !(c.is_alphanumeric() || "_.-/".contains(c)))
        .map(|(i, _)| i)?;
    let offset = text.len() - body.len();
    let field = &text[..offset + end];
    let rest = &body[end..];
    let (op, len) = if rest.starts_with(">=") {
        (Op::Ge, 2)
    } else if rest.starts_with("<=") {
        (Op::Le, 2)
    } else if rest.starts_with('>') {
        (Op::Gt, 1)
    } else if rest.starts_with('<') {
        (Op::Lt, 1)
    } else if rest.starts_with(':') {
        (Op::Eq, 1)
    } else {
        return None;
    };
    Some((field, op, &rest[len..]))
}

/// SQL string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// OpenTelemetry severity levels (lower case, as the search syntax takes them) and the
/// first severity number of each.
pub const LEVELS: [(&str, i32); 6] = [
    ("trace", 1),
    ("debug", 5),
    ("info", 9),
    ("warn", 13),
    ("error", 17),
    ("fatal", 21),
];

impl SearchQuery {
    /// Parses `query`. An empty query (only spaces) is an error: it would match everything.
    pub fn parse(query: &str) -> Result<SearchQuery> {
        let lexed = lex(query)?;
        let end_column = query.chars().count() + 1;
        if lexed.is_empty() {
            return Err(SearchError::at(1, "the query is empty"));
        }
        let mut p = Parser {
            lexed,
            pos: 0,
            end_column,
        };
        let q = p.or()?;
        if let Some(l) = p.peek() {
            return Err(SearchError::at(
                l.column,
                match l.lexeme {
                    Lexeme::Close => "`)` without its `(`",
                    _ => "unexpected text after the query",
                },
            ));
        }
        Ok(q)
    }

    /// The SQL predicate over `target`'s table; an error for a field the table does not
    /// have (with the fields it has) or a value that does not fit the field.
    pub fn to_sql(&self, target: Target) -> Result<String> {
        match self {
            SearchQuery::Text { text, .. } => Ok(text_sql(target, text)),
            SearchQuery::Field {
                field,
                op,
                value,
                quoted,
                column,
            } => field_sql(target, field, *op, value, *quoted, *column),
            // A row where the inner predicate is NULL (an absent attribute, a NULL status
            // message) does not match it, so its negation matches the row.
            SearchQuery::Not(q) => Ok(format!("NOT coalesce({}, false)", q.to_sql(target)?)),
            SearchQuery::And(qs) | SearchQuery::Or(qs) => {
                let sep = if matches!(self, SearchQuery::And(_)) {
                    " AND "
                } else {
                    " OR "
                };
                let parts = qs
                    .iter()
                    .map(|q| q.to_sql(target))
                    .collect::<Result<Vec<_>>>()?;
                Ok(format!("({})", parts.join(sep)))
            }
        }
    }
}

fn text_sql(target: Target, text: &str) -> String {
    match target {
        Target::Logs => format!("matches(body, {})", lit(text)),
        Target::Spans => format!(
            "(matches(name, {0}) OR matches(status_message, {0}))",
            lit(text)
        ),
    }
}

/// `column = 'value'`, or `LIKE` for a trailing unquoted `*`.
fn string_sql(column: &str, op: Op, value: &str, quoted: bool, at: usize) -> Result<String> {
    if op != Op::Eq {
        return Err(SearchError::at(
            at,
            format!("`{column}` compares with `:` only"),
        ));
    }
    if !quoted && let Some(prefix) = value.strip_suffix('*') {
        if prefix.contains('*') {
            return Err(SearchError::at(at, "only a trailing `*` is a wildcard"));
        }
        let escaped = prefix
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        return Ok(format!(
            "{column} LIKE {} ESCAPE '\\'",
            lit(&format!("{escaped}%"))
        ));
    }
    Ok(format!("{column} = {}", lit(value)))
}

fn level_number(value: &str) -> Option<(i32, i32)> {
    if let Ok(n) = value.parse::<i32>() {
        return (1..=24).contains(&n).then_some((n, n));
    }
    let v = value.to_ascii_lowercase();
    let v = match v.as_str() {
        "warning" => "warn",
        "err" => "error",
        "critical" | "crit" => "fatal",
        other => other,
    };
    LEVELS
        .iter()
        .find(|(name, _)| *name == v)
        .map(|&(_, first)| (first, first + 3))
}

fn severity_sql(op: Op, value: &str, at: usize) -> Result<String> {
    let Some((low, high)) = level_number(value) else {
        return Err(SearchError::at(
            at,
            format!("`{value}` is not a severity: trace, debug, info, warn, error, fatal or 1–24"),
        ));
    };
    Ok(match op {
        Op::Eq if low == high => format!("severity_number = {low}"),
        Op::Eq => format!("severity_number BETWEEN {low} AND {high}"),
        Op::Ge => format!("severity_number >= {low}"),
        Op::Gt => format!("severity_number > {high}"),
        Op::Le => format!("severity_number <= {high}"),
        Op::Lt => format!("severity_number < {low}"),
    })
}

/// A duration such as `500ms`, `1.5s`, `200us` in nanoseconds.
fn duration_ns(value: &str, at: usize) -> Result<i64> {
    parse_duration_ns(value).map_err(|m| SearchError::at(at, m))
}

/// Parses a duration of the search syntax — a number and a unit: `ns`, `us` (`µs`), `ms`,
/// `s`, `m`, `h` or `d` (`500ms`, `1.5s`, `7d`) — into nanoseconds; the error says why not.
pub fn parse_duration_ns(value: &str) -> std::result::Result<i64, String> {
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("`{value}` needs a unit: ns, us, ms, s, m, h or d"))?;
    let (number, unit) = value.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("`{number}` is not a number"))?;
    let scale = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        "d" => 86400e9,
        _ => {
            return Err(format!(
                "unknown duration unit `{unit}` (ns, us, ms, s, m, h, d)"
            ));
        }
    };
    let ns = n * scale;
    if !(0.0..9.2e18).contains(&ns) {
        return Err(format!("duration `{value}` is out of range"));
    }
    Ok(ns.round() as i64)
}

/// `matches(<column>, value)` for `field:value`.
fn phrase_sql(column: &str, op: Op, value: &str, at: usize) -> Result<String> {
    if op != Op::Eq {
        return Err(SearchError::at(
            at,
            format!("`{column}` compares with `:` only"),
        ));
    }
    if Phrase::new(value).is_none() {
        return Err(SearchError::at(
            at,
            format!("`{value}` has no letters or digits to search for"),
        ));
    }
    Ok(format!("matches({column}, {})", lit(value)))
}

fn hex_sql(column: &str, op: Op, value: &str, bytes: usize, at: usize) -> Result<String> {
    if op != Op::Eq {
        return Err(SearchError::at(
            at,
            format!("`{column}` compares with `:` only"),
        ));
    }
    if value.len() != bytes * 2 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SearchError::at(
            at,
            format!("`{value}` is not {} hex digits", bytes * 2),
        ));
    }
    Ok(format!("{column} = {}", lit(&value.to_ascii_lowercase())))
}

fn attribute_sql(key: &str, op: Op, value: &str, quoted: bool, at: usize) -> Result<String> {
    if key.is_empty() {
        return Err(SearchError::at(at, "`@` needs an attribute key"));
    }
    let one = |column: &str| -> Result<String> {
        let access = format!("{column}[{}]", lit(key));
        if op == Op::Eq {
            if value == "*" && !quoted {
                return Ok(format!("{access} IS NOT NULL"));
            }
            return string_sql(&access, op, value, quoted, at);
        }
        let number: f64 = value.parse().map_err(|_| {
            SearchError::at(
                at,
                format!("`{value}` is not a number (`>`, `<` compare attributes as numbers)"),
            )
        })?;
        Ok(format!(
            "TRY_CAST({access} AS DOUBLE) {} {number:?}",
            op.sql()
        ))
    };
    Ok(format!(
        "({} OR {})",
        one("attributes")?,
        one("resource_attributes")?
    ))
}

const LOG_FIELDS: &str = "service, severity (level), status, trace, span, body, @attribute";
const SPAN_FIELDS: &str =
    "service, name (operation), kind, status, duration, event, trace, span, @attribute";

fn field_sql(
    target: Target,
    field: &str,
    op: Op,
    value: &str,
    quoted: bool,
    at: usize,
) -> Result<String> {
    if let Some(key) = field.strip_prefix('@') {
        return attribute_sql(key, op, value, quoted, at);
    }
    let logs = target == Target::Logs;
    match field.to_ascii_lowercase().as_str() {
        "service" | "service.name" => string_sql("service_name", op, value, quoted, at),
        "trace" | "trace_id" => hex_sql("trace_id", op, value, 16, at),
        "span" | "span_id" => hex_sql("span_id", op, value, 8, at),
        "severity" | "level" if logs => severity_sql(op, value, at),
        "status" if logs => match value.to_ascii_lowercase().as_str() {
            "ok" => severity_sql(Op::Lt, "error", at),
            _ => severity_sql(op, value, at),
        },
        "body" if logs => phrase_sql("body", op, value, at),
        "event" | "events" if !logs => phrase_sql("events", op, value, at),
        "status" if !logs => {
            let v = value.to_ascii_uppercase();
            if !["OK", "ERROR", "UNSET"].contains(&v.as_str()) {
                return Err(SearchError::at(
                    at,
                    format!("span status is ok, error or unset, not `{value}`"),
                ));
            }
            string_sql("status_code", op, &v, true, at)
        }
        "name" | "operation" if !logs => string_sql("name", op, value, quoted, at),
        "kind" if !logs => {
            let v = value.to_ascii_uppercase();
            if ![
                "SERVER",
                "CLIENT",
                "PRODUCER",
                "CONSUMER",
                "INTERNAL",
                "UNSPECIFIED",
            ]
            .contains(&v.as_str())
            {
                return Err(SearchError::at(
                    at,
                    format!(
                        "span kind is server, client, producer, consumer, internal or unspecified, not `{value}`"
                    ),
                ));
            }
            string_sql("kind", op, &v, true, at)
        }
        "duration" if !logs => {
            let ns = duration_ns(value, at)?;
            Ok(format!("duration_ns {} {ns}", op.sql()))
        }
        _ => Err(SearchError::at(
            at,
            format!(
                "unknown field `{field}` for {}: {} (attributes start with @)",
                target.table(),
                if logs { LOG_FIELDS } else { SPAN_FIELDS }
            ),
        )),
    }
}

/// A search over one table: a query in the search syntax, a time range and a limit.
/// [`SearchRequest::sql`] is the statement it runs (`scry search --show-sql` prints it);
/// [`crate::Session::search`] runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    /// The query, in the search syntax (see the [module](self) docs).
    pub query: String,
    /// The table.
    pub target: Target,
    /// Inclusive start of the time range, ns since the Unix epoch.
    pub from_ns: Option<i64>,
    /// Exclusive end of the time range, ns since the Unix epoch.
    pub to_ns: Option<i64>,
    /// Most rows returned, newest first (at least 1).
    pub limit: usize,
}

impl SearchRequest {
    /// A search of `query` over `target`, any time, the newest 100 matches.
    pub fn new(query: impl Into<String>, target: Target) -> Self {
        SearchRequest {
            query: query.into(),
            target,
            from_ns: None,
            to_ns: None,
            limit: 100,
        }
    }

    /// The SQL statement: every column of the matching rows, newest first, at most
    /// `limit`. The sort keeps only `limit` rows in memory whatever the number of matches.
    pub fn sql(&self) -> Result<String> {
        let predicate = SearchQuery::parse(&self.query)?.to_sql(self.target)?;
        let mut conditions = Vec::new();
        if let Some(from) = self.from_ns {
            conditions.push(format!("time >= to_timestamp_nanos({from})"));
        }
        if let Some(to) = self.to_ns {
            conditions.push(format!("time < to_timestamp_nanos({to})"));
        }
        conditions.push(predicate);
        Ok(format!(
            "SELECT * FROM {} WHERE {} ORDER BY time DESC LIMIT {}",
            self.target.table(),
            conditions.join(" AND "),
            self.limit.max(1)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(q: &str, t: Target) -> String {
        SearchQuery::parse(q)
            .and_then(|p| p.to_sql(t))
            .unwrap_or_else(|e| panic!("{q}: {e}"))
    }

    fn err(q: &str, t: Target) -> SearchError {
        match SearchQuery::parse(q).and_then(|p| p.to_sql(t)) {
            Ok(s) => panic!("{q} compiled to {s}"),
            Err(e) => e,
        }
    }

    #[test]
    fn terms_phrases_and_boolean_structure() {
        assert_eq!(sql("refused", Target::Logs), "matches(body, 'refused')");
        assert_eq!(
            sql("disk full", Target::Logs),
            "(matches(body, 'disk') AND matches(body, 'full'))"
        );
        assert_eq!(
            sql("\"disk full\"", Target::Logs),
            "matches(body, 'disk full')"
        );
        assert_eq!(
            sql("a OR b c", Target::Logs),
            "(matches(body, 'a') OR (matches(body, 'b') AND matches(body, 'c')))"
        );
        assert_eq!(
            sql("(a OR b) AND -c NOT d", Target::Logs),
            "((matches(body, 'a') OR matches(body, 'b')) AND NOT coalesce(matches(body, 'c'), false) AND NOT coalesce(matches(body, 'd'), false))"
        );
        // A hyphen inside a word is not negation; lower-case keywords are terms.
        assert_eq!(sql("order-42", Target::Logs), "matches(body, 'order-42')");
        assert_eq!(
            sql("rock and roll", Target::Logs),
            "(matches(body, 'rock') AND matches(body, 'and') AND matches(body, 'roll'))"
        );
        // Quotes are SQL-escaped.
        assert_eq!(
            sql("\"it's \\\"x\\\"\"", Target::Logs),
            "matches(body, 'it''s \"x\"')"
        );
        assert_eq!(
            sql("timeout", Target::Spans),
            "(matches(name, 'timeout') OR matches(status_message, 'timeout'))"
        );
        assert_eq!(
            sql("event:\"cache miss\"", Target::Spans),
            "matches(events, 'cache miss')"
        );
        assert!(
            SearchQuery::parse("event:exception")
                .expect("parses")
                .to_sql(Target::Logs)
                .is_err()
        );
        assert!(
            SearchQuery::parse("event>x")
                .expect("parses")
                .to_sql(Target::Spans)
                .is_err()
        );
    }

    #[test]
    fn fields() {
        assert_eq!(
            sql("service:checkout", Target::Logs),
            "service_name = 'checkout'"
        );
        assert_eq!(
            sql("service:check_*", Target::Spans),
            "service_name LIKE 'check\\_%' ESCAPE '\\'"
        );
        assert_eq!(
            sql("service:\"my svc*\"", Target::Logs),
            "service_name = 'my svc*'"
        );
        assert_eq!(sql("severity>=WARN", Target::Logs), "severity_number >= 13");
        assert_eq!(
            sql("level:error", Target::Logs),
            "severity_number BETWEEN 17 AND 20"
        );
        assert_eq!(sql("severity>warn", Target::Logs), "severity_number > 16");
        assert_eq!(sql("severity<13", Target::Logs), "severity_number < 13");
        assert_eq!(
            sql("status:error", Target::Logs),
            "severity_number BETWEEN 17 AND 20"
        );
        assert_eq!(sql("status:error", Target::Spans), "status_code = 'ERROR'");
        assert_eq!(sql("kind:server", Target::Spans), "kind = 'SERVER'");
        assert_eq!(
            sql("name:GET*", Target::Spans),
            "name LIKE 'GET%' ESCAPE '\\'"
        );
        assert_eq!(
            sql("duration>500ms", Target::Spans),
            "duration_ns > 500000000"
        );
        assert_eq!(
            sql("duration<=1.5s", Target::Spans),
            "duration_ns <= 1500000000"
        );
        assert_eq!(
            sql("trace:5B8EFFF798038103D269B633813FC60C", Target::Logs),
            "trace_id = '5b8efff798038103d269b633813fc60c'"
        );
        assert_eq!(
            sql("@http.route:/cart", Target::Spans),
            "(attributes['http.route'] = '/cart' OR resource_attributes['http.route'] = '/cart')"
        );
        assert_eq!(
            sql("@http.status_code>=500", Target::Spans),
            "(TRY_CAST(attributes['http.status_code'] AS DOUBLE) >= 500.0 OR TRY_CAST(resource_attributes['http.status_code'] AS DOUBLE) >= 500.0)"
        );
        assert_eq!(
            sql("@user.id:*", Target::Logs),
            "(attributes['user.id'] IS NOT NULL OR resource_attributes['user.id'] IS NOT NULL)"
        );
        // A URL value keeps its colons.
        assert_eq!(
            sql("@url:http://x/y", Target::Logs),
            "(attributes['url'] = 'http://x/y' OR resource_attributes['url'] = 'http://x/y')"
        );
    }

    #[test]
    fn requests_compile_to_one_bounded_newest_first_statement() {
        let mut r = SearchRequest::new("service:checkout refused", Target::Logs);
        r.from_ns = Some(10);
        r.to_ns = Some(20);
        r.limit = 0;
        assert_eq!(
            r.sql().expect("compiles"),
            "SELECT * FROM logs WHERE time >= to_timestamp_nanos(10) AND time < to_timestamp_nanos(20) AND (service_name = 'checkout' AND matches(body, 'refused')) ORDER BY time DESC LIMIT 1"
        );
        assert!(SearchRequest::new("(", Target::Spans).sql().is_err());
    }

    #[test]
    fn errors_say_where() {
        let e = err("service:checkout AND (a OR", Target::Logs);
        assert_eq!(
            (e.column, e.message.as_str()),
            (27, "the query ends where a term was expected")
        );
        let e = err("(a b", Target::Logs);
        assert_eq!((e.column, e.message.as_str()), (1, "unclosed parenthesis"));
        let e = err("a b)", Target::Logs);
        assert_eq!((e.column, e.message.as_str()), (4, "`)` without its `(`"));
        let e = err("x \"disk full", Target::Logs);
        assert_eq!((e.column, e.message.as_str()), (3, "unclosed quote"));
        let e = err("ok duration>5 x", Target::Spans);
        assert_eq!(e.column, 4);
        assert!(e.message.contains("needs a unit"), "{e}");
        let e = err("duration>5ms", Target::Logs);
        assert!(
            e.message.starts_with("unknown field `duration` for logs"),
            "{e}"
        );
        let e = err("colour:red", Target::Spans);
        assert!(e.message.contains("attributes start with @"), "{e}");
        let e = err("severity:loud", Target::Logs);
        assert!(e.message.contains("not a severity"), "{e}");
        let e = err("trace:abc", Target::Logs);
        assert!(e.message.contains("32 hex digits"), "{e}");
        let e = err("a - b", Target::Logs);
        assert_eq!(e.column, 3);
        let e = err("a OR", Target::Logs);
        assert_eq!(e.column, 5);
        let e = err("AND a", Target::Logs);
        assert_eq!(e.column, 1);
        let e = err("   ", Target::Logs);
        assert_eq!(e.message, "the query is empty");
        let e = err("foo*", Target::Logs);
        assert!(e.message.contains("wildcards"), "{e}");
        let e = err("@k>=many", Target::Logs);
        assert!(e.message.contains("not a number"), "{e}");
        let e = err("service:", Target::Logs);
        assert_eq!(
            (e.column, e.message.as_str()),
            (8, "`service` needs a value after `:`")
        );
        let e = err("()", Target::Logs);
        assert_eq!(e.message, "empty parentheses");
        let e = err("...", Target::Logs);
        assert!(e.message.contains("no letters or digits"), "{e}");
        assert_eq!(
            err("(a OR", Target::Logs).render("(a OR"),
            "  (a OR\n       ^"
        );
    }
}

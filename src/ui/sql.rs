//! `/sql` and `/sql.csv`: a read-only SQL console with row and time limits.

use std::time::{Duration, Instant};

use futures::StreamExt;
use maud::{Markup, html};
use scrydb_engine::arrow::array::RecordBatch;
use scrydb_engine::arrow::datatypes::SchemaRef;

use super::cells;
use super::params::{Params, query_string};
use super::{UiError, UiState};

const EXAMPLES: [(&str, &str); 5] = [
    (
        "Spans per service",
        "SELECT service_name, count(*) AS spans, sum(CASE WHEN status_code = 'ERROR' THEN 1 ELSE 0 END) AS errors\nFROM spans GROUP BY service_name ORDER BY spans DESC",
    ),
    (
        "Slowest operations (rollups)",
        "SELECT service_name, name,\n  exp_histogram_quantile(scale, zero_count, positive_offset, positive_bucket_counts, 0.99) / 1e6 AS p99_ms\nFROM span_metrics GROUP BY service_name, name ORDER BY p99_ms DESC LIMIT 20",
    ),
    (
        "Error logs with their span",
        "SELECT l.time, l.service_name, l.body, s.name AS span\nFROM logs l JOIN spans s ON l.trace_id = s.trace_id AND l.span_id = s.span_id\nWHERE l.severity_number >= 17 ORDER BY l.time DESC LIMIT 50",
    ),
    (
        "Calls between services",
        "SELECT * FROM service_graph(now() - INTERVAL '100 days', now()) ORDER BY calls DESC",
    ),
    (
        "Tables",
        "SELECT table_name, column_name, data_type FROM information_schema.columns\nWHERE table_schema = 'public' ORDER BY table_name",
    ),
];

/// A result cut to a row limit.
struct Ran {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    rows: usize,
    truncated: bool,
    took: Duration,
}

/// Runs `query` (one read-only statement) for at most `timeout`, keeping `max_rows` rows.
fn run(state: &UiState, query: &str, max_rows: usize) -> Result<Ran, UiError> {
    let session = state.db.session()?;
    let timeout = state.opts.sql_timeout;
    let started = Instant::now();
    let work = async {
        let df = session.read_only_dataframe(query).await?;
        let schema: SchemaRef = std::sync::Arc::new(df.schema().as_arrow().clone());
        let mut stream = df.execute_stream().await.map_err(crate::sql::Error::from)?;
        let (mut batches, mut rows, mut truncated) = (Vec::new(), 0usize, false);
        while let Some(b) = stream.next().await {
            let b = b.map_err(crate::sql::Error::from)?;
            let take = b.num_rows().min(max_rows - rows);
            if take < b.num_rows() {
                truncated = true;
            }
            if take > 0 {
                batches.push(b.slice(0, take));
                rows += take;
            }
            if rows >= max_rows {
                // One more batch would tell whether anything was left out.
                truncated |= loop {
                    match stream.next().await {
                        Some(Ok(b)) if b.num_rows() == 0 => continue,
                        Some(Ok(_)) => break true,
                        Some(Err(e)) => return Err(crate::sql::Error::from(e)),
                        None => break false,
                    }
                };
                break;
            }
        }
        Ok::<_, crate::sql::Error>((schema, batches, rows, truncated))
    };
    let outcome = crate::sql::block_on(async move { tokio::time::timeout(timeout, work).await });
    let (schema, batches, rows, truncated) = outcome.map_err(|_| {
        UiError::BadRequest(format!(
            "the statement ran longer than {:?} (the console's time limit) and was cancelled; \
             narrow it with a time range or a LIMIT",
            timeout
        ))
    })??;
    Ok(Ran {
        schema,
        batches: batches.iter().map(crate::sql::ids_as_hex).collect(),
        rows,
        truncated,
        took: started.elapsed(),
    })
}

pub(super) fn page(state: &UiState, p: &Params) -> Result<Markup, UiError> {
    let query = p.get("q");
    let result = query.map(|q| run(state, q, state.opts.sql_rows));
    Ok(html! {
        h1 { "SQL" }
        form.sqlform method="get" action="/sql" {
            textarea #sql-input name="q" rows="6" spellcheck="false" aria-label="SQL statement"
                placeholder="SELECT service_name, count(*) FROM spans GROUP BY 1" { (query.unwrap_or("")) }
            div.row {
                button type="submit" { "Run" }
                span.note { "One read-only statement; at most " (state.opts.sql_rows) " rows shown, "
                    (state.opts.sql_timeout.as_secs()) " s. Tables: spans, logs, metrics, span_metrics; functions as in the docs." }
            }
        }
        @match result {
            None => {
                h2 { "Examples" }
                ul.examples {
                    @for (title, q) in EXAMPLES {
                        li { a href=(format!("/sql{}", query_string(&[("q", q)]))) { (title) } pre { code { (q) } } }
                    }
                }
            }
            Some(Err(e)) => {
                div.error role="alert" { strong { "Error: " } span.message { (match e {
                    UiError::BadRequest(m)
                    | UiError::NotFound(m)
                    | UiError::Internal(m)
                    | UiError::TooSlow(m) => m,
                }) } }
            }
            Some(Ok(r)) => {
                p.count #sql-summary {
                    (r.rows) " row" @if r.rows != 1 { "s" } " in " (format!("{:.1}", r.took.as_secs_f64() * 1e3)) " ms"
                    @if r.truncated { " — cut at " (state.opts.sql_rows) " rows" }
                    " · " a #csv-link href=(format!("/sql.csv{}", query_string(&[("q", query.unwrap_or(""))]))) { "download CSV" }
                    " (at most " (state.opts.csv_rows) " rows)"
                }
                div.scroll {
                    table.results #sql-result {
                        thead { tr { @for f in r.schema.fields() { th { (f.name()) } } } }
                        tbody {
                            @for b in &r.batches {
                                @for row in 0..b.num_rows() {
                                    tr { @for c in b.columns() { td { (cells::text_of(c.as_ref(), row).unwrap_or_default()) } } }
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}

/// The result of `q` as CSV (header, then rows; ids as hex; nested values in Arrow's
/// display form), at most [`super::UiOptions::csv_rows`] rows.
pub(super) fn csv(state: &UiState, p: &Params) -> Result<String, UiError> {
    let query = p
        .get("q")
        .ok_or_else(|| UiError::BadRequest("q: no statement given".into()))?;
    let r = run(state, query, state.opts.csv_rows)?;
    let mut out = String::new();
    let names: Vec<String> = r.schema.fields().iter().map(|f| field(f.name())).collect();
    out.push_str(&names.join(","));
    out.push_str("\r\n");
    for b in &r.batches {
        for row in 0..b.num_rows() {
            let cells: Vec<String> = b
                .columns()
                .iter()
                .map(|c| cells::text_of(c.as_ref(), row).map_or(String::new(), |v| field(&v)))
                .collect();
            out.push_str(&cells.join(","));
            out.push_str("\r\n");
        }
    }
    Ok(out)
}

/// One CSV field (RFC 4180): quoted when it holds a comma, quote or line break.
fn field(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(super::field("plain"), "plain");
        assert_eq!(super::field("a,b"), "\"a,b\"");
        assert_eq!(super::field("say \"hi\"\n"), "\"say \"\"hi\"\"\n\"");
    }
}

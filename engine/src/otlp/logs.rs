//! `ExportLogsServiceRequest` → the `logs` batch.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, FixedSizeBinaryBuilder, Int32Builder, RecordBatch, StringBuilder,
    StringDictionaryBuilder, TimestampNanosecondBuilder, UInt32Builder,
};
use arrow::datatypes::Int32Type;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::LogRecord;

use super::columns::{
    Attrs, Context, ResourceScope, append_attrs, append_opt_str, service_name, ts_builder,
};
use super::value::write_value;
use super::{Converted, Rejections, check_id, check_time, id_present};
use crate::Signal;
use crate::schema;

/// Highest `SeverityNumber` (`SEVERITY_NUMBER_FATAL4`).
const MAX_SEVERITY: i32 = 24;

struct Builder {
    time: TimestampNanosecondBuilder,
    observed: TimestampNanosecondBuilder,
    trace_id: FixedSizeBinaryBuilder,
    span_id: FixedSizeBinaryBuilder,
    flags: UInt32Builder,
    severity_number: Int32Builder,
    severity_text: StringDictionaryBuilder<Int32Type>,
    body: StringBuilder,
    event_name: StringBuilder,
    attrs: Attrs,
    dropped_attrs: UInt32Builder,
    common: ResourceScope,
}

/// Times of a valid record: `time` and `observed_time`.
struct Times(i64, Option<i64>);

impl Builder {
    fn new(capacity: usize) -> Self {
        Builder {
            time: ts_builder(),
            observed: ts_builder(),
            trace_id: FixedSizeBinaryBuilder::with_capacity(capacity, 16),
            span_id: FixedSizeBinaryBuilder::with_capacity(capacity, 8),
            flags: UInt32Builder::with_capacity(capacity),
            severity_number: Int32Builder::with_capacity(capacity),
            severity_text: StringDictionaryBuilder::new(),
            body: StringBuilder::new(),
            event_name: StringBuilder::new(),
            attrs: schema::attributes_builder(),
            dropped_attrs: UInt32Builder::with_capacity(capacity),
            common: ResourceScope::default(),
        }
    }

    /// `time` is the record's time, else its observed time, else `received` (the OTLP
    /// data model lets a record carry only an observed time; the Collector sets that on
    /// receipt, as ScryDB does when both are missing).
    fn check(r: &LogRecord, received: i64) -> Result<Times, String> {
        super::decode_error(&r.attributes)?;
        check_id("trace_id", &r.trace_id, 16, true)?;
        check_id("span_id", &r.span_id, 8, true)?;
        if !(0..=MAX_SEVERITY).contains(&r.severity_number) {
            return Err(format!(
                "severity_number {} is not a known value (0..={MAX_SEVERITY})",
                r.severity_number
            ));
        }
        let time = check_time("time_unix_nano", r.time_unix_nano)?;
        let observed = check_time("observed_time_unix_nano", r.observed_time_unix_nano)?;
        let observed = (observed != 0).then_some(observed);
        let time = if time != 0 {
            time
        } else {
            observed.unwrap_or(received)
        };
        Ok(Times(time, observed))
    }

    fn append(&mut self, r: &LogRecord, times: Times, ctx: &Context<'_>) {
        self.time.append_value(times.0);
        self.observed.append_option(times.1);
        if !id_present(&r.trace_id) {
            self.trace_id.append_null();
        } else {
            self.trace_id
                .append_value(&r.trace_id)
                .expect("checked to be 16 bytes");
        }
        if !id_present(&r.span_id) {
            self.span_id.append_null();
        } else {
            self.span_id
                .append_value(&r.span_id)
                .expect("checked to be 8 bytes");
        }
        self.flags.append_value(r.flags);
        self.severity_number.append_value(r.severity_number);
        if r.severity_text.is_empty() {
            self.severity_text.append_null();
        } else {
            self.severity_text.append_value(&r.severity_text);
        }
        if write_value(&mut self.body, r.body.as_ref()) {
            self.body.append_value("");
        } else {
            self.body.append_null();
        }
        append_opt_str(&mut self.event_name, &r.event_name);
        append_attrs(&mut self.attrs, &r.attributes);
        self.dropped_attrs.append_value(r.dropped_attributes_count);
        self.common.append(ctx);
    }

    fn finish(mut self) -> RecordBatch {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish()),
            Arc::new(self.observed.finish()),
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.flags.finish()),
            Arc::new(self.severity_number.finish()),
            Arc::new(self.severity_text.finish()),
            Arc::new(self.body.finish()),
            Arc::new(self.event_name.finish()),
            self.common.finish_service(),
            Arc::new(self.attrs.finish()),
            Arc::new(self.dropped_attrs.finish()),
        ];
        self.common.finish_into(&mut columns);
        RecordBatch::try_new(schema::schema(Signal::Logs), columns)
            .expect("the log builders follow the logs schema")
    }
}

pub(super) fn convert(req: &ExportLogsServiceRequest) -> Converted {
    let capacity = req
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum();
    let received = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    let mut b = Builder::new(capacity);
    let mut rejected = Rejections::default();
    for (ri, rl) in req.resource_logs.iter().enumerate() {
        let service = service_name(rl.resource.as_ref());
        for (si, sl) in rl.scope_logs.iter().enumerate() {
            let ctx = Context {
                resource: rl.resource.as_ref(),
                service: &service,
                resource_schema_url: &rl.schema_url,
                scope: sl.scope.as_ref(),
                scope_schema_url: &sl.schema_url,
            };
            for (ki, record) in sl.log_records.iter().enumerate() {
                match Builder::check(record, received) {
                    Ok(times) => b.append(record, times, &ctx),
                    Err(reason) => rejected.reject(
                        || format!("resource_logs[{ri}].scope_logs[{si}].log_records[{ki}]"),
                        reason,
                    ),
                }
            }
        }
    }
    Converted {
        signal: Signal::Logs,
        batch: b.finish(),
        rejected: rejected.count,
        errors: rejected.errors,
    }
}

//! `ExportTraceServiceRequest` → the `spans` batch.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, FixedSizeBinaryBuilder, Int64Builder, RecordBatch, StringBuilder,
    StringDictionaryBuilder, TimestampNanosecondBuilder, UInt32Builder,
};
use arrow::datatypes::Int32Type;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;

use super::columns::{
    Attrs, Context, Events, Links, ResourceScope, append_attrs, append_opt_str, service_name,
    ts_builder,
};
use super::{Converted, Rejections, check_enum, check_id, check_time, id_present};
use crate::Signal;
use crate::schema::{self, SPAN_KINDS, STATUS_CODES};

struct Builder {
    time: TimestampNanosecondBuilder,
    end: TimestampNanosecondBuilder,
    duration: Int64Builder,
    trace_id: FixedSizeBinaryBuilder,
    span_id: FixedSizeBinaryBuilder,
    parent: FixedSizeBinaryBuilder,
    trace_state: StringBuilder,
    flags: UInt32Builder,
    name: StringBuilder,
    kind: StringDictionaryBuilder<Int32Type>,
    status: StringDictionaryBuilder<Int32Type>,
    status_msg: StringBuilder,
    attrs: Attrs,
    dropped_attrs: UInt32Builder,
    events: Events,
    dropped_events: UInt32Builder,
    links: Links,
    dropped_links: UInt32Builder,
    common: ResourceScope,
}

impl Builder {
    fn new(capacity: usize) -> Self {
        Builder {
            time: ts_builder(),
            end: ts_builder(),
            duration: Int64Builder::with_capacity(capacity),
            trace_id: FixedSizeBinaryBuilder::with_capacity(capacity, 16),
            span_id: FixedSizeBinaryBuilder::with_capacity(capacity, 8),
            parent: FixedSizeBinaryBuilder::with_capacity(capacity, 8),
            trace_state: StringBuilder::new(),
            flags: UInt32Builder::with_capacity(capacity),
            name: StringBuilder::new(),
            kind: StringDictionaryBuilder::new(),
            status: StringDictionaryBuilder::new(),
            status_msg: StringBuilder::new(),
            attrs: schema::attributes_builder(),
            dropped_attrs: UInt32Builder::with_capacity(capacity),
            events: Events::default(),
            dropped_events: UInt32Builder::with_capacity(capacity),
            links: Links::default(),
            dropped_links: UInt32Builder::with_capacity(capacity),
            common: ResourceScope::default(),
        }
    }

    /// Checks everything that can make a span invalid; returns its start and end times.
    fn check(span: &Span) -> Result<(i64, i64), String> {
        super::decode_error(&span.attributes)?;
        check_id("trace_id", &span.trace_id, 16, false)?;
        check_id("span_id", &span.span_id, 8, false)?;
        check_id("parent_span_id", &span.parent_span_id, 8, true)?;
        check_enum("kind", span.kind, SPAN_KINDS)?;
        if let Some(status) = &span.status {
            check_enum("status.code", status.code, STATUS_CODES)?;
        }
        for (i, event) in span.events.iter().enumerate() {
            check_time(&format!("events[{i}].time_unix_nano"), event.time_unix_nano)?;
        }
        for (i, link) in span.links.iter().enumerate() {
            check_id(&format!("links[{i}].trace_id"), &link.trace_id, 16, false)?;
            check_id(&format!("links[{i}].span_id"), &link.span_id, 8, false)?;
        }
        let start = check_time("start_time_unix_nano", span.start_time_unix_nano)?;
        let end = check_time("end_time_unix_nano", span.end_time_unix_nano)?;
        Ok((start, end))
    }

    fn append(&mut self, span: &Span, start: i64, end: i64, ctx: &Context<'_>) {
        self.time.append_value(start);
        self.end.append_value(end);
        self.duration.append_value(end.wrapping_sub(start));
        self.trace_id
            .append_value(&span.trace_id)
            .expect("checked to be 16 bytes");
        self.span_id
            .append_value(&span.span_id)
            .expect("checked to be 8 bytes");
        if !id_present(&span.parent_span_id) {
            self.parent.append_null();
        } else {
            self.parent
                .append_value(&span.parent_span_id)
                .expect("checked to be 8 bytes");
        }
        append_opt_str(&mut self.trace_state, &span.trace_state);
        self.flags.append_value(span.flags);
        self.name.append_value(&span.name);
        self.kind.append_value(SPAN_KINDS[span.kind as usize]);
        let (code, message) = span
            .status
            .as_ref()
            .map(|s| (s.code as usize, s.message.as_str()))
            .unwrap_or((0, ""));
        self.status.append_value(STATUS_CODES[code]);
        append_opt_str(&mut self.status_msg, message);
        append_attrs(&mut self.attrs, &span.attributes);
        self.dropped_attrs
            .append_value(span.dropped_attributes_count);
        for e in &span.events {
            self.events.push(
                i64::try_from(e.time_unix_nano).ok(),
                &e.name,
                &e.attributes,
                e.dropped_attributes_count,
            );
        }
        self.events.end_row();
        self.dropped_events.append_value(span.dropped_events_count);
        for l in &span.links {
            self.links.push(l);
        }
        self.links.end_row();
        self.dropped_links.append_value(span.dropped_links_count);
        self.common.append(ctx);
    }

    fn finish(mut self) -> RecordBatch {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish()),
            Arc::new(self.end.finish()),
            Arc::new(self.duration.finish()),
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.parent.finish()),
            Arc::new(self.trace_state.finish()),
            Arc::new(self.flags.finish()),
            self.common.finish_service(),
            Arc::new(self.name.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.status_msg.finish()),
            Arc::new(self.attrs.finish()),
            Arc::new(self.dropped_attrs.finish()),
            self.events.finish(),
            Arc::new(self.dropped_events.finish()),
            self.links.finish(),
            Arc::new(self.dropped_links.finish()),
        ];
        self.common.finish_into(&mut columns);
        RecordBatch::try_new(schema::schema(Signal::Spans), columns)
            .expect("the span builders follow the spans schema")
    }
}

pub(super) fn convert(req: &ExportTraceServiceRequest) -> Converted {
    let capacity = req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    let mut b = Builder::new(capacity);
    let mut rejected = Rejections::default();
    for (ri, rs) in req.resource_spans.iter().enumerate() {
        let service = service_name(rs.resource.as_ref());
        for (si, ss) in rs.scope_spans.iter().enumerate() {
            let ctx = Context {
                resource: rs.resource.as_ref(),
                service: &service,
                resource_schema_url: &rs.schema_url,
                scope: ss.scope.as_ref(),
                scope_schema_url: &ss.schema_url,
            };
            for (ki, span) in ss.spans.iter().enumerate() {
                match Builder::check(span) {
                    Ok((start, end)) => b.append(span, start, end, &ctx),
                    Err(reason) => rejected.reject(
                        || format!("resource_spans[{ri}].scope_spans[{si}].spans[{ki}]"),
                        reason,
                    ),
                }
            }
        }
    }
    Converted {
        signal: Signal::Spans,
        batch: b.finish(),
        rejected: rejected.count,
        errors: rejected.errors,
    }
}

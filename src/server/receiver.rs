//! Ingest of one decoded OTLP request, shared by both transports, and the gRPC services.

use std::sync::Arc;
use std::time::Instant;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::codec::CompressionEncoding;

use super::Shared;
use super::telemetry::{Outcome, Transport};
use crate::Signal;
use crate::otlp::{Ingested, Request};

/// Why a request was not stored.
#[derive(Debug)]
pub(crate) struct Failure {
    pub outcome: Outcome,
    pub message: String,
}

impl Failure {
    pub fn new(outcome: Outcome, message: impl Into<String>) -> Self {
        Failure {
            outcome,
            message: message.into(),
        }
    }

    fn into_status(self) -> tonic::Status {
        match self.outcome {
            Outcome::BadRequest => tonic::Status::invalid_argument(self.message),
            Outcome::TooLarge => tonic::Status::resource_exhausted(self.message),
            Outcome::RetryLater => tonic::Status::unavailable(self.message),
            _ => tonic::Status::internal(self.message),
        }
    }
}

/// Stores one request through the library's OTLP path (on a blocking thread: the append
/// waits for the log's group commit) and counts what happened.
pub(crate) async fn ingest(
    shared: &Arc<Shared>,
    transport: Transport,
    request: Request,
) -> Result<Ingested, Failure> {
    let signal = request.signal();
    let started = Instant::now();
    let db = shared.db.clone();
    let result = tokio::task::spawn_blocking(move || db.ingest_otlp(&request)).await;
    let result = match result {
        Ok(Ok(ingested)) => Ok(ingested),
        Ok(Err(e)) => Err(match e {
            crate::Error::InvalidBatch { .. } | crate::Error::InvalidOtlp { .. } => {
                Failure::new(Outcome::BadRequest, e.to_string())
            }
            crate::Error::TooLarge { .. } => Failure::new(Outcome::TooLarge, e.to_string()),
            crate::Error::Poisoned { .. } | crate::Error::Closed => Failure::new(
                Outcome::RetryLater,
                format!("{e}; the receiver is unhealthy until restarted"),
            ),
            other => Failure::new(Outcome::Failed, other.to_string()),
        }),
        Err(join) => Err(Failure::new(
            Outcome::Failed,
            format!("the ingest task failed: {join}"),
        )),
    };
    match &result {
        Ok(i) => {
            let outcome = if i.rejected > 0 {
                Outcome::Partial
            } else {
                Outcome::Ok
            };
            shared.counters.request(transport, Some(signal), outcome);
            shared.counters.records(signal, i.accepted, i.rejected);
            shared.counters.latency(started.elapsed());
        }
        Err(f) => {
            if f.outcome == Outcome::Failed {
                log::error!(
                    "could not store an OTLP/{transport} {signal} request: {}",
                    f.message
                );
            }
            shared.counters.request(transport, Some(signal), f.outcome)
        }
    }
    result
}

/// OTLP's partial-success message: how many were rejected and why (the first few).
pub(crate) fn partial_message(i: &Ingested) -> String {
    const SHOWN: usize = 5;
    let mut msg = format!(
        "{} of {} {} rejected",
        i.rejected,
        i.rejected + i.accepted,
        match i.signal {
            Signal::Spans => "spans",
            Signal::Logs => "log records",
            Signal::Metrics => "data points",
        }
    );
    for (n, e) in i.errors.iter().take(SHOWN).enumerate() {
        msg.push_str(if n == 0 { ": " } else { "; " });
        msg.push_str(&e.to_string());
    }
    if i.errors.len() > SHOWN {
        msg.push_str("; ...");
    }
    msg
}

/// The signal of a gRPC method path, if it is one of ours.
pub(crate) fn grpc_signal(path: &str) -> Option<Signal> {
    if path.starts_with("/opentelemetry.proto.collector.trace.v1.") {
        Some(Signal::Spans)
    } else if path.starts_with("/opentelemetry.proto.collector.logs.v1.") {
        Some(Signal::Logs)
    } else if path.starts_with("/opentelemetry.proto.collector.metrics.v1.") {
        Some(Signal::Metrics)
    } else {
        None
    }
}

/// The three OTLP gRPC services, gzip accepted and the message size limited.
pub(crate) fn grpc_router(shared: Arc<Shared>) -> axum::Router {
    let max = shared.opts.max_request_bytes;
    let svc = Grpc(shared.clone());
    let routes = tonic::service::Routes::new(
        TraceServiceServer::new(svc.clone())
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(max),
    )
    .add_service(
        LogsServiceServer::new(svc.clone())
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(max),
    )
    .add_service(
        MetricsServiceServer::new(svc)
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(max),
    );
    routes
        .into_axum_router()
        .layer(axum::middleware::from_fn_with_state(
            shared,
            super::auth::grpc,
        ))
}

#[derive(Clone)]
struct Grpc(Arc<Shared>);

impl Grpc {
    async fn export(&self, request: Request) -> Result<Ingested, tonic::Status> {
        ingest(&self.0, Transport::Grpc, request)
            .await
            .map_err(Failure::into_status)
    }
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let i = Grpc::export(self, Request::Traces(request.into_inner())).await?;
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: (i.rejected > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: i.rejected as i64,
                error_message: partial_message(&i),
            }),
        }))
    }
}

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let i = Grpc::export(self, Request::Logs(request.into_inner())).await?;
        Ok(tonic::Response::new(ExportLogsServiceResponse {
            partial_success: (i.rejected > 0).then(|| ExportLogsPartialSuccess {
                rejected_log_records: i.rejected as i64,
                error_message: partial_message(&i),
            }),
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let i = Grpc::export(self, Request::Metrics(request.into_inner())).await?;
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: (i.rejected > 0).then(|| ExportMetricsPartialSuccess {
                rejected_data_points: i.rejected as i64,
                error_message: partial_message(&i),
            }),
        }))
    }
}

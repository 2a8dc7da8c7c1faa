//! Distributed SQL on Apache DataFusion Ballista over stores in object storage
//! (`docs/scale-out.md`).
//!
//! A client plans a query with a [`crate::Session`] over a store in object storage (or a
//! view of several, `Db::open_view`) and sends the plan to a Ballista scheduler
//! ([`connect`]); the scheduler plans it physically and its executors run the stages.
//!
//! What travels, through [`ScryCodec`]:
//! - `spans`, `logs` and `metrics` go as the stores they read (their `s3://` URLs) and the
//!   table's switches. The scheduler opens those stores as a view (once per set, then
//!   refreshed like any read-only handle) and plans the scan with
//!   [`crate::ScryTable::for_cluster`]: DataFusion's own Parquet scan of the segments'
//!   objects, which any executor runs with nothing but the object store.
//! - Every other table of the plan (the span rollups, the results of `critical_path`,
//!   `log_patterns`, `compare`, the structural functions, `scry_stats`) is computed on the
//!   client and travels as its rows. They are small by construction (one trace, a window's
//!   templates, rollups).
//! - Views (`alerts`, `trace_spans`, `search`, `service_graph`) travel as their plans.
//! - Scalar and aggregate functions travel by name: the scheduler's and the executors'
//!   sessions register them ([`scheduler_state`], [`function_registry`]).
//!
//! Executors and the scheduler reach object storage through an [`S3Registry`], which
//! builds a client per bucket with the [`S3Options`] they were started with (`scry
//! cluster` takes them from the `AWS_*` variables).

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ballista_core::extension::{SessionConfigExt, SessionStateExt};
use ballista_core::serde::BallistaLogicalExtensionCodec;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::common::{DataFusionError, Result, TableReference};
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::execution::FunctionRegistry;
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::{SessionState, TaskContext};
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use object_store::ObjectStore;
use scrydb_engine::remote::{RemoteOptions, RemoteStore, S3Options, View};
use scrydb_engine::{Db, Options, Signal};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::table::ScryTable;

/// The codec envelope's first byte.
const TAG_SCRY_TABLE: u8 = 1;
const TAG_ROWS: u8 = 2;

/// What a ScryDB table is, for the scheduler to open it again.
#[derive(Debug, Serialize, Deserialize)]
struct TableSpec {
    signal: Signal,
    stores: Vec<String>,
    trace_index: bool,
    term_index: bool,
    time_pruning: bool,
    tree_columns: bool,
}

/// Ballista's logical codec with ScryDB's tables added (module documentation).
pub struct ScryCodec {
    inner: BallistaLogicalExtensionCodec,
    s3: S3Options,
    cache_dir: PathBuf,
    views: Mutex<HashMap<Vec<String>, Arc<Db>>>,
}

impl fmt::Debug for ScryCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScryCodec")
            .field("cache_dir", &self.cache_dir)
            .finish()
    }
}

impl ScryCodec {
    /// A codec whose views (on a scheduler) reach object storage with `s3` and keep their
    /// caches under `cache_dir`.
    pub fn new(s3: S3Options, cache_dir: impl Into<PathBuf>) -> ScryCodec {
        ScryCodec {
            inner: BallistaLogicalExtensionCodec::default(),
            s3,
            cache_dir: cache_dir.into(),
            views: Mutex::new(HashMap::new()),
        }
    }

    /// The read-only view of `stores`, opened once per set.
    fn view(&self, stores: &[String]) -> Result<Arc<Db>> {
        let mut views = self.views.lock().expect("views lock");
        if let Some(db) = views.get(stores) {
            return Ok(db.clone());
        }
        let mut view = View::new();
        for url in stores {
            view = view.remote(RemoteStore::s3(url, &self.s3).map_err(ext)?);
        }
        let dir = self.cache_dir.join(format!("view-{}", views.len()));
        let db = Arc::new(
            Db::open_view(&dir, &view, RemoteOptions::default(), Options::default())
                .map_err(ext)?,
        );
        views.insert(stores.to_vec(), db.clone());
        Ok(db)
    }
}

fn ext(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// Every row of `provider`, computed now (on a thread of its own: the codec is called
/// from inside the client's async planning).
fn materialize(
    provider: Arc<dyn TableProvider>,
) -> Result<Vec<datafusion::arrow::array::RecordBatch>> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(ext)?;
            rt.block_on(async {
                let state = SessionStateBuilder::new().with_default_features().build();
                let plan = provider.scan(&state, None, &[], None).await?;
                datafusion::physical_plan::collect(plan, state.task_ctx()).await
            })
        })
        .join()
        .map_err(|_| {
            DataFusionError::Internal("computing a table for the cluster panicked".into())
        })?
    })
}

impl LogicalExtensionCodec for ScryCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        match buf.split_first() {
            Some((&TAG_SCRY_TABLE, rest)) => {
                let spec: TableSpec = serde_json::from_slice(rest).map_err(ext)?;
                let db = self.view(&spec.stores)?;
                let mut table = ScryTable::new(db.reader(), spec.signal)
                    .with_trace_index(spec.trace_index)
                    .with_term_index(spec.term_index)
                    .with_time_pruning(spec.time_pruning)
                    .for_cluster();
                if spec.tree_columns {
                    table = table.with_tree_columns();
                }
                Ok(Arc::new(table))
            }
            Some((&TAG_ROWS, rest)) => {
                let reader = StreamReader::try_new(std::io::Cursor::new(rest), None)?;
                let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
                Ok(Arc::new(MemTable::try_new(schema, vec![batches])?))
            }
            _ => self
                .inner
                .try_decode_table_provider(buf, table_ref, schema, ctx),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        if let Some(t) = (node.as_ref() as &dyn std::any::Any).downcast_ref::<ScryTable>() {
            let stores = t.reader().snapshot().remote_stores().ok_or_else(|| {
                DataFusionError::Plan(format!(
                    "{table_ref} reads a store on local disk: a cluster reads stores in \
                     object storage (open the store with --remote / Db::open_remote_read_only)"
                ))
            })?;
            let (trace_index, term_index, time_pruning) = t.switches();
            let spec = TableSpec {
                signal: t.signal(),
                stores,
                trace_index,
                term_index,
                time_pruning,
                tree_columns: t.has_tree_columns(),
            };
            buf.push(TAG_SCRY_TABLE);
            serde_json::to_writer(&mut *buf, &spec).map_err(ext)?;
            return Ok(());
        }
        let schema = node.schema();
        let batches = materialize(node)?;
        buf.push(TAG_ROWS);
        let mut w = StreamWriter::try_new(&mut *buf, &schema)?;
        for b in &batches {
            w.write(b)?;
        }
        w.finish()?;
        Ok(())
    }
}

/// Object stores for `s3://bucket` URLs, each client built on first use with the
/// registry's [`S3Options`].
#[derive(Debug)]
pub struct S3Registry {
    s3: S3Options,
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl S3Registry {
    /// A registry reaching object storage with `s3`.
    pub fn new(s3: S3Options) -> S3Registry {
        S3Registry {
            s3,
            stores: Mutex::new(HashMap::new()),
        }
    }
}

impl ObjectStoreRegistry for S3Registry {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        let key = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
        self.stores
            .lock()
            .expect("registry lock")
            .insert(key, store)
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        let key = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
        let mut stores = self.stores.lock().expect("registry lock");
        if let Some(s) = stores.get(&key) {
            return Ok(s.clone());
        }
        if url.scheme() != "s3" {
            return Err(DataFusionError::Plan(format!(
                "no object store for {url}: a ScryDB cluster reads s3:// URLs"
            )));
        }
        let store = RemoteStore::s3(&key, &self.s3).map_err(ext)?.object_store();
        stores.insert(key, store.clone());
        Ok(store)
    }
}

/// The session configuration of ScryDB's cluster processes: Ballista's, with [`ScryCodec`]
/// as the logical codec.
pub fn config(codec: Arc<ScryCodec>) -> SessionConfig {
    SessionConfig::new_with_ballista().with_ballista_logical_extension_codec(codec)
}

/// The session a scheduler or executor plans and runs with: DataFusion's functions,
/// ScryDB's scalar and aggregate functions, and an [`S3Registry`] for object storage.
pub fn scheduler_state(config: SessionConfig, s3: &S3Options) -> Result<SessionState> {
    let runtime = RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(S3Registry::new(s3.clone())))
        .build_arc()?;
    let mut state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .build();
    state.register_udf(Arc::new(crate::functions::duration_ms()))?;
    state.register_udf(Arc::new(crate::functions::matches()))?;
    state.register_udaf(Arc::new(crate::rollups::exp_histogram_quantile()))?;
    Ok(state)
}

/// The functions an executor needs: those of [`scheduler_state`].
pub fn function_registry() -> Result<ballista_core::registry::BallistaFunctionRegistry> {
    let state = scheduler_state(SessionConfig::new_with_ballista(), &S3Options::default())?;
    Ok((&state).into())
}

/// A DataFusion context whose queries run on the Ballista scheduler at `scheduler`
/// (`host:port`): `session`'s tables and functions, planned here and executed by the
/// cluster. The stores `session` reads must be in object storage (a view or a remote
/// store); the executors read their segments directly.
pub fn connect(session: &crate::Session, scheduler: &str) -> Result<SessionContext> {
    let state = session.context().state();
    let cache = std::env::temp_dir().join(format!("scry-cluster-client-{}", std::process::id()));
    // The client only encodes: it never opens a view.
    let codec = ScryCodec::new(S3Options::default(), cache);
    // The catalog (shared with `session`) exists: building must not create a new default
    // one over it.
    let config = state
        .config()
        .clone()
        .with_create_default_catalog_and_schema(false)
        .with_ballista_logical_extension_codec(Arc::new(codec));
    let scalar: Vec<_> = state.scalar_functions().values().cloned().collect();
    let aggregate: Vec<_> = state.aggregate_functions().values().cloned().collect();
    let mut state = SessionStateBuilder::new_from_existing(state)
        .with_config(config)
        .build()
        .upgrade_for_ballista(format!("http://{scheduler}"))?;
    // Ballista's upgrade replaces the function lists with its own: ScryDB's come back.
    for f in scalar {
        if !state.scalar_functions().contains_key(f.name()) {
            state.register_udf(f)?;
        }
    }
    for f in aggregate {
        if !state.aggregate_functions().contains_key(f.name()) {
            state.register_udaf(f)?;
        }
    }
    Ok(SessionContext::new_with_state(state))
}

fn config_producer(codec: Arc<ScryCodec>) -> ballista_core::ConfigProducer {
    Arc::new(move || config(codec.clone()))
}

fn runtime_producer(s3: &S3Options) -> ballista_core::RuntimeProducer {
    let registry = Arc::new(S3Registry::new(s3.clone()));
    Arc::new(move |_: &SessionConfig| {
        RuntimeEnvBuilder::new()
            .with_object_store_registry(registry.clone())
            .build_arc()
    })
}

fn ballista_err(e: ballista_core::error::BallistaError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// Starts a Ballista scheduler with ScryDB's codec and functions in this process, on the
/// current tokio runtime, listening on `addr` (port 0: a free port); returns the address
/// it listens on. Executors pull their tasks from it ([`start_executor`], `scry cluster
/// executor`). It reaches object storage with `s3`; the views it opens keep their caches
/// under `cache_dir`.
pub async fn start_scheduler(
    addr: std::net::SocketAddr,
    s3: S3Options,
    cache_dir: PathBuf,
) -> Result<std::net::SocketAddr> {
    use ballista_scheduler::cluster::BallistaCluster;
    use ballista_scheduler::config::SchedulerConfig;
    use ballista_scheduler::scheduler_process::{
        create_scheduler, start_grpc_service_with_listener,
    };
    use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
    let codec = Arc::new(ScryCodec::new(s3.clone(), cache_dir));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let producer = config_producer(codec.clone());
    let builder: ballista_scheduler::scheduler_server::SessionBuilder =
        Arc::new(move |cfg: SessionConfig| scheduler_state(cfg, &s3));
    let cluster = BallistaCluster::new_memory(local.to_string(), builder.clone(), producer.clone());
    let sc = SchedulerConfig {
        external_host: local.ip().to_string(),
        bind_host: local.ip().to_string(),
        bind_port: local.port(),
        scheduling_policy: ballista_core::config::TaskSchedulingPolicy::PullStaged,
        override_logical_codec: Some(codec),
        override_session_builder: Some(builder),
        override_config_producer: Some(producer),
        ..SchedulerConfig::default()
    };
    let scheduler = create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, Arc::new(sc))
        .await
        .map_err(ballista_err)?;
    tokio::spawn(async move {
        if let Err(e) = start_grpc_service_with_listener(listener, scheduler).await {
            log::error!("the cluster scheduler stopped: {e}");
        }
    });
    Ok(local)
}

/// Starts an executor in this process that pulls tasks from the scheduler at `scheduler`
/// and runs them with `vcores` task slots, reading segments from object storage. Its
/// Flight server (shuffle data) listens on a free loopback port.
pub async fn start_executor(
    scheduler: std::net::SocketAddr,
    vcores: usize,
    s3: S3Options,
) -> Result<()> {
    use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
    use ballista_core::serde::{BallistaCodec, BallistaPhysicalExtensionCodec};
    let url = format!("http://{scheduler}");
    let mut attempt = 0;
    let client = loop {
        match SchedulerGrpcClient::connect(url.clone()).await {
            Ok(c) => break c,
            Err(e) if attempt < 50 => {
                attempt += 1;
                log::debug!("waiting for the scheduler at {url}: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => {
                return Err(DataFusionError::Execution(format!(
                    "cannot reach the cluster scheduler at {url}: {e}"
                )));
            }
        }
    };
    let cache = std::env::temp_dir().join(format!("scry-cluster-executor-{}", std::process::id()));
    let runtime = runtime_producer(&s3);
    let codec = Arc::new(ScryCodec::new(s3, cache));
    ballista_executor::new_standalone_executor_from_builder(
        client,
        vcores.max(1),
        config_producer(codec.clone()),
        runtime,
        BallistaCodec::new(codec, Arc::new(BallistaPhysicalExtensionCodec::default())),
        function_registry()?,
    )
    .await
    .map_err(ballista_err)
}

/// Runs an executor process until it is stopped (Ctrl-C, SIGTERM or the scheduler): pulls
/// tasks from `scheduler_host:scheduler_port`, serves shuffle data on `bind_host:port`
/// (and its gRPC service on `grpc_port`), with `vcores` task slots.
pub async fn run_executor(
    bind_host: &str,
    port: u16,
    grpc_port: u16,
    scheduler: std::net::SocketAddr,
    vcores: usize,
    s3: S3Options,
) -> Result<()> {
    use ballista_core::serde::BallistaPhysicalExtensionCodec;
    use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
    let cache = std::env::temp_dir().join(format!("scry-cluster-executor-{}", std::process::id()));
    let runtime = runtime_producer(&s3);
    let codec = Arc::new(ScryCodec::new(s3, cache));
    let c = ExecutorProcessConfig {
        bind_host: bind_host.to_string(),
        external_host: Some(bind_host.to_string()),
        port,
        grpc_port,
        scheduler_host: scheduler.ip().to_string(),
        scheduler_port: scheduler.port(),
        vcores: vcores.max(1),
        task_scheduling_policy: ballista_core::config::TaskSchedulingPolicy::PullStaged,
        override_function_registry: Some(Arc::new(function_registry()?)),
        override_runtime_producer: Some(runtime),
        override_config_producer: Some(config_producer(codec.clone())),
        override_logical_codec: Some(codec),
        override_physical_codec: Some(Arc::new(BallistaPhysicalExtensionCodec::default())),
        ..ExecutorProcessConfig::default()
    };
    start_executor_process(Arc::new(c))
        .await
        .map_err(ballista_err)
}

//! Distributed SQL on DataFusion Ballista: a scheduler and two executors in this process
//! (executors pull tasks over loopback gRPC and exchange shuffle data over Flight), over
//! two writers' stores in object storage (moto's S3 server, `tests/it/remote.rs`); the
//! cross-signal queries, hex ids, the table functions and the rollups give the same rows as
//! the embedded engine over the same view.

use std::time::Duration;

use scrydb::remote::{RemoteOptions, View};
use scrydb::sql::cluster;
use scrydb::sql::ids::hex;
use scrydb::{Db, Signal};

use crate::common::*;
use crate::remote::S3;

const CLUSTER_QUERIES: &[&str] = &[
    "SELECT service_name, count(*) AS n, sum(duration_ns) AS d FROM spans GROUP BY service_name",
    "SELECT s.service_name, count(*) AS n FROM logs l JOIN spans s \
     ON l.trace_id = s.trace_id AND l.span_id = s.span_id GROUP BY s.service_name",
    "SELECT name, count(*) AS n FROM metrics GROUP BY name",
    "SELECT kind, count(*) AS n, max(end_time) AS last FROM spans \
     WHERE time >= to_timestamp_nanos(1764028800000000000) GROUP BY kind",
    "SELECT service_name, sum(count) AS calls, sum(errors) AS errors FROM span_metrics \
     GROUP BY service_name",
    "SELECT count(*) AS n, max(duration_ms(duration_ns)) AS slowest FROM spans",
];

#[test]
fn ballista_runs_the_same_queries_as_the_embedded_engine() {
    let s3 = S3::start();
    let local = tempfile::tempdir().expect("tempdir");
    let mut ids = Vec::new();
    for w in 0..2u64 {
        let db = Db::open_remote(
            local.path().join(format!("w{w}")),
            s3.store(&format!("cluster/host-{w}")),
            RemoteOptions::default(),
            small_opts(),
        )
        .expect("writer");
        for i in 0..2i64 {
            let base = BASE + i * HOUR;
            let spans = synth(Signal::Spans, 80 + w * 10 + i as u64, 3000, base);
            ids.push(first_trace_id(&spans));
            db.append(Signal::Spans, &spans).expect("append");
            db.append(
                Signal::Logs,
                &synth(Signal::Logs, 80 + w * 10 + i as u64, 1500, base),
            )
            .expect("append");
            db.append(Signal::Metrics, &synth(Signal::Metrics, 80 + w, 300, base))
                .expect("append");
            db.flush().expect("flush");
        }
        db.close().expect("close");
    }
    let view = Db::open_view(
        local.path().join("view"),
        &View::new().writers_under(s3.store("cluster")),
        RemoteOptions::default(),
        small_opts(),
    )
    .expect("view");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    let sched_cache = local.path().join("scheduler");
    let addr = rt
        .block_on(cluster::start_scheduler(
            "127.0.0.1:0".parse().expect("addr"),
            s3.options(),
            sched_cache,
        ))
        .expect("scheduler");
    for _ in 0..2 {
        rt.block_on(cluster::start_executor(addr, 2, s3.options()))
            .expect("executor");
    }
    let ctx =
        cluster::connect(view.session().expect("session"), &addr.to_string()).expect("connect");
    // The queries run on the cluster: the client's plan is one distributed query.
    let plan = rt
        .block_on(async {
            ctx.sql("SELECT count(*) FROM spans")
                .await?
                .create_physical_plan()
                .await
        })
        .expect("plan");
    assert_eq!(plan.name(), "DistributedQueryExec", "{plan:?}");
    let run = |q: &str| {
        rt.block_on(async {
            let df = ctx.sql(q).await?;
            tokio::time::timeout(Duration::from_secs(120), df.collect())
                .await
                .map_err(|_| datafusion_err(q))?
        })
        .unwrap_or_else(|e| panic!("{q} on the cluster: {e}"))
    };
    let mut queries: Vec<String> = CLUSTER_QUERIES.iter().map(|q| q.to_string()).collect();
    for id in &ids {
        // Hex ids, a trace lookup, and the table functions over a trace.
        queries.push(format!(
            "SELECT name, span_id, duration_ns FROM spans WHERE trace_id = '{}'",
            hex(id)
        ));
        queries.push(format!(
            "SELECT name, count(*) AS n FROM trace_spans('{}') GROUP BY name",
            hex(id)
        ));
        queries.push(format!(
            "SELECT span_id, self_ns FROM critical_path('{}')",
            hex(id)
        ));
    }
    for q in &queries {
        let want = rows(&view.sql_blocking(q).unwrap_or_else(|e| panic!("{q}: {e}")));
        let got = rows(&run(q));
        assert_eq!(got, want, "{q}");
        assert!(!want.is_empty(), "{q} returned nothing: a weak comparison");
    }
    // The service graph (a self-join of spans; the generated spans may have no edges
    // across services, so its rows are only compared).
    let q = "SELECT caller, callee, calls, errors FROM service_graph(\
             to_timestamp_nanos(1764028800000000000), to_timestamp_nanos(1764036000000000000))";
    assert_eq!(rows(&run(q)), rows(&view.sql_blocking(q).expect(q)), "{q}");
    // A store on local disk cannot be read by a cluster.
    let plain = tempfile::tempdir().expect("tempdir");
    let db = open(plain.path());
    db.append(Signal::Spans, &synth(Signal::Spans, 1, 10, BASE))
        .expect("append");
    let ctx = cluster::connect(db.session().expect("session"), &addr.to_string()).expect("connect");
    let err = rt
        .block_on(async { ctx.sql("SELECT count(*) FROM spans").await?.collect().await })
        .expect_err("local store");
    assert!(err.to_string().contains("local disk"), "{err}");
    drop(rt);
}

fn datafusion_err(q: &str) -> scrydb::sql::datafusion::common::DataFusionError {
    scrydb::sql::datafusion::common::DataFusionError::Execution(format!(
        "{q}: no answer within 120 s"
    ))
}

/// A free loopback port (bound and released: a small race other tests on the machine
/// could lose, never this one's own processes).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// `scry cluster scheduler`, `scry cluster executor` and `scry sql --cluster` as processes.
#[test]
fn the_cli_runs_a_cluster() {
    use std::process::{Command, Stdio};
    let s3 = S3::start();
    let local = tempfile::tempdir().expect("tempdir");
    let db = Db::open_remote(
        local.path().join("w"),
        s3.store("cli-cluster/host-0"),
        RemoteOptions::default(),
        small_opts(),
    )
    .expect("writer");
    db.append(Signal::Spans, &synth(Signal::Spans, 5, 2000, BASE))
        .expect("append");
    db.close().expect("close");
    let env = |c: &mut Command| {
        c.env("AWS_ENDPOINT_URL", &s3.direct)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env_remove("SCRY_DB")
            .env_remove("SCRY_REMOTE");
    };
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let sched = format!("127.0.0.1:{}", free_port());
    let mut c = Command::new(env!("CARGO_BIN_EXE_scry"));
    c.args(["cluster", "scheduler", "--bind", &sched])
        .arg("--db")
        .arg(local.path().join("sched"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    env(&mut c);
    let _scheduler = Kill(c.spawn().expect("scheduler"));
    let mut executors = Vec::new();
    for _ in 0..2 {
        let (port, grpc) = (free_port(), free_port());
        let mut c = Command::new(env!("CARGO_BIN_EXE_scry"));
        c.args([
            "cluster",
            "executor",
            "--scheduler",
            &sched,
            "--port",
            &port.to_string(),
            "--grpc-port",
            &grpc.to_string(),
            "--vcores",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        env(&mut c);
        executors.push(Kill(c.spawn().expect("executor")));
    }
    let query = "SELECT count(*) AS n FROM spans";
    let mut last = String::new();
    // The processes start in the background: retry until the scheduler answers.
    for _ in 0..100 {
        let mut c = Command::new(env!("CARGO_BIN_EXE_scry"));
        c.args([
            "sql",
            "--remote",
            "s3://scry-test/cli-cluster/host-0",
            "--cluster",
            &sched,
            "--format",
            "csv",
            query,
        ])
        .arg("--db")
        .arg(local.path().join("client"));
        env(&mut c);
        let out = c.output().expect("scry sql");
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert_eq!(text.trim(), "n\n2000", "{text}");
            return;
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("scry sql --cluster never answered: {last}");
}

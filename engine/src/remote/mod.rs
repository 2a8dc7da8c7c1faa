//! Stores whose segments, indexes and manifests live in S3-compatible object storage.
//!
//! A **remote store** is a local directory (the write-ahead log, the lock, a bounded cache)
//! paired with an object-storage prefix (`s3://bucket/prefix`) that holds everything else:
//! `MANIFEST-*`, and `spans/`, `logs/`, `metrics/` with their segments and side files, laid
//! out exactly as in a local store (`docs/format.md`, `docs/scale-out.md`). The engine does
//! not change: [`RemoteFs`] implements [`crate::io::FileSystem`] and routes each path either
//! to the local directory or to the prefix.
//!
//! - **Writes** are staged in the local cache under their temporary name and uploaded when
//!   the engine renames them to their final name — so a segment and its side files are in
//!   object storage before the manifest that names them is written.
//! - **The manifest** is committed by creating the object `MANIFEST-<version>` with
//!   `If-None-Match: *` and then checking that no newer version exists: a second writer on
//!   the same prefix cannot overwrite or silently supersede the first one's manifest, its
//!   commit fails instead (and its rows stay in its log).
//! - **One writer per prefix** is enforced by a lease object `LOCK` (created with
//!   `If-None-Match: *`, deleted at close). A writer restarting on the same host and
//!   directory after a crash takes its own lease back; any other writer is refused with the
//!   holder named, unless [`RemoteOptions::take_over`] says the holder is gone.
//! - **Reads** go to the local cache when the file is there, else to ranged GETs. Files
//!   this process wrote (the newest segments) stay cached; index and side files are cached
//!   whole on first use; a segment read again is downloaded whole. The cache holds at most
//!   [`RemoteOptions::cache_bytes`], least recently used first out.
//! - **Deletes** (compaction, retention) delete the objects.
//!
//! A [`View`] opens several stores — one prefix per writer, or every writer under a parent
//! prefix — as one read-only logical store ([`crate::Db::open_view`]).

mod cache;
mod fs;
mod view;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::path::Path as ObjPath;

pub use fs::RemoteFs;
pub use view::{View, ViewFs};

use crate::{Error, Result};

/// How to reach an S3-compatible service. [`S3Options::from_env`] reads the usual `AWS_*`
/// variables; every field may be set directly.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct S3Options {
    /// Endpoint URL (`http://127.0.0.1:9000`); `None` is AWS itself.
    pub endpoint: Option<String>,
    /// Region (`us-east-1` when unset).
    pub region: String,
    /// Access key id; `None` uses the client's own discovery (instance metadata and so on).
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Session token, for temporary credentials.
    pub session_token: Option<String>,
    /// Allow plain `http://` endpoints (set automatically for an `http://` endpoint).
    pub allow_http: bool,
    /// Time limit of one request (connect to last byte).
    pub timeout: Duration,
    /// Time limit of connecting.
    pub connect_timeout: Duration,
    /// Retries of a failed request (server errors, timeouts, connection errors), with
    /// exponential backoff from 100 ms.
    pub max_retries: usize,
    /// Time limit of one operation with all its retries.
    pub retry_timeout: Duration,
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            endpoint: None,
            region: "us-east-1".to_string(),
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            allow_http: false,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            max_retries: 5,
            retry_timeout: Duration::from_secs(120),
        }
    }
}

impl S3Options {
    /// The defaults, overridden by `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`), `AWS_REGION` (or
    /// `AWS_DEFAULT_REGION`), `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN` and `AWS_ALLOW_HTTP` (`true`) where set.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut o = S3Options {
            endpoint: var("AWS_ENDPOINT_URL").or_else(|| var("AWS_ENDPOINT")),
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
            session_token: var("AWS_SESSION_TOKEN"),
            ..S3Options::default()
        };
        if let Some(r) = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")) {
            o.region = r;
        }
        o.allow_http = var("AWS_ALLOW_HTTP").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        o
    }
}

/// How a store uses its remote prefix and local cache.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RemoteOptions {
    /// Most bytes the local cache of remote files holds (default 1 GiB). Files this process
    /// uploads, index and side files, and segments read more than once are cached; the
    /// least recently used go first. Zero caches nothing: every read is a GET.
    pub cache_bytes: u64,
    /// Take the prefix's writer lease even when another writer holds it. Only for a writer
    /// known to be gone for good (its host lost): two live writers on one prefix make the
    /// second one's commits fail (see the module documentation), never lose data, but the
    /// first one stops too.
    pub take_over: bool,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            cache_bytes: 1 << 30,
            take_over: false,
        }
    }
}

/// An object-storage prefix that holds (or will hold) one store: a client and a path.
#[derive(Clone)]
pub struct RemoteStore {
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: ObjPath,
}

impl std::fmt::Debug for RemoteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteStore")
            .field("url", &self.url)
            .finish()
    }
}

impl RemoteStore {
    /// The store at `url` — `s3://bucket` or `s3://bucket/prefix/...` — reached with `s3`.
    /// Only the `s3` scheme is known; the bucket must be named. Nothing is contacted yet.
    pub fn s3(url: &str, s3: &S3Options) -> Result<RemoteStore> {
        let bad = |why: &str| {
            Error::invalid_option("remote", format!("object-storage URL {url:?}: {why}"))
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("only s3://bucket/prefix URLs are supported"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket named"));
        }
        let prefix = prefix.trim_end_matches('/');
        let prefix = ObjPath::parse(prefix).map_err(|e| bad(&format!("bad prefix: {e}")))?;
        let allow_http = s3.allow_http
            || s3
                .endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://"));
        let mut b = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(&s3.region)
            .with_allow_http(allow_http)
            .with_retry(object_store::RetryConfig {
                backoff: object_store::BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(5),
                    base: 2.0,
                },
                max_retries: s3.max_retries,
                retry_timeout: s3.retry_timeout,
            })
            .with_client_options(
                object_store::ClientOptions::new()
                    .with_timeout(s3.timeout)
                    .with_connect_timeout(s3.connect_timeout)
                    .with_allow_http(allow_http),
            );
        if let Some(e) = &s3.endpoint {
            b = b.with_endpoint(e);
        }
        if let Some(k) = &s3.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(k) = &s3.secret_access_key {
            b = b.with_secret_access_key(k);
        }
        if let Some(t) = &s3.session_token {
            b = b.with_token(t);
        }
        let store = b
            .build()
            .map_err(|e| bad(&format!("cannot build the S3 client: {e}")))?;
        Ok(RemoteStore {
            url: format!("s3://{bucket}/{prefix}")
                .trim_end_matches('/')
                .to_string(),
            store: Arc::new(store),
            prefix,
        })
    }

    /// A store at `prefix` of any [`ObjectStore`]; `url` is how messages name it.
    pub fn new(url: impl Into<String>, store: Arc<dyn ObjectStore>, prefix: &str) -> Result<Self> {
        let url = url.into();
        let prefix = ObjPath::parse(prefix.trim_matches('/')).map_err(|e| {
            Error::invalid_option("remote", format!("object-storage prefix of {url}: {e}"))
        })?;
        Ok(RemoteStore { url, store, prefix })
    }

    /// How messages name the store: `s3://bucket/prefix`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The store at `name` under this one (`s3://bucket/prefix/name`).
    pub fn child(&self, name: &str) -> Result<RemoteStore> {
        let name = name.trim_matches('/');
        if name.is_empty()
            || name
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Err(Error::invalid_option(
                "remote",
                format!("{name:?} is not a prefix name under {}", self.url),
            ));
        }
        let mut prefix = self.prefix.clone();
        for part in name.split('/') {
            prefix = prefix.clone().join(part);
        }
        Ok(RemoteStore {
            url: format!("{}/{name}", self.url),
            store: self.store.clone(),
            prefix,
        })
    }

    /// The client, for callers that read the same objects themselves (the SQL layer's
    /// object-store registry).
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// The prefix inside the bucket (empty for the bucket's root).
    pub fn prefix(&self) -> &str {
        self.prefix.as_ref()
    }

    /// The stores directly under this prefix: each child prefix that holds a manifest, in
    /// name order. This is how a [`View`] over a parent prefix finds its writers.
    pub fn writers(&self) -> Result<Vec<RemoteStore>> {
        let rt = runtime();
        let store = self.store.clone();
        let prefix = self.prefix.clone();
        let listed = block_on(&rt, async move {
            store
                .list_with_delimiter((!prefix.as_ref().is_empty()).then_some(&prefix))
                .await
        })
        .map_err(|e| Error::io("list", std::path::Path::new(&self.url), to_io(&self.url, e)))?;
        let mut out = Vec::new();
        for p in listed.common_prefixes {
            let Some(name) = p.filename() else { continue };
            let child = self.child(name)?;
            let store = child.store.clone();
            let cp = child.prefix.clone();
            let inner = block_on(
                &rt,
                async move { store.list_with_delimiter(Some(&cp)).await },
            )
            .map_err(|e| {
                Error::io(
                    "list",
                    std::path::Path::new(&child.url),
                    to_io(&child.url, e),
                )
            })?;
            if inner.objects.iter().any(|o| {
                o.location
                    .filename()
                    .is_some_and(|n| crate::manifest::parse_name(std::path::Path::new(n)).is_some())
            }) {
                out.push(child);
            }
        }
        Ok(out)
    }

    /// The object key of `rel` (a `/`-separated path relative to the store).
    pub(crate) fn key(&self, rel: &str) -> ObjPath {
        let mut k = self.prefix.clone();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            k = k.join(part);
        }
        k
    }

    /// How messages name the object of `rel`.
    pub(crate) fn object_url(&self, rel: &str) -> String {
        format!("{}/{rel}", self.url)
    }
}

/// The small runtime the engine drives its object-storage client on (the engine's own
/// threads are not async). Shut down in the background when the last user drops it, so
/// dropping a store inside an async context is safe.
#[derive(Debug)]
pub(crate) struct Runtime(Option<tokio::runtime::Runtime>);

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The process's one object-storage runtime (clients keep pooled connections on the
/// runtime that made them: one runtime for every store keeps them valid).
pub(crate) fn runtime() -> Arc<Runtime> {
    static RT: std::sync::OnceLock<Arc<Runtime>> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("scry-object-store")
            .enable_all()
            .build()
            .expect("the object-storage runtime starts");
        Arc::new(Runtime(Some(rt)))
    })
    .clone()
}

/// Runs `fut` on `rt` and waits for it from this (synchronous) thread. Safe to call from
/// inside another async runtime's worker: the future runs on `rt`'s threads, this one only
/// waits, like a blocking file read would.
pub(crate) fn block_on<F>(rt: &Runtime, fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.0.as_ref()
        .expect("runtime is running")
        .spawn(async move {
            let _ = tx.send(fut.await);
        });
    rx.recv()
        .expect("the object-storage runtime finishes what it starts")
}

/// An object-storage error as an I/O error that names the object: not found, already
/// exists (a failed conditional put) and refused preconditions keep their kinds.
pub(crate) fn to_io(url: &str, e: object_store::Error) -> std::io::Error {
    use std::io::{Error as IoError, ErrorKind};
    let kind = match &e {
        object_store::Error::NotFound { .. } => ErrorKind::NotFound,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
            ErrorKind::AlreadyExists
        }
        object_store::Error::NotImplemented { .. } => ErrorKind::Unsupported,
        _ => ErrorKind::Other,
    };
    IoError::new(kind, format!("{url}: {e}"))
}

//! [`RemoteFs`]: the [`FileSystem`] of a store whose shared files live in object storage.

use std::io::{self, ErrorKind};
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, PutMode, PutPayload};

use super::cache::Cache;
use super::{RemoteOptions, RemoteStore, Runtime, block_on, runtime, to_io};
use crate::io::{DirEntry, FileSystem, LockGuard, ReadableFile, StdFs, WritableFile};

/// Name of the lease object that marks a prefix's writer, and of the local lock file.
const LOCK: &str = "LOCK";
/// The local file binding a directory to its store (`docs/format.md` section 10).
const BINDING: &str = "REMOTE";
/// The local directory (under the store's directory) of the cache.
pub(crate) const CACHE_DIR: &str = "cache";

/// The [`FileSystem`] of a remote store: the log, the lock and the cache on local disk under
/// the store's directory, the manifest and the signal directories in object storage (module
/// documentation of [`crate::remote`]). Build one with [`RemoteFs::new`] and open the store
/// with [`crate::Db::open_remote`].
#[derive(Clone)]
pub struct RemoteFs {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    cache_dir: PathBuf,
    remote: RemoteStore,
    opts: RemoteOptions,
    cache: Arc<Cache>,
    rt: Arc<Runtime>,
    /// This directory's writer id (random, kept in the binding file): whose log a
    /// manifest counts in, and whose lease a restart may take back.
    writer: String,
    /// For the lease's body: where the writer runs.
    host: String,
    /// Objects uploaded since the last manifest commit: deleted when a commit is refused
    /// (they are this writer's, named by no manifest, and their ids would block the
    /// writer that won).
    uncommitted: std::sync::Mutex<Vec<String>>,
    /// A read-only handle beside a writer: uses the writer's cached files without taking
    /// them into its own account (so it never evicts them).
    borrows: bool,
}

impl std::fmt::Debug for RemoteFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteFs")
            .field("root", &self.inner.root)
            .field("remote", &self.inner.remote.url)
            .finish()
    }
}

/// Where a path lives.
enum Place {
    /// On local disk, as it is.
    Local,
    /// The store's directory itself: local entries plus the prefix's.
    Root,
    /// In object storage: the `/`-separated path relative to the store.
    Remote(String),
}

impl RemoteFs {
    /// The file system of the store whose local directory is `root` (created if missing)
    /// and whose shared files are under `remote`, for a writer or a reader. Files a previous
    /// run left in the cache are kept (they are whole); nothing remote is contacted yet.
    ///
    /// The directory is bound to `remote` by a small file (`REMOTE`: the store's URL and
    /// this directory's writer id) written on first use: a directory holds the log and the
    /// cache of one store only, and opening it for another store is refused.
    pub fn new(root: &Path, remote: RemoteStore, opts: RemoteOptions) -> io::Result<RemoteFs> {
        Self::open(root, remote, opts, true)
    }

    /// [`RemoteFs::new`] for a read-only handle: it uses the cache files it finds but does
    /// not adopt them, so its evictions never remove a writer's files, and it leaves
    /// incomplete files alone.
    pub fn new_read_only(
        root: &Path,
        remote: RemoteStore,
        opts: RemoteOptions,
    ) -> io::Result<RemoteFs> {
        Self::open(root, remote, opts, false)
    }

    fn open(
        root: &Path,
        remote: RemoteStore,
        opts: RemoteOptions,
        adopt: bool,
    ) -> io::Result<RemoteFs> {
        let cache_dir = root.join(CACHE_DIR);
        std::fs::create_dir_all(&cache_dir)?;
        let writer = bind(root, remote.url())?;
        let cache = Arc::new(Cache::new(opts.cache_bytes));
        if adopt {
            cache.adopt(&cache_dir);
        }
        let mut fs = Self::with_parts(root, remote, opts, cache, runtime());
        let inner = Arc::get_mut(&mut fs.inner).expect("not shared yet");
        inner.writer = writer;
        inner.borrows = !adopt;
        Ok(fs)
    }

    pub(crate) fn with_parts(
        root: &Path,
        remote: RemoteStore,
        opts: RemoteOptions,
        cache: Arc<Cache>,
        rt: Arc<Runtime>,
    ) -> RemoteFs {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "unknown-host".to_string());
        RemoteFs {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                cache_dir: root.join(CACHE_DIR),
                writer: String::new(),
                host,
                remote,
                opts,
                cache,
                rt,
                uncommitted: std::sync::Mutex::new(Vec::new()),
                borrows: false,
            }),
        }
    }

    /// The object-storage prefix.
    pub fn remote(&self) -> &RemoteStore {
        &self.inner.remote
    }

    /// Bytes in the local cache now.
    pub fn cached_bytes(&self) -> u64 {
        self.inner.cache.bytes()
    }

    fn place(&self, path: &Path) -> Place {
        let Ok(rel) = path.strip_prefix(&self.inner.root) else {
            return Place::Local;
        };
        let mut parts = Vec::new();
        for c in rel.components() {
            match c {
                Component::Normal(p) => match p.to_str() {
                    Some(s) => parts.push(s),
                    None => return Place::Local,
                },
                Component::CurDir => {}
                _ => return Place::Local,
            }
        }
        match parts.first() {
            None => Place::Root,
            Some(&first)
                if matches!(first, "spans" | "logs" | "metrics")
                    || (first.starts_with(crate::manifest::PREFIX) && parts.len() == 1) =>
            {
                Place::Remote(parts.join("/"))
            }
            Some(_) => Place::Local,
        }
    }

    fn cache_path(&self, rel: &str) -> PathBuf {
        self.inner.cache_dir.join(rel)
    }

    /// Whether the cache holds `local` (counted as a use).
    fn cached(&self, local: &Path) -> bool {
        self.inner.cache.hit(local) || (self.inner.borrows && local.is_file())
    }

    fn key(&self, rel: &str) -> ObjPath {
        self.inner.remote.key(rel)
    }

    fn url(&self, rel: &str) -> String {
        self.inner.remote.object_url(rel)
    }

    /// Runs `op` again (twice at most, after 0.2 s and 0.4 s) when it fails in transport —
    /// a timeout or a dropped connection the client did not retry itself. Not-found,
    /// already-exists and unsupported are answers, not failures. Safe for uploads too:
    /// they create names that do not exist yet, and a first attempt that landed reads
    /// back as the same bytes.
    fn retrying<T>(&self, mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        let mut wait = std::time::Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            match op() {
                Err(e)
                    if attempt < 3
                        && !matches!(
                            e.kind(),
                            ErrorKind::NotFound | ErrorKind::AlreadyExists | ErrorKind::Unsupported
                        ) =>
                {
                    log::debug!("retrying after {e}");
                    std::thread::sleep(wait);
                    wait *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn get(&self, rel: &str) -> io::Result<Bytes> {
        self.retrying(|| self.get_once(rel))
    }

    fn get_once(&self, rel: &str) -> io::Result<Bytes> {
        let (store, key, url) = (
            self.inner.remote.store.clone(),
            self.key(rel),
            self.url(rel),
        );
        block_on(&self.inner.rt, async move {
            match store.get(&key).await {
                Ok(r) => r.bytes().await.map_err(|e| to_io(&url, e)),
                Err(e) => Err(to_io(&url, e)),
            }
        })
    }

    fn head_size(&self, rel: &str) -> io::Result<u64> {
        self.retrying(|| self.head_once(rel))
    }

    fn head_once(&self, rel: &str) -> io::Result<u64> {
        let (store, key, url) = (
            self.inner.remote.store.clone(),
            self.key(rel),
            self.url(rel),
        );
        block_on(&self.inner.rt, async move {
            store
                .head(&key)
                .await
                .map(|m| m.size)
                .map_err(|e| to_io(&url, e))
        })
    }

    fn put(&self, rel: &str, bytes: Bytes, mode: PutMode) -> io::Result<()> {
        self.retrying(|| self.put_once(rel, bytes.clone(), mode.clone()))
    }

    fn put_once(&self, rel: &str, bytes: Bytes, mode: PutMode) -> io::Result<()> {
        let (store, key, url) = (
            self.inner.remote.store.clone(),
            self.key(rel),
            self.url(rel),
        );
        block_on(&self.inner.rt, async move {
            store
                .put_opts(&key, PutPayload::from(bytes), mode.into())
                .await
                .map(|_| ())
                .map_err(|e| to_io(&url, e))
        })
    }

    fn delete(&self, rel: &str) -> io::Result<()> {
        let (store, key, url) = (
            self.inner.remote.store.clone(),
            self.key(rel),
            self.url(rel),
        );
        block_on(&self.inner.rt, async move {
            store.delete(&key).await.map_err(|e| to_io(&url, e))
        })
    }

    /// Objects and sub-prefixes directly under `rel` ("" for the store's root).
    fn list(&self, rel: &str) -> io::Result<Vec<DirEntry>> {
        let store = self.inner.remote.store.clone();
        let key = self.key(rel);
        let url = self.url(rel);
        let listed = block_on(&self.inner.rt, async move {
            let prefix = (!key.as_ref().is_empty()).then_some(&key);
            store.list_with_delimiter(prefix).await
        })
        .map_err(|e| to_io(&url, e))?;
        let base = if rel.is_empty() {
            self.inner.root.clone()
        } else {
            self.inner.root.join(rel)
        };
        let mut out = Vec::new();
        for o in listed.objects {
            if let Some(name) = o.location.filename() {
                out.push(DirEntry {
                    path: base.join(name),
                    is_dir: false,
                });
            }
        }
        for p in listed.common_prefixes {
            if let Some(name) = p.filename() {
                out.push(DirEntry {
                    path: base.join(name),
                    is_dir: true,
                });
            }
        }
        Ok(out)
    }

    /// The whole object `rel`, kept in the cache when it fits.
    fn download(&self, rel: &str) -> io::Result<Bytes> {
        let bytes = self.get(rel)?;
        let local = self.cache_path(rel);
        if self.inner.cache.fits(bytes.len() as u64) {
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut name = local.as_os_str().to_owned();
            name.push(format!(".part-{}-{n}", std::process::id()));
            let part = PathBuf::from(name);
            let written = (|| {
                if let Some(dir) = local.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let mut f = std::fs::File::create(&part)?;
                std::io::Write::write_all(&mut f, &bytes)?;
                // Whole on disk before its name says so: the cache is adopted after a crash.
                f.sync_data()?;
                std::fs::rename(&part, &local)
            })();
            match written {
                Ok(()) => self.inner.cache.insert(&local, bytes.len() as u64),
                Err(e) => {
                    let _ = std::fs::remove_file(&part);
                    log::warn!("could not cache {}: {e}", local.display());
                }
            }
        }
        Ok(bytes)
    }

    /// Uploads the staged file `local` (already renamed to its final name) as `rel`.
    fn upload(&self, rel: &str, local: &Path) -> io::Result<()> {
        let bytes = Bytes::from(std::fs::read(local)?);
        let len = bytes.len() as u64;
        let done = if crate::manifest::parse_name(Path::new(rel)).is_some() {
            let done = self.commit_manifest(rel, bytes);
            let uploaded =
                std::mem::take(&mut *self.inner.uncommitted.lock().expect("uncommitted lock"));
            if matches!(&done, Err(e) if e.kind() == ErrorKind::AlreadyExists) {
                for o in uploaded {
                    self.inner.cache.remove(&self.cache_path(&o));
                    if let Err(e) = self.delete(&o) {
                        log::warn!("could not delete uncommitted {}: {e}", self.url(&o));
                    }
                }
            }
            done
        } else if rel.ends_with(".parquet") {
            self.create_object(rel, bytes)
        } else {
            // A side file (index, rollups, patterns) is derived from its segment, which was
            // created first under a name no other writer had; rebuilding one
            // (`rebuild_indexes`) replaces it.
            self.put(rel, bytes, PutMode::Overwrite)
        };
        if done.is_ok() && crate::manifest::parse_name(Path::new(rel)).is_none() {
            self.inner
                .uncommitted
                .lock()
                .expect("uncommitted lock")
                .push(rel.to_string());
        }
        match done {
            Ok(()) if self.inner.cache.fits(len) => {
                self.inner.cache.insert(local, len);
                Ok(())
            }
            Ok(()) => {
                let _ = std::fs::remove_file(local);
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(local);
                Err(e)
            }
        }
    }

    /// Uploads a segment under a name no object has: segment ids are unique
    /// in a store, so an existing object of that name is another writer's — overwriting it
    /// could destroy rows that writer committed; the upload fails instead. (Leftovers of an
    /// unfinished flush are deleted at open before their ids are used again.)
    fn create_object(&self, rel: &str, bytes: Bytes) -> io::Result<()> {
        match self.put(rel, bytes.clone(), PutMode::Create) {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                // A retried request whose first attempt landed reads back as our bytes.
                if self.get(rel)? == bytes {
                    return Ok(());
                }
                Err(io::Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "{} already exists with other content: another writer is writing to \
                         {}. ScryDB allows one writer per prefix: this upload is refused and \
                         its rows stay in the local log",
                        self.url(rel),
                        self.inner.remote.url
                    ),
                ))
            }
            other => other,
        }
    }

    /// Publishes manifest `rel`: created only if no object has its name, and then only
    /// valid if no newer manifest exists — either means another writer commits to this
    /// prefix, and the commit fails (the engine keeps the rows in its log).
    fn commit_manifest(&self, rel: &str, bytes: Bytes) -> io::Result<()> {
        let version = crate::manifest::parse_name(Path::new(rel)).unwrap_or(0);
        let conflict = |why: String| {
            io::Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "{}: {why}; another writer is committing to {}. ScryDB allows one \
                     writer per prefix: this commit is refused and its rows stay in the local \
                     log",
                    self.url(rel),
                    self.inner.remote.url
                ),
            )
        };
        match self.put(rel, bytes.clone(), PutMode::Create) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                // A retried request whose first attempt landed reads back as our own bytes.
                if self.get(rel)? != bytes {
                    return Err(conflict(format!(
                        "manifest version {version} already exists"
                    )));
                }
            }
            Err(e) => return Err(e),
        }
        let newer = self
            .list("")?
            .into_iter()
            .filter_map(|e| crate::manifest::parse_name(&e.path))
            .filter(|&v| v > version)
            .max();
        if let Some(v) = newer {
            let _ = self.delete(rel);
            return Err(conflict(format!("a newer manifest version {v} exists")));
        }
        Ok(())
    }

    /// Takes the prefix's writer lease (see the module documentation).
    fn lease(&self) -> io::Result<Lease> {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let body = serde_json::json!({
            "writer": self.inner.writer,
            "host": self.inner.host,
            "dir": self.inner.root.display().to_string(),
            "pid": std::process::id(),
            "since_unix_s": since,
        })
        .to_string();
        let body = Bytes::from(body);
        match self.put(LOCK, body.clone(), PutMode::Create) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let held = self.get(LOCK).unwrap_or_default();
                let holder: Option<String> = serde_json::from_slice::<serde_json::Value>(&held)
                    .ok()
                    .and_then(|v| v.get("writer")?.as_str().map(str::to_string));
                let text = String::from_utf8_lossy(&held).trim().to_string();
                if holder.as_deref() == Some(self.inner.writer.as_str()) {
                    log::info!(
                        "{}: taking back this directory's own writer lease (a previous run \
                         did not close)",
                        self.url(LOCK)
                    );
                } else if self.inner.opts.take_over {
                    log::warn!(
                        "{}: taking over the writer lease held by {text}",
                        self.url(LOCK)
                    );
                } else {
                    return Err(io::Error::other(format!(
                        "{} is held by another writer ({text}); ScryDB allows one writer per \
                         prefix. Give each writer its own prefix, or if that writer is gone \
                         for good, open with RemoteOptions::take_over (`--take-over`)",
                        self.url(LOCK)
                    )));
                }
                self.put(LOCK, body.clone(), PutMode::Overwrite)?;
            }
            Err(e) => return Err(e),
        }
        Ok(Lease {
            fs: self.clone(),
            body,
        })
    }
}

/// A random 128-bit id in hex.
fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    for i in 0..2u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.write_u32(std::process::id());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

/// Binds `root` to the store at `url` (creating the binding on first use) and returns the
/// directory's writer id; a directory bound to another store is refused.
fn bind(root: &Path, url: &str) -> io::Result<String> {
    let path = root.join(BINDING);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(
                    ErrorKind::InvalidData,
                    format!("{}: not a store binding: {e}", path.display()),
                )
            })?;
            let bound = v.get("url").and_then(|u| u.as_str()).unwrap_or_default();
            let writer = v.get("writer").and_then(|w| w.as_str()).unwrap_or_default();
            if bound != url {
                return Err(io::Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "{} holds the log and cache of {bound}, not {url}: give each store \
                         its own local directory",
                        root.display()
                    ),
                ));
            }
            if writer.is_empty() {
                return Err(io::Error::new(
                    ErrorKind::InvalidData,
                    format!("{}: no writer id", path.display()),
                ));
            }
            Ok(writer.to_string())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let writer = random_id();
            let body = serde_json::json!({ "url": url, "writer": writer }).to_string();
            crate::io::write_durably(&StdFs, &path, body.as_bytes())
                .map_err(|e| io::Error::other(e.to_string()))?;
            if let Some(dir) = path.parent() {
                StdFs.sync_dir(dir)?;
            }
            Ok(writer)
        }
        Err(e) => Err(e),
    }
}

/// The held writer lease; deleting the object releases it.
struct Lease {
    fs: RemoteFs,
    /// What this writer put: a lease another writer took over is not ours to delete.
    body: Bytes,
}

impl Drop for Lease {
    fn drop(&mut self) {
        match self.fs.get_once(LOCK) {
            Ok(b) if b == self.body => {}
            Ok(_) => {
                log::warn!(
                    "{}: the writer lease was taken over by another writer; leaving it",
                    self.fs.url(LOCK)
                );
                return;
            }
            Err(e) if e.kind() == ErrorKind::NotFound => return,
            Err(_) => {}
        }
        if let Err(e) = self.fs.delete(LOCK) {
            log::warn!(
                "could not release the writer lease {}: {e} (the next writer from this \
                 directory takes it back; another needs take_over)",
                self.fs.url(LOCK)
            );
        }
    }
}

/// Least bytes one ranged GET asks for: readers read a segment in many small pieces
/// (page headers, 64 KiB checksum blocks), mostly forward.
const READ_AHEAD: u64 = 4 << 20;
/// Read-ahead chunks a [`RemoteFile`] keeps.
const CHUNKS: usize = 4;

/// A remote object read by ranged GETs of at least [`READ_AHEAD`] bytes, the last few kept.
struct RemoteFile {
    fs: RemoteFs,
    rel: String,
    len: u64,
    chunks: std::sync::Mutex<std::collections::VecDeque<(u64, Bytes)>>,
}

impl std::fmt::Debug for RemoteFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteFile({})", self.fs.url(&self.rel))
    }
}

impl ReadableFile for RemoteFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, range: Range<u64>) -> io::Result<Bytes> {
        if range.start > range.end || range.end > self.len {
            return Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                format!(
                    "read of bytes {range:?} of the {}-byte object {}",
                    self.len,
                    self.fs.url(&self.rel)
                ),
            ));
        }
        if range.start == range.end {
            return Ok(Bytes::new());
        }
        {
            let chunks = self.chunks.lock().expect("chunks lock");
            if let Some((at, b)) = chunks
                .iter()
                .find(|(at, b)| *at <= range.start && range.end <= at + b.len() as u64)
            {
                return Ok(b.slice((range.start - at) as usize..(range.end - at) as usize));
            }
        }
        let asked = range.clone();
        let range = range.start..range.end.max(range.start + READ_AHEAD).min(self.len);
        let inner = &self.fs.inner;
        let want = range.end - range.start;
        let got = self.fs.retrying(|| {
            let (store, key, url) = (
                inner.remote.store.clone(),
                self.fs.key(&self.rel),
                self.fs.url(&self.rel),
            );
            let range = range.clone();
            block_on(&inner.rt, async move {
                store
                    .get_range(&key, range)
                    .await
                    .map_err(|e| to_io(&url, e))
            })
        })?;
        if got.len() as u64 != want {
            return Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                format!(
                    "{}: asked for {want} bytes, got {}",
                    self.fs.url(&self.rel),
                    got.len()
                ),
            ));
        }
        let out =
            got.slice((asked.start - range.start) as usize..(asked.end - range.start) as usize);
        let mut chunks = self.chunks.lock().expect("chunks lock");
        if chunks.len() == CHUNKS {
            chunks.pop_front();
        }
        chunks.push_back((range.start, got));
        Ok(out)
    }
}

/// A whole file held in memory.
#[derive(Debug)]
struct MemFile(Bytes);

impl ReadableFile for MemFile {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_at(&self, range: Range<u64>) -> io::Result<Bytes> {
        if range.start > range.end || range.end > self.len() {
            return Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                format!("read of bytes {range:?} of a {}-byte file", self.len()),
            ));
        }
        Ok(self.0.slice(range.start as usize..range.end as usize))
    }
}

fn unsupported(what: &str, path: &Path) -> io::Error {
    io::Error::new(
        ErrorKind::Unsupported,
        format!(
            "{what} {} is not supported on object storage",
            path.display()
        ),
    )
}

impl FileSystem for RemoteFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        match self.place(path) {
            Place::Remote(_) => Ok(()),
            _ => StdFs.create_dir_all(path),
        }
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        match self.place(path) {
            Place::Remote(rel) if rel.ends_with(".tmp") => {
                let local = self.cache_path(&rel);
                if let Some(dir) = local.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                StdFs.create(&local)
            }
            Place::Remote(_) => Err(unsupported(
                "writing in place (not through a temporary name)",
                path,
            )),
            _ => StdFs.create(path),
        }
    }

    fn read(&self, path: &Path) -> io::Result<Bytes> {
        match self.place(path) {
            Place::Remote(rel) => {
                let local = self.cache_path(&rel);
                if self.cached(&local)
                    && let Ok(b) = std::fs::read(&local)
                {
                    return Ok(Bytes::from(b));
                }
                if crate::manifest::parse_name(Path::new(&rel)).is_some() {
                    return self.get(&rel);
                }
                // Side files are read whole: keep them.
                self.download(&rel)
            }
            _ => StdFs.read(path),
        }
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>> {
        let Place::Remote(rel) = self.place(path) else {
            return StdFs.open_read(path);
        };
        let local = self.cache_path(&rel);
        if self.cached(&local)
            && let Ok(f) = StdFs.open_read(&local)
        {
            return Ok(f);
        }
        let len = self.head_size(&rel)?;
        if self.inner.cache.fits(len) && self.inner.cache.opened_again(&local) {
            return Ok(Arc::new(MemFile(self.download(&rel)?)));
        }
        Ok(Arc::new(RemoteFile {
            fs: self.clone(),
            rel,
            len,
            chunks: Default::default(),
        }))
    }

    fn map(&self, path: &Path) -> io::Result<Bytes> {
        let Place::Remote(rel) = self.place(path) else {
            return StdFs.map(path);
        };
        let local = self.cache_path(&rel);
        if self.cached(&local)
            && let Ok(b) = StdFs.map(&local)
        {
            return Ok(b);
        }
        self.download(&rel)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        match (self.place(from), self.place(to)) {
            (Place::Remote(f), Place::Remote(t)) => {
                let (lf, lt) = (self.cache_path(&f), self.cache_path(&t));
                std::fs::rename(&lf, &lt)?;
                self.upload(&t, &lt)
            }
            (Place::Remote(_), _) | (_, Place::Remote(_)) => {
                Err(unsupported("renaming across local disk and", from))
            }
            _ => StdFs.rename(from, to),
        }
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        match self.place(path) {
            Place::Remote(rel) if rel.ends_with(".tmp") => {
                std::fs::remove_file(self.cache_path(&rel))
            }
            Place::Remote(rel) => {
                self.delete(&rel)?;
                self.inner.cache.remove(&self.cache_path(&rel));
                Ok(())
            }
            _ => StdFs.remove_file(path),
        }
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        match self.place(path) {
            // Prefixes exist only while objects do.
            Place::Remote(rel) => {
                let _ = std::fs::remove_dir(self.cache_path(&rel));
                Ok(())
            }
            _ => StdFs.remove_dir(path),
        }
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let mut out = match self.place(path) {
            Place::Local => return StdFs.read_dir(path),
            Place::Root => {
                let mut out = self.list("")?;
                for e in StdFs.read_dir(path)? {
                    let name = e.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    if name != CACHE_DIR && !out.iter().any(|o| o.path == e.path) {
                        out.push(e);
                    }
                }
                out
            }
            Place::Remote(rel) => self.list(&rel)?,
        };
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        match self.place(path) {
            // An upload is durable when it returns.
            Place::Remote(_) => Ok(()),
            _ => StdFs.sync_dir(path),
        }
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        match self.place(path) {
            Place::Remote(_) => Err(unsupported("truncating", path)),
            _ => StdFs.truncate(path, len),
        }
    }

    fn file_size(&self, path: &Path) -> io::Result<u64> {
        match self.place(path) {
            Place::Remote(rel) => {
                let local = self.cache_path(&rel);
                if self.cached(&local)
                    && let Ok(m) = std::fs::metadata(&local)
                {
                    return Ok(m.len());
                }
                self.head_size(&rel)
            }
            _ => StdFs.file_size(path),
        }
    }

    fn wal_owner(&self) -> Option<String> {
        Some(self.inner.writer.clone())
    }

    fn object_url(&self, path: &Path) -> Option<String> {
        match self.place(path) {
            Place::Remote(rel) => Some(self.url(&rel)),
            _ => None,
        }
    }

    fn remote_stores(&self) -> Option<Vec<String>> {
        Some(vec![self.inner.remote.url.clone()])
    }

    fn try_lock(&self, path: &Path) -> io::Result<LockGuard> {
        let local = StdFs.try_lock(path)?;
        if path == self.inner.root.join(LOCK) {
            // Under the lock nobody else writes the cache: a crash's leftovers can go.
            Cache::remove_incomplete(&self.inner.cache_dir);
            let lease = self.lease()?;
            // Fields drop in order: the lease is released before the local lock, so a
            // restart in this directory never sees its lease deleted after taking it.
            return Ok(Box::new((lease, local)));
        }
        Ok(local)
    }
}

//! [`View`]: several stores read as one — one prefix per writer, or every writer under a
//! parent prefix — through [`ViewFs`], a read-only [`FileSystem`] that presents them as one
//! store directory to the unchanged engine.
//!
//! The view's manifest is made on every listing from the members' current manifests: its
//! version is the sum of theirs (so it grows whenever any member commits, and a new member
//! makes it grow too), and each member's segments appear with the id `id × 4096 + member`
//! under the same `<signal>/<partition>/` path. File names carry the id, so every read of
//! a segment or side file goes straight to its member. Time pruning, the trace index, term
//! indexes and rollups all work per segment as in one store; nothing is copied.

use std::io::{self, ErrorKind};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::cache::Cache;
use super::{RemoteFs, RemoteOptions, RemoteStore, Runtime, runtime};
use crate::io::{DirEntry, FileSystem, LockGuard, ReadableFile, StdFs, WritableFile};
use crate::manifest::{self, Manifest, SegmentMeta};
use crate::{Error, Result};

/// Most stores one view reads.
pub const MAX_MEMBERS: usize = 4096;
const STRIDE: u64 = MAX_MEMBERS as u64;

/// The stores a view reads.
#[derive(Debug, Clone, Default)]
pub struct View {
    members: Vec<Member>,
    parents: Vec<RemoteStore>,
}

#[derive(Debug, Clone)]
enum Member {
    Local(PathBuf),
    Remote(RemoteStore),
}

impl View {
    /// A view of no store yet.
    pub fn new() -> View {
        View::default()
    }

    /// Adds the store at the local directory `dir`.
    pub fn local(mut self, dir: impl Into<PathBuf>) -> View {
        self.members.push(Member::Local(dir.into()));
        self
    }

    /// Adds the store at `store`'s prefix.
    pub fn remote(mut self, store: RemoteStore) -> View {
        self.members.push(Member::Remote(store));
        self
    }

    /// Adds every store directly under `parent` (each child prefix holding a manifest),
    /// listed again on every refresh, so writers that start later join the view.
    pub fn writers_under(mut self, parent: RemoteStore) -> View {
        self.parents.push(parent);
        self
    }

    /// Whether the view names no store and no parent.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.parents.is_empty()
    }
}

/// One member store as the view reaches it.
struct MemberFs {
    /// How messages and the cache name it.
    name: String,
    fs: Arc<dyn FileSystem>,
    root: PathBuf,
}

/// The read-only file system of a [`View`]; open it with [`crate::Db::open_view`].
pub struct ViewFs {
    root: PathBuf,
    parents: Vec<RemoteStore>,
    opts: RemoteOptions,
    cache: Arc<Cache>,
    rt: Arc<Runtime>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    members: Vec<Arc<MemberFs>>,
    /// The last listing: the view's version and each member's manifest version.
    last: Option<(u64, Vec<Option<u64>>)>,
}

impl std::fmt::Debug for ViewFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .state
            .lock()
            .map(|s| s.members.iter().map(|m| m.name.clone()).collect())
            .unwrap_or_default();
        f.debug_struct("ViewFs")
            .field("root", &self.root)
            .field("members", &names)
            .finish()
    }
}

/// A directory name for a member's cache that stays the same across runs.
fn cache_name(url: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in url.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let tail: String = url
        .chars()
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{tail}-{h:016x}")
}

fn read_only(path: &Path) -> io::Error {
    io::Error::new(
        ErrorKind::PermissionDenied,
        format!("{}: a view of several stores is read-only", path.display()),
    )
}

impl ViewFs {
    /// The file system of `view`, with `root` as the view's local directory (it holds the
    /// members' caches).
    pub fn new(root: &Path, view: &View, opts: RemoteOptions) -> Result<ViewFs> {
        let members_dir = root.join("members");
        std::fs::create_dir_all(&members_dir).map_err(|e| Error::io("create", &members_dir, e))?;
        let cache = Arc::new(Cache::new(opts.cache_bytes));
        cache.adopt(&members_dir);
        let fs = ViewFs {
            root: root.to_path_buf(),
            parents: view.parents.clone(),
            opts,
            cache,
            rt: runtime(),
            state: Mutex::new(State::default()),
        };
        {
            let mut st = fs.state.lock().expect("view lock");
            for m in &view.members {
                fs.add(&mut st, m)?;
            }
        }
        fs.discover().map_err(|e| Error::io("list", root, e))?;
        Ok(fs)
    }

    fn add(&self, st: &mut State, m: &Member) -> Result<()> {
        let name = match m {
            Member::Local(d) => d.display().to_string(),
            Member::Remote(r) => r.url().to_string(),
        };
        if st.members.iter().any(|x| x.name == name) {
            return Ok(());
        }
        if st.members.len() >= MAX_MEMBERS {
            return Err(Error::invalid_option(
                "view",
                format!("a view reads at most {MAX_MEMBERS} stores; {name} would be one more"),
            ));
        }
        let member = match m {
            Member::Local(d) => MemberFs {
                name,
                fs: Arc::new(StdFs),
                root: d.clone(),
            },
            Member::Remote(r) => {
                let root = self.root.join("members").join(cache_name(r.url()));
                MemberFs {
                    name,
                    fs: Arc::new(RemoteFs::with_parts(
                        &root,
                        r.clone(),
                        self.opts.clone(),
                        self.cache.clone(),
                        self.rt.clone(),
                    )),
                    root,
                }
            }
        };
        st.members.push(Arc::new(member));
        Ok(())
    }

    /// Adds the writers that appeared under the parent prefixes.
    fn discover(&self) -> io::Result<()> {
        for parent in &self.parents {
            let found = parent.writers().map_err(io::Error::other)?;
            let mut st = self.state.lock().expect("view lock");
            for w in found {
                self.add(&mut st, &Member::Remote(w))
                    .map_err(io::Error::other)?;
            }
        }
        Ok(())
    }

    /// The stores the view reads now, by how messages name them.
    pub fn members(&self) -> Vec<String> {
        let st = self.state.lock().expect("view lock");
        st.members.iter().map(|m| m.name.clone()).collect()
    }

    fn members_now(&self) -> Vec<Arc<MemberFs>> {
        self.state.lock().expect("view lock").members.clone()
    }

    /// The newest manifest version of one member (`None`: it has none yet).
    fn member_version(m: &MemberFs) -> io::Result<Option<u64>> {
        Ok(m.fs
            .read_dir(&m.root)?
            .iter()
            .filter_map(|e| manifest::parse_name(&e.path))
            .max())
    }

    /// Lists every member: the view's version and theirs.
    fn list(&self) -> io::Result<(u64, Vec<Option<u64>>)> {
        self.discover()?;
        let members = self.members_now();
        let mut versions = Vec::with_capacity(members.len());
        for m in &members {
            versions.push(
                Self::member_version(m)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", m.name)))?,
            );
        }
        let total = versions.iter().flatten().sum();
        self.state.lock().expect("view lock").last = Some((total, versions.clone()));
        Ok((total, versions))
    }

    /// The view's manifest `version`: the members' manifests of the listing that produced
    /// it (newer ones for a member that moved on since; members only move forward).
    fn manifest(&self, version: u64) -> io::Result<Bytes> {
        let last = self.state.lock().expect("view lock").last.clone();
        let versions = match last {
            Some((v, vs)) if v == version => vs,
            _ => self.list()?.1,
        };
        let members = self.members_now();
        let mut out = Manifest {
            version,
            next_segment_id: 1,
            wal_replay_from: 1,
            segments: Vec::new(),
            wal_owner: None,
        };
        for (idx, (m, v)) in members.iter().zip(versions).enumerate() {
            let Some(mut v) = v else { continue };
            let mut attempts = 0;
            let m_manifest = loop {
                let path = manifest::file_path(&m.root, v);
                match m.fs.read(&path) {
                    Ok(bytes) => {
                        break manifest::decode(&path, &bytes).map_err(io::Error::other)?;
                    }
                    // Its writer replaced it since the listing: read the newer one.
                    Err(e) if e.kind() == ErrorKind::NotFound && attempts < 8 => {
                        attempts += 1;
                        v = Self::member_version(m)?.unwrap_or(v);
                    }
                    Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", m.name))),
                }
            };
            for seg in &m_manifest.segments {
                let vid = seg
                    .id
                    .checked_mul(STRIDE)
                    .and_then(|x| x.checked_add(idx as u64))
                    .ok_or_else(|| {
                        io::Error::other(format!("{}: segment id {} is too large", m.name, seg.id))
                    })?;
                let partition = seg.path.split('/').nth(1).unwrap_or_default();
                let mut s: SegmentMeta = seg.as_ref().clone();
                s.id = vid;
                s.path = format!("{}/{partition}/{vid:020}.parquet", seg.signal.name());
                out.next_segment_id = out.next_segment_id.max(vid + 1);
                out.segments.push(Arc::new(s));
            }
        }
        Ok(Bytes::from(manifest::encode(&out)))
    }

    /// The member and its path behind the view's `path`, if it names a segment file.
    fn route(&self, path: &Path) -> io::Result<(Arc<MemberFs>, PathBuf)> {
        let not_found = || {
            io::Error::new(
                ErrorKind::NotFound,
                format!("{}: no such file in the view", path.display()),
            )
        };
        let rel = path.strip_prefix(&self.root).map_err(|_| not_found())?;
        let parts: Vec<&str> = rel
            .components()
            .map(|c| match c {
                Component::Normal(p) => p.to_str().unwrap_or(""),
                _ => "",
            })
            .collect();
        let [signal, partition, file] = parts[..] else {
            return Err(not_found());
        };
        if file.len() < 20 || !file.as_bytes()[..20].iter().all(u8::is_ascii_digit) {
            return Err(not_found());
        }
        let vid: u64 = file[..20].parse().map_err(|_| not_found())?;
        let idx = (vid % STRIDE) as usize;
        let members = self.members_now();
        let m = members.get(idx).cloned().ok_or_else(not_found)?;
        let target = m.root.join(signal).join(partition).join(format!(
            "{:020}{}",
            vid / STRIDE,
            &file[20..]
        ));
        Ok((m, target))
    }
}

impl FileSystem for ViewFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        if path == self.root {
            return Ok(());
        }
        Err(read_only(path))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        Err(read_only(path))
    }

    fn read(&self, path: &Path) -> io::Result<Bytes> {
        if path.parent() == Some(self.root.as_path())
            && let Some(v) = manifest::parse_name(path)
        {
            return self.manifest(v);
        }
        let (m, p) = self.route(path)?;
        m.fs.read(&p)
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>> {
        let (m, p) = self.route(path)?;
        m.fs.open_read(&p)
    }

    fn map(&self, path: &Path) -> io::Result<Bytes> {
        let (m, p) = self.route(path)?;
        m.fs.map(&p)
    }

    fn rename(&self, from: &Path, _to: &Path) -> io::Result<()> {
        Err(read_only(from))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        Err(read_only(path))
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        Err(read_only(path))
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        if path != self.root {
            // The log (empty: a view reads what its members committed) and the signal
            // directories (segments are reached through the manifest).
            return Ok(Vec::new());
        }
        let (version, _) = self.list()?;
        let mut out = Vec::new();
        if version > 0 {
            out.push(DirEntry {
                path: manifest::file_path(&self.root, version),
                is_dir: false,
            });
        }
        Ok(out)
    }

    fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }

    fn truncate(&self, path: &Path, _len: u64) -> io::Result<()> {
        Err(read_only(path))
    }

    fn file_size(&self, path: &Path) -> io::Result<u64> {
        let (m, p) = self.route(path)?;
        m.fs.file_size(&p)
    }

    fn try_lock(&self, path: &Path) -> io::Result<LockGuard> {
        Err(read_only(path))
    }

    fn object_url(&self, path: &Path) -> Option<String> {
        let (m, p) = self.route(path).ok()?;
        m.fs.object_url(&p)
    }

    fn remote_stores(&self) -> Option<Vec<String>> {
        let mut out = Vec::new();
        for m in self.members_now() {
            out.extend(m.fs.remote_stores()?);
        }
        Some(out)
    }
}

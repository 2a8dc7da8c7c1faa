//! A file system double that knows what a power cut would leave: [`PowerCutFs`].
//!
//! It passes every operation to the real file system below (so the running database sees
//! its writes as usual) and keeps, beside it, the *durable image*: what the disk would hold
//! if power were cut now, under the rules POSIX promises and no more:
//!
//! - a file's bytes are durable up to its last `sync_data` (an `fdatasync`); bytes written
//!   after it are lost;
//! - a directory entry — a file or directory created, renamed in or removed — is durable
//!   only once its directory was synced (`sync_dir`); until then the old entry stands (a
//!   renamed file is found under its old name, a removed file comes back, a created one is
//!   missing);
//! - a file is in the image only if every directory above it (below the root) is;
//! - `truncate` is durable at once (the trait promises it).
//!
//! [`PowerCutFs::cut`] writes the durable image into another directory, taken atomically
//! with respect to every operation, while the database keeps running: opening that copy is
//! opening the store after a power cut at that instant. `kill -9` cannot test this: after a
//! process crash the kernel still writes everything back.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::{DirEntry, FileSystem, LockGuard, ReadableFile, WritableFile};

/// A file's content: everything written (`now`) and what the last sync made durable.
#[derive(Debug, Default, Clone)]
struct Inode {
    now: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    inodes: Vec<Inode>,
    /// Directory entries as the running system sees them.
    files: HashMap<PathBuf, usize>,
    dirs: HashSet<PathBuf>,
    /// Directory entries as the disk holds them.
    durable_files: HashMap<PathBuf, usize>,
    durable_dirs: HashSet<PathBuf>,
}

/// See the module docs. Cloning shares the state.
#[derive(Debug, Clone)]
pub struct PowerCutFs {
    inner: Arc<dyn FileSystem>,
    root: PathBuf,
    state: Arc<Mutex<State>>,
}

impl PowerCutFs {
    /// Wraps `inner` for the tree under `root` (which must exist); everything already there
    /// counts as durable. Paths outside `root` pass through untracked.
    pub fn new(inner: Arc<dyn FileSystem>, root: &Path) -> io::Result<Self> {
        let mut state = State::default();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in inner.read_dir(&dir)? {
                if e.is_dir {
                    state.dirs.insert(e.path.clone());
                    state.durable_dirs.insert(e.path.clone());
                    stack.push(e.path);
                } else {
                    let bytes = inner.read(&e.path)?.to_vec();
                    let id = state.inodes.len();
                    state.inodes.push(Inode {
                        now: bytes.clone(),
                        durable: bytes,
                    });
                    state.files.insert(e.path.clone(), id);
                    state.durable_files.insert(e.path, id);
                }
            }
        }
        Ok(PowerCutFs {
            inner,
            root: root.to_path_buf(),
            state: Arc::new(Mutex::new(state)),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tracked(&self, path: &Path) -> bool {
        path.starts_with(&self.root) && path != self.root
    }

    /// Writes what the disk would hold after a power cut now into `target` (created; it
    /// must not exist), with the same layout below it as below the root. The database may
    /// keep running meanwhile: the image is taken under the lock every operation takes.
    pub fn cut(&self, target: &Path) -> io::Result<()> {
        let state = self.state();
        std::fs::create_dir_all(target)?;
        let within = |p: &Path| -> Option<PathBuf> {
            p.strip_prefix(&self.root).ok().map(|rel| target.join(rel))
        };
        let ancestors_durable = |p: &Path| {
            p.ancestors()
                .skip(1)
                .take_while(|a| *a != self.root)
                .all(|a| state.durable_dirs.contains(a))
        };
        let mut dirs: Vec<&PathBuf> = state
            .durable_dirs
            .iter()
            .filter(|d| ancestors_durable(d))
            .collect();
        dirs.sort();
        for d in dirs {
            if let Some(t) = within(d) {
                std::fs::create_dir_all(t)?;
            }
        }
        for (path, id) in &state.durable_files {
            if !ancestors_durable(path) {
                continue;
            }
            if let Some(t) = within(path) {
                std::fs::write(t, &state.inodes[*id].durable)?;
            }
        }
        Ok(())
    }
}

struct PowerCutFile {
    inner: Box<dyn WritableFile>,
    state: Arc<Mutex<State>>,
    inode: usize,
}

impl Write for PowerCutFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let n = self.inner.write(buf)?;
        state.inodes[self.inode].now.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl WritableFile for PowerCutFile {
    fn sync_data(&mut self) -> io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.inner.sync_data()?;
        let inode = &mut state.inodes[self.inode];
        inode.durable = inode.now.clone();
        Ok(())
    }
}

impl FileSystem for PowerCutFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        self.inner.create_dir_all(path)?;
        for a in path.ancestors() {
            if !self.tracked(a) {
                break;
            }
            state.dirs.insert(a.to_path_buf());
        }
        Ok(())
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let mut state = self.state();
        let inner = self.inner.create(path)?;
        if !self.tracked(path) {
            return Ok(inner);
        }
        // A new, empty file (an existing name now points to a new inode: its durable entry
        // keeps pointing at the old one until the directory is synced).
        let id = state.inodes.len();
        state.inodes.push(Inode::default());
        state.files.insert(path.to_path_buf(), id);
        Ok(Box::new(PowerCutFile {
            inner,
            state: self.state.clone(),
            inode: id,
        }))
    }

    fn read(&self, path: &Path) -> io::Result<Bytes> {
        let _state = self.state();
        self.inner.read(path)
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>> {
        let _state = self.state();
        self.inner.open_read(path)
    }

    fn map(&self, path: &Path) -> io::Result<Bytes> {
        let _state = self.state();
        self.inner.map(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state();
        self.inner.rename(from, to)?;
        if let Some(id) = state.files.remove(from) {
            state.files.insert(to.to_path_buf(), id);
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        self.inner.remove_file(path)?;
        state.files.remove(path);
        Ok(())
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        self.inner.remove_dir(path)?;
        state.dirs.remove(path);
        Ok(())
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let _state = self.state();
        self.inner.read_dir(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        self.inner.sync_dir(path)?;
        let State {
            files,
            dirs,
            durable_files,
            durable_dirs,
            ..
        } = &mut *state;
        let child = |p: &Path| p.parent() == Some(path);
        durable_files.retain(|p, _| !child(p));
        for (p, id) in files.iter() {
            if child(p) {
                durable_files.insert(p.clone(), *id);
            }
        }
        durable_dirs.retain(|p| !child(p));
        for d in dirs.iter() {
            if child(d) {
                durable_dirs.insert(d.clone());
            }
        }
        Ok(())
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut state = self.state();
        self.inner.truncate(path, len)?;
        if let Some(id) = state.files.get(path).copied() {
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            let inode = &mut state.inodes[id];
            inode.now.truncate(len);
            inode.durable.truncate(len);
        }
        Ok(())
    }

    fn file_size(&self, path: &Path) -> io::Result<u64> {
        let _state = self.state();
        self.inner.file_size(path)
    }

    fn try_lock(&self, path: &Path) -> io::Result<LockGuard> {
        self.inner.try_lock(path)
    }
}

//! The bounded local cache of remote files: whole files under the store's `cache/`
//! directory, least recently used out first.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Files in the cache by local path, with their sizes and last use.
#[derive(Debug)]
pub(crate) struct Cache {
    budget: u64,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    files: HashMap<PathBuf, Entry>,
    total: u64,
    tick: u64,
    /// How often each uncached file was opened: a second open downloads it.
    opens: HashMap<PathBuf, u32>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    size: u64,
    last: u64,
}

impl Cache {
    /// An empty cache of at most `budget` bytes.
    pub fn new(budget: u64) -> Cache {
        Cache {
            budget,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Registers the files a previous run left under `dir` (they are whole: downloads and
    /// staged writes only get their final name when complete, after an fsync). Incomplete
    /// ones (`.tmp`, `.part`) are skipped, not removed: a writer of the same directory may
    /// be writing them now ([`remove_incomplete`] is for the writer, under its lock).
    pub fn adopt(&self, dir: &Path) {
        walk(dir, &mut |path, len| {
            if !is_incomplete(path) {
                self.insert(path, len);
            }
        });
    }

    /// Removes the incomplete files a crashed run left under `dir`; only for the holder of
    /// the store's lock (nobody else writes there).
    pub fn remove_incomplete(dir: &Path) {
        walk(dir, &mut |path, _| {
            if is_incomplete(path) {
                let _ = std::fs::remove_file(path);
            }
        });
    }

    /// Whether `path` is cached; counts as a use.
    pub fn hit(&self, path: &Path) -> bool {
        let mut g = self.inner.lock().expect("cache lock");
        g.tick += 1;
        let tick = g.tick;
        match g.files.get_mut(path) {
            Some(e) => {
                e.last = tick;
                true
            }
            None => false,
        }
    }

    /// Counts an open of the uncached `path`; true from the second on (download it).
    pub fn opened_again(&self, path: &Path) -> bool {
        let mut g = self.inner.lock().expect("cache lock");
        // Bounded: forgetting the counts only delays a download.
        if g.opens.len() >= 100_000 {
            g.opens.clear();
        }
        let n = g.opens.entry(path.to_path_buf()).or_insert(0);
        *n += 1;
        *n >= 2
    }

    /// Whether a file of `size` bytes may be cached at all.
    pub fn fits(&self, size: u64) -> bool {
        size <= self.budget
    }

    /// Records that `path` (already on disk) is in the cache, then evicts down to the
    /// budget — never `path` itself unless it alone is over the budget.
    pub fn insert(&self, path: &Path, size: u64) {
        let mut victims = Vec::new();
        {
            let mut g = self.inner.lock().expect("cache lock");
            g.tick += 1;
            let tick = g.tick;
            g.opens.remove(path);
            if let Some(old) = g
                .files
                .insert(path.to_path_buf(), Entry { size, last: tick })
            {
                g.total -= old.size;
            }
            g.total += size;
            while g.total > self.budget {
                // Others first, least recently used first; `path` itself only when it
                // alone is over the budget.
                let Some((victim, e)) = g
                    .files
                    .iter()
                    .filter(|(p, _)| p.as_path() != path)
                    .min_by_key(|(_, e)| e.last)
                    .or_else(|| g.files.get_key_value(path))
                    .map(|(p, e)| (p.clone(), *e))
                else {
                    break;
                };
                g.files.remove(&victim);
                g.total -= e.size;
                victims.push(victim);
            }
        }
        for v in victims {
            // A file still open or mapped stays readable after its name is gone (Unix).
            if let Err(e) = std::fs::remove_file(&v)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                log::warn!("could not evict {} from the cache: {e}", v.display());
            }
        }
    }

    /// Forgets `path` and removes its file.
    pub fn remove(&self, path: &Path) {
        {
            let mut g = self.inner.lock().expect("cache lock");
            if let Some(e) = g.files.remove(path) {
                g.total -= e.size;
            }
            g.opens.remove(path);
        }
        let _ = std::fs::remove_file(path);
    }

    /// Bytes cached now.
    pub fn bytes(&self) -> u64 {
        self.inner.lock().expect("cache lock").total
    }
}

/// Calls `f` with every file under `dir` and its length.
fn walk(dir: &Path, f: &mut dyn FnMut(&Path, u64)) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(path),
                Ok(m) => f(&path, m.len()),
                Err(_) => {}
            }
        }
    }
}

/// A file still being written (`.tmp`: staged for upload; `.part…`: a download).
fn is_incomplete(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".tmp") || name.contains(".part")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_down_to_the_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = Cache::new(100);
        let p = |n: &str| dir.path().join(n);
        for n in ["a", "b", "c"] {
            std::fs::write(p(n), [0u8; 40]).expect("write");
        }
        c.insert(&p("a"), 40);
        c.insert(&p("b"), 40);
        assert!(c.hit(&p("a")));
        c.insert(&p("c"), 40);
        // b was the least recently used.
        assert!(!c.hit(&p("b")));
        assert!(!p("b").exists());
        assert!(c.hit(&p("a")) && c.hit(&p("c")));
        assert_eq!(c.bytes(), 80);
        // A file over the budget alone is not kept.
        std::fs::write(p("d"), [0u8; 150]).expect("write");
        c.insert(&p("d"), 150);
        assert!(c.bytes() <= 100, "{}", c.bytes());
    }
}

//! The write path's log thread (`scry-wal`): group commit into the write-ahead log, then
//! into the memtable.
//!
//! Appending threads validate and encode their batch themselves, then send the encoded frame
//! over a bounded channel and wait for the reply. The log thread takes every request waiting
//! in the channel as one group, writes the group's frames, makes them durable with one
//! fsync (as the durability mode says), adds the batches to the memtable, and answers them
//! all. Because one thread does both, the memtable holds batches in log order, and memtable
//! rotation and log file rotation happen at the same point.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::flush::manager::FlushMsg;
use crate::memtable::{FrozenMemtable, Memtable};
use crate::options::Durability;
use crate::state::Shared;
use crate::wal::writer::WalWriter;
use crate::{Error, Result, Signal};

/// Most requests committed as one group.
const MAX_GROUP: usize = 1024;
/// Most frame bytes committed as one group.
const MAX_GROUP_BYTES: usize = 64 << 20;

/// Requests to the log thread.
pub enum CommitMsg {
    /// Log and apply one validated, encoded batch.
    Append {
        /// The batch's signal.
        signal: Signal,
        /// The validated batch.
        batch: RecordBatch,
        /// Its encoded log frame.
        frame: Vec<u8>,
        /// Answered once the batch is logged and visible.
        reply: Sender<Result<()>>,
    },
    /// Freeze the memtable for flushing; answers the id of the frozen memtable to wait for
    /// (0: nothing to wait for).
    Flush {
        /// The answer.
        reply: Sender<Result<u64>>,
    },
    /// Like `Flush`, then stop: the log thread exits and tells the flush manager to stop
    /// after this last memtable.
    Close {
        /// The answer.
        reply: Sender<Result<u64>>,
    },
}

struct Pending {
    signal: Signal,
    batch: RecordBatch,
    frame: Vec<u8>,
    reply: Sender<Result<()>>,
}

/// The log thread's state.
pub struct Committer {
    shared: Arc<Shared>,
    wal: WalWriter,
    flush_tx: Sender<FlushMsg>,
    next_frozen_id: u64,
    last_frozen_id: u64,
    last_sync: Instant,
}

impl Committer {
    /// A committer appending to `wal`.
    pub fn new(shared: Arc<Shared>, wal: WalWriter, flush_tx: Sender<FlushMsg>) -> Self {
        Committer {
            shared,
            wal,
            flush_tx,
            next_frozen_id: 1,
            last_frozen_id: 0,
            last_sync: Instant::now(),
        }
    }

    /// Body of the `scry-wal` thread: runs until `Close` or until every sender is gone.
    pub fn run(mut self, rx: Receiver<CommitMsg>) {
        loop {
            let first = match self.sync_deadline() {
                Some(deadline) => match rx.recv_deadline(deadline) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => {
                        if let Err(e) = self.wal.sync() {
                            self.shared.poison(format!("periodic log sync failed: {e}"));
                        }
                        self.last_sync = Instant::now();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                },
            };
            let mut group = Vec::new();
            let mut group_bytes = 0;
            let mut control = None;
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    CommitMsg::Append {
                        signal,
                        batch,
                        frame,
                        reply,
                    } => {
                        group_bytes += frame.len();
                        group.push(Pending {
                            signal,
                            batch,
                            frame,
                            reply,
                        });
                    }
                    other => {
                        control = Some(other);
                        break;
                    }
                }
                if group.len() < MAX_GROUP && group_bytes < MAX_GROUP_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            self.commit(group);
            match control {
                None => {}
                Some(CommitMsg::Flush { reply }) => {
                    let _ = reply.send(self.freeze(true));
                }
                Some(CommitMsg::Close { reply }) => {
                    let result = self.freeze(false).and_then(|id| {
                        self.remove_wal_if_unused(id)?;
                        Ok(id)
                    });
                    let _ = self.flush_tx.send(FlushMsg::Close);
                    let _ = reply.send(result);
                    return;
                }
                Some(CommitMsg::Append { .. }) => unreachable!("appends are grouped above"),
            }
        }
        let _ = self.flush_tx.send(FlushMsg::Close);
    }

    /// When the periodic sync is due, if one is.
    fn sync_deadline(&self) -> Option<Instant> {
        match self.shared.opts.durability {
            Durability::Periodic(interval) if self.wal.has_unsynced() => {
                Some(self.last_sync + interval)
            }
            _ => None,
        }
    }

    fn commit(&mut self, group: Vec<Pending>) {
        if group.is_empty() {
            return;
        }
        if let Err(e) = self.log(&group) {
            self.shared.poison(e.to_string());
            let err = self.shared.poison_error();
            for p in group {
                let _ = p.reply.send(Err(clone_error(&err)));
            }
            return;
        }
        let full = {
            let mut state = self.shared.write_state();
            let active = Arc::make_mut(&mut state.active);
            for p in &group {
                active.push(p.signal, p.batch.clone());
            }
            active.bytes() >= self.shared.opts.memtable_size
        };
        for p in group {
            let _ = p.reply.send(Ok(()));
        }
        if full && let Err(e) = self.freeze(true) {
            log::error!("could not rotate the memtable: {e}");
        }
    }

    /// Writes a group's frames and makes them as durable as the mode asks.
    fn log(&mut self, group: &[Pending]) -> Result<()> {
        if self.shared.is_poisoned() {
            return Err(self.shared.poison_error());
        }
        for p in group {
            self.wal.append(&p.frame)?;
        }
        match self.shared.opts.durability {
            Durability::Sync => self.wal.sync()?,
            Durability::Periodic(interval) => {
                if self.last_sync.elapsed() >= interval {
                    self.wal.sync()?;
                    self.last_sync = Instant::now();
                }
            }
            Durability::NoSync => {}
        }
        Ok(())
    }

    /// Freezes the active memtable and hands it to the flush; with `new_wal`, later appends
    /// go to a new log file. Blocks while `max_frozen_memtables` wait already (push back).
    /// Returns the id of the newest frozen memtable (0 if none was ever frozen).
    fn freeze(&mut self, new_wal: bool) -> Result<u64> {
        if self.shared.read_state().active.is_empty() {
            return Ok(self.last_frozen_id);
        }
        self.shared
            .wait_for_frozen_slot(self.shared.opts.max_frozen_memtables)?;
        let covered_seq = self.wal.seq();
        if new_wal {
            // Only the newest log file may end in a torn frame after power loss (replay
            // refuses a damaged older file), so the old file is made durable before a
            // newer one exists, whatever the durability mode.
            if let Err(e) = self.wal.sync() {
                self.shared
                    .poison(format!("could not sync the log file before rotation: {e}"));
                return Err(self.shared.poison_error());
            }
            let wal_dir = self.shared.wal_dir();
            match WalWriter::create(&self.shared.fs, &wal_dir, covered_seq + 1) {
                Ok(w) => self.wal = w,
                Err(e) => {
                    self.shared
                        .poison(format!("could not start a new log file: {e}"));
                    return Err(self.shared.poison_error());
                }
            }
            self.last_sync = Instant::now();
        }
        let id = self.next_frozen_id;
        self.next_frozen_id += 1;
        let frozen = {
            let mut state = self.shared.write_state();
            let table = std::mem::replace(&mut state.active, Arc::new(Memtable::default()));
            let table = Arc::try_unwrap(table).unwrap_or_else(|shared| (*shared).clone());
            let frozen = Arc::new(FrozenMemtable {
                id,
                table,
                wal_seq: covered_seq,
            });
            state.frozen.push_back(frozen.clone());
            frozen
        };
        self.shared.frozen_added();
        self.last_frozen_id = id;
        if self.flush_tx.send(FlushMsg::Flush(frozen)).is_err() {
            self.shared.poison("the flush thread is gone".into());
            return Err(self.shared.poison_error());
        }
        Ok(id)
    }

    /// At close: when no memtable covers the current log file (it holds no frame), it is
    /// removed now, since no flush will.
    fn remove_wal_if_unused(&self, last_frozen: u64) -> Result<()> {
        let covered = last_frozen != 0
            && self
                .shared
                .read_state()
                .frozen
                .back()
                .is_some_and(|f| f.wal_seq == self.wal.seq());
        if !covered && self.wal.is_empty() && !self.shared.is_poisoned() {
            let path = crate::wal::file_path(&self.shared.wal_dir(), self.wal.seq());
            self.shared
                .fs
                .remove_file(&path)
                .map_err(|e| Error::io("remove", &path, e))?;
        }
        Ok(())
    }
}

/// Errors are not `Clone` (they hold `io::Error`s); a group shares one failure by message.
pub(crate) fn clone_error(e: &Error) -> Error {
    match e {
        Error::Poisoned { reason } => Error::Poisoned {
            reason: reason.clone(),
        },
        Error::Closed => Error::Closed,
        other => Error::Poisoned {
            reason: other.to_string(),
        },
    }
}

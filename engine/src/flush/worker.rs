//! Flush worker threads: encode one segment per job.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::manifest::SegmentMeta;
use crate::segment::writer::{SegmentJob, write_segment};
use crate::state::Shared;
use crate::{Error, Result};

/// A job and where to send its result.
pub struct WorkItem {
    /// What to write.
    pub job: SegmentJob,
    /// Where the result goes.
    pub reply: Sender<Result<SegmentMeta>>,
}

/// Body of a `scry-flush-N` thread: runs until the job channel closes. A panic while
/// writing a segment is caught and reported as an error, which poisons the database.
pub fn run(shared: Arc<Shared>, jobs: Receiver<WorkItem>) {
    for WorkItem { job, reply } in jobs {
        let result = catch_unwind(AssertUnwindSafe(|| {
            write_segment(&shared.fs, &shared.dir, &shared.opts, job)
        }))
        .unwrap_or_else(|panic| {
            Err(Error::Poisoned {
                reason: format!("a flush thread panicked: {}", panic_message(&panic)),
            })
        });
        // The manager may have given up on this memtable already; nothing to do then.
        let _ = reply.send(result);
    }
}

pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

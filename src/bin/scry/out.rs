//! Standard output that a closed pipe cannot crash: `scry info | head -1` or `scry ingest …
//! | head -0` must not panic (`println!` does on `EPIPE`). Once the reader is gone, further
//! output is dropped and the command goes on with its work (an ingest keeps storing).

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `args` (and a newline) to standard output, unless the output is closed.
pub fn write(args: fmt::Arguments<'_>, newline: bool) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| {
        if newline {
            out.write_all(b"\n")
        } else {
            Ok(())
        }
    });
    if let Err(e) = written {
        CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("error: writing to standard output: {e}; further output is dropped");
        }
    }
}

/// `println!` that survives a closed standard output.
macro_rules! say {
    () => {
        $crate::out::write(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*), true)
    };
}

/// `print!` that survives a closed standard output.
macro_rules! say_part {
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*), false)
    };
}

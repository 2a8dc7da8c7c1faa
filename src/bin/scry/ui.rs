//! `scry ui` (and `scry demo --ui`): the web UI over a store, read-only, until Ctrl-C.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use scrydb::Options;
use scrydb::ui::{UiServeOptions, UiServer};

/// Serves the UI over the store in `dir` (opened read-only) on `addr`, printing its address
/// (and `first`, a path to open, when given), until Ctrl-C or SIGTERM.
pub fn run(
    dir: &Path,
    addr: SocketAddr,
    token: Option<String>,
    first: Option<&str>,
) -> scrydb::Result<bool> {
    let db = Arc::new(crate::open_read(dir, Options::default())?);
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    if let Err(e) = ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    }) {
        log::warn!("cannot handle Ctrl-C ({e}); stop with SIGKILL");
    }
    let mut opts = UiServeOptions::default();
    opts.addr = addr;
    let login = token
        .as_ref()
        .map(|t| format!("?token={}", scrydb::ui::encode(t)));
    opts.token = token;
    let server = match UiServer::start(db, opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(false);
        }
    };
    say!(
        "scry ui: listening http={} store={} (read-only)",
        server.addr(),
        dir.display()
    );
    let base = format!("http://{}", server.addr());
    match first {
        Some(path) => say!(
            "  open {base}{path}{} ; Ctrl-C stops",
            login.map_or(String::new(), |l| if path.contains('?') {
                l.replacen('?', "&", 1)
            } else {
                l
            })
        ),
        None => say!(
            "  open {base}/traces{} ; Ctrl-C stops",
            login.unwrap_or_default()
        ),
    }
    let _ = stop_rx.recv();
    match server.shutdown() {
        Ok(()) => Ok(true),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(false)
        }
    }
}

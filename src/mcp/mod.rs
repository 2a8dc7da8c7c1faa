//! The MCP server: tools that let an AI agent debug with ScryDB — find traces and logs,
//! read a trace's shape and critical path, run read-only SQL, list alerts, diagnose a
//! window — each with limits the engine enforces, and output sized for a model's context.
//!
//! [`Tools`] is the library API (a tool name and JSON arguments in, a JSON object out);
//! [`server`] serves it with the official Rust MCP SDK (`rmcp`) over stdio (`scry mcp`)
//! and over streamable HTTP at `/mcp` on `scry serve`'s HTTP port.
//!
//! Limits (the contract; `docs/mcp.md`):
//! - **Bytes**: no tool result is longer than [`McpOptions::max_bytes`] (default 24,000
//!   bytes of JSON, about 6,000 tokens); a call may ask for less with `max_bytes`
//!   (at least 1,024). A result cut short says `"truncated": true` and, when there is
//!   more to read, gives a `"cursor"` that the same call with `cursor` continues from.
//! - **Rows**: each list has a `limit` argument with a documented default and maximum.
//! - **Time**: a call runs at most [`McpOptions::timeout`] (default 15 s); its queries are
//!   cancelled then and the call fails with "took longer than".
//! - Long texts (log bodies, attribute values, SQL cells) are clipped (with `…`).
//! - Everything is read-only: `run_sql` refuses anything but queries before it runs.

pub mod server;
mod tools;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

pub use tools::{TOOLS, ToolSpec};

use crate::Db;

/// Limits of the MCP tools; every default documented.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct McpOptions {
    /// The most bytes of JSON one tool result may take. Default: 24,000.
    pub max_bytes: usize,
    /// How long one call may run before its queries are cancelled. Default: 15 s.
    pub timeout: Duration,
}

impl Default for McpOptions {
    fn default() -> Self {
        McpOptions {
            max_bytes: 24_000,
            timeout: Duration::from_secs(15),
        }
    }
}

/// Why a tool call failed; the message is written for the agent that made it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// No tool has this name.
    #[error("no tool named {0:?} (see tools/list)")]
    Unknown(String),
    /// The arguments are wrong: which and why.
    #[error("{0}")]
    BadArguments(String),
    /// The call ran into an error (a query that failed, a trace that is not there).
    #[error("{0}")]
    Failed(String),
    /// The call took longer than [`McpOptions::timeout`] and was cancelled.
    #[error("the call took longer than {} ms and was cancelled; narrow it (a shorter window, a lower limit)", .0.as_millis())]
    TooSlow(Duration),
}

/// The MCP tools over one store.
#[derive(Clone)]
pub struct Tools {
    db: Arc<Db>,
    opts: McpOptions,
}

impl std::fmt::Debug for Tools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tools").field("opts", &self.opts).finish()
    }
}

impl Tools {
    /// The tools over `db` with `opts`.
    pub fn new(db: Arc<Db>, opts: McpOptions) -> Tools {
        Tools { db, opts }
    }

    /// The store.
    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }

    /// The limits.
    pub fn options(&self) -> &McpOptions {
        &self.opts
    }

    /// Runs tool `name` with `args` on the SQL runtime, cancelled after the time limit.
    /// The result is a JSON object of at most the byte limit.
    pub async fn call(&self, name: &str, args: Map<String, Value>) -> Result<Value, ToolError> {
        if !TOOLS.iter().any(|t| t.name == name) {
            return Err(ToolError::Unknown(name.to_string()));
        }
        let this = self.clone();
        let name = name.to_string();
        let task = crate::sql::runtime().spawn(async move { tools::run(&this, &name, args).await });
        let abort = task.abort_handle();
        match tokio::time::timeout(self.opts.timeout, task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(ToolError::Failed(format!("the call stopped: {e}"))),
            Err(_) => {
                abort.abort();
                Err(ToolError::TooSlow(self.opts.timeout))
            }
        }
    }

    /// [`Tools::call`] without an async runtime. Must not be called from an async task.
    pub fn call_blocking(&self, name: &str, args: Map<String, Value>) -> Result<Value, ToolError> {
        crate::sql::block_on(self.call(name, args))
    }
}

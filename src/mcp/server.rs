//! [`Tools`] served with the official Rust MCP SDK (`rmcp`): over stdio (`scry mcp`) and
//! over streamable HTTP (`/mcp` on `scry serve`'s HTTP port).
//!
//! Tool results are one text block: the result's JSON (at most the byte limit). Bad
//! arguments, failed queries and time-outs are tool results with `isError: true` and a
//! message the agent can act on; only an unknown tool name is a protocol error.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};

use super::{TOOLS, ToolError, Tools};

/// What the server tells a client about itself at initialization.
const INSTRUCTIONS: &str = "ScryDB holds the traces, logs and metrics of a distributed system. \
To debug an incident: diagnose a window (or list_alerts), then search_traces for failing or \
slow requests, get_trace and get_critical_path on one of them, search_logs and log_patterns \
for why; get_schema, then run_sql for anything else. Every result is JSON of bounded size; \
when `truncated` is true, call again with the returned `cursor` to read on.";

/// An MCP server over [`Tools`].
#[derive(Clone, Debug)]
pub struct McpServer {
    tools: Tools,
}

impl McpServer {
    /// The server of `tools`.
    pub fn new(tools: Tools) -> McpServer {
        McpServer { tools }
    }
}

fn tool(spec: &super::ToolSpec) -> Tool {
    Tool::new(spec.name, spec.description, Arc::new(spec.schema()))
        .with_annotations(ToolAnnotations::new().read_only(true))
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("scrydb", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(
            TOOLS.iter().map(tool).collect(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        match self.tools.call(&request.name, args).await {
            Ok(v) => Ok(CallToolResult::success(vec![ContentBlock::text(v.to_string())]).into()),
            Err(ToolError::Unknown(name)) => Err(ErrorData::invalid_params(
                format!("no tool named {name:?} (see tools/list)"),
                None,
            )),
            Err(e) => Ok(CallToolResult::error(vec![ContentBlock::text(e.to_string())]).into()),
        }
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        TOOLS.iter().find(|t| t.name == name).map(tool)
    }
}

/// Serves `tools` over stdin/stdout until the client closes stdin. Nothing else may write
/// to stdout meanwhile (logs go to stderr).
pub async fn serve_stdio(tools: Tools) -> Result<(), String> {
    let running = McpServer::new(tools)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("the MCP client did not initialize: {e}"))?;
    running
        .waiting()
        .await
        .map(|_| ())
        .map_err(|e| format!("the MCP server stopped: {e}"))
}

/// The streamable HTTP endpoint of `tools` (a tower service to mount at `/mcp`), ended by
/// `stop`. Host checks are left to the server's own middleware (the token, or loopback
/// hosts only without one).
pub fn http_service(
    tools: Tools,
    stop: tokio_util::sync::CancellationToken,
) -> StreamableHttpService<McpServer, LocalSessionManager> {
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .with_cancellation_token(stop);
    StreamableHttpService::new(
        move || Ok(McpServer::new(tools.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}

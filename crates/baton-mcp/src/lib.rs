//! A client of one MCP server: over a byte stream (the server's standard output to read, its
//! standard input to write, wherever it runs: baton starts it inside a task's sandbox), or over
//! streamable HTTP sent through an HTTP proxy's Unix socket (the task's egress proxy). The protocol
//! is the official rmcp SDK's, client side only; this crate gives it a blocking face for the tool
//! dispatch, with a thread and a runtime of its own per server, and a deadline on every exchange,
//! so a server that hangs or dies gives an error and never a stuck caller.

use std::io::{PipeReader, PipeWriter};
use std::os::fd::OwnedFd;
use std::sync::mpsc as blocking;
use std::time::Duration;

use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, ContentBlock};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

/// One of a server's tools, as it describes itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedTool {
    pub name: String,
    pub description: String,
    /// A JSON schema of its arguments.
    pub input_schema: Value,
}

/// What a call came to: the tool's content as text, and whether the tool said it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOutput {
    pub text: String,
    pub is_error: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("cannot start a client: {0}")]
    Runtime(std::io::Error),
    #[error("the server did not complete the MCP handshake: {0}")]
    Handshake(String),
    #[error("the server did not answer within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("the server's connection ended: {0}")]
    Closed(String),
    #[error("header {0:?} cannot be sent: {1}")]
    Header(String, String),
}

/// A connected server; dropping it closes the connection.
#[derive(Debug)]
pub struct ToolServer {
    tools: Vec<ServedTool>,
    calls: mpsc::UnboundedSender<Call>,
}

/// A call for the client's thread, and where its answer goes.
struct Call {
    tool: String,
    arguments: Map<String, Value>,
    deadline: Duration,
    answer: blocking::Sender<Result<CallOutput, McpError>>,
}

impl ToolServer {
    /// Speaks MCP over `output` (what the server writes) and `input` (what it reads): the
    /// handshake and the list of its tools, both within `deadline`.
    pub fn connect(output: PipeReader, input: PipeWriter, deadline: Duration) -> Result<ToolServer, McpError> {
        ToolServer::start(deadline, move || {
            let output = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(output))?;
            let input = tokio::net::unix::pipe::Sender::from_owned_fd(OwnedFd::from(input))?;
            Ok((output, input))
        })
    }

    /// Speaks MCP over streamable HTTP with the server at `url`, every request sent through the
    /// HTTP proxy listening on the Unix socket `proxy` with `headers`: the handshake and the list
    /// of its tools, both within `deadline`.
    pub fn connect_http(
        proxy: &std::path::Path,
        url: &str,
        headers: &[(String, String)],
        deadline: Duration,
    ) -> Result<ToolServer, McpError> {
        use rmcp::transport::StreamableHttpClientTransport;
        use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
        let mut custom = std::collections::HashMap::new();
        for (name, value) in headers {
            let refused = |why: String| McpError::Header(name.clone(), why);
            let header = http::HeaderName::try_from(name.as_str()).map_err(|e| refused(e.to_string()))?;
            let value =
                http::HeaderValue::try_from(value.as_str()).map_err(|_| refused("not a header value".into()))?;
            custom.insert(header, value);
        }
        let config = StreamableHttpClientTransportConfig::with_uri(url.to_owned()).custom_headers(custom);
        let socket = proxy.to_string_lossy().into_owned();
        ToolServer::start(deadline, move || {
            Ok(StreamableHttpClientTransport::from_unix_socket_with_config(&socket, config))
        })
    }

    /// The client's thread: `open` makes the transport there, then the handshake and the list of
    /// tools within `deadline`, then one call at a time until the server is dropped or fails.
    fn start<T, E, A>(
        deadline: Duration,
        open: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> Result<ToolServer, McpError>
    where
        T: rmcp::transport::IntoTransport<rmcp::RoleClient, E, A> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(McpError::Runtime)?;
        let (calls, mut requests) = mpsc::unbounded_channel::<Call>();
        let (ready, connected) = blocking::channel::<Result<Vec<ServedTool>, McpError>>();
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let transport = match open() {
                    Ok(transport) => transport,
                    Err(error) => {
                        let _ = ready.send(Err(McpError::Runtime(error)));
                        return;
                    }
                };
                let handshake = async {
                    let client = ().serve(transport).await.map_err(|e| McpError::Handshake(e.to_string()))?;
                    let tools = client.list_all_tools().await.map_err(|e| McpError::Handshake(e.to_string()))?;
                    Ok::<_, McpError>((client, tools))
                };
                let (client, tools) = match tokio::time::timeout(deadline, handshake).await {
                    Ok(Ok(connected)) => connected,
                    Ok(Err(error)) => {
                        let _ = ready.send(Err(error));
                        return;
                    }
                    Err(_) => {
                        let _ = ready.send(Err(McpError::Timeout(deadline)));
                        return;
                    }
                };
                let tools = tools
                    .into_iter()
                    .map(|tool| ServedTool {
                        name: tool.name.into_owned(),
                        description: tool.description.map(|d| d.into_owned()).unwrap_or_default(),
                        input_schema: Value::Object((*tool.input_schema).clone()),
                    })
                    .collect();
                if ready.send(Ok(tools)).is_err() {
                    return;
                }
                // One call at a time, in order: the tool dispatch waits for each answer.
                while let Some(call) = requests.recv().await {
                    let params = CallToolRequestParams::new(call.tool).with_arguments(call.arguments);
                    let answer = match tokio::time::timeout(call.deadline, client.call_tool(params)).await {
                        Ok(Ok(result)) => Ok(CallOutput {
                            text: render(&result.content, result.structured_content.as_ref()),
                            is_error: result.is_error.unwrap_or(false),
                        }),
                        Ok(Err(error)) => Err(McpError::Closed(error.to_string())),
                        Err(_) => Err(McpError::Timeout(call.deadline)),
                    };
                    let failed = answer.is_err();
                    let _ = call.answer.send(answer);
                    // After a timeout or a broken exchange nothing more is asked of this server.
                    if failed {
                        break;
                    }
                }
                let _ = client.cancel().await;
            });
        });
        // The thread answers within the deadline; a little more covers its start.
        let tools = match connected.recv_timeout(deadline + Duration::from_secs(5)) {
            Ok(connected) => connected?,
            Err(_) => return Err(McpError::Timeout(deadline)),
        };
        Ok(ToolServer { tools, calls })
    }

    pub fn tools(&self) -> &[ServedTool] {
        &self.tools
    }

    /// Calls `tool` with `arguments`; the answer within `deadline`, or an error. After an error
    /// the server takes no more calls (a new connection is needed).
    pub fn call(&self, tool: &str, arguments: Map<String, Value>, deadline: Duration) -> Result<CallOutput, McpError> {
        let (answer, answered) = blocking::channel();
        let call = Call { tool: tool.to_owned(), arguments, deadline, answer };
        self.calls.send(call).map_err(|_| McpError::Closed("the client has stopped".into()))?;
        match answered.recv_timeout(deadline + Duration::from_secs(5)) {
            Ok(answer) => answer,
            Err(blocking::RecvTimeoutError::Timeout) => Err(McpError::Timeout(deadline)),
            Err(blocking::RecvTimeoutError::Disconnected) => Err(McpError::Closed("the client has stopped".into())),
        }
    }
}

/// A tool's content as text for the model: text as it is, anything else (an image, a resource) as
/// its JSON, then the structured result when there is no text.
fn render(content: &[ContentBlock], structured: Option<&Value>) -> String {
    let parts: Vec<String> = content
        .iter()
        .map(|block| match block.as_text() {
            Some(text) => text.text.clone(),
            None => serde_json::to_string(block).unwrap_or_default(),
        })
        .collect();
    match (parts.is_empty(), structured) {
        (true, Some(value)) => value.to_string(),
        _ => parts.join("\n"),
    }
}

"""An MCP server written with the official Python SDK (its MCPServer), over streamable HTTP on
127.0.0.1:PORT, that answers only requests carrying `X-Api-Key: KEY`.

usage: mcp_http_server.py PORT KEY
"""

import sys

import uvicorn
from mcp.server.mcpserver import MCPServer
from starlette.responses import JSONResponse

port, key = int(sys.argv[1]), sys.argv[2]
server = MCPServer("adder", log_level="WARNING")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


app = server.streamable_http_app()


async def keyed(scope, receive, send):
    headers = dict(scope.get("headers") or [])
    if scope["type"] == "http" and headers.get(b"x-api-key") != key.encode():
        await JSONResponse({"error": "a key is needed"}, status_code=401)(scope, receive, send)
        return
    await app(scope, receive, send)


uvicorn.run(keyed, host="127.0.0.1", port=port, log_level="warning", lifespan="on")

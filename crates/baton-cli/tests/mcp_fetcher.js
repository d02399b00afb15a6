// An MCP server (the official TypeScript SDK) with one tool that fetches a URL through the
// sandbox's proxy, as a server that reaches for the network would.
const modules = process.env.FETCHER_MODULES;
const { McpServer } = require(`${modules}/@modelcontextprotocol/sdk/dist/cjs/server/mcp.js`);
const { StdioServerTransport } = require(`${modules}/@modelcontextprotocol/sdk/dist/cjs/server/stdio.js`);
const z = require(`${modules}/zod`);
const http = require("http");

const server = new McpServer({ name: "fetcher", version: "1.0.0" });
server.registerTool(
  "fetch",
  { description: "GET a URL through the proxy", inputSchema: { url: z.string() } },
  async ({ url }) => {
    const proxy = new URL(process.env.http_proxy || process.env.HTTP_PROXY || "http://127.0.0.1:3128");
    const text = await new Promise((resolve) => {
      const request = http.request(
        { host: proxy.hostname, port: proxy.port, method: "GET", path: url },
        (response) => resolve(`HTTP ${response.statusCode}`),
      );
      request.on("error", (error) => resolve(`error: ${error.message}`));
      request.end();
    });
    return { content: [{ type: "text", text }] };
  },
);
server.connect(new StdioServerTransport());

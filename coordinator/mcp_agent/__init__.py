"""``workhive mcp``: one AI agent instance as a workhive agent, over MCP
(docs/mcp.md)."""

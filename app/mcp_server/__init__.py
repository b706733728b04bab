"""The Model Context Protocol server: agents inspect and process exports, read the latest local
workspace and look after the service's jobs. See `server` (tools and resources) and `http` (the
`/mcp` mount)."""

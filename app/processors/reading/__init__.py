"""Reading an export: detect the container and format, stream conversations out of ChatGPT and
Claude.ai exports (active branch only, normalised), chunk them, and keep the v2 sample."""

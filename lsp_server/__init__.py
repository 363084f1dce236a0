"""The language server, the OpenAI-compatible HTTP endpoint and the command line."""

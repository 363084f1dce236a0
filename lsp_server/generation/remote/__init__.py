"""A remote OpenAI-compatible server as the process's model: another `replit-lsp --serve`,
vLLM or llama.cpp's server, shared by a team from one GPU machine."""

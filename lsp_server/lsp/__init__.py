"""The language server: `server` answers the protocol and hands each request's `snapshot`
to `completion`, which turns it into inserted text (`prompt` builds the prompt, `stop_rule`
and `postprocess` apply the completion rules); `document_memory` keeps what a document's next
request reuses, `completion_log` the statistics of recent completions, `positions` converts
LSP positions to offsets, `settings` reads the client's settings, `loading` shows the model
loading, `framing` and `rpc` enforce the message and JSON-RPC rules pygls leaves open,
`documents` keeps the open documents, `context` chooses the workspace context, `backend`
reports a remote backend's state, and `client_log` forwards log records to the editor."""

"""The language server: `server` answers the protocol, `completion` turns a cursor into
inserted text (`prompt` builds the prompt, `postprocess` applies the completion rules),
`settings` reads the client's settings, `loading` shows the model loading, `framing` and
`rpc` enforce the message and JSON-RPC rules pygls leaves open, `documents` keeps the open
documents, `context` chooses the workspace context, `backend` reports a remote backend's
state, and `client_log` forwards log records to the editor."""

"""The language server: `server` answers the protocol, `completion` turns a cursor into
inserted text (`prompt` builds the prompt, `postprocess` applies the completion rules),
`settings` reads the client's settings, `loading` shows the model loading, and `protocol`
adapts pygls."""

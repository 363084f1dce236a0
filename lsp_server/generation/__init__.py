"""The generation layer: what every front door (the language server, the HTTP endpoint, the
one-shot CLI) asks of the process's model, whether it runs here or on a remote server."""

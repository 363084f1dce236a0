"""Keystroke to suggestion as a user meets it, through the real server process: editing traces
driven over stdio with the server's latency features on and off (`python -m bench.experience`)."""

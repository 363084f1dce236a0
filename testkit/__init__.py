"""What the tests and the benchmarks share: checkpoints, the independent reference model, and
launchers and clients for the real servers."""

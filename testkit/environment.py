"""The environment of the test processes and of the servers they start: the model comes from
local files only (tests never reach the network), and the tokenizers library starts no
threads, which a server's forked compiling child would inherit."""

from __future__ import annotations

import os

TEST_ENVIRONMENT = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
# What a server started by the tests or the benchmarks runs with.
SERVER_ENV = {**os.environ, **TEST_ENVIRONMENT}

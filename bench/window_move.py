"""The keystroke that moves the prompt window on, with and without the next window prepared.

In a file longer than the prompt, typing at the end keeps the window's start until the text
outgrows it, and the request that outgrows it computes a whole window, unless a pause before
it let the server prepare the next one (`prewarm`). Through the real `replit-lsp --stdio` with
the server's default settings: a large standard-library file is opened, cut after a line,
with the cursor at its end, and asked at; its next lines are pasted, filling the window to
about 97%, and asked at; the person pauses (until the server records the next window's
pre-warm, at most `--pause-limit` seconds; with `prewarm` off, as long as the run with it on
paused); then the file's next lines are typed one at a time, a request after each, until a
request's prompt is shorter than the one before: the window moved. Reported per run: that
request's milliseconds, tokens computed (engine counters) and its prompt's reused tokens,
`prewarm` on and off alternating, each run in a fresh server.

Usage: python -m bench.window_move --full-size q4_0 --work-dir DIR --runs 2 --json OUT
(without `--full-size`, the bundled demo model).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from bench.editing import STDLIB
from bench.experience.records import POLL_SECONDS, PREWARM, at_place
from bench.experience.session import ANSWER_LIMIT, Session, default_server
from bench.full_size import full_size_checkpoint
from bench.suite import WORK_DIR
from lsp_server.lsp.prompt import WINDOW_SLACK
from lsp_server.options import option_named
from model.hub import resolve_model_dir
from testkit.editor import Editor, utf16_position

FILE = "argparse.py"
OPENED_LINES = 1200  # the file as opened ends after this many lines
FILL = 1 - WINDOW_SLACK / 8  # of the first window's room, after the paste


def request(session: Session, editor: Editor) -> dict[str, Any]:
    """A request at the cursor, answered, and its record once its generation is done."""
    position = utf16_position(editor.text, editor.cursor)
    before = session.counters()
    editor.send()
    editor.collect(ANSWER_LIMIT)
    seconds = editor.seconds[-1]
    deadline = time.monotonic() + ANSWER_LIMIT
    while True:
        mine = [
            r
            for r in session.records()
            if at_place(r, editor.uri, position) and not r["finish"].startswith(PREWARM)
        ]
        if mine:
            break
        assert time.monotonic() < deadline, "no record of the request"
        time.sleep(POLL_SECONDS)
    after = session.counters()
    return {
        "ms": 1000 * seconds,
        "computed_tokens": after["computed_tokens"] - before["computed_tokens"],
        "prompt_tokens": mine[0]["prompt_tokens"],
        "reused_tokens": mine[0]["reused_tokens"],
    }


def next_line(editor: Editor) -> str:
    """The file's next line (at least one character), as the person types it next."""
    end = editor.to_type.find("\n") + 1 or len(editor.to_type)
    return editor.to_type[:end]


def run(
    command: list[str],
    tokenizer: Tokenizer,
    prewarm: bool,
    pause: float | None,
    pause_limit: float,
) -> dict:
    session = Session(command, {"prewarm": prewarm})
    try:
        text = (STDLIB / FILE).read_text()
        lines = text.splitlines(keepends=True)
        cut = sum(len(line) for line in lines[:OPENED_LINES])
        uri = f"file:///window-move/{FILE}"
        editor = Editor.open(session.lsp, uri, text[:cut], cut, text[cut:])
        first = request(session, editor)
        room = first["prompt_tokens"] / (1 - WINDOW_SLACK)
        # The paste: whole lines, about as many tokens as fill the window to FILL.
        paste = ""
        while len(tokenizer.encode(paste).ids) < room * FILL - first["prompt_tokens"]:
            paste += editor.to_type[len(paste) :].split("\n", 1)[0] + "\n"
        editor.type(len(paste))
        full = request(session, editor)
        assert full["prompt_tokens"] > first["prompt_tokens"], "the paste moved the window"
        started = time.perf_counter()
        prewarms = 0
        while time.perf_counter() - started < (pause if pause is not None else pause_limit):
            prewarms += sum(r["finish"] == PREWARM for r in session.records())
            if pause is None and prewarms:
                break
            time.sleep(POLL_SECONDS)
        waited = time.perf_counter() - started
        # A request answered from a suggestion (the model wrote the line typed) ran no model
        # and says nothing of the window.
        steps, previous = [], full["prompt_tokens"]
        while not steps or not 0 < steps[-1]["prompt_tokens"] < previous:
            if steps and steps[-1]["prompt_tokens"]:
                previous = steps[-1]["prompt_tokens"]
            editor.type(len(next_line(editor)))
            steps.append(request(session, editor))
        return {
            "prewarm": prewarm,
            "first": first,
            "full": full,
            "pause_seconds": waited,
            "prewarm_records": prewarms,
            "typed_lines": len(steps),
            "moved": steps[-1],
            "before_moving": steps[:-1],
        }
    finally:
        session.close()


def main() -> None:
    parser = argparse.ArgumentParser("python -m bench.window_move", description=__doc__)
    parser.add_argument("--full-size", metavar="ENCODING", help="the 32-layer random checkpoint")
    parser.add_argument("--work-dir", type=Path, default=WORK_DIR)
    parser.add_argument("--model", default="demo", help="without --full-size")
    parser.add_argument("--quantization-encoding", default="float32", help="with --model")
    parser.add_argument("--max-length", type=int, default=option_named("max_length").default)
    parser.add_argument("--runs", type=int, default=1, help="pairs of runs, on then off")
    parser.add_argument("--pause-limit", type=float, default=120.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.full_size:
        model_dir, encoding = full_size_checkpoint(args.work_dir, args.full_size), args.full_size
    else:
        model_dir, encoding = resolve_model_dir(None, args.model), args.quantization_encoding
    command = default_server(model_dir, encoding, args.max_length)
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    results = []
    for _ in range(args.runs):
        on = run(command, tokenizer, True, None, args.pause_limit)
        off = run(command, tokenizer, False, on["pause_seconds"], args.pause_limit)
        for result in (on, off):
            moved = result["moved"]
            print(
                f"prewarm {result['prewarm']}: paused {result['pause_seconds']:.1f} s, "
                f"window moved after {result['typed_lines']} lines: {moved['ms']:.0f} ms, "
                f"{moved['computed_tokens']} tokens computed, "
                f"{moved['reused_tokens']} of {moved['prompt_tokens']} reused",
                flush=True,
            )
            results.append(result)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

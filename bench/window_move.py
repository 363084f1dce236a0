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
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from bench.editing import STDLIB
from bench.experience.records import RequestRecords
from bench.experience.session import ANSWER_LIMIT, Session, default_server, pause_for_prewarm
from bench.full_size import full_size_checkpoint
from bench.suite import WORK_DIR
from lsp_server.lsp.prompt import WINDOW_SLACK
from lsp_server.options import option_named
from model.hub import resolve_model_dir
from testkit.editor import Editor, utf16_position

FILE = "argparse.py"
OPENED_LINES = 1200  # the file as opened ends after this many lines
FILL = 1 - WINDOW_SLACK / 8  # of the first window's room, after the paste


def request(session: Session, editor: Editor, records: RequestRecords) -> dict[str, Any]:
    """A request at the cursor, answered; its tokens once its generation is done."""
    position = utf16_position(editor.text, editor.cursor)
    before = session.counters()
    editor.send()
    editor.collect(ANSWER_LIMIT)
    asked: dict[str, Any] = {"ms": 1000 * editor.seconds[-1]}
    records.give(asked, position)
    records.wait(ANSWER_LIMIT)
    assert asked["record"] is not None, "no record of the request"
    after = session.counters()
    return {
        "ms": asked["ms"],
        "computed_tokens": after["computed_tokens"] - before["computed_tokens"],
        "prompt_tokens": asked["record"]["prompt_tokens"],
        "reused_tokens": asked["record"]["reused_tokens"],
    }


def next_line(text: str) -> str:
    """The first line of `text` with its line break (all of it when it has none)."""
    end = text.find("\n") + 1 or len(text)
    return text[:end]


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
        records = RequestRecords(session.records, uri)
        first = request(session, editor, records)
        room = first["prompt_tokens"] / (1 - WINDOW_SLACK)
        # The paste: whole lines, about as many tokens as fill the window to FILL.
        paste = ""
        while len(tokenizer.encode(paste).ids) < room * FILL - first["prompt_tokens"]:
            paste += next_line(editor.to_type[len(paste) :])
        editor.type(len(paste))
        full = request(session, editor, records)
        assert full["prompt_tokens"] > first["prompt_tokens"], "the paste moved the window"
        position = utf16_position(editor.text, editor.cursor)
        waited, warm = pause_for_prewarm(session, uri, position, pause, pause_limit)
        # A request answered from a suggestion (the model wrote the line typed) ran no model
        # and says nothing of the window.
        steps, previous = [], full["prompt_tokens"]
        while not steps or not 0 < steps[-1]["prompt_tokens"] < previous:
            if steps and steps[-1]["prompt_tokens"]:
                previous = steps[-1]["prompt_tokens"]
            editor.type(len(next_line(editor.to_type)))
            steps.append(request(session, editor, records))
        return {
            "prewarm": prewarm,
            "first": first,
            "full": full,
            "pause_seconds": waited,
            "prewarm_records": int(warm is not None),
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

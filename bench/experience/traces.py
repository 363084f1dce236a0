"""The editing traces, as the steps a person takes in an editor; each ends in a request, but
taking a suggestion: the next keystroke's request comes after it.

They are the editing benchmark's traces (`bench.editing`), whose keystrokes are whole
documents, turned into edits: the document is opened without the text the trace types, and
each step types the next characters of it, backspaces, or takes the suggestion shown.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from bench.editing import STDLIB, Keystroke, accept_trace, large_file_trace, repeat_trace, retype

CHARS_PER_STEP = 3


@dataclass(frozen=True)
class Step:
    """What the person does: "open" or "jump" (the first request, with nothing typed yet),
    "type" or "retype" (`count` characters), "type through" (the first `count` characters
    of the suggestion shown), "backspace" (`count` characters, which are typed again later),
    each with a request, or "accept" (Tab, with the item's command)."""

    action: str
    count: int = 0


@dataclass(frozen=True)
class Trace:
    name: str
    file: str  # the standard-library file edited, which names the document
    text: str  # the document as opened
    cursor: int
    to_type: str
    steps: tuple[Step, ...]
    # The cursor rests at `cursor` (replitLsp/cursorIdle) and the person pauses before the
    # first request, as after a click into a file just opened.
    jump: bool = False

    def capped(self, requests: int) -> Trace:
        """The steps up to the `requests`th request."""
        kept: list[Step] = []
        for step in self.steps:
            if step.action != "accept" and sum(s.action != "accept" for s in kept) == requests:
                break
            kept.append(step)
        while kept and kept[-1].action == "accept":  # no request would follow
            kept.pop()
        return replace(self, steps=tuple(kept))


def from_keystrokes(name: str, file: str, keys: list[Keystroke], jump: bool = False) -> Trace:
    """The trace that types what `keys` type, from the first keystroke's offset to the last's,
    taking the suggestion where a keystroke says so."""
    first, last = keys[0], keys[-1]
    steps = [Step("jump" if jump else "open")]
    steps += [Step("accept")] if first.accept else []
    for previous, key in itertools.pairwise(keys):
        steps.append(Step("type", key.offset - previous.offset))
        steps += [Step("accept")] if key.accept else []
    return Trace(
        name,
        file,
        text=last.text[: first.offset] + last.text[last.offset :],
        cursor=first.offset,
        to_type=last.text[first.offset : last.offset],
        steps=tuple(steps),
        jump=jump,
    )


def with_backspaces(trace: Trace, every: int = 3, sizes: tuple[int, ...] = (3, 6)) -> Trace:
    """After every `every` typing steps, backspaces back to where an earlier request was
    (`sizes` in turn) and types the same characters again: undo, backspace and re-trigger,
    whose texts the server has answered before."""
    steps: list[Step] = []
    typed = 0
    for step in trace.steps:
        steps.append(step)
        if step.action != "type":
            continue
        typed += 1
        if typed % every == 0:
            size = sizes[(typed // every - 1) % len(sizes)]
            steps.append(Step("backspace", size))
            steps += [Step("retype", CHARS_PER_STEP)] * (size // CHARS_PER_STEP)
    return replace(trace, steps=tuple(steps))


def typing() -> Trace:
    """Lines in the middle of a large file retyped, a request every three characters."""
    return from_keystrokes("typing", "argparse.py", large_file_trace(CHARS_PER_STEP))


def accepting() -> Trace:
    """Every suggestion taken whole, then a few characters typed from the file after it."""
    keys = accept_trace(rounds=16, typed_between=2 * CHARS_PER_STEP, chars_per_step=CHARS_PER_STEP)
    return from_keystrokes("accepting", "textwrap.py", keys)


def following() -> Trace:
    """A function's body written by reading each suggestion and typing a few characters of
    it, then taking the rest: what a person does while the suggestions say what they meant."""
    text = (STDLIB / "textwrap.py").read_text()
    start = text.index("def dedent(text):")
    cursor = text.index("\n", start) + 1
    end = text.index("\ndef ", cursor) + 1
    steps = [Step("open")]
    for _ in range(16):
        steps += [Step("type through", CHARS_PER_STEP)] * 2 + [Step("accept")]
    return Trace(
        "following",
        "textwrap.py",
        text=text[:cursor] + text[end:],
        cursor=cursor,
        to_type=text[cursor:end],  # typed where nothing is shown
        steps=tuple(steps),
    )


def retyping() -> Trace:
    """A function typed again below itself, with backspaces into what was typed."""
    return with_backspaces(from_keystrokes("retyping", "textwrap.py", repeat_trace(CHARS_PER_STEP)))


def jump() -> Trace:
    """A file opened, a click into its middle, a pause, then typing there."""
    text = (STDLIB / "shutil.py").read_text()
    lines = text.splitlines(keepends=True)
    start = sum(len(line) for line in lines[: len(lines) // 2])
    end = start + sum(len(line) for line in lines[len(lines) // 2 :][:8])
    return from_keystrokes(
        "jump", "shutil.py", list(retype(text, start, end, CHARS_PER_STEP)), jump=True
    )


TRACES = {
    "typing": typing,
    "accepting": accepting,
    "following": following,
    "retyping": retyping,
    "jump": jump,
}

"""A long editing session against one server: no hang, no error, the same answers, flat memory.

One `replit-lsp --stdio --serve` process (both front doors sharing one model) is driven for a
fixed time as a person and a script would: standard-library files opened, edited and closed,
two to four open at a time; in each, a few lines removed, a pause at that place (the client
says where the cursor rests, as the editor clients do), then the lines retyped one to three
characters per change with an inline completion request after each; now and then a suggestion
accepted, typed through or backspaced into, a request cancelled as soon as it is sent, a burst
of keystrokes faster than the answers, a jump elsewhere. On a thread of its own, HTTP completions
go through the official `openai` client, some streamed and closed early. A known request on
each front door is asked at the start and then every minute: its greedy answer must never
change. The server's resident memory (RSS) is sampled every few seconds.

Usage:
    python -m bench.soak --model demo --minutes 30
    python -m bench.soak --weight-path DIR --quantization-encoding q4_0 --minutes 10 \
        --http-every 20
The HTTP side's pace is the option `--http-every`: at full size on two cores one completion
takes seconds, so the demo model's pace would leave the engine no time for the editor. The
person's pause at a new place is up to `--pause` seconds.
Results: `bench/results/soak/<label>.json`, `.md` and `.png` (RSS over time).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sysconfig
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import openai
import psutil

from bench.keystroke import percentile
from bench.suite import machine
from model.hub import resolve_model_dir
from testkit.editor import Editor, Unanswered
from testkit.raw_lsp import RawLsp
from testkit.servers import ServerProcess, free_port, server_command, wait_for_health

STDLIB = Path(sysconfig.get_paths()["stdlib"])
FILES = ["argparse.py", "shutil.py", "textwrap.py", "subprocess.py", "inspect.py", "tarfile.py"]
KNOWN_TEXT = 'import os\n\n\ndef list_files(path):\n    """Every file under path."""\n'
HTTP_PROMPTS = [KNOWN_TEXT, "import sys\n\n\ndef main():\n", "class Stack:\n    def push(self, "]
ANSWER_LIMIT = 120.0  # seconds: a request not answered by then counts as a hang
KNOWN_EVERY = 60.0
RSS_EVERY = 5.0


@dataclass
class Tally:
    """What one front door did, and what went wrong."""

    requests: int = 0
    answered: int = 0
    cancelled: int = 0
    hangs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    # The known request's answers in order, each with what its prompt carried ahead of the
    # document (the workspace context, which follows the other open documents).
    known: list[tuple[tuple[str, ...], str]] = field(default_factory=list)

    def summary(self) -> dict:
        ms = [1000 * s for s in self.seconds]
        return {
            "requests": self.requests,
            "answered": self.answered,
            "cancelled": self.cancelled,
            "hangs": len(self.hangs),
            "errors": len(self.errors),
            "first_problems": (self.hangs + self.errors)[:5],
            "p50_ms": percentile(ms, 0.5) if ms else None,
            "p95_ms": percentile(ms, 0.95) if ms else None,
            "max_ms": max(ms) if ms else None,
            "known_checks": len(self.known),
            "known_prompts": len({context for context, _ in self.known}),
            "known_changed": sum(changed(answer, first) for answer, first in self._known_pairs()),
            "known_first_lines_only": sum(
                answer != first and not changed(answer, first)
                for answer, first in self._known_pairs()
            ),
        }

    def _known_pairs(self) -> list[tuple[str, str]]:
        """Each known answer with the first one given for the same prompt."""
        first: dict[tuple[str, ...], str] = {}
        return [(answer, first.setdefault(context, answer)) for context, answer in self.known]


def changed(answer: str, first: str) -> bool:
    """Whether `answer` differs from `first` other than by being cut at a line end, as an
    answer given at the time budget is (the rest of the suggestion was still being written)."""
    if not answer or not first:
        return answer != first
    lines, first_lines = answer.split("\n"), first.split("\n")
    shorter = min(len(lines), len(first_lines))
    return lines[:shorter] != first_lines[:shorter]


class Session:
    """The editing side: documents, episodes of retyping, and the known LSP request."""

    def __init__(self, lsp: RawLsp, rng: random.Random, pause: float) -> None:
        self.lsp = lsp
        self.rng = rng
        self.pause = pause  # the longest the person pauses at a new place
        self.tally = Tally()
        self.open: list[Editor] = []
        self.opened = 0
        self.accepted = 0
        self.known = Editor.open(lsp, "file:///soak/known.py", KNOWN_TEXT, len(KNOWN_TEXT))

    def ask(self, editor: Editor, cancel: bool = False) -> None:
        editor.send(cancel)
        self.collect(editor)

    def collect(self, editor: Editor) -> None:
        pending = len(editor.sent)
        cancelled = sum(request.cancelled for request in editor.sent)
        answered, seconds = editor.answered, len(editor.seconds)
        try:
            editor.collect(ANSWER_LIMIT)
        except Unanswered as error:
            self.tally.hangs.append(str(error))
        except AssertionError as error:
            self.tally.errors.append(str(error)[:300])
        self.tally.requests += pending
        self.tally.cancelled += cancelled
        self.tally.answered += editor.answered - answered
        self.tally.seconds += editor.seconds[seconds:]

    def ask_known(self) -> None:
        since = self.lsp.request("replitLsp/status")["result"]["completions"]
        self.known.cursor = len(KNOWN_TEXT)
        self.ask(self.known)
        self.tally.known.append((self.known_context(since), self.known.shown))

    def known_context(self, since: int) -> tuple[str, ...]:
        """The workspace context of the known request's prompt, from its record (which a
        generation leaves once done, even after an answer at the time budget)."""
        deadline = time.monotonic() + ANSWER_LIMIT
        while time.monotonic() < deadline:
            records = self.lsp.request("replitLsp/completions", {"since": since})["result"]
            mine = [r for r in records if r["uri"] == self.known.uri]
            if mine:
                return tuple(mine[0]["context"])
            time.sleep(0.05)
        return ("no record",)

    def open_file(self) -> None:
        name = self.rng.choice(FILES)
        text = (STDLIB / name).read_text()
        self.opened += 1
        uri = f"file:///soak/{self.opened}/{name}"
        self.open.append(Editor.open(self.lsp, uri, text, 0))

    def close_file(self) -> None:
        self.open.pop(self.rng.randrange(len(self.open))).close()

    def episode(self, deadline: float) -> None:
        """Removes a few lines in the middle of a document and types them back, until they
        are typed or the time is up."""
        while len(self.open) < 2:
            self.open_file()
        if len(self.open) > 4 or self.rng.random() < 0.15:
            self.close_file()
            self.open_file()
        editor = self.rng.choice(self.open)
        lines = editor.text.split("\n")
        first = self.rng.randrange(len(lines) // 4, 3 * len(lines) // 4)
        count = self.rng.randint(3, 8)
        start = sum(len(line) + 1 for line in lines[:first])
        end = start + sum(len(line) + 1 for line in lines[first : first + count])
        editor.to_type = editor.text[start:end]
        editor.edit(start, end, "")
        editor.rest()  # the person looks at the place before typing
        time.sleep(self.rng.uniform(0, self.pause))
        while editor.to_type and time.monotonic() < deadline:
            if not self.keystroke(editor):
                return

    def keystroke(self, editor: Editor) -> bool:
        """One change and its request; False when the person moves elsewhere."""
        roll = self.rng.random()
        if roll < 0.08 and editor.shown:
            editor.accept()
            self.accepted += 1
        elif roll < 0.16 and editor.shown:
            editor.type_through(self.rng.randint(1, 4))
        elif roll < 0.20:
            editor.backspace(self.rng.randint(1, 5))
        elif roll < 0.25:
            editor.type(self.rng.randint(1, 3))
            self.ask(editor, cancel=True)
            return True
        elif roll < 0.30:
            for _ in range(3):
                editor.type(1)
                editor.send()
        elif roll < 0.32:
            editor.jump(self.rng.randrange(10_000))
            editor.rest()
            self.ask(editor)
            return False
        else:
            editor.type(self.rng.randint(1, 3))
        self.ask(editor)
        return True


class HttpClient(threading.Thread):
    """Completions over HTTP beside the editing, until `stop` is set."""

    def __init__(self, url: str, stop: threading.Event, rng: random.Random, every: float) -> None:
        super().__init__(name="http-client", daemon=True)
        self.every = every
        self.client = openai.OpenAI(base_url=url + "/v1", api_key="none", timeout=ANSWER_LIMIT)
        self.stop = stop
        self.rng = rng
        self.tally = Tally()
        self.closed_early = 0
        self.last_known = 0.0

    def complete(self, model: str, prompt: str, stream: bool) -> str:
        if not stream:
            answer = self.client.completions.create(
                model=model, prompt=prompt, max_tokens=16, temperature=0
            )
            return answer.choices[0].text
        chunks = self.client.completions.create(
            model=model, prompt=prompt, max_tokens=16, temperature=0, stream=True
        )
        with chunks:  # closing after the first piece cancels the rest
            for chunk in chunks:
                self.closed_early += 1
                return chunk.choices[0].text if chunk.choices else ""
        return ""

    def run(self) -> None:
        model = self.client.models.list().data[0].id
        while not self.stop.wait(self.every):
            known = time.monotonic() - self.last_known >= KNOWN_EVERY
            prompt = HTTP_PROMPTS[0] if known else self.rng.choice(HTTP_PROMPTS[1:])
            stream = not known and self.rng.random() < 0.3
            started = time.perf_counter()
            self.tally.requests += 1
            try:
                text = self.complete(model, prompt, stream)
            except openai.OpenAIError as error:
                self.tally.errors.append(f"{type(error).__name__}: {error}"[:300])
                continue
            self.tally.answered += 1
            self.tally.seconds.append(time.perf_counter() - started)
            if known:
                self.last_known = time.monotonic()
                self.tally.known.append(((), text))


class MemorySampler(threading.Thread):
    def __init__(self, pid: int, stop: threading.Event) -> None:
        super().__init__(name="rss", daemon=True)
        self.process = psutil.Process(pid)
        self.stop = stop
        self.started = time.monotonic()
        self.samples: list[tuple[float, float]] = []  # (seconds, MiB)

    def sample(self) -> None:
        rss = self.process.memory_info().rss / 2**20
        self.samples.append((round(time.monotonic() - self.started, 1), round(rss, 1)))

    def run(self) -> None:
        while not self.stop.wait(RSS_EVERY):
            self.sample()


def soak(command: list[str], minutes: float, seed: int, http_every: float, pause: float) -> dict:
    """Runs the session on the server `command` starts; returns what happened."""
    lsp = RawLsp(command)
    port = int(command[command.index("--http-port") + 1])
    stop = threading.Event()
    try:
        lsp.initialize()
        lsp.wait_until_loaded(timeout=1800)
        devnull = Path(os.devnull)  # the server's stderr is the language client's to read
        http_server = ServerProcess(lsp.process, port, devnull, devnull)
        wait_for_health(http_server, 60)
        rng = random.Random(seed)
        session = Session(lsp, rng, pause)
        session.ask_known()
        memory = MemorySampler(lsp.process.pid, stop)
        memory.sample()
        http = HttpClient(http_server.url, stop, random.Random(seed + 1), http_every)
        memory.start()
        http.start()
        load_before = os.getloadavg()
        deadline = time.monotonic() + 60 * minutes
        last_known = time.monotonic()
        while time.monotonic() < deadline and lsp.process.poll() is None:
            session.episode(deadline)
            if time.monotonic() - last_known >= KNOWN_EVERY:
                session.ask_known()
                last_known = time.monotonic()
        session.ask_known()
        stop.set()
        http.join(ANSWER_LIMIT)
        memory.sample()
        status = lsp.request("replitLsp/status")["result"]
        lsp.request("shutdown")
        lsp.notify("exit")
        exit_code = lsp.wait()
    finally:
        stop.set()
        lsp.stop()
    rss = [mib for _, mib in memory.samples]
    return {
        "minutes": minutes,
        "seed": seed,
        "http_every_s": http_every,
        "pause_s": pause,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "lsp": session.tally.summary()
        | {"documents_opened": session.opened, "accepted": session.accepted},
        "http": http.tally.summary() | {"streams_closed_early": http.closed_early},
        "graph_runs": status.get("graph_runs"),
        "rss_mib": {"start": rss[0], "end": rss[-1], "max": max(rss), "samples": memory.samples},
        "exit_code": exit_code,
    }


def markdown(label: str, result: dict) -> str:
    lsp, http, rss = result["lsp"], result["http"], result["rss_mib"]
    rows = [
        ("LSP requests (answered, cancelled)", f"{lsp['requests']} ({lsp['answered']}, "
         f"{lsp['cancelled']})"),
        ("LSP hangs / errors", f"{lsp['hangs']} / {lsp['errors']}"),
        ("LSP p50 / p95 / max ms", f"{lsp['p50_ms']:.0f} / {lsp['p95_ms']:.0f} / "
         f"{lsp['max_ms']:.0f}"),
        ("documents opened, suggestions accepted", f"{lsp['documents_opened']}, "
         f"{lsp['accepted']}"),
        ("HTTP requests / errors / streams closed early", f"{http['requests']} / "
         f"{http['errors']} / {http['streams_closed_early']}"),
        ("HTTP p50 / p95 ms", f"{http['p50_ms']:.0f} / {http['p95_ms']:.0f}"),
        ("known answer changed (LSP, HTTP)", f"{lsp['known_changed']} of "
         f"{lsp['known_checks']}, {http['known_changed']} of {http['known_checks']}"),
        ("known LSP prompts (by workspace context), answers cut at the time budget",
         f"{lsp['known_prompts']}, {lsp['known_first_lines_only']}"),
        ("RSS MiB start / end / max", f"{rss['start']:.0f} / {rss['end']:.0f} / "
         f"{rss['max']:.0f}"),
        ("exit code", str(result["exit_code"])),
        ("load average before / after", f"{result['load_average_before'][0]:.1f} / "
         f"{result['load_average_after'][0]:.1f}"),
    ]  # fmt: skip
    lines = [f"# Soak: {label}, {result['minutes']:g} minutes", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines) + "\n"


def plot(label: str, result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seconds, mib = zip(*result["rss_mib"]["samples"], strict=True)
    figure, axes = plt.subplots(figsize=(7, 3.2))
    axes.plot([s / 60 for s in seconds], mib)
    axes.set_xlabel("minutes")
    axes.set_ylabel("server RSS (MiB)")
    axes.set_ylim(bottom=0)
    axes.set_title(f"Soak: {label}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weight-path")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--quantization-encoding", default="float32")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--http-every", type=float, default=1.5, help="seconds between HTTP completions"
    )
    parser.add_argument(
        "--pause",
        type=float,
        default=1.0,
        help="the longest pause, in seconds, at a new place before typing (the server "
        "computes the place's prompt meanwhile)",
    )
    parser.add_argument("--label")
    parser.add_argument("--out", type=Path, default=Path("bench/results/soak"))
    args = parser.parse_args()
    model_dir = resolve_model_dir(args.weight_path, args.model)
    label = args.label or f"{model_dir.name}-{args.quantization_encoding}"
    command = server_command(
        model_dir,
        "--stdio",
        "--serve",
        "--http-port",
        str(free_port()),
        "--quantization-encoding",
        args.quantization_encoding,
        max_length=args.max_length,
        context_tokens=None,  # the editor's defaults
        recent_suggestions=None,
        time_budget_ms=None,
    )
    result = {"label": label, "machine": machine(os.cpu_count() or 1), "command": command[2:]}
    result |= soak(command, args.minutes, args.seed, args.http_every, args.pause)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{label}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / f"{label}.md").write_text(markdown(label, result))
    plot(label, result, args.out / f"{label}.png")
    print(markdown(label, result))


if __name__ == "__main__":
    main()

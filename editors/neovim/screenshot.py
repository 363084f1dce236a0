"""Renders `ghost-text.png`: Neovim in tmux showing a replit-lsp suggestion as ghost text.

Neovim runs with its terminal UI inside a detached tmux session of fixed size, with this
plugin and a `replit-lsp --stdio` server; the keys are typed through Neovim's RPC socket, the
screen is captured with `tmux capture-pane -p -e` once the suggestion is drawn, and the ANSI
colours of the capture are drawn into a PNG with Pillow in a monospace font.

    .venv/bin/pip install pillow pynvim   # for this script only
    .venv/bin/python editors/neovim/screenshot.py [--model-dir DIR] [--output PNG]

Uses the bundled demo model when it is built, else a small random checkpoint (whose
completions are junk, but real ones from the real server).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pynvim
from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEMO_DIR = ROOT / "model" / "assets" / "replit-code-demo"
COLUMNS, ROWS = 88, 20
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
FONT_SIZE = 16

BUFFER = '''import os


def read_lines(path):
    """Return the lines of a text file, without line endings."""
'''
TYPED = "with open(path) as f:\n"

# xterm's 16 colours, then the 6x6x6 cube and the grey ramp of the 256-colour palette.
BASE16 = [
    (0, 0, 0), (205, 49, 49), (13, 188, 121), (229, 229, 16),
    (36, 114, 200), (188, 63, 188), (17, 168, 205), (229, 229, 229),
    (102, 102, 102), (241, 76, 76), (35, 209, 139), (245, 245, 67),
    (59, 142, 234), (214, 112, 214), (41, 184, 219), (255, 255, 255),
]  # fmt: skip
DEFAULT_FG, DEFAULT_BG = (220, 220, 220), (20, 20, 24)
SGR = re.compile(r"\x1b\[([0-9;:]*)m")


def palette(index: int) -> tuple[int, int, int]:
    if index < 16:
        return BASE16[index]
    if index < 232:
        index -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return steps[index // 36], steps[(index // 6) % 6], steps[index % 6]
    grey = 8 + 10 * (index - 232)
    return grey, grey, grey


class Style:
    """The SGR state while walking a captured line."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.fg: tuple[int, int, int] | None = None
        self.bg: tuple[int, int, int] | None = None
        self.bold = self.italic = self.reverse = self.dim = False

    def apply(self, params: str) -> None:
        codes = [int(p) if p else 0 for p in re.split("[;:]", params)] if params else [0]
        i = 0
        while i < len(codes):
            code = codes[i]
            if code == 0:
                self.reset()
            elif code == 1:
                self.bold = True
            elif code == 2:
                self.dim = True
            elif code == 3:
                self.italic = True
            elif code == 7:
                self.reverse = True
            elif code == 22:
                self.bold = self.dim = False
            elif code == 23:
                self.italic = False
            elif code == 27:
                self.reverse = False
            elif code in (38, 48) and i + 1 < len(codes):
                if codes[i + 1] == 5 and i + 2 < len(codes):
                    colour, i = palette(codes[i + 2]), i + 2
                elif codes[i + 1] == 2 and i + 4 < len(codes):
                    colour, i = (codes[i + 2], codes[i + 3], codes[i + 4]), i + 4
                else:
                    colour = None
                if code == 38:
                    self.fg = colour
                else:
                    self.bg = colour
            elif code == 39:
                self.fg = None
            elif code == 49:
                self.bg = None
            elif 30 <= code <= 37:
                self.fg = palette(code - 30 + (8 if self.bold else 0))
            elif 40 <= code <= 47:
                self.bg = palette(code - 40)
            elif 90 <= code <= 97:
                self.fg = palette(code - 90 + 8)
            elif 100 <= code <= 107:
                self.bg = palette(code - 100 + 8)
            i += 1

    def colours(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        fg, bg = self.fg or DEFAULT_FG, self.bg or DEFAULT_BG
        if self.reverse:
            fg, bg = bg, fg
        if self.dim:
            fg = tuple((c + b) // 2 for c, b in zip(fg, bg, strict=True))  # type: ignore[assignment]
        return fg, bg


def render(capture: str, output: Path) -> None:
    font = ImageFont.truetype(FONT, FONT_SIZE)
    bold = ImageFont.truetype(FONT.replace(".ttf", "-Bold.ttf"), FONT_SIZE)
    italic = ImageFont.truetype(FONT.replace(".ttf", "-Oblique.ttf"), FONT_SIZE)
    cell_w = round(font.getlength("M"))
    cell_h = FONT_SIZE + 5
    pad = 12
    lines = capture.split("\n")[:ROWS]
    image = Image.new("RGB", (COLUMNS * cell_w + 2 * pad, ROWS * cell_h + 2 * pad), DEFAULT_BG)
    draw = ImageDraw.Draw(image)
    style = Style()
    for row, line in enumerate(lines):
        column, position = 0, 0
        for match in [*SGR.finditer(line), None]:
            end = match.start() if match else len(line)
            for char in line[position:end]:
                fg, bg = style.colours()
                x, y = pad + column * cell_w, pad + row * cell_h
                draw.rectangle([x, y, x + cell_w - 1, y + cell_h - 1], fill=bg)
                face = bold if style.bold else italic if style.italic else font
                draw.text((x, y + 2), char, font=face, fill=fg)
                column += 1
            if match:
                style.apply(match.group(1))
                position = match.end()
    image.save(output)


INIT_LUA = """
vim.opt.rtp:prepend(%(plugin)r)
vim.o.termguicolors = true
vim.o.number = true
vim.o.laststatus = 2
vim.o.showmode = true
require('replit_lsp').setup({
  cmd = %(cmd)s,
  cmd_env = { PYTHONPATH = %(root)r, HF_HUB_OFFLINE = '1' },
  cmd_cwd = %(root)r,
  debounce_ms = 50,
})
"""


def lua_list(items: list[str]) -> str:
    return "{ " + ", ".join(repr(item) for item in items) + " }"


def wait(what: str, check, timeout: float) -> object:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model-dir", type=Path, help="default: the demo model, else a tiny one")
    parser.add_argument("--output", type=Path, default=HERE / "ghost-text.png")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository the server runs")
    args = parser.parse_args()
    nvim = shutil.which(
        "nvim", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    )
    if not nvim or not shutil.which("tmux"):
        raise SystemExit("needs nvim and tmux on PATH")

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model_dir = args.model_dir
        if model_dir is None and (DEMO_DIR / "config.json").is_file():
            model_dir = DEMO_DIR
        if model_dir is None:
            sys.path.insert(0, str(args.root))
            from testkit.checkpoints import make_random_checkpoint

            model_dir = make_random_checkpoint(tmp / "tiny-mpt")
        cmd = [sys.executable, "-m", "lsp_server.cli", "--stdio", "--weight-path", str(model_dir)]
        cmd += ["--max-length", "256"]
        init = tmp / "init.lua"
        init.write_text(
            INIT_LUA % {"plugin": str(HERE), "cmd": lua_list(cmd), "root": str(args.root)}
        )
        source = tmp / "read_lines.py"
        source.write_text(BUFFER)
        socket = tmp / "nvim.sock"
        session = f"replit-lsp-shot-{os.getpid()}"
        nvim_cmd = [nvim, "--clean", "-n", "-i", "NONE", "-u", str(init), "--listen", str(socket)]
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", session, "-x", str(COLUMNS), "-y", str(ROWS),
             "env", "TERM=tmux-256color", "COLORTERM=truecolor", *nvim_cmd, str(source)],
            check=True,
        )  # fmt: skip
        try:
            wait("Neovim's socket", socket.exists, 30)
            editor = pynvim.attach("socket", path=str(socket))
            wait(
                "the model",
                lambda: editor.exec_lua(
                    """local c = require('replit_lsp').clients(0)[1]
                    if not c then return false end
                    local r = c:request_sync('replitLsp/status', vim.empty_dict(), 5000)
                    return r and r.result and r.result.state == 'ready'"""
                ),
                300,
            )
            editor.input("G")
            editor.input("o" + TYPED.replace("<", "<lt>").replace("\n", "<CR>"))
            wait(
                "ghost text",
                lambda: editor.exec_lua(
                    "return #vim.api.nvim_buf_get_extmarks(0, "
                    "require('replit_lsp.ghost').ns, 0, -1, {}) > 0"
                ),
                60,
            )
            time.sleep(0.5)  # let the UI draw it
            capture = subprocess.run(
                ["tmux", "capture-pane", "-p", "-e", "-t", session],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    render(capture, args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

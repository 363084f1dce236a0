"""Repository-level completion: does context from other files help the next line?

Installed packages stand in for repositories the bundled model never saw (it was trained on the
standard library). In each, lines inside function bodies that use a name defined at the top
level of another file of the same package (found with `ast`, independently of the server's
index) are held out. For each, the prompt is what an editor sends: the file up to that line and
the line's indentation, within the prompt budget; with context, the server's own workspace
context (the package as the workspace folder, the files the current file imports open in the
editor) goes ahead of it, within `--context-tokens`. Reported per configuration:

- name recall: the share of the held-out line's names from other files that appear anywhere
  in the prompt (an import line counts);
- definition recall: the share of those names whose definition (its first line) is in the
  prompt, which is what tells the model how to use them;
- next-line exact match and edit similarity (difflib's ratio) of the greedy completion's first
  line against the held-out line.

Usage: `python -m bench.repo_context --model demo [--lines-per-package 20]`.
Results: `bench/results/context/repo_context.json` and `.md`.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import io
import json
import random
import sysconfig
import time
import tokenize
from dataclasses import dataclass
from pathlib import Path

from lsp_server.context.provider import ContextOptions, SourceText, WorkspaceContext
from lsp_server.context.snippets import IDENTIFIER
from lsp_server.context.workspace import imported_files
from lsp_server.generation.local import LocalGenerator
from lsp_server.generation.sampling import GenerationParams
from lsp_server.generation.stops import StopStrings
from lsp_server.lsp.completion import prompt_budget
from lsp_server.lsp.prompt import build_prompt
from model.engine.engine import Engine
from model.engine.options import EngineOptions
from model.hub import resolve_model_dir

SITE = Path(sysconfig.get_paths()["purelib"])
PACKAGES = ["httpx", "starlette", "anyio", "h11", "click", "pygls", "cattrs", "uvicorn", "_pytest"]
MAX_NEW_TOKENS = 48


@dataclass(frozen=True)
class HeldOut:
    package: str
    path: Path
    line: int  # zero-based
    text: str  # the line, without its line break
    names: frozenset[str]  # its names defined at the top level of another file
    definitions: dict[str, frozenset[str]]  # each name's defining first lines, stripped


def top_level_names(tree: ast.Module, lines: list[str]) -> dict[str, str]:
    """Each top-level name and the first line of its definition, stripped."""
    names: dict[str, str] = {}
    for node in tree.body:
        first = lines[node.lineno - 1].strip()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names[node.name] = first
        elif isinstance(node, ast.Assign):
            names |= {t.id: first for t in node.targets if isinstance(t, ast.Name)}
    return names


def line_names(line: str) -> set[str]:
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return set()
    return {t.string for t in tokens if t.type == tokenize.NAME}


def body_lines(tree: ast.Module) -> set[int]:
    """Zero-based lines inside function bodies."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for statement in node.body:
                lines.update(range(statement.lineno - 1, (statement.end_lineno or 0)))
    return lines


def held_out_lines(package: str, count: int, rng: random.Random) -> list[HeldOut]:
    root = SITE / package
    trees = {}
    for path in sorted(root.rglob("*.py")):
        try:
            trees[path] = ast.parse(path.read_text())
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
    sources = {path: path.read_text().split("\n") for path in trees}
    defined = {path: top_level_names(tree, sources[path]) for path, tree in trees.items()}
    candidates = []
    for path, tree in trees.items():
        elsewhere: dict[str, set[str]] = {}
        for other, names in defined.items():
            for name, first in names.items():
                if other != path and name not in defined[path]:
                    elsewhere.setdefault(name, set()).add(first)
        lines = sources[path]
        for index in sorted(body_lines(tree)):
            text = lines[index]
            used = frozenset(line_names(text) & elsewhere.keys())
            if used and len(text.strip()) >= 12 and not text.strip().startswith(("#", '"')):
                firsts = {name: frozenset(elsewhere[name]) for name in used}
                candidates.append(HeldOut(package, path, index, text, used, firsts))
    return rng.sample(candidates, min(count, len(candidates)))


def edit_similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


class Completer:
    """Prompts as the language server builds them, completed by one engine."""

    def __init__(self, engine: Engine) -> None:
        self.generator = LocalGenerator(engine)
        self.budget = prompt_budget(engine.max_length, MAX_NEW_TOKENS)

    def prompt(self, text_before: str, header: str) -> list[int]:
        return build_prompt(text_before, self.generator.tokenizer, self.budget, header).ids

    def next_line(self, ids: list[int]) -> str:
        params = GenerationParams(max_new_tokens=MAX_NEW_TOKENS, top_k=1)
        with self.generator.stream_text(ids, params, stop=StopStrings(["\n"])) as stream:
            return stream.text()


def measure(model_dir: Path, lines_per_package: int, context_tokens: list[int]) -> dict:
    rng = random.Random(0)
    engine = Engine(EngineOptions(model_dir=model_dir, max_length=1024, max_cache_batch_size=1))
    completer = Completer(engine)
    configs = {"current file only": 0} | {f"context {n} tokens": n for n in context_tokens}
    totals = {
        name: {"recall": 0.0, "definitions": 0.0, "exact": 0, "similarity": 0.0} for name in configs
    }
    count = 0
    started = time.perf_counter()
    for package in PACKAGES:
        if not (SITE / package).is_dir():
            continue
        workspace = WorkspaceContext()
        workspace.set_folders([SITE / package], ())
        workspace.index.build(workspace.workspace)
        for held in held_out_lines(package, lines_per_package, rng):
            text = held.path.read_text()
            lines = text.split("\n")
            indent = held.text[: len(held.text) - len(held.text.lstrip())]
            before = "\n".join(lines[: held.line]) + "\n" + indent
            current = SourceText(held.path.as_uri(), held.path, text)
            opened = [
                SourceText(p.as_uri(), p, p.read_text())
                for p in sorted(imported_files(before, held.path, workspace.workspace))
            ]
            expected = held.text.strip()
            count += 1
            for name, tokens in configs.items():
                header = ""
                if tokens:
                    options = ContextOptions(tokens=min(tokens, completer.budget // 2))
                    block = workspace.choose(
                        current, before, opened, options, "python",
                        lambda t: len(engine.tokenizer.encode(t)),
                    )  # fmt: skip
                    header = block.text
                ids = completer.prompt(before, header)
                prompt = engine.tokenizer.decode(ids)
                seen = set(IDENTIFIER.findall(prompt))
                shown = {line.strip() for line in prompt.split("\n")}
                got = completer.next_line(ids).strip()
                totals[name]["recall"] += len(held.names & seen) / len(held.names)
                defined = [n for n in held.names if held.definitions[n] & shown]
                totals[name]["definitions"] += len(defined) / len(held.names)
                totals[name]["exact"] += got == expected
                totals[name]["similarity"] += edit_similarity(got, expected)
    rows = [
        {
            "configuration": name,
            "lines": count,
            "name_recall": t["recall"] / count,
            "definition_recall": t["definitions"] / count,
            "exact_match": t["exact"] / count,
            "edit_similarity": t["similarity"] / count,
        }
        for name, t in totals.items()
    ]
    return {
        "model": model_dir.name,
        "max_length": engine.max_length,
        "packages": [p for p in PACKAGES if (SITE / p).is_dir()],
        "seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
    }


def markdown(result: dict) -> str:
    lines = [
        f"# Repository-level next line: {result['model']}, {result['rows'][0]['lines']} held-out "
        f"lines from {', '.join(result['packages'])}",
        "",
        "| configuration | name recall | definition recall | exact match | edit similarity |",
        "|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['configuration']} | {row['name_recall']:.1%} | "
            f"{row['definition_recall']:.1%} | "
            f"{row['exact_match']:.1%} | {row['edit_similarity']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weight-path")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--lines-per-package", type=int, default=20)
    parser.add_argument("--context-tokens", type=int, nargs="+", default=[256, 480])
    parser.add_argument("--out", type=Path, default=Path("bench/results/context"))
    args = parser.parse_args()
    result = measure(
        resolve_model_dir(args.weight_path, args.model), args.lines_per_package, args.context_tokens
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "repo_context.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "repo_context.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()

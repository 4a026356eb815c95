"""Write a named section of BENCHMARKS.md, replacing that section's earlier version.

Every ``bin/bench-*`` script prints its figures and records them here between
``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` markers, with the command
that produced them. A file lock keeps concurrent scripts from losing sections.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from fewshot.atomic import atomic_write_text

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "BENCHMARKS.md"
HEADER = "# Benchmarks\n\nEvery section below is written by the script named in it; rerun that command to reproduce it.\n"


def command(script: str, argv: list[str] | None = None) -> str:
    """How a bench script was invoked, for its section: ``bin/<script>`` and its arguments (``argv``, else
    the process's own), shell-quoted."""
    args = sys.argv[1:] if argv is None else list(argv)
    return f"bin/{script}" + (" " + shlex.join(args) if args else "")


def _path(path: str | os.PathLike | None) -> Path:
    return Path(path or os.environ.get("FEWSHOT_BENCHMARKS_MD", DEFAULT_PATH))


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"


def update_section(name: str, markdown: str, path: str | os.PathLike | None = None) -> Path:
    """Replace (or append) section ``name`` of BENCHMARKS.md with ``markdown``."""
    path = _path(path)
    begin, end = _markers(name)
    block = f"{begin}\n{markdown.strip()}\n{end}"
    lock_path = path.with_name(f".{path.name}.lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = path.read_text() if path.exists() else HEADER
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
        text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
        atomic_write_text(path, text)
    return path


def read_section(name: str, path: str | os.PathLike | None = None) -> str:
    """The text between section ``name``'s markers in BENCHMARKS.md ("" when there is none)."""
    path = _path(path)
    begin, end = _markers(name)
    text = path.read_text() if path.exists() else ""
    m = re.search(re.escape(begin) + r"(.*?)" + re.escape(end), text, re.S)
    return m.group(1) if m else ""


def publish(name: str, markdown: str, write: bool = True) -> None:
    """Print a section's Markdown and, unless ``write`` is false, record it in BENCHMARKS.md."""
    print(markdown)
    if write:
        print(f"wrote section {name!r} of {update_section(name, markdown)}", file=sys.stderr)


def publish_rows(name: str, script: str, rows: Iterable[dict], markdown: Callable[[list[dict], str], str],
                 argv: list[str] | None = None, write: bool = True) -> list[dict]:
    """Print each of ``rows`` as a JSON line as it comes (a generator measures one at a time), then
    :func:`publish` section ``name`` as ``markdown(rows, command)``, ``command`` being how ``bin/<script>``
    was invoked (:func:`command`). Returns the rows."""
    done = []
    for row in rows:
        print(json.dumps(row), flush=True)
        done.append(row)
    publish(name, markdown(done, command(script, argv)), write)
    return done

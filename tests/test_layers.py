"""The package's layering: the import-linter contract in setup.cfg holds, and no module imports itself back
through others (imports inside functions count: grimp reads every import statement)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return out


def test_no_import_cycles():
    assert _cycles(grimp.build_graph("fewshot", include_external_packages=False)) == []


def test_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    pkg = tmp_path / "cyclic"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from . import b\n")  # inside a function: still an import
    (pkg / "b.py").write_text("from . import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _cycles(grimp.build_graph("cyclic")) == [["cyclic.a", "cyclic.b"]]


def test_layers_contract_is_kept():
    proc = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                           "sys.exit(lint_imports_command())"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 kept, 0 broken" in proc.stdout


def test_layers_contract_catches_an_upward_import(tmp_path):
    """The same contract on a copy of the package with one learner importing the CLI must break."""
    import shutil

    copy = tmp_path / "fewshot"
    shutil.copytree(ROOT / "fewshot", copy, ignore=shutil.ignore_patterns("__pycache__", "splits"))
    with open(copy / "learners" / "protonet.py", "a") as f:
        f.write("\n\ndef _bad():\n    from ..cli import main  # noqa: F401\n")
    shutil.copy(ROOT / "setup.cfg", tmp_path / "setup.cfg")
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                           "sys.exit(lint_imports_command())"], cwd=tmp_path, capture_output=True, text=True,
                          env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "fewshot.learners.protonet -> fewshot.cli" in proc.stdout

"""bin/bench-report CONFIG [fewshot bench options]: run `fewshot bench --config CONFIG` and record its
report.md as the BENCHMARKS.md section named after the config (e.g. bench-frozen-text)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks_md import update_section

from fewshot.benchmark import load_bench_config


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        print("usage: bin/bench-report configs/NAME.toml [--out DIR] [--fresh] [--quiet]", file=sys.stderr)
        return 2
    config, rest = argv[0], argv[1:]
    cfg = load_bench_config(config)
    out = Path(rest[rest.index("--out") + 1]) if "--out" in rest else Path("runs") / "bench" / cfg.name
    if "--out" not in rest:
        rest += ["--out", str(out)]
    proc = subprocess.run([sys.executable, "-m", "fewshot.cli", "bench", "--config", config, *rest])
    if proc.returncode:
        return proc.returncode
    print(f"recorded in {update_section(cfg.name, (out / 'report.md').read_text())}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

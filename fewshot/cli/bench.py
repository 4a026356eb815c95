"""``fewshot bench``: run a benchmark grid from a config, or check a saved report."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from .app import main
from .options import writable_folder


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Benchmark grid (e.g. configs/bench-ci.toml).")
@click.option("--out", type=click.Path(file_okay=False), callback=writable_folder, default=None,
              help="Folder for report.json, report.md and plots (default runs/bench/<name>).")
@click.option("--check", "check_dir", type=click.Path(file_okay=False), default=None,
              help="Rerun the config recorded in DIR/report.json and compare; exit code 1 on a mismatch.")
@click.option("--fresh", is_flag=True, help="Recompute every cell instead of continuing a saved report.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def bench(config_path, out, check_dir, fresh, quiet):
    """Score datasets x learners x way x shot on frozen episodes; write a report with 95% CIs and plots.

    Episodes come from episodes/ (written on first use from the config's seed).
    Finished cells are saved as they complete: after Ctrl-C, the same command
    continues where it stopped.
    """
    from ..benchmark import check_report, load_bench_config, run_benchmark

    if check_dir:
        if config_path or out:
            raise click.UsageError("--check DIR reruns the config recorded in DIR; do not combine it with "
                                   "--config or --out")
        checks = check_report(check_dir, progress=not quiet)
        for c in checks:
            click.echo(f"{'MATCH' if c.ok else 'DIFFER'}  {c.key}  {c.how}: recorded {100 * c.recorded:.2f}%, "
                       f"rerun {100 * c.rerun:.2f}% ({c.message})")
        bad = sum(not c.ok for c in checks)
        click.echo(f"{len(checks) - bad} of {len(checks)} cells match")
        sys.exit(1 if bad else 0)
    if not config_path:
        raise click.UsageError("give --config FILE to run a benchmark, or --check DIR to verify a saved one")
    cfg = load_bench_config(config_path)
    out = Path(out or Path("runs") / "bench" / cfg.name)
    command = "fewshot bench --config " + shlex.quote(str(config_path)) + " --out " + shlex.quote(str(out))
    try:
        report = run_benchmark(cfg, out, progress=not quiet, resume=not fresh, command=command)
    except KeyboardInterrupt:
        click.echo(f"interrupted: finished cells are saved in {out / 'report.json'}; rerun the same command "
                   "to continue", err=True)
        sys.exit(130)
    click.echo((out / "report.md").read_text())
    click.echo(f"wrote {out / 'report.json'}, {out / 'report.md'} and plots ({report.wall_time_s:.1f} s)")

"""``fewshot episodes make``: freeze a set of episodes to a JSONL file."""
from __future__ import annotations

import click

from .app import load_run_config, main
from .options import DATA_MAPPING, EPISODE_MAPPING, data_options, episode_options


@main.group()
def episodes() -> None:
    """Frozen episode files, so every learner is scored on the same tasks."""


@episodes.command("make")
@data_options
@episode_options
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML/YAML config; flags override it.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="JSONL file to write.")
@click.pass_context
def make(ctx, config_path, out, **_):
    """Sample episodes and write them to OUT (a header line, then one episode per line)."""
    from ..episodes import save_episodes
    from ..experiment import build_dataset, build_episodes

    cfg = load_run_config(ctx, config_path, {**DATA_MAPPING, **EPISODE_MAPPING})
    dataset = build_dataset(cfg)
    eps, sampler = build_episodes(cfg, dataset)
    meta = {"dataset": dataset.name, "dataset_fingerprint": dataset.fingerprint(),
            "classes": cfg.episodes.classes, **sampler}
    digest = save_episodes(out, eps, meta)
    click.echo(f"wrote {len(eps)} episodes to {out} (sha256 {digest[:16]})")

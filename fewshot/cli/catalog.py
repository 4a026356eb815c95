"""``fewshot datasets``, ``fewshot encoders``, ``fewshot learners``: what fewshot knows by name."""
from __future__ import annotations

import click

from .app import main


@main.command()
def datasets() -> None:
    """List the named datasets (read from --data-root / $FEWSHOT_DATA, except the embedded wn33)."""
    from ..datasets import DEFAULT_DATASET, list_datasets

    for name in list_datasets():
        click.echo(f"{name}{'  (default, embedded)' if name == DEFAULT_DATASET else ''}")


@main.command()
def encoders() -> None:
    """List the registered encoders (any transformers model folder works too)."""
    from ..encoders import list_encoders

    for name in list_encoders():
        click.echo(name)


@main.command()
def learners() -> None:
    """List the learners."""
    from ..learners import list_learners

    for name in list_learners():
        click.echo(name)

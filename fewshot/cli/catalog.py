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
    """List the learners, each with the settings --learner-option KEY=VALUE takes and their defaults."""
    import dataclasses

    from ..learners import learner_class, list_learners

    for name in list_learners():
        defaults = learner_class(name).config_class()
        keys = ", ".join(f"{f.name}={getattr(defaults, f.name)!r}" for f in dataclasses.fields(defaults) if f.init)
        click.echo(f"{name}: {keys}" if keys else name)

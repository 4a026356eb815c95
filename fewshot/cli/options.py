"""Click options shared by commands that pick a dataset and episodes."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

DATA_MAPPING = {
    "dataset": "data.dataset",
    "data_root": "data.data_root",
    "text_column": "data.text_column",
    "label_column": "data.label_column",
}
EPISODE_MAPPING = {
    "way": "episodes.way",
    "shot": "episodes.shot",
    "query": "episodes.query",
    "n_episodes": "episodes.episodes",
    "seed": "episodes.seed",
    "sampler": "episodes.sampler",
    "classes": "episodes.classes",
}


def data_options(f):
    for opt in reversed([
        click.option("--dataset", default=None, help="Dataset name (see `fewshot datasets`) or a path to a "
                     "CSV/TSV/JSONL file, an .npz file or a folder of class subfolders. Default: wn33."),
        click.option("--data-root", default=None, envvar="FEWSHOT_DATA", type=click.Path(file_okay=False),
                     help="Folder holding the named datasets (default: ../shared/data beside the project)."),
        click.option("--text-column", default=None, help="Text column of a CSV/TSV/JSONL file (default: text)."),
        click.option("--label-column", default=None, help="Label column of a CSV/TSV/JSONL file (default: label)."),
    ]):
        f = opt(f)
    return f


def episode_options(f):
    for opt in reversed([
        click.option("--way", type=int, default=None, help="Classes per episode (default 5)."),
        click.option("--shot", type=int, default=None, help="Support examples per class (default 1)."),
        click.option("--query", type=int, default=None, help="Query examples per class (default 15)."),
        click.option("--episodes", "n_episodes", type=int, default=None, help="Number of episodes (default 600; with --episodes-file: the file's first N, default all of them)."),
        click.option("--seed", type=int, default=None, help="Episode seed (default 0)."),
        click.option("--sampler", type=click.Choice(["fixed", "variable", "minimum-including"]), default=None,
                     help="fixed N-way K-shot (NER: Few-NERD's K~2K), Meta-Dataset's variable-way variable-shot, "
                          "or (NER) Hou et al.'s minimum-including K-shot (default fixed)."),
        click.option("--classes", type=click.Choice(["train", "val", "test", "all"]), default=None,
                     help="Which class split episodes come from (default test; `all` for your own data)."),
    ]):
        f = opt(f)
    return f


def learner_option(f):
    """``--learner-option KEY=VALUE`` (repeatable): any field of the chosen learner's own config class.

    The learner declares its options (its ``config_class``); the CLI knows none of them by name, so a new
    learner's settings reach ``fewshot run`` and ``fewshot train`` with no new flag. Values are coerced by the
    field's type and an unknown key is refused with the learner's valid keys.
    """
    return click.option("--learner-option", "-L", "learner_option", multiple=True, metavar="KEY=VALUE",
                        callback=_key_values,
                        help="A setting of the learner's own config (repeatable), e.g. -L transductive=3 for "
                        "protonet or -L inner_steps=5 for maml; see `fewshot learners` for each learner's keys.")(f)


def _key_values(ctx: click.Context, param: click.Parameter, values) -> dict:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE (e.g. transductive=3), got {item!r}", ctx, param)
        out[key.strip()] = value.strip()
    return out


def writable_folder(ctx: click.Context, param: click.Parameter, value):
    """``--out`` callback: refuse, before any work starts, a folder that cannot be created or written."""
    if value is None:
        return value
    probe = Path(value)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent  # the nearest existing ancestor: where the folder would be created
    if not probe.is_dir():
        raise click.BadParameter(f"{value!r} cannot be created: {str(probe)!r} is a file; choose another folder",
                                 ctx, param)
    try:
        fd, name = tempfile.mkstemp(prefix=".fewshot-write-test-", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise click.BadParameter(f"{value!r}: cannot write in {str(probe)!r} ({exc.strerror or exc}); choose a "
                                 "folder you can write to", ctx, param) from exc
    return value

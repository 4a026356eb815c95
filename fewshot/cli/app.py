"""The ``fewshot`` click group and the config-from-flags helpers every command uses."""
from __future__ import annotations

import click

from .. import __version__


class FewShotGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (ValueError, ImportError, FileNotFoundError) as exc:
            raise click.UsageError(str(exc), ctx) from exc


# Commands that answer one query at a time: on a loaded 2-core machine one torch thread embedded a single
# query 15x faster than two (issue 23's measurement), so they default to 1 thread; the others (run, train,
# bench: batches) keep torch's default, every core. `serve` answers requests one at a time too.
LATENCY_COMMANDS = {"index", "serve"}


@click.group(cls=FewShotGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fewshot")
@click.option("--threads", type=click.IntRange(min=1), default=None, envvar="FEWSHOT_THREADS",
              help="CPU threads for torch and faiss ($FEWSHOT_THREADS). Default: 1 for `fewshot index` and "
              "`fewshot serve` (one query at a time), every core for the others.")
@click.pass_context
def main(ctx: click.Context, threads: int | None) -> None:
    """Few-shot learning: sample N-way K-shot episodes, adapt a pretrained encoder, report honest numbers."""
    if threads is None and ctx.invoked_subcommand in LATENCY_COMMANDS:
        threads = 1
    if threads is not None and ctx.invoked_subcommand is not None:
        from ..device import set_threads

        set_threads(threads)


def apply_overrides(ctx: click.Context, base: dict, mapping: dict[str, str]) -> dict:
    """Set ``base[path]`` from every flag the user actually gave (command line or env var).

    ``mapping`` maps click parameter names to dotted config paths, e.g.
    ``{"way": "episodes.way"}``. Flags left at their default never override a config file.
    """
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for param, path in mapping.items():
        value = ctx.params.get(param)
        source = ctx.get_parameter_source(param)
        if value is None or source not in (click.core.ParameterSource.COMMANDLINE,
                                           click.core.ParameterSource.ENVIRONMENT):
            continue
        node = out
        *parents, leaf = path.split(".")
        for p in parents:
            if isinstance(node.get(p), str):  # e.g. learner = "protonet" in the file
                node[p] = {"name": node[p]}
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def given_flags(ctx: click.Context, params: list[str]) -> list[str]:
    """The flags (``--way``) of those of ``params`` the user actually gave (command line or env var), even at
    their default values, as :func:`apply_overrides` tells them apart."""
    given = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)
    opts = {p.name: p.opts[0] for p in ctx.command.params}
    return [opts[p] for p in params if ctx.params.get(p) is not None and ctx.get_parameter_source(p) in given]


def load_run_config(ctx: click.Context, config_path: str | None, mapping: dict[str, str]):
    """Config file (if any), then flags, then validation: a FewShotConfig."""
    from ..config import FewShotConfig, load_config

    base = load_config(config_path) if config_path else {}
    d = apply_overrides(ctx, base, mapping)
    options = ctx.params.get("learner_option") or {}
    if options:
        learner = d.get("learner")
        learner = {"name": learner} if isinstance(learner, str) else dict(learner or {})
        if "name" not in learner and d.get("checkpoint"):  # -L without --learner: the checkpoint's own learner's
            from ..checkpoint import read_record

            learner["name"] = read_record(d["checkpoint"])["learner"]
        d["learner"] = {**learner, **options}
    return FewShotConfig.from_dict(d)

"""``fewshot run``: score a learner on N-way K-shot test episodes."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..index import METRICS
from .app import given_flags, load_run_config, main
from .options import (
    DATA_MAPPING,
    EPISODE_MAPPING,
    data_options,
    episode_options,
    learner_option,
    writable_folder,
)

RUN_MAPPING = {
    **DATA_MAPPING,
    **EPISODE_MAPPING,
    "episodes_file": "episodes.episodes_file",
    "class_names": "episodes.class_names",
    "encoder": "encoder",
    "pooling": "encoder_options.pooling",
    "precision": "encoder_options.precision",
    "learner": "learner.name",
    "metric": "learner.metric",
    "transductive": "learner.transductive",
    "finetune_steps": "learner.finetune_steps",
    "finetune_lr": "learner.finetune_lr",
    "device": "device",
    "checkpoint": "checkpoint",
    "ensemble": "ensemble",
    "batch_size": "batch_size",
}


@main.command()
@data_options
@episode_options
@click.option("--episodes-file", type=click.Path(dir_okay=False), default=None,
              help="Score the episodes of this file (from `fewshot episodes make`): all of them, or the "
              "first --episodes N.")
@click.option("--class-names/--no-class-names", default=None,
              help="Add each class's description (its name, or name and definition, as the dataset gives it: "
              "clinc150, fewrel*) to its support set as one more example; tagged data: each type's name (read "
              "from the type: GetWeather:timeRange -> 'time Range') as one more support sentence. Inductive (no "
              "query is used) but side information: report it apart. Default off.")
@click.option("--encoder", default=None, help="Encoder name (minilm, mpnet, conv4, mobilenetv2) or a transformers "
              "model folder. Default: minilm for text, mobilenetv2 for images.")
@click.option("--pooling", type=click.Choice(["mean", "entities"]), default=None,
              help="Text encoders: mean (default) pools all tokens; entities also pools the tokens of the "
              "head and tail entities of entity-marked texts ([E1] .. [/E1], [E2] .. [/E2], as the FewRel "
              "datasets give).")
@click.option("--precision", type=click.Choice(["fp32", "int8"]), default=None,
              help="Text encoders: fp32 (default), or int8 (dynamic quantization of the linear layers; CPU only, "
              "frozen encoders: see BENCHMARKS.md \"text-encoders-precision\").")
@click.option("--learner", default=None, help="Learner (default protonet; `fewshot learners` lists them).")
@learner_option
@click.option("--metric", type=click.Choice(METRICS), default=None,
              help="Prototype metric. Default: the encoder's own (cosine for text encoders, euclidean for conv4 and "
              "mobilenetv2).")
# protonet's settings by their older spellings, kept so recorded commands (BENCHMARKS.md) still run; hidden
# from --help: a learner's settings are given with --learner-option (-L), which the learner's config defines.
@click.option("--transductive", type=int, default=None, hidden=True, help="Same as -L transductive=N.")
@click.option("--finetune-steps", type=int, default=None, hidden=True, help="Same as -L finetune_steps=N.")
@click.option("--finetune-lr", type=float, default=None, hidden=True, help="Same as -L finetune_lr=X.")
@click.option("--checkpoint", type=click.Path(file_okay=False), default=None,
              help="A folder written by `fewshot train`.")
@click.option("--ensemble", type=click.Path(file_okay=False), multiple=True,
              help="Another checkpoint folder scoring with --checkpoint's (repeatable): every member adapts to the "
              "support set on its own (learner options apply to each) and a task's scores are the mean of their "
              "log-probabilities. Embeds each item once per member.")
@click.option("--device", default=None, help="auto (default), cpu or cuda.")
@click.option("--batch-size", type=int, default=None, help="Embedding batch size (default 128).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML/YAML config; flags override it.")
@click.option("--out", type=click.Path(file_okay=False), callback=writable_folder, default=None,
              help="Also write run.json and the resolved config.json to this folder.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object to stdout.")
@click.option("--report", "class_table", is_flag=True,
              help="Also give precision, recall, F1 and support per class (pooled over the episodes' queries) "
                   "and the costliest confusions; with --json under the key class_report.")
@click.option("--no-cache", is_flag=True, help="Re-embed every episode (to measure what the cache saves).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.pass_context
def run(ctx, config_path, out, as_json, class_table, no_cache, quiet, **_):
    """Sample episodes from the test classes, adapt, and report accuracy with its 95% interval."""
    from ..experiment import run_experiment

    cfg = load_run_config(ctx, config_path, RUN_MAPPING)
    asked = given_flags(ctx, [k for k, path in RUN_MAPPING.items() if path.startswith("episodes.")])
    report = run_experiment(cfg, progress=not quiet, cache=not no_cache, predictions=class_table, asked=asked)
    d = report.to_dict()
    ner, joint = d.get("task") == "ner", d.get("task") == "joint"
    table = report.result.class_report() if class_table and not (ner or joint) else None
    if table is not None:
        d["class_report"] = table.to_dict()
    if class_table and (ner or joint):
        d["type_report"] = report.result.per_type()
    if class_table and joint and hasattr(report.result, "per_intent"):  # not pooled over episodes' own intents
        d["intent_report"] = report.result.per_intent()
    if out:
        from ..atomic import atomic_write_text

        Path(out).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(out) / "run.json", json.dumps(d, indent=2, sort_keys=True) + "\n")
        cfg.save(Path(out) / "config.json")
    if as_json:
        d.pop("config")
        click.echo(json.dumps(d, sort_keys=True))
        return
    if ner:
        return _echo_tagging(d)
    if joint:
        return _echo_joint(d)
    shape = f"{d['way']}-way {d['shot']}-shot" if d["sampler"] != "variable" else "variable-way variable-shot"
    if d["class_names"]:
        shape += " + class names"
    click.echo(
        f"{d['dataset']} {shape} ({d['query']} queries/class), {d['learner']} on {d['encoder']}: "
        f"accuracy {100 * d['accuracy_mean']:.2f}% +- {100 * d['accuracy_ci95']:.2f}% (95% CI) "
        f"over {d['episodes']} episodes, seed {d['seed']}, {d['elapsed_s']:.1f} s "
        f"({d['embedded_examples']} examples embedded)"
    )
    if table is not None:
        click.echo(f"\nper class, over the {table.n} queries of all episodes:\n{table.to_text()}")


def _echo_tagging(d: dict) -> None:
    """``fewshot run`` on NER data: span F1 with its bootstrap interval; with --report the per-type table."""
    click.echo(
        f"{d['dataset']} {d['way']}-way {d['shot']}~{2 * d['shot']}-shot NER"
        f"{' + type names' if d['class_names'] else ''}, {d['learner']} on {d['encoder']}: "
        f"span F1 {100 * d['f1']:.2f}% (95% CI {100 * d['f1_ci95_low']:.2f}-{100 * d['f1_ci95_high']:.2f}, "
        f"bootstrap over episodes), precision {100 * d['precision']:.2f}%, recall {100 * d['recall']:.2f}% "
        f"over {d['episodes']} episodes, seed {d['seed']}, {d['elapsed_s']:.1f} s "
        f"({d['embedded_examples']} sentences embedded)"
    )
    if "type_report" in d:
        click.echo("\nper type (pooled over episodes): precision recall f1 gold")
        for t, r in d["type_report"].items():
            click.echo(f"  {t:45s} {100 * r['precision']:6.2f} {100 * r['recall']:6.2f} {100 * r['f1']:6.2f} "
                       f"{r['gold']:6d}")


def _echo_joint(d: dict) -> None:
    """``fewshot run`` on joint data: the three figures with their bootstrap intervals; with --report the tables."""
    figures = ", ".join(f"{name} {100 * d[key]:.2f}% ({100 * d[key + '_ci95_low']:.2f}-{100 * d[key + '_ci95_high']:.2f})"
                        for name, key in (("intent accuracy", "intent_accuracy"), ("slot F1", "slot_f1"),
                                          ("exact match", "exact_match")))
    if "part" in d:
        click.echo(f"{d['dataset']} {d['part']} part ({d['sentences']} sentences), {d['learner']} on {d['encoder']}: "
                   f"{figures} (95% CI, bootstrap over sentences), {d['elapsed_s']:.1f} s")
    else:  # few-shot joint episodes
        click.echo(f"{d['dataset']} {d['way']}-way {d['shot']}-shot joint episodes ({d['query']} queries/intent), "
                   f"{d['learner']} on {d['encoder']}: {figures} (95% CI, bootstrap over episodes) over "
                   f"{d['episodes']} episodes, seed {d['seed']}, {d['elapsed_s']:.1f} s")
    if "intent_report" in d:
        click.echo("\nper intent: n accuracy precision exact-match")
        for t, r in d["intent_report"].items():
            click.echo(f"  {t:30s} {r['n']:5d} {100 * r['accuracy']:6.2f} {100 * r['precision']:6.2f} "
                       f"{100 * r['exact_match']:6.2f}")
    if "type_report" in d:
        click.echo("\nper slot type: precision recall f1 gold")
        for t, r in d["type_report"].items():
            click.echo(f"  {t:30s} {100 * r['precision']:6.2f} {100 * r['recall']:6.2f} {100 * r['f1']:6.2f} "
                       f"{r['gold']:6d}")

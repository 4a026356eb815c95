"""``fewshot train``: meta-train (or pretrain) a learner on a dataset's train classes.

Runs under ``torchrun --nproc-per-node N -m fewshot.cli train ...`` too: each
process draws different episodes and rank 0 writes the checkpoint.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..index import METRICS
from .app import load_run_config, main
from .options import DATA_MAPPING, learner_option, writable_folder

TRAIN_MAPPING = {
    **DATA_MAPPING,
    "encoder": "encoder",
    "pooling": "encoder_options.pooling",
    "learner": "learner.name",
    "metric": "learner.metric",
    "trainable": "learner.trainable",
    "device": "device",
    "steps": "train.steps",
    "eval_every": "train.eval_every",
    "patience": "train.patience",
    "lr": "train.lr",
    "head_lr": "train.head_lr",
    "weight_decay": "train.weight_decay",
    "warmup": "train.warmup",
    "train_way": "train.train_way",
    "train_shot": "train.train_shot",
    "train_query": "train.train_query",
    "tag_episodes": "train.tag_episodes",
    "batch_size": "train.batch_size",
    "val_way": "train.val_way",
    "val_shot": "train.val_shot",
    "val_query": "train.val_query",
    "val_episodes": "train.val_episodes",
    "seed": "train.seed",
    "augment": "train.augment",
    "rotations": "train.rotations",
    "class_names": "train.class_names",
    "include_val": "train.include_val",
}


@main.command()
@click.option("--learner", default=None, help="Learner (default protonet; `fewshot learners` lists them).")
@learner_option
@click.option("--dataset", default=None, help="Dataset name or path (its train classes train, val classes validate).")
@click.option("--data-root", default=None, envvar="FEWSHOT_DATA", type=click.Path(file_okay=False),
              help="Folder holding the named datasets (default: ../shared/data beside the project).")
@click.option("--text-column", default=None, help="Text column of a CSV/TSV/JSONL file.")
@click.option("--label-column", default=None, help="Label column of a CSV/TSV/JSONL file.")
@click.option("--out", required=True, type=click.Path(file_okay=False), callback=writable_folder,
              help="Folder for the best checkpoint, the resume state and train_log.jsonl.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML/YAML config (e.g. configs/huffpost-protonet-5w1s.toml); flags override it.")
@click.option("--encoder", default=None, help="Encoder name or transformers model folder (default by modality).")
@click.option("--pooling", type=click.Choice(["mean", "entities"]), default=None,
              help="Text encoders: mean (default) pools all tokens; entities also pools the tokens of the "
              "head and tail entities of entity-marked texts ([E1] .. [/E1], [E2] .. [/E2], as the FewRel "
              "datasets give).")
@click.option("--metric", type=click.Choice(METRICS), default=None,
              help="protonet metric. Default: the encoder's own (cosine for text encoders).")
@click.option("--trainable", default=None, help="What of the encoder trains: full, last:K, lora, bitfit, none.")
@click.option("--steps", type=int, default=None, help="Training steps (episodes or batches; default 500).")
@click.option("--eval-every", type=int, default=None, help="Validate every N steps (default 50).")
@click.option("--patience", type=int, default=None, help="Stop after N validations without improvement (0: never).")
@click.option("--lr", type=float, default=None, help="Encoder learning rate (default 2e-5).")
@click.option("--head-lr", type=float, default=None, help="Learning rate of the learner's own parameters.")
@click.option("--weight-decay", type=float, default=None, help="AdamW weight decay (default 0.01).")
@click.option("--warmup", type=int, default=None, help="Linear warm-up steps (default 0).")
@click.option("--train-way", type=int, default=None, help="Classes per training episode (default 5).")
@click.option("--train-shot", type=int, default=None, help="Support examples per class in training (default 1).")
@click.option("--train-query", type=int, default=None, help="Queries per class in training (default 5).")
@click.option("--tag-episodes", type=click.Choice(["fewnerd", "domain"]), default=None,
              help="Tagged data: fewnerd (N-way K~2K episodes, default) or domain (every type of one domain, "
              "at least K of each: Hou et al. 2020's SNIPS episodes; --train-way/--val-way unused).")
@click.option("--batch-size", type=int, default=None, help="Batch size of supervised pretraining (finetune).")
@click.option("--val-way", type=int, default=None, help="Way of the validation episodes (default 5).")
@click.option("--val-shot", type=int, default=None, help="Shot of the validation episodes (default 1).")
@click.option("--val-query", type=int, default=None, help="Queries per class in validation (default 15).")
@click.option("--val-episodes", type=int, default=None, help="Number of validation episodes (default 100).")
@click.option("--seed", type=int, default=None, help="Training seed (default 0).")
@click.option("--class-names/--no-class-names", default=None,
              help="Episodic learners: each class's description (clinc150, fewrel*; tagged data: each type's "
              "name) joins the support set of every training and validation episode, as `fewshot run "
              "--class-names` adds it. Default off.")
@click.option("--include-val/--no-include-val", default=None,
              help="A final model: the val classes train too, nothing validates and the last step is the "
              "checkpoint. Fix --steps first with a validated run (its best step). Default off.")
@click.option("--augment/--no-augment", default=None, help="Augment training items (text: token deletion, "
              "swap, masking; images: affine jitter).")
@click.option("--rotations/--no-rotations", default=None,
              help="Images: add 90/180/270-degree rotations of each train class as new classes.")
@click.option("--device", default=None, help="auto (default), cpu or cuda.")
@click.option("--from-index", "from_index", type=click.Path(file_okay=False, exists=True), default=None,
              help="Train on the classes and stored support texts (corrections included) of this support index "
              "instead of --dataset, starting from the index's encoder; a held-out share of its classes validates.")
@click.option("--val-share", type=float, default=0.2, show_default=True,
              help="With --from-index: the share of the index's classes that validate (at least 2).")
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --out (its saved config is used; "
              "--steps and --patience may change).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def train(ctx, config_path, out, resume, quiet, from_index, val_share, **_):
    """Train a learner on the train classes, validating on the val classes; writes OUT.

    With --from-index DIR: on the classes of a support index (`fewshot index`), whose
    checkpoint then re-embeds it with `fewshot index rebuild DIR --checkpoint OUT`.
    """
    from ..checkpoint import check_out_folder
    from ..config import FewShotConfig
    from ..distributed import init_distributed, shutdown
    from ..experiment import build_dataset, build_learner
    from ..learners import default_learner, learner_config
    from ..training import meta_train

    cfg = load_run_config(ctx, config_path, TRAIN_MAPPING)
    if cfg.ensemble:
        raise ValueError(f"the config's ensemble {cfg.ensemble} scores several checkpoints together and is not "
                         "trained; train each member on its own, then `fewshot run --checkpoint A --ensemble B`")
    out_dir = Path(out)
    check_out_folder(out_dir, "--out")  # before the dataset and the encoder are loaded
    if from_index:
        if resume:
            raise ValueError("--resume does not work with --from-index (the index may have changed since); start "
                             "the run again without --resume")
        if cfg.train.include_val:
            raise ValueError("--include-val does not work with --from-index: the index's held-out classes are "
                             "its only validation; drop --include-val")
        given = [f"--{k.replace('_', '-')}" for k in ("dataset", "encoder")
                 if ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE]
        if given or cfg.checkpoint:
            raise ValueError(f"--from-index trains on the index's texts from the index's encoder; drop "
                             f"{', '.join(given) or 'the checkpoint of --config'}")
        _train_from_index(cfg, from_index, val_share, out_dir, quiet)
        return
    if resume:
        saved = out_dir / "config.json"
        if not saved.is_file():
            raise ValueError(f"--resume: {saved} does not exist; start without --resume")
        d = json.loads(saved.read_text())
        d.pop("result", None)
        for key in ("steps", "patience"):
            if ctx.get_parameter_source(key) == click.core.ParameterSource.COMMANDLINE:
                d.setdefault("train", {})[key] = ctx.params[key]
        cfg = FewShotConfig.from_dict(d)
    rank, world = init_distributed(cfg.device)
    try:
        dataset = build_dataset(cfg, training=True)
        default = default_learner(dataset.task)
        if not cfg.learner_named and cfg.learner.name != default:  # joint data: the joint learner
            cfg.learner = learner_config(default)
        learner = build_learner(cfg, dataset, seed=cfg.train.seed)
        metrics = meta_train(learner, dataset, cfg.train, out_dir=out_dir, resume=resume,
                             run_config=cfg.to_dict(), progress=not quiet and rank == 0)
    finally:
        shutdown()
    if rank == 0:
        validated = (f"trained on the train and val classes, not validated; checkpoint of step {metrics['best_step']}"
                     if cfg.train.include_val else
                     f"best validation {learner.selection_metric} {100 * metrics['best_val_accuracy']:.2f}% at step "
                     f"{metrics['best_step']} ({len(dataset.part_ids('val'))} val sentences held out of the training "
                     f"data; score the test part with `fewshot run --dataset {cfg.data.dataset} --checkpoint {out_dir}`)"
                     if dataset.task == "joint" else
                     f"best validation span F1 {100 * metrics['best_val_accuracy']:.2f}% at step "
                     f"{metrics['best_step']} ({tag_shape(cfg, dataset)}, {cfg.train.val_episodes} episodes of the "
                     f"val types; score the test types with `fewshot run --dataset {cfg.data.dataset} --checkpoint "
                     f"{out_dir}{tag_run_flags(cfg, dataset)}`)"
                     if dataset.task == "ner" else
                     f"best validation accuracy {100 * metrics['best_val_accuracy']:.2f}% at step "
                     f"{metrics['best_step']} ({cfg.train.val_way}-way {cfg.train.val_shot}-shot, "
                     f"{cfg.train.val_episodes} val episodes)")
        click.echo(
            f"{cfg.learner.name} on {dataset.name}: {validated}; "
            f"{metrics['steps']} steps in {metrics['train_time_s']:.1f} s"
            + (" (stopped early)" if metrics["stopped_early"] else "")
            + (f" on {world} processes" if world > 1 else "") + f"; checkpoint in {out_dir}"
        )



def _train_from_index(cfg, index_dir: str, val_share: float, out_dir: Path, quiet: bool) -> None:
    """``fewshot train --from-index``: the index's support texts (curation.training_data) -> meta_train."""
    from ..experiment import build_learner
    from ..learners import learner_class
    from ..support import curation
    from ..training import meta_train

    t = cfg.train
    episodic = learner_class(cfg.learner.name).train_mode == "episodic"
    data = curation.training_data(index_dir, t, episodic, val_share)
    if data.left_out:
        shown = ", ".join(f"{c!r} ({n})" for c, n in data.left_out[:10]) + (", ..." if len(data.left_out) > 10 else "")
        click.echo(f"left out {len(data.left_out)} of {data.classifier.n_classes} classes with fewer than "
                   f"{data.need} texts: {shown}", err=True)
    cfg.data.dataset = data.dataset.name
    cfg.encoder = data.classifier.encoder.name
    learner = build_learner(cfg, data.dataset, seed=t.seed, encoder=data.classifier.encoder)
    metrics = meta_train(learner, data.dataset, t, out_dir=out_dir, progress=not quiet,
                         run_config={**cfg.to_dict(), "from_index": data.record})
    click.echo(
        f"{cfg.learner.name} on the index {index_dir} ({len(data.record['train_classes'])} train classes, "
        f"{len(data.record['val_classes'])} validation classes, {len(data.dataset.items)} texts): best validation "
        f"accuracy {100 * metrics['best_val_accuracy']:.2f}% at step {metrics['best_step']} ({t.val_way}-way "
        f"{t.val_shot}-shot, {t.val_episodes} val episodes); {metrics['steps']} steps in "
        f"{metrics['train_time_s']:.1f} s; checkpoint in {out_dir}. Re-embed the index with it: "
        f"fewshot index rebuild {index_dir} --checkpoint {out_dir}")


def tag_shape(cfg, dataset) -> str:
    """The validation episodes of a tagging run, in words."""
    t = cfg.train
    if t.tag_episodes == "domain":
        return f"every type of the val domain, {t.val_shot}+-shot (minimum-including)"
    return f"{t.val_way}-way {t.val_shot}~{2 * t.val_shot}-shot"


def tag_run_flags(cfg, dataset) -> str:
    """The ``fewshot run`` flags that score the test types as the run validated (whole-domain: every test type,
    minimum-including; type names), or nothing."""
    flags = ""
    if cfg.train.tag_episodes == "domain":
        flags += f" --way {len(dataset.split_classes('test'))} --shot {cfg.train.val_shot} --sampler minimum-including"
    return flags + (" --class-names" if cfg.train.class_names else "")

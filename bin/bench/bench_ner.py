"""Few-shot NER: BENCHMARKS.md "ner-fewnerd", "ner-wnut17", "ner-snips", "ner-fewnerd-finetune", "ner-speed" and
the trained sections "ner-fewnerd-trained-<learner>[-<encoder>]" / "ner-wnut17-trained-<learner>[-<encoder>]" (the
encoder named when it is not minilm).

ProtoBERT, NNShot, StructShot and decomposed over frozen all-MiniLM-L6-v2 word embeddings (mean of sub-tokens),
squared Euclidean distance, no training. Per shot, StructShot's emission temperature and decomposed's per-task
fitting of its detection head are chosen on Few-NERD INTER's 3 val types (3-way episodes, seed ``--seed + 1``)
from :data:`bench_ner_options.GRIDS`, and that choice serves all three protocols; StructShot's transitions come from each
protocol's training data.

- ``--protocol fewnerd``: 5-way 1~2-shot and 10-way 5~10-shot episodes of the 17 INTER test types,
  sampled by the publisher's greedy rule (fewshot.tag_episodes) from inter/test.txt: NOT the
  publisher's released test episodes. Transitions: the dev-file sentences of the 10 train types.
  Counts summed over episodes, 95% bootstrap interval over episodes.
- ``--protocol wnut17``: StructShot's published protocol: each of its five 1-shot and five 5-shot
  support sets tags the whole WNUT-17 test set. Transitions: WNUT-17 train. Micro F1 per set, mean,
  std and 95% t interval over the 5 sets.
- ``--protocol snips``: Hou et al. 2020's cross-domain slot tagging, 1-shot and 5-shot, one target
  domain (intent) at a time, every slot type of the domain in each episode; episodes sampled by Hou et
  al.'s minimum-including rule from the domain's train_*_full.json queries (NOT their released episodes).
  Transitions: the other 6 domains. Per-domain micro F1 and the average over domains, 95% bootstrap.

- ``--protocol speed``: sentences tagged per second with frozen MiniLM at 1 and 2 threads, and the tokens an
  episodic run embeds against the one-pass floor (:mod:`bench_ner_speed`), on the same frozen episodes.
- ``--protocol finetune``: finetune-ner (a linear head fitted per episode on the support words; with
  ``--tuned-episodes N`` also with a LoRA adapter on the first N) against frozen ProtoBERT on the same frozen
  5-way 1~2-shot INTER test episodes (``--episodes-file``, the first ``--episodes``), the F1 difference paired.

``--checkpoint DIR`` (a ``fewshot train`` checkpoint, e.g. ProtoBERT meta-trained on Few-NERD INTER's
train types) scores its encoder beside the frozen encoder it started from, on the same episodes (fewnerd)
or support sets (wnut17), and writes "ner-fewnerd-trained-<learner>" / "ner-wnut17-trained-<learner>" (the
checkpoint's learner) with the paired gain:
the F1 difference with its 95% interval from the same bootstrap resamples of the episodes (fewnerd) or a
t interval of the per-set differences (wnut17). The frozen sections are left as they are.

Why one module of ~590 lines: the seven sections are one benchmark (the same learners, settings, StructShot's
options chosen on val, frozen episodes and row formatting); the trained sections reuse every part of the frozen
ones, and the speed part lives in :mod:`bench_ner_speed`, the choice of options on val in :mod:`bench_ner_options`.

    bin/bench-ner [--protocol fewnerd|wnut17|snips|finetune|speed] [--episodes 100] [--tune-episodes 100]
                  [--seed 0] [--checkpoint DIR] [--learner NAME ...] [--setting 5w1s|10w5s ...]
                  [--episodes-file FILE] [--tuned-episodes 0] [--sentences 400] [--threads 1,2]
                  [--rounds 4] [--data-root DIR] [--no-write]
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import bench_ner_speed
import numpy as np
from bench_ner_options import VAL_WAY, choose_options, option_label, options
from benchmarks_md import publish_rows

from fewshot.checkpoint import load_learner, read_record
from fewshot.config import FewShotConfig
from fewshot.datasets import load_dataset
from fewshot.datasets.ner import SNIPS_INTENTS, wnut17_support_sets, wnut17_train
from fewshot.datasets.registry import data_root
from fewshot.encoders import create_encoder
from fewshot.episodes import load_episodes
from fewshot.experiment import run_experiment
from fewshot.learners import create_learner, learner_config
from fewshot.tag_episodes import GreedyTypeSampler
from fewshot.tag_evaluation import (
    bootstrap_mean_f1,
    bootstrap_picks,
    evaluate_support_sets,
    evaluate_tagging,
    prf,
    word_cache,
)
from fewshot.transitions import AbstractTransitions

SETTINGS = ((5, 1), (10, 5))
LEARNERS = ("protobert", "nnshot", "structshot", "decomposed")
ENCODER = "minilm"
ROOT = Path(__file__).resolve().parents[2]
SECTIONS = {"fewnerd": "ner-fewnerd", "wnut17": "ner-wnut17", "snips": "ner-snips", "finetune": "ner-fewnerd-finetune",
            "speed": "ner-speed"}
TRAINED_SECTIONS = {"fewnerd": "ner-fewnerd-trained", "wnut17": "ner-wnut17-trained", "snips": "ner-snips-trained"}
FINETUNE_EPISODES = "episodes/fewnerd-inter-5w1s-1000ep-seed0.jsonl"  # `fewshot episodes make`, 5-way 1~2-shot
TUNED = {"adapt": "lora", "encoder_lr": 1e-4}  # the encoder-tuning row (--tuned-episodes): LoRA through peft
# Few-NERD v6 F1 on the publisher's released INTER episodes (DecomposedMetaNER's README), by setting
PUBLISHED = {"5w1s": {"protobert": 38.83, "nnshot": 47.24, "structshot": 51.88, "decomposed": 64.75},
             "10w5s": {"protobert": 52.92, "nnshot": 49.57, "structshot": 49.57, "decomposed": 68.11}}


def measure(learner: str, way: int, shot: int, episodes: int, seed: int, data_root: str | None = None,
            learner_options: dict | None = None) -> dict:
    """One Few-NERD row: ``learner`` on ``way``-way ``shot``~2``shot``-shot INTER test episodes (``fewshot run``)."""
    cfg = FewShotConfig.from_dict({"data": {"dataset": "fewnerd-inter", "data_root": data_root},
                                   "episodes": {"way": way, "shot": shot, "episodes": episodes, "seed": seed},
                                   "learner": {"name": learner, **(learner_options or {})}})
    d = run_experiment(cfg, progress=False).to_dict()
    row = {k: d[k] for k in ("dataset", "learner", "encoder", "way", "shot", "episodes", "seed", "precision",
                             "recall", "f1", "f1_ci95_low", "f1_ci95_high", "elapsed_s", "embedded_examples")}
    return {**row, "learner_options": learner_options or {}}


def fewnerd_rows(args, tuned):
    for way, shot in settings(args):
        for learner in args.learner:
            yield measure(learner, way, shot, args.episodes, args.seed, args.data_root, options(learner, shot, tuned))


def settings(args) -> list[tuple[int, int]]:
    """The (way, shot) settings asked for (``--setting 5w1s``), in :data:`SETTINGS`' order."""
    return [(w, s) for w, s in SETTINGS if not args.setting or f"{w}w{s}s" in args.setting]


def trained_record(checkpoint: str) -> dict:
    """How ``checkpoint`` was trained (its committed run config and train_log.jsonl), with the command."""
    rec = read_record(checkpoint)
    cfg, log_path = rec["run_config"], Path(checkpoint) / "train_log.jsonl"
    t = cfg["train"]
    log = [json.loads(ln) for ln in log_path.read_text().splitlines() if ln.strip()] if log_path.is_file() else []
    flags = ["--dataset", cfg["data"]["dataset"], "--encoder", cfg.get("encoder") or ENCODER, "--learner",
             rec["learner"]]
    domain = t.get("tag_episodes") == "domain"
    keys = ("train_shot", "val_shot") if domain else ("train_way", "train_shot", "val_way", "val_shot")
    if domain:
        flags += ["--tag-episodes", "domain"]
    if t.get("class_names"):
        flags += ["--class-names"]
    for key in (*keys, "val_episodes", "steps", "eval_every", "patience", "lr", "seed"):
        flags += [f"--{key.replace('_', '-')}", f"{t[key]:g}" if isinstance(t[key], float) else str(t[key])]
    defaults = asdict(learner_config({"name": rec["learner"]}))  # the learner's options that differ, as -L flags
    flags += [x for k, v in rec["learner_config"].items() if k != "name" and defaults.get(k) != v
              for x in ("-L", f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}")]
    return {"checkpoint": checkpoint, "learner": rec["learner"], "dataset": cfg["data"]["dataset"],
            "encoder": cfg.get("encoder") or ENCODER, "train": t, "best_step": rec.get("step"),
            "best_val_f1": rec.get("val_accuracy"), "best_val_ci95": rec.get("val_ci95"),
            "steps_run": log[-1]["step"] if log else None, "train_time_s": log[-1]["elapsed_s"] if log else None,
            "command": "fewshot train " + " ".join(flags) + f" --out {checkpoint}"}


def models_of(args) -> dict:
    """``{"frozen": build, "trained": build}``, ``build(name, options)`` a learner: over the checkpoint's pretrained
    encoder, or loaded from the checkpoint (its trained encoder; the checkpoint's own learner with what else it
    trained, e.g. decomposed's detection head)."""
    frozen = create_encoder(args.record["encoder"])
    return {"frozen": lambda name, opts: create_learner(name, frozen, opts),
            # a dict: each option as asked, even where it equals the default and the checkpoint saved another
            "trained": lambda name, opts: load_learner(args.checkpoint, {"name": name, **opts})}


def fewnerd_trained_rows(args, tuned):
    """Frozen and trained rows on the same test episodes, each trained row with its paired gain."""
    ds = load_dataset("fewnerd-inter", args.data_root)
    for way, shot in settings(args):
        eps = list(GreedyTypeSampler(ds, way, shot, seed=args.seed, types=ds.splits["test"]).episodes(args.episodes))
        counts = {}
        for model, build in args.models.items():
            cache = None  # the learners of one encoder embed each sentence once
            for name in args.learner:
                learner = build(name, options(name, shot, tuned[model]))
                cache = word_cache(learner, ds, progress=False) if cache is None else cache
                r = evaluate_tagging(learner, ds, eps, progress=False, cache=cache, type_names=args.type_names)
                counts[(model, name)] = r.episode_counts
                low, high = r.f1_interval()
                row = {"setting": f"{way}w{shot}s", "way": way, "shot": shot, "learner": name, "model": model,
                       "episodes": r.n_episodes, "seed": args.seed, "f1": r.f1, "f1_ci95_low": low,
                       "f1_ci95_high": high, "precision": r.precision, "recall": r.recall,
                       "elapsed_s": round(r.elapsed_s, 3), "embedded_sentences": r.n_embedded,
                       "learner_options": options(name, shot, tuned[model])}
                if model == "trained":
                    row["gain"], row["gain_ci95_low"], row["gain_ci95_high"] = paired_f1_difference(
                        r.episode_counts, counts[("frozen", name)])
                yield row


def wnut_trained_rows(args, tuned):
    """Frozen and trained rows on StructShot's support sets; each trained row with the mean per-set gain and its
    95% t interval over the sets."""
    from scipy.stats import t as student_t

    root = data_root(args.data_root)
    test, train = load_dataset("wnut17", root), wnut17_train(root)
    transitions = AbstractTransitions.estimate(train.tags)
    caches = dict.fromkeys(args.models)  # per encoder, by sentence: every support set and the test set once
    for shot in (1, 5):
        sets, f1s = wnut17_support_sets(root, shot), {}
        for model, build in args.models.items():
            for name in args.learner:
                learner = build(name, options(name, shot, tuned[model]))
                if caches[model] is None:
                    caches[model] = word_cache(learner, progress=False)
                if name == "structshot":
                    learner.set_transitions(transitions)
                r = evaluate_support_sets(learner, sets, test, progress=False, cache=caches[model],
                                          type_names=args.type_names)
                s = r.summary()
                f1s[(model, name)] = np.asarray([x["f1"] for x in s["sets"]])
                row = {"protocol": "wnut17", "learner": name, "model": model, "shot": shot, "n_sets": s["n_sets"],
                       "test_sentences": len(test.sentences), "f1_per_set": f1s[(model, name)].tolist(),
                       "f1_mean": s["f1_mean"], "f1_std": s["f1_std"], "f1_ci95_low": s["f1_ci95_low"],
                       "f1_ci95_high": s["f1_ci95_high"], "elapsed_s": round(r.elapsed_s, 3),
                       "embedded_sentences": r.n_embedded, "learner_options": options(name, shot, tuned[model])}
                if model == "trained":
                    d = f1s[(model, name)] - f1s[("frozen", name)]
                    half = float(student_t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
                    row["gain"], row["gain_ci95_low"], row["gain_ci95_high"] = float(d.mean()), d.mean() - half, \
                        d.mean() + half
                yield row


def wnut_rows(args, tuned):
    root = data_root(args.data_root)
    test, train = load_dataset("wnut17", root), wnut17_train(root)
    transitions = AbstractTransitions.estimate(train.tags)  # the whole test set is tagged: entity-free too
    encoder, cache = create_encoder(ENCODER), None
    for shot in (1, 5):
        sets = wnut17_support_sets(root, shot)
        for name in args.learner:
            learner = create_learner(name, encoder, options(name, shot, tuned))
            # by sentence: every support set and the test set once, for every learner and shot
            cache = word_cache(learner, progress=False) if cache is None else cache
            if name == "structshot":
                learner.set_transitions(transitions)
            r = evaluate_support_sets(learner, sets, test, progress=False, cache=cache)
            s = r.summary()
            yield {"protocol": "wnut17", "learner": name, "shot": shot, "n_sets": s["n_sets"],
                   "test_sentences": len(test.sentences), "f1_per_set": [x["f1"] for x in s["sets"]],
                   "f1_mean": s["f1_mean"], "f1_std": s["f1_std"], "f1_ci95_low": s["f1_ci95_low"],
                   "f1_ci95_high": s["f1_ci95_high"], "elapsed_s": round(r.elapsed_s, 3),
                   "embedded_sentences": r.n_embedded, "learner_options": options(name, shot, tuned)}


def snips_rows(args, tuned):
    root = data_root(args.data_root)
    encoder = create_encoder(ENCODER)
    counts = {}
    for intent in SNIPS_INTENTS:
        ds = load_dataset(f"snips-{intent.lower()}", root)
        types = ds.splits["test"]
        cache = None  # one domain's sentences, embedded once for both shots and every learner
        for shot in (1, 5):
            eps = list(GreedyTypeSampler(ds, len(types), shot, seed=args.seed, types=types,
                                         rule="minimum-including").episodes(args.episodes))
            for name in args.learner:
                learner = create_learner(name, encoder, options(name, shot, tuned))
                cache = word_cache(learner, ds, progress=False) if cache is None else cache
                r = evaluate_tagging(learner, ds, eps, progress=False, cache=cache)
                counts[(shot, name, intent)] = r.episode_counts
                low, high = r.f1_interval()
                yield {"protocol": "snips", "domain": intent, "learner": name, "shot": shot, "way": len(types),
                       "episodes": r.n_episodes, "seed": args.seed, "f1": r.f1, "f1_ci95_low": low,
                       "f1_ci95_high": high, "elapsed_s": round(r.elapsed_s, 3), "embedded_sentences": r.n_embedded,
                       "learner_options": options(name, shot, tuned)}
    for shot in (1, 5):
        for name in args.learner:
            groups = [counts[(shot, name, i)] for i in SNIPS_INTENTS]
            low, high = bootstrap_mean_f1(groups)
            f1 = float(np.mean([prf(g.sum(0))[2] for g in groups]))
            yield {"protocol": "snips", "domain": "average", "learner": name, "shot": shot,
                   "episodes": int(sum(len(g) for g in groups)), "seed": args.seed, "f1": f1, "f1_ci95_low": low,
                   "f1_ci95_high": high, "learner_options": options(name, shot, tuned)}


def domain_checkpoint(template: str, intent: str) -> str:
    """``--checkpoint`` for SNIPS: ``{domain}`` replaced by the target intent, lower case."""
    return template.replace("{domain}", intent.lower())


def snips_trained_rows(args, tuned):
    """Per target domain, its own checkpoint (trained on the other domains) against the frozen encoder on the
    same episodes, then the average over domains with the paired gain."""
    root = data_root(args.data_root)
    frozen = create_encoder(args.record["encoder"])
    counts = {}
    for intent in SNIPS_INTENTS:
        ds = load_dataset(f"snips-{intent.lower()}", root)
        types = ds.splits["test"]
        path = domain_checkpoint(args.checkpoint, intent)
        builds = {"frozen": lambda name: create_learner(name, frozen, {}),
                  "trained": lambda name: load_learner(path, {"name": name})}
        for model, build in builds.items():
            cache = None  # one domain's sentences, embedded once per encoder for both shots and every learner
            for shot in (1, 5):
                eps = list(GreedyTypeSampler(ds, len(types), shot, seed=args.seed, types=types,
                                             rule="minimum-including").episodes(args.episodes))
                for name in args.learner:
                    learner = build(name)
                    cache = word_cache(learner, ds, progress=False) if cache is None else cache
                    r = evaluate_tagging(learner, ds, eps, progress=False, cache=cache, type_names=args.type_names)
                    counts[(model, shot, name, intent)] = r.episode_counts
                    low, high = r.f1_interval()
                    row = {"protocol": "snips", "domain": intent, "learner": name, "model": model, "shot": shot,
                           "way": len(types), "episodes": r.n_episodes, "seed": args.seed, "f1": r.f1,
                           "f1_ci95_low": low, "f1_ci95_high": high, "elapsed_s": round(r.elapsed_s, 3),
                           "embedded_sentences": r.n_embedded, "checkpoint": path}
                    if model == "trained":
                        row["gain"], row["gain_ci95_low"], row["gain_ci95_high"] = paired_f1_difference(
                            r.episode_counts, counts[("frozen", shot, name, intent)])
                    yield row
    for shot in (1, 5):
        for name in args.learner:
            groups = {m: [counts[(m, shot, name, i)] for i in SNIPS_INTENTS] for m in ("frozen", "trained")}
            for model in ("frozen", "trained"):
                low, high = bootstrap_mean_f1(groups[model])
                row = {"protocol": "snips", "domain": "average", "learner": name, "model": model, "shot": shot,
                       "episodes": int(sum(len(g) for g in groups[model])), "seed": args.seed,
                       "f1": mean_f1(groups[model]), "f1_ci95_low": low, "f1_ci95_high": high}
                if model == "trained":
                    row["gain"], row["gain_ci95_low"], row["gain_ci95_high"] = paired_mean_f1_difference(
                        groups["trained"], groups["frozen"])
                yield row


def mean_f1(groups: list[np.ndarray]) -> float:
    """The mean over groups (domains) of each group's micro F1."""
    return float(np.mean([prf(g.sum(0))[2] for g in groups]))


def paired_mean_f1_difference(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[float, float, float]:
    """:func:`mean_f1` of ``a`` minus that of ``b`` (per domain, (n_episodes, 3) counts of the same episodes) and
    the 2.5th and 97.5th percentiles of that difference over bootstrap resamples, every domain's episodes
    resampled with the same picks for both (1000, seed 0)."""
    picks = [bootstrap_picks(len(g)) for g in a]
    diffs = np.mean([[prf(x[k].sum(0))[2] - prf(y[k].sum(0))[2] for k in pk] for x, y, pk in zip(a, b, picks)], 0)
    low, high = np.percentile(diffs, [2.5, 97.5])
    return mean_f1(a) - mean_f1(b), float(low), float(high)


def paired_f1_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Micro F1 of ``a`` minus that of ``b`` (each (n_episodes, 3) span counts of the same episodes) and the 2.5th
    and 97.5th percentiles of that difference over bootstrap resamples of the episodes, both learners resampled
    with the same picks (the tag evaluation's own resampling, ``bootstrap_picks``: 1000, seed 0)."""
    picks = bootstrap_picks(len(a))
    diffs = [prf(a[k].sum(0))[2] - prf(b[k].sum(0))[2] for k in picks]
    low, high = np.percentile(diffs, [2.5, 97.5])
    return prf(a.sum(0))[2] - prf(b.sum(0))[2], float(low), float(high)


def frozen_episodes(args):
    """``(header, dataset, episodes)``: the first ``--episodes`` of ``--episodes-file`` and fewnerd-inter."""
    path = Path(args.episodes_file)
    header, episodes = load_episodes(path if path.is_absolute() or path.exists() else ROOT / path)
    ds = load_dataset("fewnerd-inter", data_root(args.data_root))
    if header.get("dataset_fingerprint") != ds.fingerprint():
        raise SystemExit(f"{args.episodes_file} was made from another fewnerd-inter (fingerprint "
                         f"{header.get('dataset_fingerprint')}, loaded {ds.fingerprint()}); make it again")
    return header, ds, episodes[: args.episodes]


def finetune_rows(args, tuned=None):
    """finetune-ner (head only, then optionally LoRA on the first ``--tuned-episodes``) against frozen protobert
    on the same frozen 5-way 1~2-shot episodes, one embedding cache for the frozen learners."""
    header, ds, episodes = frozen_episodes(args)
    encoder, cache, counts = create_encoder(ENCODER), None, {}
    arms = [("protobert", {}, episodes), ("finetune-ner", {}, episodes)]
    if args.tuned_episodes:
        arms += [("protobert", {}, episodes[: args.tuned_episodes]),
                 ("finetune-ner", TUNED, episodes[: args.tuned_episodes])]
    for name, opts, eps in arms:
        learner = create_learner(name, encoder, opts)
        # the frozen learners embed each sentence once (the LoRA arm embeds its own)
        cache = word_cache(learner, ds, progress=False) if cache is None else cache
        r = evaluate_tagging(learner, ds, eps, progress=False, cache=cache)
        counts[(name, len(eps))] = r.episode_counts
        low, high = r.f1_interval()
        yield {"protocol": "finetune", "learner": name, "learner_options": opts, "way": header["way"],
               "shot": header["shot"], "episodes": r.n_episodes, "episodes_file": args.episodes_file,
               "seed": header["seed"], "f1": r.f1, "f1_ci95_low": low, "f1_ci95_high": high,
               "precision": r.precision, "recall": r.recall, "elapsed_s": round(r.elapsed_s, 3),
               "embedded_sentences": r.n_embedded}
        if name == "finetune-ner":
            diff, low, high = paired_f1_difference(counts[(name, len(eps))], counts[("protobert", len(eps))])
            yield {"protocol": "finetune", "learner": "finetune-ner - protobert", "learner_options": opts,
                   "episodes": len(eps), "f1_difference": diff, "f1_difference_ci95_low": low,
                   "f1_difference_ci95_high": high}


def finetune_markdown(rows: list[dict], cmd: str, tuned=None) -> str:
    first = rows[0] if rows else {}
    lines = ["## Few-shot NER: the fine-tuning baseline against frozen ProtoBERT (Few-NERD INTER, paired)", "",
             f"Command: `{cmd}`", "",
             "`finetune-ner`: per episode a fresh linear head over O and the episode's 5 types on frozen "
             "all-MiniLM-L6-v2 word embeddings (mean of sub-tokens), trained on every support word with AdamW (its "
             "defaults, the classification finetune's: at most 100 steps, lr 0.01, weight decay 0.001, stop after "
             "10 steps without a 1e-4 fall of the support loss), each query word tagged by its best label; "
             "`adapt=lora` also trains a LoRA adapter (r 8, through peft, encoder lr 1e-4) on a per-episode copy "
             "of the encoder. Against frozen ProtoBERT on the **same frozen episodes**: the first N of "
             f"`{first.get('episodes_file', FINETUNE_EPISODES)}` (`fewshot episodes make --dataset fewnerd-inter "
             "--way 5 --shot 1 --episodes 1000 --seed 0`: 5-way 1~2-shot, the 17 INTER test types, the "
             "publisher's greedy rule, **not** the publisher's released episodes). Micro F1 with counts summed over "
             "the episodes, 95% bootstrap interval over episodes; the difference is paired: both learners' counts "
             "resampled with the same episode picks (1000 resamples, seed 0). No option was chosen on these (test) "
             "types. CPU, 1 thread (`OMP_NUM_THREADS=1`), nice 15 on a shared 2-core box; `s` is the evaluation "
             "(the frozen learners share one embedding cache: the first embeds the sentences, the second none).",
             "", "| learner | options | episodes | F1 (95% CI) | precision | recall | s | sentences embedded |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        opts = " ".join(f"{k}={v}" for k, v in r["learner_options"].items()) or "defaults"
        if "f1_difference" in r:
            lines.append(f"| **{r['learner']}** (paired) | {opts} | {r['episodes']} | "
                         f"**{100 * r['f1_difference']:+.2f}** ({100 * r['f1_difference_ci95_low']:+.2f} to "
                         f"{100 * r['f1_difference_ci95_high']:+.2f}) | | | | |")
            continue
        lines.append(f"| {r['learner']} | {opts} | {r['episodes']} | {pct(r['f1'])} ({pct(r['f1_ci95_low'])}-"
                     f"{pct(r['f1_ci95_high'])}) | {pct(r['precision'])} | {pct(r['recall'])} | "
                     f"{r['elapsed_s']:.0f} | {r['embedded_sentences']} |")
    return "\n".join(lines)


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def tuning_line(tuned: dict) -> str:
    """What :func:`choose_options` chose, per learner and shot, with the val F1 of every option set."""
    if not tuned:
        return ""
    parts, first = [], None
    for name, by_shot in tuned.items():
        for shot, t in sorted(by_shot.items()):
            first = first or t
            grid = ", ".join(f"{label}: {'refused' if f is None else pct(f)}" for label, f in t["val_f1"].items())
            parts.append(f"{name} {shot}-shot: {option_label(t['options'])} (val F1 by option {grid})")
    if not parts:
        return ""
    return (f"Options chosen on {VAL_WAY}-way episodes of Few-NERD INTER's 3 val types ({first['val_episodes']} "
            f"episodes, seed {first['val_seed']}, never the test types): " + "; ".join(parts) + ".")


COMMON = ("ProtoBERT (nearest type prototype, O included), NNShot (nearest support word), StructShot "
          "(NNShot's scores as emissions, `log_softmax(scores / temperature)`, decoded with Viterbi over abstract "
          "O/entity transitions counted on training data with add-one smoothing) and decomposed (a type-agnostic "
          "O/B/I head, here zero and fitted per task on the support words, decoded under BIO's rule, each span "
          "typed by the nearest support-span prototype) over frozen all-MiniLM-L6-v2 word "
          "embeddings (mean of each word's sub-tokens), squared Euclidean distance, no training.")


def fewnerd_markdown(rows: list[dict], cmd: str, tuned: dict) -> str:
    lines = ["## Few-shot NER: frozen-encoder floor on Few-NERD INTER test types", "", f"Command: `{cmd}`", "",
             COMMON + " Episodes of the 17 INTER test types sampled from `ner/few-nerd/inter/test.txt` by the "
             "publisher's greedy N-way K~2K rule (support and query K~2K, disjoint): they follow the protocol "
             "but are **not** the publisher's released test episodes. StructShot's transitions: the sentences "
             "whose entities are all of the 10 train types (and at least one), from `inter/dev.txt`. Exact-span "
             "exact-type micro F1 with counts summed over all episodes (Few-NERD's rule, IO tags); 95% interval: "
             f"bootstrap over episodes (1000 resamples). Episode seed {rows[0]['seed'] if rows else '-'}; CPU, 1 "
             "thread; `s` is the whole run (data loading, embedding, scoring).", "", tuning_line(tuned), "",
             "| setting | learner | episodes | F1 (95% CI) | precision | recall | s | sentences embedded |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['way']}-way {r['shot']}~{2 * r['shot']}-shot | {r['learner']} | {r['episodes']} | "
                     f"{pct(r['f1'])} ({pct(r['f1_ci95_low'])}-{pct(r['f1_ci95_high'])}) | "
                     f"{pct(r['precision'])} | {pct(r['recall'])} | {r['elapsed_s']:.0f} | {r['embedded_examples']} |")
    lines += ["", "Published F1 on the released episodes (BERT trained on the 36 INTER train types, which are not "
              "shipped here): ProtoBERT 38.83 / 52.92, NNShot 47.24 / 49.57, StructShot 51.88 / 49.57 (5-way 1~2 / "
              "10-way 5~10; DecomposedMetaNER's README, Few-NERD v6 numbers)."]
    return "\n".join(lines)


def wnut_markdown(rows: list[dict], cmd: str, tuned: dict) -> str:
    n = rows[0]["test_sentences"] if rows else "-"
    lines = ["## Few-shot NER: WNUT-17 with StructShot's support sets", "", f"Command: `{cmd}`", "",
             COMMON + f" The published protocol (Yang & Katiyar 2020): each of StructShot's five 1-shot and five "
             f"5-shot support sets (`ner/wnut17/structshot-support/`, drawn from the dev set by its authors) tags "
             f"the whole WNUT-17 gold test set ({n} sentences, 6 types, BIO read as IO). StructShot's transitions: "
             "WNUT-17 train (all 3,394 sentences, entity-free ones too, since the whole test set is tagged). "
             "Exact-span exact-type micro F1 per support set; mean, std (ddof 1) and 95% Student-t interval over "
             "the 5 sets. Each sentence is embedded once for all learners and sets. CPU, 1 thread.", "",
             tuning_line(tuned), "",
             "| shot | learner | F1 mean +- std (95% t CI) | F1 per set 0..4 | s | sentences embedded |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['shot']} | {r['learner']} | {pct(r['f1_mean'])} +- {pct(r['f1_std'])} "
                     f"({pct(r['f1_ci95_low'])}-{pct(r['f1_ci95_high'])}) | "
                     f"{' / '.join(pct(f) for f in r['f1_per_set'])} | {r['elapsed_s']:.0f} | "
                     f"{r['embedded_sentences']} |")
    lines += ["", "With 5 sets the t interval is wide and can reach below 0. Target (issue 20): beat 29.5 F1 at "
              "5-shot, StructShot on these support sets as its authors' rerun reports it (a BERT first trained on a "
              "source NER corpus; no such training here)."]
    return "\n".join(lines)


def snips_markdown(rows: list[dict], cmd: str, tuned: dict) -> str:
    eps = next((r["episodes"] for r in rows if r["domain"] != "average"), "-")
    lines = ["## Few-shot slot tagging: SNIPS cross-domain (Hou et al. 2020's protocol, sampled episodes)", "",
             f"Command: `{cmd}`", "",
             COMMON + " One target domain (intent) at a time, as Hou et al. 2020: each episode holds every slot "
             "type of the target domain (2-14), its support and query sets drawn from the domain's "
             "`snips/train_<Intent>_full.json` queries by Hou et al.'s minimum-including rule (`--sampler "
             "minimum-including`: every slot at least K times, then each sentence not needed for that dropped; "
             "Few-NERD's K~2K rule cannot be met where a slot is in every query, as AddToPlaylist's playlist), "
             "the query set by the same rule with the same K, disjoint. "
             "These are **not** Hou et al.'s released episodes (not in ../shared/data): numbers compare loosely. "
             "A slot is a type of its own domain (`GetWeather:city`); StructShot's transitions: the queries with at least one slot "
             "of the 5 train domains (the dataset's train types: neither the target nor the val domain, the next "
             "intent in SNIPS's order). Micro F1 with counts summed over a domain's episodes; "
             f"{eps} episodes per domain and shot, episode seed {rows[0]['seed'] if rows else '-'}; 95% interval: "
             "bootstrap over episodes (the average: every domain resampled together, 1000 times). CPU, 1 thread.",
             "", tuning_line(tuned), ""]
    for shot in (1, 5):
        sub = [r for r in rows if r["shot"] == shot]
        if not sub:
            continue
        learners = list(dict.fromkeys(r["learner"] for r in sub))
        lines += [f"{shot}-shot: F1 (95% CI)", "", "| domain | " + " | ".join(learners) + " |",
                  "|---|" + "---|" * len(learners)]
        for domain in [*SNIPS_INTENTS, "average"]:
            cells = {r["learner"]: r for r in sub if r["domain"] == domain}
            if cells:
                lines.append(f"| {domain} | " + " | ".join(
                    f"{pct(cells[x]['f1'])} ({pct(cells[x]['f1_ci95_low'])}-{pct(cells[x]['f1_ci95_high'])})"
                    for x in learners if x in cells) + " |")
        lines.append("")
    lines += ["Hou et al. 2020's L-TapNet+CDT (BERT, trained on the other domains, their released episodes): "
              "average F1 about 70.4 at 1-shot and 75.0 at 5-shot as cited by Athiwaratkun et al. 2020 (\"previous "
              "... state-of-the-art\"); the per-domain row of Hou et al.'s Tables must be checked against the "
              "paper before it is quoted here."]
    return "\n".join(lines)


def training_line(rec: dict) -> str:
    t = rec["train"]
    val = (f"best validation span F1 {pct(rec['best_val_f1'])} +- {pct(rec['best_val_ci95'])} at step "
           f"{rec['best_step']}" if rec["best_val_f1"] is not None else "not validated")
    minutes = f", {rec['train_time_s'] / 60:.1f} min of training" if rec["train_time_s"] is not None else ""
    return (f"Trained model: `{rec['command']}` ({rec['learner']} on {rec['dataset']}'s train types only, "
            f"{episode_shape(t, 'train')} episodes, seed {t['seed']}; {rec['steps_run']} steps run, {val} on "
            f"{t['val_episodes']} {episode_shape(t, 'val')} episodes of the val types (seed {t['val_seed']}); the "
            f"test types were never read in training or selection{minutes}; CPU, 2 cores shared with other jobs)."
            + (" With `--class-names`: every training, validation and test episode's support set (frozen and "
               "trained rows alike) ends with one sentence per type, its name (`fewshot.tagged.type_name`), every "
               "word tagged with the type." if t.get("class_names") else ""))


def names_title(rec: dict) -> str:
    """What a section's title adds for a checkpoint trained (and so scored) with type names."""
    return ", with type names" if rec["train"].get("class_names") else ""


def episode_shape(t: dict, part: str) -> str:
    """A run's ``part`` ("train" or "val") episodes in words, from its train config ``t``."""
    shot = t[f"{part}_shot"]
    if t.get("tag_episodes") == "domain":
        return f"whole-domain {shot}+-shot (every type of one domain, minimum-including)"
    return f"{t[f'{part}_way']}-way {shot}~{2 * shot}-shot"


def gain(r: dict) -> str:
    if "gain" not in r:
        return ""
    return f"{100 * r['gain']:+.2f} ({100 * r['gain_ci95_low']:+.2f} to {100 * r['gain_ci95_high']:+.2f})"


def fewnerd_trained_markdown(rows: list[dict], cmd: str, tuned: dict, rec: dict) -> str:
    lines = [f"## Few-shot NER: {rec['learner']} meta-trained on {rec['dataset']}'s train types vs the frozen floor, "
             f"Few-NERD INTER test types{names_title(rec)}",
             "", f"Command: `{cmd}`", "", training_line(rec), "",
             f"`frozen` is the pretrained {rec['encoder']} the run started from, `trained` the checkpoint's encoder; "
             "each learner scores both on the **same** episodes: the 17 INTER test types, sampled from "
             "`ner/few-nerd/inter/test.txt` by the publisher's greedy N-way K~2K rule (support and query K~2K, "
             "disjoint; `fewshot episodes make --dataset fewnerd-inter --way N --shot K --episodes E --seed S` "
             "writes the same episodes), **not** the publisher's released test episodes. Exact-span exact-type "
             "micro F1, counts summed over episodes; 95% interval: bootstrap over episodes (1000 resamples). Gain: "
             "trained F1 minus frozen F1, its 95% interval from the same 1000 resamples of the episodes for both "
             f"(paired). Episode seed {rows[0]['seed'] if rows else '-'}; CPU, 1 thread; `s` is scoring alone "
             "(embedding included).", ""]
    for model, t in tuned.items():
        if t:
            lines += [f"{model}: " + tuning_line(t), ""]
    lines += ["| setting | learner | encoder | episodes | F1 (95% CI) | precision | recall | gain vs frozen (95% CI) "
              "| s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['way']}-way {r['shot']}~{2 * r['shot']}-shot | {r['learner']} | {r['model']} | "
                     f"{r['episodes']} | {pct(r['f1'])} ({pct(r['f1_ci95_low'])}-{pct(r['f1_ci95_high'])}) | "
                     f"{pct(r['precision'])} | {pct(r['recall'])} | {gain(r)} | {r['elapsed_s']:.0f} |")
    lines += ["", "Published F1 on the released episodes, BERT-base trained on the 36 INTER train types (not shipped "
              "here; this model saw 10 dev types): ProtoBERT 38.83 / 52.92, NNShot 47.24 / 49.57, StructShot 51.88 / "
              "49.57, DecomposedMetaNER 64.75 / 68.11 (5-way 1~2 / 10-way 5~10; DecomposedMetaNER's README, Few-NERD "
              "v6 numbers). Target (issue 20): beat StructShot on both settings."]
    stands = [f"{r['way']}-way {r['shot']}~{2 * r['shot']} {r['learner']} {pct(r['f1'])}: "
              f"{100 * r['f1'] - PUBLISHED[r['setting']][r['learner']]:+.2f} against the published {r['learner']}, "
              f"{100 * r['f1'] - PUBLISHED[r['setting']]['structshot']:+.2f} against StructShot"
              for r in rows if r["model"] == "trained"]
    if stands:
        t = rec["train"]
        lines += ["", "Where the trained rows stand (F1 points, not the same episodes as the published ones): "
                  + "; ".join(stands) + f". One checkpoint ({t['train_way']}-way {t['train_shot']}~"
                  f"{2 * t['train_shot']}-shot training) scores every setting."]
    return "\n".join(lines)


def snips_trained_markdown(rows: list[dict], cmd: str, tuned: dict, rec: dict) -> str:
    eps = next((r["episodes"] for r in rows if r["domain"] != "average"), "-")
    lines = [f"## Few-shot slot tagging: SNIPS cross-domain, {rec['learner']} meta-trained on the source domains vs "
             "the frozen floor", "", f"Command: `{cmd}`", "",
             "One checkpoint per target domain, each trained on the other domains alone (the first: "
             + training_line(rec).removeprefix("Trained model: ") + " The others: the same command with "
             "the target's dataset and `--out`.", "",
             "A `snips-<intent>` dataset's test types are the target intent's slots, its val types the next "
             "intent's (SNIPS's order, cyclically), its train types the other 5 intents' slots: each training "
             "episode holds every slot of one source domain (`--tag-episodes domain`, Hou et al.'s episode shape), "
             "validation episodes every slot of the val domain; the target's sentences are never read in training "
             f"or selection. Test episodes as the frozen section's (every slot of the target domain, "
             f"minimum-including K-shot support and query, disjoint; {eps} per domain and shot, episode seed "
             f"{rows[0]['seed'] if rows else '-'}): `frozen` is the pretrained {rec['encoder']}, `trained` the "
             "domain's checkpoint, on the **same** episodes; learner defaults, nothing tuned. Micro F1 with counts "
             "summed over a domain's episodes; 95% interval: bootstrap over episodes (the average: every domain "
             "resampled, 1000 times); gain: trained minus frozen with the same resamples for both (paired). These "
             "are **not** Hou et al.'s released episodes. CPU, 1 thread; `s` is scoring alone.", ""]
    for shot in (1, 5):
        sub = [r for r in rows if r["shot"] == shot]
        if not sub:
            continue
        lines += [f"{shot}-shot:", "", "| domain | learner | encoder | F1 (95% CI) | gain vs frozen (95% CI) | s |",
                  "|---|---|---|---|---|---|"]
        for r in sub:
            s = f"{r['elapsed_s']:.0f}" if "elapsed_s" in r else ""
            name = f"**{r['domain']}**" if r["domain"] == "average" else r["domain"]
            lines.append(f"| {name} | {r['learner']} | {r['model']} | {pct(r['f1'])} ({pct(r['f1_ci95_low'])}-"
                         f"{pct(r['f1_ci95_high'])}) | {gain(r)} | {s} |")
        lines.append("")
    lines += ["Target (issue 20): beat Hou et al. 2020's L-TapNet+CDT (BERT, trained on the other domains, their "
              "released episodes): average F1 about 70.4 at 1-shot and 75.0 at 5-shot as cited by Athiwaratkun et "
              "al. 2020; not checked against Hou et al.'s own table."]
    return "\n".join(lines)


def wnut_trained_markdown(rows: list[dict], cmd: str, tuned: dict, rec: dict) -> str:
    n = rows[0]["test_sentences"] if rows else "-"
    lines = [f"## Few-shot NER: WNUT-17 with StructShot's support sets, {rec['learner']} meta-trained on "
             f"{rec['dataset']} vs the frozen floor{names_title(rec)}", "",
             f"Command: `{cmd}`", "", training_line(rec), "",
             f"StructShot's published protocol: each of its five 1-shot and five 5-shot support sets tags the whole "
             f"WNUT-17 gold test set ({n} sentences, 6 types, BIO read as IO); `frozen` is the pretrained "
             f"{rec['encoder']}, `trained` the checkpoint's encoder (trained on {rec['dataset']} only: no WNUT-17 "
             "sentence). "
             "Micro F1 per set; mean, std (ddof 1) and 95% Student-t interval over the 5 sets. Gain: the mean of the "
             "per-set differences (trained - frozen, same sets) with its 95% t interval. CPU, 1 thread.", ""]
    for model, t in tuned.items():
        if t:
            lines += [f"{model}: " + tuning_line(t), ""]
    lines += ["| shot | learner | encoder | F1 mean +- std (95% t CI) | F1 per set 0..4 | gain vs frozen (95% CI) "
              "| s |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['shot']} | {r['learner']} | {r['model']} | {pct(r['f1_mean'])} +- {pct(r['f1_std'])} "
                     f"({pct(r['f1_ci95_low'])}-{pct(r['f1_ci95_high'])}) | "
                     f"{' / '.join(pct(f) for f in r['f1_per_set'])} | {gain(r)} | {r['elapsed_s']:.0f} |")
    lines += ["", "Target (issue 20): beat 29.5 F1 at 5-shot (StructShot, its authors' rerun on these sets)."]
    return "\n".join(lines)


def speed_rows(args, tuned=None):
    _, ds, episodes = frozen_episodes(args)
    return bench_ner_speed.speed_rows(args, ds, episodes, create_encoder(ENCODER))


MARKDOWN = {"fewnerd": fewnerd_markdown, "wnut17": wnut_markdown, "snips": snips_markdown,
            "finetune": finetune_markdown,
            "speed": lambda rows, cmd, tuned: bench_ner_speed.speed_markdown(rows, cmd, FINETUNE_EPISODES)}
ROWS = {"fewnerd": fewnerd_rows, "wnut17": wnut_rows, "snips": snips_rows, "finetune": finetune_rows,
        "speed": speed_rows}
TRAINED_MARKDOWN = {"fewnerd": fewnerd_trained_markdown, "wnut17": wnut_trained_markdown,
                    "snips": snips_trained_markdown}
TRAINED_ROWS = {"fewnerd": fewnerd_trained_rows, "wnut17": wnut_trained_rows, "snips": snips_trained_rows}
SHOTS = {"fewnerd": tuple(s for _, s in SETTINGS), "wnut17": (1, 5), "snips": (1, 5)}  # protocols with options chosen


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--protocol", choices=sorted(SECTIONS), default="fewnerd")
    p.add_argument("--episodes", type=int, default=100, help="test episodes per setting (fewnerd, snips: per domain)")
    p.add_argument("--tune-episodes", type=int, default=100, help="val episodes per option set and shot (bench_ner_options.GRIDS)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", default=None, help="a fewshot train checkpoint: score it beside its frozen "
                   "encoder (fewnerd, wnut17), written to the *-trained section")
    p.add_argument("--learner", action="append", choices=LEARNERS, default=None,
                   help="learners to score (repeat; default all, or the checkpoint's own with --checkpoint)")
    p.add_argument("--setting", action="append", choices=[f"{w}w{s}s" for w, s in SETTINGS], default=None,
                   help="fewnerd settings to score (repeat; default all)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--episodes-file", default=FINETUNE_EPISODES, help="finetune: the frozen episodes")
    p.add_argument("--tuned-episodes", type=int, default=0,
                   help="finetune: also score finetune-ner with a LoRA adapter on the first N episodes")
    p.add_argument("--sentences", type=int, default=400, help="speed: distinct query sentences tagged per thread count")
    p.add_argument("--threads", type=lambda v: [int(x) for x in v.split(",")], default=[1, 2],
                   help="speed: thread counts, comma-separated")
    p.add_argument("--rounds", type=int, default=4, help="speed: alternating rounds of the thread counts")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    shots = SHOTS.get(args.protocol, ()) if args.protocol != "fewnerd" else tuple(s for _, s in settings(args))
    if args.checkpoint is None:
        args.learner = args.learner or list(LEARNERS)
        encoder = create_encoder(ENCODER) if shots else None
        tuned = choose_options(args.learner, shots, args.tune_episodes, args.seed + 1, args.data_root,
                               lambda name, opts: create_learner(name, encoder, opts))
        publish_rows(SECTIONS[args.protocol], "bench-ner", ROWS[args.protocol](args, tuned),
                     lambda rows, cmd: MARKDOWN[args.protocol](rows, cmd, tuned), argv, write=not args.no_write)
        return 0
    if args.protocol not in TRAINED_SECTIONS:
        p.error(f"--checkpoint scores the protocols {sorted(TRAINED_SECTIONS)}, not {args.protocol!r}")
    if args.protocol == "snips" and "{domain}" not in args.checkpoint:
        p.error(f"--checkpoint {args.checkpoint}: SNIPS needs one checkpoint per target domain; write the path with "
                "{domain} for the intent in lower case, e.g. 'runs/snips-{domain}-protobert-1s'")
    try:
        args.record = trained_record(domain_checkpoint(args.checkpoint, SNIPS_INTENTS[0])
                                     if args.protocol == "snips" else args.checkpoint)
    except (OSError, ValueError, KeyError) as exc:
        p.error(f"--checkpoint {args.checkpoint}: not a readable fewshot train checkpoint ({exc}); train one with "
                "`fewshot train --dataset fewnerd-inter --learner protobert --val-way 3 --out DIR`")
    args.learner = args.learner or [args.record["learner"]]
    args.type_names = bool(args.record["train"].get("class_names"))  # trained with them: scored with them
    if args.protocol == "snips":  # a checkpoint per domain: learner defaults, nothing tuned
        tuned = {}
    else:
        args.models = models_of(args)
        tuned = {model: choose_options(args.learner, shots, args.tune_episodes, args.seed + 1, args.data_root,
                                       build, args.type_names) for model, build in args.models.items()}
    # one per trained learner and encoder (the default encoder's without a suffix)
    section = f"{TRAINED_SECTIONS[args.protocol]}-{args.record['learner']}" + (
        f"-{Path(args.record['encoder']).name}" if args.record["encoder"] != ENCODER else "") + (
        "-names" if args.type_names else "")
    publish_rows(section, "bench-ner", TRAINED_ROWS[args.protocol](args, tuned),
                 lambda rows, cmd: TRAINED_MARKDOWN[args.protocol](rows, cmd, tuned, args.record), argv,
                 write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

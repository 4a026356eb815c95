"""Joint intent + slot evaluation: intent accuracy, slot F1 and exact match over a part's sentences.

- **Intent accuracy**: the share of sentences whose predicted intent is the gold one.
- **Slot F1**: exact-span, exact-type micro precision / recall / F1 of the BIO slot tags,
  the spans read by seqeval (:func:`fewshot.tagged.bio_spans`, conlleval's rule) and the
  counts summed over all sentences (:func:`fewshot.tag_evaluation.span_counts`).
- **Exact match** (sentence-level semantic frame accuracy, Goo et al. 2018): the intent is
  right and the predicted slots are exactly the gold slots (same spans, same types).

Each comes with a 95% interval, a **bootstrap over sentences**: the same
:data:`~fewshot.tag_evaluation.BOOTSTRAP` resamples of the sentences (numpy
``default_rng(0)``) give the three statistics (slot F1 from the resample's summed counts);
the interval is their 2.5th and 97.5th percentiles. The per-intent report gives each gold
intent's count, accuracy (its recall) and the precision of predicting it; the per-slot-type
report each type's precision, recall, F1 and gold count.

**Few-shot joint episodes** (:mod:`fewshot.joint_episodes`, Krone et al. 2020) are scored by
:func:`evaluate_joint_episodes`: every episode's queries are predicted from its own support set, and
the three figures are pooled over episodes: intent accuracy and exact match over all queries (every
episode has the same number, so this is also the mean of the per-episode figures), slot F1 from the
span counts **summed over episodes** (Few-NERD's rule, as :mod:`fewshot.tag_evaluation`). Their 95%
intervals are a **bootstrap over episodes** (the unit the protocol draws): the same
:func:`~fewshot.tag_evaluation.bootstrap_picks` resamples of the episodes give all three statistics.
A query's slot of a type its support set lacks is a miss (:mod:`fewshot.joint_episodes`).
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .evaluation import CHUNK, EmbeddingCache, chunks, progress_bar
from .tag_evaluation import BOOTSTRAP, bootstrap_picks, prf, span_counts, type_report, word_cache
from .tagged import bio_spans

METRICS = ("intent_accuracy", "slot_f1", "exact_match")


@dataclass
class JointEvalResult:
    """Gold and predicted intents, per-sentence slot counts ``(n, 3)`` (correct, predicted, gold), per-sentence
    exact match, and per-type slot counts; with the run's time and what was scored."""

    gold_intents: list[str]
    predicted_intents: list[str]
    sentence_counts: np.ndarray
    exact: np.ndarray
    type_counts: dict[str, np.ndarray]
    elapsed_s: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.gold_intents)

    @property
    def intent_correct(self) -> np.ndarray:
        return np.asarray([g == p for g, p in zip(self.gold_intents, self.predicted_intents)], dtype=bool)

    @property
    def intent_accuracy(self) -> float:
        return float(self.intent_correct.mean())

    @property
    def slot_f1(self) -> float:
        return prf(self.sentence_counts.sum(0))[2]

    @property
    def exact_match(self) -> float:
        return float(self.exact.mean())

    def intervals(self) -> dict[str, tuple[float, float]]:
        """The bootstrap 95% interval of each of :data:`METRICS` (see the module docstring)."""
        if self.n < 2:
            return {m: (float("nan"), float("nan")) for m in METRICS}
        picks = bootstrap_picks(self.n)
        sums = self.sentence_counts[picks].sum(1)  # (resamples, 3)
        samples = {"intent_accuracy": self.intent_correct[picks].mean(1),
                   "slot_f1": np.asarray([prf(s)[2] for s in sums]),
                   "exact_match": self.exact[picks].mean(1)}
        return {m: tuple(float(v) for v in np.percentile(samples[m], [2.5, 97.5])) for m in METRICS}

    def per_intent(self) -> dict[str, dict]:
        """Per gold intent: sentences, accuracy (recall), precision of predicting it, F1."""
        out = {}
        gold, pred = np.asarray(self.gold_intents), np.asarray(self.predicted_intents)
        for name in sorted(set(self.gold_intents) | set(self.predicted_intents)):
            c = int(((gold == name) & (pred == name)).sum())
            p, r, f = prf([c, int((pred == name).sum()), int((gold == name).sum())])
            out[name] = {"n": int((gold == name).sum()), "accuracy": r, "precision": p, "f1": f,
                         "exact_match": float(self.exact[gold == name].mean()) if (gold == name).any() else 0.0}
        return out

    def per_type(self) -> dict[str, dict]:
        """Per slot type: precision, recall, F1, and the correct / predicted / gold span counts."""
        return type_report(self.type_counts)

    def summary(self) -> dict:
        """The figures as JSON-able values (what ``fewshot run --json`` prints for joint data)."""
        ci = self.intervals()
        c = self.sentence_counts.sum(0)
        p, r, _ = prf(c)
        out = {"task": "joint", "sentences": self.n}
        for m in METRICS:
            out[m] = getattr(self, m)
            out[f"{m}_ci95_low"], out[f"{m}_ci95_high"] = ci[m]
        out.update({"slot_precision": p, "slot_recall": r, "slot_correct": int(c[0]), "slot_predicted": int(c[1]),
                    "slot_gold": int(c[2]), "ci95_method": f"bootstrap over sentences ({BOOTSTRAP} resamples; "
                    "slot F1 from summed counts)"})
        return out


def joint_scores(gold_intents: Sequence[str], predicted_intents: Sequence[str], gold_tags: Sequence[Sequence[str]],
                 predicted_tags: Sequence[Sequence[str]]) -> JointEvalResult:
    """Score predictions against gold intents and BIO tags, sentence by sentence."""
    if not len(gold_intents) == len(predicted_intents) == len(gold_tags) == len(predicted_tags):
        raise ValueError(f"{len(gold_intents)} gold intents, {len(predicted_intents)} predicted, {len(gold_tags)} gold "
                         f"tag sequences and {len(predicted_tags)} predicted; give one of each per sentence")
    if not gold_intents:
        raise ValueError("no sentence to score: give at least one")
    rows, exact, types = [], [], {}
    for gi, pi, gt, pt in zip(gold_intents, predicted_intents, gold_tags, predicted_tags):
        counts = span_counts([gt], [pt], read_spans=bio_spans)
        for t, c in counts.items():
            types[t] = types.get(t, 0) + c
        row = sum(counts.values(), np.zeros(3, dtype=np.int64))
        rows.append(row)
        exact.append(bool(gi == pi and row[0] == row[1] == row[2]))  # every predicted slot right, none missed
    return JointEvalResult(list(gold_intents), list(predicted_intents), np.asarray(rows, dtype=np.int64).reshape(-1, 3),
                           np.asarray(exact, dtype=bool), types)


def evaluate_joint(learner, dataset, ids: Sequence[int], batch_size: int = 64, progress: bool = False) -> JointEvalResult:
    """Score a joint ``learner`` (``"joint" in learner.tasks``) on sentences ``ids`` of a joint ``dataset``."""
    if "joint" not in getattr(learner, "tasks", ()):
        raise ValueError(f"learner {learner.name!r} does not predict intents and slots together; joint data needs "
                         "the joint learner (--learner joint, trained with fewshot train)")
    start = time.perf_counter()
    ids = [int(i) for i in ids]
    with progress_bar(len(ids), "sentences", progress) as bar:
        intents, tags = learner.predict_joint(dataset.take(ids), batch_size=batch_size,
                                              where=lambda b: dataset.where(ids[b]), progress=bar)
    result = joint_scores([dataset.intents[i] for i in ids], intents, [dataset.tags[i] for i in ids], tags)
    result.elapsed_s = time.perf_counter() - start
    return result


@dataclass
class JointEpisodeResult:
    """Per episode ``(n_episodes, 6)`` counts ``episode_rows``: queries, intents right, exact matches, and the slot
    spans correct / predicted / gold; with per-type slot counts, the run's time and the sentences embedded."""

    episode_rows: np.ndarray
    type_counts: dict[str, np.ndarray]
    elapsed_s: float = 0.0
    n_embedded: int = 0

    @property
    def n_episodes(self) -> int:
        return int(len(self.episode_rows))

    @staticmethod
    def figures(rows: np.ndarray) -> dict[str, float]:
        """The three :data:`METRICS` of summed episode counts ``rows`` (6,)."""
        n, right, exact, *slots = (float(x) for x in rows)
        return {"intent_accuracy": right / n, "slot_f1": prf(slots)[2], "exact_match": exact / n}

    def intervals(self) -> dict[str, tuple[float, float]]:
        """The bootstrap 95% interval over episodes of each of :data:`METRICS` (module docstring)."""
        if self.n_episodes < 2:
            return {m: (float("nan"), float("nan")) for m in METRICS}
        sums = self.episode_rows[bootstrap_picks(self.n_episodes)].sum(1)  # (resamples, 6)
        samples = [self.figures(r) for r in sums]
        return {m: tuple(float(v) for v in np.percentile([s[m] for s in samples], [2.5, 97.5])) for m in METRICS}

    def per_type(self) -> dict[str, dict]:
        """Per slot type: precision, recall, F1, and the correct / predicted / gold span counts."""
        return type_report(self.type_counts)

    def summary(self) -> dict:
        """The figures as JSON-able values (what ``fewshot run --json`` prints for joint episodes)."""
        total = self.episode_rows.sum(0)
        ci = self.intervals()
        out = {"task": "joint", "episodes": self.n_episodes, "queries": int(total[0])}
        for m, v in self.figures(total).items():
            out[m] = v
            out[f"{m}_ci95_low"], out[f"{m}_ci95_high"] = ci[m]
        p, r, _ = prf(total[3:])
        out.update({"slot_precision": p, "slot_recall": r, "slot_correct": int(total[3]),
                    "slot_predicted": int(total[4]), "slot_gold": int(total[5]),
                    "ci95_method": f"bootstrap over episodes ({BOOTSTRAP} resamples; summed counts)"})
        return out


def evaluate_joint_episodes(learner, dataset, episodes, batch_size: int = 32, progress: bool = True,
                            chunk: int = CHUNK) -> JointEpisodeResult:
    """Score a joint prototype ``learner`` (``"joint-episodes" in learner.tasks``: protojoint) on few-shot joint
    ``episodes`` (:class:`~fewshot.joint_episodes.JointEpisode`) of a JointDataset. Its encoder is frozen, so
    every sentence is embedded once, pooled (:meth:`embed`) and by word (:func:`~fewshot.tag_evaluation.word_cache`)."""
    if "joint-episodes" not in getattr(learner, "tasks", ()):
        raise ValueError(f"learner {learner.name!r} does not learn intents and slots from a support set; few-shot "
                         "joint episodes need --learner protojoint")
    start = time.perf_counter()
    sentences = EmbeddingCache(lambda ids, bar: learner.embed(dataset.take(ids), batch_size=batch_size,
                                                              progress=bar), progress)
    words = word_cache(learner, dataset, batch_size, progress)
    rows, types = [], {}
    total = len(episodes) if hasattr(episodes, "__len__") else None
    with progress_bar(total, "episodes", progress) as bar:
        for block in chunks(episodes, chunk):
            ids = sorted({int(i) for ep in block for i in np.concatenate([ep.support, ep.query])})
            sentences.add(ids)
            words.add(ids)
            for ep in block:
                s, q = ep.support.tolist(), ep.query.tolist()
                local = {name: j for j, name in enumerate(ep.intents)}
                y = torch.as_tensor([local[dataset.intents[i]] for i in s])
                learner.adapt_joint(sentences.take(s), y, words.take(s), [dataset.tags[i] for i in s])
                intents, tags = learner.predict_joint_features(sentences.take(q), words.take(q),
                                                               [len(dataset.tags[i]) for i in q])
                scored = joint_scores([dataset.intents[i] for i in q], [ep.intents[j] for j in intents],
                                      [dataset.tags[i] for i in q], tags)
                for t, c in scored.type_counts.items():
                    types[t] = types.get(t, 0) + c
                rows.append([scored.n, int(scored.intent_correct.sum()), int(scored.exact.sum()),
                             *scored.sentence_counts.sum(0).tolist()])
                bar.update(1)
    return JointEpisodeResult(np.asarray(rows, dtype=np.int64).reshape(-1, 6), types,
                              elapsed_s=time.perf_counter() - start, n_embedded=sentences.n)

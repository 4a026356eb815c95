"""Episodic NER evaluation: exact-span, exact-type micro precision / recall / F1.

Few-NERD's rule (Ding et al. 2021, thunlp/Few-NERD ``util/framework.py``): in every query
sentence, the predicted and the gold entities are the maximal runs of one label of the IO
tags (:func:`fewshot.tagged.io_spans`, counted by seqeval); a predicted entity is correct
when a gold one has the same start, end and type. The counts (correct, predicted, gold)
are **summed over all episodes** before precision, recall and F1 are computed (micro).

The 95% interval is a **bootstrap over episodes**: :data:`BOOTSTRAP` resamples of the
episodes with replacement (numpy ``default_rng(0)``), each giving the F1 of its summed
counts; the interval is their 2.5th and 97.5th percentiles. It resamples the unit the
protocol draws (the episode), and it is the interval of the very statistic reported
(pooled counts), which a normal interval of per-episode F1 is not.

The published WNUT-17 protocol (Yang & Katiyar 2020) is not episodic: each of a few fixed support
sets tags the whole test set (:func:`evaluate_support_sets`). Its figures are the micro F1 of each
support set and their mean, standard deviation and 95% Student-t interval over the sets
(``mean +- t(0.975, n - 1) * std / sqrt(n)``, std with ddof 1): the sets are the unit drawn.

The per-type report gives each type's precision, recall, F1 and gold count, pooled over
the episodes where the type was drawn. Word embeddings of a frozen encoder are cached by
sentence id for the whole run (each sentence embedded once), in the classification evaluation's
:class:`~fewshot.evaluation.EmbeddingCache` (:func:`word_cache`); ``cache=False`` (``fewshot run --no-cache``)
embeds each episode's sentences anew instead, to measure what the cache saves.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence, Sized
from dataclasses import dataclass, field

import numpy as np
import torch

from .evaluation import CHUNK, EmbeddingCache, chunks, progress_bar
from .tag_episodes import TaggedEpisode
from .tagged import OUTSIDE, TaggedDataset, io_spans

BOOTSTRAP = 1000


def span_counts(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]],
                read_spans: Callable[[Sequence[str]], list] = io_spans) -> dict[str, np.ndarray]:
    """Per type, ``[correct, predicted, gold]`` entity counts over the sentences' tag sequences, IO (``read_spans``
    :func:`~fewshot.tagged.io_spans`) or BIO (:func:`~fewshot.tagged.bio_spans`)."""
    out: dict[str, np.ndarray] = {}
    for g, p in zip(gold, pred):
        if len(g) != len(p):
            raise ValueError(f"a sentence has {len(g)} gold tags but {len(p)} predicted; predict one tag per word")
        gs, ps = set(read_spans(g)), set(read_spans(p))
        for spans, col in ((gs & ps, 0), (ps, 1), (gs, 2)):
            for t, _, _ in spans:
                out.setdefault(t, np.zeros(3, dtype=np.int64))[col] += 1
    return out


def prf(counts: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall, F1 of ``[correct, predicted, gold]`` (0 where undefined)."""
    c, p, g = (float(x) for x in counts)
    precision, recall = (c / p if p else 0.0), (c / g if g else 0.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def type_report(type_counts: dict) -> dict[str, dict]:
    """Per type of ``type_counts`` ({type: (correct, predicted, gold) span counts}): precision, recall, F1 and
    the three counts, types sorted."""
    out = {}
    for t in sorted(type_counts):
        c = type_counts[t]
        p, r, f = prf(c)
        out[t] = {"precision": p, "recall": r, "f1": f, "correct": int(c[0]), "predicted": int(c[1]),
                  "gold": int(c[2])}
    return out


def bootstrap_picks(n_units: int, n: int = BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """(n, n_units) indices: ``n`` resamples with replacement of ``n_units`` units (numpy ``default_rng(seed)``)."""
    return np.random.default_rng(seed).integers(0, n_units, size=(n, n_units))


def bootstrap_f1(episode_counts: np.ndarray, n: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float]:
    """2.5th and 97.5th percentiles of the micro F1 of ``n`` resamples of the episodes' (n_episodes, 3) counts."""
    if len(episode_counts) < 2:
        return float("nan"), float("nan")
    picks = bootstrap_picks(len(episode_counts), n, seed)
    sums = episode_counts[picks].sum(1)  # (n, 3)
    f1 = [prf(s)[2] for s in sums]
    low, high = np.percentile(f1, [2.5, 97.5])
    return float(low), float(high)


def bootstrap_mean_f1(groups: Sequence[np.ndarray], n: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float]:
    """2.5th and 97.5th percentiles of the mean over ``groups`` (e.g. target domains) of each group's micro F1,
    every group's (n_episodes, 3) counts resampled over its episodes, ``n`` times."""
    if not groups or any(len(g) < 2 for g in groups):
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.zeros(n)
    for g in groups:
        sums = g[rng.integers(0, len(g), size=(n, len(g)))].sum(1)
        means += np.asarray([prf(s)[2] for s in sums]) / len(groups)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


@dataclass
class TagEvalResult:
    """Span counts of every episode (``episode_counts``, (n_episodes, 3): correct, predicted, gold) and
    per type (``type_counts``), with the run's time and the number of sentences embedded."""

    episode_counts: np.ndarray
    type_counts: dict[str, np.ndarray]
    elapsed_s: float
    n_embedded: int
    extra: dict = field(default_factory=dict)

    @property
    def precision(self) -> float:
        return prf(self.episode_counts.sum(0))[0]

    @property
    def recall(self) -> float:
        return prf(self.episode_counts.sum(0))[1]

    @property
    def f1(self) -> float:
        return prf(self.episode_counts.sum(0))[2]

    @property
    def n_episodes(self) -> int:
        return int(len(self.episode_counts))

    def f1_interval(self) -> tuple[float, float]:
        """The bootstrap 95% interval of :attr:`f1` over episodes (see the module's docstring)."""
        return bootstrap_f1(self.episode_counts)

    def per_type(self) -> dict[str, dict]:
        """Per type: precision, recall, F1, and the correct / predicted / gold counts."""
        return type_report(self.type_counts)

    def summary(self) -> dict:
        """The run's figures as JSON-able values (what ``fewshot run --json`` prints for NER)."""
        low, high = self.f1_interval()
        c = self.episode_counts.sum(0)
        return {"task": "ner", "precision": self.precision, "recall": self.recall, "f1": self.f1,
                "f1_ci95_low": low, "f1_ci95_high": high, "ci95_method": f"bootstrap over episodes ({BOOTSTRAP} "
                "resamples, summed counts)", "correct": int(c[0]), "predicted": int(c[1]), "gold": int(c[2])}


def check_tagger(learner) -> None:
    """A ValueError unless ``learner`` tags words (``"ner" in learner.tasks``)."""
    if "ner" not in getattr(learner, "tasks", ()):
        raise ValueError(f"learner {learner.name!r} does not tag words; choose a tagging learner for NER data "
                         "(--learner protobert, nnshot, structshot, decomposed or finetune-ner)")


def tag_sentences(learner, z: Sequence[np.ndarray], classes: Sequence[str]) -> list[tuple[str, ...]]:
    """IO tags of sentences from their (n_words, dim) word embeddings ``z``, by ``learner`` adapted to a
    support set whose local labels are ``classes`` (``("O", *types)``): the words of all sentences are scored
    in one call, then each sentence is decoded by ``learner.decode_tags`` (argmax, or structshot's Viterbi)."""
    scores = learner.tag_scores(torch.from_numpy(np.concatenate(z)))
    return decode_sentences(learner, scores, [len(q) for q in z], classes)


def decode_sentences(learner, scores: torch.Tensor, lengths: Sequence[int],
                     classes: Sequence[str]) -> list[tuple[str, ...]]:
    """Each sentence's IO tags from the :meth:`~fewshot.learners.base.Learner.tag_scores` rows of all their words,
    in order."""
    bounds = np.cumsum([0, *lengths])
    return [tuple(classes[int(j)] for j in learner.decode_tags(scores[a:b])) for a, b in zip(bounds[:-1], bounds[1:])]


def word_cache(learner, dataset: TaggedDataset | None = None, batch_size: int = 32,
               progress: bool = True) -> EmbeddingCache:
    """An :class:`~fewshot.evaluation.EmbeddingCache` of word embeddings by ``learner``'s encoder
    (:meth:`~fewshot.learners.base.Learner.embed_words`): keyed by sentence id of ``dataset``, or, without one,
    by the sentence (its words) itself. Pass one to several evaluations whose learners share that frozen
    encoder and each sentence is embedded once for all of them."""
    if dataset is None:
        return EmbeddingCache(lambda sentences, bar: learner.embed_words(sentences, batch_size=batch_size,
                                                                         progress=bar), progress)
    return EmbeddingCache(lambda ids, bar: learner.embed_words(dataset.take(ids), batch_size=batch_size,
                                                               where=lambda b: dataset.where(ids[b]), progress=bar),
                          progress)


def evaluate_tagging(learner, dataset: TaggedDataset, episodes: Iterable[TaggedEpisode], batch_size: int = 32,
                     progress: bool = True, chunk: int = CHUNK,
                     cache: EmbeddingCache | bool | None = None, type_names: bool = False) -> TagEvalResult:
    """Score a tagging ``learner`` (``"ner" in learner.tasks``) on ``episodes`` of ``dataset``.

    ``cache``: word embeddings by sentence id of ``dataset`` (:func:`word_cache`); pass one to several calls
    whose learners share one frozen encoder (e.g. a search over a decoding setting) to embed each sentence once.
    ``None`` (the default): one for this run. ``False``: every episode's sentences are embedded afresh, as if
    no other episode had been (to measure what the cache saves; :func:`~fewshot.evaluation.evaluate`'s
    ``cache=False``).
    A learner that tunes its encoder per task (``adapts_encoder``) is given each episode's sentences instead
    (:meth:`~fewshot.learners.base.Learner.adapt_sentences`), which it embeds itself; ``cache`` is then unused.
    ``type_names``: each episode's support set ends with one sentence per type, the type's name, every word
    tagged with it (:meth:`~fewshot.tag_episodes.TaggedEpisode.type_name_support`; embedded once per type).
    """
    check_tagger(learner)
    start = time.perf_counter()
    learner.prepare_tagging(dataset)
    total = len(episodes) if isinstance(episodes, Sized) else None
    fresh = cache is False
    cache = word_cache(learner, dataset, batch_size, progress) if cache is None or fresh else cache
    before, n_embedded = cache.n, 0
    rows, types, named = [], {}, {}  # named: a type's name sentence embedded, by type
    with progress_bar(total, "episodes", progress) as bar:
        for block in chunks(episodes, chunk):
            if not learner.adapts_encoder and not fresh:
                cache.add(sorted({int(i) for ep in block for i in np.concatenate([ep.support, ep.query])}))
            for ep in block:
                support_tags = [dataset.tags[int(i)] for i in ep.support]
                support_y = torch.from_numpy(np.concatenate(ep.token_labels(support_tags)))
                lengths = [len(dataset.tags[int(i)]) for i in ep.query]
                if learner.adapts_encoder:
                    support = dataset.take(ep.support.tolist())
                    learner.adapt_sentences(*(ep.with_type_names(support, support_y) if type_names
                                              else (support, support_y)))
                    scores = learner.logits_sentences(dataset.take(ep.query.tolist()))
                    n_embedded += len(ep.support) + len(ep.query)
                else:
                    words = cache
                    if fresh:  # this episode's own cache: its sentences embedded anew
                        words = word_cache(learner, dataset, batch_size, progress=False)
                        words.add([int(i) for i in np.concatenate([ep.support, ep.query])])
                        n_embedded += words.n
                    z, lengths_s = words.take(ep.support.tolist()), [len(t) for t in support_tags]
                    if type_names:
                        names, support_y = ep.with_type_names([], support_y)
                        new = [(t, n) for t, n in zip(ep.types, names) if t not in named]
                        named.update((t, torch.from_numpy(e))
                                     for (t, _), e in zip(new, learner.embed_words([n for _, n in new])))
                        z = torch.cat([z, *(named[t] for t in ep.types)])
                        lengths_s += [len(n) for n in names]
                    learner.adapt_features(z, support_y, lengths=lengths_s)
                    scores = learner.tag_scores(words.take(ep.query.tolist()))
                gold = [tuple(t if t in ep.types else OUTSIDE for t in dataset.tags[int(i)]) for i in ep.query]
                counts = span_counts(gold, decode_sentences(learner, scores, lengths, ep.classes))
                for t, c in counts.items():
                    types[t] = types.get(t, 0) + c
                rows.append(sum(counts.values(), np.zeros(3, dtype=np.int64)))
                bar.update(1)
    return TagEvalResult(episode_counts=np.asarray(rows, dtype=np.int64).reshape(-1, 3), type_counts=types,
                         elapsed_s=time.perf_counter() - start, n_embedded=n_embedded + cache.n - before)


@dataclass
class SupportSetResult:
    """Span counts ``set_counts`` ((n_sets, 3): correct, predicted, gold) of the whole test set tagged from each
    support set ``names[i]``, with per-type counts per set, the run's time and the sentences embedded."""

    names: list[str]
    set_counts: np.ndarray
    type_counts: list[dict[str, np.ndarray]]
    elapsed_s: float
    n_embedded: int

    def f1s(self) -> list[float]:
        return [prf(c)[2] for c in self.set_counts]

    def summary(self) -> dict:
        """Per set precision / recall / F1, and the F1's mean, std and 95% t interval over the sets."""
        from scipy.stats import t as student_t

        f1 = np.asarray(self.f1s())
        n = len(f1)
        std = float(f1.std(ddof=1)) if n > 1 else float("nan")
        half = float(student_t.ppf(0.975, n - 1) * std / np.sqrt(n)) if n > 1 else float("nan")
        sets = [dict(zip(("precision", "recall", "f1"), prf(c)), name=name, correct=int(c[0]), predicted=int(c[1]),
                     gold=int(c[2])) for name, c in zip(self.names, self.set_counts)]
        return {"task": "ner", "protocol": "support-sets", "n_sets": n, "f1_mean": float(f1.mean()), "f1_std": std,
                "f1_ci95_low": float(f1.mean()) - half, "f1_ci95_high": float(f1.mean()) + half,
                "ci95_method": "Student t over the support sets (std ddof 1)", "sets": sets}


def evaluate_support_sets(learner, support_sets: Sequence[TaggedDataset], test: TaggedDataset, batch_size: int = 32,
                          progress: bool = True, cache: EmbeddingCache | None = None,
                          type_names: bool = False) -> SupportSetResult:
    """Tag every sentence of ``test`` from each of ``support_sets`` in turn (the WNUT-17 few-shot protocol of
    Yang & Katiyar 2020); each support set must hold every type of ``test`` (a type of its own that the test
    set lacks is read as O).

    ``cache``: word embeddings by sentence (its words: :func:`word_cache` without a dataset); pass one to several
    calls whose learners share one frozen encoder and each sentence is embedded once for all of them. A learner
    that tunes its encoder per task (``adapts_encoder``) is given each support set's sentences and the test
    sentences instead. ``type_names``: each support set ends with its types' names
    (:meth:`~fewshot.tagged.TaggedDataset.with_type_names`).
    """
    check_tagger(learner)
    start = time.perf_counter()
    learner.prepare_tagging(test)
    if type_names:
        support_sets = [s.with_type_names() for s in support_sets]
    types = tuple(test.types)
    classes = (OUTSIDE, *types)
    for s in support_sets:
        missing = sorted(set(types) - set(s.types))
        if missing:
            raise ValueError(f"support set {s.name!r} has no entity of test type(s) {missing}; every support set "
                             f"must hold each of the test set's types {list(types)}")
    local = {t: j for j, t in enumerate(classes)}
    rows, per_type, n_embedded = [], [], 0
    lengths = [len(t) for t in test.tags]
    if not learner.adapts_encoder:
        cache = word_cache(learner, None, batch_size, progress) if cache is None else cache
        before = cache.n
        cache.add([w for d in (test, *support_sets) for w in d.sentences])
        test_z, n_embedded = cache.take(test.sentences), cache.n - before
    for s in support_sets:
        labels = torch.from_numpy(np.asarray([local.get(t, 0) for tags in s.tags for t in tags], dtype=np.int64))
        if learner.adapts_encoder:  # tunes its encoder on each set: the set and the test set are embedded anew
            learner.adapt_sentences(s.sentences, labels)
            scores = learner.logits_sentences(test.sentences)
            n_embedded += len(s.sentences) + len(test.sentences)
        else:
            learner.adapt_features(cache.take(s.sentences), labels, lengths=[len(t) for t in s.tags])
            scores = learner.tag_scores(test_z)
        predicted = decode_sentences(learner, scores, lengths, classes)
        counts = span_counts(test.tags, predicted)
        per_type.append(counts)
        rows.append(sum(counts.values(), np.zeros(3, dtype=np.int64)))
    return SupportSetResult(names=[s.name for s in support_sets], set_counts=np.asarray(rows).reshape(-1, 3),
                            type_counts=per_type, elapsed_s=time.perf_counter() - start, n_embedded=n_embedded)

"""FewShotTagger: entity types taught from a few annotated sentences, added and extended at run time.

The tagging twin of :class:`~fewshot.support.FewShotClassifier`, on the same parts: a
:class:`~fewshot.support.classbook.ClassBook` whose classes are the entity types plus ``O`` and whose
examples are words (each word's embedding is the mean of its sub-word tokens,
:mod:`fewshot.encoders.words`), and the same folder format (:mod:`fewshot.support.folder`, kind
``"fewshot-tagger"``: atomic, checksummed, locked, no pickle)::

    tagger = FewShotTagger(encoder="minilm")
    tagger.fit([["Ada", "Lovelace", "wrote", "code"]], [["person", "person", "O", "O"]])
    tagger.add([["Paris", "is", "big"]], [["B-city", "O", "O"]])     # IO or BIO tags; a new type, or more of one
    tagger.predict([["Grace", "Hopper", "visited", "Rome"]])
    # [[{"type": "person", "start": 0, "end": 1, "text": "Grace Hopper", "score": ...}, ...]]
    tagger.save(DIR); FewShotTagger.load(DIR)
    with FewShotTagger.update(DIR) as t: t.add(...)               # several processes: lock, load, change, save

Scoring is ProtoBERT's (Few-NERD's baseline; :mod:`fewshot.learners.protobert`): every word goes to its
nearest prototype (``O`` or a type) by the metric, squared Euclidean by default as in Few-NERD; an entity
is a maximal run of words of one type (:func:`fewshot.tagged.io_spans`) and its score is the mean over
its words of the softmax probability of that type.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..encoders.words import embed_words
from ..prototypes import DEFAULT_SCALE, check_metric
from ..prototypes import scores as prototype_scores
from ..store import SupportStore
from ..tagged import OUTSIDE, bio_to_io, check_tag, io_spans
from . import folder
from .checks import check_label
from .classbook import ClassBook
from .classifier import NotFittedError


class FewShotTagger:
    """Nearest-prototype word tagger over a frozen text encoder, with entity types added at run time.

    ``encoder``: a registered text encoder name, a model or checkpoint folder (recorded, so that the saved
    tagger re-opens it), or an Encoder with a fast tokenizer; ``metric``: ``"euclidean"`` (default,
    ProtoBERT's) or ``"cosine"``; ``batch_size`` and ``device`` go to the word embedding.
    """

    def __init__(self, encoder="minilm", metric: str = "euclidean", *, batch_size: int = 32,
                 device: str | None = None):
        self.encoder = folder.resolve_encoder(encoder)
        if self.encoder.modality != "text":
            raise ValueError(f"FewShotTagger tags words of text, but encoder {self.encoder.name!r} reads "
                             f"{self.encoder.modality}; use a text encoder such as 'minilm'")
        self.metric = check_metric(metric)
        self.batch_size, self.device = batch_size, device
        self.checkpoint = folder.checkpoint_path(encoder)  # where the encoder's weights came from, if a checkpoint
        self.book_ = ClassBook(int(self.encoder.dim))
        self.path_: str | None = None
        self.generation_: int | None = None

    types_ = property(lambda self: [t for t in self.book_.labels if t != OUTSIDE], doc="the entity types")

    # -- learning ---------------------------------------------------------------------------------
    def fit(self, sentences: Sequence[Sequence[str]], tags: Sequence[Sequence[str]]) -> "FewShotTagger":
        """Forget everything, then learn O and each type from annotated ``sentences`` (IO or BIO ``tags``)."""
        self.book_ = ClassBook(int(self.encoder.dim))
        return self.add(sentences, tags)

    def add(self, sentences: Sequence[Sequence[str]], tags: Sequence[Sequence[str]], replace: bool = False,
            where: Callable[[int], str] | None = None) -> "FewShotTagger":
        """Add the words of annotated ``sentences`` to their types (new types are created; existing ones
        become the exact mean of all their words so far; old sentences are not re-embedded).

        ``replace``: the entity types these sentences annotate are reset to their words here (``O``, the
        background of every sentence, still grows). ``where(i)`` names sentence ``i`` in errors (e.g. its
        ``file:line``).
        """
        where = where or _ordinal
        sentences, tags = self._annotated(sentences, tags, where)
        z = embed_words(self.encoder, sentences, batch_size=self.batch_size, device=self.device, where=where)
        words = np.concatenate(z) if z else np.zeros((0, self.book_.dim), np.float32)
        labels = [t for sent in tags for t in sent]
        if not replace:
            self.book_.add(words, labels)
            return self
        typed = np.array([t != OUTSIDE for t in labels], dtype=bool)
        self.book_.add(words[typed], [t for t in labels if t != OUTSIDE], replace=True)
        self.book_.add(words[~typed], [OUTSIDE] * int((~typed).sum()))
        return self

    def remove_types(self, types: Sequence[str]) -> "FewShotTagger":
        """Forget entity types ``types`` (``O`` cannot be removed)."""
        missing = [t for t in types if t == OUTSIDE or t not in self.book_]
        if missing:
            raise ValueError(f"remove_types: {missing!r} are not entity types of this tagger; it has {self.types_}")
        self.book_.remove(list(types))
        return self

    @staticmethod
    def _annotated(sentences, tags, where) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
        if isinstance(sentences, (str, bytes)) or isinstance(tags, (str, bytes)):
            raise TypeError("expected a list of sentences, each a list of words, and one list of tags per sentence")
        sentences, tags = [tuple(s) for s in sentences], [tuple(t) for t in tags]
        if not sentences or len(sentences) != len(tags):
            raise ValueError(f"expected one tag list per sentence and at least one sentence, got {len(sentences)} "
                             f"sentences and {len(tags)} tag lists")
        out = []
        for i, (words, sent_tags) in enumerate(zip(sentences, tags)):
            if not words or len(words) != len(sent_tags):
                raise ValueError(f"{where(i)}: expected one tag per word, got {len(words)} words and "
                                 f"{len(sent_tags)} tags")
            _check_words(words, where(i))
            bio = any(t[:2] in ("B-", "I-") for t in sent_tags if isinstance(t, str))
            for t in sent_tags:
                check_tag(t, "bio" if bio else "io", where(i))
            io = bio_to_io(sent_tags) if bio else sent_tags
            out.append(tuple(check_label(t, None, where(i)) for t in io))
        return sentences, out

    # -- inference --------------------------------------------------------------------------------
    def predict(self, sentences: Sequence[Sequence[str]],
                where: Callable[[int], str] | None = None) -> list[list[dict]]:
        """Each sentence's entities: ``{"type", "start", "end" (inclusive word indices), "text", "score"}``.
        ``where(i)`` names sentence ``i`` in errors."""
        if OUTSIDE not in self.book_ or not self.types_:
            raise NotFittedError("predict: the tagger needs examples of O and of at least one entity type; call "
                                 "fit(sentences, tags) (or add) first")
        if isinstance(sentences, (str, bytes)):
            raise TypeError("predict: expected a list of sentences, each a list of words; wrap it in a list")
        sentences, where = [tuple(s) for s in sentences], where or _ordinal
        for i, words in enumerate(sentences):
            if not words:
                raise ValueError(f"{where(i)}: expected a sentence of at least one word, got none")
            _check_words(words, where(i))
        z = embed_words(self.encoder, sentences, batch_size=self.batch_size, device=self.device, where=where)
        protos = torch.from_numpy(self.book_.prototypes())
        out = []
        for words, zi in zip(sentences, z):
            s = prototype_scores(torch.from_numpy(zi), protos, self.metric) * DEFAULT_SCALE[self.metric]
            prob = torch.softmax(s.double(), dim=1).numpy()
            best = prob.argmax(1)
            tags = [self.book_.labels[j] for j in best]
            out.append([{"type": t, "start": a, "end": b, "text": " ".join(words[a:b + 1]),
                         "score": round(float(prob[a:b + 1, self.book_.row(t)].mean()), 6)}
                        for t, a, b in io_spans(tags)])
        return out

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the tagger to folder ``path`` atomically (refused if another writer saved there since it was
        loaded from it; use :meth:`update` to change a shared folder)."""
        meta = {"metric": self.metric, "encoder": folder.encoder_identity(self.encoder, self.checkpoint)}
        key = os.path.realpath(path)
        expect = self.generation_ if self.path_ == key else None
        store = folder.write(path, meta, self.book_, None, expect, kind=folder.TAGGER_KIND)
        self.path_, self.generation_ = key, store.generation

    def create(self, path: str | os.PathLike) -> None:
        """:meth:`save` into a folder that holds no index yet; one that does is refused, unchanged."""
        with folder.creating(path):
            self.path_ = self.generation_ = None
            self.save(path)

    @staticmethod
    def describe(path: str | os.PathLike) -> dict:
        """What a saved tagger holds, from its manifest alone (the encoder is not loaded): ``encoder``,
        ``fingerprint``, ``metric``, ``dim``, ``generation``, ``index_id`` and ``classes`` (a list of
        {"label", "count"}: each entity type and ``O`` with its number of words)."""
        return folder.describe(path, kind=folder.TAGGER_KIND)

    @classmethod
    def load(cls, path: str | os.PathLike, encoder=None, **kwargs) -> "FewShotTagger":
        """Read a tagger saved by :meth:`save` (its encoder's weights fingerprint checked)."""
        meta, book, _, store = folder.read(path, kind=folder.TAGGER_KIND)
        ident = meta["encoder"]
        encoder = folder.resolve_encoder(folder.encoder_from_identity(ident, path) if encoder is None else encoder)
        folder.check_encoder(encoder, meta, path)
        tagger = cls(encoder, meta["metric"], **kwargs)
        tagger.checkpoint, tagger.book_ = ident.get("checkpoint"), book
        tagger.path_, tagger.generation_ = os.path.realpath(path), store.generation
        return tagger

    @classmethod
    @contextlib.contextmanager
    def update(cls, path: str | os.PathLike, encoder=None, **kwargs):
        """``with FewShotTagger.update(DIR) as t: t.add(...)``: holds DIR's lock from load to save, so
        concurrent updates lose nothing; saves only if the block ends without an exception (then DIR is
        left exactly as it was)."""
        with SupportStore.locked(path):
            tagger = cls.load(path, encoder, **kwargs)
            yield tagger
            tagger.save(path)


def _check_words(words: Sequence, where: str) -> None:
    bad = next((w for w in words if not isinstance(w, str) or not w.strip()), None)
    if bad is not None:
        raise ValueError(f"{where}: words must be non-blank strings, got {bad!r}")


def _ordinal(i: int) -> str:
    return f"sentence {i}"

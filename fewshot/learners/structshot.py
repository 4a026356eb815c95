"""StructShot for few-shot NER (Yang & Katiyar 2020, "Simple and Effective Few-Shot Named Entity
Recognition with Structured Nearest Neighbor Learning").

NNShot's scores (:mod:`fewshot.learners.nnshot`: per label, the negative squared distance to the
nearest support word with it) become emission log-probabilities, ``log_softmax(scores /
temperature)``, and each query sentence is decoded as a whole by :func:`fewshot.transitions.viterbi`
over abstract transition log-probabilities (O -> O, O -> entity, entity -> O, entity -> the same
entity, entity -> another entity, from the start and to the end) estimated on the training types'
tagged sentences (:class:`fewshot.transitions.AbstractTransitions`, add-one smoothing) and spread
over the episode's types. ``temperature`` trades emissions against transitions: the higher, the
flatter the emissions and the more the transitions decide; choose it on validation types
(``bin/bench-ner`` does, on Few-NERD INTER's val types). ``fewshot train`` trains its encoder exactly as
NNShot's (the cross-entropy of NNShot's scores over the query words; the transitions are counted, not
learned), as Yang & Katiyar train StructShot.

A learner of its own rather than an option of nnshot: it has state nnshot has not (the transitions,
learned once per run from the training types by :meth:`prepare_tagging`) and a setting that means
nothing without them (``temperature``), and ``--learner structshot`` is how the field names it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..transitions import AbstractTransitions, viterbi
from .nnshot import NNShot, NNShotConfig
from .registry import register_learner


@dataclass
class StructShotConfig(NNShotConfig):
    name = "structshot"
    # emission temperature: 1 takes NNShot's scores as they are; bin/bench-ner chooses it per shot on Few-NERD
    # INTER's 3 val types (on the frozen MiniLM, 0.25-4 score within about 1 F1 of each other there)
    temperature: float = 1.0
    smoothing: float = 1.0  # add-k smoothing of the abstract transition counts

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("temperature", "smoothing"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"structshot: {key} must be a finite number, got {value!r}")
        if self.temperature <= 0:
            raise ValueError(f"structshot: temperature must be > 0, got {self.temperature}; e.g. "
                             "-L temperature=1")
        if self.smoothing < 0:
            raise ValueError(f"structshot: smoothing must be >= 0, got {self.smoothing}")


@register_learner
class StructShot(NNShot):
    name = "structshot"
    config_class = StructShotConfig

    def __init__(self, encoder, cfg: StructShotConfig | None = None):
        super().__init__(encoder, cfg)
        self.transitions_: AbstractTransitions | None = None

    def set_transitions(self, transitions: AbstractTransitions) -> None:
        """Decode with ``transitions`` (e.g. estimated on another corpus's training data)."""
        if not isinstance(transitions, AbstractTransitions):
            raise TypeError(f"structshot: expected AbstractTransitions, got {type(transitions).__name__}")
        self.transitions_ = transitions

    def prepare_tagging(self, dataset) -> None:
        """Estimate the transitions on ``dataset``'s sentences whose entities are all of its train types (and
        at least one: the sentences an episode draws). Transitions already set are kept."""
        if self.transitions_ is not None:
            return
        train = dataset.splits.get("train")
        if not train:
            raise ValueError(f"structshot estimates its transitions on the training types, but dataset "
                             f"{dataset.name!r} has no train split of types (it has {sorted(dataset.splits)}); "
                             "use a dataset with training types (e.g. fewnerd-inter), or set them with "
                             "StructShot.set_transitions")
        self.transitions_ = AbstractTransitions.estimate(dataset.tags, train, require_entity=True,
                                                         smoothing=self.cfg.smoothing)

    def decode_tags(self, scores: torch.Tensor) -> torch.Tensor:
        """Viterbi over ``log_softmax(scores / temperature)`` and the transitions spread over the labels."""
        if self.transitions_ is None:
            raise ValueError("structshot: no transitions to decode with; call prepare_tagging(dataset) (which "
                             "estimates them on the train types) or set_transitions first")
        emissions = torch.log_softmax(scores.double() / self.cfg.temperature, dim=1).numpy()
        start, trans, end = self.transitions_.expand(scores.shape[1] - 1)
        return torch.from_numpy(viterbi(emissions, trans, start, end))

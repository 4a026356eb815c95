"""Fine-tuning baseline (Chen, Liu, Kira, Wang & Huang 2019, "A Closer Look at Few-shot Classification").

Per episode a fresh linear head (``head="linear"``, Baseline) or cosine head
(``head="cosine"``, Baseline++) is trained on the support set with AdamW and
weight decay, for at most ``steps`` steps, stopping early once the support loss
stops improving; then the queries are classified. ``adapt`` chooses what else
adapts per episode: nothing (``head``: the encoder is frozen, so an evaluation
embeds every example once), or the encoder's last blocks, a LoRA adapter,
its biases or all of it (on a copy, so episodes never leak into each other).

``meta_train`` is the transfer-learning recipe: supervised classification of
the train classes with a head over them (``train_mode = "supervised"``) of the
kind ``head`` names: linear (Baseline) or cosine (Baseline++; its encoder then
suits nearest cosine prototypes, e.g. ``fewshot run --learner protonet`` on the
checkpoint, as in Chen et al. 2021, "Meta-Baseline"). ``pretrain = "contrastive"``
trains the encoder with no head at all, SetFit-style (Tunstall et al. 2022): a
supervised contrastive loss (Khosla et al. 2020) over each batch pulls the
L2-normalised embeddings of same-class examples together and pushes the others
apart, at temperature ``contrastive_temperature``.

The per-episode pieces (:class:`EpisodeHeadConfig`, :func:`new_head`, :func:`fit_head`,
:func:`fit_feature_head`, :func:`adapted_copy`) also serve the tagging baseline,
:mod:`fewshot.learners.finetune_ner`, which fits its head on word embeddings.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..adapters import apply_trainable, check_trainable
from .base import Learner, LearnerConfig
from .registry import register_learner

HEADS = ("linear", "cosine")
PRETRAIN = ("head", "contrastive")


@dataclass
class EpisodeHeadConfig(LearnerConfig):
    """How a fresh head is fitted to one task's support set: the settings finetune and finetune-ner share."""

    head: str = "linear"  # linear (Baseline) | cosine (Baseline++)
    steps: int = 100  # per-episode step budget
    lr: float = 1e-2  # head learning rate
    encoder_lr: float = 1e-5  # when adapt is not "head"
    weight_decay: float = 1e-3
    patience: int = 10  # steps without support-loss improvement before stopping
    min_delta: float = 1e-4
    adapt: str = "head"  # head | last:K | lora | bitfit | full: what adapts per episode besides the head
    cosine_scale: float = 10.0
    seed: int = 0
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"{self.name} head must be one of {HEADS}, got {self.head!r}")
        if self.adapt != "head":
            check_trainable(self.adapt)
        for name, low in (("steps", 1), ("patience", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"{self.name} {name} must be at least {low}, got {getattr(self, name)}")
        if self.lr <= 0 or self.encoder_lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"{self.name} lr and encoder_lr must be > 0 and weight_decay >= 0, got "
                             f"{self.lr}, {self.encoder_lr}, {self.weight_decay}")


@dataclass
class FineTuneConfig(EpisodeHeadConfig):
    name = "finetune"
    trainable: str = "full"  # what supervised pretraining (meta_train) updates
    pretrain: str = "head"  # meta_train's loss: head (cross-entropy over the train classes) | contrastive
    contrastive_temperature: float = 0.1
    augment: int = 0  # augmented copies of each support example during adaptation

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pretrain not in PRETRAIN:
            raise ValueError(f"finetune pretrain must be one of {PRETRAIN}, got {self.pretrain!r}")
        if not self.contrastive_temperature > 0:
            raise ValueError(f"finetune contrastive_temperature must be > 0, got {self.contrastive_temperature}")
        check_trainable(self.trainable)
        if self.augment < 0:
            raise ValueError(f"finetune augment must be at least 0, got {self.augment}")


class CosineHead(nn.Module):
    """Baseline++: scaled cosine similarity between features and per-class weight vectors."""

    def __init__(self, dim: int, n_classes: int, scale: float):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_classes, dim))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        self.scale = scale

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.scale * nn.functional.normalize(z, dim=1) @ nn.functional.normalize(self.weight, dim=1).T


def supervised_contrastive_loss(z: torch.Tensor, y: torch.Tensor, temperature: float) -> torch.Tensor:
    """Khosla et al. 2020 (SupCon, "L_out"): for each anchor with another example of its class in the batch,
    the mean over those positives of -log softmax (over all other examples) of cosine similarity / temperature."""
    z = nn.functional.normalize(z.float(), dim=1)
    sim = z @ z.T / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    positives = (y[:, None] == y[None, :]) & ~self_mask
    n_pos = positives.sum(1)
    anchors = n_pos > 0
    if not bool(anchors.any()):
        raise ValueError("the contrastive loss needs two examples of one class in a batch; raise --batch-size")
    per_anchor = -log_prob.masked_fill(~positives, 0.0).sum(1)[anchors] / n_pos[anchors]
    return per_anchor.mean()


def make_head(kind: str, dim: int, n_classes: int, scale: float = 10.0) -> nn.Module:
    return CosineHead(dim, n_classes, scale) if kind == "cosine" else nn.Linear(dim, n_classes)


def new_head(cfg: EpisodeHeadConfig, dim: int, n_classes: int, device) -> nn.Module:
    """A fresh ``cfg.head`` head, initialised from ``cfg.seed`` (the global generator is left as it was)."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(cfg.seed)
    head = make_head(cfg.head, dim, n_classes, cfg.cosine_scale).to(device)
    torch.random.set_rng_state(gen_state)
    return head


def fit_head(cfg: EpisodeHeadConfig, head: nn.Module, features, y: torch.Tensor, extra_params=()) -> list[float]:
    """Train ``head`` (and ``extra_params``, at ``cfg.encoder_lr``) on a support set with AdamW for at most
    ``cfg.steps`` steps, stopping once the loss has not improved by ``cfg.min_delta`` for ``cfg.patience``
    steps; ``features()`` gives the (n, dim) features of the labels ``y``. Returns the loss of each step."""
    groups = [{"params": list(head.parameters()), "lr": cfg.lr}]
    extra = [p for p in extra_params if p.requires_grad]
    if extra:
        groups.append({"params": extra, "lr": cfg.encoder_lr})
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    best, bad, losses = float("inf"), 0, []
    with torch.enable_grad():
        for _ in range(cfg.steps):
            loss = nn.functional.cross_entropy(head(features().float()), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            value = float(loss.detach())
            losses.append(value)
            if value < best - cfg.min_delta:
                best, bad = value, 0
            else:
                bad += 1
                if bad >= cfg.patience:
                    break
    return losses


def fit_feature_head(cfg: EpisodeHeadConfig, z: torch.Tensor, y: torch.Tensor) -> tuple[nn.Module, list[float]]:
    """A fresh head fitted (:func:`fit_head`) on fixed (n, dim) features ``z``, on the CPU with one thread, in
    eval mode; and its support losses."""
    z, y = z.float().detach().cpu(), torch.as_tensor(y, dtype=torch.long)
    head = new_head(cfg, z.shape[1], int(y.max()) + 1, "cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a (n_way, dim) head: extra threads only add synchronisation (50x slower)
    try:
        losses = fit_head(cfg, head, lambda: z, y)
    finally:
        torch.set_num_threads(threads)
    return head.eval(), losses


def adapted_copy(encoder: nn.Module, cfg: EpisodeHeadConfig) -> nn.Module:
    """A copy of ``encoder`` whose ``cfg.adapt`` part trains (a LoRA adapter is injected into the copy only),
    in eval mode (no dropout on a handful of examples): what one task tunes, so tasks never leak into each
    other or into ``encoder``. A LoRA adapter's random initialisation is drawn from ``cfg.seed`` (the global
    generator is left as it was), so every task starts from the same adapter."""
    enc = copy.deepcopy(encoder)
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(cfg.seed)
    try:
        apply_trainable(enc, cfg.adapt, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout)
    finally:
        torch.random.set_rng_state(gen_state)
    return enc.eval()


class FineTuneModule(nn.Module):
    """The encoder plus, after :meth:`FineTune.prepare_training`, the head over the train classes."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.base_head: nn.Module | None = None


@register_learner
class FineTune(Learner):
    name = "finetune"
    config_class = FineTuneConfig
    train_mode = "supervised"

    def __init__(self, encoder, cfg: FineTuneConfig | None = None):
        super().__init__(encoder, cfg)
        apply_trainable(encoder, self.cfg.trainable, self.cfg.lora_r, self.cfg.lora_alpha, self.cfg.lora_dropout)
        self._module = FineTuneModule(encoder)
        self.support_losses: list[float] = []  # of the last adaptation, step by step

    @property
    def module(self) -> nn.Module:
        return self._module

    @property
    def adapts_encoder(self) -> bool:  # type: ignore[override]
        return self.cfg.adapt != "head" or self.cfg.augment > 0

    # ------------------------------------------------------------ supervised pretraining
    def prepare_training(self, dataset, cfg) -> None:
        if self.cfg.pretrain == "head":
            self.restore_meta({"n_base_classes": len(dataset.split_classes("train")), "base_head": self.cfg.head})

    def checkpoint_meta(self) -> dict:
        head = self._module.base_head
        if head is None:
            return {"n_base_classes": None}
        return {"n_base_classes": head.weight.shape[0],
                "base_head": "cosine" if isinstance(head, CosineHead) else "linear"}

    def restore_meta(self, meta: dict) -> None:
        """Rebuild the base-class head as it was trained: its kind is the checkpoint's, not ``cfg.head``
        (checkpoints from before cosine base heads say none: theirs is linear)."""
        n, kind, now = meta.get("n_base_classes"), meta.get("base_head", "linear"), self.checkpoint_meta()
        if n and (now["n_base_classes"], now.get("base_head")) != (n, kind):
            self._module.base_head = make_head(kind, self.encoder.dim, int(n), self.cfg.cosine_scale).to(self.device)

    def batch_loss(self, x, y: torch.Tensor) -> torch.Tensor:
        if self.cfg.pretrain == "contrastive":
            z = self.encoder.embed(x)
            return supervised_contrastive_loss(z, y.to(z.device), self.cfg.contrastive_temperature)
        if self._module.base_head is None:
            raise ValueError("finetune.batch_loss needs the base-class head: call prepare_training(dataset, cfg)")
        z = self.encoder.embed(x).float()
        return nn.functional.cross_entropy(self._module.base_head(z), y.to(z.device))

    # ------------------------------------------------------------ per-episode adaptation
    def adapt_features(self, z_support: torch.Tensor, y_support: torch.Tensor) -> None:
        self._head, self.support_losses = fit_feature_head(self.cfg, z_support, y_support)
        self._adapted = None

    def logits_features(self, z_query: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._head(z_query.float().cpu())

    def adapt(self, support_x, support_y) -> None:
        y = torch.as_tensor(np.asarray(support_y), dtype=torch.long)
        x = list(support_x)
        if self.cfg.augment:
            from ..augment import make_augmenter

            aug = make_augmenter(self.encoder.modality, self.encoder)
            rng = np.random.default_rng(self.cfg.seed)
            for _ in range(self.cfg.augment):
                x += aug(list(support_x), rng)
            y = y.repeat(self.cfg.augment + 1)
        if self.cfg.adapt == "head":
            z = torch.from_numpy(self.encoder.encode(x, device=self.device))
            self.adapt_features(z, y)
            return
        enc = adapted_copy(self.encoder, self.cfg)
        device = self.device
        self._head = new_head(self.cfg, enc.dim, int(y.max()) + 1, device)
        self.support_losses = fit_head(self.cfg, self._head, lambda: enc.embed(x), y.to(device), enc.parameters())
        self._head.eval()
        self._adapted = enc

    def logits(self, query_x) -> torch.Tensor:
        if self.cfg.adapt == "head":
            return self.logits_features(torch.from_numpy(self.encoder.encode(list(query_x), device=self.device)))
        z = self._adapted.encode(list(query_x), device=self.device)
        with torch.no_grad():
            return self._head(torch.from_numpy(z).to(self.device)).cpu()

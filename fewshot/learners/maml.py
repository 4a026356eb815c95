"""Model-agnostic meta-learning (Finn, Abbeel & Levine 2017, "Model-Agnostic Meta-Learning for Fast
Adaptation of Deep Networks"), and ANIL (Raghu et al. 2020, "Rapid Learning or Feature Reuse?").

Meta-training goes through ``learn2learn.algorithms.MAML`` (clone, inner-loop
``adapt`` on the support loss, query loss of the adapted clone); the returned
loss's ``backward()`` gives the first- or second-order meta-gradient.
learn2learn is imported only through :mod:`fewshot.l2l`, inside functions.

**Head.** A task's classes are unordered and their number varies, so the head
initialisation is one learned weight vector ``w`` (dim,) and one bias ``b``
shared by every class, replicated to an (n_way, dim) linear head at the start
of each task (the "unicorn" head of Ye & Chao 2022, "How to Train Your MAML to
Excel in Few-Shot Classification"). ``w`` and ``b`` start at zero, so the
untrained head is the zero head of Kao et al. 2022; meta-training learns them.
Any way works at test time, whatever the training way. As all rows of the
initial head are equal, the first inner step's gradient w.r.t. the features is
zero: that step adapts the head only, and the encoder adapts from the second
step on (so MAML proper needs ``inner_steps >= 2``; with 1 it acts like ANIL).

**Inner loop.** ``anil = false`` adapts encoder and head (MAML); ``anil = true``
adapts the head only, on features from the encoder, which the outer loop still
trains (ANIL). The default (``anil`` unset) is MAML for image encoders and ANIL
for text encoders: second-order MAML through a transformer works but is slow.

**Evaluation** (:meth:`MAMLLearner.adapt`, :meth:`MAMLLearner.logits`) runs
``test_inner_steps`` plain gradient steps with ``torch.autograd.grad``,
without learn2learn and without a higher-order graph. Training and adaptation
normalise BatchNorm layers with the batch's own statistics, as Finn et al. and
learn2learn do; at evaluation the queries are normalised with the statistics of
the support set under the adapted weights, so a query's prediction never
depends on the other queries (no transductive batch norm). The module's
running statistics are never modified by evaluation. With ANIL, evaluation
embeds each example once with the encoder in eval mode
(:meth:`adapt_features`, :meth:`logits_features`).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from .. import l2l
from ..adapters import apply_trainable, check_trainable
from ..prototypes import class_means
from .base import Learner, LearnerConfig
from .registry import register_learner


HEAD_INITS = ("zero", "prototypes")


@dataclass
class MAMLConfig(LearnerConfig):
    """Options of :class:`MAMLLearner`.

    ``inner_steps`` / ``inner_lr``: gradient steps and step size of the inner
    loop during meta-training; ``test_inner_steps`` at evaluation (unset: the
    same). ``first_order``: drop second derivatives (FOMAML). ``anil``: adapt
    the head only (unset: true for text encoders, false for image encoders).
    ``trainable`` (see :mod:`fewshot.adapters`): the encoder parameters that
    meta-training updates and, unless ``anil``, that the inner loop adapts; with
    ``trainable = "lora"`` and ``anil = false`` the inner loop runs over the
    LoRA matrices and the head only.
    """

    name = "maml"
    inner_steps: int = 5
    inner_lr: float = 0.4
    test_inner_steps: Optional[int] = None
    first_order: bool = False
    anil: Optional[bool] = None
    trainable: str = "full"  # full | last:K | lora | bitfit | none
    head_init: str = "zero"  # zero: the learned shared row only; prototypes: + the support prototypes (Proto-MAML)
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0

    def __post_init__(self) -> None:
        check_trainable(self.trainable)
        if self.head_init not in HEAD_INITS:
            raise ValueError(f"learner.head_init must be one of {HEAD_INITS}, got {self.head_init!r}; "
                             "prototypes starts each task's head at the protonet classifier (Proto-MAML)")
        if isinstance(self.inner_steps, bool) or not isinstance(self.inner_steps, int) or self.inner_steps < 1:
            raise ValueError(f"learner.inner_steps must be an int >= 1, got {self.inner_steps!r}; "
                             "MAML needs at least one inner-loop step")
        if self.test_inner_steps is not None and (isinstance(self.test_inner_steps, bool)
                                                  or not isinstance(self.test_inner_steps, int)
                                                  or self.test_inner_steps < 1):
            raise ValueError(f"learner.test_inner_steps must be an int >= 1 or unset, got "
                             f"{self.test_inner_steps!r}")
        if not isinstance(self.inner_lr, (int, float)) or isinstance(self.inner_lr, bool) or not self.inner_lr > 0:
            raise ValueError(f"learner.inner_lr must be a positive number, got {self.inner_lr!r}; "
                             "typical values are 0.01-0.5")
        self.inner_lr = float(self.inner_lr)


class MAMLNetwork(nn.Module):
    """What MAML trains and saves: the encoder and the shared head initialisation (w, b)."""

    def __init__(self, encoder: nn.Module, dim: int):
        super().__init__()
        self.encoder = encoder
        self.head_weight = nn.Parameter(torch.zeros(dim))
        self.head_bias = nn.Parameter(torch.zeros(()))

    def head(self, n_way: int, z_support: torch.Tensor | None = None,
             y_support: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The task head's initial (n_way, dim) weight and (n_way,) bias, differentiable w.r.t. (w, b).

        With support embeddings (Proto-MAML), each row also holds its class's prototype ``c_k`` as
        the linear form of the negative squared distance: ``2 c_k`` and ``-||c_k||^2``.
        """
        weight, bias = self.head_weight.expand(n_way, -1), self.head_bias.expand(n_way)
        if z_support is None:
            return weight, bias
        c = class_means(z_support.float(), y_support, n_way)
        return weight + 2 * c, bias - c.pow(2).sum(1)


class _TaskModel(nn.Module):
    """One task's network for learn2learn: optional encoder, then a linear head of n_way rows.

    The head tensors are non-leaf (replicated from the learned init), so they are
    placed in ``_parameters`` directly, the way learn2learn's own update_module does.
    """

    def __init__(self, encoder: nn.Module | None, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.encoder = encoder
        self._parameters["weight"] = weight
        self._parameters["bias"] = bias

    def forward(self, x):
        z = self.encoder(x) if self.encoder is not None else x
        return F.linear(z, self.weight, self.bias)


def _check_labels(y: torch.Tensor, what: str, n_way: int | None = None) -> int:
    if not isinstance(y, torch.Tensor) or y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"{what} must be an integer torch tensor of local labels 0..n_way-1, got "
                        f"{type(y).__name__} {getattr(y, 'dtype', '')}; use torch.as_tensor(labels)")
    if y.ndim != 1 or y.numel() == 0:
        raise ValueError(f"{what} must be a non-empty 1-D tensor, got shape {tuple(y.shape)}")
    if n_way is None:
        n_way = int(y.max()) + 1
        missing = sorted(set(range(n_way)) - set(y.tolist()))
        if missing:
            raise ValueError(f"{what}: local labels {missing} have no support example; labels must cover "
                             f"0..{n_way - 1}")
    elif int(y.min()) < 0 or int(y.max()) >= n_way:
        raise ValueError(f"{what} must lie in 0..{n_way - 1} (the support set's classes), got "
                         f"{int(y.min())}..{int(y.max())}")
    return n_way


def _inputs(encoder, items, device):
    if len(items) == 0:
        raise ValueError("expected at least one item, got an empty list")
    batch = encoder.inputs(items)  # raw items preprocessed, ResidentItems gathered on the device
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    return {k: v.to(device) for k, v in batch.items()}


def _batchnorms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@register_learner
class MAMLLearner(Learner):
    name = "maml"
    config_class = MAMLConfig

    def __init__(self, encoder, cfg: MAMLConfig | None = None):
        super().__init__(encoder, cfg)
        apply_trainable(encoder, self.cfg.trainable, self.cfg.lora_r, self.cfg.lora_alpha, self.cfg.lora_dropout)
        anil = self.cfg.anil
        self.anil = (encoder.modality == "text") if anil is None else bool(anil)
        self.adapts_encoder = not self.anil
        self.network = MAMLNetwork(encoder, encoder.dim).to(next(encoder.parameters()).device)
        self._adapted: dict | None = None

    @property
    def module(self) -> nn.Module:
        return self.network

    # ---- meta-training: learn2learn ----------------------------------------------------------

    def episode_loss(self, support_x, support_y: torch.Tensor, query_x, query_y: torch.Tensor):
        """Query loss (scalar) and (n_query, n_way) logits of one task after the inner loop.

        ``loss.backward()`` leaves the meta-gradient (second-order unless
        ``first_order``) in ``module``'s parameters.
        """
        n_way = _check_labels(support_y, "support_y")
        _check_labels(query_y, "query_y", n_way)
        device = self.device
        ys, yq = support_y.long().to(device), query_y.long().to(device)
        protos = self.cfg.head_init == "prototypes"
        if self.anil:
            xs, xq = self.encoder.embed(support_x), self.encoder.embed(query_x)
            weight, bias = self.network.head(n_way, xs if protos else None, ys)
            task = _TaskModel(None, weight, bias)
        else:
            xs, xq = _inputs(self.encoder, support_x, device), _inputs(self.encoder, query_x, device)
            weight, bias = self.network.head(n_way, self.encoder(xs) if protos else None, ys)
            task = _TaskModel(self.encoder, weight, bias)
        # An encoder may hold parameters its output does not use (a transformer's pooler) or frozen ones.
        lenient = not self.anil
        learner = l2l.maml(task, lr=self.cfg.inner_lr, first_order=self.cfg.first_order,
                           allow_unused=lenient, allow_nograd=lenient).clone()
        for _ in range(self.cfg.inner_steps):  # losses in float32: bf16 logits under autocast lose precision
            l2l.adapt(learner, F.cross_entropy(learner(xs).float(), ys))
        logits = learner(xq)
        return F.cross_entropy(logits.float(), yq), logits

    # ---- evaluation: plain torch.autograd.grad, no higher-order graph ------------------------

    @property
    def _test_steps(self) -> int:
        return self.cfg.test_inner_steps or self.cfg.inner_steps

    def _inner_loop(self, forward, params: dict, y: torch.Tensor, frozen: frozenset = frozenset()) -> dict:
        """``test_inner_steps`` SGD steps on the support loss; ``frozen`` names stay fixed, unused ones too."""
        params = {k: v.detach().requires_grad_(k not in frozen) for k, v in params.items()}
        for _ in range(self._test_steps):
            free = [k for k in params if k not in frozen]
            with torch.enable_grad():
                loss = F.cross_entropy(forward(params), y)
                grads = torch.autograd.grad(loss, [params[k] for k in free], allow_unused=True)
            for k, g in zip(free, grads):
                if g is not None:
                    params[k] = (params[k] - self.cfg.inner_lr * g).detach().requires_grad_(True)
        return {k: v.detach() for k, v in params.items()}

    def adapt_features(self, z_support: torch.Tensor, y_support: torch.Tensor) -> None:
        """ANIL: fit the head on (n_support, dim) embeddings."""
        n_way = _check_labels(torch.as_tensor(y_support), "support labels")
        z = z_support.float().to(self.device)
        y = torch.as_tensor(y_support).long().to(self.device)
        weight, bias = self.network.head(n_way, z if self.cfg.head_init == "prototypes" else None, y)
        self._adapted = self._inner_loop(lambda p: F.linear(z, p["weight"], p["bias"]),
                                         {"weight": weight, "bias": bias}, y)

    def logits_features(self, z_query: torch.Tensor) -> torch.Tensor:
        """ANIL: (n_query, n_way) logits of the last adapted head."""
        if self._adapted is None:
            raise ValueError("call adapt() or adapt_features() with a support set before logits()")
        z = z_query.float().to(self.device)
        return F.linear(z, self._adapted["weight"], self._adapted["bias"]).detach().cpu()

    @contextlib.contextmanager
    def _evaluation_state(self, batch_stats: bool):
        """Encoder in eval mode; BatchNorm on batch statistics if ``batch_stats``; modes restored after."""
        modes = [(m, m.training) for m in self.encoder.modules()]
        self.encoder.eval()
        for bn in _batchnorms(self.encoder):
            bn.train(batch_stats)
        try:
            yield
        finally:
            for m, mode in modes:
                m.training = mode

    def _forward(self, params: dict, buffers: dict, x) -> torch.Tensor:
        enc = {k[len("encoder."):]: v for k, v in params.items() if k.startswith("encoder.")}
        z = functional_call(self.encoder, {**enc, **buffers}, (x,))
        return F.linear(z, params["weight"], params["bias"])

    def adapt(self, support_x, support_y) -> None:
        """Fit encoder and head to one task's support set (ANIL: the head only)."""
        if self.anil:
            return super().adapt(support_x, support_y)
        y = torch.as_tensor(support_y).long()
        n_way = _check_labels(y, "support labels")
        device = self.device
        y = y.to(device)
        x = _inputs(self.encoder, support_x, device)
        params = {f"encoder.{k}": v for k, v in self.encoder.named_parameters()}
        frozen = frozenset(k for k, v in params.items() if not v.requires_grad)
        scratch = {k: b.clone() for k, b in self.encoder.named_buffers()}  # the module's stay untouched
        with self._evaluation_state(batch_stats=True):
            z = None
            if self.cfg.head_init == "prototypes":  # the support's embeddings, on its own batch statistics
                with torch.no_grad():
                    z = functional_call(self.encoder, {**dict(self.encoder.named_parameters()),
                                                       **{k: b.clone() for k, b in scratch.items()}}, (x,))
            weight, bias = self.network.head(n_way, z, y)
            params.update(weight=weight, bias=bias)
            params = self._inner_loop(lambda p: self._forward(p, scratch, x), params, y, frozen)
            # Support-set statistics under the adapted weights: a cumulative average over one batch.
            stats = {k: (torch.zeros_like(b) if k.endswith("num_batches_tracked") else b.clone())
                     for k, b in self.encoder.named_buffers()}
            bns = _batchnorms(self.encoder)
            momenta = [bn.momentum for bn in bns]
            try:
                for bn in bns:
                    bn.momentum = None
                with torch.no_grad():
                    self._forward(params, stats, x)
            finally:
                for bn, m in zip(bns, momenta):
                    bn.momentum = m
        self._adapted = {"params": params, "buffers": stats}

    def logits(self, query_x) -> torch.Tensor:
        """(n_query, n_way) logits of the last adapted task."""
        if self.anil:
            return super().logits(query_x)
        if self._adapted is None or "params" not in self._adapted:
            raise ValueError("call adapt() with a support set before logits()")
        x = _inputs(self.encoder, query_x, self.device)
        with self._evaluation_state(batch_stats=False), torch.no_grad():
            return self._forward(self._adapted["params"], self._adapted["buffers"], x).cpu()

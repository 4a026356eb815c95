"""fewshot.l2l: learn2learn's MAML against a torch.func reference, its quirks, and a missing install."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from fewshot import l2l


def _tiny_task(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    xs, xq = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(9, 4, generator=g, dtype=torch.float64)
    ys, yq = torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([0, 1, 2] * 3)
    return model, xs, ys, xq, yq


def _reference(model, xs, ys, xq, yq, lr, steps, first_order):
    """MAML written directly with torch.func.functional_call and torch.autograd.grad."""
    params = dict(model.named_parameters())
    for _ in range(steps):
        loss = F.cross_entropy(functional_call(model, params, (xs,)), ys)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=not first_order)
        if first_order:
            grads = [g.detach() for g in grads]
        params = {k: p - lr * g for (k, p), g in zip(params.items(), grads)}
    query_loss = F.cross_entropy(functional_call(model, params, (xq,)), yq)
    meta_grads = torch.autograd.grad(query_loss, list(model.parameters()))
    return [p.detach() for p in params.values()], query_loss.detach(), meta_grads


def _learn2learn(model, xs, ys, xq, yq, lr, steps, first_order):
    learner = l2l.maml(model, lr=lr, first_order=first_order).clone()
    for _ in range(steps):
        l2l.adapt(learner, F.cross_entropy(learner(xs), ys))
    adapted = [p.detach().clone() for p in learner.parameters()]
    query_loss = F.cross_entropy(learner(xq), yq)
    meta_grads = torch.autograd.grad(query_loss, list(model.parameters()))
    return adapted, query_loss.detach(), meta_grads


@pytest.mark.parametrize("first_order", [False, True])
def test_maml_matches_torch_func_reference(first_order):
    model, xs, ys, xq, yq = _tiny_task()
    ref = _reference(model, xs, ys, xq, yq, lr=0.5, steps=3, first_order=first_order)
    got = _learn2learn(model, xs, ys, xq, yq, lr=0.5, steps=3, first_order=first_order)
    for a, b in zip(got[0], ref[0]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got[1], ref[1], rtol=1e-10, atol=1e-12)
    for a, b in zip(got[2], ref[2]):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    # the adaptation moved the parameters, and the gradients are not trivially zero
    assert max((a - p).abs().max().item() for a, p in zip(got[0], model.parameters())) > 1e-3
    assert min(g.abs().max().item() for g in got[2]) > 1e-6


def test_first_and_second_order_meta_gradients_differ():
    model, xs, ys, xq, yq = _tiny_task(1)
    fo = _learn2learn(model, xs, ys, xq, yq, lr=0.5, steps=2, first_order=True)[2]
    so = _learn2learn(model, xs, ys, xq, yq, lr=0.5, steps=2, first_order=False)[2]
    assert max((a - b).abs().max().item() for a, b in zip(fo, so)) > 1e-4


class _UnusedParameter(nn.Module):
    def __init__(self):
        super().__init__()
        self.used, self.unused = nn.Linear(3, 2), nn.Linear(3, 2)

    def forward(self, x):
        return self.used(x)


def test_adapt_raises_the_real_runtime_error(capsys):
    torch.manual_seed(0)
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    raw = l2l.maml(_UnusedParameter(), lr=0.1).clone()
    with pytest.raises(UnboundLocalError):  # learn2learn 0.2.0's own behaviour: the real error is hidden
        raw.adapt(F.cross_entropy(raw(x), y))
    capsys.readouterr()
    learner = l2l.maml(_UnusedParameter(), lr=0.1).clone()
    with pytest.raises(RuntimeError, match="appears to not have been used in the graph") as info:
        l2l.adapt(learner, F.cross_entropy(learner(x), y))
    assert "anil" in str(info.value)
    assert any("Traceback" in note for note in info.value.__notes__)
    assert capsys.readouterr().out == ""  # nothing printed behind the user's back


def test_adapt_updates_like_one_sgd_step():
    torch.manual_seed(0)
    lin = nn.Linear(3, 2)
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 1])
    learner = l2l.maml(lin, lr=0.25).clone()
    loss = F.cross_entropy(learner(x), y)
    g = torch.autograd.grad(loss, list(lin.parameters()), retain_graph=True)
    l2l.adapt(learner, loss)
    for p_new, p_old, gi in zip(learner.parameters(), lin.parameters(), g):
        torch.testing.assert_close(p_new.detach(), (p_old - 0.25 * gi).detach())


def test_missing_learn2learn_gives_build_instructions(monkeypatch, tiny_image_encoder):
    monkeypatch.setitem(sys.modules, "learn2learn", None)  # what an absent install looks like to import
    with pytest.raises(ImportError, match=r"(?s)learn2learn 0\.2\.0 is needed.*build_ext.*bin/setup"):
        l2l.import_learn2learn()

    from fewshot.learners import create_learner

    maml = create_learner("maml", tiny_image_encoder, {"inner_steps": 1})
    images = [np.full((28, 28), v, dtype=np.uint8) for v in (0, 255, 10, 240)]
    with pytest.raises(ImportError, match="bin/setup"):
        maml.episode_loss(images[:2], torch.tensor([0, 1]), images[2:], torch.tensor([0, 1]))

    # every other learner keeps working
    proto = create_learner("protonet", tiny_image_encoder)
    proto.adapt(images[:2], [0, 1])
    assert proto.logits(images[2:]).argmax(1).tolist() == [0, 1]


def test_missing_learn2learn_via_import_hook(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "learn2learn" or name.startswith("learn2learn."):
            raise ModuleNotFoundError("No module named 'learn2learn'", name="learn2learn")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "learn2learn", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match="No module named 'learn2learn'") as info:
        l2l.import_learn2learn()
    assert "PIP_CONSTRAINT=bin/constraints/learn2learn-build.txt" in str(info.value)


def test_learn2learn_is_imported_lazily_and_quietly():
    code = (
        "import sys\n"
        "import fewshot.learners.maml, fewshot.l2l\n"
        "from fewshot.learners import list_learners\n"
        "assert 'maml' in list_learners(), list_learners()\n"
        "print('loaded-before-use', 'learn2learn' in sys.modules)\n"
        "fewshot.l2l.import_learn2learn()\n"
        "print('loaded-after-use', 'learn2learn' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["loaded-before-use False", "loaded-after-use True"]
    assert "Gym has been unmaintained" not in out.stderr
    assert out.stderr.strip() == ""

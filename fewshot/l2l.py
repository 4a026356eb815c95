"""learn2learn, imported lazily and with its 0.2.0 quirks handled: the only module that imports it.

learn2learn (Arnold et al. 2020, "learn2learn: A Library for Meta-Learning
Research") is imported inside :func:`import_learn2learn`, never at module
load, because ``import learn2learn`` pulls gym, torchvision and scipy (about
5 s) and prints gym's "unmaintained" notice on stderr. Three quirks of the
last release (0.2.0) are handled here:

- it does not build from PyPI on CPython 3.11; a missing install raises
  :class:`ImportError` with the exact build recipe of ``bin/setup``;
- gym's notice is swallowed during the import (other stderr output is kept);
- ``MAML.adapt`` catches the RuntimeError of ``torch.autograd.grad``, prints
  it and then fails with ``UnboundLocalError``; :func:`adapt` raises the real
  error instead.

fewshot never uses learn2learn's ``TaskDataset`` transforms (on Python 3.11
``NWays`` raises ``TypeError: Population must be a sequence`` unless it comes
first): episodes come from :mod:`fewshot.episodes`.
"""
from __future__ import annotations

import contextlib
import io
import re
import sys

INSTALL_HINT = (
    "learn2learn 0.2.0 is needed for --learner maml but cannot be imported. Its PyPI source ships C files "
    "that do not compile on CPython 3.11, so build it with Cython 3 (this is what bin/setup does):\n"
    "  .venv/bin/python -m pip install gym scipy requests tqdm pillow torchvision==0.29.1\n"
    "  PIP_CONSTRAINT=bin/constraints/learn2learn-build.txt .venv/bin/python -m pip install --no-cache-dir "
    "--no-deps --use-pep517 --config-settings=--build-option=build_ext learn2learn==0.2.0\n"
    "or simply rerun bin/setup. Every other learner (protonet, finetune) works without it."
)

_GYM_NOTICE = re.compile(r"Gym has been unmaintained.*?migration_guide/[^\n]*\n?", re.S)


def import_learn2learn():
    """The ``learn2learn`` module; ImportError with build instructions when it is missing or broken."""
    module = sys.modules.get("learn2learn")
    if module is not None:
        return module
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            import learn2learn as module
    except ImportError as exc:
        raise ImportError(f"{INSTALL_HINT}\n(the import failed with: {exc})") from exc
    finally:
        rest = _GYM_NOTICE.sub("", captured.getvalue())
        if rest.strip():
            sys.stderr.write(rest)
    return module


def maml(model, lr: float, first_order: bool = False, allow_unused: bool = False, allow_nograd: bool = False):
    """``learn2learn.algorithms.MAML(model, lr, first_order, ...)`` (Finn et al. 2017).

    ``allow_unused``: parameters the loss does not use get no update instead of an
    error; ``allow_nograd``: parameters with ``requires_grad=False`` stay fixed.
    """
    l2l = import_learn2learn()
    return l2l.algorithms.MAML(model, lr=lr, first_order=first_order, allow_unused=allow_unused,
                               allow_nograd=allow_nograd)


def adapt(learner, loss) -> None:
    """One inner-loop step ``learner.adapt(loss)`` on a cloned MAML learner, with the real error on failure.

    learn2learn 0.2.0 prints the RuntimeError of ``torch.autograd.grad`` and then
    fails with an unrelated ``UnboundLocalError``; here its output is captured and
    the original message is raised as a RuntimeError (the printed traceback is
    attached as a note). Anything else learn2learn prints is passed through.
    """
    out = io.StringIO()
    failed = None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            learner.adapt(loss)
    except UnboundLocalError as exc:
        failed = exc
    printed = out.getvalue()
    if failed is None:
        if printed:
            sys.stderr.write(printed)
        return
    lines = [ln for ln in printed.splitlines() if ln.startswith("RuntimeError")]
    real = lines[-1].partition(":")[2].strip() if lines else str(failed)
    err = RuntimeError(
        f"MAML inner-loop step failed in torch.autograd.grad: {real}. Every adapted parameter must "
        "require grad and be used by the support loss; adapt only the parameters the loss depends on "
        "(e.g. anil = true adapts the head only)."
    )
    err.add_note("learn2learn printed:\n" + printed.rstrip())
    raise err from None


__all__ = ["INSTALL_HINT", "adapt", "import_learn2learn", "maml"]

"""fewshot: teach a model new classes from a handful of examples, and measure it honestly.

Public API (imported lazily, so ``fewshot --help`` does not load torch)::

    from fewshot import FewShotClassifier, FewShotConfig, create_encoder, create_learner
"""
__version__ = "0.1.0"

_EXPORTS = {
    "FewShotClassifier": "fewshot.support",
    "FewShotConfig": "fewshot.config",
    "create_encoder": "fewshot.encoders",
    "create_learner": "fewshot.learners",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'fewshot' has no attribute {name!r}")

"""The support index folder names no path it silently depends on: an index over a checkpoint that moved is
refused with the fix, and loads when given the checkpoint's new place (its weights checked by fingerprint)."""
from __future__ import annotations

import shutil

import pytest

from fewshot.checkpoint import save_checkpoint
from fewshot.learners import create_learner
from fewshot.support import FewShotClassifier


def test_an_index_over_a_moved_checkpoint_says_how_to_load_it(tiny_text_encoder, tmp_path):
    save_checkpoint(tmp_path / "ck", create_learner("protonet", tiny_text_encoder))
    clf = FewShotClassifier.from_checkpoint(tmp_path / "ck").fit(["pay bill", "play jazz"], ["billing", "music"])
    clf.save(tmp_path / "ix")
    before = clf.predict_proba(["a bill"])
    shutil.move(tmp_path / "ck", tmp_path / "moved")
    with pytest.raises(ValueError, match=r"was built over the checkpoint .*ck, which is no longer there.*"
                                         r"encoder=CKPT"):
        FewShotClassifier.load(tmp_path / "ix")
    again = FewShotClassifier.load(tmp_path / "ix", encoder=tmp_path / "moved")
    assert again.predict_proba(["a bill"]).tolist() == before.tolist()


def test_another_checkpoints_weights_are_refused(tiny_text_encoder, tiny_text_model_dir, tmp_path):
    import torch

    from fewshot.encoders import create_encoder

    save_checkpoint(tmp_path / "ck", create_learner("protonet", tiny_text_encoder))
    FewShotClassifier.from_checkpoint(tmp_path / "ck").fit(["a", "b"], ["x", "y"]).save(tmp_path / "ix")
    torch.manual_seed(1)
    other = create_encoder(str(tiny_text_model_dir))
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    save_checkpoint(tmp_path / "other", create_learner("protonet", other))
    with pytest.raises(ValueError, match="weights fingerprint"):
        FewShotClassifier.load(tmp_path / "ix", encoder=tmp_path / "other")

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


def _rewrite_state(src, dst, state: bytes) -> None:
    """A copy of folder ``src`` at ``dst`` whose class state file is ``state`` (checksums made to match)."""
    from fewshot.store import SupportStore

    meta, blobs = SupportStore(src).read()
    SupportStore(dst).write(meta, {"state": ("safetensors", state), "support": ("json", blobs["support"])})


def test_the_means_are_used_in_place_and_a_change_in_memory_never_reaches_the_file(tiny_text_encoder, tmp_path,
                                                                                     monkeypatch):
    import numpy as np

    from fewshot.support import classbook

    monkeypatch.setattr(classbook, "BLOCK_ROWS", 2)  # the means span blocks, a partial one last

    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, tiny_text_encoder.dim)).astype(np.float32)
    clf = FewShotClassifier(tiny_text_encoder).add_embeddings(z, ["a", "b", "c", "a", "b", "c"])
    clf.save(tmp_path / "ix")
    state = next((tmp_path / "ix").glob("state-*"))
    before = state.read_bytes()
    from safetensors.numpy import load as load_arrays  # written block by block, read back by safetensors itself

    assert list(load_arrays(before)) == ["means"]
    np.testing.assert_array_equal(load_arrays(before)["means"], clf.prototypes_)
    loaded = FewShotClassifier.load(tmp_path / "ix", encoder=tiny_text_encoder)
    np.testing.assert_array_equal(loaded.prototypes_, clf.prototypes_)  # bit for bit
    extra = rng.standard_normal((2, tiny_text_encoder.dim)).astype(np.float32)
    loaded.add_embeddings(extra, ["a", "d"])
    want_a = (clf.prototypes_[0].astype(np.float64) * 2 + extra[0]) / 3  # the saved mean times its count, plus one
    np.testing.assert_allclose(loaded.prototypes_[0], want_a, rtol=1e-6)
    assert state.read_bytes() == before  # a private map: the change stayed in this process
    again = FewShotClassifier.load(tmp_path / "ix", encoder=tiny_text_encoder)
    np.testing.assert_array_equal(again.prototypes_, clf.prototypes_)
    loaded.save(tmp_path / "ix")
    np.testing.assert_array_equal(FewShotClassifier.load(tmp_path / "ix", encoder=tiny_text_encoder).prototypes_,
                                  loaded.prototypes_)


def test_an_older_folder_of_float64_sums_loads_and_a_lying_means_header_is_refused(tiny_text_encoder, tmp_path):
    import numpy as np
    from safetensors.numpy import save as save_arrays

    from fewshot.store import StoreError

    rng = np.random.default_rng(1)
    z = rng.standard_normal((4, tiny_text_encoder.dim)).astype(np.float32)
    clf = FewShotClassifier(tiny_text_encoder).add_embeddings(z, ["a", "b", "a", "b"])
    clf.save(tmp_path / "ix")
    _rewrite_state(tmp_path / "ix", tmp_path / "old", save_arrays({"sums": clf.sums_.copy()}))
    old = FewShotClassifier.load(tmp_path / "old", encoder=tiny_text_encoder)
    np.testing.assert_allclose(old.prototypes_, clf.prototypes_, rtol=1e-6)
    np.testing.assert_array_equal(old.sums_, clf.sums_)
    dim = tiny_text_encoder.dim
    for bad, why in [(save_arrays({"means": z[:3]}), r"shape \[3, %d\]" % dim),
                     (save_arrays({"means": clf.prototypes_.astype(np.float64)}), "dtype F64"),
                     (b"\xff" * 8 + b"{}", "header of")]:
        _rewrite_state(tmp_path / "ix", tmp_path / "bad", bad)
        with pytest.raises(StoreError, match="class means file cannot be read.*" + why):
            FewShotClassifier.load(tmp_path / "bad", encoder=tiny_text_encoder)
        shutil.rmtree(tmp_path / "bad")

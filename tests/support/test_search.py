"""The search policy at scale: ``auto`` switches to IVF with 8-bit codes, re-scores the candidates exactly,
tunes nprobe to the target recall and writes what it measured into the folder; removals and adds stay
consistent with the book; the flat index is not stored twice but rebuilt from the means."""
from __future__ import annotations

import numpy as np
import pytest

from fewshot.store import SupportStore
from fewshot.support import FewShotClassifier, search
from fewshot.support.folder import describe


def _clustered(rng, n, dim):
    centres = rng.standard_normal((32, dim)).astype(np.float32)
    return (centres[rng.integers(0, 32, n)] + 0.6 * rng.standard_normal((n, dim))).astype(np.float32)


@pytest.fixture
def big(tiny_text_encoder, monkeypatch):
    monkeypatch.setattr(search, "AUTO_APPROX_MIN", 3000)
    rng = np.random.default_rng(0)
    dim = tiny_text_encoder.dim
    z = _clustered(rng, 4000, dim)
    clf = FewShotClassifier(tiny_text_encoder, "euclidean").add_embeddings(z, [f"c{i}" for i in range(4000)])
    return clf, z, rng


def test_auto_builds_pq_ivf_tuned_to_the_target_recall_with_exact_scores(big):
    clf, z, rng = big
    ix = clf.head_.index
    assert (ix.kind, ix.codes, ix.exact_scores) == ("ivf", "pq", False)
    assert ix.nlist == min(int(2 * np.sqrt(4000)), 4000 // 39) and 1 <= ix.nprobe <= ix.nlist
    t = ix.tuning
    assert t["recall_at_1"] >= search.TARGET_RECALL and t["queries"] == search.CALIBRATION_QUERIES
    assert [ix.nprobe, t["recall_at_1"]] in t["tried"]
    assert all(r < search.TARGET_RECALL for p, r in t["tried"] if p < ix.nprobe)  # the smallest that reaches it
    power = min(p for p, r in t["tried"] if r >= search.TARGET_RECALL and p & (p - 1) == 0)
    assert ix.nprobe > power // 2 and (ix.nprobe - power // 2) % max(1, power // search.REFINE_STEPS) == 0
    q = z[:200] + 0.05 * rng.standard_normal((200, z.shape[1])).astype(np.float32)
    ranking = clf.rank_embeddings(q, k=3)
    exact = clf.scores_of(q)
    rows = np.array([[clf.classes_.index(lab) for lab in row] for row in ranking.labels])
    np.testing.assert_allclose(ranking.scores, np.take_along_axis(exact, rows, 1), rtol=1e-5, atol=1e-4)
    assert np.all(np.diff(ranking.scores, axis=1) <= 0)
    agree = np.mean([p == clf.classes_[i] for p, i in zip(ranking.predictions, exact.argmax(1))])
    assert agree >= 0.99


def test_ivf_folder_records_the_recall_and_survives_removal_and_reload(big, tmp_path):
    clf, z, _ = big
    clf.remove_classes(["c0", "c17"])
    clf.add_embeddings(z[:1], ["fresh"])
    assert clf.predict_embeddings(z[:1]) == ["fresh"]  # c0's old mean is gone, fresh holds it
    clf.save(tmp_path / "ix")
    info = describe(tmp_path / "ix")["search"]
    assert info["kind"] == "ivf" and info["codes"] == "pq" and info["recall_at_1"] >= 0.99
    assert info["nprobe"] == clf.head_.index.nprobe
    again = FewShotClassifier.load(tmp_path / "ix", encoder=clf.encoder)
    assert again.classes_ == clf.classes_ and "c17" not in again.classes_
    np.testing.assert_array_equal(again.prototypes_, clf.prototypes_)
    assert again.predict_embeddings(z[:50]) == clf.predict_embeddings(z[:50])


def test_a_flat_index_is_rebuilt_from_the_means_not_stored(tiny_text_encoder, tmp_path):
    rng = np.random.default_rng(1)
    z = rng.standard_normal((30, tiny_text_encoder.dim)).astype(np.float32)
    clf = FewShotClassifier(tiny_text_encoder).add_embeddings(z, [f"c{i % 10}" for i in range(30)])
    clf.save(tmp_path / "ix")
    files = SupportStore(tmp_path / "ix").read_manifest()["files"]
    assert sorted(files) == ["state", "support"]  # no index file: the means are the exact index
    again = FewShotClassifier.load(tmp_path / "ix", encoder=tiny_text_encoder)
    assert again.head_.index.kind == "flat"
    np.testing.assert_array_equal(again.rank_embeddings(z, 3).scores, clf.rank_embeddings(z, 3).scores)


def test_index_describe_and_list_show_the_tuned_search(big, tmp_path):
    import json

    from click.testing import CliRunner

    from fewshot.cli import main

    clf, _, _ = big
    clf.save(tmp_path / "ix")
    r = CliRunner().invoke(main, ["index", "describe", str(tmp_path / "ix"), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert (out["task"], out["classes"], out["examples"]) == ("classification", 4000, 4000)
    assert out["search"]["kind"] == "ivf" and out["search"]["nprobe"] == clf.head_.index.nprobe
    assert out["search"]["recall_at_1"] == clf.head_.index.tuning["recall_at_1"]
    r = CliRunner().invoke(main, ["index", "list", str(tmp_path / "ix")])
    assert r.output.splitlines()[1].startswith("# search: kind ivf, nlist 102, nprobe ")

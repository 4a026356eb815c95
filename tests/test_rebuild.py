"""Learning from use, the loop closed: ``fewshot train --from-index`` and ``fewshot index rebuild``."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fewshot import FewShotClassifier, create_encoder, create_learner
from fewshot.support import curation
from fewshot.checkpoint import load_encoder, save_checkpoint
from fewshot.cli import main

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo",
         "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def phrases(rng, n):
    return [" ".join(rng.choice(WORDS, size=4)) for _ in range(n)]


def snapshot(path):  # lock sidecars (empty files) may appear; nothing else may change
    return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file() and not p.name.endswith(".lock")}


@pytest.fixture
def ix(tmp_path, tiny_text_model_dir):
    """5 classes x 4 random phrases over the tiny BERT, and 100 logged predictions, all confirmed: the old
    encoder is right on every labelled logged query by construction. Ids 0, 5, ..., 95 (20) are the guard's."""
    rng = np.random.default_rng(0)
    path = tmp_path / "ix"
    assert invoke("index", "create", path, "--encoder", tiny_text_model_dir, "--metric", "cosine").exit_code == 0
    for c in range(5):
        assert invoke("index", "add", path, "--label", f"c{c}", *phrases(rng, 4)).exit_code == 0
    r = invoke("index", "predict", path, "--log", "--json", *phrases(rng, 100))
    assert r.exit_code == 0, r.output
    for line in r.output.splitlines():
        assert invoke("index", "confirm", path, "--id", json.loads(line)["id"]).exit_code == 0
    return path


def checkpoint(folder, tiny_text_model_dir, noise: float = 0.0):
    """A protonet checkpoint of the tiny BERT, its weights moved by Gaussian noise of std ``noise``."""
    enc = create_encoder(str(tiny_text_model_dir))
    if noise:
        torch.manual_seed(1)
        with torch.no_grad():
            for p in enc.parameters():
                p.add_(noise * torch.randn_like(p))
    save_checkpoint(folder, create_learner("protonet", enc))
    return folder


def manifest(path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def test_rebuild_reembeds_exactly_the_stored_texts_into_a_new_generation(ix, tmp_path, tiny_text_model_dir):
    ckpt = checkpoint(tmp_path / "ckpt", tiny_text_model_dir, noise=0.5)
    before = manifest(ix)
    old = FewShotClassifier.load(ix)
    r = invoke("index", "rebuild", ix, "--checkpoint", ckpt, "--force")
    assert r.exit_code == 0, r.output
    after = manifest(ix)
    new_fp = load_encoder(ckpt).fingerprint()
    assert before["body"]["encoder"]["fingerprint"] == old.encoder.fingerprint() != new_fp
    assert after["body"]["encoder"]["fingerprint"] == new_fp
    assert after["body"]["encoder"]["checkpoint"] == str(ckpt)
    assert after["generation"] == before["generation"] + 1
    assert after["body"]["index_id"] == before["body"]["index_id"]  # the same index: its log still belongs
    assert f"20 support texts of 5 classes re-embedded (encoder fingerprint {old.encoder.fingerprint()} -> " \
           f"{new_fp}), generation {after['generation']}; accuracy on 20 labelled logged queries 1.000 -> " in r.output
    new = FewShotClassifier.load(ix)
    texts = [t for c in old.classes_ for t in old.support_[c]]
    labels = [c for c in old.classes_ for _ in old.support_[c]]
    fresh = FewShotClassifier(load_encoder(ckpt)).fit(texts, labels)
    assert new.classes_ == old.classes_ == fresh.classes_
    assert new.counts_.tolist() == [4] * 5 and new.support_ == old.support_
    np.testing.assert_allclose(new.sums_, fresh.sums_, rtol=1e-5, atol=1e-5)
    assert not np.allclose(new.sums_, old.sums_, atol=1e-3)  # really re-embedded
    assert len(curation.prediction_log(ix).read()) == 100


def test_drift_guard_refuses_a_worse_encoder_and_changes_nothing(ix, tmp_path, tiny_text_model_dir):
    ckpt = checkpoint(tmp_path / "ckpt", tiny_text_model_dir, noise=0.5)
    before = snapshot(ix)
    r = invoke("index", "rebuild", ix, "--checkpoint", ckpt)
    assert r.exit_code == 2
    m = re.search(r"old accuracy 1\.000, new accuracy (0\.\d+) on 20 labelled logged queries", r.output)
    assert m and float(m.group(1)) < 0.98, r.output
    assert "the new encoder is worse" in r.output and "pass --force" in r.output
    assert snapshot(ix) == before
    # the library call says the same and reports both accuracies
    from fewshot.support.curation import DriftError

    with pytest.raises(DriftError, match="the new encoder is worse") as info:
        curation.rebuild(ix, ckpt, margin=0.02)
    assert info.value.report["old_accuracy"] == 1.0 and info.value.report["new_accuracy"] == float(m.group(1))
    assert snapshot(ix) == before
    # a margin wide enough lets it through
    rep = curation.rebuild(ix, ckpt, margin=1.0)
    assert rep["swapped"] and manifest(ix)["body"]["encoder"]["fingerprint"] == load_encoder(ckpt).fingerprint()


def test_drift_guard_accepts_an_encoder_that_is_as_good(ix, tmp_path, tiny_text_model_dir):
    ckpt = checkpoint(tmp_path / "same", tiny_text_model_dir)  # the same weights: the same answers
    r = invoke("index", "rebuild", ix, "--checkpoint", ckpt)
    assert r.exit_code == 0 and "accuracy on 20 labelled logged queries 1.000 -> 1.000" in r.output, r.output


def test_too_few_labelled_queries_need_force(tmp_path, tiny_text_model_dir):
    path = tmp_path / "ix"
    invoke("index", "create", path, "--encoder", tiny_text_model_dir)
    invoke("index", "add", path, "--label", "greet", "hello there", "hi friend")
    invoke("index", "add", path, "--label", "travel", "book a flight", "a train to rome")
    invoke("index", "predict", path, "--log", "hello", "a flight")
    invoke("index", "confirm", path, "--id", "0")
    ckpt = checkpoint(tmp_path / "ckpt", tiny_text_model_dir)
    before = snapshot(path)
    r = invoke("index", "rebuild", path, "--checkpoint", ckpt)
    assert r.exit_code == 2 and "needs at least 20 logged queries with a known true label" in r.output
    assert "got 1 (old accuracy 1.000, new accuracy 1.000 on 1 labelled" in r.output and "--force" in r.output
    assert snapshot(path) == before
    r = invoke("index", "rebuild", path, "--checkpoint", ckpt, "--force")
    assert r.exit_code == 0 and "(forced)" in r.output, r.output


def test_corrected_queries_are_held_out_of_their_class(tmp_path, tiny_text_encoder):
    """A correction adds its query to the support; the guard scores it with that text taken out again."""
    rng = np.random.default_rng(1)
    path = tmp_path / "ix"
    support = {f"c{c}": phrases(rng, 3) for c in range(4)}
    clf = FewShotClassifier(tiny_text_encoder)
    clf.fit([t for ts in support.values() for t in ts], [c for c, ts in support.items() for _ in ts])
    clf.create(path)
    queries = phrases(rng, 60)
    log = curation.prediction_log(path, create=True)
    top = clf.predict(queries)
    ids = log.append([{"query": q, "labels": [t], "scores": [0.0], "generation": 1} for q, t in zip(queries, top)])
    truth = [f"c{i % 4}" for i in range(60)]
    for i, q, t, p in zip(ids, queries, truth, top):
        if t == p:
            curation.confirm(path, i)
        else:
            curation.correct(path, i, t)
    assert any(t != p for t, p in zip(truth, top))
    corrected = {i for i, t, p in zip(ids, truth, top) if t != p}
    # the guard's queries (ids divisible by 5) are scored with only the corrections of the OTHER ids in
    # the support: their own text is held out
    guard = [i for i in ids if i % curation.GUARD_EVERY == 0]
    rep = curation.rebuild(path, tiny_text_encoder, force=True)
    held_out = FewShotClassifier(tiny_text_encoder)
    held_out.fit([t for ts in support.values() for t in ts], [c for c, ts in support.items() for _ in ts])
    others = [i for i in corrected if i % curation.GUARD_EVERY]
    if others:
        held_out.add_classes([queries[i] for i in others], [truth[i] for i in others])
    expected = float(np.mean([p == truth[i] for p, i in zip(held_out.predict([queries[i] for i in guard]), guard)]))
    assert rep["n_queries"] == len(guard) == 12 and rep["old_accuracy"] == pytest.approx(expected)
    assert rep["new_accuracy"] == pytest.approx(expected)  # the same encoder
    assert rep["n_texts"] == 12 + len(corrected)
    # the guard's corrected texts never become training data
    clf = FewShotClassifier.load(path)
    ds = curation.index_dataset(clf, val_share=0.5, seed=0, log_entries=curation.prediction_log(path).read())
    guard_corrected = [queries[i] for i in guard if i in corrected]
    assert guard_corrected and not set(guard_corrected) & set(ds.items)
    assert len(ds.items) == 12 + len(corrected) - len(guard_corrected)


def test_rebuild_refuses_another_modality_and_classes_without_texts(ix, tmp_path, tiny_text_model_dir):
    save_checkpoint(tmp_path / "img", create_learner("protonet", create_encoder("conv4", hidden=8)))
    before = snapshot(ix)
    r = invoke("index", "rebuild", ix, "--checkpoint", tmp_path / "img")
    assert r.exit_code == 2 and "holds text" in r.output and "reads image; give a text checkpoint" in r.output
    assert snapshot(ix) == before
    with FewShotClassifier.update(ix) as clf:
        clf.add_embeddings(np.ones((2, clf.dim), np.float32), ["emb", "emb"])
    before = snapshot(ix)
    ckpt = checkpoint(tmp_path / "ckpt", tiny_text_model_dir)
    r = invoke("index", "rebuild", ix, "--checkpoint", ckpt, "--force")
    assert r.exit_code == 2 and "1 of the 6 classes of the index in" in r.output and "('emb')" in r.output, r.output
    assert "--replace" in r.output and snapshot(ix) == before
    r = invoke("train", "--from-index", ix, "--out", tmp_path / "run")
    assert r.exit_code == 2 and "have none ('emb')" in r.output, r.output
    assert not (tmp_path / "run").exists()


def test_to_dataset_splits_classes_by_seed(ix):
    clf = FewShotClassifier.load(ix)
    ds = curation.index_dataset(clf, val_share=0.4, seed=0)
    train, val = ds.split_classes("train"), ds.split_classes("val")
    assert len(val) == 2 and len(train) == 3 and not set(train) & set(val)
    assert sorted(train + val) == sorted(clf.classes_) and len(ds.items) == 20
    assert [t for t, y in zip(ds.items, ds.labels) if y == "c2"] == clf.support_["c2"]
    assert curation.index_dataset(clf, val_share=0.4, seed=0).splits == ds.splits
    assert {tuple(curation.index_dataset(clf, val_share=0.4, seed=s).split_classes("val")) for s in range(6)} != {tuple(val)}
    with pytest.raises(ValueError, match="expected at least 4 classes with 5 or more support texts"):
        curation.index_dataset(clf, min_examples=5)


def test_train_from_index_then_rebuild(ix, tmp_path):
    invoke("index", "add", ix, "--label", "tiny", "one text", "two texts")  # too small: left out
    out = tmp_path / "run"
    r = invoke("train", "--from-index", ix, "--out", out, "--steps", "2", "--eval-every", "1", "--train-way", "2",
               "--train-shot", "1", "--train-query", "2", "--val-way", "2", "--val-shot", "1", "--val-query", "2",
               "--val-episodes", "2", "--val-share", "0.4", "--quiet")
    assert r.exit_code == 0, r.output
    assert "left out 1 of 6 classes with fewer than 3 texts" in r.output and "'tiny' (2)" in r.output
    assert "on the index" in r.output and "(3 train classes, 2 validation classes, 20 texts)" in r.output
    cfg = json.loads((out / "config.json").read_text())
    split = cfg["from_index"]
    assert len(split["val_classes"]) == 2 and len(split["train_classes"]) == 3
    assert not set(split["train_classes"]) & set(split["val_classes"])
    assert sorted(split["train_classes"] + split["val_classes"]) == [f"c{c}" for c in range(5)]
    assert split["left_out"] == [{"label": "tiny", "count": 2}]
    assert split["index_id"] == manifest(ix)["body"]["index_id"]
    assert cfg["data"]["dataset"].startswith("index:") and cfg["train"]["steps"] == 2
    clf = FewShotClassifier.from_checkpoint(out)
    assert clf.dim == 32 and clf.checkpoint == str(out)
    r = invoke("index", "rebuild", ix, "--checkpoint", out, "--margin", "1")
    assert r.exit_code == 0 and "22 support texts of 6 classes re-embedded" in r.output, r.output
    assert manifest(ix)["body"]["encoder"]["checkpoint"] == str(out)


def test_train_from_index_refusals(ix, tmp_path):
    for args, message in [
        ([], "expected at least 4 classes with 16 or more support texts"),
        (["--train-query", "2", "--val-query", "2"],
         "gives 2 validation classes, but --val-way is 5; pass --val-way 2"),
        (["--train-query", "2", "--val-query", "2", "--val-way", "2", "--val-share", "0.4"],
         "3 classes are left to train on, but --train-way is 5; pass --train-way 3"),
        (["--dataset", "wn33"], "drop --dataset"),
        (["--resume"], "--resume does not work with --from-index"),
    ]:
        r = invoke("train", "--from-index", ix, "--out", tmp_path / "run", *args)
        assert r.exit_code == 2 and message in r.output, (args, r.output)
        assert not (tmp_path / "run").exists()

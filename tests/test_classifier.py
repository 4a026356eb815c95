"""FewShotClassifier: run-time classes, exact running means, open set, persistence, bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fewshot.support import curation
from fewshot.support import FewShotClassifier, NotFittedError
from fewshot.encoders import Encoder
from fewshot.store import StoreError


class LookupEncoder(Encoder):
    """A text encoder whose embedding of each known string is fixed in advance (exact, instant)."""

    modality = "text"

    def __init__(self, table: dict[str, np.ndarray], salt: float = 0.0):
        super().__init__({"kind": "lookup", "name": "lookup"})
        self.keys = {t: i for i, t in enumerate(table)}
        self.dim = len(next(iter(table.values())))
        weights = torch.tensor(np.stack(list(table.values())), dtype=torch.float32) + salt
        self.table = torch.nn.Embedding.from_pretrained(weights)

    def preprocess(self, items):
        return torch.tensor([self.keys[t] for t in items])

    def forward(self, idx):
        return self.table(idx)


def cluster_data(rng, n_classes=4, per_class=6, dim=16, noise=0.1):
    """Texts "c{k}-{i}" whose embeddings lie around a random unit centre per class."""
    centres = rng.standard_normal((n_classes, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    table, texts, labels = {}, [], []
    for k in range(n_classes):
        for i in range(per_class):
            t = f"c{k}-{i}"
            table[t] = centres[k] + noise * rng.standard_normal(dim)
            texts.append(t)
            labels.append(f"class{k}")
    return table, texts, labels, centres


@pytest.fixture
def data(rng):
    table, texts, labels, centres = cluster_data(rng, n_classes=5, per_class=8)
    far = rng.standard_normal((10, 16))  # out-of-scope: random directions
    for i, v in enumerate(far):
        table[f"oos-{i}"] = v
    return LookupEncoder(table), texts, labels, table


def split(texts, labels, shots=3):
    """First ``shots`` of each class as support, the rest as queries."""
    seen: dict = {}
    sx, sy, qx, qy = [], [], [], []
    for t, y in zip(texts, labels):
        seen[y] = seen.get(y, 0) + 1
        (sx if seen[y] <= shots else qx).append(t)
        (sy if seen[y] <= shots else qy).append(y)
    return sx, sy, qx, qy


def test_fit_predict_and_classes_in_order_of_first_appearance(data):
    enc, texts, labels, _ = data
    sx, sy, qx, qy = split(texts, labels)
    clf = FewShotClassifier(enc).fit(sx[::-1], sy[::-1])
    assert clf.classes_ == [f"class{k}" for k in (4, 3, 2, 1, 0)]
    assert clf.predict(qx) == qy
    proba = clf.predict_proba(qx)
    assert proba.shape == (len(qx), 5) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert [clf.classes_[i] for i in proba.argmax(1)] == qy
    labels_k, scores_k = clf.predict_topk(qx, 3)
    assert [row[0] for row in labels_k] == qy and scores_k.shape == (len(qx), 3)
    assert (np.diff(scores_k, axis=1) <= 0).all()
    np.testing.assert_allclose(scores_k[:, 0], clf.scores(qx).max(1), atol=1e-5)


def test_add_class_keeps_old_predictions_and_recognises_the_new_class(rng):
    table, texts, labels, _ = cluster_data(rng, n_classes=6, per_class=8)
    enc = LookupEncoder(table)
    sx, sy, qx, qy = split(texts, labels)
    old = [i for i, y in enumerate(sy) if y != "class5"]
    clf = FewShotClassifier(enc).fit([sx[i] for i in old], [sy[i] for i in old])
    old_q = [i for i, y in enumerate(qy) if y != "class5"]
    before = clf.predict([qx[i] for i in old_q])
    proba_before = clf.predict_proba([qx[i] for i in old_q])
    new = [i for i, y in enumerate(sy) if y == "class5"]
    clf.add_classes([sx[i] for i in new], [sy[i] for i in new])
    assert clf.classes_[-1] == "class5" and clf.n_classes == 6
    assert clf.predict([qx[i] for i in old_q]) == before == [qy[i] for i in old_q]
    assert clf.predict([q for q, y in zip(qx, qy) if y == "class5"]) == ["class5"] * 5
    # the old columns keep their order, the new class is the last column
    assert clf.predict_proba([qx[i] for i in old_q])[:, :5].argmax(1).tolist() == proba_before.argmax(1).tolist()


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_running_mean_prototype_equals_the_mean_over_all_examples(rng, metric):
    table, texts, labels, _ = cluster_data(rng, n_classes=3, per_class=9, noise=0.5)
    enc = LookupEncoder(table)
    clf = FewShotClassifier(enc, metric)
    for chunk in (slice(0, 10), slice(10, 11), slice(11, 27)):  # in three uneven batches
        clf.add_classes(texts[chunk], labels[chunk])
    z = enc.encode(texts)
    for k, name in enumerate(clf.classes_):
        want = z[[i for i, y in enumerate(labels) if y == name]].astype(np.float64).mean(0)
        np.testing.assert_allclose(clf.prototypes_[k], want, atol=1e-6)
        stored = clf.index_.vectors(clf.ids_[[k]])[0]
        if metric == "cosine":
            want = want / np.linalg.norm(want)
        np.testing.assert_allclose(stored, want, atol=1e-6)
    np.testing.assert_array_equal(clf.counts_, [9, 9, 9])


def test_replace_resets_a_class_to_the_new_examples(data):
    enc, texts, labels, _ = data
    clf = FewShotClassifier(enc).fit(texts[:8], labels[:8])  # class0
    clf.add_classes(texts[8:10], ["class0", "class0"], replace=True)  # class1's texts, now under class0
    np.testing.assert_allclose(clf.prototypes_[0], enc.encode(texts[8:10]).astype(np.float64).mean(0), atol=1e-6)
    assert clf.counts_.tolist() == [2]


def test_remove_classes(data):
    enc, texts, labels, _ = data
    sx, sy, qx, qy = split(texts, labels)
    clf = FewShotClassifier(enc).fit(sx, sy)
    clf.remove_classes(["class1", "class3"])
    assert clf.classes_ == ["class0", "class4", "class2"] and clf.predict_proba(qx).shape == (len(qx), 3)  # holes filled by the last
    kept = [i for i, y in enumerate(qy) if y not in ("class1", "class3")]
    assert clf.predict([qx[i] for i in kept]) == [qy[i] for i in kept]
    assert set(clf.predict(qx)) <= {"class0", "class2", "class4"}
    clf.remove_classes("class0")  # one label works too
    assert clf.classes_ == ["class2", "class4"] and clf.index_.ntotal == 2
    with pytest.raises(ValueError, match=r"unknown class\(es\) \['class1'\]; the classifier has 2 classes"):
        clf.remove_classes(["class1"])
    clf.add_classes(sx[3:6], sy[3:6])  # a removed label comes back as a new class
    assert clf.classes_ == ["class2", "class4", "class1"] and clf.predict(qx[5:10]) == ["class1"] * 5
    clf.remove_classes(["class2", "class4", "class1"])
    with pytest.raises(ValueError, match="no classes left; add_classes"):
        clf.predict(qx[:1])


def test_label_invariance_strings_integers_and_sparse_integers(data):
    enc, texts, labels, _ = data
    sx, sy, qx, _ = split(texts, labels)
    names = sorted(set(sy))
    as_int = {n: i for i, n in enumerate(names)}
    sparse = {n: v for n, v in zip(names, (0, 7, 100, -3, 42))}
    by_str = FewShotClassifier(enc).fit(sx, sy).predict(qx)
    by_int = FewShotClassifier(enc).fit(sx, [as_int[y] for y in sy]).predict(qx)
    by_sparse = FewShotClassifier(enc).fit(sx, np.array([sparse[y] for y in sy])).predict(qx)
    assert [as_int[y] for y in by_str] == by_int
    assert [sparse[y] for y in by_str] == by_sparse
    assert all(type(v) is int for v in by_sparse)  # numpy labels come back as plain ints


def test_calibrate_rejects_out_of_scope_queries(data):
    enc, texts, labels, table = data
    sx, sy, qx, qy = split(texts, labels)
    clf = FewShotClassifier(enc, unknown_label="oos").fit(sx, sy)
    oos = [t for t in table if t.startswith("oos-")]
    assert "oos" not in clf.predict(oos)  # no threshold yet: always a class
    clf.calibrate(qx + oos[:5], qy + [None] * 3 + ["oos"] * 2, target_precision=1.0)
    c = clf.calibration_
    assert c["precision"] == 1.0 and c["in_scope_accuracy"] == 1.0 and c["out_of_scope_recall"] == 1.0
    assert (c["n_in_scope"], c["n_out_of_scope"]) == (25, 5)
    assert clf.threshold_ == pytest.approx(clf.scores(qx).max(1).min())  # the lowest in-scope top score
    assert clf.predict(oos[5:]) == ["oos"] * 5  # unseen out-of-scope queries are rejected
    assert clf.predict(qx) == qy
    with pytest.raises(ValueError, match=r"labels \['class9'\] are not classes of this classifier"):
        clf.calibrate(qx[:2], ["class9", None])
    with pytest.raises(ValueError, match="every example is out of scope"):
        clf.calibrate(oos[:2], [None, None])
    with pytest.raises(ValueError, match=r"target_precision must be in \(0, 1\], got 1.5"):
        clf.calibrate(qx[:2], qy[:2], target_precision=1.5)


def test_calibrate_reports_an_unreachable_precision(data):
    enc, texts, labels, table = data
    sx, sy, qx, qy = split(texts, labels)
    clf = FewShotClassifier(enc).fit(sx, sy)
    wrong = [next(c for c in clf.classes_ if c != y) for y in qy[:4]]  # every held-out label is wrong
    with pytest.raises(ValueError, match="no threshold reaches precision 0.9 .* lower target_precision"):
        clf.calibrate(qx[:4], wrong, target_precision=0.9)


def test_save_load_round_trip_is_identical(tmp_path, data):
    enc, texts, labels, table = data
    sx, sy, qx, qy = split(texts, labels)
    clf = FewShotClassifier(enc, "euclidean", unknown_label="none", scale=2.0).fit(sx, sy)
    clf.remove_classes(["class2"]).add_classes(sx[:2], sy[:2])
    clf.calibrate(qx, [y if y != "class2" else None for y in qy], target_precision=0.8)
    clf.save(tmp_path / "ix")
    again = FewShotClassifier.load(tmp_path / "ix", encoder=enc)
    np.testing.assert_array_equal(again.predict_proba(qx), clf.predict_proba(qx))
    assert again.predict(qx) == clf.predict(qx)
    assert again.classes_ == clf.classes_ and again.counts_.tolist() == clf.counts_.tolist() == [5, 3, 3, 3]
    np.testing.assert_array_equal(again.prototypes_, clf.prototypes_)  # the means survive bit for bit
    np.testing.assert_allclose(again.sums_, clf.sums_, rtol=1e-7)  # the sums to float32 precision
    assert (again.threshold_, again.calibration_, again.scale, again.unknown_label, again.metric) == \
        (clf.threshold_, clf.calibration_, 2.0, "none", "euclidean")
    again.add_classes(sx[6:9], sy[6:9])  # ids keep increasing after a load
    assert again.classes_[-1] == "class2" and again.ids_.tolist() == [0, 1, 4, 3, 5]  # class4 filled class2's row


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_index_kinds_agree_with_exact(tmp_path, rng, kind):
    table, texts, labels, _ = cluster_data(rng, n_classes=400, per_class=2, dim=32, noise=0.05)
    enc = LookupEncoder(table)
    sx, sy, qx, qy = split(texts, labels, shots=1)
    exact = FewShotClassifier(enc, index_kind="flat").fit(sx, sy)
    approx = FewShotClassifier(enc, index_kind=kind).fit(sx, sy)
    agree = np.mean([a == b for a, b in zip(approx.predict(qx), exact.predict(qx))])
    assert agree >= 0.97 and approx.index_.kind == kind
    approx.remove_classes(sy[:100])
    assert approx.index_.ntotal == 300 and not set(approx.predict(qx)) & set(sy[:100])
    approx.save(tmp_path / "ix")
    again = FewShotClassifier.load(tmp_path / "ix", encoder=enc)
    assert again.index_.kind == kind and again.predict(qx) == approx.predict(qx)


def test_auto_index_switches_to_ivf_and_retrains_as_classes_grow(monkeypatch, rng, data):
    import fewshot.support.search as module

    monkeypatch.setattr(module, "AUTO_APPROX_MIN", 300)  # auto's product quantizer trains on >= 256 vectors
    enc = data[0]
    clf = FewShotClassifier(enc)
    z = rng.standard_normal((600, 16)).astype(np.float32)
    clf.add_embeddings(z[:299], [f"k{i}" for i in range(299)])
    assert clf.index_.kind == "flat"
    clf.add_embeddings(z[299:300], ["k299"])
    assert clf.index_.kind == "ivf" and clf.index_.n_trained == 300 and clf.index_.ntotal == 300
    clf.add_embeddings(z[300:599], [f"k{i}" for i in range(300, 599)])
    assert clf.index_.n_trained == 300  # not yet doubled
    clf.add_embeddings(z[599:600], ["k599"])
    assert clf.index_.n_trained == 600 and clf.index_.ntotal == 600  # doubled: retrained on all prototypes
    assert clf.predict_embeddings(z) == [f"k{i}" for i in range(600)]


def test_loading_with_another_encoder_is_refused(tmp_path, data, tiny_text_encoder):
    enc, texts, labels, table = data
    FewShotClassifier(enc).fit(texts, labels).save(tmp_path / "ix")
    other = LookupEncoder(table, salt=0.01)
    with pytest.raises(ValueError, match=r"built with encoder 'lookup' \(weights fingerprint [0-9a-f]{16}\), but "
                                         r"the given encoder 'lookup' has fingerprint"):
        FewShotClassifier.load(tmp_path / "ix", encoder=other)
    with pytest.raises(ValueError, match="holds 16-d prototypes but encoder .* gives 32-d embeddings"):
        FewShotClassifier.load(tmp_path / "ix", encoder=tiny_text_encoder)
    with pytest.raises(ValueError, match="cannot rebuild encoder 'lookup' .* pass encoder="):
        FewShotClassifier.load(tmp_path / "ix")


def test_a_corrupted_or_inconsistent_folder_is_reported_not_half_loaded(tmp_path, data):
    enc, texts, labels, _ = data
    FewShotClassifier(enc).fit(texts, labels).save(tmp_path / "ix")
    manifest = json.loads((tmp_path / "ix" / "manifest.json").read_text())
    index_file = tmp_path / "ix" / manifest["files"]["state"]["name"]  # the means (a flat index is rebuilt from them)
    good = index_file.read_bytes()
    index_file.write_bytes(good[:-10])
    with pytest.raises(StoreError, match="state-.*safetensors is truncated"):
        FewShotClassifier.load(tmp_path / "ix", encoder=enc)
    index_file.write_bytes(good)
    assert FewShotClassifier.load(tmp_path / "ix", encoder=enc).n_classes == 5


def test_tiny_transformer_round_trip_rebuilds_the_encoder_from_its_spec(tmp_path, tiny_text_encoder):
    texts = ["book a flight to rome", "train tickets please", "what is the weather", "will it rain",
             "play some jazz", "next song"]
    labels = ["travel", "travel", "weather", "weather", "music", "music"]
    clf = FewShotClassifier(tiny_text_encoder).fit(texts, labels)
    clf.save(tmp_path / "ix")
    again = FewShotClassifier.load(tmp_path / "ix")  # encoder rebuilt from the stored spec, fingerprint checked
    assert again.encoder is not tiny_text_encoder
    queries = ["flight to paris", "sunny tomorrow?", "jazz music"]
    np.testing.assert_allclose(again.predict_proba(queries), clf.predict_proba(queries), atol=1e-6)
    assert clf.predict(texts) == labels


def test_from_checkpoint_then_load_rebuilds_the_encoder_from_the_checkpoint(tmp_path, tiny_text_encoder):
    from fewshot.checkpoint import save_checkpoint
    from fewshot.learners import create_learner

    with torch.no_grad():  # weights that differ from the model folder's, so only the checkpoint has them
        next(tiny_text_encoder.parameters()).mul_(1.5)
    save_checkpoint(tmp_path / "ckpt", create_learner("protonet", tiny_text_encoder))
    clf = FewShotClassifier.from_checkpoint(tmp_path / "ckpt", metric="euclidean")
    assert clf.encoder.fingerprint() == tiny_text_encoder.fingerprint() and clf.metric == "euclidean"
    texts, labels = ["fly to rome", "rain today", "jazz please"], ["travel", "weather", "music"]
    clf.fit(texts, labels).save(tmp_path / "ix")
    again = FewShotClassifier.load(tmp_path / "ix")
    assert again.checkpoint == str(tmp_path / "ckpt")
    np.testing.assert_allclose(again.predict_proba(texts), clf.predict_proba(texts), atol=1e-6)
    with pytest.raises(ValueError, match="checkpoint .* is not a folder"):
        FewShotClassifier.from_checkpoint(tmp_path / "nope")


def test_bad_input_raises_clear_errors(data, tiny_image_encoder, tmp_path):
    enc, texts, labels, _ = data
    clf = FewShotClassifier(enc)
    with pytest.raises(NotFittedError, match="not fitted yet; call fit"):
        clf.predict(texts[:1])
    assert issubclass(NotFittedError, ValueError)
    with pytest.raises(NotFittedError, match="call fit"):
        clf.remove_classes(["class0"])
    with pytest.raises(ValueError, match="fit: got no items"):
        clf.fit([], [])
    with pytest.raises(ValueError, match="got 3 items but 2 labels"):
        clf.fit(texts[:3], labels[:2])
    with pytest.raises(TypeError, match="got a single str; wrap it in a list"):
        clf.fit("c0-0", ["class0"])
    with pytest.raises(TypeError, match="expected one label per item .* single str"):
        clf.fit(texts[:1], "class0")
    with pytest.raises(TypeError, match="reads text, but item 0 is a ndarray"):
        clf.fit([np.zeros((8, 8), np.uint8)], ["a"])
    with pytest.raises(TypeError, match="reads images .* item 0 is a str"):
        FewShotClassifier(tiny_image_encoder).fit(["a picture"], ["a"])
    with pytest.raises(ValueError, match="None is not a class label"):
        clf.fit(texts[:2], ["class0", None])
    with pytest.raises(TypeError, match="labels must be hashable"):
        clf.fit(texts[:1], [["a"]])
    with pytest.raises(ValueError, match="'oos' is this classifier's unknown_label"):
        FewShotClassifier(enc, unknown_label="oos").fit(texts[:1], ["oos"])
    clf.fit(texts, labels)
    for k in (0, 6, 1.5):
        with pytest.raises(ValueError, match=rf"k must be an int from 1 to the number of classes \(5\), got {k}"):
            clf.predict_topk(texts[:1], k)
    with pytest.raises(ValueError, match=r"expected embeddings of shape \(n, 16\), got \(2, 3\)"):
        clf.add_embeddings(np.zeros((2, 3), np.float32), ["a", "b"])
    with pytest.raises(TypeError, match="replace must be True or False"):
        clf.add_classes(texts[:1], labels[:1], replace="yes")
    with pytest.raises(ValueError, match="metric must be one of"):
        FewShotClassifier(enc, "dot")
    with pytest.raises(ValueError, match="index_kind must be one of"):
        FewShotClassifier(enc, index_kind="lsh")
    with pytest.raises(ValueError, match="scale must be a positive finite number"):
        FewShotClassifier(enc, scale=0)
    with pytest.raises(ValueError, match=r"unknown index_options \['nprobes'\]"):
        FewShotClassifier(enc, index_options={"nprobes": 4})
    with pytest.raises(TypeError, match="encoder must be an encoder name .* got int"):
        FewShotClassifier(3)
    with pytest.raises(ValueError, match="unknown encoder 'minilmm'.* Did you mean 'minilm'"):
        FewShotClassifier("minilmm")
    with pytest.raises(TypeError, match=r"labels must be str or int to be stored as JSON, got tuple"):
        FewShotClassifier(enc).fit(texts[:1], [("a", 1)]).save(tmp_path / "x")


@pytest.mark.slow
def test_many_way_accuracy_on_clinc150_with_minilm(shared_data, minilm):
    """150-way 5-shot over all CLINC150 intents (first 5 train examples each), 5 test queries per intent."""
    d = json.loads((shared_data / "clinc150" / "data_full.json").read_text())

    def first(rows, n):
        seen, out = {}, []
        for text, intent in rows:
            seen[intent] = seen.get(intent, 0) + 1
            if seen[intent] <= n:
                out.append((text, intent))
        return out

    support, queries = first(d["train"], 5), first(d["test"], 5)
    clf = FewShotClassifier(minilm).fit([t for t, _ in support], [y for _, y in support])
    assert clf.n_classes == 150 and clf.counts_.tolist() == [5] * 150
    pred = clf.predict([t for t, _ in queries])
    acc = np.mean([p == y for p, (_, y) in zip(pred, queries)])
    assert acc >= 0.75  # measured 0.780 (750 queries; binomial 95% CI +-0.030)


def test_from_checkpoint_serves_a_protonet_with_its_metric_and_learned_scale(tmp_path, tiny_text_encoder):
    from fewshot.checkpoint import save_checkpoint
    from fewshot.learners import create_learner

    learner = create_learner("protonet", tiny_text_encoder, {"metric": "euclidean"})
    with torch.no_grad():
        learner.module.log_temperature.fill_(np.log(0.37))  # as if meta-training had learned it
    save_checkpoint(tmp_path / "proto", learner)
    clf = FewShotClassifier.from_checkpoint(tmp_path / "proto")
    assert clf.metric == "euclidean" and clf.scale == pytest.approx(0.37)
    texts, labels = ["fly to rome", "rain today", "jazz please"], ["travel", "weather", "music"]
    clf.fit(texts, labels)
    z = torch.from_numpy(clf.embed(["fly to paris"]))
    protos = torch.from_numpy(clf.prototypes_)
    want = torch.softmax(0.37 * -torch.cdist(z, protos).pow(2), dim=1).numpy()
    np.testing.assert_allclose(clf.predict_proba(["fly to paris"]), want, rtol=1e-4, atol=1e-6)

    save_checkpoint(tmp_path / "ft", create_learner("finetune", tiny_text_encoder))
    with pytest.warns(UserWarning, match="'finetune' checkpoint, which adapts a head per task.*nearest prototypes"):
        ft = FewShotClassifier.from_checkpoint(tmp_path / "ft")
    assert ft.metric == "cosine"  # the encoder's own


def test_save_refuses_to_overwrite_a_concurrent_change_and_update_applies_both(tmp_path, data):
    from fewshot.support import ConcurrentUpdateError

    enc, texts, labels, _ = data
    FewShotClassifier(enc).fit(texts[:4], labels[:4]).save(tmp_path / "ix")
    first = FewShotClassifier.load(tmp_path / "ix", enc)
    second = FewShotClassifier.load(tmp_path / "ix", enc)
    first.add_classes(texts[4:5], ["new-a"]).save(tmp_path / "ix")
    second.add_classes(texts[5:6], ["new-b"])
    before = (tmp_path / "ix" / "manifest.json").read_bytes()
    with pytest.raises(ConcurrentUpdateError, match="changed by another writer.*FewShotClassifier.update"):
        second.save(tmp_path / "ix")
    assert (tmp_path / "ix" / "manifest.json").read_bytes() == before  # nothing written
    with FewShotClassifier.update(tmp_path / "ix", enc) as clf:
        clf.add_classes(texts[5:6], ["new-b"])
    assert {"new-a", "new-b"} <= set(FewShotClassifier.load(tmp_path / "ix", enc).classes_)
    with pytest.raises(RuntimeError):  # an exception inside the block: nothing saved
        with FewShotClassifier.update(tmp_path / "ix", enc) as clf:
            clf.remove_classes(["new-a"])
            raise RuntimeError("boom")
    assert "new-a" in FewShotClassifier.load(tmp_path / "ix", enc).classes_
    with pytest.raises(ValueError, match="already holds an index"):
        FewShotClassifier(enc).create(tmp_path / "ix")
def test_evaluate_gives_per_class_scores_and_the_confusions(data):
    enc, texts, labels, _ = data
    sx, sy, qx, qy = split(texts, labels)
    clf = FewShotClassifier(enc).fit(sx, sy)
    assert clf.evaluate(qx, qy).accuracy == 1.0  # well-separated clusters
    truth = list(qy)
    first0 = [i for i, y in enumerate(truth) if y == "class0"][:2]
    for i in first0:  # two class0 queries claimed to be class1: predicted class0, so counted as errors
        truth[i] = "class1"
    report = clf.evaluate(qx, truth)
    assert report.n == 25 and report.accuracy == pytest.approx(23 / 25)
    r0, r1 = report.row("class0"), report.row("class1")
    assert (r0.precision, r0.recall, r0.support) == (pytest.approx(3 / 5), 1.0, 3)
    assert (r1.precision, r1.recall, r1.support) == (1.0, pytest.approx(5 / 7), 7)
    c = report.confusions[0]
    assert (c.true, c.predicted, c.count, c.share) == ("class1", "class0", 2, pytest.approx(2 / 7))
    assert len(report.confusions) == 1
    with pytest.raises(ValueError, match="got 25 items but 3 labels"):
        clf.evaluate(qx, truth[:3])
    with pytest.raises(NotFittedError, match="call fit"):
        FewShotClassifier(enc).evaluate(qx, qy)


def test_index_id_survives_save_and_load_and_describe_names_it(tmp_path, data):
    enc, texts, labels, _ = data
    clf = FewShotClassifier(enc).fit(texts[:4], labels[:4])
    assert clf.index_id_ is None
    clf.save(tmp_path / "a")
    ident = clf.index_id_
    again = FewShotClassifier.load(tmp_path / "a", encoder=enc)
    assert again.index_id_ == ident and FewShotClassifier.describe(tmp_path / "a")["index_id"] == ident
    again.add_classes(texts[8:9], labels[8:9]).save(tmp_path / "a")
    assert again.index_id_ == ident and again.generation_ == 2
    again.save(tmp_path / "b")  # another folder is another index
    assert again.index_id_ not in (None, ident)


def test_correct_adds_the_logged_query_as_a_running_mean_example_and_logs_it(tmp_path, data, monkeypatch):
    enc, texts, labels, table = data
    sx, sy, qx, qy = split(texts, labels)
    path = tmp_path / "ix"
    FewShotClassifier(enc).fit(sx, sy).save(path)
    log = curation.prediction_log(path, create=True)
    assert log.header["index"] == FewShotClassifier.describe(path)["index_id"]
    ids = log.append([{"query": "c1-5", "labels": ["class0"], "scores": [0.5], "generation": 1},
                      {"query": "c2-5", "labels": ["class2"], "scores": [0.9], "generation": 1}])
    before = FewShotClassifier.load(path, encoder=enc)
    encoded = []
    real = enc.encode
    monkeypatch.setattr(enc, "encode", lambda items, **kw: encoded.append(list(items)) or real(items, **kw))
    entry = curation.correct(path, ids[0], "class1", encoder=enc)
    assert entry["query"] == "c1-5" and encoded == [["c1-5"]]  # only the one query is embedded again
    after = FewShotClassifier.load(path, encoder=enc)
    k = after.classes_.index("class1")
    assert after.counts_[k] == before.counts_[k] + 1 == 4
    np.testing.assert_allclose(after.sums_[k], before.sums_[k] + table["c1-5"].astype(np.float32), rtol=1e-6)
    others = [i for i in range(after.n_classes) if i != k]
    np.testing.assert_array_equal(after.sums_[others], before.sums_[others])
    curation.correct(path, ids[1], "brand new", encoder=enc)  # a new label adds a class
    assert FewShotClassifier.load(path, encoder=enc).classes_[-1] == "brand new"
    got = {p["id"]: (p["feedback"], p["true_label"], p["correct"]) for p in log.read()}
    assert got == {0: ("correction", "class1", False), 1: ("correction", "brand new", False)}


def test_confirm_only_logs_and_bad_feedback_changes_nothing(tmp_path, data):
    import shutil

    enc, texts, labels, _ = data
    sx, sy, _, _ = split(texts, labels)
    path, other = tmp_path / "ix", tmp_path / "other"
    FewShotClassifier(enc).fit(sx, sy).save(path)
    log = curation.prediction_log(path, create=True)
    (i,) = log.append([{"query": "c1-5", "labels": ["class1"], "scores": [0.9], "generation": 1}])
    curation.confirm(path, i)
    assert log.get(i)["feedback"] == "confirmation" and FewShotClassifier.describe(path)["generation"] == 1

    def snapshot():
        return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}

    (j,) = log.append([{"query": "c2-5", "labels": ["class1"], "scores": [0.4], "generation": 1}])
    state = snapshot()
    with pytest.raises(ValueError, match=r"holds no prediction id 7 \(its ids run from 0 to 1\)"):
        curation.correct(path, 7, "class2", encoder=enc)
    with pytest.raises(ValueError, match="expected a class name, got the blank label '  '"):
        curation.correct(path, j, "  ", encoder=enc)
    with pytest.raises(ValueError, match="prediction 0 already got a confirmation"):
        curation.correct(path, i, "class2", encoder=enc)
    with pytest.raises(ValueError, match="prediction 0 already got a confirmation"):
        curation.confirm(path, i)
    assert snapshot() == state
    FewShotClassifier(enc).fit(sx, sy).save(other)  # another index: its log is not ours
    shutil.copy(path / "predictions.jsonl", other / "predictions.jsonl")
    with pytest.raises(ValueError, match="is the prediction log of index"):
        curation.correct(other, j, "class2", encoder=enc)
    with pytest.raises(ValueError, match="is the prediction log of index"):
        curation.confirm(other, j)


def test_support_texts_are_kept_in_order_dropped_on_remove_and_replace_and_saved(tmp_path, data):
    enc, texts, labels, table = data
    clf = FewShotClassifier(enc).fit(["c0-0", "c1-0", "c0-1"], ["a", "b", "a"])
    assert clf.support_ == {"a": ["c0-0", "c0-1"], "b": ["c1-0"]}
    clf.add_classes(["c0-2", "c2-0"], ["a", "c"]).add_classes(["c1-1"], ["b"], replace=True)
    assert clf.support_ == {"a": ["c0-0", "c0-1", "c0-2"], "b": ["c1-1"], "c": ["c2-0"]}
    clf.remove_classes(["c"]).add_embeddings(np.stack([table["c3-0"]]), ["d"])  # texts unknown: None
    assert clf.support_ == {"a": ["c0-0", "c0-1", "c0-2"], "b": ["c1-1"], "d": None}
    clf.add_classes(["c3-1"], ["d"])  # still unknown: one of its examples has no text
    assert clf.support_["d"] is None and clf.counts_.tolist() == [3, 1, 2]
    clf.save(tmp_path / "ix")
    again = FewShotClassifier.load(tmp_path / "ix", encoder=enc)
    assert again.support_ == clf.support_
    blob = next(p for p in (tmp_path / "ix").iterdir() if p.name.startswith("support-"))
    assert json.loads(blob.read_text()) == {"texts": [["c0-0", "c0-1", "c0-2"], ["c1-1"], None]}  # like classes_
    # a folder written before that format (JSON lines of {"label", "texts"}) still loads
    from fewshot.store import SupportStore

    meta, blobs = SupportStore(tmp_path / "ix").read()
    lines = "".join(json.dumps({"label": c, "texts": clf.support_[c]}) + "\n" for c in clf.classes_)
    SupportStore(tmp_path / "old").write(meta, {"state": ("safetensors", blobs["state"]),
                                                "support": ("jsonl", lines.encode())})
    assert FewShotClassifier.load(tmp_path / "old", encoder=enc).support_ == clf.support_
    log = curation.prediction_log(tmp_path / "ix", create=True)
    (i,) = log.append([{"query": "c1-2", "labels": ["a"], "scores": [0.1], "generation": 1}])
    curation.correct(tmp_path / "ix", i, "b", encoder=enc)
    assert FewShotClassifier.load(tmp_path / "ix", encoder=enc).support_["b"] == ["c1-1", "c1-2"]


def test_a_folder_saved_before_support_texts_were_kept_loads_with_unknown_texts(tmp_path, data):
    enc, texts, labels, _ = data
    FewShotClassifier(enc).fit(texts[:3], ["a", "b", "a"]).save(tmp_path / "ix")
    manifest = tmp_path / "ix" / "manifest.json"
    doc = json.loads(manifest.read_text())
    del doc["files"]["support"]  # files lie outside the checksummed body
    manifest.write_text(json.dumps(doc))
    old = FewShotClassifier.load(tmp_path / "ix", encoder=enc)
    assert old.support_ == {"a": None, "b": None}
    old.add_classes(["c0-5"], ["c"])
    assert old.support_ == {"a": None, "b": None, "c": ["c0-5"]}

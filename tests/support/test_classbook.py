"""ClassBook: running means stay exact under any sequence of adds, replaces and removes (checked against
recomputation from scratch), ids are stable, rows follow first appearance with each removed row filled by
the last one, and saved state that disagrees is refused."""
from __future__ import annotations

from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unittest.mock import patch

from fewshot.support import classbook
from fewshot.support.classbook import ClassBook

OPS = st.lists(st.tuples(st.sampled_from(["add", "replace", "remove", "reload"]),
                         st.lists(st.sampled_from("abcdefg"), min_size=1, max_size=6)), min_size=1, max_size=25)


@settings(max_examples=60, deadline=None)
@given(OPS, st.integers(0, 2**31 - 1))
def test_running_means_equal_recomputation_from_scratch(ops, seed):
    with patch.object(classbook, "BLOCK_ROWS", 3):  # rows spread over many storage blocks
        _check_against_recomputation(ops, seed)


def _check_against_recomputation(ops, seed):
    rng = np.random.default_rng(seed)
    book = ClassBook(4)
    truth: dict[str, list[np.ndarray]] = {}  # label -> every embedding that counts, in order
    ids: dict[str, int] = {}
    order: list[str] = []  # the rows: first appearance; a removal (highest row first) moves the last row in
    next_id = 0
    for op, labels in ops:
        if op == "reload":  # a save and load: the book restored from its float32 means, used in place
            means = book.prototypes()
            means.flags.writeable = False  # as saved state may be: a changed block must be copied, not written
            book = ClassBook.restore(4, book.labels, None, book.counts, book.ids, book.next_id,
                                     {lab: book.texts(lab) for lab in book.labels}, means=means)
            for lab in book.labels:  # what a save keeps: each mean (float32) as many times as its count
                truth[lab] = [means[book.row(lab)].astype(np.float64)] * len(truth[lab])
            continue
        if op == "remove":
            present = sorted({lab for lab in labels if lab in truth})
            if not present:
                continue
            gone = book.remove(present)
            assert sorted(gone.tolist()) == sorted(ids[lab] for lab in present)
            for r in sorted((order.index(lab) for lab in present), reverse=True):
                order[r] = order[-1]
                order.pop()
            for lab in present:
                del truth[lab], ids[lab]
            continue
        z = rng.standard_normal((len(labels), 4))
        book.add(z, labels, texts=[f"t{i}" for i in range(len(labels))], replace=op == "replace")
        fresh: dict[str, list] = {}
        for zi, lab in zip(z, labels):
            fresh.setdefault(lab, []).append(zi)
        for lab, rows in fresh.items():
            if lab not in ids:
                ids[lab], next_id = next_id, next_id + 1
                order.append(lab)
            truth[lab] = rows if op == "replace" else truth.get(lab, []) + rows
    assert book.labels == order
    assert book.rows_of_ids(np.array([ids[lab] for lab in order] + [next_id, -1])).tolist() == \
        list(range(len(order))) + [-1, -1]
    assert book.ids.tolist() == [ids[lab] for lab in book.labels] and book.next_id == next_id
    for lab in book.labels:
        r = book.row(lab)
        assert book.counts[r] == len(truth[lab])
        np.testing.assert_allclose(book.prototypes([r])[0], np.mean(truth[lab], 0), rtol=1e-5, atol=1e-6)
    if book.labels:
        np.testing.assert_array_equal(book.prototypes(), book.prototypes(range(len(book))))
        again = ClassBook.restore(4, book.labels, book.sums, book.counts, book.ids, book.next_id,
                                  {lab: book.texts(lab) for lab in book.labels})
        np.testing.assert_array_equal(again.prototypes(), book.prototypes())


def test_texts_follow_adds_and_become_unknown_with_embeddings():
    book = ClassBook(2)
    book.add(np.ones((2, 2)), ["a", "b"], texts=["a1", "b1"])
    book.add(np.ones((1, 2)), ["a"], texts=["a2"])
    assert book.texts("a") == ["a1", "a2"] and book.texts("b") == ["b1"]
    book.add(np.ones((1, 2)), ["b"])  # an embedding: b's texts are no longer all known
    assert book.texts("b") is None
    book.add(np.ones((1, 2)), ["b"], texts=["b9"], replace=True)
    assert book.texts("b") == ["b9"]


def test_rows_of_ids_and_held_out_prototypes():
    book = ClassBook(2)
    book.add(np.array([[1.0, 0], [3, 0], [0, 2]]), ["x", "x", "y"])
    book.remove(["x"])
    book.add(np.array([[0.0, 4]]), ["z"])
    assert book.ids.tolist() == [1, 2]
    assert book.rows_of_ids(np.array([[2, -1, 0, 1]])).tolist() == [[1, -1, -1, 0]]
    book.add(np.array([[0.0, 6]]), ["y"])  # y: (0,2) and (0,6)
    keep, protos = book.held_out_prototypes(np.array([[0.0, 6]]), ["y"])
    assert keep.tolist() == [0, 1] and protos.tolist() == [[0, 2], [0, 4]]
    keep, _ = book.held_out_prototypes(np.array([[0.0, 4]]), ["z"])  # z left empty: dropped
    assert keep.tolist() == [0]


def test_views_are_read_only():
    book = ClassBook(2)
    book.add(np.ones((1, 2)), ["a"])
    with pytest.raises(ValueError):
        book.sums[0, 0] = 5


def test_restore_refuses_state_that_disagrees():
    ok = dict(dim=2, labels=["a", "b"], sums=np.ones((2, 2)), counts=[1, 2], ids=[0, 3], next_id=4,
              texts={"a": None, "b": ["t", "u"]})
    assert ClassBook.restore(**ok).prototypes().tolist() == [[1, 1], [0.5, 0.5]]
    for bad, why in [(dict(ids=[3, 3]), "unique"), (dict(next_id=3), "next_id"), (dict(ids=[-1, 0]), "unique"), (dict(counts=[0, 2]), "without"),
                     (dict(labels=["a", "a"]), "duplicate"), (dict(sums=np.ones((3, 2))), "inconsistent")]:
        with pytest.raises(ValueError, match=why):
            ClassBook.restore(**{**ok, **bad})


def test_label_keys_follow_adds_removes_and_restore():
    from fewshot.inputs import check_labels

    book = ClassBook(1)
    book.add(np.ones((3, 1)), ["music", "Travel ", 7])
    assert dict(book.keys) == {"music": "music", "Travel": "Travel "}
    with pytest.raises(ValueError, match="existing class 'music'"):
        check_labels(["music\u00a0"], "add", book.keys)
    book.remove(["music"])
    assert check_labels(["music\u00a0"], "add", book.keys) == ["music\u00a0"]  # no longer a class
    again = ClassBook.restore(1, book.labels, book.sums, book.counts, book.ids, book.next_id,
                              {lab: None for lab in book.labels})
    assert dict(again.keys) == {"Travel": "Travel "}


def test_many_updates_do_not_drift_from_the_float64_mean():
    rng = np.random.default_rng(3)
    z = (1000 + rng.standard_normal((3000, 4))).astype(np.float32)
    book = ClassBook(4)
    for zi in z:  # one example per call: each call recomputes the mean from the class's float64 sum
        book.add(zi[None], ["a"])
    want = z.astype(np.float64).mean(0)
    np.testing.assert_allclose(book.prototypes([0])[0], want, rtol=1.2e-7)  # one float32 rounding, not 3000
    assert book.sums[0].tolist() == pytest.approx((want * 3000).tolist(), rel=1e-12)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(alphabet="ab \t\u00a0\ufb01\u0301\x00", min_size=1, max_size=5), min_size=1, max_size=8,
                unique_by=lambda s: " ".join(__import__("unicodedata").normalize("NFKC", s).split())))
def test_label_keys_after_restore_equal_a_key_per_label(labels):
    from fewshot.inputs import label_key

    labels = [lab for lab in labels if label_key(lab)]
    book = ClassBook.restore(1, labels, np.ones((len(labels), 1)), [1] * len(labels), list(range(len(labels))),
                             len(labels), {lab: None for lab in labels})
    want = {label_key(lab): lab for lab in labels}
    assert dict(book.keys) == want
    assert all(book.keys.get(k) == lab for k, lab in want.items()) and book.keys.get("zz") is None

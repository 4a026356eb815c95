"""SupportIndex: FAISS search equals brute-force torch search; approximate kinds; removal; bytes round trip."""
from __future__ import annotations

from unittest.mock import patch

import numpy as np
import pytest
import torch

from fewshot.index import SupportIndex


def clustered(rng, n_classes: int, dim: int = 32, n_queries: int = 200, noise: float = 0.3):
    """Prototypes on the unit sphere and queries near random prototypes (the true nearest is known)."""
    protos = rng.standard_normal((n_classes, dim)).astype(np.float32)
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    which = rng.integers(0, n_classes, n_queries)
    queries = protos[which] + noise / np.sqrt(dim) * rng.standard_normal((n_queries, dim)).astype(np.float32)
    return protos, queries.astype(np.float32), which


def brute_force(protos: np.ndarray, queries: np.ndarray, metric: str, k: int):
    p, q = torch.from_numpy(protos).double(), torch.from_numpy(queries).double()
    if metric == "euclidean":
        scores = -torch.cdist(q, p) ** 2
    else:
        scores = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(p, dim=1).T
    top = scores.topk(k, dim=1)
    return top.values.numpy(), top.indices.numpy()


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_flat_search_equals_brute_force_torch(rng, metric):
    protos = rng.standard_normal((300, 24)).astype(np.float32) * 3
    queries = rng.standard_normal((100, 24)).astype(np.float32) * 3
    ids = np.arange(300) * 7 + 11  # arbitrary, non-contiguous ids
    index = SupportIndex(24, metric)
    index.add(ids, protos)
    scores, got = index.search(queries, k=5)
    want_scores, want_pos = brute_force(protos, queries, metric, 5)
    np.testing.assert_array_equal(got, ids[want_pos])
    np.testing.assert_allclose(scores, want_scores, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_approximate_kinds_find_the_exact_nearest(rng, kind, metric):
    protos, queries, _ = clustered(rng, 3000)
    exact, approx = SupportIndex(32, metric, "flat"), SupportIndex(32, metric, kind)
    for ix in (exact, approx):
        ix.add(np.arange(3000), protos)
    _, want = exact.search(queries, 1)
    _, got = approx.search(queries, 1)
    assert (got[:, 0] == want[:, 0]).mean() >= 0.97
    if kind == "ivf":
        assert approx.nlist == min(int(2 * 3000 ** 0.5), 3000 // 39) == 76 and approx.nprobe == 8 and approx.n_trained == 3000


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_remove_then_search_never_returns_removed_ids(rng, kind):
    protos, _, _ = clustered(rng, 1000)
    index = SupportIndex(32, "cosine", kind)
    index.add(np.arange(1000), protos)
    assert index.remove(np.arange(0, 1000, 2)) == 500
    assert index.remove([0, 2]) == 0  # already gone
    assert index.ntotal == 500 and not index.contains(0) and index.contains(1)
    np.testing.assert_array_equal(index.ids(), np.arange(1, 1000, 2))
    _, got = index.search(protos, 1)
    assert not np.isin(got, np.arange(0, 1000, 2)).any()
    odd = np.arange(1, 1000, 2)
    assert (got[odd, 0] == odd).mean() >= 0.98  # the prototypes that stay still find themselves
    np.testing.assert_allclose(index.vectors([1, 3]), protos[[1, 3]], atol=1e-6)
    index.add([0], protos[:1])  # a removed id can be added again
    assert index.search(protos[:1], 1)[1][0, 0] == 0


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_bytes_round_trip_gives_identical_search(rng, kind):
    protos, queries, _ = clustered(rng, 500)
    index = SupportIndex(32, "euclidean", kind)
    index.add(np.arange(500) + 1000, protos)
    index.remove([1000, 1001])
    data = index.to_bytes()
    assert data[:4] in (b"IxM2", b"IwFl")  # FAISS's own format: IDMap2 or IVFFlat
    again = SupportIndex.from_bytes(data, index.config())
    s1, i1 = index.search(queries, 3)
    s2, i2 = again.search(queries, 3)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(again.ids(), np.arange(1002, 1500))
    again.remove([1002])
    assert again.ntotal == 497


def test_bad_input_raises_clear_errors():
    index = SupportIndex(4, "euclidean")
    with pytest.raises(ValueError, match="index is empty; add classes first"):
        index.search(np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match=r"expected shape \(n, 4\), got \(2, 3\)"):
        index.add([0, 1], np.zeros((2, 3), np.float32))
    with pytest.raises(TypeError, match="floating-point vectors, got dtype int64"):
        index.add([0], np.zeros((1, 4), np.int64))
    with pytest.raises(ValueError, match="NaN or inf"):
        index.add([0], np.full((1, 4), np.nan, np.float32))
    with pytest.raises(ValueError, match="2 ids for 1 vectors"):
        index.add([0, 1], np.zeros((1, 4), np.float32))
    index.add([5], np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="not already in the index; remove"):
        index.add([5], np.ones((1, 4), np.float32))
    with pytest.raises(ValueError, match="k must be a positive int, got 0"):
        index.search(np.zeros((1, 4), np.float32), k=0)
    with pytest.raises(TypeError, match="ids must be integers"):
        index.remove(["a"])
    with pytest.raises(ValueError, match=r"ids \[7\] are not in the index"):
        index.vectors([7])
    with pytest.raises(ValueError, match="metric must be one of"):
        SupportIndex(4, "manhattan")
    with pytest.raises(ValueError, match="index kind must be one of"):
        SupportIndex(4, "cosine", "lsh")
    with pytest.raises(ValueError, match="dim must be a positive int, got 0"):
        SupportIndex(0)
    with pytest.raises(ValueError, match="nlist must be a positive int"):
        SupportIndex(4, kind="ivf", nlist=0)
    with pytest.raises(ValueError, match="nlist=8 needs at least 8 vectors"):
        SupportIndex(4, kind="ivf", nlist=8).add(np.arange(3), np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match="FAISS could not read the index"):
        SupportIndex.from_bytes(b"garbage!" * 4, index.config())
    cfg = {**index.config(), "dim": 8}
    with pytest.raises(ValueError, match="holds 4-d vectors, expected 8"):
        SupportIndex.from_bytes(index.to_bytes(), cfg)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_replace_equals_remove_then_add(kind):
    """replace (in place for a flat index in id order) leaves the index searching as a fresh one would."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 8)).astype(np.float32)
    new = rng.standard_normal((3, 8)).astype(np.float32)
    ix = SupportIndex(8, "euclidean", kind)
    ix.add(np.arange(40), x)
    ix.remove([5, 6])
    ix.replace([7, 30, 39], new)
    fresh = SupportIndex(8, "euclidean", kind)
    want = x.copy()
    want[[7, 30, 39]] = new
    keep = np.setdiff1d(np.arange(40), [5, 6])
    fresh.add(keep, want[keep])
    q = rng.standard_normal((25, 8)).astype(np.float32)
    np.testing.assert_array_equal(ix.search(q, 3)[1], fresh.search(q, 3)[1])
    np.testing.assert_allclose(ix.vectors([7, 30, 39]), new, rtol=1e-6)
    with pytest.raises(ValueError, match="in the index"):
        ix.replace([5], new[:1])
    again = SupportIndex.from_bytes(ix.to_bytes(), ix.config())
    again.replace([8], new[:1])  # still in id order after a save: in place
    np.testing.assert_allclose(again.vectors([8]), new[:1], rtol=1e-6)


def test_sorted_ids_follow_any_adds_and_removes():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from fewshot import index as index_module

    @settings(max_examples=80, deadline=None)
    @given(st.lists(st.tuples(st.booleans(), st.sets(st.integers(0, 300), min_size=1, max_size=40)), max_size=30))
    def check(ops):
        with patch.object(index_module._SortedIds, "_CHUNK", 3):  # removals shift in many chunks
            ids, truth = index_module._SortedIds(), set()
            for adding, batch in ops:
                if adding:
                    new = np.array(sorted(batch - truth), dtype=np.int64)
                    if len(new):
                        appended = ids.add(new)
                        assert appended == (not truth or new[0] > max(truth))
                        truth |= set(new.tolist())
                else:
                    gone = np.array(sorted(batch & truth), dtype=np.int64)
                    if len(gone):
                        ids.remove(gone)
                        truth -= set(gone.tolist())
                assert ids.view.tolist() == sorted(truth) and len(ids) == len(truth)

    check()

"""Evaluation: the CI formula, the embedding cache, and protonet's episode logits against brute force."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fewshot.data import FewShotDataset
from fewshot.episodes import EpisodeSampler
from fewshot.evaluation import EmbeddingCache, evaluate, example_cache, mean_ci95
from fewshot.learners import create_learner
from fewshot.prototypes import class_means as prototypes
from fewshot.prototypes import scores as prototypes_scores


def test_mean_ci95_by_hand():
    acc = [0.2, 0.4, 0.6, 0.8]
    mean = 0.5
    s = math.sqrt(sum((a - mean) ** 2 for a in acc) / 3)
    m, h = mean_ci95(acc)
    assert m == pytest.approx(0.5) and h == pytest.approx(1.96 * s / 2)
    assert math.isnan(mean_ci95([0.7])[1])
    with pytest.raises(ValueError, match="no episodes"):
        mean_ci95([])


def test_prototypes_with_sparse_labels_refused():
    z = torch.arange(6.0).reshape(3, 2)
    np.testing.assert_allclose(prototypes(z, torch.tensor([0, 1, 0])).numpy(), [[2, 3], [2, 3]])
    with pytest.raises(ValueError, match=r"labels \[1\] have no example"):
        prototypes(z, torch.tensor([0, 2, 0]))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_protonet_logits_equal_brute_force(tiny_image_encoder, metric):
    learner = create_learner("protonet", tiny_image_encoder, {"metric": metric})
    g = torch.Generator().manual_seed(0)
    zs, ys = torch.randn(10, 8, generator=g), torch.arange(5).repeat(2)
    zq = torch.randn(7, 8, generator=g)
    learner.adapt_features(zs, ys)
    got = learner.logits_features(zq)
    protos = prototypes(zs, ys)
    if metric == "euclidean":
        want = -torch.cdist(zq, protos) ** 2
    else:
        want = torch.nn.functional.normalize(zq, dim=1) @ torch.nn.functional.normalize(protos, dim=1).T
    np.testing.assert_allclose(got.numpy(), learner.temperature * want.numpy(), rtol=1e-4, atol=1e-4)
    assert torch.equal(got.argmax(1), want.argmax(1))


def test_cache_and_no_cache_give_identical_accuracy(tiny_image_encoder):
    rng = np.random.default_rng(0)
    centers = rng.integers(0, 255, size=(8, 1, 1))
    items = [np.clip(centers[c] + rng.normal(0, 40, (28, 28)), 0, 255).astype(np.uint8)
             for c in range(8) for _ in range(10)]
    labels = [f"c{c}" for c in range(8) for _ in range(10)]
    ds = FewShotDataset("toy", "image", items, labels)
    eps = list(EpisodeSampler(labels, 4, 2, 3, seed=0).episodes(12))
    learner = create_learner("protonet", tiny_image_encoder)
    tiny_image_encoder.eval()
    a = evaluate(learner, ds, eps, progress=False, cache=True)
    b = evaluate(learner, ds, eps, progress=False, cache=False)
    np.testing.assert_allclose(a.accuracies, b.accuracies)
    assert a.mean > 0.5  # brightness separates these classes
    assert a.n_embedded == len({int(i) for e in eps for i in np.concatenate([e.support, e.query])})
    assert b.n_embedded == 12 * (4 * 2 + 4 * 3)


def _toy_images():
    rng = np.random.default_rng(0)
    centers = rng.integers(0, 255, size=(8, 1, 1))
    items = [np.clip(centers[c] + rng.normal(0, 40, (28, 28)), 0, 255).astype(np.uint8)
             for c in range(8) for _ in range(10)]
    labels = [f"c{c}" for c in range(8) for _ in range(10)]
    return FewShotDataset("toy", "image", items, labels), labels


def _eager(learner, ds, eps):
    """The evaluation of fewshot <= this change: every touched example embedded in one pass, then scored."""
    from fewshot.episodes import unique_ids
    from fewshot.evaluation import episode_accuracy

    ids = unique_ids(eps)
    z = torch.from_numpy(learner.encoder.encode(ds.take(ids)))
    row = {int(i): r for r, i in enumerate(ids)}
    accs = []
    for ep in eps:
        learner.adapt_features(z[[row[int(i)] for i in ep.support]], torch.from_numpy(ep.support_labels))
        accs.append(episode_accuracy(learner.logits_features(z[[row[int(i)] for i in ep.query]]), ep))
    return np.asarray(accs)


def test_runs_given_one_example_cache_embed_each_example_once_for_all(tiny_image_encoder):
    """Two episode sets of one dataset (1-shot and 2-shot) scored with one example_cache: the same accuracies
    as each run on its own, and the second run embeds only the examples the first did not touch."""
    ds, labels = _toy_images()
    one = list(EpisodeSampler(labels, 4, 1, 3, seed=0).episodes(10))
    two = list(EpisodeSampler(labels, 4, 2, 3, seed=1).episodes(10))
    learner = create_learner("protonet", tiny_image_encoder)
    tiny_image_encoder.eval()
    shared = example_cache(learner, ds, progress=False)
    a, b = (evaluate(learner, ds, eps, progress=False, cache=shared) for eps in (one, two))
    np.testing.assert_allclose(a.accuracies, evaluate(learner, ds, one, progress=False).accuracies)
    np.testing.assert_allclose(b.accuracies, evaluate(learner, ds, two, progress=False).accuracies)
    touched = [{int(i) for e in eps for i in np.concatenate([e.support, e.query])} for eps in (one, two)]
    assert a.n_embedded == len(touched[0]) and b.n_embedded == len(touched[1] - touched[0]) < len(touched[1])
    assert shared.n == len(touched[0] | touched[1])


def test_lazy_chunked_evaluation_equals_the_eager_one(tiny_image_encoder):
    ds, labels = _toy_images()
    tiny_image_encoder.eval()
    learner = create_learner("protonet", tiny_image_encoder)
    sampler = EpisodeSampler(labels, 4, 2, 3, seed=3)
    want = _eager(learner, ds, list(sampler.episodes(40)))
    whole = evaluate(learner, ds, sampler.episodes(40), progress=False)  # one chunk: the same single pass
    np.testing.assert_array_equal(whole.accuracies, want)
    chunked = evaluate(learner, ds, iter(sampler.episodes(40)), progress=False, chunk=7)
    np.testing.assert_array_equal(chunked.accuracies, want)
    assert chunked.n_embedded == whole.n_embedded == len(unique_ids_of(sampler.episodes(40)))


def unique_ids_of(eps):
    return {int(i) for e in eps for i in np.concatenate([e.support, e.query])}


@pytest.mark.parametrize("cache", [True, False])
def test_evaluation_reads_a_generator_once_and_holds_a_chunk_at_most(tiny_image_encoder, cache):
    """Memory does not grow with the number of episodes: count the episodes alive at once."""
    import weakref

    ds, labels = _toy_images()
    tiny_image_encoder.eval()
    sampler = EpisodeSampler(labels, 4, 2, 3, seed=0)
    alive, peak, produced = [0], [0], [0]

    def generate():
        for i in range(200):
            ep = sampler.sample(i)
            alive[0] += 1
            peak[0] = max(peak[0], alive[0])
            produced[0] += 1
            weakref.finalize(ep, lambda: alive.__setitem__(0, alive[0] - 1))
            yield ep

    result = evaluate(create_learner("protonet", tiny_image_encoder), ds, generate(), progress=False,
                      cache=cache, chunk=10)
    assert produced[0] == 200 and len(result.accuracies) == 200
    assert peak[0] <= 2 * 10 + 1  # the chunk being scored and the next one being read, not 200
    assert result.accuracies.tolist() == evaluate(create_learner("protonet", tiny_image_encoder), ds,
                                                  list(sampler.episodes(200)), progress=False,
                                                  cache=cache).accuracies.tolist()


@pytest.mark.parametrize("cache", [True, False])
def test_class_names_join_each_support_set_as_one_more_example(tiny_image_encoder, cache):
    """With class_names, a class's prototype is the mean of its support and its description."""
    ds, labels = _toy_images()
    rng = np.random.default_rng(1)
    ds.class_items = {c: rng.integers(0, 255, (28, 28)).astype(np.uint8) for c in sorted(set(labels))}
    eps = list(EpisodeSampler(labels, 4, 1, 3, seed=0).episodes(6))
    learner = create_learner("protonet", tiny_image_encoder)
    tiny_image_encoder.eval()
    got = evaluate(learner, ds, eps, progress=False, cache=cache, class_names=True)
    z = {i: torch.from_numpy(tiny_image_encoder.encode([ds.items[i]])) for e in eps
         for i in np.concatenate([e.support, e.query]).tolist()}
    zc = {c: torch.from_numpy(tiny_image_encoder.encode([ds.class_items[c]])) for c in ds.class_items}
    expected = []
    for e in eps:
        protos = torch.cat([(z[int(e.support[j])] + zc[c]) / 2 for j, c in enumerate(e.classes)])  # 1 shot + 1
        pred = prototypes_scores(torch.cat([z[int(i)] for i in e.query]), protos, learner.cfg.metric).argmax(1)
        expected.append(float((pred.numpy() == e.query_labels).mean()))
    np.testing.assert_allclose(got.accuracies, expected)
    plain = evaluate(learner, ds, eps, progress=False, cache=cache)
    assert not np.array_equal(plain.accuracies, got.accuracies)  # the descriptions changed the prototypes
    n_touched = len({i for e in eps for i in np.concatenate([e.support, e.query]).tolist()})
    if cache:  # each description embedded once
        assert got.n_embedded == n_touched + len({c for e in eps for c in e.classes})
    else:
        assert got.n_embedded == plain.n_embedded + 6 * 4


def test_class_names_need_described_classes(tiny_image_encoder):
    ds, labels = _toy_images()
    eps = list(EpisodeSampler(labels, 4, 1, 3, seed=0).episodes(2))
    learner = create_learner("protonet", tiny_image_encoder)
    with pytest.raises(ValueError, match="dataset 'toy' gives no class descriptions"):
        evaluate(learner, ds, eps, progress=False, class_names=True)
    ds.class_items = {"c0": ds.items[0]}
    with pytest.raises(ValueError, match="gives no description of class 'c[1-7]'"):
        evaluate(learner, ds, [e for e in eps if set(e.classes) != {"c0"}], progress=False, class_names=True)


def test_embedding_cache_embeds_each_key_once_and_takes_rows_in_order():
    """One row per key (examples) or several (a sentence's words): new keys only are embedded, in one call."""
    calls = []

    def words(keys, bar):  # key k embeds to k words, each row [k, j]
        calls.append(list(keys))
        return [np.asarray([[k, j] for j in range(k)], dtype=np.float32) for k in keys]

    cache = EmbeddingCache(words, progress=False)
    cache.add([2, 1, 2])
    cache.add([3, 1])
    assert calls == [[2, 1], [3]] and cache.n == 3 and 3 in cache and 4 not in cache
    np.testing.assert_array_equal(cache.take([1, 3, 2]).numpy(), [[1, 0], [3, 0], [3, 1], [3, 2], [2, 0], [2, 1]])
    rows = EmbeddingCache(lambda keys, bar: np.asarray([[k, -k] for k in keys], dtype=np.float32), progress=False)
    rows.add([1, 5])
    np.testing.assert_array_equal(rows.take([5, 1, 5]).numpy(), [[5, -5], [1, -1], [5, -5]])

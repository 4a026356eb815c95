"""Few-NERD's greedy N-way K~2K sampler: the publisher's rule on a hand case, its invariants, and
frozen episode files."""
from __future__ import annotations

import numpy as np
import pytest

from fewshot.episodes import load_episodes, save_episodes
from fewshot.tag_episodes import GreedyTypeSampler, TaggedEpisode, greedy_set
from fewshot.tagged import TaggedDataset, io_spans


def test_greedy_set_follows_the_publishers_rule_by_hand():
    # entities of types A, B per sentence; K = 1, so at most 2K = 2 of each type
    counts = np.array([[3, 0],   # 0: A would exceed 2K -> refused
                       [1, 0],   # 1: adds to A (0 < K) -> kept; A = 1
                       [1, 0],   # 2: A is at K already and B gets nothing -> refused
                       [1, 2],   # 3: B still below K, A 1+1 = 2 <= 2K, B 2 <= 2K -> kept; done (A=2, B=2)
                       [0, 1]])  # 4: never reached
    assert greedy_set(counts, np.arange(5), 1, set()) == [1, 3]
    assert greedy_set(counts, np.array([4, 2, 0, 1, 3]), 1, set()) == [4, 2]  # B then A: done at A=1, B=1
    assert greedy_set(counts, np.array([0, 2, 4]), 1, {2}) is None  # A never reaches K
    # K = 2: a sentence adding only to a type already at K is refused even when nothing would exceed 2K
    assert greedy_set(np.array([[2, 0], [1, 0], [0, 2]]), np.arange(3), 2, set()) == [0, 2]


def _dataset(rng) -> TaggedDataset:
    types = ["a", "b", "c", "d"]
    sentences, tags = [], []
    for i in range(120):
        n = int(rng.integers(3, 8))
        t = ["O"] * n
        for _ in range(int(rng.integers(1, 3))):  # one or two entities of random types
            j = int(rng.integers(0, n))
            t[j] = types[int(rng.integers(0, 4 if i % 3 else 3))]
        sentences.append(tuple(f"w{i}_{k}" for k in range(n)))
        tags.append(tuple(t))
    return TaggedDataset("toy", sentences, tags)


@pytest.mark.parametrize("way, shot", [(2, 1), (3, 2)])
def test_episodes_meet_the_k_to_2k_rule(way, shot):
    ds = _dataset(np.random.default_rng(0))
    sampler = GreedyTypeSampler(ds, way, shot, seed=3)
    for ep in sampler.episodes(20):
        assert len(set(ep.types)) == way and not set(ep.support) & set(ep.query)
        for ids in (ep.support, ep.query):
            found = {t: 0 for t in ep.types}
            for i in ids:
                spans = io_spans(ds.tags[i])
                assert spans and all(t in ep.types for t, _, _ in spans)  # candidates only
                for t, _, _ in spans:
                    found[t] += 1
            assert all(shot <= n <= 2 * shot for n in found.values()), found


def test_same_seed_same_episodes_other_seed_others():
    ds = _dataset(np.random.default_rng(0))
    a = [e.to_json() for e in GreedyTypeSampler(ds, 2, 1, seed=0).episodes(5)]
    b = [e.to_json() for e in GreedyTypeSampler(ds, 2, 1, seed=0).episodes(5)]
    c = [e.to_json() for e in GreedyTypeSampler(ds, 2, 1, seed=1).episodes(5)]
    assert a == b and a != c


def test_too_many_ways_is_refused():
    ds = _dataset(np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"--way 5 needs 5 entity types but only 4"):
        GreedyTypeSampler(ds, 5, 1)


def test_tagged_episodes_round_trip_through_a_frozen_file(tmp_path):
    ds = _dataset(np.random.default_rng(0))
    eps = list(GreedyTypeSampler(ds, 2, 1, seed=0).episodes(4))
    save_episodes(tmp_path / "e.jsonl", eps, {"dataset": ds.name})
    _, back = load_episodes(tmp_path / "e.jsonl")
    assert all(isinstance(e, TaggedEpisode) for e in back)
    assert [e.to_json() for e in back] == [e.to_json() for e in eps]
    ep = back[0]
    labels = ep.token_labels([("O", ep.types[1], "zz")])
    np.testing.assert_array_equal(labels[0], [0, 2, 0])  # 0 = O, j + 1 = types[j], other types are O


def test_an_unknown_episode_kind_is_named(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text('{"format": "fewshot-episodes/1", "n_episodes": 1}\n{"kind": "parse", "index": 0}\n')
    with pytest.raises(ValueError, match=r"e.jsonl:2: episode kind 'parse' is not known \(known: \['classify', 'ner'\]"):
        load_episodes(p)

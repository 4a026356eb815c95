"""Few-NERD's greedy N-way K~2K sampler: the publisher's rule on a hand case, its invariants, and
frozen episode files."""
from __future__ import annotations

import numpy as np
import pytest

from fewshot.episodes import load_episodes, save_episodes
from fewshot.tag_episodes import GreedyTypeSampler, TaggedEpisode, greedy_set, minimum_including_set
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
    with pytest.raises(ValueError, match=r"e.jsonl:2: episode kind 'parse' is not known \(known: \['classify', "
                                         r"('joint', )?'ner'\]\); a kind is known once its module is imported"):
        load_episodes(p)  # joint is known too when fewshot.joint_episodes was imported (the full suite imports it)


def test_minimum_including_set_by_hand():
    # types A (in every sentence, as SNIPS's "playlist"), B, C; K = 1: no upper bound, then drop what is not needed
    counts = np.array([[1, 0, 0],   # 0: adds to A -> kept
                       [1, 1, 0],   # 1: adds to B -> kept
                       [1, 0, 0],   # 2: A is at K, nothing new -> skipped
                       [1, 1, 1],   # 3: adds to C -> kept; every type has K: A=3, B=2, C=1
                       [0, 0, 1]])  # 4: never reached
    # removal pass, in kept order: without 0, A=2 B=2 C=1 -> dropped; without 1, A=1 B=1 C=1 -> dropped;
    # without 3, A=0 -> kept. Result [3]
    assert minimum_including_set(counts, np.arange(5), 1, set()) == [3]
    assert greedy_set(counts, np.arange(5), 1, set()) == [0, 1, 4]  # K~2K: 3 would make A = 3 > 2K
    assert minimum_including_set(counts, np.array([4, 2, 1]), 1, set()) == [4, 1]  # C, then A and B at once
    assert minimum_including_set(counts, np.array([0, 1, 2]), 1, set()) is None  # C never reached
    assert minimum_including_set(counts, np.arange(5), 1, {3}) == [1, 4]  # 0 dropped: 1 carries A too


def test_minimum_including_episodes_exist_where_k_to_2k_do_not():
    # every sentence has two entities of type p: a 1~2-shot set holds one sentence, so it cannot cover a and b
    sentences = [(f"w{i}", "x", "y", "z") for i in range(12)]
    tags = [("p", "O", "p", "a" if i % 2 else "b") for i in range(12)]
    ds = TaggedDataset("toy", sentences, tags)
    with pytest.raises(ValueError, match=r"minimum-including rule"):
        GreedyTypeSampler(ds, 3, 1, seed=0).sample(0)
    ep = GreedyTypeSampler(ds, 3, 1, seed=0, rule="minimum-including").sample(0)
    assert len(ep.support) == 2 and len(ep.query) == 2 and not set(ep.support) & set(ep.query)
    assert {tags[i][3] for i in ep.support} == {"a", "b"}
    assert GreedyTypeSampler(ds, 3, 1, rule="minimum-including").describe()["rule"] == "minimum-including"
    with pytest.raises(ValueError, match=r"episode rule must be one of"):
        GreedyTypeSampler(ds, 3, 1, rule="hou")


def _domain_dataset() -> tuple[TaggedDataset, dict]:
    """Two domains: D1 with types a, b (each sentence one of each), D2 with types c, d, e."""
    sentences, tags = [], []
    for i in range(12):
        sentences.append((f"p{i}", "x", f"q{i}"))
        tags.append(("a", "O", "b"))
        sentences.append((f"r{i}", f"s{i}", "y", f"t{i}"))
        tags.append(("c", "d", "O", "e") if i % 2 else ("c", "O", "O", "d"))
    sentences.append(("u", "v")); tags.append(("e", "O"))
    return TaggedDataset("domains", sentences, tags), {"a": "D1", "b": "D1", "c": "D2", "d": "D2", "e": "D2"}


def test_whole_domain_episodes_hold_every_type_of_one_domain():
    ds, domains = _domain_dataset()
    sampler = GreedyTypeSampler(ds, None, 1, seed=0, rule="minimum-including", domains=domains)
    seen = set()
    for ep in sampler.episodes(30):
        assert ep.types in (("a", "b"), ("c", "d", "e"))
        seen.add(ep.types)
        for ids in (ep.support, ep.query):
            found = {t: 0 for t in ep.types}
            for i in ids:
                for t, _, _ in io_spans(ds.tags[i]):
                    found[t] += 1
            assert min(found.values()) >= 1  # K = 1 of every type of the domain
        assert not set(ep.support) & set(ep.query)
        if ep.types == ("a", "b"):  # one sentence holds both: the minimum-including set is that one sentence
            assert len(ep.support) == len(ep.query) == 1
    assert seen == {("a", "b"), ("c", "d", "e")}  # both domains are drawn
    assert sampler.describe()["types"] == "domain"
    # restricted to some types, a domain holds only those
    sub = GreedyTypeSampler(ds, None, 1, seed=0, types=["c", "d", "e"], rule="minimum-including", domains=domains)
    assert {e.types for e in sub.episodes(10)} == {("c", "d", "e")}


def test_whole_domain_episodes_refuse_a_way_or_a_type_without_domain():
    ds, domains = _domain_dataset()
    with pytest.raises(ValueError, match=r"n_way=2 would be ignored"):
        GreedyTypeSampler(ds, 2, 1, domains=domains)
    with pytest.raises(ValueError, match=r"no domain for \['e'\]"):
        GreedyTypeSampler(ds, None, 1, domains={k: v for k, v in domains.items() if k != "e"})
    with pytest.raises(ValueError, match=r"n_way is required"):
        GreedyTypeSampler(ds, None, 1)

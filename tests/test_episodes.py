"""Sampler invariants, determinism, frozen episode files, and the errors users hit."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fewshot.episodes import (EpisodeSampler, VariableEpisodeSampler, load_episodes, save_episodes,
                              unique_ids)


def make_labels(n_classes=12, per_class=30):
    # Deliberately non-contiguous, non-integer labels.
    return [f"class-{7 * c}" for c in range(n_classes) for _ in range(per_class)]


@pytest.mark.parametrize("way,shot,query", [(5, 1, 15), (5, 5, 10), (3, 2, 1), (12, 1, 29)])
def test_fixed_sampler_invariants(way, shot, query):
    labels = make_labels()
    sampler = EpisodeSampler(labels, way, shot, query, seed=3)
    for ep in sampler.episodes(20):
        assert len(set(ep.classes)) == way
        assert ep.support.shape == (way * shot,) and ep.query.shape == (way * query,)
        assert not set(ep.support) & set(ep.query)
        assert len(set(ep.support)) == way * shot and len(set(ep.query)) == way * query
        np.testing.assert_array_equal(np.bincount(ep.support_labels), [shot] * way)
        np.testing.assert_array_equal(np.bincount(ep.query_labels), [query] * way)
        # local labels map back to the true class of every example
        for ids, local in ((ep.support, ep.support_labels), (ep.query, ep.query_labels)):
            assert [labels[i] for i in ids] == [ep.classes[j] for j in local]


def test_same_seed_same_episodes_different_seed_different():
    labels = make_labels()
    a = [e.to_json() for e in EpisodeSampler(labels, 5, 1, 5, seed=1).episodes(10)]
    b = [e.to_json() for e in EpisodeSampler(labels, 5, 1, 5, seed=1).episodes(10)]
    c = [e.to_json() for e in EpisodeSampler(labels, 5, 1, 5, seed=2).episodes(10)]
    assert a == b
    assert a != c


def test_episode_i_is_independent_of_earlier_draws():
    labels = make_labels()
    sampler = EpisodeSampler(labels, 5, 1, 5, seed=9)
    full = list(sampler.episodes(8))
    assert full[5].to_json() == sampler.sample(5).to_json()
    assert [e.to_json() for e in sampler.episodes(3, start=5)] == [e.to_json() for e in full[5:]]


def test_classes_restrict_sampling():
    labels = make_labels()
    allowed = ["class-0", "class-14", "class-21", "class-35"]
    sampler = EpisodeSampler(labels, 3, 1, 2, seed=0, classes=allowed)
    seen = {c for e in sampler.episodes(30) for c in e.classes}
    assert seen == set(allowed)


def test_too_small_class_names_class_and_numbers():
    labels = make_labels(per_class=30) + ["tiny"] * 12
    with pytest.raises(ValueError, match=r"1 \+ 15 = 16 but class 'tiny' has 12 examples; lower --shot/--query"):
        EpisodeSampler(labels, 5, 1, 15)


def test_way_larger_than_classes():
    with pytest.raises(ValueError, match="--way 20 needs 20 classes but only 12 are available"):
        EpisodeSampler(make_labels(), 20, 1, 1)


@pytest.mark.parametrize("kw,match", [({"n_way": 1}, "n_way must be at least 2"),
                                      ({"n_shot": 0}, "n_shot must be at least 1"),
                                      ({"n_query": 2.5}, "n_query must be an int")])
def test_bad_shape_arguments(kw, match):
    args = {"n_way": 5, "n_shot": 1, "n_query": 5, **kw}
    with pytest.raises((ValueError, TypeError), match=match):
        EpisodeSampler(make_labels(), **args)


def test_variable_sampler_bounds_and_balance():
    labels = [f"c{c}" for c in range(60) for _ in range(20 + c)]
    sampler = VariableEpisodeSampler(labels, seed=0, max_support=100)
    ways = []
    for ep in sampler.episodes(40):
        way = ep.n_way
        ways.append(way)
        assert 5 <= way <= 50
        assert len(ep.support) <= 100 + way  # budget plus the at-least-one-shot floor
        assert not set(ep.support) & set(ep.query)
        counts = np.bincount(ep.support_labels, minlength=way)
        assert counts.min() >= 1
        assert [labels[i] for i in ep.query] == [ep.classes[j] for j in ep.query_labels]
    assert len(set(ways)) > 5  # way really varies
    shot_spread = [np.ptp(np.bincount(e.support_labels)) for e in sampler.episodes(20)]
    assert max(shot_spread) > 0  # shots are imbalanced


def test_save_load_round_trip_and_truncation(tmp_path):
    labels = make_labels()
    eps = list(EpisodeSampler(labels, 5, 2, 3, seed=4).episodes(7))
    path = tmp_path / "eps.jsonl"
    digest = save_episodes(path, eps, {"dataset": "toy", "seed": 4})
    header, loaded = load_episodes(path)
    assert header["dataset"] == "toy" and header["n_episodes"] == 7
    assert [e.to_json() for e in loaded] == [e.to_json() for e in eps]
    assert len(digest) == 64
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-2]) + "\n")
    with pytest.raises(ValueError, match="header says 7 episodes but the file holds 5"):
        load_episodes(path)
    path.write_text(lines[0] + "\n" + '{"index": 0, "classes": ["a"]\n')
    with pytest.raises(ValueError, match=r"eps.jsonl:2: malformed episode"):
        load_episodes(path)
    path.write_text(json.dumps({"format": "other"}) + "\n")
    with pytest.raises(ValueError, match="expected format 'fewshot-episodes/1'"):
        load_episodes(path)


def test_unique_ids_is_the_union():
    eps = list(EpisodeSampler(make_labels(), 5, 1, 5, seed=0).episodes(10))
    expected = sorted({int(i) for e in eps for i in np.concatenate([e.support, e.query])})
    assert unique_ids(eps).tolist() == expected


def test_asking_for_ten_million_episodes_samples_only_those_read(monkeypatch):
    """build_episodes used to list() every episode before the first was scored."""
    import itertools

    from fewshot.config import FewShotConfig
    from fewshot.data import FewShotDataset
    from fewshot.experiment import build_episodes

    labels = make_labels()
    calls = []
    real = EpisodeSampler.sample

    def counted(self, index):
        calls.append(index)
        if len(calls) > 1000:
            raise AssertionError("sampled more than 1000 episodes for 3 read")
        return real(self, index)

    monkeypatch.setattr(EpisodeSampler, "sample", counted)
    ds = FewShotDataset("toy", "text", [f"t{i}" for i in range(len(labels))], labels)
    cfg = FewShotConfig.from_dict({"episodes": {"way": 5, "shot": 1, "query": 5, "episodes": 10_000_000,
                                                "classes": "all"}})
    eps, desc = build_episodes(cfg, ds)
    assert len(eps) == 10_000_000 and calls == []
    first = list(itertools.islice(eps, 3))
    assert calls == [0, 1, 2]
    # episode i is the same whichever way it is read, and the same as an eager sampler's
    eager = list(itertools.islice(EpisodeSampler(labels, 5, 1, 5, seed=0).episodes(10_000_000), 3))
    assert [e.to_json() for e in first] == [e.to_json() for e in eager] == [eps[i].to_json() for i in range(3)]
    assert eps[-1].index == 9_999_999

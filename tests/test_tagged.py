"""Tagged data: IO/BIO conversion, entity spans (Few-NERD's rule), the readers and their errors,
and the registered NER datasets on the shipped files."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fewshot.datasets import load_dataset
from fewshot.datasets.ner import read_conll, read_jsonl_tags, read_snips, wnut17_support_sets, wnut17_train
from fewshot.tagged import TaggedDataset, bio_to_io, io_spans, io_to_bio, split_words


def fewnerd_rule(tags):
    """Few-NERD's entity rule as its publisher writes it (util/framework.py __get_class_span_dict__):
    a maximal run of one non-O label is one entity, (label, start, end inclusive)."""
    spans, i = [], 0
    while i < len(tags):
        if tags[i] != "O":
            start, label = i, tags[i]
            while i + 1 < len(tags) and tags[i + 1] == label:
                i += 1
            spans.append((label, start, i))
        i += 1
    return spans


def test_io_spans_are_maximal_runs_of_one_label():
    tags = ["O", "person-actor", "person-actor", "location-other", "O", "location-other", "location-other"]
    assert io_spans(tags) == [("person-actor", 1, 2), ("location-other", 3, 3), ("location-other", 5, 6)]


def test_io_spans_count_as_the_fewnerd_rule_on_random_io_tags():
    rng = np.random.default_rng(0)
    labels = ["O", "O", "a-x", "a-y", "b"]
    for _ in range(300):
        tags = [labels[j] for j in rng.integers(0, len(labels), size=int(rng.integers(1, 15)))]
        assert io_spans(tags) == fewnerd_rule(tags), tags


def test_bio_and_io_convert_both_ways():
    assert bio_to_io(["B-per", "I-per", "O", "B-loc", "B-loc"]) == ("per", "per", "O", "loc", "loc")
    assert io_to_bio(["per", "per", "O", "loc", "org"]) == ("B-per", "I-per", "O", "B-loc", "B-org")
    bio = ("B-per", "I-per", "O", "B-loc", "I-loc", "B-org")
    assert io_to_bio(bio_to_io(bio)) == bio  # no two adjacent entities of one type: lossless


def _write(tmp_path, name, text, encoding="utf-8"):
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


@pytest.mark.parametrize("text, words", [
    ("Ada's code, in 1843.", ("Ada's", "code", ",", "in", "1843", ".")),
    ("state-of-the-art (3.5 / 1,000)", ("state-of-the-art", "(", "3.5", "/", "1,000", ")")),
    ("O\u2019Brien  met\tZ\u00fcrich\u2014again!", ("O\u2019Brien", "met", "Z\u00fcrich", "\u2014", "again", "!")),
    ("U.S. - end", ("U", ".", "S", ".", "-", "end")),
    ("   ", ()),
])
def test_split_words_separates_punctuation_but_inner_hyphens_apostrophes_and_decimals(text, words):
    assert split_words(text) == words


def test_read_conll_bio_and_io(tmp_path):
    p = _write(tmp_path, "a.conll", "John\tB-per\nSmith\tI-per\nruns\tO\n\nin\tO\nParis\tB-loc\n")
    sentences, tags, origins = read_conll(p)
    assert sentences == [("John", "Smith", "runs"), ("in", "Paris")]
    assert tags == [("per", "per", "O"), ("O", "loc")]
    assert origins == [f"{p}:1", f"{p}:5"]
    q = _write(tmp_path, "b.conll", "The\tO\nstadium\tbuilding-other\n")
    assert read_conll(q)[1] == [("O", "building-other")]


@pytest.mark.parametrize("text, match", [
    ("John\tB-per\nSmith\n", r"b.conll:2: expected `token<TAB>tag`"),
    ("John\tB-per\nSmith\tX-per\n", r"b.conll:2: tag 'X-per' is not BIO"),
    ("", r"b.conll:1: the file holds no tagged sentence"),
    ("\n\n", r"b.conll:1: the file holds no tagged sentence"),
])
def test_bad_conll_names_file_line_and_fix(tmp_path, text, match):
    p = _write(tmp_path, "b.conll", text)
    with pytest.raises(ValueError, match=match):
        read_conll(p)


def test_io_file_with_a_bio_tag_is_refused(tmp_path):
    p = _write(tmp_path, "c.conll", "John\tper\nSmith\tI-per\n")
    with pytest.raises(ValueError, match=r"c.conll:2: tag 'I-per' looks BIO"):
        read_conll(p, "io")


def test_read_jsonl_tags(tmp_path):
    p = _write(tmp_path, "t.jsonl", json.dumps({"tokens": ["a", "b"], "tags": ["B-x", "I-x"]}) + "\n"
               + json.dumps({"tokens": ["c"], "tags": ["O"]}) + "\n")
    sentences, tags, origins = read_jsonl_tags(p)
    assert sentences == [("a", "b"), ("c",)] and tags == [("x", "x"), ("O",)] and origins == [f"{p}:1", f"{p}:2"]
    bad = _write(tmp_path, "u.jsonl", json.dumps({"tokens": ["a", "b"], "tags": ["O"]}) + "\n")
    with pytest.raises(ValueError, match=r"u.jsonl:1: 2 tokens but 1 tags"):
        read_jsonl_tags(bad)
    ds = load_dataset(str(p))
    assert isinstance(ds, TaggedDataset) and ds.types == ["x"]


def test_read_snips_latin1_and_utf8(tmp_path):
    query = {"Play": [{"data": [{"text": "play "}, {"text": "café del mar", "entity": "artist"}, {"text": " now"}]}]}
    for enc in ("utf-8", "latin-1"):
        p = _write(tmp_path, f"s-{enc}.json", json.dumps(query, ensure_ascii=False), enc)
        sentences, tags, _, intents = read_snips(p)
        assert sentences == [("play", "café", "del", "mar", "now")]
        assert tags == [("O", "artist", "artist", "artist", "O")] and intents == ["Play"]


def test_registered_ner_datasets_read_the_shipped_files(shared_data):
    few = load_dataset("fewnerd-inter", shared_data)
    assert len(few.sentences) == 18817 + 14007
    assert len(few.splits["train"]) == 10 and len(few.splits["val"]) == 3 and len(few.splits["test"]) == 17
    counts = few.entity_counts()
    assert sum(c["person-athlete"] for c in counts) == 5444  # the data README's IO-run count
    wnut = load_dataset("wnut17", shared_data)
    assert len(wnut.sentences) == 1287 and len(wnut.splits["test"]) == 6
    assert sum(c["person"] for c in wnut.entity_counts()) == 429
    ai = load_dataset("crossner-ai", shared_data)
    assert len(ai.sentences) == 431 and len(ai.types) == 14
    snips = load_dataset("snips", shared_data)
    assert len(snips.sentences) == 700 and len(snips.types) == 39
    play = read_snips(shared_data / "snips" / "train_PlayMusic_full.json")  # the Latin-1 file
    assert len(play[0]) == 2000


def test_wnut17_structshot_support_sets_on_the_shipped_files(shared_data):
    one, five = wnut17_support_sets(shared_data, 1), wnut17_support_sets(shared_data, 5)
    assert [len(s.sentences) for s in one] == [6, 5, 5, 4, 5]  # the data README's counts
    assert [len(s.sentences) for s in five] == [23, 21, 20, 23, 25]
    first = one[0]
    assert first.name == "wnut17-support-1shot-0" and first.splits == {"test": first.types}
    assert first.types == ["corporation", "creative-work", "group", "location", "person", "product"]
    assert sum(sum(c.values()) for c in first.entity_counts()) == 8 and sum(len(w) for w in first.sentences) == 83
    assert first.sentences[0][:3] == ("sounds", "like", "united") and first.tags[0][2] == "corporation"
    train = wnut17_train(shared_data)
    assert len(train.sentences) == 3394 and train.splits["train"] == first.types
    with pytest.raises(ValueError, match=r"1-shot and 5-shot, got shot=2"):
        wnut17_support_sets(shared_data, 2)


def test_snips_cross_domain_datasets(shared_data):
    ds = load_dataset("snips-getweather", shared_data)
    assert len(ds.sentences) == 13784  # the 7 intents' train_*_full.json queries (the README's counts)
    assert len(ds.splits["test"]) == 9 and all(t.startswith("GetWeather:") for t in ds.splits["test"])
    # the next intent validates (PlayMusic after GetWeather), the other 5 train
    assert len(ds.splits["val"]) == 9 and all(t.startswith("PlayMusic:") for t in ds.splits["val"])
    assert "AddToPlaylist:artist" in ds.splits["train"] and "PlayMusic:artist" not in ds.splits["train"]
    assert len(ds.splits["train"]) == 53 - 9 - 9  # 53 domain slots in all (the README's per-intent counts)
    assert ds.domains["PlayMusic:artist"] == "PlayMusic" and ds.domains["GetWeather:city"] == "GetWeather"
    assert set(ds.domains) == set(ds.types)
    # the last intent's val domain wraps round to the first
    last = load_dataset("snips-searchscreeningevent", shared_data)
    assert {last.domains[t] for t in last.splits["val"]} == {"AddToPlaylist"}


def test_domains_must_cover_every_type_and_nothing_else():
    sentences, tags = [("a", "b"), ("c",)], [("x", "O"), ("y",)]
    TaggedDataset("ok", sentences, tags, domains={"x": "D", "y": "E"})
    with pytest.raises(ValueError, match=r"types without a domain: \['y'\]"):
        TaggedDataset("bad", sentences, tags, domains={"x": "D"})
    with pytest.raises(ValueError, match=r"domains of unknown types: \['z'\]"):
        TaggedDataset("bad", sentences, tags, domains={"x": "D", "y": "E", "z": "E"})


def test_type_names_are_read_from_the_types():
    from fewshot.tagged import type_name

    assert type_name("GetWeather:timeRange") == ("time", "Range")
    assert type_name("AddToPlaylist:playlist_owner") == ("playlist", "owner")
    assert type_name("person-actor") == ("person", "actor") and type_name("location-GPE") == ("location", "GPE")
    assert type_name("creative-work") == ("creative", "work") and type_name("city") == ("city",)
    assert type_name("--") == ("--",)  # nothing left after the split: the type as it is

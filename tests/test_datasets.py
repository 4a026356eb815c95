"""Dataset loaders: the shared publishers' files, a user's own files, Omniglot's official runs."""
from __future__ import annotations

import json
import zipfile
from collections import Counter

import numpy as np
import pytest
from click.testing import CliRunner

from fewshot.datasets import load_dataset
from fewshot.datasets.files import MIN_SPLIT_CLASSES, class_split, load_path


def _counts(ds) -> Counter:
    return Counter(ds.labels)


def _assert_disjoint(ds) -> None:
    sets = [set(ds.splits.get(s, ())) for s in ("train", "val", "test")]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert set().union(*sets) <= set(ds.labels)


# (name, n_items, n_classes, min per class, max per class, (n_train, n_val, n_test) classes)
SHARED = [
    ("clinc150", 22500, 150, 150, 150, (75, 30, 45)),
    ("huffpost", 36900, 41, 900, 900, (20, 5, 16)),
    ("reuters", 620, 31, 20, 20, (15, 5, 11)),
    ("fewrel", 11200, 16, 700, 700, (6, 2, 8)),
    ("fewrel-nyt", 2500, 25, 100, 100, (10, 2, 13)),
    ("fewrel-pubmed", 1000, 10, 100, 100, (4, 1, 5)),
    ("fewrel-semeval", 8851, 17, 110, 1135, (6, 2, 9)),
    ("trec", 5952, 50, 4, 1017, (15, 5, 15)),
    ("wordnet", 117659, 45, 42, 14435, (25, 5, 15)),
    ("wordnet-hypernym", 29877, 623, 20, 664, (373, 125, 125)),
    ("omniglot", 4840, 242, 20, 20, (203, 39, 0)),
    ("omniglot-small1", 2720, 136, 20, 20, (114, 22, 0)),
    ("omniglot-small2", 3120, 156, 20, 20, (139, 17, 0)),
    ("font_glyphs", 97761, 3066, 8, 194, (1840, 613, 613)),
]


@pytest.mark.parametrize("name,n_items,n_classes,lo,hi,split_sizes", SHARED, ids=[s[0] for s in SHARED])
def test_shared_dataset_counts_and_disjoint_splits(shared_data, name, n_items, n_classes, lo, hi, split_sizes):
    ds = load_dataset(name, shared_data)
    counts = _counts(ds)
    assert (len(ds.items), len(counts)) == (n_items, n_classes)
    assert (min(counts.values()), max(counts.values())) == (lo, hi)
    assert tuple(len(ds.splits.get(s, ())) for s in ("train", "val", "test")) == split_sizes
    _assert_disjoint(ds)
    assert all(isinstance(label, str) for label in ds.labels[:50])


def test_clinc150_test_intents_come_from_unseen_domains(shared_data):
    from fewshot.datasets.text import clinc150_domains, clinc150_out_of_scope

    ds = load_dataset("clinc150", shared_data)
    domain_of = {i: d for d, intents in clinc150_domains(shared_data).items() for i in intents}
    domains = {s: {domain_of[i] for i in ds.splits[s]} for s in ("train", "val", "test")}
    assert domains["test"] == {"auto_and_commute", "banking", "utility"}
    assert len(domains["train"]) == 5 and not (domains["train"] & domains["test"])
    oos = clinc150_out_of_scope(shared_data)
    assert len(oos) == 1200 and oos[0] == "how much is an overdraft fee for bank"
    assert "oos" not in set(ds.labels)


def test_huffpost_uses_the_published_class_split(shared_data):
    ds = load_dataset("huffpost", shared_data)
    assert ds.splits["val"] == ["0", "1", "2", "3", "4"]
    assert sorted(ds.splits["test"], key=int) == [str(i) for i in range(25, 41)]
    assert ds.items[0] == "there were 2 mass shootings in texas last week , but only 1 on tv"
    assert ds.labels[0] == "20"


def test_fewrel_marks_head_and_tail_entities(shared_data):
    from fewshot.datasets.text import fewrel_text

    text = fewrel_text({"tokens": ["the", "Cape", "Girardeau", "Bridge", "spans", "the", "Mississippi"],
                        "h": ["cape girardeau bridge", "Q1", [[1, 2, 3]]], "t": ["mississippi", "Q2", [[6]]]})
    assert text == "the [E1] Cape Girardeau Bridge [/E1] spans the [E2] Mississippi [/E2]"
    ds = load_dataset("fewrel", shared_data)
    assert all(t.count("[E1]") == 1 and t.count("[/E2]") == 1 for t in ds.items[:200])
    assert set(ds.labels) >= {"P177", "P921"}
    assert ds.encoder_options == {"pooling": "entities"}  # every item is entity-marked
    from fewshot.inputs import entity_spans
    for t in ds.items[::97]:
        (hs, he), (ts, te) = entity_spans(t, "fewrel")
        assert "[" not in t[hs:he] + t[ts:te]


def test_fewrel_and_clinc150_describe_their_classes(shared_data):
    """--class-names reads these: one entity-marked description per relation, intent names in words."""
    from fewshot.datasets.text import fewrel_class_text
    from fewshot.inputs import entity_spans

    names = {"P26": ["spouse", "the subject has the object as their spouse"], "P1": ["x", "No description defined"]}
    assert fewrel_class_text("P26", names) == \
        "[E1] subject [/E1] spouse [E2] object [/E2] : the subject has the object as their spouse"
    assert fewrel_class_text("P1", names) == "[E1] subject [/E1] x [E2] object [/E2]"  # no empty definition
    assert fewrel_class_text("P999", names) is None  # a Wikidata id pid2name.json lacks: nothing describes it
    assert fewrel_class_text("Content-Container(e2,e1)", names) == \
        "[E1] container [/E1] content container [E2] content [/E2]"  # (e2,e1): the head is the container
    assert fewrel_class_text("Cause-Effect(e1,e2)", names) == "[E1] cause [/E1] cause effect [E2] effect [/E2]"
    assert fewrel_class_text("gene_found_in_organism", names) == \
        "[E1] subject [/E1] gene found in organism [E2] object [/E2]"
    for name in ("fewrel", "fewrel-nyt", "fewrel-pubmed", "fewrel-semeval"):
        ds = load_dataset(name, shared_data)
        assert sorted(ds.class_items) == ds.classes  # every relation of the four files is described
        for relation, text in ds.class_items.items():
            (hs, he), (ts, te) = entity_spans(text, relation)  # parses like the sentences it joins
            assert t_words(text[hs:he]) and t_words(text[ts:te])
    wiki = load_dataset("fewrel", shared_data)
    assert wiki.class_item("P177").startswith("[E1] subject [/E1] crosses [E2] object [/E2] : obstacle")
    clinc = load_dataset("clinc150", shared_data)
    assert len(clinc.class_items) == 150 and clinc.class_item("book_flight") == "book flight"
    huffpost = load_dataset("huffpost", shared_data)
    assert huffpost.class_items == {}  # labels are bare ids: nothing to describe
    with pytest.raises(ValueError, match="gives no description of class '3'.*drop --class-names"):
        huffpost.class_item("3")


def t_words(span: str) -> bool:
    return bool(span.strip()) and "[" not in span


def test_class_items_must_name_known_classes_and_follow_extra_classes():
    from fewshot.data import FewShotDataset, with_extra_classes

    with pytest.raises(ValueError, match="class_items describes classes with no examples: \\['z'\\]"):
        FewShotDataset("d", "text", ["a"], ["x"], class_items={"z": "zed"})
    own = FewShotDataset("own", "text", ["a", "b", "c"], ["tr", "va", "te"],
                         {"train": ["tr"], "val": ["va"], "test": ["te"]}, class_items={"va": "own va"})
    other = FewShotDataset("other", "text", ["d", "e", "f"], ["tr", "va", "q"], {"train": ["q"], "val": ["va"]},
                           class_items={"tr": "other tr", "va": "other va", "q": "other q"})
    ds = with_extra_classes(own, train=[other], val=[other])
    # a joined class keeps the dataset's own description; the others follow their renamed labels
    assert ds.class_items == {"va": "own va", "q": "other q", "other:tr": "other tr"}


def test_trec_labels_are_fine_classes_and_small_ones_stay_out_of_splits(shared_data):
    ds = load_dataset("trec", shared_data)
    counts = _counts(ds)
    in_split = {c for s in ds.splits.values() for c in s}
    assert in_split == {c for c, n in counts.items() if n >= 20}
    assert counts["ABBR:exp"] > 20 and all(":" in c for c in counts)
    assert ds.items[0] == "How did serfdom develop in and then leave Russia ?" and ds.labels[0] == "DESC:manner"


def test_omniglot_images_are_black_strokes_on_white_uint8(shared_data):
    ds = load_dataset("omniglot-small1", shared_data)
    img = ds.items[0]
    assert img.dtype == np.uint8 and img.shape == (105, 105)
    assert set(np.unique(img).tolist()) == {0, 255}
    assert (img == 255).mean() > 0.8  # mostly white background
    assert ds.labels[0] == "Balinese/character01"
    assert ds.splits["val"] == [f"Early_Aramaic/character{i:02d}" for i in range(1, 23)]


def test_omniglot_keeps_greek_and_latin_once(shared_data):
    ds = load_dataset("omniglot", shared_data)
    alphabets = Counter(c.split("/")[0] for c in ds.classes)
    assert alphabets == {"Balinese": 24, "Early_Aramaic": 22, "Greek": 24, "Korean": 40, "Latin": 26,
                         "Japanese_(katakana)": 47, "Sanskrit": 42, "Tagalog": 17}
    with pytest.raises(ValueError, match="has no 'test' split.*--classes all"):
        ds.split_classes("test")


def test_omniglot_runs_protocol_follows_the_answer_key(shared_data):
    ds = load_dataset("omniglot-runs", shared_data)
    assert len(ds.items) == 800 and len(ds.episodes) == 20
    for r, ep in enumerate(ds.episodes):
        assert ep.n_way == 20 and len(ep.support) == 20 and len(ep.query) == 20
        assert ep.classes == tuple(f"run{r + 1:02d}/class{c:02d}" for c in range(1, 21))
        assert ep.support_labels.tolist() == list(range(20))
        assert sorted(ep.query_labels.tolist()) == list(range(20))
        assert [ds.labels[i] for i in ep.query] == [ep.classes[j] for j in ep.query_labels]
        assert not set(ep.support) & set(ep.query)
    # Hand-read from all_runs.zip: run01/class_labels.txt line 1 is
    # "run01/test/item01.png run01/training/class08.png"; run20 line 2 is "... item02.png ... class04.png".
    assert ds.episodes[0].query_labels[0] == 7 and ds.labels[ds.episodes[0].query[0]] == "run01/class08"
    assert ds.episodes[19].query_labels[1] == 3
    key = zipfile.ZipFile(shared_data / "omniglot" / "all_runs.zip").read("run01/class_labels.txt").decode()
    assert key.splitlines()[0].split() == ["run01/test/item01.png", "run01/training/class08.png"]
    # The support image of class08 in episode 0 is the file training/class08.png.
    from fewshot.datasets.images import decode_image

    png = zipfile.ZipFile(shared_data / "omniglot" / "all_runs.zip").read("run01/training/class08.png")
    assert np.array_equal(ds.items[ds.episodes[0].support[7]], decode_image(png, "class08"))


def test_omniglot_runs_answer_key_format_is_checked():
    from fewshot.datasets.images import read_answer_key

    assert read_answer_key("run03/test/item01.png run03/training/class12.png\n", "run03", "k") == {1: 12}
    with pytest.raises(ValueError, match=r"k:2: expected 'run03/test/itemNN.png run03/training/classNN.png'"):
        read_answer_key("run03/test/item01.png run03/training/class12.png\nitem02 class01\n", "run03", "k")


def test_experiment_uses_protocol_episodes_unless_a_file_is_given(shared_data):
    from fewshot.config import FewShotConfig
    from fewshot.experiment import build_episodes

    ds = load_dataset("omniglot-runs", shared_data)
    cfg = FewShotConfig.from_dict({"episodes": {"way": 5, "episodes": 600}})
    eps, desc = build_episodes(cfg, ds)
    assert len(eps) == 20 and eps[3] is ds.episodes[3]
    assert (desc["sampler"], desc["way"], desc["shot"], desc["query"]) == ("protocol", 20, 1, 1)


def test_font_glyphs_are_white_on_black_and_memory_mapped(shared_data):
    ds = load_dataset("font_glyphs", shared_data)
    assert isinstance(ds.items, np.memmap) and ds.items.shape == (97761, 64, 64)
    img = ds.take([0])[0]
    assert img.dtype == np.uint8 and img.mean() < 128  # mostly black background
    assert ds.labels[0] == "U+0030"  # the digit 0


def test_missing_publisher_file_names_the_source(tmp_path):
    with pytest.raises(ValueError, match=r"clinc150.*does not exist\. Download it from https://github.com/clinc"):
        load_dataset("clinc150", tmp_path)
    with pytest.raises(ValueError, match=r"all_runs.zip but it does not exist.*brendenlake/omniglot"):
        load_dataset("omniglot-runs", tmp_path)


# ---------------------------------------------------------------- user files


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_tsv_jsonl_load_texts_and_labels(tmp_path):
    csv_ds = load_path(_write(tmp_path / "a.csv", 'text,label\nhello there,greet\n"bye, now",leave\n'))
    assert (csv_ds.items, csv_ds.labels, csv_ds.modality) == (["hello there", "bye, now"], ["greet", "leave"], "text")
    tsv_ds = load_path(_write(tmp_path / "a.tsv", "q\tintent\nhello, there\tgreet\n"), "q", "intent")
    assert (tsv_ds.items, tsv_ds.labels) == (["hello, there"], ["greet"])
    jl = load_path(_write(tmp_path / "a.jsonl", '{"text": "hi", "label": 3}\n\n{"text": "yo", "label": 4}\n'))
    assert (jl.items, jl.labels) == (["hi", "yo"], ["3", "4"])


@pytest.mark.parametrize("content,match", [
    ("text,label\nfine,a\nbroken,a,extra\n", r"a\.csv:3: expected 2 fields \(columns \['text', 'label'\]\)"),
    ("text,label\nfine,a\n  ,b\n", r"a\.csv:3: 'text': expected a text with some non-whitespace character"),
    ("text,label\nfine,\n", r"a\.csv:2: 'label': expected a class label with some non-whitespace"),
    ("sentence,intent\nhi,a\n", r"expected columns 'text' \(text\) and 'label' \(label\) but the header has "
                                r"\['sentence', 'intent'\]; pass --text-column"),
    ("", r"a\.csv is empty: expected a header row"),
    ("text,label\n", r"expected examples after the header but found none"),
])
def test_bad_csv_names_file_and_line(tmp_path, content, match):
    with pytest.raises(ValueError, match=match):
        load_path(_write(tmp_path / "a.csv", content))


@pytest.mark.parametrize("content,match", [
    ('{"text": "hi", "label": 1}\n{"text": "yo", \n', r"a\.jsonl:2: malformed JSON"),
    ('{"text": "hi", "label": 1}\n[1, 2]\n', r"a\.jsonl:2: expected a JSON object, got list"),
    ('{"text": "hi", "label": 1}\n{"txt": "yo", "label": 1}\n', r"but line 2 has \['label', 'txt'\]"),
    ('{"text": "", "label": 1}\n', r"a\.jsonl:1: 'text': expected a text with some non-whitespace character"),
])
def test_bad_jsonl_names_file_and_line(tmp_path, content, match):
    with pytest.raises(ValueError, match=match):
        load_path(_write(tmp_path / "a.jsonl", content))


def test_unsupported_file_and_missing_path(tmp_path):
    with pytest.raises(ValueError, match=r"expected a \.csv, \.tsv, \.jsonl or \.npz file.*got a \.xlsx file"):
        load_path(_write(tmp_path / "a.xlsx", "x"))
    with pytest.raises(ValueError, match="expected a file or folder at"):
        load_path(tmp_path / "nope.csv")


def _png(path, value, mode="L"):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (8, 6), value).save(path)


def test_image_folder_one_subfolder_per_class(tmp_path):
    _png(tmp_path / "imgs" / "cat" / "1.png", 10)
    _png(tmp_path / "imgs" / "cat" / "2.jpg", 20)
    _png(tmp_path / "imgs" / "dog" / "1.png", (1, 2, 3), mode="RGB")
    (tmp_path / "imgs" / "dog" / "notes.txt").write_text("ignored")
    ds = load_path(tmp_path / "imgs")
    assert ds.modality == "image" and ds.labels == ["cat", "cat", "dog"]
    assert ds.items[0].shape == (6, 8) and ds.items[0].dtype == np.uint8 and int(ds.items[0][0, 0]) == 10
    assert ds.items[2].shape == (6, 8, 3) and ds.items[2][0, 0].tolist() == [1, 2, 3]


def test_image_folder_errors(tmp_path):
    _png(tmp_path / "a" / "cat" / "1.png", 10)
    (tmp_path / "a" / "cat" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"cat/bad\.png: expected a decodable image"):
        load_path(tmp_path / "a")
    _png(tmp_path / "b" / "loose.png", 10)
    with pytest.raises(ValueError, match="images lie directly in the folder"):
        load_path(tmp_path / "b")
    (tmp_path / "c" / "empty").mkdir(parents=True)
    with pytest.raises(ValueError, match="expected one subfolder per class holding images"):
        load_path(tmp_path / "c")


def test_npz_images_and_texts(tmp_path):
    x = np.arange(4 * 5 * 5, dtype=np.uint8).reshape(4, 5, 5)
    np.savez(tmp_path / "img.npz", images=x, labels=np.array([0, 0, 1, 1]))
    ds = load_path(tmp_path / "img.npz")
    assert ds.modality == "image" and ds.labels == ["0", "0", "1", "1"] and np.array_equal(ds.items[3], x[3])
    np.savez(tmp_path / "txt.npz", x=np.array(["a b", "c d"]), y=np.array(["p", "q"]))
    ds = load_path(tmp_path / "txt.npz")
    assert (ds.modality, ds.items, ds.labels) == ("text", ["a b", "c d"], ["p", "q"])


@pytest.mark.parametrize("arrays,match", [
    ({"pixels": np.zeros((2, 3, 3), np.uint8), "y": np.array([0, 1])}, r"items under one of the keys \['x', 'images'\] but the file has \['pixels', 'y'\]"),
    ({"x": np.zeros((2, 3, 3), np.uint8)}, r"labels under one of the keys \['y', 'labels'\]"),
    ({"x": np.zeros((2, 3, 3), np.float32), "y": np.array([0, 1])}, r"expected images as a uint8 array.*got float32"),
    ({"x": np.zeros((2, 3, 3), np.uint8), "y": np.array([0, 1, 2])}, r"expected labels of shape \(2,\)"),
])
def test_bad_npz(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=match):
        load_path(tmp_path / "bad.npz")


def test_user_file_class_split_is_deterministic_and_disjoint():
    names = [f"c{i:02d}" for i in range(20)]
    split = class_split(reversed(names))
    assert [len(split[s]) for s in ("train", "val", "test")] == [12, 4, 4]
    assert split == class_split(names) and sorted(sum(split.values(), [])) == names
    assert class_split(names[:MIN_SPLIT_CLASSES - 1]) == {}


def test_small_user_file_needs_classes_all(tmp_path):
    ds = load_path(_write(tmp_path / "a.csv", "text,label\nx,a\ny,b\n"))
    with pytest.raises(ValueError, match="has no 'test' split.*use --classes all"):
        ds.split_classes("test")
    assert ds.split_classes("all") == ["a", "b"]


# ---------------------------------------------------------------- CLI


def _cli_csv(tmp_path):
    rows = ["text,label"] + [f"example {i} of {c},{c}" for c in ("red", "green", "blue", "gold") for i in range(4)]
    return _write(tmp_path / "mine.csv", "\n".join(rows) + "\n")


def test_cli_runs_on_a_user_csv(tmp_path, tiny_text_model_dir):
    from fewshot.cli import main

    path = _cli_csv(tmp_path)
    result = CliRunner().invoke(main, ["run", "--dataset", str(path), "--classes", "all", "--way", "3", "--shot",
                                       "1", "--query", "2", "--episodes", "5", "--json", "--quiet",
                                       "--encoder", str(tiny_text_model_dir)])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert (d["way"], d["shot"], d["query"], d["episodes"], d["dataset"]) == (3, 1, 2, 5, "mine.csv")
    assert 0.0 <= d["accuracy_mean"] <= 1.0


def test_cli_malformed_csv_exits_2_naming_the_line(tmp_path):
    from fewshot.cli import main

    path = _write(tmp_path / "bad.csv", "text,label\nok,a\nnot ok\n")
    result = CliRunner().invoke(main, ["run", "--dataset", str(path), "--classes", "all", "--quiet"])
    assert result.exit_code == 2
    assert "bad.csv:3: expected 2 fields" in result.output


def test_extra_classes_add_only_the_train_or_val_classes_of_other_datasets(shared_data):
    from fewshot.config import FewShotConfig
    from fewshot.data import ConcatItems, FewShotDataset, with_extra_classes
    from fewshot.experiment import build_dataset

    cfg = FewShotConfig.from_dict({"data": {"dataset": "fewrel", "data_root": str(shared_data),
                                            "extra_train": ["fewrel-pubmed", "fewrel-semeval"]}})
    base, pubmed, semeval = (load_dataset(n, shared_data) for n in ("fewrel", "fewrel-pubmed", "fewrel-semeval"))
    assert build_dataset(cfg).fingerprint() == base.fingerprint()  # scoring never sees the extras
    ds = build_dataset(cfg, training=True)
    assert ds.name == "fewrel+fewrel-pubmed+fewrel-semeval"
    assert ds.split_classes("val") == base.split_classes("val") and ds.split_classes("test") == base.split_classes("test")
    assert ds.split_classes("train") == base.split_classes("train") + pubmed.split_classes("train") + \
        semeval.split_classes("train")
    c = pubmed.split_classes("train")[0]
    assert ds.take(ds.ids_by_class([c])[c]) == pubmed.take(pubmed.ids_by_class([c])[c])
    assert ds.items[-1] == semeval.items[-1] and ds.items[0] == base.items[0]
    outside = [i for i, lab in enumerate(semeval.labels) if lab not in semeval.split_classes("train")]
    assert ds.labels[len(base.items) + len(pubmed.items) + outside[0]] == f"fewrel-semeval:{semeval.labels[outside[0]]}"

    # FewRel's files share relation ids: nyt's train relations that are fewrel's test relations are left out,
    # those that are fewrel's train relations merge into them, and held-out classes keep exactly their examples.
    nyt = load_dataset("fewrel-nyt", shared_data)
    ds = with_extra_classes(base, train=[nyt])
    held_out = set(base.split_classes("val")) | set(base.split_classes("test"))
    clash = [c for c in nyt.split_classes("train") if c in held_out]
    merged = [c for c in nyt.split_classes("train") if c in base.split_classes("train")]
    assert clash and merged  # P463 / P921 (test), P25 / P413 (train)
    assert not set(ds.split_classes("train")) & held_out
    assert len(ds.split_classes("train")) == 6 + len(nyt.split_classes("train")) - len(clash) - len(merged)
    for c in held_out:
        assert np.array_equal(ds.ids_by_class([c])[c], base.ids_by_class([c])[c])
    m = merged[0]
    assert len(ds.ids_by_class([m])[m]) == len(base.ids_by_class([m])[m]) + len(nyt.ids_by_class([m])[m])
    assert f"fewrel-nyt:{clash[0]}" in ds.source

    items = ConcatItems([["a", "b"], ["c"], [], ["d", "e"]])
    assert len(items) == 5 and list(items) == ["a", "b", "c", "d", "e"] and items[-2] == "d" and items[1:4] == ["b", "c", "d"]
    with pytest.raises(IndexError):
        items[5]
    img = FewShotDataset("img", "image", [np.zeros((2, 2), np.uint8)], ["x"], {"train": ["x"]})
    with pytest.raises(ValueError, match="extra dataset 'img' is image but 'fewrel' is text"):
        with_extra_classes(base, val=[img])
    with pytest.raises(ValueError, match="data.extra_train must name other datasets, each once"):
        FewShotConfig.from_dict({"data": {"dataset": "fewrel", "extra_train": ["fewrel"]}})
    with pytest.raises(ValueError, match="data.extra_val must name other datasets, each once"):
        FewShotConfig.from_dict({"data": {"dataset": "fewrel", "extra_val": ["fewrel-nyt", "fewrel-nyt"]}})
    assert with_extra_classes(base).fingerprint() == base.fingerprint()


def test_extra_val_widens_validation_and_never_crosses_splits(shared_data):
    from fewshot.config import FewShotConfig
    from fewshot.data import FewShotDataset, with_extra_classes
    from fewshot.experiment import build_dataset

    cfg = FewShotConfig.from_dict({"data": {"dataset": "fewrel", "data_root": str(shared_data),
                                            "extra_train": ["fewrel-nyt"],
                                            "extra_val": ["fewrel-nyt", "fewrel-pubmed", "fewrel-semeval"]}})
    base, nyt, pubmed, semeval = (load_dataset(n, shared_data)
                                  for n in ("fewrel", "fewrel-nyt", "fewrel-pubmed", "fewrel-semeval"))
    ds = build_dataset(cfg, training=True)
    assert ds.name == "fewrel+fewrel-nyt+fewrel-pubmed+fewrel-semeval"  # nyt's examples once, not twice
    assert len(ds.items) == sum(len(d.items) for d in (base, nyt, pubmed, semeval))
    assert ds.split_classes("val") == base.split_classes("val") + nyt.split_classes("val") + \
        pubmed.split_classes("val") + semeval.split_classes("val")  # 7 relations: 5-way validation
    assert ds.split_classes("test") == base.split_classes("test")
    assert not set(ds.split_classes("train")) & set(ds.split_classes("val"))
    c = pubmed.split_classes("val")[0]
    assert ds.take(ds.ids_by_class([c])[c]) == pubmed.take(pubmed.ids_by_class([c])[c])
    t = pubmed.split_classes("train")[0]  # pubmed is only in extra_val: its train classes join nothing
    assert f"fewrel-pubmed:{t}" in ds.labels and t not in ds.labels
    assert build_dataset(cfg).fingerprint() == base.fingerprint()  # scoring never sees the extras

    # a val class of an extra that is a train or test class of the dataset is left out; one that is a
    # val class merges; val wins over another extra's train class of the same name
    own = FewShotDataset("own", "text", ["a", "b", "c", "d"], ["tr", "va", "te", "x"],
                         {"train": ["tr"], "val": ["va"], "test": ["te"]})
    other = FewShotDataset("other", "text", ["e", "f", "g", "h"], ["tr", "va", "te", "x"],
                           {"train": ["x"], "val": ["tr", "va", "te"]})
    third = FewShotDataset("third", "text", ["i", "j"], ["x", "y"], {"train": ["y"], "val": ["x"]})
    ds = with_extra_classes(own, train=[other], val=[other, third])
    assert ds.split_classes("val") == ["va", "x"] and ds.split_classes("train") == ["tr"]
    assert ds.labels == ["tr", "va", "te", "x", "other:tr", "va", "other:te", "other:x", "x", "third:y"]
    assert "other:tr (val)" in ds.source and "other:te (val)" in ds.source and "other:x (train)" in ds.source


def test_read_texts_reads_every_text_file_kind_with_the_dataset_readers_checks(tmp_path):
    from fewshot.datasets.files import read_texts

    (tmp_path / "a.txt").write_text("first text\n\n  second text  \n")
    assert read_texts(tmp_path / "a.txt") == ["first text", "second text"]
    (tmp_path / "a.csv").write_text("id,body\n1,hello there\n2,\"a, b\"\n")
    assert read_texts(tmp_path / "a.csv", "body") == ["hello there", "a, b"]
    with pytest.raises(ValueError, match=r"expected a column 'text' \(text\) but the header has \['id', 'body'\]; "
                                         r"pass --text-column to name yours"):
        read_texts(tmp_path / "a.csv")
    (tmp_path / "a.jsonl").write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(ValueError, match=r"a.jsonl:2: malformed JSON"):
        read_texts(tmp_path / "a.jsonl")
    (tmp_path / "e.txt").write_text("\n \n")
    with pytest.raises(ValueError, match="found no texts"):
        read_texts(tmp_path / "e.txt")
    with pytest.raises(ValueError, match=r"expected a \.txt, \.csv, \.tsv or \.jsonl file of texts"):
        read_texts(tmp_path / "a.md")

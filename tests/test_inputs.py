"""Texts and labels: one check (fewshot.inputs) refuses the same bad input at every entry point,
with nothing on disk changed; the file readers name the file and the real cause."""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fewshot.cli import main
from fewshot.datasets.files import load_path
from fewshot.inputs import check_labels, check_texts


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("texts,match", [
    (["fine", ""], r"where: item 1: expected a text with some non-whitespace character, got ''"),
    (["fine", " \t\n"], r"item 1: expected a text with some non-whitespace"),
    (["a\x00b"], r"item 0: the text contains a NUL byte \(at character 1\)"),
])
def test_check_texts_refuses_blank_and_nul(texts, match):
    with pytest.raises(ValueError, match=match):
        check_texts(texts, "where")
    assert check_texts(("a", " b "), "where") == ["a", " b "]


@pytest.mark.parametrize("labels,match", [
    (["cat", "  "], r"label 1: expected a class label with some non-whitespace character"),
    (["cat", "dog\n"], r"label 1: the label 'dog\\n' contains the control character '\\n'"),
    (["cat", "cat "], r"the labels 'cat' and 'cat ' \(label 1\) differ only by surrounding whitespace"),
    (["cat", None], r"label 1: expected a class label, got None"),
])
def test_check_labels_refuses_blank_control_and_near_duplicates(labels, match):
    with pytest.raises(ValueError, match=match):
        check_labels(labels, "where")
    assert check_labels(["cat", "cat", 3, " dog"], "where") == ["cat", "cat", 3, " dog"]


# --------------------------------------------------------------------------- the Python API
def test_fit_and_add_classes_refuse_blank_texts_and_labels_leaving_the_classifier_as_it_was(tiny_text_encoder):
    from fewshot import FewShotClassifier

    clf = FewShotClassifier(tiny_text_encoder).fit(["hello there", "book a flight"], ["greet", "travel"])
    before = clf.prototypes_.copy()
    for x, y, match in [(["   "], ["greet"], "add_classes: item 0: expected a text with some non-whitespace"),
                        (["", "hi"], ["greet", "greet"], "item 0: expected a text"),
                        (["hi"], ["greet\n"], "control character"),
                        (["hi", "yo"], ["music", "music "], "differ only by surrounding whitespace")]:
        with pytest.raises(ValueError, match=match):
            clf.add_classes(x, y)
    np.testing.assert_array_equal(clf.prototypes_, before)
    assert clf.classes_ == ["greet", "travel"]
    with pytest.raises(ValueError, match="fit: item 1: expected a text"):
        FewShotClassifier(tiny_text_encoder).fit(["hello", "\n"], ["a", "b"])


# --------------------------------------------------------------------------- fewshot index add
def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_index_add_refuses_blank_texts_with_exit_2_and_leaves_the_folder_unchanged(tmp_path, tiny_text_model_dir):
    ix = tmp_path / "ix"
    assert invoke("index", "create", ix, "--encoder", tiny_text_model_dir).exit_code == 0
    assert invoke("index", "add", ix, "--label", "greet", "hello there").exit_code == 0
    before = _files(ix)
    cases = [(["--label", "greet", "  "], "TEXT: item 0: expected a text with some non-whitespace"),
             (["--label", " ", "hi"], "--label: label 0: expected a class label with some non-whitespace")]
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("text,label\nfine,a\n   ,b\n")
    cases.append((["--file", bad_csv], r"bad.csv:3: 'text': expected a text with some non-whitespace"))
    near = tmp_path / "near.jsonl"
    near.write_text(json.dumps({"text": "a", "label": "cat"}) + "\n" + json.dumps({"text": "b", "label": "cat "}) + "\n")
    cases.append((["--file", near], "differ only by surrounding whitespace"))
    for args, message in cases:
        r = invoke("index", "add", ix, *args)
        assert r.exit_code == 2, r.output
        assert message in r.output and "Traceback" not in r.output
    assert _files(ix) == before


# --------------------------------------------------------------------------- file readers
def test_a_text_file_with_nul_bytes_is_refused(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(b"text,label\nfine,a\nbin\x00ary,b\n")
    with pytest.raises(ValueError, match=r"a\.csv:3: 'text': the text contains a NUL byte"):
        load_path(path)
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"text": "x\u0000y", "label": "a"}) + "\n")
    with pytest.raises(ValueError, match=r"a\.jsonl:1: 'text': the text contains a NUL byte"):
        load_path(path)


@pytest.mark.parametrize("name", ["a.csv", "a.jsonl"])
def test_a_utf16_file_is_refused_naming_the_file_and_the_encoding(tmp_path, name):
    path = tmp_path / name
    content = "text,label\nhello,a\n" if name.endswith(".csv") else json.dumps({"text": "hi", "label": "a"}) + "\n"
    path.write_text(content, encoding="utf-16")
    with pytest.raises(ValueError, match=rf"{name.replace('.', '[.]')}: expected UTF-8 text.*UTF-16 byte-order mark"):
        load_path(path)


def test_a_csv_field_over_the_limit_names_the_limit_not_the_quoting(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("text,label\n" + "x" * (csv.field_size_limit() + 1) + ",a\n")
    with pytest.raises(ValueError, match=rf"a\.csv:2: a field is longer than the CSV reader's limit of "
                                         rf"{csv.field_size_limit()} characters"):
        load_path(path)



def test_a_text_over_the_length_limit_is_refused_naming_the_limit_and_the_fix():
    from fewshot.inputs import MAX_TEXT_CHARS

    assert check_texts(["x" * MAX_TEXT_CHARS], "where") == ["x" * MAX_TEXT_CHARS]
    with pytest.raises(ValueError, match=rf"where: item 1: expected a text of at most {MAX_TEXT_CHARS:,} characters, "
                                         rf"got {MAX_TEXT_CHARS + 1:,} .*split long documents into passages"):
        check_texts(["fine", "x" * (MAX_TEXT_CHARS + 1)], "where")


@pytest.mark.parametrize("name", ["a.csv", "a.jsonl", "a.txt"])
def test_a_line_over_the_limit_is_refused_before_it_is_read_whole(tmp_path, monkeypatch, name):
    import fewshot.datasets.files as files
    from fewshot.datasets.files import read_texts

    monkeypatch.setattr(files, "MAX_LINE_CHARS", 50)
    path = tmp_path / name
    long = "y" * 500
    path.write_text({"a.csv": f"text,label\nfine,a\n{long},b\n", "a.txt": f"fine\n{long}\n",
                     "a.jsonl": json.dumps({"text": "fine", "label": "a"}) + "\n" + json.dumps({"text": long, "label": "b"})
                     + "\n"}[name])
    read = []
    real = files.bounded_lines

    def spy(path, f):  # what the reader was handed: never more than the bound per line
        for line in real(path, f):
            read.append(len(line))
            yield line

    monkeypatch.setattr(files, "bounded_lines", spy)
    line = 3 if name == "a.csv" else 2
    with pytest.raises(ValueError, match=rf"{name.replace('.', '[.]')}:{line}: the line is longer than 50 characters.*"
                                         r"at most 100,000; split long documents"):
        read_texts(path) if name == "a.txt" else load_path(path)
    assert max(read) <= 50


def test_a_tagged_file_is_read_with_the_same_bounds(tmp_path, monkeypatch):
    import fewshot.datasets.files as files
    from fewshot.datasets.ner import is_tagged_path, read_conll

    path = tmp_path / "a.conll"
    path.write_text("Paris\tB-LOC\n" + "x" * 100 + "\tO\n")
    monkeypatch.setattr(files, "MAX_LINE_CHARS", 50)
    with pytest.raises(ValueError, match=r"a\.conll:2: the line is longer than 50 characters"):
        read_conll(path, "bio")
    monkeypatch.setattr(files, "MAX_FILE_BYTES", 10)
    with pytest.raises(ValueError, match=rf"a\.conll holds {path.stat().st_size} bytes, more than the 10 fewshot reads "
                                         "from one file; split it into smaller files"):
        read_conll(path, "bio")
    (tmp_path / "b.jsonl").write_text(json.dumps({"tokens": ["a"], "tags": ["O"]}) + "\n")
    with pytest.raises(ValueError, match=r"b\.jsonl holds \d+ bytes, more than the 10"):
        is_tagged_path(tmp_path / "b.jsonl")


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path, monkeypatch, tiny_text_model_dir):
    import builtins

    import fewshot.datasets.files as files

    ix = tmp_path / "ix"
    assert invoke("index", "create", str(ix), "--encoder", str(tiny_text_model_dir)).exit_code == 0

    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"text": "hello", "label": "a"}) * 100 + "\n")
    monkeypatch.setattr(files, "MAX_FILE_BYTES", 2 << 10)
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda p, *a, **kw: (_ for _ in ()).throw(AssertionError(f"opened {p}"))
                        if str(p) == str(path) else real_open(p, *a, **kw))
    for args in (["add", "{ix}", "--file", path], ["predict", "{ix}", "--file", path]):
        r = invoke("index", *[str(a).format(ix=ix) for a in args])
        assert r.exit_code == 2 and f"a.jsonl holds {path.stat().st_size:,} bytes, more than the 2,048 fewshot reads " \
            "from one file; split it" in r.output, r.output


def test_index_add_and_predict_refuse_a_50_mb_text_without_embedding_it(tmp_path, tiny_text_model_dir, monkeypatch):
    from fewshot.encoders.base import Encoder

    ix = tmp_path / "ix"
    assert invoke("index", "create", ix, "--encoder", tiny_text_model_dir).exit_code == 0
    assert invoke("index", "add", ix, "--label", "greet", "hello there").exit_code == 0
    before = _files(ix)
    big = "word " * 10_000_000
    (tmp_path / "big.jsonl").write_text(json.dumps({"text": big, "label": "x"}) + "\n")
    (tmp_path / "big.txt").write_text(big + "\n")
    monkeypatch.setattr(Encoder, "encode", lambda *a, **kw: (_ for _ in ()).throw(AssertionError("embedded")))
    for args, message in [(["add", ix, "--file", tmp_path / "big.jsonl"], "big.jsonl:1: the line is longer than"),
                          (["predict", ix, "--file", tmp_path / "big.txt"], "big.txt:1: the line is longer than"),
                          (["predict", ix, "x" * 100_001], "item 0: expected a text of at most 100,000 characters")]:
        r = invoke("index", *args)
        assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output
    assert _files(ix) == before

def test_csv_labels_differing_only_by_spaces_are_refused_not_merged(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text('text,label\nhi,cat\nyo,"cat "\n')
    with pytest.raises(ValueError, match=r"the labels 'cat' and 'cat ' \(label 1\) differ only by surrounding"):
        load_path(path)
    path.write_text('text,label\nhi, cat\nyo, cat\n')  # the same label, spaced alike: one class
    assert load_path(path).labels == ["cat", "cat"]


def test_an_unreadable_file_or_class_folder_is_an_error(tmp_path, monkeypatch):
    """Root reads anything, so unreadability is simulated where the reader meets it."""
    path = tmp_path / "a.csv"
    path.write_text("text,label\nhi,a\n")
    real_open = open

    def no_access(file, *a, **kw):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *a, **kw)

    monkeypatch.setattr("builtins.open", no_access)
    with pytest.raises(ValueError, match=r"cannot read .*a\.csv \(Permission denied\)"):
        load_path(path)
    monkeypatch.undo()

    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        Image.new("L", (8, 6), 10).save(tmp_path / "imgs" / cls / "1.png")
    real_scandir = os.scandir

    def locked(p="."):
        if os.fspath(p).endswith("dog"):
            raise PermissionError(13, "Permission denied", os.fspath(p))
        return real_scandir(p)

    monkeypatch.setattr(os, "scandir", locked)
    with pytest.raises(ValueError, match=r"cannot list .*dog \(Permission denied\): its images would be silently "
                                         r"left out of class 'dog'"):
        load_path(tmp_path / "imgs")



@pytest.mark.parametrize("side", [12, 40])  # 144 pixels: Pillow only warns (limit to twice it); 1,600: it raises
def test_an_image_over_pillows_pixel_limit_is_refused_naming_the_file_and_the_limit(tmp_path, monkeypatch, side):
    from PIL import Image

    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    Image.fromarray(np.zeros((side, side), np.uint8)).save(tmp_path / "imgs" / "cat" / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ValueError, match=rf"big\.png: the image is too large to decode safely \(Pillow: Image size "
                                         rf"\({side * side} pixels\) exceeds limit.*MAX_IMAGE_PIXELS = 100 pixels.*"
                                         r"resize it, or remove it"):
        load_path(tmp_path / "imgs")
    r = invoke("run", "--dataset", tmp_path / "imgs", "--classes", "all")
    assert r.exit_code == 2 and "too large to decode safely" in r.output, r.output

# --------------------------------------------------------------------------- property: readers never crash
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(_text, _text), min_size=1, max_size=5), kind=st.sampled_from(["csv", "tsv", "jsonl"]))
def test_readers_either_load_checked_rows_or_raise_a_value_error(tmp_path, rows, kind):
    """Whatever the rows, a reader returns texts and labels that pass the checks, or raises ValueError
    (never another exception, never a blank text or label)."""
    path = tmp_path / f"p.{kind}"
    if kind == "jsonl":
        path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows), encoding="utf-8")
    else:
        with open(path, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, delimiter="," if kind == "csv" else "\t")
            w.writerow(["text", "label"])
            w.writerows(rows)
    try:
        ds = load_path(path, )
    except ValueError:
        return
    assert len(ds.items) == len(ds.labels) >= 1
    check_texts(ds.items, "loaded")
    check_labels(ds.labels, "loaded")
    assert all(lab == lab.strip() for lab in ds.labels)


def test_entity_spans_read_back_the_markers():
    from fewshot.inputs import entity_spans

    text = "the [E1] Cape Bridge [/E1] spans the [E2]  Mississippi [/E2]"
    (hs, he), (ts, te) = entity_spans(text, "t")
    assert text[hs:he] == "Cape Bridge" and text[ts:te] == "Mississippi"
    for bad, why in (("[E1] a [/E1] [E1] b [/E1] [E2] c [/E2]", r"got 2 x '\[E1\]'"),
                     ("[/E1] a [E1] [E2] c [/E2]", r"got 1 x '\[E1\]' and 1 x '\[/E1\]' \(empty or in the wrong order\)"),
                     ("[E1]  [/E1] [E2] c [/E2]", r"got 1 x '\[E1\]' and 1 x '\[/E1\]' \(empty or in the wrong order\)")):
        with pytest.raises(ValueError, match=r"^where: expected the head entity marked once.*" + why):
            entity_spans(bad, "where")


@pytest.mark.parametrize("label", ["music ", " music", "music\u00a0", "\u3000music", "music\u2003"])
def test_a_label_that_reads_like_an_existing_class_is_refused_naming_it(label, tiny_text_encoder):
    from fewshot import FewShotClassifier

    clf = FewShotClassifier(tiny_text_encoder).fit(["play a song", "book a flight"], ["music", "travel"])
    with pytest.raises(ValueError, match=r"and the existing class 'music' differ only by surrounding whitespace"):
        clf.add_classes(["some tune"], [label])
    assert clf.classes_ == ["music", "travel"]


@pytest.mark.parametrize("label, message", [
    ("a\u202eb", r"invisible format character '\\u202e' \(U\+202E\)"),
    ("mu\u200bsic", r"invisible format character '\\u200b' \(U\+200B\)"),
    ("x" * 201, "at most 200 characters, got 201"),
])
def test_format_characters_and_overlong_labels_are_refused(label, message):
    from fewshot.inputs import check_label

    with pytest.raises(ValueError, match=message):
        check_label(label, "here")
    check_label("x" * 200, "here")


from hypothesis import given, strategies as st  # noqa: E402


@given(core=st.text(alphabet=st.characters(categories=("L", "N")), min_size=1, max_size=8),
       pad=st.lists(st.sampled_from([" ", "\u00a0", "\u2003", "\u3000", "\u202f"]), max_size=3),
       side=st.sampled_from(["left", "right", "both"]))
def test_label_key_ignores_unicode_whitespace_around_a_name(core, pad, side):
    from fewshot.inputs import check_labels, label_key

    ws = "".join(pad)
    padded = {"left": ws + core, "right": core + ws, "both": ws + core + ws}[side]
    assert label_key(padded) == label_key(core)
    if padded != core:
        with pytest.raises(ValueError, match="differ only by surrounding whitespace"):
            check_labels([padded], "here", existing=[core])


def test_index_add_and_correct_refuse_a_label_that_reads_like_an_existing_class(tmp_path, tiny_text_encoder):
    from click.testing import CliRunner

    from fewshot import FewShotClassifier
    from fewshot.support import curation
    from fewshot.cli import main

    path = tmp_path / "ix"
    FewShotClassifier(tiny_text_encoder).fit(["play a song", "book a flight"], ["music", "travel"]).save(path)
    (i,) = curation.prediction_log(path, create=True).append(
        [{"query": "a tune", "labels": ["travel"], "scores": [0.5], "generation": 1}])
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    r = CliRunner().invoke(main, ["index", "add", str(path), "--label", "music\u00a0", "some tune"])
    assert r.exit_code == 2 and "existing class 'music'" in r.output, r.output
    r = CliRunner().invoke(main, ["index", "correct", str(path), "--id", str(i), "--label", " music"])
    assert r.exit_code == 2 and "existing class 'music'" in r.output, r.output
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before

"""``fewshot index`` on an NER tagger (``create --task ner``): add --file, tag, list, remove, and refusals that
exit 2 and leave the folder unchanged."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from fewshot.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# two annotated sentences, BIO; "Grace" and "London" occur in both
CONLL = ("Ada\tB-person\nmet\tO\nGrace\tB-person\nin\tO\nLondon\tB-city\n.\tO\n\n"
         "Grace\tB-person\nleft\tO\nLondon\tB-city\ntoday\tO\n")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def listed(path) -> dict:
    r = invoke("index", "list", path, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["task"] == "ner"
    return {**{t["type"]: t["words"] for t in d["types"]}, "O": d["outside_words"]}


def tagged(path, *texts) -> list[list[tuple]]:
    r = invoke("index", "tag", path, "--json", *texts)
    assert r.exit_code == 0, r.output
    return [[(e["type"], e["start"], e["end"], e["text"]) for e in json.loads(line)["entities"]]
            for line in r.output.splitlines()]


def snapshot(path) -> dict:
    """Every file of the folder but lock sidecars (empty files that may appear); the manifest among them."""
    return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file() and not p.name.endswith(".lock")}


@pytest.fixture
def tagger_dir(tmp_path, tiny_text_model_dir):
    """A tagger over the tiny random BERT, taught person and city from the two sentences of CONLL."""
    path = tmp_path / "ner"
    r = invoke("index", "create", path, "--task", "ner", "--encoder", tiny_text_model_dir)
    assert r.exit_code == 0, r.output
    assert "created an empty NER tagger" in r.output and "32-d, euclidean" in r.output
    assert listed(path) == {"O": 0}
    (tmp_path / "two.conll").write_text(CONLL)
    r = invoke("index", "add", path, "--file", tmp_path / "two.conll")
    assert r.exit_code == 0, r.output
    assert "added 10 words of 2 sentences: 2 new entity types, 0 extended; the tagger holds 2 entity types" in r.output
    return path


def test_two_sentence_round_trip(tagger_dir, tiny_text_model_dir):
    from fewshot.support.tagger import FewShotTagger
    from fewshot.tagged import split_words

    assert listed(tagger_dir) == {"person": 3, "city": 2, "O": 5}
    # the repeated entity words of a support sentence come back as their types, the rest as O
    assert tagged(tagger_dir, "Grace left London today") == [[("person", 0, 0, "Grace"), ("city", 2, 2, "London")]]
    # the CLI's spans are the Python API's on split_words' words, scores included
    text = "Grace left London today."
    r = invoke("index", "tag", tagger_dir, "--json", text)
    row = json.loads(r.output)
    assert row["words"] == ["Grace", "left", "London", "today", "."] == list(split_words(text))
    api = FewShotTagger.load(tagger_dir, encoder=str(tiny_text_model_dir)).predict([split_words(text)])[0]
    assert row["entities"] == api and all(0 < e["score"] <= 1 for e in api)
    r = invoke("index", "tag", tagger_dir, "Grace left London today")  # text output: a header line, one per entity
    lines = r.output.splitlines()
    assert lines[0] == "# Grace left London today"
    assert [line.split("\t")[:3] + line.split("\t")[4:] for line in lines[1:]] == \
        [["person", "0", "0", "Grace"], ["city", "2", "2", "London"]]
    (tagger_dir.parent / "q.txt").write_text("Grace left London today\n\nGrace left London today\n")
    r = invoke("index", "tag", tagger_dir, "--file", tagger_dir.parent / "q.txt", "--json")
    assert [json.loads(line)["text"] for line in r.output.splitlines()] == ["Grace left London today"] * 2
    r = invoke("index", "list", tagger_dir)
    assert r.output.splitlines()[1:] == ["3\tperson", "2\tcity"]
    assert r.output.startswith("# 2 entity types, 5 words (and 5 O words); encoder")


def test_extending_a_type_adding_one_and_replacing_one(tagger_dir, tmp_path):
    rows = [{"tokens": ["Paris", "is", "far"], "tags": ["city", "O", "O"]},
            {"tokens": ["Acme", "hired", "Ada"], "tags": ["org", "O", "person"]}]
    (tmp_path / "more.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = invoke("index", "add", tagger_dir, "--file", tmp_path / "more.jsonl")
    assert r.exit_code == 0, r.output
    assert "added 6 words of 2 sentences: 1 new entity types, 2 extended; the tagger holds 3 entity types" in r.output
    assert listed(tagger_dir) == {"person": 4, "city": 3, "O": 8, "org": 1}
    assert ("org", 0, 0, "Acme") in tagged(tagger_dir, "Acme hired Ada")[0]
    (tmp_path / "city.conll").write_text("Rome\tcity\nagain\tO\n")
    r = invoke("index", "add", tagger_dir, "--file", tmp_path / "city.conll", "--replace")
    assert r.exit_code == 0 and "0 new entity types, 1 replaced" in r.output, r.output
    assert listed(tagger_dir) == {"person": 4, "city": 1, "O": 9, "org": 1}  # city reset to Rome; O still grows


def test_removing_a_type(tagger_dir):
    r = invoke("index", "remove", tagger_dir, "--label", "city")
    assert r.exit_code == 0 and "removed 1 entity types; the tagger holds 1 entity types" in r.output, r.output
    assert listed(tagger_dir) == {"person": 3, "O": 5}
    assert all(t == "person" for t, *_ in tagged(tagger_dir, "Grace left London today")[0])
    before = snapshot(tagger_dir)
    for label in ("O", "nope"):
        r = invoke("index", "remove", tagger_dir, "--label", label)
        assert r.exit_code == 2 and f"['{label}'] are not entity types of this tagger" in r.output, r.output
    assert snapshot(tagger_dir) == before


def test_create_from_a_training_checkpoint_records_it(tmp_path, tiny_text_encoder):
    from fewshot.checkpoint import save_checkpoint
    from fewshot.learners import create_learner

    save_checkpoint(tmp_path / "ckpt", create_learner("protonet", tiny_text_encoder))
    path = tmp_path / "ner"
    r = invoke("index", "create", path, "--task", "ner", "--checkpoint", tmp_path / "ckpt", "--metric", "cosine")
    assert r.exit_code == 0 and "32-d, cosine" in r.output, r.output
    meta = json.loads((path / "manifest.json").read_text())["body"]
    assert meta["kind"] == "fewshot-tagger" and meta["encoder"]["checkpoint"] == str(tmp_path / "ckpt")
    (tmp_path / "two.conll").write_text(CONLL)
    assert invoke("index", "add", path, "--file", tmp_path / "two.conll").exit_code == 0  # re-opens the checkpoint
    assert listed(path) == {"person": 3, "city": 2, "O": 5}


def test_concurrent_adds_lose_no_type(tagger_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    for i in range(2):
        (tmp_path / f"t{i}.conll").write_text(f"Zed{i}\tB-kind{i}\nhere\tO\n")
    procs = [subprocess.Popen([sys.executable, "-m", "fewshot.cli", "index", "add", str(tagger_dir), "--file",
                               str(tmp_path / f"t{i}.conll")], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-500:] for o in outs]
    assert listed(tagger_dir) == {"person": 3, "city": 2, "O": 7, "kind0": 1, "kind1": 1}


@pytest.fixture
def clf_dir(tmp_path, tiny_text_model_dir):
    path = tmp_path / "clf"
    assert invoke("index", "create", path, "--encoder", tiny_text_model_dir).exit_code == 0
    assert invoke("index", "add", path, "--label", "greet", "hello there").exit_code == 0
    return path


@pytest.mark.parametrize("args, message", [
    (["add", "{ner}", "Grace left London"], r"learns from annotated sentences, not TEXT arguments.*use --file F"),
    (["add", "{ner}", "--label", "city", "--file", "{tmp}/two.conll"], "--label does not apply to an NER tagger"),
    (["add", "{ner}", "--file", "{tmp}/two.conll", "--text-column", "t"], "--text-column does not apply"),
    (["add", "{ner}"], "give the annotated sentences for the tagger"),
    (["add", "{ner}", "--file", "{tmp}/bad.conll"], r"{tmp}/bad.conll:3: expected `token<TAB>tag`, got 'Grace'"),
    (["add", "{ner}", "--file", "{tmp}/mixed.conll"], r"{tmp}/mixed.conll:1: tag 'city' is not BIO"),
    (["add", "{ner}", "--file", "{tmp}/long.conll"], r"{tmp}/long.conll:4: sentence of 300 words .* window of 128"),
    (["add", "{ner}", "--file", "{tmp}/a.csv"], r"expected annotated sentences, a .conll/.txt/.tsv file"),
    (["add", "{ner}", "--file", "{tmp}/missing.conll"], "no such file"),
    (["predict", "{ner}", "Grace"], r"holds an NER tagger .*`fewshot index tag .*ner TEXT...`"),
    (["calibrate", "{ner}", "--file", "{tmp}/a.csv"], "`fewshot index calibrate` works on a classification index"),
    (["stats", "{ner}"], "`fewshot index stats` works on a classification index"),
    (["tag", "{ner}"], "give the sentences to tag as arguments or with --file F"),
    (["tag", "{ner}", " "], "TEXT: item 0"),
    (["tag", "{clf}", "hello there"], r"holds a classification index.*`fewshot index predict .*clf TEXT...`"),
    (["add", "{clf}", "--file", "{tmp}/two.conll"], r"expected a .csv, .tsv or .jsonl file"),
    (["create", "{ner}", "--task", "ner"], "already holds an index"),
])
def test_bad_input_exits_2_and_changes_nothing(tagger_dir, clf_dir, tmp_path, args, message):
    (tmp_path / "bad.conll").write_text("Ada\tB-person\nmet\tO\nGrace\n")
    (tmp_path / "mixed.conll").write_text("London\tcity\nParis\tB-city\n")
    (tmp_path / "long.conll").write_text("a\tO\nb\tO\n\n" + "".join(f"w{i}\tO\n" for i in range(300)))
    (tmp_path / "a.csv").write_text("text,label\nhello,greet\n")
    before = snapshot(tagger_dir), snapshot(clf_dir)
    r = invoke("index", *[a.format(ner=tagger_dir, clf=clf_dir, tmp=tmp_path) for a in args])
    assert r.exit_code == 2, r.output
    assert re.search(message.format(tmp=tmp_path), " ".join(r.output.split())), r.output
    assert (snapshot(tagger_dir), snapshot(clf_dir)) == before


@pytest.mark.parametrize("args, message", [
    (["--index-kind", "flat"], "--index-kind configures a classification index"),
    (["--unknown-label", "none"], "--unknown-label configures a classification index"),
    (["--encoder", "conv4"], "FewShotTagger tags words of text, but encoder 'conv4' reads image"),
])
def test_create_refuses_what_makes_no_sense_for_a_tagger(tmp_path, args, message):
    r = invoke("index", "create", tmp_path / "new", "--task", "ner", *args)
    assert r.exit_code == 2 and message in " ".join(r.output.split()), r.output
    assert not (tmp_path / "new").exists()


def test_tag_before_any_entity_type_says_to_add_first(tmp_path, tiny_text_model_dir):
    path = tmp_path / "ner"
    invoke("index", "create", path, "--task", "ner", "--encoder", tiny_text_model_dir)
    r = invoke("index", "tag", path, "Grace left")
    assert r.exit_code == 2 and "(it has 0 types and 0 O words); teach it first: fewshot index add" in r.output
    (tmp_path / "plain.conll").write_text("Grace\tO\nleft\tO\n")  # words of O only: still no type to find
    r = invoke("index", "add", path, "--file", tmp_path / "plain.conll")
    assert r.exit_code == 0 and "0 new entity types, 0 extended; the tagger holds 0 entity types" in r.output
    r = invoke("index", "tag", path, "Grace left")
    assert r.exit_code == 2 and "(it has 0 types and 2 O words)" in r.output, r.output


@pytest.mark.slow
def test_real_minilm_tags_unseen_names_from_two_sentences(tmp_path):
    """With the real encoder, two annotated sentences teach city and person well enough for unseen names."""
    (tmp_path / "two.conll").write_text("I\tO\nflew\tO\nto\tO\nParis\tB-city\nwith\tO\nAnna\tB-person\n.\tO\n\n"
                                        "John\tB-person\nlives\tO\nin\tO\nMadrid\tB-city\nnow\tO\n.\tO\n")
    path = tmp_path / "ner"
    assert invoke("index", "create", path, "--task", "ner").exit_code == 0
    assert invoke("index", "add", path, "--file", tmp_path / "two.conll").exit_code == 0
    assert tagged(path, "We drove to Berlin with Maria.", "Peter moved to Rome.") == [
        [("city", 3, 3, "Berlin"), ("person", 5, 5, "Maria")], [("person", 0, 0, "Peter"), ("city", 3, 3, "Rome")]]

"""FewShotTagger: word prototypes of entity types in the support package's ClassBook and folder format."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fewshot.encoders.words import embed_words
from fewshot.store import StoreError
from fewshot.support import FewShotClassifier
from fewshot.support.tagger import FewShotTagger

SENTS = [["Ada", "Lovelace", "wrote", "the", "first", "program"], ["She", "lived", "in", "London"]]
TAGS = [["person", "person", "O", "O", "O", "O"], ["O", "O", "O", "city"]]


def by_hand(encoder, sentences, tags, query):
    """Nearest prototype of each query word (squared Euclidean), prototypes = means of the tagged words."""
    z = np.concatenate(embed_words(encoder, sentences))
    flat = [t for s in tags for t in s]
    labels = list(dict.fromkeys(flat))
    protos = np.stack([z[[i for i, t in enumerate(flat) if t == lab]].mean(0) for lab in labels])
    q = embed_words(encoder, [query])[0]
    d = ((q[:, None, :] - protos[None]) ** 2).sum(2)
    return [labels[j] for j in d.argmin(1)]


def test_predict_is_the_nearest_word_prototype_and_spans_are_runs(tiny_text_encoder):
    tagger = FewShotTagger(tiny_text_encoder).fit(SENTS, TAGS)
    assert tagger.types_ == ["person", "city"]
    query = ["Grace", "Hopper", "lived", "in", "Paris"]
    want = by_hand(tiny_text_encoder, SENTS, TAGS, query)
    got = tagger.predict([query])[0]
    tags = ["O"] * len(query)
    for e in got:
        tags[e["start"]:e["end"] + 1] = [e["type"]] * (e["end"] - e["start"] + 1)
        assert e["text"] == " ".join(query[e["start"]:e["end"] + 1]) and 0 < e["score"] <= 1
    assert tags == want


def test_bio_tags_and_adding_more_examples_of_a_type(tiny_text_encoder):
    bio = [["B-person", "I-person", "O", "O", "O", "O"], ["O", "O", "O", "B-city"]]
    a = FewShotTagger(tiny_text_encoder).fit(SENTS, bio)
    b = FewShotTagger(tiny_text_encoder).fit(SENTS, TAGS)
    np.testing.assert_array_equal(a.book_.prototypes(), b.book_.prototypes())
    a.add([["Rome", "again"]], [["city", "O"]])
    z = embed_words(tiny_text_encoder, [SENTS[1], ["Rome", "again"]])
    want = (z[0][3] + z[1][0]) / 2
    np.testing.assert_allclose(a.book_.prototypes([a.book_.row("city")])[0], want, rtol=1e-5, atol=1e-6)
    assert a.book_.counts[a.book_.row("city")] == 2


def test_save_load_round_trip_and_kind_checks(tiny_text_encoder, tmp_path):
    tagger = FewShotTagger(tiny_text_encoder).fit(SENTS, TAGS)
    tagger.save(tmp_path / "t")
    again = FewShotTagger.load(tmp_path / "t", encoder=tiny_text_encoder)
    q = [["Ada", "lived", "in", "London"]]
    assert again.predict(q) == tagger.predict(q) and again.types_ == tagger.types_
    with FewShotTagger.update(tmp_path / "t", encoder=tiny_text_encoder) as t:
        t.add([["Berlin"]], [["city"]])
    assert FewShotTagger.load(tmp_path / "t", encoder=tiny_text_encoder).book_.counts.tolist() == [2, 7, 2]
    FewShotClassifier(tiny_text_encoder).fit(["a b", "c d"], ["x", "y"]).save(tmp_path / "c")
    with pytest.raises(StoreError, match=r"holds a classifier \(FewShotClassifier\), not a tagger"):
        FewShotTagger.load(tmp_path / "c", encoder=tiny_text_encoder)
    with pytest.raises(StoreError, match=r"holds a tagger \(FewShotTagger\), not a classifier"):
        FewShotClassifier.load(tmp_path / "t", encoder=tiny_text_encoder)


@pytest.mark.parametrize("sentences,tags,message", [
    ([["a", "b"]], [["O"]], "sentence 0: expected one tag per word, got 2 words and 1 tags"),
    ([["a"]], [["B-x"], ["O"]], "expected one tag list per sentence"),
    ([["a", "b"]], [["B-x", "person"]], "tag 'person' is not BIO"),
    ([["a", " "]], [["O", "O"]], "words must be non-blank strings"),
])
def test_bad_annotations_are_refused(tiny_text_encoder, sentences, tags, message):
    with pytest.raises(ValueError, match=message):
        FewShotTagger(tiny_text_encoder).fit(sentences, tags)


def test_predict_before_fit_and_remove_types(tiny_text_encoder):
    from fewshot.support import NotFittedError

    with pytest.raises(NotFittedError, match="needs examples of O and of at least one entity type"):
        FewShotTagger(tiny_text_encoder).predict([["a"]])
    tagger = FewShotTagger(tiny_text_encoder).fit(SENTS, TAGS).remove_types(["city"])
    assert tagger.types_ == ["person"] and all(e["type"] == "person" for e in tagger.predict([SENTS[1]])[0])
    with pytest.raises(ValueError, match="not entity types of this tagger"):
        tagger.remove_types(["O"])


def test_replace_resets_the_annotated_types_and_o_still_grows(tiny_text_encoder):
    tagger = FewShotTagger(tiny_text_encoder).fit(SENTS, TAGS)
    tagger.add([["Rome", "again"]], [["city", "O"]], replace=True)
    assert dict(zip(tagger.book_.labels, tagger.book_.counts.tolist())) == {"person": 2, "O": 8, "city": 1}
    z = embed_words(tiny_text_encoder, [["Rome", "again"]])[0]
    np.testing.assert_allclose(tagger.book_.prototypes([tagger.book_.row("city")])[0], z[0], rtol=1e-5, atol=1e-6)
    person = tagger.book_.prototypes([tagger.book_.row("person")])[0]
    np.testing.assert_array_equal(person, FewShotTagger(tiny_text_encoder).fit(SENTS, TAGS).book_.prototypes()[0])


def test_errors_name_the_sentence_by_where(tiny_text_encoder):
    where = {0: "a.conll:1", 1: "a.conll:9"}.__getitem__
    with pytest.raises(ValueError, match="a.conll:9: expected one tag per word"):
        FewShotTagger(tiny_text_encoder).add([["a"], ["b", "c"]], [["O"], ["O"]], where=where)
    long = [["a"], ["w"] * 300]  # the tiny BERT reads 128 positions
    with pytest.raises(ValueError, match=r"a.conll:9: sentence of 300 words .* window of 128"):
        FewShotTagger(tiny_text_encoder).add(long, [["O"], ["O"] * 300], where=where)
    with pytest.raises(ValueError, match=r"^sentence 0: sentence of 300 words"):
        FewShotTagger(tiny_text_encoder).fit(SENTS, TAGS).predict([["w"] * 300, ["a", "b", "c"]])
    with pytest.raises(ValueError, match="q:1: expected a sentence of at least one word"):
        FewShotTagger(tiny_text_encoder).fit(SENTS, TAGS).predict([["a"], []], where=lambda i: f"q:{i}")


def test_create_and_describe(tiny_text_encoder, tmp_path):
    FewShotTagger(tiny_text_encoder).create(tmp_path / "t")
    info = FewShotTagger.describe(tmp_path / "t")
    assert (info["classes"], info["metric"], info["dim"], info["generation"]) == ([], "euclidean", 32, 1)
    with FewShotTagger.update(tmp_path / "t", encoder=tiny_text_encoder) as t:
        t.add(SENTS, TAGS)
    assert FewShotTagger.describe(tmp_path / "t")["classes"] == [
        {"label": "person", "count": 2}, {"label": "O", "count": 7}, {"label": "city", "count": 1}]
    with pytest.raises(ValueError, match="already holds an index"):
        FewShotTagger(tiny_text_encoder).create(tmp_path / "t")
    FewShotClassifier(tiny_text_encoder).fit(["a b", "c d"], ["x", "y"]).save(tmp_path / "c")
    with pytest.raises(StoreError, match=r"holds a classifier \(FewShotClassifier\), not a tagger"):
        FewShotTagger.describe(tmp_path / "c")
    with pytest.raises(StoreError, match=r"holds a tagger \(FewShotTagger\), not a classifier"):
        FewShotClassifier.describe(tmp_path / "t")

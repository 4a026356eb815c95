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

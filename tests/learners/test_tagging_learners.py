"""ProtoBERT and NNShot on word features chosen by hand, and words embedded from sub-word tokens."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fewshot.encoders.words import embed_words, word_embeddings
from fewshot.learners import create_learner


def test_protobert_tags_by_nearest_prototype():
    z = torch.tensor([[0.0, 0.0], [0.2, 0.0], [4.0, 0.0], [0.0, 4.0], [0.0, 6.0]])
    y = torch.tensor([0, 0, 1, 2, 2])  # prototypes: O (0.1, 0), type 1 (4, 0), type 2 (0, 5)
    learner = create_learner("protobert", None)
    learner.adapt_features(z, y)
    logits = learner.logits_features(torch.tensor([[3.0, 0.0], [0.0, 4.4], [0.5, 0.5]]))
    assert logits.shape == (3, 3)
    assert logits.argmax(1).tolist() == [1, 2, 0]
    assert logits[0, 1].item() == pytest.approx(-1.0)  # negative squared distance to (4, 0)


def test_nnshot_tags_by_nearest_support_word():
    z = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0], [0.0, 10.0]])
    y = torch.tensor([0, 1, 2, 2])
    learner = create_learner("nnshot", None)
    learner.adapt_features(z, y)
    logits = learner.logits_features(torch.tensor([[0.0, 9.0], [3.0, 0.0]]))
    assert logits[0].tolist() == [-81.0, -97.0, -1.0] and logits.argmax(1).tolist() == [2, 1]
    with pytest.raises(ValueError, match=r"labels \[1\] have no support word"):
        learner.adapt_features(z[[0, 2]], torch.tensor([0, 2]))


def test_word_embedding_is_the_mean_of_its_sub_tokens(tiny_text_encoder):
    enc = tiny_text_encoder.eval()
    sentence = ("Hello", "unbelievably", "x")
    batch = enc.tokenizer([list(sentence)], is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        hidden = enc.model(**{k: batch[k] for k in ("input_ids", "attention_mask")}).last_hidden_state[0]
        words = word_embeddings(enc, [sentence])[0]
    ids = batch.word_ids(0)
    assert words.shape == (3, enc.dim)
    for w in range(3):
        cols = [j for j, i in enumerate(ids) if i == w]
        torch.testing.assert_close(words[w], hidden[cols].mean(0))
    assert len([j for j, i in enumerate(ids) if i == 1]) > 1  # "unbelievably" is several sub-tokens
    again = embed_words(enc, [("a", "b"), sentence], batch_size=1)
    np.testing.assert_allclose(again[1], words.numpy(), rtol=1e-5, atol=1e-6)


def test_a_sentence_longer_than_the_window_names_its_line(tiny_text_encoder):
    long = tuple(["word"] * 200)  # the tiny encoder's window is 128 positions
    with pytest.raises(ValueError, match=r"data.conll:7: sentence of 200 words is 202 sub-word tokens, longer "
                                         r"than encoder .* window of 128; split the sentence"):
        embed_words(tiny_text_encoder, [("ok",), long], where=lambda i: ["data.conll:1", "data.conll:7"][i])
    with pytest.raises(ValueError, match=r"^sentence 0: sentence of 200 words"):  # its place in the list, not in its
        embed_words(tiny_text_encoder, [long, ("ok",)])                           # length-sorted batch (row 1)

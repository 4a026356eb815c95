"""Word embeddings from a transformer text encoder, for token classification (NER).

A sentence is given as its word tokens; the tokenizer splits each word into sub-word
tokens (``is_split_into_words``). **A word's embedding is the mean of its sub-word
tokens' last hidden states** (the special tokens [CLS]/[SEP] belong to no word). The
mean, not the first sub-token (Few-NERD's choice for BERT), because the shipped text
encoders are sentence encoders trained with mean pooling: every sub-token carries
the word. A word the tokenizer turns into no token at all (e.g. a lone zero-width
space) gets a zero vector.

:func:`sentence_and_word_embeddings` gives, from the same forward pass, each sentence's
embedding as the text encoder pools it (attention-masked mean of all its tokens,
:func:`fewshot.encoders.text.masked_mean`): what a sentence head (the intent of joint
intent + slot models) reads beside the word embeddings.

A sentence is never truncated: one longer than the encoder's window (its position
embeddings, and the tokenizer's ``model_max_length``) raises a ValueError naming the
sentence's file and line (``where``) and the fix.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from .base import Encoder
from .text import masked_mean


def window(encoder: Encoder) -> int:
    """The most sub-word tokens (special tokens included) ``encoder`` reads in one sentence."""
    limit = int(getattr(encoder.model.config, "max_position_embeddings", 512))
    return min(limit, int(encoder.tokenizer.model_max_length or limit))


def word_embeddings(encoder: Encoder, sentences: Sequence[Sequence[str]], device=None,
                    where: Callable[[int], str] | None = None) -> list[torch.Tensor]:
    """Each sentence's (n_words, hidden) word embeddings, in one forward pass (differentiable)."""
    return sentence_and_word_embeddings(encoder, sentences, device, where)[1]


def sentence_and_word_embeddings(encoder: Encoder, sentences: Sequence[Sequence[str]], device=None,
                                 where: Callable[[int], str] | None = None
                                 ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``(pooled, words)`` of one forward pass (differentiable): the (n_sentences, hidden) mean-pooled sentence
    embeddings and each sentence's (n_words, hidden) word embeddings."""
    tokenizer = getattr(encoder, "tokenizer", None)
    if tokenizer is None or not tokenizer.is_fast:
        raise ValueError(f"encoder {encoder.name!r} cannot embed words: token classification needs a text "
                         "encoder with a fast tokenizer (e.g. minilm)")
    enc = tokenizer([list(s) for s in sentences], is_split_into_words=True, padding=True, truncation=False,
                    return_tensors="pt", verbose=False)
    lengths = enc["attention_mask"].sum(1)
    limit = window(encoder)
    if (lengths > limit).any():
        b = int(torch.nonzero(lengths > limit)[0])
        at = where(b) if where else f"sentence {b}"
        raise ValueError(f"{at}: sentence of {len(sentences[b])} words is {int(lengths[b])} sub-word tokens, "
                         f"longer than encoder {encoder.name!r}'s window of {limit}; split the sentence (e.g. at "
                         "a full stop) or drop it")
    ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    hidden = encoder.model(input_ids=ids, attention_mask=mask).last_hidden_state
    out = []
    for b, words in enumerate(sentences):
        word_ids = enc.word_ids(b)
        cols = [j for j, w in enumerate(word_ids) if w is not None]
        rows = torch.tensor([word_ids[j] for j in cols], dtype=torch.long)
        pool = torch.zeros(len(words), hidden.shape[1], dtype=torch.float32)
        pool[rows, torch.tensor(cols, dtype=torch.long)] = 1.0
        pool = pool / pool.sum(1, keepdim=True).clamp(min=1.0)
        out.append(pool.to(hidden.device) @ hidden[b].float())
    return masked_mean(hidden.float(), mask), out


def embed_words(encoder: Encoder, sentences: Sequence[Sequence[str]], batch_size: int = 32, device=None,
                where: Callable[[int], str] | None = None, progress=None) -> list[np.ndarray]:
    """Each sentence's (n_words, hidden) float32 word embeddings, without gradients, in batches of
    similar length. ``where(i)`` names sentence ``i`` in errors; ``progress`` is updated per sentence."""
    where = where or (lambda i: f"sentence {i}")  # named by its place in ``sentences``, not in its batch
    order = np.argsort([sum(len(w) for w in s) for s in sentences], kind="stable")
    out: list = [None] * len(sentences)
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                z = word_embeddings(encoder, [sentences[i] for i in idx], device,
                                    where=lambda b: where(int(idx[b])))
                for i, zi in zip(idx, z):
                    out[int(i)] = zi.cpu().numpy()
                if progress is not None:
                    progress.update(len(idx))
    finally:
        encoder.train(was_training)
    return out

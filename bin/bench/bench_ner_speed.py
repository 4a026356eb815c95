"""Tagging speed with a frozen encoder: ``bin/bench-ner --protocol speed``, BENCHMARKS.md "ner-speed".

Two figures (issue 20's speed target), on Few-NERD INTER's 5-way 1~2-shot frozen test episodes
(``--episodes-file``) and frozen all-MiniLM-L6-v2:

- **Sentences tagged per second** on the CPU at 1 and 2 threads (``--threads``): ProtoBERT adapted to the
  first episode's support set tags ``--sentences`` distinct query sentences (word embeddings, batches of 32
  sentences of similar length, :meth:`Learner.embed_words`, then scoring and decoding,
  :func:`fewshot.tag_evaluation.tag_sentences`). The thread counts are timed against each other in
  alternating rounds (:mod:`alternating_rounds`), each round's slice of sentences tagged by every count; one
  untimed warm-up batch first.
- **Embedded tokens of an episodic run against the one-pass floor**: ``evaluate_tagging`` (what ``fewshot run``
  calls) over the first ``--episodes`` episodes, the encoder's forward passes counted by a hook (sentences,
  non-padding tokens, and padded positions computed), against the floor: the sub-word tokens (special tokens
  included) of the run's distinct sentences, each embedded once. Beside them, what re-embedding every
  episode's sentences would cost (computed: the tokens of each episode's support and query sentences, summed).
"""
from __future__ import annotations

import os
import time

import numpy as np
import torch
from alternating_rounds import AlternatingRounds, load_average, load_average_note

from fewshot.learners import create_learner
from fewshot.tag_evaluation import evaluate_tagging, tag_sentences

BATCH = 32


def _tokens(tokenizer, sentence) -> int:
    return len(tokenizer(list(sentence), is_split_into_words=True)["input_ids"])


def throughput_rows(ds, episodes, encoder, n_sentences: int, threads: list[int], rounds: int):
    """Sentences per second tagging ``n_sentences`` distinct query sentences, per thread count."""
    ids = list(dict.fromkeys(int(i) for ep in episodes for i in ep.query))[:n_sentences]
    if len(ids) < n_sentences:
        raise SystemExit(f"--sentences {n_sentences}: the episodes hold only {len(ids)} distinct query sentences; "
                         "pass fewer, or more --episodes")
    sentences = ds.take(ids)
    learner = create_learner("protobert", encoder)
    first = episodes[0]
    z = learner.embed_words(ds.take(first.support.tolist()))
    labels = first.token_labels([ds.tags[int(i)] for i in first.support])
    learner.adapt_features(torch.from_numpy(np.concatenate(z)), torch.from_numpy(np.concatenate(labels)))
    before = torch.get_num_threads()
    schedule = AlternatingRounds(n_sentences, rounds)
    spent = dict.fromkeys(threads, 0.0)
    try:
        tag_sentences(learner, learner.embed_words(sentences[:BATCH], batch_size=BATCH), first.classes)  # warm-up
        for t, steps in schedule.turns(threads):
            torch.set_num_threads(t)
            part = sentences[steps.start:steps.stop]
            start = time.perf_counter()
            tag_sentences(learner, learner.embed_words(part, batch_size=BATCH), first.classes)
            spent[t] += time.perf_counter() - start
    finally:
        torch.set_num_threads(before)
    words = sum(len(s) for s in sentences)
    tokens = sum(_tokens(encoder.tokenizer, s) for s in sentences)
    for t in threads:
        yield {"protocol": "speed", "part": "throughput", "threads": t, "sentences": n_sentences, "words": words,
               "tokens": tokens, "rounds": rounds, "seconds": spent[t],
               "sentences_per_s": n_sentences / spent[t], "words_per_s": words / spent[t],
               "load_average": load_average()}


def token_row(ds, episodes, encoder):
    """The tokens an episodic run embeds (counted at the encoder) against the one-pass floor."""
    seen = {"passes": 0, "sentences": 0, "tokens": 0, "padded": 0}

    def count(module, args, kwargs):
        mask = kwargs["attention_mask"]
        seen["passes"] += 1
        seen["sentences"] += int(mask.shape[0])
        seen["tokens"] += int(mask.sum())
        seen["padded"] += int(mask.numel())

    handle = encoder.model.register_forward_pre_hook(count, with_kwargs=True)
    try:
        result = evaluate_tagging(create_learner("protobert", encoder), ds, episodes, progress=False)
    finally:
        handle.remove()
    tokens = {}
    for ep in episodes:
        for i in (*ep.support, *ep.query):
            if int(i) not in tokens:
                tokens[int(i)] = _tokens(encoder.tokenizer, ds.sentences[int(i)])
    per_episode = sum(tokens[int(i)] for ep in episodes for i in (*ep.support, *ep.query))
    return {"protocol": "speed", "part": "tokens", "episodes": result.n_episodes,
            "episode_sentences": sum(len(ep.support) + len(ep.query) for ep in episodes),
            "distinct_sentences": len(tokens), "embedded_sentences": seen["sentences"],
            "forward_passes": seen["passes"], "embedded_tokens": seen["tokens"], "padded_positions": seen["padded"],
            "floor_tokens": sum(tokens.values()), "reembedding_tokens": per_episode, "f1": result.f1,
            "elapsed_s": round(result.elapsed_s, 3), "threads": torch.get_num_threads()}


def speed_rows(args, ds, episodes, encoder):
    yield from throughput_rows(ds, episodes, encoder, args.sentences, args.threads, args.rounds)
    yield token_row(ds, episodes, encoder)


def speed_markdown(rows: list[dict], cmd: str, episodes_file: str) -> str:
    fast = [r for r in rows if r["part"] == "throughput"]
    tok = next((r for r in rows if r["part"] == "tokens"), None)
    lines = ["## Few-shot NER: tagging speed with a frozen encoder (CPU)", "", f"Command: `{cmd}`", "",
             "Frozen all-MiniLM-L6-v2, ProtoBERT adapted to the first episode of "
             f"`{episodes_file}` (Few-NERD INTER, 5-way 1~2-shot test episodes), tagging distinct query sentences "
             f"of those episodes: word embeddings in batches of {BATCH} sentences of similar length, then scoring "
             "and decoding (`Learner.embed_words`, `tag_sentences`). Thread counts timed against each other in "
             "alternating rounds over the same sentences (one untimed warm-up batch).", "",
             "| threads | sentences | words | sub-word tokens | rounds | s | sentences/s | words/s | load avg |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in fast:
        load = f"{r['load_average']:.2f}" if r["load_average"] is not None else "-"
        lines.append(f"| {r['threads']} | {r['sentences']} | {r['words']} | {r['tokens']} | {r['rounds']} | "
                     f"{r['seconds']:.1f} | {r['sentences_per_s']:.1f} | {r['words_per_s']:.0f} | {load} |")
    lines += load_average_note("is a shared 2-core box (nice 15)", "the thread counts against each other rather "
                               "than absolute figures across runs")
    lines[-1] += (" A second thread speeds tagging only where a core is free for it: at a load average above the "
                  f"core count ({os.cpu_count()} here) it waits for one and costs synchronisation instead.")
    if tok:
        lines += ["", f"Embedded tokens of an episodic run (`evaluate_tagging`, as `fewshot run --dataset "
                  f"fewnerd-inter --learner protobert` scores, over the first {tok['episodes']} episodes, "
                  f"{tok['threads']} thread(s)), counted at the encoder by a forward hook, against the one-pass "
                  "floor (the sub-word tokens of the run's distinct sentences, special tokens included, each once) "
                  "and against re-embedding each episode's sentences (computed):", "",
                  "| episodes | episode sentences | distinct sentences | sentences embedded | forward passes | "
                  "tokens embedded | floor tokens | embedded / floor | padded positions | tokens if re-embedded per "
                  "episode | s |", "|---|---|---|---|---|---|---|---|---|---|---|",
                  f"| {tok['episodes']} | {tok['episode_sentences']} | {tok['distinct_sentences']} | "
                  f"{tok['embedded_sentences']} | {tok['forward_passes']} | {tok['embedded_tokens']} | "
                  f"{tok['floor_tokens']} | {tok['embedded_tokens'] / tok['floor_tokens']:.3f} | "
                  f"{tok['padded_positions']} | {tok['reembedding_tokens']} "
                  f"({tok['reembedding_tokens'] / tok['floor_tokens']:.2f}x) | {tok['elapsed_s']:.0f} |", "",
                  "The tagging evaluation keeps one embedding cache for the whole run (word embeddings by sentence "
                  "id, across chunks of episodes): the classification evaluation's own `EmbeddingCache`. "
                  "Padded positions: what the batched forward passes compute, the padding of each batch to its "
                  "longest sentence included."]
    return "\n".join(lines)

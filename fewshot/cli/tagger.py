"""The NER tagger's side of ``fewshot index`` (a folder created with ``index create DIR --task ner``).

:func:`folder_task` tells the two kinds of index folder apart; ``fewshot/cli/index.py`` hands a tagger
folder's ``create``, ``add``, ``list`` and ``remove`` to the functions here and registers :func:`tag`, the
tagger's own command. Every change goes through :meth:`FewShotTagger.update` (the folder's lock).
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..inputs import check_texts

TASKS = ("classification", "ner")
TAGGED_FILES = (".conll", ".txt", ".tsv", ".jsonl")  # CoNLL token<TAB>tag lines, or JSONL of tokens and tags


def folder_task(directory) -> str:
    """"ner" if DIRECTORY holds a FewShotTagger, else "classification" (whose own checks refuse a folder
    that is neither)."""
    from ..support import folder

    return "ner" if folder.kind_of(directory) == folder.TAGGER_KIND else "classification"


def given_options(ctx: click.Context, *params: str) -> list[str]:
    """The options among ``params`` that the user set on the command line, as ``--flag`` names."""
    return ["--" + p.replace("_", "-") for p in params
            if ctx.get_parameter_source(p) == click.core.ParameterSource.COMMANDLINE]


def read_tagged(path: str) -> tuple[list, list, list]:
    """(sentences, IO tags, "file:line" origins) of an annotated file: CoNLL or JSONL of tokens and tags."""
    from ..datasets.ner import read_tagged_path

    p = Path(path)
    if p.suffix.lower() not in TAGGED_FILES:
        raise ValueError(f"--file {path}: expected annotated sentences, a .conll/.txt/.tsv file of `token<TAB>tag` "
                         "lines (a blank line between sentences; IO or BIO tags) or a .jsonl file of "
                         f"{{\"tokens\": [...], \"tags\": [...]}} objects, got a {p.suffix or 'suffix-less'} file")
    if not p.is_file():
        raise FileNotFoundError(f"--file {path}: no such file")
    data = read_tagged_path(p)
    return data.sentences, data.tags, data.origins


def create_tagger(ctx: click.Context, directory, encoder, checkpoint, metric) -> None:
    """``index create DIR --task ner``: an empty tagger; the classification-only options are refused."""
    from ..encoders import default_encoder
    from ..support.tagger import FewShotTagger

    given = given_options(ctx, "index_kind", "unknown_label")
    if given:
        verbs = ("configures", "means", "it") if len(given) == 1 else ("configure", "mean", "them")
        raise ValueError(f"{' and '.join(given)} {verbs[0]} a classification index and {verbs[1]} nothing to "
                         f"an NER tagger (--task ner); drop {verbs[2]}")
    tagger = FewShotTagger(checkpoint or encoder or default_encoder("text"), **({"metric": metric} if metric else {}))
    tagger.create(directory)
    click.echo(f"created an empty NER tagger in {directory} (encoder {tagger.encoder.name}, "
               f"{tagger.encoder.dim}-d, {tagger.metric}); teach it entity types with "
               f"`fewshot index add {directory} --file annotated.conll`")


def add_to_tagger(ctx, directory, texts, label, file_, images, replace) -> None:
    """``index add DIR --file annotated.conll`` on a tagger: TEXT arguments and the classifier's options are refused."""
    from ..support.tagger import FewShotTagger
    from ..tagged import types_of

    if texts:
        raise ValueError(f"{directory} holds an NER tagger, which learns from annotated sentences, not TEXT "
                         "arguments: write them one `token<TAB>tag` line per word (a blank line between sentences) "
                         "to a .conll file, or as {\"tokens\": [...], \"tags\": [...]} lines to a .jsonl file, "
                         "and use --file F")
    refused = (["--label"] if label else []) + (["--images"] if images else []) + \
        given_options(ctx, "text_column", "label_column")
    if refused:
        verbs = ("does", "it") if len(refused) == 1 else ("do", "them")
        raise ValueError(f"{' and '.join(refused)} {verbs[0]} not apply to an NER tagger ({directory}): the words "
                         f"and their entity types come from the tags of --file F; drop {verbs[1]}")
    if not file_:
        raise ValueError(f"give the annotated sentences for the tagger in {directory} with --file F (.conll: "
                         "`token<TAB>tag` lines; .jsonl: tokens and tags)")
    sentences, tags, origins = read_tagged(file_)  # refused here, before the lock: DIR is not touched
    with FewShotTagger.update(directory) as tagger:
        before = set(tagger.types_)
        tagger.add(sentences, tags, replace=replace, where=lambda i: origins[i])
    types = set(types_of(tags))
    new = len(types - before)
    click.echo(f"added {sum(map(len, sentences))} words of {len(sentences)} sentences: {new} new entity types, "
               f"{len(types) - new} {'replaced' if replace else 'extended'}; the tagger holds "
               f"{len(tagger.types_)} entity types")


def list_tagger(directory, as_json: bool) -> None:
    """``index list DIR`` on a tagger: its entity types with their word counts."""
    from ..support.tagger import FewShotTagger
    from ..tagged import OUTSIDE

    info = FewShotTagger.describe(directory)  # the manifest only: the encoder is not loaded
    types = [{"type": c["label"], "words": c["count"]} for c in info["classes"] if c["label"] != OUTSIDE]
    outside = sum(c["count"] for c in info["classes"] if c["label"] == OUTSIDE)
    if as_json:
        click.echo(json.dumps({"task": "ner", **{k: info[k] for k in ("encoder", "fingerprint", "metric", "dim",
                                                                      "index_id")},
                               "types": types, "outside_words": outside}))
        return
    click.echo(f"# {len(types)} entity types, {sum(t['words'] for t in types)} words (and {outside} O words); "
               f"encoder {info['encoder']} ({info['dim']}-d, {info['metric']})")
    for t in types:
        click.echo(f"{t['words']}\t{t['type']}")


def remove_types(directory, labels) -> None:
    """``index remove DIR --label TYPE...`` on a tagger."""
    from ..support.tagger import FewShotTagger

    with FewShotTagger.update(directory) as tagger:
        tagger.remove_types(list(dict.fromkeys(labels)))
    click.echo(f"removed {len(set(labels))} entity types; the tagger holds {len(tagger.types_)} entity types")


@click.command("tag")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.argument("texts", nargs=-1)
@click.option("--file", "file_", type=click.Path(dir_okay=False), default=None,
              help="A .txt file, one sentence per line (or a .csv/.tsv/.jsonl file of texts, --text-column).")
@click.option("--text-column", default="text", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per sentence: text, words, entities.")
def tag(directory, texts, file_, text_column, as_json):
    """Find the entities of TEXTS (or of the sentences of --file) with the NER tagger in DIRECTORY.

    Each text is split into words one way (fewshot.tagged.split_words): whitespace separates words
    and punctuation is a word of its own, but for an inner hyphen or apostrophe (state-of-the-art,
    O'Brien) and a number's inner . or , (3.5). An entity is a run of words of one type: its type,
    start and end (word indices, end inclusive), its words joined by spaces, and its score (the mean
    probability of its type over its words). Text output: a `# TEXT` line per sentence, then one
    `type<TAB>start<TAB>end<TAB>score<TAB>entity` line per entity.
    """
    from ..datasets.files import read_texts
    from ..support.tagger import FewShotTagger
    from ..tagged import OUTSIDE, split_words

    if folder_task(directory) != "ner":
        raise ValueError(f"{directory} holds a classification index, and `fewshot index tag` finds entity spans with "
                         f"an NER tagger (`fewshot index create DIR --task ner`); classify whole texts with "
                         f"`fewshot index predict {directory} TEXT...`")
    if bool(texts) == bool(file_):
        raise ValueError("give the sentences to tag as arguments or with --file F, not both and not neither")
    x = check_texts(texts, "TEXT") if texts else read_texts(file_, text_column)
    source = "TEXT" if texts else file_
    counts = {c["label"]: c["count"] for c in FewShotTagger.describe(directory)["classes"]}  # before the encoder
    n_types = len(counts) - (OUTSIDE in counts)
    if not n_types or OUTSIDE not in counts:
        raise ValueError(f"the tagger in {directory} needs words of O and of at least one entity type (it has "
                         f"{n_types} types and {counts.get(OUTSIDE, 0)} O words); teach it first: "
                         f"fewshot index add {directory} --file annotated.conll")
    tagger = FewShotTagger.load(directory)
    words = [split_words(t) for t in x]
    found = tagger.predict(words, where=lambda i: f"{source}: item {i}")
    for text, w, entities in zip(x, words, found):
        if as_json:
            click.echo(json.dumps({"text": text, "words": list(w), "entities": entities}, ensure_ascii=False))
            continue
        click.echo(f"# {text}")
        for e in entities:
            click.echo(f"{e['type']}\t{e['start']}\t{e['end']}\t{e['score']:.3f}\t{e['text']}")

"""``fewshot index``: a persistent support index whose classes are added and removed at run time.

Every command that changes DIR goes through :meth:`FewShotClassifier.update`,
which holds DIR's lock from load to save, so concurrent ``fewshot index add``
calls lose no update; reads take no lock.

Learning from use: ``predict --log`` appends each query to ``DIR/predictions.jsonl``
and prints its id; ``correct --id N --label L`` makes query N a support example of
class L; ``confirm --id N`` records that its answer was right; ``stats`` reports.
``rebuild --checkpoint CKPT`` re-embeds the stored support texts with a newly trained
encoder (``fewshot train --from-index DIR``), guarded by the log.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..index import METRICS
from ..inputs import check_labels, check_texts
from .app import main

EXAMPLE_FILES = (".csv", ".tsv", ".jsonl")


@main.group()
def index() -> None:
    """A persistent FAISS support index: create, add classes, predict, list, remove, calibrate, and learn
    from use (predict --log, correct, confirm, stats)."""


def _read_examples(path: str, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    from ..datasets.files import read_jsonl, read_table

    p = Path(path)
    if p.suffix.lower() not in EXAMPLE_FILES:
        raise ValueError(f"--file {path}: expected a .csv, .tsv or .jsonl file with columns {text_column!r} and "
                         f"{label_column!r}, got a {p.suffix or 'suffix-less'} file")
    if not p.is_file():
        raise FileNotFoundError(f"--file {path}: no such file")
    return read_jsonl(p, text_column, label_column) if p.suffix.lower() == ".jsonl" else \
        read_table(p, text_column, label_column)


def _check_modality(clf, directory: str, given: str) -> None:
    """Refuse examples of another modality than the index's encoder reads, naming the option that fits."""
    reads = clf.encoder.modality
    if reads == given:
        return
    if reads == "text":
        raise ValueError(f"the index in {directory} reads text (encoder {clf.encoder.name!r}), but {given}s were "
                         "given (--images); add texts with --label NAME TEXT... or --file F, or create an image "
                         "index for images (fewshot index create NEW_DIR --encoder mobilenetv2)")
    raise ValueError(f"the index in {directory} reads {reads}s (encoder {clf.encoder.name!r}), but {given}s were given "
                     f"(TEXT arguments or --file); add {reads}s with --images FOLDER (one subfolder per class), or use "
                     "a text index for texts (fewshot index create NEW_DIR)")


def _read_texts(path: str, text_column: str) -> list[str]:
    """The texts of --file: :func:`fewshot.datasets.files.read_texts`."""
    from ..datasets.files import read_texts

    return read_texts(path, text_column)


@index.command("create")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--encoder", default=None, help="Encoder name (minilm, mobilenetv2, conv4) or a transformers model "
              "folder. Default: minilm.")
@click.option("--checkpoint", type=click.Path(file_okay=False, exists=True), default=None,
              help="Use the encoder of a `fewshot train` checkpoint folder instead.")
@click.option("--metric", type=click.Choice(METRICS), default=None,
              help="How embeddings compare. Default: the encoder's own (cosine for text encoders; a protonet "
              "checkpoint's trained metric).")
@click.option("--index-kind", type=click.Choice(["auto", "flat", "ivf", "hnsw"]), default="auto",
              show_default=True, help="Exact flat search, or approximate IVF/HNSW; auto: flat below 50,000 "
              "classes, IVF above.")
@click.option("--unknown-label", default=None, help="What predict answers beyond the calibrated threshold "
              "(default: null in --json, '<unknown>' in text output).")
def create(directory, encoder, checkpoint, metric, index_kind, unknown_label):
    """Create an empty index in DIRECTORY."""
    from ..support import FewShotClassifier
    from ..encoders import default_encoder

    if encoder and checkpoint:
        raise ValueError("give --encoder or --checkpoint, not both")
    if Path(directory, "manifest.json").exists():
        raise ValueError(f"{directory} already holds an index; add to it with `fewshot index add`, or choose "
                         "a new folder")
    kw = dict(index_kind=index_kind, unknown_label=unknown_label)
    if metric:
        kw["metric"] = metric
    clf = FewShotClassifier.from_checkpoint(checkpoint, **kw) if checkpoint else \
        FewShotClassifier(encoder or default_encoder("text"), **kw)
    clf.create(directory)
    click.echo(f"created an empty index in {directory} (encoder {clf.encoder.name}, {clf.dim}-d, {clf.metric}, "
               f"{index_kind})")


@index.command("add")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.argument("texts", nargs=-1)
@click.option("--label", default=None, help="The class of the TEXTS given on the command line.")
@click.option("--file", "file_", type=click.Path(dir_okay=False), default=None,
              help="A .csv/.tsv/.jsonl file of labelled examples.")
@click.option("--images", type=click.Path(file_okay=False), default=None,
              help="A folder with one subfolder of images per class.")
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@click.option("--replace", is_flag=True, help="Reset existing classes to the new examples instead of adding to "
              "their running mean.")
def add(directory, texts, label, file_, images, text_column, label_column, replace):
    """Add labelled examples to the index in DIRECTORY: `--label NAME TEXT...`, `--file F` or `--images FOLDER`.

    A new label adds a class; examples of an existing label update its prototype (running mean).
    """
    from ..support import FewShotClassifier

    sources = sum([bool(texts), bool(file_), bool(images)])
    if sources != 1:
        raise ValueError("give exactly one source of examples: --label NAME TEXT..., --file F or --images FOLDER")
    if texts and not label:
        raise ValueError("TEXT arguments need --label NAME (the class they belong to)")
    if label and not texts:
        raise ValueError("--label goes with TEXT arguments; with --file or --images the labels come from the data")
    if texts:
        x, y = check_texts(texts, "TEXT"), check_labels([label] * len(texts), "--label")
    elif file_:
        x, y = _read_examples(file_, text_column, label_column)
    else:
        from ..datasets.files import read_image_folder

        if not Path(images).is_dir():
            raise FileNotFoundError(f"--images {images}: no such folder")
        x, y = read_image_folder(Path(images))
    with FewShotClassifier.update(directory) as clf:
        _check_modality(clf, directory, "image" if images else "text")
        before = set(clf.classes_)
        clf.add_classes(x, y, replace=replace)
    new = len(set(y) - before)
    click.echo(f"added {len(x)} examples: {new} new classes, {len(set(y)) - new} updated; "
               f"the index holds {clf.n_classes} classes")


@index.command("predict")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.argument("texts", nargs=-1)
@click.option("--file", "file_", type=click.Path(dir_okay=False), default=None,
              help="A .txt (one text per line), .csv/.tsv or .jsonl file of texts.")
@click.option("--text-column", default="text", show_default=True)
@click.option("--top-k", type=int, default=1, show_default=True, help="Also list the K nearest classes.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per text.")
@click.option("--log", "log_", is_flag=True, help="Append each query, its top-k labels and scores to "
              "DIRECTORY/predictions.jsonl and print its id (for `fewshot index correct/confirm`).")
def predict(directory, texts, file_, text_column, top_k, as_json, log_):
    """Classify TEXTS (or the texts of --file) with the index in DIRECTORY."""
    import numpy as np

    from ..support import curation
    from ..support import FewShotClassifier

    if bool(texts) == bool(file_):
        raise ValueError("give the texts to classify as arguments or with --file F, not both and not neither")
    x = list(texts) if texts else _read_texts(file_, text_column)
    clf = FewShotClassifier.load(directory)
    if not clf.n_classes:
        raise ValueError(f"the index in {directory} has no classes yet; add some first: "
                         f"fewshot index add {directory} --label NAME TEXT...")
    if clf.encoder.modality != "text":
        raise ValueError(f"the index in {directory} reads {clf.encoder.modality}s (encoder {clf.encoder.name!r}), but "
                         "`fewshot index predict` classifies texts; use a text index (or the Python API for images)")
    if not 1 <= top_k <= clf.n_classes:
        raise ValueError(f"--top-k must be from 1 to the number of classes ({clf.n_classes}), got {top_k}")
    top_labels, top_scores, labels = clf.rank_embeddings(clf.embed(x), top_k)  # one search serves all three
    log = curation.prediction_log(directory, create=True) if log_ else None  # only once the input passed
    tops = [[{"label": lab, "score": round(float(s), 6)} for lab, s in zip(top_labels[i], top_scores[i])
             if np.isfinite(s)] for i in range(len(x))]
    ids = [None] * len(x)
    if log is not None:
        ids = log.append([{"query": text, "labels": [t["label"] for t in top], "scores": [t["score"] for t in top],
                           "generation": clf.generation_} for text, top in zip(x, tops)])
    for i, (text, top) in enumerate(zip(x, tops)):
        if as_json:
            row = {"text": text, "label": labels[i], "score": top[0]["score"], "top_k": top}
            click.echo(json.dumps(row if ids[i] is None else {"id": ids[i], **row}))
        else:
            shown = "<unknown>" if labels[i] is None else labels[i]
            extra = "\t" + ", ".join(f"{t['label']} ({t['score']:.3f})" for t in top) if top_k > 1 else \
                f"\t{top[0]['score']:.3f}"
            click.echo(("" if ids[i] is None else f"{ids[i]}\t") + f"{shown}{extra}\t{text}")


@index.command("list")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def list_(directory, as_json):
    """List the classes of the index in DIRECTORY with their example counts."""
    from ..support import FewShotClassifier

    info = FewShotClassifier.describe(directory)  # the manifest only: the index is not loaded
    if as_json:
        click.echo(json.dumps({k: v for k, v in info.items() if k != "generation"}))
        return
    rows = info["classes"]
    click.echo(f"# {len(rows)} classes, {sum(r['count'] for r in rows)} examples; encoder {info['encoder']} "
               f"({info['dim']}-d, {info['metric']}), threshold {info['threshold']}")
    for r in rows:
        click.echo(f"{r['count']}\t{r['label']}")


@index.command("remove")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--label", "labels", multiple=True, required=True, help="A class to remove (repeatable).")
def remove(directory, labels):
    """Remove classes from the index in DIRECTORY."""
    from ..support import FewShotClassifier

    with FewShotClassifier.update(directory) as clf:
        clf.remove_classes(list(labels))
    click.echo(f"removed {len(set(labels))} classes; the index holds {clf.n_classes} classes")


@index.command("calibrate")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--file", "file_", type=click.Path(dir_okay=False), required=True,
              help="Held-out .csv/.tsv/.jsonl examples; out-of-scope rows carry --oos-label.")
@click.option("--oos-label", default="oos", show_default=True, help="The label that marks out-of-scope rows.")
@click.option("--target-precision", type=float, default=0.95, show_default=True)
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
def calibrate(directory, file_, oos_label, target_precision, text_column, label_column):
    """Set the open-set threshold of DIRECTORY's index from held-out examples."""
    from ..support import FewShotClassifier

    x, y = _read_examples(file_, text_column, label_column)
    y = [None if v == oos_label else v for v in y]
    with FewShotClassifier.update(directory) as clf:
        _check_modality(clf, directory, "text")
        clf.calibrate(x, y, target_precision=target_precision)
    c = clf.calibration_
    oos = "n/a" if c["out_of_scope_recall"] is None else f"{c['out_of_scope_recall']:.3f}"
    click.echo(f"threshold {c['threshold']:.4f}: precision {c['precision']:.3f}, in-scope accuracy "
               f"{c['in_scope_accuracy']:.3f}, out-of-scope recall {oos} "
               f"({c['n_in_scope']} in-scope, {c['n_out_of_scope']} out-of-scope examples)")


@index.command("correct")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--id", "id_", type=int, required=True, help="The id `fewshot index predict --log` printed.")
@click.option("--label", required=True, help="The true class of that query (a new name adds a class).")
def correct(directory, id_, label):
    """Correct logged prediction --id: its query becomes a support example of --label (running mean)."""
    from ..support import curation

    entry = curation.correct(directory, id_, label)
    click.echo(f"prediction {id_} ({entry['labels'][0]!r}) corrected to {label!r}: {entry['query']!r} added to "
               f"{label!r}")


@index.command("confirm")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--id", "id_", type=int, required=True, help="The id `fewshot index predict --log` printed.")
def confirm(directory, id_):
    """Record that logged prediction --id got the right label (the index itself is not changed)."""
    from ..support import curation

    entry = curation.confirm(directory, id_)
    click.echo(f"prediction {id_} ({entry['labels'][0]!r}) confirmed")


@index.command("stats")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def stats(directory, as_json):
    """Support examples per class, and the accuracy of logged predictions that were confirmed or corrected."""
    from ..support import curation
    from ..support import FewShotClassifier

    info = FewShotClassifier.describe(directory)
    log = curation.prediction_log(directory).stats()
    labels = sorted({r["label"] for r in info["classes"]} | set(log["labels"]), key=str)
    counts = {r["label"]: r["count"] for r in info["classes"]}
    empty = {"predicted": 0, "confirmed": 0, "corrected": 0, "unconfirmed": 0, "accuracy": None, "corrected_to": 0}
    rows = [{"label": lab, "support": counts.get(lab, 0), **log["labels"].get(lab, empty)} for lab in labels]
    totals = {k: log[k] for k in ("predictions", "reviewed", "unconfirmed", "correct", "accuracy")}
    corrections = sum(r["corrected"] for r in rows)
    if as_json:
        click.echo(json.dumps({"index_id": info["index_id"], "support": sum(counts.values()), **totals,
                               "corrections": corrections, "classes": rows}))
        return
    acc = "n/a" if totals["accuracy"] is None else f"{totals['accuracy']:.3f}"
    click.echo(f"# {len(counts)} classes, {sum(counts.values())} support examples; {totals['predictions']} logged "
               f"predictions, {totals['reviewed']} reviewed ({corrections} corrected), accuracy {acc}")
    click.echo("support\tpredicted\tconfirmed\tcorrected\tcorrected_to\taccuracy\tlabel")
    for r in rows:
        a = "n/a" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
        click.echo(f"{r['support']}\t{r['predicted']}\t{r['confirmed']}\t{r['corrected']}\t{r['corrected_to']}\t"
                   f"{a}\t{r['label']}")


@index.command("rebuild")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--checkpoint", type=click.Path(file_okay=False, exists=True), required=True,
              help="A `fewshot train` checkpoint folder whose encoder re-embeds every stored support text.")
@click.option("--margin", type=float, default=0.02, show_default=True,
              help="Refuse the rebuild when the new accuracy on labelled logged queries is lower than the old "
              "by more than this.")
@click.option("--force", is_flag=True, help="Rebuild even when the drift guard refuses (worse accuracy, or too "
              "few labelled logged queries to tell).")
def rebuild(directory, checkpoint, margin, force):
    """Re-embed the support texts of DIRECTORY with --checkpoint's encoder, as a new generation of the index.

    Before the swap, the old and new index are scored on the logged queries whose true label is
    known (`fewshot index confirm/correct`), held out; a drop of more than --margin is refused.
    """
    from ..support import curation

    r = curation.rebuild(directory, checkpoint, margin=margin, force=force)  # DriftError: exit 2
    acc = "n/a" if r["n_queries"] == 0 else f"{r['old_accuracy']:.3f} -> {r['new_accuracy']:.3f}"
    click.echo(f"rebuilt {directory}: {r['n_texts']} support texts of {r['n_classes']} classes re-embedded "
               f"(encoder fingerprint {r['old_fingerprint']} -> {r['new_fingerprint']}), generation "
               f"{r['generation']}; accuracy on {r['n_queries']} labelled logged queries {acc}"
               + (" (forced)" if force else ""))
    if r["threshold_reset"]:
        click.echo("the open-set threshold was calibrated for the old encoder and has been reset; run "
                   f"`fewshot index calibrate {directory} --file HELD_OUT` again")

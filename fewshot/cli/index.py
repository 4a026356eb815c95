"""``fewshot index``: a persistent support index whose classes are added and removed at run time.

Every command that changes DIR goes through :meth:`FewShotClassifier.update`,
which holds DIR's lock from load to save, so concurrent ``fewshot index add``
calls lose no update; reads take no lock.

Learning from use: ``predict --log`` appends each query to ``DIR/predictions.jsonl``
and prints its id; ``correct --id N --label L`` makes query N a support example of
class L; ``confirm --id N`` records that its answer was right; ``stats`` reports.
``rebuild --checkpoint CKPT`` re-embeds the stored support texts with a newly trained
encoder (``fewshot train --from-index DIR``), guarded by the log.

Entity types at run time: ``create --task ner`` makes DIR a :class:`~fewshot.support.tagger.FewShotTagger`
(folder kind ``"fewshot-tagger"``, changed through :meth:`FewShotTagger.update` the same way);
from then on the folder's kind decides: ``add --file annotated.conll`` adds or extends entity
types, ``tag`` finds entity spans in raw text (split into words by :func:`fewshot.tagged.split_words`),
``list`` and ``remove`` work on types, and the classification commands (``predict``,
``calibrate``, the log) refuse a tagger, as ``tag`` refuses a classifier.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..index import METRICS
from ..inputs import check_labels, check_texts
from .app import main
from .tagger import TASKS, add_to_tagger, create_tagger, folder_task, list_tagger, remove_types, tag

EXAMPLE_FILES = (".csv", ".tsv", ".jsonl")


@main.group()
def index() -> None:
    """A persistent FAISS support index: create, add classes, predict, list, remove, calibrate, and learn
    from use (predict --log, correct, confirm, stats); or, created with --task ner, an entity tagger (add
    --file, tag, list, remove)."""


index.add_command(tag)  # the tagger's own command (fewshot/cli/tagger.py)


def _refuse_tagger(directory, command: str, instead: str = "a tagger takes `index add --file`, `index tag`, "
                   "`index list` and `index remove`") -> None:
    if folder_task(directory) == "ner":
        raise ValueError(f"{directory} holds an NER tagger (created with --task ner), and `fewshot index {command}` "
                         f"works on a classification index; {instead}")


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
@click.option("--task", type=click.Choice(TASKS), default="classification", show_default=True,
              help="classification: classes of whole texts (or images), `index predict`; ner: an entity tagger "
              "(euclidean metric by default, ProtoBERT's), taught with `index add DIR --file annotated.conll` "
              "and used with `index tag`.")
@click.pass_context
def create(ctx, directory, encoder, checkpoint, metric, index_kind, unknown_label, task):
    """Create an empty index (or, with --task ner, an empty entity tagger) in DIRECTORY."""
    from ..support import FewShotClassifier
    from ..encoders import default_encoder

    if encoder and checkpoint:
        raise ValueError("give --encoder or --checkpoint, not both")
    if Path(directory, "manifest.json").exists():
        raise ValueError(f"{directory} already holds an index; add to it with `fewshot index add`, or choose "
                         "a new folder")
    if task == "ner":
        create_tagger(ctx, directory, encoder, checkpoint, metric)
        return
    kw = dict(index_kind=index_kind, unknown_label=unknown_label)
    if metric:
        kw["metric"] = metric
    clf = FewShotClassifier.from_checkpoint(checkpoint, **kw) if checkpoint else \
        FewShotClassifier(encoder or default_encoder("text"), **kw)
    if not checkpoint:
        _check_rebuildable(clf.encoder)
    clf.create(directory)
    click.echo(f"created an empty index in {directory} (encoder {clf.encoder.name}, {clf.dim}-d, {clf.metric}, "
               f"{index_kind})")


def _check_rebuildable(encoder) -> None:
    """Refuse an encoder that a later command could not build again with the same weights (every `fewshot
    index` command re-opens the encoder from the index's stored identity and checks its fingerprint)."""
    from ..support import folder

    again = folder.encoder_from_identity(folder.encoder_identity(encoder, None), "the new index")
    if again.fingerprint() != encoder.fingerprint():
        raise ValueError(f"encoder {encoder.name!r} has no fixed weights (each process initialises it at random), "
                         "so an index built over it could never be opened again; train it first (`fewshot train "
                         "--encoder ...`) and create the index with --checkpoint RUN_DIR, or choose a pretrained "
                         "encoder (minilm, mpnet, mobilenetv2)")


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
              "their running mean (a tagger: the entity types the file annotates; O still grows).")
@click.pass_context
def add(ctx, directory, texts, label, file_, images, text_column, label_column, replace):
    """Add labelled examples to the index in DIRECTORY: `--label NAME TEXT...`, `--file F` or `--images FOLDER`.

    A new label adds a class; examples of an existing label update its prototype (running mean).

    A tagger (created with --task ner) learns from annotated sentences only, `--file F`: CoNLL
    (.conll/.txt/.tsv: `token<TAB>tag` lines, a blank line between sentences, IO or BIO tags) or
    JSONL (one {"tokens": [...], "tags": [...]} per line). A new tag adds an entity type; the words
    of an existing one (and of O) extend its prototype.
    """
    from ..support import FewShotClassifier

    if folder_task(directory) == "ner":
        add_to_tagger(ctx, directory, texts, label, file_, images, replace)
        return
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
    from ..support import curation
    from ..support import FewShotClassifier

    _refuse_tagger(directory, "predict", f"find its entity spans with `fewshot index tag {directory} TEXT...`")
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
    rows = curation.predict(clf, x, top_k, log=log_)
    for row in rows:
        if as_json:
            click.echo(json.dumps(row))
        else:
            top = row["top_k"]
            shown = "<unknown>" if row["label"] is None else row["label"]
            extra = "\t" + ", ".join(f"{t['label']} ({t['score']:.3f})" for t in top) if top_k > 1 else \
                f"\t{top[0]['score']:.3f}"
            click.echo(("" if "id" not in row else f"{row['id']}\t") + f"{shown}{extra}\t{row['text']}")


@index.command("list")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def list_(directory, as_json):
    """List the classes of the index in DIRECTORY with their example counts (a tagger: its entity types with
    their word counts)."""
    from ..support import FewShotClassifier

    if folder_task(directory) == "ner":
        list_tagger(directory, as_json)
        return
    info = FewShotClassifier.describe(directory)  # the manifest only: the index is not loaded
    if as_json:
        click.echo(json.dumps({"task": "classification", **{k: v for k, v in info.items() if k != "generation"}}))
        return
    rows = info["classes"]
    click.echo(f"# {len(rows)} classes, {sum(r['count'] for r in rows)} examples; encoder {info['encoder']} "
               f"({info['dim']}-d, {info['metric']}), threshold {info['threshold']}")
    if info["search"] and info["search"]["kind"] != "flat":  # exact search needs no settings line
        click.echo("# search: " + ", ".join(f"{k} {v}" for k, v in info["search"].items()))
    for r in rows:
        click.echo(f"{r['count']}\t{r['label']}")


@index.command("describe")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def describe(directory, as_json):
    """What the index in DIRECTORY is, without listing its classes: encoder, metric, generation, class and
    example counts, and the search index (kind, settings, the recall@1 measured when it was tuned)."""
    from ..support import FewShotClassifier
    from ..support.tagger import FewShotTagger

    task = folder_task(directory)
    info = (FewShotTagger if task == "ner" else FewShotClassifier).describe(directory)  # the manifest only
    classes = info.pop("classes")
    out = {"task": task, **info, "classes": len(classes), "examples": sum(c["count"] for c in classes)}
    if as_json:
        click.echo(json.dumps(out))
        return
    for key, value in out.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        click.echo(f"{key}\t{value}")


@index.command("remove")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--label", "labels", multiple=True, required=True, help="A class to remove (repeatable).")
def remove(directory, labels):
    """Remove classes from the index in DIRECTORY (a tagger: entity types)."""
    from ..support import FewShotClassifier

    if folder_task(directory) == "ner":
        remove_types(directory, labels)
        return
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

    _refuse_tagger(directory, "calibrate")
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

    _refuse_tagger(directory, "correct")
    entry = curation.correct(directory, id_, label)
    click.echo(f"prediction {id_} ({entry['labels'][0]!r}) corrected to {label!r}: {entry['query']!r} added to "
               f"{label!r}")


@index.command("confirm")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--id", "id_", type=int, required=True, help="The id `fewshot index predict --log` printed.")
def confirm(directory, id_):
    """Record that logged prediction --id got the right label (the index itself is not changed)."""
    from ..support import curation

    _refuse_tagger(directory, "confirm")
    entry = curation.confirm(directory, id_)
    click.echo(f"prediction {id_} ({entry['labels'][0]!r}) confirmed")


@index.command("stats")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def stats(directory, as_json):
    """Support examples per class, and the accuracy of logged predictions that were confirmed or corrected."""
    from ..support import curation
    from ..support import FewShotClassifier

    _refuse_tagger(directory, "stats")
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

    _refuse_tagger(directory, "rebuild")
    r = curation.rebuild(directory, checkpoint, margin=margin, force=force)  # DriftError: exit 2
    acc = "n/a" if r["n_queries"] == 0 else f"{r['old_accuracy']:.3f} -> {r['new_accuracy']:.3f}"
    click.echo(f"rebuilt {directory}: {r['n_texts']} support texts of {r['n_classes']} classes re-embedded "
               f"(encoder fingerprint {r['old_fingerprint']} -> {r['new_fingerprint']}), generation "
               f"{r['generation']}; accuracy on {r['n_queries']} labelled logged queries {acc}"
               + (" (forced)" if force else ""))
    if r["threshold_reset"]:
        click.echo("the open-set threshold was calibrated for the old encoder and has been reset; run "
                   f"`fewshot index calibrate {directory} --file HELD_OUT` again")

"""Disk cost of the support texts an index keeps (the "support" blob), measured on CLINC150.

Prints bytes per example of exactly the bytes FewShotClassifier.save writes for the texts
(fewshot.support.folder.support_bytes), for all 22,500 in-scope examples and for 5/10-shot indexes.
Run: PYTHONPATH=. .venv/bin/python bin/bench/bench_support_bytes.py [DATA_ROOT]
"""
import sys

import numpy as np

from fewshot.datasets import load_dataset
from fewshot.support.classbook import ClassBook
from fewshot.support.folder import support_bytes


def _support_bytes(classes, support):
    book = ClassBook(1)
    for c in classes:
        book.add(np.zeros((len(support[c]), 1)), [c] * len(support[c]), support[c])
    return support_bytes(book)


ds = load_dataset("clinc150", sys.argv[1] if len(sys.argv) > 1 else None)
items, labels = list(ds.items), [ds.classes[i] if not isinstance(i, str) else i for i in ds.labels]
support = {}
for t, y in zip(items, labels):
    support.setdefault(y, []).append(t)
classes = list(support)
n = len(items)
b = _support_bytes(classes, support)
raw = sum(len(t.encode()) for t in items)
print(f"{len(classes)} classes, {n} examples: support blob {len(b)} bytes = {len(b)/n:.1f} bytes/example "
      f"(raw UTF-8 text {raw/n:.1f} bytes/example)")
for shots in (5, 10):
    sub = {c: v[:shots] for c, v in support.items()}
    m = sum(len(v) for v in sub.values())
    bb = _support_bytes(classes, sub)
    dim = 384
    print(f"{shots}-shot: {len(bb)} bytes / {m} examples = {len(bb)/m:.1f} bytes/example; for comparison the "
          f"sums ({len(classes)}x{dim} float64) are {len(classes)*dim*8} bytes, a flat index {len(classes)*dim*4}")

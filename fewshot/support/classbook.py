"""ClassBook: the bookkeeping of a classifier whose classes come and go at run time.

For each class, one row: its label, its float32 mean (the prototype every search reads), the count
of every embedding ever added under it, its stable int64 search id (never reused) and its support
texts (None where unknown: examples added as embeddings or images). The mean is the running mean
without drift: a class whose examples change (a second add, a replace) keeps the float64 sum of its
embeddings from then on, and its mean is recomputed from that sum on every change, so the error is
at most one float32 rounding of the mean it started from (the rounding a save keeps), however many
updates follow. Until it changes, a class's sum is its float32 mean times its count: a bulk add of
10^6 classes, or a load, keeps no float64 row at all, and a load uses the means it was given in
place (no 1.5 GB copy).

Costs are O(examples changed), whatever the class count: the rows live in fixed-size blocks, so
growing allocates a new block and never copies (no add pays for a doubling); removing a class moves the last row into its place (so rows
are in order of first appearance until a removal, which moves the newest class into the hole), and
an id's row is found in a dict. Every other object (the classifier, its folder format, the curation
workflows) reads and changes classes through the public methods here.
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from ..inputs import irregular_label_keys, label_key


BLOCK_ROWS = 1 << 14  # rows per storage block: 24 MiB of float32 means at 384-d
_FEW_ROWS = 64


class _Rows:
    """Rows of one dtype and row shape kept in fixed-size blocks, so that growing allocates a new (lazily
    zeroed) block and never copies the rows already held."""

    def __init__(self, row_shape: tuple, dtype):
        self.row_shape, self.dtype = tuple(row_shape), np.dtype(dtype)
        self._blocks: list[np.ndarray] = []

    @classmethod
    def of(cls, a: np.ndarray, dtype=None) -> "_Rows":
        """Rows holding a copy of ``a`` (as ``dtype``)."""
        rows = cls(a.shape[1:], dtype or a.dtype)
        rows.reserve(len(a))
        for start, stop, block in rows.blocks(len(a)):
            block[:] = a[start:stop]
        return rows

    @classmethod
    def wrap(cls, a: np.ndarray) -> "_Rows":
        """Rows that are ``a`` itself, block by block (views, no copy), but for the rows after its last full
        block, copied into a fresh block of their own (so that growing never reallocates a view). A view of a
        read-only array is copied on its first write (:meth:`__setitem__`)."""
        rows = cls(a.shape[1:], a.dtype)
        full = len(a) // BLOCK_ROWS * BLOCK_ROWS
        rows._blocks = [a[i:i + BLOCK_ROWS] for i in range(0, full, BLOCK_ROWS)]
        if full < len(a):
            rows.reserve(len(a))
            rows._blocks[-1][: len(a) - full] = a[full:]
        return rows

    def blocks(self, n: int):
        """(start, stop, view) of the blocks holding the first ``n`` rows."""
        for i in range(-(-n // BLOCK_ROWS)):
            start = i * BLOCK_ROWS
            stop = min(n, start + BLOCK_ROWS)
            yield start, stop, self._blocks[i][: stop - start]

    def reserve(self, n: int) -> None:
        while len(self._blocks) * BLOCK_ROWS < n:
            self._blocks.append(np.zeros((BLOCK_ROWS, *self.row_shape), dtype=self.dtype))

    def __getitem__(self, r: int):
        return self._blocks[r // BLOCK_ROWS][r % BLOCK_ROWS]

    def __setitem__(self, r: int, value) -> None:
        b = r // BLOCK_ROWS
        if not self._blocks[b].flags.writeable:  # a view of read-only saved state: copied once, on first write
            self._blocks[b] = self._blocks[b].copy()
        self._blocks[b][r % BLOCK_ROWS] = value

    def take(self, rows: np.ndarray) -> np.ndarray:
        """A copy of ``rows`` (a 1-d int array)."""
        out = np.empty((len(rows), *self.row_shape), dtype=self.dtype)
        block, offset = np.divmod(rows, BLOCK_ROWS)
        if len(rows) <= _FEW_ROWS:  # a query's candidates: one row at a time beats a mask per block
            for i, (b, o) in enumerate(zip(block.tolist(), offset.tolist())):
                out[i] = self._blocks[b][o]
            return out
        for b in np.unique(block):
            m = block == b
            out[m] = self._blocks[b][offset[m]]
        return out

    def head(self, n: int) -> np.ndarray:
        """A copy of the first ``n`` rows."""
        if not n:
            return np.zeros((0, *self.row_shape), dtype=self.dtype)
        full, rest = divmod(n, BLOCK_ROWS)
        parts = self._blocks[:full] + ([self._blocks[full][:rest]] if rest else [])
        return np.concatenate(parts) if len(parts) > 1 else parts[0].copy()


class ClassBook:
    """Labels, means, counts, stable ids and support texts of ``dim``-dimensional classes."""

    def __init__(self, dim: int):
        self.dim = int(dim)
        self.labels: list = []
        self._row: dict = {}
        self._means = _Rows((self.dim,), np.float32)
        self._sums: dict[int, np.ndarray] = {}  # row -> float64 sum, for the classes changed since they came
        self._counts = _Rows((), np.int64)
        self._ids = _Rows((), np.int64)
        self.next_id = 0
        self._row_of_id: dict[int, int] = {}
        self._texts: dict = {}
        # label_key(label) -> label of the string labels that differ from their key (None: not built yet)
        self._irregular: dict[str, str] | None = {}

    # -- reading ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, label) -> bool:
        try:
            return label in self._row
        except TypeError:  # unhashable: never a class
            return False

    @property
    def keys(self) -> Mapping[str, str]:
        """{label_key(label): label} of the string labels (read-only), for checking a new label in O(1)
        (:func:`fewshot.inputs.check_labels`); built on first use after :meth:`restore`."""
        if self._irregular is None:
            self._irregular = irregular_label_keys(self.labels)
        return _LabelKeys(self._row, self._irregular, self.labels)

    def row(self, label) -> int:
        """The row of class ``label`` (KeyError if it is not a class)."""
        return self._row[label]

    @property
    def sums(self) -> np.ndarray:
        """(n, dim) float64 sums of each class's embeddings (a read-only copy; a row restored from saved means
        and not changed since: its mean times its count)."""
        n = len(self)
        sums = self._means.head(n).astype(np.float64) * self._counts.head(n)[:, None]
        for r, s in self._sums.items():
            sums[r] = s
        return _readonly(sums)

    @property
    def counts(self) -> np.ndarray:
        """(n,) int64 number of examples of each class (a read-only copy)."""
        return _readonly(self._counts.head(len(self)))

    @property
    def ids(self) -> np.ndarray:
        """(n,) int64 stable search ids, unique, in row order (a read-only copy)."""
        return _readonly(self._ids.head(len(self)))

    def prototypes(self, rows=None) -> np.ndarray:
        """(len(rows), dim) float32 class means of ``rows`` (default: every class, in order): a copy."""
        if rows is None:
            return self._means.head(len(self))
        return self._means.take(np.asarray(rows, dtype=np.int64).reshape(-1))

    def mean_blocks(self) -> list[np.ndarray]:
        """The (rows, dim) float32 means of every class in row order, as read-only views of the storage blocks
        (valid until the next change): what a save writes, without copying 1.5 GB at 10^6 classes."""
        return [_readonly(block) for _, _, block in self._means.blocks(len(self))]

    def ids_of(self, rows) -> np.ndarray:
        """(len(rows),) int64 search ids of ``rows``."""
        return self._ids.take(np.asarray(rows, dtype=np.int64).reshape(-1))

    def texts(self, label) -> list | None:
        """The support texts of class ``label`` in order of arrival, or None where unknown."""
        texts = self._texts[label]
        return None if texts is None else list(texts)

    def rows_of_ids(self, ids: np.ndarray) -> np.ndarray:
        """The row of each search id in ``ids`` (any shape), -1 where it is no class (e.g. faiss's -1)."""
        ids = np.asarray(ids, dtype=np.int64)
        get = self._row_of_id.get
        return np.fromiter((get(int(i), -1) for i in ids.ravel()), dtype=np.int64,
                           count=ids.size).reshape(ids.shape)

    def held_out_prototypes(self, z: np.ndarray, labels: Sequence) -> tuple[np.ndarray, np.ndarray]:
        """Class means with the embeddings ``z`` (n, dim) taken out of their classes ``labels``:
        (rows of the classes left non-empty, their (k, dim) float32 means)."""
        protos, counts = self._means.head(len(self)), self._counts.head(len(self))
        taken: dict[int, np.ndarray] = {}
        for zi, lab in zip(np.asarray(z, dtype=np.float64), labels):
            r = self._row[lab]
            taken[r] = taken.get(r, 0) + zi
            counts[r] -= 1
        for r, s in taken.items():
            if counts[r] > 0:
                protos[r] = (self._sum(r) - s) / counts[r]
        keep = np.flatnonzero(counts > 0)
        return keep, protos[keep]

    def _sum(self, r: int) -> np.ndarray:
        """The float64 sum of row ``r``'s embeddings."""
        s = self._sums.get(r)
        return s.copy() if s is not None else self._means[r].astype(np.float64) * int(self._counts[r])

    # -- changing ---------------------------------------------------------------------------------
    def add(self, z: np.ndarray, labels: Sequence[Hashable], texts: Sequence[str] | None = None,
            replace: bool = False) -> tuple[list[int], list[int]]:
        """Add embeddings ``z`` (n, dim) under ``labels``; returns (rows changed, rows added).

        A new label adds a class. An existing label's sum and count grow by its new examples, or
        with ``replace`` are reset to them. ``texts``: the items' texts (None: unknown, and then the
        classes touched know no texts).
        """
        z = np.asarray(z)
        order: dict = {}
        for i, lab in enumerate(labels):
            order.setdefault(lab, []).append(i)
        new = [lab for lab in order if lab not in self._row]
        self._reserve(len(self) + len(new))
        changed, added = [], []
        for lab, rows in order.items():
            s = z[rows].astype(np.float64).sum(0)
            r = self._row.get(lab)
            if r is None:
                r = len(self.labels)
                self._row[lab] = r
                self.labels.append(lab)
                if isinstance(lab, str) and self._irregular is not None and label_key(lab) != lab:
                    self._irregular[label_key(lab)] = lab
                self._ids[r] = self.next_id
                self._row_of_id[self.next_id] = r
                self.next_id += 1
                added.append(r)
                kept: list | None = []
                count = len(rows)
            else:
                if not replace:
                    s += self._sum(r)
                count = len(rows) + (0 if replace else int(self._counts[r]))
                changed.append(r)
                kept = [] if replace else self._texts[lab]
                self._sums[r] = s
            self._counts[r] = count
            self._means[r] = s / count
            self._texts[lab] = None if texts is None or kept is None else kept + [texts[i] for i in rows]
        return changed, added

    def remove(self, labels: Sequence) -> np.ndarray:
        """Forget classes ``labels`` (all must be classes); returns their search ids.

        O(classes removed): the removed rows are filled, highest first, by the last row (its label, mean,
        sum, count, id and texts move; nothing else does)."""
        rows = sorted({self._row[lab] for lab in labels}, reverse=True)  # KeyError before anything changes
        gone = self._ids.take(np.asarray(rows[::-1], dtype=np.int64))
        for lab in [self.labels[r] for r in rows]:  # highest row first: a moved row is never one still to go
            r, last = self._row.pop(lab), len(self.labels) - 1
            del self._row_of_id[int(self._ids[r])]
            del self._texts[lab]
            if isinstance(lab, str) and self._irregular is not None:
                self._irregular.pop(label_key(lab), None)
            if r != last:
                moved = self.labels[last]
                self.labels[r] = moved
                self._row[moved] = r
                for part in self._parts():
                    part[r] = part[last]
                self._row_of_id[int(self._ids[r])] = r
            self._sums.pop(r, None)
            if last in self._sums:
                self._sums[r] = self._sums.pop(last)
            self.labels.pop()
        return gone

    @classmethod
    def restore(cls, dim: int, labels: list, sums: np.ndarray | None, counts, ids, next_id: int,
                texts: dict, *, means: np.ndarray | None = None) -> "ClassBook":
        """A book from saved state (the lists of ``texts`` taken over): the float64 ``sums``, or the float32
        class ``means`` instead, used in place (not copied; a read-only array's block is copied on its first
        change); ValueError when the parts disagree."""
        book = cls(dim)
        n = len(labels)
        if (sums is None) == (means is None):
            raise ValueError("restore: give the sums or the means, not both")
        given = np.asarray(sums if means is None else means)
        counts = np.asarray(counts, dtype=np.int64).reshape(-1)
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if given.shape != (n, book.dim) or counts.shape != (n,) or ids.shape != (n,):
            raise ValueError(f"inconsistent state ({n} classes, {'sums' if means is None else 'means'} "
                             f"{given.shape}, {len(counts)} counts, {len(ids)} ids)")
        book._row_of_id = dict(zip(ids.tolist(), range(n)))
        if n and (len(book._row_of_id) != n or ids.max() >= next_id or ids.min() < 0 or np.any(counts < 1)):
            raise ValueError("inconsistent state (ids not unique in 0..next_id-1, or a class without examples)")
        book.labels = list(labels)
        book._row = dict(zip(book.labels, range(n)))
        if len(book._row) != n or len(texts) != n or not all(lab in texts for lab in book.labels):
            raise ValueError("inconsistent state (duplicate labels, or support texts for other classes)")
        book._counts, book._ids = _Rows.of(counts), _Rows.of(ids)
        if means is None:  # an older folder's float64 sums
            book._means = _Rows.of((given / counts[:, None]).astype(np.float32))
        else:
            book._means = _Rows.wrap(given.astype(np.float32, copy=False))
        book._reserve(n)
        book.next_id = int(next_id)
        book._texts = dict(texts)  # the lists are taken over, not copied (a load's own)
        book._irregular = None  # found on first use (one pass over the labels at C speed; a load need not pay it)
        return book

    def _parts(self) -> tuple[_Rows, ...]:
        return self._means, self._counts, self._ids

    def _reserve(self, n: int) -> None:
        """Room for ``n`` rows: new (lazily zeroed) blocks where needed, the rows held never copied (O(1) per
        added class)."""
        for rows in self._parts():
            rows.reserve(n)


class _LabelKeys(Mapping):
    """{label_key(label): label} of a book's string labels, read-only, without a dict of every class: a label
    that is its own key is found in the book's label -> row dict, the others in the irregular ones."""

    def __init__(self, rows: dict, irregular: dict, labels: list):
        self._rows, self._irregular, self._labels = rows, irregular, labels

    def __getitem__(self, key):
        label = self._irregular.get(key)
        if label is not None:
            return label
        if isinstance(key, str) and key in self._rows and label_key(key) == key:
            return key
        raise KeyError(key)

    def __iter__(self):  # O(classes): for inspection, not for checks
        return (label_key(lab) for lab in self._labels if isinstance(lab, str))

    def __len__(self) -> int:
        return sum(isinstance(lab, str) for lab in self._labels)


def _readonly(a: np.ndarray) -> np.ndarray:
    view = a.view()
    view.flags.writeable = False
    return view

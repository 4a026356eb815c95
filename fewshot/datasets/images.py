"""Image datasets read in place from their publishers' files under the data root.

``omniglot``, ``omniglot-small1``, ``omniglot-small2``
    The two reduced Omniglot background sets (``images_background_small1.zip``,
    ``images_background_small2.zip``), read with :mod:`zipfile` without
    extracting. Class name ``"alphabet/characterNN"``; 20 drawers per class;
    105x105 uint8 (H, W) images, **black strokes (0) on white (255)** as
    published (1-bit PNG: 0 -> 0, 1 -> 255). Greek and Latin are in both
    zips with identical files, so ``omniglot`` keeps them once: 242 classes
    (small1: 136, small2: 156). Class split (``episodes/splits/omniglot.json``):
    alphabets Early_Aramaic and Tagalog are val (39 classes), the other six
    train (203); no test split: Omniglot's test protocol is ``omniglot-runs``.

``omniglot-runs``
    The official one-shot classification task (Lake et al. 2015,
    ``all_runs.zip``): 20 runs of 20-way 1-shot within one evaluation
    alphabet. Items are the 800 images (per run: ``training/class01..20``, then
    ``test/item01..20``); labels are unique per run, ``"run01/class07"``; a test
    item's label comes from the run's answer key ``class_labels.txt`` (lines
    ``runRR/test/itemII.png runRR/training/classCC.png``). The dataset carries
    its 20 protocol episodes (:attr:`FewShotDataset.episodes`): support = the 20
    training images (local label CC-1), query = the 20 test images, so mean
    accuracy over the episodes is exactly 1 - the official error rate.

``font_glyphs``
    ``font_glyphs_64.npz``: 97,761 64x64 uint8 glyphs of 3,066 Unicode
    characters, **white glyph (255) on black (0)**, 8-194 fonts per class.
    Class name ``"U+XXXX"`` (the codepoint). The 400 MB ``images`` array is
    unpacked once into ``.cache/font_glyphs/<sha256 of the npz>/images.npy``
    and memory-mapped, so loading is instant afterwards and only the images
    an episode touches are read. Split: seeded 60/20/20 (1,840 / 613 / 613).

Polarity: encoders get the images as published. Omniglot (black on white)
and font glyphs (white on black) differ; ``encoder_options = {invert = true}``
in a config flips an image encoder's input (see
:mod:`fewshot.encoders.image`).
"""
from __future__ import annotations

import io
import os
import re
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np

from ..atomic import fsync_dir
from ..data import FewShotDataset
from ..episodes import Episode, file_sha256
from .registry import cache_dir, load_split, register_dataset, require_file

OMNIGLOT_SOURCE = "https://github.com/brendenlake/omniglot (python/{name})"
FONT_GLYPHS_SOURCE = "the project's font_glyphs release (font_glyphs/font_glyphs_64.npz)"
OMNIGLOT_ZIPS = ("images_background_small1", "images_background_small2")
RUN_KEY_LINE = re.compile(r"^(run\d\d)/test/(item\d\d)\.png\s+(run\d\d)/training/(class\d\d)\.png$")


def decode_image(data: bytes, where: str) -> np.ndarray:
    """An encoded image (PNG, JPEG, ...) as a uint8 (H, W) grey or (H, W, 3) colour array; 1-bit becomes 0/255.

    An image of more pixels than Pillow's ``Image.MAX_IMAGE_PIXELS`` (its guard against decompression
    bombs: a small file that decodes to gigabytes) is refused naming its size and the limit."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # Pillow only warns from its limit to twice it: refused from the limit
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
        with im:
            if im.mode in ("1", "L", "P", "LA", "I", "I;16"):
                im = im.convert("L")
            elif im.mode != "RGB":
                im = im.convert("RGB")
            return np.asarray(im, dtype=np.uint8).copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValueError(f"{where}: the image is too large to decode safely (Pillow: {exc}); fewshot refuses images "
                         f"of more than Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS:,} pixels, Pillow's guard "
                         "against decompression bombs, and its image encoders read small images (e.g. 84x84): "
                         "resize it, or remove it") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ValueError(f"{where}: expected a decodable image but PIL could not read it ({exc}); "
                         "replace or remove the file") from exc


def _omniglot_zip(root: Path, name: str, dataset: str) -> zipfile.ZipFile:
    path = require_file(Path(root) / "omniglot" / f"{name}.zip", dataset, OMNIGLOT_SOURCE.format(name=f"{name}.zip"))
    return zipfile.ZipFile(path)


def read_omniglot_zip(zf: zipfile.ZipFile) -> tuple[list[np.ndarray], list[str]]:
    """Images and ``alphabet/characterNN`` labels of one background zip, in sorted path order."""
    items, labels = [], []
    for member in sorted(n for n in zf.namelist() if n.endswith(".png")):
        parts = member.split("/")
        if len(parts) != 4:
            raise ValueError(f"{zf.filename}: expected members 'set/alphabet/characterNN/*.png', got {member!r}")
        items.append(decode_image(zf.read(member), f"{zf.filename}:{member}"))
        labels.append(f"{parts[1]}/{parts[2]}")
    return items, labels


def _omniglot(name: str, zips: tuple[str, ...], root: Path) -> FewShotDataset:
    items, labels, seen = [], [], set()
    for z in zips:
        with _omniglot_zip(root, z, name) as zf:
            x, y = read_omniglot_zip(zf)
        new = set(y) - seen
        for img, label in zip(x, y):
            if label in new:  # Greek and Latin are in both zips, with identical files
                items.append(img)
                labels.append(label)
        seen |= new
    split = load_split("omniglot")
    splits = {k: [c for c in v if c in seen] for k, v in split.items()}
    return FewShotDataset(name=name, modality="image", items=items, labels=labels, splits=splits,
                          source=", ".join(str(Path(root) / "omniglot" / f"{z}.zip") for z in zips))


@register_dataset("omniglot")
def load_omniglot(root: Path, **_) -> FewShotDataset:
    """Both Omniglot small background sets: 242 characters x 20 drawers."""
    return _omniglot("omniglot", OMNIGLOT_ZIPS, root)


@register_dataset("omniglot-small1")
def load_omniglot_small1(root: Path, **_) -> FewShotDataset:
    """images_background_small1.zip: 136 characters of 5 alphabets."""
    return _omniglot("omniglot-small1", OMNIGLOT_ZIPS[:1], root)


@register_dataset("omniglot-small2")
def load_omniglot_small2(root: Path, **_) -> FewShotDataset:
    """images_background_small2.zip: 156 characters of 5 alphabets."""
    return _omniglot("omniglot-small2", OMNIGLOT_ZIPS[1:], root)


def read_answer_key(text: str, run: str, where: str) -> dict[int, int]:
    """``{test item number: training class number}`` from a run's ``class_labels.txt``."""
    key: dict[int, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        m = RUN_KEY_LINE.match(line.strip())
        if not m or m.group(1) != run or m.group(3) != run:
            raise ValueError(f"{where}:{lineno}: expected '{run}/test/itemNN.png {run}/training/classNN.png', "
                             f"got {line!r}")
        key[int(m.group(2)[4:])] = int(m.group(4)[5:])
    return key


@register_dataset("omniglot-runs")
def load_omniglot_runs(root: Path, **_) -> FewShotDataset:
    """Omniglot's official 20 one-shot runs (20-way 1-shot), with their protocol episodes."""
    path = require_file(Path(root) / "omniglot" / "all_runs.zip", "omniglot-runs",
                        OMNIGLOT_SOURCE.format(name="all_runs.zip"))
    items, labels, episodes = [], [], []
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        runs = sorted({n.split("/")[0] for n in names if re.match(r"^run\d\d/", n)})
        for r, run in enumerate(runs):
            key_name = f"{run}/class_labels.txt"
            if key_name not in names:
                raise ValueError(f"{path}: {run} has no class_labels.txt; download all_runs.zip again")
            key = read_answer_key(zf.read(key_name).decode("ascii"), run, f"{path}:{key_name}")
            n_way = len(key)
            if sorted(key) != list(range(1, n_way + 1)) or sorted(key.values()) != list(range(1, n_way + 1)):
                raise ValueError(f"{path}:{key_name}: expected test items and classes 01..{n_way:02d}, each "
                                 "once; download all_runs.zip again")
            classes = tuple(f"{run}/class{c:02d}" for c in range(1, n_way + 1))
            support = []
            for c in range(1, n_way + 1):
                support.append(len(items))
                items.append(decode_image(zf.read(f"{run}/training/class{c:02d}.png"), f"{path}:{run}"))
                labels.append(classes[c - 1])
            query, query_labels = [], []
            for i in range(1, n_way + 1):
                query.append(len(items))
                items.append(decode_image(zf.read(f"{run}/test/item{i:02d}.png"), f"{path}:{run}"))
                labels.append(classes[key[i] - 1])
                query_labels.append(key[i] - 1)
            episodes.append(Episode(index=r, classes=classes, support=np.asarray(support, dtype=np.int64),
                                    support_labels=np.arange(n_way, dtype=np.int64),
                                    query=np.asarray(query, dtype=np.int64),
                                    query_labels=np.asarray(query_labels, dtype=np.int64)))
    return FewShotDataset(name="omniglot-runs", modality="image", items=items, labels=labels,
                          splits={"test": sorted(set(labels))}, source=str(path), episodes=episodes)


def unpacked_npz_member(npz: Path, member: str, namespace: str) -> Path:
    """``member`` of ``npz`` as a plain .npy file in the cache (unpacked once, atomically), for mmap."""
    folder = cache_dir() / namespace / file_sha256(npz)[:16]
    out = folder / f"{member}.npy"
    if out.is_file():
        return out
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{member}.npy.tmp-{os.getpid()}"
    try:
        with zipfile.ZipFile(npz) as zf, zf.open(f"{member}.npy") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 22)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, out)
    except KeyError as exc:
        raise ValueError(f"{npz}: expected an array {member!r} in the npz file; download it again") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(folder)
    return out


@register_dataset("font_glyphs")
def load_font_glyphs(root: Path, **_) -> FewShotDataset:
    """3,066 Unicode characters rendered from 357 font families, 64x64 white on black."""
    path = require_file(Path(root) / "font_glyphs" / "font_glyphs_64.npz", "font_glyphs", FONT_GLYPHS_SOURCE)
    with np.load(path) as npz:
        labels_int = npz["labels"]
        codepoints = npz["codepoints"]
    images = np.load(unpacked_npz_member(path, "images", "font_glyphs"), mmap_mode="r")
    if images.shape[0] != len(labels_int):
        raise ValueError(f"{path}: {images.shape[0]} images but {len(labels_int)} labels; download it again")
    names = [f"U+{int(c):04X}" for c in codepoints]
    return FewShotDataset(name="font_glyphs", modality="image", items=images,
                          labels=[names[i] for i in labels_int.tolist()], splits=load_split("font_glyphs"),
                          source=str(path))


__all__ = ["cache_dir", "decode_image", "read_answer_key", "read_omniglot_zip", "unpacked_npz_member"]

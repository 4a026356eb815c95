"""The store deletes only files its own records name; no file it or the prediction log writes is a symlink."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from fewshot import FewShotClassifier
from fewshot.cli import main
from fewshot.support.log import FILENAME, PredictionLog
from fewshot.store import StoreError, SupportStore

ROOT = Path(__file__).resolve().parents[1]


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_user_file_named_like_a_data_file_survives_every_write(tmp_path):
    store = SupportStore(tmp_path / "ix")
    store.write({"a": 1}, {"x": ("bin", b"first")})
    photo = store.path / "photo-20240101-deadbeef.jpg"  # matches the store's <key>-<8 digits>-<8 hex>.<ext>
    photo.write_bytes(b"a holiday")
    tmp_like = store.path / ".photo-20240101-deadbeef.jpg.tmp-12"
    tmp_like.write_bytes(b"also the user's")
    first = json.loads(store.manifest_path.read_text())["files"]["x"]["name"]
    store.write({"a": 2}, {"x": ("bin", b"second")})
    second = json.loads(store.manifest_path.read_text())
    assert second["retired"] == [first]
    store.write({"a": 3}, {"x": ("bin", b"third")})
    third = json.loads(store.manifest_path.read_text())["files"]["x"]["name"]
    assert photo.read_bytes() == b"a holiday" and tmp_like.read_bytes() == b"also the user's"
    assert _names(store.path) == sorted([".lock", "manifest.json", third, photo.name, tmp_like.name])


def test_index_create_into_a_non_empty_folder_is_refused_and_changes_nothing(tmp_path, tiny_text_model_dir):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "photo-20240101-deadbeef.jpg").write_bytes(b"a holiday")
    result = CliRunner().invoke(main, ["index", "create", str(folder), "--encoder", str(tiny_text_model_dir)])
    assert result.exit_code == 2, result.output
    assert "is not empty" in result.output and "photo-20240101-deadbeef.jpg" in result.output
    assert _names(folder) == ["photo-20240101-deadbeef.jpg"]
    assert (folder / "photo-20240101-deadbeef.jpg").read_bytes() == b"a holiday"
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(main, ["index", "create", str(empty), "--encoder", str(tiny_text_model_dir)])
    assert result.exit_code == 0, result.output


def test_index_create_under_a_file_is_refused(tmp_path, tiny_text_encoder):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StoreError, match="afile is a file, not a folder"):
        FewShotClassifier(tiny_text_encoder).create(tmp_path / "afile" / "ix")
    assert (tmp_path / "afile").read_text() == "x"


# Writes two generations, then a third killed right after it wrote its data files (before the commit).
KILLED = textwrap.dedent("""
    import os, signal, sys
    from fewshot import atomic
    from fewshot.store import SupportStore
    store = SupportStore(sys.argv[1])
    store.write({"n": 1}, {"x": ("bin", b"one"), "y": ("bin", b"uno")})
    store.write({"n": 2}, {"x": ("bin", b"two"), "y": ("bin", b"dos")})
    real, calls = atomic.atomic_write_bytes, [0]
    def dying(path, data):
        calls[0] += 1
        if calls[0] == 2:  # the second data file: leave its temp file behind, as a kill mid-write does
            open(os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp-99"), "wb").write(b"t")
            os.kill(os.getpid(), signal.SIGKILL)
        real(path, data)
    import fewshot.store
    fewshot.store.atomic_write_bytes = dying
    store.write({"n": 3}, {"x": ("bin", b"three"), "y": ("bin", b"tres")})
""")


def test_files_of_a_write_killed_before_its_commit_are_collected_by_the_next_write(tmp_path):
    folder = tmp_path / "ix"
    proc = subprocess.run([sys.executable, "-c", KILLED, str(folder)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True)
    assert proc.returncode == -9, proc.stderr
    committed = {f["name"] for f in json.loads((folder / "manifest.json").read_text())["files"].values()}
    strays = set(_names(folder)) - committed - {".lock", "manifest.json", ".pending"}
    assert len(strays) == 2  # generation 3's first data file and its second's temp file
    (folder / ".manifest.json.tmp-4242").write_text("{")  # a manifest temp file of a killed writer
    store = SupportStore(folder)
    assert store.read()[0] == {"n": 2}
    assert store.collect_garbage() == 3
    assert set(_names(folder)) == committed | {".lock", "manifest.json"}
    assert store.read()[0] == {"n": 2}  # nothing the manifest names went


def test_the_store_refuses_to_write_through_a_symlink(tmp_path):
    store = SupportStore(tmp_path / "ix")
    store.write({"a": 1}, {"x": ("bin", b"one")})
    outside = tmp_path / "outside"
    outside.write_text("keep")
    (store.path / ".pending").symlink_to(outside)
    with pytest.raises(StoreError, match="symbolic link"):
        store.write({"a": 2}, {"x": ("bin", b"two")})
    assert outside.read_text() == "keep" and store.read()[0] == {"a": 1}
    (store.path / ".pending").unlink()
    (store.path / ".lock").unlink()
    (store.path / ".lock").symlink_to(outside)
    with pytest.raises(StoreError, match="symbolic link"):
        store.write({"a": 2}, {"x": ("bin", b"two")})
    assert outside.read_text() == "keep"


def test_the_log_refuses_to_write_through_a_symlink(tmp_path):
    outside = tmp_path / "outside.jsonl"
    outside.write_text("")
    (tmp_path / "ix").mkdir()
    (tmp_path / "ix" / FILENAME).symlink_to(outside)
    with pytest.raises(ValueError, match="symbolic link"):
        PredictionLog.in_index(tmp_path / "ix", "index-A")
    assert outside.read_text() == ""


def _entry(q):
    return {"query": q, "labels": ["a", "b"], "scores": [0.9, 0.1], "generation": 1}


def test_a_complete_last_record_without_its_newline_is_kept(tmp_path):
    log = PredictionLog.in_index(tmp_path, "index-A")
    log.append([_entry("one"), _entry("two")])
    log.append_confirmation(1)
    path = tmp_path / FILENAME
    path.write_bytes(path.read_bytes().rstrip(b"\n"))  # another tool wrote the last record without "\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is dropped, so nothing to warn about
        assert [p["feedback"] for p in PredictionLog(path).read()] == [None, "confirmation"]
        later = PredictionLog.in_index(tmp_path, "index-A")
        assert later.append([_entry("three")]) == [2]
    assert [p["feedback"] for p in later.read()] == [None, "confirmation", None]
    assert path.read_bytes().endswith(b"\n") and len(path.read_text().splitlines()) == 5


def test_a_torn_last_line_is_dropped_with_a_warning(tmp_path):
    log = PredictionLog.in_index(tmp_path, "index-A")
    log.append([_entry("one")])
    path = tmp_path / FILENAME
    with open(path, "ab") as f:
        f.write(b'{"type":"confirmation","id":0,"ti')
    with pytest.warns(UserWarning, match="torn last line"):
        assert [p["feedback"] for p in PredictionLog(path).read()] == [None]
    with pytest.warns(UserWarning, match="removing a torn last line"):
        PredictionLog.in_index(tmp_path, "index-A").append([_entry("two")])

"""Hostile folders and paths: refused with one clear message (CLI exit 2, API ValueError), nothing on disk changed.

Tests run as root here, where chmod does not stop reads or writes, so an unreadable or
read-only folder is simulated at the call that meets it (PermissionError, as a real
read-only folder raises)."""
from __future__ import annotations

import errno
import json
import math
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fewshot import FewShotClassifier
from fewshot.cli import main
from fewshot.store import StoreError, SupportStore
from fewshot.support.folder import STORE_KEYS


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _files(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def ix(tmp_path, tiny_text_encoder) -> Path:
    path = tmp_path / "ix"
    FewShotClassifier(tiny_text_encoder).fit(["hello there", "book a flight"], ["greet", "travel"]).save(path)
    return path


def test_a_manifest_without_its_encoder_is_refused_by_load_list_and_predict(ix, tiny_text_model_dir, tmp_path):
    path = tmp_path / "cli"
    assert invoke("index", "create", path, "--encoder", tiny_text_model_dir).exit_code == 0
    for folder in (ix, path):
        meta, blobs = SupportStore(folder).read()  # rewritten with a valid checksum: a careful tamper
        meta.pop("encoder")
        SupportStore(folder).write(meta, {k: (("faiss" if k == "index" else "safetensors"), v) for k, v in blobs.items()})
    with pytest.raises(StoreError, match=r"manifest.json lacks the keys \['encoder'\]"):
        FewShotClassifier.load(ix)
    for args in (("list", path), ("predict", path, "hello")):
        r = invoke("index", *args)
        assert r.exit_code == 2 and "lacks the keys ['encoder']" in r.output and "Traceback" not in r.output, r.output


def _rewrite_manifest(folder: Path, **changes) -> None:
    """Change manifest keys and rewrite it with valid checksums: a careful tamper, or another program's bug."""
    meta, blobs = SupportStore(folder).read()
    meta.update(changes)
    SupportStore(folder).write(meta, {k: (("faiss" if k == "index" else "safetensors"), v) for k, v in blobs.items()})


@pytest.mark.parametrize("key, value, expected", [
    ("classes", {"greet": 1, "travel": 1}, "a list of class labels (strings or numbers)"),
    ("dim", "384x", "a positive integer"),
    ("counts", ["1", "x"], "a list of 2 positive integers, one per class"),
    ("counts", [1], "a list of 2 positive integers, one per class"),
    ("ids", "zz", "a list of 2 non-negative integers, one per class"),
    ("next_id", 2.5, "a non-negative integer"),
    ("threshold", "high", "null or a finite number"),
    ("fitted", "yes", "true or false"),
    ("index_options", [], "an object"),
    ("encoder", {"name": 3, "fingerprint": "x"}, "an object with the encoder's name and fingerprint (strings)"),
])
def test_a_manifest_with_recomputed_checksums_but_wrong_types_is_refused_naming_the_key(ix, key, value, expected):
    _rewrite_manifest(ix, **{key: value})
    before = _files(ix)
    with pytest.raises(StoreError, match=rf"manifest.json key '{key}': expected {re.escape(expected)}(, [a-z].*)?, got "):
        FewShotClassifier.load(ix)
    for args in (("list", ix), ("predict", ix, "hello"), ("stats", ix), ("add", ix, "--label", "x", "hi")):
        r = invoke("index", *args)
        assert r.exit_code == 2 and f"manifest.json key '{key}': expected {expected}" in r.output, (args, r.output)
        assert "Traceback" not in r.output and "restore the folder from a backup" in r.output
    assert _files(ix) == before


_json = st.recursive(st.none() | st.booleans() | st.integers(-3, 10**12) | st.floats(allow_nan=False) | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                     max_leaves=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from([k for k in STORE_KEYS if k != "kind"]), value=_json)
def test_any_json_value_under_a_manifest_key_loads_or_is_refused_with_a_store_error(ix, tiny_text_encoder, key, value):
    """Whatever value a tamper puts under a key, describe and load give a working index or a StoreError/ValueError,
    never another exception (TypeError, KeyError, numpy's, ...)."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ix"
        shutil.copytree(ix, folder)
        _rewrite_manifest(folder, **{key: value})
        for read in (FewShotClassifier.describe, lambda f: FewShotClassifier.load(f, encoder=tiny_text_encoder)
                     .predict(["hello there"])):
            try:
                read(folder)
            except ValueError:
                pass


def test_an_unreadable_or_read_only_index_folder_is_a_clear_error(ix, monkeypatch):
    before = _files(ix)
    real = Path.read_bytes

    def unreadable(self):
        if self.parent == ix:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", unreadable)
    with pytest.raises(StoreError, match=r"cannot read .*ix \(Permission denied.*check that the folder is readable"):
        FewShotClassifier.load(ix)
    r = invoke("index", "list", ix)
    assert r.exit_code == 2 and "cannot read" in r.output, r.output
    monkeypatch.undo()

    import fewshot.store

    def read_only(path, data):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(fewshot.store, "atomic_write_bytes", read_only)
    r = invoke("index", "add", ix, "--label", "music", "play a song")
    assert r.exit_code == 2 and "cannot write to" in r.output and "Read-only file system" in r.output, r.output
    monkeypatch.undo()
    assert _files(ix) == before


@pytest.fixture
def read_only(monkeypatch):
    """Make a folder read-only for this process: chmod it, or, as root (whom permissions do not stop), refuse
    with EACCES every open for writing under it, as the kernel refuses a user a folder that is not theirs."""
    import os

    made = []

    def apply(folder: Path) -> None:
        if os.geteuid() != 0:
            for p in [*folder.iterdir(), folder]:
                made.append((p, p.stat().st_mode))
                p.chmod(0o555 if p.is_dir() else 0o444)
            return
        real = os.open
        writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

        def open_(path, flags, *a, **kw):
            if flags & writes and Path(path).parent == folder:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real(path, flags, *a, **kw)

        monkeypatch.setattr(os, "open", open_)

    yield apply
    for p, mode in reversed(made):
        p.chmod(mode)


@pytest.mark.parametrize("lock_file", [True, False])
def test_stats_reads_a_read_only_index_and_predict_log_is_refused_writing_nothing(ix, read_only, lock_file):
    r = invoke("index", "predict", ix, "--log", "hello there")
    assert r.exit_code == 0, r.output
    if not lock_file:  # a log copied without its lock file: none can be made in a read-only folder
        (ix / ".predictions.jsonl.lock").unlink()
    before = _files(ix)
    read_only(ix)
    r = invoke("index", "stats", ix, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["predictions"] == 1
    r = invoke("index", "predict", ix, "--log", "book a flight")
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert f"cannot write the prediction log {ix / 'predictions.jsonl'} (Permission denied)" in r.output
    assert "is read-only for this user; nothing was written: predict without --log" in r.output
    assert invoke("index", "predict", ix, "book a flight").exit_code == 0  # without --log it only reads
    assert _files(ix) == before


def test_a_log_path_that_is_a_folder_and_an_index_under_a_file_exit_2(ix, tmp_path, tiny_text_model_dir):
    (ix / "predictions.jsonl").mkdir()
    files = lambda: {p.name: p.read_bytes() for p in ix.iterdir() if p.is_file()}  # noqa: E731
    before = files()
    for args in (["predict", ix, "--log", "hello"], ["stats", ix]):
        r = invoke("index", *args)
        assert r.exit_code == 2 and "Traceback" not in r.output, r.output
        assert f"the prediction log {ix / 'predictions.jsonl'} is a folder, expected a file" in r.output, r.output
    assert files() == before and list((ix / "predictions.jsonl").iterdir()) == []
    (tmp_path / "afile").write_text("x")
    r = invoke("index", "create", tmp_path / "afile" / "ix", "--encoder", tiny_text_model_dir)
    assert r.exit_code == 2 and f"{tmp_path / 'afile'} is a file, not a folder" in r.output, r.output
    assert (tmp_path / "afile").read_text() == "x"


def test_save_to_a_path_that_is_a_file_is_a_clear_error(tiny_text_encoder, tmp_path):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    with pytest.raises(StoreError, match=r"expected a folder at .*taken but it is a file; choose another path"):
        FewShotClassifier(tiny_text_encoder).fit(["a b"], ["x"]).save(target)
    assert target.read_text() == "not a folder"


@pytest.mark.parametrize("flags,message", [
    (["--encoder", "no-such-encoder"], "no-such-encoder"),
    (["--checkpoint", "{empty}"], "expected a folder written by `fewshot train`"),
])
def test_a_failing_index_create_leaves_no_folder(tmp_path, flags, message):
    (tmp_path / "empty").mkdir()
    flags = [f.format(empty=tmp_path / "empty") for f in flags]
    r = invoke("index", "create", tmp_path / "new", *flags)
    assert r.exit_code == 2 and message in r.output, r.output
    assert not (tmp_path / "new").exists()
    assert list((tmp_path / "empty").iterdir()) == []


def test_a_model_folder_of_pickled_weights_is_refused_naming_safetensors(tiny_text_model_dir, tmp_path):
    from transformers import BertModel

    from fewshot.encoders import create_encoder

    folder = tmp_path / "pickled"
    folder.mkdir()
    for f in Path(tiny_text_model_dir).iterdir():
        if f.suffix != ".safetensors":
            (folder / f.name).write_bytes(f.read_bytes())
    torch.save(BertModel.from_pretrained(tiny_text_model_dir).state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"has no \*\.safetensors weights but \['pytorch_model\.bin'\]; fewshot "
                                         r"loads weights only from safetensors"):
        create_encoder(str(folder))
    r = invoke("index", "create", tmp_path / "ix", "--encoder", folder)
    assert r.exit_code == 2 and "only from safetensors" in r.output and not (tmp_path / "ix").exists()


@pytest.mark.parametrize("change, message", [
    ({"hidden_size": "32"}, r"Field 'hidden_size' expected int, got str"),
    ({"num_hidden_layers": 2.5}, r"Field 'num_hidden_layers' expected int, got float"),
    ([1, 2], r"expected a transformers model config \(a JSON object of fields\), got a JSON list"),
])
def test_a_model_folder_whose_config_has_a_wrong_type_is_refused_naming_the_file_and_field(
        tiny_text_model_dir, tmp_path, change, message):
    import json
    import shutil

    from fewshot.encoders import create_encoder

    folder = tmp_path / "model"
    shutil.copytree(tiny_text_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change} if isinstance(change, dict) else change))
    with pytest.raises(ValueError, match=rf"model/config\.json: .*{message}.*save the model again with save_pretrained"):
        create_encoder(str(folder))
    r = invoke("index", "create", tmp_path / "ix", "--encoder", folder)
    assert r.exit_code == 2 and "config.json" in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "ix").exists()


def test_non_finite_floats_are_refused_in_configs():
    from fewshot.config import FewShotConfig, TrainConfig

    for d, key in [({"train": {"lr": math.inf}}, "train.lr"), ({"train": {"weight_decay": "nan"}}, "train.weight_decay"),
                   ({"learner": {"name": "maml", "inner_lr": "inf"}}, "learner.inner_lr")]:
        with pytest.raises(ValueError, match=rf"config key '{key}': expected a finite number, got (inf|nan)"):
            FewShotConfig.from_dict(d)
    with pytest.raises(ValueError, match="'train.lr': expected a finite number, got inf"):
        TrainConfig(lr=math.inf)


def test_train_with_lr_inf_in_its_config_exits_2(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[train]\nlr = inf\n")
    r = invoke("train", "--config", cfg, "--out", tmp_path / "out")
    assert r.exit_code == 2 and "expected a finite number, got inf" in r.output, r.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [["run"], ["train"], ["bench"]])
def test_an_out_folder_that_cannot_be_written_is_refused_before_the_work_starts(tmp_path, monkeypatch, command):
    import fewshot.experiment
    import fewshot.training

    def started(*a, **kw):
        raise AssertionError("the work started before --out was checked")

    monkeypatch.setattr(fewshot.experiment, "run_experiment", started)
    monkeypatch.setattr(fewshot.experiment, "build_dataset", started)
    (tmp_path / "file.txt").write_text("x")
    r = invoke(*command, "--out", tmp_path / "file.txt" / "out")
    assert r.exit_code == 2 and "is a file; choose another folder" in r.output, r.output

    import tempfile

    def read_only(*a, **kw):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    r = invoke(*command, "--out", tmp_path / "out")
    assert r.exit_code == 2 and "cannot write in" in r.output and "Permission denied" in r.output, r.output


def test_train_out_an_index_folder_is_refused_before_the_work_starts_writing_nothing(ix, monkeypatch,
                                                                                    tiny_text_encoder):
    import fewshot.experiment

    def started(*a, **kw):
        raise AssertionError("the work started before --out was checked")

    monkeypatch.setattr(fewshot.experiment, "build_dataset", started)
    before = _files(ix)
    for args in (["--dataset", "clinc150"], ["--from-index", ix]):
        r = invoke("train", "--out", ix, *args)
        assert r.exit_code == 2 and "Traceback" not in r.output, r.output
        assert f"--out {ix} holds a support index (manifest kind 'fewshot-classifier'), not a `fewshot train` " \
               "checkpoint" in r.output and "choose another folder for --out" in r.output, r.output
    assert _files(ix) == before

    from fewshot.learners import create_learner  # the API refuses it too, before training
    from fewshot.training import meta_train

    with pytest.raises(ValueError, match=r"out_dir .*ix holds a support index"):
        meta_train(create_learner("protonet", tiny_text_encoder), None, out_dir=ix)
    assert _files(ix) == before

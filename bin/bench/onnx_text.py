"""A fewshot text encoder's transformer run by ONNX Runtime on the CPU, for ``bin/bench-encoder``.

The transformer (``input_ids``, ``attention_mask`` -> last hidden state) is exported with
``torch.onnx.export`` (TorchScript exporter, dynamic batch and sequence axes); mean pooling
stays outside the graph (:func:`embed`, the same masked mean as the eager encoder). ``int8``
is ONNX Runtime's own dynamic quantization (``onnxruntime.quantization.quantize_dynamic``:
int8 weights, uint8 activations quantized per call). Needs ``pip install onnxruntime onnx``;
fewshot itself does not.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

PRECISIONS = ("onnx-fp32", "onnx-int8")


def available() -> bool:
    """Whether onnxruntime and onnx can be imported (both are needed: run, and quantize)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


class _Hidden(torch.nn.Module):
    """The transformer alone, positional inputs, last hidden state out (what the graph holds)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def export(enc, folder: str | Path) -> dict[str, Path]:
    """Exports ``enc.model`` (an fp32 :class:`fewshot.encoders.text.TextEncoder`'s) to ``folder``.

    Returns {"onnx-fp32": path, "onnx-int8": path}. The int8 graph quantizes weights per output
    channel and keeps the feed-forward down-projections fp32, as ``fewshot.encoders.text.quantize_int8``
    does (found by their weights' input size, ``config.intermediate_size``). Measured on mpnet, cosine
    to eager fp32 embeddings of 64 CLINC150 texts (mean / min): every MatMul per tensor (ONNX
    Runtime's default) 0.75 / 0.49, per channel 0.87 / 0.75; down-projections kept fp32, per tensor
    0.982 / 0.952, per channel 0.989 / 0.958.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fp32, int8 = folder / "model.onnx", folder / "model-int8.onnx"
    sample = enc.preprocess(["an example sentence to trace", "a second, longer example sentence to trace with"])
    axes = {"batch": 0, "tokens": 1}
    dyn = {k: {v: k2 for k2, v in axes.items()} for k in ("input_ids", "attention_mask", "hidden")}
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(_Hidden(enc.model.eval()), (sample["input_ids"], sample["attention_mask"]), str(fp32),
                          input_names=["input_ids", "attention_mask"], output_names=["hidden"],
                          dynamic_axes=dyn, opset_version=17, dynamo=False)
    graph = onnx.load(str(fp32)).graph
    shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    inner = int(enc.model.config.intermediate_size)
    down = [n.name for n in graph.node if n.op_type == "MatMul"
            and any(len(shapes.get(i, ())) == 2 and shapes[i][0] == inner for i in n.input)]
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=down)
    return {"onnx-fp32": fp32, "onnx-int8": int8}


def session(path: str | Path, threads: int):
    """An ONNX Runtime CPU session of ``path`` with ``threads`` intra-op threads (one inter-op)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def embed(sess, enc, texts: Sequence[str], batch_size: int) -> np.ndarray:
    """Mean-pooled embeddings (n, hidden) of ``texts``: length-sorted batches like ``Encoder.encode``,
    tokenized by ``enc``'s tokenizer, the transformer run by ``sess``."""
    order = enc.batch_order(texts)
    out = np.empty((len(texts), int(enc.model.config.hidden_size)), dtype=np.float32)
    for s in range(0, len(texts), batch_size):
        idx = order[s:s + batch_size]
        tok = enc.tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=enc.max_length,
                            return_tensors="np")
        mask = tok["attention_mask"].astype(np.int64)
        hidden = sess.run(["hidden"], {"input_ids": tok["input_ids"].astype(np.int64), "attention_mask": mask})[0]
        m = mask[..., None].astype(np.float32)
        out[idx] = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return out


def agreement(a: np.ndarray, b: np.ndarray) -> dict:
    """Max abs difference and the min / mean cosine of matching rows of two embedding matrices."""
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"max_abs_diff": float(np.abs(a - b).max()), "min_cosine": float(cos.min()),
            "mean_cosine": float(cos.mean())}

"""Encoder throughput against the machine's physical limit (``bin/bench-encoder``).

Measures the inference throughput of ``minilm`` (all-MiniLM-L6-v2) and ``mpnet``
(all-mpnet-base-v2), each in fp32 and int8 (``precision="int8"``) through
:meth:`fewshot.encoders.base.Encoder.encode` (the path every evaluation uses), and
run by ONNX Runtime in fp32 and its own dynamic int8 (:mod:`onnx_text`), side by side
in alternating rounds, in examples and tokens per second at batch sizes 1 and 64 on
real CLINC150 texts, with each one's cosine to the eager fp32 embeddings, and compares
it with a limit estimated from first principles:

- FLOPs per example, counted from the model itself: every ``nn.Linear`` in the
  transformer does ``2 * in * out`` FLOPs per token (multiply + add), and
  self-attention adds ``QK^T`` and ``AV``: ``2 * 2 * seq_len * hidden`` per token
  per layer. Embedding lookups, layer norms, softmax and GELU are memory-bound
  and left out, so the estimate is a lower bound on work and the limit an
  upper bound on speed.
- This machine's matrix-multiply rate: the best of several timed
  ``torch.matmul`` of two ``n x n`` float32 matrices (``2 n^3`` FLOPs), with the
  same thread count as the encoder; for int8 layers, the rate of a dynamically
  quantized int8 ``n x n`` linear layer.

limit (tokens/s) = padded tokens / (int8 FLOPs / int8 rate + other FLOPs / fp32 rate),
for the padded length the batches actually run at (what the hardware is asked to do).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

import onnx_text
from alternating_rounds import AlternatingRounds
from benchmarks_md import command, publish
from fewshot.encoders.text import quantize_int8

SECTION = "encoder"


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best observed float32 matmul rate in GFLOP/s for two n x n matrices."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    torch.matmul(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def linear_flops_per_token(model) -> tuple[int, int, int]:
    """(FLOPs per token of the encoder's Linear layers, number of layers, hidden size).

    The pooler (applied to one token per example) is excluded; mean pooling does not use it.
    """
    per_token = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not name.startswith("pooler"):
            per_token += 2 * module.in_features * module.out_features
    return per_token, int(model.config.num_hidden_layers), int(model.config.hidden_size)


def flops_per_example(n_tokens: int, seq_len: int, linear_per_token: int, n_layers: int, hidden: int) -> float:
    """Linear layers on ``n_tokens`` tokens plus attention scores and mixing over ``seq_len`` positions."""
    return n_tokens * (linear_per_token + 4 * n_layers * seq_len * hidden)


def padded_lengths(lengths: np.ndarray, batch_size: int) -> np.ndarray:
    """Per example, the padded length of its batch when ``encode`` sorts by length and batches."""
    order = np.argsort(lengths, kind="stable")
    out = np.empty_like(lengths)
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        out[idx] = lengths[idx].max()
    return out


def sample_texts(n: int, seed: int = 0) -> list[str]:
    from fewshot.datasets import load_dataset

    data = load_dataset("clinc150")
    rng = np.random.default_rng(seed)
    return [data.items[int(i)] for i in rng.choice(len(data.items), size=n, replace=False)]


def int8_linear_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best observed rate (GFLOP/s) of a dynamically quantized int8 ``n x n`` linear layer on ``n`` rows."""
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    lin = torch.nn.Linear(n, n, bias=False)
    q = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8)[0]
    x = torch.randn(n, n, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        q(x)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            q(x)
            best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def n_params(model) -> int:
    """Parameters of a model, the packed weights of its dynamically quantized linear layers included."""
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    packed = sum(m.weight().numel() + (m.bias().numel() if m.bias() is not None else 0)
                 for m in model.modules() if isinstance(m, QLinear))
    return sum(p.numel() for p in model.parameters()) + packed


def linear_flops_by_precision(model) -> tuple[int, int]:
    """(FLOPs per token of fp32 ``nn.Linear`` layers, of dynamically quantized int8 ones); pooler left out."""
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    fp32 = int8 = 0
    for name, module in model.named_modules():
        if name.startswith("pooler"):
            continue
        if isinstance(module, QLinear):
            int8 += 2 * module.in_features * module.out_features
        elif isinstance(module, torch.nn.Linear):
            fp32 += 2 * module.in_features * module.out_features
    return fp32, int8


def _variants(name: str, precisions, workdir: str) -> dict:
    """Per precision: (encode(texts, batch_size) -> (n, d) array, the model whose linear layers set the limit)."""
    from fewshot.encoders import create_encoder

    fp32 = create_encoder(name).eval()
    out = {}
    if any(p in onnx_text.PRECISIONS for p in precisions):
        paths = onnx_text.export(fp32, workdir)
    for precision in precisions:
        if precision in onnx_text.PRECISIONS:
            sess = onnx_text.session(paths[precision], torch.get_num_threads())
            # onnx-int8 quantizes the layers torch's int8 does: its limit is counted on that model
            limit_model = quantize_int8(copy.deepcopy(fp32.model)) if precision == "onnx-int8" else fp32.model
            out[precision] = (lambda t, bs, s=sess: onnx_text.embed(s, fp32, t, bs), limit_model)
        else:
            enc = fp32 if precision == "fp32" else create_encoder(name, precision=precision).eval()
            out[precision] = (lambda t, bs, e=enc: np.asarray(e.encode(t, batch_size=bs, device="cpu")), enc.model)
    return fp32, out


def time_encoder(name: str, precisions, texts: list[str], batch_sizes, n_texts_bs1: int, rates: dict,
                 rounds: int = 4) -> list[dict]:
    """One encoder at every precision: examples/s and tokens/s at each batch size, against the limit.

    At each batch size the precisions take turns over ``rounds`` slices of the texts, the order
    flipping every round (:class:`alternating_rounds.AlternatingRounds`), so load drift on a
    shared machine falls on all of them alike. Agreement: cosine of each precision's embeddings
    of the first 64 texts to eager fp32's.
    """
    with tempfile.TemporaryDirectory(prefix=f"bench-encoder-{name}-") as workdir:
        fp32, variants = _variants(name, precisions, workdir)
        tok = fp32.tokenizer(texts, truncation=True, max_length=fp32.max_length)
        lengths = np.asarray([len(x) for x in tok["input_ids"]])
        n_layers, hidden = int(fp32.model.config.num_hidden_layers), int(fp32.model.config.hidden_size)
        ref = variants["fp32"][0](texts[:64], 64) if "fp32" in variants else None
        agree = {p: onnx_text.agreement(ref, f(texts[:64], 64)) if ref is not None else None
                 for p, (f, _) in variants.items()}  # doubles as the warm-up
        rows = []
        for bs in batch_sizes:
            n = n_texts_bs1 if bs == 1 else len(texts)
            secs = dict.fromkeys(variants, 0.0)
            for precision, (r,) in AlternatingRounds(rounds, rounds).turns(variants):
                part = texts[:n][r::rounds]
                t = time.perf_counter()
                variants[precision][0](part, bs)
                secs[precision] += time.perf_counter() - t
            sub_len = lengths[:n]
            # per-slice batching, as timed
            padded = np.concatenate([padded_lengths(sub_len[r::rounds], bs) for r in range(rounds)])
            attn = float(sum(4 * n_layers * P * hidden * P for P in padded))  # attention FLOPs of all padded tokens
            for precision, (_, model) in variants.items():
                lin_fp32, lin_int8 = linear_flops_by_precision(model)
                # seconds at the limit: int8 linear FLOPs at the int8 rate, the rest (fp32 linear, attention)
                limit_s = padded.sum() * lin_int8 / rates["int8"] + (padded.sum() * lin_fp32 + attn) / rates["fp32"]
                s = secs[precision]
                rows.append({"encoder": name, "precision": precision, "batch_size": bs, "examples": n, "seconds": s,
                             "examples_per_s": n / s, "ms_per_example": 1000 * s / n,
                             "tokens_per_s": float(sub_len.sum()) / s, "padded_tokens_per_s": float(padded.sum()) / s,
                             "mean_tokens": float(sub_len.mean()), "mean_padded_tokens": float(padded.mean()),
                             "limit_padded_tokens_per_s": float(padded.sum()) / limit_s,
                             "params": n_params(fp32.model), "agreement": agree[precision],
                             "linear_mflop_per_token": (lin_fp32 + lin_int8) / 1e6,
                             "int8_share": lin_int8 / (lin_fp32 + lin_int8)})
    return rows


def run(encoders=("minilm", "mpnet"), precisions=("fp32", "int8", "onnx-fp32", "onnx-int8"), batch_sizes=(1, 64),
        n_texts: int = 512, n_texts_bs1: int = 64, write: bool = True) -> dict:
    load_before = os.getloadavg()[0]
    texts = sample_texts(n_texts)
    rates = {"fp32": matmul_gflops() * 1e9, "int8": int8_linear_gflops() * 1e9}
    rows = [row for name in encoders for row in time_encoder(name, precisions, texts, batch_sizes, n_texts_bs1, rates)]
    out = {"load": (load_before, os.getloadavg()[0], os.cpu_count()), "matmul_gflops": rates["fp32"] / 1e9,
           "int8_gflops": rates["int8"] / 1e9, "threads": torch.get_num_threads(), "rows": rows,
           "versions": {"torch": torch.__version__, "onnxruntime": _onnxruntime_version()},
           "command": command("bench-encoder")}
    publish(SECTION, render(out), write)
    return out


def _onnxruntime_version() -> str | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__


def render(r: dict) -> str:
    v = r.get("versions", {})
    lines = [
        "## Encoder throughput: minilm and mpnet, eager fp32 and int8, ONNX Runtime fp32 and int8, against this "
        "machine's limit",
        "",
        f"Command: `{r['command']}`",
        "",
        f"On a seeded sample of CLINC150 texts, CPU, {r['threads']} thread(s) for torch and for ONNX Runtime's "
        f"intra-op pool (torch {v.get('torch')}, onnxruntime {v.get('onnxruntime')}); length-sorted batches. "
        "*fp32* / *int8*: `Encoder.encode` (the path every evaluation uses), int8 being `precision = \"int8\"` "
        "(`fewshot.encoders.text.quantize_int8`: torch's dynamic int8 linear layers, the feed-forward "
        "down-projections kept fp32). *onnx-fp32* / *onnx-int8*: the transformer exported with `torch.onnx.export` "
        "(dynamic batch and sequence axes) and run by an ONNX Runtime CPU session (all graph optimisations), mean "
        "pooling in numpy (`bin/bench/onnx_text.py`); onnx-int8 is ONNX Runtime's `quantize_dynamic` (int8 weights "
        "per channel, the same down-projections kept fp32). The precisions take turns over 4 slices of the texts, "
        "the order flipping each round, so load drift falls on all alike. cos: cosine of each precision's "
        "embeddings of 64 texts to eager fp32's (mean / min).",
        "",
        "| encoder | precision | batch size | examples | examples/s | ms/example | tokens/s (padded) | limit tokens/s "
        "(padded) | % of limit | cos to fp32 (mean / min) |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for x in r["rows"]:
        a = x.get("agreement")
        cos = f"{a['mean_cosine']:.4f} / {a['min_cosine']:.4f}" if a else "-"
        lines.append(
            f"| {x['encoder']} ({x['params'] / 1e6:.1f}M) | {x['precision']} | {x['batch_size']} | {x['examples']} | "
            f"{x['examples_per_s']:.1f} | {x['ms_per_example']:.1f} | {x['tokens_per_s']:.0f} "
            f"({x['padded_tokens_per_s']:.0f}) | {x['limit_padded_tokens_per_s']:.0f} | "
            f"{100 * x['padded_tokens_per_s'] / x['limit_padded_tokens_per_s']:.0f}% | {cos} |")
    lines += speedups(r["rows"])
    lines += [
        "",
        "How the limit is estimated:",
        "- Work per padded token: 2 x in x out FLOPs of every `nn.Linear` of the transformer (the pooler is unused "
        "by mean pooling) plus attention `QK^T` and `AV` (4 x layers x seq_len x hidden). Embedding lookups, layer "
        "norm, softmax and GELU are left out (memory-bound), so the limit is optimistic.",
        f"- Rates: best of 5 timed `torch.matmul` of two 2048 x 2048 fp32 matrices: **{r['matmul_gflops']:.1f} "
        f"GFLOP/s**; best of 5 of a dynamically quantized int8 2048 x 2048 linear layer on 2048 rows (quantizing "
        f"its input included): **{r['int8_gflops']:.1f} GFLOP/s**. An int8 encoder's limit charges its int8 "
        "linear FLOPs at the int8 rate and the rest at the fp32 rate.",
        "- Batch size 1 pays Python, tokenizer and per-call overhead on every example and its matrices are too "
        "small to reach the matmul rate.",
        f"- The machine is shared: 1-minute load average {r['load'][0]:.1f} before and {r['load'][1]:.1f} after "
        f"the run on {r['load'][2]} cores, so every figure (the rates included) is what this process got; "
        "rerun on an idle machine.",
    ]
    return "\n".join(lines)


def speedups(rows: list[dict]) -> list[str]:
    """Lines giving, per encoder and batch size, each ONNX Runtime row's examples/s over its eager counterpart's."""
    rate = {(x["encoder"], x["batch_size"], x["precision"]): x["examples_per_s"] for x in rows}
    pairs = (("onnx-fp32", "fp32"), ("onnx-int8", "int8"), ("onnx-int8", "fp32"))
    out = []
    for enc, bs in dict.fromkeys((x["encoder"], x["batch_size"]) for x in rows):
        got = [f"{a} / {b} {rate[enc, bs, a] / rate[enc, bs, b]:.2f}x" for a, b in pairs
               if (enc, bs, a) in rate and (enc, bs, b) in rate]
        if got:
            out.append(f"- {enc}, batch size {bs}: " + ", ".join(got))
    if out:
        out = ["", "ONNX Runtime over eager torch (examples/s, same run):"] + out + [
            "", "ONNX Runtime is measured here only: fewshot's `--precision` offers fp32 and int8 (torch); "
            "`bin/bench/onnx_text.py` is the benchmark's own export. ONNX Runtime's default `quantize_dynamic` "
            "(every MatMul, weights per tensor) is not what onnx-int8 runs: on mpnet its embeddings of the same "
            "64 texts had cosine 0.75 (mean) / 0.49 (min) to eager fp32's."]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bin/bench-encoder", description=__doc__.split("\n\n")[0])
    p.add_argument("--texts", type=int, default=512, help="texts timed at batch size 64")
    p.add_argument("--texts-bs1", type=int, default=64, help="texts timed at batch size 1")
    p.add_argument("--encoders", default="minilm,mpnet", help="comma-separated encoder names")
    p.add_argument("--precisions", default="fp32,int8,onnx-fp32,onnx-int8",
                   help="comma-separated, of fp32, int8, onnx-fp32, onnx-int8 (onnx-*: pip install onnxruntime onnx)")
    p.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.texts < 64 or args.texts_bs1 < 1:
        p.error(f"--texts must be at least 64 and --texts-bs1 at least 1, got {args.texts} and {args.texts_bs1}")
    precisions = tuple(x for x in args.precisions.split(",") if x)
    known = ("fp32", "int8") + onnx_text.PRECISIONS
    if not precisions or set(precisions) - set(known):
        p.error(f"--precisions must be a comma-separated list of {', '.join(known)}, got {args.precisions!r}")
    if set(precisions) & set(onnx_text.PRECISIONS) and not onnx_text.available():
        p.error("--precisions onnx-fp32 / onnx-int8 need onnxruntime and onnx: pip install onnxruntime onnx "
                "(or drop them: --precisions fp32,int8)")
    out = run(encoders=tuple(x for x in args.encoders.split(",") if x), precisions=precisions,
              n_texts=args.texts, n_texts_bs1=args.texts_bs1, write=not args.no_write)
    if args.json:
        print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

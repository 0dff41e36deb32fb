"""Index benchmark: encoding speed and accuracy by precision, build time, size, latency/QPS and recall@10 of flat / HNSW / IVF-PQ.

    python eval/bench_index.py                    # 2,000 passages of the built-in corpus, 500 NQ-open questions
    python eval/bench_index.py --passages 0       # the whole built-in corpus (~4 min of encoding on 2 cores)

Baselines, measured in the same run: encoding against a bare `SentenceTransformer.encode` over the
same passage texts (ratio > 1 means rag's sharded, resumable build is faster); recall against the
exact flat index.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag.corpus import read_passages  # noqa: E402
from rag.embeddings import encode_shard  # noqa: E402
from rag.encoders import EncoderConfig, load_encoder, passage_text  # noqa: E402
from rag.index import KINDS, DenseIndex, IndexConfig  # noqa: E402
from rag.paths import default_index, shared_data  # noqa: E402
from rag.store import PassageStore  # noqa: E402

NQ_DEV = shared_data() / "nq-open" / "NQ-open.dev.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=2000, help="passages of the built-in corpus for speed and index kinds (0 = all)")
    ap.add_argument("--questions", type=int, default=500, help="NQ-open dev questions used as queries for the index kinds")
    ap.add_argument("--index", default=str(default_index()), help="for top-20 accuracy: the built-in corpus's index (its store and fp32 vectors)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2, help="alternating encoding rounds; the best time of each side counts")
    ap.add_argument("--compressed-only", action="store_true", help="only the compressed kinds against flat and HNSW over all the vectors of --index")
    args = ap.parse_args()
    if args.compressed_only:
        return compressed_kinds(args.index)

    passages = list(read_passages("default"))
    passages = passages[: args.passages] if args.passages else passages
    questions = [json.loads(line)["question"] for line in islice(open(NQ_DEV), args.questions)]
    encoders = {p: load_encoder(EncoderConfig(precision=p)) for p in ("fp32", "bf16", "int8")}
    vectors = encoding_speed(passages, encoders, args.rounds)
    accuracy_by_precision(args.index, encoders)
    index_kinds(vectors, encoders["fp32"].encode_queries(questions), args.k)
    compressed_kinds(args.index)


def encoding_speed(passages, encoders: dict, rounds: int) -> np.ndarray:
    """passages/s: a bare SentenceTransformer.encode in fp32 (the baseline) against rag's store-backed
    shard encoder in fp32 and bf16 autocast, alternating rounds, each keeping its best time."""
    texts = [passage_text(p) for p in passages]
    bare_model = encoders["fp32"].model
    bare_model.encode(texts[:64], batch_size=64)  # warm-up: first-call allocations are not encoding speed
    best = {"baseline": float("inf"), **{p: float("inf") for p in encoders}}
    vectors = {}
    with tempfile.TemporaryDirectory() as tmp, PassageStore(Path(tmp) / "s.sqlite") as store:
        store.add(passages)
        for _ in range(rounds):
            t0 = time.perf_counter()
            bare = bare_model.encode(texts, batch_size=64, normalize_embeddings=True)
            best["baseline"] = min(best["baseline"], time.perf_counter() - t0)
            for precision, encoder in encoders.items():
                t0 = time.perf_counter()
                vectors[precision] = encode_shard(store, encoder, 0, len(store))
                best[precision] = min(best[precision], time.perf_counter() - t0)
    assert np.allclose(vectors["fp32"], bare, atol=1e-4), "rag's fp32 vectors differ from the bare encoder's"
    n = len(passages)
    print(f"\nencoding {n} passages (all-MiniLM-L6-v2, CPU, best of {rounds} alternating rounds)")
    labels = {"baseline": "SentenceTransformer.encode fp32 (baseline)", "fp32": "rag fp32", "bf16": "rag bf16 autocast (auto here)", "int8": "rag int8 (onnxruntime)"}
    for name, label in labels.items():
        cosine = np.sum(vectors["fp32"] * vectors[name], axis=1) if name in ("bf16", "int8") else None
        similar = f"  cosine to fp32: min {cosine.min():.5f}, mean {cosine.mean():.5f}" if cosine is not None else ""
        print(f"  {label:44} {n / best[name]:7.1f} passages/s  {best['baseline'] / best[name]:5.2f}x{similar}")
    return vectors["fp32"]


def accuracy_by_precision(index_path: str, encoders: dict) -> None:
    """Top-20 accuracy on all of NQ-open dev over the built-in corpus, passages and queries in fp32 vs bf16."""
    from rag.index_folder import open_index
    from rag.metrics import top_k_accuracy
    from rag.qa_data import load_qa

    folder = open_index(index_path)
    passages = [p for batch in folder.store.iter_batches(4096) for p in batch]
    examples = load_qa(NQ_DEV)
    print(f"\ntop-k accuracy, {len(examples)} NQ-open dev questions over {len(passages)} passages (DPR's answer rule)")
    for precision, encoder in encoders.items():
        t0 = time.perf_counter()
        vectors = encoder.encode_passages(passages) if precision != folder.manifest.precision else folder.dense.reconstruct(np.arange(len(passages)))
        index = DenseIndex.build(vectors)
        hits = folder.store.hits(index.search(encoder.encode_queries([e.question for e in examples]), 20))
        accuracy = top_k_accuracy(hits, [e.answers for e in examples], (1, 5, 20))
        print(f"  {precision:5} top-1 {accuracy[1] * 100:5.1f}  top-5 {accuracy[5] * 100:5.1f}  top-20 {accuracy[20] * 100:5.1f}   ({time.perf_counter() - t0:.0f} s)")


# (name, IndexConfig): what a compressed index can be at <= 96 bytes per vector (refine data counted), beside flat and HNSW.
COMPRESSED = [
    ("flat", IndexConfig(kind="flat")),
    ("hnsw", IndexConfig(kind="hnsw")),
    ("ivfpq default (PQ96, no refine)", IndexConfig(kind="ivfpq")),
    ("ivfpq PQ96 + sq8 refine", IndexConfig(kind="ivfpq", pq_m=96, refine="sq8")),
    ("ivfpq PQ96 + flat refine", IndexConfig(kind="ivfpq", pq_m=96, refine="flat")),
    ("ivfpq OPQ96, no refine", IndexConfig(kind="ivfpq", pq_m=96, opq=True, refine="none")),
    ("ivfpq PQ48, no refine", IndexConfig(kind="ivfpq", pq_m=48, refine="none")),
]


def compressed_kinds(index_path: str, k: int = 20) -> None:
    """bytes/vector, build seconds, QPS, recall@20 against flat and top-20 accuracy on all of NQ-open dev, over the
    vectors of the index at `index_path` (the built-in corpus's by default; `--index indexes/wiki2015` for 654k)."""
    from rag.index_folder import open_index
    from rag.metrics import top_k_accuracy
    from rag.qa_data import load_qa

    folder = open_index(index_path)
    vectors = folder.dense.reconstruct(np.arange(len(folder.dense)))
    examples = load_qa(NQ_DEV)
    queries = load_encoder(EncoderConfig(spec=folder.manifest.encoder)).encode_queries([e.question for e in examples])
    print(f"\ncompressed indexes over {index_path} ({len(vectors)} vectors), {len(examples)} NQ-open dev questions, k={k}")
    print(f"  {'kind':36} {'code B/vec':>10} {'file B/vec':>10} {'build s':>8} {'QPS':>8} {'recall@20':>10} {'top-20':>7}")
    flat_rows = None
    with tempfile.TemporaryDirectory() as tmp:
        for name, config in COMPRESSED:
            t0 = time.perf_counter()
            index = DenseIndex.build(vectors, config)
            build_s = time.perf_counter() - t0
            path = Path(tmp) / "i.faiss"
            index.save(path)
            t0 = time.perf_counter()
            result = index.search(queries, k)
            qps = len(queries) / (time.perf_counter() - t0)
            flat_rows = result.rows if flat_rows is None else flat_rows
            recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(result.rows, flat_rows)])
            top20 = top_k_accuracy(folder.store.hits(result), [e.answers for e in examples], (k,))[k]
            print(f"  {name:36} {_code_bytes(index.config, vectors.shape[1]):10d} {path.stat().st_size / len(vectors):10.1f} {build_s:8.0f} {qps:8.0f} {recall:10.3f} {top20 * 100:7.1f}")


def _code_bytes(config: IndexConfig, dim: int) -> int:
    """Bytes stored per vector, refine data counted, coarse centroids not (they do not grow with the corpus)."""
    if config.kind != "ivfpq":
        return 4 * dim
    return config.pq_m * config.pq_nbits // 8 + {"none": 0, "sq8": dim, "flat": 4 * dim}[config.refine]


def index_kinds(vectors: np.ndarray, queries: np.ndarray, k: int) -> None:
    n = len(vectors)
    flat_rows = None
    rows_out = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            t0 = time.perf_counter()
            index = DenseIndex.build(vectors, IndexConfig(kind=kind))
            build_s = time.perf_counter() - t0
            path = Path(tmp) / f"{kind}.faiss"
            index.save(path)
            index.search(queries[:8], k)  # warm-up
            t0 = time.perf_counter()
            result = index.search(queries, k)
            batch_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            for q in queries[:100]:
                index.search(q[None], k)
            single_ms = (time.perf_counter() - t0) / min(100, len(queries)) * 1000
            if flat_rows is None:
                flat_rows = result.rows
            recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(result.rows, flat_rows)])
            rows_out.append((kind, build_s, path.stat().st_size / n, single_ms, len(queries) / batch_s, recall))

    print(f"\nindexes over {n} vectors, {len(queries)} NQ-open questions, k={k} (recall vs flat)")
    print(f"  {'kind':6} {'build s':>8} {'bytes/passage':>14} {'latency ms':>11} {'QPS (batch)':>12} {'recall@' + str(k):>10}")
    for kind, build_s, bpp, ms, qps, recall in rows_out:
        print(f"  {kind:6} {build_s:8.2f} {bpp:14.1f} {ms:11.3f} {qps:12.0f} {recall:10.3f}")


if __name__ == "__main__":
    main()

"""Scale benchmark: Ray encoding throughput, and flat vs IVF-PQ (vs HNSW bytes) on 1M synthetic vectors.

    nice -n 10 .venv/bin/python eval/bench_scale.py            # ~8 min on 2 cores
    nice -n 10 .venv/bin/python eval/bench_scale.py --n 200000 --passages 256 --opq

Part 1 encodes the first --passages passages of the built-in corpus (real MiniLM) three ways and
reports passages/s and the ratio to the single-process baseline (rag.embeddings.encode_store_shards):
Ray with 1 worker (all cores) and with 2 workers (half the cores each), on one local Ray cluster.
Times include each worker's model load, as a build's would (a fresh local cluster per run;
the cluster's own start-up, ~5 s, is not counted).

Part 2 builds flat and IVF-PQ (parameters chosen by rag.index.resolve_ivfpq from n) over --n
synthetic 384-d unit vectors (a 64-d Gaussian mixture, lifted to 384-d, plus noise: PQ on pure noise
would understate real recall) and reports bytes per vector (saved file / n), build seconds, QPS
(1,000 queries, k=20, batch search), and recall@20 against the flat index's exact top-20; HNSW's
bytes per vector comes from a 20k-vector build (its size per vector does not depend on n).
Prints markdown tables; writes eval/out/bench_scale.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rag.corpus import read_passages  # noqa: E402
from rag.distributed import ray_session, ray_shard_encoder  # noqa: E402
from rag.embeddings import encode_store_shards, shard_paths  # noqa: E402
from rag.encoders import EncoderConfig, load_encoder  # noqa: E402
from rag.index import DenseIndex, IndexConfig  # noqa: E402
from rag.store import PassageStore  # noqa: E402


def bench_encoding(n_passages: int, shard_size: int, work: Path) -> list[dict]:
    store_path = work / "passages.sqlite"
    with PassageStore(store_path) as store:
        store.add(islice(read_passages("default"), n_passages))
    rows = []
    start = time.perf_counter()
    encode_store_shards(store_path, work / "single", shard_size, load_encoder(EncoderConfig()), progress=False)
    single = time.perf_counter() - start
    reference = np.concatenate([np.load(p) for p in shard_paths(work / "single", n_passages, shard_size)])
    rows.append({"backend": "single process (baseline)", "seconds": single})
    cpus = os.cpu_count() or 2
    for workers in (1, 2):
        with ray_session(num_cpus=cpus, object_store_memory=200 * 2**20):  # a fresh cluster: no warm workers
            out = work / f"ray{workers}"
            start = time.perf_counter()
            ray_shard_encoder(num_workers=workers, progress=False)(store_path, out, shard_size, EncoderConfig())
            seconds = time.perf_counter() - start
            got = np.concatenate([np.load(p) for p in shard_paths(out, n_passages, shard_size)])
            assert np.allclose(got, reference, atol=1e-4), "Ray shards differ from the in-process ones"
            rows.append({"backend": f"Ray, {workers} worker(s) x {cpus // workers} CPU", "seconds": seconds})
    for r in rows:
        r["passages_per_s"] = n_passages / r["seconds"]
        r["ratio_vs_single"] = single / r["seconds"]
    return rows


def synthetic(n: int, dim: int, rng: np.random.Generator, lift: np.ndarray, centers: np.ndarray) -> np.ndarray:
    out = np.empty((n, dim), np.float32)
    for lo in range(0, n, 100_000):
        hi = min(n, lo + 100_000)
        z = centers[rng.integers(0, len(centers), hi - lo)] + rng.standard_normal((hi - lo, lift.shape[0]), dtype=np.float32)
        x = z @ lift + 0.3 * rng.standard_normal((hi - lo, dim), dtype=np.float32)
        out[lo:hi] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def bench_indexes(n: int, dim: int, opq: bool, work: Path) -> list[dict]:
    rng = np.random.default_rng(0)
    lift = rng.standard_normal((64, dim), dtype=np.float32) / 8
    centers = 2 * rng.standard_normal((1000, 64), dtype=np.float32)
    x = synthetic(n, dim, rng, lift, centers)
    q = synthetic(1000, dim, rng, lift, centers)
    k = 20
    configs = [("flat", IndexConfig(kind="flat")), ("ivfpq", IndexConfig(kind="ivfpq"))]
    if opq:
        configs.append(("ivfpq+opq", IndexConfig(kind="ivfpq", opq=True)))
    rows, truth = [], None
    for name, config in configs:
        start = time.perf_counter()
        dense = DenseIndex.build(x, config)
        build_s = time.perf_counter() - start
        path = work / f"{name}.faiss"
        dense.save(path)
        for mmap in (False, True):
            loaded = DenseIndex.load(path, dense.config, mmap=mmap)
            loaded.search(q[:10], k)  # warm up
            start = time.perf_counter()
            result = loaded.search(q, k)
            qps = len(q) / (time.perf_counter() - start)
            if truth is None:
                truth = result.rows
            recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(result.rows, truth)])
            rows.append({
                "index": name + (" (mmap)" if mmap else ""),
                "params": "" if name == "flat" else f"nlist={dense.config.ivf_nlist} nprobe={dense.config.ivf_nprobe} m={dense.config.pq_m}x{dense.config.pq_nbits}b",
                "bytes_per_vector": path.stat().st_size / n,
                "build_s": build_s,
                "qps": qps,
                f"recall@{k}_vs_flat": recall,
            })
        del dense, loaded
    hnsw = DenseIndex.build(x[:20_000], IndexConfig(kind="hnsw"))
    hnsw.save(work / "hnsw.faiss")
    rows.append({"index": "hnsw (20k sample, size only)", "params": "M=32", "bytes_per_vector": (work / "hnsw.faiss").stat().st_size / 20_000})
    return rows


def table(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    fmt = lambda v: f"{v:,.2f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=512, help="passages encoded in part 1")
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("--n", type=int, default=1_000_000, help="synthetic vectors in part 2")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--opq", action="store_true", help="also IVF-PQ with OPQ (slow to train on CPU)")
    parser.add_argument("--skip-encoding", action="store_true")
    args = parser.parse_args()
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_encoding:
            report["encoding"] = bench_encoding(args.passages, args.shard_size, Path(tmp))
            print(f"\n## Encoding {args.passages} passages (MiniLM, CPU, {os.cpu_count()} cores)\n\n{table(report['encoding'])}", flush=True)
        report["indexes"] = bench_indexes(args.n, args.dim, args.opq, Path(tmp))
        print(f"\n## {args.n:,} synthetic {args.dim}-d vectors, 1,000 queries, k=20\n\n{table(report['indexes'])}")
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    (out / "bench_scale.json").write_text(json.dumps({"args": vars(args), **report}, indent=2))


if __name__ == "__main__":
    main()

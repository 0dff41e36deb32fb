"""Scale benchmark: build and search synthetic corpora of 100k-5M passages through rag's real store,
BM25 and FAISS paths; each phase in its own process, so its peak memory is its own.

    nice -n 5 .venv/bin/python eval/bench_scale.py --sizes 100000 --work /tmp/rag-scale
    nice -n 5 .venv/bin/python eval/bench_scale.py --sizes 1000000 --work /tmp/rag-scale
    nice -n 5 .venv/bin/python eval/bench_scale.py --sizes 5000000 --work /tmp/rag-scale
    .venv/bin/python eval/bench_scale.py --report            # the tables again, from eval/out/bench_scale.json

Every size is measured, merged into eval/out/bench_scale.json and then the tables are printed over
all sizes measured so far: one invocation per size, so that a killed run loses only that size
(`--phases` reruns some phases of a size whose work folder is still there, `--keep` keeps it).

The corpus: passages of 100 words drawn from a Zipf distribution (s = 1) over a fixed vocabulary
of 50,000 words: Lucene's 33 English stopwords at the top ranks (a third of all words, as in English
text), then pseudo-words made of syllables, shorter at higher ranks. Passages come in articles of
1-12 passages (mean 6.5, psgs_w100's 21M passages over ~3.2M articles) that share a 1-3 word
title; ids are "1", "2", ... as DPR's. Questions (for BM25): 1,000 of 8 words from the same
distribution. Vectors: no encoder; the clustered 384-d unit vectors of `synthetic()` (a 64-d Gaussian
mixture lifted to 384-d plus noise: PQ on pure noise would understate recall), written as rag's
embedding shard files (rag.embeddings.shard_paths, 4,096 rows each, what an encoder would have left).

Phases, each a child process (`--child PHASE`); its peak RSS is the child's own (os.wait4's ru_maxrss):
  baseline     python + rag's imports, nothing else (what every phase starts from)
  store        the passages into rag.store.PassageStore (NAME.partial/passages.sqlite), 10k rows a batch
  vectors      the vectors into NAME.partial/shards/emb_*.npy (rag.files.save_npy_atomic)
  faiss-flat   (n <= --flat-max) DenseIndex.build_from_files(shards, flat), saved beside the index
  faiss-ivfpq  rag.build._encode_and_index, the build's own step (default kind ivfpq): the FAISS index
               trained on the fixed sample and filled from the shard files one at a time, saved, the
               manifest's row digests and fingerprint computed, the folder published
  bm25         rag.bm25.BM25Index.build_from_store over the published store, streamed into NAME/bm25.tmpPID/ and
               published as NAME/bm25/ (rag.bm25_build: memory bounded by its slice, not the corpus)
  search-flat  (n <= --flat-max) exact top-20 of the 1,000 query vectors: the truth for recall
  search-dense open_index (manifest, store, digests, FAISS) and 1,000 queries: batch q/s, one-at-a-time
               q/s, the top-20 passages fetched from the store, recall@20 against flat
  search-bm25  BM25Index.load and the 1,000 questions, top-20, one at a time (bm25s)

Then a least-squares line over the sizes (per million passages) and its value at 21,015,324 passages,
with the exponent of a power-law fit beside it: a phase whose exponent is clearly above 1 (IVF-PQ's
training and filling: ~4 sqrt(n) cells, so O(n^1.5) distance computations) is underestimated by the line.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

WIKI = 21_015_324  # DPR psgs_w100
DIM = 384  # MiniLM's, rag's default encoder
SHARD_SIZE = 4096  # rag.build.BuildConfig's default
VOCAB = 50_000
WORDS = 100
ZIPF_S = 1.0
BLOCK = 10_000  # passages generated (and inserted) at a time; the text of a block depends only on its number
QUERIES = 1000
K = 20
SEED = 20240917
PHASES = ("baseline", "store", "vectors", "faiss-flat", "faiss-ivfpq", "bm25", "search-flat", "search-dense", "search-bm25")
RESULTS = ROOT / "eval" / "out" / "bench_scale.json"


# --- the synthetic corpus --------------------------------------------------------------------


def vocabulary() -> list[str]:
    """50,000 distinct lowercase words: the stopwords first, then pseudo-words, shortest first."""
    from bm25s.stopwords import STOPWORDS_EN

    rng = np.random.default_rng(SEED)
    onsets = "b c d f g h j k l m n p r s t v w z br ch cl dr fl gr kr pl pr sh st th tr".split()
    vowels = "a e i o u ai ea ou ie".split()
    codas = ["", "", "", "n", "r", "s", "l", "t", "nd", "st", "rk"]
    words = list(dict.fromkeys(STOPWORDS_EN))
    seen = set(words)
    while len(words) < VOCAB:
        syllables = rng.integers(1, 5)
        w = "".join(onsets[rng.integers(len(onsets))] + vowels[rng.integers(len(vowels))] + codas[rng.integers(len(codas))] for _ in range(syllables))
        if w not in seen:
            seen.add(w)
            words.append(w)
    head = len(STOPWORDS_EN)
    return words[:head] + sorted(words[head:], key=len)


def zipf_cdf(n_words: int) -> np.ndarray:
    p = 1.0 / np.arange(1, n_words + 1) ** ZIPF_S
    return np.cumsum(p / p.sum())


def passage_block(block: int, n: int, vocab: list[str], cdf: np.ndarray):
    """Passages [block * BLOCK, ...) of the corpus (n passages in all), as rag.types.Passage."""
    from rag.types import Passage

    lo, hi = block * BLOCK, min(n, (block + 1) * BLOCK)
    rng = np.random.default_rng([SEED, 0, block])
    ids = np.searchsorted(cdf, rng.random((hi - lo, WORDS)))
    title_cdf_lo = cdf[32]  # titles draw from the non-stopwords
    out, row = [], lo
    while row < hi:
        length = min(hi - row, int(rng.integers(1, 13)))
        title_ids = np.searchsorted(cdf, title_cdf_lo + (1 - title_cdf_lo) * rng.random(int(rng.integers(1, 4))))
        title = " ".join(vocab[i] for i in title_ids).title()
        for r in range(row, row + length):
            out.append(Passage(str(r + 1), title, " ".join([vocab[i] for i in ids[r - lo].tolist()])))
        row += length
    return out


def questions(vocab: list[str], cdf: np.ndarray) -> list[str]:
    rng = np.random.default_rng([SEED, 2])
    return [" ".join(vocab[i] for i in np.searchsorted(cdf, rng.random(8))) + "?" for _ in range(QUERIES)]


def mixture(dim: int = DIM) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    lift = rng.standard_normal((64, dim), dtype=np.float32) / 8
    centers = 2 * rng.standard_normal((1000, 64), dtype=np.float32)
    return lift, centers


def synthetic(n: int, dim: int, rng: np.random.Generator, lift: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """n clustered unit vectors: a 64-d Gaussian mixture lifted to dim, plus noise."""
    out = np.empty((n, dim), np.float32)
    for lo in range(0, n, 100_000):
        hi = min(n, lo + 100_000)
        z = centers[rng.integers(0, len(centers), hi - lo)] + rng.standard_normal((hi - lo, lift.shape[0]), dtype=np.float32)
        x = z @ lift + 0.3 * rng.standard_normal((hi - lo, dim), dtype=np.float32)
        out[lo:hi] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


# --- the phases (each runs in a child process) ------------------------------------------------


class Paths:
    def __init__(self, work: Path, n: int):
        self.root = work / f"n{n}"
        self.index = self.root / "index"  # the published index folder
        self.partial = self.root / "index.partial"
        self.flat = self.root / "flat.faiss"
        self.truth = self.root / "flat_truth.npy"
        self.queries = self.root / "queries.npy"


def vm_hwm_mb(field: str = "VmHWM") -> float:
    """This process's peak RSS so far (VmHWM), or its RSS now (VmRSS), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(owner, name: str, into: dict, key: str, hwm: bool = True) -> None:
    """Wrap owner.name so its seconds (and the peak RSS when it returns) are recorded under `key`."""
    original = getattr(owner, name)
    is_class_method = isinstance(owner.__dict__.get(name), classmethod)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args[1:], **kwargs) if is_class_method else original(*args, **kwargs)
        finally:
            into[f"{key}_s"] = into.get(f"{key}_s", 0.0) + time.perf_counter() - start
            if hwm:
                into[f"peak_after_{key}_mb"] = vm_hwm_mb()
                into[f"rss_after_{key}_mb"] = vm_hwm_mb("VmRSS")

    setattr(owner, name, classmethod(wrapper) if is_class_method else wrapper)


def phase_baseline(n: int, p: Paths) -> dict:
    import bm25s  # noqa: F401
    import faiss  # noqa: F401

    import rag.bm25  # noqa: F401
    import rag.build  # noqa: F401

    return {}


def phase_store(n: int, p: Paths) -> dict:
    from rag.files import make_scratch, remove_scratch
    from rag.index_folder import STORE
    from rag.store import PassageStore

    remove_scratch(p.partial)
    if p.index.exists():
        shutil.rmtree(p.index)
    p.root.mkdir(parents=True, exist_ok=True)
    make_scratch(p.partial)
    vocab, cdf = vocabulary(), zipf_cdf(VOCAB)
    (p.root / "questions.json").write_text(json.dumps(questions(vocab, cdf)))
    gen = 0.0

    def passages():
        nonlocal gen
        for block in range((n + BLOCK - 1) // BLOCK):
            start = time.perf_counter()
            batch = passage_block(block, n, vocab, cdf)
            gen += time.perf_counter() - start
            yield from batch

    with PassageStore(p.partial / STORE) as store:
        added = store.add(passages())
    assert added == n
    return {"generate_s": gen, "store_bytes": (p.partial / STORE).stat().st_size}


def phase_vectors(n: int, p: Paths) -> dict:
    from rag.embeddings import shard_paths
    from rag.files import save_npy_atomic

    lift, centers = mixture()
    shard_dir = p.partial / "shards"
    shard_dir.mkdir(exist_ok=True)
    paths = shard_paths(shard_dir, n, SHARD_SIZE)
    for i, path in enumerate(paths):
        rows = min(SHARD_SIZE, n - i * SHARD_SIZE)
        save_npy_atomic(path, synthetic(rows, DIM, np.random.default_rng([SEED, 1, i]), lift, centers))
    np.save(p.queries, synthetic(QUERIES, DIM, np.random.default_rng([SEED, 3]), lift, centers))
    return {"shard_files": len(paths), "shards_bytes": sum(path.stat().st_size for path in paths)}


def phase_faiss_flat(n: int, p: Paths) -> dict:
    from rag.embeddings import shard_paths
    from rag.index import DenseIndex, IndexConfig

    info: dict = {}
    timed(DenseIndex, "add_blocks", info, "fill")
    dense = DenseIndex.build_from_files(shard_paths(p.partial / "shards", n, SHARD_SIZE), IndexConfig(kind="flat"))
    dense.save(p.flat)
    return {**info, "flat_bytes": p.flat.stat().st_size}


class SyntheticEncoder:
    """What the build asks of an encoder once the shard files exist: its dimension and normalization."""

    dim, normalized, spec = DIM, True, "default"


def phase_faiss_ivfpq(n: int, p: Paths) -> dict:
    import rag.build
    from rag.build import BuildConfig, _encode_and_index, _now
    from rag.files import publish_folder
    from rag.index import DenseIndex, IndexConfig
    from rag.index_folder import FAISS_FILE, INDEX_KIND, Manifest

    info: dict = {}
    timed(DenseIndex, "trained", info, "train")
    timed(DenseIndex, "add_blocks", info, "fill")
    timed(DenseIndex, "save", info, "save")
    timed(rag.build, "commit_record", info, "commit")
    config = BuildConfig(corpus="default", index=IndexConfig(kind="ivfpq"), shard_size=SHARD_SIZE)
    source = {"source": f"synthetic:zipf{ZIPF_S}:{VOCAB}:{n}", "format": "synthetic", "documents": n, "passages": n, "added_at": _now()}
    shards_present = any((p.partial / "shards").glob("emb_*.npy"))
    if not shards_present:
        raise SystemExit(f"no shard files in {p.partial / 'shards'}: run the vectors phase first")
    _encode_and_index(config, p.partial, source, SyntheticEncoder(), lambda *args: None, progress=False)
    publish_folder(p.partial, p.index, INDEX_KIND)
    manifest = Manifest.read(p.index)
    return {**info, "params": {k: manifest.index[k] for k in ("ivf_nlist", "ivf_nprobe", "pq_m", "pq_nbits", "train_sample")},
            "faiss_bytes": (p.index / FAISS_FILE).stat().st_size, "row_digests_bytes": (p.index / manifest.row_digests).stat().st_size}


def phase_bm25(n: int, p: Paths) -> dict:
    import rag.bm25_build as streamed
    from rag.bm25 import BM25_KIND, FOLDER, BM25Index
    from rag.files import fresh_scratch
    from rag.index_folder import STORE, Manifest
    from rag.store import PassageStore

    info: dict = {}
    original = streamed._write_matrix

    def write_matrix(*args, **kwargs):  # its start is the end of tokenizing (pass 1)
        info["peak_after_tokenize_mb"] = vm_hwm_mb()
        return original(*args, **kwargs)

    streamed._write_matrix = write_matrix
    timed(streamed, "_write_matrix", info, "matrix")
    folder = p.index if p.index.exists() else p.partial  # the store alone when the FAISS phase was not run
    sources = [s.sha256 for s in Manifest.read(folder).sources] if p.index.exists() else []
    with PassageStore(folder / STORE, readonly=True) as store:
        start = time.perf_counter()
        scratch = fresh_scratch(folder / f"{FOLDER}.tmp{os.getpid()}", BM25_KIND)  # as rag.bm25.bm25_for_index builds it
        bm25 = BM25Index.build_from_store(store, sources=sources, into=scratch)
        info["build_s"] = time.perf_counter() - start
    info["rss_after_build_mb"] = vm_hwm_mb("VmRSS")
    bm25.save(folder / FOLDER)
    scores = bm25._model.scores
    files = {f.name: f.stat().st_size for f in (folder / FOLDER).iterdir()}
    return {**info, "vocabulary": len(bm25._model.vocab_dict), "nonzeros": int(len(scores["data"])),
            "matrix_bytes": int(scores["data"].nbytes + scores["indices"].nbytes + scores["indptr"].nbytes),
            "bm25_bytes": sum(files.values()), "bm25_files": files}


def phase_search_flat(n: int, p: Paths) -> dict:
    from rag.index import DenseIndex, IndexConfig

    q = np.load(p.queries)
    dense = DenseIndex.load(p.flat, IndexConfig(kind="flat"))
    dense.search(q[:10], K)
    start = time.perf_counter()
    result = dense.search(q, K)
    seconds = time.perf_counter() - start
    np.save(p.truth, result.rows)
    return {"qps_batch": len(q) / seconds}


def phase_search_dense(n: int, p: Paths) -> dict:
    from rag.index_folder import open_index

    q = np.load(p.queries)
    start = time.perf_counter()
    index = open_index(p.index)
    out: dict = {"open_s": time.perf_counter() - start}
    index.dense.search(q[:10], K)
    start = time.perf_counter()
    result = index.dense.search(q, K)
    out["qps_batch"] = len(q) / (time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(200):
        index.dense.search(q[i : i + 1], K)
    out["qps_single"] = 200 / (time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(0, len(q), 10):  # the top-20 passages of 10 questions at a time, read (and checked) from the store
        index.store.hits(type(result)(result.scores[i : i + 10], result.rows[i : i + 10]))
    out["store_fetch_qps"] = len(q) / (time.perf_counter() - start)
    if p.truth.exists():
        truth = np.load(p.truth)
        out[f"recall@{K}_vs_flat"] = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(result.rows, truth)]))
    return out


def phase_search_bm25(n: int, p: Paths) -> dict:
    from rag.bm25 import FOLDER, BM25Index

    qs = json.loads((p.root / "questions.json").read_text())
    start = time.perf_counter()
    bm25 = BM25Index.load((p.index if p.index.exists() else p.partial) / FOLDER)
    out: dict = {"load_s": time.perf_counter() - start}
    bm25.search(qs[:5], K)
    start = time.perf_counter()
    result = bm25.search(qs, K)
    out["qps"] = len(qs) / (time.perf_counter() - start)
    out["answered"] = float(np.mean(result.rows[:, 0] >= 0))
    return out


CHILDREN = {name: globals()["phase_" + name.replace("-", "_")] for name in PHASES}


def run_child(phase: str, n: int, work: Path, faiss_threads: int = 0) -> dict:
    """The phase in a fresh process: its wall time, its own peak RSS (ru_maxrss of that child), its report."""
    cmd = [sys.executable, __file__, "--child", phase, "--n", str(n), "--work", str(work)]
    env = dict(os.environ)
    if faiss_threads and phase.startswith(("faiss", "search")):
        env["OMP_NUM_THREADS"] = str(faiss_threads)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out = proc.stdout.read()
    proc.stdout.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"phase {phase} at n={n:,} failed (exit {proc.returncode})")
    report = json.loads(out.strip().splitlines()[-1])
    if faiss_threads and phase.startswith(("faiss", "search")):
        report["omp_threads"] = faiss_threads
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "cpu_s": usage.ru_utime + usage.ru_stime, **report}


# --- tables ----------------------------------------------------------------------------------


def table(header: list[str], rows: list[list]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:,.3f}" if abs(v) < 1 else f"{v:,.1f}" if abs(v) < 100 else f"{v:,.0f}"
        return f"{v:,}" if isinstance(v, int) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows])


def throughput(phase: str, n: int, r: dict) -> str:
    if phase in ("store", "vectors", "faiss-flat", "faiss-ivfpq", "bm25"):
        return f"{n / r['wall_s']:,.0f} passages/s"
    if phase == "search-dense":
        recall = f", recall@{K} {r[f'recall@{K}_vs_flat']:.3f}" if f"recall@{K}_vs_flat" in r else ""
        return f"{r['qps_batch']:,.0f} q/s batch, {r['qps_single']:,.0f} q/s one by one, store {r['store_fetch_qps']:,.0f} q/s{recall}"
    if phase == "search-flat":
        return f"{r['qps_batch']:,.0f} q/s batch (exact)"
    if phase == "search-bm25":
        return f"{r['qps']:.1f} q/s"
    return ""


def details(phase: str, r: dict) -> str:
    if phase == "store":
        return f"generating the text {r['generate_s']:.0f} s of it"
    if phase == "faiss-ivfpq":
        pr = r["params"]
        return (f"nlist {pr['ivf_nlist']:,}, m {pr['pq_m']}x{pr['pq_nbits']}, sample {pr['train_sample']:,}; train {r['train_s']:.0f} s (peak {r['peak_after_train_mb']:,.0f} MB), "
                f"fill {r['fill_s']:.0f} s (peak {r['peak_after_fill_mb']:,.0f} MB), commit {r['commit_s']:.0f} s")
    if phase == "bm25":
        return (f"tokenize {r['build_s'] - r['matrix_s']:.0f} s (peak {r['peak_after_tokenize_mb']:,.0f} MB), score matrix {r['matrix_s']:.0f} s; "
                f"vocabulary {r['vocabulary']:,}, {r['nonzeros'] / r['n']:.1f} nonzeros/passage")
    if phase == "search-dense":
        return f"open_index {r['open_s']:.1f} s"
    if phase == "search-bm25":
        return f"load {r['load_s']:.1f} s"
    return ""


ARTIFACTS = [("passage store (SQLite)", "store", "store_bytes"), ("embedding shards (fp32, deleted after the build)", "vectors", "shards_bytes"),
             ("IVF-PQ index.faiss", "faiss-ivfpq", "faiss_bytes"), ("row digests", "faiss-ivfpq", "row_digests_bytes"),
             ("flat FAISS (n <= flat max)", "faiss-flat", "flat_bytes"), ("BM25 folder", "bm25", "bm25_bytes")]


def fit(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """(slope per million, intercept, power-law exponent) of ys over passages xs."""
    x, y = np.array(xs, float) / 1e6, np.array(ys, float)
    slope, intercept = np.polyfit(x, y, 1) if len(x) > 1 else (y[0] / x[0], 0.0)
    exponent = float(np.polyfit(np.log(x), np.log(np.maximum(y, 1e-9)), 1)[0]) if len(x) > 1 and np.all(y > 0) else float("nan")
    return float(slope), float(intercept), exponent


def ivfpq_model(runs: dict, sizes: list[int]) -> str:
    """The IVF-PQ build from its parts, fitted on the measured sizes, carried to 5M and 21M passages.

    Training ~ a + b * sample * nlist * d: k-means over the sample (a is the PQ codebooks' training,
    which stops growing past 65,536 vectors); filling ~ c + e * n * nlist * d: each vector's nearest
    cell; peak after training ~ base + f * the sample's bytes; the filled index (RSS after filling,
    the sample freed) ~ base' + g * n. nlist, the sample and m are resolve_ivfpq's for each n and d.
    """
    from rag.index import IndexConfig, resolve_ivfpq

    pts = [(n, runs[n]["faiss-ivfpq"]) for n in sizes if "faiss-ivfpq" in runs[n]]
    if len(pts) < 2:
        return ""
    train_units = [r["params"]["train_sample"] * r["params"]["ivf_nlist"] * DIM / 1e12 for _, r in pts]
    fill_units = [n * r["params"]["ivf_nlist"] * DIM / 1e12 for n, r in pts]
    b, a = np.polyfit(train_units, [r["train_s"] for _, r in pts], 1)
    e, c = np.polyfit(fill_units, [r["fill_s"] for _, r in pts], 1)
    f, base = np.polyfit([r["params"]["train_sample"] * DIM * 4 / 2**20 for _, r in pts], [r["peak_after_train_mb"] for _, r in pts], 1)
    commit_per_m, commit0 = np.polyfit([n / 1e6 for n, _ in pts], [r["commit_s"] for _, r in pts], 1)
    filled = [(n, r["rss_after_fill_mb"]) for n, r in pts if "rss_after_fill_mb" in r]
    g, base2 = np.polyfit([n for n, _ in filled], [m for _, m in filled], 1) if len(filled) >= 2 else (float("nan"), float("nan"))
    rows = []
    for n, d in ((5_000_000, 384), (WIKI, 384), (WIKI, 768)):
        pr = resolve_ivfpq(IndexConfig(kind="ivfpq"), n, d)
        train = a * d / DIM + b * pr.train_sample * pr.ivf_nlist * d / 1e12  # the PQ part grows with d too (sub-vectors of d / m)
        fill = c + e * n * pr.ivf_nlist * d / 1e12
        sample_mb = pr.train_sample * d * 4 / 2**20
        rows.append([f"{n:,} x {d}-d", f"{pr.ivf_nlist:,} / {pr.train_sample:,} / {pr.pq_m}", train / 60, fill / 60, (commit0 + commit_per_m * n / 1e6) / 60,
                     base + f * sample_mb, base2 + g * n if g == g else float("nan"), n * (pr.pq_m + 8) / 2**20])
    fit_line = (f"fitted on {', '.join(f'{n:,}' for n, _ in pts)}: training {a:.0f} s + {b:.0f} s per 10^12 (sample x nlist x d), filling {c:.0f} s + {e:.0f} s "
                f"per 10^12 (n x nlist x d), peak after training {base:.0f} MB + {f:.2f} x the sample's MB" + (f", filled index {g * 2**20:.0f} B a passage in RSS" if g == g else ""))
    return ("\n### IVF-PQ build, extrapolated from its parts (" + fit_line + ")\n\n"
            + table(["corpus", "nlist / sample / m", "train min", "fill min", "commit min", "peak while training MB", "RSS filled MB", "codes + ids MB"], rows))


def report(results: dict) -> str:
    runs = {int(n): r for n, r in results["runs"].items()}
    sizes = sorted(runs)
    out = [f"machine: {results.get('machine', '')}"]
    for n in sizes:
        rows = [[ph, r["wall_s"], r["cpu_s"], r["peak_rss_mb"], throughput(ph, n, {**r, "n": n}), details(ph, {**r, "n": n})]
                for ph, r in runs[n].items() if ph in PHASES]
        build = [ph for ph in ("store", "vectors", "faiss-ivfpq") if ph in runs[n]]
        if build:
            rows.append(["build (store + vectors + faiss-ivfpq)", sum(runs[n][ph]["wall_s"] for ph in build), sum(runs[n][ph]["cpu_s"] for ph in build),
                         max(runs[n][ph]["peak_rss_mb"] for ph in build), "", "peak of its phases"])
        out.append(f"\n### {n:,} passages\n\n" + table(["phase", "wall s", "CPU s", "peak RSS MB", "throughput", "details"], rows))
    art = []
    for name, ph, key in ARTIFACTS:
        art.append([name] + [runs[n][ph][key] / n if ph in runs[n] and key in runs[n][ph] else float("nan") for n in sizes])
    out.append("\n### bytes per passage on disk\n\n" + table(["artifact"] + [f"{n:,}" for n in sizes], art))
    fits = []
    for ph in PHASES[1:]:
        have = [n for n in sizes if ph in runs[n]]
        if len(have) < 2:
            continue
        for label, key, unit in (("wall s", "wall_s", "s"), ("peak RSS MB", "peak_rss_mb", "MB")):
            slope, intercept, exponent = fit(have, [runs[n][ph][key] for n in have])
            fits.append([f"{ph} {label}", ", ".join(f"{runs[n][ph][key]:,.1f}" for n in have), slope, intercept, exponent, slope * WIKI / 1e6 + intercept])
    for name, ph, key in ARTIFACTS:
        have = [n for n in sizes if ph in runs[n] and key in runs[n][ph]]
        if len(have) >= 2:
            slope, intercept, exponent = fit(have, [runs[n][ph][key] / 2**20 for n in have])
            fits.append([f"{name} MB", ", ".join(f"{runs[n][ph][key] / 2**20:,.1f}" for n in have), slope, intercept, exponent, slope * WIKI / 1e6 + intercept])
    model = ivfpq_model(runs, sizes)
    if model:
        out.append(model)
    if fits:
        out.append(f"\n### fitted growth over {', '.join(f'{n:,}' for n in sizes)} passages: least squares y = a + b (n / 1M), and n^e\n\n"
                   + table(["quantity", "measured", "b per 1M", "a", "e (power law)", "line at 21,015,324"], fits))
    return "\n".join(out)


# --- main ------------------------------------------------------------------------------------


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    flags = Path("/proc/cpuinfo").read_text()
    simd = "AVX-512" if "avx512f" in flags else "AVX2 (no AVX-512)" if "avx2" in flags else "no AVX2"
    mem = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))) / 2**20
    return f"{cpu}, {os.cpu_count()} cores, {simd}, {mem:.0f} GB RAM, nice {os.nice(0)}, load average {os.getloadavg()[0]:.1f} at start"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000", help="comma-separated passage counts, e.g. 100000,1000000,5000000")
    parser.add_argument("--work", type=Path, default=Path("/tmp/rag-scale"), help="scratch folder (5M passages: ~15 GB at the peak)")
    parser.add_argument("--phases", default=",".join(PHASES), help="a subset of " + ",".join(PHASES))
    parser.add_argument("--flat-max", type=int, default=1_000_000, help="largest size that also gets a flat index (the recall reference)")
    parser.add_argument("--keep", action="store_true", help="keep each size's work folder")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the JSON the measurements are merged into")
    parser.add_argument("--faiss-threads", type=int, default=0, help="OpenMP threads of the FAISS phases (0: FAISS' default, one per core)")
    parser.add_argument("--report", action="store_true", help="only print the tables from --results")
    parser.add_argument("--child", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = CHILDREN[args.child](args.n, Paths(args.work, args.n))
        print(json.dumps(result))
        return
    results = json.loads(args.results.read_text()) if args.results.exists() else {"runs": {}}
    if args.report:
        print(report(results))
        return
    phases = [ph for ph in args.phases.split(",") if ph]
    unknown = set(phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases {sorted(unknown)}; valid: {', '.join(PHASES)}")
    results["machine"] = machine()
    args.results.parent.mkdir(exist_ok=True)
    for n in (int(s) for s in args.sizes.split(",")):
        run = results["runs"].setdefault(str(n), {})
        for ph in PHASES:
            if ph not in phases or (ph in ("faiss-flat", "search-flat") and n > args.flat_max):
                continue
            print(f"n={n:,}: {ph} ...", file=sys.stderr, flush=True)
            run[ph] = run_child(ph, n, args.work, args.faiss_threads)
            run[ph]["at"] = time.strftime("%Y-%m-%d %H:%M")
            print(f"n={n:,}: {ph}: {run[ph]['wall_s']:,.1f} s, peak RSS {run[ph]['peak_rss_mb']:,.0f} MB", file=sys.stderr, flush=True)
            args.results.write_text(json.dumps(results, indent=1))  # after every phase: a kill loses only the phase it was in
        if not args.keep:
            shutil.rmtree(Paths(args.work, n).root, ignore_errors=True)
    print(report(results))


if __name__ == "__main__":
    main()

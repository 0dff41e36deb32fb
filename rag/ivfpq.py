"""IVF-PQ, the compressed index kind (rag.index.INDEX_KINDS["ivfpq"]): its factory, the parameters
it resolves from the corpus size, the fixed training sample, its search parameters and refine stage.

Its parameters are rag.index.IndexConfig fields (ivf_nlist, ivf_nprobe, pq_m, pq_nbits, opq, refine,
refine_k_factor, train_sample); this module only reads them.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np


# Code sizes (bytes per vector) faiss-gpu's IVF-PQ can search; the automatic choice stays within them.
GPU_PQ_M = (1, 2, 3, 4, 8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 96)


def resolve_ivfpq(config, n: int, dim: int):
    """Concrete IVF-PQ parameters for n vectors of dimension dim (the zeros in `config` filled in).

    nlist ~ 4 sqrt(n) cells (faiss' guideline; 18k for 21M passages), nprobe = nlist / 8, at least 64
    (measured on the built-in corpus, 287 cells: recall@10 vs flat 0.82 at 64 probes, 0.94 with the sq8 refine);
    m = dim / 4 sub-quantizers of 8 bits, capped at 96 bytes (768-d DPR: 96 B vs 3,072 B flat);
    the training sample holds 64 vectors per cell (k-means needs >= 39), at least 65,536 for PQ.
    """
    nlist = config.ivf_nlist or max(1, min(65536, int(4 * math.sqrt(n)), n // 39))
    nprobe = config.ivf_nprobe or min(nlist, max(64, nlist // 8))
    m = config.pq_m or max([g for g in GPU_PQ_M if g <= max(1, dim // 4) and dim % g == 0])
    while dim % m:  # PQ needs m to divide the dimension
        m -= 1
    # k-means for a PQ codebook of 2^nbits centroids needs ~39 points per centroid.
    nbits = min(config.pq_nbits, max(1, int(math.log2(max(2, n // 39)))))
    train = min(n, config.train_sample or max(65_536, 64 * nlist))
    # OPQ below 8-bit codes (under ~10k vectors) crashes faiss 1.15 (heap corruption); such corpora get plain PQ.
    opq = config.opq and nbits == 8
    return replace(config, ivf_nlist=nlist, ivf_nprobe=nprobe, pq_m=m, pq_nbits=nbits, opq=opq, train_sample=train)


def training_rows(n: int, config) -> np.ndarray:
    """The rows an IVF-PQ index over n vectors trains on: a fixed sample, so the same corpus builds the same index."""
    if n <= config.train_sample:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, config.train_sample, replace=False))


def build_ivfpq(x: np.ndarray, config):
    """An empty IVF-PQ index (OPQ-rotated and refined as `config` says) trained on the sample x."""
    import faiss

    d = x.shape[1]
    opq = f"OPQ{config.pq_m}," if config.opq else ""
    index = faiss.index_factory(d, f"{opq}IVF{config.ivf_nlist},PQ{config.pq_m}x{config.pq_nbits}", faiss.METRIC_INNER_PRODUCT)
    # The factory turns on polysemous training: it only reorders each PQ codebook for Hamming-distance
    # filtering (polysemous_ht), which rag never sets, so search results are the same without it
    # (tests/test_scale.py). It cost ~6 min of every 384-d build at m=96 on 2 cores, 4x the PQ training.
    faiss.downcast_index(faiss.extract_index_ivf(index)).do_polysemous_training = False
    if config.opq:  # OPQ learns its rotation with a PQ of its own: give it the index's code size
        rotation = faiss.downcast_VectorTransform(index.chain.at(0))
        rotation_pq = faiss.ProductQuantizer(d, config.pq_m, config.pq_nbits)
        rotation.pq = rotation_pq
    index.train(x)
    if config.opq:
        rotation.pq = None  # rotation_pq is freed with this frame
    return _with_refine(index, x, config)


def set_ivfpq_search(index, search_index, config) -> None:
    import faiss

    faiss.extract_index_ivf(search_index).nprobe = config.ivf_nprobe
    if config.refine != "none":
        faiss.downcast_index(search_index).k_factor = config.refine_k_factor



def _with_refine(ivfpq, sample: np.ndarray, config):
    """IVF-PQ wrapped in a refine stage: PQ finds refine_k_factor * k candidates, a finer copy re-scores them.

    PQ alone loses the exact order among close neighbours (recall@10 0.79 on the built-in corpus);
    an 8-bit scalar-quantized copy costs dim bytes per vector and restores it (0.94).
    """
    import faiss

    if config.refine == "none":
        return ivfpq
    d = sample.shape[1]
    fine = faiss.IndexFlatIP(d) if config.refine == "flat" else faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    fine.train(sample)
    index = faiss.IndexRefine(ivfpq, fine)  # both already trained: the PQ is not trained again
    ivfpq.this.disown()  # the IndexRefine owns and frees both
    fine.this.disown()
    index.own_fields = True
    index.own_refine_index = True
    return index

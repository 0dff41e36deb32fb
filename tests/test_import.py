"""`rag index import`: real files in the formats users download (.npy, .safetensors, wiki_dpr parquet and
save_to_disk, pyserini FAISS folders + psgs_w100 TSV) -> index folders that search exactly like a
brute-force inner-product search over the same vectors, verify, and refuse bad input with one message."""
from __future__ import annotations

import csv
import json
import shlex
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rag.cli import build_parser, main
from rag.importers import DPR_NQ_ENCODER, ImportConfig, import_index
from rag.import_pyserini import PyseriniSource
from rag.import_sources import MatrixSource, WikiDprSource
from rag.index import DenseIndex, IndexConfig
from rag.index_folder import open_index
from rag.types import Passage, RagError
from rag.verify import verify_index
from tests.test_readme import readme_commands

README = Path(__file__).resolve().parents[1] / "README.md"
WORDS = "river castle paper window garden music silver forest engine winter harbor planet".split()


def corpus(n: int, seed: int = 0) -> list[Passage]:
    rng = np.random.default_rng(seed)
    return [Passage(f"{1000 + i}", f"Title {i}", " ".join(rng.choice(WORDS, 12)) + f" number{i}") for i in range(n)]


def vectors(n: int, dim: int, seed: int = 0, unit: bool = False) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True) if unit else x


def brute_force(x: np.ndarray, ids: list[str], queries: np.ndarray, k: int) -> list[list[str]]:
    order = np.argsort(-(queries @ x.T), axis=1, kind="stable")[:, :k]
    return [[ids[j] for j in row] for row in order]


def assert_searches_like_brute_force(out: Path, x: np.ndarray, passages: list[Passage], k: int = 10) -> None:
    """Top-k ids equal numpy's argsort over the same vectors; each hit is the passage of that id; verify passes."""
    folder = open_index(out)
    queries = vectors(6, x.shape[1], seed=99)
    hits = folder.search(queries, k)
    assert [[h.passage.id for h in hs] for hs in hits] == brute_force(x, [p.id for p in passages], queries, k)
    by_id = {p.id: p for p in passages}
    assert all(h.passage == by_id[h.passage.id] for hs in hits for h in hs)
    report = verify_index(out, progress=False)
    assert report.ok, report.problems
    assert not out.with_name(out.name + ".partial").exists()


def write_jsonl(path: Path, passages: list[Passage]) -> Path:
    path.write_text("".join(json.dumps({"id": p.id, "title": p.title, "text": p.text}) + "\n" for p in passages))
    return path


def write_tsv(path: Path, passages: list[Passage]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["id", "text", "title"])
        w.writerows([p.id, p.text, p.title] for p in passages)
    return path


def wiki_dpr_table(passages: list[Passage], x: np.ndarray) -> pa.Table:
    """wiki_dpr's schema: id, text, title strings and embeddings a list<float32> per row."""
    return pa.table({"id": [p.id for p in passages], "text": [p.text for p in passages], "title": [p.title for p in passages],
                     "embeddings": pa.array([list(v) for v in x], pa.list_(pa.float32()))})


def cli(capsys, *args: str) -> tuple[int, str, str]:
    status = main(["--quiet", "index", "import", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# --- each source imports to an index that searches like brute force ----------------------------------


def test_npy_matrix_with_jsonl_passages(tmp_path):
    passages, x = corpus(50), vectors(50, 16)
    np.save(tmp_path / "vectors.npy", x)
    source = MatrixSource(tmp_path / "vectors.npy", write_jsonl(tmp_path / "passages.jsonl", passages))
    folder = import_index(source, tmp_path / "idx", ImportConfig(encoder="default", chunk_size=7), progress=False)
    assert_searches_like_brute_force(tmp_path / "idx", x, passages)
    m = folder.manifest
    assert (m.passages, m.dim, m.encoder, m.normalized, m.index["kind"]) == (50, 16, "default", False, "flat")
    assert m.sources[0].format == "jsonl" and m.sources[0].passages == 50 and len(m.sources[0].sha256) == 64
    assert m.extra["import"]["from"] == "vectors" and m.extra["import"]["shape"] == [50, 16]
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == ["index.faiss", "manifest.json", "passages.sqlite", "row_digests.g0.npy"]


def test_normalized_is_measured_and_a_false_claim_is_refused(tmp_path):
    passages, x = corpus(20), vectors(20, 8, unit=True)
    np.save(tmp_path / "v.npy", x.astype(np.float16))
    jsonl = write_jsonl(tmp_path / "p.jsonl", passages)
    folder = import_index(MatrixSource(tmp_path / "v.npy", jsonl), tmp_path / "idx", ImportConfig(encoder="default"), progress=False)
    assert folder.manifest.normalized is True and folder.manifest.precision == "fp16"
    np.save(tmp_path / "raw.npy", vectors(20, 8))
    with pytest.raises(RagError, match="--normalized, but the vectors are not of unit length"):
        import_index(MatrixSource(tmp_path / "raw.npy", jsonl), tmp_path / "idx2", ImportConfig(encoder="default", normalized=True), progress=False)
    assert not (tmp_path / "idx2").exists() and not (tmp_path / "idx2.partial").exists()


def test_safetensors_matrix_names_its_tensor(tmp_path, capsys):
    from safetensors.numpy import save_file

    passages, x = corpus(30), vectors(30, 16, seed=3)
    save_file({"passage_vectors": x, "other": np.zeros((2, 2), np.float32)}, str(tmp_path / "v.safetensors"))
    tsv = write_tsv(tmp_path / "psgs.tsv", passages)
    status, _, err = cli(capsys, "--vectors", str(tmp_path / "v.safetensors"), "--passages", str(tsv), "--encoder", "default", "--out", str(tmp_path / "idx"))
    assert status == 2 and "holds 2 tensors" in err and "--tensor NAME" in err and "Traceback" not in err
    status, out, err = cli(capsys, "--vectors", str(tmp_path / "v.safetensors"), "--tensor", "passage_vectors", "--passages", str(tsv),
                           "--encoder", "default", "--out", str(tmp_path / "idx"), "--chunk-size", "8", "--no-bm25")
    assert status == 0, err
    assert "imported" in out and "30 passages" in out
    assert_searches_like_brute_force(tmp_path / "idx", x, passages)
    assert open_index(tmp_path / "idx").manifest.sources[0].format == "dpr-tsv"


def test_bfloat16_safetensors(tmp_path):
    import torch
    from safetensors.torch import save_file

    passages, x = corpus(20, seed=11), vectors(20, 8, seed=11)
    save_file({"embeddings": torch.tensor(x).to(torch.bfloat16)}, str(tmp_path / "bf16.safetensors"))
    folder = import_index(MatrixSource(tmp_path / "bf16.safetensors", write_jsonl(tmp_path / "p.jsonl", passages)), tmp_path / "idx", ImportConfig(encoder="default"), progress=False)
    assert folder.manifest.precision == "bf16"
    stored = torch.tensor(x).to(torch.bfloat16).float().numpy()
    assert np.array_equal(folder.dense.reconstruct(np.arange(20)), stored)


def test_wiki_dpr_parquet_files_end_to_end_through_the_cli(tmp_path, capsys):
    """Two parquet shards (several row groups each) -> one index: DPR's encoder recorded, BM25 built, search works."""
    passages, x = corpus(40, seed=1), vectors(40, 16, seed=1)
    folder = tmp_path / "psgs_w100.nq.exact"
    folder.mkdir()
    pq.write_table(wiki_dpr_table(passages[:25], x[:25]), folder / "0000.parquet", row_group_size=10)
    pq.write_table(wiki_dpr_table(passages[25:], x[25:]), folder / "0001.parquet", row_group_size=10)
    status, out, err = cli(capsys, "--wiki-dpr", str(folder), "--out", str(tmp_path / "wiki"), "--chunk-size", "6")
    assert status == 0, err
    index = open_index(tmp_path / "wiki")
    m = index.manifest
    assert m.encoder == DPR_NQ_ENCODER and m.normalized is False and m.passages == 40
    assert [Path(s.source).name for s in m.sources] == ["0000.parquet", "0001.parquet"] and [s.passages for s in m.sources] == [25, 15]
    command = m.extra["import"]["command"]  # how to redo it, recorded
    assert command.startswith("rag index import --wiki-dpr ") and f"--encoder {DPR_NQ_ENCODER}" in command
    build_parser().parse_args(shlex.split(command)[1:])
    assert_searches_like_brute_force(tmp_path / "wiki", x, passages)
    assert (tmp_path / "wiki" / "bm25").is_dir()
    assert main(["--quiet", "search", "castle number7", "--index", str(tmp_path / "wiki"), "--retriever", "bm25", "--rerank", "0", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert hits[0]["id"] == "1007"
    assert main(["--quiet", "index", "verify", "--index", str(tmp_path / "wiki")]) == 0


def test_wiki_dpr_saved_with_save_to_disk(tmp_path):
    import datasets

    passages, x = corpus(24, seed=2), vectors(24, 8, seed=2)
    datasets.Dataset(wiki_dpr_table(passages, x)).save_to_disk(str(tmp_path / "saved"))
    import_index(WikiDprSource.from_paths([str(tmp_path / "saved")]), tmp_path / "idx", ImportConfig(encoder=DPR_NQ_ENCODER, chunk_size=5), progress=False)
    assert_searches_like_brute_force(tmp_path / "idx", x, passages)


def pyserini_folder(tmp_path: Path, x: np.ndarray, ids: list[str]) -> Path:
    folder = tmp_path / "dindex-wikipedia-dpr_multi-bf"
    folder.mkdir()
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    faiss.write_index(index, str(folder / "index"))
    (folder / "docid").write_text("".join(f"{i}\n" for i in ids))
    return folder


def test_pyserini_folder_with_a_tsv_in_another_order(tmp_path):
    passages, x = corpus(45, seed=4), vectors(45, 16, seed=4)
    folder = pyserini_folder(tmp_path, x, [p.id for p in passages])
    shuffled = [passages[i] for i in np.random.default_rng(5).permutation(45)] + corpus(60, seed=6)[50:]  # + passages no vector names
    tsv = write_tsv(tmp_path / "psgs_w100.tsv", shuffled)
    folder_index = import_index(PyseriniSource(folder, tsv), tmp_path / "idx", ImportConfig(encoder="dpr:q,c", chunk_size=8), progress=False)
    assert [p.id for p in folder_index.store.get_rows(range(45))] == [p.id for p in passages]  # the store is in docid order
    assert_searches_like_brute_force(tmp_path / "idx", x, passages)
    assert not list((tmp_path / "idx").glob("passages.sqlite-*"))  # the temporary id table is gone


def test_pyserini_ids_without_text_duplicates_and_unreadable_indexes(tmp_path, capsys):
    passages, x = corpus(12, seed=7), vectors(12, 8, seed=7)
    folder = pyserini_folder(tmp_path, x, [p.id for p in passages])
    tsv = write_tsv(tmp_path / "psgs.tsv", passages[:9])
    status, _, err = cli(capsys, "--pyserini", str(folder), "--passages", str(tsv), "--encoder", "default", "--out", str(tmp_path / "idx"))
    assert status == 2 and "has no passage for 3 of the 12 ids" in err and "'1009' (line 10)" in err and "Traceback" not in err
    assert not (tmp_path / "idx").exists() and not (tmp_path / "idx.partial").exists()
    (folder / "docid").write_text("".join(f"{p.id}\n" for p in passages[:11]) + f"{passages[2].id}\n")
    with pytest.raises(RagError, match=r"docid:12: duplicate passage id '1002' \(line 3 has it already\)"):
        import_index(PyseriniSource(folder, write_tsv(tmp_path / "all.tsv", passages)), tmp_path / "idx", ImportConfig(encoder="default"), progress=False)
    ids = faiss.IndexIDMap(faiss.IndexFlatIP(8))
    ids.add_with_ids(x, np.arange(12))
    faiss.write_index(ids, str(folder / "index"))
    with pytest.raises(RagError, match="cannot be read back"):
        PyseriniSource(folder, tsv)
    pq_index = faiss.IndexIVFPQ(faiss.IndexFlatIP(8), 8, 2, 2, 4, faiss.METRIC_INNER_PRODUCT)
    pq_index.train(np.tile(x, (30, 1)))
    pq_index.add(x)
    faiss.write_index(pq_index, str(folder / "index"))
    assert "decoded approximations" in PyseriniSource(folder, tsv).note  # imported, with a note saying what the vectors are
    l2 = faiss.IndexFlatL2(8)
    l2.add(x)
    faiss.write_index(l2, str(folder / "index"))
    with pytest.raises(RagError, match="ranking by L2 distance"):
        PyseriniSource(folder, tsv)


def test_ivfpq_is_trained_on_a_sample_and_filled_chunk_by_chunk(tmp_path):
    passages, x = corpus(400, seed=8), vectors(400, 16, seed=8, unit=True)
    np.save(tmp_path / "v.npy", x)
    config = ImportConfig(encoder="default", index=IndexConfig(kind="ivfpq", refine="flat"), chunk_size=64)
    folder = import_index(MatrixSource(tmp_path / "v.npy", write_jsonl(tmp_path / "p.jsonl", passages)), tmp_path / "idx", config, progress=False)
    assert folder.manifest.index["kind"] == "ivfpq" and folder.manifest.index["ivf_nlist"] > 1 and len(folder.dense) == 400
    built = DenseIndex.build(x, IndexConfig(kind="ivfpq", refine="flat"))  # what `rag index build` makes of the same vectors
    queries = vectors(6, 16, seed=99)
    assert np.array_equal(folder.dense.search(queries, 10).rows, built.search(queries, 10).rows)
    hits = folder.search(x[[17, 230]], 10)
    assert [h[0].passage.id for h in hits] == [passages[17].id, passages[230].id]  # a stored vector finds itself (exact re-scoring)
    assert verify_index(tmp_path / "idx", progress=False).ok
    assert not (tmp_path / "idx" / "shards").exists()


def test_hnsw_import(tmp_path):
    passages, x = corpus(60, seed=9), vectors(60, 8, seed=9)
    np.save(tmp_path / "v.npy", x)
    import_index(MatrixSource(tmp_path / "v.npy", write_jsonl(tmp_path / "p.jsonl", passages)), tmp_path / "idx",
                 ImportConfig(encoder="default", index=IndexConfig(kind="hnsw"), chunk_size=16), progress=False)
    assert_searches_like_brute_force(tmp_path / "idx", x, passages, k=5)  # 60 vectors, efSearch 256: exact


def test_real_minilm_vectors_search_with_rag_search(tmp_path, encoder, default_passages, capsys):
    """Vectors made outside rag by the default encoder, imported with --encoder default: `rag search` answers from them."""
    passages = default_passages[:40]
    np.save(tmp_path / "minilm.npy", encoder.encode_passages(passages))
    jsonl = write_jsonl(tmp_path / "p.jsonl", passages)
    status, _, err = cli(capsys, "--vectors", str(tmp_path / "minilm.npy"), "--passages", str(jsonl), "--encoder", "default", "--out", str(tmp_path / "idx"), "--no-bm25")
    assert status == 0, err
    folder = open_index(tmp_path / "idx", encoder_spec="default")
    assert folder.manifest.normalized is True and folder.manifest.dim == 384
    question = f"what is {passages[3].title}"
    [hits] = folder.search(encoder.encode_queries([question]), 3)
    assert main(["--quiet", "search", question, "--index", str(tmp_path / "idx"), "--rerank", "0", "--json", "-k", "3"]) == 0
    assert [h["id"] for h in json.loads(capsys.readouterr().out)["hits"]] == [h.passage.id for h in hits]


# --- bad input: one clear message, nothing written, nothing unpickled ------------------------------------


def test_row_counts_must_match(tmp_path, capsys):
    passages = corpus(20)
    np.save(tmp_path / "v.npy", vectors(21, 8))
    jsonl = write_jsonl(tmp_path / "p.jsonl", passages)
    status, _, err = cli(capsys, "--vectors", str(tmp_path / "v.npy"), "--passages", str(jsonl), "--encoder", "default", "--out", str(tmp_path / "idx"), "--chunk-size", "8")
    assert status == 2 and "has 21 rows but" in err and "only 20 passages" in err
    np.save(tmp_path / "v.npy", vectors(19, 8))
    status, _, err = cli(capsys, "--vectors", str(tmp_path / "v.npy"), "--passages", str(jsonl), "--encoder", "default", "--out", str(tmp_path / "idx"))
    assert status == 2 and "has 20 passages but" in err and "only 19 rows" in err
    assert not (tmp_path / "idx").exists() and not (tmp_path / "idx.partial").exists()


@pytest.mark.parametrize("array, message", [
    (np.zeros(8, np.float32), "the vectors must be a 2-d matrix"),
    (np.zeros((2, 3, 4), np.float32), "the vectors must be a 2-d matrix"),
    (np.zeros((4, 8), np.int64), "dtype int64; the vectors must be floating point"),
    (np.zeros((0, 8), np.float32), "an empty matrix"),
])
def test_matrices_of_the_wrong_shape_or_dtype(tmp_path, capsys, array, message):
    np.save(tmp_path / "v.npy", array)
    jsonl = write_jsonl(tmp_path / "p.jsonl", corpus(4))
    status, _, err = cli(capsys, "--vectors", str(tmp_path / "v.npy"), "--passages", str(jsonl), "--encoder", "default", "--out", str(tmp_path / "idx"))
    assert status == 2 and message in err and "Traceback" not in err


def _spring(path: str) -> None:
    """What unpickling the trap below runs."""
    Path(path).write_text("unpickled")


class _Trap:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return _spring, (self.marker,)


def test_a_pickled_npy_is_refused_and_never_unpickled(tmp_path, capsys):
    marker = tmp_path / "sprung"
    np.save(tmp_path / "v.npy", np.array([_Trap(marker), _Trap(marker)], dtype=object), allow_pickle=True)
    jsonl = write_jsonl(tmp_path / "p.jsonl", corpus(2))
    status, _, err = cli(capsys, "--vectors", str(tmp_path / "v.npy"), "--passages", str(jsonl), "--encoder", "default", "--out", str(tmp_path / "idx"))
    assert status == 2 and "rag never unpickles" in err and "Traceback" not in err
    assert not marker.exists()
    np.load(tmp_path / "v.npy", allow_pickle=True)  # the trap is live: unpickling it would have sprung it
    assert marker.exists()


def test_bad_wiki_dpr_parquet(tmp_path, capsys):
    passages, x = corpus(6), vectors(6, 8)
    table = wiki_dpr_table(passages, x)
    pq.write_table(table.drop_columns(["title", "embeddings"]), tmp_path / "cols.parquet")
    status, _, err = cli(capsys, "--wiki-dpr", str(tmp_path / "cols.parquet"), "--out", str(tmp_path / "idx"))
    assert status == 2 and "no column 'title', 'embeddings'" in err and "this has id, text" in err
    ragged = table.set_column(3, "embeddings", pa.array([list(v) for v in x[:4]] + [list(x[4][:5]), list(x[5])], pa.list_(pa.float32())))
    pq.write_table(ragged, tmp_path / "ragged.parquet")
    status, _, err = cli(capsys, "--wiki-dpr", str(tmp_path / "ragged.parquet"), "--out", str(tmp_path / "idx"))
    assert status == 2 and "row 4 (id '1004'): an embedding of 5 values, row 0 has 8" in err and "unequal length" in err
    untexted = table.set_column(1, "text", pa.array(["a", "b", None, "d", "e", "f"], pa.string()))
    pq.write_table(untexted, tmp_path / "untexted.parquet")
    status, _, err = cli(capsys, "--wiki-dpr", str(tmp_path / "untexted.parquet"), "--out", str(tmp_path / "idx"))
    assert status == 2 and "row 2 (id '1002'): no text" in err
    twice = table.set_column(0, "id", pa.array(["a", "b", "c", "b", "e", "f"]))
    pq.write_table(twice, tmp_path / "twice.parquet")
    status, _, err = cli(capsys, "--wiki-dpr", str(tmp_path / "twice.parquet"), "--out", str(tmp_path / "idx"), "--chunk-size", "2")
    assert status == 2 and "duplicate passage id 'b' at row 3 (an earlier row has it already)" in err
    (tmp_path / "not.parquet").write_text("id,text\n")
    status, _, err = cli(capsys, "--wiki-dpr", str(tmp_path / "not.parquet"), "--out", str(tmp_path / "idx"))
    assert status == 2 and "not a parquet file" in err
    assert not (tmp_path / "idx").exists() and not (tmp_path / "idx.partial").exists()


def test_passage_file_problems_are_named_by_line(tmp_path, capsys):
    passages = corpus(5)
    np.save(tmp_path / "v.npy", vectors(5, 8))
    jsonl = write_jsonl(tmp_path / "p.jsonl", passages[:4] + [passages[1]])
    status, _, err = cli(capsys, "--vectors", str(tmp_path / "v.npy"), "--passages", str(jsonl), "--encoder", "default", "--out", str(tmp_path / "idx"))
    assert status == 2 and "p.jsonl:5: duplicate passage id '1001'" in err and "--skip-bad" not in err
    (tmp_path / "p.xml").write_text("<mediawiki/>")
    status, _, err = cli(capsys, "--vectors", str(tmp_path / "v.npy"), "--passages", str(tmp_path / "p.xml"), "--encoder", "default", "--out", str(tmp_path / "idx"))
    assert status == 2 and "needs one passage a record" in err


def test_command_line_refusals(tmp_path, capsys):
    np.save(tmp_path / "v.npy", vectors(4, 8))
    jsonl = write_jsonl(tmp_path / "p.jsonl", corpus(4))
    base = ["--vectors", str(tmp_path / "v.npy"), "--passages", str(jsonl)]
    status, _, err = cli(capsys, *base, "--out", str(tmp_path / "idx"))
    assert status == 2 and "--encoder is required with --vectors" in err and "cannot guess" in err
    status, _, err = cli(capsys, "--vectors", str(tmp_path / "v.npy"), "--encoder", "default", "--out", str(tmp_path / "idx"))
    assert status == 2 and "needs --passages" in err
    (tmp_path / "v.pt").write_bytes(b"\x80\x04")
    status, _, err = cli(capsys, "--vectors", str(tmp_path / "v.pt"), "--passages", str(jsonl), "--encoder", "default", "--out", str(tmp_path / "idx"))
    assert status == 2 and ".npy or .safetensors" in err and "never unpickles" in err
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    status, _, err = cli(capsys, *base, "--encoder", "default", "--out", str(mine))
    assert status == 2 and "already exists; pass --overwrite" in err
    status, _, err = cli(capsys, *base, "--encoder", "default", "--out", str(mine), "--overwrite")
    assert status == 2 and "is not an index folder" in err and (mine / "notes.txt").read_text() == "mine"
    assert cli(capsys, *base, "--encoder", "default", "--out", str(tmp_path / "idx"), "--no-bm25")[0] == 0
    assert cli(capsys, *base, "--encoder", "default", "--out", str(tmp_path / "idx"), "--no-bm25", "--overwrite")[0] == 0
    status, _, err = cli(capsys, *base, "--encoder", "default", "--out", str(tmp_path / "idx"), "--refine", "sq8")
    assert status == 2 and "apply to --kind ivfpq" in err


def test_from_hub_offline_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    status, _, err = cli(capsys, "--from-hub", "wiki_dpr", "--config", "psgs_w100.nq.exact", "--out", str(tmp_path / "idx"))
    assert status == 2 and "cannot stream wiki_dpr (psgs_w100.nq.exact, train) from the Hugging Face hub" in err and "--wiki-dpr FILES" in err
    assert not (tmp_path / "idx").exists() and not (tmp_path / "idx.partial").exists()


def test_from_hub_streams_in_batches(tmp_path, capsys, monkeypatch):
    """--from-hub as it runs where a network exists, with load_dataset answering from a local stream."""
    import datasets

    passages, x = corpus(30, seed=12), vectors(30, 8, seed=12)
    asked = []

    def load_dataset(name, config, split, streaming):
        asked.append((name, config, split, streaming))
        return datasets.Dataset(wiki_dpr_table(passages, x)).to_iterable_dataset()

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    status, _, err = cli(capsys, "--from-hub", "wiki_dpr", "--config", "psgs_w100.nq.exact", "--out", str(tmp_path / "idx"), "--chunk-size", "7", "--no-bm25")
    assert status == 0, err
    assert asked == [("wiki_dpr", "psgs_w100.nq.exact", "train", True)]
    assert_searches_like_brute_force(tmp_path / "idx", x, passages)
    assert open_index(tmp_path / "idx").manifest.sources[0].source == "hf:wiki_dpr:psgs_w100.nq.exact:train"


# --- kills: only NAME.partial is ever left, and a rerun finishes ---------------------------------------------


def test_a_killed_import_leaves_only_partial_and_a_rerun_finishes(tmp_path, monkeypatch):
    import rag.files

    passages, x = corpus(30), vectors(30, 8)
    np.save(tmp_path / "v.npy", x)
    jsonl = write_jsonl(tmp_path / "p.jsonl", passages)
    config = ImportConfig(encoder="default", chunk_size=10)

    class Killed(BaseException):
        pass

    whole = MatrixSource.chunks

    def killed_midway(self, size, scratch):
        yield next(whole(self, size, scratch))
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(MatrixSource, "chunks", killed_midway)
        with pytest.raises(Killed):
            import_index(MatrixSource(tmp_path / "v.npy", jsonl), tmp_path / "idx", config, progress=False)
    assert not (tmp_path / "idx").exists() and (tmp_path / "idx.partial").exists()
    with pytest.raises(RagError, match="not built yet: an unfinished build waits"):
        open_index(tmp_path / "idx")

    def killed_before_swap(*args, **kwargs):
        raise Killed

    with monkeypatch.context() as m:  # the rerun discards the half import; this one is killed once it is whole
        m.setattr(rag.files, "publish_folder", killed_before_swap)
        with pytest.raises(Killed):
            import_index(MatrixSource(tmp_path / "v.npy", jsonl), tmp_path / "idx", config, progress=False)
    assert not (tmp_path / "idx").exists() and (tmp_path / "idx.partial" / "manifest.json").exists()
    with monkeypatch.context() as m:  # the rerun publishes the finished import without reading anything again
        m.setattr(MatrixSource, "chunks", lambda *a: pytest.fail("re-read a finished import"))
        import_index(MatrixSource(tmp_path / "v.npy", jsonl), tmp_path / "idx", config, progress=False)
    assert_searches_like_brute_force(tmp_path / "idx", x, passages)


def test_add_to_an_imported_index(tmp_path, encoder, default_passages):
    """An imported index is an index like any: `rag index add` encodes new passages with the recorded encoder."""
    from rag.build import add_to_index

    passages = default_passages[:20]
    np.save(tmp_path / "v.npy", encoder.encode_passages(passages))
    import_index(MatrixSource(tmp_path / "v.npy", write_jsonl(tmp_path / "p.jsonl", passages)), tmp_path / "idx", ImportConfig(encoder="default"), progress=False)
    more = [Passage(f"new-{i}", p.title, p.text) for i, p in enumerate(default_passages[20:25])]
    grown = add_to_index(tmp_path / "idx", str(write_jsonl(tmp_path / "more.jsonl", more)), encoder=encoder, progress=False)
    assert grown.manifest.passages == 25 and verify_index(tmp_path / "idx", progress=False).ok


# --- the README ----------------------------------------------------------------------------------------------


def test_readme_import_commands_parse():
    text = README.read_text()
    assert "## Import pre-computed indexes: `rag index import`" in text
    commands = [c for c in readme_commands() if c.startswith("rag index import")]
    assert len(commands) >= 3
    for command in commands:
        build_parser().parse_args(shlex.split(command)[1:])


def test_the_dpr_reproduction_recipe_runs_end_to_end_on_a_fixture_in_its_formats(tmp_path, encoder, default_passages, capsys):
    """README's "Reproduce DPR on Natural Questions", here on a wiki_dpr-schema parquet (vectors made by the
    default MiniLM, as DPR's are by its context encoder) and a DPR `*.qa.csv` question file: import, then
    `rag eval retrieval --retrievers dense --rerank 0 --k-list ...`, the recipe's two commands, end to end."""
    passages = default_passages[:60]
    pq.write_table(wiki_dpr_table(passages, encoder.encode_passages(passages)), tmp_path / "train-00000-of-00001.parquet")
    with open(tmp_path / "nq-test.qa.csv", "w", newline="") as f:  # DPR's format: question<TAB>["answer", ...]
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerows([f"what is {p.title}", json.dumps([p.title])] for p in passages[:12])
    out = tmp_path / "wiki-dpr-nq"
    status, _, err = cli(capsys, "--wiki-dpr", str(tmp_path / "train-00000-of-00001.parquet"), "--encoder", "default", "--out", str(out), "--no-bm25")
    assert status == 0, err
    assert main(["--quiet", "eval", "retrieval", "--questions", str(tmp_path / "nq-test.qa.csv"), "--index", str(out), "--retrievers", "dense",
                 "--rerank", "0", "--k-list", "1,5,20", "--out", str(tmp_path / "eval")]) == 0
    row = next(line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("dense "))
    assert float(row[3]) >= 90.0  # top-20: each question names its passage's title; the vectors are the real MiniLM's

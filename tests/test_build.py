"""Index folders end to end: build with the real MiniLM, reload, search, add, encoder check, resume after a kill."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rag.build import BuildConfig, add_to_index, build_index
from rag.index_folder import Manifest, open_index
from rag.retrieve import DenseRetriever
from rag.types import RagError

ROOT = Path(__file__).resolve().parents[1]


def test_built_folder_is_self_describing(small_index):
    folder = small_index.path
    assert sorted(p.name for p in folder.iterdir() if p.name != "bm25") == ["index.faiss", "manifest.json", "passages.sqlite", "row_digests.g0.npy"]
    m = json.loads((folder / "manifest.json").read_text())
    assert m["format"] == "rag-index v1" and m["encoder"] == "default" and m["dim"] == 384
    assert m["passages"] == 300 and m["index"]["kind"] == "flat"
    assert m["sources"][0]["format"] == "jsonl" and len(m["sources"][0]["sha256"]) == 64
    assert 1536 <= m["bytes_per_vector"] < 1700  # 384 float32 + FAISS header
    assert not folder.with_name(folder.name + ".partial").exists()


def test_search_finds_the_article_a_question_is_about(small_index, encoder):
    retriever = DenseRetriever(open_index(small_index.path), encoder)
    [hits] = retriever.retrieve(["Who directed 2001: A Space Odyssey?"], 5)
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert hits[0].passage.title == "2001: A Space Odyssey"
    assert hits[0].score >= hits[1].score >= hits[4].score


def test_reloaded_index_answers_like_the_built_one(small_index, encoder):
    questions = ["Who directed 2001: A Space Odyssey?", "what is abstract art", "when did the American civil war start"]
    q = encoder.encode_queries(questions)
    reloaded = open_index(small_index.path)
    assert [[h.passage.id for h in hs] for hs in reloaded.search(q, 10)] == [[h.passage.id for h in hs] for hs in small_index.search(q, 10)]


def test_loading_with_another_encoder_is_refused(small_index):
    with pytest.raises(RagError, match="was built with encoder 'default', not 'sentence-transformers/all-mpnet-base-v2'"):
        open_index(small_index.path, encoder_spec="sentence-transformers/all-mpnet-base-v2")


def test_existing_output_needs_overwrite(small_index, small_corpus_jsonl):
    with pytest.raises(RagError, match="already exists; pass --overwrite"):
        build_index(BuildConfig(corpus=str(small_corpus_jsonl)), small_index.path, progress=False)


def test_add_makes_new_passages_retrievable_and_rebuild_replaces(tmp_path, encoder, small_corpus_jsonl):
    first = tmp_path / "first.jsonl"
    first.write_text("".join(line for line in small_corpus_jsonl.read_text().splitlines(keepends=True)[:40]))
    new = tmp_path / "new.jsonl"
    new.write_text(json.dumps({"id": "zq", "title": "Zorblax Quintet", "text": "The Zorblax Quintet is a jazz band from Tromsø that plays only on the tuba."}) + "\n")
    out = tmp_path / "idx"
    build_index(BuildConfig(corpus=str(first)), out, encoder=encoder, progress=False)
    question = ["Which band from Tromsø plays only on the tuba?"]
    before = DenseRetriever(open_index(out), encoder).retrieve(question, 3)[0]
    assert before[0].passage.id != "zq-0"

    folder = add_to_index(out, str(new), encoder=encoder, progress=False)
    assert folder.manifest.passages == 41 and len(folder.manifest.sources) == 2
    after = DenseRetriever(open_index(out), encoder).retrieve(question, 3)[0]
    assert after[0].passage.id == "zq-0"
    assert [h.passage.id for h in after[1:]] == [h.passage.id for h in before[:2]]

    # The same file again is a finished add: nothing changes. Another file with a taken id is refused.
    assert add_to_index(out, str(new), encoder=encoder, progress=False).manifest.passages == 41
    other = tmp_path / "other.jsonl"
    other.write_text(new.read_text())
    with pytest.raises(RagError, match="duplicate passage id 'zq-0'"):
        add_to_index(out, str(other), encoder=encoder, progress=False)
    assert open_index(out).manifest.passages == 41 and len(open_index(out).manifest.sources) == 2

    # --overwrite rebuilds from a new corpus.
    rebuilt = build_index(BuildConfig(corpus=str(new), overwrite=True), out, encoder=encoder, progress=False)
    assert rebuilt.manifest.passages == 1 and not out.with_name("idx.old").exists()


def test_bad_corpus_leaves_no_index(tmp_path, encoder):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title": "A", "text": "fine"}\n{broken\n')
    out = tmp_path / "idx"
    with pytest.raises(RagError, match=r"bad\.jsonl:2: invalid JSON"):
        build_index(BuildConfig(corpus=str(bad)), out, encoder=encoder, progress=False)
    assert not out.exists()
    # With skipping, the bad line is counted in the manifest.
    folder = build_index(BuildConfig(corpus=str(bad), on_error="skip"), out, encoder=encoder, progress=False)
    assert folder.manifest.passages == 1 and folder.manifest.sources[0].skipped == 1


def _rag(*args: str) -> list[str]:
    return [sys.executable, "-m", "rag.cli", *args]


def test_killed_build_resumes_to_the_same_index(tmp_path, small_corpus_jsonl, encoder):
    """Kill a real `rag index build` after two shards, rerun it: same vectors, fewer passages encoded."""
    out = tmp_path / "idx"
    args = _rag("index", "build", "--corpus", str(small_corpus_jsonl), "--out", str(out), "--shard-size", "32", "--precision", "fp32")  # fp32: exact vectors
    shards = out.with_name("idx.partial") / "shards"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while len(list(shards.glob("emb_*.npy"))) < 2:
            assert proc.poll() is None, "the build ended before it could be killed"
            assert time.time() < deadline, "no shards written in time"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
    kept = sorted(p.name for p in shards.glob("emb_*.npy"))
    assert 2 <= len(kept) < 10 and not out.exists()

    resumed = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {32 * len(kept)} of 300 passages already encoded" in resumed.stderr
    assert not out.with_name("idx.partial").exists()

    folder = open_index(out)
    assert Manifest.read(out).passages == 300
    ref = open_index(tmp_path / "ref") if (tmp_path / "ref").exists() else build_index(BuildConfig(corpus=str(small_corpus_jsonl)), tmp_path / "ref", encoder=encoder, progress=False)
    a = folder.dense.reconstruct(np.arange(300))
    b = ref.dense.reconstruct(np.arange(300))
    np.testing.assert_allclose(a, b, atol=1e-5)
    q = encoder.encode_queries(["what is anarchism", "Who directed 2001: A Space Odyssey?"])
    assert [[h.passage.id for h in hs] for hs in folder.search(q, 10)] == [[h.passage.id for h in hs] for hs in ref.search(q, 10)]


def test_cli_reports_errors_without_traceback(tmp_path):
    result = subprocess.run(_rag("search", "anything", "--index", str(tmp_path / "nope")), cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert "rag: error:" in result.stderr and "rag index build --corpus default" in result.stderr
    assert "Traceback" not in result.stderr
    blank = subprocess.run(_rag("search", "   ", "--index", str(tmp_path / "nope")), cwd=ROOT, capture_output=True, text=True)
    assert blank.returncode == 2 and "rag: error: Type a question first." in blank.stderr
    bad = tmp_path / "bad.tsv"
    bad.write_text("id\ttext\ttitle\n1\tonly two\n")
    result = subprocess.run(_rag("index", "build", "--corpus", str(bad), "--out", str(tmp_path / "i")), cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and f"{bad}:2: expected 3 tab-separated columns" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "i").exists()

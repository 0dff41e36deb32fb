"""Trust (issue 29), each case reproduced for real: a damaged passage store never answers, --overwrite never
deletes what rag did not write, bad paths and damaged folders are messages (never tracebacks), and the
messages say what really happened."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from rag.build import BuildConfig, build_index
from rag.cli import main
from rag.index_folder import MANIFEST, STORE, open_index
from rag.types import RagError
from rag.verify import verify_index


def write_corpus(path: Path, passages) -> Path:
    path.write_text("".join(json.dumps({"id": p.id, "title": p.title, "text": p.text}) + "\n" for p in passages))
    return path


def error_of(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def sixty_built(tmp_path_factory, default_passages, encoder):
    corpus = write_corpus(tmp_path_factory.mktemp("trust") / "sixty.jsonl", default_passages[:60])
    return build_index(BuildConfig(corpus=str(corpus), shard_size=32), corpus.parent / "idx", encoder=encoder, progress=False).path


@pytest.fixture
def sixty(tmp_path, sixty_built):
    """A private copy of a 60-passage index, free to damage."""
    shutil.copytree(sixty_built, tmp_path / "idx")
    return open_index(tmp_path / "idx")


def swap_rows(store: Path, a: int, b: int) -> None:
    """Swap two rows' id, title and text in place (the file keeps its size: what a careless edit does)."""
    db = sqlite3.connect(store)
    (ia, ta, xa), (ib, tb, xb) = (db.execute("SELECT id, title, text FROM passages WHERE row=?", (r,)).fetchone() for r in (a, b))
    db.execute("UPDATE passages SET id=? WHERE row=?", (f"tmp-{ia}", a))
    db.execute("UPDATE passages SET id=?, title=?, text=? WHERE row=?", (ia, ta, xa, b))
    db.execute("UPDATE passages SET id=?, title=?, text=? WHERE row=?", (ib, tb, xb, a))
    db.commit()
    db.close()


def edit_text(store: Path, row: int, text: str) -> None:
    db = sqlite3.connect(store)
    db.execute("UPDATE passages SET text=? WHERE row=?", (text, row))
    db.commit()
    db.close()


# --- 1. a damaged store never answers ---------------------------------------------------------


def test_swapped_rows_are_reported_when_a_search_would_return_them(sixty, capsys):
    query = sixty.store.get_rows([31])[0].text
    size = (sixty.path / STORE).stat().st_size
    swap_rows(sixty.path / STORE, 30, 31)
    assert (sixty.path / STORE).stat().st_size == size  # the size check alone cannot see it
    err = error_of(capsys, "search", query, "--index", str(sixty.path), "--rerank", "0", "-k", "3")
    assert "is damaged" in err and "row 3" in err and "Repair: rag index build" in err
    with pytest.raises(RagError, match="swapped"):
        open_index(sixty.path).search(open_index(sixty.path).load_encoder().encode_queries([query]), 3)


def test_an_edited_passage_text_is_never_answered_from(sixty, capsys):
    row = 12
    original = sixty.store.get_rows([row])[0]
    edit_text(sixty.path / STORE, row, "Anne Rice!!")
    err = error_of(capsys, "ask", original.text[:200], "--index", str(sixty.path), "--rerank", "0", "-k", "3")
    assert f"row {row}" in err and "is damaged" in err
    assert "Anne Rice" not in capsys.readouterr().out


def test_verify_checks_every_row_and_names_the_damaged_ones(sixty, capsys):
    assert verify_index(sixty.path, progress=False).ok
    assert main(["index", "verify", "--index", str(sixty.path)]) == 0
    assert "all 60 passages" in capsys.readouterr().out
    swap_rows(sixty.path / STORE, 40, 41)
    edit_text(sixty.path / STORE, 5, "edited")
    report = verify_index(sixty.path, progress=False)
    assert report.damaged_rows == 3 and not report.ok
    assert any("row 5 " in p for p in report.problems) and any("row 40 " in p for p in report.problems)
    assert main(["index", "verify", "--index", str(sixty.path)]) == 1
    out = capsys.readouterr().out
    assert "is damaged" in out and "Repair: rag index build" in out


def test_verify_catches_a_faiss_file_changed_in_place(sixty):
    import faiss
    import numpy as np

    path = sixty.path / "index.faiss"
    index = faiss.read_index(str(path))
    vectors = index.reconstruct_n(0, index.ntotal)
    vectors[[3, 4]] = vectors[[4, 3]]  # two rows' vectors swapped: same size, same sampled rows
    swapped = faiss.IndexFlatIP(index.d)
    swapped.add(np.ascontiguousarray(vectors))
    faiss.write_index(swapped, str(path))
    report = verify_index(sixty.path, progress=False)
    assert not report.ok and any("index.faiss" in p and "sha256" in p for p in report.problems)


def test_add_records_digests_for_the_new_rows_and_still_catches_old_damage(sixty, tmp_path, default_passages):
    from rag.build import add_to_index

    more = write_corpus(tmp_path / "more.jsonl", default_passages[60:80])
    folder = add_to_index(sixty.path, str(more), progress=False)
    assert len(list(sixty.path.glob("row_digests.g*.npy"))) == 1  # the superseded generation is gone
    assert verify_index(sixty.path, progress=False).ok
    edit_text(sixty.path / STORE, 70, "edited after the add")
    with pytest.raises(RagError, match="row 70"):
        open_index(sixty.path).store.get_rows([70])
    assert folder.manifest.passages == 80


# --- 2. --overwrite replaces only what rag wrote ------------------------------------------------


def test_overwrite_refuses_an_index_folder_holding_user_files(sixty, capsys):
    corpus = open_index(sixty.path).manifest.sources[0].source
    (sixty.path / "NOTES.md").write_text("notes\n")
    (sixty.path / "runs").mkdir()
    (sixty.path / "runs" / "r1.txt").write_text("x\n")
    err = error_of(capsys, "index", "build", "--corpus", corpus, "--out", str(sixty.path), "--overwrite")
    assert "NOTES.md" in err and "runs/" in err and "nothing was written" in err
    assert (sixty.path / "NOTES.md").read_text() == "notes\n" and (sixty.path / "runs" / "r1.txt").exists()
    open_index(sixty.path)  # the index itself is untouched too


# --- 3. messages, not tracebacks ----------------------------------------------------------------


def test_out_dot_and_root_are_refused_with_a_message(tmp_path, capsys, monkeypatch, small_corpus_jsonl):
    (tmp_path / "mine.txt").write_text("mine\n")
    monkeypatch.chdir(tmp_path)
    err = error_of(capsys, "index", "build", "--corpus", str(small_corpus_jsonl), "--out", ".")
    assert "already exists" in err or "is not an index folder" in err
    err = error_of(capsys, "index", "build", "--corpus", str(small_corpus_jsonl), "--out", "/", "--overwrite")
    assert "cannot build an index at /" in err
    assert (tmp_path / "mine.txt").exists()


def test_a_manifest_naming_another_index_kind_is_damage(sixty, capsys):
    manifest = json.loads((sixty.path / MANIFEST).read_text())
    manifest["index"]["kind"] = "hnsw"
    (sixty.path / MANIFEST).write_text(json.dumps(manifest))
    err = error_of(capsys, "search", "who wrote dracula", "--index", str(sixty.path), "--rerank", "0")
    assert "holds a flat FAISS index, the manifest says hnsw" in err and "Repair:" in err


def test_bm25_folder_replaced_by_a_file_is_left_alone_and_searched_in_memory(sixty, capsys):
    (sixty.path / "bm25").write_text("my file\n")
    assert main(["search", "the", "--index", str(sixty.path), "--retriever", "bm25", "--rerank", "0"]) == 0
    captured = capsys.readouterr()
    assert "kept in memory only" in captured.err and "Traceback" not in captured.err
    assert (sixty.path / "bm25").read_text() == "my file\n"


# --- 5. messages that say what happened ------------------------------------------------------------


def test_a_missing_index_with_an_unfinished_build_says_resume(tmp_path, capsys, small_corpus_jsonl):
    partial = tmp_path / "idx.partial"
    partial.mkdir()
    (partial / ".rag-scratch").write_text("made by rag\n")
    (partial / "build.json").write_text(json.dumps({"corpus": str(small_corpus_jsonl)}))
    err = error_of(capsys, "search", "who", "--index", str(tmp_path / "idx"), "--rerank", "0")
    assert "unfinished build waits" in err and str(small_corpus_jsonl) in err and "--corpus default" not in err


def test_a_symlink_to_an_index_opens(sixty, tmp_path, capsys):
    link = tmp_path / "link"
    os.symlink(sixty.path, link)
    assert main(["search", "who", "--index", str(link), "--rerank", "0", "-k", "1"]) == 0


def test_the_manifest_records_the_corpus_path_absolute(tmp_path, monkeypatch, default_passages, encoder):
    write_corpus(tmp_path / "rel.jsonl", default_passages[:20])
    monkeypatch.chdir(tmp_path)
    folder = build_index(BuildConfig(corpus="rel.jsonl", shard_size=32), Path("out"), encoder=encoder, progress=False)
    assert folder.manifest.sources[0].source == str(tmp_path / "rel.jsonl")


def test_quiet_is_accepted_after_the_command(sixty, capsys):
    assert main(["search", "who", "--index", str(sixty.path), "--rerank", "0", "-k", "1", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_copy_of_an_index_moved_elsewhere_still_verifies(sixty, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(sixty.path, moved)
    assert verify_index(moved, progress=False).ok


def test_overwrite_through_a_symlink_says_it_is_a_link(sixty, tmp_path, capsys):
    link = tmp_path / "link"
    os.symlink(sixty.path, link)
    corpus = open_index(sixty.path).manifest.sources[0].source
    err = error_of(capsys, "index", "build", "--corpus", corpus, "--out", str(link), "--overwrite")
    assert "is a symbolic link" in err and "Pass the real path" in err
    assert link.is_symlink() and open_index(sixty.path).manifest.passages == 60

"""Never lose a user's data, never answer wrong silently (issue 13), each case reproduced for real:
folders that are not rag artifacts are never replaced, kills at any step leave an openable index or
checkpoint, damaged indexes are refused with the file named and a repair that works, adds are
locked and recorded before they encode, and searches keep working while an add runs."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag.build import BuildConfig, _build_state, _pending_source, _store_pending, add_to_index, build_index
from rag.cli import main
from rag.corpus import SplitConfig
from rag.files import SCRATCH_MARKER, folder_lock, write_json_atomic
from rag.index_folder import FAISS_FILE, MANIFEST, STORE, Manifest, open_index
from rag.train.joint import TrainConfig, train
from rag.types import QAExample, RagError

ROOT = Path(__file__).resolve().parents[1]


def write_corpus(path: Path, passages) -> Path:
    path.write_text("".join(json.dumps({"id": p.id, "title": p.title, "text": p.text}) + "\n" for p in passages))
    return path


def rag_process(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, "-m", "rag.cli", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def error_of(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def forty(default_passages):
    return default_passages[:40]


@pytest.fixture
def tiny(tmp_path, forty, encoder):
    """A private 40-passage index, free to damage."""
    corpus = write_corpus(tmp_path / "forty.jsonl", forty)
    return build_index(BuildConfig(corpus=str(corpus), shard_size=16), tmp_path / "idx", encoder=encoder, progress=False)


# --- folders that are not ours are never replaced ---------------------------------------------


def test_train_refuses_an_out_folder_that_is_not_a_checkpoint(tmp_path, tiny, capsys):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "thesis.txt").write_text("four years of work")
    err = error_of(capsys, "train", "--questions", str(tmp_path / "q.jsonl"), "--index", str(tiny.path), "--out", str(thesis))
    assert "thesis.txt" in err and "not a joint-training checkpoint" in err
    assert (thesis / "thesis.txt").read_text() == "four years of work" and not (tmp_path / "thesis.partial").exists()


def test_train_out_dot_is_refused_up_front(tmp_path, tiny, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = error_of(capsys, "train", "--questions", "q.jsonl", "--index", str(tiny.path), "--out", ".")
    assert "not a joint-training checkpoint" in err and "empty name" not in err


def test_overwrite_refuses_a_folder_that_is_not_an_index(tmp_path, small_corpus_jsonl, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    err = error_of(capsys, "index", "build", "--corpus", str(small_corpus_jsonl), "--out", str(mine), "--overwrite")
    assert "notes.txt" in err and "not an index folder" in err
    assert (mine / "notes.txt").read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_overwrite_refuses_an_index_folder_holding_the_corpus_it_reads(tmp_path, tiny, forty, capsys):
    corpus = write_corpus(tiny.path / "corpus.jsonl", forty)
    err = error_of(capsys, "index", "build", "--corpus", str(corpus), "--out", str(tiny.path), "--overwrite")
    assert "inside" in err and corpus.exists()
    assert open_index(tiny.path).manifest.passages == 40


def test_a_missing_corpus_leaves_nothing_behind(tmp_path, capsys):
    err = error_of(capsys, "index", "build", "--corpus", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "idx"))
    assert "nope.jsonl" in err and list(tmp_path.iterdir()) == []


def test_a_bad_corpus_leaves_no_partial_folder(tmp_path, encoder):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "title": "A", "text": "fine"}\n{broken\n')
    with pytest.raises(RagError, match="bad.jsonl:2"):
        build_index(BuildConfig(corpus=str(bad)), tmp_path / "idx", encoder=encoder, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]


def test_a_stray_partial_folder_that_is_not_ours_is_not_deleted(tmp_path, forty, encoder):
    corpus = write_corpus(tmp_path / "forty.jsonl", forty)
    stray = tmp_path / "idx.partial"
    stray.mkdir()
    (stray / "mine.txt").write_text("mine")
    with pytest.raises(RagError, match="mine.txt"):
        build_index(BuildConfig(corpus=str(corpus)), tmp_path / "idx", encoder=encoder, progress=False)
    assert (stray / "mine.txt").read_text() == "mine"


# --- kills at any step ------------------------------------------------------------------------


def test_rebuild_killed_at_any_moment_leaves_an_openable_index_and_the_rerun_finishes(tmp_path, small_corpus_jsonl, forty, encoder):
    """Real SIGKILLs of `rag index build --overwrite` at spread-out moments: after each, the old
    (40 passages) or the new index (300) opens and searches; the last rerun publishes the new one."""
    out = tmp_path / "idx"
    build_index(BuildConfig(corpus=str(write_corpus(tmp_path / "forty.jsonl", forty)), shard_size=16), out, encoder=encoder, progress=False)
    args = ("index", "build", "--corpus", str(small_corpus_jsonl), "--out", str(out), "--overwrite", "--shard-size", "64")
    seen = set()
    for delay in (2.0, 6.0, 9.0, 12.0, 15.0):
        proc = rag_process(*args)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        folder = open_index(out)
        assert folder.manifest.passages in (40, 300) and len(folder.search(encoder.encode_queries(["dune"]), 3)[0]) == 3
        seen.add(folder.manifest.passages)
    proc = rag_process(*args)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert open_index(out).manifest.passages == 300
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forty.jsonl", "idx"]  # no .partial or .old left


def test_a_build_killed_after_it_finished_is_published_by_the_rerun_not_redone(tmp_path, forty, encoder):
    corpus = write_corpus(tmp_path / "forty.jsonl", forty)
    config = BuildConfig(corpus=str(corpus), shard_size=16)
    finished = build_index(config, tmp_path / "elsewhere", encoder=encoder, progress=False)
    partial = tmp_path / "idx.partial"  # what a kill just before the swap leaves
    os.rename(finished.path, partial)
    write_json_atomic(partial / "build.json", _build_state(config))
    (partial / SCRATCH_MARKER).write_text("")
    published = build_index(config, tmp_path / "idx", encoder=None, encode_shards=_fail, progress=False)
    assert published.manifest.built_at == finished.manifest.built_at and not partial.exists()


def _fail(*args):
    raise AssertionError("a finished build must not be encoded again")


def test_a_kill_between_the_renames_of_a_fallback_swap_is_recovered_on_open(tmp_path, tiny):
    """Where the atomic exchange is unavailable the swap is two renames; a kill between them
    leaves only OUT.old, which opening (and the next build) puts back."""
    os.rename(tiny.path, tiny.path.with_name("idx.old"))
    assert open_index(tiny.path).manifest.passages == 40 and not tiny.path.with_name("idx.old").exists()


def test_training_checkpoints_survive_the_swap_and_refuse_changed_settings(tmp_path, tiny, capsys):
    out = tmp_path / "ckpt"
    example = QAExample("dune", "who wrote the novel dune?", ("Frank Herbert",))
    settings = dict(questions="(in memory)", index=str(tiny.path), out=str(out), k=2, batch_size=1, max_length=64, save_every=1)
    assert train(TrainConfig(**settings, epochs=2), [example, example], progress=False).steps == 4
    os.rename(out, out.with_name("ckpt.old"))  # a kill between the two renames of a fallback swap
    assert train(TrainConfig(**settings, epochs=3), [example, example], progress=False).steps == 6  # resumed, not restarted
    for changed in ({"batch_size": 2}, {"k": 3}, {"max_length": 96}):
        with pytest.raises(RagError, match=f"{next(iter(changed))}: .* then"):
            train(TrainConfig(**{**settings, **changed}, epochs=3), [example, example], progress=False)
    state = json.loads((out / "checkpoint.json").read_text())
    assert state["step"] == 6 and state["config"]["batch_size"] == 1  # the refusals changed nothing
    assert train(TrainConfig(**{**settings, "k": 3}, epochs=1, fresh=True), [example], progress=False).steps == 1


# --- damaged indexes --------------------------------------------------------------------------


def damage_truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def edit_manifest(folder: Path, **changes) -> None:
    data = json.loads((folder / MANIFEST).read_text())
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".")
            data[outer][inner] = value
        else:
            data[key] = value
    (folder / MANIFEST).write_text(json.dumps(data))


@pytest.mark.parametrize("damage, named", [
    (lambda f: damage_truncate(f / FAISS_FILE), FAISS_FILE),
    (lambda f: damage_truncate(f / STORE), STORE),
    (lambda f: edit_manifest(f, colour="blue"), "colour"),
    (lambda f: edit_manifest(f, **{"index.kind": "annoy"}), "annoy"),
    (lambda f: edit_manifest(f, dim=768), "768"),
    (lambda f: (f / FAISS_FILE).unlink(), FAISS_FILE),
])
def test_a_damaged_index_is_refused_with_the_file_named_and_a_working_repair(tiny, capsys, damage, named):
    damage(tiny.path)
    err = error_of(capsys, "search", "dune", "--index", str(tiny.path))
    assert named in err and str(tiny.path) in err
    if "Repair: " in err:  # the repair command is run as printed
        repair = err.split("Repair: ", 1)[1].strip()
        assert repair.startswith("rag index build") and main(shlex.split(repair)[1:]) == 0
        assert open_index(tiny.path).manifest.passages == 40


def test_faiss_rows_in_another_order_than_the_store_are_caught(tmp_path, forty, encoder, capsys):
    forward = build_index(BuildConfig(corpus=str(write_corpus(tmp_path / "a.jsonl", forty))), tmp_path / "a", encoder=encoder, progress=False)
    backward = build_index(BuildConfig(corpus=str(write_corpus(tmp_path / "b.jsonl", forty[::-1]))), tmp_path / "b", encoder=encoder, progress=False)
    shutil.copy(backward.path / FAISS_FILE, forward.path / FAISS_FILE)  # same size, same vectors, other row order
    edit_manifest(forward.path, file_sizes={})  # even with the sizes check out of the way
    err = error_of(capsys, "search", "dune", "--index", str(forward.path))
    assert "no longer line up" in err and "Repair: rag index build" in err


# --- index add: recorded, locked, and invisible to searches until it commits --------------------


def test_an_interrupted_add_keeps_searches_on_the_last_commit_and_its_rerun_completes_the_sources(tmp_path, tiny, default_passages, encoder):
    more = write_corpus(tmp_path / "more.jsonl", default_passages[100:130])
    manifest = Manifest.read(tiny.path)
    pending = _pending_source(tiny.path, manifest, str(more), "auto")  # the add is killed after its store append
    _store_pending(tiny.path, manifest, pending, SplitConfig(), "raise", progress=False)
    during = open_index(tiny.path)
    assert during.manifest.passages == 40 and len(during.store) == 40 and during.manifest.sources[-1].pending
    assert len(during.search(encoder.encode_queries(["dune"]), 5)[0]) == 5
    done = add_to_index(tiny.path, str(more), encoder=encoder, progress=False)  # the rerun, same corpus: no duplicates
    assert done.manifest.passages == 70 and [s.pending for s in done.manifest.sources] == [False, False]
    assert done.manifest.sources[-1].passages == 30 and Path(done.manifest.sources[-1].source) == more.resolve()
    assert [f for f in os.listdir(tiny.path) if f.endswith(".faiss")] == done.manifest.faiss_files  # the old file is gone


def test_a_second_writer_is_refused_while_an_add_holds_the_lock(tmp_path, tiny, default_passages, encoder):
    more = write_corpus(tmp_path / "more.jsonl", default_passages[100:110])
    with folder_lock(tiny.path, "test"):
        with pytest.raises(RagError, match="being changed by rag process"):
            add_to_index(tiny.path, str(more), encoder=encoder, progress=False)
    assert [s.pending for s in Manifest.read(tiny.path).sources] == [False]


def test_concurrent_adds_and_searches_during_an_add(tmp_path, tiny, default_passages, encoder):
    """Two real `rag index add` processes at once: each either commits its source or is refused
    clearly; searches opened while they run see a consistent index."""
    corpora = [write_corpus(tmp_path / f"more{i}.jsonl", default_passages[100 + 100 * i : 200 + 100 * i]) for i in range(2)]
    procs = [rag_process("index", "add", "--index", str(tiny.path), "--corpus", str(c)) for c in corpora]
    searched = 0
    while any(p.poll() is None for p in procs):
        folder = open_index(tiny.path)
        assert len(folder.search(encoder.encode_queries(["who wrote dune"]), 5)[0]) == 5
        searched += 1
    results = [(p.returncode, p.stderr.read()) for p in procs]
    assert searched > 0 and any(code == 0 for code, _ in results)
    final = open_index(tiny.path).manifest
    for corpus, (code, err) in zip(corpora, results):
        assert code == 0 or (code == 2 and "being changed" in err and "Traceback" not in err)
        assert (str(corpus.resolve()) in [s.source for s in final.sources]) == (code == 0)
    assert final.passages == 40 + 100 * sum(code == 0 for code, _ in results) and not any(s.pending for s in final.sources)


def test_skip_bad_skips_an_id_the_index_already_holds_and_counts_it(tmp_path, tiny, forty, default_passages, encoder):
    mixed = write_corpus(tmp_path / "mixed.jsonl", [forty[3]] + default_passages[100:104])
    with pytest.raises(RagError, match=r"mixed.jsonl:1: duplicate passage id"):
        add_to_index(tiny.path, str(mixed), encoder=encoder, progress=False)
    assert [s.source for s in Manifest.read(tiny.path).sources] == [str(tmp_path / "forty.jsonl")]  # the refused add left no record
    done = add_to_index(tiny.path, str(mixed), on_error="skip", encoder=encoder, progress=False)
    assert done.manifest.passages == 44 and done.manifest.sources[-1].skipped == 1


def test_rerunning_an_add_that_had_finished_changes_nothing(tmp_path, tiny, default_passages, encoder):
    """A kill after the commit (during the BM25 rebuild, say) looks like a failure: the same command again is harmless."""
    more = write_corpus(tmp_path / "more.jsonl", default_passages[100:110])
    first = add_to_index(tiny.path, str(more), encoder=encoder, progress=False).manifest
    again = add_to_index(tiny.path, str(more), encoder=encoder, progress=False).manifest
    assert again.passages == first.passages == 50 and len(again.sources) == 2
    more.write_text(more.read_text().replace('"id": "', '"id": "new-'))  # same file, new passages: a real add
    assert add_to_index(tiny.path, str(more), encoder=encoder, progress=False).manifest.passages == 60

"""The CLI as scripts use it (issue 15), through real subprocesses: JSON out, batches of questions,
quiet stderr, --version, pipes closed early, and a missing local reader refused at once."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rag(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "rag.cli", *args], cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=300)


def test_version():
    done = rag("--version")
    assert done.returncode == 0 and done.stdout.startswith("rag 0.")


def test_search_and_index_info_print_json(small_index):
    found = json.loads(rag("search", "who wrote don quixote", "--index", str(small_index.path), "-k", "3", "--json").stdout)
    assert [h["rank"] for h in found["hits"]] == [1, 2, 3] and found["hits"][0]["title"] == "Don Quixote"
    info = json.loads(rag("index", "info", "--index", str(small_index.path), "--json").stdout)
    assert info["passages"] == 300 and info["format"] == "rag-index v1"


def test_ask_json_batch_and_quiet_stderr(small_index, tmp_path):
    one = rag("ask", "who wrote dracula", "--index", str(small_index.path), "-k", "3", "--json")
    answer = json.loads(one.stdout)
    assert answer["answer"] == "Bram Stoker" and 0 < answer["probability"] <= 1
    start, end = answer["evidence"][0]["answer_spans"][0]
    assert answer["evidence"][0]["text"][start:end] == "Bram Stoker"  # where the answer was read
    assert "LOAD REPORT" not in one.stderr and "Loading weights" not in one.stderr and "\x1b[" not in one.stderr
    questions = tmp_path / "q.txt"
    questions.write_text("who wrote dracula\n\nwho wrote don quixote\n")
    batch = rag("ask", "--questions", str(questions), "--index", str(small_index.path), "-k", "3")
    lines = [json.loads(line) for line in batch.stdout.splitlines()]
    assert [a["question"] for a in lines] == ["who wrote dracula", "who wrote don quixote"] and "Cervantes" in lines[1]["answer"]


def test_quiet_prints_results_and_errors_only(small_index, tmp_path):
    questions = tmp_path / "q.txt"
    questions.write_text("who wrote dracula\n")
    done = rag("--quiet", "ask", "--questions", str(questions), "--index", str(small_index.path), "-k", "3")
    assert done.returncode == 0 and done.stderr == "" and json.loads(done.stdout)["answer"] == "Bram Stoker"
    timed = ["ask", "who wrote dracula", "--index", str(small_index.path), "-k", "3", "--timings"]
    assert "timings: load" in rag(*timed).stderr and rag("--quiet", *timed).stderr == ""  # status lines go with --quiet
    missing = rag("--quiet", "search", "q", "--index", str(tmp_path / "none"))
    assert missing.returncode == 2 and missing.stderr.startswith("rag: error:")
    both = rag("--quiet", "--verbose", "--version")
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_a_closed_pipe_is_not_a_traceback(small_index):
    done = subprocess.run(f"{sys.executable} -m rag.cli index info --index {small_index.path} --json | head -1", shell=True, cwd=ROOT, capture_output=True, text=True)
    assert done.stdout.strip() == "{" and "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


def test_a_missing_local_reader_is_refused_at_once(small_index):
    t0 = time.perf_counter()
    done = rag("ask", "who wrote dracula", "--index", str(small_index.path), "--reader", "./no-such-checkpoint")
    assert done.returncode == 2 and "no such folder" in done.stderr and time.perf_counter() - t0 < 60  # no hub retries


def test_options_that_cannot_apply_and_missing_local_encoders_are_errors(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "a", "title": "A", "text": "some text"}\n')
    flat_opq = rag("index", "build", "--corpus", str(corpus), "--out", str(tmp_path / "i"), "--kind", "flat", "--opq")
    assert flat_opq.returncode == 2 and "--opq and --refine apply to --kind ivfpq" in flat_opq.stderr and not (tmp_path / "i").exists()
    missing = rag("index", "build", "--corpus", str(corpus), "--out", str(tmp_path / "j"), "--encoder", "./no-such-encoder")
    assert missing.returncode == 2 and "no such folder" in missing.stderr and "Traceback" not in missing.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl"]  # nothing left behind


def test_search_batches_write_a_trec_run_file(small_index, tmp_path):
    questions = tmp_path / "q.txt"
    questions.write_text("who wrote don quixote\nwho wrote dracula\n")
    run = tmp_path / "dense.run"
    done = rag("search", "--questions", str(questions), "--index", str(small_index.path), "-k", "4", "--run", str(run))
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in run.read_text().splitlines()]
    assert len(rows) == 8 and {r[0] for r in rows} == {"1", "2"} and all(r[1] == "Q0" and r[5] == "rag-dense" for r in rows)
    assert [int(r[3]) for r in rows[:4]] == [1, 2, 3, 4] and float(rows[0][4]) >= float(rows[3][4])
    assert rows[0][2].startswith("Don_Quixote")  # passage ids with spaces become one TREC token
    lines = [json.loads(line) for line in rag("search", "--questions", str(questions), "--index", str(small_index.path), "-k", "2").stdout.splitlines()]
    assert [x["id"] for x in lines] == ["1", "2"] and len(lines[1]["hits"]) == 2

"""Fault injection: `rag index build --overwrite`, `rag index add` and `rag train` killed (SIGKILL) at
random moments, each kill followed by a check and a rerun to completion.

    .venv/bin/python eval/chaos.py [--kills 9] [--seed 0] [--out eval/out/chaos.json]

After every kill:
  - data lost: a user's file beside the outputs changed or gone; the index that existed before the
    kill no longer opens; a source whose add finished is missing from the manifest; a training
    checkpoint that existed before the kill is gone or went back in steps. Must be 0.
  - wrong answers: a search hit whose passage is not the one its vector was made from (its score
    differs from query . encode(passage)), or an index whose row count disagrees with its manifest.
    Must be 0.
The rerun must then finish with exit code 0 and a complete result (all sources, all steps).
Kill times are drawn uniformly over each command's measured duration, so kills land in every phase
(start-up, reading, encoding, FAISS, swap or commit, checkpoint writes).

Then store damage, each on a fresh copy of the index: two rows swapped, a text, a title or an id
edited in place, a row deleted, the file truncated. After each, `rag search` for the damaged
passage's own text must refuse (exit 2, "damaged") rather than return a passage other than the one
indexed at that row (a wrong answer), and `rag index verify` must report it (exit 1 or 2).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from rag.corpus import read_passages  # noqa: E402
from rag.encoders import load_encoder  # noqa: E402
from rag.index_folder import open_index  # noqa: E402
from rag.report import format_table, write_json  # noqa: E402
from rag.types import RagError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
QUERIES = ["who wrote the novel dune", "capital of australia", "theory of relativity", "a famous painting", "music of the baroque era"]
QUESTIONS = [("who wrote the novel dune?", ["Frank Herbert"]), ("who wrote dracula?", ["Bram Stoker"]), ("who painted the mona lisa?", ["Leonardo da Vinci"])]


def rag(*args: str, kill_after: float | None = None) -> tuple[int, float]:
    """Run `rag ARGS`; with kill_after, SIGKILL it then (if still running). Returns (exit code, seconds)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "rag.cli", *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if kill_after is not None:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    if kill_after is None and proc.returncode != 0:
        raise SystemExit(f"rag {' '.join(args)} failed:\n{err}")
    return proc.returncode, time.perf_counter() - t0


class Checker:
    def __init__(self, work: Path):
        self.encoder = load_encoder("default")
        self.queries = self.encoder.encode_queries(QUERIES)
        self.sentinel = work / "thesis.txt"
        self.sentinel.write_text("four years of work\n")

    def index(self, path: Path, sources: list[str] | None = None) -> tuple[int, int]:
        """(data lost, wrong answers) of an index that must open; `sources`: corpora that must be listed."""
        lost = int(self.sentinel.read_text() != "four years of work\n")
        try:
            folder = open_index(path)
        except RagError as e:
            print(f"  LOST: {e}", file=sys.stderr)
            return lost + 1, 0
        listed = {Path(s.source).resolve() for s in folder.manifest.sources if not s.pending}
        lost += sum(Path(s).resolve() not in listed for s in sources or [])
        wrong = int(len(folder.store) != folder.manifest.passages or len(folder.dense) != folder.manifest.passages)
        for q, hits in zip(self.queries, folder.search(self.queries, 5)):
            vectors = self.encoder.encode_passages([h.passage for h in hits])
            wrong += int(np.sum(np.abs(vectors @ q - np.array([h.score for h in hits])) > 1e-2))  # bf16 vectors move ~1e-3 with batching; a wrong row is off by ~0.1
        return lost, wrong


def write_corpus(path: Path, passages) -> str:
    path.write_text("".join(json.dumps({"id": p.id, "title": p.title, "text": p.text}) + "\n" for p in passages))
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=9, help="kills in all, spread over build, add and train (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "eval" / "out" / "chaos.json"))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    passages = list(islice(read_passages("default"), 900))
    rows = []
    with tempfile.TemporaryDirectory(prefix="rag-chaos-") as tmp:
        work = Path(tmp)
        check = Checker(work)
        first = write_corpus(work / "first.jsonl", passages[:150])
        second = write_corpus(work / "second.jsonl", passages[150:450])
        questions = work / "questions.jsonl"
        questions.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in QUESTIONS * 2))
        index = work / "index"
        _, build_seconds = rag("index", "build", "--corpus", first, "--out", str(index), "--shard-size", "64")
        per_scenario = [args.kills // 3 + (i < args.kills % 3) for i in range(3)]

        stats = {"kills": 0, "lost": 0, "wrong": 0, "reruns ok": 0}
        scenario = dict(stats)
        corpus = [first, second]
        for _ in range(per_scenario[0]):  # rebuild from the other corpus, killed
            corpus.reverse()
            rag("index", "build", "--corpus", corpus[0], "--out", str(index), "--overwrite", "--shard-size", "64", kill_after=rng.uniform(0, build_seconds * 2))
            lost, wrong = check.index(index)
            rag("index", "build", "--corpus", corpus[0], "--out", str(index), "--overwrite", "--shard-size", "64")
            after = check.index(index, [corpus[0]])
            _tally(scenario, lost + after[0], wrong + after[1])
        rows.append(["index build --overwrite", *scenario.values()])

        scenario = dict(stats)
        added = [open_index(index).manifest.sources[0].source]
        for i in range(per_scenario[1]):  # add a new corpus, killed, then rerun with the same corpus
            extra = write_corpus(work / f"add{i}.jsonl", passages[450 + 40 * i : 490 + 40 * i])
            code, _ = rag("index", "add", "--index", str(index), "--corpus", extra, kill_after=rng.uniform(0, build_seconds))
            lost, wrong = check.index(index, added + [extra] * (code == 0))
            if code != 0:  # killed before it finished: the same command again finishes it
                rag("index", "add", "--index", str(index), "--corpus", extra)
            added.append(extra)
            after = check.index(index, added)
            _tally(scenario, lost + after[0], wrong + after[1])
        rows.append(["index add", *scenario.values()])

        scenario = dict(stats)
        ckpt = work / "checkpoint"
        n_questions = len(QUESTIONS) * 2

        def train(epochs: int) -> tuple[str, ...]:
            return ("train", "--questions", str(questions), "--index", str(index), "--out", str(ckpt), "--k", "2", "--max-length", "64",
                    "--batch-size", "1", "--save-every", "1", "--epochs", str(epochs))

        _, train_seconds = rag(*train(1))
        for i in range(per_scenario[2]):  # each run adds an epoch to the checkpoint; killed, then resumed to the end
            step = _step(ckpt)
            rag(*train(i + 2), kill_after=rng.uniform(0, train_seconds))
            lost = int(_step(ckpt) < step)  # the last good checkpoint must survive the kill
            rag(*train(i + 2))
            _tally(scenario, lost + int(_step(ckpt) != n_questions * (i + 2)), 0)
        rows.append(["train (resume)", *scenario.values()])

        damage_rows = damage_scenarios(index, work)

    headers = ["scenario", "kills", "data lost", "wrong answers", "reruns complete"]
    print(format_table(headers, rows))
    print()
    print(format_table(["store damage", "search refused", "wrong answers", "verify reports it"], damage_rows))
    damage_wrong = sum(r[2] for r in damage_rows)
    damage_missed = sum(1 - r[3] for r in damage_rows)
    print(f"\n{len(damage_rows)} damages: wrong answers {damage_wrong}, detected {len(damage_rows) - damage_missed} of {len(damage_rows)}")
    totals = [sum(r[i] for r in rows) for i in range(1, 5)]
    print(f"\n{totals[0]} kills: {totals[0] - totals[1]} survived without data loss, data lost {totals[1]}, wrong answers {totals[2]}")
    write_json(args.out, {"rows": [dict(zip(headers, r)) for r in rows], "damage": damage_rows, "seed": args.seed})
    if totals[1] or totals[2] or damage_wrong or damage_missed:
        raise SystemExit(1)


DAMAGES = {
    "two rows swapped": lambda db, a, b: _swap(db, a, b),
    "text edited": lambda db, a, b: db.execute("UPDATE passages SET text = 'Anne Rice!!' WHERE row = ?", (a,)),
    "title edited": lambda db, a, b: db.execute("UPDATE passages SET title = title || ' (edited)' WHERE row = ?", (a,)),
    "id edited": lambda db, a, b: db.execute("UPDATE passages SET id = id || '-x' WHERE row = ?", (a,)),
    "row deleted": lambda db, a, b: db.execute("DELETE FROM passages WHERE row = ?", (a,)),
}


def damage_scenarios(index: Path, work: Path) -> list[list]:
    """Each damage on a fresh copy; a search aimed at the damaged row, then a full verify."""
    import shutil
    import sqlite3

    rows = []
    folder = open_index(index)
    a = folder.manifest.passages // 3
    target = folder.store.get_rows([a])[0]
    for name in [*DAMAGES, "file truncated"]:
        copy = work / f"damaged-{name.replace(' ', '-')}"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(index, copy, ignore=shutil.ignore_patterns("bm25*", ".lock"))
        store = copy / "passages.sqlite"
        if name == "file truncated":
            with open(store, "r+b") as f:
                f.truncate(store.stat().st_size // 2)
        else:
            db = sqlite3.connect(store)
            DAMAGES[name](db, a, a + 1)
            db.commit()
            db.close()
        code, out = rag_output("search", target.text[:300], "--index", str(copy), "--rerank", "0", "-k", "3", "--json")
        refused = int(code == 2)
        wrong = 0
        if code == 0:  # answered: every passage it returned must be the one indexed at that row
            original = {p.id: p for p in folder.store.get_rows(range(folder.manifest.passages))}
            hits = json.loads(out)["hits"] if out.strip().startswith("{") else []
            wrong = int(any(original.get(h["id"]) is None or original[h["id"]].text != h["text"] for h in hits))
        verify, _ = rag_output("index", "verify", "--index", str(copy))
        rows.append([name, refused, wrong, int(verify in (1, 2))])
    return rows


def _swap(db, a: int, b: int) -> None:
    (ia, ta, xa), (ib, tb, xb) = (db.execute("SELECT id, title, text FROM passages WHERE row = ?", (r,)).fetchone() for r in (a, b))
    db.execute("UPDATE passages SET id = ? WHERE row = ?", (f"tmp-{ia}", a))
    db.execute("UPDATE passages SET id = ?, title = ?, text = ? WHERE row = ?", (ia, ta, xa, b))
    db.execute("UPDATE passages SET id = ?, title = ?, text = ? WHERE row = ?", (ib, tb, xb, a))


def rag_output(*args: str) -> tuple[int, str]:
    """`rag ARGS` to completion: (exit code, stdout); a traceback on stderr is a failure of its own."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "rag.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if "Traceback" in proc.stderr:
        raise SystemExit(f"rag {' '.join(args)} crashed:\n{proc.stderr[-3000:]}")
    return proc.returncode, proc.stdout


def _tally(scenario: dict, lost: int, wrong: int) -> None:
    scenario["kills"] += 1
    scenario["lost"] += lost
    scenario["wrong"] += wrong
    scenario["reruns ok"] += 1


def _step(checkpoint: Path) -> int:
    try:
        return json.loads((checkpoint / "checkpoint.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return -1


if __name__ == "__main__":
    main()

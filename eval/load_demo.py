"""Load check for the Gradio demo: N questions from C concurrent clients through Gradio's HTTP API.

    nice -n 10 .venv/bin/python eval/load_demo.py                  # starts `python demo.py` over indexes/default
    .venv/bin/python eval/load_demo.py --url http://127.0.0.1:7860  # or checks a demo that is already running

Two passes over the same questions (NQ-open dev by default), both through the HTTP API:
  baseline     one client, one question after another: the service time of one question;
  concurrent   C clients at once, sharing the questions: the queue makes them wait their turn.
Every question must come back in both passes with the same answer (none lost, none mixed up).
Prints p50/p95 latency and throughput for each pass and the concurrent/baseline ratios; writes
per-question results to eval/out/load_demo.json and a latency plot to eval/out/load_demo.png.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rag.paths import default_index, shared_data

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "eval" / "out"
NQ_DEV = shared_data() / "nq-open" / "NQ-open.dev.jsonl"
ANSWER_TEXT = re.compile(r'<div class="rag-answer-text">(.*?)</div>', re.S)
SERVER_SECONDS = re.compile(r'data-seconds="([0-9.]+)"')


@dataclass(frozen=True)
class Reply:
    question: str
    client: int
    latency_s: float  # from sending the request to having the result (queue wait included)
    answer: str | None  # the answer text on the page; None: no answer block (a message instead)
    server_s: float = 0.0  # retrieve + read inside the demo, as the page reports it
    error: str | None = None  # the request failed: the question was lost


def start_demo(index: str, reader: str, port: int, log: Path) -> subprocess.Popen:
    """`python demo.py` as users run it, in its own process; returns once it serves HTTP."""
    import urllib.request

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "demo.py"), "--index", index, "--reader", reader, "--port", str(port)], cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 600
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"demo.py exited with status {proc.returncode}; see {log}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            return proc
        except OSError:
            time.sleep(1)
    proc.terminate()
    raise SystemExit(f"demo.py did not start serving within 10 minutes; see {log}")


def run_pass(url: str, questions: list[str], clients: int, retriever: str, k: int) -> tuple[list[Reply], float]:
    """`clients` threads, each with its own gradio_client, take questions from one queue until it is empty."""
    from gradio_client import Client

    todo: queue.Queue = queue.Queue()
    for q in questions:
        todo.put(q)
    replies: list[Reply] = []
    lock = threading.Lock()
    connections = [Client(url, verbose=False) for _ in range(clients)]

    def work(i: int) -> None:
        while True:
            try:
                q = todo.get_nowait()
            except queue.Empty:
                return
            start = time.perf_counter()
            try:
                answer_html, _ = connections[i].predict(q, retriever, k, api_name="/ask")
                latency = time.perf_counter() - start
                m, t = ANSWER_TEXT.search(answer_html), SERVER_SECONDS.search(answer_html)
                reply = Reply(q, i, latency, m.group(1) if m else None, float(t.group(1)) if t else 0.0)
            except Exception as e:  # noqa: BLE001 - a failed request is a lost question, counted below
                reply = Reply(q, i, time.perf_counter() - start, None, error=f"{type(e).__name__}: {e}")
            with lock:
                replies.append(reply)

    start = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return replies, time.perf_counter() - start


def percentile(values: list[float], p: float) -> float:
    import numpy as np

    return float(np.percentile(values, p)) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default=None, help="a running demo; default: start `python demo.py` on a free port")
    ap.add_argument("--index", default=str(default_index()))
    ap.add_argument("--reader", default="default")
    ap.add_argument("--questions", default=str(NQ_DEV), help="questions file (any format rag.qa_data.load_qa reads)")
    ap.add_argument("-n", type=int, default=100, help="questions")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--retriever", default="dense")
    ap.add_argument("-k", type=int, default=5)
    args = ap.parse_args()

    from rag.qa_data import load_qa

    questions = [ex.question for ex in load_qa(args.questions, limit=args.n)]
    OUT.mkdir(parents=True, exist_ok=True)
    proc = None
    url = args.url
    if url is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        started = time.perf_counter()
        proc = start_demo(args.index, args.reader, port, OUT / "load_demo.server.log")
        url = f"http://127.0.0.1:{port}/"
        print(f"demo.py over {args.index} serving at {url} after {time.perf_counter() - started:.1f}s (loading index and models)", file=sys.stderr)
    try:
        print(f"baseline: {len(questions)} questions, 1 client ...", file=sys.stderr)
        baseline, baseline_wall = run_pass(url, questions, 1, args.retriever, args.k)
        print(f"concurrent: {len(questions)} questions, {args.clients} clients ...", file=sys.stderr)
        concurrent, concurrent_wall = run_pass(url, questions, args.clients, args.retriever, args.k)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)

    expected = {r.question: r.answer for r in baseline if r.error is None}
    rows = []
    for name, replies, wall in (("baseline (1 client)", baseline, baseline_wall), (f"concurrent ({args.clients} clients)", concurrent, concurrent_wall)):
        ok = [r for r in replies if r.error is None]
        latencies = [r.latency_s for r in ok]
        answered = {r.question for r in ok}
        rows.append({
            "pass": name,
            "sent": len(questions),
            "answered": len(answered),
            "lost": len(set(questions) - answered),
            "errors": len(replies) - len(ok),
            "same_answer_as_baseline": sum(expected.get(r.question, object()) == r.answer for r in ok),
            "p50_s": percentile(latencies, 50),
            "p95_s": percentile(latencies, 95),
            "max_s": max(latencies, default=float("nan")),
            "questions_per_s": len(ok) / wall,
            "server_p50_s": percentile([r.server_s for r in ok], 50),
            "wait_p50_s": percentile([r.latency_s - r.server_s for r in ok], 50),  # queue wait + HTTP
            "server_busy": sum(r.server_s for r in ok) / wall,  # <= 1 when one question runs at a time
        })

    print(f"\nGradio demo load check: {len(questions)} NQ-open dev questions, retriever {args.retriever}, k={args.k}, reader {args.reader}, index {args.index}")
    header = ("pass", "sent", "answered", "lost", "errors", "same answer", "p50 s", "p95 s", "max s", "questions/s", "server p50 s", "wait p50 s", "server busy")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print(f"| {r['pass']} | {r['sent']} | {r['answered']} | {r['lost']} | {r['errors']} | {r['same_answer_as_baseline']} | {r['p50_s']:.2f} | {r['p95_s']:.2f} | {r['max_s']:.2f} | {r['questions_per_s']:.2f} | {r['server_p50_s']:.2f} | {r['wait_p50_s']:.2f} | {r['server_busy']:.0%} |")
    b, c = rows
    print("\np50/p95: latency seen by a client, queue wait included; server p50: retrieve + read of one question inside the demo;\n"
          "wait p50: latency minus server time (HTTP + queue); server busy: server time summed over the pass's wall time (at most 100% when questions run one at a time)")
    print(f"concurrent: a client waits x{c['wait_p50_s'] / max(c['server_p50_s'], 1e-9):.1f} the work of one question before its own runs (queue of {args.clients}); "
          f"baseline: HTTP costs {b['wait_p50_s']:.2f}s a question; throughput concurrent/baseline x{c['questions_per_s'] / b['questions_per_s']:.2f} "
          "(x1 expected with one question at a time; on a shared machine the work per question drifts with load: compare server p50)")

    (OUT / "load_demo.json").write_text(json.dumps({"args": vars(args), "summary": rows, "baseline": [asdict(r) for r in baseline], "concurrent": [asdict(r) for r in concurrent]}, indent=1))
    plot(baseline, concurrent, args.clients, OUT / "load_demo.png")
    print(f"wrote {OUT / 'load_demo.json'} and {OUT / 'load_demo.png'}")
    if any(r["lost"] or r["errors"] for r in rows):
        raise SystemExit("some questions were lost")


def plot(baseline: list[Reply], concurrent: list[Reply], clients: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, replies in (("1 client", baseline), (f"{clients} clients", concurrent)):
        xs = sorted(r.latency_s for r in replies if r.error is None)
        ax.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))], label=label)
    ax.set_xlabel("latency (s), queue wait included")
    ax.set_ylabel("share of questions answered")
    ax.set_title("Gradio demo: latency through the HTTP API")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()

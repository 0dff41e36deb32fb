"""Time and peak memory of each phase of a whole `rag index build` (then BM25), as one user runs it.

    python eval/bench_build.py -- .venv/bin/rag index build --corpus ../shared/data/wikipedia/enwiki-2015-wikiextractor --out indexes/wiki2015
    python eval/bench_build.py --report eval/out/bench_build_wiki2015.json

Runs the command as a child process, samples the resident memory of its whole process tree (from
/proc) every half second, and splits the run into the phases the build's own progress lines name:
read + store ("reading corpus"), encode ("encoding passages"), FAISS ("building a ... index"),
BM25 ("BM25:"). Prints a table of seconds and peak RSS per phase, and writes it with the CPU's
model name and flags to --json. A build resumed after a kill shows only what it did this time.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

PHASES = (("", "start (imports, models)"), ("reading corpus", "read + store"), ("encoding passages", "encode"), ("building a ", "FAISS"), ("BM25", "BM25"))
# tqdm's elapsed time, "[05:12<" or "[1:05:12<": the child's stderr may reach us late, its clock does not
ELAPSED = re.compile(r"\[(?:(\d+):)?(\d+):(\d+)[<,\]]")


def tree_rss(root: int) -> int:
    """Bytes resident in `root` and all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total


def cpu() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "unknown")
    flags = set(text.split("flags")[1].split("\n")[0].split())
    wanted = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8") if f in flags]
    return f"{name}, {os.cpu_count()} cores, {' '.join(wanted)}"


def run(command: list[str], log_path: Path) -> dict:
    start = time.perf_counter()
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})  # progress lines as they happen
    phases: list[dict] = [{"phase": PHASES[0][1], "start": 0.0, "peak_rss": 0}]
    state = {"phase": phases[0]}

    def sample() -> None:
        while proc.poll() is None:
            state["phase"]["peak_rss"] = max(state["phase"]["peak_rss"], tree_rss(proc.pid))
            time.sleep(0.5)

    threading.Thread(target=sample, daemon=True).start()
    with open(log_path, "w") as log:
        pending = ""
        for raw in iter(lambda: proc.stderr.read1(4096), b""):  # tqdm ends its lines with \r: read what comes
            *lines, pending = (pending + raw.decode(errors="replace")).replace("\r", "\n").split("\n")
            for line in lines:
                log.write(f"{time.perf_counter() - start:9.1f} {line.rstrip()}\n")
                name = next((label for marker, label in PHASES[1:] if line.startswith(marker)), None)
                now = time.perf_counter() - start
                if name and phases[-1]["phase"] != name:
                    phases.append({"phase": name, "start": now, "peak_rss": 0})
                    state["phase"] = phases[-1]
                if name and (clock := ELAPSED.search(line)):  # a progress bar's own clock: its phase began that long ago
                    h, m, sec = clock.groups()
                    phases[-1]["start"] = min(phases[-1]["start"], now - (int(h or 0) * 3600 + int(m) * 60 + int(sec)))
            log.flush()
    out = proc.communicate()[0].decode(errors="replace")
    total = time.perf_counter() - start
    for phase, after in zip(phases, phases[1:] + [{"start": total}]):
        phase["seconds"] = after["start"] - phase["start"]
    return {"command": " ".join(command), "cpu": cpu(), "returncode": proc.returncode, "seconds": total, "phases": phases, "stdout_tail": out[-2000:]}


def table(result: dict) -> str:
    lines = [f"CPU: {result['cpu']}", f"command: {result['command']}", "",
             "| phase | seconds | peak RSS |", "| --- | --- | --- |"]
    for p in result["phases"]:
        lines.append(f"| {p['phase']} | {p['seconds']:.0f} | {p['peak_rss'] / 2**30:.2f} GB |")
    peak = max((p["peak_rss"] for p in result["phases"]), default=0)
    lines.append(f"| **whole build** | **{result['seconds']:.0f} ({result['seconds'] / 60:.1f} min)** | **{peak / 2**30:.2f} GB** |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default="eval/out/bench_build.json", help="where the result goes (default: %(default)s)")
    parser.add_argument("--report", metavar="JSON", help="print the table of an earlier run and stop")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the build command, after --")
    args = parser.parse_args()
    if args.report:
        print(table(json.loads(Path(args.report).read_text())))
        return
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the build command after --")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = run(command, out.with_suffix(".log"))
    out.write_text(json.dumps(result, indent=1))
    print(table(result))
    sys.exit(result["returncode"])


if __name__ == "__main__":
    main()

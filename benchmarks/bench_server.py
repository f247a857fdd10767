"""Load benchmark of the retrieval server against in-process search of the same queries.

A bounded local load generator: ``--concurrency`` asyncio clients (httpx) share a
fixed number of requests (one real XQuAD question each, every language) and send
them to ``crosearch serve`` running in its own process on 127.0.0.1 over the full
XQuAD collection. The baseline, measured in the same run, is the same queries
searched one call at a time by ``LocalRetriever.search`` in this process.

Reported per setting: throughput (queries/s), p50/p99 latency, errors, answers that
differ from in-process search, the ratio server qps / in-process qps, and the CPU
time the server and the load generator spent per query (less sensitive than
throughput to other processes sharing the machine; the load average is printed too).

    python benchmarks/bench_server.py                       # defaults below
    python benchmarks/bench_server.py --requests 3000 --concurrency 1,8,32 --batch-window-ms 0,2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from crosearch.config import DataConfig
from crosearch.io import atomic_write_json
from crosearch.retrieval.local import LocalRetriever, build_index, read_manifest
from crosearch.types import SearchQuery

HOST = "127.0.0.1"  # the generator never leaves this machine
CACHE = Path(__file__).resolve().parent / ".cache" / "xquad-full-index"


def ensure_index(index: Path | None) -> Path:
    """The given index, or the full XQuAD collection indexed once into benchmarks/.cache."""
    if index is not None:
        read_manifest(index)
        return index
    try:
        read_manifest(CACHE)
        return CACHE
    except Exception:  # noqa: BLE001 - absent or stale: rebuild
        pass
    from crosearch.data.benchmark import build_benchmark

    bench = build_benchmark(DataConfig(), progress=True)
    build_index(bench.collection, CACHE, progress=True)
    return CACHE


def load_queries(n: int, seed: int, search_langs: str) -> list[SearchQuery]:
    """``n`` real XQuAD questions drawn over all languages (repeating when n exceeds them)."""
    from crosearch.data.benchmark import build_benchmark

    bench = build_benchmark(DataConfig(passages="paragraph"))
    examples = bench.train + bench.test
    rng = random.Random(seed)
    rng.shuffle(examples)
    out = []
    for i in range(n):
        ex = examples[i % len(examples)]
        langs = [ex.lang] if search_langs == "own" else None
        out.append(SearchQuery(text=ex.question, lang=ex.lang, search_langs=langs))
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[pos]


def in_process(retriever: LocalRetriever, queries: list[SearchQuery], k: int) -> dict:
    """Baseline: one ``search`` call per query, as a request is one query."""
    latencies = []
    answers = []
    start = time.perf_counter()
    for q in queries:
        t = time.perf_counter()
        answers.append([h.doc_id for h in retriever.search([q], k)[0]])
        latencies.append(time.perf_counter() - t)
    wall = time.perf_counter() - start
    batched_start = time.perf_counter()
    for i in range(0, len(queries), 64):
        retriever.search(queries[i : i + 64], k)
    batched_wall = time.perf_counter() - batched_start
    return {
        "qps": len(queries) / wall,
        "p50_ms": 1000 * percentile(latencies, 50),
        "p99_ms": 1000 * percentile(latencies, 99),
        "batched64_qps": len(queries) / batched_wall,
        "answers": answers,
    }


def cpu_seconds(pid: int) -> float:
    """User+system CPU of a process and its children (the workers of ``--workers N``)."""
    import psutil

    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_server(index: Path, window_ms: float, workers: int, src: str | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "crosearch.cli",
        "serve",
        "--index",
        str(index),
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--set",
        f"server.batch_window_ms={window_ms}",
        "--max-queries",
        "64",
    ]
    env = {**os.environ}
    if src:  # another checkout's code (e.g. the parent commit's), for an A/B in one run
        env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("server did not start in 120 s")


async def load(
    url: str, queries: list[SearchQuery], k: int, concurrency: int, endpoint: str, expected: list[list[str]]
) -> dict:
    """Send every query once with ``concurrency`` clients; latency per request, errors, mismatches."""
    from rich.progress import Progress

    latencies: list[float] = []
    errors = 0
    error_kinds: dict[str, int] = {}
    mismatches = 0
    next_index = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    def body(q: SearchQuery) -> dict:
        if endpoint == "retrieve":
            return {"queries": [q.text], "topk": k, "return_scores": True}
        return {"k": k, "queries": [{"text": q.text, "lang": q.lang, "search_langs": q.search_langs}]}

    def ids(answer: dict) -> list[str]:
        if endpoint == "retrieve":
            return [item["document"]["id"] for item in answer["result"][0]]
        return [h["id"] for h in answer["results"][0]]

    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        with Progress(transient=True) as progress:
            task = progress.add_task(f"c={concurrency}", total=len(queries))

            async def worker() -> None:
                nonlocal next_index, errors, mismatches
                while next_index < len(queries):
                    i = next_index
                    next_index += 1
                    t = time.perf_counter()
                    try:
                        response = await client.post(f"{url}/{endpoint}", json=body(queries[i]))
                        ok = response.status_code == 200
                        answer = response.json() if ok else None
                        kind = f"HTTP {response.status_code}"
                    except httpx.HTTPError as exc:
                        ok, answer, kind = False, None, type(exc).__name__
                    latencies.append(time.perf_counter() - t)
                    if not ok:
                        errors += 1
                        error_kinds[kind] = error_kinds.get(kind, 0) + 1
                    elif ids(answer) != expected[i]:
                        mismatches += 1
                    progress.advance(task)

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            wall = time.perf_counter() - start
    return {
        "qps": len(queries) / wall,
        "p50_ms": 1000 * percentile(latencies, 50),
        "p99_ms": 1000 * percentile(latencies, 99),
        "mean_ms": 1000 * statistics.fmean(latencies),
        "errors": errors,
        "error_kinds": error_kinds,
        "mismatches": mismatches,
        "requests": len(queries),
    }


def summarize(rows: list[dict], labels: list[str]) -> None:
    """Per concurrency: each server's median q/s and p99 over the repeats, and the ratios to the first server."""
    first = labels[0]
    for c in sorted({r["concurrency"] for r in rows}):
        med = {}
        for label in labels:
            mine = [r for r in rows if r["server"] == label and r["concurrency"] == c]
            med[label] = (statistics.median(r["qps"] for r in mine), statistics.median(r["p99_ms"] for r in mine))
        for label in labels[1:]:
            print(
                f"c={c}: {first} {med[first][0]:.0f} q/s p99 {med[first][1]:.0f} ms; {label} {med[label][0]:.0f} q/s "
                f"p99 {med[label][1]:.0f} ms; {first}/{label}: q/s {med[first][0] / med[label][0]:.2f}, "
                f"p99 {med[first][1] / med[label][1]:.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--index", type=Path, help="prebuilt index (default: full XQuAD, built once into benchmarks/.cache)"
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", default="8", help="comma-separated client counts")
    parser.add_argument("--batch-window-ms", default="0", help="comma-separated server.batch_window_ms values")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--endpoint", choices=["search", "retrieve"], default="search")
    parser.add_argument(
        "--search-langs",
        choices=["all", "own"],
        default="all",
        help="each query searches every language (fused) or only its own",
    )
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--server-src",
        default="",
        help="comma-separated LABEL=SRC_DIR: one server per checkout (its src/ on PYTHONPATH), measured in turns "
        "in the same run against the same baseline (e.g. head=src,parent=/tmp/parent/src)",
    )
    parser.add_argument("--repeats", type=int, default=1, help="rounds over the servers, per concurrency")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    if args.requests < 1 or args.requests > 100_000:
        raise SystemExit("--requests must be between 1 and 100000 (the generator is bounded)")
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    windows = [float(w) for w in args.batch_window_ms.split(",")]
    if args.endpoint == "retrieve" and args.search_langs == "own":
        raise SystemExit("/retrieve queries carry no language: use --search-langs all")

    index = ensure_index(args.index)
    queries = load_queries(args.requests, args.seed, args.search_langs)
    retriever = LocalRetriever(index)
    if args.endpoint == "retrieve":  # Search-R1 queries have no language
        queries = [SearchQuery(text=q.text) for q in queries]
    retriever.search(queries[:50], args.k)  # warm caches (mmap pages, analyzers)
    cpu = time.process_time()
    base = in_process(retriever, queries, args.k)
    base["cpu_ms"] = 1000 * (time.process_time() - cpu) / (2 * len(queries))  # both passes
    base["loadavg"] = os.getloadavg()[0]
    expected = base.pop("answers")
    print(
        f"index {index}: {retriever.num_passages} passages, {len(retriever.languages)} languages; "
        f"{len(queries)} queries, k={args.k}, endpoint /{args.endpoint}, search_langs={args.search_langs}"
    )
    print(
        f"in-process, one query per call: {base['qps']:.0f} q/s (p50 {base['p50_ms']:.1f} ms, "
        f"p99 {base['p99_ms']:.1f} ms); batches of 64: {base['batched64_qps']:.0f} q/s; "
        f"load average {base['loadavg']:.1f}"
    )
    retriever.close()
    del retriever

    sources: list[tuple[str, str | None]] = [("this", None)]
    if args.server_src:
        sources = [(label, src) for label, _, src in (item.partition("=") for item in args.server_src.split(","))]
    rows = []
    for window in windows:
        servers = {}
        try:
            for label, src in sources:
                servers[label] = start_server(index, window, args.workers, src)
            for _, url in servers.values():  # warm-up
                asyncio.run(load(url, queries[: min(100, len(queries))], args.k, 4, args.endpoint, expected))
            for c in concurrencies:
                # Servers take turns, so a change in the machine's load hits them alike.
                for rep in range(args.repeats):
                    for label, (proc, url) in servers.items():
                        server_cpu, client_cpu = cpu_seconds(proc.pid), time.process_time()
                        result = asyncio.run(load(url, queries, args.k, c, args.endpoint, expected))
                        result.update(
                            server=label,
                            repeat=rep,
                            concurrency=c,
                            batch_window_ms=window,
                            ratio=result["qps"] / base["qps"],
                            server_cpu_ms=1000 * (cpu_seconds(proc.pid) - server_cpu) / len(queries),
                            client_cpu_ms=1000 * (time.process_time() - client_cpu) / len(queries),
                            loadavg=os.getloadavg()[0],
                        )
                        rows.append(result)
                        print(
                            f"server {label} window={window:g} ms c={c:3d}: {result['qps']:6.0f} q/s  "
                            f"p50 {result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:6.1f} ms  "
                            f"errors {result['errors']}  mismatches {result['mismatches']}  "
                            f"ratio {result['ratio']:.2f}  cpu/query server {result['server_cpu_ms']:.2f} ms "
                            f"client {result['client_cpu_ms']:.2f} ms  load {result['loadavg']:.1f}"
                            + (f"  error kinds {result['error_kinds']}" if result["errors"] else ""),
                            flush=True,
                        )
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=30)
    if len(sources) > 1:
        summarize(rows, [label for label, _ in sources])
    if args.out:
        atomic_write_json(
            args.out,
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "in_process": base,
                "server": rows,
                "cpus": os.cpu_count(),
            },
        )


if __name__ == "__main__":
    main()

"""A bounded load test of `faceage serve`: a real server on 127.0.0.1, good and bad uploads from concurrent clients.

    .venv/bin/python benchmarks/serve_load.py [--requests 500] [--clients 8] [--workers 1]

Starts `faceage serve` in a child process, warms it up (200 concurrent requests), then sends REQUESTS uploads from
CLIENTS threads, mixing
photos with one face, six faces and none, a text file, a truncated JPEG and an upload over the size limit. Every
response must have the status its kind expects (200, 415, 422, 413): any other is counted as unexpected. Reports
p50/p95 latency per kind and overall, requests/s, and the server's resident memory after warm-up and after the run
(the bound: growth under 100 MB). Writes benchmarks/results/serve_load.md and the README's serve section.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from skimage import data

import readme
from readme import publish

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "photos"
MEMORY_BOUND_MB = 100


def _jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def uploads() -> dict[str, tuple[bytes, int, int]]:
    """kind → (bytes, expected status, share of requests in tenths of a percent)."""
    astronaut = _jpeg(data.astronaut())
    multiface = (PHOTOS / "multiface.jpg").read_bytes() if (PHOTOS / "multiface.jpg").is_file() else astronaut
    return {
        "one face (astronaut)": (astronaut, 200, 500),
        "six faces (multiface.jpg)": (multiface, 200, 150),
        "no face (chelsea)": (_jpeg(data.chelsea()), 200, 150),
        "text file": (b"this is not a photo\n" * 10, 415, 80),
        "truncated JPEG": (astronaut[: len(astronaut) // 2], 422, 70),
        "over the size limit (11 MB)": (os.urandom(11 * 1024 * 1024), 413, 50),
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def server_rss(pid: int) -> float:
    """Resident memory of the server and its worker processes."""
    total = rss_mb(pid)
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        total += rss_mb(int(child))
    return total


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()

    kinds = uploads()
    schedule = [kind for kind, (_, _, share) in kinds.items() for _ in range(round(args.requests * share / 1000))]
    schedule = [schedule[i] for i in np.random.default_rng(0).permutation(len(schedule))][: args.requests]
    port = _free_port()
    command = [str(Path(sys.executable).parent / "faceage"), "serve", "--port", str(port), "--workers",
               str(args.workers)]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.time() > deadline or server.poll() is not None:
                raise SystemExit(f"the server did not start: {server.stderr.read().decode()[-2000:]}")
            time.sleep(0.3)
        client = httpx.Client(timeout=120)

        def send(kind: str) -> tuple[str, int, float]:
            body = kinds[kind][0]
            start = time.perf_counter()
            response = client.post(url + "/v1/estimate", files={"image": ("upload.jpg", body)})
            return kind, response.status_code, (time.perf_counter() - start) * 1000

        with ThreadPoolExecutor(args.clients) as pool:  # warm-up, concurrent like the run: steady-state memory
            list(pool.map(send, schedule[:200]))
        memory_before = server_rss(server.pid)
        started = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            results = list(pool.map(send, schedule))
        wall = time.perf_counter() - started
        memory_after = server_rss(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)

    unexpected = [(k, s) for k, s, _ in results if s != kinds[k][1]]
    latencies = [ms for _, _, ms in results]
    lines = [
        f"`python benchmarks/serve_load.py` on {readme.machine()}: `faceage serve --workers {args.workers}` on "
        f"127.0.0.1, {len(results)} requests "
        f"from {args.clients} concurrent clients (times in ms, whole request as the client sees it):",
        "",
        "| upload | requests | expected status | unexpected statuses | p50 ms | p95 ms |",
        "|---|---|---|---|---|---|",
    ]
    for kind, (_, status, _) in kinds.items():
        times = [ms for k, _, ms in results if k == kind]
        bad = sum(1 for k, _ in unexpected if k == kind)
        lines.append(f"| {kind} | {len(times)} | {status} | {bad} | {statistics.median(times):.0f} | "
                     f"{percentile(times, 0.95):.0f} |")  # fmt: skip
    growth = memory_after - memory_before
    lines += [
        f"| **all** | **{len(results)}** | | **{len(unexpected)}** | {statistics.median(latencies):.0f} | "
        f"{percentile(latencies, 0.95):.0f} |",
        "",
        "| measure | value |",
        "|---|---|",
        f"| throughput | {len(results) / wall:.1f} requests/s ({wall:.1f} s in all) |",
        f"| server memory after warm-up | {memory_before:.0f} MB |",
        f"| server memory after the run | {memory_after:.0f} MB |",
        f"| growth (bound {MEMORY_BOUND_MB} MB) | {growth:+.0f} MB, {'within' if growth < MEMORY_BOUND_MB else 'OVER'} "
        "the bound |",
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    publish(table, "serve_load.md", None if args.no_readme else "serve")
    if unexpected or growth >= MEMORY_BOUND_MB:
        raise SystemExit(f"FAILED: {len(unexpected)} unexpected statuses, memory growth {growth:.0f} MB")


if __name__ == "__main__":
    main()

"""Load `lookalike serve` over loopback: one client, then many, each sending text and image queries.

    python scripts/load_serve.py --model tiny --clients 50 --seconds 60
    python scripts/load_serve.py --model ViT-B-32 --pretrained random --clients 50 --seconds 60

It indexes generated photos into a temporary Milvus Lite file, starts `lookalike serve` in its own
process group, runs the two phases side by side in one run (one client for --seconds, then --clients
for --seconds; each client sends its next query when the last is answered, a share of them image
uploads), and prints throughput, p50 / p99 latency and errors per phase, the ratio between them, the
CPU and the load average. `--serve-batch 1` turns the server's query batching off, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

QUERIES = ["floral top", "red leather shoe", "blue striped dress", "white fluffy dog", "black handbag"]
TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}


def tiny_model(folder: Path) -> tuple[str, str]:
    """The tests' tiny open_clip model: a config JSON and a seeded random checkpoint."""
    import open_clip
    import torch

    config = folder / "tiny-clip.json"
    config.write_text(json.dumps(TINY), encoding="utf-8")
    torch.manual_seed(1234)
    checkpoint = folder / "tiny-clip.pt"
    torch.save(open_clip.CLIP(**TINY).state_dict(), checkpoint)
    return str(config), str(checkpoint)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else 0.0


async def client(
    base: str, photos: list[bytes], image_share: float, until: float, seed: int, out: dict[str, Any]
) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        while time.monotonic() < until:
            started = time.perf_counter()
            kind = "image" if rng.random() < image_share else "text"
            try:
                if kind == "image":
                    files = {"image": ("q.jpg", rng.choice(photos), "image/jpeg")}
                    response = await http.post("/search", files=files, data={"k": "10"})
                else:
                    response = await http.post("/search", json={"text": rng.choice(QUERIES), "k": 10})
                ok = response.status_code == 200 and len(response.json()["hits"]) > 0
            except (httpx.HTTPError, ValueError, KeyError):
                ok = False
            out["latencies"].append((time.perf_counter() - started) * 1000)
            out[kind].append(out["latencies"][-1])
            if not ok:
                out["errors"] += 1


async def phase(base: str, photos: list[bytes], clients: int, seconds: float, image_share: float) -> dict:
    out: dict[str, Any] = {"latencies": [], "errors": 0, "text": [], "image": []}
    started = time.monotonic()
    cpu_before = time.process_time()
    until = started + seconds
    await asyncio.gather(*(client(base, photos, image_share, until, i, out) for i in range(clients)))
    elapsed = time.monotonic() - started
    client_cpu = (time.process_time() - cpu_before) / elapsed  # the load generator shares the cores
    latencies = out["latencies"]
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": out["errors"],
        "throughput_rps": round(len(latencies) / elapsed, 2),
        "p50_ms": round(statistics.median(latencies), 1) if latencies else 0.0,
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "p99_ms_by_kind": {kind: round(percentile(out[kind], 0.99), 1) for kind in ("text", "image")},
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "client_cpu_share": round(client_cpu, 2),
    }


def wait_healthy(base: str, server: subprocess.Popen[bytes], limit_s: float = 600) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"lookalike serve exited with {server.returncode}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("lookalike serve did not answer /health in time")


def stop(server: subprocess.Popen[bytes]) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="tiny", help="'tiny' (the tests' model) or an open_clip name")
    parser.add_argument("--pretrained", default="random")
    parser.add_argument("--images", type=int, default=64, help="generated photos indexed and uploaded")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument(
        "--image-share", type=float, default=0.2, help="share of queries that upload an image"
    )
    parser.add_argument(
        "--serve-batch", type=int, default=None, help="LOOKALIKE_SERVE_BATCH (1: no batching)"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args()

    from lookalike.bench import cpu_extensions, cpu_model, generate_photos

    work = Path(tempfile.mkdtemp(prefix="lookalike-load-"))
    model, pretrained = tiny_model(work) if args.model == "tiny" else (args.model, args.pretrained)
    generate_photos(work / "photos", args.images, 256)
    photos = [p.read_bytes() for p in sorted((work / "photos").iterdir())]
    env = dict(os.environ, LOOKALIKE_DB=str(work / "load.db"), LOOKALIKE_MODEL=model)
    env["LOOKALIKE_PRETRAINED"] = pretrained
    if args.serve_batch is not None:
        env["LOOKALIKE_SERVE_BATCH"] = str(args.serve_batch)
    cli = [sys.executable, "-m", "lookalike"]
    subprocess.run([*cli, "index", str(work / "photos"), "--source", "product"], env=env, check=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([*cli, "serve", "--port", str(port)], env=env, start_new_session=True)
    try:
        wait_healthy(base, server)
        asyncio.run(phase(base, photos, 4, 3, args.image_share))  # warm-up, not counted
        one = asyncio.run(phase(base, photos, 1, args.seconds, args.image_share))
        many = asyncio.run(phase(base, photos, args.clients, args.seconds, args.image_share))
    finally:
        stop(server)
    extensions = [name for name, has in cpu_extensions().items() if has]
    result = {
        "cpu": cpu_model(),
        "extensions": extensions,
        "cpus": len(os.sched_getaffinity(0)),
        "model": args.model,
        "serve_batch": args.serve_batch,
        "image_share": args.image_share,
        "phases": [one, many],
        "throughput_ratio": round(many["throughput_rps"] / max(one["throughput_rps"], 1e-9), 2),
    }
    print(f"{result['cpu']} ({result['cpus']} CPUs; {', '.join(extensions)}), model {args.model}")
    for row in (one, many):
        print(
            f"{row['clients']:>3} clients: {row['throughput_rps']:8.1f} req/s, p50 {row['p50_ms']:7.1f} ms, "
            f"p99 {row['p99_ms']:7.1f} ms (texts {row['p99_ms_by_kind']['text']}, images "
            f"{row['p99_ms_by_kind']['image']}), {row['requests']} requests, {row['errors']} errors, "
            f"load {row['load_average']}, the clients used {row['client_cpu_share']} of a core"
        )
    print(f"throughput with {args.clients} clients: ×{result['throughput_ratio']} one client's")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

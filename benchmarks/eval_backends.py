"""Throughput of the evaluation backends: what batching (hf) and concurrency (openai) buy.

Run: ``.venv/bin/python benchmarks/eval_backends.py`` (CPU, offline, about a minute).
Prints one JSON line:

- ``hf``: samples/s of the ``hf`` backend at batch 1 and 16 on tiny random Qwen2-VL and LLaVA
  checkpoints (built like the test fixtures) answering Sparkle-Instruct questions greedily;
- ``openai``: requests/s of the ``openai`` backend at concurrency 1 and 32 against a local
  OpenAI-compatible server that answers after a simulated 20 ms of latency.

The goal is a speed-up of at least 5x from batching and from concurrency (``goal_met``).
Tiny models measure the harness overhead (processor, padding, decoding, Python), not a real
model's arithmetic; on a GPU with a real model the batching gain is usually larger.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _tiny_builder() -> Any:
    # The tiny-model recipe lives with the test fixtures; load it without making tests a package.
    spec = importlib.util.spec_from_file_location("_sparkle_conftest", ROOT / "tests" / "conftest.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_tiny_vlm


def _requests(dataset: Path, n: int) -> list[Any]:
    from sparkle_vlm.models import Request
    from sparkle_vlm.records import read_jsonl

    records = read_jsonl(str(dataset / "data.jsonl"))
    records = (records * (n // len(records) + 1))[:n]
    return [
        Request(
            f"{r['id']}-{k}",
            [t for t in r["messages"] if t["role"] == "user"],
            [str(dataset / p) for p in r["images"]],
            r,
        )
        for k, r in enumerate(records)
    ]


def bench_hf(
    family: str, work: Path, dataset: Path, n: int, max_new_tokens: int, repeats: int, device: str, dtype: str
) -> dict[str, Any]:
    from sparkle_vlm.models import GenerationConfig, load_backend

    ckpt = _tiny_builder()(family, work / f"tiny-{family}")
    config = GenerationConfig(max_new_tokens=max_new_tokens)
    reqs = _requests(dataset, n)
    out: dict[str, Any] = {"samples": n, "max_new_tokens": max_new_tokens}
    answers: dict[int, list[str]] = {}
    best = {1: float("inf"), 16: float("inf")}
    backends = {b: load_backend(f"hf:{ckpt}", device=device, dtype=dtype, batch_size=b) for b in best}
    for batch, backend in backends.items():
        backend.generate(reqs[:batch], config)  # warm-up: first-call allocations and lazy imports
    # Interleaved repeats, best kept: load from other processes drifts, and must hit both alike.
    for _ in range(repeats):
        for batch, backend in backends.items():
            t0 = time.perf_counter()
            comps = backend.generate(reqs, config)
            best[batch] = min(best[batch], time.perf_counter() - t0)
            answers[batch] = [c.text for c in comps]
    info = backends[1].describe()
    out["dtype"], out["device"] = info["dtype"], info["device"]
    for batch, backend in backends.items():
        out[f"batch{batch}_samples_per_s"] = round(n / best[batch], 2)
        backend.close()
    out["speedup"] = round(out["batch16_samples_per_s"] / out["batch1_samples_per_s"], 2)
    out["batched_equals_unbatched"] = answers[1] == answers[16]
    return out


# A stand-in for `vllm serve`: answers every chat completion after a fixed latency. It runs in its
# own process, as a real server would, so its work does not compete for the client's GIL.
_SERVER = r"""
import json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
latency = float(sys.argv[1])
reply = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "A"}}]}).encode()
class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_POST(self):
        json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        time.sleep(latency)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)
ThreadingHTTPServer.request_queue_size = 256
httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
httpd.daemon_threads = True
print(httpd.server_address[1], flush=True)
httpd.serve_forever()
"""


def bench_openai(dataset: Path, n: int, latency: float) -> dict[str, Any]:
    from sparkle_vlm.models import GenerationConfig, load_backend

    proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(latency)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    base = f"http://127.0.0.1:{int(proc.stdout.readline())}/v1"
    reqs = _requests(dataset, n)
    out: dict[str, Any] = {"requests": n, "server_latency_s": latency}
    try:
        for conc in (1, 32):
            backend = load_backend("openai:bench", base_url=base, concurrency=conc)
            backend.generate(reqs[:conc], GenerationConfig())  # warm-up (image encoding cache)
            t0 = time.perf_counter()
            comps = backend.generate(reqs, GenerationConfig())
            elapsed = time.perf_counter() - t0
            assert all(c.error is None for c in comps), [c.error for c in comps if c.error][:3]
            out[f"concurrency{conc}_requests_per_s"] = round(n / elapsed, 2)
            backend.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    out["speedup"] = round(out["concurrency32_requests_per_s"] / out["concurrency1_requests_per_s"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64, help="hf requests per measurement")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5, help="hf timing repeats (best is kept)")
    parser.add_argument("--requests", type=int, default=128, help="openai requests per measurement")
    parser.add_argument("--device", default="cpu", help="hf device: cpu, cuda or auto")
    parser.add_argument("--dtype", default="auto", help="hf dtype (auto: bfloat16 on cuda, float32 on cpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--latency", type=float, default=0.02, help="simulated server latency (s)")
    args = parser.parse_args()

    import torch

    # Tiny models gain nothing from intra-op threads, and on a shared machine OpenMP threads
    # that spin-wait for a busy core make timings swing by 10x; one thread measures the harness.
    torch.set_num_threads(args.threads)

    from sparkle_vlm.generate import generate_dataset
    from sparkle_vlm.tasks.base import get_task

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        dataset = work / "instruct"
        generate_dataset(
            "instruct", get_task("instruct").make_config(n=2, size=112), 0, dataset, workers=1, progress=False
        )
        hf = {
            family: bench_hf(
                family,
                work,
                dataset,
                args.samples,
                args.max_new_tokens,
                args.repeats,
                args.device,
                args.dtype,
            )
            for family in ("qwen2_vl", "llava")
        }
        api = bench_openai(dataset, args.requests, args.latency)
    result = {
        "benchmark": "eval_backends",
        "hf": hf,
        "openai": api,
        "goal": ">= 5x from batching (batch 16 vs 1) and from concurrency (32 vs 1)",
        "goal_met": all(v["speedup"] >= 5 for v in hf.values()) and api["speedup"] >= 5,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()

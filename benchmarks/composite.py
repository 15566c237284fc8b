"""Composite-task benchmark (shortest path, travelling salesman). Prints one JSON line.

    python benchmarks/composite.py [--n 400] [--size 448] [--answers 100000]

Measures on one core: SPP and TSP generation rates (records/s including rendering and PNG
encoding with ``render.raster.encode_png``), verifier throughput (SPP and TSP answers scored per
second over a mix of optimal, suboptimal, infeasible and unparsable answers; the goal for SPP is
>= 50,000/s) and Held-Karp solve times for 8, 10 and 12 points (goal: 12 points < 50 ms).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import statistics
import time

import numpy as np

from sparkle_vlm import solvers as S
from sparkle_vlm.answers import score
from sparkle_vlm.answers.composite import score_path, score_tour
from sparkle_vlm.render.raster import encode_png
from sparkle_vlm.tasks import get_task


def _gen_rate(name: str, n: int, size: int, **over: object) -> float:
    task = get_task(name)
    cfg = task.make_config(n=n, size=size, **over)
    t0 = time.perf_counter()
    for i in range(n):
        s = task.sample(cfg, 0, i)
        if s.image:
            encode_png(task.render(s.scene, size))
    return n / (time.perf_counter() - t0)


BACK = {"up": "down", "down": "up", "left": "right", "right": "left"}


def _detour(rec: dict, moves: list[str]) -> str:
    """A valid but longer path: step sideways, walk the path shifted, step back (if one fits)."""
    for side in ("left", "right", "up", "down"):
        text = str([side, *moves, BACK[side]])
        if score_path(rec, text).outcome == "suboptimal":
            return text
    return str(moves)


def _spp_answers(recs: list[dict]) -> list[tuple[dict, str]]:
    pairs = []
    for rec in recs:
        moves = ast.literal_eval(rec["answer"])
        pairs += [
            (rec, rec["answer"]),  # canonical
            (rec, "Let me think.\n```python\n" + str(sorted(moves)) + "\n```"),  # reordered: still shortest
            (rec, _detour(rec, moves)),  # suboptimal
            (rec, str([BACK[m] for m in moves])),  # the wrong way: leaves the grid or ends elsewhere
            (rec, str(moves + ["up", "down"])),  # revisits a node
            (rec, str(["N1"] + [f"N{k}" for k in range(2, 6)])),  # labels
            (rec, "I am not sure."),  # unparsable
        ]
    return pairs


def _verify_rate(fn, pairs: list[tuple[dict, str]], total: int) -> tuple[float, dict[str, int]]:
    outcomes: dict[str, int] = {}
    for rec, text in pairs:  # warm the per-scene caches, as an evaluation over many answers does
        o = fn(rec, text).outcome
        outcomes[o] = outcomes.get(o, 0) + 1
    reps = max(1, total // len(pairs))
    t0 = time.perf_counter()
    for _ in range(reps):
        for rec, text in pairs:
            fn(rec, text)
    return reps * len(pairs) / (time.perf_counter() - t0), outcomes


def _held_karp_ms(k: int, variant: str, runs: int = 15) -> float:
    rng = np.random.default_rng(k)
    times = []
    for _ in range(runs):
        d = S.distance_matrix(rng.uniform(0.5, 9.5, (k, 2)))
        t0 = time.perf_counter()
        S.held_karp(d, variant, 0)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--answers", type=int, default=100_000)
    args = ap.parse_args()

    spp_task = get_task("spp")
    cfg = spp_task.make_config(n=200, grid=5)
    spp_recs = [spp_task.sample(cfg, 0, i).records[0] for i in range(200)]
    spp_pairs = _spp_answers(spp_recs)
    spp_rate, spp_outcomes = _verify_rate(score_path, spp_pairs, args.answers)
    spp_rate_dispatch, _ = _verify_rate(score, spp_pairs, args.answers)

    tsp_task = get_task("tsp")
    tcfg = tsp_task.make_config(n=100)
    tsp_pairs = []
    for i in range(100):
        rec = tsp_task.sample(tcfg, 0, i).records[0]
        tour = json.loads(rec["answer"])
        tsp_pairs += [
            (rec, rec["answer"]),
            (rec, json.dumps(tour[:1] + tour[:0:-1])),
            (rec, str(tour[:-1])),
            (rec, "?"),
        ]
    tsp_rate, tsp_outcomes = _verify_rate(score_tour, tsp_pairs, args.answers // 2)

    out = {
        "benchmark": "composite",
        "size": args.size,
        "spp4_records_per_s": round(_gen_rate("spp", args.n, args.size), 1),
        "spp5_obst20_w_records_per_s": round(
            _gen_rate("spp", args.n, args.size, grid=5, obstacles=0.2, weighted=True), 1
        ),
        "spp10_obst30_records_per_s": round(
            _gen_rate("spp", args.n // 4, args.size, grid=10, obstacles=0.3), 1
        ),
        "spp4_text_records_per_s": round(_gen_rate("spp", args.n, args.size, modality="text"), 1),
        "tsp5_records_per_s": round(_gen_rate("tsp", args.n, args.size), 1),
        "tsp12_closed_records_per_s": round(
            _gen_rate("tsp", args.n // 4, args.size, points=12, variant="closed"), 1
        ),
        "spp_verify_per_s": round(spp_rate),
        "spp_verify_per_s_via_answers_score": round(spp_rate_dispatch),
        "spp_verify_outcomes": spp_outcomes,
        "tsp_verify_per_s": round(tsp_rate),
        "tsp_verify_outcomes": tsp_outcomes,
        "held_karp_ms": {
            f"{k}_{v}": round(_held_karp_ms(k, v), 2) for k in (8, 10, 12) for v in ("fixstart", "free")
        },
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()

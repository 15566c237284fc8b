"""Generation throughput benchmark. Prints one JSON line.

    python benchmarks/generate.py [--n 2000] [--size 448] [--mpl-n 100]

Measures, for the `instruct` suite at the given size: end-to-end images/s and records/s with 1
worker and with all workers (sampling, rendering, PNG encoding, atomic image writes, JSONL), the
matplotlib reference renderer's images/s on the same scenes (drawn and saved as PNG), and the
PNG-encode-only rate of the same raster images (the floor of the end-to-end rate).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

from sparkle_vlm.generate import default_workers, generate_dataset
from sparkle_vlm.render.raster import encode_png
from sparkle_vlm.render.reference import render_points_mpl_png
from sparkle_vlm.tasks import get_task


def _e2e(n: int, size: int, workers: int) -> tuple[float, int, int]:
    task = get_task("instruct")
    cfg = task.make_config(n=n, size=size)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = generate_dataset(task, cfg, 0, os.path.join(tmp, "d"), workers=workers, progress=False)
        return time.perf_counter() - t0, res.images, res.records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--mpl-n", type=int, default=100)
    args = ap.parse_args()
    workers = default_workers()

    t1, images, records = _e2e(args.n, args.size, 1)
    tn, _, _ = _e2e(args.n, args.size, workers)

    task = get_task("instruct")
    cfg = task.make_config(n=args.n, size=args.size)
    scenes = [task.sample(cfg, 0, i).scene for i in range(args.mpl_n)]
    t0 = time.perf_counter()
    for sc in scenes:
        render_points_mpl_png(sc, args.size)
    t_mpl = time.perf_counter() - t0

    raster = [task.render(sc, args.size) for sc in scenes]
    reps = max(1, 1000 // len(raster))
    t0 = time.perf_counter()
    for _ in range(reps):
        for im in raster:
            encode_png(im)
    t_png = (time.perf_counter() - t0) / reps

    ips1 = images / t1
    out = {
        "benchmark": "generate",
        "suite": "instruct",
        "size": args.size,
        "images": images,
        "records": records,
        "workers_all": workers,
        "e2e_images_per_s_1_worker": round(ips1, 1),
        "e2e_records_per_s_1_worker": round(records / t1, 1),
        "e2e_images_per_s_all_workers": round(images / tn, 1),
        "e2e_records_per_s_all_workers": round(records / tn, 1),
        "speedup_all_workers": round(t1 / tn, 2),
        "mpl_reference_images_per_s": round(len(scenes) / t_mpl, 1),
        "raster_vs_mpl": round(ips1 / (len(scenes) / t_mpl), 1),
        "png_encode_only_images_per_s": round(len(raster) / t_png, 1),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()

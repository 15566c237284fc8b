"""Export throughput benchmark. Prints one JSON line.

    python benchmarks/export.py [--n 2000] [--size 448]

Generates the `instruct` suite (n images x 17 questions; 2,000 is the paper's 34K-record set) once,
then exports it to every format and reports, per format, seconds, records/s and the size of the
written files (images referenced by path are not counted; embedded ones are).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from sparkle_vlm.export import EXPORTERS, ExportOptions, export_dataset
from sparkle_vlm.generate import default_workers, generate_dataset
from sparkle_vlm.tasks import get_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=448)
    args = ap.parse_args()
    task = get_task("instruct")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        res = generate_dataset(
            task,
            task.make_config(n=args.n, size=args.size),
            0,
            src,
            workers=default_workers(),
            suite="instruct",
            progress=False,
        )
        formats: dict[str, dict[str, float]] = {}
        for name in EXPORTERS.names():
            out = Path(tmp) / name
            t0 = time.perf_counter()
            export_dataset(src, name, out, ExportOptions())
            dt = time.perf_counter() - t0
            size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
            formats[name] = {
                "seconds": round(dt, 3),
                "records_per_s": round(res.records / dt, 1),
                "mbytes": round(size / 1e6, 2),
            }
    print(
        json.dumps(
            {
                "benchmark": "export",
                "suite": "instruct",
                "n_images": res.images,
                "records": res.records,
                "size": args.size,
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "formats": formats,
            }
        )
    )


if __name__ == "__main__":
    main()

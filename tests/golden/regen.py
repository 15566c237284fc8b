"""Rewrite the golden files: ``python tests/golden/regen.py``.

Only after an intended change of what a task produces, and only together with a bump of that
task's version (the golden test fails if records change while the version stays the same).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sparkle_vlm.records import dumps
from sparkle_vlm.render.raster import encode_png
from sparkle_vlm.suites import SUITES
from sparkle_vlm.tasks import get_task

HERE = Path(__file__).parent
N_SCENES = 2


def golden_lines(suite_name: str) -> list[str]:
    suite = SUITES.get(suite_name)
    task = get_task(suite.task)
    cfg = task.make_config(**suite.overrides)
    lines = [json.dumps({"suite": suite_name, "task": task.id, "task_version": task.version})]
    for index in range(N_SCENES):
        sample = task.sample(cfg, 0, index)
        if sample.image is not None:
            png = encode_png(task.render(sample.scene, cfg.size))
            lines.append(json.dumps({"image": sample.image, "png_sha256": hashlib.sha256(png).hexdigest()}))
        lines.extend(dumps(r) for r in sample.records)
    return lines


def main() -> None:
    for name in SUITES.names():
        (HERE / f"{name}.jsonl").write_text("\n".join(golden_lines(name)) + "\n", encoding="utf-8")
        print(f"wrote tests/golden/{name}.jsonl")


if __name__ == "__main__":
    main()

"""Write a dataset folder: ``data.jsonl`` (one canonical record per line), ``images/``, ``manifest.json``.

Guarantees:
- Same task, config and seed give byte-identical files, whatever the number of workers
  (chunks are produced in parallel and appended in index order).
- Crash-safe and resumable: images are written atomically before their records; records are
  appended one whole scene group at a time; ``manifest.json`` is written last, atomically, and
  marks the folder complete. Re-running the same command after a crash drops the last
  (possibly partial) scene group and continues; the result equals an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing as mp
import os
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparkle_vlm import __version__
from sparkle_vlm.errors import SparkleError
from sparkle_vlm.fsutil import (
    atomic_write_bytes,
    atomic_write_json,
    check_writable_dir,
    remove_stale_temps,
)
from sparkle_vlm.records import dumps
from sparkle_vlm.render.raster import encode_png
from sparkle_vlm.tasks.base import Task, TaskConfig, get_task

DATA_FILE = "data.jsonl"
MANIFEST = "manifest.json"
PARTIAL = ".sparkle-partial.json"
FORMAT_VERSION = 1
#: Scenes per work unit: large enough to amortise inter-process traffic, small enough for smooth progress.
CHUNK = 50


@dataclass(frozen=True)
class GenerateResult:
    out: Path
    images: int
    records: int
    resumed_from: int
    already_complete: bool


def identity(suite: str | None, task: Task, config: TaskConfig, seed: int) -> dict[str, Any]:
    """What must match for a folder to be resumed or reused."""
    return {
        "suite": suite,
        "task": task.id,
        "task_version": task.version,
        "split": task.split_of(config),
        "seed": seed,
        "config": config.to_dict(),
    }


def _render_chunk(args: tuple[str, TaskConfig, int, str, list[int]]) -> tuple[bytes, dict[str, Any]]:
    """Worker: sample, render and write the images of some indices; return their JSONL bytes."""
    task_id, config, seed, out, indices = args
    task = get_task(task_id)
    lines: list[str] = []
    counts: Counter[str] = Counter()
    images = 0
    for index in indices:
        sample = task.sample(config, seed, index)
        if sample.image is not None:
            png = encode_png(task.render(sample.scene, config.size))
            atomic_write_bytes(os.path.join(out, sample.image), png)
            images += 1
        for rec in sample.records:
            lines.append(dumps(rec))
            counts[rec["task"]] += 1
    data = ("\n".join(lines) + "\n").encode("utf-8") if lines else b""
    return data, {"images": images, "by_task": dict(counts), "scenes": len(indices)}


def _recover(path: Path) -> tuple[int, int, Counter[str], int]:
    """Cut ``data.jsonl`` back to its last complete scene group.

    Returns (next index, records kept, per-task counts, images kept). The last group is always
    dropped because it may be incomplete; regenerating it gives the same bytes.
    """
    if not path.exists():
        return 0, 0, Counter(), 0
    raw = path.read_bytes()
    offsets: list[tuple[int, int, str]] = []  # (byte offset of line start, index, task)
    pos = 0
    for line in raw.split(b"\n"):
        end = pos + len(line) + 1
        if end > len(raw) or not line.strip():  # no newline yet: a partial last line
            break
        try:
            rec = json.loads(line)
            offsets.append((pos, int(rec["index"]), str(rec["task"])))
        except (ValueError, KeyError, TypeError):
            break
        pos = end
    if not offsets:
        with open(path, "r+b") as f:
            f.truncate(0)
        return 0, 0, Counter(), 0
    last_index = offsets[-1][1]
    keep = [o for o in offsets if o[1] < last_index]
    cut = offsets[len(keep)][0]
    with open(path, "r+b") as f:
        f.truncate(cut)
    counts = Counter(t for _, _, t in keep)
    return last_index, len(keep), counts, len({i for _, i, _ in keep})


def _chunks(start: int, n: int, size: int) -> Iterator[list[int]]:
    for lo in range(start, n, size):
        yield list(range(lo, min(lo + size, n)))


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def generate_dataset(
    task: Task | str,
    config: TaskConfig,
    seed: int,
    out: str | os.PathLike[str],
    *,
    workers: int | None = None,
    suite: str | None = None,
    progress: bool | None = None,
) -> GenerateResult:
    """Generate (or finish) a dataset folder. See the module docstring for the guarantees."""
    if isinstance(task, str):
        task = get_task(task)
    if not isinstance(seed, int) or seed < 0:
        raise SparkleError(f"--seed: must be a non-negative integer, got {seed!r}")
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise SparkleError(f"--workers: must be at least 1, got {workers}")
    config.validate()
    out_p = check_writable_dir(out)
    ident = identity(suite, task, config, seed)

    manifest_p = out_p / MANIFEST
    partial_p = out_p / PARTIAL
    if manifest_p.exists():
        old = json.loads(manifest_p.read_text())
        if {k: old.get(k) for k in ident} == ident:
            c = old["counts"]
            return GenerateResult(out_p, c["images"], c["records"], config.n, True)
        raise SparkleError(
            f"--out: {out_p} already holds a different dataset ({old.get('suite') or old.get('task')}); choose another folder"
        )
    if partial_p.exists():
        old = json.loads(partial_p.read_text())
        if old != ident:
            raise SparkleError(
                f"--out: {out_p} holds an unfinished run with other options; delete it or use another folder"
            )
        # A kill mid-write leaves an atomic write's temporary file; the rerun rewrites its target.
        remove_stale_temps(out_p)
        remove_stale_temps(out_p / "images")
    elif out_p.exists() and any(out_p.iterdir()):
        raise SparkleError(f"--out: {out_p} is not empty and holds no sparkle dataset")

    try:
        (out_p / "images").mkdir(parents=True, exist_ok=True)
        atomic_write_json(partial_p, ident)
    except OSError as exc:
        raise SparkleError(f"--out: cannot write to {out_p}: {exc.strerror or exc}") from None
    data_p = out_p / DATA_FILE
    start, n_records, counts, n_images = _recover(data_p)
    if sample_has_images(task, config, seed) is False:
        n_images = 0  # text-only samples: scene groups were counted, not images

    jobs = [(task.id, config, seed, str(out_p), idx) for idx in _chunks(start, config.n, CHUNK)]
    bar = _progress(total=config.n, initial=start, enabled=progress, desc=f"generate {suite or task.id}")
    with open(data_p, "ab") as f:
        for data, info in _run(jobs, workers):
            f.write(data)
            f.flush()
            n_images += info["images"]
            for k, v in info["by_task"].items():
                counts[k] += v
                n_records += v
            bar.update(info["scenes"])
        os.fsync(f.fileno())
    bar.close()

    digest = hashlib.sha256(data_p.read_bytes()).hexdigest()
    import numpy
    import PIL

    manifest = {
        **ident,
        "format": "sparkle-dataset",
        "format_version": FORMAT_VERSION,
        "description": task.description,
        "counts": {"images": n_images, "records": n_records, "by_task": dict(sorted(counts.items()))},
        "files": {"records": DATA_FILE, "images": "images/"},
        "data_sha256": digest,
        "software": {"sparkle_vlm": __version__, "pillow": PIL.__version__, "numpy": numpy.__version__},
    }
    atomic_write_json(manifest_p, manifest)
    partial_p.unlink(missing_ok=True)
    return GenerateResult(out_p, n_images, n_records, start, False)


def sample_has_images(task: Task, config: TaskConfig, seed: int) -> bool | None:
    """Whether this config renders images (None when n == 0)."""
    if config.n == 0:
        return None
    return task.sample(config, seed, 0).image is not None


def _run(
    jobs: list[tuple[str, TaskConfig, int, str, list[int]]], workers: int
) -> Iterator[tuple[bytes, dict[str, Any]]]:
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            yield _render_chunk(job)
        return
    # fork keeps worker start-up cheap; the generator core imports no threads-heavy libraries.
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    ctx = mp.get_context(method)
    with ctx.Pool(min(workers, len(jobs))) as pool:
        yield from pool.imap(_render_chunk, jobs)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, initial: int, enabled: bool | None, desc: str) -> Any:
    if enabled is False:
        return _NoBar()
    from tqdm.auto import tqdm

    # disable=None: on when stderr is a terminal, off in logs and tests.
    return tqdm(
        total=total, initial=initial, desc=desc, unit="img", disable=None if enabled is None else not enabled
    )


def config_from_manifest(manifest: dict[str, Any]) -> tuple[Task, TaskConfig]:
    """Rebuild the task and config a manifest was made with."""
    task = get_task(manifest["task"])
    fields = {f.name for f in dataclasses.fields(task.config_cls)}
    cfg = task.config_cls(**{k: v for k, v in manifest["config"].items() if k in fields})
    return task, cfg

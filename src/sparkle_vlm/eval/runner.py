"""``sparkle eval``: run a model on a suite, one JSONL row per sample, resumable, then summarise.

Run folder layout::

    RUN_DIR/run.json        what was run (model, suite, seed, options, command); fixed at start
    RUN_DIR/results.jsonl   one row per answered sample, appended in whole flushed lines
    RUN_DIR/summary.json    metrics, written atomically at the end
    RUN_DIR/data/           generated datasets (unless --data-dir points elsewhere)

Re-running the same command resumes: a partial last line (a crash mid-write) is cut off, rows
already scored are skipped, and requests that failed at the backend level (network errors,
timeouts) are asked again; they never count as wrong answers. A run folder made with another
model, suite, seed or data size is refused. Results are keyed by (part, id).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparkle_vlm import __version__
from sparkle_vlm.answers import score
from sparkle_vlm.errors import SparkleError
from sparkle_vlm.eval.metrics import by_difficulty, by_task, difficulty_of, metrics
from sparkle_vlm.eval.suites import PreparedPart, prepare_suite, resolve_suite
from sparkle_vlm.fsutil import atomic_write_json, atomic_write_text, check_writable_dir
from sparkle_vlm.models.base import Backend, Completion, GenerationConfig, Request, load_backend
from sparkle_vlm.records import prompt_text

RUN_FILE = "run.json"
RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.json"
LOCK_FILE = ".lock"
FORMAT_VERSION = 1

#: Model options that change how fast answers come, not what they are (ignored when resuming).
RUNTIME_OPTIONS = frozenset(
    {"concurrency", "timeout", "max_retries", "retries", "workers", "device", "device_map", "batch_size"}
)
#: Model options that belong to :class:`GenerationConfig` rather than to the backend.
GENERATION_OPTIONS = frozenset({"constrained"})
#: Option names whose values never reach a file.
SECRET_MARKERS = ("key", "token", "secret", "password", "auth")


@dataclass
class EvalConfig:
    """Everything ``sparkle eval`` needs; the CLI builds one from its flags."""

    model: str
    suite: str
    out: Path
    limit: int | None = None
    batch_size: int = 8
    seed: int = 0
    max_new_tokens: int = 256
    temperature: float = 0.0
    model_options: dict[str, Any] = field(default_factory=dict)
    data_dir: Path | None = None
    ood_dir: Path | None = None
    #: Scenes per generated part (default: each suite's full size).
    n: int | None = None
    workers: int | None = None

    def validate(self) -> None:
        if self.batch_size < 1:
            raise SparkleError(f"--batch-size: must be at least 1, got {self.batch_size}")
        if self.seed < 0:
            raise SparkleError(f"--seed: must be non-negative, got {self.seed}")
        if self.max_new_tokens < 1:
            raise SparkleError(f"--max-new-tokens: must be at least 1, got {self.max_new_tokens}")
        if self.limit is not None and self.limit < 0:
            raise SparkleError(f"--limit: must be non-negative, got {self.limit}")
        if self.temperature < 0:
            raise SparkleError(f"--temperature: must be non-negative, got {self.temperature}")

    def suite_key(self) -> str:
        """The suite as recorded: registered names as given, folder paths made absolute."""
        from sparkle_vlm.eval.suites import is_folder_suite

        return str(Path(self.suite).expanduser().absolute()) if is_folder_suite(self.suite) else self.suite

    def identity(self) -> dict[str, Any]:
        """What must match for a run folder to be resumed: anything that changes the answers."""
        return {
            "model": self.model,
            "suite": self.suite_key(),
            "seed": self.seed,
            "n": self.n,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "model_options": {
                k: v for k, v in sorted(redact(self.model_options).items()) if k not in RUNTIME_OPTIONS
            },
        }

    def command(self) -> list[str]:
        """The ``sparkle eval`` command line that reproduces this run (secrets masked)."""
        cmd = [
            "sparkle",
            "eval",
            "--model",
            self.model,
            "--suite",
            self.suite_key(),
            "--out",
            str(self.out),
            "--seed",
            str(self.seed),
            "--batch-size",
            str(self.batch_size),
            "--max-new-tokens",
            str(self.max_new_tokens),
        ]
        if self.temperature:
            cmd += ["--temperature", str(self.temperature)]
        if self.limit is not None:
            cmd += ["--limit", str(self.limit)]
        if self.n is not None:
            cmd += ["--n", str(self.n)]
        for k, v in redact(self.model_options).items():
            cmd += ["--model-opt", f"{k}={v if isinstance(v, str) else json.dumps(v)}"]
        if self.data_dir is not None:
            cmd += ["--data-dir", str(self.data_dir)]
        if self.ood_dir is not None:
            cmd += ["--ood-dir", str(self.ood_dir)]
        return cmd

    def backend_options(self) -> dict[str, Any]:
        """Options for the backend factory (``constrained`` is a decoding setting, not a backend option)."""
        return {k: v for k, v in self.model_options.items() if k not in GENERATION_OPTIONS}

    def call_size(self) -> int:
        """Requests per backend call: the batch size, or more when a backend runs requests concurrently."""
        conc = self.model_options.get("concurrency")
        try:
            return max(self.batch_size, int(conc)) if conc is not None else self.batch_size
        except (TypeError, ValueError):
            return self.batch_size

    def generation_config(self) -> GenerationConfig:
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            seed=self.seed,
            constrained=_truthy(self.model_options.get("constrained", False)),
        )


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("1", "true", "yes", "on")


def redact(options: dict[str, Any]) -> dict[str, Any]:
    """Options with secret-looking values masked (defence in depth: keys belong in the environment).

    >>> redact({"api_key": "sk-123", "concurrency": 4})
    {'api_key': '***', 'concurrency': 4}
    """
    return {k: "***" if any(m in k.lower() for m in SECRET_MARKERS) else v for k, v in options.items()}


def _key(part: str, rid: str) -> str:
    return f"{part}/{rid}"


def load_results(path: Path, *, repair: bool = False) -> dict[str, dict[str, Any]]:
    """Rows of ``results.jsonl`` keyed by ``part/id``: the last scored row wins over failed requests.

    With ``repair`` the file is cut back to its last whole line (a crash can leave half a line).
    """
    if not path.exists():
        return {}
    raw = path.read_bytes()
    rows: dict[str, dict[str, Any]] = {}
    pos = 0
    good_end = 0
    while pos < len(raw):
        nl = raw.find(b"\n", pos)
        if nl < 0:  # no newline: the writer died mid-line
            break
        line = raw[pos:nl]
        if line.strip():
            try:
                row = json.loads(line)
                k = _key(row["part"], row["id"])
            except (ValueError, KeyError, TypeError):
                break
            old = rows.get(k)
            if old is None or row.get("status") == "ok" or old.get("status") != "ok":
                rows[k] = row
        pos = nl + 1
        good_end = pos
    if repair and good_end < len(raw):
        with open(path, "r+b") as f:
            f.truncate(good_end)
    return rows


def _strip_answers(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation up to the last user turn (training records carry the answer)."""
    last_user = max((i for i, t in enumerate(messages) if t.get("role") == "user"), default=-1)
    return list(messages[: last_user + 1])


def _request(prep: PreparedPart, rec: dict[str, Any]) -> Request:
    images = [str(prep.root / p) for p in rec.get("images") or []]
    return Request(id=rec["id"], messages=_strip_answers(rec["messages"]), images=images, record=rec)


def _row(prep: PreparedPart, rec: dict[str, Any], req: Request, comp: Completion) -> dict[str, Any]:
    base = {
        "id": rec["id"],
        "part": prep.part.name,
        "task": rec["task"],
        "answer_type": rec["answer_type"],
        "prompt": prompt_text(rec),
        "images": req.images,
        "expected": rec.get("answer"),
        "choices": rec.get("choices"),
        "difficulty": difficulty_of(rec),
        "latency_s": round(float(comp.latency_s), 6),
    }
    if comp.error is not None:
        return {**base, "status": "error", "output": comp.text, "backend_error": str(comp.error)}
    v = score(rec, comp.text)
    return {
        **base,
        "status": "ok",
        "output": comp.text,
        "parsed": v.parsed,
        "outcome": v.outcome,
        "score": v.score,
        "correct": v.correct,
        "error": v.error,
        "details": v.details,
        "backend_error": None,
        "usage": dict(comp.usage),
    }


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _existing_run(out: Path, cfg: EvalConfig) -> dict[str, Any] | None:
    """The run folder's ``run.json`` if it may be resumed with ``cfg``; None for a fresh folder."""
    run_p = out / RUN_FILE
    ident = cfg.identity()
    if run_p.exists():
        try:
            old = json.loads(run_p.read_text())
        except ValueError:
            raise SparkleError(f"--out: {run_p} is not valid JSON; use another folder") from None
        prev = old.get("identity", {})
        if prev != ident:
            diff = [k for k in ident if prev.get(k) != ident[k]]
            was = ", ".join(f"{k}={prev.get(k)!r}" for k in diff)
            now = ", ".join(f"{k}={ident[k]!r}" for k in diff)
            raise SparkleError(
                f"--out: {out} holds a run made with {was} (now {now}); use another folder or repeat the original options"
            )
        return dict(old)
    if out.exists() and any(p.name != "data" for p in out.iterdir()):
        raise SparkleError(f"--out: {out} is not empty and holds no sparkle run; choose another folder")
    return None


def _fingerprint(prep: PreparedPart) -> str | None:
    """What identifies a part's records: the data file hash (and loader version for OOD subsets)."""
    d = prep.data
    if d.get("kind") == "ood":
        return f"{d.get('annotation_sha256')}/ood-v{d.get('ood_version')}"
    return d.get("data_sha256")


def _check_data(out: Path, old: dict[str, Any], new: dict[str, str | None]) -> None:
    """Refuse to mix rows scored on different data under one run (e.g. after a task version bump)."""
    for part, fp in new.items():
        if part in old and old[part] != fp:
            raise SparkleError(
                f"--out: the data of part {part!r} changed since {out} was started (new task version or "
                "regenerated folder); start a new run folder"
            )


def _new_run(
    out: Path, cfg: EvalConfig, argv: list[str] | None, data: dict[str, str | None]
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    run = {
        "format": "sparkle-eval-run",
        "format_version": FORMAT_VERSION,
        "identity": cfg.identity(),
        "command": list(argv) if argv is not None else cfg.command(),
        "config": _config_dict(cfg),
        "data": data,
        "software": {"sparkle_vlm": __version__, "python": sys.version.split()[0]},
    }
    atomic_write_json(out / RUN_FILE, run)
    return run


def _config_dict(cfg: EvalConfig) -> dict[str, Any]:
    return {
        "model": cfg.model,
        "suite": cfg.suite_key(),
        "seed": cfg.seed,
        "limit": cfg.limit,
        "n": cfg.n,
        "batch_size": cfg.batch_size,
        "max_new_tokens": cfg.max_new_tokens,
        "temperature": cfg.temperature,
        "model_options": redact(cfg.model_options),
        "data_dir": str(cfg.data_dir) if cfg.data_dir else None,
        "ood_dir": str(cfg.ood_dir) if cfg.ood_dir else None,
    }


def _progress(total: int, initial: int, enabled: bool | None, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc=desc, unit="q", disable=None if enabled is None else not enabled
    )


def run_eval(
    cfg: EvalConfig,
    *,
    backend: Backend | None = None,
    progress: bool | None = None,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Run (or resume) an evaluation and write ``summary.json``; returns the summary.

    ``backend`` replaces ``load_backend(cfg.model, **cfg.backend_options())`` (tests, notebooks);
    a backend passed in is not closed here.
    """
    cfg.validate()
    out = check_writable_dir(cfg.out)
    suite = resolve_suite(cfg.suite)
    existing = _existing_run(out, cfg)
    data_dir = Path(cfg.data_dir).expanduser().absolute() if cfg.data_dir else out / "data"
    t0 = time.perf_counter()
    # Data first: a missing OOD folder or a bad option fails before the run folder is claimed.
    parts = prepare_suite(
        suite,
        seed=cfg.seed,
        data_dir=data_dir,
        ood_dir=cfg.ood_dir,
        limit=cfg.limit,
        n=cfg.n,
        workers=cfg.workers,
        progress=progress,
    )
    fingerprints = {p.part.name: _fingerprint(p) for p in parts}
    if existing is not None:
        _check_data(out, existing.get("data", {}), fingerprints)
    run = existing if existing is not None else _new_run(out, cfg, argv, fingerprints)
    with _run_lock(out):
        evaluated, t_model, rows, model_info = _answer(cfg, parts, out, run, backend, progress)
        summary = summarize(cfg, parts, rows, model_info)
        summary["timing"] = {
            "wall_s": round(time.perf_counter() - t0, 3),
            "model_s": round(t_model, 3),
            "evaluated_now": evaluated,
            "samples_per_s": round(evaluated / t_model, 3) if t_model > 0 else None,
            "latency_s_sum": round(sum(float(r.get("latency_s") or 0.0) for r in _selected(parts, rows)), 3),
        }
        # Insertion order (suite order of parts, numeric order of levels) is meaningful: no key sorting.
        text = json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n"
        atomic_write_text(out / SUMMARY_FILE, text)
    return summary


def _answer(
    cfg: EvalConfig,
    parts: list[PreparedPart],
    out: Path,
    run: dict[str, Any],
    backend: Backend | None,
    progress: bool | None,
) -> tuple[int, float, dict[str, dict[str, Any]], dict[str, Any] | None]:
    """Ask the backend every record without a scored row.

    Returns (requests answered now, seconds in the backend, all rows, model identity).
    """
    results_p = out / RESULTS_FILE
    rows = load_results(results_p, repair=True)
    todo = [
        (p, r)
        for p in parts
        for r in p.records
        if rows.get(_key(p.part.name, r["id"]), {}).get("status") != "ok"
    ]
    total = sum(len(p.records) for p in parts)

    model_info = run.get("model")
    own_backend = backend is None
    evaluated = 0
    t_model = 0.0
    if todo:
        if backend is None:
            backend = load_backend(cfg.model, **cfg.backend_options())
        try:
            if model_info is None:
                model_info = redact(backend.describe())
                atomic_write_json(out / RUN_FILE, {**run, "model": model_info})
            gen_cfg = cfg.generation_config()
            bar = _progress(total, total - len(todo), progress, f"eval {cfg.model}")
            with bar, open(results_p, "a", encoding="utf-8") as f:
                for batch in _batches(todo, cfg.call_size()):
                    reqs = [_request(p, r) for p, r in batch]
                    tb = time.perf_counter()
                    comps = backend.generate(reqs, gen_cfg)
                    t_model += time.perf_counter() - tb
                    if len(comps) != len(reqs):
                        raise SparkleError(
                            f"backend {cfg.model}: {len(comps)} completions for {len(reqs)} requests"
                        )
                    lines = []
                    for (p, r), req, comp in zip(batch, reqs, comps, strict=True):
                        row = _row(p, r, req, comp)
                        rows[_key(p.part.name, r["id"])] = row
                        lines.append(json.dumps(row, ensure_ascii=False, default=str) + "\n")
                    # One write per batch of whole lines, flushed and synced: a crash loses at most this batch.
                    f.write("".join(lines))
                    f.flush()
                    os.fsync(f.fileno())
                    evaluated += len(batch)
                    bar.update(len(batch))
        finally:
            if own_backend and backend is not None:
                backend.close()
    return evaluated, t_model, rows, model_info


@contextmanager
def _run_lock(out: Path) -> Iterator[None]:
    """One ``sparkle eval`` per run folder at a time: two writers would interleave their rows."""
    lock = out / LOCK_FILE
    me = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = lock.read_text().strip() if lock.exists() else ""
            host, _, pid = holder.partition(" ")
            if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
                lock.unlink(missing_ok=True)  # left by a killed run on this machine
                continue
            raise SparkleError(
                f"--out: another sparkle eval ({holder or 'unknown'}) is using {out}; wait for it, or delete "
                f"{lock} if it is gone"
            ) from None
        with os.fdopen(fd, "w") as f:
            f.write(me)
        break
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _selected(parts: list[PreparedPart], rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the records this invocation covers (a later --limit may cover fewer than the file holds)."""
    out = []
    for p in parts:
        for r in p.records:
            row = rows.get(_key(p.part.name, r["id"]))
            if row is not None:
                out.append(row)
    return out


def summarize(
    cfg: EvalConfig,
    parts: list[PreparedPart],
    rows: dict[str, dict[str, Any]],
    model_info: dict[str, Any] | None,
) -> dict[str, Any]:
    """The content of ``summary.json`` except ``timing`` (deterministic for the same rows)."""
    selected = _selected(parts, rows)
    ok = [r for r in selected if r.get("status") == "ok"]
    failed = [r for r in selected if r.get("status") != "ok"]
    expected = sum(len(p.records) for p in parts)
    part_out: dict[str, Any] = {}
    for p in parts:
        prow = [r for r in ok if r["part"] == p.part.name]
        part_out[p.part.name] = {
            "label": p.part.label,
            **metrics(prow),
            "backend_errors": sum(1 for r in failed if r["part"] == p.part.name),
            "expected": len(p.records),
            "available": p.total,
            "tasks": by_task(prow),
            "difficulty": by_difficulty(prow),
        }
    versions: dict[str, Any] = {}
    for p in parts:
        for task, v in p.data.get("task_versions", {}).items():
            versions[task] = v
    return {
        "format": "sparkle-eval-summary",
        "format_version": FORMAT_VERSION,
        "model_spec": cfg.model,
        "model": model_info,
        "suite": cfg.suite_key(),
        "seed": cfg.seed,
        "complete": len(ok) == expected,
        "counts": {
            "expected": expected,
            "scored": len(ok),
            "backend_errors": len(failed),
            "pending": expected - len(ok) - len(failed),
        },
        "overall": metrics(ok),
        "tasks": by_task(ok),
        "parts": part_out,
        "data": {
            "suite": cfg.suite_key(),
            "seed": cfg.seed,
            "task_versions": dict(sorted(versions.items())),
            "parts": {p.part.name: p.data for p in parts},
        },
        "config": _config_dict(cfg),
        "software": {"sparkle_vlm": __version__},
    }

"""``sparkle reproduce``: the paper's experiment end to end, resumable stage by stage.

Stages (each writes ``OUT/stages/<stage>.json`` when done and is skipped on re-run):

1. ``data-instruct`` (+ ``data-<ablation>`` with ``--ablations``): Sparkle-Instruct training sets.
2. ``data-composite`` (``--composite-baseline``): the reviewers' baseline data, SPP + TSP training
   records as many as Sparkle-Instruct has, checked against every test instance (no leaks).
3. ``processor`` then ``eval-baseline``: the processor as configured for training (pixel bounds,
   tiling) is saved once and used by every evaluation; then the base model on the ``paper`` suite
   (basic MCQ, SPP 4x4/5x5, TSP).
4. ``sft-<name>``: LoRA (or full) SFT of the base model on each training set.
5. ``eval-<name>``: each fine-tuned model on the same test data.
6. ``report``: the paper-layout table with deltas, 95% intervals and paired significance.

Layout of ``OUT``::

    reproduce.json          the settings (a different setting in the same folder is refused)
    stages/*.json           done-markers
    data/<name>/            training sets (dataset folders)
    eval-data/              the test sets, generated once and shared by every evaluation
    processor/              the processor every evaluation uses
    train/<name>/           adapters + processor + sparkle_train.json
    eval/<name>/            evaluation runs (sparkle eval folders)
    report/                 baseline vs Sparkle-Instruct (sparkle report: deltas, CIs, McNemar)
    report-<name>/          baseline vs each other fine-tuned model
    report-all/             every model in one table
    REPRODUCE.md            the combined table

Sizes: ``paper`` is 2,000 training images (34K records) and the full 200-instance test sets;
``toy`` is 2 training images, 2 test scenes per part and 2 SFT steps (a smoke run that checks the
whole pipeline in a minute on a CPU with a tiny model).

Leakage policy of the composite baseline. A 4x4 grid has only 96 unordered start/end pairs at
distance >= 2 and the 200-instance test set uses all of them, so an obstacle-free 4x4 training set
cannot avoid the test instances. The baseline therefore trains on the same task, prompt and answer
format on 4x4 and 5x5 grids *with obstacles* (two blocked nodes: every scene differs from every
test scene) and on TSP instances of 5 points from a disjoint seed range (``seed + 1000``). Every
training record is still checked against the full test sets by scene (SPP start/end compared
unordered) and by id; any match is dropped and counted in the data manifest.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparkle_vlm import __version__
from sparkle_vlm.errors import ConfigError, SparkleError
from sparkle_vlm.fsutil import atomic_write_json, atomic_write_text, check_writable_dir
from sparkle_vlm.train.common import Log, stderr_log

SIZES = ("paper", "toy")
#: Ablation training sets of the paper: generation suite names (same images, fewer question kinds).
ABLATIONS = ("instruct-direction", "instruct-distance", "instruct-localization", "instruct-no-numbers")
#: Seeds of composite training data start here: evaluation uses small seeds (default 0).
COMPOSITE_SEED_OFFSET = 1000
#: Composite baseline parts: (name, generation suite, overrides, share of the records).
COMPOSITE_PARTS: tuple[tuple[str, str, dict[str, Any], float], ...] = (
    ("spp4-obst", "spp", {"grid": 4, "obstacles": 0.1}, 0.25),
    ("spp5-obst", "spp", {"grid": 5, "obstacles": 0.1}, 0.25),
    ("tsp5", "tsp", {"points": 5, "variant": "fixstart"}, 0.5),
)
SUITE = "paper"
RUN_FILE = "reproduce.json"


@dataclass
class ReproduceConfig:
    """Settings of one reproduction (see the module docstring)."""

    model: str
    out: Path
    size: str = "paper"
    ablations: bool = False
    composite_baseline: bool = False
    config: str | None = None  # SFT YAML (shipped name or path)
    train_overrides: dict[str, Any] = field(default_factory=dict)  # SFT fields, over the YAML
    model_options: dict[str, Any] = field(default_factory=dict)  # hf backend options for evaluation
    trust_remote_code: bool = False
    seed: int = 0  # data seed of the training sets
    eval_seed: int = 0
    eval_batch_size: int = 8
    max_new_tokens: int | None = None  # None: 256 (paper), 16 (toy)
    workers: int | None = None

    def validate(self) -> None:
        if not self.model:
            raise ConfigError("model", "required")
        if self.size not in SIZES:
            raise SparkleError(f"--size: must be one of {', '.join(SIZES)}, got {self.size!r}")
        if self.seed < 0 or self.eval_seed < 0:
            raise SparkleError("--seed: must be non-negative")
        if self.eval_batch_size < 1:
            raise SparkleError(f"--eval-batch-size: must be at least 1, got {self.eval_batch_size}")

    @property
    def toy(self) -> bool:
        return self.size == "toy"

    @property
    def instruct_images(self) -> int:
        return 2 if self.toy else 2000

    @property
    def eval_n(self) -> int | None:
        return 2 if self.toy else None

    @property
    def new_tokens(self) -> int:
        return self.max_new_tokens or (16 if self.toy else 256)

    def identity(self) -> dict[str, Any]:
        """What must match to continue a reproduction folder (not which optional arms are on)."""
        return {
            "model": self.model,
            "size": self.size,
            "config": self.config,
            "train_overrides": self.train_overrides,
            "seed": self.seed,
            "eval_seed": self.eval_seed,
            "max_new_tokens": self.new_tokens,
            "trust_remote_code": self.trust_remote_code,
            "model_options": {
                k: v for k, v in self.model_options.items() if k not in ("device", "device_map", "batch_size")
            },
        }


# ----------------------------------------------------------------------------- stages


class Stages:
    """Done-markers under ``OUT/stages``."""

    def __init__(self, out: Path, log: Log) -> None:
        self.dir = out / "stages"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = log

    def done(self, name: str) -> dict[str, Any] | None:
        p = self.dir / f"{name}.json"
        return json.loads(p.read_text()) if p.is_file() else None

    def mark(self, name: str, info: dict[str, Any]) -> None:
        atomic_write_json(self.dir / f"{name}.json", {"stage": name, **info})

    def run(self, name: str, fn: Any, key: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run ``fn()`` unless the stage is done (with the same ``key``); returns the marker."""
        prev = self.done(name)
        if prev is not None and prev.get("key") == (key or {}):
            self.log(f"[{name}] done, skipped")
            return prev
        self.log(f"[{name}] running")
        t0 = time.perf_counter()
        info = fn() or {}
        marker = {"key": key or {}, "seconds": round(time.perf_counter() - t0, 1), **info}
        self.mark(name, marker)
        return marker


# ----------------------------------------------------------------------------- data


def _generate(
    suite: str, overrides: dict[str, Any], seed: int, out: Path, workers: int | None
) -> dict[str, Any]:
    from sparkle_vlm.generate import generate_dataset
    from sparkle_vlm.suites import SUITES
    from sparkle_vlm.tasks import get_task

    s = SUITES.get(suite)
    task = get_task(s.task)
    config = task.make_config(**{**s.overrides, **overrides})
    res = generate_dataset(task, config, seed, out, workers=workers, suite=suite, progress=False)
    return {"path": str(res.out), "records": res.records, "images": res.images}


def scene_signature(record: dict[str, Any]) -> str:
    """A hash identifying the instance a record asks about (its scene and query).

    SPP start and end are compared unordered (a reversed instance has the reversed answer).

    >>> a = {"task": "spp", "scene": {"grid": 4, "start": "N1", "end": "N9"}, "query": {"start": "N1", "end": "N9"}}
    >>> b = {"task": "spp", "scene": {"grid": 4, "start": "N9", "end": "N1"}, "query": {"start": "N9", "end": "N1"}}
    >>> scene_signature(a) == scene_signature(b)
    True
    """
    scene = dict(record.get("scene") or {})
    query = dict(record.get("query") or {})
    if record.get("task") == "spp":
        ends = sorted([str(scene.pop("start", "")), str(scene.pop("end", ""))])
        query.pop("start", None)
        query.pop("end", None)
        scene["ends"] = ends
    blob = json.dumps({"task": record.get("task"), "scene": scene, "query": query}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def held_out_instances(eval_seed: int, suite: str = SUITE) -> tuple[set[str], set[str], int]:
    """(scene signatures, ids, count) of every composite test record of ``suite`` at full size.

    Records are pure functions of (config, seed, index), so no image is rendered here.
    """
    from sparkle_vlm.eval.suites import resolve_suite
    from sparkle_vlm.suites import SUITES
    from sparkle_vlm.tasks import get_task

    sigs: set[str] = set()
    ids: set[str] = set()
    count = 0
    for part in resolve_suite(suite).parts:
        if part.kind != "generate":
            continue
        gen = SUITES.get(part.source)
        if gen.task not in ("spp", "tsp"):
            continue
        task = get_task(gen.task)
        config = task.make_config(**{**gen.overrides, **part.overrides})
        for i in range(config.n):
            for rec in task.sample(config, eval_seed, i).records:
                sigs.add(scene_signature(rec))
                ids.add(rec["id"])
                count += 1
    return sigs, ids, count


def _with_answer(rec: dict[str, Any]) -> dict[str, Any]:
    """A composite test-style record turned into a training record (assistant turn = canonical answer)."""
    from sparkle_vlm.records import assistant_turn

    out = dict(rec)
    out["messages"] = [m for m in rec["messages"] if m["role"] != "assistant"] + [
        assistant_turn(rec["answer"])
    ]
    out["split"] = "train"
    out["meta"] = {**(rec.get("meta") or {}), "composite_baseline": True}
    return out


def build_composite(
    out: Path, n_records: int, seed: int, eval_seed: int, workers: int | None, log: Log
) -> dict[str, Any]:
    """Write the composite baseline training set (``n_records`` records) to ``out``; returns its manifest."""
    from sparkle_vlm.records import dumps, read_jsonl

    test_sigs, test_ids, n_test = held_out_instances(eval_seed)
    parts_dir = out.parent / f"{out.name}-parts"
    comp_seed = seed + COMPOSITE_SEED_OFFSET
    counts = _split_counts(n_records, [share for *_, share in COMPOSITE_PARTS])
    lines: list[str] = []
    parts_info = []
    leaked = 0
    images_dir = out / "images"
    if out.exists():
        shutil.rmtree(out)  # rebuilt whole from the (resumable) parts: never half old, half new
    images_dir.mkdir(parents=True)
    for (name, suite, overrides, _), n in zip(COMPOSITE_PARTS, counts, strict=True):
        if n == 0:
            continue
        src = parts_dir / name
        info = _generate(suite, {**overrides, "n": n}, comp_seed, src, workers)
        kept = 0
        for rec in read_jsonl(str(src / "data.jsonl")):
            if scene_signature(rec) in test_sigs or rec["id"] in test_ids:
                leaked += 1
                continue
            for img in rec["images"]:
                _link(src / img, out / img)
            lines.append(dumps(_with_answer(rec)))
            kept += 1
        parts_info.append(
            {
                "name": name,
                "suite": suite,
                "overrides": overrides,
                "seed": comp_seed,
                "generated": info["records"],
                "kept": kept,
            }
        )
    if leaked:
        log(f"composite baseline: dropped {leaked} records that match a test instance")
    data = ("\n".join(lines) + "\n").encode() if lines else b""
    (out / "data.jsonl").write_bytes(data)
    manifest = {
        "format": "sparkle-dataset",
        "suite": "composite-train",
        "task": "composite-train",
        "description": "Reviewers' baseline: SPP (4x4/5x5 with obstacles) + TSP (5 points) training records",
        "counts": {"records": len(lines), "target": n_records},
        "parts": parts_info,
        "leakage_check": {
            "test_suite": SUITE,
            "test_seed": eval_seed,
            "test_records": n_test,
            "matched_and_dropped": leaked,
        },
        "data_sha256": hashlib.sha256(data).hexdigest(),
        "software": {"sparkle_vlm": __version__},
    }
    atomic_write_json(out / "manifest.json", manifest)
    return manifest


def _split_counts(total: int, shares: list[float]) -> list[int]:
    """Integer counts proportional to ``shares`` summing to ``total`` (largest remainder).

    >>> _split_counts(34, [0.25, 0.25, 0.5])
    [9, 8, 17]
    """
    raw = [total * s / sum(shares) for s in shares]
    counts = [int(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _link(src: Path, dst: Path) -> None:
    if dst.exists():
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


# ----------------------------------------------------------------------------- train / eval


def _sft_config(rc: ReproduceConfig, data: Path, out: Path) -> Any:
    from sparkle_vlm.train.config import load_config

    overrides: dict[str, Any] = {}
    if rc.toy:
        overrides.update(max_steps=2, batch_size=2, grad_accum=1, save_steps=1, logging_steps=1, lr=1e-3)
    overrides.update(rc.train_overrides)
    overrides.update(
        model=rc.model, data=[str(data)], out=str(out), trust_remote_code=rc.trust_remote_code, seed=rc.seed
    )
    return load_config("sft", rc.config, overrides)


def _sft(rc: ReproduceConfig, data: Path, out: Path, log: Log) -> dict[str, Any]:
    from sparkle_vlm.train.sft import train_sft

    cfg = _sft_config(rc, data, out)
    res = train_sft(cfg, log=log)
    _free_memory()
    return {
        "train_dir": str(out),
        "lora": cfg.lora,
        "global_step": res.global_step,
        "train_loss": res.train_loss,
        "samples": res.samples,
        "dropped_long": res.dropped_long,
    }


def _save_processor(rc: ReproduceConfig, out: Path) -> dict[str, Any]:
    """The processor with the training config's image settings, shared by every evaluation.

    Base and fine-tuned models then see identically processed images (pixel bounds, tiling),
    the same ones training used.
    """
    from sparkle_vlm.train.common import load_processor

    cfg = _sft_config(rc, rc.out / "data" / "instruct", rc.out / "train" / "instruct")
    load_processor(cfg).save_pretrained(str(out))
    return {"path": str(out)}


def _eval(
    rc: ReproduceConfig, out: Path, adapter: str | None, full_model: str | None, log: Log
) -> dict[str, Any]:
    from sparkle_vlm.eval.runner import EvalConfig, run_eval

    options = {"processor": str(rc.out / "processor"), **rc.model_options}
    if rc.trust_remote_code:
        options["trust_remote_code"] = True
    model = f"hf:{full_model or rc.model}"
    if adapter:
        options["adapter"] = adapter
    cfg = EvalConfig(
        model=model,
        suite=SUITE,
        out=out,
        batch_size=rc.eval_batch_size,
        seed=rc.eval_seed,
        max_new_tokens=rc.new_tokens,
        model_options=options,
        data_dir=rc.out / "eval-data",
        n=rc.eval_n,
        workers=rc.workers,
    )
    summary = run_eval(cfg, progress=False)
    _free_memory()
    overall = summary.get("overall", {})
    log(f"  accuracy {overall.get('accuracy')} on {overall.get('n')} questions")
    return {
        "run_dir": str(out),
        "accuracy": overall.get("accuracy"),
        "n": overall.get("n"),
        "complete": summary.get("complete"),
    }


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


# ----------------------------------------------------------------------------- report

#: Display names of the fine-tuned arms.
LABELS = {
    "instruct": "+ Sparkle-Instruct",
    "instruct-direction": "+ direction only",
    "instruct-distance": "+ distance only",
    "instruct-localization": "+ localization only",
    "instruct-no-numbers": "+ w/o numbers",
    "composite": "+ SPP/TSP (reviewers' baseline)",
}


def write_reports(rc: ReproduceConfig, arms: list[str], log: Log) -> dict[str, Any]:
    """``report/`` (baseline vs Sparkle-Instruct), ``report-<arm>/``, ``report-all/`` and ``REPRODUCE.md``."""
    from sparkle_vlm.report import build_report
    from sparkle_vlm.report.runs import PAPER_TABLE, load_run, pct, signed_pp
    from sparkle_vlm.report.significance import compare_runs

    base_dir = rc.out / "eval" / "baseline"
    base_label = f"{_short(rc.model)} (base)"
    n_boot = 1000 if rc.toy else 10_000
    written = {}
    for arm in arms:
        folder = rc.out / ("report" if arm == "instruct" else f"report-{arm}")
        build_report(
            [base_dir, rc.out / "eval" / arm], folder, labels=[base_label, LABELS[arm]], n_boot=n_boot
        )
        written[arm] = str(folder)
    runs_dirs = [base_dir] + [rc.out / "eval" / a for a in arms]
    labels = [base_label] + [LABELS[a] for a in arms]
    build_report(runs_dirs, rc.out / "report-all", labels=labels, n_boot=n_boot)

    base = load_run(base_dir, base_label)
    cols = PAPER_TABLE.columns
    lines = [
        f"# Sparkle reproduction: {rc.model}",
        "",
        f"Size `{rc.size}`, training data seed {rc.seed}, test seed {rc.eval_seed}, suite `{SUITE}`. "
        "Accuracy in % with its 95% Wilson interval; fine-tuned rows add the change against the base "
        "model in percentage points with a paired bootstrap 95% interval, and `*` marks McNemar p < 0.05.",
        "",
        "| Model | " + " | ".join(c.title for c in cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]

    def cell(m: dict[str, Any] | None) -> str:
        if not m:
            return "-"
        lo, hi = m.get("ci95") or (None, None)
        return f"{pct(m['accuracy'])} [{pct(lo, 0)}, {pct(hi, 0)}]" if lo is not None else pct(m["accuracy"])

    lines.append("| " + " | ".join([base.label] + [cell(base.cell(c)) for c in cols]) + " |")
    sig_all: dict[str, Any] = {}
    for arm, label in zip(arms, labels[1:], strict=True):
        run = load_run(rc.out / "eval" / arm, label)
        sig = {(s.part, s.task): s.result for s in compare_runs(base, run, n_boot=n_boot, seed=0)}
        sig_all[arm] = {f"{p}/{t}": r.to_dict() for (p, t), r in sig.items()}
        cells = []
        for c in cols:
            m = run.cell(c)
            s = next((sig[src] for src in c.sources if src in sig), None)
            if not m:
                cells.append("-")
            elif s is None:
                cells.append(cell(m))
            else:
                star = "*" if s.p_value < 0.05 else ""
                cells.append(
                    f"{pct(m['accuracy'])} ({signed_pp(s.diff)}{star} [{signed_pp(s.ci_low)}, "
                    f"{signed_pp(s.ci_high)}])"
                )
        lines.append("| " + " | ".join([label] + cells) + " |")
    lines += [
        "",
        "Details: "
        + ", ".join(f"[{Path(p).name}]({Path(p).name}/report.md)" for p in written.values())
        + ", [report-all](report-all/report.md).",
        "",
    ]
    composite = rc.out / "data" / "composite" / "manifest.json"
    if "composite" in arms and composite.is_file():
        check = json.loads(composite.read_text())["leakage_check"]
        lines += [
            f"Composite baseline leakage check: {check['test_records']} test instances compared, "
            f"{check['matched_and_dropped']} training records matched one and were dropped.",
            "",
        ]
    atomic_write_text(rc.out / "REPRODUCE.md", "\n".join(lines))
    log(f"report: {rc.out / 'REPRODUCE.md'}")
    return {"reports": written, "significance": sig_all}


def _short(model: str) -> str:
    return Path(model.rstrip("/")).name or model


# ----------------------------------------------------------------------------- main


def reproduce(rc: ReproduceConfig, log: Log = stderr_log) -> dict[str, Any]:
    """Run every stage (skipping finished ones); returns the final state."""
    rc.validate()
    out = check_writable_dir(rc.out, "--out")
    rc.out = out
    out.mkdir(parents=True, exist_ok=True)
    ident = rc.identity()
    run_p = out / RUN_FILE
    if run_p.exists():
        prev = json.loads(run_p.read_text())
        if prev.get("identity") != ident:
            changed = sorted(k for k in ident if prev.get("identity", {}).get(k) != ident[k])
            raise SparkleError(
                f"--out: {out} holds a reproduction with other settings ({', '.join(changed)}); "
                "choose another folder"
            )
    else:
        atomic_write_json(
            run_p,
            {
                "identity": ident,
                "software": {"sparkle_vlm": __version__},
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )
    stages = Stages(out, log)
    arms = (
        ["instruct"]
        + (list(ABLATIONS) if rc.ablations else [])
        + (["composite"] if rc.composite_baseline else [])
    )
    n_img = rc.instruct_images

    # 1-2. training data
    data: dict[str, Path] = {}
    for arm in arms:
        if arm == "composite":
            continue
        data[arm] = out / "data" / arm
        stages.run(
            f"data-{arm}",
            lambda a=arm: _generate(a, {"n": n_img}, rc.seed, data[a], rc.workers),
            {"n": n_img, "seed": rc.seed},
        )
    if rc.composite_baseline:
        target = json.loads((data["instruct"] / "manifest.json").read_text())["counts"]["records"]
        data["composite"] = out / "data" / "composite"

        def composite() -> dict[str, Any]:
            m = build_composite(data["composite"], target, rc.seed, rc.eval_seed, rc.workers, log)
            return {
                "path": str(data["composite"]),
                "records": m["counts"]["records"],
                "leakage_check": m["leakage_check"],
            }

        stages.run(
            "data-composite", composite, {"records": target, "seed": rc.seed, "eval_seed": rc.eval_seed}
        )

    # 3. baseline evaluation (every evaluation uses the processor configured for training)
    stages.run("processor", lambda: _save_processor(rc, out / "processor"))
    stages.run("eval-baseline", lambda: _eval(rc, out / "eval" / "baseline", None, None, log))

    # 4-5. fine-tune and evaluate each arm
    for arm in arms:
        train_dir = out / "train" / arm
        marker = stages.run(f"sft-{arm}", lambda a=arm, t=train_dir: _sft(rc, data[a], t, log))
        lora = marker.get("lora", True)
        stages.run(
            f"eval-{arm}",
            lambda a=arm, t=train_dir, lo=lora: _eval(
                rc, out / "eval" / a, str(t) if lo else None, None if lo else str(t), log
            ),
        )

    # 6. report (re-made when the set of arms changes)
    rep = stages.run("report", lambda: write_reports(rc, arms, log), {"arms": arms})
    return {"out": str(out), "arms": arms, "report": str(out / "REPRODUCE.md"), **rep}

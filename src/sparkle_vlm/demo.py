"""``sparkle demo``: the whole Sparkle loop on a CPU, with nothing to download.

1. generate Sparkle-Instruct, practice data in the test format, and the paper's test suites;
2. build the embedded model (random init, FastVLM with a ResNet tower, local folder);
3. evaluate it untrained on the paper suite (basic MCQ, SPP 4x4/5x5, TSP);
4. train it on Sparkle data: first the vision tower on the Sparkle scenes' own records
   (``sparkle train tower``: what each image token holds, a projector that writes it in the
   decoder's own letter and digit embeddings, and two decoder heads fitted to look a named disc's
   cell up), then SFT with the tower frozen through the same ``sparkle train sft`` path real
   models use;
5. evaluate again and write the report (baseline vs Sparkle-trained, with significance);
6. a small transfer experiment: the same small budget of composite-task training (SPP + TSP,
   no test instance leaks) starting from scratch and from the Sparkle-trained model, compared on
   the composite suite with intervals and a paired test, reported plainly whatever it shows.

Every stage leaves a done-marker in ``OUT/stages``: re-running the command resumes. On two or
more cores the stages that need only the untrained model (its evaluation, the composite data, the
from-scratch transfer arm) run in a second process beside the SFT parts, and the Sparkle model's
evaluation beside its transfer arm (``BESIDE_SFT``, ``BESIDE_TRANSFER``); the results are the same.

Why practice data in the test format: the paper fine-tunes models that already read, follow
instructions and answer multiple choice. The embedded model starts from random weights, so it
also needs to see the answer format of the test (option letters); its practice scenes come from a
disjoint seed stream (``basic-train``), never from the test scenes.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from sparkle_vlm.errors import SparkleError
from sparkle_vlm.fsutil import atomic_write_text, check_writable_dir
from sparkle_vlm.train.common import Log, stderr_log


@dataclass(frozen=True)
class DemoPlan:
    """The demo's budget. ``full`` is what ``make demo`` runs; ``quick`` is for tests."""

    size: str = "small"  # embedded model size
    instruct_images: int = 1000  # Sparkle-Instruct images (17 questions each)
    practice_images: int = 3000  # basic-train images (3 MCQ each)
    eval_n: int = 200  # scenes per test part (the paper's 200)
    # dense tower pretraining steps (``sparkle train tower``). At a constant learning rate a run
    # of 2,000 steps is the first 2,000 of a 2,500-step run (seed 0: batch loss 0.057 at 2,000,
    # 0.124 at 2,500; labels 99.45 %); 1,500 steps with a cosine decay: labels 78.6 %
    tower_steps: int = 2000
    # torch threads of the tower stage: no data-loading process runs then, and its convolutions
    # use a second core well (270 steps: 24 s with 1 thread, 12 s with 2, quiet 2-core machine)
    tower_threads: int = 2
    # projector code steps. Sixteenth round, seed-0 tower: 300 steps name 94.5 % of the disc labels
    # (relative error 0.32), 600 98.6 % (0.22), 1,000 99.1 % (0.19); the demo with 600: direction
    # 85.5 / 76.5 % (seeds 0 / 1; 80.5 / 76.0 with 300), ~20 s more
    code_steps: int = 600
    # SFT in two parts, tower, projector and embeddings frozen: first the practice MCQ alone
    # (the lookups form sooner on it), then Sparkle-Instruct + practice (seventh round)
    # with the tower stage's lookup heads the cells are read from the first step (ninth round:
    # practice alone, 800 steps 45.5 / 80.0 % direction / localization, 2,500 steps 61.5 / 97.5);
    # with its number lines and letter readout, 800 steps gave 83.5 / 97.0 in one draw of the
    # fits and 60.0 / 85.5, 47.5 / 80.0 in two others (tenth round); with the label copy too,
    # 73.0 / 97.5 and 72.5 / 95.5 in two draws (eleventh round); with the newest-y number line in
    # layer 0, 85.0 / 96.5 and 81.5 / 96.0 (twelfth round)
    practice_steps: int = 800
    practice_lr: float = 1e-3
    # SFT steps on Sparkle-Instruct + practice. Thirteenth round, from the practice part's model
    # (seed 0 / seed 1: 83.0 / 72.0 % direction, 95.5 / 87.0 % localization): 400 steps at 5e-4
    # 76.5 % / -; 400 at 2e-4 82.0 / 72.5 % and 96.5 / 78.0 %; 800 at 5e-4 80.5 / 76.0 % and
    # 96.5 / 97.0 % (kept: the weaker draw needs the longer part)
    steps: int = 800
    batch_size: int = 16
    lr: float = 5e-4
    rationale: bool = True  # answers first write the cells of the named objects (train/rationale.py)
    # Sparkle-Instruct's holistic descriptions are 45 % of its answer tokens and name no single
    # object; the demo's small budget goes to the direction / distance / localization questions
    descriptions: bool = False
    # the trainer's default; 5 % until round eight (one run of each: 21.0 / 22.5 % and 19.5 / 22 %
    # direction / localization; whether the lookups form is decided by rounding-level noise)
    warmup_ratio: float = 0.03
    # one process decodes and collates the next batch while the main one trains (1 torch thread):
    # 0.199 -> 0.156 s per step on 2 cores
    dataloader_workers: int = 1
    transfer_records: int = 2000  # composite-task training records for the transfer experiment
    transfer_steps: int = 100  # 150 until round thirteen (0 % on every composite test either way)
    transfer_lr: float = 5e-4
    max_new_tokens: int = 40  # fits the longest SPP 5x5 move list of the embedded tokenizer
    eval_batch_size: int = 32

    def stage_seconds(self) -> dict[str, float]:
        """A rough 2-core CPU estimate of each stage, in the order the demo runs them.

        Measured on the project's 2-core machine with 1 torch thread and a data-loading process
        (a quiet run of the full plan, thirteenth round): ~0.30 s per SFT step (rationale answers,
        no descriptions, image features cached), ~0.65 s per composite step, ~0.13 s per tower
        step (2 threads), ~25 s to load the tower's images and fit the lookup heads, ~0.015 s per
        answer of the letter readout and ~0.02 s per evaluation question. Hosts differ by 2-3x
        (round eight's machine ran a step in 0.16 s): the demo rescales what is left by what the
        finished stages took (:func:`run_demo`).
        """
        per_step = {"tiny": 0.03, "small": 0.31, "base": 2.5}.get(self.size, 0.3)
        per_tower = {"tiny": 0.01, "small": 0.13, "base": 0.6}.get(self.size, 0.1)
        per_eval = {"tiny": 0.005, "small": 0.022, "base": 0.1}.get(self.size, 0.05)
        from sparkle_vlm.train.tower import TowerTrainConfig

        readout_s = TowerTrainConfig.readout_samples * per_eval * 2 / 3
        composite_s = 1.9 * self.transfer_steps * per_step
        return {
            "data-instruct": 1 + 0.002 * self.instruct_images,
            "data-practice": 1 + 0.001 * self.practice_images,
            "model": 5.0,
            "eval-untrained": 9 * self.eval_n * per_eval,
            # a code step runs the frozen tower forward only: ~half a dense step (600 in 36 s)
            "train-tower": (self.tower_steps + self.code_steps / 2) * per_tower + 25 + readout_s,
            "train-practice": self.practice_steps * per_step,
            "train-sparkle": self.steps * per_step,
            "eval-sparkle": 9 * self.eval_n * per_eval,
            "data-composite": 2 + 0.002 * self.transfer_records,
            "train-composite-from-scratch": composite_s,
            "eval-composite-from-scratch": 3 * self.eval_n * per_eval,
            "train-composite-from-sparkle": composite_s,
            "eval-composite-from-sparkle": 3 * self.eval_n * per_eval,
        }

    def estimate_minutes(self, overlap: bool = True) -> float:
        """A rough 2-core CPU estimate of the whole demo, printed before the run starts.

        With ``overlap`` the stages that run beside the SFT parts count for nothing: they take
        less time than the two parts (~140 s against ~430 s here; the Sparkle evaluation
        ~30 s beside the ~65 s of its transfer arm).
        """
        beside = set(BESIDE_SFT + BESIDE_TRANSFER) if overlap else set()
        return (sum(v for k, v in self.stage_seconds().items() if k not in beside) + 30) / 60


class _Clock:
    """Runs the demo's stages and says, after each, about how long is left: the plan's estimate
    of the remaining stages, scaled by how the stages run so far compared with theirs. Stages in
    ``beside`` run in a second process next to the main line and count for no time left."""

    def __init__(
        self,
        stages: Any,
        key: dict[str, Any],
        estimates: dict[str, float],
        log: Log,
        beside: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        self.stages, self.key, self.estimates, self.log = stages, key, estimates, log
        self.beside = set(beside)
        self.finished: set[str] = set()
        self.estimated = self.took = 0.0

    def left_seconds(self) -> float:
        """The estimate of the main line's stages still to run, scaled by those that ran."""
        left = sum(v for k, v in self.estimates.items() if k not in self.finished and k not in self.beside)
        # a few seconds of small stages say little about the host; scale once a stage of weight ran
        factor = self.took / self.estimated if self.estimated >= 30 else 1.0
        return left * factor

    def run(self, name: str, fn: Any) -> dict[str, Any]:
        prev = self.stages.done(name)
        skipped = prev is not None and prev.get("key") == self.key
        marker = self.stages.run(name, fn, self.key)
        self.finished.add(name)
        if not skipped:
            self.estimated += self.estimates.get(name, 0.0)
            self.took += float(marker.get("seconds") or 0.0)
            self.log(
                f"[{name}] done in {marker.get('seconds')} s; about {self.left_seconds() / 60:.0f} min left"
            )
        return marker


PLANS = {
    "full": DemoPlan(),
    "quick": DemoPlan(
        size="tiny",
        instruct_images=8,
        practice_images=8,
        eval_n=4,
        tower_steps=4,
        code_steps=2,
        practice_steps=2,
        steps=4,
        batch_size=4,
        transfer_records=12,
        transfer_steps=2,
        tower_threads=1,
        dataloader_workers=0,
        max_new_tokens=8,
        eval_batch_size=8,
    ),
}


def _eval(model: str, suite: str, out: Path, plan: DemoPlan, data_dir: Path, workers: int | None) -> dict:
    from sparkle_vlm.eval.runner import EvalConfig, run_eval

    cfg = EvalConfig(
        model=model,
        suite=suite,
        out=out,
        n=plan.eval_n,
        batch_size=plan.eval_batch_size,
        max_new_tokens=plan.max_new_tokens,
        data_dir=data_dir,
        workers=workers,
    )
    return run_eval(cfg, progress=None)


def sft_config(
    model: str,
    data: list[Path],
    out: Path,
    steps: int,
    lr: float,
    plan: DemoPlan,
    *,
    freeze: bool = False,
    rationale: bool = False,
    tasks: list[str] | None = None,
    seed: int = 0,
) -> Any:
    """The demo's SFT config for one part (also run by ``benchmarks/embedded_learning.py``)."""
    from sparkle_vlm.train.config import SFTTrainConfig

    return SFTTrainConfig(
        model=model,
        data=[str(d) for d in data],
        out=str(out),
        lora=False,  # a model trained from scratch learns every weight
        # the tower's code speaks in the decoder's embeddings: keep both as they are
        freeze_vision=freeze,
        freeze_projector=freeze,
        freeze_embeddings=freeze,
        rationale=rationale,
        tasks=tasks,
        lr=lr,
        batch_size=plan.batch_size,
        grad_accum=1,
        max_steps=steps,
        warmup_ratio=plan.warmup_ratio,
        logging_steps=max(1, steps // 20),
        save_steps=max(1, steps // 4),
        save_total_limit=1,
        seed=seed,
        fp32_weights=True,  # on a GPU: bf16 autocast over float32 weights (a model trained from scratch)
        gradient_checkpointing=False,  # the embedded model's activations are small; recompute costs time
        dataloader_workers=plan.dataloader_workers,
    )


def _sft(
    model: str,
    data: list[Path],
    out: Path,
    steps: int,
    lr: float,
    plan: DemoPlan,
    log: Log,
    freeze: bool = False,
    rationale: bool = False,
    tasks: list[str] | None = None,
) -> dict:
    from sparkle_vlm.train.sft import train_sft

    cfg = sft_config(model, data, out, steps, lr, plan, freeze=freeze, rationale=rationale, tasks=tasks)
    res = train_sft(cfg, log=log)
    return {"global_step": res.global_step, "train_loss": res.train_loss, "samples": res.samples}


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _accuracy(summary: dict[str, Any], part: str, task: str) -> tuple[float, float, float, int] | None:
    """(accuracy, ci low, ci high, n) of one task of one part of an eval summary."""
    t = ((summary.get("parts") or {}).get(part) or {}).get("tasks", {}).get(task)
    if not t or not t.get("n"):
        return None
    lo, hi = t["ci95"]
    return float(t["accuracy"]), float(lo), float(hi), int(t["n"])


# Stages that need only the untrained model and the data run in a second process beside the two
# SFT parts, and the Sparkle model's evaluation beside its composite training: an SFT part runs one
# torch thread and leaves most of the second core idle. Measured on 2 cores, seed 0, in the same
# hour: 20 min 18 s with the second process, 23 min 30 s with ``--serial`` (the practice part 7 %
# slower beside it). Every stage is a pure function of its inputs: the same weights and answers
# either way (tested).
BESIDE_SFT = (
    "eval-untrained",
    "data-composite",
    "train-composite-from-scratch",
    "eval-composite-from-scratch",
)
BESIDE_TRANSFER = ("eval-sparkle",)


class _Demo:
    """The demo's stages by name, so that a second process can run some of them."""

    def __init__(self, out: Path, plan: DemoPlan, seed: int, workers: int | None, log: Log) -> None:
        self.out, self.plan, self.seed, self.workers, self.log = out, plan, seed, workers, log
        self.data, self.runs, self.cache = out / "data", out / "runs", out / "data" / "eval"

    def stage(self, name: str) -> Callable[[], dict[str, Any]]:
        """The function that runs stage ``name`` and returns what its marker records."""
        fns: dict[str, Callable[[], dict[str, Any]]] = {
            "data-instruct": partial(self._data, "instruct", self.plan.instruct_images),
            "data-practice": partial(self._data, "basic-train", self.plan.practice_images),
            "model": self._model,
            "eval-untrained": partial(self._eval, "model-untrained", "paper", "untrained"),
            "train-tower": self._tower,
            "train-practice": self._practice,
            "train-sparkle": self._sparkle,
            "eval-sparkle": partial(self._eval, "model-sparkle", "paper", "sparkle"),
            "data-composite": self._data_composite,
        }
        for arm, start in (("scratch", "model-untrained"), ("sparkle", "model-sparkle")):
            fns[f"train-composite-from-{arm}"] = partial(self._composite, start, arm)
            fns[f"eval-composite-from-{arm}"] = partial(
                self._eval, f"model-composite-from-{arm}", "composite", f"composite-from-{arm}"
            )
        return fns[name]

    def _data(self, suite: str, n: int) -> dict[str, Any]:
        from sparkle_vlm.train.reproduce import _generate

        return _generate(suite, {"n": n}, self.seed, self.data / suite, self.workers)

    def _model(self) -> dict[str, Any]:
        from sparkle_vlm.models.embedded import build_embedded_model

        path = build_embedded_model(self.plan.size, self.out / "model-untrained", seed=self.seed)
        return {"path": str(path)}

    def _eval(self, model: str, suite: str, run: str) -> dict[str, Any]:
        summary = _eval(f"hf:{self.out / model}", suite, self.runs / run, self.plan, self.cache, self.workers)
        return _summary_info(summary)

    def _tower(self) -> dict[str, Any]:
        from sparkle_vlm.train.tower import TowerTrainConfig, pretrain_tower

        plan = self.plan
        cfg = TowerTrainConfig(
            model=str(self.out / "model-untrained"),
            data=[str(self.data / "instruct"), str(self.data / "basic-train")],
            out=str(self.out / "model-tower"),
            steps=plan.tower_steps,
            code_steps=plan.code_steps,
            batch_size=plan.batch_size,
            held_out=min(200, plan.instruct_images // 2),
            seed=self.seed,
        )
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(max(before, min(plan.tower_threads, os.cpu_count() or 1)))
        try:
            info = pretrain_tower(cfg, log=self.log)
        finally:
            torch.set_num_threads(before)
        return {"dense": info["dense"], "code": info["code"], "lookup": info["lookup"]}

    def _practice(self) -> dict[str, Any]:
        plan = self.plan
        return _sft(
            str(self.out / "model-tower"),
            [self.data / "basic-train"],
            self.out / "model-practice",
            plan.practice_steps,
            plan.practice_lr,
            plan,
            self.log,
            freeze=True,
            rationale=plan.rationale,
        )

    def _sparkle(self) -> dict[str, Any]:
        plan = self.plan
        start = self.out / ("model-practice" if plan.practice_steps else "model-tower")
        return _sft(
            str(start),
            [self.data / "instruct", self.data / "basic-train"],
            self.out / "model-sparkle",
            plan.steps,
            plan.lr,
            plan,
            self.log,
            freeze=True,
            rationale=plan.rationale,
            tasks=None if plan.descriptions else ["direction", "distance", "localization"],
        )

    def _data_composite(self) -> dict[str, Any]:
        from sparkle_vlm.train.reproduce import build_composite

        plan = self.plan
        built = build_composite(
            self.data / "composite-train", plan.transfer_records, self.seed, self.seed, self.workers, self.log
        )
        return {"records": built["counts"]["records"]}

    def _composite(self, start: str, arm: str) -> dict[str, Any]:
        plan = self.plan
        return _sft(
            str(self.out / start),
            [self.data / "composite-train"],
            self.out / f"model-composite-from-{arm}",
            plan.transfer_steps,
            plan.transfer_lr,
            plan,
            self.log,
        )


def _run_beside(
    out: Path, plan: DemoPlan, seed: int, workers: int | None, threads: int | None, names: tuple[str, ...]
) -> None:
    """Run ``names`` in order in this (second) process; their markers tell the first one what ran."""
    from sparkle_vlm.train.reproduce import Stages

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    # the main line is the critical path: this process (and its data-loading process) takes the
    # CPU time it leaves (2 cores, 200 practice steps: 83-94 s alone, 94-98 s beside a niced
    # composite SFT run)
    with contextlib.suppress(OSError, AttributeError):
        os.nice(19)

    def log(msg: str) -> None:
        stderr_log(f"(beside) {msg}")

    demo = _Demo(out, plan, seed, workers, log)
    stages = Stages(out, log)
    key = _key(plan, seed)
    for name in names:
        fn = demo.stage(name)
        marker = stages.run(name, lambda fn=fn: {**fn(), "process": os.getpid()}, key)
        log(f"[{name}] done in {marker.get('seconds')} s")


def _key(plan: DemoPlan, seed: int) -> dict[str, Any]:
    return {"plan": asdict(plan), "seed": seed}


def run_demo(
    out: str | Path,
    *,
    plan: DemoPlan | None = None,
    seed: int = 0,
    workers: int | None = None,
    threads: int | None = 1,
    overlap: bool | None = None,
    log: Log = stderr_log,
) -> Path:
    """Run (or resume) the demo into ``out``; returns the path of the demo summary page.

    ``threads`` caps torch's CPU threads (None: torch's default, all cores). The default is 1:
    the small model's matrices are too small to gain much from a second thread, and next to any
    other busy process 2 threads stall each other (measured on 2 cores: the untrained evaluation
    took 170 s with 2 threads and 17 s with 1; training ran at ~0.2 vs ~4 steps/s).

    ``overlap`` runs the stages of ``BESIDE_SFT`` and ``BESIDE_TRANSFER`` in a second process
    beside the main line (default: when the host has two or more cores); the results are the same.
    """
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    from sparkle_vlm.train.reproduce import Stages

    plan = plan or PLANS["full"]
    if overlap is None:
        overlap = (os.cpu_count() or 1) >= 2
    out_p = check_writable_dir(out)
    out_p.mkdir(parents=True, exist_ok=True)
    stages = Stages(out_p, log)
    key = _key(plan, seed)
    beside = set(BESIDE_SFT + BESIDE_TRANSFER) if overlap else set()
    clock = _Clock(stages, key, plan.stage_seconds(), log, beside=beside)
    demo = _Demo(out_p, plan, seed, workers, log)
    t0 = time.perf_counter()
    log(
        f"sparkle demo: about {plan.estimate_minutes(overlap):.0f} min on 2 CPU cores (model size {plan.size})"
    )
    if _cuda():
        log("sparkle demo: CUDA is available; training and evaluation run on the GPU (bf16 autocast)")

    pool: Any = None
    if overlap:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: a fork of a process that has run torch can deadlock in its thread pools
        pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))

    def start(names: tuple[str, ...]) -> Any:
        """Start ``names`` beside the main line (or run them here); returns what :func:`join` takes."""
        todo = tuple(n for n in names if (stages.done(n) or {}).get("key") != key)
        if pool is None or not todo:
            for name in names:
                clock.run(name, demo.stage(name))
            return None
        log(f"sparkle demo: {', '.join(todo)} run in a second process beside the next stages")
        return pool.submit(_run_beside, out_p, plan, seed, workers, threads, todo)

    def join(future: Any) -> None:
        if future is not None:
            if not future.done():
                log("sparkle demo: waiting for the second process to finish its stages")
            future.result()  # re-raises the second process's error here

    try:
        for name in ("data-instruct", "data-practice", "model"):
            clock.run(name, demo.stage(name))
        # the tower stage uses both cores: the second process starts after it
        clock.run("train-tower", demo.stage("train-tower"))
        first = start(BESIDE_SFT)
        if plan.practice_steps:
            clock.run("train-practice", demo.stage("train-practice"))
        clock.run("train-sparkle", demo.stage("train-sparkle"))
        join(first)
        # Transfer experiment: the same composite budget from scratch and from the Sparkle model.
        second = start(BESIDE_TRANSFER)
        clock.run("train-composite-from-sparkle", demo.stage("train-composite-from-sparkle"))
        join(second)
        clock.run("eval-composite-from-sparkle", demo.stage("eval-composite-from-sparkle"))
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    from sparkle_vlm.report import build_report

    runs = out_p / "runs"
    build_report(
        [runs / "untrained", runs / "sparkle"], out_p / "report", labels=["untrained", "Sparkle-trained"]
    )
    build_report(
        [runs / "composite-from-scratch", runs / "composite-from-sparkle"],
        out_p / "report-transfer",
        labels=["composite SFT from scratch", "composite SFT from Sparkle"],
    )
    page = _write_summary(out_p, plan, time.perf_counter() - t0, beside)
    return page


def _summary_info(summary: dict[str, Any]) -> dict[str, Any]:
    return {"overall": summary.get("overall"), "n": summary.get("n")}


#: (part, task, title) rows of the demo tables, in the paper's column order.
TASK_ROWS = (
    ("basic", "direction", "Direction"),
    ("basic", "distance", "Distance"),
    ("basic", "localization", "Localization"),
    ("spp-4x4", "spp", "SPP 4x4"),
    ("spp-5x5", "spp", "SPP 5x5"),
    ("tsp", "tsp", "TSP"),
)


def _write_summary(out: Path, plan: DemoPlan, seconds: float, beside: set[str] | None = None) -> Path:
    def load(run: str) -> dict[str, Any]:
        return json.loads((out / "runs" / run / "summary.json").read_text())

    before, after = load("untrained"), load("sparkle")
    scratch, transfer = load("composite-from-scratch"), load("composite-from-sparkle")
    stage_times = {
        p.stem: json.loads(p.read_text()).get("seconds")
        for p in sorted((out / "stages").glob("*.json"), key=lambda q: q.stat().st_mtime_ns)
    }

    def cell(acc: tuple[float, float, float, int] | None) -> str:
        if acc is None:
            return "-"
        a, lo, hi, n = acc
        return f"{100 * a:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] (n={n})"

    lines = [
        "# Sparkle demo",
        "",
        f"Embedded model `{plan.size}` trained from random weights on a CPU. Accuracy in %, with 95% Wilson "
        "intervals.",
        "",
        "## Basic skills and composite tasks: untrained vs Sparkle-trained",
        "",
        "| Task | untrained | Sparkle-trained |",
        "|---|---|---|",
    ]
    for part, task, title in TASK_ROWS:
        lines.append(
            f"| {title} | {cell(_accuracy(before, part, task))} | {cell(_accuracy(after, part, task))} |"
        )
    tower_p = out / "stages" / "train-tower.json"
    if tower_p.is_file():
        tw = json.loads(tower_p.read_text())
        dense, code, lookup = tw.get("dense", {}), tw.get("code", {}), tw.get("lookup") or {}
        readout = lookup.get("readout") or {}
        lines += [
            "",
            f"Before SFT the vision tower was pretrained ({plan.tower_steps} steps) on the training scenes' "
            "records: on held-out images it names the label of "
            f"{100 * dense.get('disc_label_accuracy', 0):.1f}% of the discs and the region of "
            f"{100 * dense.get('disc_region_accuracy', 0):.1f}%; the projector then writes a disc's token as its "
            + (
                f"label, letter and cell-digit embeddings (cell digits right: x {100 * code['disc_x_accuracy']:.1f}%, "
                f"y {100 * code['disc_y_accuracy']:.1f}%; "
                if "disc_x_accuracy" in code
                else "label and letter embeddings ("
            )
            + f"relative error {code.get('relative_error', float('nan')):.2f}). "
            + (
                "Two heads of the decoder were then set to look a named disc's cell up (fitted on "
                f"{lookup['fit_samples']} training answers): before any SFT step the model wrote the right x / y "
                f"digit after {100 * lookup['x_digit_accuracy']:.1f} / {100 * lookup['y_digit_accuracy']:.1f}% "
                "of the labels of held-out answers. "
                if lookup.get("x_digit_accuracy") is not None
                else ""
            )
            + (
                "Two more copy the question's labels into the answer in order: before any SFT step the model "
                f"named the right label at {100 * lookup['label_accuracy']:.1f}% of the places where a held-out "
                "answer names one. "
                if lookup.get("label_copy") and lookup.get("label_accuracy") is not None
                else ""
            )
            + (
                (
                    "Four more heads write the answer's cells as numbers. "
                    if lookup.get("number_heads")
                    else ""
                )
                + "The last layer's MLP got a "
                f"letter readout fitted on {readout['fit_answers']} multiple-choice training answers: "
                f"it named {100 * readout['letter_accuracy']:.1f}% of the letters of held-out answers "
                "given their rationale, before any SFT step. "
                if readout.get("letter_accuracy") is not None
                else ""
            )
            + "SFT kept the tower, the projector and the token embeddings frozen"
            + (
                ", and every training answer first wrote the cells of the objects it names "
                '(" N2 18, N1 85. \\boxed{H}").'
                if plan.rationale
                else "."
            )
            + (
                f" SFT ran in two parts: {plan.practice_steps} steps on the practice MCQ alone, then "
                f"{plan.steps} on Sparkle-Instruct"
                + ("" if plan.descriptions else " (without its holistic descriptions)")
                + " + practice."
                if plan.practice_steps
                else ""
            ),
        ]
    lines += [
        "",
        "## Transfer: the same composite-task training budget, from scratch vs from the Sparkle model",
        "",
        f"{plan.transfer_steps} SFT steps on {plan.transfer_records} SPP/TSP training records (no test instance).",
        "",
        "| Task | from scratch | from Sparkle |",
        "|---|---|---|",
    ]
    verdicts = []
    for part, task, title in TASK_ROWS[3:]:
        a, b = _accuracy(scratch, part, task), _accuracy(transfer, part, task)
        lines.append(f"| {title} | {cell(a)} | {cell(b)} |")
        if a and b:
            if b[1] > a[2]:
                verdicts.append(
                    f"{title}: starting from the Sparkle model helped (intervals do not overlap)."
                )
            elif a[1] > b[2]:
                verdicts.append(f"{title}: starting from the Sparkle model hurt (intervals do not overlap).")
            else:
                verdicts.append(f"{title}: no clear difference (intervals overlap).")
    lines += ["", *verdicts, ""]
    lines += [
        "## Files",
        "",
        "- `report/report.html`: full report (plots, failure gallery, paired significance tests)",
        "- `report-transfer/report.html`: the transfer experiment",
        "- `model-sparkle/`: the trained model (a Hugging Face folder: "
        "`sparkle eval --model hf:<this folder> ...`)",
        "",
        "## Time per stage (s)",
        "",
        *[
            f"- {k}: {v}" + (" (in a second process, beside the main line)" if k in (beside or ()) else "")
            for k, v in stage_times.items()
        ],
        f"- total this run: {seconds:.0f}",
        "",
    ]
    page = out / "DEMO.md"
    atomic_write_text(page, "\n".join(lines))
    return page


def plan_for(quick: bool, size: str | None, steps: int | None) -> DemoPlan:
    plan = PLANS["quick" if quick else "full"]
    if size is not None:
        if size not in ("tiny", "small", "base"):
            raise SparkleError(f"--size: must be tiny, small or base, got {size!r}")
        plan = replace(plan, size=size)
    if steps is not None:
        if steps < 1:
            raise SparkleError(f"--steps: must be at least 1, got {steps}")
        plan = replace(plan, steps=steps)
    return plan

"""Does the embedded model learn the basic skills? Trains it and prints one JSON line.

    python benchmarks/embedded_learning.py                      # the demo recipe (~15 min on 2 cores)
    python benchmarks/embedded_learning.py --steps 300 --practice-images 1000 --eval-n 100   # ~5 min

Runs the path ``sparkle demo`` runs, nothing else: generate Sparkle-Instruct and ``basic-train``
(practice data in the test format, scenes disjoint from the test set), build the embedded model
(``sparkle_vlm.models.embedded``), pretrain its tower on the scenes' records
and its decoder's lookup heads (``sparkle_vlm.train.tower``; ``--tower-steps 0`` skips it,
``--lookup-samples 0`` the heads), train the rest with
``sparkle_vlm.train.sft.train_sft`` (TRL SFTTrainer, prompt/completion rows, loss on answers only,
tower, projector and embeddings frozen after its pretraining, rationale answers, no
descriptions; the practice MCQ alone first, then Sparkle-Instruct + practice, as the demo), then evaluate on the basic MCQ test set
(``basic`` eval suite: 3 labelled discs + 2 distractors, option letters) with the ``hf`` backend.

Reported: accuracy per capability (direction, distance, localization) next to chance (1/8, 1/3,
1/9), seconds per stage, SFT steps/s, the model's parameter count and the exact SFT settings.
Goal (issue "Embedded default model and sparkle demo"): >= 80% on each capability within the
demo's budget; docs/embedded-model.md records what it reaches.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from sparkle_vlm.demo import PLANS, sft_config

CHANCE = {"direction": 1 / 8, "distance": 1 / 3, "localization": 1 / 9}


def _generate(suite: str, n: int, seed: int, out: Path, workers: int | None) -> int:
    from sparkle_vlm.generate import generate_dataset
    from sparkle_vlm.suites import SUITES
    from sparkle_vlm.tasks import get_task

    s = SUITES.get(suite)
    task = get_task(s.task)
    config = task.make_config(**{**s.overrides, "n": n})
    return generate_dataset(task, config, seed, out, workers=workers, suite=suite, progress=False).records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="small", help="embedded model size: tiny | small | base")
    ap.add_argument(
        "--instruct-images", type=int, default=1000, help="Sparkle-Instruct images (17 questions each)"
    )
    ap.add_argument("--practice-images", type=int, default=3000, help="basic-train images (3 MCQ each)")
    ap.add_argument(
        "--practice-steps",
        type=int,
        default=PLANS["full"].practice_steps,
        help="first SFT part, practice MCQ alone (0: none)",
    )
    ap.add_argument("--practice-lr", type=float, default=PLANS["full"].practice_lr)
    ap.add_argument(
        "--steps", type=int, default=PLANS["full"].steps, help="SFT steps on Sparkle-Instruct + practice"
    )
    ap.add_argument(
        "--direct-answers", action="store_true", help="train on the answers alone (no rationale, round six)"
    )
    ap.add_argument(
        "--descriptions", action="store_true", help="keep Sparkle-Instruct's holistic descriptions"
    )
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--tower-steps", type=int, default=2500, help="tower pretraining steps (0: none)")
    ap.add_argument("--code-steps", type=int, default=300, help="projector code steps")
    ap.add_argument(
        "--lookup-samples", type=int, default=96, help="answers the lookup heads are fitted on (0: none)"
    )
    ap.add_argument(
        "--readout-samples",
        type=int,
        default=4500,
        help="MCQ answers the letter readout is fitted on (0: none)",
    )
    ap.add_argument("--lr", type=float, default=PLANS["full"].lr)
    ap.add_argument("--warmup-ratio", type=float, default=PLANS["full"].warmup_ratio)
    ap.add_argument("--eval-n", type=int, default=200, help="test scenes (one question per capability each)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (the demo uses 1)")
    ap.add_argument("--workers", type=int, default=None, help="data generation processes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="work folder (default: a temporary folder)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from sparkle_vlm.eval.runner import EvalConfig, run_eval
    from sparkle_vlm.models.embedded import MARKER, build_embedded_model
    from sparkle_vlm.train.sft import train_sft

    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="sparkle-embedded-"))
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    data = work / "data"
    n_records = _generate("instruct", args.instruct_images, args.seed, data / "instruct", args.workers)
    n_records += _generate("basic-train", args.practice_images, args.seed, data / "basic-train", args.workers)
    times["generate_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    model_dir = build_embedded_model(args.size, work / "model-untrained", seed=args.seed)
    times["build_s"] = time.perf_counter() - t
    params = json.loads((model_dir / MARKER).read_text())["parameters"]

    tower: dict[str, Any] = {}
    if args.tower_steps:
        from sparkle_vlm.train.tower import TowerTrainConfig, pretrain_tower

        t = time.perf_counter()
        info = pretrain_tower(
            TowerTrainConfig(
                model=str(model_dir),
                data=[str(data / "instruct"), str(data / "basic-train")],
                out=str(work / "model-tower"),
                steps=args.tower_steps,
                code_steps=args.code_steps,
                batch_size=args.batch_size,
                seed=args.seed,
                lookup_samples=args.lookup_samples,
                readout_samples=args.readout_samples,
            ),
            log=lambda msg: None,
        )
        times["tower_s"] = time.perf_counter() - t
        tower = {
            "steps": args.tower_steps,
            "dense": info["dense"],
            "code": info["code"],
            "lookup": info["lookup"],
        }
        model_dir = work / "model-tower"

    frozen = bool(args.tower_steps)
    plan = replace(PLANS["full"], batch_size=args.batch_size, warmup_ratio=args.warmup_ratio)

    def part(start: Path, folders: list[str], out: str, steps: int, lr: float, **extra: Any) -> Any:
        """One SFT part with the demo's settings (``sparkle_vlm.demo.sft_config``)."""
        return sft_config(
            str(start),
            [data / f for f in folders],
            work / out,
            steps,
            lr,
            plan,
            freeze=frozen,
            rationale=not args.direct_answers,
            seed=args.seed,
            **extra,
        )

    if args.practice_steps:  # the demo's first SFT part: the practice MCQ alone
        t = time.perf_counter()
        practice = part(model_dir, ["basic-train"], "model-practice", args.practice_steps, args.practice_lr)
        train_sft(practice, log=lambda msg: None)
        times["practice_s"] = time.perf_counter() - t
        model_dir = work / "model-practice"

    sft = part(
        model_dir,
        ["instruct", "basic-train"],
        "model-trained",
        args.steps,
        args.lr,
        tasks=None if args.descriptions else ["direction", "distance", "localization"],
    )
    t = time.perf_counter()
    res = train_sft(sft, log=lambda msg: None)
    times["train_s"] = time.perf_counter() - t

    t = time.perf_counter()
    summary = run_eval(
        EvalConfig(
            model=f"hf:{work / 'model-trained'}",
            suite="basic",
            out=work / "eval-trained",
            n=args.eval_n,
            batch_size=32,
            max_new_tokens=40,  # a rationale answer is ~20 tokens
            data_dir=data / "eval",
            workers=args.workers,
        ),
        progress=False,
    )
    times["eval_s"] = time.perf_counter() - t
    times["total_s"] = time.perf_counter() - t0

    tasks: dict[str, Any] = (summary.get("parts") or {}).get("basic", {}).get("tasks", {})
    accuracy = {k: round(float(tasks[k]["accuracy"]), 4) for k in CHANCE if k in tasks}
    print(
        json.dumps(
            {
                "benchmark": "embedded_learning",
                "size": args.size,
                "parameters": params,
                "accuracy": accuracy,
                "chance": {k: round(v, 4) for k, v in CHANCE.items()},
                "goal": 0.8,
                "n_test_per_capability": {k: int(tasks[k]["n"]) for k in CHANCE if k in tasks},
                "train_records": n_records,
                "tower": tower,
                "sft": {
                    "practice_steps": args.practice_steps,
                    "practice_learning_rate": args.practice_lr,
                    "max_steps": args.steps,
                    "per_device_train_batch_size": args.batch_size,
                    "learning_rate": args.lr,
                    "warmup_steps": args.warmup_ratio,
                    "lr_scheduler_type": sft.lr_scheduler,
                    "weight_decay": sft.weight_decay,
                    "max_grad_norm": sft.max_grad_norm,
                    "completion_only_loss": True,
                    "final_train_loss": res.train_loss,
                },
                "steps_per_s": round(args.steps / times["train_s"], 3),
                **{k: round(v, 1) for k, v in times.items()},
                "threads": args.threads,
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
                "work": str(work),
            }
        )
    )


if __name__ == "__main__":
    main()

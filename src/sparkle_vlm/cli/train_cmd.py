"""``sparkle train sft|grpo|configs``: fine-tune a VLM on Sparkle data with TRL (+ PEFT LoRA).

Options come from the dataclass defaults, then ``--config`` (a shipped name or a YAML path), then
the flags below, then ``--set key=value`` for any other config field. Multi-GPU::

    accelerate launch --num_processes 8 -m sparkle_vlm.cli.main train sft --config qwen2-vl-7b \\
        --data data/instruct --out runs/sft --deepspeed zero2
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from sparkle_vlm.cli.eval_cmd import parse_options

train_app = typer.Typer(
    help="Fine-tune a VLM on Sparkle data (TRL SFT or GRPO, LoRA or full).", no_args_is_help=True
)


def _common_overrides(
    model: str | None,
    data: list[Path],
    out: Path | None,
    lora: bool | None,
    lora_r: int | None,
    lora_alpha: int | None,
    lora_dropout: float | None,
    lora_targets: str | None,
    epochs: float | None,
    max_steps: int | None,
    lr: float | None,
    batch_size: int | None,
    grad_accum: int | None,
    min_pixels: int | None,
    max_pixels: int | None,
    max_tokens: int | None,
    max_samples: int | None,
    merge: bool | None,
    trust_remote_code: bool | None,
    resume: bool | None,
    seed: int | None,
    save_steps: int | None,
    deepspeed: str | None,
    set_: list[str],
    freeze_vision: bool | None,
    freeze_projector: bool | None = None,
    freeze_embeddings: bool | None = None,
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "model": model,
        "data": [str(d) for d in data] or None,
        "out": str(out) if out else None,
        "lora": lora,
        "lora_r": lora_r,
        "lora_alpha": lora_alpha,
        "lora_dropout": lora_dropout,
        "lora_targets": lora_targets,
        "epochs": epochs,
        "max_steps": max_steps,
        "lr": lr,
        "batch_size": batch_size,
        "grad_accum": grad_accum,
        "min_pixels": min_pixels,
        "max_pixels": max_pixels,
        "max_tokens": max_tokens,
        "max_samples": max_samples,
        "merge": merge,
        "trust_remote_code": trust_remote_code,
        "resume": resume,
        "seed": seed,
        "save_steps": save_steps,
        "deepspeed": deepspeed,
        "freeze_vision": freeze_vision,
        "freeze_projector": freeze_projector,
        "freeze_embeddings": freeze_embeddings,
    }
    values.update(parse_options(set_, "--set"))
    return values


def _report(res: Any, method: str) -> None:
    if res.already_complete:
        typer.echo(f"{res.out}: already complete ({res.global_step} steps)")
        return
    loss = f", train loss {res.train_loss:.4f}" if res.train_loss is not None else ""
    resumed = f", resumed from {res.resumed_from}" if res.resumed_from else ""
    dropped = f", {res.dropped_long} dropped as too long" if res.dropped_long else ""
    merged = f"; merged model in {res.merged}" if res.merged else ""
    typer.echo(
        f"{res.out}: {method} done, {res.global_step} steps on {res.samples} samples{dropped}{loss}"
        f"{resumed}{merged}"
    )


# Flags shared by both methods, declared once as typer options.
MODEL = typer.Option(None, "--model", help="Base model: Hugging Face id or local folder.")
DATA = typer.Option([], "--data", help="Dataset folder from `sparkle generate` (repeatable).")
OUT = typer.Option(None, "--out", help="Output folder (checkpoints, adapter, processor, sparkle_train.json).")
CONFIG = typer.Option(
    None, "--config", help="Shipped config name (see `sparkle train configs`) or YAML path."
)
LORA = typer.Option(None, "--lora/--full", help="LoRA on the language model (default) or full fine-tuning.")
LORA_R = typer.Option(None, "--lora-r", help="LoRA rank (default 16).")
LORA_ALPHA = typer.Option(None, "--lora-alpha", help="LoRA alpha (default 32).")
LORA_DROPOUT = typer.Option(None, "--lora-dropout", help="LoRA dropout (default 0.05).")
LORA_TARGETS = typer.Option(
    None,
    "--lora-targets",
    help="Regex full-matched against module names (default: the language model's linear layers).",
)
EPOCHS = typer.Option(None, "--epochs", help="Training epochs (default 1).")
MAX_STEPS = typer.Option(
    None, "--max-steps", help="Stop after this many optimizer steps (overrides --epochs)."
)
LR = typer.Option(None, "--lr", help="Learning rate.")
BATCH = typer.Option(None, "--batch-size", help="Per-device batch size.")
ACCUM = typer.Option(None, "--grad-accum", help="Gradient accumulation steps.")
MIN_PIXELS = typer.Option(None, "--min-pixels", help="Qwen-style processors: minimum image pixels.")
MAX_PIXELS = typer.Option(None, "--max-pixels", help="Qwen-style processors: maximum image pixels.")
MAX_TOKENS = typer.Option(None, "--max-tokens", help="Drop samples longer than this (text + image tokens).")
MAX_SAMPLES = typer.Option(None, "--max-samples", help="Use only the first N shuffled records.")
FREEZE_VISION = typer.Option(
    None, "--freeze-vision", help="Full fine-tuning: keep the vision tower fixed (projector and LM learn)."
)
FREEZE_PROJECTOR = typer.Option(
    None, "--freeze-projector", help="Full fine-tuning: keep the projector fixed (e.g. after `train tower`)."
)
FREEZE_EMBEDDINGS = typer.Option(
    None,
    "--freeze-embeddings",
    help="Full fine-tuning: keep the token embeddings (and a tied output head) fixed.",
)
RATIONALE = typer.Option(
    None,
    "--rationale",
    help="Answers first write the cells of the objects they name (' N2 18, N1 85. \\boxed{H}'), "
    "computed from the scene records.",
)
MERGE = typer.Option(None, "--merge", help="Also write the base model with the adapter merged to OUT/merged.")
TRUST = typer.Option(
    None, "--trust-remote-code", help="Run code shipped with the model (only if you trust it)."
)
RESUME = typer.Option(
    None, "--resume/--no-resume", help="Continue from the newest checkpoint in --out (default on)."
)
SEED = typer.Option(None, "--seed", help="Seed of data order, LoRA init and dropout.")
SAVE_STEPS = typer.Option(None, "--save-steps", help="Checkpoint every N steps (resume points).")
DEEPSPEED = typer.Option(None, "--deepspeed", help="DeepSpeed JSON path, or 'zero2' for the shipped config.")
SET = typer.Option([], "--set", help="Any config field as key=value (repeatable).")
PRINT = typer.Option(False, "--print-config", help="Print the resolved config as JSON and exit.")


@train_app.command("sft")
def sft(
    model: str | None = MODEL,
    data: list[Path] = DATA,
    out: Path | None = OUT,
    config: str | None = CONFIG,
    lora: bool | None = LORA,
    lora_r: int | None = LORA_R,
    lora_alpha: int | None = LORA_ALPHA,
    lora_dropout: float | None = LORA_DROPOUT,
    lora_targets: str | None = LORA_TARGETS,
    epochs: float | None = EPOCHS,
    max_steps: int | None = MAX_STEPS,
    lr: float | None = LR,
    batch_size: int | None = BATCH,
    grad_accum: int | None = ACCUM,
    min_pixels: int | None = MIN_PIXELS,
    max_pixels: int | None = MAX_PIXELS,
    max_tokens: int | None = MAX_TOKENS,
    max_samples: int | None = MAX_SAMPLES,
    merge: bool | None = MERGE,
    freeze_vision: bool | None = FREEZE_VISION,
    freeze_projector: bool | None = FREEZE_PROJECTOR,
    freeze_embeddings: bool | None = FREEZE_EMBEDDINGS,
    trust_remote_code: bool | None = TRUST,
    resume: bool | None = RESUME,
    seed: int | None = SEED,
    save_steps: int | None = SAVE_STEPS,
    deepspeed: str | None = DEEPSPEED,
    rationale: bool | None = RATIONALE,
    set_: list[str] = SET,
    print_config: bool = PRINT,
) -> None:
    """Supervised fine-tuning; the loss covers the answer tokens only."""
    from sparkle_vlm.train.config import SFTTrainConfig, load_config

    values = _common_overrides(
        model,
        data,
        out,
        lora,
        lora_r,
        lora_alpha,
        lora_dropout,
        lora_targets,
        epochs,
        max_steps,
        lr,
        batch_size,
        grad_accum,
        min_pixels,
        max_pixels,
        max_tokens,
        max_samples,
        merge,
        trust_remote_code,
        resume,
        seed,
        save_steps,
        deepspeed,
        set_,
        freeze_vision,
        freeze_projector,
        freeze_embeddings,
    )
    if rationale is not None:
        values["rationale"] = rationale
    cfg = load_config("sft", config, values)
    if print_config:
        typer.echo(json.dumps(cfg.to_dict(), indent=2))
        return
    from sparkle_vlm.train.sft import train_sft

    assert isinstance(cfg, SFTTrainConfig), "load_config('sft') builds SFT configs"
    _report(train_sft(cfg), "SFT")


@train_app.command("grpo")
def grpo(
    model: str | None = MODEL,
    data: list[Path] = DATA,
    out: Path | None = OUT,
    config: str | None = CONFIG,
    lora: bool | None = LORA,
    lora_r: int | None = LORA_R,
    lora_alpha: int | None = LORA_ALPHA,
    lora_dropout: float | None = LORA_DROPOUT,
    lora_targets: str | None = LORA_TARGETS,
    epochs: float | None = EPOCHS,
    max_steps: int | None = MAX_STEPS,
    lr: float | None = LR,
    batch_size: int | None = BATCH,
    grad_accum: int | None = ACCUM,
    min_pixels: int | None = MIN_PIXELS,
    max_pixels: int | None = MAX_PIXELS,
    max_tokens: int | None = MAX_TOKENS,
    max_samples: int | None = MAX_SAMPLES,
    merge: bool | None = MERGE,
    freeze_vision: bool | None = FREEZE_VISION,
    freeze_projector: bool | None = FREEZE_PROJECTOR,
    freeze_embeddings: bool | None = FREEZE_EMBEDDINGS,
    trust_remote_code: bool | None = TRUST,
    resume: bool | None = RESUME,
    seed: int | None = SEED,
    save_steps: int | None = SAVE_STEPS,
    deepspeed: str | None = DEEPSPEED,
    set_: list[str] = SET,
    print_config: bool = PRINT,
    num_generations: int | None = typer.Option(
        None, "--num-generations", help="Completions per prompt (GRPO group)."
    ),
    max_completion_length: int | None = typer.Option(
        None, "--max-completion-length", help="Completion token budget."
    ),
    temperature: float | None = typer.Option(None, "--temperature", help="Sampling temperature."),
    beta: float | None = typer.Option(None, "--beta", help="KL coefficient (0: no reference model)."),
    format_weight: float | None = typer.Option(
        None, "--format-weight", help="Weight of the format reward (0: off)."
    ),
    curriculum: bool | None = typer.Option(
        None, "--curriculum/--no-curriculum", help="Feed prompts easy -> hard by meta difficulty."
    ),
) -> None:
    """GRPO with rewards from the Sparkle verifiers (graded accuracy + format)."""
    from sparkle_vlm.train.config import GRPOTrainConfig, load_config

    values = _common_overrides(
        model,
        data,
        out,
        lora,
        lora_r,
        lora_alpha,
        lora_dropout,
        lora_targets,
        epochs,
        max_steps,
        lr,
        batch_size,
        grad_accum,
        min_pixels,
        max_pixels,
        max_tokens,
        max_samples,
        merge,
        trust_remote_code,
        resume,
        seed,
        save_steps,
        deepspeed,
        set_,
        freeze_vision,
        freeze_projector,
        freeze_embeddings,
    )
    values.update(
        num_generations=num_generations,
        max_completion_length=max_completion_length,
        temperature=temperature,
        beta=beta,
        format_weight=format_weight,
        curriculum=curriculum,
    )
    cfg = load_config("grpo", config, values)
    if print_config:
        typer.echo(json.dumps(cfg.to_dict(), indent=2))
        return
    from sparkle_vlm.train.grpo import train_grpo

    assert isinstance(cfg, GRPOTrainConfig), "load_config('grpo') builds GRPO configs"
    _report(train_grpo(cfg), "GRPO")


@train_app.command("tower")
def tower(
    model: str = typer.Option(..., "--model", help="Model folder whose vision tower returns a token grid."),
    data: list[Path] = typer.Option(
        ..., "--data", help="Dataset folder from `sparkle generate` (repeatable)."
    ),
    out: Path = typer.Option(..., "--out", help="Output model folder."),
    steps: int = typer.Option(2500, "--steps", help="Dense pretraining steps (tower + per-token head)."),
    code_steps: int = typer.Option(600, "--code-steps", help="Projector code steps (tower fixed)."),
    lr: float = typer.Option(1e-3, "--lr", help="Learning rate of both stages."),
    batch_size: int = typer.Option(16, "--batch-size", help="Images per step."),
    held_out: int = typer.Option(200, "--held-out", help="Images kept out to measure the accuracies."),
    seed: int = typer.Option(0, "--seed", help="Seed of the batches and the held-out split."),
    device: str = typer.Option("auto", "--device", help="auto (cuda when available), cpu, cuda or cuda:N."),
    lookup_samples: int = typer.Option(
        96, "--lookup-samples", help="Rationale answers the decoder's lookup heads are fitted on (0: none)."
    ),
    readout_samples: int = typer.Option(
        4500,
        "--readout-samples",
        help="Multiple-choice rationale answers the letter readout is fitted on (0: none; needs the heads).",
    ),
) -> None:
    """Teach the vision tower what its tokens hold (targets from the scene records), set the
    projector so a disc's token carries its label, region and cell, and give the decoder the two
    heads that look a named disc's cell up, write the cells as numbers and read the letter off
    them; continue with `sparkle train sft --full
    --freeze-vision`. Re-running after a crash resumes."""
    from sparkle_vlm.train.tower import TowerTrainConfig, pretrain_tower

    cfg = TowerTrainConfig(
        model=model,
        data=[str(d) for d in data],
        out=str(out),
        steps=steps,
        code_steps=code_steps,
        lr=lr,
        batch_size=batch_size,
        held_out=held_out,
        seed=seed,
        device=device,
        lookup_samples=lookup_samples,
        readout_samples=readout_samples,
    )
    info = pretrain_tower(cfg)
    dense, code, lookup = info["dense"], info["code"], info.get("lookup") or {}
    heads = ""
    if lookup.get("x_digit_accuracy") is not None:
        heads = (
            f"; lookup heads read the x / y digit of {100 * lookup['x_digit_accuracy']:.1f} / "
            f"{100 * lookup['y_digit_accuracy']:.1f} % of held-out answers before SFT"
        )
    if lookup.get("label_copy") and lookup.get("label_accuracy") is not None:
        heads += f"; the label copy names {100 * lookup['label_accuracy']:.1f} % of answer labels"
    readout = lookup.get("readout") or {}
    if readout.get("letter_accuracy") is not None:
        heads += f"; the letter readout names {100 * readout['letter_accuracy']:.1f} % of held-out letters"
    typer.echo(
        f"{out}: tower pretrained in {info['seconds']:.0f} s; held-out disc labels "
        f"{100 * dense['disc_label_accuracy']:.1f} %, regions {100 * dense['disc_region_accuracy']:.1f} %; "
        f"code relative error {code['relative_error']:.3f}{heads}"
    )


@train_app.command("configs")
def configs() -> None:
    """List the shipped training configs (name, method, model)."""
    from sparkle_vlm.train.config import read_yaml, shipped_configs

    for name, path in shipped_configs().items():
        values = read_yaml(path)
        typer.echo(f"{name:28s} {values.get('method', '?'):5s} {values.get('model', '')}")


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")

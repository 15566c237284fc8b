"""GRPO for VLMs with TRL's ``GRPOTrainer`` and verifiable rewards from the Sparkle verifiers.

One GPU::

    sparkle train grpo --config qwen2-vl-2b-grpo --data data/spp-train data/tsp-train --out runs/grpo

Several GPUs::

    accelerate launch --num_processes 8 -m sparkle_vlm.cli.main train grpo \\
        --config qwen2-vl-2b-grpo --data data/spp-train --out runs/grpo --deepspeed zero2

Prompts stay conversational (TRL applies the chat template and inserts the images); each row
carries the canonical record as JSON, which :mod:`sparkle_vlm.train.rewards` scores with the same
``score`` as evaluation. ``curriculum: true`` feeds prompts easy -> hard (by ``meta.difficulty``)
instead of shuffling. Output layout and resumption are the same as SFT's.
"""

from __future__ import annotations

from typing import Any

from sparkle_vlm.errors import ConfigError, SparkleError
from sparkle_vlm.train import common
from sparkle_vlm.train import data as D
from sparkle_vlm.train.config import GRPOTrainConfig
from sparkle_vlm.train.rewards import reward_functions


def train_grpo(
    cfg: GRPOTrainConfig, *, callbacks: list[Any] | None = None, log: common.Log = common.stderr_log
) -> common.TrainResult:
    """Run (or resume, or skip when already finished) one GRPO run described by ``cfg``."""
    cfg.validate()
    out, done = common.check_out(cfg)
    records, sources = D.load_records(cfg.data)
    if done is not None:
        if done.get("data_sha256") == D.data_hash(sources):
            log(f"{out}: already trained ({done['train'].get('global_step')} steps); nothing to do")
            return common.result_from(done, out)
        raise SparkleError(f"--out: {out} holds a finished run trained on other data; choose another folder")

    if cfg.curriculum:
        records = D.curriculum(records, cfg.seed)
    elif cfg.shuffle:
        records = D.shuffled(records, cfg.seed)
    if cfg.max_samples is not None:
        records = records[: cfg.max_samples]
    rows = D.grpo_rows(records)

    rt = common.runtime_for(cfg)
    processor = common.load_processor(cfg)
    # Generation needs left padding; the prompt must leave room for the sampled completion.
    processor.tokenizer.padding_side = "left"
    lengths = D.measure_lengths(processor, rows)
    rows, dropped = D.drop_long(rows, lengths, cfg.max_tokens, reserve=cfg.max_completion_length)
    if dropped:
        log(
            f"dropped {len(dropped)} of {len(lengths)} prompts longer than max_tokens={cfg.max_tokens} "
            f"- max_completion_length={cfg.max_completion_length} (first: {dropped[0]})"
        )
    if not rows:
        raise ConfigError(
            "max_tokens",
            f"no prompt fits {cfg.max_tokens} tokens with "
            f"{cfg.max_completion_length} completion tokens; raise it or lower max_pixels",
        )

    model, peft_config, lora_info = common.model_with_lora(cfg, rt, log)

    from trl import GRPOConfig, GRPOTrainer

    funcs, weights = reward_functions(cfg.format_weight)
    extra: dict[str, Any] = {}
    if cfg.loss_type is not None:
        extra["loss_type"] = cfg.loss_type
    if cfg.use_vllm:
        extra.update(use_vllm=True, vllm_mode="colocate")
    args = GRPOConfig(
        **common.trainer_args(cfg, rt, out),
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        beta=cfg.beta,
        reward_weights=weights,
        shuffle_dataset=not cfg.curriculum and cfg.shuffle,
        log_completions=cfg.log_completions,
        **extra,
    )
    dataset = D.to_dataset(rows)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=list(funcs),  # type: ignore[arg-type]
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=peft_config,
        callbacks=callbacks,
    )

    ckpt = common.latest_checkpoint(out) if cfg.resume else None
    resumed_from = ckpt.name if ckpt else None
    if ckpt is not None:
        log(f"resuming from {ckpt.name}")
    result = trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)

    rewards = [h for h in trainer.state.log_history if "reward" in h]
    info = {
        "data": [s.to_dict() for s in sources],
        "data_sha256": D.data_hash(sources),
        "samples": {
            "records": len(records),
            "used": len(rows),
            "dropped_long": len(dropped),
            "max_tokens": cfg.max_tokens,
            "length": D.length_stats(lengths),
        },
        "rewards": {
            "functions": [f.__name__ for f in funcs],
            "weights": weights,
            "first": rewards[0].get("reward") if rewards else None,
            "last": rewards[-1].get("reward") if rewards else None,
        },
        "curriculum": cfg.curriculum,
        "lora_targets": lora_info,
        "resumed_from": resumed_from,
        **common.run_info(trainer, result, rt),
    }
    merged = common.finish(trainer, processor, cfg, out, info, log)
    return common.TrainResult(
        out=out,
        resumed_from=resumed_from,
        global_step=trainer.state.global_step,
        train_loss=result.training_loss,
        samples=len(rows),
        dropped_long=len(dropped),
        merged=merged,
        info=info,
    )

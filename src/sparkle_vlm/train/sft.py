"""Supervised fine-tuning of a VLM on Sparkle records with TRL's ``SFTTrainer`` (LoRA or full).

One GPU::

    sparkle train sft --config qwen2-vl-7b --data data/instruct --out runs/qwen2vl-sft

Several GPUs (DeepSpeed ZeRO-2, config shipped with the package)::

    accelerate launch --num_processes 8 -m sparkle_vlm.cli.main train sft \\
        --config qwen2-vl-7b --data data/instruct --out runs/qwen2vl-sft --deepspeed zero2

The recipe, top to bottom: read records -> prompt/completion rows (loss on answers only) ->
seeded shuffle -> drop samples longer than ``max_tokens`` (never truncate image tokens) -> load
processor (pixel bounds) and model (bf16 on CUDA, float32 on CPU; safetensors only) -> LoRA on
the language model's linear layers -> collate one batch as a preflight -> train, resuming from the
newest checkpoint -> save adapter/model + processor (+ merged model) -> ``sparkle_train.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparkle_vlm.errors import ConfigError, SparkleError
from sparkle_vlm.train import common
from sparkle_vlm.train import data as D
from sparkle_vlm.train.config import SFTTrainConfig


@dataclass
class SFTSetup:
    """Everything built before training starts (exposed so tests can inspect batches)."""

    out: Path
    trainer: Any
    processor: Any
    dataset: Any
    rows: list[dict[str, Any]]
    dropped: list[str]
    lengths: list[int]
    records: int
    sources: list[D.Source]
    runtime: common.Runtime
    lora_info: dict[str, Any] = field(default_factory=dict)
    batch_info: dict[str, int] = field(default_factory=dict)


def prepare_sft(
    cfg: SFTTrainConfig, *, callbacks: list[Any] | None = None, log: common.Log = common.stderr_log
) -> SFTSetup:
    """Load data, processor and model, and build the ``SFTTrainer`` (no training yet)."""
    cfg.validate()
    from sparkle_vlm.fsutil import check_writable_dir

    out = check_writable_dir(cfg.out)
    records, sources = D.load_records(cfg.data)
    if cfg.tasks is not None:
        records = [r for r in records if r.get("task") in cfg.tasks]
        if not records:
            raise ConfigError("tasks", f"no record of {cfg.tasks} in --data")
    if cfg.rationale:
        from sparkle_vlm.train.rationale import with_rationale

        records = [with_rationale(r) for r in records]
    rows = D.sft_rows(records)
    if cfg.shuffle:
        rows = D.shuffled(rows, cfg.seed)
    if cfg.max_samples is not None:
        rows = rows[: cfg.max_samples]

    rt = common.runtime_for(cfg)
    processor = common.load_processor(cfg)
    lengths = D.measure_lengths(processor, rows)
    rows, dropped = D.drop_long(rows, lengths, cfg.max_tokens)
    if dropped:
        log(
            f"dropped {len(dropped)} of {len(lengths)} samples longer than max_tokens={cfg.max_tokens} "
            f"(first: {dropped[0]})"
        )
    if not rows:
        raise ConfigError(
            "max_tokens",
            f"every sample is longer than {cfg.max_tokens} tokens "
            f"(shortest: {min(lengths)}); raise it or lower max_pixels",
        )

    model, peft_config, lora_info = common.model_with_lora(cfg, rt, log)

    from trl import SFTConfig

    from sparkle_vlm.train.trainer import SparkleSFTTrainer

    args = SFTConfig(
        **common.trainer_args(cfg, rt, out),
        max_length=None,  # truncation would cut image tokens; long samples were dropped above
        completion_only_loss=True,
        shuffle_dataset=False,  # rows are already in a seeded order
    )
    dataset = D.to_dataset(rows)
    trainer = SparkleSFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    batch_info = common.preflight(trainer.data_collator, [dataset[0]], cfg.model)
    return SFTSetup(
        out,
        trainer,
        processor,
        dataset,
        rows,
        dropped,
        lengths,
        len(records),
        sources,
        rt,
        lora_info,
        batch_info,
    )


def train_sft(
    cfg: SFTTrainConfig, *, callbacks: list[Any] | None = None, log: common.Log = common.stderr_log
) -> common.TrainResult:
    """Run (or resume, or skip when already finished) one SFT run described by ``cfg``."""
    cfg.validate()
    out, done = common.check_out(cfg)
    if done is not None:
        _, sources = D.load_records(cfg.data)
        if done.get("data_sha256") == D.data_hash(sources):
            log(f"{out}: already trained ({done['train'].get('global_step')} steps); nothing to do")
            return common.result_from(done, out)
        raise SparkleError(f"--out: {out} holds a finished run trained on other data; choose another folder")

    setup = prepare_sft(cfg, callbacks=callbacks, log=log)
    trainer = setup.trainer
    ckpt = common.latest_checkpoint(out) if cfg.resume else None
    resumed_from = ckpt.name if ckpt else None
    if ckpt is not None:
        log(f"resuming from {ckpt.name}")
    result = trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)

    rt = setup.runtime
    info = {
        "data": [s.to_dict() for s in setup.sources],
        "data_sha256": D.data_hash(setup.sources),
        "samples": {
            "records": setup.records,
            "used": len(setup.rows),
            "dropped_long": len(setup.dropped),
            "max_tokens": cfg.max_tokens,
            "length": D.length_stats(setup.lengths),
        },
        "lora_targets": setup.lora_info,
        "preflight": setup.batch_info,
        "resumed_from": resumed_from,
        **common.run_info(trainer, result, rt),
    }
    merged = common.finish(trainer, setup.processor, cfg, out, info, log)
    return common.TrainResult(
        out=out,
        resumed_from=resumed_from,
        global_step=trainer.state.global_step,
        train_loss=result.training_loss,
        samples=len(setup.rows),
        dropped_long=len(setup.dropped),
        merged=merged,
        info=info,
    )

"""What SFT and GRPO share: device settings, model loading, LoRA targets, checkpoints, the run record.

The output folder of a run holds, when training finished:

- the adapter (``adapter_model.safetensors`` + ``adapter_config.json``) or, for full fine-tuning,
  the model (``model*.safetensors`` + ``config.json``);
- the processor (tokenizer, chat template, image processor);
- ``merged/`` (with ``--merge``): the base model with the adapter folded in, plus the processor;
- ``sparkle_train.json``: config, data hashes, drop counts, metrics and software versions. It is
  written last, atomically, and marks the run complete.

``checkpoint-N/`` folders are kept while training so that a crashed run resumes from the newest.
"""

from __future__ import annotations

import contextlib
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparkle_vlm import __version__
from sparkle_vlm.errors import ConfigError, SparkleError
from sparkle_vlm.fsutil import atomic_write_json
from sparkle_vlm.train.config import DEFAULT_LORA_TARGETS, PROJECTOR_MARKERS, VISION_MARKERS, TrainConfig

RUN_FILE = "sparkle_train.json"
MERGED_DIR = "merged"

Log = Callable[[str], None]


def _first_line(exc: BaseException) -> str:
    """Library errors often span lines; CLI errors are one line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class TrainResult:
    """What a training call produced."""

    out: Path
    already_complete: bool = False
    resumed_from: str | None = None
    global_step: int = 0
    train_loss: float | None = None
    samples: int = 0
    dropped_long: int = 0
    merged: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Runtime:
    """Device decisions: bf16 and gradient checkpointing on CUDA, float32 on CPU."""

    cuda: bool
    bf16: bool
    gradient_checkpointing: bool
    fp32_weights: bool = False  # bf16 autocast over float32 weights

    @property
    def dtype(self) -> Any:
        """The dtype the weights are loaded in."""
        import torch

        return torch.bfloat16 if self.bf16 and not self.fp32_weights else torch.float32


def runtime_for(cfg: TrainConfig) -> Runtime:
    import torch

    cuda = torch.cuda.is_available()
    if cfg.bf16 and not cuda:
        raise ConfigError("bf16", "needs a CUDA GPU (training on CPU runs in float32)")
    bf16 = cfg.bf16 if cfg.bf16 is not None else cuda and torch.cuda.is_bf16_supported()
    gc = cfg.gradient_checkpointing if cfg.gradient_checkpointing is not None else cuda
    return Runtime(
        cuda=cuda,
        bf16=bool(bf16),
        gradient_checkpointing=bool(gc),
        fp32_weights=bool(bf16 and cfg.fp32_weights),
    )


def check_out(cfg: TrainConfig) -> tuple[Path, dict[str, Any] | None]:
    """The output folder, and the finished run it already holds (same fingerprint) or None.

    A finished run with another fingerprint is an error: it would be silently overwritten.
    """
    from sparkle_vlm.fsutil import check_writable_dir

    out = check_writable_dir(cfg.out)
    run_p = out / RUN_FILE
    if run_p.exists():
        import json

        done = json.loads(run_p.read_text())
        if done.get("fingerprint") == cfg.fingerprint() and done.get("data_sha256"):
            return out, done
        raise SparkleError(
            f"--out: {out} holds a finished {done.get('method')} run with other settings; "
            "choose another folder"
        )
    return out, None


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete ``checkpoint-N`` folder (one with ``trainer_state.json``)."""
    best: tuple[int, Path] | None = None
    for p in out.glob("checkpoint-*"):
        m = re.fullmatch(r"checkpoint-(\d+)", p.name)
        if m and p.is_dir() and (p / "trainer_state.json").is_file():
            step = int(m.group(1))
            if best is None or step > best[0]:
                best = (step, p)
    return best[1] if best else None


#: Image processors whose ``size`` edges are pixel counts (Qwen2.5-VL and Qwen3-VL reuse Qwen2-VL's).
PIXEL_BOUNDED = ("Qwen2VLImageProcessor", "Glm4vImageProcessor")


def apply_image_bounds(processor: Any, min_pixels: int | None, max_pixels: int | None) -> dict[str, int]:
    """Bound the pixels (hence image tokens) of Qwen-style processors; returns the bounds in force.

    Qwen2-VL / Qwen2.5-VL / Qwen3-VL / GLM-4.1V image processors resize every image to between
    ``min_pixels`` and ``max_pixels`` (Qwen2-VL: one token per 28 x 28 px). Other families have a
    fixed or tiled image size set by their own processor options; for them these bounds are an
    error rather than silently ignored.
    """
    if min_pixels is None and max_pixels is None:
        return {}
    ip = getattr(processor, "image_processor", None)
    mro = [c.__name__ for c in type(ip).__mro__]
    if ip is None or not any(name.startswith(PIXEL_BOUNDED) for name in mro):
        raise ConfigError(
            "max_pixels",
            f"only Qwen-style processors take pixel bounds; {mro[0]} sets its "
            "image size with its own options (see docs/training.md)",
        )
    size = dict(ip.size)
    if min_pixels is not None:
        size["shortest_edge"] = min_pixels
    if max_pixels is not None:
        size["longest_edge"] = max_pixels
    ip.size = type(ip.size)(**size) if not isinstance(ip.size, dict) else size
    return {"min_pixels": int(size["shortest_edge"]), "max_pixels": int(size["longest_edge"])}


def load_processor(cfg: TrainConfig) -> Any:
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(
            cfg.model, trust_remote_code=cfg.trust_remote_code, **(cfg.processor_kwargs or {})
        )
    except OSError as exc:
        raise SparkleError(
            f"--model: cannot load a processor from {cfg.model!r}: {_first_line(exc)}"
        ) from None
    except ValueError as exc:
        if "trust_remote_code" in str(exc) and not cfg.trust_remote_code:
            raise SparkleError(
                f"--model: {cfg.model} ships its own code; pass --trust-remote-code "
                "if you trust it (see docs/training.md)"
            ) from None
        raise SparkleError(
            f"--model: cannot load a processor from {cfg.model!r}: {_first_line(exc)}"
        ) from None
    if getattr(processor, "image_processor", None) is None:
        raise SparkleError(
            f"--model: {cfg.model} has no image processor (AutoProcessor gave "
            f"{type(processor).__name__}); sparkle train needs a transformers multimodal "
            "processor. See docs/training.md for remote-code models (ms-swift route)"
        )
    tokenizer = processor.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    apply_image_bounds(processor, cfg.min_pixels, cfg.max_pixels)
    return processor


def load_model(cfg: TrainConfig, rt: Runtime) -> Any:
    """The model in training dtype, weights from safetensors only."""
    from transformers import AutoModelForImageTextToText

    kwargs: dict[str, Any] = {
        "dtype": rt.dtype,
        "trust_remote_code": cfg.trust_remote_code,
        "use_safetensors": True,
    }
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    try:
        return AutoModelForImageTextToText.from_pretrained(cfg.model, **kwargs)
    except ValueError as exc:
        # Remote-code VLMs often register only AutoModel/AutoModelForCausalLM in their auto_map.
        if not cfg.trust_remote_code:
            if "trust_remote_code" in str(exc):
                raise SparkleError(
                    f"--model: {cfg.model} ships its own code; pass --trust-remote-code if you trust it"
                ) from None
            raise SparkleError(
                f"--model: {cfg.model} is not an image-text-to-text model transformers knows: {_first_line(exc)}"
            ) from None
        from transformers import AutoModelForCausalLM

        try:
            return AutoModelForCausalLM.from_pretrained(cfg.model, **kwargs)
        except ValueError as exc2:
            raise SparkleError(f"--model: cannot load {cfg.model}: {_first_line(exc2)}") from None
    except OSError as exc:
        raise SparkleError(f"--model: cannot load weights from {cfg.model!r}: {_first_line(exc)}") from None


def lora_modules(model: Any, cfg: TrainConfig) -> tuple[str, list[str]]:
    """(target regex, names of the linear layers it selects); errors when it selects none.

    With the default targets, a match inside a vision tower or projector is an error: the
    adapter would then be unusable by vLLM and would change image features.
    """
    import torch

    pattern = cfg.lora_targets or DEFAULT_LORA_TARGETS
    rx = re.compile(pattern)
    linear = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    hits = [n for n in linear if rx.fullmatch(n)]
    if not hits:
        sample = ", ".join(linear[:: max(1, len(linear) // 6)][:6])
        raise ConfigError(
            "lora_targets", f"matched no linear layer of {cfg.model} (names look like: {sample})"
        )
    if cfg.lora_targets is None:
        bad = [n for n in hits if any(mk in n for mk in VISION_MARKERS)]
        if bad:
            raise ConfigError(
                "lora_targets",
                f"default targets would hit vision/projector layers ({bad[0]}); pass --lora-targets",
            )
    return pattern, hits


def run_info(trainer: Any, result: Any, rt: Runtime) -> dict[str, Any]:
    """The ``train`` and ``runtime`` sections of ``sparkle_train.json`` (shared by SFT and GRPO)."""
    return {
        "train": {
            "global_step": trainer.state.global_step,
            "train_loss": result.training_loss,
            **{k: v for k, v in result.metrics.items() if isinstance(v, (int, float))},
        },
        "runtime": {
            "cuda": rt.cuda,
            "bf16": rt.bf16,
            "fp32_weights": rt.fp32_weights,
            "gradient_checkpointing": rt.gradient_checkpointing,
            "world_size": trainer.args.world_size,
        },
    }


def freeze_vision_tower(model: Any) -> int:
    """Fix the vision tower's weights and keep it in eval mode; returns the parameters frozen.

    The tower is every parameter under a vision marker that is not a projector (Qwen2-VL's
    ``visual.merger`` keeps learning). Eval mode matters for towers with BatchNorm or dropout:
    the trainer switches the whole model to train mode every step, which would move the running
    statistics of a tower whose weights are meant to stay put.
    """
    frozen = 0
    for name, param in model.named_parameters():
        if any(mk in name for mk in VISION_MARKERS) and not any(mk in name for mk in PROJECTOR_MARKERS):
            param.requires_grad_(False)
            frozen += param.numel()
    if not frozen:
        raise ConfigError("freeze_vision", f"found no vision-tower parameters in {type(model).__name__}")
    for name, module in model.named_modules():
        dotted = name + "."
        if any(mk in dotted for mk in VISION_MARKERS) and not any(mk in dotted for mk in PROJECTOR_MARKERS):
            # Each tower module switches only itself (not its children: a projector can sit
            # inside the tower, as Qwen2-VL's merger does, and keeps its train mode).
            module.register_forward_pre_hook(lambda mod, _args: setattr(mod, "training", False))
    return frozen


def freeze_projector(model: Any) -> int:
    """Fix the projector between tower and language model; returns the parameters frozen."""
    frozen = 0
    for name, param in model.named_parameters():
        if any(mk in name for mk in PROJECTOR_MARKERS):
            param.requires_grad_(False)
            frozen += param.numel()
    if not frozen:
        raise ConfigError("freeze_projector", f"found no projector parameters in {type(model).__name__}")
    return frozen


#: Bytes of image features :func:`cache_image_features` keeps (then it stops adding entries).
FEATURE_CACHE_BYTES = 1 << 30


def cache_image_features(model: Any, max_bytes: int = FEATURE_CACHE_BYTES) -> bool:
    """Reuse the image features of images seen before; for a frozen tower and projector only.

    With both fixed, an image's features (tower, then projector) are the same every epoch, and
    on a CPU the tower's forward pass was a fifth of an SFT step of the embedded model (0.083 of
    0.38 s). Images are keyed by a hash of their pixel values, so anything that changes the
    pixels (another processor, augmentation) is simply a miss. Installed on models whose inner
    ``get_image_features`` takes a batch ``(B, C, H, W)`` and returns one feature block per
    image (LLaVA-family, FastVLM); other inputs (Qwen2-VL's flattened patches) pass through
    uncached. Returns whether the cache was installed.
    """
    import hashlib

    import torch

    inner: Any = getattr(model, "model", None)
    original = getattr(inner, "get_image_features", None)
    if original is None:
        return False
    cache: dict[bytes, Any] = {}
    held = 0  # bytes in the cache
    layout: tuple[Any, bool] | None = None  # (output class, features stacked?), from the first miss
    known = True  # False once an output layout this cache cannot split has been seen

    def per_image(out: Any, n: int) -> list[Any] | None:
        feats = getattr(out, "pooler_output", None)
        if isinstance(feats, torch.Tensor) and feats.dim() >= 2 and feats.shape[0] == n:
            return list(feats.unbind(0))
        if isinstance(feats, (list, tuple)) and len(feats) == n:
            return list(feats)
        return None

    def cached(pixel_values: Any = None, *args: Any, **kwargs: Any) -> Any:
        nonlocal held, layout, known
        usable = known and isinstance(pixel_values, torch.Tensor) and pixel_values.dim() == 4
        if not usable or pixel_values.device.type != "cpu":  # a GPU tower is cheap; its memory is not
            return original(pixel_values, *args, **kwargs)
        n = pixel_values.shape[0]
        head = f"{tuple(pixel_values.shape[1:])}{pixel_values.dtype}".encode()
        raw = pixel_values.detach().contiguous().view(torch.uint8).numpy()
        keys = [hashlib.blake2b(head + raw[i].tobytes(), digest_size=16).digest() for i in range(n)]
        fresh: dict[bytes, Any] = {}
        missing = [i for i, k in enumerate(keys) if k not in cache]
        if missing:
            out = original(pixel_values[missing], *args, **kwargs)
            feats = per_image(out, len(missing))
            if feats is None:  # a layout this cache cannot split: pass every later call through
                known = False
                return out if len(missing) == n else original(pixel_values, *args, **kwargs)
            layout = type(out), isinstance(out.pooler_output, torch.Tensor)
            for i, f in zip(missing, feats, strict=True):
                fresh[keys[i]] = f = f.detach()
                size = f.numel() * f.element_size()
                if held + size <= max_bytes:
                    cache[keys[i]] = f
                    held += size
        assert layout is not None  # the cache holds entries only after a miss set it
        cls, stack = layout
        got = [cache[k] if k in cache else fresh[k] for k in keys]
        return cls(pooler_output=torch.stack(got) if stack else got)

    inner.get_image_features = cached
    return True


def model_with_lora(cfg: TrainConfig, rt: Runtime, log: Log) -> tuple[Any, Any, dict[str, Any]]:
    """Load the model and, for LoRA runs, the PEFT config of its language-model linear layers."""
    model = load_model(cfg, rt)
    if not cfg.lora:
        if cfg.freeze_vision:
            log(f"vision tower frozen: {freeze_vision_tower(model):,} parameters")
        if cfg.freeze_projector:
            log(f"projector frozen: {freeze_projector(model):,} parameters")
        if cfg.freeze_vision and cfg.freeze_projector and cache_image_features(model):
            log("image features cached per image (tower and projector fixed)")
        if cfg.freeze_embeddings:
            emb = model.get_input_embeddings().weight
            emb.requires_grad_(False)
            log(f"token embeddings frozen: {emb.numel():,} parameters (and the output head, where tied)")
        return model, None, {}
    pattern, hits = lora_modules(model, cfg)
    log(f"LoRA r={cfg.lora_r} alpha={cfg.lora_alpha} on {len(hits)} linear layers")
    return model, peft_config(cfg, pattern), {"targets": pattern, "modules": len(hits)}


def peft_config(cfg: TrainConfig, pattern: str) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=pattern,
        task_type="CAUSAL_LM",
        bias="none",
    )


def trainer_args(cfg: TrainConfig, rt: Runtime, out: Path) -> dict[str, Any]:
    """TrainingArguments fields shared by SFTConfig and GRPOConfig."""
    args: dict[str, Any] = {
        "output_dir": str(out),
        "per_device_train_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "learning_rate": cfg.lr,
        "num_train_epochs": cfg.epochs,
        "max_steps": cfg.max_steps if cfg.max_steps is not None else -1,
        "warmup_steps": cfg.warmup_ratio,  # transformers 5: a float is a ratio of the total steps
        "weight_decay": cfg.weight_decay,
        "lr_scheduler_type": cfg.lr_scheduler,
        "max_grad_norm": cfg.max_grad_norm,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "bf16": rt.bf16,
        "fp16": False,
        "use_cpu": not rt.cuda,
        # transformers 5 renamed gradient_checkpointing; TRL still defaults the old name to True
        "activation_checkpointing": rt.gradient_checkpointing,
        "logging_steps": cfg.logging_steps,
        "save_strategy": "steps",
        "save_steps": cfg.save_steps,
        "save_total_limit": cfg.save_total_limit,
        "save_only_model": False,  # optimizer + RNG state are needed to resume exactly
        "report_to": cfg.report_to,
        "dataloader_num_workers": cfg.dataloader_workers,
        "remove_unused_columns": False,
        "deepspeed": cfg.deepspeed_path(),
    }
    if rt.gradient_checkpointing:
        args["activation_checkpointing_kwargs"] = {"use_reentrant": False}
    return args


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"sparkle_vlm": __version__}
    for pkg in ("torch", "transformers", "trl", "peft", "datasets", "accelerate"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out


def finish(
    trainer: Any, processor: Any, cfg: TrainConfig, out: Path, info: dict[str, Any], log: Log
) -> Path | None:
    """Save the final weights and processor, optionally merge, then write the run record (last)."""
    trainer.save_model(str(out))
    merged_p: Path | None = None
    if trainer.is_world_process_zero():
        processor.save_pretrained(str(out))
        if cfg.merge and cfg.lora:
            merged_p = out / MERGED_DIR
            model = trainer.model
            merged = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
            merged.save_pretrained(str(merged_p), safe_serialization=True)
            processor.save_pretrained(str(merged_p))
            log(f"merged model written to {merged_p}")
        record = {
            **info,
            "method": cfg.method,
            "config": cfg.to_dict(),
            "fingerprint": cfg.fingerprint(),
            "base_model": cfg.model,
            "lora": cfg.lora,
            "merged": MERGED_DIR if merged_p else None,
            "versions": versions(),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        atomic_write_json(out / RUN_FILE, record)
    return merged_p


def preflight(collator: Any, rows: list[Any], model_name: str) -> dict[str, int]:
    """Collate one batch before training: fail early, clearly, if the processor cannot do it.

    Returns token counts of that batch (total, supervised), checking that some tokens carry loss.
    """
    try:
        batch = collator([dict(r) for r in rows])
    except Exception as exc:
        raise SparkleError(
            f"--model: {model_name}: its processor cannot build image+text training batches "
            f"({type(exc).__name__}: {_first_line(exc)})"
        ) from None
    labels = batch["labels"]
    supervised = int((labels != -100).sum())
    if supervised == 0:
        raise SparkleError(
            f"--model: {model_name}: no token of the first batch carries loss (check the chat template)"
        )
    return {"tokens": int(batch["attention_mask"].sum()), "supervised_tokens": supervised}


def result_from(done: dict[str, Any], out: Path) -> TrainResult:
    train = done.get("train", {})
    return TrainResult(
        out=out,
        already_complete=True,
        resumed_from=done.get("resumed_from"),
        global_step=int(train.get("global_step", 0)),
        train_loss=train.get("train_loss"),
        samples=int(done.get("samples", {}).get("used", 0)),
        dropped_long=int(done.get("samples", {}).get("dropped_long", 0)),
        merged=out / MERGED_DIR if done.get("merged") else None,
        info=done,
    )

"""Training configs: plain dataclasses, loaded from YAML with command-line overrides.

A YAML file is a flat mapping of the fields below plus ``method: sft`` or ``method: grpo``; its
header comment gives the exact command that uses it. Precedence: dataclass defaults < YAML <
command-line flags. Unknown keys and wrong types are errors naming the key, so a typo in a
config never silently trains with a default.

Shipped configs live in ``sparkle_vlm/train/configs/``; ``--config NAME`` finds them by name
(``qwen2-vl-7b``) and ``--config path/to/file.yaml`` reads any file.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparkle_vlm.errors import ConfigError, SparkleError

CONFIG_DIR = Path(__file__).parent / "configs"
#: The DeepSpeed ZeRO-2 config shipped next to this module (``deepspeed: zero2`` selects it).
DEEPSPEED_ZERO2 = Path(__file__).parent / "deepspeed_zero2.json"

#: Linear projections of the language models of the supported families (Qwen2/LLaMA/Mistral style,
#: GLM-4.1V's fused gate_up_proj, InternLM2's wqkv/wo/w1-3). Vision towers reuse some of these
#: suffixes, so they are only matched under a language-model prefix.
LM_PROJECTIONS = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "qkv_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
    "gate_up_proj",
    "wqkv",
    "wo",
    "w1",
    "w2",
    "w3",
)
#: Module-name prefixes under which the language model lives (transformers 5 native classes use
#: ``language_model`` / ``text_model``; MiniCPM-V remote code uses ``llm``).
LM_PREFIXES = ("language_model", "text_model", "llm")
#: PEFT full-matches a string ``target_modules`` against module names: LM linear layers only.
DEFAULT_LORA_TARGETS = rf".*\b(?:{'|'.join(LM_PREFIXES)})\..*\.(?:{'|'.join(LM_PROJECTIONS)})"
#: Name fragments of projectors (connectors between a vision tower and the language model).
PROJECTOR_MARKERS = ("multi_modal_projector", "merger", "connector", "resampler", "mlp1.")
#: Name fragments of vision towers and projectors: LoRA with the default targets must not touch them.
VISION_MARKERS = (
    "visual.",
    "vision_tower",
    "vision_model",
    "vpm.",
    "multi_modal_projector",
    "merger",
    "connector",
    "resampler",
    "mlp1.",
    "vision.",
)


@dataclass
class TrainConfig:
    """Options shared by SFT and GRPO.

    ``model`` is a Hugging Face id or a local folder; ``data`` lists dataset folders written by
    ``sparkle generate`` (``data.jsonl`` + ``images/``); ``out`` receives checkpoints, the final
    adapter or model, the processor and ``sparkle_train.json``.
    """

    model: str = ""  # HF id or local folder
    data: list[str] = field(default_factory=list)  # dataset folders (data.jsonl + images/)
    out: str = ""  # output folder
    # LoRA (default) or full fine-tuning
    lora: bool = True
    lora_r: int = 16
    lora_alpha: int = 32  # usually 2 x rank
    lora_dropout: float = 0.05
    lora_targets: str | None = None  # regex full-matched against module names; None: LM linear layers
    # optimisation
    epochs: float = 1.0
    max_steps: int | None = None  # overrides epochs when set
    lr: float = 1e-4
    batch_size: int = 1  # per device
    grad_accum: int = 8
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    lr_scheduler: str = "cosine"
    max_grad_norm: float = 1.0
    # data
    min_pixels: int | None = None  # Qwen-style processors: lower bound on image pixels
    max_pixels: int | None = None  # Qwen-style processors: upper bound on image pixels (bounds image tokens)
    # other families' image-size options, passed to AutoProcessor.from_pretrained, e.g.
    # {do_image_splitting: false} (SmolVLM) or {max_patches: 6} (InternVL)
    processor_kwargs: dict[str, Any] | None = None
    max_tokens: int | None = 4096  # samples longer than this (text + image tokens) are dropped, with a count
    max_samples: int | None = None  # use only the first N records after shuffling (quick runs)
    shuffle: bool = True
    # runtime
    seed: int = 0
    bf16: bool | None = None  # None: on when CUDA supports bf16; always off on CPU
    # with bf16: keep float32 weights and run bf16 autocast (mixed precision) instead of bf16
    # weights; for small models trained from scratch (the embedded model), where bf16 weights
    # round away small updates. Costs twice the weight and optimizer memory.
    fp32_weights: bool = False
    gradient_checkpointing: bool | None = None  # None: on with CUDA, off on CPU
    attn_implementation: str | None = None  # e.g. sdpa, flash_attention_2
    deepspeed: str | None = None  # path to a DeepSpeed JSON, or "zero2" for the shipped one
    dataloader_workers: int = 0
    logging_steps: int = 10
    save_steps: int = 200
    save_total_limit: int | None = 2
    resume: bool = True  # continue from the newest checkpoint-* in out
    merge: bool = False  # also write a merged full model to out/merged (LoRA only)
    # full fine-tuning: keep the vision tower fixed (projector and language model still learn),
    # as LLaVA's second stage and ms-swift's freeze_vit do; the tower also stays in eval mode
    freeze_vision: bool = False
    # full fine-tuning: keep the projector / the token embeddings (and a tied output head) fixed;
    # for a model whose projector was set to speak in its own embeddings (sparkle train tower)
    freeze_projector: bool = False
    freeze_embeddings: bool = False
    trust_remote_code: bool = False  # never on unless asked: runs code downloaded with the model
    report_to: str = "none"  # none, tensorboard, wandb, ...

    method: typing.ClassVar[str] = ""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad field."""
        if not self.model:
            raise ConfigError("model", "required (a Hugging Face id or a local folder)")
        if not self.data:
            raise ConfigError("data", "required (one or more dataset folders)")
        if not self.out:
            raise ConfigError("out", "required (the output folder)")
        positive_ints = ["lora_r", "lora_alpha", "batch_size", "grad_accum", "logging_steps", "save_steps"]
        for name in positive_ints:
            if getattr(self, name) < 1:
                raise ConfigError(name, f"must be at least 1, got {getattr(self, name)}")
        for name in (
            "max_steps",
            "max_tokens",
            "max_samples",
            "save_total_limit",
            "min_pixels",
            "max_pixels",
        ):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(name, f"must be at least 1 (or null), got {value}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError("lora_dropout", f"must be in [0, 1), got {self.lora_dropout}")
        if self.lr <= 0:
            raise ConfigError("lr", f"must be positive, got {self.lr}")
        if self.epochs <= 0 and self.max_steps is None:
            raise ConfigError("epochs", f"must be positive, got {self.epochs}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError("warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}")
        if self.min_pixels is not None and self.max_pixels is not None and self.min_pixels > self.max_pixels:
            raise ConfigError("min_pixels", f"{self.min_pixels} is larger than max_pixels {self.max_pixels}")
        if self.merge and not self.lora:
            raise ConfigError(
                "merge", "only applies to LoRA training (full fine-tuning already saves a full model)"
            )
        if self.freeze_vision and self.lora:
            raise ConfigError(
                "freeze_vision",
                "only applies to full fine-tuning (LoRA already leaves the vision tower alone)",
            )
        for name in ("freeze_projector", "freeze_embeddings"):
            if getattr(self, name) and self.lora:
                raise ConfigError(name, "only applies to full fine-tuning (LoRA leaves it alone anyway)")
        if self.seed < 0:
            raise ConfigError("seed", f"must be non-negative, got {self.seed}")
        if self.dataloader_workers < 0:
            raise ConfigError("dataloader_workers", f"must be non-negative, got {self.dataloader_workers}")
        if self.lora_targets is not None:
            import re

            try:
                re.compile(self.lora_targets)
            except re.error as exc:
                raise ConfigError("lora_targets", f"not a valid regular expression: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, **dataclasses.asdict(self)}

    def fingerprint(self) -> str:
        """A hash of what changes the trained weights (not ``resume``/``merge``/logging knobs)."""
        skip = {"resume", "merge", "logging_steps", "report_to", "dataloader_workers", "save_total_limit"}
        d = {k: v for k, v in self.to_dict().items() if k not in skip}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def deepspeed_path(self) -> str | None:
        if self.deepspeed is None:
            return None
        if self.deepspeed == "zero2":
            return str(DEEPSPEED_ZERO2)
        if not Path(self.deepspeed).is_file():
            raise ConfigError(
                "deepspeed", f"no such file {self.deepspeed!r} (or use 'zero2' for the shipped config)"
            )
        return self.deepspeed


@dataclass
class SFTTrainConfig(TrainConfig):
    """Supervised fine-tuning (loss on the answer tokens only)."""

    # answers start with the cells of the objects they name (" N2 18, N1 85. \\boxed{H}"),
    # computed from the scene records: see sparkle_vlm.train.rationale
    rationale: bool = False
    # train only on records of these tasks (e.g. [direction, distance, localization]); None: all
    tasks: list[str] | None = None

    method: typing.ClassVar[str] = "sft"

    def validate(self) -> None:
        super().validate()
        if self.tasks is not None and (
            not self.tasks or not all(isinstance(t, str) and t for t in self.tasks)
        ):
            raise ConfigError(
                "tasks", f"must be a non-empty list of task names (or null), got {self.tasks!r}"
            )


@dataclass
class GRPOTrainConfig(TrainConfig):
    """GRPO with rewards from the Sparkle verifiers.

    Defaults follow common GRPO practice for VLMs (8 generations per prompt, no KL term,
    a lower learning rate than SFT).
    """

    lr: float = 1e-5
    grad_accum: int = 8
    batch_size: int = 8  # completions per device per step; must be a multiple of num_generations
    num_generations: int = 8  # completions sampled per prompt (the GRPO group)
    max_completion_length: int = 256
    temperature: float = 1.0
    beta: float = 0.0  # KL coefficient; 0 skips loading a reference model
    format_weight: float = 0.1  # weight of the format reward (0: accuracy reward only)
    curriculum: bool = False  # order prompts easy -> hard by meta difficulty instead of shuffling
    loss_type: str | None = None  # TRL loss_type (None: TRL's default)
    use_vllm: bool = False  # generate with vLLM (TRL colocate mode); needs the vllm package
    log_completions: bool = False

    method: typing.ClassVar[str] = "grpo"

    def validate(self) -> None:
        super().validate()
        if self.num_generations < 2:
            raise ConfigError(
                "num_generations", f"must be at least 2 (GRPO compares a group), got {self.num_generations}"
            )
        if (self.batch_size * self.grad_accum) % self.num_generations:
            raise ConfigError(
                "num_generations",
                f"{self.num_generations} must divide batch_size x grad_accum = {self.batch_size * self.grad_accum}",
            )
        if self.max_completion_length < 1:
            raise ConfigError(
                "max_completion_length", f"must be at least 1, got {self.max_completion_length}"
            )
        if self.temperature <= 0:
            raise ConfigError("temperature", f"must be positive, got {self.temperature}")
        if self.beta < 0:
            raise ConfigError("beta", f"must be non-negative, got {self.beta}")
        if self.format_weight < 0:
            raise ConfigError("format_weight", f"must be non-negative, got {self.format_weight}")


CONFIG_CLASSES: dict[str, type[TrainConfig]] = {"sft": SFTTrainConfig, "grpo": GRPOTrainConfig}


def shipped_configs() -> dict[str, Path]:
    """Name -> path of every YAML config shipped with the package."""
    return {p.stem: p for p in sorted(CONFIG_DIR.glob("*.yaml"))}


def resolve_config_path(name_or_path: str) -> Path:
    """A shipped config name (``qwen2-vl-7b``) or a YAML path."""
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    shipped = shipped_configs()
    if name_or_path in shipped:
        return shipped[name_or_path]
    close = difflib.get_close_matches(name_or_path, list(shipped), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; shipped configs: {', '.join(shipped)}"
    raise SparkleError(f"--config: no file or shipped config called {name_or_path!r}{hint}")


def _type_ok(value: Any, annotation: Any) -> bool:
    """Whether a YAML value fits a field annotation (ints are accepted for floats)."""
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if origin is list:
        (inner,) = typing.get_args(annotation)
        return isinstance(value, list) and all(_type_ok(v, inner) for v in value)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    return isinstance(value, annotation)


def _wants_float(annotation: Any) -> bool:
    """Whether a field holds floats (so a YAML ``2`` becomes ``2.0``)."""
    args = typing.get_args(annotation) or (annotation,)
    return float in args and int not in args


def _type_name(annotation: Any) -> str:
    return str(annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")


def build_config(method: str, values: dict[str, Any]) -> TrainConfig:
    """Build a config of ``method`` from a mapping, checking names and types (not yet validated)."""
    if method not in CONFIG_CLASSES:
        raise ConfigError("method", f"must be one of {', '.join(CONFIG_CLASSES)}, got {method!r}")
    cls = CONFIG_CLASSES[method]
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key == "method":
            continue
        if key not in fields:
            close = difflib.get_close_matches(key, sorted(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(key, f"not an option of {method} training{hint}")
        if isinstance(value, str) and typing.get_origin(hints[key]) is list:
            value = [value]
        if isinstance(value, int) and not isinstance(value, bool) and _wants_float(hints[key]):
            value = float(value)
        if not _type_ok(value, hints[key]):
            raise ConfigError(key, f"expected {_type_name(hints[key])}, got {value!r}")
        kwargs[key] = value
    return cls(**kwargs)


def read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SparkleError(
            f"--config: {path} is not valid YAML: {str(exc).splitlines()[0] if str(exc) else exc!r}"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SparkleError(f"--config: {path} must hold a mapping of options, got {type(data).__name__}")
    return data


def load_config(
    method: str, config: str | None = None, overrides: dict[str, Any] | None = None
) -> TrainConfig:
    """Defaults, then the YAML ``config`` (name or path), then ``overrides`` (None values ignored).

    The result is validated. A YAML file made for the other method is an error.
    """
    values: dict[str, Any] = {}
    if config is not None:
        path = resolve_config_path(config)
        values = read_yaml(path)
        declared = values.get("method", method)
        if declared != method:
            raise ConfigError(
                "method", f"{path.name} is a {declared!r} config; use `sparkle train {declared}`"
            )
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    cfg = build_config(method, values)
    cfg.validate()
    return cfg

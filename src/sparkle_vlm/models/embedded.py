"""The embedded default model: a small LLaVA-architecture VLM built from scratch, offline.

Nothing is downloaded: the tokenizer is trained in-process on the vocabulary of the Sparkle
tasks, the image processor and the processor are assembled from their classes, and the weights
are randomly initialised from a fixed seed. The result is an ordinary Hugging Face model folder
(``config.json``, ``model.safetensors``, ``processor_config.json``, ``tokenizer.json``,
``chat_template.jinja``, ...) that ``AutoModelForImageTextToText.from_pretrained`` and
``AutoProcessor.from_pretrained`` load, so the ``hf`` evaluation backend and the TRL SFT path
serve it like any hub checkpoint.

Architecture: LLaVA = CLIP vision tower (ViT) -> 2-layer MLP projector -> Llama decoder. One
size dial: ``tiny`` (tests, seconds), ``small`` (the CPU demo), ``base`` (GPU). Two choices
depart from library defaults because they decide whether the model can learn from these
black-on-white scenes at all (measured in docs/embedded-model.md): the processor maps white to
0, and the ViT position embeddings start as a 2D sin-cos grid.

Build with ``build_embedded_model("small", "out/embedded-small")``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparkle_vlm.errors import ConfigError

#: Chat-template markers. Role markers are special tokens so that role names never merge with text.
PAD = "<pad>"
UNK = "<unk>"
EOS = "<|end|>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
SYSTEM = "<|system|>"
IMAGE = "<image>"
SPECIAL_TOKENS = (PAD, UNK, EOS, USER, ASSISTANT, SYSTEM, IMAGE)

#: Labels the tasks draw (N1..N12 covers point scenes; grid labels beyond are split into N + digits).
MAX_LABEL = 12
#: Scale of the initial 2D sin-cos position embeddings of the ViT: about the size of a drawn disc's
#: patch embedding at init, so that neither position nor content drowns the other after the
#: ViT's first LayerNorm.
POSITION_INIT_SCALE = 0.1

#: Pieces the tokenizer sees before its BPE model: a node label, a word with its leading space,
#: one digit, one punctuation mark, or a run of whitespace. Single digits keep numbers
#: compositional ("4.37" -> 4 . 3 7); whole labels make "N3" one token the model can bind to pixels.
PRETOKENIZE = r" ?N(?:1[0-2]|[1-9])(?![0-9])| ?[A-Za-z]+| ?[0-9]| ?[^\sA-Za-z0-9]|\s+"

#: Jinja chat template. Accepts string content or lists of parts; {% generation %} marks the
#: assistant tokens for TRL's assistant-only loss. The EOS token closes every turn, so greedy
#: generation stops at the end of an answer.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}"
    + USER
    + "{%- elif message['role'] == 'system' -%}"
    + SYSTEM
    + "{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}" + ASSISTANT + "{%- generation -%}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}" + EOS + "{%- endgeneration -%}"
    "{%- else -%}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}"
    + IMAGE
    + "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}" + EOS + "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}" + ASSISTANT + "{%- endif -%}"
)


#: Vision towers: ``vit`` (LLaVA with a CLIP ViT) or ``resnet`` (FastVLM with transformers'
#: ResNet; its last feature map, flattened, is the image tokens).
TOWERS = ("vit", "resnet")


@dataclass(frozen=True)
class EmbeddedSpec:
    """Sizes of one embedded model. ``image_size / patch_size`` squared is the number of image tokens.

    With ``tower="resnet"`` the patch size is the tower's total stride (4 for its stem, times 2
    per further stage), ``vision_hidden`` the width of its last stage (each earlier stage has
    half the next one's) and ``vision_layers`` the number of blocks in its last stage;
    ``vision_heads`` and ``vision_mlp`` are unused.
    """

    image_size: int  # side (px) the processor resizes images to
    patch_size: int  # ViT patch side (px)
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    vision_mlp: int
    text_hidden: int
    text_layers: int
    text_heads: int
    text_mlp: int
    max_positions: int = 2048
    tower: str = "vit"

    @property
    def image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def resnet_widths(self) -> list[int]:
        """Stage widths of the ResNet tower: one stage at stride 4, then one per factor 2."""
        stages = (self.patch_size // 4).bit_length()
        return [self.vision_hidden >> (stages - 1 - i) for i in range(stages)]

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first inconsistent field."""
        if self.tower not in TOWERS:
            raise ConfigError("tower", f"must be one of {', '.join(TOWERS)}, got {self.tower!r}")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name != "tower" and (not isinstance(v, int) or v <= 0):
                raise ConfigError(f.name, f"must be a positive integer, got {v!r}")
        if self.image_size % self.patch_size:
            raise ConfigError(
                "patch_size", f"must divide image_size {self.image_size}, got {self.patch_size}"
            )
        if self.tower == "resnet":
            stride = self.patch_size // 4
            if self.patch_size % 4 or stride & (stride - 1):
                raise ConfigError(
                    "patch_size", f"must be 4 times a power of 2 with tower=resnet, got {self.patch_size}"
                )
            if self.vision_hidden % stride:
                raise ConfigError(
                    "vision_hidden", f"must be a multiple of {stride}, got {self.vision_hidden}"
                )
        elif self.vision_hidden % self.vision_heads:
            raise ConfigError("vision_heads", f"must divide vision_hidden {self.vision_hidden}")
        if self.text_hidden % self.text_heads:
            raise ConfigError("text_heads", f"must divide text_hidden {self.text_hidden}")
        if self.tower == "vit" and self.vision_hidden % 4:
            raise ConfigError(
                "vision_hidden", f"must be a multiple of 4 (2D sin-cos), got {self.vision_hidden}"
            )


#: The size dial. ``small`` is the CPU demo model (recipe in docs/embedded-model.md).
SIZES: dict[str, EmbeddedSpec] = {
    "tiny": EmbeddedSpec(
        image_size=64,
        patch_size=16,
        vision_hidden=32,
        vision_layers=1,
        vision_heads=2,
        vision_mlp=64,
        text_hidden=32,
        text_layers=2,
        text_heads=2,
        text_mlp=64,
        max_positions=1024,
        tower="resnet",
    ),
    "small": EmbeddedSpec(
        image_size=128,
        patch_size=16,
        vision_hidden=128,
        vision_layers=2,
        vision_heads=4,
        vision_mlp=256,
        text_hidden=128,
        text_layers=3,
        text_heads=4,
        text_mlp=256,
        max_positions=2048,
        tower="resnet",
    ),
    "base": EmbeddedSpec(
        image_size=224,
        patch_size=16,
        vision_hidden=256,
        vision_layers=2,
        vision_heads=4,
        vision_mlp=1024,
        text_hidden=512,
        text_layers=8,
        text_heads=8,
        text_mlp=1536,
        max_positions=4096,
        tower="resnet",
    ),
}


def spec_for(size: str, **overrides: Any) -> EmbeddedSpec:
    """The spec of a named size, with field overrides (for experiments)."""
    if size not in SIZES:
        raise ConfigError("size", f"must be one of {', '.join(SIZES)}, got {size!r}")
    fields = {f.name for f in dataclasses.fields(EmbeddedSpec)}
    for key in overrides:
        if key not in fields:
            raise ConfigError(
                key, f"not a field of the embedded model spec (fields: {', '.join(sorted(fields))})"
            )
    spec = dataclasses.replace(SIZES[size], **overrides)
    spec.validate()
    return spec


# -- tokenizer ---------------------------------------------------------------------------------


def vocabulary_corpus() -> list[str]:
    """Every text the tasks write: all template strings plus labels, options, digits and markup.

    The tokenizer is trained on this list, so each word of a task prompt or answer is one token.
    """
    from sparkle_vlm import geometry
    from sparkle_vlm.tasks import composite_templates, templates

    texts: list[str] = []

    def collect(value: Any) -> None:
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, (tuple, list)):
            for v in value:
                collect(v)
        elif isinstance(value, dict):
            for k in sorted(value, key=str):
                collect(value[k])

    for module in (templates, composite_templates):
        for name in sorted(vars(module)):
            if name.isupper():
                collect(getattr(module, name))
    labels = [f"N{i}" for i in range(1, MAX_LABEL + 1)]
    names = sorted(set(geometry.DIRECTIONS_8) | set(geometry.REGIONS) | {"up", "down", "left", "right"})
    letters = [chr(ord("A") + i) for i in range(26)]
    texts += [
        templates.options_text(list(geometry.DIRECTIONS_8)),
        templates.options_text(list(geometry.REGIONS)),
    ]
    texts += [
        " ".join(labels),
        ", ".join(labels),
        " ".join(names),
        " " + " ".join(letters),
        # Answers start without a space ("N2 and N3", "top left", "C"): those forms are tokens too.
        "\n".join(labels + names + letters),
        # Section titles of the holistic descriptions (written by tasks/instruct.py).
        "Positions:\nDirections:\nDistances:",
        ", ".join(f"{x}. {n}" for x, n in zip(letters, names, strict=False)),
        " ".join(f"{a} and {b}, {a} to {b}" for a in labels for b in labels if a != b),
        "0 1 2 3 4 5 6 7 8 9 0123456789 (0.5, 9.25) [1, 2] {'up': 1} \"N1\" \\boxed{A} - + * / = < > ? ! ; : _ # % & @ ^ ` | ~",
        "Answer: the shortest path is ['up', 'down', 'left', 'right'] from start to end, in a grid graph.",
        "Given an image containing exactly 5 objects, return the optimal order as a Python list.",
    ]
    return texts


def build_tokenizer() -> Any:
    """A BPE tokenizer trained on :func:`vocabulary_corpus`, wrapped as a transformers fast tokenizer.

    Task words become single tokens; any other ASCII text falls back to characters, so unseen
    prompts (other benchmarks) still tokenise without ``<unk>``.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(PRETOKENIZE), behavior="isolated")
    # The pieces carry their own spaces, so decoding is plain concatenation.
    tok.decoder = decoders.Fuse()
    alphabet = [chr(c) for c in range(32, 127)] + ["\n", "\t"]
    trainer = trainers.BpeTrainer(
        vocab_size=100_000,  # larger than needed: merging stops once every corpus word is one token
        min_frequency=1,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tok.train_from_iterator(vocabulary_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token=UNK,
        pad_token=PAD,
        eos_token=EOS,
        padding_side="left",
        extra_special_tokens={"image_token": IMAGE},
        model_max_length=4096,
    )


# -- model ---------------------------------------------------------------------------------------


def build_processor(spec: EmbeddedSpec, tokenizer: Any | None = None) -> Any:
    """The LLaVA processor: CLIP-style resize to ``image_size`` squared, then the chat template.

    FastVLM (``tower="resnet"``) uses the same processor class with every cell of the tower's
    output grid as an image token (``"full"``, no CLS token).
    """
    from transformers import CLIPImageProcessor, LlavaProcessor

    tokenizer = build_tokenizer() if tokenizer is None else tokenizer
    side = spec.image_size
    if spec.tower == "vit":
        # Scenes are black-on-white: white maps to 0, so blank patches carry only their position
        # embedding and drawn content stands out (with ImageNet-style centring the constant white
        # response swamps the position signal after the ViT's first LayerNorm).
        mean, std = [1.0, 1.0, 1.0], [0.5, 0.5, 0.5]
    else:
        # White maps to 1 and the convolutions pad with 0: the padding marks the image border,
        # the only source of absolute position (hence of a disc's region) a CNN has.
        mean, std = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]
    image_processor = CLIPImageProcessor(
        size={"height": side, "width": side},
        crop_size={"height": side, "width": side},
        do_center_crop=False,
        image_mean=mean,
        image_std=std,
    )
    vit = spec.tower == "vit"
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=spec.patch_size,
        vision_feature_select_strategy="default" if vit else "full",
        num_additional_image_tokens=1 if vit else 0,
        chat_template=CHAT_TEMPLATE,
    )


def build_config(spec: EmbeddedSpec, tokenizer: Any) -> Any:
    """The model config of a spec: LlavaConfig (CLIP ViT tower) or FastVlmConfig (ResNet tower),
    with a Llama language model."""
    from transformers import FastVlmConfig, LlavaConfig

    vocab = len(tokenizer)
    text_config = {
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": spec.text_hidden,
        "intermediate_size": spec.text_mlp,
        "num_hidden_layers": spec.text_layers,
        "num_attention_heads": spec.text_heads,
        "num_key_value_heads": spec.text_heads,
        "max_position_embeddings": spec.max_positions,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "tie_word_embeddings": True,
        "bos_token_id": None,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision_config = {
        "model_type": "clip_vision_model",
        "hidden_size": spec.vision_hidden,
        "intermediate_size": spec.vision_mlp,
        "num_hidden_layers": spec.vision_layers,
        "num_attention_heads": spec.vision_heads,
        "image_size": spec.image_size,
        "patch_size": spec.patch_size,
        "projection_dim": spec.vision_hidden,
        "num_channels": 3,
    }
    # transformers 5 names the field image_token_id (older stubs know only image_token_index).
    ids: dict[str, Any] = {"image_token_id": tokenizer.convert_tokens_to_ids(IMAGE)}
    if spec.tower == "resnet":
        widths = spec.resnet_widths()
        resnet = {
            "model_type": "resnet",
            "embedding_size": widths[0],
            "hidden_sizes": widths,
            "depths": [1] * (len(widths) - 1) + [spec.vision_layers],
            "layer_type": "basic",
            "downsample_in_first_stage": False,
            "hidden_size": widths[-1],  # FastVLM's projector reads the tower width here
        }
        return FastVlmConfig(
            vision_config=resnet,
            text_config=text_config,
            **ids,
            image_seq_length=spec.image_tokens,
            vision_feature_layer=-1,
            vision_feature_select_strategy="full",
            projector_hidden_act="gelu",
            tie_word_embeddings=True,
        )
    return LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        **ids,
        image_seq_length=spec.image_tokens,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
        tie_word_embeddings=True,
    )


def sincos_2d(grid: int, dim: int) -> Any:
    """MAE-style 2D sin-cos position codes, shape (grid * grid, dim), rows in raster order.

    Half of the channels encode the row, half the column.
    """
    import torch

    quarter = dim // 4
    omega = 1.0 / (100.0 ** (torch.arange(quarter, dtype=torch.float64) / quarter))
    rows, cols = torch.meshgrid(
        torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64), indexing="ij"
    )

    def enc(pos: Any) -> Any:
        angles = pos.reshape(-1, 1) * omega.reshape(1, -1)
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)

    return torch.cat([enc(rows), enc(cols)], dim=1).float()


def build_model(spec: EmbeddedSpec, tokenizer: Any, seed: int = 0) -> Any:
    """A randomly initialised LlavaForConditionalGeneration or, with ``tower="resnet"``,
    FastVlmForConditionalGeneration (same spec and seed, same weights).

    The ViT position embeddings start as a scaled 2D sin-cos grid (the CLS slot at 0): learned
    from a 0.02-std init they are swamped by the patch content after the first LayerNorm, and the
    model then needs many more steps before it can tell where anything is.
    """
    import torch
    from transformers import FastVlmForConditionalGeneration, LlavaForConditionalGeneration

    config = build_config(spec, tokenizer)
    torch.manual_seed(seed)
    model: Any
    if spec.tower == "resnet":
        model = FastVlmForConditionalGeneration(config)
    else:
        model = LlavaForConditionalGeneration(config)
        with torch.no_grad():
            pos = model.model.vision_tower.embeddings.position_embedding.weight
            pos.zero_()
            pos[1:] = sincos_2d(spec.image_size // spec.patch_size, spec.vision_hidden) * POSITION_INIT_SCALE
    gen = model.generation_config
    gen.eos_token_id = tokenizer.eos_token_id
    gen.pad_token_id = tokenizer.pad_token_id
    gen.bos_token_id = None
    gen.do_sample = False
    gen.max_new_tokens = 64
    return model


#: The file that marks a folder as an embedded model (size, seed, spec, parameter count).
MARKER = "sparkle_embedded.json"


def build_embedded_model(
    size: str = "small", out_dir: str | Path = "embedded-model", *, seed: int = 0, **overrides: Any
) -> Path:
    """Build the embedded model of a size and write it as a Hugging Face model folder.

    Returns the folder path. Same size, overrides and seed give the same weight bytes.
    ``overrides`` change single :class:`EmbeddedSpec` fields (experiments only). The folder is
    written next to its final place and renamed into it, so a crash never leaves half a model;
    an existing embedded-model folder is replaced, any other non-empty folder is refused.
    """
    import shutil
    import tempfile

    from sparkle_vlm.errors import SparkleError
    from sparkle_vlm.fsutil import atomic_write_json, check_writable_dir

    spec = spec_for(size, **overrides)
    out = check_writable_dir(out_dir, "out_dir")
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise SparkleError(f"out_dir: {out} is not empty and holds no embedded model; choose another folder")
    tokenizer = build_tokenizer()
    processor = build_processor(spec, tokenizer)
    model = build_model(spec, tokenizer, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        atomic_write_json(
            tmp / MARKER,
            {
                "size": size,
                "seed": seed,
                "spec": dataclasses.asdict(spec),
                "parameters": model.num_parameters(),
            },
        )
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def describe_tokens(tokenizer: Any, text: str) -> list[str]:
    """The token strings of ``text`` (debugging and tests).

    >>> describe_tokens(build_tokenizer(), "From N3 to N12, go top left.")
    ['From', ' N3', ' to', ' N12', ',', ' go', ' top', ' left', '.']
    """
    return [
        str(t)
        for t in tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False)["input_ids"])
    ]

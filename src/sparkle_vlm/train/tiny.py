"""Randomly initialised Qwen2-VL-style models built fully offline (tests, benchmarks, toy runs).

Nothing is downloaded: the tokenizer is a byte-level BPE trained in-process on a fixed text, the
processor is assembled from its classes, and the weights come from ``torch.manual_seed(seed)``.
The same preset and seed therefore give the same model on every machine.

Presets:

- ``tiny``: about 0.1M parameters, a few seconds per training step on a laptop CPU; its only use is
  to exercise code paths (loss goes down, adapters round-trip, checkpoints resume).
- ``mid``: about 0.7B parameters with a real-sized vocabulary (151,936, like Qwen2-VL), so GPU
  throughput figures are representative of a small production VLM.

Build one from the command line::

    python -m sparkle_vlm.train.tiny OUT_DIR --preset tiny
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

#: Qwen chat special tokens; the processor reads the image/video ones as tokenizer attributes.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# A Qwen2-VL style template that accepts string or part-list content and marks assistant turns with
# {% generation %} so that TRL's assistant-only loss also works with it.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] }}{% endgeneration %}"
    "{% else %}{{ message['content'] }}{% endif %}"
    "{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif part['type'] == 'text' %}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ part['text'] }}{% endgeneration %}"
    "{% else %}{{ part['text'] }}{% endif %}"
    "{% endif %}"
    "{% endfor %}"
    "{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Training text for the tokenizer: the words Sparkle prompts and answers use, so that answers are a
# few tokens long rather than one token per byte.
_CORPUS = [
    "What is the direction from the N1 object to the N2 object? top left top right down left down right",
    "Which distance is the shortest? N1 and N2, N1 and N3, N2 and N3. Which one is longer? shorter",
    "Which relative position is the N3 located at? center left right top down",
    "The image is 10x10. What is the distance between the N1 and N2 objects? 4.37 (7.12, 9.35)",
    "Here's a breakdown of the spatial relationships between the objects in the image:",
    "Positions: Directions: Comparing distances: The coordinate of the N1 object is",
    "You can reach the N2 object by going top right from the N1 object.",
    "Options: A. top left, B. top, C. top right, D. left, E. right. Respond with the correct option letter in \\boxed{option}.",
    "['up', 'down', 'left', 'right'] ['N1', 'N2', 'N3', 'N4', 'N5'] shortest path grid graph start end node",
    "0123456789 assistant user system",
]


@dataclass(frozen=True)
class TinyPreset:
    """Sizes of one preset (language model and vision tower)."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int | None  # None: exactly the trained tokenizer's size
    vision_depth: int
    vision_dim: int
    vision_heads: int
    mrope_section: tuple[int, int, int]  # must sum to (hidden / heads) / 2
    bpe_vocab: int = 400


PRESETS: dict[str, TinyPreset] = {
    "tiny": TinyPreset(
        hidden=32,
        intermediate=64,
        layers=2,
        heads=4,
        kv_heads=2,
        vocab=None,
        vision_depth=2,
        vision_dim=32,
        vision_heads=4,
        mrope_section=(2, 1, 1),
    ),
    "mid": TinyPreset(
        hidden=1024,
        intermediate=4096,
        layers=16,
        heads=16,
        kv_heads=4,
        vocab=151936,
        vision_depth=12,
        vision_dim=768,
        vision_heads=12,
        mrope_section=(16, 8, 8),
    ),
}


def build_tokenizer(bpe_vocab: int = 400) -> Any:
    """A deterministic byte-level BPE tokenizer with the Qwen special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=bpe_vocab,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )


def build_processor(tokenizer: Any, min_pixels: int = 4 * 28 * 28, max_pixels: int = 16 * 28 * 28) -> Any:
    """A Qwen2-VL processor around ``tokenizer`` with small default image bounds (few image tokens)."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels)
    return Qwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )


def build_config(tokenizer: Any, preset: TinyPreset) -> Any:
    from transformers import Qwen2VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text = {
        "vocab_size": preset.vocab or len(tokenizer),
        "hidden_size": preset.hidden,
        "intermediate_size": preset.intermediate,
        "num_hidden_layers": preset.layers,
        "num_attention_heads": preset.heads,
        "num_key_value_heads": preset.kv_heads,
        "max_position_embeddings": 4096,
        "max_window_layers": preset.layers,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": list(preset.mrope_section),
        },
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    vision = {
        "depth": preset.vision_depth,
        "embed_dim": preset.vision_dim,
        "hidden_size": preset.hidden,
        "num_heads": preset.vision_heads,
        "mlp_ratio": 2 if preset.vision_dim <= 64 else 4,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }
    return Qwen2VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def build_model(preset: str = "tiny", seed: int = 0, dtype: Any = None) -> tuple[Any, Any]:
    """Return ``(model, processor)`` for a preset, randomly initialised from ``seed``."""
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    if preset not in PRESETS:
        from sparkle_vlm.errors import ConfigError

        raise ConfigError("preset", f"unknown preset {preset!r} (presets: {', '.join(PRESETS)})")
    p = PRESETS[preset]
    tokenizer = build_tokenizer(p.bpe_vocab)
    processor = build_processor(tokenizer)
    config = build_config(tokenizer, p)
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    if dtype is not None:
        model = model.to(dtype)
    model.eval()
    return model, processor


def save_model(out: str | os.PathLike[str], preset: str = "tiny", seed: int = 0) -> str:
    """Build a preset and save model (safetensors) and processor to ``out``; returns the folder."""
    model, processor = build_model(preset, seed)
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return os.fspath(out)


def count_parameters(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(save_model(args.out, args.preset, args.seed))

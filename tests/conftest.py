"""Shared fixtures: tiny randomly initialised VLMs built offline, and a tiny dataset.

The Hub is unreachable in tests, so every model is built from a config with a tokenizer trained
in-process and a processor assembled from its parts (recipe: docs ecosystem.md section 3.5),
then saved as safetensors and reloaded through the Auto classes like any real checkpoint.
Each build takes a few seconds on CPU and happens at most once per session, only when a test
asks for it. torch/transformers are imported inside the builders, so collecting the suite
without them still works.

Fixtures:
- ``tiny_vlm_factory(family)`` -> Path of a saved checkpoint (families: :data:`TINY_VLM_FAMILIES`);
- ``tiny_qwen2vl_dir``, ``tiny_qwen25vl_dir``, ``tiny_llava_dir``: the same, per family;
- ``tiny_instruct_dir``: a 2-scene Sparkle-Instruct dataset folder (34 records, 112 px images).

Outside pytest (benchmarks) call :func:`build_tiny_vlm` directly.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# Tiny models gain nothing from intra-op threads, and on a shared 2-core machine OpenMP workers
# spin-waiting for a busy core made the torch tests about 6x slower (57 s vs 9 s for
# tests/test_backend_hf.py). Set before torch is first imported; an explicit value wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")

TINY_VLM_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "llava")

# Text the tokenizer is trained on: Sparkle wording, so prompts tokenise into a few hundred ids.
_CORPUS = [
    "What is the direction from the N1 object to the N2 object? top left, top, top right, left, right",
    "down left, down, down right, center. Which relative position is the N3 located at?",
    "The image is 10x10. What is the distance between the N1 and N2 objects? 4.37 (7.12, 9.35)",
    "Which distance is the shortest? N2 and N1, N2 and N3, N1 and N3. Options: A. B. C. D. E. F. G. H. I.",
    "Respond with the correct option letter in \\boxed{option}. Choices: Selections: Reply Answer",
    "Please return the sequence of movements as a Python list: ['up', 'down', 'left', 'right']",
    "Return the optimal order as a Python list of objects: ['N1', 'N2', 'N3', 'N4', 'N5'] 0123456789",
    "Here's a breakdown of the spatial relationships between the objects in the image: user assistant",
]

# Minimal chat templates: list-of-parts or string content, the family's image placeholder, the
# generation prompt, and {% generation %} around assistant text so TRL's assistant-only loss works.
_CONTENT = (
    "{%- if message['content'] is string -%}{{ message['content'] }}{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}IMAGE"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
)


def _chat_template(turn_open: str, image: str, user_close: str, assistant_close: str, prompt: str) -> str:
    # Literal text is emitted through {{ '...' }} so Jinja's whitespace trimming cannot eat newlines.
    body = _CONTENT.replace("IMAGE", "{{ '" + image + "' }}")
    return (
        "{%- for message in messages -%}" + turn_open + "{%- if message['role'] == 'assistant' -%}"
        "{% generation %}" + body + "{{ '" + assistant_close + "' }}{% endgeneration %}"
        "{%- else -%}" + body + "{{ '" + user_close + "' }}{%- endif -%}{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '" + prompt + "' }}{%- endif -%}"
    )


QWEN_CHAT_TEMPLATE = _chat_template(
    "{{ '<|im_start|>' + message['role'] + '\\n' }}",
    "<|vision_start|><|image_pad|><|vision_end|>",
    "<|im_end|>\\n",
    "<|im_end|>\\n",
    "<|im_start|>assistant\\n",
)
LLAVA_CHAT_TEMPLATE = _chat_template(
    "{{ message['role'] | upper + ': ' }}", "<image>\\n", "\\n", "</s>\\n", "ASSISTANT: "
)

_QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def _train_tokenizer(specials: list[str], attrs: dict[str, str], **tokens: str) -> Any:
    """A byte-level BPE tokenizer (~360 ids) trained in-process; deterministic."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=360,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, padding_side="left", extra_special_tokens=attrs, **tokens
    )


def _text_config(tokenizer: Any, **extra: Any) -> dict[str, Any]:
    # A wider init than the default 0.02 makes greedy choices decisive, so batched and unbatched
    # runs cannot flip a near-tie through float rounding.
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "initializer_range": 0.2,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        **extra,
    }


def _build_qwen(family: str) -> tuple[Any, Any]:
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    tok = _train_tokenizer(
        _QWEN_SPECIALS,
        {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    ids = tok.convert_tokens_to_ids
    # 4..16 merged tokens per image keeps sequences short; real Qwen defaults allow 16k.
    image_processor = Qwen2VLImageProcessor(min_pixels=4 * 28 * 28, max_pixels=16 * 28 * 28)
    text = _text_config(
        tok, rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": [2, 1, 1]}
    )
    top = {
        "image_token_id": ids("<|image_pad|>"),
        "video_token_id": ids("<|video_pad|>"),
        "vision_start_token_id": ids("<|vision_start|>"),
        "vision_end_token_id": ids("<|vision_end|>"),
    }
    vision_common = {
        "depth": 2,
        "num_heads": 4,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }
    if family == "qwen2_vl":
        config: Any = Qwen2VLConfig(
            text_config=text,
            vision_config={**vision_common, "embed_dim": 32, "hidden_size": 32, "mlp_ratio": 2},
            **top,
        )
        model: Any = Qwen2VLForConditionalGeneration(config)
        processor: Any = Qwen2VLProcessor(
            image_processor=image_processor,
            tokenizer=tok,
            video_processor=Qwen2VLVideoProcessor(),
            chat_template=QWEN_CHAT_TEMPLATE,
        )
    else:
        config = Qwen2_5_VLConfig(
            text_config=text,
            vision_config={
                **vision_common,
                "hidden_size": 32,
                "intermediate_size": 64,
                "out_hidden_size": 32,
                "fullatt_block_indexes": [1],
                "window_size": 56,
            },
            **top,
        )
        model = Qwen2_5_VLForConditionalGeneration(config)
        processor = Qwen2_5_VLProcessor(
            image_processor=image_processor,
            tokenizer=tok,
            video_processor=Qwen2VLVideoProcessor(),
            chat_template=QWEN_CHAT_TEMPLATE,
        )
    return model, processor


def _build_llava() -> tuple[Any, Any]:
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tok = _train_tokenizer(
        ["<unk>", "<s>", "</s>", "<pad>", "<image>"],
        {"image_token": "<image>"},
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    config = LlavaConfig(
        text_config=_text_config(tok, model_type="llama"),
        vision_config={
            "model_type": "clip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 28,
            "patch_size": 14,
            "projection_dim": 32,
        },
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        image_seq_length=4,  # (28 / 14)^2
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}),
        tokenizer=tok,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    return LlavaForConditionalGeneration(config), processor


def build_tiny_vlm(family: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Build a tiny random VLM of ``family`` and save model + processor (safetensors) to ``out_dir``.

    The result loads with ``AutoModelForImageTextToText`` / ``AutoProcessor`` like a Hub
    checkpoint. Same family and seed give the same weights.
    """
    import torch

    if family not in TINY_VLM_FAMILIES:
        raise ValueError(f"unknown tiny VLM family {family!r} (known: {', '.join(TINY_VLM_FAMILIES)})")
    torch.manual_seed(seed)
    model, processor = _build_llava() if family == "llava" else _build_qwen(family)
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_vlm_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``factory(family)`` -> folder of a tiny saved checkpoint, built once per session per family."""
    cache: dict[str, Path] = {}

    def make(family: str) -> Path:
        if family not in cache:
            cache[family] = build_tiny_vlm(family, tmp_path_factory.mktemp(f"tiny-{family}"))
        return cache[family]

    return make


@pytest.fixture(scope="session")
def tiny_qwen2vl_dir(tiny_vlm_factory: Callable[[str], Path]) -> Path:
    """A tiny random Qwen2-VL checkpoint folder (Qwen2VLProcessor, mrope, merger)."""
    return tiny_vlm_factory("qwen2_vl")


@pytest.fixture(scope="session")
def tiny_qwen25vl_dir(tiny_vlm_factory: Callable[[str], Path]) -> Path:
    """A tiny random Qwen2.5-VL checkpoint folder (windowed vision attention)."""
    return tiny_vlm_factory("qwen2_5_vl")


@pytest.fixture(scope="session")
def tiny_llava_dir(tiny_vlm_factory: Callable[[str], Path]) -> Path:
    """A tiny random LLaVA-1.5-style checkpoint folder (CLIP tower + llama LM, 28 px images)."""
    return tiny_vlm_factory("llava")


@pytest.fixture(scope="session")
def tiny_instruct_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated Sparkle-Instruct dataset folder: 2 scenes x 17 records, 112 px images."""
    from sparkle_vlm.generate import generate_dataset
    from sparkle_vlm.tasks.base import get_task

    out = tmp_path_factory.mktemp("tiny-instruct") / "data"
    config = get_task("instruct").make_config(n=2, size=112)
    generate_dataset("instruct", config, 0, out, workers=1, progress=False)
    return out

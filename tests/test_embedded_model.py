"""The embedded model: a standard HF folder, deterministic, with a tokenizer that covers the tasks."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkle_vlm.errors import ConfigError
from sparkle_vlm.models.embedded import UNK, build_embedded_model, build_tokenizer, spec_for
from sparkle_vlm.records import prompt_text, response_text
from sparkle_vlm.tasks import get_task


@pytest.mark.torch
def test_build_is_deterministic_and_loads_with_auto_classes(tmp_path: Path) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    a = build_embedded_model("tiny", tmp_path / "a")
    b = build_embedded_model("tiny", tmp_path / "b")
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    model = AutoModelForImageTextToText.from_pretrained(a)
    processor = AutoProcessor.from_pretrained(a)
    assert model.config.model_type == "fast_vlm"
    assert model.config.vision_config.model_type == "resnet"
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Where is N2?"}]}]
    text = processor.apply_chat_template(msgs, add_generation_prompt=True)
    assert "<image>" in text and text.endswith("<|assistant|>")


def test_tokenizer_covers_every_task_without_unknown_tokens() -> None:
    tok = build_tokenizer()
    unk = tok.convert_tokens_to_ids(UNK)
    for name, over in [("instruct", {}), ("basic_mcq", {}), ("spp", {"grid": 5}), ("tsp", {})]:
        task = get_task(name)
        cfg = task.make_config(n=4, **over)
        for i in range(cfg.n):
            for rec in task.sample(cfg, 0, i).records:
                for text in (prompt_text(rec), response_text(rec) or rec["answer"]):
                    assert unk not in tok(text, add_special_tokens=False)["input_ids"], text[:80]


def test_unknown_size_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="size"):
        spec_for("huge")

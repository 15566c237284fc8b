"""Exports fed to the real consumer code: TRL's vision collator with a tiny offline Qwen2-VL processor.

The collator applies the chat template, fills the image placeholders and runs the processor,
which fails when placeholders and images disagree, so a batch coming out is the proof that the
TRL and HF exports train as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sparkle_vlm.export import ExportOptions, export_dataset
from sparkle_vlm.generate import generate_dataset
from sparkle_vlm.suites import SUITES
from sparkle_vlm.tasks import get_task

pytestmark = pytest.mark.torch


def _generate(root: Path, suite: str, n: int) -> Path:
    s = SUITES.get(suite)
    task = get_task(s.task)
    config = task.make_config(**{**s.overrides, "n": n, "size": 224})
    generate_dataset(task, config, 0, root / suite, workers=1, suite=suite, progress=False)
    return root / suite


@pytest.fixture(scope="module")
def processor(tiny_qwen2vl_dir: Path) -> Any:
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_qwen2vl_dir)


def _image_pad_id(processor: Any) -> int:
    return int(processor.tokenizer.convert_tokens_to_ids("<|image_pad|>"))


def test_trl_prompt_completion_collates(tmp_path: Path, processor: Any) -> None:
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from sparkle_vlm.export.trl import load_trl_dataset

    src = _generate(tmp_path, "instruct", 2)
    out = tmp_path / "trl"
    export_dataset(src, "trl", out, ExportOptions())
    ds = load_trl_dataset(out, "train")
    collator = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)
    batch = collator([dict(ds[i]) for i in range(4)])
    assert batch["pixel_values"].shape[0] > 0 and batch["image_grid_thw"].shape[0] == 4
    labels, ids = batch["labels"], batch["input_ids"]
    # Completion-only loss: image tokens and prompt are masked, the answer is not.
    assert bool((labels[ids == _image_pad_id(processor)] == -100).all())
    assert int((labels != -100).sum()) > 0 and int((labels == -100).sum()) > int((labels != -100).sum())


def test_hf_parquet_messages_collate(tmp_path: Path, processor: Any) -> None:
    import datasets
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    src = _generate(tmp_path, "basic-test", 2)
    out = tmp_path / "hf"
    export_dataset(src, "hf", out, ExportOptions())
    ds = datasets.load_dataset("parquet", data_files=str(out / "data/test-00000-of-00001.parquet"))["train"]
    rows = [{"messages": ds[i]["messages"], "images": ds[i]["images"]} for i in range(3)]
    batch = DataCollatorForVisionLanguageModeling(processor)(rows)
    assert batch["image_grid_thw"].shape[0] == 3
    assert int((batch["input_ids"] == _image_pad_id(processor)).sum()) > 0

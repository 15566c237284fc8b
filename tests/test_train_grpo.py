"""GRPO through TRL with the Sparkle verifier rewards (tiny random VLM, CPU, offline).

Run: .venv/bin/python -m pytest tests/test_train_grpo.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sparkle_vlm.train import data as D
from sparkle_vlm.train.config import GRPOTrainConfig, load_config


@pytest.fixture(scope="module")
def spp_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two composite datasets of different difficulty: SPP 3x3 and SPP 5x5 (4 instances each)."""
    from sparkle_vlm.generate import generate_dataset
    from sparkle_vlm.tasks import get_task

    root = tmp_path_factory.mktemp("grpo-data")
    out = []
    for grid in (5, 3):
        d = root / f"spp{grid}"
        generate_dataset(
            "spp", get_task("spp").make_config(n=4, size=112, grid=grid), 1000, d, workers=1, progress=False
        )
        out.append(d)
    return out


def test_grpo_rows_carry_prompt_images_and_record(spp_dirs: list[Path]):
    records, sources = D.load_records(spp_dirs)
    rows = D.grpo_rows(records)
    assert len(rows) == 8 and len(sources) == 2
    for row, rec in zip(rows, records, strict=True):
        assert [t["role"] for t in row["prompt"]] == ["user"]
        assert row["images"] == rec["images"] and Path(row["images"][0]).is_absolute()
        assert json.loads(row["record"])["scene"] == rec["scene"]


def test_curriculum_orders_easy_to_hard(spp_dirs: list[Path]):
    records, _ = D.load_records(spp_dirs)
    ordered = D.curriculum(records, seed=0)
    grids = [r["scene"]["grid"] for r in ordered]
    assert grids == sorted(grids) and grids[0] == 3
    keys = [D.difficulty_key(r) for r in ordered]
    assert keys == sorted(keys)
    assert D.curriculum(records, seed=0) == ordered  # deterministic


@pytest.mark.torch
def test_grpo_steps_run_with_sparkle_rewards(
    tiny_qwen2vl_dir: Path, spp_dirs: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from sparkle_vlm.answers import score
    from sparkle_vlm.train import rewards
    from sparkle_vlm.train.grpo import train_grpo

    scored: list[str] = []

    def counting_score(record: dict[str, Any], text: Any) -> Any:
        scored.append(record["id"])
        return score(record, text)

    monkeypatch.setattr(rewards, "score", counting_score)
    cfg = load_config(
        "grpo",
        None,
        {
            "model": str(tiny_qwen2vl_dir),
            "data": [str(d) for d in spp_dirs],
            "out": str(tmp_path / "run"),
            "max_steps": 2,
            "batch_size": 4,
            "grad_accum": 1,
            "num_generations": 4,
            "max_completion_length": 8,
            "curriculum": True,
            "save_steps": 1,
            "logging_steps": 1,
            "format_weight": 0.5,
        },
    )
    assert isinstance(cfg, GRPOTrainConfig)
    res = train_grpo(cfg, log=lambda m: None)
    assert res.global_step == 2
    # 2 steps x 4 completions, each scored by the accuracy and the format reward
    assert len(scored) == 2 * 4 * 2
    # curriculum: the first prompts are the easy 3x3 instances
    assert all(rid.startswith("spp3-") for rid in scored[:8])
    out = Path(cfg.out)
    assert (out / "adapter_model.safetensors").is_file() and (out / "checkpoint-2").is_dir()
    run = json.loads((out / "sparkle_train.json").read_text())
    assert run["method"] == "grpo" and run["curriculum"] is True
    assert run["rewards"]["functions"] == ["accuracy_reward", "format_reward"]
    assert run["rewards"]["weights"] == [1.0, 0.5]
    assert 0.0 <= run["rewards"]["last"] <= 1.5
    assert train_grpo(cfg, log=lambda m: None).already_complete

"""Training configs: shipped YAMLs, loading/precedence/validation, default LoRA targets.

Run: .venv/bin/python -m pytest tests/test_train_config.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from sparkle_vlm.cli.main import main
from sparkle_vlm.errors import ConfigError, SparkleError
from sparkle_vlm.train.config import (
    DEEPSPEED_ZERO2,
    DEFAULT_LORA_TARGETS,
    GRPOTrainConfig,
    SFTTrainConfig,
    load_config,
    shipped_configs,
)

SHIPPED = shipped_configs()
REMOTE_CODE = {"internvl2-8b", "glm-4v-9b", "minicpm-v-2_6"}


def test_configs_are_shipped():
    # the families the paper fine-tuned, native successors, and small models
    for name in (
        "qwen2-vl-7b",
        "qwen2-vl-2b",
        "llava-v1.6-mistral-7b",
        "internvl2-8b",
        "internvl3-8b-hf",
        "glm-4v-9b",
        "minicpm-v-2_6",
        "smolvlm2-2.2b",
        "qwen2-vl-2b-grpo",
    ):
        assert name in SHIPPED


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_config_loads_and_validates(name: str, tmp_path: Path):
    path = SHIPPED[name]
    text = path.read_text()
    raw = yaml.safe_load(text)
    method = raw["method"]
    # the header comment gives the exact command that uses this file
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert header and text.startswith("#")
    assert any(f"sparkle train {method} --config {name}" in line for line in header)
    cfg = load_config(method, name, {"data": [str(tmp_path)], "out": str(tmp_path / "out")})
    assert isinstance(cfg, GRPOTrainConfig if method == "grpo" else SFTTrainConfig)
    assert cfg.model == raw["model"]
    if name in REMOTE_CODE:
        # never enabled by a file: the user has to pass the flag
        assert not cfg.trust_remote_code
        assert "--trust-remote-code" in text and "NOT natively supported" in text


def test_deepspeed_config_is_shipped_and_zero2():
    ds = json.loads(DEEPSPEED_ZERO2.read_text())
    assert ds["zero_optimization"]["stage"] == 2
    cfg = load_config("sft", None, {"model": "m", "data": ["d"], "out": "o", "deepspeed": "zero2"})
    assert cfg.deepspeed_path() == str(DEEPSPEED_ZERO2)


def test_precedence_defaults_yaml_flags(tmp_path: Path):
    p = tmp_path / "c.yaml"
    p.write_text("method: sft\nmodel: a/b\nlr: 3.0e-4\nlora_r: 8\nepochs: 2\n")
    cfg = load_config("sft", str(p), {"data": ["d"], "out": "o", "lora_r": 4, "lr": None})
    assert cfg.model == "a/b"
    assert cfg.lr == 3e-4  # YAML over default, None flag ignored
    assert cfg.lora_r == 4  # flag over YAML
    assert cfg.epochs == 2.0 and isinstance(cfg.epochs, float)  # YAML int accepted for a float field
    assert cfg.lora_alpha == 32  # default


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"lora_rr": 8}, "lora_rr"),  # unknown key
        ({"lora_r": "eight"}, "lora_r"),  # wrong type
        ({"lora_r": 0}, "lora_r"),
        ({"lora_dropout": 1.5}, "lora_dropout"),
        ({"merge": True, "lora": False}, "merge"),
        ({"freeze_vision": True}, "freeze_vision"),  # LoRA (the default) leaves the tower alone anyway
        ({"freeze_projector": True}, "freeze_projector"),
        ({"freeze_embeddings": True}, "freeze_embeddings"),
        ({"tasks": []}, "tasks"),
        ({"min_pixels": 100, "max_pixels": 10}, "min_pixels"),
        ({"lora_targets": "(unclosed"}, "lora_targets"),
        ({"model": ""}, "model"),
        ({"data": []}, "data"),
    ],
)
def test_bad_values_name_the_field(values: dict, field: str):
    base = {"model": "m", "data": ["d"], "out": "o"}
    with pytest.raises(ConfigError) as exc:
        load_config("sft", None, {**base, **values})
    assert exc.value.field == field


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match="did you mean 'lora_r'"):
        load_config("sft", None, {"model": "m", "data": ["d"], "out": "o", "lora_rr": 8})


def test_grpo_group_must_divide_the_batch():
    with pytest.raises(ConfigError) as exc:
        load_config(
            "grpo",
            None,
            {"model": "m", "data": ["d"], "out": "o", "batch_size": 6, "grad_accum": 1, "num_generations": 4},
        )
    assert exc.value.field == "num_generations"
    cfg = load_config(
        "grpo",
        None,
        {"model": "m", "data": ["d"], "out": "o", "batch_size": 2, "grad_accum": 2, "num_generations": 4},
    )
    assert cfg.num_generations == 4


def test_config_of_the_other_method_is_refused():
    with pytest.raises(ConfigError, match="use `sparkle train grpo`"):
        load_config("sft", "qwen2-vl-2b-grpo", {"data": ["d"], "out": "o"})


def test_unknown_config_name_suggests():
    with pytest.raises(SparkleError, match="did you mean"):
        load_config("sft", "qwen2-vl-7", {})


def test_fingerprint_ignores_resume_but_not_lr():
    base = {"model": "m", "data": ["d"], "out": "o"}
    a = load_config("sft", None, base)
    assert a.fingerprint() == load_config("sft", None, {**base, "resume": False, "merge": True}).fingerprint()
    assert a.fingerprint() != load_config("sft", None, {**base, "lr": 1e-3}).fingerprint()


# Linear-layer names of each family (ecosystem notes 3.4, transformers 5.24), LM first then vision/projector.
LM_NAMES = [
    "model.language_model.layers.0.self_attn.q_proj",  # Qwen2-VL, LLaVA, InternVL-hf, MiniCPM-V 4.6
    "model.language_model.layers.11.mlp.down_proj",
    "model.language_model.layers.3.mlp.gate_up_proj",  # GLM-4.1V
    "model.text_model.layers.2.self_attn.o_proj",  # SmolVLM / Idefics3
    "language_model.model.layers.5.attention.wqkv",  # InternVL2 remote code (InternLM2)
    "language_model.model.layers.5.feed_forward.w2",
    "llm.model.layers.1.mlp.up_proj",  # MiniCPM-V 2.x remote code
]
VISION_NAMES = [
    "model.visual.blocks.0.attn.qkv",
    "model.visual.blocks.0.mlp.gate_proj",  # Qwen2.5-VL vision MLP shares the LM's suffixes
    "model.visual.merger.mlp.0",
    "model.vision_tower.encoder.layers.0.self_attn.q_proj",
    "model.multi_modal_projector.linear_1",
    "model.vision_model.encoder.layers.0.self_attn.k_proj",
    "model.connector.modality_projection.proj",
    "vpm.encoder.layers.0.self_attn.q_proj",
    "resampler.attn.out_proj",
    "lm_head",
]


@pytest.mark.parametrize("name", LM_NAMES)
def test_default_lora_targets_hit_language_model_layers(name: str):
    assert re.fullmatch(DEFAULT_LORA_TARGETS, name)


@pytest.mark.parametrize("name", VISION_NAMES)
def test_default_lora_targets_skip_vision_and_projector(name: str):
    assert not re.fullmatch(DEFAULT_LORA_TARGETS, name)


def test_cli_print_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    rc = main(
        [
            "train",
            "sft",
            "--config",
            "qwen2-vl-2b",
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            "--lora-r",
            "4",
            "--set",
            "max_tokens=1024",
            "--print-config",
        ]
    )
    assert rc == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["model"] == "Qwen/Qwen2-VL-2B-Instruct" and cfg["lora_r"] == 4 and cfg["max_tokens"] == 1024
    assert cfg["method"] == "sft"


def test_cli_rationale_and_freeze_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    base = ["train", "sft", "--model", "m", "--data", str(tmp_path), "--out", str(tmp_path / "o")]
    flags = ["--full", "--freeze-projector", "--freeze-embeddings", "--rationale", "--print-config"]
    assert main([*base, *flags]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["rationale"] and cfg["freeze_projector"] and cfg["freeze_embeddings"] and not cfg["lora"]
    # --set still works when the flag is left out
    assert main([*base, "--set", "rationale=true", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["rationale"] is True


def test_cli_bad_option_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    rc = main(
        [
            "train",
            "sft",
            "--model",
            "m",
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            "--set",
            "lora_rr=3",
            "--print-config",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: lora_rr:") and err.count("\n") == 1


def test_cli_lists_configs(capsys: pytest.CaptureFixture[str]):
    assert main(["train", "configs"]) == 0
    out = capsys.readouterr().out
    assert "qwen2-vl-7b" in out and "grpo" in out

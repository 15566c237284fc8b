"""``sparkle train tower``: dense tower pretraining from the scene records, then the projector code."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from sparkle_vlm import geometry
from sparkle_vlm.errors import ConfigError, SparkleError
from sparkle_vlm.train.tower import TowerTrainConfig, cell_of, pretrain_tower, scene_targets


def _cfg(model: Path, data: Path, out: Path, steps: int, code_steps: int) -> TowerTrainConfig:
    """A tiny run: one held-out image."""
    return TowerTrainConfig(
        model=str(model), data=[str(data)], out=str(out), steps=steps, code_steps=code_steps, held_out=1
    )


def test_scene_targets_put_each_disc_in_its_cell() -> None:
    scene = {
        "frame": 10,
        "nodes": [{"label": "N3", "x": 1.0, "y": 9.0}, {"label": "N12", "x": 6.2, "y": 4.9}],
    }
    label, region, xy = scene_targets(scene, 4)
    # (1, 9): top row, left column; (6.2, 4.9): row int(0.51 * 4) = 2, column int(0.62 * 4) = 2
    assert cell_of(1.0, 9.0, 10, 4) == (0, 0) and cell_of(6.2, 4.9, 10, 4) == (2, 2)
    assert label[0] == 3 and label[2 * 4 + 2] == 12 and sum(v > 0 for v in label) == 2
    assert region[0] == geometry.REGIONS.index(geometry.region(1.0, 9.0))
    assert region[10] == geometry.REGIONS.index(geometry.region(6.2, 4.9))
    assert sum(r >= 0 for r in region) == 2
    assert xy[20:22] == pytest.approx([0.62, 0.49])


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ConfigError, match="steps"):
        TowerTrainConfig(model="m", data=["d"], out="o", steps=0).validate()
    with pytest.raises(ConfigError, match="data"):
        TowerTrainConfig(model="m", out="o").validate()
    with pytest.raises(ConfigError, match="device"):
        TowerTrainConfig(model="m", data=["d"], out="o", device="tpu").validate()


@pytest.mark.torch
def test_the_tower_trains_where_asked(tiny_instruct_dir: Path, tmp_path: Path) -> None:
    """auto picks CUDA when there is one; asking for CUDA without one is a one-field error."""
    import torch

    from sparkle_vlm.models.embedded import build_embedded_model

    base = build_embedded_model("tiny", tmp_path / "base")
    cfg = _cfg(base, tiny_instruct_dir, tmp_path / "t", 2, 1)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device"):
            pretrain_tower(replace(cfg, device="cuda"), log=lambda _m: None)
        assert not (tmp_path / "t").exists()
    info = pretrain_tower(cfg, log=lambda _m: None)
    assert info["device"].startswith("cuda" if torch.cuda.is_available() else "cpu")
    assert json.loads((tmp_path / "t" / "sparkle_tower.json").read_text())["device"] == info["device"]


@pytest.mark.torch
def test_same_config_same_weights_and_the_projector_speaks_the_decoders_words(
    tiny_instruct_dir: Path, tmp_path: Path
) -> None:
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    from sparkle_vlm.models.embedded import build_embedded_model

    base = build_embedded_model("tiny", tmp_path / "base")
    runs = []
    for name in ("a", "b"):
        cfg = _cfg(base, tiny_instruct_dir, tmp_path / name, 3, 2)
        info = pretrain_tower(cfg, log=lambda _m: None)
        runs.append(load_file(str(tmp_path / name / "model.safetensors")))
    assert runs[0].keys() == runs[1].keys() and all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    before = load_file(str(base / "model.safetensors"))
    assert any(not torch.equal(before[k], runs[0][k]) for k in before if "vision_tower" in k)
    record = json.loads((tmp_path / "a" / "sparkle_tower.json").read_text())
    assert record["grid"] == 4 and set(record["dense"]) >= {"disc_label_accuracy", "disc_region_accuracy"}
    assert record["images"] == {"train": 1, "held_out": 1} and info["code"] == record["code"]
    assert record["lookup"] is None  # the tiny code has no room for the cell digits: no lookup heads
    # linear_2 maps code unit j to the embedding of " N<j+1>" (then the letters A..I), one scale for all.
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "a")
    tok = AutoTokenizer.from_pretrained(tmp_path / "a")
    w = model.model.multi_modal_projector.linear_2.weight.detach()
    table = model.get_input_embeddings().weight.detach()
    ids = [tok(f" N{j}", add_special_tokens=False)["input_ids"][0] for j in range(1, 13)]
    ids += [tok.convert_tokens_to_ids(c) for c in "ABCDEFGHI"]
    ratio = w[:, : len(ids)] / table[ids].T
    assert torch.allclose(ratio, ratio[0, 0].expand_as(ratio), rtol=1e-4)
    assert not w[:, len(ids) :].any()


@pytest.mark.torch
def test_a_tower_without_a_token_grid_is_refused(tiny_instruct_dir: Path, tmp_path: Path) -> None:
    from sparkle_vlm.models.embedded import build_embedded_model

    vit = build_embedded_model("tiny", tmp_path / "vit", tower="vit")
    cfg = TowerTrainConfig(model=str(vit), data=[str(tiny_instruct_dir)], out=str(tmp_path / "o"), held_out=1)
    with pytest.raises(SparkleError, match="grid"):
        pretrain_tower(cfg, log=lambda _m: None)
    assert not (tmp_path / "o").exists()


@pytest.mark.torch
def test_cli_reports_the_accuracies(
    tiny_instruct_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    from sparkle_vlm.cli.main import main
    from sparkle_vlm.models.embedded import build_embedded_model

    base = build_embedded_model("tiny", tmp_path / "base")
    args = [
        "train",
        "tower",
        "--model",
        str(base),
        "--data",
        str(tiny_instruct_dir),
        "--out",
        str(tmp_path / "t"),
    ]
    assert main([*args, "--steps", "0"]) != 0
    assert "steps" in capsys.readouterr().err
    assert main([*args, "--steps", "2", "--code-steps", "1"]) != 0  # held_out=200 > the 2 images
    assert "held_out" in capsys.readouterr().err
    assert main([*args, "--steps", "2", "--code-steps", "1", "--held-out", "1"]) == 0
    assert "tower pretrained" in capsys.readouterr().out and (tmp_path / "t" / "sparkle_tower.json").is_file()


def test_scene_cells_match_the_rationale_digits() -> None:
    from sparkle_vlm.train.rationale import cell_digits
    from sparkle_vlm.train.tower import scene_cells

    scene = {
        "frame": 10,
        "nodes": [{"label": "N3", "x": 1.0, "y": 9.0}, {"label": "N5", "x": 6.2, "y": 3.99}],
    }
    fx, fy = scene_cells(scene, 4)
    assert (fx[0], fy[0]) == (1, 9) and (fx[2 * 4 + 2], fy[2 * 4 + 2]) == (6, 3)
    assert f"{fx[10]}{fy[10]}" == cell_digits(6.2, 3.99) and sum(v >= 0 for v in fx) == 2


@pytest.mark.torch
def test_a_wide_enough_projector_also_codes_the_cell_digits(tiny_instruct_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    from sparkle_vlm.models.embedded import build_embedded_model

    base = build_embedded_model("tiny", tmp_path / "base", text_hidden=64)
    cfg = _cfg(base, tiny_instruct_dir, tmp_path / "a", 2, 1)
    info = pretrain_tower(cfg, log=lambda _m: None)
    assert (
        {"disc_x_accuracy", "disc_y_accuracy"} <= set(info["code"]) <= set(info["code"]) | set(info["dense"])
    )
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "a")
    tok = AutoTokenizer.from_pretrained(tmp_path / "a")
    w = model.model.multi_modal_projector.linear_2.weight.detach()
    table = model.get_input_embeddings().weight.detach()
    # units 21-30: x digits as the rationale writes them (" 1"), 31-40: y digits ("8")
    ids = [tok(f" {j}", add_special_tokens=False)["input_ids"][0] for j in range(10)]
    ids += [tok(str(j), add_special_tokens=False)["input_ids"][0] for j in range(10)]
    ratio = w[:, 21:41] / table[ids].T
    assert ratio.std() / ratio.mean().abs() < 1e-4
    assert not w[:, 41:].any()


@pytest.mark.torch
def test_a_crashed_run_resumes_to_the_same_weights(tiny_instruct_dir: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    from sparkle_vlm.models.embedded import build_embedded_model

    base = build_embedded_model("tiny", tmp_path / "base")

    def cfg(name: str) -> TowerTrainConfig:
        return _cfg(base, tiny_instruct_dir, tmp_path / name, 10, 2)

    pretrain_tower(cfg("whole"), log=lambda _m: None)

    def crash(msg: str) -> None:
        if msg.startswith("tower step 6/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain_tower(cfg("resumed"), log=crash)
    assert not (tmp_path / "resumed").exists() and (tmp_path / ".resumed.tower-resume.pt").exists()
    said: list[str] = []
    pretrain_tower(cfg("resumed"), log=said.append)
    assert "tower pretraining: resuming after step 6" in said
    assert not any(m.startswith(("tower step 1/", "tower step 6/")) for m in said)
    whole, resumed = (load_file(str(tmp_path / n / "model.safetensors")) for n in ("whole", "resumed"))
    assert whole.keys() == resumed.keys() and all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert not (tmp_path / ".resumed.tower-resume.pt").exists()

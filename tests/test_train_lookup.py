"""Lookup heads (train/lookup.py): the decoder reads a named disc's cell before any SFT step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.torch


def _model_with_exact_codes(tmp_path: Path, data: Path, **spec: Any) -> tuple[Any, Any, dict[str, Any]]:
    """A tiny decoder (by default 64 wide, 32-dim heads as the small model's) whose image tokens are the
    tower's code computed from the scene records instead of from pixels: the test isolates the
    heads from how well a tower was trained."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    from sparkle_vlm.models.embedded import build_embedded_model
    from sparkle_vlm.train import tower as T
    from sparkle_vlm.train.data import load_records

    spec = {"image_size": 128, "text_hidden": 64, "text_mlp": 128, **spec}
    path = build_embedded_model("tiny", tmp_path / "m", **spec)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(path)
    records, _ = load_records([str(data)])
    scenes = T._point_scenes(records)
    keys = sorted(scenes)
    grid = 8
    label = torch.tensor([T.scene_targets(scenes[k], grid)[0] for k in keys]).view(-1, grid, grid)
    cells = [T.scene_cells(scenes[k], grid) for k in keys]
    fx = torch.tensor([c[0] for c in cells]).view(-1, grid, grid)
    fy = torch.tensor([c[1] for c in cells]).view(-1, grid, grid)
    # the code stage's layout: labels, regions (left empty here), x digits, y digits
    tok = processor.tokenizer
    dx, dy = T.digit_token_ids(tok)
    table = model.get_input_embeddings().weight.detach()
    lin2 = model.model.multi_modal_projector.linear_2
    ids = T.label_token_ids(tok)
    at = T.N_LABELS + T.N_REGIONS
    with torch.no_grad():
        lin2.weight.zero_()
        lin2.bias.zero_()
        lin2.weight[:, : T.N_LABELS] = table[ids].T
        lin2.weight[:, at : at + 10] = table[dx].T
        lin2.weight[:, at + 10 : at + 20] = table[dy].T
    from PIL import Image

    pixels = []
    for k in keys:
        with Image.open(k) as im:
            pixels.append(
                processor.image_processor(images=[im.convert("RGB")], return_tensors="pt")["pixel_values"]
            )
    width = lin2.in_features

    def codes(i: int) -> Any:
        c = torch.zeros(grid * grid, width)
        lab, x, y = label[i].flatten(), fx[i].flatten(), fy[i].flatten()
        for t in range(grid * grid):
            if lab[t] > 0:
                c[t, lab[t] - 1] = 1.0
                c[t, at + x[t]] = 1.0
                c[t, at + 10 + y[t]] = 1.0
        return c

    def image_features(pixel_values: Any, **_kw: Any) -> Any:
        rows = [next(i for i, p in enumerate(pixels) if torch.equal(p[0], pv)) for pv in pixel_values]
        return BaseModelOutputWithPooling(pooler_output=lin2(torch.stack([codes(i) for i in rows])))

    model.model.get_image_features = image_features
    return (
        model,
        processor,
        {
            "records": records,
            "scenes": scenes,
            "keys": keys,
            "targets": (label, fx, fy),
        },
    )


def test_lookup_heads_read_the_named_discs_cell_before_any_training(tmp_path: Path) -> None:
    import torch

    from sparkle_vlm.train.lookup import digit_check, init_lookup_heads
    from sparkle_vlm.train.reproduce import _generate
    from sparkle_vlm.train.tower import N_LABELS, digit_token_ids, label_token_ids, lookup_samples

    data = tmp_path / "data"
    _generate("basic-train", {"n": 60}, 0, data, 1)
    model, processor, d = _model_with_exact_codes(tmp_path, data)
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(len(d["keys"]), generator=gen)
    fit, held = lookup_samples(
        processor, d["records"], d["keys"], d["targets"], order[20:], order[:20], 96, gen
    )
    assert len(fit) == 96 and len(held) == 32
    tok = processor.tokenizer
    dx, dy = digit_token_ids(tok)
    before = digit_check(model, held, dx, dy, set(label_token_ids(tok)))
    got = init_lookup_heads(model, tok, fit, held, label_columns=list(range(N_LABELS)))
    # 2 layers of 2 heads: no room for the number lines and the label copy
    assert got.pop("number_heads") is None and got.pop("label_copy") is None
    assert isinstance(got.pop("label_accuracy"), float)
    assert got == digit_check(model, held, dx, dy, set(label_token_ids(tok)))
    assert got["answer_labels"] == before["answer_labels"] >= 32
    # held-out scenes, before any SFT step: the right digit ranks first among ten far above
    # chance (0.1), where the random decoder is at chance
    assert before["x_digit_accuracy"] < 0.35 and before["y_digit_accuracy"] < 0.35
    assert got["x_digit_accuracy"] >= 0.9 and got["y_digit_accuracy"] >= 0.6


def test_the_tower_stage_fits_the_heads_and_records_their_check(
    tiny_instruct_dir: Path, tmp_path: Path
) -> None:
    import json

    import torch
    from safetensors.torch import load_file

    from sparkle_vlm.models.embedded import build_embedded_model
    from sparkle_vlm.train.tower import TowerTrainConfig, pretrain_tower

    # 64 code units: room for the cell digits, so the stage runs (the plain tiny model has 32)
    base = build_embedded_model("tiny", tmp_path / "base", image_size=128, text_hidden=64, text_mlp=128)
    runs = {}
    for name, n in (("with", 6), ("again", 6), ("without", 0)):
        cfg = TowerTrainConfig(
            model=str(base),
            data=[str(tiny_instruct_dir)],
            out=str(tmp_path / name),
            steps=2,
            code_steps=1,
            held_out=1,
            lookup_samples=n,
        )
        pretrain_tower(cfg, log=lambda _m: None)
        runs[name] = load_file(str(tmp_path / name / "model.safetensors"))
    assert all(
        torch.equal(runs["with"][k], runs["again"][k]) for k in runs["with"]
    )  # same config, same weights
    record = json.loads((tmp_path / "with" / "sparkle_tower.json").read_text())["lookup"]
    assert record["fit_samples"] == 6 and record["held_out_samples"] >= 1
    assert 0.0 <= record["x_digit_accuracy"] <= 1.0 and 0.0 <= record["y_digit_accuracy"] <= 1.0
    assert json.loads((tmp_path / "without" / "sparkle_tower.json").read_text())["lookup"] is None
    q0 = "model.language_model.layers.0.self_attn.q_proj.weight"
    q2 = "model.language_model.layers.1.self_attn.q_proj.weight"
    # head 0 of layers 0 and 1 changed, the other head did not; the label columns are new keys
    for key in (q0, q2):
        assert not torch.equal(runs["with"][key][:32], runs["without"][key][:32])
        assert torch.equal(runs["with"][key][32:], runs["without"][key][32:])
    lin2 = "model.multi_modal_projector.linear_2.weight"
    a, b = runs["with"][lin2], runs["without"][lin2]
    assert not torch.equal(a[:, :12], b[:, :12]) and torch.equal(a[:, 12:], b[:, 12:])
    assert torch.allclose(a[:, :12].norm(dim=0), b[:, :12].norm(dim=0), rtol=1e-5)


def _small_decoder_with_heads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, images: int, skip: str | None
) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
    """The small model's decoder (3 layers of 4 heads of 32 dims) with exact codes, on ``images``
    practice images, and its lookup stage fitted on 96 answers (``skip``: a fit of lookup.py
    replaced by a no-op). Returns model, processor, the data dict (with ``train`` / ``held``
    image rows and the generator ``gen``, drawn on from there) and the stage's record."""
    import torch

    from sparkle_vlm.train import lookup
    from sparkle_vlm.train.reproduce import _generate
    from sparkle_vlm.train.tower import N_LABELS, lookup_samples

    data = tmp_path / "data"
    _generate("basic-train", {"n": images}, 0, data, 1)
    model, processor, d = _model_with_exact_codes(
        tmp_path, data, text_hidden=128, text_heads=4, text_layers=3, text_mlp=256
    )
    if skip is not None:
        monkeypatch.setattr(lookup, skip, lambda *_a, **_k: None)
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(len(d["keys"]), generator=gen)
    train, held = order[100:], order[:100]
    fit, check = lookup_samples(processor, d["records"], d["keys"], d["targets"], train, held, 96, gen)
    got = lookup.init_lookup_heads(
        model, processor.tokenizer, fit, check, label_columns=list(range(N_LABELS))
    )
    return model, processor, {**d, "train": train, "held": held, "gen": gen}, got


@pytest.mark.parametrize("number_heads", [True, False])
def test_number_heads_and_the_readout_name_the_direction_letter_before_any_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, number_heads: bool
) -> None:
    from sparkle_vlm.train import lookup
    from sparkle_vlm.train.tower import answer_records, answer_sample

    model, processor, d, got = _small_decoder_with_heads(
        tmp_path, monkeypatch, 400, skip=None if number_heads else "_number_heads"
    )
    train, held, gen = d["train"], d["held"], d["gen"]
    assert (got["number_heads"] is not None) == number_heads
    direction = [r for r in d["records"] if r["task"] == "direction"]
    fit_r, check_r = answer_records(direction, d["keys"], train, held, 300, gen, mcq=True)
    index = {k: i for i, k in enumerate(d["keys"])}
    make = lambda r: answer_sample(processor, index, d["targets"], r)  # noqa: E731
    res = lookup.fit_letter_readout(model, processor.tokenizer, map(make, fit_r), map(make, check_r))
    assert res["fit_answers"] == 300 and res["held_out_answers"] == 100
    print(res)
    # held-out scenes, before any SFT step: with the numbers the letter is a read of the
    # residual; without them the same readout stays near its majority class (chance 12.5 %)
    if number_heads:
        assert res["letter_accuracy"] >= 0.6
    else:
        assert res["letter_accuracy"] < 0.45


def test_the_number_lines_give_both_cell_differences_to_a_fraction_of_a_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the ``{`` of a direction answer, x2 - x1 and y2 - y1 (in cells) are linear reads of the
    residual stream, before any SFT step: a ridge probe fitted on 200 training answers is off by
    well under a cell on held-out ones (the y line read in layer 2, until round twelve: ~1.5)."""
    import torch

    from sparkle_vlm.train import lookup
    from sparkle_vlm.train.rationale import cell_digits
    from sparkle_vlm.train.tower import answer_records, answer_sample

    model, processor, d, _got = _small_decoder_with_heads(tmp_path, monkeypatch, 400, skip=None)
    direction = [r for r in d["records"] if r["task"] == "direction"]
    fit_r, held_r = answer_records(direction, d["keys"], d["train"], d["held"], 300, d["gen"])
    index = {k: i for i, k in enumerate(d["keys"])}
    tok = processor.tokenizer
    brace = tok("{", add_special_tokens=False)["input_ids"][-1]
    letters = set(lookup.letter_token_ids(tok))
    lm = model.model.language_model

    def probe_rows(records: list[dict[str, Any]]) -> tuple[Any, Any]:
        samples = [answer_sample(processor, index, d["targets"], r) for r in records]
        rows, steps = [], []
        for r, (s, h, _l) in zip(
            records, lookup.forward_batches(model, samples, lm.norm, pre=True), strict=True
        ):
            p = lookup._letter_position(s["input_ids"][0].tolist(), s["answer_start"], brace, letters)
            nodes = {n["label"]: n for n in r["scene"]["nodes"]}
            a, b = (cell_digits(nodes[r["query"][k]]["x"], nodes[r["query"][k]]["y"]) for k in ("from", "to"))
            rows.append(torch.cat([h[p], torch.ones(1)]))
            steps.append([int(b[0]) - int(a[0]), int(b[1]) - int(a[1])])
        return torch.stack(rows), torch.tensor(steps, dtype=torch.float)

    xs, ys = probe_rows(fit_r)
    w = torch.linalg.solve(xs.T @ xs + 0.1 * torch.eye(xs.shape[1]), xs.T @ ys)
    hx, hy = probe_rows(held_r)
    rmse = (hx @ w - hy).pow(2).mean(0).sqrt()
    print(rmse.tolist(), hy.std(0).tolist())
    assert len(held_r) == 100 and float(hy.std(0).min()) > 3.0
    assert float(rmse.max()) < 0.8


@pytest.mark.parametrize("copy_heads", [True, False])
def test_the_label_copy_heads_write_the_questions_labels_in_order_before_any_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, copy_heads: bool
) -> None:
    from sparkle_vlm.train import lookup
    from sparkle_vlm.train.tower import answer_records, answer_sample, label_token_ids

    model, processor, d, got = _small_decoder_with_heads(
        tmp_path, monkeypatch, 300, skip=None if copy_heads else "_previous_label_head"
    )
    train, held, gen = d["train"], d["held"], d["gen"]
    assert (got["label_copy"] is not None) == copy_heads
    # direction and localization answers name the question's labels in order: " N2 18, N1 85"
    named = [r for r in d["records"] if r["task"] in ("direction", "localization")]
    _fit, held_r = answer_records(named, d["keys"], train, held, 300, gen)
    index = {k: i for i, k in enumerate(d["keys"])}
    samples = [answer_sample(processor, index, d["targets"], r) for r in held_r]
    comma = processor.tokenizer(",", add_special_tokens=False)["input_ids"][-1]
    right = lookup.label_check(model, samples, label_token_ids(processor.tokenizer), comma)
    print(got["label_accuracy"], right)
    # held-out scenes, before any SFT step (chance 1 in 12 labels)
    if copy_heads:
        assert right is not None and right >= 0.85
    else:
        assert right is not None and right < 0.5


def test_prefetched_samples_come_in_order_and_a_drawing_error_is_raised_to_the_consumer() -> None:
    import threading

    from sparkle_vlm.train.lookup import _prefetched

    assert list(_prefetched(iter(range(100)), 4)) == list(range(100))
    assert list(_prefetched(iter([]), 4)) == []

    def broken() -> Any:
        yield 1
        raise ValueError("cannot read image 2")

    got = []
    with pytest.raises(ValueError, match="image 2"):
        for x in _prefetched(broken(), 4):
            got.append(x)
    assert got == [1]
    # a consumer that stops early stops the drawing thread (it would otherwise wait forever)
    it = _prefetched(iter(range(10_000)), 2)
    assert next(it) == 0
    it.close()
    assert not [t for t in threading.enumerate() if t.name == "sparkle-prefetch"]

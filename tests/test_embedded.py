"""The embedded model serves the hf backend and the SFT path: chat template, left padding, EOS, tokens.

pytest tests/test_embedded.py
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from sparkle_vlm.errors import ConfigError, SparkleError
from sparkle_vlm.models import embedded as E
from sparkle_vlm.records import prompt_text, response_text
from sparkle_vlm.tasks import get_task


def _records(task: str, n: int = 3, **over: Any) -> list[dict[str, Any]]:
    t = get_task(task)
    cfg = t.make_config(n=n, **over)
    return [r for i in range(n) for r in t.sample(cfg, 0, i).records]


def test_every_task_word_is_one_token() -> None:
    tok = E.build_tokenizer()
    recs = _records("instruct") + _records("basic_mcq") + _records("basic_mcq", split="train")
    for rec in recs:
        for text in (prompt_text(rec), response_text(rec) or rec["answer"]):
            ids = tok(text, add_special_tokens=False)["input_ids"]
            # One token per pre-tokenizer piece: no word of a task is split into sub-words.
            assert len(ids) == len(re.findall(E.PRETOKENIZE, text)), text[:80]
            assert tok.decode(ids) == text


def test_tokenizer_is_rebuilt_identically() -> None:
    assert E.build_tokenizer().backend_tokenizer.to_str() == E.build_tokenizer().backend_tokenizer.to_str()


def test_bad_spec_fields_are_named() -> None:
    with pytest.raises(ConfigError, match="patch_size"):
        E.spec_for("small", patch_size=15)
    with pytest.raises(ConfigError, match="depth"):
        E.spec_for("small", depth=3)
    with pytest.raises(ConfigError, match="vision_hidden"):
        E.spec_for("tiny", vision_hidden=30, vision_heads=3, tower="vit")
    with pytest.raises(ConfigError, match="vision_hidden"):
        E.spec_for("tiny", vision_hidden=30)  # the ResNet's stage widths halve twice
    with pytest.raises(ConfigError, match="patch_size"):
        E.spec_for("tiny", image_size=48, patch_size=12)  # not 4 times a power of 2
    with pytest.raises(ConfigError, match="tower"):
        E.spec_for("tiny", tower="swin")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return E.build_embedded_model("tiny", tmp_path_factory.mktemp("emb") / "tiny")


def _load(path: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    return AutoModelForImageTextToText.from_pretrained(
        path, dtype=torch.float32
    ), AutoProcessor.from_pretrained(path)


def _image(rec: dict[str, Any]) -> Any:
    task = get_task(rec["source"])
    return task.render(rec["scene"], 112)


@pytest.mark.torch
def test_chat_template_on_canonical_messages(tiny: Path) -> None:
    _, proc = _load(tiny)
    rec = _records("basic_mcq", n=1)[0]
    messages = [dict(m) for m in rec["messages"]]
    messages[0] = {
        "role": "user",
        "content": [
            {"type": "image", "image": _image(rec)} if p["type"] == "image" else p
            for p in messages[0]["content"]
        ],
    }
    enc = proc.apply_chat_template(
        [messages], add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    ids = enc["input_ids"][0].tolist()
    spec = E.spec_for("tiny")
    assert ids.count(proc.tokenizer.convert_tokens_to_ids(E.IMAGE)) == spec.image_tokens
    assert ids[-1] == proc.tokenizer.convert_tokens_to_ids(E.ASSISTANT)
    assert tuple(enc["pixel_values"].shape) == (1, 3, spec.image_size, spec.image_size)
    text = proc.apply_chat_template([messages], add_generation_prompt=True)[0]
    assert text.startswith(E.USER + E.IMAGE) and prompt_text(rec) in text


@pytest.mark.torch
def test_generation_block_marks_the_answer_and_eos(tiny: Path) -> None:
    _, proc = _load(tiny)
    rec = _records("instruct", n=1)[0]
    out = proc.tokenizer.apply_chat_template(
        rec["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    marked = [i for i, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert proc.tokenizer.decode(marked) == response_text(rec) + E.EOS


@pytest.mark.torch
def test_bad_out_dir_is_refused_and_a_model_folder_is_replaced(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(SparkleError, match="out_dir"):
        E.build_embedded_model("tiny", other)
    path = E.build_embedded_model("tiny", tmp_path / "m", seed=1)
    first = (path / "model.safetensors").read_bytes()
    assert E.build_embedded_model("tiny", path, seed=2) == path
    assert (path / "model.safetensors").read_bytes() != first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


@pytest.mark.torch
def test_vit_positions_start_as_a_sincos_grid(tmp_path: Path) -> None:
    import torch

    model, processor = _load(E.build_embedded_model("tiny", tmp_path / "vit", tower="vit"))
    spec = E.spec_for("tiny", tower="vit")
    assert model.config.model_type == "llava" and processor.vision_feature_select_strategy == "default"
    pos = model.model.vision_tower.embeddings.position_embedding.weight
    want = E.sincos_2d(spec.image_size // spec.patch_size, spec.vision_hidden) * E.POSITION_INIT_SCALE
    assert torch.allclose(pos[1:], want) and not pos[0].any()


@pytest.mark.torch
def test_learns_answers_then_generates_them_batched_left_padded_and_stops_at_eos(tiny: Path) -> None:
    """A few optimizer steps on two records, then greedy batched generation returns exactly their answers."""
    import torch

    torch.manual_seed(0)
    model, proc = _load(tiny)
    recs = _records("instruct", n=1)[:2]  # two questions of different lengths about one image
    img = _image(recs[0])
    tok = proc.tokenizer
    full = proc.apply_chat_template([r["messages"] for r in recs])
    prompts = proc.apply_chat_template([r["messages"][:1] for r in recs], add_generation_prompt=True)
    batch = proc(text=full, images=[[img], [img]], padding=True, padding_side="right", return_tensors="pt")
    labels = batch["input_ids"].clone()
    for i, p in enumerate(prompts):  # loss on the answer and its EOS only
        labels[i, : len(proc(text=[p], images=[[img]])["input_ids"][0])] = -100
    labels[batch["attention_mask"] == 0] = -100
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(120):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    enc = proc(text=prompts, images=[[img], [img]], padding=True, padding_side="left", return_tensors="pt")
    assert enc["input_ids"][0, 0] == tok.pad_token_id or enc["input_ids"][1, 0] == tok.pad_token_id
    out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    new = out[:, enc["input_ids"].shape[1] :]
    texts = proc.batch_decode(new, skip_special_tokens=True)
    assert texts == [r["answer"] for r in recs], (loss.item(), texts)
    for row in new.tolist():  # generation stopped at EOS: only padding after it
        stop = row.index(tok.eos_token_id)
        assert all(t == tok.pad_token_id for t in row[stop + 1 :])

"""SFT through TRL + PEFT on tiny random VLMs (CPU, offline; fixtures in conftest.py).

Run: .venv/bin/python -m pytest tests/test_train_sft.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from sparkle_vlm.errors import ConfigError, SparkleError
from sparkle_vlm.records import read_jsonl
from sparkle_vlm.train.config import SFTTrainConfig, load_config

pytestmark = pytest.mark.torch


def _changed(before: dict[str, Any], after: dict[str, Any], marker: str) -> list[bool]:
    """Per tensor under ``marker``: did training change it? (There must be some.)"""
    keys = [k for k in before if marker in k]
    assert keys, marker
    return [not bool((before[k] == after[k]).all()) for k in keys]


def _cfg(model: Path, data: Path, out: Path, **kw: Any) -> SFTTrainConfig:
    values = {
        "model": str(model),
        "data": [str(data)],
        "out": str(out),
        "batch_size": 4,
        "grad_accum": 1,
        "max_samples": 4,
        "max_steps": 8,
        "lr": 1e-2,
        "warmup_ratio": 0.0,
        "lr_scheduler": "constant",
        "logging_steps": 1,
        "save_steps": 4,
        **kw,
    }
    cfg = load_config("sft", None, values)
    assert isinstance(cfg, SFTTrainConfig)
    return cfg


def _quiet(msg: str) -> None:
    pass


@pytest.fixture(scope="module")
def trained(tiny_qwen2vl_dir: Path, tiny_instruct_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One LoRA run (8 steps on 4 samples, adapter merged too), shared by the tests below."""
    from sparkle_vlm.train.sft import train_sft

    cfg = _cfg(tiny_qwen2vl_dir, tiny_instruct_dir, tmp_path_factory.mktemp("sft") / "run", merge=True)
    return cfg, train_sft(cfg, log=_quiet)


@pytest.fixture(scope="module")
def setup(trained: tuple[SFTTrainConfig, Any], tmp_path_factory: pytest.TempPathFactory):
    """The trainer as built for the same config (same rows in the same order), not trained."""
    import dataclasses

    from sparkle_vlm.train.sft import prepare_sft

    cfg, _ = trained
    return prepare_sft(dataclasses.replace(cfg, out=str(tmp_path_factory.mktemp("prep"))), log=_quiet)


def test_run_writes_adapter_processor_and_run_record(trained: tuple[SFTTrainConfig, Any]):
    cfg, res = trained
    out = Path(cfg.out)
    assert res.global_step == 8 and not res.already_complete
    for name in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "processor_config.json",
        "tokenizer.json",
        "chat_template.jinja",
        "sparkle_train.json",
        "merged/model.safetensors",
        "merged/config.json",
    ):
        assert (out / name).is_file(), name
    run = json.loads((out / "sparkle_train.json").read_text())
    data_sha = json.loads((Path(cfg.data[0]) / "manifest.json").read_text())["data_sha256"]
    assert run["data"][0]["sha256"] == data_sha  # the records file the manifest describes
    assert run["samples"]["used"] == 4 and run["config"]["lr"] == 1e-2 and run["method"] == "sft"
    assert {"torch", "transformers", "trl", "peft"} <= set(run["versions"])
    assert run["runtime"] == {
        "cuda": False,
        "bf16": False,
        "fp32_weights": False,
        "gradient_checkpointing": False,
        "world_size": 1,
    }


def test_only_answer_tokens_carry_loss(setup: Any):
    tok = setup.processor.tokenizer
    image_id = tok.convert_tokens_to_ids("<|image_pad|>")
    batch = setup.trainer.data_collator([setup.dataset[i] for i in range(4)])
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert (ids == image_id).sum() > 0
    assert (labels[ids == image_id] == -100).all()  # image tokens never carry loss
    for i, row in enumerate(setup.rows[:4]):
        sup = labels[i] != -100
        first = int(sup.nonzero()[0])
        assert not sup[:first].any() and bool((labels[i][first:][mask[i][first:] == 1] != -100).all())
        answer = row["completion"][0]["content"][0]["text"]
        # the supervised span is exactly the answer and the end of the turn
        assert tok.decode(ids[i][sup]) == answer + "<|im_end|>\n"
        prompt = tok.decode(ids[i][:first][mask[i][:first] == 1])
        assert row["prompt"][0]["content"][-1]["text"] in prompt and "<|image_pad|>" in prompt


def _loss_and_grads(setup: Any, compute: Any) -> tuple[Any, dict[str, Any]]:
    model = setup.trainer.model
    model.eval()  # no dropout: both losses see the same network
    batch = setup.trainer.data_collator([setup.dataset[i] for i in range(4)])
    model.zero_grad()
    loss = compute(model, dict(batch))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return loss.detach(), grads


@pytest.mark.parametrize("kind", ["lora-qwen2vl", "full-llava"])
def test_cpu_loss_on_answer_tokens_equals_trls(
    kind: str, setup: Any, tiny_llava_dir: Path, tiny_instruct_dir: Path, tmp_path: Path
):
    """The CPU loss (labelled positions only, train/trainer.py) gives TRL's loss and gradients."""
    import torch
    from trl import SFTTrainer

    from sparkle_vlm.train.sft import prepare_sft

    if kind == "full-llava":
        setup = prepare_sft(_cfg(tiny_llava_dir, tiny_instruct_dir, tmp_path / "o", lora=False), log=_quiet)
    trainer = setup.trainer
    assert trainer._compact_parts(trainer.model, {"labels": torch.zeros(1, 2, dtype=torch.long)})
    ours, ours_g = _loss_and_grads(setup, trainer.compute_loss)
    theirs, theirs_g = _loss_and_grads(setup, lambda m, b: SFTTrainer.compute_loss(trainer, m, b))
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-6), (ours, theirs)
    assert ours_g.keys() == theirs_g.keys() and ours_g
    for name in ours_g:
        assert torch.allclose(ours_g[name], theirs_g[name], rtol=1e-4, atol=1e-7), name
    assert trainer._metrics["eval"]["mean_token_accuracy"]  # the metrics TRL logs are kept


def test_lora_sits_on_the_language_model_only(setup: Any):
    names = [n for n, _ in setup.trainer.model.named_modules() if n.endswith("lora_A")]
    assert len(names) == 14  # 2 layers x (q, k, v, o, gate, up, down)
    assert all(".language_model." in n for n in names)
    assert not any("visual" in n or "merger" in n for n in names)
    assert setup.lora_info["modules"] == 14


def test_few_steps_lower_the_loss_on_their_batch(trained: tuple[SFTTrainConfig, Any], setup: Any):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    cfg, _ = trained
    batch = setup.trainer.data_collator([setup.dataset[i] for i in range(4)])
    with torch.no_grad():
        base = AutoModelForImageTextToText.from_pretrained(cfg.model, dtype=torch.float32)
        before = float(base(**batch).loss)
        tuned = PeftModel.from_pretrained(base, cfg.out)
        after = float(tuned(**batch).loss)
    assert after < before - 0.5, (before, after)


def _requests(data: Path, n: int) -> list[Any]:
    from sparkle_vlm.models.base import Request

    out = []
    for rec in read_jsonl(str(data / "data.jsonl"))[:n]:
        msgs = [m for m in rec["messages"] if m["role"] != "assistant"]
        out.append(Request(rec["id"], msgs, [str(data / p) for p in rec["images"]], rec))
    return out


def test_adapter_and_merged_model_load_into_hf_backend(
    trained: tuple[SFTTrainConfig, Any], tiny_instruct_dir: Path
):
    from sparkle_vlm.models.base import GenerationConfig, load_backend

    cfg, res = trained
    reqs = _requests(tiny_instruct_dir, 6)
    gen = GenerationConfig(max_new_tokens=8)

    def answers(model: str, **opts: Any) -> list[str]:
        backend = load_backend(model, **opts)
        try:
            comps = backend.generate(reqs, gen)
        finally:
            backend.close()
        assert all(c.error is None for c in comps)
        return [c.text for c in comps]

    base = answers(f"hf:{cfg.model}")
    tuned = answers(f"hf:{cfg.model}", adapter=cfg.out, processor=cfg.out)
    merged = answers(f"hf:{res.merged}")
    assert tuned != base
    assert merged == tuned


def test_crash_resumes_from_last_checkpoint(tiny_qwen2vl_dir: Path, tiny_instruct_dir: Path, tmp_path: Path):
    from transformers import TrainerCallback

    from sparkle_vlm.train.sft import train_sft

    class Crash(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 3:
                raise RuntimeError("simulated crash")

    class Steps(TrainerCallback):
        def __init__(self) -> None:
            self.seen: list[int] = []

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.seen.append(state.global_step)

    cfg = _cfg(
        tiny_qwen2vl_dir,
        tiny_instruct_dir,
        tmp_path / "run",
        max_steps=4,
        save_steps=2,
        max_samples=8,
        batch_size=2,
    )
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_sft(cfg, callbacks=[Crash()], log=_quiet)
    assert (tmp_path / "run" / "checkpoint-2" / "trainer_state.json").is_file()
    assert not (tmp_path / "run" / "sparkle_train.json").exists()

    steps = Steps()
    res = train_sft(cfg, callbacks=[steps], log=_quiet)
    assert res.resumed_from == "checkpoint-2"
    assert steps.seen == [3, 4]  # continued after the checkpoint, did not start over
    assert res.global_step == 4 and (tmp_path / "run" / "adapter_model.safetensors").is_file()
    assert json.loads((tmp_path / "run" / "sparkle_train.json").read_text())["resumed_from"] == "checkpoint-2"

    again = train_sft(cfg, log=_quiet)  # finished: nothing to do
    assert again.already_complete and again.global_step == 4
    with pytest.raises(SparkleError, match="other settings"):
        train_sft(
            _cfg(tiny_qwen2vl_dir, tiny_instruct_dir, tmp_path / "run", max_steps=4, lr=1e-3), log=_quiet
        )


def test_long_samples_are_dropped_and_counted(
    tiny_qwen2vl_dir: Path, tiny_instruct_dir: Path, tmp_path: Path
):
    from sparkle_vlm.train.sft import prepare_sft

    messages: list[str] = []
    records = read_jsonl(str(tiny_instruct_dir / "data.jsonl"))
    long_ids = {r["id"] for r in records if r["task"] == "description"}
    cfg = _cfg(tiny_qwen2vl_dir, tiny_instruct_dir, tmp_path, max_samples=None, max_tokens=150)
    setup = prepare_sft(cfg, log=messages.append)
    assert set(setup.dropped) == long_ids and len(setup.rows) == len(records) - len(long_ids)
    assert any(f"dropped {len(long_ids)} of {len(records)}" in m for m in messages)
    # the measured length is the collated length (text + expanded image tokens), so nothing is cut
    from sparkle_vlm.train import data as D

    lengths = D.measure_lengths(setup.processor, setup.rows[:3])
    for i in range(3):
        batch = setup.trainer.data_collator([setup.dataset[i]])
        assert abs(int(batch["attention_mask"].sum()) - lengths[i]) <= 1
        assert lengths[i] <= 150
    with pytest.raises(ConfigError, match="max_tokens"):
        prepare_sft(_cfg(tiny_qwen2vl_dir, tiny_instruct_dir, tmp_path, max_tokens=5), log=_quiet)


def test_full_finetuning_from_the_cli(
    tiny_qwen2vl_dir: Path, tiny_instruct_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    from sparkle_vlm.cli.main import main
    from sparkle_vlm.models.base import GenerationConfig, load_backend

    out = tmp_path / "full"
    rc = main(
        [
            "train",
            "sft",
            "--model",
            str(tiny_qwen2vl_dir),
            "--data",
            str(tiny_instruct_dir),
            "--out",
            str(out),
            "--full",
            "--max-steps",
            "1",
            "--batch-size",
            "2",
            "--grad-accum",
            "1",
            "--max-samples",
            "2",
        ]
    )
    assert rc == 0
    assert "SFT done, 1 steps on 2 samples" in capsys.readouterr().out
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    assert json.loads((out / "sparkle_train.json").read_text())["lora"] is False
    backend = load_backend(f"hf:{out}")
    try:
        (comp,) = backend.generate(_requests(tiny_instruct_dir, 1), GenerationConfig(max_new_tokens=4))
    finally:
        backend.close()
    assert comp.error is None


@pytest.mark.parametrize(
    ("fixture", "tower", "projector"),
    [
        ("tiny_llava_dir", "vision_tower.", "multi_modal_projector."),
        ("tiny_qwen2vl_dir", "visual.blocks.", "visual.merger."),  # the merger sits inside the tower
    ],
)
def test_freeze_vision_fixes_the_tower_only(
    fixture: str,
    tower: str,
    projector: str,
    tiny_instruct_dir: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
):
    import torch

    from sparkle_vlm.train import common

    model_dir = request.getfixturevalue(fixture)
    cfg = _cfg(model_dir, tiny_instruct_dir, tmp_path / "run", lora=False, freeze_vision=True)
    model, peft, _ = common.model_with_lora(cfg, common.runtime_for(cfg), _quiet)
    assert peft is None
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    assert [n for n in grads if tower in n] and not any(g for n, g in grads.items() if tower in n)
    assert [n for n in grads if projector in n] and all(g for n, g in grads.items() if projector in n)
    assert any(g for n, g in grads.items() if "language_model" in n)
    # The trainer calls model.train() every step; each tower module switches itself back to eval
    # mode when it is next called (its forward pre-hook), the projector stays in train mode.
    model.train()
    modules = dict(model.named_modules())
    tower_module = next(m for n, m in modules.items() if n.endswith(tower.rstrip(".")))
    projector_module = next(m for n, m in modules.items() if n.endswith(projector.rstrip(".")))
    for module in (tower_module, projector_module):
        for hook in list(module._forward_pre_hooks.values()):
            hook(module, ())
    assert tower_module.training is False and projector_module.training is True
    assert all(isinstance(m, torch.nn.Module) for m in (tower_module, projector_module))


def test_full_sft_with_frozen_tower_moves_the_projector_not_the_tower(
    tiny_llava_dir: Path, tiny_instruct_dir: Path, tmp_path: Path
):
    from safetensors.torch import load_file

    from sparkle_vlm.train.sft import train_sft

    out = tmp_path / "frozen"
    cfg = _cfg(
        tiny_llava_dir, tiny_instruct_dir, out, lora=False, freeze_vision=True, max_steps=2, save_steps=2
    )
    train_sft(cfg, log=_quiet)
    before = load_file(str(next(tiny_llava_dir.glob("*.safetensors"))))
    after = load_file(str(out / "model.safetensors"))

    assert not any(_changed(before, after, "vision_tower."))
    assert any(_changed(before, after, "multi_modal_projector."))
    assert any(_changed(before, after, "language_model."))


def test_rationale_sft_with_frozen_projector_and_embeddings(
    tiny_llava_dir: Path, tiny_instruct_dir: Path, tmp_path: Path
):
    from safetensors.torch import load_file

    from sparkle_vlm.train.sft import prepare_sft, train_sft

    out = tmp_path / "rationale"
    flags = {"freeze_vision": True, "freeze_projector": True, "freeze_embeddings": True, "rationale": True}
    cfg = _cfg(tiny_llava_dir, tiny_instruct_dir, out, lora=False, max_steps=2, save_steps=2, **flags)
    rows = prepare_sft(cfg, log=_quiet).rows
    # answers with a named object start with its cell; descriptions keep their text
    texts = [r["completion"][0]["content"][0]["text"] for r in rows]
    assert any(re.match(r" N\d+ \d\d", t) for t in texts)
    train_sft(cfg, log=_quiet)
    before = load_file(str(next(tiny_llava_dir.glob("*.safetensors"))))
    after = load_file(str(out / "model.safetensors"))

    for frozen in ("vision_tower.", "multi_modal_projector.", "embed_tokens."):
        assert not any(_changed(before, after, frozen)), frozen
    assert any(_changed(before, after, "layers."))


def test_fp32_weights_train_under_bf16_autocast_on_cuda(
    tiny_llava_dir: Path, tiny_instruct_dir: Path, tmp_path: Path
):
    """fp32_weights: float32 weights and bf16 autocast on CUDA; a no-op on CPU (float32 anyway)."""
    import torch
    from safetensors.torch import load_file

    from sparkle_vlm.train.sft import train_sft

    out = tmp_path / "mixed"
    cfg = _cfg(
        tiny_llava_dir, tiny_instruct_dir, out, lora=False, max_steps=2, save_steps=2, fp32_weights=True
    )
    train_sft(cfg, log=_quiet)
    runtime = json.loads((out / "sparkle_train.json").read_text())["runtime"]
    cuda = torch.cuda.is_available()
    assert runtime["cuda"] == cuda and runtime["fp32_weights"] == (cuda and runtime["bf16"])
    after = load_file(str(out / "model.safetensors"))
    assert {t.dtype for t in after.values()} == {torch.float32}


def test_tasks_keeps_only_those_records(tiny_llava_dir: Path, tiny_instruct_dir: Path, tmp_path: Path):
    from sparkle_vlm.train.sft import prepare_sft

    records = [json.loads(x) for x in (tiny_instruct_dir / "data.jsonl").read_text().splitlines()]
    want = {r["id"] for r in records if r["task"] == "localization"}
    cfg = _cfg(tiny_llava_dir, tiny_instruct_dir, tmp_path / "loc", tasks=["localization"], max_samples=None)
    assert {r["id"] for r in prepare_sft(cfg, log=_quiet).rows} == want and 0 < len(want) < len(records)
    with pytest.raises(ConfigError, match="tasks"):
        prepare_sft(_cfg(tiny_llava_dir, tiny_instruct_dir, tmp_path / "x", tasks=["tsp"]), log=_quiet)


def test_lora_targets_on_llava(tiny_llava_dir: Path, tiny_instruct_dir: Path, tmp_path: Path):
    from sparkle_vlm.train.common import load_model, load_processor, lora_modules, runtime_for

    cfg = _cfg(tiny_llava_dir, tiny_instruct_dir, tmp_path)
    model = load_model(cfg, runtime_for(cfg))
    _, hits = lora_modules(model, cfg)
    assert len(hits) == 14 and all(h.startswith("model.language_model.") for h in hits)
    with pytest.raises(ConfigError) as exc:  # pixel bounds are a Qwen-only option
        load_processor(_cfg(tiny_llava_dir, tiny_instruct_dir, tmp_path, max_pixels=50_000))
    assert exc.value.field == "max_pixels"
    with pytest.raises(ConfigError, match="matched no linear layer"):
        lora_modules(
            model, _cfg(tiny_llava_dir, tiny_instruct_dir, tmp_path, lora_targets=r".*\.nonexistent")
        )


def test_sft_refuses_records_without_answers(tiny_qwen2vl_dir: Path, tmp_path: Path):
    from sparkle_vlm.generate import generate_dataset
    from sparkle_vlm.tasks import get_task
    from sparkle_vlm.train.sft import train_sft

    test_set = tmp_path / "basic"
    generate_dataset(
        "basic_mcq", get_task("basic_mcq").make_config(n=1, size=112), 0, test_set, workers=1, progress=False
    )
    with pytest.raises(SparkleError, match="no assistant answer"):
        train_sft(_cfg(tiny_qwen2vl_dir, test_set, tmp_path / "o"), log=_quiet)
    with pytest.raises(SparkleError, match="not a sparkle dataset"):
        train_sft(_cfg(tiny_qwen2vl_dir, tmp_path / "missing", tmp_path / "o"), log=_quiet)


@pytest.mark.parametrize("kind", ["llava", "embedded"])
def test_image_feature_cache_gives_the_towers_features_and_skips_seen_images(
    kind: str, tiny_llava_dir: Path, tmp_path: Path
):
    import torch
    from transformers import AutoModelForImageTextToText

    from sparkle_vlm.models.embedded import build_embedded_model
    from sparkle_vlm.train.common import cache_image_features, freeze_projector, freeze_vision_tower

    path = tiny_llava_dir if kind == "llava" else build_embedded_model("tiny", tmp_path / "m")
    plain = AutoModelForImageTextToText.from_pretrained(path)
    cached = AutoModelForImageTextToText.from_pretrained(path)
    for m in (plain, cached):
        freeze_vision_tower(m)
        freeze_projector(m)
    assert cache_image_features(cached)
    seen: list[int] = []
    cached.model.vision_tower.register_forward_pre_hook(lambda _m, a: seen.append(int(a[0].shape[0])))
    side = 64 if kind == "embedded" else plain.config.vision_config.image_size  # tiny: 64-pixel images
    n_tok = int(plain.model.get_image_features(torch.zeros(1, 3, side, side)).pooler_output[0].shape[-2])
    ids = torch.full((3, n_tok + 4), 1)
    ids[:, 1 : n_tok + 1] = plain.config.image_token_id
    gen = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(1, 3, side, side, generator=gen) for _ in range(3))
    for batch in (torch.cat([a, b, a]), torch.cat([b, c, a])):
        want = plain(input_ids=ids, pixel_values=batch).logits
        got = cached(input_ids=ids, pixel_values=batch).logits
        torch.testing.assert_close(got, want)
    # the tower ran on the first batch's images (a twice: both new) and on c alone after that
    assert seen == [3, 1]
    # gradients still reach the decoder through cached features
    cached(input_ids=ids, pixel_values=torch.cat([a, b, c])).logits.sum().backward()
    assert seen == [3, 1]
    assert cached.model.language_model.layers[0].self_attn.q_proj.weight.grad is not None

"""The ``hf`` backend end to end on tiny random VLMs (built offline in conftest fixtures)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sparkle_vlm.errors import ConfigError, SparkleError
from sparkle_vlm.models import GenerationConfig, Request, load_backend
from sparkle_vlm.records import read_jsonl

pytestmark = pytest.mark.torch

GEN = GenerationConfig(max_new_tokens=8)


def _load(ckpt: Path, **options: Any) -> Any:
    """The backend on CPU in float32, so equality checks hold on machines with a GPU too."""
    options.setdefault("device", "cpu")
    return load_backend(f"hf:{ckpt}", **options)


def _requests(dataset: Path, n: int, stride: int = 3) -> list[Request]:
    records = read_jsonl(str(dataset / "data.jsonl"))[::stride][:n]
    return [
        Request(
            r["id"],
            [t for t in r["messages"] if t["role"] == "user"],
            [str(dataset / p) for p in r["images"]],
            r,
        )
        for r in records
    ]


def _text_twin(req: Request) -> Request:
    """The same question without its image (as text-twin records are)."""
    turn = req.messages[0]
    content = [p for p in turn["content"] if p["type"] != "image"]
    return Request(req.id + "-text", [{"role": turn["role"], "content": content}], [], req.record)


@pytest.mark.parametrize("family", ["qwen2_vl", "llava"])
def test_end_to_end(tiny_vlm_factory: Callable[[str], Path], tiny_instruct_dir: Path, family: str) -> None:
    ckpt = tiny_vlm_factory(family)
    backend = _load(ckpt)
    reqs = _requests(tiny_instruct_dir, 4)
    comps = backend.generate(reqs, GEN)
    assert len(comps) == len(reqs)
    for comp in comps:
        assert comp.error is None
        assert 1 <= comp.usage["completion_tokens"] <= GEN.max_new_tokens
        assert comp.usage["prompt_tokens"] > 10 and comp.usage["batch_size"] == len(reqs)
        assert comp.latency_s > 0
    info = backend.describe()
    assert info["model"] == str(ckpt) and info["local"] is True
    assert info["dtype"] == "float32" and info["device"] == "cpu"
    assert info["adapter"] is None and info["trust_remote_code"] is False
    assert info["model_class"].endswith("ForConditionalGeneration")
    json.dumps(info)  # result files are JSON
    backend.close()


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "llava"])
def test_batched_equals_unbatched(
    tiny_vlm_factory: Callable[[str], Path], tiny_instruct_dir: Path, family: str
) -> None:
    backend = _load(tiny_vlm_factory(family))
    reqs = _requests(tiny_instruct_dir, 6)
    # Prompts of different lengths (so rows are padded) and a text-only request in the same call.
    reqs.append(_text_twin(reqs[0]))
    assert len({len(r.messages[0]["content"][-1]["text"]) for r in reqs}) > 2
    batched = backend.generate(reqs, GEN)
    single = [backend.generate([r], GEN)[0] for r in reqs]
    assert [c.error for c in batched] == [None] * len(reqs)
    assert [c.text for c in batched] == [c.text for c in single]
    assert [c.usage["completion_tokens"] for c in batched] == [c.usage["completion_tokens"] for c in single]
    # batch_size chunks the call without changing answers.
    chunked = _load(tiny_vlm_factory(family), batch_size="3").generate(reqs, GEN)
    assert [c.text for c in chunked] == [c.text for c in single]
    # The outputs depend on the input (the tiny model is not a constant function).
    assert len({c.text for c in single}) > 1


def test_attention_option_reaches_the_model(tiny_qwen2vl_dir: Path, tiny_instruct_dir: Path) -> None:
    # eager attention is the documented route to batch-invariant half-precision answers.
    backend = _load(tiny_qwen2vl_dir, attn_implementation="eager", batch_size=4)
    info = backend.describe()
    assert info["attn_implementation"] == "eager" and info["batch_size"] == 4
    reqs = _requests(tiny_instruct_dir, 3)
    default = _load(tiny_qwen2vl_dir)
    assert [c.text for c in backend.generate(reqs, GEN)] == [c.text for c in default.generate(reqs, GEN)]


def test_bad_request_fails_alone(tiny_qwen2vl_dir: Path, tiny_instruct_dir: Path, tmp_path: Path) -> None:
    backend = _load(tiny_qwen2vl_dir)
    good = _requests(tiny_instruct_dir, 2)
    missing = Request("missing", good[0].messages, [str(tmp_path / "nope.png")], {})
    mismatch = Request("mismatch", good[0].messages, [], {})
    comps = backend.generate([good[0], missing, mismatch, good[1]], GEN)
    assert comps[1].error is not None and "cannot read image" in comps[1].error
    assert comps[2].error is not None and "1 image parts but 0 image paths" in comps[2].error
    assert comps[0].error is None and comps[3].error is None
    assert [comps[0].text, comps[3].text] == [c.text for c in backend.generate(good, GEN)]


def _make_adapter(base: Path, out: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(1)
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(
        r=4,
        lora_alpha=16,
        # LM-only targets (ecosystem.md 3.4): a regex, so vision-tower projections are left alone.
        target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
        init_lora_weights=False,  # random B: an untrained adapter that changes the outputs
    )
    get_peft_model(model, config).save_pretrained(out)
    return out


def test_adapter_changes_outputs(tiny_qwen2vl_dir: Path, tiny_instruct_dir: Path, tmp_path: Path) -> None:
    adapter = _make_adapter(tiny_qwen2vl_dir, tmp_path / "adapter")
    assert (adapter / "adapter_model.safetensors").is_file()
    reqs = _requests(tiny_instruct_dir, 4)
    base = _load(tiny_qwen2vl_dir).generate(reqs, GEN)
    tuned_backend = _load(tiny_qwen2vl_dir, adapter=str(adapter))
    tuned = tuned_backend.generate(reqs, GEN)
    assert [c.text for c in tuned] != [c.text for c in base]
    info = tuned_backend.describe()
    assert info["adapter"] == str(adapter) and info["adapter_merged"] is True
    assert isinstance(info["adapter_sha256"], str) and len(info["adapter_sha256"]) == 64
    # Unmerged LoRA computes the same function as the merged weights.
    unmerged = _load(tiny_qwen2vl_dir, adapter=str(adapter), merge_adapter="false")
    assert [c.text for c in unmerged.generate(reqs, GEN)] == [c.text for c in tuned]


def test_adapter_must_be_safetensors(tiny_qwen2vl_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bin-adapter"
    bad.mkdir()
    (bad / "adapter_config.json").write_text("{}")
    (bad / "adapter_model.bin").write_bytes(b"\0")
    with pytest.raises(ConfigError, match="^adapter: .*safetensors"):
        load_backend(f"hf:{tiny_qwen2vl_dir}", adapter=str(bad))


def test_trust_remote_code_is_off_unless_asked(
    tiny_qwen2vl_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A checkpoint that ships code: loading must not run it unless the user opts in.
    ckpt = tmp_path / "remote"
    shutil.copytree(tiny_qwen2vl_dir, ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    config["auto_map"] = {"AutoModelForImageTextToText": "custom_model.Hijack"}
    (ckpt / "config.json").write_text(json.dumps(config))
    (ckpt / "custom_model.py").write_text("raise RuntimeError('remote code ran')\n")
    backend = load_backend(f"hf:{ckpt}")
    assert type(backend.model).__name__ == "Qwen2VLForConditionalGeneration"
    assert backend.describe()["trust_remote_code"] is False

    import transformers

    seen: list[Any] = []

    def spy(cls: Any) -> Any:
        original = cls.from_pretrained

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            seen.append((cls.__name__, kwargs.get("trust_remote_code")))
            kwargs["trust_remote_code"] = False  # never actually run the hijack module
            return original(*args, **kwargs)

        return wrapped

    for cls in (transformers.AutoModelForImageTextToText, transformers.AutoProcessor):
        monkeypatch.setattr(cls, "from_pretrained", spy(cls))
    load_backend(f"hf:{ckpt}")
    load_backend(f"hf:{ckpt}", trust_remote_code="true")
    assert seen == [
        ("AutoProcessor", False),
        ("AutoModelForImageTextToText", False),
        ("AutoProcessor", True),
        ("AutoModelForImageTextToText", True),
    ]


def test_pixel_bounds(tiny_qwen2vl_dir: Path, tiny_llava_dir: Path, tiny_instruct_dir: Path) -> None:
    reqs = _requests(tiny_instruct_dir, 1)
    default = _load(tiny_qwen2vl_dir).generate(reqs, GEN)[0]
    small = _load(tiny_qwen2vl_dir, min_pixels=4 * 28 * 28, max_pixels=str(4 * 28 * 28))
    assert small.describe()["max_pixels"] == 4 * 28 * 28
    # A 112 px image is 16 merged tokens by default and 4 at the 4 * 28^2 bound.
    assert default.usage["prompt_tokens"] - small.generate(reqs, GEN)[0].usage["prompt_tokens"] == 12
    with pytest.raises(ConfigError, match="^max_pixels: not supported by CLIPImageProcessor"):
        load_backend(f"hf:{tiny_llava_dir}", max_pixels=1000)


def test_option_errors(tiny_qwen2vl_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="^dtype:"):
        load_backend(f"hf:{tiny_qwen2vl_dir}", dtype="float8")
    with pytest.raises(ConfigError, match="^devise: .*did you mean 'device'"):
        load_backend(f"hf:{tiny_qwen2vl_dir}", devise="cpu")
    with pytest.raises(ConfigError, match="^--model: hf:.*no such checkpoint folder"):
        load_backend(f"hf:{tmp_path / 'nothing'}")
    with pytest.raises(ConfigError, match="^--model:"):
        load_backend("hf:")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="^device: .*CUDA is not available"):
            load_backend(f"hf:{tiny_qwen2vl_dir}", device="cuda")


def test_only_safetensors_weights(tiny_qwen2vl_dir: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    ckpt = tmp_path / "bin-only"
    shutil.copytree(tiny_qwen2vl_dir, ckpt)
    state = load_file(ckpt / "model.safetensors")
    (ckpt / "model.safetensors").unlink()
    torch.save(state, ckpt / "pytorch_model.bin")
    with pytest.raises(SparkleError, match="safetensors"):
        load_backend(f"hf:{ckpt}")


def test_cuda_defaults(tiny_qwen2vl_dir: Path, tiny_instruct_dir: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    backend = load_backend(f"hf:{tiny_qwen2vl_dir}")
    info = backend.describe()
    assert info["device"] == "cuda" and info["dtype"] in ("bfloat16", "float16")
    comps = backend.generate(_requests(tiny_instruct_dir, 4), GEN)
    assert all(c.error is None and c.usage["completion_tokens"] >= 1 for c in comps)

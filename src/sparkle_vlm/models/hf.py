"""The ``hf`` backend: any Hugging Face image-text-to-text model, run in-process with transformers.

``hf:Qwen/Qwen2-VL-2B-Instruct`` or ``hf:/path/to/checkpoint``. The processor's own chat template
renders the canonical messages, images are loaded from the request paths as RGB, and batches
are generated greedily with left padding (right padding corrupts batched generation for
decoder-only LMs; Qwen processors default to right). Only the new tokens are decoded.

Options (strings from the CLI are converted):

- ``device``: ``auto`` (cuda if available, else cpu), ``cpu``, ``cuda``, ``cuda:1``, ``mps``;
- ``dtype``: ``auto`` (bfloat16 on cuda, float32 on cpu), ``float32``, ``bfloat16``, ``float16``;
- ``device_map``: passed to ``from_pretrained`` (e.g. ``auto`` to shard a large model over GPUs);
- ``adapter``: a PEFT LoRA folder (``adapter_model.safetensors``); merged into the weights
  unless ``merge_adapter=false``;
- ``trust_remote_code``: run code shipped with the checkpoint (default false; only checkpoints
  without a transformers implementation need it);
- ``revision``: a Hub branch, tag or commit; ``processor``: load the processor from another
  folder (e.g. the one saved next to an adapter); ``chat_template``: a Jinja file to use instead
  of the processor's template;
- ``min_pixels`` / ``max_pixels``: image resolution bounds for Qwen-style processors;
- ``attn_implementation``: e.g. ``sdpa`` or ``flash_attention_2``;
- ``batch_size``: the most requests generated together (default: every request of a call);
- ``threads``: torch intra-op threads (process-wide; 1 is fastest for tiny models on busy CPUs).

Batch invariance. In float32 (the CPU default) batched and one-by-one greedy answers are
identical: left padding, attention masks and (for Qwen's mrope) position ids are handled by
transformers. In bfloat16/float16 (the CUDA default) a few answers can change with the batch:
measured on tiny Qwen2-VL / LLaVA on an H200, 6 and 11 of 48 answers differed between batch 1 and
16 with ``sdpa`` attention and none with ``attn_implementation=eager`` (first-step Qwen logits
then matched exactly). The padded batch takes a masked SDPA kernel while a lone sequence takes
the unmasked causal one, and half precision rounds the two differently; it is not a padding
bug (float32 shows no difference). Use ``dtype=float32`` or ``attn_implementation=eager`` when
scores must not depend on the batch size, or report the batch size with the scores.

Weights are loaded only from safetensors files. Completions carry an ``error`` instead of
raising when a single request cannot be prepared (missing image, placeholder count mismatch).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import time
from pathlib import Path
from typing import Any

from sparkle_vlm.errors import ConfigError, SparkleError
from sparkle_vlm.models.base import Backend, Completion, GenerationConfig, Request
from sparkle_vlm.models.options import Options

DTYPES = ("auto", "float32", "bfloat16", "float16")


def count_image_parts(messages: list[dict[str, Any]]) -> int:
    """How many ``{"type": "image"}`` parts the canonical messages hold.

    >>> count_image_parts([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}])
    1
    >>> count_image_parts([{"role": "user", "content": "plain text"}])
    0
    """
    n = 0
    for turn in messages:
        content = turn.get("content")
        if isinstance(content, list):
            n += sum(1 for part in content if isinstance(part, dict) and part.get("type") == "image")
    return n


def load_rgb(path: str) -> Any:
    """Open an image file fully (so the file handle closes) and convert it to RGB.

    Transparent pixels are composited on white, which is how the scenes are meant to be seen;
    a plain RGBA -> RGB conversion would turn them black.
    """
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode in ("RGBA", "LA", "P") and ("transparency" in im.info or im.mode != "P"):
            rgba = im.convert("RGBA")
            bg = Image.new("RGB", rgba.size, (255, 255, 255))
            bg.paste(rgba, mask=rgba.getchannel("A"))
            return bg
        return im.convert("RGB")


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def resolve_device(torch: Any, device: str | None) -> str:
    """``auto`` / None: cuda when available, else cpu; else a torch device name, checked."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError("device", f"not a torch device: {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", f"{device!r} requested but CUDA is not available")
    return str(dev)


class HFBackend(Backend):
    """A transformers image-text-to-text model and its processor."""

    name = "hf"

    def __init__(self, spec: str, options: dict[str, Any] | None = None) -> None:
        if not spec:
            raise ConfigError("--model", "hf needs a model id or folder, e.g. hf:Qwen/Qwen2-VL-2B-Instruct")
        opts = Options("hf", options)
        if spec.startswith(("/", "./", "../", "~")) or spec in (".", ".."):
            spec = str(Path(spec).expanduser())
            if not Path(spec).is_dir():
                raise ConfigError("--model", f"hf:{spec}: no such checkpoint folder")
        self.spec = spec
        device_opt = opts.text("device", "auto")
        dtype_opt = opts.choice("dtype", "auto", DTYPES)
        self.device_map = opts.text("device_map")
        self.adapter = opts.text("adapter")
        self.merge_adapter = opts.flag("merge_adapter", True)
        self.trust_remote_code = opts.flag("trust_remote_code", False)
        self.revision = opts.text("revision")
        processor_src = opts.text("processor", spec)
        chat_template = opts.text("chat_template")
        self.min_pixels = opts.integer("min_pixels", None, minimum=1)
        self.max_pixels = opts.integer("max_pixels", None, minimum=1)
        attn = opts.text("attn_implementation")
        self.batch_size = opts.integer("batch_size", None, minimum=1)
        threads = opts.integer("threads", None, minimum=1)
        opts.finish()
        if self.min_pixels and self.max_pixels and self.min_pixels > self.max_pixels:
            raise ConfigError(
                "min_pixels", f"must not exceed max_pixels ({self.min_pixels} > {self.max_pixels})"
            )

        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if threads is not None:
            torch.set_num_threads(threads)
        self.device = resolve_device(torch, device_opt)
        self.dtype = self._resolve_dtype(torch, dtype_opt, self.device)
        self.adapter_sha256 = self._check_adapter(self.adapter) if self.adapter else None

        # The processor first: it is cheap, and its failures should not wait for a large model load.
        proc_kw: dict[str, Any] = {"trust_remote_code": self.trust_remote_code}
        if self.revision and processor_src == spec:
            proc_kw["revision"] = self.revision
        try:
            processor = AutoProcessor.from_pretrained(processor_src, **proc_kw)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SparkleError(f"--model hf:{spec}: cannot load processor: {_first_line(exc)}") from exc
        self._apply_pixel_bounds(processor)
        if chat_template:
            try:
                processor.chat_template = Path(chat_template).read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError("chat_template", f"cannot read {chat_template}: {exc.strerror}") from None
        if not getattr(processor, "chat_template", None):
            raise SparkleError(
                f"--model hf:{spec}: the processor has no chat template; pass chat_template=FILE.jinja"
            )
        tokenizer = processor.tokenizer
        # Batched generation must pad on the left so every row's last token is its prompt's end.
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

        load_kw: dict[str, Any] = {
            "dtype": self.dtype,
            "use_safetensors": True,
            "trust_remote_code": self.trust_remote_code,
        }
        if self.revision:
            load_kw["revision"] = self.revision
        if self.device_map:
            load_kw["device_map"] = self.device_map
        if attn:
            load_kw["attn_implementation"] = attn
        try:
            model: Any = AutoModelForImageTextToText.from_pretrained(spec, **load_kw)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            hint = ""
            if "safetensors" in str(exc).lower():
                hint = " (only safetensors weights are loaded; convert .bin checkpoints first)"
            elif "Unrecognized configuration class" in str(exc):
                hint = (
                    " (no image-text-to-text class for this checkpoint: use its transformers-format"
                    " conversion, e.g. an '-hf' repo, or serve it with vLLM and use openai:)"
                )
            elif "trust_remote_code" in str(exc) and not self.trust_remote_code:
                hint = " (this checkpoint ships its own code: pass trust_remote_code=true if you trust it)"
            raise SparkleError(f"--model hf:{spec}: cannot load model: {_first_line(exc)}{hint}") from exc

        if self.adapter:
            model = self._load_adapter(model, self.adapter)
        if not self.device_map:
            model = model.to(self.device)
        model.eval()
        self.model: Any = model
        self.processor: Any = processor
        self.commit = getattr(model.config, "_commit_hash", None)

    # -- setup ----------------------------------------------------------------------------------

    @staticmethod
    def _resolve_dtype(torch: Any, dtype: str, device: str) -> Any:
        if dtype == "auto":
            if device.startswith("cuda"):
                return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            # Half precision on CPU is slow and changes greedy outputs; keep float32 there.
            return torch.float32
        return getattr(torch, dtype)

    def _apply_pixel_bounds(self, processor: Any) -> None:
        if self.min_pixels is None and self.max_pixels is None:
            return
        ip: Any = getattr(processor, "image_processor", None)
        accepted = getattr(getattr(ip, "valid_kwargs", None), "__annotations__", {})
        # Qwen-style processors count pixels in size.shortest_edge / size.longest_edge; any other
        # processor would read those keys as side lengths, so refuse instead of guessing.
        for name, value in (("min_pixels", self.min_pixels), ("max_pixels", self.max_pixels)):
            if value is not None and name not in accepted:
                raise ConfigError(
                    name,
                    f"not supported by {type(ip).__name__} (only Qwen-style processors take pixel bounds)",
                )
        updates = {}
        if self.min_pixels is not None:
            updates["shortest_edge"] = self.min_pixels
        if self.max_pixels is not None:
            updates["longest_edge"] = self.max_pixels
        size: Any = ip.size
        if dataclasses.is_dataclass(size) and not isinstance(size, type):
            ip.size = dataclasses.replace(size, **updates)
        else:
            ip.size = {**dict(size), **updates}

    @staticmethod
    def _check_adapter(adapter: str) -> str | None:
        """Validate a local adapter folder; its weights' sha256 (None for a Hub id)."""
        path = Path(adapter)
        if not path.exists():
            return None
        weights = path / "adapter_model.safetensors"
        if not weights.is_file():
            raise ConfigError(
                "adapter", f"{adapter} has no adapter_model.safetensors (only safetensors are loaded)"
            )
        if not (path / "adapter_config.json").is_file():
            raise ConfigError("adapter", f"{adapter} has no adapter_config.json")
        return _sha256_file(weights)

    def _load_adapter(self, model: Any, adapter: str) -> Any:
        try:
            from peft import PeftModel
        except ImportError:
            raise SparkleError(
                "adapter: loading a LoRA adapter needs peft (pip install 'sparkle-vlm[hf]')"
            ) from None
        try:
            peft_model = PeftModel.from_pretrained(model, adapter, is_trainable=False)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise SparkleError(f"adapter: cannot load {adapter}: {_first_line(exc)}") from exc
        # Merging removes the LoRA branches from every forward pass (faster, same function).
        return peft_model.merge_and_unload() if self.merge_adapter else peft_model

    # -- generation -----------------------------------------------------------------------------

    def generate(self, requests: list[Request], config: GenerationConfig) -> list[Completion]:
        results: list[Completion | None] = [None] * len(requests)
        ready: list[tuple[int, Request, list[Any]]] = []
        for i, req in enumerate(requests):
            n_parts = count_image_parts(req.messages)
            if n_parts != len(req.images):
                results[i] = Completion(
                    "", error=f"request {req.id}: {n_parts} image parts but {len(req.images)} image paths"
                )
                continue
            try:
                images = [load_rgb(p) for p in req.images]
            except Exception as exc:  # unreadable or missing file: this request fails, others go on
                results[i] = Completion("", error=f"request {req.id}: cannot read image: {_first_line(exc)}")
                continue
            ready.append((i, req, images))

        # Processors cannot mix samples with and without images in one call.
        for group in ([r for r in ready if r[2]], [r for r in ready if not r[2]]):
            step = self.batch_size or max(1, len(group))
            for start in range(0, len(group), step):
                chunk = group[start : start + step]
                for (i, _, _), comp in zip(chunk, self._generate_chunk(chunk, config), strict=True):
                    results[i] = comp
        assert all(r is not None for r in results)
        return [r for r in results if r is not None]

    def _generate_chunk(
        self, chunk: list[tuple[int, Request, list[Any]]], config: GenerationConfig
    ) -> list[Completion]:
        try:
            return self._run(chunk, config)
        except Exception as exc:
            if len(chunk) == 1:
                return [Completion("", error=f"request {chunk[0][1].id}: {_first_line(exc)}")]
            # Isolate the request that broke the batch instead of failing all of them.
            return [c for item in chunk for c in self._generate_chunk([item], config)]

    def _run(self, chunk: list[tuple[int, Request, list[Any]]], config: GenerationConfig) -> list[Completion]:
        import torch

        texts = [
            self.processor.apply_chat_template(req.messages, add_generation_prompt=True, tokenize=False)
            for _, req, _ in chunk
        ]
        images = [imgs for _, _, imgs in chunk]
        t0 = time.perf_counter()
        inputs = self.processor(
            text=texts,
            images=images if any(images) else None,
            padding=True,
            padding_side="left",
            return_tensors="pt",
        )
        device = self.model.device if self.device_map else self.device
        inputs = inputs.to(device)
        for key, value in inputs.items():
            if torch.is_tensor(value) and value.is_floating_point():
                inputs[key] = value.to(self.dtype)

        gen = copy.deepcopy(self.model.generation_config)
        gen.max_new_tokens = config.max_new_tokens
        gen.pad_token_id = self.processor.tokenizer.pad_token_id
        if config.temperature > 0:
            gen.do_sample = True
            gen.temperature = config.temperature
            torch.manual_seed(config.seed)
        else:
            # Greedy: clear the checkpoint's sampling defaults so they neither apply nor warn.
            gen.do_sample = False
            gen.temperature = None
            gen.top_p = None
            gen.top_k = None
        with torch.inference_mode():
            out = self.model.generate(**inputs, generation_config=gen)
        elapsed = time.perf_counter() - t0

        prompt_len = inputs["input_ids"].shape[1]
        new_tokens = out[:, prompt_len:]
        decoded = self.processor.batch_decode(new_tokens, skip_special_tokens=True)
        eos = gen.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        prompt_counts = inputs["attention_mask"].sum(dim=1).tolist()
        completions = []
        for row, text, n_prompt in zip(new_tokens.tolist(), decoded, prompt_counts, strict=True):
            n_new = len(row)
            for k, tok in enumerate(row):
                if tok in eos_ids:
                    n_new = k + 1
                    break
            completions.append(
                Completion(
                    text.strip(),
                    latency_s=elapsed,
                    usage={
                        "prompt_tokens": int(n_prompt),
                        "completion_tokens": n_new,
                        "batch_size": len(chunk),
                    },
                )
            )
        return completions

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.spec,
            "local": Path(self.spec).exists(),
            "revision": self.revision,
            "commit": self.commit,
            "model_class": type(self.model).__name__,
            "processor_class": type(self.processor).__name__,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": self.device if not self.device_map else f"device_map={self.device_map}",
            "adapter": self.adapter,
            "adapter_sha256": self.adapter_sha256,
            "adapter_merged": bool(self.adapter) and self.merge_adapter,
            "trust_remote_code": self.trust_remote_code,
            "min_pixels": self.min_pixels,
            "max_pixels": self.max_pixels,
            "padding_side": "left",
            "attn_implementation": getattr(self.model.config, "_attn_implementation", None),
            "batch_size": self.batch_size,
        }

    def close(self) -> None:
        self.model = None
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass


def make_backend(spec: str, options: dict[str, Any]) -> HFBackend:
    """Factory registered as ``hf`` in :data:`sparkle_vlm.models.base.BACKENDS`."""
    return HFBackend(spec, options)
